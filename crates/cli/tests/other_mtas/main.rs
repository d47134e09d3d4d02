//! docs/other-mtas.md's recipes run for real: `cargo test -p mta-sts-cli --test other_mtas`.
//!
//! Exim 4.96 and Sendmail 8.17 conflict with the host's Postfix, so each runs chrooted in a
//! Debian 12 root that `scripts/bookworm-root exim|sendmail` builds once and caches outside
//! the repository ([`root`]).
//! Each test starts a testkit world (DNS on port 53 of a spare loopback address, since the
//! MTA reads `resolv.conf`; SMTP servers with STARTTLS on port 25 of their own loopback
//! addresses), `mta-sts daemon`, and submits messages with `exim4 -odi` (delivery in the
//! foreground) or `sendmail -odi` under `unshare -m`, with the test's temporary directory
//! bind-mounted on the root's `/mnt`. The Exim configuration's router and transport, and
//! Sendmail's `LOCAL_CONFIG`/`LOCAL_TLS_RCPT` lines, are the docs' snippets with the daemon's
//! port and the test CA filled in.
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

/// The `sendmail.mc` lines of docs/other-mtas.md's Sendmail section, as written there, with
/// the daemon's socketmap port in place of `8461`.
fn sendmail_docs_snippet(socketmap: SocketAddr) -> String {
    let docs = include_str!("../../../../docs/other-mtas.md");
    let section = docs
        .split("## Sendmail")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/other-mtas.md has a Sendmail section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Sendmail section has an mc snippet");
    let snippet = block.trim_start_matches('\n').replace(
        "inet:8461@127.0.0.1",
        &format!("inet:{}@{}", socketmap.port(), socketmap.ip()),
    );
    assert_ne!(
        snippet,
        block.trim_start_matches('\n'),
        "the snippet names inet:8461@127.0.0.1"
    );
    snippet
}

/// Sendmail's whole `sendmail.mc`: what a test needs (its queue in `/mnt/sm`, a fixed host
/// name, the test CA for verification) and the docs' lines.
fn sendmail_mc(socketmap: SocketAddr) -> String {
    format!(
        "divert(-1)\n\
         divert(0)dnl\n\
         include(`/usr/share/sendmail/cf/m4/cf.m4')dnl\n\
         OSTYPE(`linux')dnl\n\
         define(`confDOMAIN_NAME', `client.sendmail-test.invalid')dnl\n\
         define(`QUEUE_DIR', `{MNT}/sm/mqueue')dnl\n\
         define(`STATUS_FILE', `{MNT}/sm/statistics')dnl\n\
         define(`confCACERT_PATH', `{MNT}')dnl\n\
         define(`confCACERT', `{MNT}/ca.pem')dnl\n\
         define(`confDONT_PROBE_INTERFACES', `true')dnl\n\
         MAILER(`smtp')dnl\n\
         {}",
        sendmail_docs_snippet(socketmap)
    )
}

/// The testkit world, the daemon and the MTA's root of one test.
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

    /// Builds `sendmail.cf` from `mc` with the root's m4 and submits one message to each of
    /// `rcpts` with `sendmail -v -odi` (delivery in the foreground, its SMTP dialogue on
    /// standard output), then lists the queue (`sendmail -bp`, each deferred message with
    /// its reason): the whole output is returned, each part after a `=== <rcpt>` or
    /// `=== mailq` line.
    fn sendmail_send(&self, mc: &str, rcpts: &[&str]) -> String {
        std::fs::write(self.dir.join("sendmail.mc"), mc).unwrap();
        std::fs::create_dir_all(self.dir.join("sm/mqueue")).unwrap();
        let script = format!(
            "{}\
             r=$2; shift 2\n\
             chroot \"$r\" m4 {MNT}/sendmail.mc > \"$r{MNT}/sendmail.cf\"\n\
             for rcpt in \"$@\"; do\n\
               echo \"=== $rcpt\"\n\
               printf 'Subject: mta-sts %s\\n\\nhello\\n' \"$rcpt\" | \
               chroot \"$r\" /usr/sbin/sendmail -C {MNT}/sendmail.cf -v -odi -f probe@client.sendmail-test.invalid \"$rcpt\" 2>&1 || true\n\
             done\n\
             echo '=== mailq'\n\
             chroot \"$r\" /usr/sbin/sendmail -C {MNT}/sendmail.cf -bp 2>&1\n",
            root::MOUNTS
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script, "sh"])
            .arg(&self.dir)
            .arg(&self.root)
            .args(rcpts)
            .output()
            .expect("run unshare");
        let transcript = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "sendmail in the Debian 12 root failed: {transcript}{}\ndaemon:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.daemon.log_text()
        );
        transcript
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

