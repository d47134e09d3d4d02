//! Testing mode that reports, with the MTA Debian ships (RFC 8461 §5 "testing"): Postfix
//! 3.10 delivers to a `mode: testing` domain whose MX presents a certificate for another
//! name (the daemon answers `NOTFOUND `, so Postfix's `may` applies and it verifies
//! nothing), the daemon's `[tlsrpt] probe_testing` probes that MX over STARTTLS once, and
//! the day's report (`mta-sts report send`) carries the failure under `policy-type: sts`
//! with the policy string and `certificate-host-mismatch`, next to Postfix's own
//! `no-policy-found` sessions of the two deliveries.

use std::time::Duration;

use mta_sts_testkit::{CertKind, World};
use serde_json::Value;

use crate::daemon_support::eventually;
use crate::lab::trixie_root;
use crate::{Lab, TLSRPT};

#[test]
fn rfc8461_5_testing_domain_with_a_wrong_name_mx_delivered_and_reported_by_the_probe() {
    let Some(root) = trixie_root() else {
        return;
    };
    let world = World::builder()
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"]).tlsrpt(TLSRPT)
        })
        .start();
    let dns = world.dns_addr().to_string();
    let lab = Lab::start(
        &root,
        world,
        &[("mail.testing.test", CertKind::WrongName)],
        "",
        "",
        "",
    );
    // Turn the probes on by reload (the file ends in its [tlsrpt] section): the probe
    // settings are applied without a restart.
    let mut config = std::fs::read_to_string(&lab.daemon.config).unwrap();
    assert!(config.trim_end().ends_with(".sock\""), "{config}");
    config
        .push_str("probe_testing = true\nprobe_interval = \"1h\"\nprobe_ehlo = \"sender.test\"\n");
    std::fs::write(&lab.daemon.config, config).unwrap();
    lab.daemon.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || lab
            .daemon
            .log_text()
            .contains("configuration reloaded")),
        "{}",
        lab.dump()
    );

    // Two messages: both delivered (testing mode), the MX probed once.
    for rcpt in ["user@testing.test", "other@testing.test"] {
        lab.postfix.send(rcpt);
        let status = lab.postfix.status_line(rcpt);
        assert!(status.contains("status=sent"), "{status}\n{}", lab.dump());
    }
    assert_eq!(lab.servers[0].messages().len(), 2, "{}", lab.dump());
    let log = lab.postfix.log();
    assert!(
        !log.contains("Verified TLS connection established to mail.testing.test"),
        "Postfix does not verify a testing domain:\n{log}"
    );
    // Postfix's two delivery sessions and the daemon's one probe session.
    assert!(
        eventually(Duration::from_secs(20), || lab.servers[0].sessions().len()
            == 3),
        "{} sessions\n{}",
        lab.servers[0].sessions().len(),
        lab.dump()
    );
    // A reload flushes what is in memory (the probe's session) to the events file.
    lab.daemon.signal("HUP");
    let probed = || {
        lab.events()
            .lines()
            .filter(|l| l.contains("\"source\":\"probe\""))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || probed() == 1),
        "{}",
        lab.dump()
    );
    let collected = eventually(Duration::from_secs(10), || {
        lab.events()
            .lines()
            .filter(|l| l.contains("\"source\":\"socket\""))
            .count()
            == 2
    });
    assert!(collected, "Postfix's two datagrams\n{}", lab.dump());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lab.servers[0].sessions().len(), 3, "no second probe");

    // The day's report, as `report send` generates it once the day is over.
    let day = tlsrpt::UtcDateTime::from_unix_seconds(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap(),
    )
    .to_string()[..10]
        .to_owned();
    let next_day = tlsrpt::UtcDateTime::parse(&format!("{day}T00:10:00Z"))
        .unwrap()
        .unix_seconds()
        + 86_400;
    let events = lab.dir.join("events.jsonl");
    let printed = crate::report::mta_sts_report(
        &lab.dir.join("outbox.db"),
        &[
            "send",
            "--events",
            events.to_str().unwrap(),
            "--submitter",
            "sender.test",
            "--dns",
            &dns,
            "--now",
            &next_day.to_string(),
            "--dry-run",
        ],
    );
    let reports: Vec<Value> = serde_json::Deserializer::from_str(&printed)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(reports.len(), 1, "{printed}");
    let policies = reports[0]["policies"].as_array().unwrap();
    let sts = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "sts")
        .unwrap_or_else(|| panic!("an sts policy in {printed}\n{}", lab.dump()));
    assert_eq!(sts["policy"]["policy-domain"], "testing.test");
    assert_eq!(
        sts["policy"]["policy-string"],
        serde_json::json!([
            "version: STSv1",
            "mode: testing",
            "mx: mail.testing.test",
            "max_age: 86400"
        ])
    );
    assert_eq!(sts["summary"]["total-successful-session-count"], 0);
    assert_eq!(sts["summary"]["total-failure-session-count"], 1);
    let detail = &sts["failure-details"][0];
    assert_eq!(
        detail["result-type"], "certificate-host-mismatch",
        "{printed}"
    );
    assert_eq!(detail["receiving-mx-hostname"], "mail.testing.test");
    assert_eq!(detail["failed-session-count"], 1);
    // Postfix's own view of the same day: two deliveries without a policy.
    let sessions = crate::report::report_sessions(&reports);
    assert_eq!(
        sessions,
        [
            (
                crate::report::key("testing.test", "no-policy-found", "success"),
                2
            ),
            (
                crate::report::key("testing.test", "sts", "certificate-host-mismatch"),
                1
            ),
            (
                crate::report::key("testing.test", "sts", "total-failure"),
                1
            ),
        ]
        .into(),
        "{printed}"
    );
}
