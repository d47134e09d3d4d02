//! DANE over real DNSSEC (RFC 8461 §2, RFC 7672): signed zones, a validating unbound
//! ([`crate::dnssec`]), the daemon with `dane = "defer"` asking unbound, and Postfix 3.10
//! with `smtp_dns_support_level = dnssec` asking unbound too.

use std::time::Duration;

use mta_sts_testkit::{CertKind, World};

use crate::dnssec::{Unbound, Zone, have_tools, spki_sha256};
use crate::{Dns, Lab, MX_NET, TLSRPT, eventually, mx_lab, trixie_root};

/// The signed zone of an MTA-STS domain `name` whose one MX `mail.<name>` is at the address
/// of `server`, with a DANE-EE TLSA record for `spki` (SHA-256 of the SPKI, hex).
fn zone(name: &str, server: &mta_sts_testkit::SmtpServer, spki: &str, bogus_tlsa: bool) -> Zone {
    Zone {
        name: name.to_owned(),
        records: format!(
            "@ IN MX 10 mail.{name}.\nmail IN A {}\n_25._tcp.mail IN TLSA 3 1 1 {spki}\n\
             _mta-sts IN TXT \"v=STSv1; id=signed1\"\nmta-sts IN A 127.0.0.1\n\
             _smtp._tls IN TXT \"{TLSRPT}\"\n",
            server.addr().ip()
        ),
        bogus_tlsa,
    }
}

/// The DANE lab: the daemon with `dane = "defer"`, Postfix with `main_cf`, both asking a
/// validating unbound; three MTA-STS `enforce` domains, each with one MX:
///
/// - `dane.test`: a signed zone, MX with a valid DANE-EE TLSA record for a *self-signed*
///   certificate (no WebPKI path, so only DANE can authenticate it);
/// - `bogus.test`: signed, TLSA present (matching its WebPKI-valid certificate) but its
///   signature does not verify (bogus, RFC 4035 §5.5): unbound answers SERVFAIL for it;
/// - `plain.test`: outside any trust anchor (insecure, no TLSA).
struct DaneLab {
    lab: Lab,
    unbound: Unbound,
    /// The TLSA association data of `mail.dane.test` (hex).
    dane_spki: String,
    /// Keys, zones and unbound's files (bind it: `..` would drop it at once).
    _dir: tempfile::TempDir,
}

impl DaneLab {
    /// The lab, or `None` (after a SKIP message) without the Debian 13 root or the tools.
    fn start(main_cf: &str) -> Option<DaneLab> {
        let root = trixie_root()?;
        if !have_tools() {
            return None;
        }
        let world = World::builder()
            .domain("dane.test", |d| d.enforce().tlsrpt(TLSRPT))
            .domain("bogus.test", |d| d.enforce().tlsrpt(TLSRPT))
            .domain("plain.test", |d| d.enforce().tlsrpt(TLSRPT))
            .start();
        let servers = mx_lab::start_mx(
            &world,
            &[
                ("mail.dane.test", CertKind::SelfSigned),
                ("mail.bogus.test", CertKind::Valid),
                ("mail.plain.test", CertKind::Valid),
            ],
            MX_NET,
        );
        let dnssec_dir = tempfile::tempdir().unwrap();
        let spki = |host: &str, kind: CertKind| {
            let key = world.pki().certified_key(host, kind).unwrap();
            spki_sha256(dnssec_dir.path(), key.cert[0].as_ref())
        };
        let dane_spki = spki("mail.dane.test", CertKind::SelfSigned);
        let unbound = Unbound::start(
            dnssec_dir.path(),
            &[
                zone("dane.test", &servers[0], &dane_spki, false),
                zone(
                    "bogus.test",
                    &servers[1],
                    &spki("mail.bogus.test", CertKind::Valid),
                    true,
                ),
            ],
            world.dns_addr(),
        );
        let dns = Dns {
            resolver: format!(
                "[resolver]\nnameservers = [\"{}:53\"]\nca_file = \"{}\"\nconnect_to = [\"{}\"]\n\
                 timeout = \"3s\"\n",
                unbound.ip,
                world.ca_file().display(),
                world.connect_to_any()
            ),
            nameserver: unbound.ip,
        };
        let lab = Lab::start_with(
            &root,
            world,
            servers,
            &dns,
            "dane = \"defer\"\n",
            main_cf,
            "",
        );
        Some(DaneLab {
            lab,
            unbound,
            dane_spki,
            _dir: dnssec_dir,
        })
    }
}

