//! The proactive refresher (RFC 8461 §3.3 "periodically", §10.2 refresh before expiry),
//! issue #12 item 17: refreshes are jittered ±10 % around `refresh_interval` per domain so a
//! fleet does not refetch in step, capped at half the policy's lifetime, and a failing
//! refresh is logged as a warning (unless the policy's mode is none) and retried after the
//! backoff. Issue #14: the jitter is random per resolver, so two daemons over one store
//! refresh a domain at different times. Manual clock; the testkit's HTTPS request counter
//! shows every fetch.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mta_sts_net::ManualClock;
use mta_sts_resolver::store::Store;
use mta_sts_resolver::{Outcome, Resolver};
use mta_sts_testkit::world::bulk_name;
use mta_sts_testkit::{HostBehavior, World};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const INTERVAL: u64 = 1000;

#[tokio::test]
async fn refreshes_are_spread_over_plus_minus_ten_percent_and_capped_at_half_the_lifetime() {
    const N: usize = 40;
    let world = World::builder()
        .bulk(N)
        .domain("short.test", |d| {
            d.sts_id("1")
                .policy("version: STSv1\nmode: enforce\nmx: mail.short.test\nmax_age: 600\n")
                .mx(10, "mail.short.test")
        })
        .start();
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(INTERVAL);
    let s = setup_with(&world, config);
    let mut names: Vec<String> = (0..N).map(bulk_name).collect();
    names.push("short.test".into());
    for name in &names {
        assert_eq!(
            s.resolver.lookup(&domain(name)).await.outcome(),
            Outcome::Policy,
            "{name}"
        );
    }
    // Step the clock one second at a time; note when each domain is first refetched.
    let mut first_refresh: BTreeMap<&str, u64> = BTreeMap::new();
    for offset in 1..=INTERVAL + INTERVAL / 5 {
        s.clock.advance(1);
        s.resolver.refresh_due().await;
        for name in &names {
            if !first_refresh.contains_key(name.as_str())
                && s.resolver
                    .cached(&domain(name))
                    .is_some_and(|p| p.fetched_at != T0)
            {
                first_refresh.insert(name, offset);
            }
        }
    }
    // max_age 600: refreshed by half its lifetime, long before the interval.
    assert_eq!(first_refresh.remove("short.test"), Some(300));
    assert_eq!(first_refresh.len(), N, "every domain was refreshed");
    for (name, offset) in &first_refresh {
        assert!(
            (INTERVAL - INTERVAL / 10..INTERVAL + INTERVAL / 10).contains(offset),
            "{name} refreshed after {offset} s, outside interval ±10 %"
        );
        // one lookup fetch, one refresh: no refetch storm
        assert_eq!(requests(&world, name), 2, "{name}");
    }
    let distinct: std::collections::BTreeSet<u64> = first_refresh.values().copied().collect();
    assert!(
        distinct.len() >= N / 2,
        "refreshes are not spread: {} distinct times for {N} domains ({distinct:?})",
        distinct.len()
    );
}

/// The offset from [`T0`] at which each of `names` was first refreshed by `resolver`,
/// stepping `clock` a second at a time up to `INTERVAL` + 20 % (every resolver given is
/// run at each step).
async fn first_refreshes(
    clock: &ManualClock,
    resolvers: &[&Resolver],
    names: &[String],
) -> Vec<BTreeMap<String, u64>> {
    let mut first: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); resolvers.len()];
    for offset in 1..=INTERVAL + INTERVAL / 5 {
        clock.advance(1);
        for (resolver, first) in resolvers.iter().zip(&mut first) {
            resolver.refresh_due().await;
            for name in names {
                if !first.contains_key(name)
                    && resolver
                        .cached(&domain(name))
                        .is_some_and(|p| p.fetched_at != T0)
                {
                    first.insert(name.clone(), offset);
                }
            }
        }
    }
    first
}

