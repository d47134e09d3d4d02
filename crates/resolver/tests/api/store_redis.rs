//! RedisStore against a real `redis-server` on loopback: conformance, TTLs, several daemons
//! sharing one Redis, and outages (stalled, stopped, restarted).
//!
//! Each test starts its own `redis-server` on a free port in a temp dir. Without the program
//! the tests print why they are skipped and pass, unless `MTA_STS_REQUIRE_INTEROP=1`.

use crate::store_conformance as conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{policy, run_conformance, unix_now};
use mta_sts_resolver::store::redis::DEFAULT_KEY_PREFIX;
use mta_sts_resolver::store::{RedisOptions, RedisStore, Store, StoreError};
use mta_sts_testkit::redis::{self as redis_server, Server as RedisServer};

/// Options for a store on `server` with key prefix `prefix`.
fn options(server: &RedisServer, prefix: &str) -> RedisOptions {
    RedisOptions {
        key_prefix: prefix.to_owned(),
        ..RedisOptions::new(server.url())
    }
}

/// A plain connection to `server`, to look behind the store's back.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn raw_cmd<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(con).await.expect("raw command")
}

#[tokio::test]
async fn redis_conformance() {
    let Some(server) = redis_server::start_or_skip("redis_conformance") else {
        return;
    };
    let store = RedisStore::connect(options(&server, DEFAULT_KEY_PREFIX))
        .await
        .expect("connect");
    assert_eq!(store.backend(), "redis");
    run_conformance(Arc::new(store)).await;
}

#[tokio::test]
async fn redis_keys_json_and_ttl() {
    let Some(server) = redis_server::start_or_skip("redis_keys_json_and_ttl") else {
        return;
    };
    let store = RedisStore::connect(options(&server, DEFAULT_KEY_PREFIX))
        .await
        .expect("connect");
    let mut raw = raw(&server).await;
    let now = unix_now();
    let p = policy("ttl.example", "id1", now - 100, 3600);
    store.put(&p, now).await.expect("put");

    let key = "mta-sts:policy:ttl.example";
    assert_eq!(store.key_for("ttl.example"), key);
    let ttl: i64 = raw_cmd(&mut raw, &["TTL", key]).await;
    // expires_at - now = 3500, minus at most a few seconds of test time.
    assert!((3490..=3500).contains(&ttl), "TTL {ttl}");
    let json: String = raw_cmd(&mut raw, &["GET", key]).await;
    // Compact JSON of the StoredPolicy, exactly as serde writes it.
    assert_eq!(json, serde_json::to_string(&p).expect("json"));
    let decoded: mta_sts_resolver::store::StoredPolicy = serde_json::from_str(&json).expect("json");
    assert_eq!(decoded, p);

    // An entry that is already expired is not stored, and removes an older stored one.
    let dead = policy("dead.example", "x", now - 7200, 3600);
    store.put(&dead, now).await.expect("put expired");
    let exists: i64 = raw_cmd(&mut raw, &["EXISTS", "mta-sts:policy:dead.example"]).await;
    assert_eq!(exists, 0);
    let old = policy("ttl.example", "old", now - 10_000, 3600);
    store.put(&old, now).await.expect("put old expired");
    assert_eq!(
        store.get("ttl.example").await.expect("get"),
        Some(p),
        "older expired put won"
    );

    // A replacing put refreshes the TTL.
    let refreshed = policy("ttl.example", "id2", now, 86400);
    store.put(&refreshed, now).await.expect("put");
    let ttl: i64 = raw_cmd(&mut raw, &["TTL", key]).await;
    assert!((86390..=86400).contains(&ttl), "TTL {ttl}");
}

