//! Issue #14 target 6: the resolver's memory bound at internet scale, in one process
//! (release build; a bench, not a test).
//!
//! ```text
//! cargo run --release -p mta-sts-resolver --example memory_bound_bench -- \
//!     [POLICIES [NEGATIVES [MAX_MEMORY_BYTES [ZIPF_QUERIES [HOT]]]]]
//! ```
//! (defaults 1,000,000, 5,000,000, 128,000,000, 2,000,000, 100,000; MAX_MEMORY_BYTES 0:
//! unbounded).
//!
//! 1. Writes POLICIES policies (`d<i>.bench.test`, max_age one week, fetched now) straight
//!    into a fresh SQLite store file (one transaction), as a daemon that has run for a
//!    while would have them.
//! 2. Starts a DNS responder on 127.0.0.1 (a thread, constant memory) that answers
//!    `_mta-sts.d<i>.bench.test` TXT with `v=STSv1; id=1` (TTL 1 h) and NXDOMAIN for
//!    everything else.
//! 3. A resolver bounded at MAX_MEMORY_BYTES over that store (DNS cache 4096 answers, the
//!    default): every policy is looked up once ([`Resolver::lookup`]: memory miss → the
//!    store → TXT id confirmed, no HTTPS), then NEGATIVES lookups of distinct
//!    `n<i>.none.test` (NXDOMAIN → negative entries), 64 lookups in flight. Prints the
//!    process's RSS (VmRSS; VmHWM is the peak) and the cache's own count.
//! 4. Warm queries/s on a Zipf (s = 1) hot set: ZIPF_QUERIES lookups over the HOT first
//!    policies, 4 tasks, after a warm-up pass of as many, for the bounded resolver and then
//!    for an unbounded one over the same store and DNS; twice each, alternating. Then the
//!    same with Zipf over all POLICIES, whose tail does not fit the bound (misses read the
//!    store and query DNS): shown, not the target.
//! 5. Checks that no policy was fetched over HTTPS (every one came from the store).
//!
//! `BENCH_IN_FLIGHT=n` sets the lookups in flight of steps 3 (default 64).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mta_sts::Domain;
use mta_sts_net::SystemClock;
use mta_sts_resolver::store::{SqliteStore, Store};
use mta_sts_resolver::{Outcome, Resolver, ResolverConfig};

/// The `mta-sts` binary's allocator, so that the resident memory measured here is the
/// daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 64;

/// glibc's `struct mallinfo2` (all arenas).
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

unsafe extern "C" {
    /// glibc: returns free heap pages to the kernel.
    fn malloc_trim(pad: usize) -> i32;
    /// glibc: heap statistics.
    fn mallinfo2() -> MallInfo2;
}

/// Bytes glibc's malloc has handed out and not had back (live heap), and bytes it holds
/// free. With mimalloc as the Rust allocator, that is the C code's heap (SQLite's).
fn heap() -> (usize, usize) {
    // SAFETY: mallinfo2 only reads malloc's statistics.
    let m = unsafe { mallinfo2() };
    (m.uordblks + m.hblkhd, m.fordblks)
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

/// Answers one DNS query: TXT for `_mta-sts.d<i>.bench.test`, NXDOMAIN otherwise.
fn answer(q: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        labels.push(q.get(i + 1..i + 1 + len)?);
        i += 1 + len;
    }
    let qend = i + 4;
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let policy = qtype == 16
        && labels.len() == 4
        && labels[0] == b"_mta-sts"
        && labels[1].first() == Some(&b'd')
        && labels[2] == b"bench";
    out.extend_from_slice(q.get(..2)?);
    out.push(0x84 | (q[2] & 0x01)); // QR, AA, RD as asked
    out.push(if policy { 0x80 } else { 0x83 }); // RA; NOERROR or NXDOMAIN
    out.extend_from_slice(&[0, 1, 0, u8::from(policy), 0, 0, 0, 0]);
    out.extend_from_slice(q.get(12..qend)?);
    if policy {
        let txt = b"v=STSv1; id=1";
        out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0x0e, 0x10, 0]);
        out.push(txt.len() as u8 + 1);
        out.push(txt.len() as u8);
        out.extend_from_slice(txt);
    }
    Some(())
}

fn start_dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    for _ in 0..2 {
        let socket = socket.try_clone().expect("clone");
        std::thread::spawn(move || {
            let (mut buf, mut out) = ([0u8; 1500], Vec::with_capacity(512));
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if answer(&buf[..n], &mut out).is_some() {
                    let _ = socket.send_to(&out, from);
                }
            }
        });
    }
    addr
}

