//! Peers' test vectors (../shared/vectors/, copied as data into these tables) for records,
//! policies and matching. Each table states what the peer expects and what we do; where we
//! differ the row says why. Rule of thumb: lenient peers (postfix-mta-sts-resolver,
//! chasquid, mailrs, mail-auth) are compared with our `valid`, strict peers (mox,
//! postfix-tlspol) with our `strict_valid`; docs/design.md decides where a peer contradicts it.

use mta_sts::policy::{self, PolicyLint};
use mta_sts::record::{self, StsRecord};
use mta_sts::{Mode, MxPattern, Policy};

fn rec(text: &str) -> Option<String> {
    StsRecord::parse(text).ok().map(|r| r.id)
}

fn pol(body: &str) -> PolicyLint {
    policy::lint(body.as_bytes())
}

/// postfix-mta-sts-resolver §G (tests/test_utils.py): its parser is a lenient key/value
/// splitter. We apply the exact ABNF (RFC 8461 §3.1 MUST), so two rows differ.
#[test]
fn postfix_mta_sts_resolver_g_txt_records() {
    assert_eq!(
        rec("v=STSv1; id=20160831085700Z;").as_deref(),
        Some("20160831085700Z")
    );
    assert_eq!(
        rec("v=STSv1;id=20160831085700Z;").as_deref(),
        Some("20160831085700Z")
    );
    assert_eq!(
        rec("v=STSv1; id=20160831085700Z").as_deref(),
        Some("20160831085700Z")
    );
    assert_eq!(
        rec("v=STSv1;id=20160831085700Z").as_deref(),
        Some("20160831085700Z")
    );
    // peer: accepted. RFC 8461 §3.1 ABNF: whitespace only around ";" — trailing whitespace
    // without a final ";" makes the record invalid, and invalid means "no policy" (MUST).
    assert_eq!(rec("v=STSv1;        id=20160831085700Z   "), None);
    // peer: accepted. `;;` is an empty sts-field, which the ABNF does not allow.
    assert_eq!(rec("v=STSv1; id=20160831085700Z;;;"), None);
    for empty in ["", "   ", " ;   ;  "] {
        assert_eq!(rec(empty), None);
    }
}

/// postfix-mta-sts-resolver §A/§C: records that are "no record" for the resolver.
#[test]
fn postfix_mta_sts_resolver_a_bad_records() {
    for bad in [
        "id=20180907T090909; v=STSv1;",
        "azazaza;asdasdasdasd",
        "v=STSv12;id=20180907T090909;",
    ] {
        assert!(StsRecord::select([bad]).is_err(), "{bad}");
    }
    assert_eq!(
        rec("v=STSv1;id=20180907T090909;").as_deref(),
        Some("20180907T090909")
    );
}

/// postfix-mta-sts-resolver §B policy bodies: each is FETCH_ERROR or VALID there.
#[test]
fn postfix_mta_sts_resolver_b_policy_bodies() {
    let valid = [
        "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400",
        "version: STSv1\nmode: none\nmax_age: 86400",
        "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.loc\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\nmx: mail.loc\n",
    ];
    for body in valid {
        assert!(pol(body).is_strict_valid(), "{body}");
    }
    let invalid = [
        "garbage",
        "version: STSv1\nmode: enforce\nmax_age: 86400",
        "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: xxx",
        "version: STSv1\nmx: mail.loc\nmax_age: 86400",
        "version: STSv1\nmode: doubt\nmx: mail.loc\nmax_age: 86400",
    ];
    for body in invalid {
        assert!(!pol(body).is_valid(), "{body}");
    }
    // bad-policy6: peer rejects max_age 31557601 (`not 0 <= max_age <= 31557600`). docs/design.md §2
    // and erratum 7282: it is grammatical (1*10DIGIT); we accept and clamp, with a warning.
    let l = pol("version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 31557601");
    assert!(l.is_valid());
    assert_eq!(l.policy.unwrap().effective_max_age(), 31_557_600);
}