/// Issue #14: the refresh lease is one `SET NX PX` key outside the policy prefix: granted
/// to the first claimant, refused to every other while it lives, granted again after it
/// expires, and never listed among the policies.
#[tokio::test]
async fn redis_refresh_lease_is_exclusive_until_it_expires() {
    let Some(server) =
        redis_server::start_or_skip("redis_refresh_lease_is_exclusive_until_it_expires")
    else {
        return;
    };
    let a = RedisStore::connect(options(&server, DEFAULT_KEY_PREFIX))
        .await
        .expect("connect");
    let b = RedisStore::connect(options(&server, DEFAULT_KEY_PREFIX))
        .await
        .expect("connect");
    let mut raw = raw(&server).await;
    let now = unix_now();
    a.put(&policy("lease.example", "id1", now, 3600), now)
        .await
        .expect("put");

    let ttl = Duration::from_millis(400);
    assert!(a.try_lease("lease.example", ttl).await.expect("lease"));
    assert!(!b.try_lease("lease.example", ttl).await.expect("lease"));
    assert!(!a.try_lease("lease.example", ttl).await.expect("lease"));
    // Per domain.
    assert!(b.try_lease("other.example", ttl).await.expect("lease"));
    let key = a.lease_key_for("lease.example");
    assert_eq!(key, "lease:mta-sts:policy:lease.example");
    let pttl: i64 = raw_cmd(&mut raw, &["PTTL", &key]).await;
    assert!((1..=400).contains(&pttl), "PTTL {pttl}");
    let all = a.load_all(now).await.expect("load_all");
    assert_eq!(all.len(), 1, "leases are not policies: {all:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.try_lease("lease.example", ttl).await.expect("lease"));
}

#[tokio::test]
async fn redis_two_daemons_share_entries_and_newer_wins() {
    let Some(server) =
        redis_server::start_or_skip("redis_two_daemons_share_entries_and_newer_wins")
    else {
        return;
    };
    let a = RedisStore::connect(options(&server, "fleet:"))
        .await
        .expect("a");
    let b = RedisStore::connect(options(&server, "fleet:"))
        .await
        .expect("b");
    let other_setup = RedisStore::connect(options(&server, "other:"))
        .await
        .expect("other");
    let now = unix_now();

    let p = policy("shared.example", "s1", now, 86400);
    a.put(&p, now).await.expect("put via a");
    assert_eq!(
        b.get("shared.example").await.expect("get via b"),
        Some(p.clone())
    );
    assert_eq!(b.load_all(now).await.expect("load_all via b"), vec![p]);
    // Another prefix is another setup: it sees nothing.
    assert_eq!(other_setup.get("shared.example").await.expect("get"), None);
    assert!(
        other_setup
            .load_all(now)
            .await
            .expect("load_all")
            .is_empty()
    );

    // Concurrent puts from both daemons, fetch times interleaved: the newest always wins.
    let mut tasks = Vec::new();
    for domain_no in 0..5u64 {
        for i in 0..60u64 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let fetched = now - ((i * 7919 + domain_no) % 60);
            let domain = format!("race{domain_no}.example");
            tasks.push(tokio::spawn(async move {
                store
                    .put(
                        &policy(&domain, &format!("t{fetched}"), fetched, 86400),
                        now,
                    )
                    .await
            }));
        }
    }
    for t in tasks {
        t.await.expect("join").expect("put");
    }
    for domain_no in 0..5u64 {
        let domain = format!("race{domain_no}.example");
        let got = a.get(&domain).await.expect("get").expect("present");
        assert_eq!(got.fetched_at, now, "{domain}: {got:?}");
        assert_eq!(got.record_id, format!("t{now}"));
    }
}

