//! Testing mode that reports (`[tlsrpt] probe_testing`, RFC 8461 §5 "testing", RFC 8460
//! §4.3.1) against a testkit world: real DNS, the HTTPS policy host, SMTP servers with
//! STARTTLS and certificates from the test CA. The daemon answers a `mode: testing` domain
//! with the testing-mode reply (`NOTFOUND `: Postfix delivers), probes its MX hosts in the
//! background at most once per `probe_interval`, and the report it sends for that UTC day
//! carries what `enforce` would have failed on, with `policy-type: sts`, the policy string
//! and the RFC 8460 result type. The clock is injected: it starts at the real time (the
//! testkit's certificates are valid now) and jumps past 00:00 UTC for the report.

use crate::common;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Client;
use mta_sts_daemon::app::Daemon;
use mta_sts_daemon::config::Config;
use mta_sts_net::{Clock, ManualClock, SystemClock};
use mta_sts_testkit::{CertKind, HostBehavior, SmtpConfig, World};
use tlsrpt::{PolicyType, Report, ResultType};

const DAY: u64 = 86_400;
const REPORTS: &str = "reports.example.com";
const RUA: &str = "v=TLSRPTv1; rua=https://reports.example.com/tlsrpt";

/// `testing.test` (one MX, wrong-name certificate), `mixed.test` (a valid MX, an expired
/// one, and one that offers no STARTTLS and is not in the policy), `enforce.test` (never
/// probed: its policy is enforced by Postfix itself).
fn world() -> World {
    World::builder()
        .default_ttl(0)
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mx.testing.test"]).tlsrpt(RUA)
        })
        .domain("mixed.test", |d| {
            d.mta_sts("testing", &["mx1.mixed.test", "mx2.mixed.test"])
                .mx(30, "other.mixed.test")
                .tlsrpt(RUA)
        })
        .domain("enforce.test", |d| d.enforce().tlsrpt(RUA))
        .start()
}

/// The daemon's configuration: the world's DNS, CA and policy host; every MX host's port
/// 25 sent to its testkit SMTP server with `[resolver] connect_to`.
fn config(world: &World, mx: &[(&str, u16)], dir: &Path) -> Config {
    let mut connect = vec![world.connect_to_any()];
    connect.extend(
        mx.iter()
            .map(|(host, port)| format!("{host}:25:127.0.0.1:{port}")),
    );
    let connect: Vec<String> = connect.iter().map(|c| format!("\"{c}\"")).collect();
    let text = format!(
        r#"
[socketmap]
listen = "127.0.0.1:0"
shutdown_timeout = "3s"
[http]
listen = "127.0.0.1:0"
[resolver]
nameservers = ["{dns}"]
ca_file = "{ca}"
connect_to = [{connect}]
timeout = "3s"
dane_require_ad = false
[cache]
store = "memory"
[tlsrpt]
events = "{events}"
probe_testing = true
probe_interval = "1h"
probe_concurrency = 2
probe_timeout = "5s"
probe_ehlo = "sender.test"
[tlsrpt.send]
db = "{db}"
submitter = "sender.test"
organization = "Sender Org"
jitter = "0s"
retry_interval = "100ms"
timeout = "5s"
"#,
        dns = world.dns_addr(),
        ca = world.ca_file().display(),
        connect = connect.join(", "),
        events = dir.join("events.jsonl").display(),
        db = dir.join("reports.db").display(),
    );
    Config::parse(&text).expect("test config")
}

async fn query(daemon: &Daemon, request: &str) -> String {
    let mut client = Client::new(daemon.socketmap_listen(), 4096).await;
    client.query(request).await.expect("a reply")
}

/// The probe lines of the events file, after a flush.
async fn probe_lines(daemon: &Daemon, dir: &Path) -> Vec<serde_json::Value> {
    daemon.core().tlsrpt().flush().await;
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .filter(|v| v["source"] == "probe")
        .collect()
}

