//! `mta-sts web --serve-config`: the real binary next to a real `mta-sts serve` (HTTPS with
//! a certificate from the testkit CA) and the testkit's authoritative DNS server. The page
//! of a configured domain shows the records `serve --print-records` prints (escaped), its
//! JSON carries them, and "re-run check" adds `serve --check`'s drift findings once what
//! is published differs from what is served.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use mta_sts_testkit::{Pki, World};
use serde_json::Value;

use crate::serve_support::{ServeProc, mta_sts, sts_txt};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request to `addr`; the status and the body of the answer.
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    // Chunked bodies: good enough to search in, since chunk sizes are on lines of their own.
    let _ = head;
    (status, body.to_owned())
}

/// Starts `mta-sts web ARGS` on a free loopback port; returns it and its `ADDR:PORT`.
fn start_web(args: &[&str], extra: &[&Path]) -> (Killed, String) {
    let mut cmd = mta_sts();
    cmd.args(["web", "--listen", "127.0.0.1:0"]).args(args);
    for a in extra {
        cmd.arg(a);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn web");
    let stderr = child.stderr.take().expect("stderr");
    let web = Killed(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("mta-sts web ended before listening")
            .expect("line");
        if let Some(rest) = line.strip_prefix("dashboard on http://") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (web, addr)
}

/// The hidden CSRF token of a domain page's form.
fn csrf(page: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let at = page.find(key).expect("a check form") + key.len();
    page[at..at + page[at..].find('"').expect("end")].to_owned()
}

fn finding_ids(json: &Value) -> Vec<String> {
    json["diagnosis"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no diagnosis in {json}"))
        .iter()
        .filter_map(|f| f["id"].as_str().map(String::from))
        .collect()
}

#[test]
fn web_serve_config_shows_records_and_drift_for_served_domains() {
    let world = World::empty();
    let mut serve = ServeProc::new(
        world.ca(),
        &["mta-sts.served.test"],
        "[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\nmax_age = 604800\nrua = \"mailto:tls@served.test\"\ncert = \"host.pem\"\nkey = \"host.key\"\n",
    );
    let config = serve.config.clone();
    let printed = serve.run(&["--print-records"]);
    assert_eq!(printed.status.code(), Some(0));
    let records = String::from_utf8(printed.stdout).expect("utf-8");
    let txt = sts_txt(&records, "served.test");
    let id = txt
        .trim_start_matches("v=STSv1; id=")
        .trim_end_matches(';')
        .to_owned();
    world
        .dns()
        .set_txt("_mta-sts.served.test", &[&[txt.as_str()]]);
    world
        .dns()
        .set_a("mta-sts.served.test", &[Ipv4Addr::LOCALHOST]);
    world
        .dns()
        .set_mx("served.test", &[(10, "mx1.served.test")]);
    serve.start();

    let db = serve.path("reports.db");
    let import = mta_sts()
        .args(["report", "import", "--no-dkim", "--db"])
        .arg(&db)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/tlsrpt"))
        .output()
        .expect("import");
    assert!(db.exists(), "{}", String::from_utf8_lossy(&import.stderr));

    let dns = world.dns_addr().to_string();
    let connect_to = serve.connect_to("mta-sts.served.test");
    let (_web, addr) = start_web(
        &[
            "--dns",
            &dns,
            "--connect-to",
            &connect_to,
            "--timeout",
            "5",
            "--check-timeout",
            "60",
            "--db",
            &db.display().to_string(),
            "--serve-config",
            &config.display().to_string(),
            "--ca-file",
        ],
        &[world.ca_file()],
    );

    // The records, as --print-records prints them, escaped.
    let (status, page) = http(&addr, "GET", "/domain/served.test", "", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Records to publish"), "{page}");
    let escaped = format!("_mta-sts.served.test. IN TXT &#34;v=STSv1; id={id};&#34;");
    assert!(page.contains(&escaped), "{escaped} in {page}");
    assert!(
        page.contains(
            "_smtp._tls.served.test. IN TXT &#34;v=TLSRPTv1; rua=mailto:tls@served.test&#34;"
        ),
        "{page}"
    );
    assert!(
        !page.contains("IN TXT \"v=STSv1"),
        "unescaped quotes: {page}"
    );
    let (_, json) = http(&addr, "GET", "/api/domain/served.test", "", "");
    let json: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["served"]["id"], id.as_str(), "{json}");
    assert_eq!(json["served"]["sts"]["value"], txt.as_str());
    assert_eq!(
        json["served"]["tlsrpt"]["value"],
        "v=TLSRPTv1; rua=mailto:tls@served.test"
    );
    assert_eq!(json["served"]["config"], config.display().to_string());
    let text = json["served"]["text"].as_str().expect("text");
    assert!(
        records.starts_with(text),
        "{text:?} is what --print-records printed"
    );

    // A domain of the corpus, not in the configuration: as without --serve-config.
    let (_, json) = http(
        &addr,
        "GET",
        "/api/domain/company-y.example?period=all",
        "",
        "",
    );
    let json: Value = serde_json::from_str(&json).expect("json");
    assert!(json["served"].is_null(), "{json}");
    assert!(
        json["days"].as_array().is_some_and(|d| !d.is_empty()),
        "{json}"
    );

    // Re-run check while DNS publishes what is served: no drift finding.
    let rerun = || {
        let form = format!("csrf={}", csrf(&page));
        let (status, body) = http(
            &addr,
            "POST",
            "/domain/served.test/check",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            &form,
        );
        assert_eq!(status, 303, "{body}");
        let (_, json) = http(&addr, "GET", "/api/domain/served.test", "", "");
        serde_json::from_str::<Value>(&json).expect("json")
    };
    let ids = finding_ids(&rerun());
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("serve-") || id == "mx-not-in-policy"),
        "{ids:?}"
    );

    // A stale id in DNS and an MX the served policy does not cover: drift.
    world
        .dns()
        .set_txt("_mta-sts.served.test", &[&["v=STSv1; id=stale1;"]]);
    world.dns().set_mx(
        "served.test",
        &[(10, "mx1.served.test"), (20, "backup.elsewhere.test")],
    );
    let json = rerun();
    let ids = finding_ids(&json);
    assert!(
        ids.contains(&"serve-id-not-published".to_owned()),
        "{ids:?}"
    );
    assert!(ids.contains(&"mx-not-in-policy".to_owned()), "{ids:?}");
    assert_eq!(json["diagnosis"]["verdict"], "fail", "{json}");
    let (_, page) = http(&addr, "GET", "/domain/served.test", "", "");
    assert!(page.contains("serve-id-not-published"), "{page}");
    assert!(page.contains("has id=stale1"), "{page}");
}

/// A --serve-config that is not a serve configuration: exit 2 with the file and the fix,
/// before any database is looked for.
#[test]
fn web_serve_config_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "lisen = \"x\"\n").expect("write");
    let out = mta_sts()
        .args([
            "web",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "/nonexistent/r.db",
            "--serve-config",
        ])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:1:1", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("--serve-config takes the configuration of `mta-sts serve`"),
        "{stderr}"
    );
}