/// mail-auth S1.1 and the OBSERVED S14.1 table: mail-auth is lenient; the bracketed RFC
/// verdicts of the vector file are what we implement.
#[test]
fn mail_auth_s1_s14_txt_records() {
    let rows: &[(&str, Option<&str>)] = &[
        ("v=STSv1; id=20160831085700Z;", Some("20160831085700Z")),
        ("v=STSv1; id=20190429T010101", Some("20190429T010101")),
        ("v=STSv1;id=abc", Some("abc")),
        ("V=stsv1; ID=Abc", None),
        ("id=abc; v=STSv1", None),
        ("v=STSv1", None),
        ("v=STSv1; id=", None),
        ("v=STSv1; id=a_b-c", None),
        ("v=STSv1; id=123456789012345678901234567890123", None),
        ("v=STSv2; id=abc", None),
        ("v=STSv10; id=abc", None),
        ("v=STSv1 ; id = ab c ;", None),
        ("v=STSv1; id=abc; foo=bar", Some("abc")),
        // mail-auth: last wins; RFC 8461 §3.2 "all entries except for the first SHALL be ignored"
        ("v=STSv1; id=abc; id=def", Some("abc")),
        ("  v=STSv1; id=abc", None),
        ("v=spf1 -all", None),
        ("", None),
        ("v=STSv1; id=café", None),
    ];
    for (text, expected) in rows {
        assert_eq!(rec(text).as_deref(), *expected, "{text:?}");
    }
}

/// go-mtasts S6.1 (readDNSRecord).
#[test]
fn go_mtasts_s6_1_txt_records() {
    for bad in [
        "",
        "v=STSv1",
        "id=foo",
        "unrelated=foo",
        "syntax error",
        "v=STSv2;id=foo;include=foo.com",
        "v=STSv1;    id=foo include=foo.com",
        "v=STSv1;    id=foo include",
    ] {
        assert_eq!(rec(bad), None, "{bad}");
    }
    assert_eq!(rec("v=STSv1  ;    id=foo").as_deref(), Some("foo"));
    assert_eq!(
        rec("v=STSv1  ;    id=foo; unrelated=1").as_deref(),
        Some("foo")
    );
}

/// go-mtasts S6.2 (readPolicy).
#[test]
fn go_mtasts_s6_2_policies() {
    for bad in [
        "version: STSv2",
        "version: STSv1",
        "max_age: 8600",
        "version: STSv1\nmax_age: 8600",
        "version: STSv1\nmax_age:",
        "version: STSv1\n: 8600",
        "version: STSv1\nmode: invalid_value",
        "version: STSv1\nmode none",
        "version: STSv1\nmode: none",
        "version: STSv1\nmax_age: 8600\nmode: enforce",
    ] {
        assert!(!pol(bad).is_valid(), "{bad:?}");
    }
    let p = pol("version: STSv1\nmax_age: 8600\nmode:none")
        .policy
        .unwrap();
    assert_eq!((p.mode, p.max_age, p.mx.len()), (Mode::None, 8600, 0));
    let p =
        pol("version: STSv1\nmax_age: 8600\nmode: enforce\nmx: mx0.example.org\nmx: *.example.org")
            .policy
            .unwrap();
    assert_eq!(
        p.mx.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["mx0.example.org", "*.example.org"]
    );
}

/// go-mtasts S6.3 and chasquid S9.2 (matching), KumoMTA S13 and mailrs S12 name_match.
#[test]
fn go_peers_matching() {
    let rows: &[(&str, &str, bool)] = &[
        ("example.org.", "example.org", true),
        ("example.org", "example.org", true),
        ("without-dots", "*.example.org", false),
        ("mx0.special.example.org", "special.example.org", false),
        ("unrelated.org", "*.example.org", false),
        ("ñaca.com", "xn--aca-6ma.com", true),
        ("x.ñaca.com", "x.xn--aca-6ma.com", true),
        ("x.naca.com", "x.xn--aca-6ma.com", false),
        ("lalala", "lalala", true),
        ("abc.com", "*.com", true),
        ("abc.com", "x.abc.com", false),
        ("mail.example.com", "*.example.com", true),
        ("example.com", "*.example.com", false),
        ("foo.bar.example.com", "*.example.com", false),
        ("zz.aa.b.cc.com", "*.aa.b.cc.com", true),
        ("foo.com.", "foo.com", true),
        ("bar.com", "foo.com", false),
        ("not.mx.example.com", "*.example.com", false),
        ("Mail.Example.COM", "mail.example.com", true),
        ("mail.example.com", "MAIL.EXAMPLE.COM", true),
        ("a.attacker.com", "*.example.com", false),
    ];
    for (host, pattern, expected) in rows {
        assert_eq!(
            MxPattern::parse(pattern).unwrap().matches(host),
            *expected,
            "{host} vs {pattern}"
        );
    }
    // Patterns chasquid "matches" that are not valid mx values for us (RFC 8461 §3.2 ABNF):
    // U-labels are converted (with a warning), the rest is rejected outright.
    assert!(MxPattern::parse("ñaca.com").unwrap().matches("Ñaca.com"));
    for bad in [
        "abc.*.com",
        "*.*.com",
        ".aa.b.cc.com",
        "a.b.",
        "xn-9999999999a.org.",
    ] {
        assert!(MxPattern::parse(bad).is_err(), "{bad}");
    }
    // go-mtasts: "example.org" vs pattern "xn-9999999999a.org" -> false
    assert!(
        !MxPattern::parse("xn-9999999999a.org")
            .unwrap()
            .matches("example.org")
    );
}

