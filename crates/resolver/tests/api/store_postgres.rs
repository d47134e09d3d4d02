//! PostgresStore against a real PostgreSQL on loopback (the testkit's `initdb` + `pg_ctl`
//! server): conformance, two daemons sharing one database, the schema made on first use by
//! daemons starting together, corrupt rows, and outages (stopped, restarted, down at start).
//!
//! Without PostgreSQL installed the tests print why they are skipped and pass, unless
//! `MTA_STS_REQUIRE_INTEROP=1`.

use crate::store_conformance as conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{policy, run_conformance, run_fleet_conformance, unix_now};
use mta_sts_resolver::store::{PostgresOptions, PostgresStore, Store, StoreError};
use mta_sts_testkit::postgres;

/// A fresh server, or `None` (after printing why, or panicking under
/// `MTA_STS_REQUIRE_INTEROP=1`).
fn server(test: &str) -> Option<postgres::Server> {
    match postgres::start() {
        Ok(server) => Some(server),
        Err(why) => {
            postgres::skip_or_fail(test, &why);
            None
        }
    }
}

async fn raw(server: &postgres::Server) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    let Some(server) = server("postgres_conformance") else {
        return;
    };
    let store = PostgresStore::connect(PostgresOptions::new(server.url()))
        .await
        .expect("connect");
    assert_eq!(store.backend(), "postgres");
    run_conformance(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fleet_shares_entries_newer_wins_and_leases() {
    let Some(server) = server("postgres_fleet_shares_entries_newer_wins_and_leases") else {
        return;
    };
    // Two daemons starting together: both create the schema on first use, neither fails.
    let (a, b) = tokio::join!(
        PostgresStore::connect(PostgresOptions::new(server.url())),
        PostgresStore::connect(PostgresOptions::new(server.url())),
    );
    run_fleet_conformance(Arc::new(a.expect("a")), Arc::new(b.expect("b"))).await;
}

/// The tables are the documented ones, with the SQLite store's columns, and a lease lives
/// on the database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_is_the_documented_one() {
    let Some(server) = server("postgres_schema_is_the_documented_one") else {
        return;
    };
    let store = PostgresStore::connect(PostgresOptions::new(server.url()))
        .await
        .expect("connect");
    let raw = raw(&server).await;
    let columns = |table: &'static str| {
        let raw = &raw;
        async move {
            raw.query(
                "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns \
                 WHERE table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        columns("mta_sts_policies").await,
        [
            "domain text",
            "record_id text",
            "body text",
            "fetched_at bigint",
            "expires_at bigint"
        ]
    );
    assert_eq!(
        columns("mta_sts_refresh_leases").await,
        ["domain text", "until timestamp with time zone"]
    );
    let now = unix_now();
    let p = policy("row.example", "r1", now, 3600);
    store.put(&p, now).await.expect("put");
    let row = raw
        .query_one(
            "SELECT record_id, body, fetched_at, expires_at FROM mta_sts_policies \
             WHERE domain = 'row.example'",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "r1");
    assert_eq!(row.get::<_, String>(1), p.body);
    assert_eq!(row.get::<_, i64>(2), now as i64);
    assert_eq!(row.get::<_, i64>(3), (now + 3600) as i64);

    assert!(
        store
            .try_lease("row.example", Duration::from_secs(30))
            .await
            .expect("lease")
    );
    let left: f64 = raw
        .query_one(
            "SELECT EXTRACT(EPOCH FROM until - clock_timestamp())::FLOAT8 \
             FROM mta_sts_refresh_leases WHERE domain = 'row.example'",
            &[],
        )
        .await
        .expect("lease row")
        .get(0);
    assert!((28.0..=30.0).contains(&left), "lease ends in {left} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_corrupt_rows_are_reported_and_skipped() {
    let Some(server) = server("postgres_corrupt_rows_are_reported_and_skipped") else {
        return;
    };
    let store = PostgresStore::connect(PostgresOptions::new(server.url()))
        .await
        .expect("connect");
    let raw = raw(&server).await;
    let now = unix_now();
    let good = policy("good.example", "g", now, 86400);
    store.put(&good, now).await.expect("put");
    raw.execute(
        "INSERT INTO mta_sts_policies VALUES ('junk.example', 'j', 'body', -5, $1)",
        &[&((now + 3600) as i64)],
    )
    .await
    .expect("insert junk");
    match store.get("junk.example").await {
        Err(StoreError::Corrupt { domain, message }) => {
            assert_eq!(domain, "junk.example");
            assert!(message.contains("fetched_at"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        store.load_all(now).await.expect("load_all"),
        vec![good.clone()]
    );
    assert_eq!(
        store.load_page(now, None, 10).await.expect("load_page"),
        vec![good]
    );
    // A put replaces the corrupt row (any stored fetched_at is older than a real one).
    let fixed = policy("junk.example", "fixed", now, 86400);
    store.put(&fixed, now).await.expect("put");
    assert_eq!(store.get("junk.example").await.expect("get"), Some(fixed));
}

/// Asserts that `result` is `Unavailable` from the postgres store and came within the
/// timeout (plus scheduling slack).
fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    started: Instant,
    timeout: Duration,
    result: Result<T, StoreError>,
) {
    let elapsed = started.elapsed();
    match result {
        Err(StoreError::Unavailable {
            backend: "postgres",
            message,
        }) => eprintln!("{what}: unavailable after {elapsed:?}: {message}"),
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
    assert!(
        elapsed < timeout + Duration::from_millis(700),
        "{what} took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_bounded_and_writes_resume_after_restart() {
    let Some(server) = server("postgres_outage_is_bounded_and_writes_resume_after_restart") else {
        return;
    };
    let timeout = Duration::from_millis(800);
    let options = PostgresOptions {
        timeout,
        ..PostgresOptions::new(server.url())
    };
    let store = PostgresStore::connect(options).await.expect("connect");
    let now = unix_now();
    let before = policy("before.example", "b", now, 86400);
    store.put(&before, now).await.expect("put while up");

    // Stopped (immediate, like a crash): every operation fails within the timeout.
    server.stop();
    for round in 0..3 {
        let t = Instant::now();
        assert_unavailable(
            &format!("get #{round}"),
            t,
            timeout,
            store.get("before.example").await,
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
            &format!("load_all #{round}"),
            t,
            timeout,
            store.load_all(now).await,
        );
        let t = Instant::now();
        assert_unavailable(
            &format!("try_lease #{round}"),
            t,
            timeout,
            store.try_lease("x.example", timeout).await,
        );
    }
    assert_eq!(store.count_hint(now).await, None);

    // Back on the same port and data: the same store instance reads and writes again.
    server.restart().expect("restart");
    let after = policy("after.example", "a", now, 86400);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut failures = 0;
    while let Err(err) = store.put(&after, now).await {
        failures += 1;
        assert!(Instant::now() < deadline, "writes did not resume: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("writes resumed after {failures} failed attempt(s)");
    assert_eq!(
        store.get("before.example").await.expect("get"),
        Some(before)
    );
    assert_eq!(store.get("after.example").await.expect("get"), Some(after));
}

/// A daemon starts while PostgreSQL is down: the store is made without I/O, operations are
/// Unavailable, and once the server is up the first one creates the tables and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lazy_store_starts_while_postgres_is_down() {
    let Some(server) = server("postgres_lazy_store_starts_while_postgres_is_down") else {
        return;
    };
    server.stop();
    let timeout = Duration::from_millis(500);
    let options = PostgresOptions {
        timeout,
        ..PostgresOptions::new(server.url())
    };
    let store = PostgresStore::new(options.clone()).expect("lazy store");
    let t = Instant::now();
    assert_unavailable("get while down", t, timeout, store.get("a.example").await);
    let t = Instant::now();
    assert_unavailable(
        "connect while down",
        t,
        timeout,
        PostgresStore::connect(options).await,
    );

    server.restart().expect("start");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.get("a.example").await {
            Ok(got) => {
                assert_eq!(got, None);
                break;
            }
            Err(err) => assert!(Instant::now() < deadline, "never connected: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = unix_now();
    let p = policy("a.example", "a", now, 3600);
    store.put(&p, now).await.expect("put");
    assert_eq!(store.get("a.example").await.expect("get"), Some(p));
}

/// A URL that does not parse is refused when the store is made, with the password left out
/// of the message.
#[tokio::test]
async fn postgres_invalid_url_is_a_clear_error() {
    let err = PostgresStore::new(PostgresOptions::new("postgres://u:sekrit@host:port/db"))
        .expect_err("bad URL");
    let text = err.to_string();
    assert!(text.contains("invalid PostgreSQL URL"), "{text}");
    assert!(!text.contains("sekrit"), "{text}");
}

/// Three resolvers on one PostgreSQL refresh each due policy once between them (the lease
/// table), as on one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_resolvers_on_one_postgres_refetch_each_due_domain_once() {
    let Some(server) = server("three_resolvers_on_one_postgres_refetch_each_due_domain_once")
    else {
        return;
    };
    crate::common::three_resolvers_refetch_each_due_domain_once(|| {
        Arc::new(PostgresStore::new(PostgresOptions::new(server.url())).expect("postgres"))
    })
    .await;
}
