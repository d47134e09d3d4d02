//! `mta-sts report send` end to end: an events file, testkit DNS for `_smtp._tls`, a testkit
//! SMTP server as relay and the testkit HTTPS host as an https: rua; exit codes; `--log`.

use std::path::Path;
use std::process::{Command, Output};

use mta_sts_testkit::{HostBehavior, SmtpConfig, World};
use serde_json::Value;

const EVENTS: &str = r#"{"time":"2024-05-01T10:00:00Z","policy_domain":"example.com","policy":{"type":"sts","string":["version: STSv1","mode: testing","mx: mx.example.com","max_age: 86400"],"mx_host":["mx.example.com"]},"result":"success","count":9}
{"time":1714561200,"policy_domain":"example.com","policy":{"type":"sts","string":["version: STSv1","mode: testing","mx: mx.example.com","max_age: 86400"],"mx_host":["mx.example.com"]},"result":"starttls-not-supported","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"mx.example.com"}
not json
"#;

fn send(world: &World, db: &Path, args: &[&str]) -> Output {
    let now = if args.contains(&"--now") {
        &[][..]
    } else {
        &["--now", "2024-05-02T00:10:00Z"][..]
    };
    Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["report", "--db"])
        .arg(db)
        .arg("send")
        .args(["--dns", &world.dns_addr().to_string()])
        .arg("--ca-file")
        .arg(world.ca_file())
        .args(["--connect-to", &world.connect_to_any()])
        .args(["--submitter", "sender.test"])
        .args(now)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn report_send_end_to_end() {
    let world = World::builder().start();
    let relay = world
        .start_smtp(SmtpConfig::new("relay.sender.test"))
        .unwrap();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/r"]],
    );
    world
        .https()
        .set("reports.example.com", HostBehavior::status(500));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reports.db");
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, EVENTS).unwrap();
    let events = events.display().to_string();
    let relay_addr = relay.addr().to_string();

    // Dry run: the report is printed, nothing is sent.
    let out = send(&world, &db, &["--events", &events, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["report-id"], "2024-05-01_example.com@sender.test");
    assert_eq!(
        report["policies"][0]["summary"]["total-failure-session-count"],
        1
    );
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
    assert!(relay.messages().is_empty());

    // The real run: mail delivered, the https endpoint fails and is scheduled (exit 0).
    let out = send(&world, &db, &["--events", &events, "--relay", &relay_addr]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("2024-05-01 example.com 2024-05-01_example.com@sender.test 9 ok/1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mailto:tlsrpt@example.com delivered"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "https://reports.example.com/r retry (https://reports.example.com/r: HTTP 500"
        ),
        "{stdout}"
    );
    let messages = relay.messages();
    assert_eq!(messages.len(), 1);
    assert!(text(&messages[0].data).contains("Report-ID: <2024-05-01_example.com@sender.test>"));

    // Later, the endpoint works: the retry delivers; nothing is generated or mailed again.
    world
        .https()
        .set("reports.example.com", HostBehavior::status(200));
    let out = send(
        &world,
        &db,
        &[
            "--events",
            &events,
            "--relay",
            &relay_addr,
            "--now",
            "2024-05-02T06:00:00Z",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("https://reports.example.com/r delivered"),
        "{stdout}"
    );
    assert_eq!(relay.messages().len(), 1);
    assert_eq!(world.https().requests("reports.example.com").len(), 2);

    // The log.
    let out = send(&world, &db, &["--log", "--json"]);
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<&str> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["delivered", "retry", "delivered"]);
    assert!(
        log["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["delivered_at"].is_i64())
    );
}

#[test]
fn report_send_exit_codes() {
    let world = World::builder().start();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"]],
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reports.db");
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, EVENTS).unwrap();
    let events = events.display().to_string();

    // No relay for a mailto: rua: a permanent failure, exit 1.
    let out = send(&world, &db, &["--events", &events]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("failed (no SMTP relay configured"));

    // Usage errors: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["report", "--db"])
        .arg(&db)
        .args(["send", "--events", &events])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = send(&world, &db, &["--day", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
}
