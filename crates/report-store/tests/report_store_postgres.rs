//! The store suite (tests/common) against a real PostgreSQL server that this test starts
//! itself (initdb + pg_ctl in a temp dir, loopback, a free port; interop-lab §5).
//!
//! Without PostgreSQL installed the test prints why and passes, unless
//! `MTA_STS_REQUIRE_INTEROP=1`, when it fails. CI: `apt-get install -y postgresql`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use mta_sts_report_store::{PostgresStore, ReportStore, SummaryFilter};

struct Server {
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

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
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

fn start() -> Result<Server, String> {
    let bin =
        find_bin().ok_or("no /usr/lib/postgresql/*/bin/initdb (apt-get install -y postgresql)")?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("mta-sts-pg")
        .tempdir()
        .map_err(|e| e.to_string())?;
    if as_postgres {
        // initdb refuses root: the server runs as the postgres user, which must own the dir.
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
    let log = server.dir.path().join("pg.log");
    let opts = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
        server.dir.path().display()
    );
    let out = server
        .cmd("pg_ctl")
        .arg("-D")
        .arg(server.data())
        .arg("-l")
        .arg(&log)
        .args(["-o", &opts, "-w", "start"])
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    Ok(server)
}

fn skip_or_fail(why: &str) {
    if std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("PostgreSQL needed (MTA_STS_REQUIRE_INTEROP=1): {why}");
    }
    eprintln!("SKIPPED: PostgreSQL store tests: {why}");
}

#[tokio::test]
async fn postgres_store_suite() {
    let server = match start() {
        Ok(s) => s,
        Err(why) => return skip_or_fail(&why),
    };
    let store = Arc::new(PostgresStore::connect(&server.url()).await.unwrap());
    common::store_suite(store.clone()).await;
    let summary = store.summary(&SummaryFilter::default()).await.unwrap();
    // A second connection (schema creation idempotent) sees the same data.
    let again = PostgresStore::connect(&server.url()).await.unwrap();
    assert_eq!(
        again.summary(&SummaryFilter::default()).await.unwrap(),
        summary
    );
    assert_eq!(again.count().await.unwrap(), store.count().await.unwrap());
    // Concurrent duplicate inserts of the same report: stored once.
    let report = mta_sts_report_store::ParsedReport::from_json(
        &std::fs::read(common::corpus_dir().join("009.json")).unwrap(),
        "t",
    )
    .unwrap();
    let mut r2 = report.clone();
    r2.report.report_id = "concurrent".into();
    let (a, b) = tokio::join!(store.insert(&r2, "a"), again.insert(&r2, "b"));
    let new = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|i| matches!(i, mta_sts_report_store::Inserted::New(_)))
        .count();
    assert_eq!(new, 1);
    drop(server);
}

#[tokio::test]
async fn postgres_unreachable_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PostgresStore::connect(&format!("postgres://u:secret@127.0.0.1:{port}/db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open the report database"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
