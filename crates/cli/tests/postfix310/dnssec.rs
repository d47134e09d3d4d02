//! Real DNSSEC for the DANE tests: zones signed in the test with `ldns-signzone` (fresh
//! ECDSA P-256 keys, RFC 8624 §3.1 algorithm 13), served by an authoritative `unbound`
//! (`auth-zone`s, port 5300), and a validating `unbound` on port 53 of the same address that
//! reaches them through `stub-zone`s, trusts each zone's key through a `trust-anchor-file`
//! (the KSK's DS), and forwards every other name to the testkit DNS, where no trust anchor
//! covers it (answers there are insecure: no AD bit, but not bogus). Two processes because
//! a validator's forwarders take precedence over its own `for-upstream` auth-zones.
//!
//! Keys and signatures are made per test in its temporary directory: signing a zone of ten
//! records takes milliseconds, and the zone holds the MX addresses and certificate hashes of
//! this run, so there is nothing worth caching.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::daemon_support::{eventually, have};

/// `true` when the programs the DNSSEC lab runs are installed; otherwise prints why the
/// test skips (or panics under `MTA_STS_REQUIRE_INTEROP=1`).
pub fn have_tools() -> bool {
    have("unbound", "unbound")
        && have("ldns-keygen", "ldnsutils")
        && have("ldns-signzone", "ldnsutils")
        && have("openssl", "openssl")
}

/// The RFC 7672 §3.1.1 DANE-EE(3) SPKI(1) SHA2-256(1) association data of a DER
/// certificate: the SHA-256 of its SubjectPublicKeyInfo, in hex.
pub fn spki_sha256(dir: &Path, cert_der: &[u8]) -> String {
    let path = dir.join("leaf.der");
    std::fs::write(&path, cert_der).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -inform DER -in \"$1\" -pubkey -noout \
             | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
        )
        .arg("sh")
        .arg(&path)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hex.len(), 64, "openssl dgst: {text}");
    hex
}

/// One zone to sign: its apex and its records (master file lines, names relative to the
/// apex). The SOA and NS records are added.
pub struct Zone {
    /// The apex, e.g. `dane.test`.
    pub name: String,
    /// Master file lines below the SOA and NS.
    pub records: String,
    /// Change the TLSA records' data after signing, so their RRSIGs no longer verify: the
    /// validator finds the TLSA RRset bogus (RFC 4035 §5.5) and answers SERVFAIL, while the
    /// other RRsets of the zone stay secure.
    pub bogus_tlsa: bool,
}

/// Signs `zone` in `dir`; returns the signed zone file and the KSK's DS file (the trust
/// anchor).
fn sign(dir: &Path, zone: &Zone) -> (PathBuf, PathBuf) {
    let name = &zone.name;
    let unsigned = dir.join(format!("{name}.zone"));
    std::fs::write(
        &unsigned,
        format!(
            "$ORIGIN {name}.\n$TTL 300\n\
             @ IN SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 300\n\
             @ IN NS ns.{name}.\nns IN A 127.0.0.1\n{}",
            zone.records
        ),
    )
    .unwrap();
    let keygen = |ksk: bool| {
        let mut cmd = Command::new("ldns-keygen");
        cmd.current_dir(dir).args(["-a", "ECDSAP256SHA256"]);
        if ksk {
            cmd.arg("-k");
        }
        let out = cmd.arg(name).output().expect("run ldns-keygen");
        assert!(out.status.success(), "ldns-keygen: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (ksk, zsk) = (keygen(true), keygen(false));
    let out = Command::new("ldns-signzone")
        .current_dir(dir)
        .arg(&unsigned)
        .args([&ksk, &zsk])
        .output()
        .expect("run ldns-signzone");
    assert!(out.status.success(), "ldns-signzone: {out:?}");
    let signed = dir.join(format!("{name}.zone.signed"));
    if zone.bogus_tlsa {
        let text = std::fs::read_to_string(&signed).unwrap();
        let mut changed = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                // `<owner>\t<ttl>\tIN\tTLSA\t<usage> <selector> <matching> <hex>`
                if line.split('\t').nth(3) == Some("TLSA") {
                    changed += 1;
                    let (head, last) = line.split_at(line.len() - 1);
                    format!("{head}{}", if last == "0" { "1" } else { "0" })
                } else {
                    line.to_owned()
                }
            })
            .collect();
        assert!(changed > 0, "no TLSA record in {name}");
        std::fs::write(&signed, lines.join("\n") + "\n").unwrap();
    }
    (signed, dir.join(format!("{ksk}.ds")))
}

