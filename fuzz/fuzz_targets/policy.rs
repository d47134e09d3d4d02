//! Policy file parser: arbitrary bytes never panic, and a usable policy survives its
//! canonical form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mta_sts::policy;

fuzz_target!(|data: &[u8]| {
    let lint = policy::lint(data);
    if let Some(p) = lint.policy {
        let again = policy::lint(p.to_string().as_bytes());
        assert_eq!(again.policy.as_ref(), Some(&p), "canonical form must re-parse to the same policy");
        for mx in &p.mx {
            assert!(mx.matches(&mx.to_string().replace("*.", "x.")));
        }
    }
    let _ = policy::policy_strings(&String::from_utf8_lossy(data));
});
