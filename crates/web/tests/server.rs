//! The dashboard over real HTTP: a SQLite store filled with the shipped corpus
//! (`testdata/corpus/tlsrpt`) and a hostile report, opened read-only, served on loopback,
//! asked with reqwest. Pages and JSON carry the store's numbers; hostile strings are text;
//! authentication, CSRF and read-only access hold.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mta_sts_net::ManualClock;
use mta_sts_report_store::{
    InputOutcome, Limits, PeriodFilter, ReportSink, ReportStore, SqliteStore, SummaryFilter,
    mailbox,
};
use mta_sts_web::{Auth, Diagnose, Diagnosis, DiagnosisFinding, WebConfig, WebServer};
use serde_json::Value;

/// 2026-12-04T12:00:00Z: after every report of the corpus and the hostile one.
const NOW: u64 = 1_796_385_600;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/tlsrpt")
}

fn hostile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile.json")
}

/// A database file with the corpus and the hostile report.
async fn filled_db(dir: &Path) -> PathBuf {
    let path = dir.join("reports.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let sink = ReportSink::new(store.clone(), Limits::default());
    let mut accepted = 0;
    for file in mailbox::list_files(&[corpus(), hostile()]) {
        let file = file.unwrap();
        // The hostile report also carries a hostile DKIM result (the signer's d= and s=
        // come from the mail, so from strangers too).
        let dkim = file
            .ends_with("hostile.json")
            .then(|| "pass (d=<script>document.title='pwned-dkim'</script>, s=x)".to_owned());
        for input in mailbox::read_file(&file, 1 << 24).unwrap() {
            if let InputOutcome::Accepted { .. } = sink
                .accept_with_dkim(&input.bytes, None, &input.label, 1, dkim.clone())
                .await
                .unwrap()
            {
                accepted += 1;
            }
        }
    }
    assert!(accepted >= 25, "{accepted}");
    path
}

/// A diagnosis without the network: the dashboard's side of "re-run check" is what is
/// tested here (the checker has its own tests).
struct Fixed;

#[async_trait::async_trait]
impl Diagnose for Fixed {
    async fn diagnose(&self, domain: &str) -> Diagnosis {
        Diagnosis {
            checked_at: NOW as i64,
            verdict: "warn".into(),
            findings: vec![DiagnosisFinding {
                severity: "warning".into(),
                id: "policy-testing".into(),
                title: format!("{domain} publishes mode testing"),
                detail: String::new(),
                fix: "Switch to mode: enforce once reports are clean.".into(),
            }],
            error: None,
        }
    }
}

struct Running {
    server: WebServer,
    store: Arc<dyn ReportStore>,
    base: String,
}

async fn start(db: &Path, auth: Auth) -> Running {
    let store: Arc<dyn ReportStore> = Arc::new(SqliteStore::open_read_only(db).unwrap());
    let config = WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth,
        ..WebConfig::default()
    };
    let server = WebServer::start(
        &config,
        store.clone(),
        Arc::new(ManualClock::new(NOW)),
        Some(Arc::new(Fixed)),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    Running {
        server,
        store,
        base,
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of `data-NAME="…"` on the element whose attributes contain `anchor`.
fn data_attr(html: &str, anchor: &str, name: &str) -> Option<String> {
    let at = html.find(anchor)?;
    let tag_end = at + html[at..].find('>')?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("data-{name}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_json_carry_the_stores_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(dir.path()).await;
    let run = start(&db, Auth::None).await;

    for period in ["7", "30", "90", "all"] {
        let (status, json) = get(&format!("{}/api/?period={period}", run.base)).await;
        assert_eq!(status, 200);
        let json: Value = serde_json::from_str(&json).unwrap();
        let since = json["filters"]["since"].as_str().map(str::to_owned);
        let totals = run
            .store
            .domain_totals(&PeriodFilter {
                since: since.clone(),
                until: None,
            })
            .await
            .unwrap();
        let domains = json["domains"].as_array().unwrap();
        assert_eq!(domains.len(), totals.len(), "period {period}");
        for (row, t) in domains.iter().zip(&totals) {
            assert_eq!(row["policy_domain"], t.policy_domain.as_str());
            assert_eq!(
                row["successful"], t.successful,
                "{period} {}",
                t.policy_domain
            );
            assert_eq!(row["failed"], t.failed);
            assert_eq!(row["reports"], t.reports);
            assert_eq!(row["days"], t.days);
        }
        let (status, html) = get(&format!("{}/?period={period}", run.base)).await;
        assert_eq!(status, 200);
        for t in &totals {
            let anchor = format!("data-domain=\"{}\"", t.policy_domain.replace('<', "&#60;"));
            if t.policy_domain.contains('<') {
                continue; // checked by the hostile test
            }
            assert_eq!(
                data_attr(&html, &anchor, "successful").as_deref(),
                Some(t.successful.to_string().as_str()),
                "{period} {}",
                t.policy_domain
            );
            assert_eq!(
                data_attr(&html, &anchor, "failed").as_deref(),
                Some(t.failed.to_string().as_str())
            );
        }
    }
    let totals_all = run
        .store
        .domain_totals(&PeriodFilter::default())
        .await
        .unwrap()
        .len();
    // The 7-day period ends today: only the hostile report (2026-11-30) is that recent.
    let (_, json) = get(&format!("{}/api/?period=7", run.base)).await;
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["filters"]["since"], "2026-11-28");

    // The domain page sums the per-day rows, as `report summary --domain` prints them.
    let (status, json) = get(&format!(
        "{}/api/domain/company-y.example?period=all",
        run.base
    ))
    .await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&json).unwrap();
    let days = run
        .store
        .summary(&SummaryFilter {
            domain: Some("company-y.example".into()),
            since: None,
            ..SummaryFilter::default()
        })
        .await
        .unwrap();
    let ok: u64 = days.iter().map(|d| d.successful).sum();
    let ko: u64 = days.iter().map(|d| d.failed).sum();
    assert_eq!(
        (
            json["totals"]["successful"].as_u64(),
            json["totals"]["failed"].as_u64()
        ),
        (Some(ok), Some(ko))
    );
    assert_eq!(json["days"].as_array().unwrap().len(), days.len());
    assert_eq!(ko, 303);
    let (_, html) = get(&format!("{}/domain/company-y.example?period=all", run.base)).await;
    assert_eq!(
        data_attr(&html, "id=\"totals\"", "failed").as_deref(),
        Some("303")
    );
    assert!(html.contains("<svg"), "the domain page has its charts");
    assert!(html.contains("certificate-expired"));
    // Its reports link to report pages, which show the report as received.
    let id = json["reports"][0]["id"].as_i64().unwrap();
    let (status, page) = get(&format!("{}/report/{id}", run.base)).await;
    assert_eq!(status, 200);
    assert!(page.contains("Company-X"), "{page}");
    assert!(
        page.contains("data-field=\"dkim\">not mail"),
        "a report from a file has no DKIM result: {page}"
    );
    let (status, _) = get(&format!("{}/report/999999", run.base)).await;
    assert_eq!(status, 404);

    // CSV: one line per domain and day, as the summary.
    let r = reqwest::get(format!(
        "{}/export/days.csv?period=all&domain=company-y.example",
        run.base
    ))
    .await
    .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 1 + days.len(), "{csv}");
    assert!(csv.starts_with("policy_domain,day,reports,successful,failed,"));

    // Filters narrow the overview: a result type, an organisation.
    let (_, json) = get(&format!(
        "{}/api/?period=all&result=certificate-expired",
        run.base
    ))
    .await;
    let json: Value = serde_json::from_str(&json).unwrap();
    for row in json["domains"].as_array().unwrap() {
        assert!(row["failed_of_result"].as_u64().unwrap() > 0, "{row}");
    }
    let (_, json) = get(&format!("{}/api/?period=all&org=Company-X", run.base)).await;
    let json: Value = serde_json::from_str(&json).unwrap();
    let rows = json["domains"].as_array().unwrap();
    assert!(rows.len() < totals_all, "{json}");
    assert!(
        rows.iter()
            .any(|r| r["policy_domain"] == "company-y.example")
    );
    for r in rows {
        assert!(
            r["organizations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "Company-X"),
            "{r}"
        );
    }

    run.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_report_strings_render_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(dir.path()).await;
    let run = start(&db, Auth::None).await;
    let (_, overview) = get(&format!("{}/?period=all", run.base)).await;
    let (_, domain) = get(&format!("{}/domain/hostile.example?period=all", run.base)).await;
    let (_, json) = get(&format!(
        "{}/api/domain/hostile.example?period=all",
        run.base
    ))
    .await;
    let json: Value = serde_json::from_str(&json).unwrap();
    let id = json["reports"][0]["id"].as_i64().unwrap();
    let (_, report) = get(&format!("{}/report/{id}", run.base)).await;
    let hostile_domain = "%3Cscript%3Edocument.title%3D%27pwned-domain%27%3C%2Fscript%3E";
    let (status, other) = get(&format!("{}/domain/{hostile_domain}?period=all", run.base)).await;
    assert_eq!(status, 200);
    for (name, page) in [
        ("overview", &overview),
        ("domain", &domain),
        ("report", &report),
        ("hostile domain", &other),
    ] {
        assert!(!page.contains("<script"), "{name}: {page}");
        assert!(!page.contains("<img"), "{name}");
        assert!(
            page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"),
            "{name} shows the text"
        );
    }
    for field in [
        "pwned-org",
        "pwned-type",
        "pwned-mx",
        "pwned-ip",
        "pwned-mode",
    ] {
        assert!(domain.contains(field), "domain page shows {field}");
    }
    for field in [
        "pwned-id",
        "pwned-contact",
        "pwned-helo",
        "pwned-info",
        "pwned-mx-host",
        "pwned-dkim",
    ] {
        assert!(report.contains(field), "report page shows {field}");
    }
    // No script may run even if escaping failed somewhere: the CSP forbids them.
    let r = reqwest::get(format!("{}/", run.base)).await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    // CSV cells that a spreadsheet would take for formulas are defused.
    let (_, csv) = get(&format!("{}/export/overview.csv?period=all", run.base)).await;
    assert!(!csv.lines().any(|l| l.starts_with('=')), "{csv}");
    run.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_and_the_post_needs_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(dir.path()).await;
    let before = std::fs::read(&db).unwrap();
    let token = "0123456789abcdef0123";
    let run = start(&db, Auth::Token(token.as_bytes().to_vec())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/api/",
        "/domain/example.com",
        "/report/1",
        "/export/days.csv",
    ] {
        let r = client
            .get(format!("{}{path}", run.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = client
            .get(format!("{}{path}", run.base))
            .bearer_auth("wrong-token-0000000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    let r = client
        .get(format!("{}/", run.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{}/", run.base))
        .basic_auth("anyone", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The domain page's form carries the CSRF token; the POST without it is refused.
    let page = client
        .get(format!("{}/domain/company-y.example?period=all", run.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Not checked yet"));
    let csrf = data_value(&page, "name=\"csrf\" value=\"").unwrap();
    let check = format!("{}/domain/company-y.example/check?period=all", run.base);
    let r = client
        .post(&check)
        .bearer_auth(token)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(&check)
        .bearer_auth(token)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a cross-site POST is refused even with the token"
    );
    let r = client
        .post(&check)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(&check)
        .bearer_auth(token)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/domain/company-y.example?period=all"
    );
    let page = client
        .get(format!("{}/domain/company-y.example?period=all", run.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("company-y.example publishes mode testing"),
        "{page}"
    );
    assert!(page.contains("Fix: Switch to mode: enforce"));

    // The store was opened read-only: it refuses writes, and the file is unchanged.
    let parsed = mta_sts_report_store::parse_input(
        &std::fs::read(hostile())
            .unwrap()
            .iter()
            .map(|&b| if b == b'7' { b'8' } else { b })
            .collect::<Vec<_>>(),
        None,
        &Limits::default(),
    )
    .unwrap();
    assert!(run.store.insert(&parsed[0], "t", 2).await.is_err());
    run.server.shutdown().await;
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

fn data_value(html: &str, prefix: &str) -> Option<String> {
    let at = html.find(prefix)? + prefix.len();
    Some(html[at..at + html[at..].find('"')?].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_host_names_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(dir.path()).await;
    let run = start(&db, Auth::None).await;
    // Raw requests: the Host header is what a DNS-rebound page's browser would send.
    let ask = |host: String| {
        let addr = run.server.local_addr();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            conn.write_all(
                format!("GET /api/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    let port = run.server.local_addr().port();
    let answer = ask(format!("rebound.evil.example:{port}")).await;
    assert!(
        answer.starts_with("HTTP/1.1 421"),
        "a DNS-rebound name is refused: {answer}"
    );
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let answer = ask(host.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    run.server.shutdown().await;
}

#[tokio::test]
async fn a_public_address_without_authentication_is_refused() {
    let store: Arc<dyn ReportStore> = Arc::new(SqliteStore::in_memory().unwrap());
    let config = WebConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..WebConfig::default()
    };
    let e = WebServer::start(&config, store, Arc::new(ManualClock::new(NOW)), None)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "refusing to listen on 0.0.0.0:0 without authentication: pass --token-file FILE or --users FILE (or listen on 127.0.0.1)"
    );
}
