//! Resolver benchmark (not a test): cold lookups/s against a testkit world of 10,000
//! domains with 64 concurrent lookups, warm memory-cache reads/s, and bytes of memory per
//! cached 5-mx policy (counting global allocator).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-resolver cargo bench -p mta-sts-resolver --bench resolver`
//! (optional first argument: number of domains, default 10000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use mta_sts::Domain;
use mta_sts_net::SystemClock;
use mta_sts_resolver::store::{MemoryStore, Store, StoredPolicy};
use mta_sts_resolver::{Outcome, Resolver, ResolverConfig};
use mta_sts_testkit::World;
use mta_sts_testkit::world::bulk_name;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn config(world: &World) -> ResolverConfig {
    ResolverConfig {
        nameservers: vec![world.dns_addr()],
        ca_file: Some(world.ca_file().to_path_buf()),
        ca_file_only: true,
        connect_to: vec![world.connect_to_any().parse().expect("connect-to")],
        timeout: Duration::from_secs(10),
        dns_cache_size: 0,
        ..ResolverConfig::default()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number sets the domain count.
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let started = Instant::now();
    let world = World::builder().bulk(n).start();
    eprintln!("world of {n} domains up in {:?}", started.elapsed());
    // The testkit issues each policy host's certificate on its first handshake; do that
    // before timing, so the cold figure measures lookups, not the test CA.
    let started = Instant::now();
    for i in 0..n {
        let host = format!("mta-sts.{}", bulk_name(i));
        world
            .pki()
            .certified_key(&host, mta_sts_testkit::CertKind::Valid)
            .expect("certificate");
    }
    eprintln!(
        "{n} policy host certificates issued in {:?}",
        started.elapsed()
    );
    let domains: Vec<Domain> = (0..n)
        .map(|i| Domain::parse(&bulk_name(i)).expect("domain"))
        .collect();

    rt.block_on(async {
        // Cold: every lookup is TXT query + TLS handshake + GET + parse, 64 in flight.
        let resolver = Resolver::new(
            config(&world),
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .expect("resolver");
        let domains = Arc::new(domains);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cpu_before = process_cpu_seconds();
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..64 {
            let (r, d, next) = (resolver.clone(), domains.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut ok = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(domain) = d.get(i) else { break };
                    if r.lookup(domain).await.outcome() == Outcome::Policy {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for w in workers {
            ok += w.await.expect("worker");
        }
        let cold = started.elapsed();
        // CPU of the whole process (resolver, DNS server and HTTPS server alike) per cold
        // lookup: on a shared machine the wall-clock rate depends on the neighbours, this
        // does not; two idle cores give at most 2 / cpu_per_lookup lookups per second.
        let cpu = process_cpu_seconds() - cpu_before;
        eprintln!(
            "cold lookups used {cpu:.2} s of CPU (client and servers) = {:.0} µs per lookup, {:.0}/s on two idle cores",
            cpu * 1e6 / n as f64,
            2.0 * n as f64 / cpu
        );
        println!(
            "cold lookups: {n} in {cold:?} = {:.0}/s ({ok} with policy, 64 concurrent)",
            n as f64 / cold.as_secs_f64()
        );

        // Warm: memory-cache reads (what the socketmap answers from between TXT checks).
        let rounds = 100usize;
        let started = Instant::now();
        let mut hits = 0usize;
        for _ in 0..rounds {
            for d in domains.iter() {
                if resolver.cached(d).is_some() {
                    hits += 1;
                }
            }
        }
        let warm = started.elapsed();
        println!(
            "warm cached() reads: {} in {warm:?} = {:.0}/s (1 thread, {hits} hits)",
            rounds * n,
            (rounds * n) as f64 / warm.as_secs_f64()
        );

        // Warm full lookups: TXT re-checked on each (id unchanged → cache, no HTTPS).
        let count = n.min(5_000);
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..64 {
            let (r, d, next) = (resolver.clone(), domains.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    r.lookup(&d[i]).await;
                }
            }));
        }
        for w in workers {
            w.await.expect("worker");
        }
        let warm_lookup = started.elapsed();
        println!(
            "warm lookup() with a TXT query each (no DNS cache): {count} in {warm_lookup:?} = {:.0}/s",
            count as f64 / warm_lookup.as_secs_f64()
        );

        // Memory per cached 5-mx policy: net bytes allocated by a warm start of n entries.
        let store = Arc::new(MemoryStore::new());
        let now = mta_sts_net::Clock::now(&SystemClock);
        for d in domains.iter() {
            let mut body = String::from("version: STSv1\nmode: enforce\n");
            for k in 1..=5 {
                body.push_str(&format!("mx: mx{k}.{d}\n"));
            }
            body.push_str("max_age: 604800\n");
            let entry = StoredPolicy {
                domain: d.to_string(),
                record_id: "20240101T000000".into(),
                body,
                fetched_at: now,
                expires_at: now + 604_800,
            };
            store.put(&entry, now).await.expect("put");
        }
        let r = Resolver::new(config(&world), store, Arc::new(SystemClock)).expect("resolver");
        let before = LIVE.load(Ordering::SeqCst);
        let loaded = r.warm_start().await;
        let after = LIVE.load(Ordering::SeqCst);
        println!(
            "memory: {loaded} cached 5-mx policies use {} bytes = {:.0} bytes each (entry, parsed policy, body, map slot)",
            after - before,
            (after - before) as f64 / loaded as f64
        );
    });
}

/// User + system CPU seconds of this process, from /proc/self/stat (Linux).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
