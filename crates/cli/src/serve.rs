//! `mta-sts serve` (the policy host) and `mta-sts records` (what to publish in DNS),
//! over the `mta-sts-policy-host` crate (docs/design.md §4, §5).
//!
//! `[tlsrpt] store` names the database of `mta-sts report` (same `--db` syntax); the
//! policy host's `StoreSink` (its `report-store` feature) stores reports POSTed to it
//! (RFC 8460 §5.4) like imported ones. This module parses arguments and renders.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use mta_sts::{Domain, Policy};
use mta_sts_net::activation::{Inherited, Plan};
use mta_sts_policy_host::config::TlsRptConfig;
use mta_sts_policy_host::store_sink::StoreSink;
use mta_sts_policy_host::table::CertSource;
use mta_sts_policy_host::{Records, ServeConfig, Table, records};
use serde::Serialize;

use crate::net::NetArgs;
use crate::output::{Style, out, outln};
use crate::{check, exit, input, served};

/// Default location of the policy host configuration.
pub const DEFAULT_CONFIG: &str = "/etc/mta-sts/serve.toml";

/// Arguments of `mta-sts serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML; see README).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Load the configuration, certificates and `mx = "auto"` MX records, open the report
    /// store, then exit: 0 valid (with warnings for what `serve` works around: a report
    /// store that cannot be opened yet, hosts waiting for an ACME certificate), 2 invalid.
    #[arg(long, conflicts_with = "print_records")]
    pub check_config: bool,
    /// Print the DNS records to publish for every configured domain, then exit.
    #[arg(long, conflicts_with = "check")]
    pub print_records: bool,
    /// Check every configured domain as the world sees it and report drift from what this
    /// host serves (published TXT id, policy fetched by senders, MX coverage, certificate
    /// expiry, an `https:` rua naming this host with a path other than the intake path),
    /// with the finding ids of `mta-sts check`; DNS from `nameservers` of the configuration
    /// unless --dns is given; exit 0 pass or warn, 1 fail.
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
    let limit = mta_sts_net::policy_fetch::DEFAULT_MAX_BODY;
    let input::Capped::Whole(body) = input::read_capped(&args.policy, limit)? else {
        anyhow::bail!(
            "{} is larger than {limit} bytes, more than senders fetch (RFC 8461 §3.3): a policy is a few lines",
            args.policy
        );
    };
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
            outln!("{}", serde_json::to_string(&doc)?)?;
        } else {
            out!("{r}")?;
        }
    }
    Ok(())
}

