//! `serve` under hostile clients (issue #12): the TLS-RPT intake's concurrency cap and
//! decompressed-bytes budget (503 + `Retry-After`), the body timeout (408), HTTP/2 stream
//! and window limits, connections that trickle bytes without a request, and requests
//! without `Host` (400, RFC 9112 §3.2). Every server here is real (TLS, HTTP/1.1, HTTP/2).

use crate::common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Answer, BoxError, Conn, Fixture, build, get_policy, tls};
use mta_sts_policy_host::{
    IncomingReport, ReportSink, ServeConfig, Server, SinkFuture, Stored, check_body,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const HOST: &str = "mta-sts.a.test";

/// A liveness bound, not a speed target: an answer that takes this long is no answer.
const BOUND: Duration = Duration::from_secs(20);

fn report(id: &str, pad: usize) -> Vec<u8> {
    format!(
        r#"{{"organization-name":"Sender","date-range":{{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"}},"contact-info":"x@sender.example","report-id":"{id}","policies":[],"pad":"{}"}}"#,
        "p".repeat(pad)
    )
    .into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A store stand-in that keeps reports whose id starts with `hold` until `release` gets a
/// permit, so the test decides when a request finishes.
struct Held {
    arrived: Semaphore,
    release: Semaphore,
    stored: AtomicUsize,
}

impl ReportSink for Held {
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
        Box::pin(async move {
            self.arrived.add_permits(1);
            if report.report_id.starts_with("hold") {
                self.release.acquire().await.unwrap().forget();
            }
            self.stored.fetch_add(1, Ordering::SeqCst);
            Ok(Stored::New(report.report_id.clone()))
        })
    }

    fn describe(&self) -> String {
        "the held test store".into()
    }
}

async fn start(f: &Fixture, tlsrpt: &str) -> (Server, Arc<Held>) {
    let config = f.standard_config(&format!("\n[tlsrpt]\nstore = \"reports.db\"\n{tlsrpt}"));
    let sink = Arc::new(Held {
        arrived: Semaphore::new(0),
        release: Semaphore::new(0),
        stored: AtomicUsize::new(0),
    });
    let server = Server::start_with_sink(ServeConfig::load(&config).unwrap(), sink.clone())
        .await
        .unwrap();
    (server, sink)
}

async fn post(
    f: &Fixture,
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    ct: &str,
) -> Result<Answer, BoxError> {
    let mut conn = Conn::open(&f.pki, addr, HOST, false).await?;
    let req = build("POST", HOST, "/tlsrpt", false, Bytes::from(body), Some(ct))?;
    tokio::time::timeout(BOUND, conn.send(req))
        .await
        .map_err(|_| "no answer within the bound")?
}

// Issue #12 item 1: with `max_concurrent` requests in progress, one more is answered 503
// with Retry-After at once (RFC 8460 §5.5: the sender retries), its body unread; the
// policy is still served; once the first finishes, reports are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_over_max_concurrent_is_503_with_retry_after() {
    let f = Arc::new(Fixture::new());
    let (server, sink) = start(&f, "max_concurrent = 1\n").await;
    let addr = server.local_addrs()[0];
    let first = {
        let body = gzip(&report("hold-1", 10));
        let f2 = f.clone();
        tokio::spawn(async move { post(&f2, addr, body, "application/tlsrpt+gzip").await })
    };
    // The first report is in the store call, holding the one permit.
    tokio::time::timeout(BOUND, sink.arrived.acquire())
        .await
        .unwrap()
        .unwrap()
        .forget();

    let busy = post(&f, addr, report("r-2", 10), "application/tlsrpt+json")
        .await
        .unwrap();
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.header("retry-after"), Some("300"));
    let policy = get_policy(&f.pki, addr, HOST).await.unwrap();
    assert_eq!(policy.status, 200);

    sink.release.add_permits(1);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status, 201, "{}", first.text());
    let again = post(&f, addr, report("r-2", 10), "application/tlsrpt+json")
        .await
        .unwrap();
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(sink.stored.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

// Issue #12 item 1: decompressed bytes count against `max_inflight` for as long as the
// store works on the report; a report that does not fit now is 503 + Retry-After, a small
// one that fits still goes through, and the budget comes back when the store is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_over_max_inflight_is_503_with_retry_after() {
    let f = Arc::new(Fixture::new());
    let (server, sink) = start(
        &f,
        "max_concurrent = 8\nmax_report = 65536\nmax_inflight = 65536\n",
    )
    .await;
    let addr = server.local_addrs()[0];
    let first = {
        let body = gzip(&report("hold-big", 40_000));
        let f2 = f.clone();
        tokio::spawn(async move { post(&f2, addr, body, "application/tlsrpt+gzip").await })
    };
    tokio::time::timeout(BOUND, sink.arrived.acquire())
        .await
        .unwrap()
        .unwrap()
        .forget();

    let big = gzip(&report("big-2", 40_000));
    assert!(big.len() < 1024, "a small body: {}", big.len());
    let busy = post(&f, addr, big.clone(), "application/tlsrpt+gzip")
        .await
        .unwrap();
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.header("retry-after"), Some("300"));
    let small = post(&f, addr, report("small", 10), "application/tlsrpt+json")
        .await
        .unwrap();
    assert_eq!(small.status, 201, "{}", small.text());

    sink.release.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().status, 201);
    let retried = post(&f, addr, big, "application/tlsrpt+gzip")
        .await
        .unwrap();
    assert_eq!(retried.status, 201, "{}", retried.text());
    server.shutdown().await;
}

