//! The cache state machine, docs/rfc-requirements.md §2.5 row by row (RFC 8461 §3.1, §3.2, §3.3,
//! §5.1, §10.2), with a manual clock. The testkit's HTTPS request counter proves when a
//! fetch did or did not happen.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mta_sts::Mode;
use mta_sts_resolver::store::Store;
use mta_sts_resolver::{Error, Outcome};
use mta_sts_testkit::{DnsFault, HostBehavior, RecordType, World};

const HOST: &str = "mta-sts.good.test";

fn good_world() -> World {
    World::builder()
        .negative_ttl(120)
        .domain("good.test", |d| {
            d.sts_id("1").policy(POLICY).mx(10, "mail.good.test")
        })
        .start()
}

#[tokio::test]
async fn rfc8461_3_2_expiry_is_fetch_time_plus_max_age() {
    let world = good_world();
    let s = setup(&world);
    let l = s.resolver.lookup(&domain("good.test")).await;
    let p = l.policy.expect("policy");
    assert!(!l.from_cache);
    assert_eq!(p.fetched_at, T0);
    assert_eq!(p.expires_at, T0 + 86400);
    assert_eq!(&*p.record_id, "1");
    assert_eq!(p.body(), POLICY);
}

#[tokio::test]
async fn rfc8461_3_2_max_age_above_limit_is_clamped() {
    let world = good_world();
    world.https().set(
        HOST,
        HostBehavior::policy(
            "version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 9999999999\n",
        ),
    );
    let s = setup(&world);
    let p = s
        .resolver
        .lookup(&domain("good.test"))
        .await
        .policy
        .expect("policy");
    assert_eq!(p.expires_at, T0 + 31_557_600);
}

#[tokio::test]
async fn rfc8461_5_1_same_id_fresh_cache_uses_cache_without_fetch() {
    let world = good_world();
    let s = setup(&world);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    assert_eq!(requests(&world, "good.test"), 1);
    s.clock.advance(3600);
    let l = s.resolver.lookup(&d).await;
    assert!(l.from_cache);
    assert_eq!(l.outcome(), Outcome::Policy);
    // Expiry not extended: max_age counts from the last fetch (docs/rfc-requirements.md §4 item 10).
    assert_eq!(l.policy.expect("policy").expires_at, T0 + 86400);
    assert_eq!(requests(&world, "good.test"), 1);
}

#[tokio::test]
async fn rfc8461_3_1_changed_id_triggers_fetch() {
    let world = good_world();
    let s = setup(&world);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    world
        .dns()
        .set_txt("_mta-sts.good.test", &[&["v=STSv1; id=2;"]]);
    world.https().set(
        HOST,
        HostBehavior::policy("version: STSv1\nmode: testing\nmx: mail.good.test\nmax_age: 600\n"),
    );
    s.clock.advance(10);
    let l = s.resolver.lookup(&d).await;
    assert_eq!(requests(&world, "good.test"), 2);
    assert!(!l.from_cache);
    let p = l.policy.expect("policy");
    assert_eq!(&*p.record_id, "2");
    assert_eq!(p.policy.mode, Mode::Testing);
    assert_eq!(p.expires_at, T0 + 10 + 600);
}

#[tokio::test]
async fn rfc8461_3_3_changed_id_fetch_failure_keeps_fresh_cached_policy() {
    let world = good_world();
    let s = setup(&world);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    world
        .dns()
        .set_txt("_mta-sts.good.test", &[&["v=STSv1; id=2;"]]);
    world.https().set(HOST, HostBehavior::status(500));
    s.clock.advance(10);
    let l = s.resolver.lookup(&d).await;
    assert!(l.from_cache);
    assert_eq!(&*l.policy.expect("cached").record_id, "1");
    assert!(matches!(l.error, Some(Error::Status { status: 500 })));
    assert_eq!(requests(&world, "good.test"), 2);
}

