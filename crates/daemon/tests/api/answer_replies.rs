//! Every reply shape as a pure function of (policy, zone settings, DANE verdict), including
//! the vectors §K replies of postfix-mta-sts-resolver.

use mta_sts::{Domain, Policy};
use mta_sts_daemon::answer::{DaneVerdict, PolicyFailure, answer, answer_failure, answer_unusable};
use mta_sts_daemon::config::{DaneMode, OnFailure, ZoneSettings};
use mta_sts_socketmap::Reply;

const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 86400\n";
const WILD: &str = "version: STSv1\nmode: enforce\nmx: mail.wild.test\nmx: *.wild.test\nmx: *.mx.wild.test\nmax_age: 604800\n";

fn reply(domain: &str, policy: Option<&str>, zone: &ZoneSettings, dane: DaneVerdict) -> String {
    let d = Domain::parse(domain).unwrap();
    let p = policy.map(|p| Policy::parse(p.as_bytes()).unwrap());
    answer(&d, p.as_ref(), zone, dane).payload()
}

fn default_reply(domain: &str, policy: &str) -> String {
    reply(
        domain,
        Some(policy),
        &ZoneSettings::default(),
        DaneVerdict::NotChecked,
    )
}

#[test]
fn answer_enforce() {
    assert_eq!(
        default_reply("good.test", GOOD),
        "OK secure match=mail.good.test servername=hostname"
    );
}

#[test]
fn answer_wildcards_in_policy_order() {
    // The peer's order is set()-dependent; ours is policy order.
    assert_eq!(
        default_reply("wild.test", WILD),
        "OK secure match=mail.wild.test:.wild.test:.mx.wild.test servername=hostname"
    );
}

#[test]
fn answer_duplicates_removed() {
    let dup = "version: STSv1\nmode: enforce\nmx: mail.good.test\nmx: MAIL.good.test\nmx: *.good.test\nmax_age: 86400\n";
    assert_eq!(
        default_reply("good.test", dup),
        "OK secure match=mail.good.test:.good.test servername=hostname"
    );
}

#[test]
fn answer_testing_notfound_unless_strict_testing() {
    let testing = "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.good.test\n";
    assert_eq!(default_reply("testing.test", testing), "NOTFOUND ");
    let strict = ZoneSettings {
        strict_testing: true,
        ..ZoneSettings::default()
    };
    assert_eq!(
        reply(
            "testing.test",
            Some(testing),
            &strict,
            DaneVerdict::NotChecked
        ),
        "OK secure match=mail.good.test servername=hostname"
    );
}

#[test]
fn answer_none_and_no_policy() {
    let none = "version: STSv1\nmode: none\nmax_age: 86400\n";
    assert_eq!(default_reply("none.test", none), "NOTFOUND ");
    let strict = ZoneSettings {
        strict_testing: true,
        ..ZoneSettings::default()
    };
    assert_eq!(
        reply("none.test", Some(none), &strict, DaneVerdict::NotChecked),
        "NOTFOUND "
    );
    assert_eq!(
        reply(
            "x.test",
            None,
            &ZoneSettings::default(),
            DaneVerdict::NotChecked
        ),
        "NOTFOUND "
    );
}

#[test]
fn answer_nosni() {
    let nosni = ZoneSettings {
        require_sni: false,
        ..ZoneSettings::default()
    };
    assert_eq!(
        reply("good.test", Some(GOOD), &nosni, DaneVerdict::NotChecked),
        "OK secure match=mail.good.test"
    );
}