// Issue #12 item 1, the attack itself: big gzip reports in parallel (a small body, 3 MB of
// JSON each). While one is in the store, every other one is answered 503 + Retry-After at
// once (the concurrency cap, or the budget, which the one in the store fills), the policy
// is served meanwhile, and the one in the store is stored. (Memory figures are measured
// outside the test suite; see the report.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_big_reports_get_503_and_the_policy_stays_up() {
    let f = Arc::new(Fixture::new());
    let (server, sink) = start(
        &f,
        "max_concurrent = 2\nmax_report = 4194304\nmax_inflight = 4194304\n",
    )
    .await;
    let addr = server.local_addrs()[0];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let body = gzip(&report(&format!("hold-{i}"), 3_000_000));
        assert!(body.len() < 65536, "{}", body.len());
        let f2 = f.clone();
        tasks.spawn(async move { post(&f2, addr, body, "application/tlsrpt+gzip").await });
    }
    tokio::time::timeout(BOUND, sink.arrived.acquire())
        .await
        .unwrap()
        .unwrap()
        .forget();
    let policy = get_policy(&f.pki, addr, HOST).await.unwrap();
    assert_eq!(policy.status, 200);
    // Seven answers while one report sits in the store: all 503 + Retry-After.
    for _ in 0..7 {
        let answer = tokio::time::timeout(BOUND, tasks.join_next())
            .await
            .expect("answered while one report is in the store")
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert_eq!(answer.header("retry-after"), Some("300"));
    }
    sink.release.add_permits(1);
    let stored = tasks.join_next().await.unwrap().unwrap().unwrap();
    assert_eq!(stored.status, 201, "{}", stored.text());
    assert_eq!(sink.stored.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

// Issue #12 item 2: a body trickled a byte at a time is cut at `body_timeout` with 408 and
// the connection closed, although bytes keep moving (so the idle timeout never fires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_body_is_cut_with_408() {
    let f = Fixture::new();
    let config = f.standard_config(
        "\n[tlsrpt]\nspool_dir = \"spool\"\n[limits]\nbody_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    );
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let mut stream = tls(&f.pki, addr, HOST, &[b"http/1.1"]).await.unwrap();
    stream
        .write_all(
            format!("POST /tlsrpt HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/tlsrpt+json\r\nContent-Length: 1000\r\n\r\n{{")
                .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        assert!(started.elapsed() < BOUND, "still open after {BOUND:?}");
        tokio::select! {
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                // One more byte: never idle, never complete.
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    server.shutdown().await;
}

// Issue #12 item 2: HTTP/2 connections are bounded: `max_streams` concurrent streams
// (RFC 9113 §6.5.2) and a 64 KiB stream window (§6.9.2), so a stream cannot push 1 MiB
// unread into the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_and_windows_are_bounded() {
    let f = Fixture::new();
    let config =
        f.standard_config("\n[tlsrpt]\nspool_dir = \"spool\"\n[limits]\nmax_streams = 3\n");
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let stream = tls(&f.pki, addr, HOST, &[b"h2"]).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // One exchange, so the server's SETTINGS are in.
    let get = hyper::http::Request::get(format!("https://{HOST}/.well-known/mta-sts.txt"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(get, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 3);

    let post = hyper::http::Request::post(format!("https://{HOST}/tlsrpt"))
        .header("content-type", "application/tlsrpt+json")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (_response, mut body) = client.send_request(post, false).unwrap();
    body.reserve_capacity(1 << 20);
    let capacity = tokio::time::timeout(BOUND, std::future::poll_fn(|cx| body.poll_capacity(cx)))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(capacity <= 65_535, "{capacity}");
    server.shutdown().await;
}

// Issue #12 item 2: an HTTP/2 connection that keeps bytes moving (PINGs) but never gets a
// request through is closed after `idle_timeout`: HTTP/2 has no header read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_without_requests_is_closed_although_bytes_move() {
    let f = Fixture::new();
    let config = f.standard_config("\n[limits]\nidle_timeout = \"1s\"\n");
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let mut stream = tls(&f.pki, addr, HOST, &[b"h2"]).await.unwrap();
    // Client preface, empty SETTINGS, SETTINGS ACK (RFC 9113 §3.4, §6.5).
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
    stream.write_all(&hello).await.unwrap();
    let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < BOUND, "still open after {BOUND:?}");
        tokio::select! {
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(&ping).await.is_err() {
                    break;
                }
            }
        }
    }
    server.shutdown().await;
}