#[tokio::test]
async fn two_resolvers_over_one_store_refresh_at_different_times_within_the_band() {
    const N: usize = 40;
    let world = World::builder().bulk(N).start();
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(INTERVAL);
    let a = setup_with(&world, config.clone());
    let names: Vec<String> = (0..N).map(bulk_name).collect();
    for name in &names {
        assert_eq!(
            a.resolver.lookup(&domain(name)).await.outcome(),
            Outcome::Policy
        );
    }
    // A second daemon on the same store and clock starts with the same entries.
    let b = Resolver::new(config, a.store.clone() as Arc<dyn Store>, a.clock.clone())
        .expect("resolver");
    assert_eq!(b.warm_start().await, N);

    let first = first_refreshes(&a.clock, &[&a.resolver, &b], &names).await;
    let band = INTERVAL - INTERVAL / 10..INTERVAL + INTERVAL / 10;
    for (which, first) in ["a", "b"].iter().zip(&first) {
        assert_eq!(first.len(), N, "resolver {which} refreshed every domain");
        for (name, offset) in first {
            assert!(
                band.contains(offset),
                "resolver {which}: {name} refreshed after {offset} s, outside interval ±10 %"
            );
        }
    }
    // 200 possible seconds each: a few coincidences, not lockstep.
    let same = names
        .iter()
        .filter(|n| first[0][*n] == first[1][*n])
        .count();
    assert!(
        same <= N / 4,
        "{same} of {N} domains refreshed at the same second by both resolvers"
    );
}

/// One event as the test subscriber saw it.
#[derive(Debug, Clone)]
struct Logged {
    level: Level,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// A subscriber that keeps every event (the resolver logs with `tracing`).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Logged>>>);

impl Capture {
    fn take(&self) -> Vec<Logged> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Logged {
                level: *event.metadata().level(),
                fields: fields.0,
            });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The warnings about failed refreshes among `logged`: (domain, failures).
fn refresh_warnings(logged: &[Logged]) -> Vec<(String, String)> {
    logged
        .iter()
        .filter(|l| {
            l.level == Level::WARN
                && l.fields
                    .get("message")
                    .is_some_and(|m| m.starts_with("policy refresh failed"))
        })
        .map(|l| {
            (
                l.fields.get("domain").cloned().unwrap_or_default(),
                l.fields.get("failures").cloned().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn failing_refresh_warns_unless_mode_none_and_retries_after_backoff() {
    let world = World::builder()
        .domain("good.test", |d| {
            d.sts_id("1").policy(POLICY).mx(10, "mail.good.test")
        })
        .domain("none.test", |d| {
            d.sts_id("1")
                .policy("version: STSv1\nmode: none\nmax_age: 86400\n")
                .mx(10, "mail.none.test")
        })
        .start();
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(INTERVAL);
    config.backoff = Duration::from_secs(300);
    let s = setup_with(&world, config);
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    for name in ["good.test", "none.test"] {
        assert_eq!(
            s.resolver.lookup(&domain(name)).await.outcome(),
            Outcome::Policy,
            "{name}"
        );
    }
    for host in ["mta-sts.good.test", "mta-sts.none.test"] {
        world.https().set(host, HostBehavior::status(500));
    }
    capture.take();

    s.clock.advance(INTERVAL + INTERVAL / 10);
    let report = s.resolver.refresh_due().await;
    assert_eq!((report.attempted, report.failed), (2, 2));
    // RFC 8461 §10.2: operators learn of failing refreshes, except for mode none.
    assert_eq!(
        refresh_warnings(&capture.take()),
        [("good.test".to_owned(), "1".to_owned())]
    );
    for name in ["good.test", "none.test"] {
        assert!(s.resolver.cached(&domain(name)).is_some(), "{name} kept");
    }

    // Not retried within the backoff, retried after it; the count goes up.
    s.clock.advance(299);
    assert_eq!(s.resolver.refresh_due().await.attempted, 0);
    assert!(refresh_warnings(&capture.take()).is_empty());
    s.clock.advance(1);
    assert_eq!(s.resolver.refresh_due().await.failed, 2);
    assert_eq!(
        refresh_warnings(&capture.take()),
        [("good.test".to_owned(), "2".to_owned())]
    );

    // Recovery: the next refresh succeeds and warns no more.
    world
        .https()
        .set("mta-sts.good.test", HostBehavior::policy(POLICY));
    s.clock.advance(300);
    let report = s.resolver.refresh_due().await;
    assert_eq!(report.refreshed, 1);
    assert!(refresh_warnings(&capture.take()).is_empty());
}
