//! ACME renewal timing against Pebble (issue #12 item 17): with certificates of 30 s and
//! `renew_after = 0.5`, the running server replaces its certificate by itself (no restart,
//! no reload by the test), and the replacement is issued after `not_before + 0.5 × lifetime`
//! of the old one and before the old one expires (RFC 8555 §7.4 orders; the renewal point
//! is this server's `renew_after`). `check_interval` is an hour, so only the computed
//! renewal time can wake the manager in time.
//!
//! Skipped (with a message) when `pebble` is not installed, unless
//! `MTA_STS_REQUIRE_INTEROP=1`, then it fails.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::Fixture;
use mta_sts_policy_host::table::CertSource;
use mta_sts_policy_host::{ServeConfig, Server};
use mta_sts_testkit::{Validity, World};

/// Lifetime of Pebble's certificates in this test.
const LIFETIME_SECS: u64 = 30;
/// The configured `renew_after`.
const RENEW_AFTER: f64 = 0.5;

fn pebble_available() -> bool {
    let found = std::process::Command::new("pebble")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "pebble is not installed (apt-get install pebble) and MTA_STS_REQUIRE_INTEROP=1"
        );
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
        assert!(Instant::now() < deadline, "pebble did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pebble issuing certificates valid for [`LIFETIME_SECS`]; killed on drop.
async fn start_pebble(
    f: &Fixture,
    world: &World,
    https_port: u16,
    http_port: u16,
) -> (tokio::process::Child, SocketAddr) {
    let leaf = f
        .pki
        .ca()
        .issue(&["localhost", "127.0.0.1"], Validity::Current)
        .expect("pebble certificate");
    std::fs::write(f.path("pebble.pem"), &leaf.cert_pem).expect("write");
    std::fs::write(f.path("pebble.key"), &leaf.key_pem).expect("write");
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
        "externalAccountBindingRequired": false,
        "certificateValidityPeriod": LIFETIME_SECS
    }});
    std::fs::write(f.path("pebble.json"), config.to_string()).expect("write");
    let child = tokio::process::Command::new("pebble")
        .arg("-config")
        .arg(f.path("pebble.json"))
        .arg("-dnsserver")
        .arg(world.dns_addr().to_string())
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_VA_ALWAYS_VALID", "0")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(std::fs::File::create(f.path("pebble.log")).expect("log"))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pebble");
    wait_tcp(dir).await;
    (child, dir)
}

/// The validity of the ACME certificate served for `host`, once there is one.
async fn wait_cert(
    server: &Server,
    f: &Fixture,
    host: &str,
    other_than: Option<(SystemTime, SystemTime)>,
    within: Duration,
) -> (SystemTime, SystemTime) {
    let deadline = Instant::now() + within;
    loop {
        let table = server.table();
        if let Some(entry) = table.host(host)
            && matches!(entry.cert_source, CertSource::Acme(_))
            && entry.cert.is_some()
            && let Some(validity) = entry.cert_validity
            && Some(validity) != other_than
        {
            return validity;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(f.path("pebble.log")).unwrap_or_default();
            panic!("no (new) certificate within {within:?}; pebble log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_is_renewed_after_renew_after_of_its_lifetime() {
    if !pebble_available() {
        return;
    }
    let world = World::empty();
    let host = "mta-sts.renew.test";
    world.dns().set_a(host, &[Ipv4Addr::LOCALHOST]);
    let f = Fixture::new();
    let https_port = free_port();
    let http_port = free_port();
    let (_pebble, directory) = start_pebble(&f, &world, https_port, http_port).await;
    let config = f.write_config(&format!(
        r#"listen = "127.0.0.1:{https_port}"
[[domain]]
name = "renew.test"
mode = "enforce"
mx = ["mx.renew.test"]
[acme]
directory = "https://{directory}/dir"
contact = ["mailto:hostmaster@renew.test"]
storage = "acme"
challenge = "tls-alpn-01"
ca_file = "{}"
check_interval = "1h"
renew_after = {RENEW_AFTER}
"#,
        f.ca_file().display()
    ));
    let server = Server::start(ServeConfig::load(&config).expect("config"))
        .await
        .expect("server");

    let first = wait_cert(&server, &f, host, None, Duration::from_secs(90)).await;
    let lifetime = first
        .1
        .duration_since(first.0)
        .expect("not_after > not_before");
    // Pebble's not_after is inclusive (period − 1 s), like Let's Encrypt's.
    assert!(
        (LIFETIME_SECS - 1..=LIFETIME_SECS).contains(&lifetime.as_secs()),
        "pebble honours the period: {lifetime:?}"
    );
    let due = first.0 + lifetime.mul_f64(RENEW_AFTER);

    // Generous bound: due after 15 s, plus an order (a few seconds).
    let second = wait_cert(&server, &f, host, Some(first), Duration::from_secs(90)).await;
    // Certificate times have whole seconds: allow one second of rounding.
    assert!(
        second.0 + Duration::from_secs(1) >= due,
        "renewed too early: new not_before {:?}, due {:?}",
        second.0,
        due
    );
    assert!(
        second.0 < first.1,
        "renewed only after the old certificate expired: {:?} >= {:?}",
        second.0,
        first.1
    );
    server.shutdown().await;
}
