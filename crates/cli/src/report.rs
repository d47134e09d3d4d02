//! `mta-sts report …`: import TLS-RPT reports (RFC 8460) into a store and read them back
//! (docs/design.md §4). The work is done by `mta-sts-report-store`; this module parses arguments and
//! renders results.
//!
//! Exit codes: 0 ok; 1 some inputs refused (import) or no such report (show); 2 usage, I/O
//! or database errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mta_sts_net::{Clock, SystemClock};
use mta_sts_report_store::{
    DaySummary, DomainTotals, InputOutcome, Inserted, Limits, PeriodFilter, ReportSink,
    ReportStore, StoreError, SummaryFilter, mailbox, normalize_domain, open_existing_store,
    open_store,
};
use serde::Serialize;
use tlsrpt::UtcDateTime;

use crate::exit;
use crate::output::{Style, outln};

/// Arguments of `mta-sts report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report database: a SQLite file, or a postgres://user:pass@host/db URL. Default:
    /// /var/lib/mta-sts/reports.db as root, else $XDG_DATA_HOME/mta-sts/reports.db
    /// (~/.local/share/mta-sts/reports.db).
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub db: Option<String>,
    #[command(subcommand)]
    pub command: ReportCommand,
}

/// `mta-sts report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Import reports from files (.json, .json.gz, .gz, .zip, .eml), directories, Maildir
    /// folders and mbox files; mail must carry a valid DKIM signature by the reporting domain
    /// (RFC 8460 §3); exit 1 if any input was refused.
    Import(ImportArgs),
    /// Sessions per policy domain and day: succeeded, failed, failures by result type,
    /// reporting organisation and MX.
    Summary(SummaryArgs),
    /// Show the stored report(s) with this report-id (or database row id).
    Show(ShowArgs),
    /// Generate and deliver our own reports (RFC 8460 §4, §5): ingest session events, build
    /// one report per policy domain and completed UTC day, deliver to every rua (mail through
    /// a relay, HTTPS POST), retrying for 24 hours; exit 0 all delivered or scheduled, 1 some
    /// failed permanently, 2 usage.
    Send(Box<SendArgs>),
}

/// Arguments of `mta-sts report import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files, directories, Maildir folders or mbox files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Largest decompressed report accepted, in bytes (decompression-bomb cap).
    #[arg(long, default_value_t = 25 << 20, value_name = "BYTES")]
    pub max_report_size: usize,
    /// Print the result as JSON: {"imported","duplicates","refused":[{"input","reason","code",
    /// "temporary"}],"warnings":[{"input","reason"}],"dkim","dkim_verified"}.
    #[arg(long)]
    pub json: bool,
    /// Import mail without DKIM verification, e.g. an archive whose signing keys have been
    /// rotated away. RFC 8460 §3 requires receivers to ignore reports without a valid DKIM
    /// signature by the reporting domain: use this only for mail you trust otherwise.
    #[arg(long)]
    pub no_dkim: bool,
    /// Also refuse mail whose DKIM key record lacks s=tlsrpt (RFC 8460 §3 MAY); by default
    /// such mail is imported with a warning.
    #[arg(long, conflicts_with = "no_dkim")]
    pub dkim_require_service: bool,
    /// DNS server for DKIM key lookups instead of the system's, as IP or IP:PORT
    /// (repeatable).
    #[arg(long = "dns", value_name = "IP[:PORT]", value_parser = crate::net::parse_nameserver)]
    pub dns: Vec<std::net::SocketAddr>,
    /// Give up on a DKIM key lookup after this many seconds (at most 60); a lookup that
    /// fails or times out refuses the message as dkim-temporary (try again later).
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = crate::net::parse_timeout)]
    pub timeout: f64,
    /// Pretend the time is this (Unix seconds), for DKIM x= expiry; for tests and replays.
    #[arg(long, value_name = "UNIX", hide = true)]
    pub now: Option<u64>,
}

