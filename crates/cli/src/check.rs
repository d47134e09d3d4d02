//! `mta-sts check DOMAIN… | --input FILE`: full diagnosis of a domain's MTA-STS and TLS-RPT
//! setup, for one domain or a million. The diagnosis is [`mta_sts_checker`]; this module
//! parses arguments and renders reports.
//!
//! Output:
//! - one or more DOMAIN arguments: human output grouped by area, each problem with its fix;
//!   `--json` prints the [`mta_sts_checker::Report`] document (pretty for one domain, one
//!   compact document per line for several).
//! - bulk (`--input FILE`, `-` = standard input; one domain per line, `#` comments): JSON
//!   lines on standard output, one document per domain in completion order, then one final
//!   line `{"summary":{"domains","pass","warn","fail","findings":{id:count},
//!   "mx_hosts_probed","elapsed_ms","domains_per_second"}}`. On a terminal, standard error
//!   shows a progress bar and the summary in words.
//!
//! Exit codes: 0 every domain passes (warnings allowed), 1 some domain fails, 2 usage or
//! I/O error.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use mta_sts_checker::bulk::{self, BulkConfig, Summary};
use mta_sts_checker::{Area, CheckConfig, Checker, Report, Severity, Verdict};
use mta_sts_net::Trust;

use crate::exit;
use crate::net::NetArgs;
use crate::output::{StdoutError, Style};

/// Arguments of `mta-sts check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Domains to check, e.g. example.com.
    #[arg(value_name = "DOMAIN", required_unless_present = "input")]
    pub domains: Vec<String>,
    /// Bulk mode: read domains from FILE (one per line, `#` comments; `-` = standard
    /// input) and write JSON lines plus a final `{"summary":…}` line.
    #[arg(long, value_name = "FILE", conflicts_with = "domains")]
    pub input: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
    /// Print JSON (the `check` document described in the README).
    #[arg(long)]
    pub json: bool,
    /// Give up on one MX host's SMTP dialogue (connect, EHLO, STARTTLS, TLS) after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 20.0, value_parser = parse_secs)]
    pub smtp_timeout: f64,
    /// Do not connect to MX hosts (no SMTP, STARTTLS or certificate checks).
    #[arg(long)]
    pub no_smtp: bool,
    /// Bulk mode: domains checked at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// Time budget of one domain, all probes included; past it the domain gets a
    /// `check-timeout` finding.
    #[arg(long, value_name = "SECS", default_value_t = 120.0, value_parser = parse_secs)]
    pub domain_timeout: f64,
    /// No progress bar in bulk mode, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_secs(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(secs),
        _ => Err(format!(
            "`{value}` is not a number of seconds between 0 and 3600"
        )),
    }
}

impl CheckArgs {
    fn config(&self) -> CheckConfig {
        check_config(&self.net, self.smtp_timeout, !self.no_smtp)
    }
}

/// The checker configuration for these network options (shared with `serve --check`).
pub(crate) fn check_config(net: &NetArgs, smtp_timeout: f64, smtp: bool) -> CheckConfig {
    let trust = match &net.ca_file {
        Some(path) => Trust::PlatformAnd(path.clone()),
        None => Trust::Platform,
    };
    CheckConfig {
        nameservers: net.dns.clone(),
        trust,
        connect_to: net.connect_to.clone(),
        timeout: Duration::from_secs_f64(net.timeout),
        smtp_timeout: Duration::from_secs_f64(smtp_timeout),
        smtp,
        ..CheckConfig::default()
    }
}

/// Runs the command and returns its exit code.
pub fn run(args: &CheckArgs) -> Result<u8> {
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = runtime.enter();
    let checker = Arc::new(Checker::new(args.config()).map_err(|e| anyhow::anyhow!("{e}"))?);
    match &args.input {
        Some(input) => runtime.block_on(run_bulk(args, checker, input)),
        None => runtime.block_on(run_domains(args, checker)),
    }
}

