//! Every reply shape as a pure function of (policy, zone settings, DANE verdict), including
//! the vectors §K replies of postfix-mta-sts-resolver.

use mta_sts::{Domain, Policy};
use mta_sts_daemon::answer::{DaneVerdict, answer, answer_failure};
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
