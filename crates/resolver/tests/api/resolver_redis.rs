//! Resolver-level tests over a shared Redis store (docs/design.md §3: a fleet shares one Redis; a
//! store outage never makes lookups fail). Each test starts its own `redis-server`; without
//! the program the tests say so and pass, unless `MTA_STS_REQUIRE_INTEROP=1`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mta_sts_net::ManualClock;
use mta_sts_resolver::store::{RedisOptions, RedisStore, Store};
use mta_sts_resolver::{Outcome, Resolver};
use mta_sts_testkit::World;
use mta_sts_testkit::redis::{self as redis_server, Server as RedisServer};

/// Options for a store on `redis`, with a short timeout.
fn options(redis: &RedisServer) -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_millis(300),
        ..RedisOptions::new(redis.url())
    }
}

fn world() -> World {
    World::builder()
        .domain("good.test", |d| {
            d.sts_id("1").policy(POLICY).mx(10, "mail.good.test")
        })
        .start()
}

#[tokio::test]
async fn two_resolvers_share_one_redis_store() {
    let Some(redis) = redis_server::start_or_skip("two_resolvers_share_one_redis_store") else {
        return;
    };
    let world = world();
    let clock = Arc::new(ManualClock::new(T0));
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(options(&redis)).await.expect("redis"));
    let a = Resolver::new(config(&world), store.clone(), clock.clone()).expect("a");
    let b = Resolver::new(config(&world), store, clock.clone()).expect("b");
    let d = domain("good.test");
    assert_eq!(a.lookup(&d).await.outcome(), Outcome::Policy);
    assert_eq!(requests(&world, "good.test"), 1);
    // b never fetched: its memory misses, Redis has the policy.
    let l = b.lookup(&d).await;
    assert_eq!(l.outcome(), Outcome::Policy);
    assert!(l.from_cache);
    assert_eq!(requests(&world, "good.test"), 1);
}

#[tokio::test]
async fn redis_stopped_mid_run_lookups_answer_from_memory() {
    let Some(mut redis) =
        redis_server::start_or_skip("redis_stopped_mid_run_lookups_answer_from_memory")
    else {
        return;
    };
    let world = world();
    let clock = Arc::new(ManualClock::new(T0));
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(options(&redis)).await.expect("redis"));
    let r = Resolver::new(config(&world), store, clock.clone()).expect("resolver");
    let d = domain("good.test");
    assert_eq!(r.lookup(&d).await.outcome(), Outcome::Policy);
    redis.stop();
    clock.advance(60);
    let started = Instant::now();
    let l = r.lookup(&d).await;
    assert_eq!(l.outcome(), Outcome::Policy);
    assert!(l.from_cache);
    // A domain never seen still resolves live, its write-through failing quietly.
    world.add_domain("other.test", |d| d.enforce());
    assert_eq!(
        r.lookup(&domain("other.test")).await.outcome(),
        Outcome::Policy
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        r.stats()
            .store_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// Issue #14: three resolvers (daemons) on one Redis, all with the same due policies,
/// refresh each domain once per window, not three times: the first to claim a domain's
/// refresh lease (`SET NX PX`) refetches it, the others take its newer policy from Redis.
/// Counted at the testkit's HTTPS server ([`three_resolvers_refetch_each_due_domain_once`],
/// which the Sentinel and PostgreSQL stores run too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_resolvers_on_one_redis_refetch_each_due_domain_once() {
    let Some(redis) =
        redis_server::start_or_skip("three_resolvers_on_one_redis_refetch_each_due_domain_once")
    else {
        return;
    };
    three_resolvers_refetch_each_due_domain_once(|| {
        Arc::new(RedisStore::new(options(&redis)).expect("redis"))
    })
    .await;
}