/// The part of a `sendmail -v` transcript for one recipient (after its `=== rcpt` marker).
fn transcript_of<'a>(transcript: &'a str, rcpt: &str) -> &'a str {
    let marker = format!("=== {rcpt}\n");
    let start = transcript
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or(transcript.len());
    let rest = &transcript[start..];
    &rest[..rest.find("\n=== ").unwrap_or(rest.len())]
}

/// RFC 8461 §5 through docs/other-mtas.md's Sendmail recipe: a domain with an enforced
/// policy whose MX has a valid certificate is delivered over verified TLS; one whose MX has
/// a certificate for another name, or one from an untrusted CA, is deferred (4.7.5) and
/// nothing reaches its MX; a domain without a policy is delivered (opportunistic TLS).
#[test]
fn sendmail_socket_map_recipe_enforces_verified_tls_for_enforced_domains() {
    let Some(root) = bookworm_root("sendmail") else {
        return;
    };
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("wrongname.test", |d| d.enforce())
        .domain("untrusted.test", |d| d.enforce())
        .domain("plain.test", |d| d.mx(10, "mail.plain.test"))
        .start();
    let lab = Lab::start(
        &root,
        world,
        &[
            ("mail.good.test", CertKind::Valid),
            ("mail.wrongname.test", CertKind::WrongName),
            ("mail.untrusted.test", CertKind::Untrusted),
            ("mail.plain.test", CertKind::WrongName),
        ],
    );
    assert!(
        lab.daemon
            .query("mtasts good.test")
            .starts_with("OK secure match=mail.good.test"),
        "{}",
        lab.daemon.log_text()
    );

    let rcpts = [
        "user@good.test",
        "user@wrongname.test",
        "user@untrusted.test",
        "user@plain.test",
    ];
    let transcript = lab.sendmail_send(&sendmail_mc(lab.daemon.socketmap), &rcpts);
    let context = || format!("{transcript}\ndaemon:\n{}", lab.daemon.log_text());

    assert!(
        transcript_of(&transcript, "user@good.test").contains("Sent ("),
        "{}",
        context()
    );
    let good = lab.servers[0].messages();
    assert_eq!(good.len(), 1, "{}", context());
    assert!(good[0].tls.is_some(), "{}", context());

    for (i, rcpt) in [(1, "user@wrongname.test"), (2, "user@untrusted.test")] {
        let part = transcript_of(&transcript, rcpt);
        assert!(part.contains("Deferred"), "{rcpt}: {}", context());
        assert!(!part.contains("Sent ("), "{rcpt}: {}", context());
        assert!(
            lab.servers[i].messages().is_empty(),
            "{rcpt}: {}",
            context()
        );
    }
    // The queue keeps both, each with the recipe's reason (which `-bp` cuts short).
    let mailq = transcript_of(&transcript, "mailq");
    assert!(
        mailq.contains("user@wrongname.test... MTA-STS: certificate name wrong-name."),
        "{}",
        context()
    );
    assert!(
        mailq.contains("user@untrusted.test... MTA-STS: no verified TLS with this MX"),
        "{}",
        context()
    );
    assert!(mailq.contains("Total requests: 2"), "{}", context());

    // No policy: the wrong-name certificate is no obstacle.
    assert!(
        transcript_of(&transcript, "user@plain.test").contains("Sent ("),
        "{}",
        context()
    );
    assert_eq!(lab.servers[3].messages().len(), 1, "{}", context());
}
