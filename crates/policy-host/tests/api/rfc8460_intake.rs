//! TLS-RPT report intake over HTTPS (RFC 8460 §5.4): media types, size caps, gzip bombs,
//! JSON checks, atomic spooling, a store sink with the spool as fallback.

use crate::common;

use std::io::Write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{Conn, Fixture, build};
use mta_sts_net::clock::ManualClock;
use mta_sts_policy_host::{
    IncomingReport, ReportSink, ServeConfig, ServeError, Server, SinkError, SinkFuture, Stored,
};

const REPORT: &str = r#"{"organization-name":"Sender Inc.","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},"contact-info":"tlsrpt@sender.example","report-id":"2024-01-01T00:00:00Z_a.test","policies":[]}"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn spooled(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_accepted_checked_and_spooled() {
    let f = Fixture::new();
    let config = f.standard_config(
        "\n[tlsrpt]\nintake_path = \"/tlsrpt\"\nspool_dir = \"spool\"\nmax_body = 16384\nmax_report = 65536\n",
    );
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let spool = f.path("spool");
    let host = "mta-sts.a.test";

    for h2 in [false, true] {
        let mut conn = Conn::open(&f.pki, addr, host, h2).await.unwrap();
        let post = |body: Vec<u8>, ct: &str| {
            build("POST", host, "/tlsrpt", h2, Bytes::from(body), Some(ct)).unwrap()
        };
        // JSON and gzip: 201, stored under a content hash; the same report again is a
        // sender's retry: 200, still one file (RFC 8460 §5.4).
        let r = conn
            .send(post(REPORT.as_bytes().to_vec(), "application/tlsrpt+json"))
            .await
            .unwrap();
        assert_eq!(r.status, if h2 { 200 } else { 201 }, "{}", r.text());
        let r = conn
            .send(post(gzip(REPORT.as_bytes()), "application/tlsrpt+gzip"))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let files = spooled(&spool);
        assert_eq!(files.len(), 1, "same report twice = one file: {files:?}");
        assert_eq!(files[0].1, REPORT.as_bytes());
        assert!(files[0].0.ends_with(".json") && files[0].0.len() == 37);

        // Wrong media type: 415, nothing stored.
        for ct in ["application/json", "text/plain", "application/tlsrpt+jsonx"] {
            let r = conn
                .send(post(REPORT.as_bytes().to_vec(), ct))
                .await
                .unwrap();
            assert_eq!(r.status, 415, "{ct}");
            assert_eq!(r.text().lines().count(), 1);
        }
        // Too big (compressed body over max_body): 413.
        let big = format!("{{\"report-id\":\"x\",\"pad\":\"{}\"}}", "y".repeat(20000));
        let r = conn
            .send(post(big.into_bytes(), "application/tlsrpt+json"))
            .await
            .unwrap();
        assert_eq!(r.status, 413);
        // HTTP/1.1: the unread body makes the server close the connection after a 413.
        conn = Conn::open(&f.pki, addr, host, h2).await.unwrap();
        // Gzip bomb: tiny body, 10 MB once inflated: 413.
        let bomb = gzip(&vec![b' '; 10 << 20]);
        assert!(bomb.len() < 16384, "{}", bomb.len());
        let r = conn
            .send(post(bomb, "application/tlsrpt+gzip"))
            .await
            .unwrap();
        assert_eq!(r.status, 413, "{}", r.text());
        conn = Conn::open(&f.pki, addr, host, h2).await.unwrap();
        // Invalid JSON, not an object, no report-id, bad gzip: 400.
        for (body, ct) in [
            (b"{not json".to_vec(), "application/tlsrpt+json"),
            (b"[1,2]".to_vec(), "application/tlsrpt+json"),
            (br#"{"policies":[]}"#.to_vec(), "application/tlsrpt+json"),
            (b"not gzip".to_vec(), "application/tlsrpt+gzip"),
        ] {
            let r = conn.send(post(body, ct)).await.unwrap();
            assert_eq!(r.status, 400, "{}", r.text());
        }
        // Other methods on the intake: 405 with Allow: POST.
        let r = conn.request("GET", host, "/tlsrpt").await.unwrap();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("POST"));
        assert_eq!(spooled(&spool).len(), 1, "nothing else stored");
    }
    // No temporary files left behind.
    assert!(
        spooled(&spool)
            .iter()
            .all(|(name, _)| !name.starts_with(".tmp"))
    );
    server.shutdown().await;
}

