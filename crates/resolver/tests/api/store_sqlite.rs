//! SqliteStore on real files: conformance, durability under SIGKILL, schema and errors.

use crate::store_conformance as conformance;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{policy, run_conformance, unix_now};
use mta_sts_resolver::store::sqlite::{DEFAULT_PATH, SCHEMA_VERSION, Synchronous};
use mta_sts_resolver::store::{SqliteOptions, SqliteStore, Store, StoreError};

/// Set (to the database path) when this binary runs as the durability child.
const CHILD_DB_ENV: &str = "MTA_STS_STORE_DURABILITY_DB";
/// `full`, `normal`, `bounded` (the default) or `behind` (the default, writing with
/// `put_behind` as the resolver does): the child's `synchronous` setting.
const CHILD_SYNC_ENV: &str = "MTA_STS_STORE_DURABILITY_SYNC";
/// How many tasks of the child put at once (1 unless set), so that puts share group commits.
const CHILD_WRITERS_ENV: &str = "MTA_STS_STORE_DURABILITY_WRITERS";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw open")
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("cache.db"))
        .await
        .expect("open");
    let started = Instant::now();
    run_conformance(Arc::new(store)).await;
    eprintln!(
        "sqlite conformance (synchronous=FULL) took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_conformance_synchronous_normal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        synchronous: Synchronous::Normal,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join("cache.db"), options)
        .await
        .expect("open");
    run_conformance(Arc::new(store)).await;
}

#[test]
fn sqlite_default_path_is_documented_location() {
    assert_eq!(DEFAULT_PATH, "/var/lib/mta-sts/cache.db");
}

#[tokio::test]
async fn sqlite_schema_version_wal_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dirs/cache.db");
    let now = unix_now();
    let p = policy("reopen.example", "v1", now, 86400);
    {
        let store = SqliteStore::open(&path)
            .await
            .expect("open creates parent dirs");
        assert_eq!(store.backend(), "sqlite");
        assert_eq!(store.path(), path);
        store.put(&p, now).await.expect("put");
    }
    let conn = raw(&path);
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("pragma");
    assert_eq!(version, SCHEMA_VERSION);
    assert!(version >= 1);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    drop(conn);
    // Reopening an existing, current file keeps its data and does not migrate again.
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.get("reopen.example").await.expect("get"), Some(p));
    // Two handles on one file (two daemons) see each other's writes.
    let other = SqliteStore::open(&path).await.expect("second handle");
    let newer = policy("reopen.example", "v2", now + 1, 86400);
    other.put(&newer, now).await.expect("put");
    assert_eq!(store.get("reopen.example").await.expect("get"), Some(newer));
}

#[tokio::test]
async fn sqlite_newer_wins_under_concurrent_handles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let a = SqliteStore::open(&path).await.expect("open a");
    let b = SqliteStore::open(&path).await.expect("open b");
    let now = unix_now();
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        // Interleave old and new fetch times.
        let fetched = now - ((i * 7919) % 40);
        tasks.push(tokio::spawn(async move {
            store
                .put(
                    &policy("race.example", &format!("t{fetched}"), fetched, 86400),
                    now,
                )
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("put");
    }
    let got = a.get("race.example").await.expect("get").expect("present");
    assert_eq!(got.fetched_at, now);
}

#[tokio::test]
async fn sqlite_garbage_file_gives_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    std::fs::write(&path, "this is a text file, not a database\n".repeat(200)).expect("write");
    let err = SqliteStore::open(&path)
        .await
        .expect_err("garbage must not open");
    let StoreError::Unavailable { backend, message } = &err else {
        panic!("wrong error: {err:?}")
    };
    assert_eq!(*backend, "sqlite");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not an SQLite database"), "{message}");
    assert!(message.contains("move it away"), "{message}");
    eprintln!("garbage file: {err}");
}

#[tokio::test]
async fn sqlite_parent_dir_that_cannot_be_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").expect("write");
    let path = blocker.join("sub/cache.db");
    let err = SqliteStore::open(&path).await.expect_err("must fail");
    let message = err.to_string();
    assert!(message.contains("cannot create the directory"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test]
async fn sqlite_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    drop(SqliteStore::open(&path).await.expect("open"));
    raw(&path)
        .pragma_update(None, "user_version", 99)
        .expect("bump version");
    let err = SqliteStore::open(&path).await.expect_err("must refuse");
    let message = err.to_string();
    assert!(message.contains("schema version 99"), "{message}");
    assert!(message.contains("newer"), "{message}");
}

