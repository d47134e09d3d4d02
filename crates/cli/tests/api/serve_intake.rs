//! RFC 8460 §5.4 end to end: TLS-RPT reports POSTed over real HTTPS to the `mta-sts serve`
//! binary land in the report store of `mta-sts report` (SQLite, and PostgreSQL when
//! installed), once per report-id; bad reports get 400; when the store is unavailable the
//! report is spooled, and the spool moves into the store by itself once it works (or a
//! `mta-sts report import` of the spool recovers it) (§5.5).
//!
//! The gzip reports are sent by our own sender (`mta_sts_report_store::deliver::post_https`,
//! what `mta-sts report send` uses); the JSON ones by a raw HTTP/1.1 client here, to read
//! the answer's body.

use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mta_sts_report_store::deliver::{DeliveryConfig, post_https, read_pem_certs};
use mta_sts_testkit::Pki;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::daemon_support::free_port;
use crate::serve_support::{ServeProc, mta_sts};

const HOST: &str = "mta-sts.served.test";

fn report(id: &str, ok: u64, failed: u64) -> String {
    format!(
        r#"{{"organization-name":"Sender Inc.","date-range":{{"start-datetime":"2024-03-01T00:00:00Z","end-datetime":"2024-03-01T23:59:59Z"}},"contact-info":"tlsrpt@sender.example","report-id":"{id}","policies":[{{"policy":{{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce","mx: mx1.served.test","max_age: 604800"],"policy-domain":"served.test"}},"summary":{{"total-successful-session-count":{ok},"total-failure-session-count":{failed}}}}}]}}"#
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `mta-sts report --db DB ARGS…`.
fn report_cmd(db: &str, args: &[&str]) -> Output {
    mta_sts()
        .args(["report", "--db", db])
        .args(args)
        .output()
        .expect("mta-sts report")
}

/// The stored copies of `report_id` (`report show ID --json`).
fn stored(db: &str, report_id: &str) -> Vec<Value> {
    let out = report_cmd(db, &["show", report_id, "--json"]);
    if out.status.code() == Some(1) {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    v.as_array().cloned().expect("array")
}

/// (successful, failed) sessions for served.test on 2024-03-01 (`report summary --json`).
fn totals(db: &str) -> (u64, u64, u64) {
    let out = report_cmd(db, &["summary", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter(|d| d["policy_domain"] == "served.test" && d["day"] == "2024-03-01")
        .fold((0, 0, 0), |(r, s, f), d| {
            (
                r + d["reports"].as_u64().unwrap_or(0),
                s + d["successful"].as_u64().unwrap_or(0),
                f + d["failed"].as_u64().unwrap_or(0),
            )
        })
}

fn spooled(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// A certificate for the policy host, a `serve.toml` with `[tlsrpt]`, the running binary
/// ([`ServeProc`], which it derefs to), and the clients that POST reports to it.
struct Serve {
    pki: Pki,
    serve: ServeProc,
}

impl Deref for Serve {
    type Target = ServeProc;

    fn deref(&self) -> &ServeProc {
        &self.serve
    }
}

impl DerefMut for Serve {
    fn deref_mut(&mut self) -> &mut ServeProc {
        &mut self.serve
    }
}

impl Serve {
    fn new(tlsrpt: &str) -> Serve {
        let pki = Pki::new().expect("pki");
        let serve = ServeProc::new(
            pki.ca(),
            &[HOST],
            &format!(
                "[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\nmax_age = 604800\ncert = \"host.pem\"\nkey = \"host.key\"\n\n[tlsrpt]\nintake_path = \"/tlsrpt\"\n{tlsrpt}"
            ),
        );
        Serve { pki, serve }
    }

    fn check_config(&self) -> Output {
        self.run(&["--check-config"])
    }

    /// [`ServeProc::start`], off the runtime's async workers.
    fn start(&mut self) {
        tokio::task::block_in_place(|| self.serve.start());
    }

    /// POSTs `body` with `content_type` over HTTP/1.1; status and body of the answer.
    async fn post(&self, body: &[u8], content_type: &str) -> (u16, String) {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let connector = TlsConnector::from(self.pki.ca().client_config().expect("client config"));
        let name = ServerName::try_from(HOST.to_owned()).expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("TLS");
        let head = format!(
            "POST /tlsrpt HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.expect("write");
        tls.write_all(body).await.expect("write");
        let mut answer = Vec::new();
        // The server may close without a TLS close_notify after `Connection: close`.
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// POSTs gzip with our own TLS-RPT sender, as `mta-sts report send` delivers.
    async fn send_gzip(&self, json: &str) -> Result<u16, String> {
        let config = DeliveryConfig {
            extra_roots: read_pem_certs(self.pki.ca().pem().as_bytes()).expect("ca"),
            connect_to: vec![self.connect_to(HOST).parse().expect("connect-to")],
            timeout: Duration::from_secs(20),
            ..DeliveryConfig::default()
        };
        post_https(
            &config,
            &format!("https://{HOST}/tlsrpt"),
            &gzip(json.as_bytes()),
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// Posts to `serve` and checks the store at `db` (any `--db` location): new reports are
/// stored once (201), a re-sent one is success without a second copy (200), bad ones are
/// 400 and change nothing.
async fn posted_reports_are_stored_once(serve: &Serve, db: &str) {
    let a = report("2024-03-01T00:00:00Z_gzip", 90, 10);
    let b = report("2024-03-01T00:00:00Z_json", 5, 0);
    assert_eq!(serve.send_gzip(&a).await, Ok(201), "{}", serve.log());
    let (status, body) = serve.post(b.as_bytes(), "application/tlsrpt+json").await;
    assert_eq!(status, 201, "{body}\n{}", serve.log());
    assert!(body.starts_with("stored as report "), "{body}");

    // RFC 8460 §5.4 + §5.5: a sender retrying a report it already delivered gets success,
    // and the store keeps one copy.
    assert_eq!(serve.send_gzip(&a).await, Ok(200), "{}", serve.log());
    let (status, body) = serve.post(b.as_bytes(), "application/tlsrpt+json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("already stored"), "{body}");

    // Not JSON, and JSON that is no TLS-RPT report (RFC 8460 §4): 400 with the reason.
    let (status, body) = serve
        .post(b"{\"report-id\": oops", "application/tlsrpt+json")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    let (status, body) = serve
        .post(
            br#"{"report-id":"r-bad","policies":[]}"#,
            "application/tlsrpt+json",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a valid TLS-RPT report"), "{body}");

    for id in ["2024-03-01T00:00:00Z_gzip", "2024-03-01T00:00:00Z_json"] {
        let copies = stored(db, id);
        assert_eq!(copies.len(), 1, "{id}: {copies:?}");
        assert_eq!(copies[0]["source"], format!("https://{HOST}/tlsrpt"));
    }
    assert!(stored(db, "r-bad").is_empty());

    // Issue #19 item 3: a report for a domain this host does not serve (RFC 8460 §4) is
    // refused with 403 naming it, and never shows in the store's summary.
    let stranger = report("2024-03-01T00:00:00Z_stranger", 1, 1)
        .replace("\"served.test\"", "\"stranger.test\"");
    let (status, body) = serve
        .post(stranger.as_bytes(), "application/tlsrpt+json")
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("policy-domain stranger.test"), "{body}");
    assert!(stored(db, "2024-03-01T00:00:00Z_stranger").is_empty());
    let summary = report_cmd(db, &["summary", "--json"]);
    assert!(
        !String::from_utf8_lossy(&summary.stdout).contains("stranger.test"),
        "{}",
        text(&summary)
    );
    assert_eq!(totals(db), (2, 95, 10), "the two reports, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s5_4_posted_reports_land_in_the_sqlite_store() {
    let mut serve = Serve::new("store = \"reports.db\"\nspool_dir = \"spool\"\n");
    let db = serve.path("reports.db").display().to_string();

    let out = serve.check_config();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "go to the report store {db} (SQLite), 0 report(s) stored"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("spool"), "{stdout}");

    serve.start();
    posted_reports_are_stored_once(&serve, &db).await;
    assert!(
        spooled(&serve.path("spool")).is_empty(),
        "the store worked: nothing spooled"
    );

    let out = serve.check_config();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 report(s) stored"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s5_5_unavailable_store_spools_and_import_recovers() {
    // The store's directory is a regular file: SQLite cannot open it (even as root).
    let mut serve = Serve::new("store = \"blocked/reports.db\"\nspool_dir = \"spool\"\n");
    let blocked = serve.path("blocked");
    std::fs::write(&blocked, b"in the way").expect("write");
    let db = serve.path("blocked/reports.db").display().to_string();
    let spool = serve.path("spool");

    // --check-config opens the store: one that cannot be opened is a warning, since `serve`
    // starts anyway and spools (issue #19 item 5: the two agree).
    let out = serve.check_config();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warning: ") && stdout.contains("cannot open the report database"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains(&format!("spooled to {}", spool.display())),
        "{}",
        text(&out)
    );

    // serve starts anyway (policies must be served); the report is spooled, the sender is
    // told it was received, the log says what happened and how to recover.
    serve.start();
    let first = report("2024-03-01T00:00:00Z_spooled", 7, 3);
    let (status, body) = serve
        .post(first.as_bytes(), "application/tlsrpt+json")
        .await;
    assert_eq!(status, 201, "{body}\n{}", serve.log());
    assert_eq!(spooled(&spool).len(), 1);
    assert!(
        serve.log().contains("report spooled instead"),
        "{}",
        serve.log()
    );
    // A bad report is refused, never spooled.
    let (status, _) = serve.post(b"[]", "application/tlsrpt+json").await;
    assert_eq!(status, 400);
    assert_eq!(spooled(&spool).len(), 1);

    // Once the store can be opened, the next report goes straight into it (no restart).
    std::fs::remove_file(&blocked).expect("unblock");
    let second = report("2024-03-01T00:00:00Z_direct", 1, 0);
    assert_eq!(serve.send_gzip(&second).await, Ok(201), "{}", serve.log());
    assert_eq!(spooled(&spool).len(), 1);
    assert_eq!(stored(&db, "2024-03-01T00:00:00Z_direct").len(), 1);
    assert!(stored(&db, "2024-03-01T00:00:00Z_spooled").is_empty());

    // The operator imports the spool: the spooled report is recovered.
    let spool_arg = spool.display().to_string();
    let out = report_cmd(&db, &["import", &spool_arg, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["imported"], 1, "{v}");
    assert_eq!(stored(&db, "2024-03-01T00:00:00Z_spooled").len(), 1);
    assert_eq!(totals(&db), (2, 8, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s5_4_posted_reports_land_in_the_postgresql_store() {
    let pg = match mta_sts_testkit::postgres::start() {
        Ok(pg) => pg,
        Err(why) => {
            return mta_sts_testkit::postgres::skip_or_fail("serve intake into PostgreSQL", &why);
        }
    };
    let url = pg.url();
    let mut serve = Serve::new(&format!(
        "store = \"{url}\"\nspool_dir = \"spool\"\ndrain_interval = \"1s\"\n"
    ));
    let out = serve.check_config();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(PostgreSQL), 0 report(s) stored"),
        "{}",
        text(&out)
    );
    serve.start();
    posted_reports_are_stored_once(&serve, &url).await;
    assert!(spooled(&serve.path("spool")).is_empty());

    // The database goes away: reports are spooled; once it is back, the spool drains into
    // it by itself (drain_interval), no import needed.
    pg.stop();
    let late = report("2024-03-01T00:00:00Z_pg_down", 4, 4);
    let (status, body) = serve.post(late.as_bytes(), "application/tlsrpt+json").await;
    assert_eq!(status, 201, "{body}\n{}", serve.log());
    assert_eq!(spooled(&serve.path("spool")).len(), 1);
    pg.restart().expect("restart PostgreSQL");
    wait_drained(&serve, &url, "2024-03-01T00:00:00Z_pg_down").await;
    assert_eq!(totals(&url), (3, 99, 14));
}

/// Waits until the spool holds no report and `report_id` is in the store.
async fn wait_drained(serve: &Serve, db: &str, report_id: &str) {
    let started = Instant::now();
    loop {
        let left = spooled(&serve.path("spool"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .count();
        if left == 0 && stored(db, report_id).len() == 1 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{left} report(s) still spooled\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s5_5_spooled_reports_drain_into_the_store_once_it_works() {
    let mut serve = Serve::new(
        "store = \"blocked/reports.db\"\nspool_dir = \"spool\"\ndrain_interval = \"1s\"\n",
    );
    let blocked = serve.path("blocked");
    std::fs::write(&blocked, b"in the way").expect("write");
    let db = serve.path("blocked/reports.db").display().to_string();
    let spool = serve.path("spool");
    serve.start();
    let first = report("2024-03-01T00:00:00Z_drained", 5, 2);
    let (status, body) = serve
        .post(first.as_bytes(), "application/tlsrpt+json")
        .await;
    assert_eq!(status, 201, "{body}\n{}", serve.log());
    // Spooled by hand, e.g. copied from another host: JSON with a report-id, yet not a
    // TLS-RPT report (RFC 8460 §4). The store refuses it; it must be kept, not lost.
    std::fs::write(
        spool.join("0000handmade.json"),
        br#"{"report-id":"handmade"}"#,
    )
    .expect("write");
    // While the store fails, passes leave everything in place.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(spooled(&spool).len(), 2, "{}", serve.log());
    assert_eq!(
        serve.log().matches("wait for the store").count(),
        1,
        "said once while the store is down: {}",
        serve.log()
    );

    std::fs::remove_file(&blocked).expect("unblock");
    wait_drained(&serve, &db, "2024-03-01T00:00:00Z_drained").await;
    assert_eq!(totals(&db), (1, 5, 2));
    let rejected = spooled(&spool.join(mta_sts_policy_host::REJECTED_DIR));
    assert_eq!(rejected.len(), 1, "{}", serve.log());
    assert_eq!(
        std::fs::read(&rejected[0]).expect("read"),
        br#"{"report-id":"handmade"}"#
    );
    assert!(
        serve.log().contains("moved into the store"),
        "{}",
        serve.log()
    );
    // The source column names the spool file the report came back from.
    let row = stored(&db, "2024-03-01T00:00:00Z_drained");
    assert!(row[0].to_string().contains("spool"), "{}", row[0]);
}

/// Waits until the log of `serve` holds `line` after `from` bytes; its position after it.
async fn wait_log(serve: &Serve, from: usize, line: &str) -> usize {
    let started = Instant::now();
    loop {
        let log = serve.log();
        if let Some(at) = log.get(from..).and_then(|rest| rest.find(line)) {
            return from + at + line.len();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no `{line}` in the log after byte {from}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Issue #19 item 8: at the default level (no -v, no RUST_LOG) `serve` logs its lifecycle:
// started, report received, reload refused and then applied again once the file is fixed;
// plain text, no colour codes, when standard error is a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_log_tells_the_lifecycle_in_plain_text() {
    let mut serve = Serve::new("spool_dir = \"spool\"\n");
    let good = std::fs::read_to_string(&serve.config).expect("config");
    let good = good.replacen("listen = ", "watch_interval = \"100ms\"\nlisten = ", 1);
    std::fs::write(&serve.config, &good).expect("config");
    serve.start();
    let at = wait_log(&serve, 0, "serving MTA-STS policies over HTTPS").await;
    wait_log(&serve, 0, "policy ready").await;
    wait_log(&serve, 0, "accepting TLS-RPT reports").await;

    let (status, body) = serve
        .post(
            report("lifecycle", 1, 0).as_bytes(),
            "application/tlsrpt+json",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let at = wait_log(&serve, at, "TLS-RPT report stored").await;

    // A bad edit is refused; once fixed, the log says the configuration applies again.
    let tmp = serve.path("serve.toml.tmp");
    std::fs::write(
        &tmp,
        good.replace("mode = \"enforce\"", "mode = \"enforced\""),
    )
    .expect("write");
    std::fs::rename(&tmp, &serve.config).expect("rename");
    let at = wait_log(&serve, at, "reload refused").await;
    std::fs::write(&tmp, format!("{good}\n# fixed\n")).expect("write");
    std::fs::rename(&tmp, &serve.config).expect("rename");
    wait_log(&serve, at, "reloaded: the configuration is valid again").await;

    let log = serve.log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

/// One plain HTTP/1.1 GET to the dashboard at `addr`; status and body.
fn web_get(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// Issue #17: `[web]` in serve.toml serves the dashboard from the policy host's own process
// over the `[tlsrpt]` store: a report POSTed to the intake shows on its overview, behind
// its token; the served domain's page has its records to publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_web_section_shows_posted_reports_behind_its_token() {
    let web_port = free_port();
    let mut serve = Serve::new(&format!(
        "store = \"reports.db\"\n\n[web]\nlisten = \"127.0.0.1:{web_port}\"\ntoken_file = \"web.token\"\ncheck = false\n"
    ));
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(serve.path("web.token"), format!("{token}\n")).expect("token");
    let db = serve.path("reports.db").display().to_string();

    let out = serve.check_config();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "TLS-RPT dashboard ([web]): http://127.0.0.1:{web_port}/ over the report store {db} (read-only), token of {} required, re-run check off",
            serve.path("web.token").display()
        )),
        "{stdout}"
    );

    serve.start();
    let (status, body) = serve
        .post(
            report("2024-03-01T00:00:00Z_web", 41, 1).as_bytes(),
            "application/tlsrpt+json",
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", serve.log());

    let addr = format!("127.0.0.1:{web_port}");
    let bearer = format!("Bearer {token}");
    // The dashboard starts right after the policy host's listener.
    let started = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the dashboard did not listen: {}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = web_get(&addr, "/api/?period=all", Some(&bearer));
    assert_eq!(status, 200, "{body}\n{}", serve.log());
    let overview: Value = serde_json::from_str(&body).expect("json");
    let served = overview["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .find(|d| d["policy_domain"] == "served.test")
        .unwrap_or_else(|| panic!("served.test not on the overview: {overview}"));
    assert_eq!(served["successful"], 41, "{served}");
    assert_eq!(served["failed"], 1, "{served}");
    let (status, page) = web_get(&addr, "/?period=all", Some(&bearer));
    assert_eq!(status, 200);
    assert!(page.contains("served.test"), "{page}");

    // The serve configuration is the dashboard's --serve-config.
    let (status, page) = web_get(&addr, "/domain/served.test?period=all", Some(&bearer));
    assert_eq!(status, 200);
    assert!(page.contains("Records to publish"), "{page}");
    assert!(
        page.contains("_mta-sts.served.test. IN TXT &#34;v=STSv1; id="),
        "{page}"
    );
    assert!(
        !page.contains("Re-run check</button>"),
        "check = false: {page}"
    );

    // A reload (SIGHUP) that changes the policy: the page shows the new record, the one
    // `--print-records` now prints.
    let served_id = |addr: &str| {
        let (_, body) = web_get(addr, "/api/domain/served.test", Some(&bearer));
        let json: Value = serde_json::from_str(&body).expect("json");
        json["served"]["id"].as_str().expect("served id").to_owned()
    };
    let before = served_id(&addr);
    let config = std::fs::read_to_string(&serve.config).expect("config");
    std::fs::write(
        &serve.config,
        config.replace("max_age = 604800", "max_age = 1209600"),
    )
    .expect("config");
    let printed = serve.run(&["--print-records"]);
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    serve.signal("HUP");
    let started = Instant::now();
    let after = loop {
        let id = served_id(&addr);
        if id != before || started.elapsed() > Duration::from_secs(20) {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(after, before, "{}", serve.log());
    assert!(
        printed.contains(&format!("\"v=STSv1; id={after};\"")),
        "{after} not in {printed}"
    );

    // Without the token, or with a wrong one: 401.
    assert_eq!(web_get(&addr, "/api/?period=all", None).0, 401);
    assert_eq!(
        web_get(&addr, "/", Some("Bearer not-the-token-at-all")).0,
        401
    );

    // The store holds the one report the intake stored.
    assert_eq!(totals(&db), (1, 41, 1));
}

// `[web]` whose token file cannot be read: `--check-config` fails naming it (exit 2).
#[test]
fn serve_web_check_config_fails_on_a_missing_token_file() {
    let serve = Serve::new("store = \"reports.db\"\n[web]\ntoken_file = \"missing.token\"\n");
    let out = serve.check_config();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[web]"), "{stderr}");
    assert!(stderr.contains("missing.token"), "{stderr}");
}

// `[web]` on a public address without authentication is refused at config load, with one
// sentence naming the fix; `serve` itself then does not start either.
#[test]
fn serve_web_refuses_a_public_address_without_authentication() {
    let serve = Serve::new("store = \"reports.db\"\n[web]\nlisten = \"0.0.0.0:8480\"\n");
    let out = serve.check_config();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:8480 without authentication: set `token_file` or `users` in [web] (or listen on 127.0.0.1)"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let out = serve.run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// The fenced block that follows `<!-- test: NAME -->` in README.md (without its fences).
fn readme_block(name: &str) -> String {
    const README: &str = include_str!("../../../../README.md");
    let marker = format!("<!-- test: {name} -->");
    README
        .lines()
        .skip_while(|l| l.trim() != marker)
        .skip(2)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect()
}

// README's `[web]` example and the `--check-config` line it shows, as written but for the
// token file's path (made with the README's `openssl` command when openssl is installed)
// and the port.
#[test]
fn serve_web_readme_example_checks_as_shown() {
    let port = free_port();
    let toml = readme_block("web serve.toml");
    assert!(toml.starts_with("[web]\n"), "{toml}");
    let probe = Serve::new("store = \"reports.db\"\n");
    let token = probe.path("web.token").display().to_string();
    let db = probe.path("reports.db").display().to_string();
    let subst = |text: &str| {
        text.replace("/etc/mta-sts/web.token", &token)
            .replace("/var/lib/mta-sts/reports.db", &db)
            .replace("127.0.0.1:8480", &format!("127.0.0.1:{port}"))
            .replace(
                "/etc/mta-sts/serve.toml",
                &probe.config.display().to_string(),
            )
    };
    let make_token = toml
        .split_once("# e.g. `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(cmd, _)| subst(cmd))
        .expect("the token command");
    let made = Command::new("sh").args(["-c", &make_token]).output();
    if !made.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "`{make_token}` failed and MTA_STS_REQUIRE_INTEROP=1"
        );
        eprintln!(
            "SKIPPED running `{make_token}` (openssl not installed?); writing a token instead"
        );
        std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("token");
    }
    let config = std::fs::read_to_string(&probe.config).expect("config");
    std::fs::write(&probe.config, format!("{config}\n{}", subst(&toml))).expect("config");

    let shown = readme_block("web check-config");
    let mut lines = shown.lines();
    let command = lines
        .next()
        .and_then(|l| l.strip_prefix("$ "))
        .expect("command");
    let words: Vec<String> = subst(command)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(words[..3], ["mta-sts", "serve", "--check-config"]);
    let out = mta_sts().args(&words[1..]).output().expect("check-config");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in lines {
        assert!(
            stdout.lines().any(|l| l == subst(line)),
            "{} not in {stdout}",
            subst(line)
        );
    }
}