/// The fenced block that follows `<!-- test: NAME -->` in README.md (without its fences).
fn readme_block(name: &str) -> Vec<String> {
    const README: &str = include_str!("../../../../README.md");
    let marker = format!("<!-- test: {name} -->");
    README
        .lines()
        .skip_while(|l| l.trim() != marker)
        .skip(2)
        .take_while(|l| !l.starts_with("```"))
        .map(String::from)
        .collect()
}

/// README's `mta-sts web … --serve-config` command, run as written but for its paths (a
/// temporary database and serve.toml) and a free port; a configured domain's page then
/// shows its records.
#[test]
fn web_readme_serve_config_command_works_as_written() {
    let block = readme_block("web serve-config");
    assert_eq!(block.len(), 2, "{block:?}");
    let words: Vec<&str> = block[0]
        .strip_prefix("$ ")
        .expect("a command")
        .split_whitespace()
        .collect();
    assert_eq!(words[..2], ["mta-sts", "web"], "{block:?}");
    assert_eq!(block[1], "dashboard on http://127.0.0.1:8480/");

    let pki = Pki::new().expect("pki");
    let serve = ServeProc::new(
        pki.ca(),
        &["mta-sts.served.test"],
        "[[domain]]\nname = \"served.test\"\nmode = \"testing\"\nmx = [\"mx1.served.test\"]\ncert = \"host.pem\"\nkey = \"host.key\"\n",
    );
    let config = &serve.config;
    let db = serve.path("reports.db");
    mta_sts()
        .args(["report", "import", "--no-dkim", "--db"])
        .arg(&db)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/tlsrpt"))
        .output()
        .expect("import");
    let args: Vec<String> = words[2..]
        .iter()
        .map(|w| match *w {
            "/var/lib/mta-sts/reports.db" => db.display().to_string(),
            "/etc/mta-sts/serve.toml" => config.display().to_string(),
            other => other.to_owned(),
        })
        .chain(["--no-check".to_owned()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // `start_web` passes `--listen 127.0.0.1:0` and waits for the line the README shows.
    let (_web, addr) = start_web(&args, &[]);
    let (status, page) = http(&addr, "GET", "/domain/served.test", "", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Records to publish"), "{page}");
    assert!(
        page.contains("_mta-sts.served.test. IN TXT &#34;v=STSv1; id="),
        "{page}"
    );
}