/// `mta-sts serve`.
pub fn run_serve(args: &ServeArgs) -> Result<u8> {
    let config = ServeConfig::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Socket activation: taken before the runtime starts threads, since it unsets variables.
    let inherited = if args.check || args.check_config || args.print_records {
        Inherited::none()
    } else {
        let inherited = Inherited::from_env(&mta_sts_policy_host::ACTIVATION_ROLES);
        crate::daemon::unset_activation_env();
        inherited.map_err(|e| anyhow::anyhow!("{e}"))?
    };
    if let Some(Plan::NotForUs { listen_pid }) = inherited.plan() {
        tracing::info!(
            listen_pid = listen_pid.as_deref().unwrap_or("(unset)"),
            "LISTEN_FDS ignored: LISTEN_PID is not this process (inherited from a parent); binding `listen`"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.check {
        return runtime.block_on(self_check(args, config));
    }
    let intake = config.tlsrpt.clone();
    if args.check_config || args.print_records {
        let table = runtime
            .block_on(Table::build(Arc::new(config)))
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
        if args.print_records {
            for r in table.records() {
                out!("{}", served::records_text(&r, intake.as_ref()))?;
            }
        } else {
            let intake = match &intake {
                Some(t) => runtime
                    .block_on(check_intake(t))
                    .with_context(|| format!("{}: [tlsrpt]", args.config.display()))?,
                None => "TLS-RPT intake: off (no [tlsrpt] section)".to_owned(),
            };
            outln!(
                "{}: valid, {} domain(s)",
                args.config.display(),
                table.records().len()
            )?;
            if let Some(line) = acme_waiting(&table) {
                outln!("{line}")?;
            }
            outln!("{intake}")?;
            if let Some(web) = &table.config().web {
                let line = crate::serve_web::describe(web)
                    .with_context(|| format!("{}: [web]", args.config.display()))?;
                outln!("{line}")?;
            }
        }
        return Ok(exit::OK);
    }
    let store = intake
        .as_ref()
        .and_then(|t| t.store.as_deref().map(|s| (t, s)));
    runtime.block_on(async {
        let sink: Option<Arc<dyn mta_sts_policy_host::ReportSink>> = match store {
            Some((intake, location)) => {
                let sink = Arc::new(StoreSink::new(location, intake));
                if let Err(e) = sink.open().await {
                    let meanwhile = match &intake.spool_dir {
                        Some(dir) => format!(
                            "reports are spooled to {} and move into the store once it opens",
                            dir.display(),
                        ),
                        None => "reports are answered 503 (senders retry) until it opens".to_owned(),
                    };
                    tracing::error!(error = %e, "the TLS-RPT report store is unavailable; it is opened again with each report; {meanwhile}");
                }
                Some(sink)
            }
            None => None,
        };
        let web = config.web.clone().map(|w| (w, config.clone()));
        let server = mta_sts_policy_host::Server::start_inherited(
            config,
            sink,
            Arc::new(mta_sts_net::SystemClock),
            inherited,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The dashboard ([web]) reads the store the sink has opened (which creates a new
        // SQLite file and its tables), and shows the table the server serves, following
        // its reloads.
        let dashboard = match &web {
            Some((web, config)) => start_dashboard(web, config, server.table_handle(), args).await?,
            None => None,
        };
        let served = mta_sts_policy_host::run_server(server, shutdown_signal()).await;
        if let Some(dashboard) = dashboard {
            dashboard.shutdown().await;
        }
        served.map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    Ok(exit::OK)
}

/// Starts `[web]`. A token or users file that cannot be read, or a listen address that
/// cannot be bound, stops `serve` (the operator asked for the dashboard and must fix the
/// setting); a report store that cannot be opened yet is logged and the policy host runs
/// without the dashboard (serving policies matters more).
async fn start_dashboard(
    web: &mta_sts_policy_host::config::WebSettings,
    config: &ServeConfig,
    tables: mta_sts_policy_host::TableHandle,
    args: &ServeArgs,
) -> Result<Option<mta_sts_web::WebServer>> {
    // Unreadable authentication files fail here, before the store is looked at.
    crate::serve_web::describe(web).with_context(|| format!("{}: [web]", args.config.display()))?;
    match crate::serve_web::start(web, config, tables, &args.config, &args.net).await {
        Ok(server) => {
            tracing::info!(addr = %server.local_addr(), "dashboard listening ([web])");
            Ok(Some(server))
        }
        Err(e) if e.downcast_ref::<mta_sts_web::WebError>().is_some() => {
            Err(e.context(format!("{}: [web]", args.config.display())))
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the TLS-RPT dashboard ([web]) is not started; `serve` runs without it: restart `serve` once the cause is fixed");
            Ok(None)
        }
    }
}

/// `--check-config`: the hosts ACME has not issued a certificate for yet; `serve` aborts
/// their TLS handshakes until it has (RFC 8461 §3.3: senders then cannot fetch the policy).
fn acme_waiting(table: &Table) -> Option<String> {
    let waiting: Vec<&str> = table
        .hosts()
        .filter(|e| e.cert_source == CertSource::AcmePending)
        .map(|e| e.host.as_str())
        .collect();
    if waiting.is_empty() {
        return None;
    }
    let directory = table
        .config()
        .acme
        .as_ref()
        .map_or("", |a| a.directory.as_str());
    let (n, them) = match waiting.len() {
        1 => ("1 host".to_owned(), "it"),
        n => (format!("{n} hosts"), "them"),
    };
    Some(format!(
        "waiting for an ACME certificate ({n}): {}. `serve` orders {them} from {directory} at start and refuses TLS for {them} until issued, so senders cannot fetch the policy meanwhile",
        waiting.join(", "),
    ))
}

/// `--check-config` for `[tlsrpt]`: opens the store (which creates a SQLite file and the
/// tables, as the first report would) and checks the spool; says where reports go.
async fn check_intake(intake: &TlsRptConfig) -> Result<String> {
    if let Some(dir) = &intake.spool_dir
        && dir.exists()
        && !dir.is_dir()
    {
        anyhow::bail!(
            "spool_dir {} exists and is not a directory; name a directory",
            dir.display()
        );
    }
    let spool = intake.spool_dir.as_ref().map(|d| d.display().to_string());
    let Some(location) = &intake.store else {
        let dir = spool.unwrap_or_default();
        return Ok(format!(
            "TLS-RPT reports POSTed to {} go to the spool directory {dir}; import them with `mta-sts report import {dir}`",
            intake.intake_path
        ));
    };
    let sink = StoreSink::new(location, intake);
    let opened = match sink.open().await {
        Ok(opened) => opened,
        // `serve` starts without the store and opens it again with each report: a warning,
        // as long as that is how serving would go.
        Err(e) => {
            let meanwhile = match &spool {
                Some(dir) => {
                    format!("reports are spooled to {dir} and move into the store once it opens")
                }
                None => "reports are answered 503 and senders retry (RFC 8460 §5.5)".to_owned(),
            };
            return Ok(format!(
                "warning: {e}. `serve` starts anyway and opens the store again with each report; until then {meanwhile}. Set `store` to a writable SQLite path or a reachable postgres:// URL"
            ));
        }
    };
    let count = opened
        .store()
        .count()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    use mta_sts_policy_host::ReportSink as _;
    let fallback = match spool {
        Some(dir) => format!(
            "; if the store fails, to the spool directory {dir}, moved into the store every {} once it works",
            humantime::format_duration(intake.drain_interval)
        ),
        None => "; if the store fails, senders get 503 and retry (set spool_dir to keep them)"
            .to_owned(),
    };
    Ok(format!(
        "TLS-RPT reports POSTed to {} go to {}, {count} report(s) stored{fallback}",
        intake.intake_path,
        sink.describe()
    ))
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
    use mta_sts_checker::Checker;
    use mta_sts_net::clock::{Clock, SystemClock};

    // One clock for the table (expired certificates), the checker and the drift findings.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (net, dns, asked) = served::dns_choice(&args.net, &config, &args.config);
    let table = Table::build_with_clock(Arc::new(config), clock.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let check_config = check::check_config(&net, 20.0, !args.no_smtp);
    let served = served::ServedCheck {
        tables: served::Tables::Fixed(Arc::new(table)),
        config: args.config.clone(),
        thresholds: check_config.thresholds,
        asked,
    };
    let checker =
        Checker::with_clock(check_config, clock.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let style = Style::stdout();
    if !args.json {
        outln!("DNS answers from {dns}")?;
    }
    let mut verdicts = Vec::new();
    for entry in served.tables.load().hosts() {
        let report = served
            .check(
                &checker,
                entry,
                std::time::Duration::from_secs(120),
                clock.as_ref(),
            )
            .await;
        verdicts.push(report.verdict);
        if args.json {
            outln!("{}", serde_json::to_string(&report)?)?;
        } else {
            out!("{}", check::human(style, &report))?;
        }
    }
    Ok(check::exit_code(verdicts))
}