#[tokio::test]
async fn rfc8461_3_3_failed_fetch_backs_off_five_minutes_per_id() {
    let world = good_world();
    world.https().set(HOST, HostBehavior::status(503));
    let s = setup(&world);
    let d = domain("good.test");
    let l = s.resolver.lookup(&d).await;
    assert_eq!(l.outcome(), Outcome::Unusable);
    assert_eq!(requests(&world, "good.test"), 1);
    // Within 5 minutes: no new request, same typed error.
    s.clock.advance(299);
    let l = s.resolver.lookup(&d).await;
    assert!(matches!(l.error, Some(Error::Status { status: 503 })));
    assert_eq!(requests(&world, "good.test"), 1);
    // A new id is a new policy version: fetched at once.
    world
        .dns()
        .set_txt("_mta-sts.good.test", &[&["v=STSv1; id=2;"]]);
    s.resolver.lookup(&d).await;
    assert_eq!(requests(&world, "good.test"), 2);
    // Back to id 1 after the period: tried again, and it works now.
    world
        .dns()
        .set_txt("_mta-sts.good.test", &[&["v=STSv1; id=1;"]]);
    world.https().set(HOST, HostBehavior::policy(POLICY));
    s.clock.advance(2);
    let l = s.resolver.lookup(&d).await;
    assert_eq!(requests(&world, "good.test"), 3);
    assert_eq!(l.outcome(), Outcome::Policy);
}

#[tokio::test]
async fn rfc8461_3_3_no_cache_and_failed_fetch_means_no_policy() {
    let world = good_world();
    world.https().set(HOST, HostBehavior::status(404));
    let s = setup(&world);
    let l = s.resolver.lookup(&domain("good.test")).await;
    assert!(l.policy.is_none());
    assert_eq!(l.outcome(), Outcome::Unusable);
}

async fn keeps_cache_when_txt(change: impl FnOnce(&World)) {
    let world = good_world();
    let s = setup(&world);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    change(&world);
    s.clock.advance(3600);
    let l = s.resolver.lookup(&d).await;
    assert!(l.from_cache, "{l:?}");
    assert_eq!(l.outcome(), Outcome::Policy);
    assert!(l.error.is_some(), "the live failure is reported");
    assert_eq!(requests(&world, "good.test"), 1);
    // Past expiry the entry no longer applies.
    s.clock.advance(86400);
    let l = s.resolver.lookup(&d).await;
    assert!(l.policy.is_none());
}

#[tokio::test]
async fn rfc8461_3_1_txt_gone_keeps_fresh_cached_policy() {
    keeps_cache_when_txt(|w| w.dns().remove("_mta-sts.good.test", RecordType::TXT)).await;
}

#[tokio::test]
async fn rfc8461_3_1_invalid_txt_keeps_fresh_cached_policy() {
    keeps_cache_when_txt(|w| {
        w.dns()
            .set_txt("_mta-sts.good.test", &[&["v=STSv1; id=not-valid;"]])
    })
    .await;
}

#[tokio::test]
async fn rfc8461_3_1_multiple_txt_keeps_fresh_cached_policy() {
    keeps_cache_when_txt(|w| {
        w.dns().set_txt(
            "_mta-sts.good.test",
            &[&["v=STSv1; id=1;"], &["v=STSv1; id=2;"]],
        )
    })
    .await;
}

#[tokio::test]
async fn rfc8461_5_1_dns_servfail_keeps_fresh_cached_policy() {
    keeps_cache_when_txt(|w| {
        w.dns()
            .set_fault("_mta-sts.good.test", Some(DnsFault::ServFail))
    })
    .await;
}

#[tokio::test]
async fn rfc8461_5_1_dns_timeout_keeps_fresh_cached_policy() {
    keeps_cache_when_txt(|w| {
        w.dns()
            .set_fault("_mta-sts.good.test", Some(DnsFault::BlackHole))
    })
    .await;
}

#[tokio::test]
async fn rfc8461_3_2_none_policy_is_cached_and_replaces_enforce() {
    let world = good_world();
    let s = setup(&world);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    world
        .dns()
        .set_txt("_mta-sts.good.test", &[&["v=STSv1; id=2;"]]);
    world.https().set(
        HOST,
        HostBehavior::policy("version: STSv1\nmode: none\nmax_age: 86400\n"),
    );
    s.clock.advance(10);
    let l = s.resolver.lookup(&d).await;
    assert_eq!(l.policy.expect("none policy").policy.mode, Mode::None);
    s.clock.advance(10);
    let l = s.resolver.lookup(&d).await;
    assert!(l.from_cache);
    assert_eq!(l.policy.expect("none policy").policy.mode, Mode::None);
    assert_eq!(requests(&world, "good.test"), 2);
}