/// Polls `f` until it is true (15 s at most).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn result_name(r: &ResultType) -> String {
    r.as_str().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8461_5_testing_domain_is_delivered_probed_once_per_interval_and_reported() {
    let world = world();
    world.https().set(REPORTS, HostBehavior::status(200));
    let start = |host: &str, config: SmtpConfig| {
        world
            .start_smtp(config)
            .unwrap_or_else(|e| panic!("smtp {host}: {e}"))
    };
    let bad = start(
        "mx.testing.test",
        SmtpConfig::new("mx.testing.test").starttls(CertKind::WrongName),
    );
    let mx1 = start(
        "mx1.mixed.test",
        SmtpConfig::new("mx1.mixed.test").starttls(CertKind::Valid),
    );
    let mx2 = start(
        "mx2.mixed.test",
        SmtpConfig::new("mx2.mixed.test").starttls(CertKind::Expired),
    );
    let other = start("other.mixed.test", SmtpConfig::new("other.mixed.test"));
    let enforced = start(
        "mail.enforce.test",
        SmtpConfig::new("mail.enforce.test").starttls(CertKind::Valid),
    );
    let dir = tempfile::tempdir().unwrap();
    let mx: Vec<(&str, u16)> = [
        ("mx.testing.test", &bad),
        ("mx1.mixed.test", &mx1),
        ("mx2.mixed.test", &mx2),
        ("other.mixed.test", &other),
        ("mail.enforce.test", &enforced),
    ]
    .iter()
    .map(|(h, s)| (*h, s.addr().port()))
    .collect();
    // The real time, so the test CA's certificates are judged as valid now.
    // The clock moves an hour on, then past the next 00:00 UTC, where the day's reports are
    // made: starting within that hour of midnight, the reports came before the second
    // probes and the test failed whenever it ran after 23:00 UTC. So start at 22:00 at the
    // latest.
    let real = SystemClock.now();
    let t0 = real - (real % DAY).saturating_sub(DAY - 2 * 3600);
    let now = Arc::new(ManualClock::new(t0));
    let clock: Arc<dyn Clock> = now.clone();
    let daemon = Daemon::start_with_clock(config(&world, &mx, dir.path()), clock)
        .await
        .expect("daemon starts");
    let metrics = Arc::clone(daemon.core().metrics());
    let started = || metrics.tlsrpt_probes_started.load(Ordering::Relaxed);

    // The testing-mode reply: Postfix delivers whatever the MX presents (RFC 8461 §5).
    assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
    // The enforce domain gets its policy and is never probed.
    assert!(
        query(&daemon, "postfix enforce.test")
            .await
            .starts_with("OK secure match=mail.enforce.test"),
    );
    let (d, path) = (&daemon, dir.path());
    eventually("the probe of testing.test recorded", move || async move {
        !probe_lines(d, path).await.is_empty()
    })
    .await;
    assert_eq!(started(), 1, "one probe, for the testing domain only");
    assert_eq!(bad.sessions().len(), 1, "one SMTP session with its MX");
    assert!(
        enforced.sessions().is_empty(),
        "the enforce MX is not probed"
    );

    let lines = probe_lines(&daemon, dir.path()).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["policy_domain"], "testing.test");
    assert_eq!(line["policy"]["type"], "sts");
    assert_eq!(
        line["policy"]["string"],
        serde_json::json!([
            "version: STSv1",
            "mode: testing",
            "mx: mx.testing.test",
            "max_age: 86400"
        ])
    );
    assert_eq!(
        line["policy"]["mx_host"],
        serde_json::json!(["mx.testing.test"])
    );
    assert_eq!(line["result"], "certificate-host-mismatch");
    assert_eq!(line["receiving_mx_hostname"], "mx.testing.test");
    assert_eq!(line["receiving_ip"], "127.0.0.1");
    assert_eq!(line["sending_mta_ip"], "127.0.0.1");
    assert_eq!(line["failure_reason_code"], "certificate-name-mismatch");

    // Within the interval: answered again, no second probe.
    for _ in 0..3 {
        assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(started(), 1, "no second probe within probe_interval");
    assert_eq!(bad.sessions().len(), 1);

    // The interval over: the next lookup probes again. The other domain's MX hosts are
    // probed on its first lookup.
    now.set(t0 + 3601);
    assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
    assert_eq!(query(&daemon, "postfix mixed.test").await, "NOTFOUND ");
    eventually("both probes recorded", move || async move {
        probe_lines(d, path).await.len() >= 5
    })
    .await;
    assert_eq!(started(), 3);
    assert_eq!(bad.sessions().len(), 2);
    for server in [&mx1, &mx2, &other] {
        assert_eq!(server.sessions().len(), 1, "{}", server.hostname());
    }
    // No message was ever sent by a probe.
    assert!(bad.messages().is_empty() && mx1.messages().is_empty());

    // Past 00:00 UTC the schedule generates the day's reports and posts them.
    let midnight = (t0 / DAY + 1) * DAY;
    daemon.core().tlsrpt().flush().await;
    now.set(midnight + 60);
    let w = &world;
    eventually("both reports POSTed", move || async move {
        w.https().requests(REPORTS).len() >= 2
    })
    .await;
    let mut reports: Vec<Report> = world
        .https()
        .requests(REPORTS)
        .iter()
        .map(|r| Report::from_json(&gunzip(&r.body)).expect("a valid report"))
        .collect();
    reports.sort_by(|a, b| a.report_id.cmp(&b.report_id));
    assert_eq!(reports.len(), 2, "no report for the enforce domain");

    // mixed.test: the valid MX is one successful session; the expired one and the MX
    // outside the policy are failures enforce would have deferred.
    let mixed = &reports[0];
    assert!(
        mixed.report_id.ends_with("_mixed.test@sender.test"),
        "{}",
        mixed.report_id
    );
    assert_eq!(mixed.policies.len(), 1);
    let policy = &mixed.policies[0];
    assert_eq!(policy.policy.policy_type, PolicyType::Sts);
    assert_eq!(policy.policy.policy_domain, "mixed.test");
    assert_eq!(policy.summary.total_successful_session_count, 1);
    assert_eq!(policy.summary.total_failure_session_count, 2);
    let mut failures: Vec<(String, Option<String>, Option<String>)> = policy
        .failure_details
        .iter()
        .map(|f| {
            (
                result_name(&f.result_type),
                f.receiving_mx_hostname.clone(),
                f.failure_reason_code.clone(),
            )
        })
        .collect();
    failures.sort();
    assert_eq!(
        failures,
        [
            (
                "certificate-expired".to_owned(),
                Some("mx2.mixed.test".to_owned()),
                Some("certificate-expired".to_owned())
            ),
            (
                "certificate-host-mismatch".to_owned(),
                Some("other.mixed.test".to_owned()),
                Some("mx-not-in-policy".to_owned())
            ),
        ]
    );

    // testing.test: two probes, two failed sessions, policy-type sts with the policy.
    let testing = &reports[1];
    assert!(testing.report_id.ends_with("_testing.test@sender.test"));
    assert_eq!(testing.organization_name, "Sender Org");
    assert_eq!(testing.policies.len(), 1);
    let policy = &testing.policies[0];
    assert_eq!(policy.policy.policy_type, PolicyType::Sts);
    assert_eq!(
        policy.policy.policy_string,
        [
            "version: STSv1",
            "mode: testing",
            "mx: mx.testing.test",
            "max_age: 86400"
        ]
    );
    assert_eq!(policy.policy.mx_host, ["mx.testing.test"]);
    assert_eq!(policy.summary.total_successful_session_count, 0);
    assert_eq!(policy.summary.total_failure_session_count, 2);
    assert_eq!(policy.failure_details.len(), 1);
    let detail = &policy.failure_details[0];
    assert_eq!(detail.result_type, ResultType::CertificateHostMismatch);
    assert_eq!(detail.failed_session_count, 2);
    assert_eq!(
        detail.receiving_mx_hostname.as_deref(),
        Some("mx.testing.test")
    );
    assert_eq!(detail.sending_mta_ip.as_deref(), Some("127.0.0.1"));

    let text = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = daemon.http_addr().expect("tcp http");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    assert!(
        text.contains("mta_sts_tlsrpt_probes_total{outcome=\"started\"} 3"),
        "{text}"
    );
    assert!(text.contains("mta_sts_tlsrpt_events_total{source=\"probe\"} 5"));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_testing_off_by_default_probes_nothing() {
    let world = world();
    let bad = world
        .start_smtp(SmtpConfig::new("mx.testing.test").starttls(CertKind::WrongName))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(
        &world,
        &[("mx.testing.test", bad.addr().port())],
        dir.path(),
    );
    config.tlsrpt.probe_testing = false;
    let daemon = Daemon::start(config).await.expect("daemon starts");
    assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(probe_lines(&daemon, dir.path()).await.is_empty());
    assert!(bad.sessions().is_empty());
    assert_eq!(
        daemon
            .core()
            .metrics()
            .tlsrpt_probes_started
            .load(Ordering::Relaxed),
        0
    );
    daemon.shutdown().await;
}

/// The probe is off the answering path: an MX that accepts the connection and never greets
/// holds its probe until `probe_timeout`, while the query was answered at once; a probe
/// that saw no TLS session (here: a time-out before the greeting) records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8461_5_the_answer_never_waits_for_the_probe_and_a_silent_mx_is_not_reported() {
    let world = world();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            accepted.lock().unwrap().push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&world, &[("mx.testing.test", port)], dir.path());
    config.tlsrpt.probe_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(config).await.expect("daemon starts");
    let metrics = Arc::clone(daemon.core().metrics());

    // The first query fetches the policy; the second is answered from the cache.
    for _ in 0..2 {
        let asked = std::time::Instant::now();
        assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "answered in {:?}",
            asked.elapsed()
        );
    }
    let held_now = Arc::clone(&held);
    eventually("the probe connected", move || {
        let held = Arc::clone(&held_now);
        async move { !held.lock().unwrap().is_empty() }
    })
    .await;
    assert_eq!(metrics.tlsrpt_probes_started.load(Ordering::Relaxed), 1);
    // Past the probe's time-out: no TLS session took place, nothing is reported.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(probe_lines(&daemon, dir.path()).await.is_empty());
    assert_eq!(held.lock().unwrap().len(), 1, "one probe connection");
    daemon.shutdown().await;
}
