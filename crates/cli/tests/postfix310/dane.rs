//! DANE over real DNSSEC (RFC 8461 §2, RFC 7672): signed zones, a validating unbound
//! ([`crate::dnssec`]), the daemon with `dane = "defer"` asking unbound, and Postfix 3.10
//! with `smtp_dns_support_level = dnssec` asking unbound too.

use std::time::Duration;

use mta_sts_testkit::{CertKind, World};

use crate::dnssec::{Unbound, Zone, have_tools, spki_sha256};
use crate::{Dns, Lab, TLSRPT, eventually, start_mx, trixie_root};

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

/// RFC 8461 §2 (MTA-STS must not override DANE) with a validating resolver:
///
/// - `dane.test`: a signed zone, MX with a valid DANE-EE TLSA record for a *self-signed*
///   certificate (no WebPKI path). The daemon answers `OK dane-only` instead of its MTA-STS
///   `secure`, Postfix authenticates with DANE and delivers: a certificate that `secure`
///   would refuse, so the delivery itself shows DANE was used.
/// - `bogus.test`: signed, TLSA present but its signature does not verify (bogus, RFC 4035
///   §5.5): unbound answers SERVFAIL for it, no DANE, the MTA-STS enforce policy applies
///   (`secure`), delivered over WebPKI-verified TLS.
/// - `plain.test`: an MTA-STS domain outside any trust anchor (insecure, no TLSA): `secure`.
#[test]
fn rfc8461_2_dane_over_dnssec_preferred_bogus_and_unsigned_fall_back_to_mta_sts() {
    let Some(root) = trixie_root() else {
        return;
    };
    if !have_tools() {
        return;
    }
    let world = World::builder()
        .domain("dane.test", |d| d.enforce().tlsrpt(TLSRPT))
        .domain("bogus.test", |d| d.enforce().tlsrpt(TLSRPT))
        .domain("plain.test", |d| d.enforce().tlsrpt(TLSRPT))
        .start();
    let servers = start_mx(
        &world,
        &[
            ("mail.dane.test", CertKind::SelfSigned),
            ("mail.bogus.test", CertKind::Valid),
            ("mail.plain.test", CertKind::Valid),
        ],
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
        "smtp_dns_support_level = dnssec\n",
        "",
    );
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
    assert!(
        unbound
            .log()
            .contains("validation failure <_25._tcp.mail.bogus.test. TLSA IN>"),
        "{}",
        dump()
    );

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
