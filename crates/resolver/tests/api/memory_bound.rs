//! Issue #14 target 6: the memory layer holds at most `max_memory` bytes. Entries no lookup
//! used lately are evicted, negative answers first; an evicted policy is still cached (RFC
//! 8461 §5.1): its next lookup reads it back from the store (SQLite here) without an HTTPS
//! fetch, and the refresher still refreshes it (RFC 8461 §3.3, §10.2). The testkit's HTTPS
//! request counter shows every fetch.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use mta_sts_net::ManualClock;
use mta_sts_resolver::store::{SqliteStore, Store};
use mta_sts_resolver::{COUNTED_SHARE, Outcome, Resolver, ResolverConfig};
use mta_sts_testkit::World;
use mta_sts_testkit::world::bulk_name;

const N: usize = 300;
const INTERVAL: u64 = 1000;
/// Room for about a third of the `N` policies (the shares of 32 shards).
const BOUND: u64 = 64_000;

struct Bounded {
    resolver: Resolver,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn bounded(world: &World, max_memory: u64) -> Bounded {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("cache.db"))
        .await
        .expect("sqlite store");
    let clock = Arc::new(ManualClock::new(T0));
    let resolver = Resolver::new(
        ResolverConfig {
            max_memory: Some(max_memory),
            refresh_interval: Duration::from_secs(INTERVAL),
            ..config(world)
        },
        Arc::new(store) as Arc<dyn Store>,
        clock.clone(),
    )
    .expect("resolver");
    Bounded {
        resolver,
        clock,
        _dir: dir,
    }
}

/// Looks up every bulk domain once, checking the bound after each lookup.
async fn look_up_all(b: &Bounded) {
    for i in 0..N {
        let name = bulk_name(i);
        assert_eq!(
            b.resolver.lookup(&domain(&name)).await.outcome(),
            Outcome::Policy,
            "{name}"
        );
        let usage = b.resolver.memory_usage();
        assert!(usage.bytes <= BOUND, "{usage:?} after {name}");
    }
}

#[tokio::test]
async fn the_memory_layer_stays_within_the_bound_and_evicted_policies_come_from_the_store() {
    let world = World::builder().bulk(N).start();
    let b = bounded(&world, BOUND).await;
    look_up_all(&b).await;
    let usage = b.resolver.memory_usage();
    assert!(usage.evicted_policies > 0, "{usage:?}");
    assert!((usage.entries as usize) < N, "{usage:?}");
    let fetches = b.resolver.stats().fetches.load(Ordering::Relaxed);
    assert_eq!(fetches, N as u64);

    // Every policy evicted from memory is read back from the store, not fetched again.
    world.https().clear_log();
    look_up_all(&b).await;
    for i in 0..N {
        assert_eq!(requests(&world, &bulk_name(i)), 0, "{}", bulk_name(i));
    }
    let stats = b.resolver.stats();
    assert_eq!(stats.fetches.load(Ordering::Relaxed), fetches);
    assert!(stats.store_reads.load(Ordering::Relaxed) >= usage.evicted_policies.min(N as u64) / 2);
    // The budget's own answer (used when a lookup runs out of time) sees the store too.
    for i in 0..N {
        let name = domain(&bulk_name(i));
        assert!(b.resolver.cached_or_stored(&name).await.is_some(), "{name}");
    }
}

#[tokio::test]
async fn negative_answers_are_evicted_before_policies() {
    const POLICIES: usize = 20;
    let world = World::builder().bulk(POLICIES).start();
    // Room for the policies and some negative answers: 96,000 bytes counted.
    const MAX: u64 = 96_000 / COUNTED_SHARE.0 * COUNTED_SHARE.1;
    let b = bounded(&world, MAX).await;
    assert_eq!(b.resolver.memory_usage().limit, Some(96_000));
    for i in 0..POLICIES {
        let name = bulk_name(i);
        assert_eq!(
            b.resolver.lookup(&domain(&name)).await.outcome(),
            Outcome::Policy
        );
    }
    // Far more "no record" answers than fit (NXDOMAIN from the testkit DNS).
    for i in 0..1000 {
        let name = format!("none{i}.test");
        assert_eq!(
            b.resolver.lookup(&domain(&name)).await.outcome(),
            Outcome::NoPolicy
        );
        let usage = b.resolver.memory_usage();
        assert!(usage.bytes <= 96_000, "{usage:?} after {name}");
    }
    let usage = b.resolver.memory_usage();
    assert!(usage.evicted_negatives > 0, "{usage:?}");
    assert_eq!(usage.evicted_policies, 0, "{usage:?}");
    for i in 0..POLICIES {
        let name = domain(&bulk_name(i));
        assert!(b.resolver.cached(&name).is_some(), "{name} left memory");
    }
}

#[tokio::test]
async fn the_refresher_refreshes_policies_evicted_from_memory() {
    let world = World::builder().bulk(N).start();
    let b = bounded(&world, BOUND).await;
    look_up_all(&b).await;
    let evicted = b.resolver.memory_usage().evicted_policies;
    assert!(evicted > 0);

    // Past every refresh time (interval + 10 % jitter), within max_age: every stored
    // policy is refetched once, in memory or not.
    world.https().clear_log();
    b.clock.advance(INTERVAL + INTERVAL / 10 + 1);
    let report = b.resolver.refresh_due().await;
    assert_eq!((report.attempted, report.refreshed), (N, N), "{report:?}");
    for i in 0..N {
        assert_eq!(requests(&world, &bulk_name(i)), 1, "{}", bulk_name(i));
    }
    // The next pass has nothing to do.
    world.https().clear_log();
    let report = b.resolver.refresh_due().await;
    assert_eq!(report.attempted, 0, "{report:?}");
}

/// The memory store is an unbounded map of its own: `max_memory` bounds the memory layer
/// in front of it, evicted policies are read back from it, and the process as a whole is
/// not bounded (a daemon that needs the bound uses SQLite or Redis).
#[tokio::test]
async fn with_the_memory_store_evicted_policies_are_read_back_from_it() {
    let world = World::builder().bulk(N).start();
    let s = setup_with(
        &world,
        ResolverConfig {
            max_memory: Some(BOUND),
            ..config(&world)
        },
    );
    for i in 0..N {
        s.resolver.lookup(&domain(&bulk_name(i))).await;
    }
    assert!(s.resolver.memory_usage().evicted_policies > 0);
    assert_eq!(s.store.load_all(T0).await.expect("load").len(), N);
    world.https().clear_log();
    for i in 0..N {
        let name = bulk_name(i);
        assert_eq!(
            s.resolver.lookup(&domain(&name)).await.outcome(),
            Outcome::Policy
        );
        assert_eq!(requests(&world, &name), 0, "{name}");
    }
}

#[tokio::test]
async fn unbounded_keeps_everything() {
    let world = World::builder().bulk(N).start();
    let s = setup_with(
        &world,
        ResolverConfig {
            max_memory: None,
            ..config(&world)
        },
    );
    for i in 0..N {
        s.resolver.lookup(&domain(&bulk_name(i))).await;
    }
    let usage = s.resolver.memory_usage();
    assert_eq!(
        (usage.entries, usage.evicted_policies),
        (N as u64, 0),
        "{usage:?}"
    );
    assert!(usage.bytes > 0);
}