fn preload(path: &std::path::Path, policies: u64, now: u64) {
    let mut db = rusqlite::Connection::open(path).expect("open");
    let tx = db.transaction().expect("tx");
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO policies (domain, record_id, body, fetched_at, expires_at)
                 VALUES (?1, '1', ?2, ?3, ?4)",
            )
            .expect("prepare");
        for i in 0..policies {
            let body = format!(
                "version: STSv1\nmode: enforce\nmx: mail.d{i}.bench.test\nmax_age: 604800\n"
            );
            insert
                .execute(rusqlite::params![
                    format!("d{i}.bench.test"),
                    body,
                    now as i64,
                    (now + 604_800) as i64
                ])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

async fn resolver(dns: SocketAddr, store: Arc<dyn Store>, max_memory: Option<u64>) -> Resolver {
    let config = ResolverConfig {
        nameservers: vec![dns],
        timeout: Duration::from_secs(5),
        max_memory,
        ..ResolverConfig::default()
    };
    Resolver::new(config, store, Arc::new(SystemClock)).expect("resolver")
}

/// Looks up `names(i)` for `i` in `0..count`, `IN_FLIGHT` at a time.
async fn look_up_many(resolver: &Resolver, count: u64, name: fn(u64) -> String) -> [u64; 3] {
    let mut outcomes = [0u64; 3];
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        let in_flight = std::env::var("BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(IN_FLIGHT);
        while tasks.len() < in_flight && next < count {
            let r = resolver.clone();
            let domain = Domain::parse(&name(next)).expect("domain");
            tasks.spawn(async move { r.lookup(&domain).await.outcome() });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Outcome::Policy)) => outcomes[0] += 1,
            Some(Ok(Outcome::NoPolicy)) => outcomes[1] += 1,
            Some(Ok(Outcome::Unusable)) => outcomes[2] += 1,
            Some(Err(e)) => panic!("{e}"),
            None => return outcomes,
        }
    }
}

/// A Zipf(s = 1) rank in `0..n` by inverting the continuous approximation of its CDF:
/// no table, so the sampler adds nothing to the RSS.
fn zipf(state: &mut u64, n: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
    (((n as f64 + 1.0).ln() * u).exp() as u64)
        .saturating_sub(1)
        .min(n - 1)
}

/// Queries/s of `queries` Zipf lookups over `policies` domains, 4 tasks.
async fn zipf_qps(resolver: &Resolver, policies: u64, queries: u64, seed: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4u64 {
        let r = resolver.clone();
        tasks.spawn(async move {
            let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (t + 1);
            let mut policy = 0u64;
            for _ in 0..queries / 4 {
                let i = zipf(&mut state, policies);
                let domain = Domain::parse(&format!("d{i}.bench.test")).expect("domain");
                if r.lookup(&domain).await.policy.is_some() {
                    policy += 1;
                }
            }
            policy
        });
    }
    let mut policy = 0;
    while let Some(n) = tasks.join_next().await {
        policy += n.expect("task");
    }
    assert_eq!(
        policy,
        queries / 4 * 4,
        "every Zipf lookup applies a policy"
    );
    (queries / 4 * 4) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let policies = arg(1, 1_000_000);
    let negatives = arg(2, 5_000_000);
    let max_memory = arg(3, 128_000_000);
    let queries = arg(4, 2_000_000);
    let hot = arg(5, 100_000).min(policies);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.db");
    let started = Instant::now();
    drop(SqliteStore::open(&path).await.expect("schema"));
    preload(&path, policies, now);
    println!(
        "store: {policies} policies written in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("store"));
    let dns = start_dns();
    println!("RSS before the resolver: {}", status("VmRSS:"));

    let bounded = resolver(dns, store.clone(), (max_memory > 0).then_some(max_memory)).await;
    println!(
        "glibc malloc (SQLite) live after building the resolver: {} B",
        heap().0
    );
    let started = Instant::now();
    let out = look_up_many(&bounded, policies, |i| format!("d{i}.bench.test")).await;
    println!(
        "{policies} policy lookups {out:?} (policy, no-policy, unusable) in {:.1}s; RSS {}; glibc malloc (SQLite) live {} B; cache {:?}",
        started.elapsed().as_secs_f64(),
        status("VmRSS:"),
        heap().0,
        bounded.memory_usage()
    );
    let started = Instant::now();
    let out = look_up_many(&bounded, negatives, |i| format!("n{i}.none.test")).await;
    println!(
        "{negatives} negative lookups {out:?} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let usage = bounded.memory_usage();
    println!(
        "bounded at {max_memory} B: cache {usage:?}; process RSS {} (peak {}, anonymous {}, file {})",
        status("VmRSS:"),
        status("VmHWM:"),
        status("RssAnon:"),
        status("RssFile:")
    );

    // What of that RSS is heap glibc's malloc (SQLite's) holds free: its malloc_trim hands
    // whole free pages back to the kernel.
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe { malloc_trim(0) };
    let (live, free) = heap();
    println!(
        "after malloc_trim(0): process RSS {} (anonymous {}); glibc malloc (SQLite): {live} B live, {free} B free",
        status("VmRSS:"),
        status("RssAnon:")
    );

    let unbounded = resolver(dns, store.clone(), None).await;
    for (set, round) in [(hot, 0u64), (hot, 1), (policies, 2)] {
        for (name, r) in [("bounded", &bounded), ("unbounded", &unbounded)] {
            zipf_qps(r, set, queries, 100 + round).await; // warm-up
            let qps = zipf_qps(r, set, queries, 200 + round).await;
            let usage = r.memory_usage();
            println!(
                "round {round} {name:9}: {qps:.0} warm Zipf queries/s over {set} ({} entries, {} bytes in memory, store reads {})",
                usage.entries,
                usage.bytes,
                r.stats().store_reads.load(Ordering::Relaxed)
            );
        }
    }
    let fetches = bounded.stats().fetches.load(Ordering::Relaxed)
        + unbounded.stats().fetches.load(Ordering::Relaxed);
    println!("HTTPS fetches: {fetches}");
    assert_eq!(fetches, 0, "every policy came from the store");
}
