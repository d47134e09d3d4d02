//! What the store costs a cold lookup, without the TLS work that hides it in the socketmap
//! benchmark (docs/performance.md §2): `--conc` tasks on a runtime like the daemon's
//! (one worker per CPU) each do what a fresh lookup asks of the store, a `get` of a domain
//! the store does not hold and then the `put_behind` of its policy (as the resolver stores
//! what it fetched), `--lookups` times in all, against the SQLite store as the daemon opens
//! it (default flush window) and against the memory store, ending with a `flush` so that
//! every write is counted. Prints, per lookup, the process's CPU time (the flusher thread's
//! included) and its context switches. `--no-get` leaves the `get` out: what a lookup would
//! cost if it skipped the read; `--put` stores with `put` (a group commit per lookup, how
//! the resolver stored until write-behind).
//!
//! ```text
//! cargo run --release -p mta-sts-resolver --example store_cpu_bench -- --lookups 20000 --conc 16 --rounds 3
//! cargo run --release -p mta-sts-resolver --example store_cpu_bench -- --no-get
//! ```

use std::sync::Arc;
use std::time::Instant;

use mta_sts_resolver::store::{MemoryStore, SqliteStore, Store, StoredPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn opt(args: &[String], name: &str, default: usize) -> Result<usize, BoxError> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).ok_or("a value after the flag")?.parse()?),
        None => Ok(default),
    }
}

/// CPU seconds (user + system) of this process so far.
fn cpu_secs() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').ok_or("/proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).ok_or("utime")?.parse::<f64>()?
        + fields.get(12).ok_or("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Context switches of every live thread of this process so far.
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn policy(domain: String, now: u64) -> StoredPolicy {
    StoredPolicy {
        body: format!(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.{domain}\r\nmx: *.mx.{domain}\r\nmax_age: 604800\r\n"
        ),
        domain,
        record_id: "20240101T000000".into(),
        fetched_at: now,
        expires_at: now + 604_800,
    }
}

/// `lookups` cold lookups' store calls from `conc` tasks; CPU seconds and context switches.
async fn run(
    store: Arc<dyn Store>,
    tag: &str,
    lookups: usize,
    conc: usize,
    get: bool,
    behind: bool,
) -> Result<(f64, u64, f64), BoxError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (cpu0, cs0, started) = (cpu_secs()?, context_switches(), Instant::now());
    let mut tasks = Vec::new();
    for t in 0..conc {
        let store = Arc::clone(&store);
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (t..lookups).step_by(conc) {
                let domain = format!("d{i}.{tag}.test");
                if get && store.get(&domain).await?.is_some() {
                    return Err::<(), BoxError>("a fresh domain was in the store".into());
                }
                let entry = policy(domain, now);
                if behind {
                    store.put_behind(&entry, now).await?;
                } else {
                    store.put(&entry, now).await?;
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    store.flush().await?;
    Ok((
        cpu_secs()? - cpu0,
        context_switches().saturating_sub(cs0),
        started.elapsed().as_secs_f64(),
    ))
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let lookups = opt(&args, "--lookups", 20_000)?.max(1);
    let conc = opt(&args, "--conc", 16)?.max(1);
    let rounds = opt(&args, "--rounds", 3)?.max(1);
    let get = !args.iter().any(|a| a == "--no-get");
    let behind = !args.iter().any(|a| a == "--put");
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "store calls of {lookups} cold lookups ({}{}), {conc} tasks",
        if get {
            "get of an absent domain, then "
        } else {
            ""
        },
        if behind { "put_behind" } else { "put" }
    );
    rt.block_on(async {
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("cache.db")).await?);
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for round in 1..=rounds {
            for (name, store) in [("sqlite", &sqlite), ("memory", &memory)] {
                let (cpu, switches, wall) =
                    run(Arc::clone(store), &format!("r{round}"), lookups, conc, get, behind).await?;
                println!(
                    "round {round} {name:<6}: {:>6.1} µs CPU and {:>5.2} context switches per lookup ({:.0} lookups/s)",
                    cpu * 1e6 / lookups as f64,
                    switches as f64 / lookups as f64,
                    lookups as f64 / wall
                );
            }
        }
        Ok::<(), BoxError>(())
    })
}
