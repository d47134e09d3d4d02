//! Shared helpers: a resolver pointed at a testkit world, with a manual clock.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mta_sts::Domain;
use mta_sts_net::ManualClock;
use mta_sts_resolver::store::{MemoryStore, Store};
use mta_sts_resolver::{Resolver, ResolverConfig};
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
