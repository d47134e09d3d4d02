//! `mta-sts daemon --check-config` with `[tlsrpt]`: the effective settings are printed, and
//! files the configuration names (the DKIM key of `[tlsrpt.send]`) must load.

use std::process::Command;

fn check(config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["daemon", "--check-config", "--config"])
        .arg(config)
        .output()
        .expect("run mta-sts")
}

#[test]
fn check_config_validates_tlsrpt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.toml");

    std::fs::write(&path, "[cache]\nstore = \"memory\"\n").unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tlsrpt: events=off flush_interval=1m"),
        "{text}"
    );
    assert!(text.contains("tlsrpt.send: off"), "{text}");

    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &path,
        format!(
            "[tlsrpt]\nevents = \"{}\"\ncount_applied = false\n[tlsrpt.send]\nsubmitter = \"mail.example.com\"\nrelay = \"127.0.0.1:25\"\n",
            events.display()
        ),
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("count_applied"), "{text}");
    assert!(
        text.contains("submitter=mail.example.com from=tlsrpt@mail.example.com"),
        "{text}"
    );
    assert!(text.contains("dkim=relay-signs"), "{text}");

    // A DKIM key that does not load is a configuration error (exit 2), before any start.
    std::fs::write(
        &path,
        format!(
            "[tlsrpt]\nevents = \"{}\"\n[tlsrpt.send]\nsubmitter = \"mail.example.com\"\ndkim_key = \"{}\"\ndkim_selector = \"tlsrpt\"\n",
            events.display(),
            dir.path().join("missing.pem").display()
        ),
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dkim_key"), "{err}");

    // Issue 18.3: a socketmap query is not a session; counting queries as successful
    // sessions is refused with the fix named (exit 2).
    std::fs::write(
        &path,
        format!(
            "[tlsrpt]\nevents = \"{}\"\ncount_applied = true\n",
            events.display()
        ),
    )
    .unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("count_applied = true is not supported") && err.contains("[tlsrpt] socket"),
        "{err}"
    );

    // Unknown keys are refused in [tlsrpt] as everywhere.
    std::fs::write(&path, "[tlsrpt]\nevent = \"/x\"\n").unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