/// Arguments of `mta-sts report summary`.
#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Only this policy domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Only days on or after this UTC date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Print JSON: {"days":[{"policy_domain","day","reports","successful","failed",
    /// "failures_by_result_type","failures_by_organization","failures_by_mx"}]}.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page (tables and an SVG chart) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// One line per policy domain over the period instead of one per domain and day
    /// (totals and success rate, summed by the database: a dashboard's overview). With
    /// --json: {"domains":[{"policy_domain","days","reports","successful","failed"}]}.
    #[arg(long, conflicts_with = "html")]
    pub by_domain: bool,
}

/// Arguments of `mta-sts report show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A report-id, or a database row id.
    pub id: String,
    /// Print JSON: [{"id","source","imported_at","report":{RFC 8460 report}}].
    #[arg(long)]
    pub json: bool,
}

/// The default database: system-wide for root, per user otherwise.
pub(crate) fn default_db() -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            return PathBuf::from("/var/lib/mta-sts/reports.db");
        }
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("mta-sts/reports.db")
}

/// Runs the command and returns its exit code.
///
/// The binary is where the clock is chosen: the system clock here, read by the commands
/// that need the time (`import`'s DKIM expiry and import stamp, `send`'s report day), each
/// overridable with the hidden `--now` for tests and replays.
pub fn run(args: &ReportArgs) -> Result<u8> {
    let clock = SystemClock;
    let location = args
        .db
        .clone()
        .unwrap_or_else(|| default_db().display().to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let ReportCommand::Send(a) = &args.command {
        return runtime.block_on(send(&location, a, &clock));
    }
    // Usage errors come before the database is looked for.
    if let ReportCommand::Summary(SummaryArgs {
        since: Some(since), ..
    }) = &args.command
        && (since.len() != 10 || UtcDateTime::parse(&format!("{since}T00:00:00Z")).is_err())
    {
        bail!("--since `{since}` is not a date; pass YYYY-MM-DD, e.g. --since 2024-01-31");
    }
    runtime.block_on(async {
        let store = if matches!(args.command, ReportCommand::Import(_)) {
            open_store(&location).await.with_context(|| {
                "pass --db with a writable SQLite path or a reachable postgres:// URL".to_owned()
            })?
        } else {
            // Reading commands never create a database: a typo in --db must not look like
            // an empty store.
            open_existing_store(&location).await.map_err(|e| match e {
                StoreError::Missing { .. } => anyhow::anyhow!(
                    "{e}; pass --db with the database `mta-sts report import` stored reports in"
                ),
                other => anyhow::Error::new(other).context(
                    "pass --db with a readable SQLite path or a reachable postgres:// URL",
                ),
            })?
        };
        match &args.command {
            ReportCommand::Import(a) => import(store, a, &clock).await,
            ReportCommand::Summary(a) => summary(store, a).await,
            ReportCommand::Show(a) => show(store, a).await,
            ReportCommand::Send(_) => Ok(exit::USAGE),
        }
    })
}

#[derive(Debug, Default, Serialize)]
struct ImportResult {
    imported: u64,
    duplicates: u64,
    refused: Vec<Refusal>,
    /// Inputs imported with a remark (e.g. a DKIM key without s=tlsrpt).
    warnings: Vec<Warning>,
    /// "verify" or "skip" (--no-dkim).
    dkim: &'static str,
    /// Mail inputs whose DKIM signature verified.
    dkim_verified: u64,
}

#[derive(Debug, Serialize)]
struct Refusal {
    input: String,
    reason: String,
    /// A stable code for DKIM refusals (dkim-missing, dkim-invalid, …), else null.
    code: Option<&'static str>,
    /// Whether trying again later may succeed (a DNS failure during DKIM key lookup).
    temporary: bool,
}

#[derive(Debug, Serialize)]
struct Warning {
    input: String,
    reason: String,
}

async fn import(store: Arc<dyn ReportStore>, args: &ImportArgs, clock: &dyn Clock) -> Result<u8> {
    use mta_sts_net::dns::{Dns, DnsConfig};
    use mta_sts_report_store::dkim_dns::DkimVerifier;
    use mta_sts_report_store::import::{DkimCheck, MailImporter};

    let limits = Limits {
        max_report_bytes: args.max_report_size,
        ..Limits::default()
    };
    let sink = ReportSink::new(store, limits);
    let dkim = if args.no_dkim {
        DkimCheck::Skip
    } else {
        let dns = Dns::new(&DnsConfig {
            nameservers: args.dns.clone(),
            timeout: std::time::Duration::from_secs_f64(args.timeout),
            ..DnsConfig::default()
        })
        .context("cannot set up DNS for DKIM key lookups; pass --dns IP[:PORT]")?;
        DkimCheck::Verify(Box::new(
            DkimVerifier::new(dns).require_service(args.dkim_require_service),
        ))
    };
    let importer = MailImporter::new(sink, dkim);
    let now = args.now.unwrap_or_else(|| clock.now());
    let mut result = ImportResult {
        dkim: if args.no_dkim { "skip" } else { "verify" },
        ..ImportResult::default()
    };
    // Mail whose reports were stored without DKIM verification (--no-dkim).
    let mut unverified_mail = 0u64;
    // Inputs are imported side by side in chunks (DKIM lookups and parsing overlap, and the
    // SQLite store commits a chunk's reports together); results are taken in input order.
    let mut chunk: Vec<Pending> = Vec::new();
    for file in mailbox::list_files(&args.paths) {
        let pending = match file.and_then(|path| mailbox::read_file(&path, limits.max_input_bytes))
        {
            Ok(inputs) => inputs.into_iter().map(Pending::Input).collect(),
            Err(e) => vec![Pending::Unreadable(Refusal {
                input: e.path.clone(),
                reason: e.source.to_string(),
                code: None,
                temporary: false,
            })],
        };
        chunk.extend(pending);
        if chunk.len() >= IMPORT_CHUNK {
            import_chunk(
                &importer,
                std::mem::take(&mut chunk),
                now,
                &mut result,
                &mut unverified_mail,
            )
            .await?;
        }
    }
    import_chunk(&importer, chunk, now, &mut result, &mut unverified_mail).await?;
    print_import(&result, args.json, unverified_mail)?;
    Ok(if result.refused.is_empty() {
        exit::OK
    } else {
        exit::FAIL
    })
}

/// Inputs imported side by side by `report import`.
const IMPORT_CHUNK: usize = 64;

/// An input of `report import`, or a path that could not be read.
enum Pending {
    Input(mailbox::Input),
    Unreadable(Refusal),
}

/// Imports `chunk` side by side and adds each input's outcome to `result`, in order.
async fn import_chunk(
    importer: &mta_sts_report_store::import::MailImporter,
    chunk: Vec<Pending>,
    now: u64,
    result: &mut ImportResult,
    unverified_mail: &mut u64,
) -> Result<()> {
    use mta_sts_report_store::import::DkimStatus;

    let mut inputs = Vec::new();
    let mut order = Vec::with_capacity(chunk.len());
    for p in chunk {
        match p {
            Pending::Input(input) => {
                order.push(Ok(input.label.clone()));
                inputs.push(input);
            }
            Pending::Unreadable(refusal) => order.push(Err(refusal)),
        }
    }
    let mut imported = importer.import_many(inputs, now).await.into_iter();
    for item in order {
        let label = match item {
            Ok(label) => label,
            Err(refusal) => {
                result.refused.push(refusal);
                continue;
            }
        };
        let Some(imported) = imported.next() else {
            break;
        };
        let imported = imported?;
        for reason in imported.warnings {
            result.warnings.push(Warning {
                input: label.clone(),
                reason,
            });
        }
        let (code, temporary) = match &imported.dkim {
            DkimStatus::Verified(_) => {
                result.dkim_verified += 1;
                (None, false)
            }
            DkimStatus::Refused(r) => (Some(r.code()), r.is_temporary()),
            DkimStatus::NotMail | DkimStatus::Skipped => (None, false),
        };
        match imported.outcome {
            InputOutcome::Accepted { reports } => {
                let mut new = false;
                for r in reports {
                    match r.stored {
                        Inserted::New(_) => {
                            result.imported += 1;
                            new = true;
                        }
                        Inserted::Duplicate(_) => result.duplicates += 1,
                    }
                }
                if new && imported.dkim == DkimStatus::Skipped {
                    *unverified_mail += 1;
                }
            }
            InputOutcome::Refused { reason } => result.refused.push(Refusal {
                input: label,
                reason,
                code,
                temporary,
            }),
        }
    }
    Ok(())
}

/// Prints the result of `report import`: JSON, or a line of counts and one line per refused
/// input and warning; `unverified_mail` mail messages were stored without DKIM verification.
fn print_import(result: &ImportResult, json: bool, unverified_mail: u64) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(result)?)?;
    } else {
        let style = Style::stdout();
        outln!(
            "{} imported, {} duplicate{}, {} refused",
            style.good(&result.imported.to_string()),
            result.duplicates,
            if result.duplicates == 1 { "" } else { "s" },
            if result.refused.is_empty() {
                "0".to_owned()
            } else {
                style.bad(&result.refused.len().to_string())
            }
        )?;
        for r in &result.refused {
            outln!("  refused {}: {}", r.input, r.reason)?;
        }
        for w in &result.warnings {
            outln!("  warning {}: {}", w.input, w.reason)?;
        }
        if unverified_mail > 0 {
            eprintln!(
                "note: --no-dkim: {unverified_mail} mail message{} imported without DKIM verification (RFC 8460 §3 requires it)",
                if unverified_mail == 1 {
                    " was"
                } else {
                    "s were"
                }
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    days: &'a [DaySummary],
}

#[derive(Serialize)]
struct DomainsJson<'a> {
    domains: &'a [DomainTotals],
}

/// `report summary --by-domain`: one line per policy domain.
/// The line printed when a summary has no rows: nothing matched the filters, or nothing is
/// stored at all.
fn nothing_to_show(args: &SummaryArgs) -> &'static str {
    if args.domain.is_some() || args.since.is_some() {
        "no reports match"
    } else {
        "no reports stored"
    }
}

