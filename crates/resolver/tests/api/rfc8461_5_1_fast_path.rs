//! The warm fast path (RFC 8461 §5.1 with the TXT check through a DNS cache): while the TXT
//! answer that confirmed a cached policy's id is within its TTL, a lookup needs no I/O, as
//! a DNS cache would give the same answer; after the TTL the TXT record is checked again.

use crate::common;

use common::*;
use mta_sts_testkit::{RecordType, World};

fn world() -> World {
    let world = World::builder()
        .domain("good.test", |d| d.sts_id("1").policy(POLICY))
        .start();
    world
        .dns()
        .set_ttl("_mta-sts.good.test", RecordType::TXT, 60);
    world
}

#[tokio::test]
async fn rfc8461_5_1_fast_path_lasts_the_txt_ttl() {
    let world = world();
    let s = setup_with(
        &world,
        mta_sts_resolver::ResolverConfig {
            dns_cache_size: 1024,
            ..config(&world)
        },
    );
    let good = domain("good.test");
    assert!(
        s.resolver.lookup_fast(&good).is_none(),
        "nothing cached yet"
    );
    assert!(s.resolver.lookup(&good).await.policy.is_some());
    let queries = world
        .dns()
        .query_count("_mta-sts.good.test", RecordType::TXT);
    let fast = s
        .resolver
        .lookup_fast(&good)
        .expect("confirmed by a TXT answer with TTL 60");
    assert_eq!(&*fast.record_id, "1");
    let again = s.resolver.lookup(&good).await;
    assert!(again.from_cache && again.error.is_none());
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.good.test", RecordType::TXT),
        queries,
        "no DNS query within the TTL"
    );
    assert_eq!(requests(&world, "good.test"), 1);

    s.clock.advance(60);
    assert!(
        s.resolver.lookup_fast(&good).is_none(),
        "the TXT answer is stale after its TTL"
    );
    assert!(s.resolver.lookup(&good).await.policy.is_some());
    assert!(
        s.resolver.lookup_fast(&good).is_some(),
        "a new TXT answer confirms the id again"
    );
    assert_eq!(requests(&world, "good.test"), 1, "same id: no fetch");

    s.clock.advance(86_400);
    assert!(
        s.resolver.lookup_fast(&good).is_none(),
        "an expired policy is never served fast"
    );
}

#[tokio::test]
async fn rfc8461_5_1_no_fast_path_without_a_dns_cache() {
    let world = world();
    let s = setup(&world); // dns_cache_size = 0: every lookup queries the TXT record
    let good = domain("good.test");
    assert!(s.resolver.lookup(&good).await.policy.is_some());
    assert!(s.resolver.lookup_fast(&good).is_none());
    let before = world
        .dns()
        .query_count("_mta-sts.good.test", RecordType::TXT);
    assert!(s.resolver.lookup(&good).await.from_cache);
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.good.test", RecordType::TXT),
        before + 1
    );
}
