//! Real Postfix as the daemon's client (DESIGN §6 interop):
//! - `postmap -q` through `socketmap:inet:…` for enforce, testing (with and without a strict
//!   zone), none and absent domains;
//! - full delivery through a Postfix instance in a temporary directory whose
//!   `smtp_tls_policy_maps` points at the daemon, to testkit SMTP servers: enforce with a
//!   valid certificate → sent over verified TLS; enforce with a wrong-name certificate →
//!   deferred 4.7.5; testing → sent.
//!
//! Postfix finds MX records through `/etc/resolv.conf` (no port syntax), so the delivery test
//! serves the testkit zones on port 53 of a spare loopback address and runs Postfix in a
//! private mount namespace (`unshare -m`) with a bind-mounted resolv.conf naming it
//! (interop-lab §3b). Needs root. Skips with a message when Postfix or root is missing,
//! unless `MTA_STS_REQUIRE_INTEROP=1`.

mod daemon_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::*;
use mta_sts_testkit::{CertKind, SmtpConfig, World};

fn postmap(dir: &Path, key: &str, map: &str) -> (i32, String) {
    let out = Command::new("postmap")
        .arg("-c")
        .arg(dir)
        .args(["-q", key, map])
        .output()
        .expect("run postmap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
    )
}

#[test]
fn postmap_queries_the_daemon() {
    if !have("postmap", "postfix") {
        return;
    }
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"])
        })
        .domain("none.test", |d| d.mta_sts("none", &[]))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[cache]\nstore = \"memory\"\n[zones.strict]\nstrict_testing = true\n",
        resolver_section(&world)
    );
    let daemon = DaemonProc::start(dir.path(), "", &body, &[]);
    let pf = dir.path().join("pf");
    std::fs::create_dir(&pf).unwrap();
    std::fs::write(pf.join("main.cf"), "compatibility_level = 3.6\n").unwrap();
    let map = |zone: &str| format!("socketmap:inet:{}:{zone}", daemon.socketmap);

    assert_eq!(
        postmap(&pf, "good.test", &map("postfix")),
        (
            0,
            "secure match=mail.good.test servername=hostname".to_owned()
        )
    );
    assert_eq!(
        postmap(&pf, "[good.test]:25", &map("postfix")).1,
        "secure match=mail.good.test servername=hostname"
    );
    assert_eq!(
        postmap(&pf, "testing.test", &map("postfix")),
        (1, String::new())
    );
    assert_eq!(
        postmap(&pf, "testing.test", &map("strict")),
        (
            0,
            "secure match=mail.testing.test servername=hostname".to_owned()
        )
    );
    assert_eq!(
        postmap(&pf, "none.test", &map("postfix")),
        (1, String::new())
    );
    assert_eq!(
        postmap(&pf, "absent.test", &map("postfix")),
        (1, String::new())
    );
    assert_eq!(
        postmap(&pf, ".good.test", &map("postfix")),
        (1, String::new())
    );
}

