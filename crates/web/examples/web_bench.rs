//! Measurement harness (not a test): dashboard page time and weight over many stored
//! reports.
//!
//! ```text
//! cargo run --release -p mta-sts-web --example web_bench -- sqlite 1000000
//! cargo run --release -p mta-sts-web --example web_bench -- pg 1000000
//! ```
//!
//! Bulk-loads M reports (1,000 domains, each reported on daily by 3 organisations, one
//! policy each, failure details on every third: 1,000,000 reports are 333 days) into a
//! fresh SQLite file or a PostgreSQL server of its own (the testkit's), serves the
//! dashboard on loopback with its clock on the day after the last report, and times three
//! GETs of each page (overview and one domain page, 30 days and all time, HTML and JSON),
//! printing the best and worst and the page size.

use std::sync::Arc;
use std::time::Instant;

use mta_sts_net::ManualClock;
use mta_sts_report_store::{ParsedReport, ReportStore, SqliteStore};
use mta_sts_web::{WebConfig, WebServer};
use tlsrpt::{
    FailureDetail, PolicyDescriptor, PolicyResult, PolicyType, Report, ResultType, SessionSummary,
    UtcDateTime,
};

type Error = Box<dyn std::error::Error>;

const DOMAINS: u64 = 1000;
const ORGS: [&str; 3] = ["Google Inc.", "Microsoft Corporation", "Mail.ru"];
const START: i64 = 1_700_000_000;

fn report(i: u64) -> Report {
    let domain = format!("domain{}.example", i % DOMAINS);
    let day = UtcDateTime::from_unix_seconds(START + (i / (DOMAINS * 3)) as i64 * 86_400);
    let mut r = Report::daily(
        ORGS[((i / DOMAINS) % 3) as usize],
        "tlsrpt@reporter.example",
        format!("bench-{i}"),
        day,
    );
    let failures = if i.is_multiple_of(3) { 2 } else { 0 };
    r.policies.push(PolicyResult {
        policy: PolicyDescriptor {
            policy_type: PolicyType::Sts,
            policy_string: vec![
                "version: STSv1".into(),
                "mode: enforce".into(),
                format!("mx: mx.{domain}"),
                "max_age: 86400".into(),
            ],
            policy_domain: domain.clone(),
            mx_host: vec![format!("mx.{domain}")],
        },
        summary: SessionSummary {
            total_successful_session_count: 100 + i % 50,
            total_failure_session_count: failures,
        },
        failure_details: if failures > 0 {
            vec![FailureDetail {
                sending_mta_ip: Some("192.0.2.1".into()),
                receiving_mx_hostname: Some(format!("mx.{domain}")),
                ..FailureDetail::new(ResultType::CertificateExpired, failures)
            }]
        } else {
            vec![]
        },
    });
    r
}

async fn load(store: &dyn ReportStore, m: u64) -> Result<(), Error> {
    let start = Instant::now();
    let mut i = 0;
    while i < m {
        let batch: Vec<ParsedReport> = (i..(i + 20_000).min(m))
            .map(|k| {
                let r = report(k);
                ParsedReport {
                    raw_json: r.to_json(),
                    report: r,
                    origin: "bench".into(),
                    dkim: None,
                }
            })
            .collect();
        store.insert_batch(&batch, "bench", START).await?;
        i += 20_000;
    }
    println!(
        "load: {m} reports in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn pages(store: Arc<dyn ReportStore>, m: u64) -> Result<(), Error> {
    let last_day = START + (m.saturating_sub(1) / (DOMAINS * 3)) as i64 * 86_400;
    let clock = Arc::new(ManualClock::new(u64::try_from(last_day + 86_400)?));
    let config = WebConfig {
        listen: "127.0.0.1:0".parse()?,
        ..WebConfig::default()
    };
    let server = WebServer::start(&config, store, clock, None).await?;
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::new();
    for (label, path) in [
        ("overview, 30 days", "/?period=30"),
        ("overview, all time", "/?period=all"),
        ("overview JSON, 30 days", "/api/?period=30"),
        ("domain page, 30 days", "/domain/domain7.example?period=30"),
        (
            "domain page, all time",
            "/domain/domain7.example?period=all",
        ),
        (
            "domain JSON, all time",
            "/api/domain/domain7.example?period=all",
        ),
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let r = client.get(format!("{base}{path}")).send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(status.is_success(), "{path}: {status}");
            size = body.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{label}: best {:.0} ms, worst {:.0} ms, {:.1} KB",
            times[0],
            times[2],
            size as f64 / 1000.0
        );
    }
    server.shutdown().await;
    Ok(())
}

/// Times the store calls behind the overview, best of three each, to show where a page's
/// time goes: the per-domain totals, the organisations, policies and result types of every
/// domain, and the days of the 50 domains a page shows.
async fn store_calls(store: &dyn ReportStore, m: u64) -> Result<(), Error> {
    use mta_sts_report_store::PeriodFilter;
    let last_day = START + (m.saturating_sub(1) / (DOMAINS * 3)) as i64 * 86_400;
    let since = UtcDateTime::from_unix_seconds(last_day - 29 * 86_400).date_string();
    for (label, since) in [("30 days", Some(since)), ("all time", None)] {
        let period = PeriodFilter {
            since: since.clone(),
            until: None,
        };
        let mut best = [f64::MAX; 3];
        for _ in 0..3 {
            let t = Instant::now();
            store.domain_totals(&period).await?;
            let a = t.elapsed().as_secs_f64() * 1000.0;
            let t = Instant::now();
            store.overview_keys(&period, None).await?;
            let b = t.elapsed().as_secs_f64() * 1000.0;
            let t = Instant::now();
            let page: Vec<String> = (0..50).map(|d| format!("domain{d}.example")).collect();
            store.domain_days(&page, since.as_deref()).await?;
            let c = t.elapsed().as_secs_f64() * 1000.0;
            for (best, now) in best.iter_mut().zip([a, b, c]) {
                *best = best.min(now);
            }
        }
        println!(
            "overview's store calls, {label}: domain_totals {:.0} ms, overview_keys {:.0} ms, \
             50 domains' days {:.0} ms (best of 3)",
            best[0], best[1], best[2]
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let m: u64 = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    match args.get(1).map(String::as_str) {
        Some("sqlite") => {
            let dir = tempfile::tempdir()?;
            // MTA_STS_BENCH_DB keeps the database for the next run, which then skips the load.
            let path = std::env::var_os("MTA_STS_BENCH_DB")
                .map_or_else(|| dir.path().join("r.db"), std::path::PathBuf::from);
            if !path.exists() {
                load(&SqliteStore::open(&path)?, m).await?;
            }
            let store: Arc<dyn ReportStore> = Arc::new(SqliteStore::open_read_only(&path)?);
            store_calls(store.as_ref(), m).await?;
            pages(store, m).await
        }
        Some("pg") => {
            let server = mta_sts_testkit::postgres::start()?;
            let store = mta_sts_report_store::PostgresStore::connect(&server.url()).await?;
            load(&store, m).await?;
            store_calls(&store, m).await?;
            pages(Arc::new(store), m).await
        }
        _ => Err("usage: web_bench sqlite|pg M".into()),
    }
}
