//! `metrics_listen`: the policy host's Prometheus `/metrics` counts what happened (policy
//! fetches, other requests, failed handshakes, reloads) and shows each host's certificate
//! expiry; anything but `/metrics` there is a 404.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Conn, Fixture, tls, write_atomic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain HTTP/1.1 GET: the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample line starting with `series ` (name and labels as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_handshakes_reloads_and_show_certificate_expiry() {
    let f = Fixture::new();
    let path = f.standard_config("");
    let config = std::fs::read_to_string(&path).unwrap();
    write_atomic(
        &path,
        format!("metrics_listen = \"127.0.0.1:0\"\n{config}").as_bytes(),
    );
    let server = f.start(&path).await;
    let metrics = server.metrics_addr().expect("metrics_listen bound");
    let addr = server.local_addrs()[0];

    let (status, before) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    let policy_ok = "mta_sts_serve_requests_total{kind=\"policy\",class=\"2xx\"}";
    let other_4xx = "mta_sts_serve_requests_total{kind=\"other\",class=\"4xx\"}";
    let handshakes = "mta_sts_serve_tls_handshake_failures_total";
    assert_eq!(value(&before, policy_ok), Some(0.0), "{before}");
    assert_eq!(value(&before, handshakes), Some(0.0));
    assert_eq!(value(&before, "mta_sts_serve_policy_hosts"), Some(2.0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for host in ["mta-sts.a.test", "mta-sts.b.test"] {
        let expiry = value(
            &before,
            &format!("mta_sts_serve_certificate_expiry_timestamp_seconds{{host=\"{host}\"}}"),
        )
        .unwrap_or_else(|| panic!("no expiry for {host}: {before}"));
        assert!(expiry > now, "{host} expires at {expiry}, now {now}");
    }

    let mut conn = Conn::open(&f.pki, addr, "mta-sts.a.test", false)
        .await
        .unwrap();
    for _ in 0..3 {
        let answer = conn
            .request("GET", "mta-sts.a.test", "/.well-known/mta-sts.txt")
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    let answer = conn
        .request("GET", "mta-sts.a.test", "/nope")
        .await
        .unwrap();
    assert_eq!(answer.status, 404);
    assert!(
        tls(&f.pki, addr, "mta-sts.stranger.test", &[])
            .await
            .is_err()
    );

    let (_, after) = get(metrics, "/metrics").await;
    assert_eq!(value(&after, policy_ok), Some(3.0), "{after}");
    assert_eq!(value(&after, other_4xx), Some(1.0), "{after}");
    assert_eq!(value(&after, handshakes), Some(1.0), "{after}");
    assert!(
        value(&after, "mta_sts_serve_connections_open").is_some_and(|n| n >= 1.0),
        "{after}"
    );

    // A changed file is reloaded (watch_interval 200ms) and counted.
    let config = std::fs::read_to_string(&path).unwrap();
    write_atomic(
        &path,
        config
            .replace("max_age = 86400", "max_age = 86401")
            .as_bytes(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get(metrics, "/metrics").await;
        if value(&text, "mta_sts_serve_reloads_total{result=\"ok\"}") == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload counted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(get(metrics, "/").await.0, 404);
    drop(conn);
    server.shutdown().await;
}