/// A Postfix instance in a directory, stopped on drop.
struct Postfix {
    dir: std::path::PathBuf,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("stop")
            .stderr(Stdio::null())
            .status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Binds the world's zones on port 53 of the first free 127.0.53.x address.
fn dns_on_port_53(world: &World) -> Ipv4Addr {
    for last in 1..50 {
        let ip = Ipv4Addr::new(127, 0, 53, last);
        if world
            .dns()
            .also_listen(world.handle(), SocketAddr::from((ip, 53)))
            .is_ok()
        {
            return ip;
        }
    }
    panic!("no free port 53 on 127.0.53.1-49");
}

#[test]
fn postfix_delivers_per_the_daemons_policy() {
    if !have("postfix", "postfix") || !have("unshare", "util-linux") {
        return;
    }
    if !is_root() {
        assert!(
            !require_interop(),
            "the Postfix delivery test needs root (port 53, unshare -m)"
        );
        eprintln!("SKIP: the Postfix delivery test needs root (port 53, unshare -m)");
        return;
    }
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("wrongname.test", |d| d.enforce())
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"])
        })
        .start();
    // Each MX on port 25 of its own loopback address.
    let mut servers = Vec::new();
    for (i, (host, kind)) in [
        ("mail.good.test", CertKind::Valid),
        ("mail.wrongname.test", CertKind::WrongName),
        ("mail.testing.test", CertKind::WrongName),
    ]
    .into_iter()
    .enumerate()
    {
        let ip = (30u8..60)
            .map(|n| Ipv4Addr::new(127, 0, 25, n * 3 + i as u8))
            .find(|ip| std::net::TcpListener::bind((*ip, 25)).is_ok())
            .expect("a free port 25");
        world.dns().set_a(host, &[ip]);
        let smtp = world
            .start_smtp(
                SmtpConfig::new(host)
                    .starttls(kind)
                    .listen(SocketAddr::from((ip, 25))),
            )
            .expect("smtp server");
        servers.push(smtp);
    }
    let ns = dns_on_port_53(&world);

    let tmp = tempfile::tempdir().unwrap();
    // Postfix's unprivileged processes must traverse the directory and read the CA.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let body = format!("{}[cache]\nstore = \"memory\"\n", resolver_section(&world));
    let daemon = DaemonProc::start(tmp.path(), "", &body, &[]);

    let pf = tmp.path().join("pf");
    for d in ["", "spool", "data"] {
        std::fs::create_dir_all(pf.join(d)).unwrap();
    }
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, world.ca_pem()).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {ns}\noptions timeout:1 attempts:2\n"),
    )
    .unwrap();
    let maillog = pf.join("maillog");
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {spool}\ndata_directory = {data}\n\
             maillog_file_prefixes = /var, /dev/stdout, /tmp\nmaillog_file = {log}\n\
             myhostname = client.postfix-test.invalid\nmydestination =\ninet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\nsmtp_tls_security_level = may\n\
             smtp_tls_policy_maps = socketmap:inet:{map}:postfix\nsmtp_tls_CAfile = {ca}\n\
             smtp_tls_loglevel = 1\nalias_maps =\nalias_database =\n\
             smtp_connect_timeout = 5s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n",
            spool = pf.join("spool").display(),
            data = pf.join("data").display(),
            log = maillog.display(),
            map = daemon.socketmap,
            ca = ca.display(),
        ),
    )
    .unwrap();
    std::fs::copy("/etc/postfix/master.cf", pf.join("master.cf")).unwrap();
    run(Command::new("postconf")
        .arg("-c")
        .arg(&pf)
        .args(["-F", "*/*/chroot = n"]));
    run(Command::new("postconf")
        .arg("-c")
        .arg(&pf)
        .args(["-M#", "smtp/inet"]));
    run(Command::new("chown").arg("postfix").arg(pf.join("data")));
    let _postfix = Postfix { dir: pf.clone() };
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/resolv.conf && postfix -c \"$2\" start",
            "sh",
        ])
        .arg(&resolv)
        .arg(&pf)
        .output()
        .expect("start postfix");
    assert!(
        out.status.success(),
        "postfix start: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for rcpt in ["user@good.test", "user@wrongname.test", "user@testing.test"] {
        let mut child = Command::new("sendmail")
            .arg("-C")
            .arg(&pf)
            .args(["-f", "probe@client.postfix-test.invalid", rcpt])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sendmail");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Subject: mta-sts {rcpt}\n\nhello\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    let log = || std::fs::read_to_string(&maillog).unwrap_or_default();
    let done = eventually(Duration::from_secs(40), || {
        let l = log();
        servers[0].messages().len() == 1
            && servers[2].messages().len() == 1
            && l.contains("to=<user@wrongname.test>")
            && l.contains("status=deferred")
    });
    let l = log();
    assert!(
        done,
        "deliveries did not complete; maillog:\n{l}\ndaemon:\n{}",
        daemon.log_text()
    );
    // enforce + valid certificate: verified TLS.
    assert!(servers[0].messages()[0].tls.is_some());
    assert!(
        l.contains("Verified TLS connection established to mail.good.test"),
        "{l}"
    );
    // enforce + wrong-name certificate: deferred 4.7.5, nothing delivered.
    assert!(servers[1].messages().is_empty());
    let line = l
        .lines()
        .find(|line| line.contains("to=<user@wrongname.test>") && line.contains("status=deferred"))
        .unwrap_or_default();
    assert!(line.contains("dsn=4.7.5"), "{line}");
    // testing: delivered (untrusted TLS is fine under `may`).
    assert!(
        l.contains("to=<user@testing.test>") && l.contains("status=sent"),
        "{l}"
    );
}
