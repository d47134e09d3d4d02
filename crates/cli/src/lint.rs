//! `mta-sts lint`: validate a policy file or a TXT record (DESIGN §4).

use anyhow::Result;
use clap::Args;
use mta_sts::diagnostic::Verdict;
use mta_sts::{Diagnostic, policy, record};
use serde::Serialize;

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

/// The `lint --json` document (DESIGN §4; additive changes only).
#[derive(Debug, Serialize)]
struct Report {
    kind: &'static str,
    valid: bool,
    strict_valid: bool,
    policy: Option<mta_sts::Policy>,
    record: Option<serde_json::Value>,
    diagnostics: Vec<Diagnostic>,
}

/// Runs the command and returns its exit code.
pub fn run(args: &LintArgs) -> Result<u8> {
    // The fetcher's cap (RFC 8461 §3.3 "a suggested maximum policy size is 64 kilobytes"):
    // what `query` and the daemon refuse is not valid here either, and reading stays bounded.
    let report = match input::read_capped(&args.file, MAX_INPUT)? {
        input::Capped::Whole(bytes) => lint_bytes(args, &bytes),
        input::Capped::TooLarge => too_large(args),
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

fn lint_bytes(args: &LintArgs, bytes: &[u8]) -> Report {
    if args.record {
        sts_record(bytes)
    } else if args.tlsrpt_record {
        tlsrpt_record(bytes)
    } else {
        policy_file(bytes)
    }
}

/// The report for input over [`MAX_INPUT`]: invalid, with one `too-large` error.
fn too_large(args: &LintArgs) -> Report {
    let (kind, message) = if args.record || args.tlsrpt_record {
        (
            if args.record {
                "sts-record"
            } else {
                "tlsrpt-record"
            },
            format!(
                "the input is larger than {MAX_INPUT} bytes: pass the TXT record value, a line of text"
            ),
        )
    } else {
        (
            "policy",
            format!(
                "the policy is larger than {MAX_INPUT} bytes, so senders refuse to fetch it (RFC 8461 §3.3 suggests a 64-kilobyte cap): a policy is a few lines, serve only the policy"
            ),
        )
    };
    Report {
        kind,
        valid: false,
        strict_valid: false,
        policy: None,
        record: None,
        diagnostics: vec![Diagnostic::error("too-large", None, message)],
    }
}

fn policy_file(bytes: &[u8]) -> Report {
    let lint = policy::lint(bytes);
    Report {
        kind: "policy",
        valid: lint.is_valid(),
        strict_valid: lint.is_strict_valid(),
        policy: lint.policy,
        record: None,
        diagnostics: lint.diagnostics,
    }
}

fn sts_record(bytes: &[u8]) -> Report {
    let rrs = input::txt_rrs(bytes);
    let (record, diagnostics) = match choose(&rrs, record::is_candidate) {
        Ok(rr) => {
            let lint = match std::str::from_utf8(rr) {
                Ok(text) => record::lint(text),
                Err(_) => record::lint(&String::from_utf8_lossy(rr)),
            };
            (lint.record, lint.diagnostics)
        }
        Err(diagnostic) => (None, vec![diagnostic]),
    };
    let valid = diagnostics.is_valid() && record.is_some();
    Report {
        kind: "sts-record",
        valid,
        strict_valid: valid && diagnostics.is_strict_valid(),
        policy: None,
        record: record.and_then(|r| serde_json::to_value(r).ok()),
        diagnostics,
    }
}

fn tlsrpt_record(bytes: &[u8]) -> Report {
    let rrs = input::txt_rrs(bytes);
    let (record, diagnostics) = match choose(&rrs, tlsrpt::has_record_prefix) {
        Ok(rr) => {
            let lint = tlsrpt::lint(&String::from_utf8_lossy(rr));
            (lint.record, lint.diagnostics)
        }
        Err(diagnostic) => (None, vec![diagnostic]),
    };
    let valid = diagnostics.is_valid() && record.is_some();
    Report {
        kind: "tlsrpt-record",
        valid,
        strict_valid: valid && diagnostics.is_strict_valid(),
        policy: None,
        record: record.and_then(|r| serde_json::to_value(r).ok()),
        diagnostics,
    }
}

/// Applies the "exactly one record with the version prefix" rule (RFC 8461 §3.1, RFC 8460
/// §3) when the input holds several records; a single record is linted whatever it starts
/// with, so that its own problem is reported.
fn choose(rrs: &[Vec<u8>], is_candidate: fn(&[u8]) -> bool) -> Result<&[u8], Diagnostic> {
    match rrs {
        [] => Err(Diagnostic::error(
            "empty-input",
            None,
            "the input holds no record: pass the TXT value, e.g. `v=STSv1; id=20240101T000000;`",
        )),
        [one] => Ok(one),
        many => {
            let candidates: Vec<&Vec<u8>> = many.iter().filter(|rr| is_candidate(rr)).collect();
            match candidates.as_slice() {
                [one] => Ok(one),
                [] => Err(Diagnostic::error(
                    "no-record",
                    None,
                    "none of the records begins with the version field: publish exactly one record that starts with it",
                )),
                _ => Err(Diagnostic::error(
                    "multiple-records",
                    None,
                    format!(
                        "{} records begin with the version field; senders then ignore them all: publish exactly one",
                        candidates.len()
                    ),
                )),
            }
        }
    }
}

fn print_human(file: &str, report: &Report, strict: bool) -> Result<(), StdoutError> {
    let style = Style::stdout();
    let name = if file == "-" { "<stdin>" } else { file };
    let what = match report.kind {
        "policy" => "policy",
        "sts-record" => "MTA-STS record",
        _ => "TLS-RPT record",
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