#[tokio::test]
async fn rfc8461_3_2_max_age_zero_applies_once_only() {
    let world = good_world();
    world.https().set(
        HOST,
        HostBehavior::policy("version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 0\n"),
    );
    let s = setup(&world);
    let d = domain("good.test");
    assert_eq!(s.resolver.lookup(&d).await.outcome(), Outcome::Policy);
    assert!(s.resolver.cached(&d).is_none());
    s.resolver.lookup(&d).await;
    assert_eq!(requests(&world, "good.test"), 2);
}

#[tokio::test]
async fn rfc8461_3_1_no_record_is_cached_negatively_for_the_bounded_ttl() {
    let world = good_world(); // negative TTL 120
    let s = setup(&world);
    let d = domain("absent.test");
    let l = s.resolver.lookup(&d).await;
    assert_eq!(l.outcome(), Outcome::NoPolicy);
    assert!(matches!(l.error, Some(Error::NoRecord { .. })));
    let q = world
        .dns()
        .query_count("_mta-sts.absent.test", RecordType::TXT);
    assert_eq!(q, 1);
    s.clock.advance(119);
    assert_eq!(s.resolver.lookup(&d).await.outcome(), Outcome::NoPolicy);
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.absent.test", RecordType::TXT),
        1
    );
    s.clock.advance(1);
    s.resolver.lookup(&d).await;
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.absent.test", RecordType::TXT),
        2
    );

    // The cap bounds a long negative TTL.
    let world = World::builder().negative_ttl(86400).start();
    let mut config = config(&world);
    config.negative_ttl_cap = Duration::from_secs(60);
    let s = setup_with(&world, config);
    s.resolver.lookup(&d).await;
    s.clock.advance(60);
    s.resolver.lookup(&d).await;
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.absent.test", RecordType::TXT),
        2
    );
}

#[tokio::test]
async fn rfc8461_5_1_dns_failure_is_not_cached_negatively() {
    let world = good_world();
    world
        .dns()
        .set_fault("_mta-sts.good.test", Some(DnsFault::ServFail));
    let s = setup(&world);
    let d = domain("good.test");
    let l = s.resolver.lookup(&d).await;
    assert!(matches!(l.error, Some(Error::DnsFailure { .. })), "{l:?}");
    world.dns().set_fault("_mta-sts.good.test", None);
    let l = s.resolver.lookup(&d).await;
    assert_eq!(l.outcome(), Outcome::Policy);
}

