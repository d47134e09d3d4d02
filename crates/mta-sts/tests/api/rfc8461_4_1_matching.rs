//! RFC 8461 §4.1 (and RFC 6125 §6.4): MX host matching against `mx` patterns.

use mta_sts::{MxPattern, Policy};

fn m(host: &str, pattern: &str) -> bool {
    MxPattern::parse(pattern)
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
        .matches(host)
}

// STS-4.1-c: the RFC's own example
#[test]
fn rfc8461_4_1_wildcard_matches_exactly_one_label() {
    assert!(m("mail.example.com", "*.example.com"));
    assert!(!m("example.com", "*.example.com"));
    assert!(!m("foo.bar.example.com", "*.example.com"));
    assert!(!m("a.attacker.com", "*.example.com"));
    assert!(!m(".example.com", "*.example.com"));
    assert!(!m("without-dots", "*.example.org"));
}

// STS-4.1-b, ID-6.4.1-a: case-insensitive ASCII, label by label
#[test]
fn rfc8461_4_1_matching_is_ascii_case_insensitive() {
    assert!(m("MAIL.Example.COM", "mail.example.com"));
    assert!(m("mail.example.com", "MAIL.EXAMPLE.COM"));
    assert!(m("MX1.EXAMPLE.COM", "*.example.com"));
}

// MATCH-06: one trailing root dot on the host is ignored
#[test]
fn rfc8461_4_1_trailing_dot_on_host_is_ignored() {
    assert!(m("mail.example.com.", "mail.example.com"));
    assert!(m("mx1.example.com.", "*.example.com"));
    assert!(!m("mail.example.com..", "mail.example.com"));
}

// MATCH-07..09: no suffix or prefix matching for exact patterns
#[test]
fn rfc8461_4_1_exact_patterns_match_exactly() {
    assert!(!m("xmail.example.com", "mail.example.com"));
    assert!(!m("mail.example.com.evil", "mail.example.com"));
    assert!(!m("mx.mail.example.com", "mail.example.com"));
    assert!(!m("example.com", "mail.example.com"));
}

// ID-6.4.2-a: U-labels are converted to A-labels before comparing
#[test]
fn rfc8461_4_1_u_labels_compare_as_a_labels() {
    assert!(m("ñaca.com", "xn--aca-6ma.com"));
    assert!(m("Ñaca.com", "xn--aca-6ma.com"));
    assert!(m("x.ñaca.com", "x.xn--aca-6ma.com"));
    assert!(!m("x.naca.com", "x.xn--aca-6ma.com"));
    assert!(m("mx.xn--eebajf.xn--9dbq2a", "*.מייל.קום"));
    // a host that is not a valid IDN matches nothing
    assert!(!m(&format!("{}\u{ff00}", "x".repeat(65536)), "x.com"));
}

#[test]
fn rfc8461_4_1_policy_matches_any_pattern() {
    let p = Policy::parse(
        b"version: STSv1\nmode: enforce\nmx: special.example.org\nmx: *.example.org\nmax_age: 1",
    )
    .unwrap();
    assert!(p.matches_mx("mx0.example.org"));
    assert!(p.matches_mx("special.example.org"));
    assert!(!p.matches_mx("mx0.special.example.org"));
    assert!(!p.matches_mx("unrelated.org"));
    let p = Policy::parse(
        b"version: STSv1\nmode: enforce\nmx: *.special.example.org\nmx: *.example.org\nmax_age: 1",
    )
    .unwrap();
    assert!(p.matches_mx("mx0.special.example.org"));
}

#[test]
fn postfix_form_of_patterns() {
    assert_eq!(
        MxPattern::parse("*.example.com").unwrap().to_postfix(),
        ".example.com"
    );
    assert_eq!(
        MxPattern::parse("Mail.Example.com").unwrap().to_postfix(),
        "mail.example.com"
    );
}
