//! `mta-sts web`: the TLS-RPT dashboard over a report store ([`mta_sts_web`]). This module
//! parses arguments, opens the store read-only, wires `check`'s diagnosis for "re-run
//! check" (with `--serve-config`, `serve --check`'s, drift included, and the records to
//! publish, through [`crate::served`]), and serves until interrupted. `serve`'s `[web]`
//! section runs the same dashboard ([`crate::serve_web`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use mta_sts_checker::{CheckConfig, Checker};
use mta_sts_net::{Clock, ManualClock, SystemClock};
use mta_sts_policy_host::{ServeConfig, Table};
use mta_sts_report_store::{ReportStore, SqliteStore, StoreError, open_existing_store};
use mta_sts_web::{Auth, Diagnose, Diagnosis, DiagnosisFinding, WebConfig, WebServer};

use crate::exit;
use crate::net::NetArgs;
use crate::served::{LiveServed, ServedCheck, Tables};

/// Arguments of `mta-sts web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Report database: a SQLite file (opened read-only), or a postgres://user:pass@host/db
    /// URL. Default: the one `mta-sts report` uses.
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<String>,
    /// Address to listen on. Any address but loopback needs --token-file.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    /// Require this token (the file's content, at least 16 characters): sent as
    /// `Authorization: Bearer TOKEN`, or as the password of the browser's login prompt.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Require one of these users (HTTP Basic): a file of NAME:HASH lines, each HASH an
    /// argon2id PHC string from --hash-password.
    #[arg(long, value_name = "FILE", conflicts_with = "token_file")]
    pub users: Option<PathBuf>,
    /// Read a password from standard input, print its argon2id hash for a --users file,
    /// and exit.
    #[arg(long)]
    pub hash_password: bool,
    /// No "re-run check" button (the dashboard then makes no network lookups).
    #[arg(long)]
    pub no_check: bool,
    /// Time budget of one "re-run check", all probes included.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub check_timeout: u64,
    /// The configuration of `mta-sts serve` (serve.toml): the pages of its domains show the
    /// DNS records to publish, and "re-run check" adds the drift findings of
    /// `serve --check` (DNS from its `nameservers` unless --dns is given).
    #[arg(long, value_name = "FILE")]
    pub serve_config: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
    /// Pretend the time is this (Unix seconds), for tests and screenshots.
    #[arg(long, value_name = "UNIX", hide = true)]
    pub now: Option<u64>,
}

/// `check`'s diagnosis behind the dashboard's "re-run check"; for a domain of the serve
/// configuration, `serve --check`'s (drift included).
pub(crate) struct CheckerDiagnose {
    config: CheckConfig,
    budget: Duration,
    clock: Arc<dyn Clock>,
    served: Option<ServedCheck>,
}

impl CheckerDiagnose {
    /// A checker with the network options `net` (and the thresholds of `check`), each
    /// check within `budget`; `served` adds drift for its domains.
    pub(crate) fn new(
        net: &NetArgs,
        budget: Duration,
        clock: Arc<dyn Clock>,
        served: Option<(Tables, PathBuf, String)>,
    ) -> Result<CheckerDiagnose> {
        let config = crate::check::check_config(net, 20.0, true);
        let served = served.map(|(tables, config_path, asked)| ServedCheck {
            tables,
            config: config_path,
            thresholds: config.thresholds,
            asked,
        });
        // Built once here so that a bad --ca-file fails at start, not at the first check.
        Checker::new(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(CheckerDiagnose {
            config,
            budget,
            clock,
            served,
        })
    }
}

#[async_trait::async_trait]
impl Diagnose for CheckerDiagnose {
    async fn diagnose(&self, domain: &str) -> Diagnosis {
        // A new checker for each run: "re-run check" must see DNS and the MX hosts as they
        // are now (the owner has just fixed something), not the answers and SMTP probes a
        // long-lived checker caches.
        let checker = match Checker::new(self.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                return Diagnosis {
                    checked_at: i64::try_from(self.clock.now()).unwrap_or(i64::MAX),
                    verdict: "error".to_owned(),
                    findings: Vec::new(),
                    error: Some(e.to_string()),
                };
            }
        };
        let entry = self
            .served
            .as_ref()
            .and_then(|s| Some((s, s.tables.entry(domain)?)));
        let report = match entry {
            Some((served, entry)) => {
                served
                    .check(&checker, &entry, self.budget, self.clock.as_ref())
                    .await
            }
            None => checker.check_bounded(domain, self.budget).await,
        };
        let mut findings: Vec<_> = report.findings.iter().collect();
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        Diagnosis {
            checked_at: i64::try_from(self.clock.now()).unwrap_or(i64::MAX),
            verdict: report.verdict.to_string(),
            findings: findings
                .into_iter()
                .map(|f| DiagnosisFinding {
                    severity: f.severity.to_string(),
                    id: f.id.clone(),
                    title: f.title.clone(),
                    detail: f.detail.clone(),
                    fix: f.fix.clone(),
                })
                .collect(),
            error: None,
        }
    }
}