#[tokio::test]
async fn redis_corrupt_values_are_reported_and_skipped() {
    let Some(server) = redis_server::start_or_skip("redis_corrupt_values_are_reported_and_skipped")
    else {
        return;
    };
    let store = RedisStore::connect(options(&server, DEFAULT_KEY_PREFIX))
        .await
        .expect("connect");
    let mut raw = raw(&server).await;
    let now = unix_now();
    let good = policy("good.example", "g", now, 86400);
    store.put(&good, now).await.expect("put");
    let _: () = raw_cmd(
        &mut raw,
        &["SET", "mta-sts:policy:junk.example", "{not json"],
    )
    .await;
    let wrong = serde_json::to_string(&policy("elsewhere.example", "w", now, 86400)).expect("json");
    let _: () = raw_cmd(&mut raw, &["SET", "mta-sts:policy:wrong.example", &wrong]).await;

    for d in ["junk.example", "wrong.example"] {
        match store.get(d).await {
            Err(StoreError::Corrupt { domain, message }) => {
                assert_eq!(domain, d);
                eprintln!("{d}: {message}");
            }
            other => panic!("{d}: expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(store.load_all(now).await.expect("load_all"), vec![good]);
    // A put replaces an unreadable value.
    let fixed = policy("junk.example", "fixed", now, 86400);
    store.put(&fixed, now).await.expect("put");
    assert_eq!(store.get("junk.example").await.expect("get"), Some(fixed));
}

/// Asserts that `result` is `Unavailable` and came within the timeout (plus scheduling slack).
fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    started: Instant,
    timeout: Duration,
    result: Result<T, StoreError>,
) {
    let elapsed = started.elapsed();
    match result {
        Err(StoreError::Unavailable {
            backend: "redis",
            message,
        }) => {
            eprintln!("{what}: unavailable after {elapsed:?}: {message}")
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
    assert!(
        elapsed < timeout + Duration::from_millis(700),
        "{what} took {elapsed:?}"
    );
}

#[tokio::test]
async fn redis_outage_is_bounded_and_writes_resume_after_restart() {
    let Some(mut server) =
        redis_server::start_or_skip("redis_outage_is_bounded_and_writes_resume_after_restart")
    else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let options = RedisOptions {
        timeout,
        ..options(&server, DEFAULT_KEY_PREFIX)
    };
    let store = RedisStore::connect(options).await.expect("connect");
    let now = unix_now();
    let before = policy("before.example", "b", now, 86400);
    store.put(&before, now).await.expect("put while up");

    // 1. Redis stalled (SIGSTOP): the connection is open but nothing answers.
    server.signal("STOP").expect("SIGSTOP");
    let t = Instant::now();
    assert_unavailable(
        "get (stalled)",
        t,
        timeout,
        store.get("before.example").await,
    );
    let t = Instant::now();
    assert_unavailable("put (stalled)", t, timeout, store.put(&before, now).await);
    server.signal("CONT").expect("SIGCONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get("before.example").await {
            Ok(got) => {
                assert_eq!(got, Some(before.clone()));
                break;
            }
            Err(err) => assert!(
                Instant::now() < deadline,
                "no recovery after SIGCONT: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. Redis stopped: every operation fails fast with Unavailable, none hangs.
    server.stop();
    for round in 0..3 {
        let t = Instant::now();
        assert_unavailable(
            &format!("get #{round}"),
            t,
            timeout,
            store.get("x.example").await,
        );
        let t = Instant::now();
        let p = policy("down.example", "d", now, 86400);
        assert_unavailable(
            &format!("put #{round}"),
            t,
            timeout,
            store.put(&p, now).await,
        );
        let t = Instant::now();
        assert_unavailable(
            &format!("remove #{round}"),
            t,
            timeout,
            store.remove("x.example").await,
        );
        let t = Instant::now();
        assert_unavailable(
            &format!("load_all #{round}"),
            t,
            timeout,
            store.load_all(now).await,
        );
    }

    // 3. Redis back on the same port (empty: --save ''): the same store instance writes again.
    server.restart().expect("restart redis-server");
    let after = policy("after.example", "a", now, 86400);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    while let Err(err) = store.put(&after, now).await {
        failures += 1;
        assert!(
            Instant::now() < deadline,
            "writes did not resume after restart: {err}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("writes resumed after {failures} failed attempt(s)");
    assert_eq!(
        store.get("after.example").await.expect("get"),
        Some(after.clone())
    );
    assert_eq!(
        store.get("before.example").await.expect("get"),
        None,
        "restarted Redis is empty"
    );
    assert_eq!(store.load_all(now).await.expect("load_all"), vec![after]);
}

#[tokio::test]
async fn redis_lazy_store_starts_while_redis_is_down() {
    if !redis_server::require("redis_lazy_store_starts_while_redis_is_down") {
        return;
    }
    // No server yet: construction succeeds (no I/O), operations are Unavailable, then work.
    let mut server = RedisServer::stopped(&[]).expect("redis-server");
    let port = server.port();
    let timeout = Duration::from_millis(300);
    let options = RedisOptions {
        timeout,
        ..RedisOptions::new(format!("redis://127.0.0.1:{port}/"))
    };
    let store = RedisStore::new(options.clone()).expect("lazy store");
    let t = Instant::now();
    assert_unavailable("get before start", t, timeout, store.get("a.example").await);
    let t = Instant::now();
    assert_unavailable("connect", t, timeout, RedisStore::connect(options).await);

    server.restart().expect("restart redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = store.ping().await {
        assert!(Instant::now() < deadline, "never connected: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.get("a.example").await.expect("get"), None);
}

#[test]
fn redis_invalid_url_is_a_clear_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let err = RedisStore::new(RedisOptions::new("http://not-redis/")).expect_err("bad URL");
        assert!(err.to_string().contains("invalid Redis URL"), "{err}");
    });
}
