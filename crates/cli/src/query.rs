//! `mta-sts query DOMAIN`: discover and fetch a domain's live policy, without any cache
//! (docs/design.md §4).

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use mta_sts::Domain;
use mta_sts_net::SystemClock;
use mta_sts_resolver::store::MemoryStore;
use mta_sts_resolver::{Outcome, Resolver};
use serde::Serialize;

use crate::net::NetArgs;
use crate::output::{StdoutError, Style, out, outln};

/// Arguments of `mta-sts query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The policy domain, e.g. example.com (a U-label is converted to its A-label).
    pub domain: String,
    #[command(flatten)]
    pub net: NetArgs,
    /// Print the result as JSON (schema in README).
    #[arg(long)]
    pub json: bool,
}

/// The `query --json` document (docs/design.md §4).
#[derive(Debug, Serialize)]
struct Report {
    domain: String,
    outcome: &'static str,
    record: Option<mta_sts::StsRecord>,
    policy: Option<mta_sts::Policy>,
    error: Option<ErrorReport>,
    elapsed_ms: u128,
}

#[derive(Debug, Serialize)]
struct ErrorReport {
    result_type: Option<tlsrpt::ResultType>,
    reason: &'static str,
    message: String,
}

/// Exit codes of `query`: policy, no policy, published but unusable.
const EXIT_POLICY: u8 = 0;
const EXIT_NO_POLICY: u8 = 1;
const EXIT_UNUSABLE: u8 = 3;

/// Runs the command and returns its exit code.
pub fn run(args: &QueryArgs) -> Result<u8> {
    let domain = Domain::parse(&args.domain).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is not a domain name: {e}; pass a domain such as example.com",
            args.domain
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let resolver = Resolver::new(
        args.net.resolver_config(),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let live = runtime.block_on(resolver.query_live(&domain));
    let outcome = live.outcome();
    let report = Report {
        domain: domain.to_string(),
        outcome: outcome.as_str(),
        record: live.record.clone(),
        policy: live.policy.as_deref().cloned(),
        error: live.error.as_ref().map(|e| ErrorReport {
            result_type: e.is_unusable().then(|| e.result_type()),
            reason: e.reason_code(),
            message: e.to_string(),
        }),
        elapsed_ms: live.elapsed.as_millis(),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_human(&report, live.body.as_deref())?;
    }
    Ok(match outcome {
        Outcome::Policy => EXIT_POLICY,
        Outcome::NoPolicy => EXIT_NO_POLICY,
        Outcome::Unusable => EXIT_UNUSABLE,
    })
}

fn print_human(report: &Report, body: Option<&str>) -> Result<(), StdoutError> {
    let style = Style::stdout();
    let id = report
        .record
        .as_ref()
        .map(|r| format!(" (id {})", r.id))
        .unwrap_or_default();
    match (&report.policy, &report.error) {
        (Some(policy), _) => {
            outln!(
                "{}: {}{id}, {} ms",
                report.domain,
                style.good(&format!("MTA-STS policy, mode {}", policy.mode)),
                report.elapsed_ms
            )?;
            out!("{}", body.unwrap_or_default())?;
            if !body.unwrap_or_default().ends_with('\n') {
                outln!()?;
            }
        }
        (None, Some(error)) if report.outcome == "unusable" => {
            let kind = error.result_type.as_ref().map_or("failure", |r| r.as_str());
            outln!(
                "{}: {}{id}: {}",
                report.domain,
                style.bad(&format!(
                    "MTA-STS published but unusable [{kind}/{}]",
                    error.reason
                )),
                error.message
            )?;
        }
        (None, error) => {
            let why = error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or("no _mta-sts record");
            outln!(
                "{}: {}: {why}",
                report.domain,
                style.warn("no MTA-STS policy")
            )?;
        }
    }
    Ok(())
}