async fn summary_by_domain(store: Arc<dyn ReportStore>, args: &SummaryArgs) -> Result<u8> {
    let period = PeriodFilter {
        since: args.since.clone(),
        until: None,
    };
    let mut domains = store.domain_totals(&period).await?;
    if let Some(d) = &args.domain {
        let d = normalize_domain(d);
        domains.retain(|t| t.policy_domain == d);
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&DomainsJson { domains: &domains })?
        )?;
        return Ok(exit::OK);
    }
    let style = Style::stdout();
    if domains.is_empty() {
        outln!("{}", nothing_to_show(args))?;
    }
    for t in &domains {
        let name = if t.policy_domain.is_empty() {
            "(no policy-domain)"
        } else {
            &t.policy_domain
        };
        let rate = t
            .success_rate()
            .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let failed = if t.failed > 0 {
            style.bad(&t.failed.to_string())
        } else {
            t.failed.to_string()
        };
        outln!(
            "{}  {} ok  {} failed  {} success  ({} report{}, {} day{})",
            style.dim(name),
            t.successful,
            failed,
            rate,
            t.reports,
            if t.reports == 1 { "" } else { "s" },
            t.days,
            if t.days == 1 { "" } else { "s" }
        )?;
    }
    Ok(exit::OK)
}

async fn summary(store: Arc<dyn ReportStore>, args: &SummaryArgs) -> Result<u8> {
    if args.by_domain {
        return summary_by_domain(store, args).await;
    }
    let filter = SummaryFilter {
        domain: args.domain.clone(),
        since: args.since.clone(),
        ..SummaryFilter::default()
    };
    let days = store.summary(&filter).await?;
    if let Some(path) = &args.html {
        let mut scope = Vec::new();
        if let Some(d) = &args.domain {
            scope.push(format!("domain {d}"));
        }
        if let Some(s) = &args.since {
            scope.push(format!("since {s}"));
        }
        let generated = format!(
            "{} day rows{}{}",
            days.len(),
            if scope.is_empty() { "" } else { ", " },
            scope.join(", ")
        );
        let page =
            mta_sts_web::summary_page::render(&days, "TLS-RPT summary (RFC 8460)", &generated);
        std::fs::write(path, page).with_context(|| {
            format!(
                "cannot write {}; pass a writable --html FILE",
                path.display()
            )
        })?;
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&SummaryJson { days: &days })?
        )?;
        return Ok(exit::OK);
    }
    let style = Style::stdout();
    if days.is_empty() {
        outln!("{}", nothing_to_show(args))?;
    }
    let mut last_domain = None;
    for d in &days {
        if last_domain != Some(&d.policy_domain) {
            let name = if d.policy_domain.is_empty() {
                "(no policy-domain)"
            } else {
                &d.policy_domain
            };
            outln!("{}", style.dim(name))?;
            last_domain = Some(&d.policy_domain);
        }
        let rate = d
            .success_rate()
            .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let failed = if d.failed > 0 {
            style.bad(&d.failed.to_string())
        } else {
            d.failed.to_string()
        };
        outln!(
            "  {}  {} ok  {} failed  {} success  ({} report{})",
            d.day,
            d.successful,
            failed,
            rate,
            d.reports,
            if d.reports == 1 { "" } else { "s" }
        )?;
        for (label, map) in [
            ("by result type", &d.failures_by_result_type),
            ("by organisation", &d.failures_by_organization),
            ("by MX", &d.failures_by_mx),
        ] {
            if !map.is_empty() {
                outln!("      failures {label}: {}", top_entries(map))?;
            }
        }
    }
    if let Some(path) = &args.html {
        eprintln!("wrote {}", path.display());
    }
    Ok(exit::OK)
}

