//! `mta-sts lint` end to end: the real binary, its exit codes (0 valid, 1 invalid, 2
//! usage/IO), human output and the JSON contract of docs/design.md §4.

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

/// Output errors (issue #12 item 7): a reader that goes away ends the command quietly with
/// exit 0; a full disk is one sentence and exit 2; never a panic (exit 101).
#[test]
fn closed_pipe_ends_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // 30,000 invalid lines (60 KB, under the size limit) give megabytes of diagnostics:
    // far more than a pipe buffers, so writing goes on after the reader has left.
    let file = dir.path().join("bad.txt");
    std::fs::write(&file, "x\n".repeat(30_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["lint", file.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("policy invalid"), "{first}");
    // The reader is dropped here: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn full_disk_is_one_sentence_and_exit_2() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("good.txt");
    std::fs::write(&policy, GOOD).unwrap();
    let empty_config = dir.path().join("daemon.toml");
    std::fs::write(&empty_config, "").unwrap();
    for args in [
        vec!["lint", policy.to_str().unwrap()],
        vec!["lint", "--json", policy.to_str().unwrap()],
        // `daemon --check-config` prints with `print!`: the same rule holds.
        vec![
            "daemon",
            "--check-config",
            "--config",
            empty_config.to_str().unwrap(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let sentences: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("mta-sts: "))
            .collect();
        assert_eq!(sentences.len(), 1, "{args:?}: {stderr}");
        assert!(
            sentences[0].starts_with("mta-sts: cannot write to standard output: "),
            "{args:?}: {stderr}"
        );
        if args[0] == "lint" {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        }
    }
}

/// Issue #12 item 8: the fetcher's 65,536-byte cap (RFC 8461 §3.3) applies to `lint` too.
#[test]
fn oversized_policy_is_too_large() {
    let mut body = String::from("version: STSv1\nmode: enforce\nmax_age: 86400\n");
    let mut i = 0;
    while body.len() <= 70_000 {
        body.push_str(&format!("mx: mx{i:05}.example.com\n"));
        i += 1;
    }
    let (code, v) = json(&["lint", "--json", "-"], body.as_bytes());
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["valid"], false);
    assert_eq!(v["policy"], serde_json::Value::Null);
    assert_eq!(v["diagnostics"][0]["code"], "too-large", "{v}");
    // Exactly 65,536 bytes is still read and linted (here: valid up to a cut line).
    let cut = &body.as_bytes()[..65_536];
    let (_, v) = json(&["lint", "--json", "-"], cut);
    assert!(
        v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["code"] != "too-large"),
        "{v}"
    );
}

/// Endless input is read only up to the limit: `lint /dev/zero` answers (before the fix it
/// read until memory ran out).
#[test]
fn endless_input_is_read_bounded() {
    if !std::path::Path::new("/dev/zero").exists() {
        eprintln!("skipped: no /dev/zero on this system");
        return;
    }
    for extra in [None, Some("--record"), Some("--tlsrpt-record")] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
            .arg("lint")
            .args(extra)
            .args(["--json", "/dev/zero"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Liveness only: a generous bound, far above the milliseconds it takes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("lint {extra:?} /dev/zero still reading after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["diagnostics"][0]["code"], "too-large", "{extra:?}: {v}");
    }
}
