//! postfix-mta-sts-resolver's resolver table (shared/vectors/postfix-mta-sts-resolver.txt
//! §A–§C) rebuilt in a testkit world. Their VALID → our `policy`, NONE → `no-policy`,
//! FETCH_ERROR → `unusable`.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use mta_sts::Domain;
use mta_sts_resolver::{Error, Outcome};
use mta_sts_testkit::{CertKind, DnsFault, HostBehavior, World};

const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400";
const ID: &str = "v=STSv1;id=20180907T090909;";

fn overlength() -> Vec<u8> {
    let mut body = b"version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.loc\n".to_vec();
    for _ in 0..2049 {
        body.extend_from_slice(&[b'a'; 64]);
    }
    body
}

fn world() -> World {
    let mut b = World::builder();
    let hosts: Vec<(&str, HostBehavior)> = vec![
        ("good.loc", HostBehavior::policy(GOOD)),
        (
            "testing.loc",
            HostBehavior::policy("version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.loc\n"),
        ),
        (
            "valid-none.loc",
            HostBehavior::policy("version: STSv1\nmode: none\nmax_age: 86400"),
        ),
        ("bad-policy1.loc", HostBehavior::policy("garbage")),
        (
            "bad-policy2.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmax_age: 86400"),
        ),
        (
            "bad-policy3.loc",
            HostBehavior::policy(GOOD).content_type("text/html"),
        ),
        (
            "bad-policy4.loc",
            HostBehavior::policy(GOOD).with_status(404),
        ),
        (
            "bad-policy5.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: xxx"),
        ),
        (
            "bad-policy6.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 31557601"),
        ),
        (
            "bad-policy7.loc",
            HostBehavior::policy("version: STSv1\nmx: mail.loc\nmax_age: 86400"),
        ),
        (
            "bad-policy8.loc",
            HostBehavior::policy("version: STSv1\nmode: doubt\nmx: mail.loc\nmax_age: 86400"),
        ),
        (
            "bad-cert1.loc",
            HostBehavior::policy(GOOD).cert(CertKind::Untrusted),
        ),
        (
            "bad-cert2.loc",
            HostBehavior::policy(GOOD).cert(CertKind::WrongName),
        ),
        ("static-overlength.loc", HostBehavior::policy(overlength())),
        (
            "chunked-overlength.loc",
            HostBehavior::policy(overlength()).chunked(),
        ),
    ];
    for (name, behavior) in hosts {
        b = b.domain(name, move |d| d.sts_txt(ID).policy_behavior(behavior));
    }
    for (name, txt) in [
        ("bad-record1.loc", "id=20180907T090909; v=STSv1;"),
        ("bad-record2.loc", "azazaza;asdasdasdasd"),
        ("bad-record3.loc", "v=STSv12;id=20180907T090909;"),
    ] {
        b = b.domain(name, move |d| d.sts_txt(txt).policy(GOOD));
    }
    let world = b.start();
    // no-record.loc: policy host exists, no TXT; no-data.loc: _mta-sts has an A only.
    world
        .dns()
        .set_a("mta-sts.no-record.loc", &[std::net::Ipv4Addr::LOCALHOST]);
    world
        .dns()
        .set_a("_mta-sts.no-data.loc", &[std::net::Ipv4Addr::LOCALHOST]);
    world
        .dns()
        .set_fault("_mta-sts.blackhole.loc", Some(DnsFault::BlackHole));
    world
}

#[tokio::test]
async fn peer_resolver_table() {
    let world = world();
    let mut config = config(&world);
    config.timeout = Duration::from_secs(1); // as in their test_resolver.py
    let s = setup_with(&world, config);
    let table: &[(&str, Outcome)] = &[
        ("good.loc", Outcome::Policy),
        ("good.loc.", Outcome::Policy),
        ("testing.loc", Outcome::Policy),
        ("valid-none.loc", Outcome::Policy),
        ("no-record.loc", Outcome::NoPolicy),
        ("no-data.loc", Outcome::NoPolicy),
        ("bad-record1.loc", Outcome::NoPolicy),
        ("bad-record2.loc", Outcome::NoPolicy),
        ("bad-record3.loc", Outcome::NoPolicy),
        ("bad-policy1.loc", Outcome::Unusable),
        ("bad-policy2.loc", Outcome::Unusable),
        ("bad-policy3.loc", Outcome::Unusable),
        ("bad-policy4.loc", Outcome::Unusable),
        ("bad-policy5.loc", Outcome::Unusable),
        // Differs: they reject max_age 31557601 (FETCH_ERROR). docs/design.md §2 / docs/rfc-requirements.md
        // §4 item 3 (erratum 7282): accept and clamp to 31557600, as mox and chasquid do.
        ("bad-policy6.loc", Outcome::Policy),
        ("bad-policy7.loc", Outcome::Unusable),
        ("bad-policy8.loc", Outcome::Unusable),
        ("static-overlength.loc", Outcome::Unusable),
        ("chunked-overlength.loc", Outcome::Unusable),
        ("bad-cert1.loc", Outcome::Unusable),
        ("bad-cert2.loc", Outcome::Unusable),
    ];
    for (name, expected) in table {
        let d = domain(name);
        let live = s.resolver.query_live(&d).await;
        assert_eq!(
            live.outcome(),
            *expected,
            "query_live {name}: {:?}",
            live.error
        );
        let cached = s.resolver.lookup(&d).await;
        assert_eq!(
            cached.outcome(),
            *expected,
            "lookup {name}: {:?}",
            cached.error
        );
    }
    let p = s
        .resolver
        .cached(&domain("bad-policy6.loc"))
        .expect("clamped");
    assert_eq!(p.expires_at - p.fetched_at, 31_557_600);
    // NOT_CHANGED: a second lookup with the same id makes no request.
    let before = world.https().request_count("mta-sts.good.loc");
    assert!(s.resolver.lookup(&domain("good.loc")).await.from_cache);
    assert_eq!(world.https().request_count("mta-sts.good.loc"), before);
}

#[tokio::test]
async fn peer_leading_dot_is_not_a_domain_and_makes_no_query() {
    let world = world();
    for name in [".good.loc", ".good.loc."] {
        // `.good.loc` never becomes a Domain, so no DNS query can be made for it.
        assert!(Domain::parse(name).is_err(), "{name}");
    }
    assert_eq!(world.dns().total_queries(), 0);
}

#[tokio::test]
async fn peer_blackhole_is_a_failure_within_the_timeout() {
    let world = world();
    let mut config = config(&world);
    config.timeout = Duration::from_secs(1);
    let s = setup_with(&world, config);
    let started = Instant::now();
    let live = s.resolver.query_live(&domain("blackhole.loc")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(live.error, Some(Error::DnsFailure { .. })),
        "{:?}",
        live.error
    );
    assert_eq!(live.outcome(), Outcome::Unusable);
}
