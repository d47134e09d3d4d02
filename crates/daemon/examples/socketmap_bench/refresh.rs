//! The refresh phase (`--refresh-policies N`, 0 skips it): how fast the proactive refresher
//! refetches N due policies, and what that does to the warm socketmap rate meanwhile.
//!
//! A testkit world of N domains; an SQLite store holding a policy for each, fetched two days
//! ago under an old `id`, so all N are due under `refresh = "1d"`. A daemon warm-starts
//! from it (its refresher's first pass starts at once, `[cache] refresh_concurrency` at its
//! default). Twice, each time with a fresh store and daemon: first the pass alone (the
//! refresh rate of an idle daemon); then with load: until the pass ends
//! (`mta_sts_refresh_passes_total` on `/metrics`), `--conns` connections query 200 of the
//! cached domains back to back in `--secs` windows, and after it the same load on the same
//! daemon is the baseline. Printed: policies refreshed per second (over the pass's own
//! `mta_sts_refresh_last_pass_duration_seconds`), warm q/s and p99 during and after, and the
//! policy fetches the world's HTTPS server saw. The world (DNS and HTTPS for every
//! refetch) runs in the harness on the same two cores, at normal priority; a third pass
//! under load repeats it with the world's threads at nice 19, as if its hosts were remote,
//! so the figure shows the daemon's own cost.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mta_sts_resolver::store::sqlite::Synchronous;
use mta_sts_resolver::store::{SqliteOptions, SqliteStore, Store, StoredPolicy};
use mta_sts_testkit::World;
use mta_sts_testkit::world::bulk_name;

use crate::{BoxError, Kill, Run, free_port, load, print_run, wait_port};

/// Cached domains the warm load cycles over.
const WARM: usize = 200;

pub(crate) fn refresh_phase(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    n: usize,
    conns: usize,
    secs: f64,
) -> Result<(), BoxError> {
    println!("\n== proactive refresh of {n} due policies: alone, then with warm load alongside");
    let world = World::builder().bulk(n.max(WARM)).start();
    pass(rt, &world, &dir.join("idle"), n, None)?;
    pass(rt, &world, &dir.join("loaded"), n, Some((conns, secs)))?;
    // The world stands in for policy hosts and DNS servers elsewhere on the internet: at
    // nice 19 it takes only the CPU left over, so what remains is the daemon's own cost.
    let niced = renice_world(19);
    println!("-- again, the world's {niced} threads at nice 19 (as if remote)");
    pass(rt, &world, &dir.join("remote"), n, Some((conns, secs)))?;
    renice_world(0);
    Ok(())
}

/// Sets the nice value of the testkit world's threads (`testkit-worker`); how many.
fn renice_world(nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| {
            let path = t.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let tid: i32 = path.file_name()?.to_str()?.parse().ok()?;
            (name.trim() == "testkit-worker").then_some(tid)
        })
        .filter(|tid| {
            rustix::process::Pid::from_raw(*tid)
                .is_some_and(|pid| rustix::process::setpriority_process(Some(pid), nice).is_ok())
        })
        .count()
}

