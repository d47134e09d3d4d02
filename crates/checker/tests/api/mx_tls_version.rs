//! `mx-tls-version` (RFC 8461 §4.2 relies on RFC 7525: TLS 1.2 or later): an MX host whose
//! STARTTLS leads to a real TLS 1.0-only server (`openssl s_server -tls1`) is reported as
//! such, not as a generic handshake failure. Skips without `openssl` unless
//! `MTA_STS_REQUIRE_INTEROP=1`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{checker, config, good};
use mta_sts_checker::Verdict;
use mta_sts_testkit::{CertKind, World};

/// Kills the `openssl s_server` child and removes its key files when the test ends,
/// however it ends.
struct Server(Child, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `openssl s_server` for `host` offering only `versions` (e.g. `-tls1`), or `None` when
/// openssl is missing and interop is not required.
fn openssl_server(world: &World, host: &str, versions: &[&str]) -> Option<(Server, u16)> {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "openssl is required (MTA_STS_REQUIRE_INTEROP=1): apt-get install openssl"
        );
        eprintln!("skipping: openssl not installed");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("mx-tls-version-{}-{host}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert = world.pki().issue(host, CertKind::Valid).expect("issue");
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).expect("write cert");
    std::fs::write(dir.join("key.pem"), &cert.key_pem).expect("write key");
    let port = free_port();
    let child = Command::new("openssl")
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        .args(versions)
        // OpenSSL 3 refuses TLS 1.0/1.1 at the default security level.
        .args(["-cipher", "DEFAULT:@SECLEVEL=0", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl");
    let server = Server(child, dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((server, port))
}

/// A plain-text SMTP front (greeting, EHLO with STARTTLS, 220 to STARTTLS) that hands the
/// connection to the TLS server at `tls_port` after the 220 (RFC 3207 §4). Returns its port.
fn smtp_front(host: &'static str, tls_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = session(host, conn, tls_port);
            });
        }
    });
    port
}

fn session(host: &str, mut conn: TcpStream, tls_port: u16) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    write!(conn, "220 {host} ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.trim_end().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            write!(conn, "250-{host}\r\n250-PIPELINING\r\n250 STARTTLS\r\n")?;
        } else if verb == "STARTTLS" {
            write!(conn, "220 2.0.0 ready to start TLS\r\n")?;
            break;
        } else {
            write!(conn, "221 bye\r\n")?;
            return Ok(());
        }
    }
    let tls = TcpStream::connect(("127.0.0.1", tls_port))?;
    let (mut a_read, mut a_write) = (conn.try_clone()?, conn);
    let (mut b_read, mut b_write) = (tls.try_clone()?, tls);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b_read, &mut a_write);
    let _ = a_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Checks `domain`, whose MX `mail.<domain>` is the front to a server offering `versions`.
fn check(
    domain: &'static str,
    mx: &'static str,
    versions: &[&str],
) -> Option<(Vec<String>, Verdict)> {
    let world = World::builder().domain(domain, good).start();
    let (_server, tls_port) = openssl_server(&world, mx, versions)?;
    let front = smtp_front(mx, tls_port);
    let mut cfg = config(&world, &[]);
    cfg.connect_to.push(
        format!("{mx}:25:127.0.0.1:{front}")
            .parse()
            .expect("connect-to"),
    );
    cfg.timeout = Duration::from_secs(10);
    cfg.smtp_timeout = Duration::from_secs(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(checker(cfg).check(domain)).expect("check");
    let details: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{} {}: {}", f.severity, f.id, f.detail))
        .collect();
    eprintln!("{domain}: {details:#?}");
    Some((report.ids(), report.verdict))
}

#[test]
fn mx_offering_only_tls_1_0_is_mx_tls_version() {
    let Some((ids, verdict)) = check("tls10.test", "mail.tls10.test", &["-tls1"]) else {
        return;
    };
    // not `mx-starttls-failed`: the owner learns it is the protocol version. Under enforce a
    // sender defers the mail (RFC 8461 §5).
    assert_eq!(ids, ["delivery-deferred", "mx-tls-version"]);
    assert_eq!(verdict, Verdict::Fail);
}

/// The control: the same front and server with TLS 1.2 is a perfect domain, so the finding
/// above comes from the version and nothing else.
#[test]
fn same_mx_with_tls_1_2_has_no_finding() {
    let Some((ids, verdict)) = check("tls12.test", "mail.tls12.test", &["-tls1_2"]) else {
        return;
    };
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(verdict, Verdict::Pass);
}
