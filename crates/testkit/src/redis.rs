//! A real `redis-server` for one test: loopback, a free port, a temp dir of its own, no
//! persistence (interop-lab §5). A data node ([`Server::start`], with extra arguments such
//! as `--requirepass` or `--replicaof`) or a Redis Sentinel ([`Server::start_sentinel`]).
//! Needs Debian's `redis-server` package; [`require`] says whether a test can run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a server could not be started or signalled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file, a port or the process could not be had.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// [`Server::restart`] of a server that runs.
    #[error("redis-server on port {0} is already running")]
    Running(u16),
    /// The server did not answer `PING` in time (or exited); its log follows.
    #[error("redis-server on port {port} did not answer PING: {log}")]
    NotReady {
        /// The server's port.
        port: u16,
        /// What the server wrote to its log.
        log: String,
    },
    /// `kill` did not deliver the signal.
    #[error("kill -{0} failed")]
    Signal(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Whether `redis-server` can be run. If not: panics when `MTA_STS_REQUIRE_INTEROP=1` says
/// every interop test must run, otherwise prints that `test` is skipped and why, and returns
/// `false` (the test then returns and passes).
pub fn require(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "redis-server is required (MTA_STS_REQUIRE_INTEROP=1) but cannot be run \
             (apt-get install redis-server)"
        );
        eprintln!(
            "SKIPPED: {test}: redis-server is not installed (apt-get install redis-server); \
             set MTA_STS_REQUIRE_INTEROP=1 to make this a failure"
        );
    }
    found
}

/// A plain data node ([`Server::start`]) for `test`, or `None` when [`require`] says the
/// test skips. Panics when `redis-server` is installed but does not start.
pub fn start_or_skip(test: &str) -> Option<Server> {
    require(test).then(|| Server::start(&[]).unwrap_or_else(|e| panic!("{test}: {e}")))
}

/// One `redis-server` process on 127.0.0.1 in a temp dir of its own; killed on drop.
pub struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Server {
    /// A data node on a free port, without persistence, with `extra` arguments appended
    /// (e.g. `["--requirepass", "secret"]`); started and answering `PING`.
    pub fn start(extra: &[&str]) -> Result<Server, Error> {
        let mut server = Server::stopped(extra)?;
        server.restart()?;
        Ok(server)
    }

    /// [`Server::start`] without the start: its port is chosen (and free) but nothing
    /// listens until [`Server::restart`], for a client that must start first.
    pub fn stopped(extra: &[&str]) -> Result<Server, Error> {
        let dir = tempdir()?;
        let port = free_port()?;
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(dir.path().display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        Ok(Server {
            child: None,
            port,
            dir,
            args,
        })
    }

    /// A Redis Sentinel on a free port: `sentinel.conf` in its dir (Sentinel rewrites its
    /// file, so it has one of its own) holds its `port`, `bind`, `daemonize` and `dir`,
    /// then `conf` (`sentinel monitor …`, `requirepass …`); started and answering `PING`.
    pub fn start_sentinel(conf: &str) -> Result<Server, Error> {
        let dir = tempdir()?;
        let port = free_port()?;
        let file = dir.path().join("sentinel.conf");
        std::fs::write(
            &file,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\n{conf}",
                dir.path().display()
            ),
        )
        .map_err(io("write sentinel.conf"))?;
        let mut server = Server {
            child: None,
            port,
            dir,
            args: vec![file.display().to_string(), "--sentinel".to_owned()],
        };
        server.restart()?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its temp dir (`--dir`; the log is `redis.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// (Re)starts the stopped server with the same port and arguments (a data node comes
    /// back empty) and waits until it answers `PING`.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.child.is_some() {
            return Err(Error::Running(self.port));
        }
        let log = std::fs::File::create(self.log_path()).map_err(io("create redis.log"))?;
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("spawn redis-server"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.answers() {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_some()));
            if exited || Instant::now() > deadline {
                self.stop();
                return Err(Error::NotReady {
                    port: self.port,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether the server answers `PING`: `+PONG`, or `-NOAUTH` from one with a password.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut buf).is_ok()
            && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
    }

    /// Kills the server at once, as a crash would (a no-op when stopped).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends signal `name` (`STOP`, `CONT`, …) to the running server.
    pub fn signal(&self, name: &str) -> Result<(), Error> {
        let Some(child) = &self.child else {
            return Err(Error::Signal(name.to_owned()));
        };
        let ok = Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()
            .map_err(io("run kill"))?
            .success();
        if ok {
            Ok(())
        } else {
            Err(Error::Signal(name.to_owned()))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tempdir() -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("mta-sts-redis")
        .tempdir()
        .map_err(io("create a temp dir"))
}

fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("find a free port"))
}
