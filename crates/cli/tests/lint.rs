//! `mta-sts lint` end to end: the real binary, its exit codes (0 valid, 1 invalid, 2
//! usage/IO), human output and the JSON contract of DESIGN §4.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn mta_sts(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mta-sts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn json(args: &[&str], stdin: &[u8]) -> (i32, serde_json::Value) {
    let out = mta_sts(args, stdin);
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), value)
}

const GOOD: &[u8] = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

#[test]
fn valid_policy_exits_0_with_stable_json() {
    let (code, v) = json(&["lint", "--json", "-"], GOOD);
    assert_eq!(code, 0);
    assert_eq!(v["kind"], "policy");
    assert_eq!(v["valid"], true);
    assert_eq!(v["strict_valid"], true);
    assert_eq!(v["policy"]["version"], "STSv1");
    assert_eq!(v["policy"]["mode"], "enforce");
    assert_eq!(v["policy"]["max_age"], 604800);
    assert_eq!(
        v["policy"]["mx"],
        serde_json::json!(["mx1.example.com", "*.example.net"])
    );
    assert_eq!(v["record"], serde_json::Value::Null);
    assert_eq!(v["diagnostics"], serde_json::json!([]));
}

#[test]
fn invalid_policy_exits_1_and_names_line_and_fix() {
    let out = mta_sts(
        &["lint", "-"],
        b"version: STSv1\nmode: enforced\nmx: a.example.com\nmax_age: 86400\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("invalid"), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("did you mean `mode: enforce`"), "{text}");
}

#[test]
fn tolerated_policy_passes_unless_strict() {
    let body = b"version: STSv1\n\nmode: testing\nmx: a.example.com\nmax_age: 86400\n";
    let (code, v) = json(&["lint", "--json", "-"], body);
    assert_eq!(code, 0);
    assert_eq!(
        (v["valid"].as_bool(), v["strict_valid"].as_bool()),
        (Some(true), Some(false))
    );
    let d = &v["diagnostics"][0];
    assert_eq!(
        (
            d["severity"].as_str(),
            d["code"].as_str(),
            d["line"].as_u64(),
            d["breaks_abnf"].as_bool()
        ),
        (Some("warning"), Some("blank-line"), Some(2), Some(true))
    );
    assert_eq!(
        mta_sts(&["lint", "--strict", "-"], body).status.code(),
        Some(1)
    );
}

#[test]
fn effective_max_age_is_reported_separately() {
    let (code, v) = json(
        &["lint", "--json", "-"],
        b"version: STSv1\nmode: none\nmax_age: 99999999\n",
    );
    assert_eq!(code, 0);
    assert_eq!(v["policy"]["max_age"], 99_999_999);
    assert_eq!(v["policy"]["effective_max_age"], 31_557_600);
}

#[test]
fn reads_a_file_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mta-sts.txt");
    std::fs::write(&path, GOOD).expect("write");
    assert_eq!(
        mta_sts(&["lint", path.to_str().expect("utf-8 path")], b"")
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn sts_record_lint_with_dig_quoting_and_selection() {
    let (code, v) = json(
        &["lint", "--record", "--json"],
        b"\"v=STSv1; id=\" \"20240101;\"\n",
    );
    assert_eq!(code, 0);
    assert_eq!(v["kind"], "sts-record");
    assert_eq!(v["record"]["id"], "20240101");
    let (code, v) = json(
        &["lint", "--record", "--json"],
        b"v=spf1 -all\nv=STSv1; id=1\n",
    );
    assert_eq!((code, v["record"]["id"].as_str()), (0, Some("1")));
    let (code, v) = json(
        &["lint", "--record", "--json"],
        b"v=STSv1; id=1\nv=STSv1; id=2\n",
    );
    assert_eq!(code, 1);
    assert_eq!(v["diagnostics"][0]["code"], "multiple-records");
    let (code, v) = json(&["lint", "--record", "--json"], b"v=STSv1; id=2024-01-01\n");
    assert_eq!(code, 1);
    assert_eq!(v["diagnostics"][0]["code"], "invalid-id");
}

#[test]
fn tlsrpt_record_lint() {
    let (code, v) = json(
        &["lint", "--tlsrpt-record", "--json"],
        b"v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/v1\n",
    );
    assert_eq!(code, 0);
    assert_eq!(v["kind"], "tlsrpt-record");
    assert_eq!(v["record"]["rua"][0]["address"], "tls@example.com");
    let (code, v) = json(&["lint", "--tlsrpt-record", "--json"], b"v=TLSRPTv1;\n");
    assert_eq!(code, 1);
    assert_eq!(v["diagnostics"][0]["code"], "missing-rua");
}

#[test]
fn usage_and_io_errors_exit_2_with_one_sentence() {
    let out = mta_sts(&["lint", "/nonexistent/policy.txt"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read /nonexistent/policy.txt") && err.contains("check the path"),
        "{err}"
    );
    assert_eq!(
        mta_sts(&["lint", "--no-such-flag"], b"").status.code(),
        Some(2)
    );
    assert_eq!(
        mta_sts(&["lint", "--record", "--tlsrpt-record"], b"")
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn every_corpus_policy_lints_without_crashing() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/corpus/policies"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 205);
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    for path in args {
        let code = mta_sts(&["lint", &path], b"").status.code();
        assert!(matches!(code, Some(0 | 1)), "{path}: {code:?}");
    }
}
