//! Measurement harness (not a test): one new TLS connection per request against the policy
//! host and against nginx serving the same policy with the same certificate, in one run.
//!
//! ```text
//! cargo build --release -p mta-sts-cli -p mta-sts-policy-host --example handshake_bench
//! target/release/examples/handshake_bench --server target/release/mta-sts \
//!     [--nginx /usr/sbin/nginx] [--conc 16] [--secs 5] [--rounds 3] [--resume]
//! ```
//!
//! Both servers get one ECDSA P-256 leaf issued by a test CA (chain: leaf, CA), the same
//! policy file, and listen on loopback; `mta-sts serve` runs with its shipped defaults, nginx
//! with `worker_processes auto` (one per core), TLS 1.2 + 1.3, session tickets on, as a
//! Debian nginx serves a static file. `--conc` clients each loop: TCP connect, TLS handshake
//! (full handshake: the client keeps no session, as a sending MTA fetching a policy once a
//! day does; `--resume` lets it resume with a ticket instead), `GET
//! /.well-known/mta-sts.txt` with `Connection: close`, read to the end, check the 200. Rounds
//! alternate the two servers so both see the same machine. Printed per round and server:
//! requests/s, latency p50/p90/p99/max, and the server's CPU per request (from
//! `/proc/PID/stat`, whole process).

use std::error::Error;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mta_sts_testkit::{TestCa, Validity};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const HOST: &str = "mta-sts.example.org";
/// What `mta-sts serve` answers for the configuration below, byte for byte (CRLF, RFC 8461
/// §3.2), so both servers send the same body.
const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

struct Args {
    server: PathBuf,
    nginx: Option<PathBuf>,
    conc: usize,
    secs: u64,
    rounds: usize,
    resume: bool,
}

fn args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        server: PathBuf::from("target/release/mta-sts"),
        nginx: which("nginx"),
        conc: 16,
        secs: 5,
        rounds: 3,
        resume: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => a.server = PathBuf::from(value()?),
            "--nginx" => a.nginx = Some(PathBuf::from(value()?)),
            "--no-nginx" => a.nginx = None,
            "--conc" => a.conc = value()?.parse()?,
            "--secs" => a.secs = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--resume" => a.resume = true,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn which(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn free_port() -> Result<u16, Box<dyn Error>> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process that is killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl Drop for Server {
    /// SIGTERM first, so a server run under a profiler writes its profile; SIGKILL after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU of the process and its children (nginx's workers), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |p: &str| -> u64 {
        let Ok(stat) = std::fs::read_to_string(p) else {
            return 0;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return 0;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14..17 of stat (utime stime cutime cstime) are 11..15 after the name.
        f.get(11..15)
            .map(|v| v.iter().filter_map(|x| x.parse::<u64>().ok()).sum())
            .unwrap_or(0)
    };
    let mut total = ticks(&format!("/proc/{pid}/stat"));
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for c in children.split_whitespace() {
            total += ticks(&format!("/proc/{c}/stat"));
        }
    }
    total as f64 / 100.0
}

fn wait_ready(addr: SocketAddr) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {addr}").into())
}

fn start_ours(bin: &Path, dir: &Path) -> Result<Server, Box<dyn Error>> {
    let port = free_port()?;
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\ncert = \"fullchain.pem\"\nkey = \"key.pem\"\n\
             [default]\nmode = \"enforce\"\nmx = [\"mx1.example.net\", \"*.example.net\"]\n\
             max_age = 604800\ndomains = [\"example.org\"]\n"
        ),
    )?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = Server {
        name: "mta-sts serve",
        child,
        pid,
        addr,
    };
    wait_ready(addr)?;
    Ok(server)
}

fn start_nginx(bin: &Path, dir: &Path) -> Result<Server, Box<dyn Error>> {
    let port = free_port()?;
    let root = dir.join("www");
    std::fs::create_dir_all(root.join(".well-known"))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(root.join(".well-known/mta-sts.txt"), POLICY)?;
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  \
             server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name {HOST};\n    \
             ssl_certificate {d}/fullchain.pem;\n    ssl_certificate_key {d}/key.pem;\n    \
             ssl_protocols TLSv1.2 TLSv1.3;\n    root {d}/www;\n    \
             location = /.well-known/mta-sts.txt {{ default_type text/plain; }}\n  }}\n}}\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = Server {
        name: "nginx",
        child,
        pid,
        addr,
    };
    wait_ready(addr)?;
    Ok(server)
}

/// One request on a new connection; its latency.
async fn one(connector: &TlsConnector, addr: SocketAddr) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(ServerName::try_from(HOST)?.to_owned(), tcp)
        .await?;
    tls.write_all(
        format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = Vec::with_capacity(1024);
    // Servers may close without close_notify after `Connection: close`; what was read counts.
    let _ = tls.read_to_end(&mut answer).await;
    if !answer.starts_with(b"HTTP/1.1 200") || !answer.ends_with(POLICY.as_bytes()) {
        return Err(format!("unexpected answer: {}", String::from_utf8_lossy(&answer)).into());
    }
    Ok(start.elapsed())
}

struct Round {
    requests: usize,
    rps: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    cpu_ms: f64,
    errors: usize,
}

async fn round(
    server: &Server,
    connector: TlsConnector,
    conc: usize,
    secs: u64,
) -> Result<Round, Box<dyn Error>> {
    // Warm up: the first handshakes pay for lazily built state on both sides.
    for _ in 0..50 {
        one(&connector, server.addr).await?;
    }
    let cpu_before = cpu_seconds(server.pid);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let connector = connector.clone();
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < end {
                match one(&connector, addr).await {
                    Ok(d) => lat.push(d),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid) - cpu_before;
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Round {
        requests: all.len(),
        rps: all.len() as f64 / elapsed,
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        max: all.last().copied().unwrap_or_default(),
        cpu_ms: cpu * 1000.0 / all.len().max(1) as f64,
        errors,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("handshake bench CA")?;
    let leaf = ca.issue(&[HOST], Validity::Current)?;
    let chain: String = leaf.cert_pem.clone() + &ca.pem();
    std::fs::write(dir.path().join("fullchain.pem"), chain)?;
    std::fs::write(dir.path().join("key.pem"), &leaf.key_pem)?;

    let mut client = (*ca.client_config()?).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !args.resume {
        client.resumption = rustls::client::Resumption::disabled();
    }
    let connector = TlsConnector::from(Arc::new(client));

    let ours = start_ours(&args.server, dir.path())?;
    let nginx = match &args.nginx {
        Some(bin) => Some(start_nginx(bin, dir.path())?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{} clients, {} s a round, {} handshakes",
        args.conc,
        args.secs,
        if args.resume { "resumed" } else { "full" }
    );
    println!(
        "{:<14} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6} {:>8}",
        "server",
        "round",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "cpu ms/req",
        "errors",
        "requests"
    );
    for r in 1..=args.rounds {
        let mut servers: Vec<&Server> = std::iter::once(&ours).chain(nginx.as_ref()).collect();
        if r % 2 == 0 {
            servers.reverse();
        }
        for server in servers {
            let res = runtime.block_on(round(server, connector.clone(), args.conc, args.secs))?;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{:<14} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10.3} {:>6} {:>8}",
                server.name,
                r,
                res.rps,
                ms(res.p50),
                ms(res.p90),
                ms(res.p99),
                ms(res.max),
                res.cpu_ms,
                res.errors,
                res.requests
            );
        }
    }
    Ok(())
}