/// The authoritative server's port on the validator's address.
const AUTH_PORT: u16 = 5300;

/// The `server:` lines both unbound processes share.
fn server_conf(dir: &Path, ip: Ipv4Addr, port: u16, log: &Path) -> String {
    format!(
        "server:\n  interface: {ip}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
         directory: \"{}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"{}\"\n  \
         verbosity: 1\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  \
         # Another server on the same address and port is an error, not a shared port.\n  \
         so-reuseport: no\n  \
         # RFC 6761 names unbound answers itself by default.\n  \
         local-zone: \"test.\" nodefault\n  local-zone: \"invalid.\" nodefault\n",
        dir.display(),
        log.display()
    )
}

/// Starts `unbound -d -c <config>` and waits until it accepts TCP on `addr`.
fn spawn(config: &Path, text: &str, addr: (Ipv4Addr, u16), log: &Path) -> Child {
    std::fs::write(config, text).unwrap();
    let mut child = Command::new("unbound")
        .arg("-d")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run unbound");
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    if !up || child.try_wait().ok().flatten().is_some() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "unbound ({}) did not start:\n{}",
            config.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    child
}

/// A validating unbound on port 53 of a 127.0.56.x address, with its authoritative unbound
/// on [`AUTH_PORT`] of the same address; both stopped on drop.
pub struct Unbound {
    /// The authoritative server, then the validator.
    children: Vec<Child>,
    /// The validator's address (port 53).
    pub ip: Ipv4Addr,
    log: PathBuf,
}

impl Unbound {
    /// Signs `zones` in `dir` and starts the two unbound processes serving them, the
    /// validator forwarding the rest to `forward` (the testkit DNS).
    pub fn start(dir: &Path, zones: &[Zone], forward: SocketAddr) -> Unbound {
        // A free address. Tests run in parallel, and a free-port probe alone races: two
        // tests probing at once would pick the same address. So each unbound of this
        // process takes the next address, and the probe only skips addresses in use by
        // other processes (the testkit DNS of the other tests takes 127.0.54.x).
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let ip = std::iter::from_fn(|| Some(NEXT.fetch_add(1, Ordering::Relaxed)))
            .take_while(|n| *n < 250)
            .map(|n| Ipv4Addr::new(127, 0, 56, n))
            .find(|ip| {
                std::net::UdpSocket::bind((*ip, 53)).is_ok()
                    && std::net::TcpListener::bind((*ip, 53)).is_ok()
            })
            .expect("a free port 53 on 127.0.56.1-249");
        let mut auth = server_conf(dir, ip, AUTH_PORT, &dir.join("auth.log"));
        auth.push_str("  module-config: \"iterator\"\n");
        let mut validator = server_conf(dir, ip, 53, &dir.join("unbound.log"));
        validator.push_str("  module-config: \"validator iterator\"\n  val-log-level: 2\n");
        let mut stubs = String::new();
        for zone in zones {
            let (signed, ds) = sign(dir, zone);
            validator.push_str(&format!("  trust-anchor-file: \"{}\"\n", ds.display()));
            stubs.push_str(&format!(
                "stub-zone:\n  name: \"{}\"\n  stub-addr: {ip}@{AUTH_PORT}\n",
                zone.name
            ));
            auth.push_str(&format!(
                "auth-zone:\n  name: \"{}\"\n  zonefile: \"{}\"\n  for-upstream: no\n  \
                 for-downstream: yes\n",
                zone.name,
                signed.display()
            ));
        }
        validator.push_str(&format!(
            "{stubs}forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n",
            forward.ip(),
            forward.port()
        ));
        let log = dir.join("unbound.log");
        let auth = spawn(
            &dir.join("auth.conf"),
            &auth,
            (ip, AUTH_PORT),
            &dir.join("auth.log"),
        );
        // Dropped (and the authoritative server killed) if the validator does not start.
        let mut unbound = Unbound {
            children: vec![auth],
            ip,
            log,
        };
        let validator = spawn(
            &dir.join("unbound.conf"),
            &validator,
            (ip, 53),
            &unbound.log,
        );
        unbound.children.push(validator);
        unbound
    }

    /// The validator's log so far (validation failures at `val-log-level: 2`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