/// Most entries of one failure breakdown shown per line; `--json` keeps all.
const TOP_ENTRIES: usize = 10;

/// `key count, …` for the [`TOP_ENTRIES`] largest counts (ties by key), then `and N more`:
/// a day may have failures at thousands of MX hosts.
fn top_entries(map: &std::collections::BTreeMap<String, u64>) -> String {
    let mut entries: Vec<(&String, &u64)> = map.iter().collect();
    entries.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut items: Vec<String> = entries
        .iter()
        .take(TOP_ENTRIES)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if entries.len() > TOP_ENTRIES {
        items.push(format!("and {} more", entries.len() - TOP_ENTRIES));
    }
    items.join(", ")
}

async fn show(store: Arc<dyn ReportStore>, args: &ShowArgs) -> Result<u8> {
    let found = store.find(&args.id).await?;
    if found.is_empty() {
        eprintln!(
            "error: no stored report has report-id or row id `{}`; run `mta-sts report summary` to list domains and days",
            args.id
        );
        return Ok(exit::FAIL);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&found)?)?;
        return Ok(exit::OK);
    }
    for s in &found {
        let r = &s.report;
        outln!("report {} (row {}, from {})", r.report_id, s.id, s.source)?;
        outln!("  organisation  {}", r.organization_name)?;
        outln!("  contact       {}", r.contact_info)?;
        outln!(
            "  period        {} – {}",
            r.date_range.start,
            r.date_range.end
        )?;
        for p in &r.policies {
            outln!(
                "  policy {} {}: {} ok, {} failed",
                p.policy.policy_type,
                p.policy.policy_domain,
                p.summary.total_successful_session_count,
                p.summary.total_failure_session_count
            )?;
            if !p.policy.mx_host.is_empty() {
                outln!("    mx-host {}", p.policy.mx_host.join(", "))?;
            }
            for line in &p.policy.policy_string {
                outln!("    | {line}")?;
            }
            for d in &p.failure_details {
                let mut parts = vec![format!("{} x{}", d.result_type, d.failed_session_count)];
                if let Some(mx) = &d.receiving_mx_hostname {
                    parts.push(format!("mx {mx}"));
                }
                if let Some(ip) = &d.receiving_ip {
                    parts.push(format!("ip {ip}"));
                }
                if let Some(ip) = &d.sending_mta_ip {
                    parts.push(format!("from {ip}"));
                }
                if let Some(code) = &d.failure_reason_code {
                    parts.push(format!("reason {code:?}"));
                }
                outln!("    failure {}", parts.join(", "))?;
            }
        }
    }
    Ok(exit::OK)
}

