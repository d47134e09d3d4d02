//! Socketmap benchmark harness (docs/design.md §6): a Postfix-like load generator against
//! `mta-sts daemon`, a trivial constant-reply server (the ceiling) and, when installed,
//! postfix-mta-sts-resolver, all against the same testkit world, in one run.
//!
//! ```text
//! cargo build --release --example socketmap_bench -p mta-sts-daemon
//! target/release/examples/socketmap_bench [--secs 5] [--conns 16] [--cold 1500] \
//!     [--peer /path/to/venv/bin/mta-sts-daemon] [--rss-policies 100000] [--only-rss] [--rounds 5]
//!     [--refresh-policies 100000] [--only-refresh]
//! ```
//!
//! Load: `--conns` connections, each with one outstanding request (as Postfix's smtp
//! processes do), for `--secs` seconds, loopback only. The warm phase runs `--rounds`
//! rounds of ceiling, daemon (and peer) back to back and reports the median ratio, since on
//! a shared 2-core machine single runs vary by ±15 %. Warm: keys cycle over 200 domains
//! cached beforehand. Cold: every request names a domain never asked before (TXT lookup +
//! HTTPS fetch each), once against the daemon with its default store (an SQLite file,
//! `flush_window` 100 ms, in the temporary directory), as users run it, and once against the
//! same daemon with the memory store, so the cost of the store shows. The two have the same
//! history (the warm phase runs against both); each first answers 200 fresh domains unmeasured, then they run in A B B A order (half the SQLite
//! daemon's lookups, the memory daemon's two halves, the rest of the SQLite daemon's): run
//! one after the other, whichever came first cost up to a tenth more CPU per lookup, even
//! with two identical memory-store daemons. CPU per fresh lookup: utime+stime of the server process
//! (`/proc/<pid>/stat`) over the cold phase divided by the lookups. RSS: a daemon
//! warm-started from an SQLite store holding `--rss-policies` policies (2 `mx` each; a third
//! with CRLF line ends, a third with LF, a third in a non-canonical line order).
//!
//! The peer needs DNS through /etc/resolv.conf on port 53 and policy hosts on port 443,
//! so the harness serves the world's zones on 127.0.53.x:53, proxies 127.0.44.x:443 to the
//! world's HTTPS server, points every `mta-sts.` name there, and runs the peer under
//! `unshare -m` with a bind-mounted resolv.conf (needs root).
//!
//! Floor: a bare blocking client (see `floor.rs`) does the same protocol work for `--cold`
//! further fresh domains in its own process, half of them before the daemons' cold runs and
//! half after (so a drift of the machine's load weighs on both sides alike): UDP TXT query, TLS
//! handshake with the fetcher's configuration, GET. Its CPU per lookup is the least any
//! client using the daemon's TLS stack can spend, and is printed beside the daemon's.
//!
//! Refresh (`--refresh-policies N`, or alone with `--only-refresh`): see `refresh.rs`.
//!
//! Profiling: `MTA_STS_BENCH_WRAP="valgrind --tool=callgrind"` runs each daemon under that
//! command (build with symbols: `CARGO_PROFILE_RELEASE_STRIP=none`, or the `profiling`
//! profile), and `MTA_STS_BENCH_WRAP_FLOOR` the floor client, to compare their profiles.
//!
//! Internal modes (the harness re-executes itself): `daemon CONFIG`, `trivial PORT`,
//! `floor DNS HTTPS CA FIRST COUNT`.

mod floor;
mod refresh;

/// The `mta-sts` binary's allocator, so that the daemons (and the floor) measured here
/// allocate as the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mta_sts_daemon::app::{self, ConfigSource};
use mta_sts_daemon::config::Config;
use mta_sts_resolver::store::sqlite::Synchronous;
use mta_sts_resolver::store::{SqliteOptions, SqliteStore, Store, StoredPolicy};
use mta_sts_socketmap::netstring::{Decoder, Limits, encode};
use mta_sts_testkit::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("daemon") => {
            let path = PathBuf::from(args.get(2).ok_or("daemon CONFIG")?);
            let config = Config::load(&path)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(app::run(
                ConfigSource::Explicit(path),
                config,
                mta_sts_net::activation::Inherited::none(),
            ))?;
            Ok(())
        }
        Some("trivial") => {
            let port: u16 = args.get(2).ok_or("trivial PORT")?.parse()?;
            tokio::runtime::Runtime::new()?.block_on(trivial_server(port))
        }
        Some("floor") => {
            let arg = |i: usize| {
                args.get(i)
                    .map(String::as_str)
                    .ok_or("floor DNS HTTPS CA FIRST COUNT")
            };
            let first: usize = arg(5)?.parse()?;
            let count: usize = arg(6)?.parse()?;
            let names: Vec<String> = (first..first + count)
                .map(mta_sts_testkit::world::bulk_name)
                .collect();
            floor::run(
                arg(2)?.parse()?,
                arg(3)?.parse()?,
                Path::new(arg(4)?),
                &names,
            )
        }
        _ => bench(&args),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `[min–max]` of the values.
fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("[{min:.2}–{max:.2}]")
}

fn opt<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Answers every request `OK secure match=mail.example servername=hostname`.
async fn trivial_server(port: u16) -> Result<(), BoxError> {
    let listener = tokio::net::TcpSocket::new_v4()?;
    listener.set_reuseaddr(true)?;
    listener.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let listener = listener.listen(4096)?;
    let reply = encode(b"OK secure match=mail.example servername=hostname");
    loop {
        let (mut s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        let reply = reply.clone();
        tokio::spawn(async move {
            let mut d = Decoder::new(Limits::default());
            let mut buf = vec![0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => d.feed(buf.get(..n).unwrap_or_default()),
                }
                while let Ok(Some(_)) = d.decode() {
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// One load run's figures.
#[derive(Debug, Default)]
struct Run {
    requests: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    replies_ok: u64,
    /// Every request's latency, sorted.
    latencies: Vec<Duration>,
}

impl Run {
    fn from_latencies(mut latencies: Vec<Duration>, secs: f64, replies_ok: u64) -> Run {
        latencies.sort();
        let pct = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(0.0)
        };
        Run {
            requests: latencies.len() as u64,
            secs,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            replies_ok,
            latencies,
        }
    }

    /// The figures of `self` and `other` as one run.
    fn merge(self, other: Run) -> Run {
        let mut latencies = self.latencies;
        latencies.extend(other.latencies);
        Run::from_latencies(
            latencies,
            self.secs + other.secs,
            self.replies_ok + other.replies_ok,
        )
    }

    fn qps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

/// `conns` connections, one outstanding request each, until `secs` pass or `keys` run out
/// (`keys(i)` names the i-th request's key; `None` = stop).
async fn load(
    addr: SocketAddr,
    map: &str,
    conns: usize,
    secs: f64,
    keys: Arc<dyn Fn(u64) -> Option<String> + Send + Sync>,
) -> Result<Run, BoxError> {
    let counter = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (counter, ok, stop, keys, map) = (
            counter.clone(),
            ok.clone(),
            stop.clone(),
            keys.clone(),
            map.to_owned(),
        );
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut d = Decoder::new(Limits::default());
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys(i) else { break };
                let t = Instant::now();
                if s.write_all(&encode(format!("{map} {key}").as_bytes()))
                    .await
                    .is_err()
                {
                    break;
                }
                let reply = loop {
                    if let Ok(Some(p)) = d.decode() {
                        break Some(p);
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => d.feed(buf.get(..n).unwrap_or_default()),
                    }
                };
                let Some(reply) = reply else { break };
                lat.push(t.elapsed());
                if reply.starts_with(b"OK") {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    Ok(Run::from_latencies(all, secs, ok.load(Ordering::Relaxed)))
}

/// CPU seconds per lookup of the bare client (`floor.rs`) over `count` fresh domains from
/// `first`, run in a child process so that only its own work is counted, and the seconds
/// of one handshake's public-key operations alone.
fn floor_cpu_per_lookup(world: &World, first: usize, count: usize) -> Result<(f64, f64), BoxError> {
    let out = self_command("MTA_STS_BENCH_WRAP_FLOOR")?
        .arg("floor")
        .arg(world.dns_addr().to_string())
        .arg(world.https_addr().to_string())
        .arg(world.ca_file())
        .args([first.to_string(), count.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FLOOR "))
        .ok_or_else(|| format!("floor client failed ({})", out.status))?;
    let crypto = text
        .lines()
        .find_map(|l| l.strip_prefix("CRYPTO "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or("floor client printed no CRYPTO line")?;
    let mut f = line.split_whitespace().map(str::parse::<f64>);
    match (f.next(), f.next()) {
        (Some(Ok(cpu)), Some(Ok(n))) if n > 0.0 => Ok((cpu / n, crypto)),
        _ => Err(format!("floor client printed `{line}`").into()),
    }
}

/// utime + stime of `pid` in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14, stime 15 (1-based); here index 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn wait_port(addr: SocketAddr, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A child process stopped when dropped: SIGTERM (so a daemon run under a profiler writes its
/// profile), SIGKILL if it is still there after 10 s.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command that runs this harness in another mode: prefixed by the command in the
/// environment variable `wrap` when set (e.g. `MTA_STS_BENCH_WRAP="valgrind
/// --tool=callgrind"` for the daemons), to profile them.
fn self_command(wrap: &str) -> Result<Command, BoxError> {
    let exe = std::env::current_exe()?;
    let wrap = std::env::var(wrap).unwrap_or_default();
    let mut words = wrap.split_whitespace();
    Ok(match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    })
}

fn spawn_daemon(dir: &Path, name: &str, body: &str) -> Result<(Kill, SocketAddr), BoxError> {
    let sm = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[socketmap]\nlisten = \"{sm}\"\n[http]\nlisten = \"{http}\"\n{body}"),
    )?;
    let child = self_command("MTA_STS_BENCH_WRAP")?
        .arg("daemon")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let child = Kill(child);
    if !wait_port(sm, 120) {
        return Err("daemon did not start".into());
    }
    Ok((child, sm))
}

/// A TCP proxy from `listen` to `to` (the peer needs port 443).
async fn proxy(listen: SocketAddr, to: SocketAddr) -> Result<(), BoxError> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    Ok(())
}

fn print_run(label: &str, r: &Run) {
    println!(
        "{label:<34} {:>9.0} q/s  p50 {:>6.3} ms  p99 {:>6.3} ms  ({} requests in {:.1} s, {} OK)",
        r.qps(),
        r.p50_ms,
        r.p99_ms,
        r.requests,
        r.secs,
        r.replies_ok
    );
}

/// The cold-phase labels.
const SQLITE: &str = "mta-sts daemon (sqlite, default)";
const MEMORY: &str = "mta-sts daemon (memory store)";
const PEER: &str = "postfix-mta-sts-resolver 1.5.1";

/// Runs every scenario and prints its figures.
///
/// Longer than our ~120-line rule, on purpose: the scenarios in the order they print, all
/// sharing the test world, the daemon and the optional peer; split up, each piece would
/// take all of that as arguments.
fn bench(args: &[String]) -> Result<(), BoxError> {
    let secs: f64 = opt(args, "--secs", 5.0);
    let conns: usize = opt(args, "--conns", 16);
    let cold: usize = opt(args, "--cold", 1500);
    let rss_policies: usize = opt(args, "--rss-policies", 100_000);
    let peer: String = opt(args, "--peer", String::new());
    let rounds: usize = opt(args, "--rounds", 5).max(1);
    let refresh_policies: usize = opt(args, "--refresh-policies", 0);
    if args.iter().any(|a| a == "--only-refresh") {
        let dir = tempfile::tempdir()?;
        let rt = tokio::runtime::Runtime::new()?;
        return refresh::refresh_phase(&rt, dir.path(), refresh_policies.max(1), conns, secs);
    }
    if args.iter().any(|a| a == "--only-rss") {
        let dir = tempfile::tempdir()?;
        return rss_phase(&tokio::runtime::Runtime::new()?, dir.path(), rss_policies);
    }
    const WARM: usize = 200;
    // Fresh domains each daemon answers, unmeasured, before the cold phase.
    const WARM_UP: usize = 200;
    let domains = WARM + 4 * cold + 2 * WARM_UP;
    println!(
        "socketmap bench: {conns} connections, one outstanding request each, {secs} s per warm run; {domains} testkit domains; {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let world = World::builder().bulk(domains).start();
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let name = |i: usize| mta_sts_testkit::world::bulk_name(i);

    let resolver = format!(
        "[resolver]\nnameservers = [\"{}\"]\nca_file = \"{}\"\nconnect_to = [\"{}\"]\ntimeout = \"10s\"\n",
        world.dns_addr(),
        world.ca_file().display(),
        world.connect_to_any()
    );
    // The daemon as users run it: the default store, an SQLite file (fsync within 100 ms).
    let (daemon, daemon_addr) = spawn_daemon(
        dir.path(),
        "daemon",
        &format!(
            "{resolver}[cache]\nstore = \"sqlite\"\npath = \"{}\"\n[defaults]\nbudget = \"20s\"\n",
            dir.path().join("cache.db").display()
        ),
    )?;
    // The same daemon with the memory store: what the default store costs.
    let (memory_daemon, memory_addr) = spawn_daemon(
        dir.path(),
        "memory",
        &format!("{resolver}[cache]\nstore = \"memory\"\n[defaults]\nbudget = \"20s\"\n"),
    )?;
    let trivial_port = free_port();
    let trivial = Kill(
        Command::new(std::env::current_exe()?)
            .args(["trivial", &trivial_port.to_string()])
            .spawn()?,
    );
    let trivial_addr = SocketAddr::from(([127, 0, 0, 1], trivial_port));
    if !wait_port(trivial_addr, 30) {
        return Err("trivial server did not start".into());
    }

    // The peer, when asked for and possible.
    let mut peer_proc: Option<(Kill, SocketAddr)> = None;
    if !peer.is_empty() {
        let ns = (1..50)
            .map(|n| Ipv4Addr::new(127, 0, 53, 100 + n))
            .find(|ip| {
                world
                    .dns()
                    .also_listen(world.handle(), SocketAddr::from((*ip, 53)))
                    .is_ok()
            });
        let web = (1..50)
            .map(|n| SocketAddr::from((Ipv4Addr::new(127, 0, 44, n), 443)))
            .find(|a| std::net::TcpListener::bind(a).is_ok());
        if let (Some(ns), Some(web)) = (ns, web) {
            for i in 0..domains {
                world.dns().set_a(
                    &format!("mta-sts.{}", name(i)),
                    &[match web.ip() {
                        std::net::IpAddr::V4(v4) => v4,
                        std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
                    }],
                );
            }
            rt.block_on(proxy(web, world.https_addr()))?;
            let resolv = dir.path().join("resolv.conf");
            std::fs::write(
                &resolv,
                format!("nameserver {ns}\noptions timeout:1 attempts:2\n"),
            )?;
            let port = free_port();
            let cfg = dir.path().join("peer.yml");
            std::fs::write(
                &cfg,
                format!(
                    "host: 127.0.0.1\nport: {port}\nreuse_port: true\nshutdown_timeout: 5\ncache: {{type: internal, options: {{cache_size: 100000}}}}\ndefault_zone: {{strict_testing: false, timeout: 10}}\n"
                ),
            )?;
            let child = Command::new("unshare")
                .args([
                    "-m",
                    "sh",
                    "-c",
                    "mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"",
                    "sh",
                ])
                .arg(&resolv)
                .arg(&peer)
                .arg("-c")
                .arg(&cfg)
                .args(["-v", "error"])
                .env("SSL_CERT_FILE", world.ca_file())
                .stdout(Stdio::null())
                .spawn()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let child = Kill(child);
            if wait_port(addr, 30) {
                peer_proc = Some((child, addr));
            } else {
                println!("peer: did not start");
            }
        } else {
            println!("peer: skipped (needs port 53 and 443 on loopback: run as root)");
        }
    }

    rt.block_on(async {
        // Warm up: cache the first WARM domains in each server. The memory-store daemon gets
        // the same history as the default one (these domains, then the warm rounds): two
        // memory-store daemons, only the first with the warm rounds behind it, measured
        // 1.04-1.11 against each other in CPU per fresh lookup; with the same history, 0.92-1.02.
        let warm_keys: Arc<dyn Fn(u64) -> Option<String> + Send + Sync> =
            Arc::new(move |i| Some(name(i as usize % WARM)));
        let first: Arc<dyn Fn(u64) -> Option<String> + Send + Sync> =
            Arc::new(move |i| (i < WARM as u64).then(|| name(i as usize)));
        load(daemon_addr, "postfix", 4, 60.0, first.clone()).await?;
        load(memory_addr, "postfix", 4, 60.0, first.clone()).await?;
        if let Some((_, addr)) = &peer_proc {
            load(*addr, "postfix", 4, 60.0, first.clone()).await?;
        }
        println!(
            "\n== warm cache ({WARM} cached domains, keys cycle over them; {rounds} rounds, ceiling and daemon back to back, ratios per round)"
        );
        let mut qps_ratios = Vec::new();
        let mut p99_ratios = Vec::new();
        let mut peer_ratios = Vec::new();
        for round in 1..=rounds {
            println!("round {round}");
            let ceiling = load(trivial_addr, "postfix", conns, secs, warm_keys.clone()).await?;
            print_run("trivial constant-reply server", &ceiling);
            let ours = load(daemon_addr, "postfix", conns, secs, warm_keys.clone()).await?;
            print_run("mta-sts daemon", &ours);
            let memory = load(memory_addr, "postfix", conns, secs, warm_keys.clone()).await?;
            print_run(MEMORY, &memory);
            qps_ratios.push(ours.qps() / ceiling.qps());
            p99_ratios.push(ours.p99_ms / ceiling.p99_ms);
            if let Some((_, addr)) = &peer_proc {
                let r = load(*addr, "postfix", conns, secs, warm_keys.clone()).await?;
                print_run("postfix-mta-sts-resolver 1.5.1", &r);
                peer_ratios.push(ours.qps() / r.qps());
            }
        }
        println!(
            "ratios (median of {rounds}): daemon/ceiling q/s {:.2} {}, p99 daemon/ceiling {:.2} {}{}",
            median(&qps_ratios),
            spread(&qps_ratios),
            median(&p99_ratios),
            spread(&p99_ratios),
            if peer_ratios.is_empty() {
                String::new()
            } else {
                format!(", daemon/peer q/s {:.1} {}", median(&peer_ratios), spread(&peer_ratios))
            }
        );

        println!("\n== cold (every request a domain never asked: TXT + HTTPS fetch)");
        // `count` fresh domains from the `first`-th.
        let fresh = |first: usize, count: usize| -> Arc<dyn Fn(u64) -> Option<String> + Send + Sync> {
            Arc::new(move |i| ((i as usize) < count).then(|| name(first + i as usize)))
        };
        let ours = [
            (SQLITE, daemon_addr, daemon.0.id(), WARM),
            (MEMORY, memory_addr, memory_daemon.0.id(), WARM + cold),
        ];
        // Whichever cold run came first used to cost up to a tenth more CPU per lookup (two
        // memory-store daemons, run one after the other: 1.02-1.06), and the SQLite daemon
        // always came first. So each daemon first answers WARM_UP fresh domains unmeasured,
        // then the two run in A B B A order (half of one's lookups, the other's two halves,
        // the rest of the first's), which also cancels a drift of the machine's load.
        for (i, (_, addr, _, _)) in ours.iter().enumerate() {
            load(*addr, "postfix", conns, 120.0, fresh(WARM + 4 * cold + i * WARM_UP, WARM_UP))
                .await?;
        }
        let half = cold / 2;
        // The floor too: half its lookups before the daemons' cold runs, half after.
        let floor_before = floor_cpu_per_lookup(&world, WARM + 3 * cold, half)?;
        let mut measured: [Option<(Run, f64)>; 2] = [None, None];
        for (which, skip, count) in [(0, 0, half), (1, 0, half), (1, half, cold - half), (0, half, cold - half)] {
            let (_, addr, pid, offset) = ours[which];
            let cpu0 = cpu_secs(pid);
            let r = load(addr, "postfix", conns, 120.0, fresh(offset + skip, count)).await?;
            let cpu = cpu_secs(pid) - cpu0;
            measured[which] = Some(match measured[which].take() {
                Some((before, cpu_before)) => (before.merge(r), cpu_before + cpu),
                None => (r, cpu),
            });
        }
        let mut targets: Vec<(&str, Run, f64)> = Vec::new();
        for ((label, ..), run) in ours.iter().zip(measured) {
            if let Some((r, cpu)) = run {
                targets.push((label, r, cpu));
            }
        }
        if let Some((c, addr)) = &peer_proc {
            let cpu0 = cpu_secs(c.0.id());
            let r = load(*addr, "postfix", conns, 120.0, fresh(WARM + 2 * cold, cold)).await?;
            targets.push((PEER, r, cpu_secs(c.0.id()) - cpu0));
        }
        let mut cold_runs = Vec::new();
        for (label, r, cpu) in targets {
            print_run(label, &r);
            println!(
                "{:<34} CPU {:.3} s for {} lookups = {:.3} ms CPU per fresh lookup",
                "",
                cpu,
                r.requests,
                cpu * 1e3 / r.requests.max(1) as f64
            );
            cold_runs.push((label, r, cpu));
        }
        let per_lookup = |label: &str| {
            cold_runs
                .iter()
                .find(|(l, _, _)| *l == label)
                .map(|(_, r, cpu)| (r.qps(), cpu / r.requests.max(1) as f64))
        };
        let (sqlite, memory, theirs) = (per_lookup(SQLITE), per_lookup(MEMORY), per_lookup(PEER));
        if let (Some(sqlite), Some(memory)) = (sqlite, memory) {
            println!(
                "ratios: cold lookups/s sqlite/memory {:.2}, CPU per lookup sqlite/memory {:.2}",
                sqlite.0 / memory.0,
                sqlite.1 / memory.1
            );
        }
        if let (Some(sqlite), Some(theirs)) = (sqlite, theirs) {
            println!(
                "ratios: cold lookups/s daemon/peer {:.1}, CPU per lookup daemon/peer {:.3}",
                sqlite.0 / theirs.0,
                sqlite.1 / theirs.1
            );
        }
        let floor_after = floor_cpu_per_lookup(&world, WARM + 3 * cold + half, cold - half)?;
        let floor = (floor_before.0 * half as f64 + floor_after.0 * (cold - half) as f64)
            / cold.max(1) as f64;
        let crypto = (floor_before.1 + floor_after.1) / 2.0;
        println!(
            "{:<34} CPU {:.3} ms per fresh lookup before the daemons' cold runs, {:.3} ms after",
            "floor halves",
            floor_before.0 * 1e3,
            floor_after.0 * 1e3
        );
        println!(
            "{:<34} CPU {:.3} ms per fresh lookup (bare blocking client: TXT + TLS handshake + GET, same TLS stack)",
            "floor",
            floor * 1e3
        );
        println!(
            "{:<34} CPU {:.3} ms per handshake (2 ECDSA P-256 verifications + X25519 key pair and agreement, tight loop)",
            "  of which public-key crypto alone",
            crypto * 1e3
        );
        if let Some(sqlite) = sqlite {
            print!("ratios: daemon/floor CPU per lookup {:.2}", sqlite.1 / floor);
            if let Some(memory) = memory {
                print!(" (memory store {:.2})", memory.1 / floor);
            }
            if let Some(theirs) = theirs {
                print!(
                    ", floor/peer {:.3}, public-key crypto alone/peer {:.3}",
                    floor / theirs.1,
                    crypto / theirs.1
                );
            }
            println!();
        }
        Ok::<(), BoxError>(())
    })?;
    drop(trivial);
    drop(daemon);
    drop(memory_daemon);
    drop(peer_proc);

    if refresh_policies > 0 {
        refresh::refresh_phase(&rt, dir.path(), refresh_policies, conns, secs)?;
    }
    rss_phase(&rt, dir.path(), rss_policies)
}

/// RSS with many cached policies: fill an SQLite store, warm-start a daemon from it.
fn rss_phase(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    rss_policies: usize,
) -> Result<(), BoxError> {
    println!("\n== resident memory with {rss_policies} cached policies");
    let db = dir.join("rss.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    rt.block_on(async {
        let store = SqliteStore::open_with(
            &db,
            SqliteOptions {
                synchronous: Synchronous::Normal,
                ..SqliteOptions::default()
            },
        )
        .await?;
        for i in 0..rss_policies {
            let d = format!("d{i}.rss.test");
            store
                .put(
                    &StoredPolicy {
                        // The three shapes of served bodies: canonical with CRLF, with LF, and
                        // another line order (kept verbatim in memory).
                        body: match i % 3 {
                            0 => format!("version: STSv1\r\nmode: enforce\r\nmx: mail.{d}\r\nmx: *.mx.{d}\r\nmax_age: 604800\r\n"),
                            1 => format!("version: STSv1\nmode: enforce\nmx: mail.{d}\nmx: *.mx.{d}\nmax_age: 604800\n"),
                            _ => format!("version: STSv1\nmode: enforce\nmax_age: 604800\nmx: mail.{d}\nmx: *.mx.{d}\n"),
                        },
                        domain: d,
                        record_id: "20240101T000000".to_owned(),
                        fetched_at: now,
                        expires_at: now + 604_800,
                    },
                    now,
                )
                .await?;
        }
        Ok::<(), BoxError>(())
    })?;
    let (empty, _) = spawn_daemon(dir, "empty", "[cache]\nstore = \"memory\"\n")?;
    std::thread::sleep(Duration::from_millis(500));
    let base = rss_mb(empty.0.id());
    drop(empty);
    let (full, _) = spawn_daemon(
        dir,
        "rss",
        &format!("[cache]\nstore = \"sqlite\"\npath = \"{}\"\n", db.display()),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_mb(full.0.id());
    println!(
        "daemon RSS: {base:.1} MB empty, {rss:.1} MB with {rss_policies} policies ({:.0} bytes per policy)",
        (rss - base) * 1024.0 * 1024.0 / rss_policies.max(1) as f64
    );
    Ok(())
}