async fn run_domains(args: &CheckArgs, checker: Arc<Checker>) -> Result<u8> {
    let budget = Duration::from_secs_f64(args.domain_timeout);
    // Bad names are usage errors before anything is looked up.
    for domain in &args.domains {
        mta_sts::Domain::parse(domain.trim()).map_err(|e| {
            anyhow::anyhow!(
                "`{domain}` is not a domain name: {e}; pass a domain such as example.com"
            )
        })?;
    }
    let mut reports = Vec::new();
    for domain in &args.domains {
        reports.push(checker.check_bounded(domain, budget).await);
    }
    let style = Style::stdout();
    let mut stdout = std::io::stdout().lock();
    for (i, report) in reports.iter().enumerate() {
        if args.json {
            let text = if reports.len() == 1 {
                serde_json::to_string_pretty(report)?
            } else {
                serde_json::to_string(report)?
            };
            writeln!(stdout, "{text}").map_err(StdoutError)?;
        } else {
            if i > 0 {
                writeln!(stdout).map_err(StdoutError)?;
            }
            write!(stdout, "{}", human(style, report)).map_err(StdoutError)?;
        }
    }
    Ok(exit_code(reports.iter().map(|r| r.verdict)))
}

pub(crate) fn exit_code(verdicts: impl IntoIterator<Item = Verdict>) -> u8 {
    if verdicts.into_iter().any(|v| v == Verdict::Fail) {
        exit::FAIL
    } else {
        exit::OK
    }
}

/// Reads the domain list: one per line, `#` comments, blank lines skipped.
fn read_domains(input: &str) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let path = PathBuf::from(input);
        let file = std::fs::File::open(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {input}: {e}; check the path, or pass - to read standard input"
            )
        })?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut domains = Vec::new();
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {input}"))?;
        if let Some(domain) = bulk::parse_line(&line) {
            domains.push(domain.to_string());
        }
    }
    Ok(domains)
}

async fn run_bulk(args: &CheckArgs, checker: Arc<Checker>, input: &str) -> Result<u8> {
    let domains = read_domains(input)?;
    let total = domains.len() as u64;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        for domain in domains {
            if tx.send(domain).await.is_err() {
                break;
            }
        }
    });
    let show_progress = !args.no_progress && std::io::stderr().is_terminal();
    let bar = if show_progress {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} domains, {per_sec}, eta {eta} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let config = BulkConfig {
        concurrency: args.concurrency,
        domain_timeout: Duration::from_secs_f64(args.domain_timeout),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error: Option<std::io::Error> = None;
    let mut failed = 0u64;
    let summary = bulk::run(checker, rx, config, |report| {
        if report.verdict == Verdict::Fail {
            failed += 1;
            bar.set_message(format!("{failed} failing"));
        }
        bar.inc(1);
        if write_error.is_none() {
            let line = serde_json::to_string(report).map_err(std::io::Error::other);
            if let Err(e) = line.and_then(|l| writeln!(out, "{l}")) {
                write_error = Some(e);
            }
        }
    })
    .await;
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(StdoutError(e).into());
    }
    writeln!(out, "{}", serde_json::json!({ "summary": summary })).map_err(StdoutError)?;
    out.flush().map_err(StdoutError)?;
    if std::io::stderr().is_terminal() {
        eprint!("{}", summary_text(&summary));
    }
    Ok(if summary.fail > 0 {
        exit::FAIL
    } else {
        exit::OK
    })
}

fn summary_text(summary: &Summary) -> String {
    let mut text = format!(
        "{} domains in {:.1} s ({} /s): {} pass, {} warn, {} fail; {} MX hosts probed\n",
        summary.domains,
        summary.elapsed_ms as f64 / 1000.0,
        summary.domains_per_second,
        summary.pass,
        summary.warn,
        summary.fail,
        summary.mx_hosts_probed
    );
    let mut counts: Vec<(&String, &u64)> = summary.findings.iter().collect();
    counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (id, n) in counts.iter().take(20) {
        text.push_str(&format!("  {n:>8}  {id}\n"));
    }
    text
}

fn severity_label(style: Style, severity: Severity) -> String {
    match severity {
        Severity::Error => style.bad("error"),
        Severity::Warning => style.warn("warning"),
        Severity::Info => style.dim("info"),
    }
}

