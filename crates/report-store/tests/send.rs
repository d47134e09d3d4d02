//! Generating and delivering reports (RFC 8460 §4, §5) against real parts: testkit DNS for
//! `_smtp._tls`, the testkit HTTPS host as an `https:` rua, a testkit SMTP server as relay.
//! Time is driven through `now`, never by sleeping.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mta_sts_report_store::deliver::{DeliveryConfig, read_pem_certs};
use mta_sts_report_store::intake::{Limits, parse_input};
use mta_sts_report_store::outbox::{AttemptResult, Outbox};
use mta_sts_report_store::send::{SendConfig, Sender, backoff};
use mta_sts_resolver::dns::{Dns, DnsConfig};
use mta_sts_testkit::{HostBehavior, SmtpConfig, World};
use tlsrpt::aggregate::Submitter;
use tlsrpt::{Report, UtcDateTime};

/// 2024-05-02T01:00:00Z: day 2024-05-01 is complete, 2024-05-02 is not.
fn now() -> i64 {
    UtcDateTime::parse("2024-05-02T01:00:00Z")
        .unwrap()
        .unix_seconds()
}

const EVENTS: &str = r#"{"time":"2024-05-01T10:00:00Z","policy_domain":"example.com","policy":{"type":"sts","string":["version: STSv1","mode: enforce","mx: mx.example.com","max_age: 86400"],"mx_host":["mx.example.com"]},"result":"success","count":5}
{"time":"2024-05-01T11:00:00Z","policy_domain":"example.com","policy":{"type":"sts","string":["version: STSv1","mode: enforce","mx: mx.example.com","max_age: 86400"],"mx_host":["mx.example.com"]},"result":"certificate-expired","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"mx.example.com","receiving_ip":"198.51.100.7","count":2}
{"time":"2024-05-02T00:30:00Z","policy_domain":"example.com","policy":{"type":"no-policy-found"},"result":"success"}
"#;

fn write_events(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("events.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn sender(world: &World, relay: Option<String>, dir: &Path) -> Sender {
    let dns = Dns::new(&DnsConfig {
        nameservers: vec![world.dns_addr()],
        timeout: Duration::from_secs(3),
        cache_size: 0,
    })
    .unwrap();
    let outbox = Outbox::open(&dir.join("reports.db")).unwrap();
    let roots = read_pem_certs(world.ca_pem().as_bytes()).unwrap();
    Sender::new(
        outbox,
        dns,
        SendConfig {
            submitter: Submitter {
                organization_name: "Sender Org".into(),
                contact_info: "tlsrpt@sender.test".into(),
                domain: "sender.test".into(),
            },
            from: "tlsrpt@sender.test".into(),
            delivery: DeliveryConfig {
                relay,
                extra_roots: roots,
                connect_to: vec![world.connect_to_any().parse().unwrap()],
                timeout: Duration::from_secs(5),
                ..DeliveryConfig::default()
            },
        },
    )
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_5_3_mailto_delivery_through_the_relay() {
    let world = World::builder().start();
    let relay = world
        .start_smtp(SmtpConfig::new("relay.sender.test"))
        .unwrap();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"]],
    );
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path(), EVENTS);
    let s = sender(&world, Some(relay.addr().to_string()), dir.path());

    let ingested = s.ingest_file(&events, now()).unwrap();
    assert_eq!((ingested.events, ingested.refused.len()), (3, 0));
    // Idempotent: nothing new the second time; an appended line is picked up alone.
    assert_eq!(s.ingest_file(&events, now()).unwrap().events, 0);

    let generated = s.generate(now(), None, false).await.unwrap();
    assert_eq!(generated.len(), 1, "only the completed day is reported");
    let report = &generated[0].report;
    assert_eq!(report.report_id, "2024-05-01_example.com@sender.test");
    assert_eq!((report.total_successful(), report.total_failed()), (5, 2));
    assert_eq!(generated[0].note, None);
    // Generating again does not report the day twice.
    assert!(s.generate(now(), None, false).await.unwrap().is_empty());

    let attempts = s.deliver_due(now()).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].result, AttemptResult::Delivered);

    let messages = relay.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.mail_from, "tlsrpt@sender.test");
    assert_eq!(m.rcpt_to, ["tlsrpt@example.com"]);
    let parsed = MessageParser::default().parse(&m.data).unwrap();
    assert_eq!(
        parsed.subject(),
        Some(
            "Report Domain: example.com Submitter: sender.test Report-ID: <2024-05-01_example.com@sender.test>"
        )
    );
    let header = |name: &str| {
        parsed
            .header_raw(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("TLS-Report-Domain"), "example.com");
    assert_eq!(header("TLS-Report-Submitter"), "sender.test");
    assert_eq!(header("MIME-Version"), "1.0");
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));
    let attachment = parsed.attachment(0).unwrap();
    let act = attachment.content_type().unwrap();
    assert_eq!(
        (act.ctype(), act.subtype()),
        ("application", Some("tlsrpt+gzip"))
    );
    let name = attachment.attachment_name().unwrap();
    assert!(
        name.starts_with("sender.test!example.com!1714521600!1714608000!"),
        "{name}"
    );
    assert!(name.ends_with(".json.gz"));
    name.parse::<tlsrpt::ReportFileName>().unwrap();
    let json = gunzip(attachment.contents());
    assert_eq!(&Report::from_json(&json).unwrap(), report);
    assert!(parsed.body_text(0).unwrap().contains("2 failed"));

    // Round trip through the existing intake: the mail re-imports as the same report.
    let reimported = parse_input(&m.data, None, &Limits::default()).unwrap();
    assert_eq!(reimported.len(), 1);
    assert_eq!(&reimported[0].report, report);

    // Appended events are consumed from the remembered offset.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    file.write_all(EVENTS.lines().next().unwrap().as_bytes())
        .unwrap();
    assert_eq!(
        s.ingest_file(&events, now()).unwrap().events,
        0,
        "no newline yet"
    );
    file.write_all(b"\n").unwrap();
    assert_eq!(s.ingest_file(&events, now()).unwrap().events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_5_4_https_post_retried_with_backoff() {
    let world = World::builder().start();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=https://reports.example.com/tlsrpt"]],
    );
    world
        .https()
        .set("reports.example.com", HostBehavior::status(500));
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path(), EVENTS);
    let s = sender(&world, None, dir.path());
    s.ingest_file(&events, now()).unwrap();
    let generated = s.generate(now(), None, false).await.unwrap();
    let report = generated[0].report.clone();

    let t0 = now();
    let attempts = s.deliver_due(t0).await.unwrap();
    assert!(
        matches!(&attempts[0].result, AttemptResult::Retry { at, error } if *at == t0 + backoff(1) && error.contains("500")),
        "{attempts:?}"
    );
    // Not due before the backoff has passed.
    assert!(s.deliver_due(t0 + backoff(1) - 1).await.unwrap().is_empty());
    let t1 = t0 + backoff(1);
    let attempts = s.deliver_due(t1).await.unwrap();
    assert!(
        matches!(&attempts[0].result, AttemptResult::Retry { at, .. } if *at == t1 + backoff(2)),
        "{attempts:?}"
    );
    assert_eq!(backoff(2), 2 * backoff(1));

    // The endpoint recovers: the next due run delivers.
    world
        .https()
        .set("reports.example.com", HostBehavior::status(200));
    let t2 = t1 + backoff(2);
    let attempts = s.deliver_due(t2).await.unwrap();
    assert_eq!(attempts[0].result, AttemptResult::Delivered);
    assert!(s.deliver_due(t2 + 100_000).await.unwrap().is_empty());

    let requests = world.https().requests("reports.example.com");
    assert_eq!(requests.len(), 3);
    let last = requests.last().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/tlsrpt");
    assert_eq!(last.header("content-type"), Some("application/tlsrpt+gzip"));
    assert_eq!(Report::from_json(&gunzip(&last.body)).unwrap(), report);
    let entry = &s.outbox().entries().unwrap()[0];
    assert_eq!((entry.attempts, entry.delivered_at), (3, Some(t2)));
    let log = s.outbox().log_entries().unwrap();
    let outcomes: Vec<&str> = log.iter().map(|l| l.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_5_3_retries_stop_after_24_hours() {
    let world = World::builder().start();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=https://reports.example.com/"]],
    );
    world
        .https()
        .set("reports.example.com", HostBehavior::status(503));
    let dir = tempfile::tempdir().unwrap();
    let s = sender(&world, None, dir.path());
    s.ingest_file(&write_events(dir.path(), EVENTS), now())
        .unwrap();
    s.generate(now(), None, false).await.unwrap();
    let mut t = now();
    let mut runs = 0;
    loop {
        let attempts = s.deliver_due(t).await.unwrap();
        runs += 1;
        match &attempts[0].result {
            AttemptResult::Retry { at, .. } => t = *at,
            AttemptResult::Failed { error } => {
                assert!(error.contains("24 hours"), "{error}");
                break;
            }
            AttemptResult::Delivered => panic!("delivered to a 503"),
        }
        assert!(runs < 30);
    }
    assert!(t <= now() + 24 * 3600);
    assert!(s.deliver_due(t + 86_400 * 2).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_3_both_rua_kinds_and_no_record() {
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
        .set("reports.example.com", HostBehavior::status(202));
    let dir = tempfile::tempdir().unwrap();
    let lines = format!(
        "{EVENTS}{}\n",
        r#"{"time":"2024-05-01T12:00:00Z","policy_domain":"norecord.example","policy":{"type":"no-policy-found"},"result":"success"}"#
    );
    let s = sender(&world, Some(relay.addr().to_string()), dir.path());
    s.ingest_file(&write_events(dir.path(), &lines), now())
        .unwrap();
    let generated = s.generate(now(), None, false).await.unwrap();
    assert_eq!(generated.len(), 2);
    let none = generated
        .iter()
        .find(|g| g.policy_domain == "norecord.example")
        .unwrap();
    assert!(none.ruas.is_empty());
    assert!(
        none.note
            .as_deref()
            .unwrap_or("")
            .contains("_smtp._tls.norecord.example")
    );
    let attempts = s.deliver_due(now()).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|a| a.result == AttemptResult::Delivered)
    );
    assert_eq!(relay.messages().len(), 1);
    assert_eq!(world.https().requests("reports.example.com").len(), 1);
    let log = s.outbox().log_entries().unwrap();
    assert!(
        log.iter()
            .any(|l| l.outcome == "no-record" && l.policy_domain == "norecord.example")
    );
    // The relay was only asked about example.com.
    assert!(
        relay
            .messages()
            .iter()
            .all(|m| m.rcpt_to == ["tlsrpt@example.com"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_3_certificate_errors_only_ignored_when_asked() {
    let world = World::builder().start();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=https://reports.example.com/"]],
    );
    world.https().set(
        "reports.example.com",
        HostBehavior::status(200).cert(mta_sts_testkit::CertKind::Expired),
    );
    let dir = tempfile::tempdir().unwrap();
    let s = sender(&world, None, dir.path());
    s.ingest_file(&write_events(dir.path(), EVENTS), now())
        .unwrap();
    s.generate(now(), None, false).await.unwrap();
    let attempts = s.deliver_due(now()).await.unwrap();
    assert!(matches!(attempts[0].result, AttemptResult::Retry { .. }));
}