/// One daemon warm-started with `n` due policies; its first refresher pass, with `load`
/// (connections, seconds a window) running alongside until the pass ends, or alone.
fn pass(
    rt: &tokio::runtime::Runtime,
    world: &World,
    dir: &Path,
    n: usize,
    load_with: Option<(usize, f64)>,
) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let db = dir.join("refresh.db");
    seed(rt, &db, n.max(WARM))?;
    let fetched_before = policy_fetches(world);
    let sm = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("refresh.toml");
    std::fs::write(
        &config,
        format!(
            "[socketmap]\nlisten = \"{sm}\"\n[http]\nlisten = \"{http}\"\n\
             [resolver]\nnameservers = [\"{}\"]\nca_file = \"{}\"\nconnect_to = [\"{}\"]\ntimeout = \"10s\"\n\
             [cache]\nstore = \"sqlite\"\npath = \"{}\"\nrefresh = \"1d\"\n",
            world.dns_addr(),
            world.ca_file().display(),
            world.connect_to_any(),
            db.display()
        ),
    )?;
    let daemon = Kill(
        Command::new(std::env::current_exe()?)
            .arg("daemon")
            .arg(&config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()?,
    );
    if !wait_port(sm, 300) || !wait_port(http, 30) {
        return Err("daemon did not start".into());
    }
    let ready = Instant::now();
    let keys: Arc<dyn Fn(u64) -> Option<String> + Send + Sync> =
        Arc::new(|i| Some(bulk_name(i as usize % WARM)));
    let during = rt.block_on(async {
        let mut during: Vec<Run> = Vec::new();
        while metric(http, "mta_sts_refresh_passes_total").await? < 1.0 {
            match load_with {
                Some((conns, secs)) => {
                    let r = load(sm, "postfix", conns, secs, keys.clone()).await?;
                    let backlog = metric(http, "mta_sts_refresh_backlog").await?;
                    print_run(&format!("during refresh (backlog {backlog:.0})"), &r);
                    during.push(r);
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok::<_, BoxError>(during)
    })?;
    let wall = ready.elapsed().as_secs_f64();
    // A pass longer than the refresher's tick is followed at once by a (nearly empty) second
    // one, whose duration the gauge then shows: use the wall time to the first pass's end.
    let seconds = match rt.block_on(metric(http, "mta_sts_refresh_passes_total"))? {
        1.0 => rt.block_on(metric(http, "mta_sts_refresh_last_pass_duration_seconds"))?,
        _ => wall,
    };
    let refreshed = rt.block_on(metric(http, "mta_sts_refreshes_total"))?;
    let failed = rt.block_on(metric(http, "mta_sts_refresh_failures_total"))?;
    println!(
        "refresh pass {}: {refreshed:.0} refreshed, {failed:.0} failed in {seconds:.1} s = {:.0} policies/s; the world's HTTPS server saw {} policy fetches",
        if load_with.is_some() {
            "under warm load"
        } else {
            "alone"
        },
        refreshed / seconds.max(1e-9),
        policy_fetches(world) - fetched_before
    );
    if let Some((conns, secs)) = load_with {
        let after = rt.block_on(load(sm, "postfix", conns, secs, keys))?;
        print_run("after refresh (baseline)", &after);
        if during.is_empty() {
            println!("the pass ended before the first load window: lower --secs or raise N");
        } else {
            let qps = during.iter().map(Run::qps).sum::<f64>() / during.len() as f64;
            let p99 = during.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
            println!(
                "ratios: warm q/s during refresh / after {:.2} (mean of {} windows), worst p99 during {p99:.3} ms vs {:.3} ms after",
                qps / after.qps(),
                during.len(),
                after.p99_ms
            );
        }
    }
    drop(daemon);
    Ok(())
}

fn policy_fetches(world: &World) -> usize {
    world
        .https()
        .all_requests()
        .iter()
        .filter(|r| r.path == "/.well-known/mta-sts.txt")
        .count()
}

/// N policies fetched two days ago under an id the world no longer publishes.
fn seed(rt: &tokio::runtime::Runtime, db: &Path, n: usize) -> Result<(), BoxError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let fetched_at = now - 2 * 86_400;
    rt.block_on(async {
        let store = SqliteStore::open_with(
            db,
            SqliteOptions {
                synchronous: Synchronous::Normal,
                ..SqliteOptions::default()
            },
        )
        .await?;
        for i in 0..n {
            let d = bulk_name(i);
            store
                .put(
                    &StoredPolicy {
                        body: format!(
                            "version: STSv1\r\nmode: enforce\r\nmx: mail.{d}\r\nmax_age: 604800\r\n"
                        ),
                        domain: d,
                        record_id: "old".to_owned(),
                        fetched_at,
                        expires_at: fetched_at + 604_800,
                    },
                    now,
                )
                .await?;
        }
        Ok::<(), BoxError>(())
    })
}

/// The value of an unlabelled metric on the daemon's `/metrics`.
async fn metric(http: SocketAddr, name: &str) -> Result<f64, BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .ok_or_else(|| format!("/metrics has no {name}").into())
}
