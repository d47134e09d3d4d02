//! ACME end to end against Pebble (Debian package `pebble`, binary `pebble`): the server
//! registers an account, answers TLS-ALPN-01 on its HTTPS listener (or HTTP-01 on its
//! HTTP listener), stores the certificate and serves it without a restart.
//!
//! Skipped (with a message) when `pebble` is not installed, unless
//! `MTA_STS_REQUIRE_INTEROP=1`, then it fails.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fixture, tls};
use mta_sts_policy_host::table::CertSource;
use mta_sts_policy_host::{ServeConfig, Server};
use mta_sts_testkit::{Validity, World};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pebble_available() -> bool {
    let found = std::process::Command::new("pebble")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!(
                "pebble is not installed (apt-get install pebble) and MTA_STS_REQUIRE_INTEROP=1"
            );
        }
        eprintln!(
            "SKIPPED: pebble is not installed (apt-get install pebble); set MTA_STS_REQUIRE_INTEROP=1 to make this a failure"
        );
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn wait_tcp(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "pebble did not start listening on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Pebble {
    child: tokio::process::Child,
    dir: SocketAddr,
    mgmt: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_pebble(f: &Fixture, world: &World, https_port: u16, http_port: u16) -> Pebble {
    let leaf = f
        .pki
        .ca()
        .issue(&["localhost", "127.0.0.1"], Validity::Current)
        .unwrap();
    std::fs::write(f.path("pebble.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(f.path("pebble.key"), &leaf.key_pem).unwrap();
    let dir = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mgmt = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let config = serde_json::json!({"pebble": {
        "listenAddress": dir.to_string(),
        "managementListenAddress": mgmt.to_string(),
        "certificate": f.path("pebble.pem"),
        "privateKey": f.path("pebble.key"),
        "httpPort": http_port,
        "tlsPort": https_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(f.path("pebble.json"), config.to_string()).unwrap();
    let child = tokio::process::Command::new("pebble")
        .arg("-config")
        .arg(f.path("pebble.json"))
        .arg("-dnsserver")
        .arg(world.dns_addr().to_string())
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_VA_ALWAYS_VALID", "0")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(std::fs::File::create(f.path("pebble.log")).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pebble");
    wait_tcp(dir).await;
    Pebble { child, dir, mgmt }
}

/// Pebble's issuing root (it changes every run), from the management interface.
async fn pebble_root(f: &Fixture, mgmt: SocketAddr) -> Vec<u8> {
    let mut stream = tls(&f.pki, mgmt, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    stream
        .write_all(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let pem = &text[text.find("-----BEGIN").expect("root PEM")..];
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn acme_end_to_end(challenge: &str) {
    if !pebble_available() {
        return;
    }
    let world = World::empty();
    let host = "mta-sts.acme.test";
    world.dns().set_a(host, &[Ipv4Addr::LOCALHOST]);
    let f = Fixture::new();
    let https_port = free_port();
    let http_port = free_port();
    let pebble = start_pebble(&f, &world, https_port, http_port).await;
    let ca_file = f.ca_file();
    let config = f.write_config(&format!(
        r#"listen = "127.0.0.1:{https_port}"
[[domain]]
name = "acme.test"
mode = "enforce"
mx = ["mx.acme.test"]
[acme]
directory = "https://{}/dir"
contact = ["mailto:hostmaster@acme.test"]
storage = "acme"
challenge = "{challenge}"
http_listen = "127.0.0.1:{http_port}"
ca_file = "{}"
"#,
        pebble.dir,
        ca_file.display()
    ));
    let server = Server::start(ServeConfig::load(&config).unwrap())
        .await
        .unwrap();
    // Until issued, handshakes for the host are aborted (no certificate for it yet).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let table = server.table();
        let entry = table.host(host).unwrap();
        if matches!(entry.cert_source, CertSource::Acme(_)) {
            assert!(entry.cert.is_some());
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(f.path("pebble.log")).unwrap_or_default();
            panic!("no certificate from pebble within 90 s; pebble log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(f.path(&format!("acme/{host}.pem")).exists());
    assert!(f.path(&format!("acme/{host}.key")).exists());

    // A client trusting only Pebble's root validates the served chain for the name, and
    // gets the policy.
    let root = pebble_root(&f, pebble.mgmt).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.into()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.local_addrs()[0])
        .await
        .unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(host.to_string().try_into().unwrap(), tcp)
        .await
        .expect("the ACME certificate validates against Pebble's root");
    stream
        .write_all(
            format!(
                "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.acme.test\r\nmax_age: 604800\r\n"
        ),
        "{text}"
    );

    // A restart reuses the stored account and certificate (no new order).
    server.shutdown().await;
    let again = Server::start(ServeConfig::load(&config).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        again.table().host(host).unwrap().cert_source,
        CertSource::Acme(_)
    ));
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_tls_alpn_01() {
    acme_end_to_end("tls-alpn-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_http_01() {
    acme_end_to_end("http-01").await;
}
