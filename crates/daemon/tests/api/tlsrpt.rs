//! TLS-RPT (RFC 8460) from the running daemon against a testkit world: discovery failures
//! counted per socketmap query and flushed as event lines, queries never counted as
//! successful sessions, the libtlsrpt
//! collector on a real Unix datagram socket, and the send schedule across UTC midnight
//! delivering to the testkit HTTPS host. Time is an injected clock; nothing waits a day.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Client;
use mta_sts_daemon::app::Daemon;
use mta_sts_daemon::config::Config;
use mta_sts_net::dns::{Dns, DnsConfig};
use mta_sts_net::{Clock, ManualClock};
use mta_sts_report_store::deliver::{DeliveryConfig, read_pem_certs};
use mta_sts_report_store::outbox::Outbox;
use mta_sts_report_store::send::{SendConfig, Sender};
use mta_sts_testkit::{CertKind, HostBehavior, World};
use tlsrpt::aggregate::Submitter;
use tlsrpt::{Report, validate_report_json};

/// 2024-05-01T12:00:00Z.
const NOON: i64 = 1_714_564_800;
const DAY: i64 = 86_400;

fn world() -> World {
    World::builder()
        .default_ttl(0)
        .domain("good.test", |d| {
            d.enforce()
                .tlsrpt("v=TLSRPTv1; rua=https://reports.example.com/tlsrpt")
        })
        .domain("badcert.test", |d| {
            d.sts_id("1")
                .policy_behavior(
                    HostBehavior::policy(
                        "version: STSv1\nmode: enforce\nmx: mail.badcert.test\nmax_age: 86400\n",
                    )
                    .cert(CertKind::WrongName),
                )
                .tlsrpt("v=TLSRPTv1; rua=https://reports.example.com/tlsrpt")
        })
        .domain("nosts.test", |d| d.mx(10, "mail.nosts.test"))
        .start()
}

fn config(world: &World, tlsrpt: &str) -> Config {
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
connect_to = ["{connect}"]
timeout = "3s"
dane_require_ad = false
[cache]
store = "memory"
{tlsrpt}
"#,
        dns = world.dns_addr(),
        ca = world.ca_file().display(),
        connect = world.connect_to_any(),
    );
    Config::parse(&text).expect("test config")
}

/// A clock the test moves.
fn clock(start: i64) -> (Arc<ManualClock>, Arc<dyn Clock>) {
    let now = Arc::new(ManualClock::new(start as u64));
    (Arc::clone(&now), now)
}

