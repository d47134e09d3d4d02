//! Measurement harness (not a test): import throughput from a Maildir and summary time over
//! many stored reports, SQLite.
//!
//! ```text
//! cargo run --release -p mta-sts-report-store --example report_bench -- import 10000
//! cargo run --release -p mta-sts-report-store --example report_bench -- summary 1000000
//! cargo run --release -p mta-sts-report-store --example report_bench -- summary-pg 100000
//! ```
//!
//! `import N` writes a Maildir of N report e-mails (multipart/report, base64 of gzip, 20
//! domains × N/20 days, 3 organisations), each DKIM-signed (Ed25519, `d=reporter.example`),
//! to a temp dir, then times verifying, parsing and storing all of them through
//! `MailImporter` into a fresh SQLite file (one transaction per report, as
//! `mta-sts report import` does). The key is served by the testkit's DNS server; the
//! resolver's answer cache makes it one lookup, as a real import of one reporter's mail is.
//!
//! `summary M` bulk-loads M reports (one policy row each, failure details on every third)
//! with `insert_batch`, then times `summary` over everything, for one domain and for the
//! last 30 days, three calls each; then the per-domain totals (`domain_totals`, one row
//! per domain) over every day and over the last 30 days, three calls each, against the
//! per-day summary folded in Rust. `summary-pg M` does the same on a PostgreSQL server of
//! its own (the testkit's; the database size is not shown).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use mta_sts_dkim::DkimSigner;
use mta_sts_net::dns::{Dns, DnsConfig};
use mta_sts_report_store::dkim_dns::DkimVerifier;
use mta_sts_report_store::import::{DkimCheck, DkimStatus, MailImporter};
use mta_sts_report_store::{
    InputOutcome, Limits, ParsedReport, PeriodFilter, ReportSink, ReportStore, SqliteStore,
    SummaryFilter, mailbox, totals,
};
use ring::signature::KeyPair;
use tlsrpt::{
    FailureDetail, PolicyDescriptor, PolicyResult, PolicyType, Report, ResultType, SessionSummary,
    UtcDateTime,
};

const DOMAINS: u64 = 1000;
const ORGS: [&str; 3] = ["Google Inc.", "Microsoft Corporation", "Mail.ru"];

fn report(i: u64) -> Report {
    // A hoster's shape: 1000 domains, each reported on daily by 3 organisations.
    let domain = format!("domain{}.example", i % DOMAINS);
    let day = UtcDateTime::from_unix_seconds(1_700_000_000 + (i / (DOMAINS * 3)) as i64 * 86_400);
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

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= c.len() {
                T[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn email(r: &Report) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(r.to_json().as_bytes())?;
    let gz = gz.finish()?;
    let domain = &r.policies[0].policy.policy_domain;
    Ok(format!(
        "From: tlsrpt@reporter.example\r\nTo: tlsrpt@{domain}\r\n\
         Subject: Report Domain: {domain} Submitter: reporter.example Report-ID: <{}@reporter.example>\r\n\
         TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: reporter.example\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nTLS report\r\n\
         --b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        r.report_id,
        base64(&gz)
    )
    .into_bytes())
}

type Error = Box<dyn std::error::Error>;

async fn import(n: u64) -> Result<(), Error> {
    // The reporter's DKIM key, published in the testkit DNS (RFC 8460 §3).
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| "cannot generate an Ed25519 key")?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| "cannot read the Ed25519 key")?;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\r\n{}\r\n-----END PRIVATE KEY-----\r\n",
        tlsrpt::mail::base64_lines(pkcs8.as_ref())
    );
    let signer = DkimSigner::from_pem(pem.as_bytes(), "reporter.example", "bench")?;
    let world = mta_sts_testkit::World::empty();
    world.dns().set_txt(
        "bench._domainkey.reporter.example",
        &[&[&format!(
            "v=DKIM1; k=ed25519; s=tlsrpt; p={}",
            tlsrpt::mail::base64_lines(pair.public_key().as_ref()).replace("\r\n", "")
        )]],
    );

    let dir = tempfile::tempdir()?;
    let md = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub))?;
    }
    for i in 0..n {
        std::fs::write(
            md.join("cur").join(format!("{i}.bench:2,S")),
            signer.sign(&email(&report(i))?, 1_700_000_000)?,
        )?;
    }
    let store: Arc<dyn ReportStore> = Arc::new(SqliteStore::open(&dir.path().join("r.db"))?);
    let sink = ReportSink::new(store.clone(), Limits::default());
    let dns = Dns::new(&DnsConfig {
        nameservers: vec![world.dns_addr()],
        ..DnsConfig::default()
    })?;
    let importer = MailImporter::new(sink, DkimCheck::Verify(Box::new(DkimVerifier::new(dns))));
    let start = Instant::now();
    let mut imported = 0u64;
    let mut verified = 0u64;
    // As `mta-sts report import` does: 64 inputs side by side, results in order.
    let mut inputs = Vec::new();
    let paths = mailbox::list_files(std::slice::from_ref(&md));
    let last = paths.len();
    for (n, path) in paths.into_iter().enumerate() {
        inputs.extend(mailbox::read_file(&path?, 64 << 20)?);
        if inputs.len() < 64 && n + 1 < last {
            continue;
        }
        for result in importer
            .import_many(std::mem::take(&mut inputs), 1_700_000_000)
            .await
        {
            let result = result?;
            if matches!(result.dkim, DkimStatus::Verified(_)) {
                verified += 1;
            }
            if let InputOutcome::Accepted { reports } = result.outcome {
                imported += reports.len() as u64;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "import: {imported} reports ({verified} DKIM-verified) from a Maildir in {secs:.2} s = {:.0} reports/s (stored {})",
        imported as f64 / secs,
        store.count().await?
    );
    Ok(())
}

async fn summary(m: u64) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("r.db");
    let store = SqliteStore::open(&path)?;
    summary_on(&store, m, || {
        std::fs::metadata(&path).map(|m| format!(", database {:.0} MB", m.len() as f64 / 1e6))
    })
    .await
}

