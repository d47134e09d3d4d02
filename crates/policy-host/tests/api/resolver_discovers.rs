//! End to end with the sender side: `mta_sts_resolver` discovers the `_mta-sts` record that
//! `records` printed (published in the testkit DNS), fetches the policy from this server
//! over real TLS (connect-to override, test CA only) and validates it.

use crate::common;

use std::sync::Arc;

use common::Fixture;
use mta_sts::Domain;
use mta_sts_net::{ConnectTo, SystemClock};
use mta_sts_resolver::store::MemoryStore;
use mta_sts_resolver::{Outcome, Resolver, ResolverConfig};
use mta_sts_testkit::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_discovers_and_validates_our_policy() {
    let world = World::empty();
    let f = Fixture::new();
    let server = f.start(&f.standard_config("")).await;
    let addr = server.local_addrs()[0];
    let domain: Domain = "a.test".parse().unwrap();

    // Publish exactly what `records` says.
    let table = server.table();
    let entry = table.host("mta-sts.a.test").unwrap();
    let records = entry.records();
    world
        .dns()
        .set_txt("_mta-sts.a.test", &[&[records.sts.value.as_str()]]);

    let config = ResolverConfig {
        nameservers: vec![world.dns_addr()],
        ca_file: Some(f.ca_file()),
        ca_file_only: true,
        connect_to: vec![
            format!("mta-sts.a.test:443:127.0.0.1:{}", addr.port())
                .parse::<ConnectTo>()
                .unwrap(),
        ],
        dns_cache_size: 0,
        ..ResolverConfig::default()
    };
    let resolver =
        Resolver::new(config, Arc::new(MemoryStore::new()), Arc::new(SystemClock)).unwrap();
    let live = resolver.query_live(&domain).await;
    assert_eq!(live.outcome(), Outcome::Policy, "{:?}", live.error);
    assert_eq!(live.record.as_ref().unwrap().id, entry.id);
    assert_eq!(live.policy.as_deref(), Some(&entry.policy));
    assert_eq!(
        live.body.as_deref(),
        Some(std::str::from_utf8(&entry.body).unwrap())
    );

    // Through the cache as well.
    let lookup = resolver.lookup(&domain).await;
    assert_eq!(lookup.outcome(), Outcome::Policy);
    server.shutdown().await;
}