/// chasquid S9.1/S9.3 (Policy.Check, MXIsAllowed). chasquid rejects max_age 0 and mx-less
/// `none`; the RFC ABNF allows both, so we accept them.
#[test]
fn chasquid_s9_policy_checks() {
    let p = pol("version: STSv1\nmode: enforce\nmx: mx1\nmx: mx2\nmax_age: 3600")
        .policy
        .unwrap();
    assert!(!p.allows_mx("notamx"));
    assert!(p.allows_mx("mx1") && p.allows_mx("mx2"));
    assert!(
        pol("version: STSv1\nmode: testing\nmx: mx1\nmax_age: 3600")
            .policy
            .unwrap()
            .allows_mx("notamx")
    );
    assert!(pol("version: STSv1\nmode: none\nmax_age: 0").is_strict_valid());
    // S9.4 domain.com body: each line indented; chasquid trims keys. We tolerate it with
    // `leading-whitespace` warnings (docs/design.md §2), so strict senders still see a deviation.
    let l = pol(
        "\n             version: STSv1\n             mode: enforce\n             mx: *.mail.domain.com\n             max_age: 3600\n        ",
    );
    assert!(l.is_valid() && !l.is_strict_valid());
    assert!(!pol("\n             version: STSv99\n             mode: enforce\n             mx: *.mail.version99\n             max_age: 999\n        ").is_valid());
}

/// postfix-tlspol S10.1 (strict record parser): matches ours exactly.
#[test]
fn postfix_tlspol_s10_1_records() {
    let available = |rrs: &[&str]| StsRecord::select(rrs.iter().map(|s| s.as_bytes())).is_ok();
    assert!(available(&["v=STSv1; id=policy1;"]));
    assert!(StsRecord::select([record::concat(&["v=STSv1; id=", "policy1;"])]).is_ok());
    assert!(available(&["v=STSv1 \t; \tid=policy1 \t;"]));
    assert!(available(&["verification=abc", "v=STSv1; id=policy1;"]));
    assert!(!available(&["v=STSv1; x-note=ok;"]));
    assert!(!available(&["v=STSv10; id=policy1;"]));
    assert!(!available(&[
        "v=STSv1; id=policy1;",
        "v=STSv1; id=policy2;"
    ]));
    assert!(!available(&["v=STSv1; id=bad-value;"]));
    assert!(!available(&["v=STSv1; id=policy1; note=has space;"]));
    assert!(!available(&["v=STSv1; id=policy1 "]));
    assert!(!available(&["v=STSv1; id=policy1; note=café;"]));
}

