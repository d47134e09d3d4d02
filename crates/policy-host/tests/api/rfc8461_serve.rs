//! The policy host over real TLS: RFC 8461 §3.2 (resource, media type, body), §3.3 (no
//! redirects), §7.1 (SNI, abort for unknown names), and the defensive limits.

use crate::common;

use std::time::{Duration, Instant};

use common::{Conn, Fixture, POLICY_A, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/.well-known/mta-sts.txt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_over_http1_and_http2() {
    let f = Fixture::new();
    let server = f.start(&f.standard_config("")).await;
    let addr = server.local_addrs()[0];
    for h2 in [false, true] {
        let mut conn = Conn::open(&f.pki, addr, "mta-sts.a.test", h2)
            .await
            .unwrap();
        let get = conn.request("GET", "mta-sts.a.test", PATH).await.unwrap();
        assert_eq!(get.status, 200, "h2={h2}");
        assert_eq!(
            get.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(get.text(), POLICY_A, "exact canonical CRLF body, h2={h2}");
        assert_eq!(get.header("cache-control"), None);
        assert_eq!(get.header("location"), None);
        let head = conn.request("HEAD", "mta-sts.a.test", PATH).await.unwrap();
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            head.header("content-length"),
            Some(POLICY_A.len().to_string().as_str())
        );
        // Same connection, second host served by its own certificate: b.test via cert_dir.
        let b = common::get_policy(&f.pki, addr, "mta-sts.b.test")
            .await
            .unwrap();
        assert_eq!(
            b.text(),
            "version: STSv1\r\nmode: testing\r\nmx: mx.b.test\r\nmax_age: 604800\r\n"
        );
    }
    // The negotiated protocol really is HTTP/2 when asked for.
    let stream = tls(&f.pki, addr, "mta-sts.a.test", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_aborts_the_handshake() {
    let f = Fixture::new();
    let server = f.start(&f.standard_config("")).await;
    let addr = server.local_addrs()[0];
    // RFC 8461 §7.1: no certificate for a name we do not serve, not even a default one.
    let err = tls(&f.pki, addr, "mta-sts.stranger.test", &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("alert") || text.contains("HandshakeFailure") || text.contains("handshake"),
        "{text}"
    );
    // The domain itself (not mta-sts.<domain>) is not a policy host either.
    assert!(tls(&f.pki, addr, "a.test", &[]).await.is_err());
    // Names are case-insensitive.
    assert!(tls(&f.pki, addr, "MTA-STS.A.TEST", &[]).await.is_ok());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_404_405_and_never_a_redirect() {
    let f = Fixture::new();
    let server = f.start(&f.standard_config("")).await;
    let addr = server.local_addrs()[0];
    for h2 in [false, true] {
        let mut conn = Conn::open(&f.pki, addr, "mta-sts.a.test", h2)
            .await
            .unwrap();
        // Known SNI, unknown Host: no policy leaks to strangers.
        let r = conn
            .request("GET", "mta-sts.stranger.test", PATH)
            .await
            .unwrap();
        assert_eq!(r.status, 404, "h2={h2}");
        assert!(!r.text().contains("STSv1"));
        for path in [
            "/",
            "/.well-known/mta-sts.txt/",
            "/.well-known/MTA-STS.TXT",
            "/mta-sts.txt",
            "/tlsrpt",
        ] {
            let r = conn.request("GET", "mta-sts.a.test", path).await.unwrap();
            assert_eq!(r.status, 404, "{path} h2={h2}");
            assert_eq!(r.header("location"), None);
        }
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let r = conn.request(method, "mta-sts.a.test", PATH).await.unwrap();
            assert_eq!(r.status, 405, "{method} h2={h2}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
        // Host with port and trailing dot, upper case: the same host.
        if !h2 {
            let r = conn
                .request("GET", "MTA-STS.a.test.:443", PATH)
                .await
                .unwrap();
            assert_eq!(r.status, 200);
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_rejected() {
    let f = Fixture::new();
    let server = f.start(&f.standard_config("")).await;
    let addr = server.local_addrs()[0];
    let mut stream = tls(&f.pki, addr, "mta-sts.a.test", &[b"http/1.1"])
        .await
        .unwrap();
    let big = "x".repeat(64 * 1024);
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.test\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "expected 431 or a closed connection, got {text:?}"
    );
    // HTTP/2: a header list above the limit is refused too.
    let mut conn = Conn::open(&f.pki, addr, "mta-sts.a.test", true)
        .await
        .unwrap();
    let mut req = common::build(
        "GET",
        "mta-sts.a.test",
        PATH,
        true,
        Default::default(),
        None,
    )
    .unwrap();
    req.headers_mut().insert("x-big", big.parse().unwrap());
    // A 431, or the stream or connection reset: refused either way.
    if let Ok(r) = conn.send(req).await {
        assert_eq!(r.status, 431);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_timed_out() {
    let f = Fixture::new();
    let config = f.standard_config(
        "\n[limits]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\nhandshake_timeout = \"1s\"\n",
    );
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];

    // Slowloris: half a header, then nothing.
    let mut stream = tls(&f.pki, addr, "mta-sts.a.test", &[b"http/1.1"])
        .await
        .unwrap();
    stream
        .write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server must close a slow header");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A TCP connection that never starts TLS.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(6), raw.read(&mut byte)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(4));

    // An idle HTTP/2 connection is closed after idle_timeout.
    let mut conn = Conn::open(&f.pki, addr, "mta-sts.a.test", true)
        .await
        .unwrap();
    assert_eq!(
        conn.request("GET", "mta-sts.a.test", PATH)
            .await
            .unwrap()
            .status,
        200
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(conn.request("GET", "mta-sts.a.test", PATH).await.is_err());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_auto_takes_the_domains_mx_records() {
    let world = mta_sts_testkit::World::builder()
        .domain("auto.test", |d| {
            d.mx(20, "mx2.auto.test").mx(10, "MX1.auto.test")
        })
        .start();
    let f = Fixture::new();
    f.write_cert("auto", &["mta-sts.auto.test"]);
    let config = f.write_config(&format!(
        "listen = \"127.0.0.1:0\"\nnameservers = [\"{}\"]\n[[domain]]\nname = \"auto.test\"\nmode = \"enforce\"\nmx = \"auto\"\ncert = \"auto.pem\"\nkey = \"auto.key\"\n",
        world.dns_addr()
    ));
    let server = f.start(&config).await;
    let r = common::get_policy(&f.pki, server.local_addrs()[0], "mta-sts.auto.test")
        .await
        .unwrap();
    assert_eq!(
        r.text(),
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.auto.test\r\nmx: mx2.auto.test\r\nmax_age: 604800\r\n"
    );
    // An MX change shows after a reload, with a new id.
    let before = server.table().host("mta-sts.auto.test").unwrap().id.clone();
    world.dns().set_mx("auto.test", &[(10, "mx3.auto.test")]);
    server.reload().await.unwrap();
    let after = server.table().host("mta-sts.auto.test").unwrap().id.clone();
    assert_ne!(before, after);
    let r = common::get_policy(&f.pki, server.local_addrs()[0], "mta-sts.auto.test")
        .await
        .unwrap();
    assert!(r.text().contains("mx: mx3.auto.test\r\n"));
    server.shutdown().await;
}