#[tokio::test]
async fn rfc8461_3_3_single_flight_50_concurrent_lookups_one_request() {
    let world = good_world();
    world.https().set(
        HOST,
        HostBehavior::policy(POLICY).delay(Duration::from_millis(200)),
    );
    let s = setup(&world);
    let d = domain("good.test");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let r = s.resolver.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move { r.lookup(&d).await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").outcome(), Outcome::Policy);
    }
    assert_eq!(requests(&world, "good.test"), 1);
    assert!(
        s.resolver
            .stats()
            .flights_joined
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn rfc8461_10_2_refresher_refetches_before_expiry_regardless_of_txt() {
    let world = good_world();
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(3600);
    let s = setup_with(&world, config);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    // Not due yet.
    s.clock.advance(60);
    assert_eq!(s.resolver.refresh_due().await.attempted, 0);
    // TXT broken: the refresher still fetches (RFC 8461 §10.2).
    world
        .dns()
        .set_fault("_mta-sts.good.test", Some(DnsFault::ServFail));
    s.clock.advance(3600 + 400);
    let report = s.resolver.refresh_due().await;
    assert_eq!((report.attempted, report.refreshed), (1, 1));
    assert_eq!(requests(&world, "good.test"), 2);
    let p = s.resolver.cached(&d).expect("cached");
    assert_eq!(p.fetched_at, T0 + 60 + 4000);
    assert_eq!(p.expires_at, T0 + 4060 + 86400);
    // Failing refreshes are counted (and logged as warnings for non-none modes).
    world.https().set(HOST, HostBehavior::status(500));
    s.clock.advance(4000);
    let report = s.resolver.refresh_due().await;
    assert_eq!(report.failed, 1);
    assert!(
        s.resolver.cached(&d).is_some(),
        "a failed refresh keeps the policy"
    );
    // The spawned refresher runs the same pass on its own.
    let handle = s.resolver.spawn_refresher();
    handle.abort();
}

#[tokio::test]
async fn store_write_through_read_through_and_warm_start() {
    let world = good_world();
    let s = setup(&world);
    let d = domain("good.test");
    s.resolver.lookup(&d).await;
    let stored = s
        .store
        .get("good.test")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.record_id, "1");
    assert_eq!(stored.expires_at, T0 + 86400);

    // A second resolver on the same store: read-through, no HTTPS.
    let other = mta_sts_resolver::Resolver::new(
        config(&world),
        s.store.clone() as Arc<dyn Store>,
        s.clock.clone(),
    )
    .expect("resolver");
    let l = other.lookup(&d).await;
    assert!(l.from_cache);
    assert_eq!(requests(&world, "good.test"), 1);

    // Warm start loads everything fresh.
    let third = mta_sts_resolver::Resolver::new(
        config(&world),
        s.store.clone() as Arc<dyn Store>,
        s.clock.clone(),
    )
    .expect("resolver");
    assert_eq!(third.warm_start().await, 1);
    assert!(third.cached(&d).is_some());
}

/// A store that always fails: lookups still work from memory.
struct BrokenStore;

#[async_trait::async_trait]
impl Store for BrokenStore {
    async fn get(
        &self,
        _: &str,
    ) -> Result<Option<mta_sts_resolver::store::StoredPolicy>, mta_sts_resolver::store::StoreError>
    {
        Err(broken())
    }
    async fn put(
        &self,
        _: &mta_sts_resolver::store::StoredPolicy,
        _: u64,
    ) -> Result<(), mta_sts_resolver::store::StoreError> {
        Err(broken())
    }
    async fn remove(&self, _: &str) -> Result<(), mta_sts_resolver::store::StoreError> {
        Err(broken())
    }
    async fn load_all(
        &self,
        _: u64,
    ) -> Result<Vec<mta_sts_resolver::store::StoredPolicy>, mta_sts_resolver::store::StoreError>
    {
        Err(broken())
    }
    fn backend(&self) -> &'static str {
        "broken"
    }
}

fn broken() -> mta_sts_resolver::store::StoreError {
    mta_sts_resolver::store::StoreError::Unavailable {
        backend: "broken",
        message: "down".into(),
    }
}

#[tokio::test]
async fn store_outage_never_fails_a_lookup() {
    let world = good_world();
    let clock = Arc::new(mta_sts_net::ManualClock::new(T0));
    let r = mta_sts_resolver::Resolver::new(config(&world), Arc::new(BrokenStore), clock)
        .expect("resolver");
    let d = domain("good.test");
    assert_eq!(r.warm_start().await, 0);
    assert_eq!(r.lookup(&d).await.outcome(), Outcome::Policy);
    let l = r.lookup(&d).await;
    assert!(l.from_cache);
    assert_eq!(requests(&world, "good.test"), 1);
    assert!(
        r.stats()
            .store_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn bad_input_black_hole_dns_ends_within_timeout() {
    let world = good_world();
    world
        .dns()
        .set_fault("_mta-sts.good.test", Some(DnsFault::BlackHole));
    let mut config = config(&world);
    config.timeout = Duration::from_millis(700);
    let s = setup_with(&world, config);
    let started = Instant::now();
    let l = s.resolver.lookup(&domain("good.test")).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(
        matches!(
            l.error,
            Some(Error::DnsFailure {
                kind: mta_sts_resolver::DnsFailureKind::Timeout,
                ..
            })
        ),
        "{l:?}"
    );
    assert_eq!(l.outcome(), Outcome::Unusable);
}