/// postfix-tlspol S10.2 (strict policy parser): compared with our strict verdict.
#[test]
fn postfix_tlspol_s10_2_policies() {
    let base = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n";
    let p = pol("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.backup.example.com\nmax_age: 86400\n").policy.unwrap();
    assert_eq!(
        p.mx.iter()
            .map(MxPattern::to_postfix)
            .collect::<Vec<_>>()
            .join(":"),
        "mail.example.com:.backup.example.com"
    );
    for bad in [
        "mode: enforce\nmx: mail.example.com\nmax_age: 86400\n",
        "version: STSv1\nmode: enforce\nmx: mail.example.com\n",
        "version: STSv1\nmx: mail.example.com\nmax_age: 86400\n",
        "version: STSv1\nmode: enforce\nmax_age: 86400\n",
        "version: STSv1\nmode: testing\nmax_age: 86400\n",
        "version: STSv1\nmode: invalid\nmx: mail.example.com\nmax_age: 86400\n",
    ] {
        assert!(!pol(bad).is_valid(), "{bad:?}");
    }
    assert!(pol("version: STSv1\nmode: none\nmax_age: 86400\n").is_strict_valid());
    assert!(
        pol("version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 3600\n")
            .is_strict_valid()
    );
    // blank line: tlspol rejects; we tolerate (valid) but not strictly valid.
    let l = pol("version: STSv1\n\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n");
    assert!(l.is_valid() && !l.is_strict_valid());
    // body > 64 KiB: a fetch limit (resolver), not a grammar rule; the parser accepts it.
    assert!(pol(&format!("{base}note: {}", "a".repeat(65536))).is_strict_valid());
    // IP-literal mx: tlspol rejects. RFC 5321 `Domain` allows all-digit labels, so it is
    // grammatical; docs/design.md §2 makes it a warning (it can never match an MX name).
    for ip in ["127.0.0.1", "1.2.3.4", "*.1.2.3.4"] {
        let l = pol(&format!(
            "version: STSv1\nmode: enforce\nmx: {ip}\nmax_age: 86400\n"
        ));
        assert!(l.is_valid(), "{ip}");
    }
    // control bytes, bad names, bad values in extension lines: tlspol rejects; we tolerate
    // them as deviations, so the strict verdict agrees with tlspol.
    for line in [
        "x-report: ok\u{0}bad",
        "x-report: ok\tbad",
        "x-report: ok\rbad",
        "x-report: ok\u{7f}bad",
        "_comment: ok",
        "-comment: ok",
        ".comment: ok",
        "bad name: ok",
        "x+comment: ok",
        "café: ok",
        &format!("{}: ok", "a".repeat(33)),
        "comment:",
    ] {
        let l = pol(&format!("{base}{line}\n"));
        assert!(l.is_valid() && !l.is_strict_valid(), "{line:?}");
    }
    assert!(
        !policy::lint(
            format!("{base}comment: ok")
                .as_bytes()
                .iter()
                .copied()
                .chain(*b"\xffbad\n")
                .collect::<Vec<u8>>()
                .as_slice()
        )
        .is_valid()
    );
    for good in [
        "x-report: safe-value",
        "comment: café au lait",
        "comment: {café}",
    ] {
        assert!(pol(&format!("{base}{good}\n")).is_strict_valid(), "{good}");
    }
}

/// mailrs-mta-sts S12: lenient on case, whitespace and comments; docs/design.md wins.
#[test]
fn mailrs_s12() {
    assert_eq!(
        rec("v=STSv1; id=20200101T000000Z").as_deref(),
        Some("20200101T000000Z")
    );
    assert_eq!(rec("v=STSv1; id=abc; future=value").as_deref(), Some("abc"));
    assert_eq!(rec("v=STSv1; id=abc;").as_deref(), Some("abc"));
    // mailrs accepts these; the ABNF does not (leading space, %s case, WSP around "=").
    for deviating in [
        "   v=STSv1; id=abc123",
        "V=STSv1; ID=xyz",
        "v=stsv1; id=abc",
        "v = STSv1 ; id = xyz123",
    ] {
        assert_eq!(rec(deviating), None, "{deviating}");
    }
    assert_eq!(
        pol("version: STSv1\nmode: enforce\nmx: Mail.Example.COM\nmax_age: 86400")
            .policy
            .unwrap()
            .mx[0]
            .to_string(),
        "mail.example.com"
    );
    assert_eq!(
        pol("version: STSv1\r\nmode: enforce\r\nmx: m.example\r\nmax_age: 86400")
            .policy
            .unwrap()
            .mode,
        Mode::Enforce
    );
    // mailrs: Ok. Keys and values are case-sensitive (%s): no mode, no version -> invalid.
    assert!(!pol("Version: STSv1\nMode: Enforce\nMX: m.example\nMax_Age: 86400").is_valid());
    // mailrs: Ok. Comment and blank line: tolerated by docs/design.md §2 but not strictly valid.
    let l = pol(
        "version: STSv1\n# this is a comment\nmode: enforce\n\nmx: m.example\nmax_age: 86400\n",
    );
    assert!(l.is_valid() && !l.is_strict_valid());
    // mailrs: Ok, skipping the empty mx. An mx with an empty value is an invalid known field.
    assert!(
        !pol("version: STSv1\nmode: enforce\nmx:\nmx: real.example\nmax_age: 86400").is_valid()
    );
}

/// KumoMTA S13 sample policy.
#[test]
fn kumomta_s13_sample() {
    let p = pol("version: STSv1 \nmode: enforce\nmx: mail.example.com\r\nmx:\t*.example.net\nmx: backupmx.example.com\nmax_age: 604800").policy.unwrap();
    assert_eq!(p.mx.len(), 3);
    assert_eq!(p.max_age, 604_800);
}