/// Arguments of `mta-sts report send`.
///
/// State (events consumed per file, generated reports, the outbox and the delivery log) lives
/// in the SQLite `--db` next to received reports. Events are one JSON object per line (see
/// the `tlsrpt::event` documentation; libtlsrpt datagram lines are accepted too). With
/// `--dry-run` events are still ingested (idempotently), but reports are only printed: none is
/// recorded or delivered. `--log` prints the outbox and the delivery log and does nothing else.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Events files (JSON lines) to ingest; only lines added since the last run are read.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub events: Vec<PathBuf>,
    /// Only generate the report of this completed UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub day: Option<String>,
    /// SMTP relay for mailto: reports; it must DKIM-sign them (RFC 8460 §5.3).
    #[arg(long, value_name = "HOST:PORT")]
    pub relay: Option<String>,
    /// Use STARTTLS with the relay (its certificate is verified).
    #[arg(long)]
    pub starttls: bool,
    /// The submitter domain (TLS-Report-Submitter, the domain of contact-info, RFC 8460 §5.3).
    #[arg(long, value_name = "DOMAIN")]
    pub submitter: Option<String>,
    /// From: address of report mail. Default: tlsrpt@SUBMITTER.
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// organization-name of the reports. Default: the submitter domain.
    #[arg(long, value_name = "NAME")]
    pub org: Option<String>,
    /// contact-info of the reports. Default: the From: address.
    #[arg(long, value_name = "ADDR")]
    pub contact: Option<String>,
    /// DKIM-sign report mail with this PEM key (RSA or Ed25519, RFC 8460 §5.3 MUST); without
    /// it the relay must sign (e.g. OpenDKIM).
    #[arg(long, value_name = "PEM", requires = "dkim_selector")]
    pub dkim_key: Option<PathBuf>,
    /// DKIM selector (s=); its key record should carry s=tlsrpt.
    #[arg(long, value_name = "SELECTOR")]
    pub dkim_selector: Option<String>,
    /// DKIM signing domain (d=). Default: the submitter domain.
    #[arg(long, value_name = "DOMAIN")]
    pub dkim_domain: Option<String>,
    /// Accept any certificate of https: report endpoints (RFC 8460 §3 allows it).
    #[arg(long)]
    pub insecure_https: bool,
    /// Print the reports that would be generated; record and deliver nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the outbox and the delivery log, then exit.
    #[arg(long)]
    pub log: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Pretend the time is this (RFC 3339 or Unix seconds); for tests and replays.
    #[arg(long, value_name = "TIME", hide = true)]
    pub now: Option<String>,
    #[command(flatten)]
    pub net: crate::net::NetArgs,
}