#[tokio::test]
async fn sqlite_corrupt_rows_are_reported_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let now = unix_now();
    let good = policy("good.example", "g", now, 86400);
    store.put(&good, now).await.expect("put");
    {
        let conn = raw(&path);
        conn.execute(
            "INSERT INTO policies VALUES ('text-time.example', 'r', 'body', 'yesterday', 'tomorrow')",
            [],
        )
        .expect("insert");
        conn.execute(
            "INSERT INTO policies VALUES ('blob-body.example', 'r', X'FFFE00', ?1, ?2)",
            rusqlite::params![now as i64, (now + 86400) as i64],
        )
        .expect("insert");
        conn.execute(
            "INSERT INTO policies VALUES ('negative.example', 'r', 'body', -5, ?1)",
            rusqlite::params![(now + 86400) as i64],
        )
        .expect("insert");
    }
    for d in ["text-time.example", "blob-body.example", "negative.example"] {
        match store.get(d).await {
            Err(StoreError::Corrupt { domain, message }) => {
                assert_eq!(domain, d);
                eprintln!("{d}: {message}");
            }
            other => panic!("{d}: expected Corrupt, got {other:?}"),
        }
    }
    let all = store
        .load_all(now)
        .await
        .expect("load_all skips corrupt rows");
    assert_eq!(all, vec![good]);
    // A fresh put replaces the corrupt row, even though 'yesterday' > any integer in SQLite.
    let fixed = policy("text-time.example", "fixed", now, 86400);
    store.put(&fixed, now).await.expect("put");
    assert_eq!(
        store.get("text-time.example").await.expect("get"),
        Some(fixed)
    );
}

/// The child half of the durability test: `MTA_STS_STORE_DURABILITY_WRITERS` tasks (default 1)
/// write policies, each one after the other, and print `ACK <domain>` after each `put`
/// returns. Does nothing unless started by `sqlite_survives_sigkill_*`.
#[test]
fn durability_child() {
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let mode = std::env::var(CHILD_SYNC_ENV).unwrap_or_default();
    let behind = mode == "behind";
    let synchronous = match mode.as_str() {
        "normal" => Synchronous::Normal,
        "bounded" | "behind" => Synchronous::default(),
        _ => Synchronous::Full,
    };
    runtime().block_on(async move {
        let options = SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open_with(&path, options)
            .await
            .expect("child open");
        let now = unix_now();
        let writers: u64 = std::env::var(CHILD_WRITERS_ENV)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (w..200_000u64).step_by(writers as usize) {
                        let domain = format!("d{i}.durable.example");
                        let entry = policy(&domain, &format!("id{i}"), now, 86400);
                        if behind {
                            store.put_behind(&entry, now).await.expect("put_behind");
                            // About a thousand a second, as a busy daemon fetches.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        } else {
                            store.put(&entry, now).await.expect("put");
                        }
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {domain}").expect("stdout");
                        out.flush().expect("flush");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
    });
}

fn survives_sigkill(sync: &str, writers: usize, acks_before_kill: usize) {
    survives_sigkill_after(sync, writers, acks_before_kill, Duration::ZERO);
}

/// Kills the child `settle` after its `acks_before_kill`-th ack. With no `settle`, every
/// policy acknowledged before the kill must survive it; with one, those up to the
/// `acks_before_kill`-th (written `settle` before the kill).
fn survives_sigkill_after(sync: &str, writers: usize, acks_before_kill: usize, settle: Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            // The full test name inside the one `api` test binary.
            "store_sqlite::durability_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, &path)
        .env(CHILD_SYNC_ENV, sync)
        .env(CHILD_WRITERS_ENV, writers.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut acked = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        if let Some(domain) = line.strip_prefix("ACK ") {
            acked.push(domain.to_owned());
            if acked.len() == acks_before_kill && !killed {
                std::thread::sleep(settle);
                child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
                killed = true;
            }
        }
        // Keep reading: acks already written before the kill count too.
    }
    let status = child.wait().expect("wait");
    assert!(
        killed,
        "child ended before {acks_before_kill} acks: {status:?}"
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "child was not killed by SIGKILL: {status:?}"
    );
    eprintln!(
        "synchronous={sync}, {writers} writers: {} policies acknowledged before SIGKILL",
        acked.len()
    );

    if !settle.is_zero() {
        acked.truncate(acks_before_kill);
    }
    runtime().block_on(async {
        let store = SqliteStore::open(&path)
            .await
            .expect("reopen after SIGKILL");
        for domain in &acked {
            let got = store.get(domain).await.expect("get");
            assert!(
                got.is_some(),
                "acknowledged policy {domain} lost after SIGKILL"
            );
        }
        let all = store.load_all(unix_now()).await.expect("load_all");
        assert!(all.len() >= acked.len());
    });
    let check: String = raw(&path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

#[test]
fn sqlite_survives_sigkill_synchronous_full() {
    survives_sigkill("full", 1, 300);
}

#[test]
fn sqlite_survives_sigkill_synchronous_normal() {
    survives_sigkill("normal", 1, 2000);
}

/// The default: `synchronous=NORMAL` with a bounded fsync window still loses nothing to a
/// killed process.
#[test]
fn sqlite_survives_sigkill_bounded_flush_window() {
    survives_sigkill("bounded", 32, 3000);
}

/// What the resolver writes (`put_behind`) is in the file within the flush window: a policy
/// written three windows before a `kill -9` survives it.
#[test]
fn sqlite_put_behind_survives_sigkill_after_its_window() {
    use mta_sts_resolver::store::sqlite::DEFAULT_FLUSH_WINDOW;
    survives_sigkill_after("behind", 4, 1000, DEFAULT_FLUSH_WINDOW * 3);
}

/// A store with write-behind window `window` in a fresh directory, for the tests below.
async fn with_window(window: Duration) -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let options = SqliteOptions {
        synchronous: Synchronous::Bounded { window },
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).await.expect("open");
    (dir, path, store)
}

/// `put_behind` of `n` policies, `{prefix}{i}.behind.example`.
async fn put_behind_many(store: &SqliteStore, prefix: &str, n: usize) {
    let now = unix_now();
    for i in 0..n {
        let entry = policy(&format!("{prefix}{i}.behind.example"), "1", now, 86400);
        store.put_behind(&entry, now).await.expect("put_behind");
    }
}

fn rows(path: &Path) -> i64 {
    raw(path)
        .query_row("SELECT COUNT(*) FROM policies", [], |r| r.get(0))
        .expect("count")
}

/// `put_behind` returns before the write, which comes within the window, all policies at
/// once; meanwhile `get` answers from what is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_put_behind_writes_within_its_window() {
    let (_dir, path, store) = with_window(Duration::from_secs(2)).await;
    let started = Instant::now();
    put_behind_many(&store, "w", 300).await;
    assert_eq!(rows(&path), 0, "written before the window passed");
    assert!(
        store.get("w7.behind.example").await.expect("get").is_some(),
        "a pending policy is read back"
    );
    let mut written = 0;
    while written < 300 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        written = rows(&path);
        assert!(
            written == 0 || written == 300,
            "{written}: not in one transaction"
        );
    }
    assert_eq!(written, 300);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "written before its window: {:?}",
        started.elapsed()
    );
}