#[test]
fn answer_tlsrpt_attributes_as_the_peer() {
    let zone = ZoneSettings {
        tlsrpt: true,
        ..ZoneSettings::default()
    };
    assert_eq!(
        reply("good.test", Some(GOOD), &zone, DaneVerdict::NotChecked),
        "OK secure match=mail.good.test servername=hostname policy_type=sts policy_domain=good.test mx_host_pattern=mail.good.test { policy_string = mx: mail.good.test } { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = max_age: 86400 }"
    );
    // Same as vectors §K "tlsrpt wild.test" except the match= order (policy order here).
    assert_eq!(
        reply("wild.test", Some(WILD), &zone, DaneVerdict::NotChecked),
        "OK secure match=mail.wild.test:.wild.test:.mx.wild.test servername=hostname policy_type=sts policy_domain=wild.test mx_host_pattern=mail.wild.test mx_host_pattern=*.wild.test mx_host_pattern=*.mx.wild.test { policy_string = mx: mail.wild.test } { policy_string = mx: *.wild.test } { policy_string = mx: *.mx.wild.test } { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = max_age: 604800 }"
    );
    let none = "version: STSv1\nmode: none\nmax_age: 86400\n";
    assert_eq!(
        reply("none.test", Some(none), &zone, DaneVerdict::NotChecked),
        "NOTFOUND "
    );
}

#[test]
fn answer_tlsrpt_never_emits_braces() {
    let zone = ZoneSettings {
        tlsrpt: true,
        ..ZoneSettings::default()
    };
    let ext = "version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 86400\nx-note: {evil}\nx-ok: fine\n";
    let out = reply("good.test", Some(ext), &zone, DaneVerdict::NotChecked);
    assert!(
        out.ends_with("{ policy_string = max_age: 86400 } { policy_string = x-ok: fine }"),
        "{out}"
    );
    assert!(!out.contains("evil"), "{out}");
}

#[test]
fn answer_dane_only_when_deferring_to_usable_tlsa() {
    let defer = ZoneSettings {
        dane: DaneMode::Defer,
        ..ZoneSettings::default()
    };
    assert_eq!(
        reply("good.test", Some(GOOD), &defer, DaneVerdict::Usable),
        "OK dane-only"
    );
    // No usable TLSA, or DANE off: MTA-STS as usual.
    assert_eq!(
        reply("good.test", Some(GOOD), &defer, DaneVerdict::NotUsable),
        "OK secure match=mail.good.test servername=hostname"
    );
    assert_eq!(
        reply(
            "good.test",
            Some(GOOD),
            &ZoneSettings::default(),
            DaneVerdict::Usable
        ),
        "OK secure match=mail.good.test servername=hostname"
    );
    // Where MTA-STS says nothing, Postfix's own level (e.g. `dane`) applies: NOTFOUND.
    assert_eq!(
        reply("x.test", None, &defer, DaneVerdict::Usable),
        "NOTFOUND "
    );
}

#[test]
fn answer_failure_per_on_failure() {
    let d = Domain::parse("down.test").unwrap();
    assert_eq!(
        answer_failure(&d, &ZoneSettings::default(), "DNS timeout"),
        Reply::NotFound
    );
    let temp = ZoneSettings {
        on_failure: OnFailure::Temp,
        ..ZoneSettings::default()
    };
    assert_eq!(
        answer_failure(&d, &temp, "DNS timeout").payload(),
        "TEMP MTA-STS policy for down.test unavailable: DNS timeout"
    );
}

fn tlsrpt_zone(on_failure: OnFailure) -> ZoneSettings {
    ZoneSettings {
        tlsrpt: true,
        on_failure,
        ..ZoneSettings::default()
    }
}

/// RFC 8461 §3.3: a published record whose policy cannot be used, nothing cached: deliver as
/// though the domain had no MTA-STS, whatever the zone speaks (no `policy_failure`).
#[test]
fn rfc8461_3_3_unusable_policy_delivers_as_without_mta_sts() {
    let d = Domain::parse("down.test").unwrap();
    for zone in [ZoneSettings::default(), tlsrpt_zone(OnFailure::NotFound)] {
        assert_eq!(
            answer_unusable(&d, &zone, PolicyFailure::FetchError, "HTTP 404"),
            Reply::NotFound
        );
    }
}

