//! Helpers for the `mta-sts daemon` process tests: spawn the binary with a configuration,
//! talk socketmap and HTTP to it, send signals, count its file descriptors.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mta_sts_testkit::World;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mta-sts")
}

/// Whether interop programs are required (CI): then a missing one fails the test.
pub fn require_interop() -> bool {
    std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1")
}

/// `true` when `program` runs; otherwise prints why the test skips (or panics in CI).
pub fn have(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !require_interop(),
            "{program} is required (MTA_STS_REQUIRE_INTEROP=1): apt-get install {package}"
        );
        eprintln!("SKIP: {program} not installed (apt-get install {package})");
    }
    found
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `N` distinct free ports: all held at once while picked, so that two calls of
/// [`free_port`] in a row cannot hand out the same port twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("free port").port())
}

/// The `[resolver]` section pointing at `world`.
pub fn resolver_section(world: &World) -> String {
    format!(
        "[resolver]\nnameservers = [\"{}\"]\nca_file = \"{}\"\nconnect_to = [\"{}\"]\ntimeout = \"3s\"\n",
        world.dns_addr(),
        world.ca_file().display(),
        world.connect_to_any()
    )
}

/// A daemon process.
pub struct DaemonProc {
    pub child: Child,
    pub socketmap: SocketAddr,
    pub http: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl DaemonProc {
    /// Writes `body` (everything but `[socketmap] listen` and `[http]`) plus fresh ports
    /// into `dir/daemon.toml` and starts `mta-sts daemon --config` on it.
    pub fn start(
        dir: &Path,
        socketmap_extra: &str,
        body: &str,
        env: &[(&str, &str)],
    ) -> DaemonProc {
        let [socketmap, http] = free_ports::<2>();
        let socketmap: SocketAddr = format!("127.0.0.1:{socketmap}").parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        let config = dir.join("daemon.toml");
        std::fs::write(
            &config,
            format!("[socketmap]\nlisten = \"{socketmap}\"\n{socketmap_extra}\n[http]\nlisten = \"{http}\"\n{body}"),
        )
        .unwrap();
        Self::spawn(config, socketmap, http, env)
    }

    /// Starts a daemon on an existing configuration file with known ports.
    pub fn spawn(
        config: PathBuf,
        socketmap: SocketAddr,
        http: SocketAddr,
        env: &[(&str, &str)],
    ) -> DaemonProc {
        Self::spawn_args(config, socketmap, http, &[], env)
    }

    /// [`DaemonProc::spawn`] with extra command-line arguments (e.g. `-v`).
    pub fn spawn_args(
        config: PathBuf,
        socketmap: SocketAddr,
        http: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> DaemonProc {
        let log = config.with_file_name(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(bin());
        cmd.args(["daemon", "--config"])
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn mta-sts daemon");
        let mut d = DaemonProc {
            child,
            socketmap,
            http,
            config,
            log,
        };
        d.wait_ready();
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited early ({status}): {}", self.log_text());
            }
            if TcpStream::connect(self.socketmap).is_ok() && TcpStream::connect(self.http).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon not ready: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn query(&self, request: &str) -> String {
        let mut s = TcpStream::connect(self.socketmap).expect("connect socketmap");
        query_on(&mut s, request)
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Open file descriptors of the daemon process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One socketmap query on an open connection.
pub fn query_on(s: &mut TcpStream, request: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{}:{request},", request.len()).as_bytes())
        .expect("write");
    let mut len = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        s.read_exact(&mut byte).expect("reply length");
        if byte[0] == b':' {
            break;
        }
        len.push(byte[0]);
    }
    let n: usize = String::from_utf8(len).unwrap().parse().unwrap();
    let mut data = vec![0u8; n + 1];
    s.read_exact(&mut data).expect("reply");
    data.pop();
    String::from_utf8(data).unwrap()
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}
