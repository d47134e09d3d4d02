//! The proactive refresher keeps up to `refresh_concurrency` refetches in flight (issue #14):
//! against a testkit world whose policy hosts wait 200 ms before each answer, 64 due
//! policies are refreshed far faster than one at a time could, and the testkit's HTTPS
//! server never sees more requests in flight than the limit.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use mta_sts_resolver::Outcome;
use mta_sts_testkit::World;
use mta_sts_testkit::world::bulk_name;

const N: usize = 64;
const DELAY: Duration = Duration::from_millis(200);
const INTERVAL: u64 = 1000;

/// A resolver over a world of `N` domains, each looked up once, whose policy hosts then
/// delay every answer by `delay`; the clock is past every refresh time.
async fn due_world(concurrency: usize, delay: Duration) -> (World, Setup) {
    let world = World::builder().bulk(N).start();
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(INTERVAL);
    config.refresh_concurrency = concurrency;
    config.timeout = Duration::from_secs(10);
    let s = setup_with(&world, config);
    for i in 0..N {
        let name = bulk_name(i);
        assert_eq!(
            s.resolver.lookup(&domain(&name)).await.outcome(),
            Outcome::Policy,
            "{name}"
        );
        world
            .https()
            .update(&format!("mta-sts.{name}"), |b| b.delay(delay));
    }
    world.https().clear_log();
    s.clock.advance(INTERVAL + INTERVAL / 10);
    (world, s)
}

async fn refresh_all(world: &World, s: &Setup, limit: u64) {
    let started = Instant::now();
    let report = s.resolver.refresh_due().await;
    let elapsed = started.elapsed();
    assert_eq!((report.attempted, report.refreshed), (N, N), "{report:?}");
    for i in 0..N {
        assert_eq!(requests(world, &bulk_name(i)), 1, "{}", bulk_name(i));
    }
    // One at a time would take N × 200 ms = 12.8 s.
    assert!(
        elapsed < DELAY * 16,
        "{N} refreshes took {elapsed:?}: not concurrent"
    );
    let peak = world.https().peak_concurrent_requests();
    assert!(peak <= limit, "{peak} requests in flight, limit {limit}");
    assert!(peak > 1, "never more than one request in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_policies_are_refetched_concurrently_within_the_limit() {
    let (world, s) = due_world(8, DELAY).await;
    // The backlog gauge counts the pass down while it runs (8 at a time × 200 ms ≥ 1.6 s).
    let resolver = s.resolver.clone();
    let watcher = tokio::spawn(async move {
        tokio::time::sleep(DELAY).await;
        resolver.stats().refresh_backlog.load(Ordering::Relaxed)
    });
    refresh_all(&world, &s, 8).await;
    let midway = watcher.await.expect("watcher");
    assert!((1..=N as u64).contains(&midway), "backlog midway: {midway}");
    let stats = s.resolver.stats();
    assert_eq!(stats.refresh_backlog.load(Ordering::Relaxed), 0);
    assert_eq!(stats.refresh_passes.load(Ordering::Relaxed), 1);
    assert_eq!(stats.refreshes.load(Ordering::Relaxed), N as u64);
    assert!(stats.refresh_last_pass_micros.load(Ordering::Relaxed) > DELAY.as_micros() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limit_is_32() {
    assert_eq!(
        mta_sts_resolver::ResolverConfig::default().refresh_concurrency,
        32
    );
    let (world, s) = due_world(32, DELAY).await;
    refresh_all(&world, &s, 32).await;
}

#[tokio::test]
async fn a_limit_of_one_refetches_one_at_a_time() {
    let (world, s) = due_world(1, Duration::from_millis(10)).await;
    let report = s.resolver.refresh_due().await;
    assert_eq!(report.refreshed, N);
    assert_eq!(world.https().peak_concurrent_requests(), 1);
}

/// Throughput of one refresher pass over `MTA_STS_REFRESH_N` (default 10,000) due policies
/// against the testkit (real DNS + HTTPS on loopback, no delay), at the default
/// concurrency. Prints policies/s; run with
/// `cargo test -p mta-sts-resolver --test api refresh_throughput -- --ignored --nocapture`
/// (add `--release` for a figure that means something).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn refresh_throughput() {
    use mta_sts_resolver::store::{Store, StoredPolicy};
    let n: usize = std::env::var("MTA_STS_REFRESH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let world = World::builder().bulk(n).start();
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(INTERVAL);
    config.timeout = Duration::from_secs(30);
    let s = setup_with(&world, config);
    // Cached as if fetched at T0: straight into the store, then a warm start.
    for i in 0..n {
        let name = bulk_name(i);
        let stored = StoredPolicy {
            body: format!("version: STSv1\nmode: enforce\nmx: mail.{name}\nmax_age: 86400\n"),
            domain: name,
            record_id: "1".into(),
            fetched_at: T0,
            expires_at: T0 + 86_400,
        };
        s.store.put(&stored, T0).await.expect("put");
    }
    assert_eq!(s.resolver.warm_start().await, n);
    s.clock.advance(INTERVAL + INTERVAL / 10);
    let started = Instant::now();
    let report = s.resolver.refresh_due().await;
    let elapsed = started.elapsed();
    println!(
        "refreshed {} of {n} due policies ({} failed) in {elapsed:?} = {:.0} policies/s, peak {} in flight",
        report.refreshed,
        report.failed,
        report.refreshed as f64 / elapsed.as_secs_f64(),
        world.https().peak_concurrent_requests()
    );
    assert_eq!(report.refreshed, n, "{report:?}");
}
