//! RedisStore through Redis Sentinel against real servers on loopback: a master, a replica
//! (`replicaof`) and a sentinel (`redis-server sentinel.conf --sentinel`), each started by
//! the test on a free port in a temp dir. Conformance, the fleet checks, and failovers: a
//! forced one (`SENTINEL FAILOVER`) and a killed master; after each the same store instance
//! writes to the new master.
//!
//! Without `redis-server` the tests print why they are skipped and pass, unless
//! `MTA_STS_REQUIRE_INTEROP=1`.

use crate::store_conformance as conformance;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{policy, run_conformance, run_fleet_conformance, unix_now};
use mta_sts_resolver::store::{
    RedisSentinelOptions, RedisStore, SentinelAddress, Store, StoreError, StoredPolicy,
};
use mta_sts_testkit::redis::{self as redis_server, Server as RedisServer};

const MASTER_NAME: &str = "mymaster";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One command over a fresh connection; the reply flattened to text (`None` on error).
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let value: redis::Value = cmd.query(&mut con).ok()?;
    Some(flatten(&value))
}

fn flatten(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Okay => "OK".to_owned(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

/// A master, one replica of it and one sentinel monitoring them (quorum 1), each a
/// testkit `redis-server` in a temp dir of its own.
struct Lab {
    master: RedisServer,
    replica: RedisServer,
    sentinel: RedisServer,
}

impl Lab {
    fn start() -> Lab {
        let master = RedisServer::start(&[]).expect("master");
        let m = master.port().to_string();
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &m]).expect("replica");
        let sentinel = RedisServer::start_sentinel(&format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 1\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n"
        ))
        .expect("sentinel");
        let (r, s) = (replica.port(), sentinel.port());
        let lab = Lab {
            master,
            replica,
            sentinel,
        };
        // Ready once the replica is in sync and the sentinel knows it (a failover needs it).
        lab.wait_for("the replica to sync and the sentinel to see it", || {
            redis_cli(r, &["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
                && redis_cli(s, &["SENTINEL", "REPLICAS", MASTER_NAME])
                    .is_some_and(|v| v.contains(&r.to_string()))
        });
        lab
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The master's port as the sentinel reports it.
    fn master_port(&self) -> Option<u16> {
        redis_cli(
            self.sentinel.port(),
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
    }

    fn options(&self) -> RedisSentinelOptions {
        let address = SentinelAddress {
            host: "127.0.0.1".into(),
            port: self.sentinel.port(),
        };
        // Generous for a loaded test machine; the outage tests set their own.
        RedisSentinelOptions {
            timeout: Duration::from_secs(2),
            ..RedisSentinelOptions::new(vec![address], MASTER_NAME)
        }
    }
}

fn key(domain: &str) -> String {
    format!("mta-sts:policy:{domain}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_conformance() {
    if !redis_server::require("redis_sentinel_conformance") {
        return;
    }
    let lab = Lab::start();
    let store = RedisStore::connect_sentinel(lab.options())
        .await
        .expect("connect");
    assert_eq!(store.backend(), "redis_sentinel");
    run_conformance(Arc::new(store.clone())).await;
    // The entries went to the master the sentinel names.
    let now = unix_now();
    store
        .put(&policy("where.example", "w", now, 3600), now)
        .await
        .expect("put");
    let master = lab.master.port();
    assert_eq!(lab.master_port(), Some(master));
    assert_eq!(
        redis_cli(master, &["EXISTS", &key("where.example")]).as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_fleet_shares_entries_newer_wins_and_leases() {
    if !redis_server::require("redis_sentinel_fleet_shares_entries_newer_wins_and_leases") {
        return;
    }
    let lab = Lab::start();
    let a = RedisStore::connect_sentinel(lab.options())
        .await
        .expect("a");
    let b = RedisStore::connect_sentinel(lab.options())
        .await
        .expect("b");
    run_fleet_conformance(Arc::new(a), Arc::new(b)).await;
}

/// Puts `entry` until it succeeds (at most 30 s), counting the failures.
async fn put_until_ok(store: &RedisStore, entry: &StoredPolicy, now: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    while let Err(err) = store.put(entry, now).await {
        failures += 1;
        assert!(
            matches!(
                err,
                StoreError::Unavailable {
                    backend: "redis_sentinel",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(Instant::now() < deadline, "writes never resumed: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    failures
}

/// `get` until it answers (at most 10 s): on a loaded machine a round trip right after a
/// failover may outlast the 500 ms timeout, which is Unavailable, not a wrong answer.
async fn get_until_ok(store: &RedisStore, domain: &str) -> Option<StoredPolicy> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get(domain).await {
            Ok(got) => return got,
            Err(err) => {
                assert!(
                    matches!(err, StoreError::Unavailable { .. }),
                    "{domain}: {err:?}"
                );
                assert!(Instant::now() < deadline, "{domain}: {err}");
                eprintln!("{domain}: {err} (retrying)");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `SENTINEL FAILOVER`: the replica becomes the master and the old master its replica.
/// The same store instance reads what was written before and writes to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_follows_a_forced_failover() {
    if !redis_server::require("redis_sentinel_follows_a_forced_failover") {
        return;
    }
    let lab = Lab::start();
    let store = RedisStore::connect_sentinel(lab.options())
        .await
        .expect("connect");
    let now = unix_now();
    let before = policy("before.example", "b", now, 86400);
    store.put(&before, now).await.expect("put before");
    // Replicated before the failover (WAIT numreplicas timeout).
    assert_eq!(
        redis_cli(lab.master.port(), &["WAIT", "1", "2000"]).as_deref(),
        Some("1")
    );

    assert_eq!(
        redis_cli(lab.sentinel.port(), &["SENTINEL", "FAILOVER", MASTER_NAME]).as_deref(),
        Some("OK")
    );
    let (old, new) = (lab.master.port(), lab.replica.port());
    lab.wait_for("the sentinel to name the new master", || {
        lab.master_port() == Some(new)
    });
    // Writes acknowledged by the old master between the switch and its demotion would be
    // lost when it resyncs (Redis Sentinel's own window); the test writes after it.
    lab.wait_for("the old master to become a replica", || {
        redis_cli(old, &["ROLE"]).is_some_and(|r| r.starts_with("slave"))
    });

    let after = policy("after.example", "a", now, 86400);
    let failures = put_until_ok(&store, &after, now).await;
    eprintln!("writes resumed after {failures} failed attempt(s)");
    assert_eq!(
        redis_cli(new, &["EXISTS", &key("after.example")]).as_deref(),
        Some("1"),
        "the write did not reach the new master"
    );
    assert_eq!(get_until_ok(&store, "before.example").await, Some(before));
    assert_eq!(get_until_ok(&store, "after.example").await, Some(after));
    let leased = store
        .try_lease("after.example", Duration::from_secs(5))
        .await
        .expect("lease on the new master");
    assert!(leased);
}

/// The master dies: operations fail fast (Unavailable) until the sentinel has promoted the
/// replica, then the same store instance writes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_follows_a_failover_after_the_master_dies() {
    if !redis_server::require("redis_sentinel_follows_a_failover_after_the_master_dies") {
        return;
    }
    let mut lab = Lab::start();
    let timeout = Duration::from_millis(500);
    let options = RedisSentinelOptions {
        timeout,
        ..lab.options()
    };
    let store = RedisStore::connect_sentinel(options)
        .await
        .expect("connect");
    let now = unix_now();
    let before = policy("before.example", "b", now, 86400);
    store.put(&before, now).await.expect("put before");
    assert_eq!(
        redis_cli(lab.master.port(), &["WAIT", "1", "2000"]).as_deref(),
        Some("1")
    );

    lab.master.stop();
    let t = Instant::now();
    match store.get("before.example").await {
        Err(StoreError::Unavailable { backend, message }) => {
            assert_eq!(backend, "redis_sentinel");
            eprintln!("while the master is down: {message}");
        }
        other => panic!("expected Unavailable while the master is down, got {other:?}"),
    }
    assert!(
        t.elapsed() < timeout + Duration::from_millis(700),
        "took {:?}",
        t.elapsed()
    );

    let after = policy("after.example", "a", now, 86400);
    let started = Instant::now();
    let failures = put_until_ok(&store, &after, now).await;
    eprintln!(
        "writes resumed {:?} after the master died ({failures} failed attempts)",
        started.elapsed()
    );
    let new = lab.replica.port();
    assert_eq!(lab.master_port(), Some(new));
    assert_eq!(
        redis_cli(new, &["EXISTS", &key("after.example")]).as_deref(),
        Some("1")
    );
    assert_eq!(get_until_ok(&store, "before.example").await, Some(before));
}

/// A master name the sentinels do not know, or no sentinel answering: Unavailable within
/// the timeout, with the reason; nothing hangs and the store can still be made (lazily).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_unknown_master_or_no_sentinel_is_unavailable() {
    if !redis_server::require("redis_sentinel_unknown_master_or_no_sentinel_is_unavailable") {
        return;
    }
    let lab = Lab::start();
    let timeout = Duration::from_millis(500);
    let unknown = RedisSentinelOptions {
        master_name: "nosuchmaster".into(),
        timeout,
        ..lab.options()
    };
    let store = RedisStore::with_sentinel(unknown).expect("lazy store");
    let t = Instant::now();
    match store.get("a.example").await {
        Err(StoreError::Unavailable { message, .. }) => eprintln!("unknown master: {message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(t.elapsed() < timeout + Duration::from_millis(700));

    let nobody = RedisSentinelOptions {
        sentinels: vec![SentinelAddress {
            host: "127.0.0.1".into(),
            port: free_port(),
        }],
        timeout,
        ..lab.options()
    };
    let t = Instant::now();
    assert!(matches!(
        RedisStore::connect_sentinel(nobody).await,
        Err(StoreError::Unavailable {
            backend: "redis_sentinel",
            ..
        })
    ));
    assert!(t.elapsed() < timeout + Duration::from_millis(700));

    // A dead sentinel listed first is passed over for a live one.
    let mut both = lab.options();
    both.sentinels.insert(
        0,
        SentinelAddress {
            host: "127.0.0.1".into(),
            port: free_port(),
        },
    );
    let store = RedisStore::connect_sentinel(both)
        .await
        .expect("second sentinel");
    assert_eq!(store.get("a.example").await.expect("get"), None);
}

#[test]
fn redis_sentinel_needs_an_address() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let err = RedisStore::with_sentinel(RedisSentinelOptions::new(vec![], MASTER_NAME))
            .expect_err("no sentinel");
        assert!(err.to_string().contains("no sentinel address"), "{err}");
    });
}

/// Three resolvers on the master a sentinel names refresh each due policy once between
/// them, as on one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_resolvers_through_sentinel_refetch_each_due_domain_once() {
    if !redis_server::require("three_resolvers_through_sentinel_refetch_each_due_domain_once") {
        return;
    }
    let lab = Lab::start();
    crate::common::three_resolvers_refetch_each_due_domain_once(|| {
        Arc::new(RedisStore::with_sentinel(lab.options()).expect("sentinel"))
    })
    .await;
}

/// A sentinel that accepts connections but never answers (a stalled or half-dead host),
/// listed first: asking it takes longer than one operation's timeout. The lookup of the
/// master goes on in the background past that timeout, so the operations after it find the
/// master through the live sentinel instead of starting over and timing out forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_a_stalled_sentinel_first_does_not_block_the_store_forever() {
    if !redis_server::require(
        "redis_sentinel_a_stalled_sentinel_first_does_not_block_the_store_forever",
    ) {
        return;
    }
    let lab = Lab::start();
    // Listening, never accepting: the handshake completes, no reply ever comes.
    let stalled = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut options = RedisSentinelOptions {
        timeout: Duration::from_millis(300),
        ..lab.options()
    };
    options.sentinels.insert(
        0,
        SentinelAddress {
            host: "127.0.0.1".into(),
            port: stalled.local_addr().expect("addr").port(),
        },
    );
    let store = RedisStore::with_sentinel(options).expect("lazy store");
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match store.get("a.example").await {
            Ok(got) => {
                assert_eq!(got, None);
                break;
            }
            Err(err) => {
                failures += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never reached the master: {err}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "reached the master after {:?} ({failures} timed-out operations)",
        started.elapsed()
    );
    drop(stalled);
}
