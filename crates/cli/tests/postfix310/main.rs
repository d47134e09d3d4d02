//! Postfix 3.10 (Debian 13, with libtlsrpt) as the daemon's client: `cargo test -p
//! mta-sts-cli --test postfix310`.
//!
//! Postfix 3.10 is not in the host's release, so it runs chrooted in a Debian 13 root that
//! `scripts/trixie-root` builds once and caches outside the repository ([`lab`]). Each test
//! starts a testkit world (DNS served on port 53 of a spare loopback address, since Postfix
//! reads `resolv.conf`, which has no port syntax; SMTP servers with STARTTLS on port 25 of
//! their own loopback addresses), `mta-sts daemon` with the Postfix 3.10 attributes on
//! (`tlsrpt = true`) and its TLS-RPT collector socket, and one chrooted Postfix whose
//! `smtp_tls_policy_maps` is the daemon and whose `smtp_tlsrpt_socket_name` is the collector.
//! The DANE test ([`dane`]) puts a validating unbound with signed zones ([`dnssec`]) between
//! the testkit DNS and both the daemon and Postfix.
//!
//! Needs root. Skips with a message when the root cannot be built (or without root), and
//! fails instead under `MTA_STS_REQUIRE_INTEROP=1`.

#[path = "../api/daemon_support.rs"]
mod daemon_support;
mod dane;
mod dnssec;
mod lab;
#[path = "../support/mx_lab.rs"]
mod mx_lab;
mod report;
mod testing_mode;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use daemon_support::{DaemonProc, eventually, resolver_section};
use lab::{MNT, Postfix310, trixie_root};
use mta_sts_testkit::{CertKind, HostBehavior, SmtpServer, World};

/// The TLS-RPT record every test domain publishes: Postfix reports only for domains that
/// have one (RFC 8460 §3).
const TLSRPT: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test";

/// This target's loopback ranges (the other_mtas target uses its own): the DNS on
/// 127.0.54.x, the MX servers on 127.0.31.x.
const DNS_NET: u8 = 54;
const MX_NET: u8 = 31;

/// The testkit world, the daemon and Postfix 3.10 of one test.
struct Lab {
    _world: World,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    daemon: DaemonProc,
    postfix: Postfix310,
    servers: Vec<SmtpServer>,
}

/// Which DNS the daemon and Postfix ask.
struct Dns {
    /// The daemon's `[resolver]` section.
    resolver: String,
    /// Postfix's name server (port 53).
    nameserver: Ipv4Addr,
}

impl Lab {
    /// Starts everything: `mx` are the SMTP servers (host name, certificate) on port 25,
    /// each on its own loopback address with an A record; `zones` is added to the daemon's
    /// configuration; `main_cf` and `master_cf` (lines appended) to Postfix's.
    fn start(
        root: &Path,
        world: World,
        mx: &[(&str, CertKind)],
        zones: &str,
        main_cf: &str,
        master_cf: &str,
    ) -> Lab {
        let servers = mx_lab::start_mx(&world, mx, MX_NET);
        let dns = Dns {
            resolver: resolver_section(&world),
            nameserver: mx_lab::dns_on_port_53(&world, DNS_NET),
        };
        Lab::start_with(root, world, servers, &dns, zones, main_cf, master_cf)
    }

    /// [`Lab::start`] with SMTP servers already started and the daemon and Postfix asking
    /// `dns`.
    fn start_with(
        root: &Path,
        world: World,
        servers: Vec<SmtpServer>,
        dns: &Dns,
        zones: &str,
        main_cf: &str,
        master_cf: &str,
    ) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        std::fs::write(dir.join("ca.pem"), world.ca_pem()).unwrap();
        let daemon = DaemonProc::start(
            &dir,
            "",
            &format!(
                "{}[cache]\nstore = \"memory\"\n[defaults]\ntlsrpt = true\n{zones}\n\
                 [tlsrpt]\nevents = \"{}\"\nsocket = \"{}\"\n",
                dns.resolver,
                dir.join("events.jsonl").display(),
                dir.join("tlsrpt.sock").display(),
            ),
            &[],
        );
        let postfix = Postfix310::start(
            root,
            &dir,
            dns.nameserver,
            &format!(
                "smtp_tls_security_level = may\nsmtp_tls_CAfile = {MNT}/ca.pem\nsmtp_tls_loglevel = 1\n\
                 smtp_tls_policy_maps = socketmap:inet:{}:postfix\n\
                 smtp_tlsrpt_enable = yes\nsmtp_tlsrpt_socket_name = {MNT}/tlsrpt.sock\n{main_cf}",
                daemon.socketmap
            ),
            master_cf,
        );
        Lab {
            _world: world,
            _dir: tmp,
            dir,
            daemon,
            postfix,
            servers,
        }
    }

    /// The daemon's TLS-RPT events so far (one JSON object a line).
    fn events(&self) -> String {
        std::fs::read_to_string(self.dir.join("events.jsonl")).unwrap_or_default()
    }

    /// Everything to read when an assertion fails.
    fn dump(&self) -> String {
        format!(
            "maillog:\n{}\ndaemon:\n{}\nevents:\n{}",
            self.postfix.log(),
            self.daemon.log_text(),
            self.events()
        )
    }
}