/// `flush` (the daemon's, at shutdown) and dropping the store write what is pending at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_flush_and_drop_write_pending_policies_at_once() {
    let (_dir, path, store) = with_window(Duration::from_secs(2)).await;
    put_behind_many(&store, "f", 20).await;
    store.flush().await.expect("flush");
    assert_eq!(rows(&path), 20, "flushed");
    put_behind_many(&store, "d", 30).await;
    drop(store);
    assert_eq!(rows(&path), 50, "written when the store was dropped");
}

/// A burst larger than the write-behind queue's bound is written at once, not after the
/// window, so the queue never grows without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_put_behind_burst_is_written_early() {
    let (_dir, path, store) = with_window(Duration::from_secs(60)).await;
    put_behind_many(&store, "b", 5000).await;
    let started = Instant::now();
    while rows(&path) < 4000 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rows(&path) >= 4000,
        "a 60 s window held {} of 5000",
        rows(&path)
    );
    drop(store);
    assert_eq!(rows(&path), 5000);
}

/// The default store's power-loss window is bounded: within a few windows of a put, the
/// policy is in the database file itself (checkpointed, so the WAL was fsynced), not only in
/// the WAL. With plain `synchronous=NORMAL` it stays in the WAL (SQLite checkpoints only every
/// 1,000 pages), which is what this test tells apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_default_flushes_within_its_window() {
    use mta_sts_resolver::store::sqlite::DEFAULT_FLUSH_WINDOW;
    async fn in_main_file_after_window(synchronous: Synchronous) -> bool {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache.db");
        let options = SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open_with(&path, options).await.expect("open");
        let now = unix_now();
        store
            .put(&policy("flushed.example", "id1", now, 86400), now)
            .await
            .expect("put");
        tokio::time::sleep(DEFAULT_FLUSH_WINDOW * 5).await;
        // The database file alone, as a power cut would leave it without the WAL's tail.
        let copy = dir.path().join("main-only.db");
        std::fs::copy(&path, &copy).expect("copy the main file");
        // Without a checkpoint even the table is only in the WAL: "no such table" is a miss.
        let found: i64 = raw(&copy)
            .query_row(
                "SELECT COUNT(*) FROM policies WHERE domain = 'flushed.example'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        drop(store);
        found == 1
    }
    assert!(in_main_file_after_window(Synchronous::default()).await);
    assert!(!in_main_file_after_window(Synchronous::Normal).await);
}