async fn query(daemon: &Daemon, request: &str) -> String {
    let mut client = Client::new(daemon.socketmap_listen(), 4096).await;
    client.query(request).await.expect("a reply")
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Polls `f` until it is true (10 s at most).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The generating side as `mta-sts report send` builds it, over `db`.
fn sender(world: &World, db: &Path) -> Sender {
    let dns = Dns::new(&DnsConfig {
        nameservers: vec![world.dns_addr()],
        timeout: Duration::from_secs(3),
        cache_size: 0,
    })
    .unwrap();
    Sender::new(
        Outbox::open(db).unwrap(),
        dns,
        SendConfig {
            submitter: Submitter {
                organization_name: "Sender Org".into(),
                contact_info: "tlsrpt@sender.test".into(),
                domain: "sender.test".into(),
            },
            from: "tlsrpt@sender.test".into(),
            delivery: DeliveryConfig {
                extra_roots: read_pem_certs(world.ca_pem().as_bytes()).unwrap(),
                connect_to: vec![world.connect_to_any().parse().unwrap()],
                timeout: Duration::from_secs(5),
                ..DeliveryConfig::default()
            },
            dkim: None,
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

async fn metrics_text(daemon: &Daemon) -> String {
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
}

fn events_path(dir: &Path) -> PathBuf {
    dir.join("events.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_4_3_2_policy_discovery_failures_counted_per_query() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let events = events_path(dir.path());
    let (_now, clock) = clock(NOON);
    let daemon = Daemon::start_with_clock(
        config(
            &world,
            &format!("[tlsrpt]\nevents = \"{}\"", events.display()),
        ),
        clock,
    )
    .await
    .expect("daemon starts");

    for _ in 0..3 {
        assert_eq!(query(&daemon, "postfix badcert.test").await, "NOTFOUND ");
    }
    // Not failures: no policy published; a policy applied (a query is no session).
    assert_eq!(query(&daemon, "postfix nosts.test").await, "NOTFOUND ");
    assert!(
        query(&daemon, "postfix good.test")
            .await
            .starts_with("OK secure")
    );
    daemon.core().tlsrpt().flush().await;

    let written = lines(&events);
    assert_eq!(written.len(), 1, "{written:?}");
    let line = &written[0];
    assert_eq!(line["policy_domain"], "badcert.test");
    assert_eq!(line["policy"]["type"], "sts");
    assert_eq!(line["result"], "sts-webpki-invalid");
    assert_eq!(line["failure_reason_code"], "certificate-wrong-name");
    assert_eq!(line["count"], 3);
    assert_eq!(line["source"], "daemon");
    // Stamped within the interval that ended at the flush (the clock stands still here).
    assert_eq!(line["time"], "2024-05-01T12:00:00Z");

    // A second flush writes only what is new.
    daemon.core().tlsrpt().flush().await;
    assert_eq!(lines(&events).len(), 1);

    // The events file makes a valid RFC 8460 §4.4 report (what `report send` does).
    let s = sender(&world, &dir.path().join("reports.db"));
    let ingested = s.ingest_file(&events, NOON + DAY).unwrap();
    assert_eq!((ingested.events, ingested.refused.len()), (1, 0));
    let generated = s.generate(NOON + DAY, None, true).await.unwrap();
    assert_eq!(generated.len(), 1);
    let report = &generated[0].report;
    assert_eq!(report.report_id, "2024-05-01_badcert.test@sender.test");
    let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(validate_report_json(&value).is_empty(), "{value}");
    let policy = &report.policies[0];
    assert_eq!(policy.policy.policy_domain, "badcert.test");
    assert_eq!(policy.summary.total_failure_session_count, 3);
    assert_eq!(policy.summary.total_successful_session_count, 0);
    assert_eq!(policy.failure_details.len(), 1);
    assert_eq!(policy.failure_details[0].failed_session_count, 3);
    assert_eq!(
        policy.failure_details[0].result_type.as_str(),
        "sts-webpki-invalid"
    );

    let metrics = metrics_text(&daemon).await;
    assert!(
        metrics.contains("mta_sts_tlsrpt_events_total{source=\"daemon\"} 1"),
        "{metrics}"
    );
    daemon.shutdown().await;
}

/// Issue 18.3: a socketmap query is not a session (Postfix asks before it connects, and
/// `postmap -q` asks without connecting), so a query that applied a policy is never
/// written as a successful session, and `count_applied = true`, which did that, is refused
/// at load, at start and at reload alike, naming the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_4_queries_are_never_successes_and_count_applied_is_refused() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let events = events_path(dir.path());
    let (_now, clock) = clock(NOON);
    let base = format!("[tlsrpt]\nevents = \"{}\"\n", events.display());
    let daemon = Daemon::start_with_clock(config(&world, &base), clock)
        .await
        .expect("daemon starts");

    // The first query may take the full lookup, the others the warm path: none counts.
    for _ in 0..3 {
        assert!(
            query(&daemon, "postfix good.test")
                .await
                .starts_with("OK secure")
        );
    }
    daemon.core().tlsrpt().flush().await;
    assert!(lines(&events).is_empty(), "{:?}", lines(&events));

    let err = Config::parse(&format!("{base}count_applied = true\n"))
        .expect_err("count_applied = true is refused")
        .to_string();
    assert!(
        err.contains("not an SMTP session") && err.contains("[tlsrpt] socket"),
        "{err}"
    );
    // `false` (files written for earlier versions) still loads.
    assert!(Config::parse(&format!("{base}count_applied = false\n")).is_ok());

    daemon.shutdown().await;
    assert!(lines(&events).is_empty(), "{:?}", lines(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_4_collector_socket_takes_libtlsrpt_datagrams() {
    use std::os::unix::fs::PermissionsExt;
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let events = events_path(dir.path());
    let socket = dir.path().join("run/tlsrpt.sock");
    let (now, clock) = clock(NOON);
    let daemon = Daemon::start_with_clock(
        config(
            &world,
            &format!(
                "[tlsrpt]\nevents = \"{}\"\nsocket = \"{}\"\nsocket_mode = \"0620\"\n",
                events.display(),
                socket.display()
            ),
        ),
        clock,
    )
    .await
    .expect("daemon starts");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o620);

    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    // As Postfix 3.10 / libtlsrpt sends it: one delivery request, a certificate-expired
    // failure at the first MX, then success at the second.
    let datagram = r#"{"d":"good.test","pr":"v=TLSRPTv1; rua=https://reports.example.com/tlsrpt","policies":[{"policy-type":2,"policy-domain":"good.test","policy-string":["version: STSv1","mode: enforce","mx: mail.good.test","max_age: 86400"],"mx-host":["mail.good.test"],"failure-details":[{"c":204,"s":"192.0.2.1","n":"mail.good.test","r":"127.0.0.1","a":"https://good.test/tls"}],"t":1,"f":0}]}"#;
    client.send_to(datagram.as_bytes(), &socket).unwrap();
    eventually("two event lines", || lines(&events).len() == 2).await;
    // Arrival time is the stamp; a later datagram gets a later one.
    now.set((NOON + 3600) as u64);
    // Our own event format works on the socket too (here without a time: stamped).
    let native = r#"{"policy_domain":"good.test","policy":{"type":"sts","string":["version: STSv1","mode: enforce","mx: mail.good.test","max_age: 86400"],"mx_host":["mail.good.test"]},"result":"success","count":4}"#;
    client.send_to(native.as_bytes(), &socket).unwrap();
    // Garbage is counted and dropped; the daemon keeps answering.
    client.send_to(b"\xff\xfe not json", &socket).unwrap();
    client
        .send_to(br#"{"d":"x","policies":[{"policy-type":7}]}"#, &socket)
        .unwrap();
    eventually("three event lines", || lines(&events).len() == 3).await;
    eventually("invalid datagrams counted", || {
        daemon
            .core()
            .metrics()
            .tlsrpt_datagrams_invalid
            .load(Ordering::Relaxed)
            == 2
    })
    .await;
    assert!(
        query(&daemon, "postfix good.test")
            .await
            .starts_with("OK secure")
    );
    let metrics = metrics_text(&daemon).await;
    assert!(
        metrics.contains("mta_sts_tlsrpt_datagrams_received_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mta_sts_tlsrpt_datagrams_invalid_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mta_sts_tlsrpt_events_total{source=\"socket\"} 3"),
        "{metrics}"
    );

    let written = lines(&events);
    assert_eq!(written[0]["time"], "2024-05-01T12:00:00Z");
    assert_eq!(written[0]["result"], "certificate-expired");
    assert_eq!(
        written[0]["additional_information"],
        "https://good.test/tls"
    );
    assert_eq!(written[0]["source"], "socket");
    assert_eq!(written[1]["result"], "success");
    assert_eq!(written[2]["time"], "2024-05-01T13:00:00Z");

    let s = sender(&world, &dir.path().join("reports.db"));
    s.ingest_file(&events, NOON + DAY).unwrap();
    let generated = s.generate(NOON + DAY, None, true).await.unwrap();
    let report = &generated[0].report;
    let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(validate_report_json(&value).is_empty(), "{value}");
    assert_eq!((report.total_successful(), report.total_failed()), (5, 1));
    let detail = &report.policies[0].failure_details[0];
    assert_eq!(detail.result_type.as_str(), "certificate-expired");
    assert_eq!(
        detail.receiving_mx_hostname.as_deref(),
        Some("mail.good.test")
    );
    assert_eq!(
        detail.additional_information.as_deref(),
        Some("https://good.test/tls")
    );

    daemon.shutdown().await;
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_4_1_schedule_reports_the_day_after_utc_midnight_and_delivers() {
    let world = world();
    world
        .https()
        .set("reports.example.com", HostBehavior::status(200));
    let dir = tempfile::tempdir().unwrap();
    let events = events_path(dir.path());
    let db = dir.path().join("reports.db");
    let (now, clock) = clock(NOON);
    let daemon = Daemon::start_with_clock(
        config(
            &world,
            &format!(
                r#"[tlsrpt]
events = "{}"
[tlsrpt.send]
db = "{}"
submitter = "sender.test"
organization = "Sender Org"
jitter = "0s"
retry_interval = "100ms"
timeout = "5s"
"#,
                events.display(),
                db.display()
            ),
        ),
        clock,
    )
    .await
    .expect("daemon starts");

    for _ in 0..3 {
        assert_eq!(query(&daemon, "postfix badcert.test").await, "NOTFOUND ");
    }
    // Let a few schedule ticks pass within the day: nothing is reported yet (RFC 8460
    // §4.1: a report covers a full UTC day).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(world.https().requests("reports.example.com").is_empty());

    // The wall-clock-aligned flush at 00:00 UTC writes the day's last counts (done here by
    // hand, as the injected clock jumps); past midnight the scheduler ingests, generates and
    // delivers.
    daemon.core().tlsrpt().flush().await;
    now.set((NOON + DAY / 2 + 60) as u64);
    eventually("the report POSTed", || {
        !world.https().requests("reports.example.com").is_empty()
    })
    .await;
    let requests = world.https().requests("reports.example.com");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/tlsrpt");
    assert_eq!(
        request.header("content-type"),
        Some("application/tlsrpt+gzip")
    );
    let report = Report::from_json(&gunzip(&request.body)).unwrap();
    assert_eq!(report.report_id, "2024-05-01_badcert.test@sender.test");
    assert_eq!(report.organization_name, "Sender Org");
    assert_eq!(report.total_failed(), 3);
    assert_eq!(
        report.policies[0].failure_details[0].failed_session_count,
        3
    );

    let m = daemon.core().metrics();
    eventually("delivery counted", || {
        m.tlsrpt_deliveries_ok.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(m.tlsrpt_reports_generated.load(Ordering::Relaxed), 1);
    // Later ticks neither report the day again nor redeliver.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(world.https().requests("reports.example.com").len(), 1);
    daemon.shutdown().await;

    // The delivery is in the outbox log, as `mta-sts report send --log` shows it.
    let log = Outbox::open(&db).unwrap().log_entries().unwrap();
    assert!(
        log.iter()
            .any(|l| l.outcome == "delivered" && l.policy_domain == "badcert.test"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_refuses_a_path_in_use() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tlsrpt.sock");
    // Somebody (tlsrpt-collectd, say) already receives there.
    let _other = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    let err = Daemon::start(config(
        &world,
        &format!("[tlsrpt]\nsocket = \"{}\"\n", socket.display()),
    ))
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("another process"), "{err}");

    // A stale socket file (nobody receiving) is replaced.
    drop(_other);
    let daemon = Daemon::start(config(
        &world,
        &format!("[tlsrpt]\nsocket = \"{}\"\n", socket.display()),
    ))
    .await
    .expect("stale socket replaced");
    daemon.shutdown().await;

    // A regular file is never removed.
    std::fs::write(&socket, "data").unwrap();
    let err = Daemon::start(config(
        &world,
        &format!("[tlsrpt]\nsocket = \"{}\"\n", socket.display()),
    ))
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
}
