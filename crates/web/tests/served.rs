//! A serve configuration on the dashboard ([`ServedDomains`], `--serve-config`): the page
//! and the JSON of a configured domain carry its records to publish, escaped; other
//! domains look as without one; the diagnosis of "re-run check" (which the CLI extends
//! with drift for configured domains) is shown with every finding.

use std::path::Path;
use std::sync::Arc;

use mta_sts_net::ManualClock;
use mta_sts_report_store::{ReportStore, SqliteStore};
use mta_sts_web::{
    Auth, Diagnose, Diagnosis, DiagnosisFinding, ServedDomains, ServedRecords, ServedTxt,
    WebConfig, WebServer,
};
use serde_json::Value;

/// 2026-12-04T12:00:00Z.
const NOW: u64 = 1_796_385_600;

/// What the CLI's diagnose returns for a served domain whose published id is stale: the
/// drift finding of `serve --check`.
struct Drifted;

#[async_trait::async_trait]
impl Diagnose for Drifted {
    async fn diagnose(&self, domain: &str) -> Diagnosis {
        Diagnosis {
            checked_at: NOW as i64,
            verdict: "fail".into(),
            findings: vec![DiagnosisFinding {
                severity: "error".into(),
                id: "serve-id-not-published".into(),
                title: "the published id is not the served policy's".into(),
                detail: format!("_mta-sts.{domain} has id=<b>stale</b>"),
                fix: "Publish the record of `mta-sts serve --print-records`.".into(),
            }],
            error: None,
        }
    }
}

fn served() -> ServedDomains {
    let mut served = ServedDomains::new("/etc/mta-sts/<serve>.toml");
    served.insert(
        "Served.Example",
        ServedRecords {
            policy_host: "mta-sts.served.example".into(),
            id: "abc123".into(),
            sts: ServedTxt {
                name: "_mta-sts.served.example.".into(),
                value: "v=STSv1; id=abc123;".into(),
            },
            tlsrpt: None,
            // A comment line with markup: the page must show it as text.
            text: "; MTA-STS (RFC 8461) for served.example <script>x</script>\n_mta-sts.served.example. IN TXT \"v=STSv1; id=abc123;\"\n".into(),
        },
    );
    served
}

async fn start(db: &Path, served: ServedDomains) -> (WebServer, String) {
    let store: Arc<dyn ReportStore> = Arc::new(SqliteStore::open_read_only(db).unwrap());
    let config = WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: Auth::None,
        served: Arc::new(served),
        ..WebConfig::default()
    };
    let server = WebServer::start(
        &config,
        store,
        Arc::new(ManualClock::new(NOW)),
        Some(Arc::new(Drifted)),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    (server, base)
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The hidden CSRF token of a domain page's form.
fn csrf(page: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let at = page.find(key).expect("a check form") + key.len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_domain_shows_its_records_and_drift() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reports.db");
    drop(SqliteStore::open(&db).unwrap());
    let (server, base) = start(&db, served()).await;

    let (status, page) = get(&format!("{base}/domain/served.example")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Records to publish"), "{page}");
    assert!(
        page.contains("_mta-sts.served.example. IN TXT &#34;v=STSv1; id=abc123;&#34;")
            || page.contains("_mta-sts.served.example. IN TXT &quot;v=STSv1; id=abc123;&quot;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "escaped: {page}");
    assert!(
        page.contains("&#60;script&#62;x") || page.contains("&lt;script&gt;x"),
        "{page}"
    );
    assert!(!page.contains("<serve>"), "the file name is escaped too");

    let (_, json) = get(&format!("{base}/api/domain/served.example")).await;
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["served"]["id"], "abc123", "{json}");
    assert_eq!(json["served"]["policy_host"], "mta-sts.served.example");
    assert_eq!(json["served"]["sts"]["value"], "v=STSv1; id=abc123;");
    assert_eq!(json["served"]["config"], "/etc/mta-sts/<serve>.toml");
    assert!(json["served"]["tlsrpt"].is_null());
    assert!(json["diagnosis"].is_null(), "not checked yet");

    // Re-run check: the diagnosis, drift finding included, on the page and in the JSON.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(format!("{base}/domain/served.example/check"))
        .form(&[("csrf", csrf(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (_, page) = get(&format!("{base}/domain/served.example")).await;
    assert!(page.contains("serve-id-not-published"), "{page}");
    assert!(page.contains("id=&#60;b&#62;stale") || page.contains("id=&lt;b&gt;stale"));
    let (_, json) = get(&format!("{base}/api/domain/served.example")).await;
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["diagnosis"]["findings"][0]["id"], "serve-id-not-published",
        "{json}"
    );
    assert_eq!(json["served"]["id"], "abc123");

    // A domain not in the configuration looks as without one.
    let (status, other) = get(&format!("{base}/domain/other.example")).await;
    assert_eq!(status, 200);
    assert!(!other.contains("Records to publish"), "{other}");
    let (_, json) = get(&format!("{base}/api/domain/other.example")).await;
    let json: Value = serde_json::from_str(&json).unwrap();
    assert!(json["served"].is_null(), "{json}");
    server.shutdown().await;

    // Without a serve configuration, no page has records.
    let (server, base) = start(&db, ServedDomains::default()).await;
    let (_, page) = get(&format!("{base}/domain/served.example")).await;
    assert!(!page.contains("Records to publish"), "{page}");
    server.shutdown().await;
}