/// The human rendering of one report.
pub(crate) fn human(style: Style, report: &Report) -> String {
    let mut s = String::new();
    let errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let verdict = match report.verdict {
        Verdict::Pass => style.good("PASS"),
        Verdict::Warn => style.warn("WARN"),
        Verdict::Fail => style.bad("FAIL"),
    };
    s.push_str(&format!(
        "{}: {verdict} ({errors} error{}, {warnings} warning{}, {} ms)\n",
        report.domain,
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
        report.elapsed_ms
    ));
    let answer = |would: Option<bool>| match would {
        Some(true) => style.good("yes"),
        Some(false) => style.bad("no"),
        None => style.warn("unknown"),
    };
    match &report.delivery.if_enforced {
        // `mode: testing`: the question is what enforce would do with today's MX hosts;
        // what a sender does now (deliver and report) comes second.
        Some(enforced) => {
            s.push_str(&format!(
                "  would an enforcing sender deliver mail? {}: {}\n",
                answer(enforced.would_deliver),
                enforced.reason
            ));
            s.push_str(&format!(
                "  and today? {}: {}\n",
                answer(report.delivery.would_deliver),
                report.delivery.reason
            ));
        }
        None => s.push_str(&format!(
            "  would an enforcing sender deliver mail? {}: {}\n",
            answer(report.delivery.would_deliver),
            report.delivery.reason
        )),
    }
    if let Some(record) = &report.record
        && let Some(id) = &record.id
    {
        s.push_str(&format!("  record: {} id={id}\n", record.name));
    }
    if let Some(policy) = &report.policy {
        s.push_str(&format!(
            "  policy: mode {}, max_age {}, mx {}{}\n",
            policy.mode.as_deref().unwrap_or("?"),
            policy
                .max_age
                .map(|a| a.to_string())
                .unwrap_or_else(|| "?".into()),
            if policy.mx.is_empty() {
                "-".to_string()
            } else {
                policy.mx.join(", ")
            },
            if policy.strict_valid {
                ""
            } else {
                " (not strictly valid)"
            }
        ));
    }
    s.push_str(&mx_lines(style, report));
    s.push_str(&findings_by_area(style, report));
    s
}

/// One line per MX host: coverage, STARTTLS, certificate and the sender's verdict.
fn mx_lines(style: Style, report: &Report) -> String {
    let mut s = String::new();
    for mx in &report.mx {
        let mut parts = Vec::new();
        match mx.in_policy {
            Some(true) => parts.push("in policy".to_string()),
            Some(false) => parts.push(style.bad("not in policy")),
            None => {}
        }
        match mx.starttls {
            Some(true) => parts.push(format!(
                "STARTTLS {} {}",
                mx.tls_version.as_deref().unwrap_or(""),
                mx.cipher.as_deref().unwrap_or("")
            )),
            Some(false) => parts.push(style.bad("no STARTTLS")),
            None => {}
        }
        if let Some(cert) = &mx.certificate {
            parts.push(if cert.valid {
                format!("certificate valid until {}", cert.not_after)
            } else {
                style.bad("certificate invalid")
            });
        }
        parts.push(format!("→ {}", mx.verdict));
        s.push_str(&format!(
            "  mx {}{}: {}\n",
            mx.host,
            mx.preference.map(|p| format!(" ({p})")).unwrap_or_default(),
            parts.join(", ")
        ));
    }
    s
}

/// The findings grouped by area, each with its evidence and fix.
fn findings_by_area(style: Style, report: &Report) -> String {
    let mut s = String::new();
    for area in Area::ALL {
        let findings: Vec<_> = report.findings.iter().filter(|f| f.area == area).collect();
        if findings.is_empty() {
            continue;
        }
        s.push_str(&format!("{}\n", area.title()));
        for f in findings {
            s.push_str(&format!(
                "  {} {} {}\n",
                severity_label(style, f.severity),
                style.dim(&format!("[{}]", f.id)),
                f.title
            ));
            if !f.detail.is_empty() {
                s.push_str(&format!("      {}\n", f.detail));
            }
            if !f.fix.is_empty() && f.severity != Severity::Info {
                s.push_str(&format!("      fix: {}\n", f.fix));
            }
        }
    }
    s
}
