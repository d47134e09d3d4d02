//! docs/other-mtas.md's recipes run for real: `cargo test -p mta-sts-cli --test other_mtas`.
//!
//! Exim 4.96 conflicts with the host's Postfix, so it runs chrooted in a Debian 12 root that
//! `scripts/bookworm-root exim` builds once and caches outside the repository ([`root`]).
//! Each test starts a testkit world (DNS on port 53 of a spare loopback address, since the
//! MTA reads `resolv.conf`; SMTP servers with STARTTLS on port 25 of their own loopback
//! addresses), `mta-sts daemon`, and submits messages with `exim4 -odi` (delivery in the
//! foreground) under `unshare -m`, with the test's temporary directory bind-mounted on the
//! root's `/mnt`. The Exim configuration's router and transport are the docs' snippet, with
//! the daemon's port and the test CA filled in.
//!
//! Needs root. Skips with a message when the root cannot be built (or without root), and
//! fails instead under `MTA_STS_REQUIRE_INTEROP=1`.

#[path = "../api/daemon_support.rs"]
mod daemon_support;
#[path = "../support/mx_lab.rs"]
mod mx_lab;
mod root;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use daemon_support::{DaemonProc, resolver_section};
use mta_sts_testkit::{CertKind, SmtpServer, World};
use root::{MNT, bookworm_root};

/// This target's loopback ranges (the postfix310 target uses its own): the DNS on
/// 127.0.55.x, the MX servers on 127.0.32.x.
const DNS_NET: u8 = 55;
const MX_NET: u8 = 32;

/// The router and transport of docs/other-mtas.md's Exim section, as written there, with
/// the daemon's socketmap address in place of `127.0.0.1:8461`.
fn exim_docs_snippet(socketmap: SocketAddr) -> (String, String) {
    let docs = include_str!("../../../../docs/other-mtas.md");
    let exim = docs
        .split("## Exim")
        .nth(1)
        .expect("docs/other-mtas.md has an Exim section");
    let blocks: Vec<&str> = exim.split("```").skip(1).step_by(2).collect();
    assert!(
        blocks.len() >= 2,
        "the Exim section has a router and a transport"
    );
    let router = blocks[0]
        .trim_start_matches('\n')
        .replace("127.0.0.1:8461", &socketmap.to_string());
    assert_ne!(
        router,
        blocks[0].trim_start_matches('\n'),
        "the router names 127.0.0.1:8461"
    );
    (router, blocks[1].trim_start_matches('\n').to_owned())
}

/// Exim's whole configuration: the docs' router and transport, plus what a test needs (its
/// spool and log in `/mnt/exim`, no local domains, the test CA for verification).
fn exim_conf(socketmap: SocketAddr) -> String {
    let (router, transport) = exim_docs_snippet(socketmap);
    format!(
        "primary_hostname = client.exim-test.invalid\n\
         domainlist local_domains =\n\
         spool_directory = {MNT}/exim/spool\n\
         log_file_path = {MNT}/exim/log/%slog\n\
         log_selector = +tls_certificate_verified +tls_sni +tls_peerdn\n\
         disable_ipv6 = true\n\
         keep_environment =\n\
         begin routers\n{router}\n\
         begin transports\n{transport}  tls_verify_certificates = {MNT}/ca.pem\n\n\
         begin retry\n* * F,1h,10m\n"
    )
}

/// The testkit world, the daemon and the Exim root of one test.
struct Lab {
    _world: World,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    daemon: DaemonProc,
    servers: Vec<SmtpServer>,
}

impl Lab {
    fn start(root: &Path, world: World, mx: &[(&str, CertKind)]) -> Lab {
        let servers = mx_lab::start_mx(&world, mx, MX_NET);
        let nameserver = mx_lab::dns_on_port_53(&world, DNS_NET);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        root::prepare_dir(&dir, &world.ca_pem(), nameserver);
        let daemon = DaemonProc::start(
            &dir,
            "",
            &format!("{}[cache]\nstore = \"memory\"\n", resolver_section(&world)),
            &[],
        );
        Lab {
            _world: world,
            _dir: tmp,
            dir,
            root: root.to_owned(),
            daemon,
            servers,
        }
    }

