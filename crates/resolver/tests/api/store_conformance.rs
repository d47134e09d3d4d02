//! The behaviour every `Store` backend must share, as one suite taking `Arc<dyn Store>`.
//!
//! This file runs the suite against `MemoryStore` (the model); the `store_sqlite`,
//! `store_redis`, `store_redis_sentinel` and `store_postgres` modules run it against their
//! backends, and the shared ones (Redis, Sentinel, PostgreSQL) also run
//! [`run_fleet_conformance`] with two handles on one server.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mta_sts_resolver::store::{MemoryStore, Store, StoredPolicy};

/// The current time: Redis expires keys on its own clock, so the suite uses real time.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A policy for `domain` fetched at `fetched_at`, valid for `max_age` seconds.
pub fn policy(domain: &str, id: &str, fetched_at: u64, max_age: u64) -> StoredPolicy {
    StoredPolicy {
        domain: domain.to_owned(),
        record_id: id.to_owned(),
        body: format!(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.{domain}\r\nmax_age: {max_age}\r\n"
        ),
        fetched_at,
        expires_at: fetched_at + max_age,
    }
}

/// Runs every conformance check against `store`, which must start empty.
pub async fn run_conformance(store: Arc<dyn Store>) {
    let name = store.backend();
    get_put_remove(&*store).await;
    newer_wins(&*store).await;
    load_all_filters_expired(&*store).await;
    ascii_domains(&*store).await;
    thousand_entries(&*store).await;
    pages_in_domain_order(&*store).await;
    put_behind_reads_back_and_removes(&*store).await;
    eprintln!("conformance suite passed for the {name} store");
}

/// `put_behind` may return before the write: `get` still answers with the policy at once,
/// newer-wins holds, `remove` drops it even while pending, and after `flush` it is in the
/// store for every reader.
async fn put_behind_reads_back_and_removes(store: &dyn Store) {
    let now = unix_now();
    let newer = policy("behind.example", "b2", now, 86400);
    let older = policy("behind.example", "b1", now - 60, 86400);
    store.put_behind(&newer, now).await.expect("put_behind");
    store
        .put_behind(&older, now)
        .await
        .expect("put_behind older");
    assert_eq!(
        store.get("behind.example").await.expect("get"),
        Some(newer.clone()),
        "{}: a pending policy is read back, the newer one",
        store.backend()
    );
    assert!(
        store
            .load_page(now, None, 100)
            .await
            .expect("load_page")
            .contains(&newer),
        "{}: a scan sees a pending policy too (the refresher looks for evicted ones so)",
        store.backend()
    );
    store.flush().await.expect("flush");
    assert!(
        store
            .load_all(now)
            .await
            .expect("load_all")
            .contains(&newer),
        "{}: flushed",
        store.backend()
    );
    let gone = policy("gone.example", "g1", now, 86400);
    store.put_behind(&gone, now).await.expect("put_behind");
    store.remove("gone.example").await.expect("remove");
    assert_eq!(store.get("gone.example").await.expect("get"), None);
    store.flush().await.expect("flush");
    assert_eq!(
        store.get("gone.example").await.expect("get after flush"),
        None,
        "{}: a removed pending policy came back",
        store.backend()
    );
    store.remove("behind.example").await.expect("remove");
}

