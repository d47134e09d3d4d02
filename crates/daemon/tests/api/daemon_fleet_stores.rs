//! Daemons sharing the fleet stores a postfix-mta-sts-resolver fleet may already run
//! (issue 16 item 5): PostgreSQL (`store = "postgres"`) and Redis behind Redis Sentinel
//! (`store = "redis_sentinel"`, with passwords on the master and on the sentinel). A policy
//! fetched by one daemon is answered by the other, and by a daemon started later, without
//! another HTTPS fetch.
//!
//! The servers are real and started by the tests on loopback; without them the tests print
//! why they are skipped and pass, unless `MTA_STS_REQUIRE_INTEROP=1`.

use crate::daemon_app::{ENFORCE, config, query, world};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mta_sts_daemon::app::Daemon;
use mta_sts_testkit::{postgres, redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_one_postgres() {
    let server = match postgres::start() {
        Ok(server) => server,
        Err(why) => return postgres::skip_or_fail("two_daemons_share_one_postgres", &why),
    };
    let world = world();
    let cache = format!("store = \"postgres\"\npostgres_url = \"{}\"", server.url());
    let a = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon a");
    let b = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon b");
    assert_eq!(query(&a, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    assert_eq!(query(&b, "postfix good.test").await, ENFORCE);
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        1,
        "daemon b answered from PostgreSQL"
    );
    a.shutdown().await;
    b.shutdown().await;
    // A daemon started afterwards warm-starts from the database.
    let c = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon c");
    assert_eq!(query(&c, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_redis_through_sentinel_with_passwords() {
    if !redis::require("two_daemons_share_redis_through_sentinel_with_passwords") {
        return;
    }
    let master = redis::Server::start(&["--requirepass", "master-secret"]).expect("master");
    let master_port = master.port();
    let sentinel = redis::Server::start_sentinel(&format!(
        "requirepass sentinel-secret\n\
         sentinel monitor fleet 127.0.0.1 {master_port} 1\n\
         sentinel auth-pass fleet master-secret\n"
    ))
    .expect("sentinel");
    let sp = sentinel.port();

    let world = world();
    let cache = format!(
        "store = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:{sp}\"]\n\
         sentinel_master = \"fleet\"\nredis_db = 3\nredis_password = \"master-secret\"\n\
         sentinel_password = \"sentinel-secret\""
    );
    let a = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon a");
    let b = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon b");
    assert_eq!(query(&a, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    assert_eq!(query(&b, "postfix good.test").await, ENFORCE);
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        1,
        "daemon b answered from the Redis master the sentinel named"
    );
    a.shutdown().await;
    b.shutdown().await;

    // The policy is in database 3 of the master (redis_db), under the usual key.
    let mut s = TcpStream::connect(("127.0.0.1", master_port)).expect("master");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(b"AUTH master-secret\r\nSELECT 3\r\nEXISTS mta-sts:policy:good.test\r\n")
        .expect("write");
    let mut buf = [0u8; 14];
    s.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"+OK\r\n+OK\r\n:1\r\n");
}

/// A reload that changes how the fleet store is reached names each changed key as waiting
/// for a restart (the store is opened once, at start).
#[test]
fn fleet_store_keys_wait_for_a_restart() {
    use mta_sts_daemon::app::restart_pending;
    use mta_sts_daemon::config::Config;
    let sentinel = |extra: &str| {
        Config::parse(&format!(
            "[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26379\"]\n\
             sentinel_master = \"m\"\n{extra}"
        ))
        .expect("parses")
    };
    let started = sentinel("");
    assert!(restart_pending(&started, &sentinel("")).is_empty());
    let changed = Config::parse(
        "[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26380\"]\n\
         sentinel_master = \"n\"\nredis_db = 1\nredis_password = \"p\"\n\
         sentinel_password = \"s\"\npostgres_url = \"postgres://db/x\"\n",
    )
    .expect("parses");
    assert_eq!(
        restart_pending(&started, &changed),
        [
            "[cache] sentinels",
            "[cache] sentinel_master",
            "[cache] redis_db",
            "[cache] redis_password",
            "[cache] sentinel_password",
            "[cache] postgres_url"
        ]
    );
    let postgres =
        Config::parse("[cache]\nstore = \"postgres\"\npostgres_url = \"postgres://db/x\"\n")
            .expect("parses");
    assert!(restart_pending(&started, &postgres).contains(&"[cache] store"));
}
