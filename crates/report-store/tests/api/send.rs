//! Generating and delivering reports (RFC 8460 §4, §5) against real parts: testkit DNS for
//! `_smtp._tls`, the testkit HTTPS host as an `https:` rua, a testkit SMTP server as relay.
//! Time is driven through `now`, never by sleeping.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mta_sts_dkim::DkimSigner;
use mta_sts_net::ConnectTo;
use mta_sts_net::dns::{Dns, DnsConfig};
use mta_sts_report_store::deliver::{DeliveryConfig, read_pem_certs};
use mta_sts_report_store::intake::{Limits, parse_input};
use mta_sts_report_store::outbox::{AttemptResult, Outbox};
use mta_sts_report_store::send::{SendConfig, Sender, backoff};
use mta_sts_testkit::{CertKind, HostBehavior, SmtpConfig, World};
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
    sender_with(world, relay, dir, None, Vec::new())
}

fn sender_with(
    world: &World,
    relay: Option<String>,
    dir: &Path,
    dkim: Option<DkimSigner>,
    extra_connect_to: Vec<ConnectTo>,
) -> Sender {
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
                connect_to: [world.connect_to_any().parse().unwrap()]
                    .into_iter()
                    .chain(extra_connect_to)
                    .collect(),
                relay_starttls: dkim.is_some(),
                timeout: Duration::from_secs(5),
                ..DeliveryConfig::default()
            },
            dkim: dkim.map(Arc::new),
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

/// Longer than our ~120-line rule, on purpose: one events file followed through ingestion,
/// generation, mail through the relay, re-import into the store, appends and rotation, each
/// step using the state the previous one left.
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

    // ... and through the sink into the store, in the same SQLite file as the outbox.
    let store = std::sync::Arc::new(
        mta_sts_report_store::SqliteStore::open(&dir.path().join("reports.db")).unwrap(),
    );
    let sink = mta_sts_report_store::ReportSink::new(store.clone(), Limits::default());
    let outcome = sink
        .accept(&m.data, None, "mail", 1_700_000_000)
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        mta_sts_report_store::InputOutcome::Accepted { .. }
    ));
    let summary = mta_sts_report_store::ReportStore::summary(
        store.as_ref(),
        &mta_sts_report_store::SummaryFilter::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            summary[0].day.as_str(),
            summary[0].successful,
            summary[0].failed
        ),
        ("2024-05-01", 5, 2)
    );

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

    // Rotation: a new file under the same name (another inode) is read from its start, even
    // when it is already longer than the consumed offset.
    drop(file);
    std::fs::rename(&events, dir.path().join("events.jsonl.1")).unwrap();
    let bigger = format!("{EVENTS}{EVENTS}{EVENTS}");
    write_events(dir.path(), &bigger);
    assert_eq!(s.ingest_file(&events, now()).unwrap().events, 9);
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