/// RFC 8461 §3.3 with `on_failure = "temp"` (the operator keeps the message): Postfix 3.10
/// is told the RFC 8460 §4.3.2.2 failure, so it defers and reports; without the Postfix 3.10
/// attributes, `TEMP` as before.
#[test]
fn rfc8461_3_3_unusable_policy_deferred_with_policy_failure_when_temp() {
    let d = Domain::parse("down.test").unwrap();
    assert_eq!(
        answer_unusable(
            &d,
            &tlsrpt_zone(OnFailure::Temp),
            PolicyFailure::FetchError,
            "HTTP 404"
        )
        .payload(),
        "OK secure servername=hostname policy_type=sts policy_domain=down.test policy_failure=sts-policy-fetch-error"
    );
    let nosni = ZoneSettings {
        require_sni: false,
        ..tlsrpt_zone(OnFailure::Temp)
    };
    assert_eq!(
        answer_unusable(&d, &nosni, PolicyFailure::WebpkiInvalid, "expired").payload(),
        "OK secure policy_type=sts policy_domain=down.test policy_failure=sts-webpki-invalid"
    );
    let temp = ZoneSettings {
        on_failure: OnFailure::Temp,
        ..ZoneSettings::default()
    };
    assert_eq!(
        answer_unusable(&d, &temp, PolicyFailure::Invalid, "no version").payload(),
        "TEMP MTA-STS policy for down.test unavailable: no version"
    );
}

/// RFC 8460 §4.3.2.2: the policy failure types Postfix 3.10 accepts, from the resolver's
/// result types; anything else is the less informative `validation-failure`.
#[test]
fn rfc8460_4_3_2_2_policy_failure_types() {
    for (result, failure, text) in [
        (
            tlsrpt::ResultType::StsPolicyFetchError,
            PolicyFailure::FetchError,
            "sts-policy-fetch-error",
        ),
        (
            tlsrpt::ResultType::StsPolicyInvalid,
            PolicyFailure::Invalid,
            "sts-policy-invalid",
        ),
        (
            tlsrpt::ResultType::StsWebpkiInvalid,
            PolicyFailure::WebpkiInvalid,
            "sts-webpki-invalid",
        ),
        (
            tlsrpt::ResultType::CertificateExpired,
            PolicyFailure::ValidationFailure,
            "validation-failure",
        ),
    ] {
        assert_eq!(PolicyFailure::from_result_type(&result), failure);
        assert_eq!(failure.as_str(), text);
    }
}

/// RFC 8461 §3.2 (one or more `mx`), §4.1 and §5: an `enforce` policy without `mx` lets no
/// MX pass, so the message must not be delivered: Postfix 3.10 gets the policy with
/// `policy_failure=sts-policy-invalid` (deferred and reported); older replies stay `TEMP`.
/// (`Policy::parse` rejects such a policy; one built otherwise, e.g. read from an older
/// cache store, still gets this answer.)
#[test]
fn rfc8461_4_1_enforce_without_mx_is_an_invalid_policy() {
    let d = Domain::parse("emptymx.test").unwrap();
    let mut empty = Policy::parse(GOOD.as_bytes()).unwrap();
    empty.mx.clear();
    let zone = tlsrpt_zone(OnFailure::NotFound);
    assert_eq!(
        answer(&d, Some(&empty), &zone, DaneVerdict::NotChecked).payload(),
        "OK secure servername=hostname policy_type=sts policy_domain=emptymx.test { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = max_age: 86400 } policy_failure=sts-policy-invalid"
    );
    assert_eq!(
        answer(
            &d,
            Some(&empty),
            &ZoneSettings::default(),
            DaneVerdict::NotChecked
        )
        .payload(),
        "TEMP MTA-STS policy for emptymx.test lists no mx"
    );
}

/// Postfix 3.10 TLSRPT_README: `policy_ttl` is deprecated (its value is not used): no reply
/// carries it.
#[test]
fn postfix_3_10_never_policy_ttl() {
    let d = Domain::parse("good.test").unwrap();
    let zone = tlsrpt_zone(OnFailure::Temp);
    let replies = [
        reply("good.test", Some(GOOD), &zone, DaneVerdict::NotChecked),
        reply("wild.test", Some(WILD), &zone, DaneVerdict::NotChecked),
        answer_unusable(&d, &zone, PolicyFailure::FetchError, "x").payload(),
    ];
    for r in replies {
        assert!(!r.contains("policy_ttl"), "{r}");
    }
}