    /// Submits one message to each of `rcpts` with `exim4 -odi` (each delivery attempt
    /// finishes before the command returns), Exim's configuration being `conf`.
    fn exim_send(&self, conf: &str, rcpts: &[&str]) {
        std::fs::write(self.dir.join("exim.conf"), conf).unwrap();
        for d in ["exim/spool", "exim/log"] {
            std::fs::create_dir_all(self.dir.join(d)).unwrap();
        }
        let script = format!(
            "{}\
             chroot \"$2\" chown -R Debian-exim:Debian-exim {MNT}/exim\n\
             r=$2; shift 2\n\
             for rcpt in \"$@\"; do\n\
               printf 'Subject: mta-sts %s\\n\\nhello\\n' \"$rcpt\" | \
               chroot \"$r\" exim4 -C {MNT}/exim.conf -odi -f probe@client.exim-test.invalid \"$rcpt\" || true\n\
             done\n",
            root::MOUNTS
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script, "sh"])
            .arg(&self.dir)
            .arg(&self.root)
            .args(rcpts)
            .output()
            .expect("run unshare");
        assert!(
            out.status.success(),
            "exim4 in the Debian 12 root failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.dump()
        );
    }

    fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.join("exim/log/mainlog")).unwrap_or_default()
    }

    fn dump(&self) -> String {
        format!(
            "mainlog:\n{}\npaniclog:\n{}\ndaemon:\n{}",
            self.mainlog(),
            std::fs::read_to_string(self.dir.join("exim/log/paniclog")).unwrap_or_default(),
            self.daemon.log_text()
        )
    }
}

/// RFC 8461 §5 through docs/other-mtas.md's Exim recipe: a domain with an enforced policy
/// whose MX has a valid certificate is delivered over verified TLS; one whose MX has a
/// certificate for another name is deferred and nothing reaches its MX; a domain without a
/// policy is delivered (Exim's opportunistic TLS, unverified allowed).
#[test]
fn exim_readsocket_recipe_enforces_verified_tls_for_enforced_domains() {
    let Some(root) = bookworm_root("exim") else {
        return;
    };
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("wrongname.test", |d| d.enforce())
        .domain("plain.test", |d| d.mx(10, "mail.plain.test"))
        .start();
    let lab = Lab::start(
        &root,
        world,
        &[
            ("mail.good.test", CertKind::Valid),
            ("mail.wrongname.test", CertKind::WrongName),
            ("mail.plain.test", CertKind::WrongName),
        ],
    );
    assert!(
        lab.daemon
            .query("exim good.test")
            .starts_with("OK secure match=mail.good.test"),
        "{}",
        lab.dump()
    );
    assert_eq!(lab.daemon.query("exim plain.test"), "NOTFOUND ");

    lab.exim_send(
        &exim_conf(lab.daemon.socketmap),
        &["user@good.test", "user@wrongname.test", "user@plain.test"],
    );
    let log = lab.mainlog();
    let line = |marker: &str| {
        log.lines()
            .find(|l| l.contains(marker))
            .map(str::to_owned)
            .unwrap_or_default()
    };

    let good = line("=> user@good.test");
    assert!(
        good.contains("T=remote_smtp_mta_sts") && good.contains("CV=yes"),
        "{}",
        lab.dump()
    );
    assert_eq!(lab.servers[0].messages().len(), 1, "{}", lab.dump());
    assert!(lab.servers[0].messages()[0].tls.is_some());

    assert!(line("=> user@wrongname.test").is_empty(), "{}", lab.dump());
    assert!(!line("== user@wrongname.test").is_empty(), "{}", lab.dump());
    assert!(lab.servers[1].messages().is_empty(), "{}", lab.dump());

    // No policy: the wrong-name certificate is no obstacle (TLS, unverified).
    let plain = line("=> user@plain.test");
    assert!(plain.contains("CV=no"), "{}", lab.dump());
    assert_eq!(lab.servers[2].messages().len(), 1, "{}", lab.dump());
}
