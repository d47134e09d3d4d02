//! `mta-sts serve` (the policy host) and `mta-sts records` (what to publish in DNS),
//! over the `mta-sts-policy-host` crate (DESIGN §4, §5).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use mta_sts::{Domain, Policy};
use mta_sts_policy_host::{Records, ServeConfig, Table, records};
use serde::Serialize;

use crate::net::NetArgs;
use crate::output::Style;
use crate::{check, exit, input};

/// Default location of the policy host configuration.
pub const DEFAULT_CONFIG: &str = "/etc/mta-sts/serve.toml";

/// Arguments of `mta-sts serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML; see README).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Load the configuration, certificates and `mx = "auto"` MX records, then exit: 0 valid,
    /// 2 invalid.
    #[arg(long, conflicts_with = "print_records")]
    pub check_config: bool,
    /// Print the DNS records to publish for every configured domain, then exit.
    #[arg(long, conflicts_with = "check")]
    pub print_records: bool,
    /// Check every configured domain as the world sees it and report drift from what this
    /// host serves (published TXT id, policy fetched by senders, MX coverage, certificate
    /// expiry), with the finding ids of `mta-sts check`; exit 0 pass or warn, 1 fail.
    #[arg(long, conflicts_with = "check_config")]
    pub check: bool,
    /// With --check: do not connect to MX hosts.
    #[arg(long, requires = "check")]
    pub no_smtp: bool,
    /// With --check: JSON lines, one `mta-sts check` document per domain.
    #[arg(long, requires = "check")]
    pub json: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Arguments of `mta-sts records`.
#[derive(Debug, Args)]
pub struct RecordsArgs {
    /// The policy domain.
    pub domain: String,
    /// The policy file that will be served (`-` for standard input).
    #[arg(long, value_name = "FILE|-")]
    pub policy: String,
    /// TLS-RPT report URIs for an `_smtp._tls` record, e.g. `mailto:tlsrpt@example.com`
    /// (comma-separated for several).
    #[arg(long, value_name = "URIS")]
    pub rua: Option<String>,
    /// Print JSON instead of zone-file lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct RecordsJson<'a> {
    domain: &'a str,
    id: &'a str,
    policy_host: &'a str,
    sts: Txt<'a>,
    tlsrpt: Option<Txt<'a>>,
}

#[derive(Debug, Serialize)]
struct Txt<'a> {
    name: &'a str,
    value: &'a str,
}

/// `mta-sts records DOMAIN --policy FILE`.
pub fn run_records(args: &RecordsArgs) -> Result<u8> {
    let domain = Domain::parse(&args.domain).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is not a domain name: {e}; pass a domain such as example.com",
            args.domain
        )
    })?;
    let body = input::read(&args.policy)?;
    let policy = Policy::parse(&body).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a usable policy ({e}); run `mta-sts lint {}` for every problem",
            args.policy,
            args.policy
        )
    })?;
    if let Some(rua) = &args.rua {
        let lint = tlsrpt::lint(&format!("v=TLSRPTv1; rua={rua}"));
        if !lint.is_valid() {
            let why = lint
                .diagnostics
                .iter()
                .find(|d| d.is_error())
                .map(|d| d.message.clone())
                .unwrap_or_default();
            anyhow::bail!("--rua `{rua}` is not a valid rua list: {why}");
        }
    }
    let records = records(&domain, &policy, args.rua.as_deref());
    print_records(&[records], args.json)?;
    Ok(exit::OK)
}

fn print_records(all: &[Records], json: bool) -> Result<()> {
    for r in all {
        if json {
            let doc = RecordsJson {
                domain: r.domain.as_str(),
                id: &r.id,
                policy_host: &r.policy_host,
                sts: Txt {
                    name: &r.sts.name,
                    value: &r.sts.value,
                },
                tlsrpt: r.tlsrpt.as_ref().map(|t| Txt {
                    name: &t.name,
                    value: &t.value,
                }),
            };
            println!("{}", serde_json::to_string(&doc)?);
        } else {
            print!("{r}");
        }
    }
    Ok(())
}

/// `mta-sts serve`.
pub fn run_serve(args: &ServeArgs) -> Result<u8> {
    let config = ServeConfig::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.check {
        return runtime.block_on(self_check(args, config));
    }
    if args.check_config || args.print_records {
        let table = runtime
            .block_on(Table::build(Arc::new(config)))
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
        if args.print_records {
            print_records(&table.records(), false)?;
        } else {
            println!(
                "{}: valid, {} domain(s)",
                args.config.display(),
                table.records().len()
            );
        }
        return Ok(exit::OK);
    }
    runtime
        .block_on(mta_sts_policy_host::serve(config, shutdown_signal()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(exit::OK)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `serve --check`: every configured domain through the checker, plus drift findings.
async fn self_check(args: &ServeArgs, config: ServeConfig) -> Result<u8> {
    use mta_sts_checker::drift::{Served, drift};
    use mta_sts_checker::{Checker, Verdict};

    let table = Table::build(Arc::new(config))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let check_config = check::check_config(&args.net, 20.0, !args.no_smtp);
    let thresholds = check_config.thresholds;
    let checker = Checker::new(check_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let style = Style::stdout();
    let mut verdicts = Vec::new();
    for entry in table.hosts() {
        let mut report = checker
            .check_bounded(entry.domain.as_str(), std::time::Duration::from_secs(120))
            .await;
        let served = Served {
            policy: &entry.policy,
            id: &entry.id,
            cert_not_after: entry.cert_validity.map(|(_, not_after)| not_after),
        };
        report.findings.extend(drift(
            &report,
            &served,
            &thresholds,
            std::time::SystemTime::now(),
        ));
        report.verdict = Verdict::of(&report.findings);
        verdicts.push(report.verdict);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", check::human(style, &report));
        }
    }
    Ok(check::exit_code(verdicts))
}
