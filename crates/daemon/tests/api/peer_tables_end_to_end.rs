//! Vectors §D end to end: the real resolver (`mta_sts_resolver::Resolver`) against a testkit
//! world with the peer's fixture domains (vectors §A/§B), behind the socketmap server, over
//! TCP and a UNIX socket with read sizes 4096/128/16/1.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mta_sts_daemon::ResolverLookup;
use mta_sts_daemon::config::{OnFailure, ZoneSettings, Zones};
use mta_sts_daemon::server::ServerOptions;
use mta_sts_net::ManualClock;
use mta_sts_resolver::store::{MemoryStore, Store};
use mta_sts_resolver::{Resolver, ResolverConfig};
use mta_sts_testkit::{CertKind, DnsFault, HostBehavior, World};

const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400";
const ID: &str = "v=STSv1;id=20180907T090909;";

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
            "bad-cert1.loc",
            HostBehavior::policy(GOOD).cert(CertKind::Untrusted),
        ),
        (
            "bad-cert2.loc",
            HostBehavior::policy(GOOD).cert(CertKind::WrongName),
        ),
    ];
    for (name, behavior) in hosts {
        b = b.domain(name, move |d| d.sts_txt(ID).policy_behavior(behavior));
    }
    for (name, txt) in [
        ("bad-record1.loc", "id=20180907T090909; v=STSv1;"),
        ("bad-record2.loc", "azazaza;asdasdasdasd"),
    ] {
        b = b.domain(name, move |d| d.sts_txt(txt).policy(GOOD));
    }
    let world = b.start();
    world
        .dns()
        .set_a("mta-sts.no-record.loc", &[std::net::Ipv4Addr::LOCALHOST]);
    world
        .dns()
        .set_fault("_mta-sts.blackhole.loc", Some(DnsFault::BlackHole));
    world
}

fn resolver(world: &World) -> Resolver {
    let config = ResolverConfig {
        nameservers: vec![world.dns_addr()],
        ca_file: Some(world.ca_file().to_path_buf()),
        ca_file_only: true,
        connect_to: vec![world.connect_to_any().parse().expect("connect-to")],
        timeout: Duration::from_millis(1500),
        dns_cache_size: 0,
        ..ResolverConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    Resolver::new(config, store, Arc::new(ManualClock::new(1_700_000_000))).expect("resolver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_socketmap_tables_end_to_end() {
    let world = world();
    run_tables(Arc::new(ResolverLookup::new(resolver(&world)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_junk_and_literal_keys_send_no_dns_query() {
    let world = world();
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(ResolverLookup::new(resolver(&world))),
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    let before = world.dns().total_queries();
    for req in [
        "postfix ::1",
        "postfix [ipv6:::1]",
        "postfix good.test x",
        "postfix ",
        "good.test",
        "postfix [1.2.3.4]",
        "postfix 127.0.0.1",
        "postfix [::1]",
        "postfix .example.com",
    ] {
        assert_eq!(c.query(req).await.as_deref(), Some(NOTFOUND), "{req}");
    }
    assert_eq!(
        world.dns().total_queries(),
        before,
        "{:?}",
        world.dns().queries()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_dns_blackhole_answered_within_budget() {
    let world = world();
    let zones = Zones::new(ZoneSettings {
        budget: Duration::from_millis(300),
        ..ZoneSettings::default()
    })
    .with_zone(
        "temp",
        ZoneSettings {
            budget: Duration::from_millis(300),
            on_failure: OnFailure::Temp,
            ..ZoneSettings::default()
        },
    );
    let server = start(
        tcp(),
        ServerOptions::default(),
        zones,
        Arc::new(ResolverLookup::new(resolver(&world))),
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    let started = std::time::Instant::now();
    c.send_raw(b"18:test blackhole.loc,13:test good.loc,").await;
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND));
    assert_eq!(c.reply().await.as_deref(), Some(SECURE));
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let reply = c.query("temp blackhole.loc").await.unwrap_or_default();
    assert!(
        reply.starts_with("TEMP MTA-STS policy for blackhole.loc unavailable"),
        "{reply}"
    );
    server.stop().await;
}