/// One line of `report send` output.
#[derive(Debug, Default, Serialize)]
struct SendLine {
    report_id: String,
    policy_domain: String,
    day: String,
    successful: Option<u64>,
    failed: Option<u64>,
    note: Option<String>,
    deliveries: Vec<SendDelivery>,
}

#[derive(Debug, Serialize)]
struct SendDelivery {
    rua: String,
    outcome: &'static str,
    detail: String,
}

/// `--now` (Unix seconds or an RFC 3339 time), else the clock.
fn parse_now(text: Option<&str>, clock: &dyn Clock) -> Result<i64> {
    match text {
        None => Ok(i64::try_from(clock.now()).unwrap_or(i64::MAX)),
        Some(t) => match t.parse::<i64>() {
            Ok(secs) => Ok(secs),
            Err(_) => Ok(UtcDateTime::parse(t)
                .with_context(|| format!("--now `{t}`"))?
                .unix_seconds()),
        },
    }
}

/// A failed sender set-up step in the words of the flags, its cause kept.
fn setup_error(error: mta_sts_report_store::sending::SetupError) -> anyhow::Error {
    use mta_sts_report_store::sending::SetupError;
    match error {
        SetupError::CaFileRead { path, source } | SetupError::CaFilePem { path, source } => {
            anyhow::Error::new(source).context(format!("--ca-file {}", path.display()))
        }
        SetupError::DkimKeyRead { path, source } => {
            anyhow::Error::new(source).context(format!("--dkim-key {}", path.display()))
        }
        SetupError::DkimKey { path, source } => {
            anyhow::Error::new(source).context(format!("--dkim-key {}", path.display()))
        }
        SetupError::Dns(source) => anyhow::Error::new(source).context("cannot set up DNS"),
        other => anyhow::Error::new(other),
    }
}