/// mox S15.1 (strict record parser): identical verdicts.
#[test]
fn mox_s15_1_records() {
    assert_eq!(
        rec("v=STSv1; id=20160831085700Z;").as_deref(),
        Some("20160831085700Z")
    );
    assert_eq!(
        rec("v=STSv1; \t id=20160831085700Z  \t;").as_deref(),
        Some("20160831085700Z")
    );
    assert_eq!(rec("v=STSv1; id=a").as_deref(), Some("a"));
    let r = StsRecord::parse("v=STSv1; id=a; more=a; ext=2").unwrap();
    assert_eq!(r.to_string(), "v=STSv1; id=a; more=a; ext=2");
    for bad in [
        "v=STSv0",
        "v=STSv10",
        "v=STSv2",
        "v=STSv1",
        "v=STSv1;",
        "v=STSv1; ext=1",
        "v=STSv1; id=",
        "v=STSv1; id=012345678901234567890123456789012",
        "v=STSv1; id=test-123",
        "v=STSv1; id=a; more=",
        "v=STSv1; id=a; a12345678901234567890123456789012=1",
        "v=STSv1; id=a; 1%=a",
        "v=STSv1; id=a; test==",
        "v=STSv1; id=a;;",
    ] {
        assert_eq!(rec(bad), None, "{bad}");
    }
}

/// mox S15.2 (strict policy parser): "good" must be strictly valid, "bad" must be invalid or
/// at least not strictly valid (mox rejects U-labels; we convert them with a warning).
#[test]
fn mox_s15_2_policies() {
    for good in [
        "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmx: mx.backup-example.com\nmax_age: 1296000\n",
        "version: STSv1\nmode: enforce\t\nmx: *.example.com \nmax_age: 0 \n",
        "version:STSv1\r\nmode:\tenforce\r\nmx:  \t\t *.example.com\nmax_age: 1\nmore:ext e  ns ion",
    ] {
        assert!(pol(good).is_strict_valid(), "{good:?}");
    }
    for bad in [
        "",
        "version:STSv0\nmode:none\nmax_age:0",
        "version:STSv10\nmode:none\nmax_age:0",
        "version:STSv2\nmode:none\nmax_age:0",
        "version:STSv1\nmax_age:0\nmx:example.com",
        "version:STSv1\nmode:none",
        "version:STSv1\nmax_age:0\nmode:enforce",
        "version:STSv1\nmax_age:0\nmode:testing",
        "max_age:0\nmode:none",
        "version:STSv1\nmode:none\nmax_age:01234567890",
        "version:STSv1\nmode:bad\nmax_age:1",
        "version:STSv1\nmode:none\nmax_age:a",
        "version:STSv1\nmode:enforce\nmax_age:0\nmx:",
        "version:STSv1\nmode:enforce\nmax_age:0\nmx:*.*.example",
        "version:STSv1\nmode:enforce\nmax_age:0\nmx:**.example",
        "version:STSv1\nmode:enforce\nmax_age:0\nmx:**.example-",
        "version:STSv1\nmode:enforce\nmax_age:0\nmx:test.example-",
    ] {
        assert!(!pol(bad).is_valid(), "{bad:?}");
    }
    for deviating in [
        "version:STSv1\nmode:none\nmax_age:0\next:",
        "version:STSv1\nmode:none\nmax_age:0\na12345678901234567890123456789012:123",
        "version:STSv1\nmode:none\nmax_age:0\n_bad:test",
        "version:STSv1\nmode:none\nmax_age:0\nmx: møx.example",
    ] {
        assert!(!pol(deviating).is_strict_valid(), "{deviating:?}");
    }
    let p = Policy::parse(b"version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmx: mx.backup-example.com\nmax_age: 1296000\n").unwrap();
    // mox prints max_age before mx; docs/design.md §2 fixes our order as version, mode, mx, max_age.
    assert_eq!(
        p.to_string(),
        "version: STSv1\r\nmode: testing\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmx: mx.backup-example.com\r\nmax_age: 1296000\r\n"
    );
}

/// Stalwart S3: U-label patterns become A-labels.
#[test]
fn stalwart_s3_u_label_patterns() {
    let p = pol("version: STSv1\nmode: enforce\nmx: *.\u{5de}\u{5d9}\u{5d9}\u{5dc}.\u{5e7}\u{5d5}\u{5dd}\nmx: MAIL.\u{5de}\u{5d9}\u{5d9}\u{5dc}.\u{5e7}\u{5d5}\u{5dd}\nmax_age: 604800\n").policy.unwrap();
    assert!(p.matches_mx("mx.xn--eebajf.xn--9dbq2a"));
    assert!(p.matches_mx("mail.xn--eebajf.xn--9dbq2a"));
    assert!(!p.matches_mx("mx.example.org"));
}