/// What a store shared by a fleet must add, checked through two handles `a` and `b` on one
/// (empty) server, as two daemons would hold them: each sees the other's entries, newer-wins
/// holds across concurrent puts from both, and a refresh lease is granted to one of them
/// only until it ends.
pub async fn run_fleet_conformance(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let name = a.backend();
    let now = unix_now();
    let p = policy("shared.example", "s1", now, 86400);
    a.put(&p, now).await.expect("put via a");
    assert_eq!(
        b.get("shared.example").await.expect("get via b"),
        Some(p.clone())
    );
    assert_eq!(b.load_all(now).await.expect("load_all via b"), vec![p]);
    b.remove("shared.example").await.expect("remove via b");
    assert_eq!(a.get("shared.example").await.expect("get via a"), None);

    // Concurrent puts from both handles, fetch times interleaved: the newest always wins.
    let mut tasks = Vec::new();
    for domain_no in 0..5u64 {
        for i in 0..40u64 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let fetched = now - ((i * 7919 + domain_no) % 40);
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
        let got = b.get(&domain).await.expect("get").expect("present");
        assert_eq!(got.fetched_at, now, "{name}: {domain}: {got:?}");
        assert_eq!(got.record_id, format!("t{now}"));
        a.remove(&domain).await.expect("remove");
    }

    // Refresh leases (RFC 8461 §10.2's proactive refresh, once per fleet): per domain, one
    // holder at a time, free again once the lease has ended.
    // Long enough that a loaded machine still makes the next three calls within it.
    let ttl = Duration::from_millis(1500);
    assert!(
        a.try_lease("lease.example", ttl).await.expect("lease"),
        "{name}"
    );
    assert!(
        !b.try_lease("lease.example", ttl).await.expect("lease"),
        "{name}: two holders"
    );
    assert!(
        !a.try_lease("lease.example", ttl).await.expect("lease"),
        "{name}: taken twice"
    );
    assert!(
        b.try_lease("other.example", ttl).await.expect("lease"),
        "{name}: not per domain"
    );
    // Leases are not policies.
    assert!(
        a.load_all(now).await.expect("load_all").is_empty(),
        "{name}"
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(
        b.try_lease("lease.example", ttl).await.expect("lease"),
        "{name}: never ends"
    );
    assert!(
        !a.try_lease("lease.example", ttl).await.expect("lease"),
        "{name}"
    );
    eprintln!("fleet conformance passed for the {name} store");
}

async fn get_put_remove(store: &dyn Store) {
    let now = unix_now();
    let d = "basic.example";
    assert_eq!(
        store.get(d).await.expect("get"),
        None,
        "{}: empty store",
        store.backend()
    );
    let p = policy(d, "id1", now, 86400);
    store.put(&p, now).await.expect("put");
    assert_eq!(store.get(d).await.expect("get"), Some(p.clone()));
    // Other domains are untouched.
    assert_eq!(store.get("other.example").await.expect("get"), None);
    store.remove(d).await.expect("remove");
    assert_eq!(store.get(d).await.expect("get"), None);
    // Removing what is not there is fine.
    store.remove(d).await.expect("remove missing");
}

async fn newer_wins(store: &dyn Store) {
    let now = unix_now();
    let d = "newer.example";
    let newer = policy(d, "new", now - 10, 86400);
    let older = policy(d, "old", now - 100, 86400);
    store.put(&newer, now).await.expect("put newer");
    store.put(&older, now).await.expect("put older");
    assert_eq!(
        store.get(d).await.expect("get"),
        Some(newer.clone()),
        "{}: an older put replaced a newer entry",
        store.backend()
    );
    // Same fetched_at: the later put wins (a refetch in the same second).
    let mut same = newer.clone();
    same.record_id = "same-second".into();
    store.put(&same, now).await.expect("put same");
    assert_eq!(store.get(d).await.expect("get"), Some(same));
    // A newer put replaces.
    let newest = policy(d, "newest", now, 604800);
    store.put(&newest, now).await.expect("put newest");
    assert_eq!(store.get(d).await.expect("get"), Some(newest));
    store.remove(d).await.expect("remove");
}

async fn load_all_filters_expired(store: &dyn Store) {
    let now = unix_now();
    let long = policy("long.example", "a", now, 3600);
    let short = policy("short.example", "b", now, 60);
    let expired = policy("expired.example", "c", now - 7200, 3600);
    for p in [&long, &short, &expired] {
        store.put(p, now).await.expect("put");
    }
    let at_now = by_domain(store.load_all(now).await.expect("load_all"));
    assert_eq!(
        at_now.get("long.example"),
        Some(&long),
        "{}",
        store.backend()
    );
    assert_eq!(
        at_now.get("short.example"),
        Some(&short),
        "{}",
        store.backend()
    );
    assert!(
        !at_now.contains_key("expired.example"),
        "{}: expired entry loaded",
        store.backend()
    );
    // Later, `short` has expired too (the store must filter, not only rely on its own TTL).
    let later = by_domain(store.load_all(now + 600).await.expect("load_all"));
    assert!(later.contains_key("long.example"));
    assert!(
        !later.contains_key("short.example"),
        "{}: expired entry loaded",
        store.backend()
    );
    // Exactly at expires_at the entry is no longer fresh.
    let at_expiry = by_domain(store.load_all(now + 3600).await.expect("load_all"));
    assert!(at_expiry.is_empty(), "{}: {at_expiry:?}", store.backend());
    for d in ["long.example", "short.example", "expired.example"] {
        store.remove(d).await.expect("remove");
    }
}

async fn ascii_domains(store: &dyn Store) {
    let now = unix_now();
    let long_label = "a".repeat(63);
    let domains = [
        "xn--bcher-kva.example".to_owned(),
        "xn--mnchen-3ya.xn--de-wka.example".to_owned(),
        "a-b.c-d.example".to_owned(),
        "123.example".to_owned(),
        "x.example".to_owned(),
        format!("{long_label}.{long_label}.example"),
        "sub.domain.with.many.labels.example".to_owned(),
    ];
    for (i, d) in domains.iter().enumerate() {
        store
            .put(&policy(d, &format!("id{i}"), now, 86400), now)
            .await
            .expect("put");
    }
    for (i, d) in domains.iter().enumerate() {
        let got = store.get(d).await.expect("get").expect("entry present");
        assert_eq!(got.domain, *d);
        assert_eq!(got.record_id, format!("id{i}"));
    }
    let all = by_domain(store.load_all(now).await.expect("load_all"));
    assert_eq!(
        all.len(),
        domains.len(),
        "{}: {:?}",
        store.backend(),
        all.keys()
    );
    for d in &domains {
        store.remove(d).await.expect("remove");
    }
}

async fn thousand_entries(store: &dyn Store) {
    let now = unix_now();
    let entries: Vec<StoredPolicy> = (0..1000)
        .map(|i| {
            policy(
                &format!("d{i:04}.bulk.example"),
                &format!("r{i}"),
                now - i,
                86400 + i,
            )
        })
        .collect();
    let started = std::time::Instant::now();
    for e in &entries {
        store.put(e, now).await.expect("put");
    }
    let puts = started.elapsed();
    let started = std::time::Instant::now();
    let all = by_domain(store.load_all(now).await.expect("load_all"));
    // Rough figures for the record (debug build, loopback): not asserted.
    eprintln!(
        "{}: 1000 sequential puts in {puts:?}, load_all of 1000 in {:?}",
        store.backend(),
        started.elapsed()
    );
    assert_eq!(all.len(), 1000, "{}", store.backend());
    for e in &entries {
        assert_eq!(all.get(&e.domain), Some(e));
    }
    for e in entries.iter().step_by(97) {
        assert_eq!(store.get(&e.domain).await.expect("get").as_ref(), Some(e));
    }
    for e in &entries {
        store.remove(&e.domain).await.expect("remove");
    }
    assert!(store.load_all(now).await.expect("load_all").is_empty());
}

/// `load_page` walks the unexpired entries in domain (byte) order, a page at a time, and
/// `count_hint`, when the store gives one, counts them.
async fn pages_in_domain_order(store: &dyn Store) {
    let now = unix_now();
    // '-', '.', digits and letters sort differently under locale collations than bytewise.
    let mut domains: Vec<String> = (0..24)
        .map(|i| {
            let stem = ["a-b", "ab", "a0", "a", "xn--a", "b"][i % 6];
            format!("{stem}.p{}.page.example", 23 - i)
        })
        .collect();
    for (i, d) in domains.iter().enumerate() {
        store
            .put(&policy(d, &format!("id{i}"), now, 3600), now)
            .await
            .expect("put");
    }
    store
        .put(
            &policy("a-expired.page.example", "x", now - 7200, 3600),
            now,
        )
        .await
        .expect("put expired");
    domains.sort();
    if let Some(count) = store.count_hint(now).await {
        assert_eq!(count, domains.len(), "{}: count_hint", store.backend());
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .load_page(now, after.as_deref(), 7)
            .await
            .expect("load_page");
        assert!(
            page.len() <= 7,
            "{}: page of {}",
            store.backend(),
            page.len()
        );
        let Some(last) = page.last() else { break };
        after = Some(last.domain.clone());
        seen.extend(page.into_iter().map(|e| e.domain));
    }
    assert_eq!(seen, domains, "{}: pages", store.backend());
    for d in domains.iter().chain([&"a-expired.page.example".to_owned()]) {
        store.remove(d).await.expect("remove");
    }
}

fn by_domain(entries: Vec<StoredPolicy>) -> BTreeMap<String, StoredPolicy> {
    let n = entries.len();
    let map: BTreeMap<_, _> = entries.into_iter().map(|e| (e.domain.clone(), e)).collect();
    assert_eq!(map.len(), n, "load_all returned a domain twice");
    map
}

#[tokio::test]
async fn memory_store_conformance() {
    run_conformance(Arc::new(MemoryStore::new())).await;
}