/// A store stand-in: keeps report ids, refuses reports without policies (as the real store
/// refuses reports it cannot parse), fails while `down` is set.
#[derive(Default)]
struct Store {
    ids: Mutex<Vec<String>>,
    down: AtomicBool,
}

impl ReportSink for Store {
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::Store("connection refused".into()));
            }
            if !String::from_utf8_lossy(&report.json).contains("\"policies\"") {
                return Err(SinkError::Rejected("missing \"policies\"".into()));
            }
            let mut ids = self.ids.lock().unwrap();
            if ids.contains(&report.report_id) {
                return Ok(Stored::Duplicate(report.report_id.clone()));
            }
            ids.push(report.report_id.clone());
            Ok(Stored::New(report.report_id.clone()))
        })
    }

    fn describe(&self) -> String {
        "the test store".into()
    }
}

// RFC 8460 §5.4 answers with a store sink, and the spool as its fallback (§5.5: a 503 only
// when nothing could be saved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s5_4_store_sink_answers_and_spool_fallback() {
    let f = Fixture::new();
    let config = f.standard_config("\n[tlsrpt]\nstore = \"reports.db\"\nspool_dir = \"spool\"\n");
    let loaded = ServeConfig::load(&config).unwrap();
    // Without a sink for `store`, the server refuses to start rather than spool silently.
    assert!(matches!(
        Server::start(loaded.clone()).await,
        Err(ServeError::NoStoreSink(_))
    ));
    let store = Arc::new(Store::default());
    let server = Server::start_with_sink(loaded, store.clone())
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let host = "mta-sts.a.test";
    let spool = f.path("spool");
    let mut conn = Conn::open(&f.pki, addr, host, false).await.unwrap();
    let post = |body: &str| {
        build(
            "POST",
            host,
            "/tlsrpt",
            false,
            Bytes::from(body.to_string()),
            Some("application/tlsrpt+json"),
        )
        .unwrap()
    };
    let r = conn.send(post(REPORT)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let r = conn.send(post(REPORT)).await.unwrap();
    assert_eq!(r.status, 200, "a retry is success: {}", r.text());
    let r = conn.send(post(r#"{"report-id":"x"}"#)).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("policies"), "{}", r.text());
    assert_eq!(
        *store.ids.lock().unwrap(),
        vec!["2024-01-01T00:00:00Z_a.test"]
    );
    assert!(spooled(&spool).is_empty());

    // The store fails: the report is spooled, and the sender is told it is received.
    store.down.store(true, Ordering::SeqCst);
    let other = REPORT.replace("_a.test", "_b.test");
    let r = conn.send(post(&other)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let files = spooled(&spool);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1, other.as_bytes());

    // Store and spool both fail: 503 with Retry-After, so the sender retries later.
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, b"not a directory").unwrap();
    let third = REPORT.replace("_a.test", "_c.test");
    let r = conn.send(post(&third)).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    server.shutdown().await;
}

/// A report whose policies name `domains` (RFC 8460 §4.4 `policy-domain`).
fn report_for(id: &str, domains: &[&str]) -> String {
    let policies = domains
        .iter()
        .map(|d| {
            format!(
                r#"{{"policy":{{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce","mx: mx.{d}","max_age: 86400"],"policy-domain":"{d}","mx-host":["mx.{d}"]}},"summary":{{"total-successful-session-count":1,"total-failure-session-count":0}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"{{"organization-name":"Sender Inc.","date-range":{{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"}},"contact-info":"tlsrpt@sender.example","report-id":"{id}","policies":[{policies}]}}"#
    )
}

// Issue #19 item 3. RFC 8460 §4: a report is about its policy-domain. One for a domain this
// host does not serve is refused with 403 naming the domain, and not stored, by default;
// `accept_foreign = true` (hosters receiving for domains they serve no policy for) takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s4_reports_for_domains_not_served_are_refused() {
    let f = Fixture::new();
    let config = f.standard_config("\n[tlsrpt]\nspool_dir = \"spool\"\n");
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let spool = f.path("spool");
    for h2 in [false, true] {
        let host = "mta-sts.a.test";
        let mut conn = Conn::open(&f.pki, addr, host, h2).await.unwrap();
        let post = |body: String, gz: bool| {
            let (body, ct) = if gz {
                (gzip(body.as_bytes()), "application/tlsrpt+gzip")
            } else {
                (body.into_bytes(), "application/tlsrpt+json")
            };
            build("POST", host, "/tlsrpt", h2, Bytes::from(body), Some(ct)).unwrap()
        };
        let before = spooled(&spool).len();
        for (body, gz) in [
            (
                report_for(&format!("stranger-{h2}"), &["stranger.test"]),
                false,
            ),
            (
                report_for(&format!("stranger-gz-{h2}"), &["stranger.test"]),
                true,
            ),
            // One policy of ours does not make the stranger's data ours.
            (
                report_for(&format!("mixed-{h2}"), &["a.test", "stranger.test"]),
                false,
            ),
        ] {
            let r = conn.send(post(body, gz)).await.unwrap();
            assert_eq!(r.status, 403, "{}", r.text());
            assert!(
                r.text().contains("policy-domain stranger.test"),
                "{}",
                r.text()
            );
        }
        assert_eq!(spooled(&spool).len(), before, "nothing stored");
        // Any served domain (not only the host's own), in any case, with a trailing dot.
        let r = conn
            .send(post(
                report_for(&format!("ours-{h2}"), &["a.test", "B.Test."]),
                false,
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(spooled(&spool).len(), before + 1);
    }
    server.shutdown().await;

    // Opt-in: a hoster's intake takes reports for any domain.
    let config = f.standard_config("\n[tlsrpt]\nspool_dir = \"spool2\"\naccept_foreign = true\n");
    let server = f.start(&config).await;
    let mut conn = Conn::open(&f.pki, server.local_addrs()[0], "mta-sts.a.test", false)
        .await
        .unwrap();
    let r = conn
        .send(
            build(
                "POST",
                "mta-sts.a.test",
                "/tlsrpt",
                false,
                Bytes::from(report_for("foreign-ok", &["stranger.test"])),
                Some("application/tlsrpt+json"),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(spooled(&f.path("spool2")).len(), 1);
    server.shutdown().await;
}

/// A sink that keeps the `received` stamp of every report.
#[derive(Default)]
struct Stamps(Mutex<Vec<SystemTime>>);

impl ReportSink for Stamps {
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
        Box::pin(async move {
            self.0.lock().unwrap().push(report.received);
            Ok(Stored::New(report.report_id.clone()))
        })
    }

    fn describe(&self) -> String {
        "the stamp keeper".into()
    }
}

// One clock: the arrival stamp of a report is the injected clock's time, not the system's,
// and moves when the clock moves (ten years on here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_stamps_follow_the_injected_clock() {
    const START: u64 = 2_000_000_000;
    const TEN_YEARS: u64 = 10 * 365 * 86_400;
    let f = Fixture::new();
    let config = f.standard_config("\n[tlsrpt]\nstore = \"reports.db\"\n");
    let clock = Arc::new(ManualClock::new(START));
    let stamps = Arc::new(Stamps::default());
    let server = Server::start_with_clock(
        ServeConfig::load(&config).unwrap(),
        Some(stamps.clone()),
        clock.clone(),
    )
    .await
    .unwrap();
    let host = "mta-sts.a.test";
    let mut conn = Conn::open(&f.pki, server.local_addrs()[0], host, false)
        .await
        .unwrap();
    for id in ["now", "later"] {
        let body = REPORT.replace("_a.test", id);
        let req = build(
            "POST",
            host,
            "/tlsrpt",
            false,
            Bytes::from(body),
            Some("application/tlsrpt+json"),
        )
        .unwrap();
        let r = conn.send(req).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        clock.advance(TEN_YEARS);
    }
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(
        *stamps.0.lock().unwrap(),
        [at(START), at(START + TEN_YEARS)]
    );
    server.shutdown().await;
}
