//! `_mta-sts` TXT record parser and selection: arbitrary RR sets never panic, and a valid
//! record survives its canonical form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mta_sts::record::{self, StsRecord};

fuzz_target!(|data: &[u8]| {
    // Split the input into TXT RRs at NUL bytes, as a resolver would hand them over.
    let rrs: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let _ = StsRecord::select(rrs.iter().copied());
    if let Ok(text) = std::str::from_utf8(data) {
        let lint = record::lint(text);
        assert_eq!(lint.record.is_some(), lint.error().is_none());
        if let Some(r) = lint.record {
            assert_eq!(StsRecord::parse(&r.to_string()).as_ref(), Ok(&r));
        }
    }
});
