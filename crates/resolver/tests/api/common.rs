//! Shared helpers: a resolver pointed at a testkit world, with a manual clock.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mta_sts::Domain;
use mta_sts_net::ManualClock;
use mta_sts_resolver::store::{MemoryStore, Store};
use mta_sts_resolver::{Outcome, Resolver, ResolverConfig};
use mta_sts_testkit::World;

/// Start of the manual clock.
pub const T0: u64 = 1_700_000_000;

pub const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 86400\n";

/// Config for a world: its DNS, its CA only, every policy host routed to it, short timeouts.
pub fn config(world: &World) -> ResolverConfig {
    ResolverConfig {
        nameservers: vec![world.dns_addr()],
        ca_file: Some(world.ca_file().to_path_buf()),
        ca_file_only: true,
        connect_to: vec![world.connect_to_any().parse().expect("connect-to")],
        timeout: Duration::from_millis(1500),
        dns_cache_size: 0,
        ..ResolverConfig::default()
    }
}

pub struct Setup {
    pub resolver: Resolver,
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
}

pub fn setup_with(_world: &World, config: ResolverConfig) -> Setup {
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(MemoryStore::new());
    let resolver =
        Resolver::new(config, store.clone() as Arc<dyn Store>, clock.clone()).expect("resolver");
    Setup {
        resolver,
        clock,
        store,
    }
}

pub fn setup(world: &World) -> Setup {
    setup_with(world, config(world))
}

pub fn domain(name: &str) -> Domain {
    Domain::parse(name).expect("domain")
}

pub fn requests(world: &World, domain: &str) -> u64 {
    world.https().request_count(&format!("mta-sts.{domain}"))
}

/// Three resolvers (daemons), each with its own handle from `make_store` on one shared
/// store, all with the same due policies, refresh each domain once per window, not three
/// times: the first to claim a domain's refresh lease (`Store::try_lease`) refetches it, the
/// others take its newer policy from the store. Counted at the testkit's HTTPS server.
pub async fn three_resolvers_refetch_each_due_domain_once(make_store: impl Fn() -> Arc<dyn Store>) {
    use mta_sts_testkit::world::bulk_name;
    const N: usize = 24;
    let world = World::builder().bulk(N).start();
    let clock = Arc::new(ManualClock::new(T0));
    let mut config = config(&world);
    config.refresh_interval = Duration::from_secs(1000);
    let resolvers: Vec<Resolver> = (0..3)
        .map(|_| Resolver::new(config.clone(), make_store(), clock.clone()).expect("resolver"))
        .collect();
    let names: Vec<String> = (0..N).map(bulk_name).collect();
    for name in &names {
        assert_eq!(
            resolvers[0].lookup(&domain(name)).await.outcome(),
            Outcome::Policy
        );
    }
    for resolver in &resolvers[1..] {
        assert_eq!(resolver.warm_start().await, N);
    }
    world.https().clear_log();

    // Every policy is due on all three at once; their passes run side by side.
    clock.advance(1100);
    let (a, b, c) = tokio::join!(
        resolvers[0].refresh_due(),
        resolvers[1].refresh_due(),
        resolvers[2].refresh_due()
    );
    let reports = [a, b, c];
    let fetched: usize = reports.iter().map(|r| r.refreshed).sum();
    assert_eq!(fetched, N, "{reports:?}");
    assert!(reports.iter().all(|r| r.failed == 0), "{reports:?}");
    for name in &names {
        assert_eq!(requests(&world, name), 1, "{name}: {reports:?}");
    }
    // Those that deferred to the lease holder take its policy once the lease ends.
    clock.advance(10);
    for resolver in &resolvers {
        let report = resolver.refresh_due().await;
        assert_eq!((report.refreshed, report.failed), (0, 0), "{report:?}");
    }
    for name in &names {
        assert_eq!(requests(&world, name), 1, "{name}");
        for resolver in &resolvers {
            let cached = resolver.cached(&domain(name)).expect("cached");
            assert_eq!(cached.fetched_at, T0 + 1100, "{name}");
        }
    }
}