async fn send(location: &str, args: &SendArgs, clock: &dyn Clock) -> Result<u8> {
    use mta_sts_report_store::outbox::{AttemptResult, Outbox};
    use mta_sts_report_store::sending::{DkimKeyFile, SenderSettings};
    use std::collections::BTreeMap;

    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        bail!("report send keeps its outbox in SQLite: pass --db with a SQLite file path");
    }
    let outbox = Outbox::open(Path::new(location))
        .with_context(|| "pass --db with a writable SQLite path".to_owned())?;
    if args.log {
        print_outbox_log(&outbox, args.json)?;
        return Ok(exit::OK);
    }
    let Some(submitter) = args.submitter.clone() else {
        bail!("--submitter DOMAIN is required (the domain of the reports' contact-info)");
    };
    if let Some(day) = &args.day
        && UtcDateTime::parse(&format!("{day}T00:00:00Z")).is_err()
    {
        bail!("--day `{day}` is not YYYY-MM-DD");
    }
    let now = parse_now(args.now.as_deref(), clock)?;
    let settings = SenderSettings {
        from: args.from.clone(),
        organization: args.org.clone(),
        contact: args.contact.clone(),
        dkim: match (&args.dkim_key, &args.dkim_selector) {
            (Some(key), Some(selector)) => Some(DkimKeyFile {
                key: key.clone(),
                selector: selector.clone(),
                domain: args.dkim_domain.clone(),
            }),
            _ => None,
        },
        relay: args.relay.clone(),
        starttls: args.starttls,
        insecure_https: args.insecure_https,
        ca_file: args.net.ca_file.clone(),
        connect_to: args.net.connect_to.clone(),
        nameservers: args.net.dns.clone(),
        timeout: std::time::Duration::from_secs_f64(args.net.timeout),
        submitter,
    };
    let sender = settings.build(outbox).map_err(setup_error)?;
    for path in &args.events {
        let ingested = sender.ingest_file(path, now)?;
        for (line, reason) in &ingested.refused {
            eprintln!("{}: line {line}: {reason}", path.display());
        }
    }
    let generated = sender
        .generate(now, args.day.as_deref(), args.dry_run)
        .await?;
    if args.dry_run {
        let reports: Vec<_> = generated.iter().map(|g| &g.report).collect();
        for r in &reports {
            outln!("{}", r.to_json_pretty())?;
        }
        return Ok(exit::OK);
    }
    let mut lines: BTreeMap<String, SendLine> = BTreeMap::new();
    for g in &generated {
        lines.insert(
            g.report.report_id.clone(),
            SendLine {
                report_id: g.report.report_id.clone(),
                policy_domain: g.policy_domain.clone(),
                day: g.day.clone(),
                successful: Some(g.report.total_successful()),
                failed: Some(g.report.total_failed()),
                note: g.note.clone(),
                deliveries: Vec::new(),
            },
        );
    }
    let attempts = sender.deliver_due(now).await?;
    let mut failed = false;
    for a in &attempts {
        let line = lines
            .entry(a.entry.report_id.clone())
            .or_insert_with(|| SendLine {
                report_id: a.entry.report_id.clone(),
                policy_domain: a.entry.policy_domain.clone(),
                day: a.entry.report_id.get(..10).unwrap_or_default().to_owned(),
                ..SendLine::default()
            });
        let (outcome, detail) = match &a.result {
            AttemptResult::Delivered => ("delivered", String::new()),
            AttemptResult::Retry { at, error } => (
                "retry",
                format!("{error}; next {}", UtcDateTime::from_unix_seconds(*at)),
            ),
            AttemptResult::Failed { error } => {
                failed = true;
                ("failed", error.clone())
            }
        };
        line.deliveries.push(SendDelivery {
            rua: a.entry.rua.clone(),
            outcome,
            detail,
        });
    }
    let lines: Vec<SendLine> = lines.into_values().collect();
    print_send_lines(&lines, args.json)?;
    Ok(if failed { exit::FAIL } else { exit::OK })
}