/// RFC 8461 §5 (`enforce`): with a valid certificate the message goes over verified TLS
/// and Postfix 3.10 takes the policy attributes (its TLSRPT status names the policy
/// domain, and the collector gets a `success`); with a certificate for another name it is
/// deferred with 4.7.5, nothing is delivered, and the collector gets a `failure`.
#[test]
fn rfc8461_5_enforce_verified_tls_delivered_and_wrong_name_deferred_4_7_5() {
    let Some(root) = trixie_root() else {
        return;
    };
    let world = World::builder()
        .domain("good.test", |d| d.enforce().tlsrpt(TLSRPT))
        .domain("wrongname.test", |d| d.enforce().tlsrpt(TLSRPT))
        .start();
    let lab = Lab::start(
        &root,
        world,
        &[
            ("mail.good.test", CertKind::Valid),
            ("mail.wrongname.test", CertKind::WrongName),
        ],
        "",
        "",
        "",
    );
    lab.postfix.send("user@good.test");
    lab.postfix.send("user@wrongname.test");

    let sent = lab.postfix.status_line("user@good.test");
    assert!(sent.contains("status=sent"), "{sent}\n{}", lab.dump());
    assert_eq!(lab.servers[0].messages().len(), 1);
    assert!(lab.servers[0].messages()[0].tls.is_some());
    let log = lab.postfix.log();
    assert!(
        log.contains("Verified TLS connection established to mail.good.test"),
        "{}",
        lab.dump()
    );
    assert!(
        log.contains("TLSRPT: status=success, domain=good.test"),
        "{}",
        lab.dump()
    );

    let deferred = lab.postfix.status_line("user@wrongname.test");
    assert!(
        deferred.contains("status=deferred") && deferred.contains("dsn=4.7.5"),
        "{deferred}\n{}",
        lab.dump()
    );
    assert!(lab.servers[1].messages().is_empty());
    let log = lab.postfix.log();
    assert!(
        log.contains("TLSRPT: status=failure, domain=wrongname.test"),
        "{}",
        lab.dump()
    );
    // The collector got Postfix's datagrams (libtlsrpt), carrying the policy as the daemon
    // described it in its reply (policy_type, policy_string, mx_host_pattern): Postfix
    // took the attributes.
    let collected = eventually(Duration::from_secs(10), || {
        let events = lab.events();
        events.lines().any(|l| {
            l.contains(r#""policy_domain":"good.test""#) && l.contains(r#""result":"success""#)
        }) && events.lines().any(|l| {
            l.contains(r#""policy_domain":"wrongname.test""#)
                && l.contains(r#""result":"certificate-host-mismatch""#)
        })
    });
    assert!(collected, "{}", lab.dump());
    let events = lab.events();
    assert!(
        events.contains(
            r#""policy":{"type":"sts","string":["mx: mail.good.test","version: STSv1","mode: enforce","max_age: 86400"],"mx_host":["mail.good.test"]}"#
        ),
        "{}",
        lab.dump()
    );
}

/// RFC 8461 §4.1: `*.wild.test` matches one label only, so an MX `deep.mx.wild.test` is
/// not covered by the policy. Postfix ≥ 3.10.5 with `smtp_tls_enforce_sts_mx_patterns = yes`
/// (its default) applies that rule itself from the `mx_host_pattern` attributes: the
/// message is deferred, nothing is delivered, although the MX has a valid certificate for
/// its name. With the setting off (a transport with `-o
/// smtp_tls_enforce_sts_mx_patterns=no`), Postfix matches the certificate against
/// `match=.wild.test`, which takes any depth, and delivers: the gap the setting closes.
#[test]
fn rfc8461_4_1_postfix_enforces_the_mx_patterns_one_label_deep() {
    let Some(root) = trixie_root() else {
        return;
    };
    let world = World::builder()
        .domain("wild.test", |d| {
            d.mta_sts("enforce", &["*.wild.test"])
                .mx(10, "deep.mx.wild.test")
                .tlsrpt(TLSRPT)
        })
        .domain("loose.test", |d| {
            d.mta_sts("enforce", &["*.loose.test"])
                .mx(10, "deep.mx.loose.test")
                .tlsrpt(TLSRPT)
        })
        .start();
    let lab = Lab::start(
        &root,
        world,
        &[
            ("deep.mx.wild.test", CertKind::Valid),
            ("deep.mx.loose.test", CertKind::Valid),
        ],
        "",
        "transport_maps = inline:{ loose.test=loose: }\n",
        "loose unix - - n - - smtp\n  -o smtp_tls_enforce_sts_mx_patterns=no\n",
    );
    assert_eq!(
        lab.daemon.query("postfix wild.test"),
        "OK secure match=.wild.test servername=hostname policy_type=sts policy_domain=wild.test \
         mx_host_pattern=*.wild.test { policy_string = mx: *.wild.test } \
         { policy_string = version: STSv1 } { policy_string = mode: enforce } \
         { policy_string = max_age: 86400 }"
    );
    lab.postfix.send("user@wild.test");
    lab.postfix.send("user@loose.test");

    let deferred = lab.postfix.status_line("user@wild.test");
    assert!(
        deferred.contains("status=deferred"),
        "{deferred}\n{}",
        lab.dump()
    );
    assert!(lab.servers[0].messages().is_empty(), "{}", lab.dump());
    // Refused before connecting: no TLS handshake, so no TLSRPT status either.
    assert!(
        lab.postfix.log().contains(
            "warning: MX name 'deep.mx.wild.test' does not match STS MX pattern for 'wild.test'"
        ),
        "{}",
        lab.dump()
    );

    let sent = lab.postfix.status_line("user@loose.test");
    assert!(sent.contains("status=sent"), "{sent}\n{}", lab.dump());
    assert_eq!(lab.servers[1].messages().len(), 1, "{}", lab.dump());
}

/// RFC 8461 §3.3 with a zone that keeps the message (`on_failure = "temp"`): a published
/// record whose policy host has an expired certificate, or answers 404, and nothing cached.
/// The daemon tells Postfix 3.10 `policy_failure=sts-webpki-invalid` /
/// `sts-policy-fetch-error`: Postfix defers (4.7.5) although the MX's certificate is valid,
/// and reports the failure type (RFC 8460 §4.3.2.2) to the collector. A domain without
/// MTA-STS gets `NOTFOUND`: delivered, and Postfix itself reports it as `no-policy-found`.
#[test]
fn rfc8461_3_3_unusable_policy_deferred_and_reported_when_the_zone_keeps_the_message() {
    let Some(root) = trixie_root() else {
        return;
    };
    const BODY: &str = "version: STSv1\nmode: enforce\nmx: mail.webpki.test\nmax_age: 86400\n";
    let world = World::builder()
        .domain("webpki.test", |d| {
            d.mta_sts("enforce", &["mail.webpki.test"])
                .policy_behavior(HostBehavior::policy(BODY).cert(CertKind::Expired))
                .tlsrpt(TLSRPT)
        })
        .domain("gone.test", |d| {
            d.mta_sts("enforce", &["mail.gone.test"])
                .policy_behavior(HostBehavior::status(404))
                .tlsrpt(TLSRPT)
        })
        .domain("nosts.test", |d| d.mx(10, "mail.nosts.test").tlsrpt(TLSRPT))
        .start();
    let lab = Lab::start(
        &root,
        world,
        &[
            ("mail.webpki.test", CertKind::Valid),
            ("mail.gone.test", CertKind::Valid),
            ("mail.nosts.test", CertKind::Valid),
        ],
        "[zones.postfix]\ntlsrpt = true\non_failure = \"temp\"\n",
        "",
        "",
    );
    for rcpt in ["user@webpki.test", "user@gone.test", "user@nosts.test"] {
        lab.postfix.send(rcpt);
    }
    for (rcpt, failure) in [
        ("user@webpki.test", "sts-webpki-invalid"),
        ("user@gone.test", "sts-policy-fetch-error"),
    ] {
        let line = lab.postfix.status_line(rcpt);
        assert!(
            line.contains("status=deferred") && line.contains("dsn=4.7.5"),
            "{line}\n{}",
            lab.dump()
        );
        assert!(
            lab.postfix
                .log()
                .contains(&format!("external policy failure ({failure})")),
            "{}",
            lab.dump()
        );
        let domain = rcpt.trim_start_matches("user@");
        let reported = eventually(Duration::from_secs(10), || {
            lab.events().lines().any(|l| {
                l.contains(&format!(r#""policy_domain":"{domain}""#))
                    && l.contains(&format!(r#""result":"{failure}""#))
            })
        });
        assert!(reported, "{}", lab.dump());
    }
    assert!(lab.servers[0].messages().is_empty() && lab.servers[1].messages().is_empty());

    let sent = lab.postfix.status_line("user@nosts.test");
    assert!(sent.contains("status=sent"), "{sent}\n{}", lab.dump());
    let reported = eventually(Duration::from_secs(10), || {
        lab.events().lines().any(|l| {
            l.contains(r#""policy_domain":"nosts.test""#)
                && l.contains(r#""policy":{"type":"no-policy-found"}"#)
                && l.contains(r#""result":"success""#)
        })
    });
    assert!(reported, "{}", lab.dump());
}