/// A fresh Ed25519 key as PKCS#8 PEM, and its raw public key.
fn ed25519_pem() -> (String, Vec<u8>) {
    use ring::signature::KeyPair;
    let pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\r\n{}\r\n-----END PRIVATE KEY-----\r\n",
        tlsrpt::mail::base64_lines(pkcs8.as_ref())
    );
    (pem, pair.public_key().as_ref().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_5_3_dkim_signed_over_starttls() {
    let world = World::builder().start();
    let relay = world
        .start_smtp(SmtpConfig::new("relay.sender.test").starttls(CertKind::Valid))
        .unwrap();
    world.dns().set_txt(
        "_smtp._tls.example.com",
        &[&["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"]],
    );
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = ed25519_pem();
    let signer = DkimSigner::from_pem(pem.as_bytes(), "sender.test", "tlsrpt").unwrap();
    let relay_override: ConnectTo =
        format!("relay.sender.test:25:127.0.0.1:{}", relay.addr().port())
            .parse()
            .unwrap();
    let s = sender_with(
        &world,
        Some("relay.sender.test:25".into()),
        dir.path(),
        Some(signer),
        vec![relay_override],
    );
    s.ingest_file(&write_events(dir.path(), EVENTS), now())
        .unwrap();
    s.generate(now(), None, false).await.unwrap();
    let attempts = s.deliver_due(now()).await.unwrap();
    assert_eq!(attempts[0].result, AttemptResult::Delivered, "{attempts:?}");
    let messages = relay.messages();
    assert!(messages[0].tls.is_some(), "STARTTLS was used");
    let data = String::from_utf8(messages[0].data.clone()).unwrap();
    assert!(data.starts_with(
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=sender.test; s=tlsrpt;"
    ));
    let header_end = data.find("\r\n\r\n").unwrap();
    let dkim_header = &data[..data.find("\r\nFrom:").unwrap()];
    assert!(dkim_header.contains("tls-report-domain:tls-report-submitter"));
    assert!(!dkim_header.contains("l="));
    assert!(header_end > dkim_header.len());
    // Still a valid report mail for the intake.
    let reimported = parse_input(data.as_bytes(), None, &Limits::default()).unwrap();
    assert_eq!(
        reimported[0].report.report_id,
        "2024-05-01_example.com@sender.test"
    );

    // Independent verification with dkimpy, when installed (python3-dkim, python3-nacl).
    let key_record = format!(
        "v=DKIM1; k=ed25519; s=tlsrpt; p={}",
        tlsrpt::mail::base64_lines(&public)
    );
    let script = r#"
import sys, dkim
msg = open(sys.argv[1], 'rb').read()
rec = open(sys.argv[2], 'rb').read()
d = dkim.DKIM(msg, tlsrpt='strict')
ok = d.verify(dnsfunc=lambda name, timeout=5: rec)
sys.exit(0 if ok else 1)
"#;
    let msg_path = dir.path().join("signed.eml");
    let rec_path = dir.path().join("key.txt");
    std::fs::write(&msg_path, &messages[0].data).unwrap();
    std::fs::write(&rec_path, key_record).unwrap();
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import dkim, nacl"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if let Some(python) = python {
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .arg(&msg_path)
            .arg(&rec_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dkimpy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("dkimpy verified the signature");
    }
}

/// RSA keys: ring cannot generate them, so this runs where `openssl` is installed, and is
/// verified with dkimpy where that is installed too.
#[test]
fn rfc6376_rsa_sha256_signature_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa.pem");
    let generated = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output();
    if !generated.is_ok_and(|o| o.status.success()) {
        return;
    }
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let signer = DkimSigner::from_pem(&std::fs::read(&key).unwrap(), "sender.test", "rsa").unwrap();
    assert_eq!(signer.algorithm(), "rsa-sha256");
    let message = b"From: a@sender.test\r\nTo: b@example.com\r\nSubject:  x \r\n y\r\nTLS-Report-Domain: example.com\r\nTLS-Report-Submitter: sender.test\r\n\r\nbody  \r\n\r\n";
    let signed = signer.sign(message, 1_714_611_600).unwrap();
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        tlsrpt::mail::base64_lines(&public).replace("\r\n", "")
    );
    std::fs::write(dir.path().join("m.eml"), &signed).unwrap();
    std::fs::write(dir.path().join("k.txt"), record).unwrap();
    let script = "import sys, dkim\nm=open(sys.argv[1],'rb').read()\nk=open(sys.argv[2],'rb').read()\nsys.exit(0 if dkim.verify(m, dnsfunc=lambda n, timeout=5: k) else 1)";
    for python in ["python3", "/usr/bin/python3"] {
        let ok = std::process::Command::new(python)
            .args(["-c", "import dkim"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            let out = std::process::Command::new(python)
                .args(["-c", script])
                .arg(dir.path().join("m.eml"))
                .arg(dir.path().join("k.txt"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("dkimpy verified the RSA signature");
            return;
        }
    }
}