/// `summary-pg M`: the same on a throwaway PostgreSQL server (the testkit's).
async fn summary_pg(m: u64) -> Result<(), Error> {
    let server = mta_sts_testkit::postgres::start()?;
    let store = mta_sts_report_store::PostgresStore::connect(&server.url()).await?;
    summary_on(&store, m, || Ok(String::new())).await
}

async fn summary_on(
    store: &dyn ReportStore,
    m: u64,
    size: impl Fn() -> std::io::Result<String>,
) -> Result<(), Error> {
    let start = Instant::now();
    let batch_size = 20_000;
    let mut i = 0;
    while i < m {
        let batch: Vec<ParsedReport> = (i..(i + batch_size).min(m))
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
        store.insert_batch(&batch, "bench", 1_700_000_000).await?;
        i += batch_size;
    }
    let load = start.elapsed().as_secs_f64();
    println!(
        "load: {m} reports in {load:.1} s ({:.0}/s){}",
        m as f64 / load,
        size()?
    );
    for (label, filter) in [
        ("all domains", SummaryFilter::default()),
        (
            "one domain",
            SummaryFilter {
                domain: Some("domain7.example".into()),
                since: None,
                ..SummaryFilter::default()
            },
        ),
        (
            "all domains, last 30 days",
            SummaryFilter {
                domain: None,
                since: Some(
                    UtcDateTime::from_unix_seconds(
                        1_700_000_000 + ((m / (DOMAINS * 3)) as i64 - 30) * 86_400,
                    )
                    .date_string(),
                ),
                ..SummaryFilter::default()
            },
        ),
    ] {
        // Three calls: the first, and the best (a first call right after a large result
        // also pays the allocator for freeing that one).
        let mut times = Vec::new();
        let mut rows = Vec::new();
        for _ in 0..3 {
            drop(rows);
            let start = Instant::now();
            rows = store.summary(&filter).await?;
            times.push(start.elapsed().as_secs_f64());
        }
        let sessions: u64 = rows.iter().map(|d| d.successful + d.failed).sum();
        println!(
            "summary ({label}): {} day rows, {sessions} sessions in {:.3} s (best of 3: {:.3} s)",
            rows.len(),
            times[0],
            times.iter().copied().fold(f64::INFINITY, f64::min)
        );
    }
    // The dashboard overview: one row per domain, over every day and the last 30 days;
    // "SQL" is `domain_totals` (aggregated by the database), "fold" the per-day summary
    // summed in Rust (what answering it took before).
    let since =
        UtcDateTime::from_unix_seconds(1_700_000_000 + ((m / (DOMAINS * 3)) as i64 - 30) * 86_400)
            .date_string();
    for (label, period) in [
        ("every day", PeriodFilter::default()),
        (
            "last 30 days",
            PeriodFilter {
                since: Some(since),
                until: None,
            },
        ),
    ] {
        let mut sql = Vec::new();
        let mut fold = Vec::new();
        let mut rows = Vec::new();
        let mut folded = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            rows = store.domain_totals(&period).await?;
            sql.push(start.elapsed().as_secs_f64());
            drop(folded);
            let start = Instant::now();
            let days = store
                .summary(&SummaryFilter {
                    domain: None,
                    since: period.since.clone(),
                    ..SummaryFilter::default()
                })
                .await?;
            folded = totals::from_days(&days, &period);
            drop(days);
            fold.push(start.elapsed().as_secs_f64());
        }
        if rows != folded {
            return Err(format!("domain totals ({label}) differ from the folded summary").into());
        }
        let best = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "domain totals ({label}): {} domain rows; SQL best of 3 {:.4} s (runs {:.4?}); \
             folded summary best of 3 {:.3} s",
            rows.len(),
            best(&sql),
            sql,
            best(&fold)
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("import");
    let n: u64 = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    match what {
        "import" => import(n).await,
        "summary" => summary(n).await,
        "summary-pg" => summary_pg(n).await,
        other => {
            Err(format!("unknown mode {other}; use import N, summary M or summary-pg M").into())
        }
    }
}
