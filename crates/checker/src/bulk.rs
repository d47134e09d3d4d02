//! Bulk mode: many domains with bounded concurrency, a per-domain time budget and a
//! summary. Reports come back in completion order through a callback, so a million
//! domains never sit in memory at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::checker::Checker;
use crate::finding::Verdict;
use crate::report::Report;

/// Counts over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Domains checked (bad input lines included).
    pub domains: u64,
    /// Domains per verdict.
    pub pass: u64,
    /// Domains with warnings but no error.
    pub warn: u64,
    /// Domains with at least one error.
    pub fail: u64,
    /// Domains per finding id (a domain counts once per id).
    pub findings: BTreeMap<String, u64>,
    /// Distinct MX host:port pairs probed.
    pub mx_hosts_probed: u64,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    /// Domains per second.
    pub domains_per_second: f64,
}

impl Summary {
    /// Adds one report.
    pub fn add(&mut self, report: &Report) {
        self.domains += 1;
        match report.verdict {
            Verdict::Pass => self.pass += 1,
            Verdict::Warn => self.warn += 1,
            Verdict::Fail => self.fail += 1,
        }
        for id in report.ids() {
            *self.findings.entry(id).or_default() += 1;
        }
    }
}

/// Bulk settings.
#[derive(Debug, Clone, Copy)]
pub struct BulkConfig {
    /// Domains checked at once (default 64).
    pub concurrency: usize,
    /// Time budget of one domain; past it the domain gets a `check-timeout` report.
    pub domain_timeout: Duration,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            concurrency: 64,
            domain_timeout: Duration::from_secs(60),
        }
    }
}

/// Checks every domain received on `inputs`, at most `concurrency` at a time, calling
/// `each` with every report as it completes; returns the summary.
pub async fn run(
    checker: Arc<Checker>,
    mut inputs: mpsc::Receiver<String>,
    config: BulkConfig,
    mut each: impl FnMut(&Report),
) -> Summary {
    let start = Instant::now();
    let concurrency = config.concurrency.max(1);
    let mut summary = Summary::default();
    let mut set: JoinSet<Report> = JoinSet::new();
    let mut input_done = false;
    loop {
        while !input_done && set.len() < concurrency {
            match inputs.recv().await {
                Some(domain) => {
                    let checker = checker.clone();
                    let budget = config.domain_timeout;
                    set.spawn(async move { checker.check_bounded(&domain, budget).await });
                }
                None => input_done = true,
            }
        }
        match set.join_next().await {
            Some(Ok(report)) => {
                summary.add(&report);
                each(&report);
            }
            Some(Err(e)) => tracing::error!(error = %e, "a domain check panicked or was cancelled"),
            None => break,
        }
    }
    summary.mx_hosts_probed = checker.mx_probe_count() as u64;
    summary.elapsed_ms = start.elapsed().as_millis() as u64;
    let secs = start.elapsed().as_secs_f64();
    summary.domains_per_second = if secs > 0.0 {
        (summary.domains as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    };
    summary
}

/// Parses an input list: one domain per line; blank lines and `#` comments (whole line or
/// after the domain) are skipped.
///
/// ```
/// assert_eq!(mta_sts_checker::bulk::parse_line("  example.com  # ours"), Some("example.com"));
/// assert_eq!(mta_sts_checker::bulk::parse_line("# comment"), None);
/// assert_eq!(mta_sts_checker::bulk::parse_line("   "), None);
/// ```
pub fn parse_line(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    (!line.is_empty()).then_some(line)
}