/// RFC 8461 §2 (MTA-STS must not override DANE) with a validating resolver and Postfix
/// doing DANE (`smtp_dns_support_level = dnssec`), in the [`DaneLab`]:
///
/// - `dane.test`: the daemon answers `OK dane-only` instead of its MTA-STS `secure`, Postfix
///   authenticates with DANE and delivers: a certificate that `secure` would refuse, so the
///   delivery itself shows DANE was used.
/// - `bogus.test` (TLSA bogus): no DANE, the MTA-STS enforce policy applies (`secure`),
///   delivered over WebPKI-verified TLS;
/// - `plain.test` (unsigned): `secure`, likewise.
#[test]
fn rfc8461_2_dane_over_dnssec_preferred_bogus_and_unsigned_fall_back_to_mta_sts() {
    let Some(DaneLab {
        lab,
        unbound,
        dane_spki,
        _dir,
    }) = DaneLab::start("smtp_dns_support_level = dnssec\n")
    else {
        return;
    };
    let dump = || format!("{}\nunbound:\n{}", lab.dump(), unbound.log());

    assert_eq!(
        lab.daemon.query("postfix dane.test"),
        "OK dane-only",
        "{}",
        dump()
    );
    for domain in ["bogus.test", "plain.test"] {
        let reply = lab.daemon.query(&format!("postfix {domain}"));
        assert!(
            reply.starts_with(&format!(
                "OK secure match=mail.{domain} servername=hostname policy_type=sts"
            )),
            "{reply}\n{}",
            dump()
        );
    }
    // The validator retries a bogus answer with other servers before it gives up, so its
    // log line may come after the daemon's DANE check has timed out (also `NotUsable`).
    let bogus = eventually(Duration::from_secs(15), || {
        unbound
            .log()
            .contains("validation failure <_25._tcp.mail.bogus.test. TLSA IN>")
    });
    assert!(bogus, "{}", dump());

    for domain in ["dane.test", "bogus.test", "plain.test"] {
        lab.postfix.send(&format!("user@{domain}"));
    }
    for (i, domain) in ["dane.test", "bogus.test", "plain.test"].iter().enumerate() {
        let line = lab.postfix.status_line(&format!("user@{domain}"));
        assert!(line.contains("status=sent"), "{line}\n{}", dump());
        assert_eq!(lab.servers[i].messages().len(), 1, "{}", dump());
        assert!(
            lab.postfix.log().contains(&format!(
                "Verified TLS connection established to mail.{domain}"
            )),
            "{}",
            dump()
        );
    }
    // The collector got Postfix's own reports: a `tlsa` policy (RFC 8460 §4.3.1, the
    // TLSA records Postfix authenticated with) for the DANE domain, the daemon's `sts`
    // policy for the other two.
    let tlsa = format!(
        r#""policy":{{"type":"tlsa","string":["3 1 1 {}"]}},"result":"success""#,
        dane_spki.to_ascii_uppercase()
    );
    let reported = eventually(Duration::from_secs(10), || {
        let events = lab.events();
        events.contains(&tlsa)
            && ["bogus.test", "plain.test"].iter().all(|domain| {
                events.lines().any(|l| {
                    l.contains(&format!(r#""policy_domain":"{domain}""#))
                        && l.contains(r#""policy":{"type":"sts""#)
                        && l.contains(r#""result":"success""#)
                })
            })
    });
    assert!(reported, "{}", dump());
}

/// Why `dane` stays opt-in: `dane-only` needs Postfix's own DNSSEC lookups. The same
/// validating resolver and the same daemon answer, but a Postfix without
/// `smtp_dns_support_level = dnssec` cannot do DANE and defers the message for the DANE
/// domain (the domains whose reply is `secure` are delivered).
#[test]
fn dane_only_defers_in_a_postfix_without_dnssec_lookups() {
    let Some(DaneLab {
        lab, unbound, _dir, ..
    }) = DaneLab::start("")
    else {
        return;
    };
    let dump = || format!("{}\nunbound:\n{}", lab.dump(), unbound.log());
    assert_eq!(
        lab.daemon.query("postfix dane.test"),
        "OK dane-only",
        "{}",
        dump()
    );
    lab.postfix.send("user@dane.test");
    lab.postfix.send("user@plain.test");
    let line = lab.postfix.status_line("user@dane.test");
    assert!(line.contains("status=deferred"), "{line}\n{}", dump());
    assert!(
        lab.postfix
            .log()
            .contains("dane-only configured with dnssec lookups disabled"),
        "{}",
        dump()
    );
    assert!(lab.servers[0].messages().is_empty(), "{}", dump());
    let line = lab.postfix.status_line("user@plain.test");
    assert!(line.contains("status=sent"), "{line}\n{}", dump());
}