/// Prints the outbox and the delivery log (`report send --log`): JSON, or one line each.
fn print_outbox_log(outbox: &mta_sts_report_store::outbox::Outbox, json: bool) -> Result<()> {
    let entries = outbox.entries()?;
    let log = outbox.log_entries()?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"outbox": entries, "log": log}))?
        )?;
    } else {
        for e in &entries {
            let state = match (e.delivered_at, e.failed_at) {
                (Some(t), _) => format!("delivered {}", UtcDateTime::from_unix_seconds(t)),
                (_, Some(t)) => format!("failed {}", UtcDateTime::from_unix_seconds(t)),
                _ => format!("next {}", UtcDateTime::from_unix_seconds(e.next_attempt)),
            };
            outln!(
                "outbox {} {} attempts={} {state}{}",
                e.report_id,
                e.rua,
                e.attempts,
                e.last_error
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            )?;
        }
        for l in &log {
            outln!(
                "{} {} {} {} {}{}",
                UtcDateTime::from_unix_seconds(l.time),
                l.outcome,
                l.report_id,
                l.policy_domain,
                l.rua,
                if l.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", l.detail)
                }
            )?;
        }
    }
    Ok(())
}

/// Prints what `report send` generated and delivered: JSON, or one line per report.
fn print_send_lines(lines: &[SendLine], json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(lines)?)?;
    } else {
        let style = Style::stdout();
        for l in lines {
            let counts = match (l.successful, l.failed) {
                (Some(s), Some(f)) => format!(" {s} ok/{f} failed"),
                _ => String::new(),
            };
            let deliveries = l
                .deliveries
                .iter()
                .map(|d| {
                    let outcome = match d.outcome {
                        "delivered" => style.good(d.outcome),
                        "failed" => style.bad(d.outcome),
                        other => other.to_owned(),
                    };
                    if d.detail.is_empty() {
                        format!("{} {outcome}", d.rua)
                    } else {
                        format!("{} {outcome} ({})", d.rua, d.detail)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let note = l
                .note
                .as_deref()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default();
            outln!(
                "{} {} {}{counts}{note}{}{deliveries}",
                l.day,
                l.policy_domain,
                l.report_id,
                if deliveries.is_empty() { "" } else { ": " }
            )?;
        }
    }
    Ok(())
}
