//! A real PostgreSQL server for one test: `initdb` + `pg_ctl` in a temp dir, loopback, a
//! free port, trust authentication (interop-lab §5). Run as root it runs as the `postgres`
//! user, since `initdb` refuses root. Needs Debian's `postgresql` package.

use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL server of its own in a temp dir; stopped when dropped.
pub struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Server {
    fn cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`pg_ctl -m immediate`), as a crash would.
    pub fn stop(&self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn restart(&self) -> Result<(), String> {
        let log = self.dir.path().join("pg.log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-o", &opts, "-w", "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start failed: {} {}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Initialises and starts a server; `Err` says why not (PostgreSQL not installed, …).
pub fn start() -> Result<Server, String> {
    let bin =
        find_bin().ok_or("no /usr/lib/postgresql/*/bin/initdb (apt-get install -y postgresql)")?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("mta-sts-pg")
        .tempdir()
        .map_err(|e| e.to_string())?;
    if as_postgres {
        // initdb refuses root: the server runs as the postgres user, which must own it.
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("chown postgres failed (no postgres user?)".into());
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let server = Server {
        dir,
        bin,
        port,
        as_postgres,
    };
    let out = server
        .cmd("initdb")
        .arg("-D")
        .arg(server.data())
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    server.restart()?;
    Ok(server)
}

/// For a test that cannot start PostgreSQL: prints why and returns (the test passes), or
/// panics when `MTA_STS_REQUIRE_INTEROP=1` says every interop test must run.
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("PostgreSQL needed (MTA_STS_REQUIRE_INTEROP=1): {why}");
    }
    eprintln!("SKIPPED: {test}: {why}");
}