// Issue #12 item 6, RFC 9112 §3.2: no Host (HTTP/1.0 or 1.1), two Host lines, or an
// invalid one → 400; a well-formed but unknown host is still 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_host_is_400() {
    let f = Fixture::new();
    let server = f.start(&f.standard_config("")).await;
    let addr = server.local_addrs()[0];
    let path = "/.well-known/mta-sts.txt";
    for (request, status) in [
        (format!("GET {path} HTTP/1.0\r\n\r\n"), "400"),
        (
            format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n"),
            "400",
        ),
        (
            format!(
                "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
            ),
            "400",
        ),
        (
            format!("GET {path} HTTP/1.1\r\nHost: user@{HOST}\r\nConnection: close\r\n\r\n"),
            "400",
        ),
        (
            format!("GET {path} HTTP/1.1\r\nHost: mta-sts.other.test\r\nConnection: close\r\n\r\n"),
            "404",
        ),
        (
            format!("GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n"),
            "200",
        ),
    ] {
        let mut stream = tls(&f.pki, addr, HOST, &[b"http/1.1"]).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        let got = answer.split(' ').nth(1).unwrap_or("");
        assert_eq!(got, status, "{request:?} → {answer}");
    }
    server.shutdown().await;
}

// The public check the fuzz target drives: gzip and plain, caps, the report-id rules.
#[test]
fn check_body_decodes_and_checks() {
    let json = report("id-1", 5);
    let checked = check_body(Bytes::from(gzip(&json)), true, 1 << 20).unwrap();
    assert_eq!(checked.report_id, "id-1");
    assert_eq!(checked.json, json);
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert_eq!(
        check_body(Bytes::from(bomb), true, 65536)
            .unwrap_err()
            .status(),
        413
    );
    assert_eq!(
        check_body(Bytes::from_static(b"[]"), false, 100)
            .unwrap_err()
            .status(),
        400
    );
}
