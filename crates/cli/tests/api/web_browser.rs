//! `mta-sts web` in a real browser: headless Chromium (Debian package `chromium`) loads
//! each page from a database filled with the shipped reports (`testdata/corpus/tlsrpt`,
//! `shared/corpus/realworld/tlsrpt`) and a hostile one (`<script>` in every string field),
//! takes screenshots (desktop and phone widths, kept under the target directory), and the
//! numbers in the DOM must equal `mta-sts report summary --json` for the same period; no
//! console message may appear (a blocked resource, a CSP violation or a script error would
//! log one), and the hostile strings are text. Skipped without Chromium unless
//! `MTA_STS_REQUIRE_INTEROP=1`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// 2026-12-04T12:00:00Z, the dashboard's "now" (`--now`): every report is in the past.
const NOW: &str = "1796385600";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mta-sts")
}

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "chromium is not installed (apt-get install chromium) and MTA_STS_REQUIRE_INTEROP=1"
        );
        eprintln!(
            "SKIPPED: chromium is not installed (apt-get install chromium); set MTA_STS_REQUIRE_INTEROP=1 to make this a failure"
        );
    }
    found
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The dashboard process, killed when dropped.
struct Web(Child);

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mta-sts web` on a free loopback port; returns it and its base URL.
fn start_web(db: &Path) -> (Web, String) {
    let mut child = Command::new(bin())
        .args([
            "web",
            "--no-check",
            "--listen",
            "127.0.0.1:0",
            "--now",
            NOW,
            "--db",
        ])
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let web = Web(child);
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("mta-sts web ended before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("dashboard on ") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (web, url)
}

/// A page as Chromium rendered it: the DOM, and the console lines it logged.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

fn render(browser: &str, profile: &Path, url: &str) -> Rendered {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Rendered {
        dom: String::from_utf8(out.stdout).unwrap(),
        console: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect(),
    }
}

fn screenshot(browser: &str, profile: &Path, url: &str, path: &Path, size: &str) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={size}"))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{url}");
    let png = std::fs::read(path).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}: {} bytes",
        path.display(),
        png.len()
    );
}

/// HTML attribute text back to the value (the serialiser escapes `&`, `"`, NBSP and, in
/// current Chromium, `<` and `>`).
fn unescape(v: &str) -> String {
    v.replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `data-*` attributes of every start tag that has `data-domain`, by domain.
fn rows(dom: &str, tag: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let open = format!("<{tag} ");
    for (i, _) in dom.match_indices(&open) {
        let end = i + dom[i..].find('>').unwrap();
        let t = &dom[i..end];
        let mut attrs = BTreeMap::new();
        for (j, _) in t.match_indices(" data-") {
            let rest = &t[j + 6..];
            let Some(eq) = rest.find("=\"") else { continue };
            let value = &rest[eq + 2..];
            let Some(close) = value.find('"') else {
                continue;
            };
            attrs.insert(rest[..eq].to_owned(), unescape(&value[..close]));
        }
        if let Some(d) = attrs.get("domain").cloned() {
            out.insert(d, attrs);
        }
    }
    out
}

/// `report summary --json [--since S]` summed per domain: (reports, successful, failed, days).
fn summary(db: &Path, since: Option<&str>) -> BTreeMap<String, (u64, u64, u64, u64)> {
    let mut cmd = Command::new(bin());
    cmd.args(["report", "summary", "--json", "--db"]).arg(db);
    if let Some(s) = since {
        cmd.args(["--since", s]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut sums = BTreeMap::new();
    for d in json["days"].as_array().unwrap() {
        let e: &mut (u64, u64, u64, u64) = sums
            .entry(d["policy_domain"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += d["reports"].as_u64().unwrap();
        e.1 += d["successful"].as_u64().unwrap();
        e.2 += d["failed"].as_u64().unwrap();
        e.3 += 1;
    }
    sums
}

fn body_attr(dom: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    let at = dom.find("<body").unwrap();
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let v = tag.find(&key).unwrap() + key.len();
    tag[v..v + tag[v..].find('"').unwrap()].to_owned()
}

#[test]
fn every_page_in_chromium_shows_the_summarys_numbers_and_hostile_text_as_text() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reports.db");
    let out = Command::new(bin())
        .args(["report", "import", "--json", "--no-dkim", "--db"])
        .arg(&db)
        .arg(root().join("testdata/corpus/tlsrpt"))
        .arg(root().join("../shared/corpus/realworld/tlsrpt"))
        .arg(root().join("crates/web/tests/hostile.json"))
        .output()
        .unwrap();
    let import: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(import["imported"].as_u64().unwrap() >= 50, "{import}");
    let (_web, base) = start_web(&db);
    let profile = dir.path().join("chromium-profile");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let mut pages = 0;
    for period in ["30", "all"] {
        let page = render(browser, &profile, &format!("{base}/?period={period}"));
        assert!(
            page.console.is_empty(),
            "overview {period}: {:?}",
            page.console
        );
        let since = body_attr(&page.dom, "data-since");
        let expected = summary(&db, (!since.is_empty()).then_some(since.as_str()));
        let shown = rows(&page.dom, "tr");
        assert_eq!(
            shown.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "overview {period}: the domains"
        );
        for (domain, (reports, ok, ko, days)) in &expected {
            let row = &shown[domain];
            let got = |k: &str| row[k].parse::<u64>().unwrap();
            assert_eq!(
                (
                    got("reports"),
                    got("successful"),
                    got("failed"),
                    got("days")
                ),
                (*reports, *ok, *ko, *days),
                "overview {period}: {domain}"
            );
        }
        pages += 1;
        // Each domain page: the totals over the same period.
        for (domain, (reports, ok, ko, days)) in &expected {
            let segment: String = if domain.is_empty() {
                "-".into()
            } else {
                domain
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect()
            };
            let page = render(
                browser,
                &profile,
                &format!("{base}/domain/{segment}?period={period}"),
            );
            assert!(page.console.is_empty(), "{domain}: {:?}", page.console);
            let totals = rows(&page.dom, "table");
            let t = &totals[domain];
            let got = |k: &str| t[k].parse::<u64>().unwrap();
            assert_eq!(
                (
                    got("reports"),
                    got("successful"),
                    got("failed"),
                    got("days")
                ),
                (*reports, *ok, *ko, *days),
                "domain page {period}: {domain}"
            );
            assert!(!page.dom.contains("<script"), "{domain}");
            pages += 1;
        }
    }
    assert!(pages >= 30, "{pages}");

    // The hostile report: every string field shows as text, nothing runs (the title it
    // would set never appears), on its domain page and its report page.
    let page = render(
        browser,
        &profile,
        &format!("{base}/api/domain/hostile.example?period=all"),
    );
    let json: Value = serde_json::from_str(
        page.dom
            .split_once("<pre>")
            .map(|(_, r)| r.split_once("</pre>").unwrap().0)
            .unwrap_or(&page.dom),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", page.dom));
    let id = json["reports"][0]["id"].as_i64().unwrap();
    for url in [
        format!("{base}/domain/hostile.example?period=all"),
        format!("{base}/report/{id}"),
        format!("{base}/?period=all"),
    ] {
        let page = render(browser, &profile, &url);
        assert!(page.console.is_empty(), "{url}: {:?}", page.console);
        assert!(!page.dom.contains("<script"), "{url}");
        assert!(!page.dom.contains("<img"), "{url}");
        assert!(
            page.dom.contains("&lt;script&gt;document.title="),
            "{url}: the text is shown"
        );
        // Had a script run, the title would be exactly `pwned-…`; the report page's title
        // shows the hostile report-id as text, which is fine.
        let title =
            &page.dom[page.dom.find("<title>").unwrap() + 7..page.dom.find("</title>").unwrap()];
        assert!(!title.starts_with("pwned"), "{url}: {title}");
    }

    // Screenshots, desktop and phone, for people to look at.
    for (name, path) in [
        ("overview", "/?period=all".to_owned()),
        ("domain", "/domain/company-y.example?period=all".to_owned()),
        ("hostile", "/domain/hostile.example?period=30".to_owned()),
        ("report", format!("/report/{id}")),
    ] {
        screenshot(
            browser,
            &profile,
            &format!("{base}{path}"),
            &shots.join(format!("{name}.png")),
            "1280,1800",
        );
        screenshot(
            browser,
            &profile,
            &format!("{base}{path}"),
            &shots.join(format!("{name}-phone.png")),
            "390,1600",
        );
    }
}

/// The README's "try it" block (`<!-- test: web try -->`), run as written from the
/// repository root with `demo.db` in a temporary directory; the dashboard's port is the one
/// thing changed (`--listen 127.0.0.1:0`, the default 8480 may be taken on a test host).
#[test]
fn readme_web_commands_work_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|l| l.trim() != "<!-- test: web try -->")
        .skip(2)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut steps: Vec<(Vec<String>, Vec<&str>)> = Vec::new();
    for line in &block {
        match line.strip_prefix("$ ") {
            Some(cmd) => steps.push((
                cmd.split_whitespace()
                    .map(|w| {
                        if w == "demo.db" {
                            db.display().to_string()
                        } else {
                            w.to_owned()
                        }
                    })
                    .collect(),
                Vec::new(),
            )),
            None => steps
                .last_mut()
                .expect("output before a command")
                .1
                .push(line),
        }
    }
    assert_eq!(steps.len(), 2, "{block:?}");
    let (import, shown) = &steps[0];
    assert_eq!(&import[..3], ["mta-sts", "report", "import"]);
    let out = Command::new(bin())
        .args(&import[1..])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().next(), shown.first().copied(), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "the .tsv is refused");

    let (web, shown) = &steps[1];
    assert_eq!(&web[..2], ["mta-sts", "web"]);
    assert_eq!(shown.as_slice(), ["dashboard on http://127.0.0.1:8480/"]);
    let mut child = Command::new(bin())
        .args(&web[1..])
        .args(["--listen", "127.0.0.1:0", "--no-check"])
        .current_dir(root())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _web = Web(child);
    let line = BufReader::new(stderr)
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("dashboard on "))
        .unwrap();
    let addr = line
        .trim_start_matches("dashboard on http://")
        .trim_end_matches('/')
        .to_owned();
    // The overview answers, with the corpus' domains.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "GET /api/?period=all HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"policy_domain\":\"company-y.example\""),
        "{answer}"
    );
}

/// A non-loopback address without authentication: exit 2 and one sentence with the fix,
/// before any database is looked for.
#[test]
fn web_refuses_a_public_address_without_authentication() {
    let out = Command::new(bin())
        .args([
            "web",
            "--listen",
            "0.0.0.0:0",
            "--db",
            "/nonexistent/reports.db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        "mta-sts: refusing to listen on 0.0.0.0:0 without authentication: pass --token-file FILE or --users FILE (or listen on 127.0.0.1)"
    );
}