/// Opens the store for reading only: SQLite read-only (nothing created or migrated), a
/// PostgreSQL URL through the pool (the dashboard only runs queries that read).
pub(crate) async fn open_read_only(location: &str) -> Result<Arc<dyn ReportStore>> {
    let missing = |e: StoreError| match e {
        StoreError::Missing { .. } => anyhow::anyhow!(
            "{e}; pass --db with the database `mta-sts report import` stored reports in"
        ),
        other => anyhow::Error::new(other)
            .context("pass --db with a readable SQLite path or a reachable postgres:// URL"),
    };
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        open_existing_store(location).await.map_err(missing)
    } else {
        Ok(Arc::new(
            SqliteStore::open_read_only(std::path::Path::new(location)).map_err(missing)?,
        ))
    }
}

/// The authentication of `--token-file` or `--users` (`[web] token_file` or `users`).
pub(crate) fn auth(
    token_file: Option<&std::path::Path>,
    users: Option<&std::path::Path>,
) -> Result<Auth> {
    Ok(match (token_file, users) {
        (Some(path), _) => Auth::from_token_file(path)?,
        (None, Some(path)) => Auth::from_users_file(path)?,
        (None, None) => Auth::None,
    })
}

/// Loads a serve configuration as `serve --print-records` does (its certificates and
/// `mx = "auto"` records included); returns what it serves, the network options to check
/// its domains with (`--dns`, else its `nameservers`) and who answers DNS.
async fn load_served(
    path: &std::path::Path,
    net: &NetArgs,
    clock: &dyn Clock,
) -> Result<(Arc<Table>, NetArgs, String)> {
    let config = ServeConfig::load(path).map_err(|e| {
        anyhow::anyhow!("{e}; --serve-config takes the configuration of `mta-sts serve`")
    })?;
    let (net, _, asked) = crate::served::dns_choice(net, &config, path);
    let table = Table::build_with_clock(Arc::new(config), clock)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((Arc::new(table), net, asked))
}

/// Runs the command: serves until SIGINT or SIGTERM.
pub fn run(args: &WebArgs) -> Result<u8> {
    if args.hash_password {
        let mut password = String::new();
        std::io::stdin()
            .read_line(&mut password)
            .context("cannot read the password from standard input")?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            anyhow::bail!(
                "the password on standard input is empty; pipe it in, e.g. `printf %s PASSWORD | mta-sts web --hash-password`"
            );
        }
        crate::output::outln!("{}", mta_sts_web::auth::hash_password(password)?)?;
        return Ok(exit::OK);
    }
    let auth = auth(args.token_file.as_deref(), args.users.as_deref())?;
    // Refused before anything is opened: one sentence with the fix.
    auth.check_listen(args.listen)?;
    let location = args
        .db
        .clone()
        .unwrap_or_else(|| crate::report::default_db().display().to_string());
    let clock: Arc<dyn Clock> = match args.now {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // The serve configuration first: a mistake in it is reported before the store is
        // looked for.
        let (served, net) = match &args.serve_config {
            Some(path) => {
                let (table, net, asked) = load_served(path, &args.net, clock.as_ref()).await?;
                (Some((Tables::Fixed(table), path.clone(), asked)), net)
            }
            None => (None, args.net.clone()),
        };
        let store = open_read_only(&location).await?;
        let served_source: Arc<dyn mta_sts_web::ServedSource> = match &served {
            Some((tables, path, _)) => Arc::new(LiveServed::new(tables.clone(), path)),
            None => Arc::new(mta_sts_web::ServedDomains::default()),
        };
        let diagnose: Option<Arc<dyn Diagnose>> = if args.no_check {
            None
        } else {
            Some(Arc::new(CheckerDiagnose::new(
                &net,
                Duration::from_secs(args.check_timeout.max(1)),
                clock.clone(),
                served,
            )?))
        };
        let config = WebConfig {
            listen: args.listen,
            auth,
            served: served_source,
            ..WebConfig::default()
        };
        let server = WebServer::start(&config, store, clock, diagnose).await?;
        tracing::info!(addr = %server.local_addr(), "dashboard listening");
        eprintln!("dashboard on http://{}/", server.local_addr());
        shutdown_signal().await;
        server.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(exit::OK)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
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
