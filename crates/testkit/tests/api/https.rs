//! The HTTPS policy host, seen by a rustls client trusting the test CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mta_sts_testkit::{CertKind, HostBehavior, World};
use rustls::{AlertDescription, CertificateError, PeerIncompatible};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 86400\n";
const PATH: &str = "/.well-known/mta-sts.txt";

#[derive(Debug)]
struct Response {
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// The rustls error behind a failed handshake.
fn tls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

async fn connect(
    world: &World,
    host: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(world.https_addr()).await?;
    let name = ServerName::try_from(host.to_string()).expect("name");
    TlsConnector::from(world.client_config())
        .connect(name, tcp)
        .await
}

/// GET `PATH` on `host`; returns the raw head and the raw body (read to EOF).
async fn get(world: &World, host: &str) -> std::io::Result<Response> {
    let mut tls = connect(world, host).await?;
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mta-sts/test\r\nAccept: */*\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    // A lying Content-Length ends in an unexpected EOF; keep what arrived.
    let _ = tls.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len().saturating_sub(4));
    Ok(Response {
        head: String::from_utf8_lossy(&raw[..split]).into_owned(),
        body: raw[split + 4..].to_vec(),
    })
}

fn world_with(behavior: HostBehavior) -> World {
    World::builder()
        .domain("good.test", move |d| {
            d.sts_id("1").policy_behavior(behavior)
        })
        .start()
}

#[tokio::test]
async fn serves_policy_and_logs_request() {
    let world = world_with(HostBehavior::policy(POLICY));
    let response = get(&world, "mta-sts.good.test").await.expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(
        response.header("content-length"),
        Some(POLICY.len().to_string())
    );
    assert_eq!(response.body, POLICY.as_bytes());

    let requests = world.https().requests("mta-sts.good.test");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, PATH);
    assert_eq!(requests[0].header("user-agent"), Some("mta-sts/test"));
    assert_eq!(requests[0].header("if-none-match"), None);
    assert_eq!(requests[0].tls_version, "TLSv1_3");
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    assert_eq!(world.https().hello_count("mta-sts.good.test"), 1);
    assert!(world.connect_to_args()[0].starts_with("mta-sts.good.test:443:127.0.0.1:"));

    // Behaviour changes mid-test.
    world
        .https()
        .set("mta-sts.good.test", HostBehavior::status(404));
    let response = get(&world, "mta-sts.good.test").await.expect("get");
    assert_eq!(response.status(), 404);
    world.https().update("mta-sts.good.test", |b| {
        b.with_status(200).body("new").content_type("text/html")
    });
    let response = get(&world, "mta-sts.good.test").await.expect("get");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/html")
    );
    assert_eq!(response.body, b"new");
}

#[tokio::test]
async fn framing_faults() {
    let world = World::empty();
    let https = world.https();
    https.set(
        "chunked.test",
        HostBehavior::policy(POLICY)
            .chunked()
            .slow(16, Duration::ZERO),
    );
    https.set(
        "liar.test",
        HostBehavior::policy("short").lying_content_length(1000),
    );
    https.set(
        "bare.test",
        HostBehavior::policy(POLICY)
            .no_content_type()
            .close_delimited(),
    );
    https.set(
        "moved.test",
        HostBehavior::redirect(301, "https://elsewhere.test/x"),
    );

    let chunked = get(&world, "chunked.test").await.expect("get");
    assert_eq!(
        chunked.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert!(
        chunked
            .body
            .starts_with(b"10\r\nversion: STSv1\nm\r\n10\r\n")
    );
    assert!(chunked.body.ends_with(b"0\r\n\r\n"));

    let liar = get(&world, "liar.test").await.expect("get");
    assert_eq!(liar.header("content-length").as_deref(), Some("1000"));
    assert_eq!(liar.body, b"short");

    let bare = get(&world, "bare.test").await.expect("get");
    assert_eq!(bare.header("content-type"), None);
    assert_eq!(bare.header("content-length"), None);
    assert_eq!(bare.body, POLICY.as_bytes());

    let moved = get(&world, "moved.test").await.expect("get");
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.header("location").as_deref(),
        Some("https://elsewhere.test/x")
    );
}

#[tokio::test]
async fn slow_and_huge_bodies() {
    let world = World::empty();
    world.https().set(
        "slow.test",
        HostBehavior::policy("0123456789").slow(2, Duration::from_millis(60)),
    );
    world
        .https()
        .set("huge.test", HostBehavior::huge(10 * 1024 * 1024));

    let started = Instant::now();
    let slow = get(&world, "slow.test").await.expect("get");
    assert_eq!(slow.body, b"0123456789");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let huge = get(&world, "huge.test").await.expect("get");
    assert_eq!(huge.header("content-length").as_deref(), Some("10485760"));
    assert_eq!(huge.body.len(), 10 * 1024 * 1024);
}

#[tokio::test]
async fn certificate_kinds_fail_as_a_client_sees_them() {
    let world = World::empty();
    let kinds = [
        ("expired.test", CertKind::Expired),
        ("wrong.test", CertKind::WrongName),
        ("untrusted.test", CertKind::Untrusted),
        ("self.test", CertKind::SelfSigned),
        ("future.test", CertKind::NotYetValid),
    ];
    for (host, kind) in kinds {
        world
            .https()
            .set(host, HostBehavior::policy(POLICY).cert(kind));
    }
    let err = |host: &'static str| {
        let world = &world;
        async move {
            let e = connect(world, host).await.expect_err(host);
            tls_error(&e).unwrap_or_else(|| panic!("{host}: not a TLS error: {e:?}"))
        }
    };
    let e = err("expired.test").await;
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. } | CertificateError::Expired
            )
        ),
        "{e:?}"
    );
    let e = err("wrong.test").await;
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. } | CertificateError::NotValidForName
            )
        ),
        "{e:?}"
    );
    let e = err("untrusted.test").await;
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{e:?}"
    );
    let e = err("self.test").await;
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{e:?}"
    );
    let e = err("future.test").await;
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYetContext { .. } | CertificateError::NotValidYet
            )
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn tls_faults() {
    let world = World::empty();
    let https = world.https();
    https.set("legacy.test", HostBehavior::policy(POLICY).legacy_tls());
    https.set("hang.test", HostBehavior::policy(POLICY).hang_handshake());
    https.set("mute.test", HostBehavior::policy(POLICY).no_response());

    // A TLS 1.0-only server: the client refuses the version.
    let e = connect(&world, "legacy.test").await.expect_err("legacy");
    let e = tls_error(&e).expect("tls error");
    assert_eq!(
        e,
        rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)
    );

    // Unknown SNI: the handshake is aborted with unrecognized_name.
    let e = connect(&world, "nobody.test").await.expect_err("unknown");
    let e = tls_error(&e).expect("tls error");
    assert_eq!(
        e,
        rustls::Error::AlertReceived(AlertDescription::UnrecognisedName)
    );

    // Never completes the handshake.
    let hang = tokio::time::timeout(Duration::from_millis(400), connect(&world, "hang.test")).await;
    assert!(hang.is_err(), "handshake should hang");
    assert_eq!(https.hello_count("hang.test"), 1);

    // Handshake completes, no response ever comes.
    let mut tls = connect(&world, "mute.test").await.expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: mute.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(400), tls.read(&mut buf)).await;
    assert!(read.is_err(), "no response expected");
    assert_eq!(https.request_count("mute.test"), 1);
}

#[test]
fn usable_from_sync_code_and_drop_closes_the_port() {
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .start();
    let addr = world.https_addr();
    let config: Arc<rustls::ClientConfig> = world.client_config();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let response = runtime
        .block_on(get(&world, "mta-sts.good.test"))
        .expect("get");
    assert!(String::from_utf8_lossy(&response.body).contains("mode: enforce"));
    drop(config);
    drop(world);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "server still listening"
    );
}
