//! Helpers for the `mta-sts serve` process tests: a temporary directory with a `serve.toml`
//! and a policy host certificate from a testkit CA, `mta-sts serve` run on it (one-shot
//! modes, or started and waited for), its signals and its log; and the `_mta-sts` record
//! that `serve --print-records` prints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use mta_sts_testkit::{TestCa, Validity};

use crate::daemon_support::{bin, free_port};

/// The `mta-sts` binary, with `NO_COLOR=1`.
pub fn mta_sts() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("NO_COLOR", "1");
    cmd
}

/// The value (`v=STSv1; id=…;`) of the `_mta-sts.DOMAIN.` TXT line in the output of
/// `serve --print-records`; panics naming the output when there is none.
pub fn sts_txt(records: &str, domain: &str) -> String {
    let prefix = format!("_mta-sts.{domain}. IN TXT \"");
    records
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.strip_suffix('"')))
        .unwrap_or_else(|| panic!("no TXT line in {records}"))
        .to_owned()
}

/// A `mta-sts serve` set-up in a temporary directory: `host.pem` (a certificate for the
/// policy hosts, followed by its CA's), `host.key` and `serve.toml` listening on a free
/// loopback port. [`ServeProc::start`] runs the server, which is killed on drop.
pub struct ServeProc {
    dir: tempfile::TempDir,
    /// `serve.toml` in the directory.
    pub config: PathBuf,
    /// The HTTPS port of `listen`.
    pub port: u16,
    child: Option<Child>,
}

impl ServeProc {
    /// Writes the certificate for `hosts` issued by `ca`, and `serve.toml` =
    /// `listen = "127.0.0.1:PORT"` (a free port) followed by `body`: top-level keys first
    /// (`cert = "host.pem"`, `key = "host.key"` where the domains take them from), then
    /// the sections. Nothing is started.
    pub fn new(ca: &TestCa, hosts: &[&str], body: &str) -> ServeProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let issued = ca.issue(hosts, Validity::Current).expect("issue");
        std::fs::write(
            dir.path().join("host.pem"),
            format!("{}{}", issued.cert_pem, ca.pem()),
        )
        .expect("cert");
        std::fs::write(dir.path().join("host.key"), &issued.key_pem).expect("key");
        let port = free_port();
        let config = dir.path().join("serve.toml");
        std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\n{body}")).expect("config");
        ServeProc {
            dir,
            config,
            port,
            child: None,
        }
    }

    /// The temporary directory (relative paths of `serve.toml` are relative to it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `mta-sts serve ARGS --config serve.toml` (`NO_COLOR=1`), for more arguments.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = mta_sts();
        cmd.arg("serve")
            .args(args)
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    /// Runs [`ServeProc::command`] to its end (`--check-config`, `--print-records`, …).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run mta-sts serve")
    }

    /// The `--connect-to` that sends `host:443` to this server.
    pub fn connect_to(&self, host: &str) -> String {
        format!("{host}:443:127.0.0.1:{}", self.port)
    }

    /// Starts `mta-sts serve --config serve.toml` as an administrator would (no `RUST_LOG`,
    /// no `NO_COLOR`), standard error into `serve.log`, and waits until it accepts
    /// connections on its port; panics with the log if it does not within 20 s.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "serve already started");
        let log = std::fs::File::create(self.path("serve.log")).expect("log");
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn serve");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }

    /// The process id of the started server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("serve started").id()
    }

    /// Sends signal `name` (`TERM`, `HUP`, …) to the started server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// The server's exit status, once it exits within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("serve started");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