/// Group commit: 32 concurrent writers share transactions; a put is acknowledged only after
/// the transaction holding it committed, so no acknowledged policy is lost either.
#[test]
fn sqlite_survives_sigkill_group_commit() {
    survives_sigkill("full", 32, 3000);
}

/// Within one group commit, an older fetch queued after a newer one for the same domain
/// still loses (newer-wins holds inside a transaction as across them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit_keeps_newer_wins_and_every_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("cache.db"))
        .await
        .expect("open");
    let now = unix_now();
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // 200 distinct domains, each put twice: fetched now, and fetched an hour ago.
            let domain = format!("d{}.group.example", i % 200);
            let fetched = if i < 200 { now } else { now - 3600 };
            store
                .put(
                    &policy(&domain, &format!("t{fetched}"), fetched, 86400),
                    now,
                )
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("put");
    }
    let all = store.load_all(now).await.expect("load_all");
    assert_eq!(all.len(), 200, "every domain stored once");
    assert!(
        all.iter().all(|p| p.fetched_at == now),
        "an older fetch replaced a newer one"
    );
}

/// A put that has to wait for SQLite's write lock (held here by another process's
/// transaction) waits on the blocking pool, never on the runtime: on a current-thread
/// runtime another task keeps running meanwhile. (A put that needs neither waiting nor an
/// fsync commits on the caller's thread: a few writes into the page cache.)
#[tokio::test]
async fn sqlite_calls_do_not_block_the_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_secs(3),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).await.expect("open");
    let now = unix_now();
    for i in 0..20 {
        store
            .put(&policy(&format!("t{i}.example"), "x", now, 60), now)
            .await
            .expect("put");
    }
    let other = raw(&path);
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let put = {
        let store = store.clone();
        tokio::spawn(async move { store.put(&policy("waits.example", "x", now, 60), now).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!put.is_finished(), "the put should be waiting for the lock");
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) > 10,
        "the runtime stood still while the put waited"
    );
    let got = store
        .get("t0.example")
        .await
        .expect("get while the put waits");
    assert!(got.is_some());
    other.execute_batch("COMMIT").expect("release");
    put.await.expect("join").expect("put once the lock is free");
    ticker.abort();
    assert!(store.get("waits.example").await.expect("get").is_some());
}

/// Warm start reads the store a page at a time: corrupt rows inside a page must not end
/// it early (a short page is the last one).
#[tokio::test]
async fn sqlite_pages_skip_corrupt_rows_without_ending_early() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let now = unix_now();
    for i in 0..25 {
        let p = policy(&format!("d{i:02}.example"), "g", now, 86400);
        store.put(&p, now).await.expect("put");
    }
    raw(&path)
        .execute(
            "INSERT INTO policies VALUES ('d05a.example', 'r', X'FFFE00', ?1, ?2)",
            rusqlite::params![now as i64, (now + 86400) as i64],
        )
        .expect("insert a corrupt row");
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let page = store
            .load_page(now, after.as_deref(), 10)
            .await
            .expect("page");
        pages.push(page.len());
        match page.last() {
            Some(last) if page.len() == 10 => after = Some(last.domain.clone()),
            _ => break,
        }
    }
    assert_eq!(
        pages,
        [10, 10, 5],
        "every good row, in full pages until the last"
    );
    assert_eq!(
        store.count_hint(now).await,
        Some(26),
        "the count includes the corrupt row"
    );
}

/// Reads use their own connection: while a put waits for the write lock (here held by
/// another process's transaction, as during a long commit), a `get` still answers at once
/// instead of queueing behind the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_do_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_secs(3),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).await.expect("open");
    let now = unix_now();
    store
        .put(&policy("present.example", "1", now, 86400), now)
        .await
        .expect("put");

    let other = raw(&path);
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put(&policy("blocked.example", "1", now, 86400), now)
                .await
        })
    };
    // Let the put take the writing connection and start waiting for the lock.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let got = store.get("present.example").await.expect("get");
    let took = started.elapsed();
    assert!(got.is_some());
    assert!(
        !writer.is_finished(),
        "the put should still be waiting for the lock"
    );
    assert!(
        took < Duration::from_secs(2),
        "get waited {took:?} behind the blocked put"
    );
    other.execute_batch("COMMIT").expect("release");
    writer
        .await
        .expect("join")
        .expect("put after the lock is released");
}
