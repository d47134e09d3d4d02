//! `mta-sts lint`: validate a policy file or a TXT record. The judgement is
//! [`mta_sts_checker::lint`]; this module reads the input and renders the report.

use anyhow::Result;
use clap::Args;
use mta_sts_checker::lint::{self, LintKind, LintReport};

use crate::exit;
use crate::input;
use crate::output::{StdoutError, Style, diagnostic_line, outln};

/// Arguments of `mta-sts lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// File to check, or `-` for standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub file: String,
    /// The input is an `_mta-sts` TXT record value (one TXT record per line; zone-file
    /// quoting as printed by `dig +short` is understood).
    #[arg(long, conflicts_with = "tlsrpt_record")]
    pub record: bool,
    /// The input is an `_smtp._tls` TLS-RPT TXT record value.
    #[arg(long)]
    pub tlsrpt_record: bool,
    /// Judge by the exact RFC grammar: deviations that mta-sts tolerates but strict senders
    /// reject (blank lines, comments, BOM, …) make the input invalid.
    #[arg(long)]
    pub strict: bool,
    /// Print the result as JSON (schema in README).
    #[arg(long)]
    pub json: bool,
}

/// Runs the command and returns its exit code.
pub fn run(args: &LintArgs) -> Result<u8> {
    let kind = if args.record {
        LintKind::StsRecord
    } else if args.tlsrpt_record {
        LintKind::TlsrptRecord
    } else {
        LintKind::Policy
    };
    // The fetcher's cap (RFC 8461 §3.3 "a suggested maximum policy size is 64 kilobytes"):
    // what `query` and the daemon refuse is not valid here either, and reading stays bounded.
    let report = match input::read_capped(&args.file, MAX_INPUT)? {
        input::Capped::Whole(bytes) => lint::lint(kind, &bytes),
        input::Capped::TooLarge => lint::too_large(kind, MAX_INPUT),
    };
    let ok = if args.strict {
        report.strict_valid
    } else {
        report.valid
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_human(&args.file, &report, args.strict)?;
    }
    Ok(if ok { exit::OK } else { exit::FAIL })
}

/// Largest input linted: the policy body cap of the fetcher (65,536 bytes, see
/// `mta_sts_net::policy_fetch::DEFAULT_MAX_BODY`); TXT records are far smaller.
const MAX_INPUT: usize = mta_sts_net::policy_fetch::DEFAULT_MAX_BODY;

fn print_human(file: &str, report: &LintReport, strict: bool) -> Result<(), StdoutError> {
    let style = Style::stdout();
    let name = if file == "-" { "<stdin>" } else { file };
    let what = match report.kind {
        LintKind::Policy => "policy",
        LintKind::StsRecord => "MTA-STS record",
        LintKind::TlsrptRecord => "TLS-RPT record",
    };
    let deviations = report
        .diagnostics
        .iter()
        .filter(|d| !d.is_error() && d.breaks_abnf)
        .count();
    let verdict = if !report.valid {
        style.bad("invalid")
    } else if report.strict_valid {
        style.good("valid")
    } else if strict {
        style.bad("invalid under --strict")
    } else {
        style.warn(&format!(
            "valid, with {deviations} deviation(s) from the RFC grammar that strict senders reject"
        ))
    };
    outln!("{name}: {what} {verdict}")?;
    if let Some(policy) = &report.policy {
        let mx: Vec<String> = policy.mx.iter().map(ToString::to_string).collect();
        outln!(
            "  mode {}, max_age {}, mx {}",
            policy.mode,
            policy.max_age,
            if mx.is_empty() {
                "(none)".to_owned()
            } else {
                mx.join(" ")
            }
        )?;
    }
    for d in &report.diagnostics {
        outln!("{}", diagnostic_line(style, d))?;
    }
    Ok(())
}
