//! `mta-sts daemon`: the socketmap policy server and HTTP API (docs/design.md §5); the work is in
//! `mta_sts_daemon::app`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use mta_sts_daemon::app::{self, ConfigSource};
use mta_sts_daemon::config::{Config, DaneMode, OnFailure, StoreKind, TlsrptConfig, ZoneSettings};
use mta_sts_net::activation::Inherited;
use mta_sts_net::with_causes;

use crate::exit;

/// How long blocking tasks still running after shutdown may delay the exit.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// `mta-sts daemon` arguments.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file. Default /etc/mta-sts/daemon.toml, where a missing file means
    /// every default; a file given here must exist.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read and validate the configuration, print the effective settings, then exit:
    /// 0 valid, 2 invalid.
    #[arg(long)]
    check_config: bool,
    /// Log line format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line (for journald/ELK pipelines).
    Json,
}

/// Runs the command; logging is set up here because the daemon logs at `info` by default.
pub fn run(args: &DaemonArgs, verbose: u8, quiet: bool) -> anyhow::Result<u8> {
    init_logging(args.log_format, verbose, quiet);
    let source = ConfigSource::from_arg(args.config.as_deref());
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mta-sts daemon: {}", with_causes(&e));
            return Ok(exit::USAGE);
        }
    };
    if args.check_config {
        // Parsing checked the syntax; everything the start loads must load too (store, CA
        // file, [tlsrpt] files, socket paths), so that "valid" means "will start".
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let checked = runtime.block_on(app::check(&config));
        runtime.shutdown_background();
        if let Err(e) = checked {
            // As `mta-sts serve --check-config`: FILE: what does not work.
            eprintln!(
                "mta-sts daemon: {}: {}",
                source.path().display(),
                with_causes(&e)
            );
            return Ok(exit::USAGE);
        }
        crate::output::out!("{}", summary(&source, &config))?;
        return Ok(exit::OK);
    }
    // Socket activation: taken before any thread starts, since it unsets variables.
    let inherited = Inherited::from_env(&app::ACTIVATION_ROLES);
    unset_activation_env();
    let inherited = match inherited {
        Ok(inherited) => inherited,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mta-sts daemon: {e}");
            return Ok(exit::FAIL);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mta-sts-daemon")
        .build()?;
    let result = runtime.block_on(app::run(source, config, inherited));
    // Dropping the runtime would wait for every blocking-pool task still running (a SQLite
    // write, a name resolution of a lookup abandoned at shutdown): after "mta-sts daemon
    // stopped" nothing is owed to anyone, so give them a moment and exit (issue 18.11).
    runtime.shutdown_timeout(EXIT_GRACE);
    match result {
        Ok(()) => Ok(exit::OK),
        Err(e) => {
            let e = with_causes(&e);
            tracing::error!("{e}");
            eprintln!("mta-sts daemon: {e}");
            Ok(exit::FAIL)
        }
    }
}

/// Unsets the socket-activation variables (sd_listen_fds(3) `unset_environment`), so that
/// nothing this process starts takes them for its own. `listenfd` unsets `LISTEN_PID` and
/// `LISTEN_FDS` when it reads them; `LISTEN_FDNAMES` is left to us.
pub(crate) fn unset_activation_env() {
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called from `main`'s thread before the runtime (or anything else) starts
        // a thread, so no other thread reads the environment meanwhile.
        unsafe { std::env::remove_var(name) };
    }
}

/// The daemon logs at `info` by default (`-v` debug, `-vv` trace, `-q` errors only).
fn init_logging(format: LogFormat, verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    crate::logging::init(level, matches!(format, LogFormat::Json));
}

fn zone_line(name: &str, z: &ZoneSettings) -> String {
    format!(
        "  {name}: strict_testing={} require_sni={} tlsrpt={} on_failure={} budget={} dane={}\n",
        z.strict_testing,
        z.require_sni,
        z.tlsrpt,
        match z.on_failure {
            OnFailure::NotFound => "notfound",
            OnFailure::Temp => "temp",
        },
        humantime::format_duration(z.budget),
        match z.dane {
            DaneMode::Off => "off",
            DaneMode::Defer => "defer",
        },
    )
}

/// The `[tlsrpt]` and `[tlsrpt.send]` lines of the summary.
fn tlsrpt_lines(t: &TlsrptConfig) -> String {
    let d = humantime::format_duration;
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or("off".to_owned(), |p| p.display().to_string())
    };
    let mut out = format!(
        "tlsrpt: events={} flush_interval={} socket={} socket_mode={:04o} socket_group={}\n",
        path(&t.events),
        d(t.flush_interval),
        path(&t.socket),
        t.socket_mode,
        t.socket_group.as_deref().unwrap_or("-")
    );
    match &t.send {
        None => out.push_str("tlsrpt.send: off\n"),
        Some(s) => {
            let from = s
                .from
                .clone()
                .unwrap_or_else(|| format!("tlsrpt@{}", s.submitter));
            out.push_str(&format!(
                "tlsrpt.send: db={} submitter={} from={from} organization={} contact={} relay={} starttls={} dkim={} insecure_https={} timeout={} jitter={} retry_interval={}\n",
                s.db.display(),
                s.submitter,
                s.organization.as_deref().unwrap_or(&s.submitter),
                s.contact.as_deref().unwrap_or(&from),
                s.relay.as_deref().unwrap_or("none"),
                s.starttls,
                match (&s.dkim_key, &s.dkim_selector) {
                    (Some(k), Some(sel)) => format!(
                        "{}:{sel}@{}",
                        k.display(),
                        s.dkim_domain.as_deref().unwrap_or(&s.submitter)
                    ),
                    _ => "relay-signs".to_owned(),
                },
                s.insecure_https,
                d(s.timeout),
                d(s.jitter),
                d(s.retry_interval)
            ));
        }
    }
    out
}

/// The effective configuration, one setting per line.
fn summary(source: &ConfigSource, c: &Config) -> String {
    let d = humantime::format_duration;
    let mut out = String::new();
    let origin = match source {
        ConfigSource::Default(p) if !p.exists() => format!("{} (absent: defaults)", p.display()),
        other => other.path().display().to_string(),
    };
    out.push_str(&format!("configuration: {origin}: valid\n"));
    out.push_str(&format!(
        "socketmap: listen={} socket_mode={:04o} socket_group={} idle_timeout={} max_connections={} max_connections_per_peer={} max_request={} max_pipelined={} shutdown_timeout={}\n",
        c.socketmap.listen,
        c.socketmap.socket_mode,
        c.socketmap.socket_group.as_deref().unwrap_or("-"),
        d(c.socketmap.idle_timeout),
        c.socketmap.max_connections,
        c.socketmap.max_connections_per_peer,
        c.socketmap.max_request,
        c.socketmap.max_pipelined,
        d(c.socketmap.shutdown_timeout)
    ));
    out.push_str(&format!(
        "http: listen={} max_connections={} idle_timeout={} lookup_rate={} lookup_burst={}\n",
        c.http.listen,
        c.http.max_connections,
        d(c.http.idle_timeout),
        c.http.lookup_rate,
        c.http.lookup_burst
    ));
    let ns: Vec<String> = c
        .resolver
        .nameservers
        .iter()
        .map(ToString::to_string)
        .collect();
    out.push_str(&format!(
        "resolver: nameservers={} ca_file={} connect_to=[{}] timeout={} dane_require_ad={}\n",
        if ns.is_empty() {
            "system".to_owned()
        } else {
            ns.join(",")
        },
        c.resolver
            .ca_file
            .as_ref()
            .map_or("none".to_owned(), |p| p.display().to_string()),
        c.resolver.connect_to.join(","),
        d(c.resolver.timeout),
        c.resolver.dane_require_ad
    ));
    let store = match c.cache.store {
        StoreKind::Sqlite => format!("sqlite path={}", c.cache.path.display()),
        StoreKind::Redis => "redis redis_url=<set>".to_owned(),
        StoreKind::RedisSentinel => format!(
            "redis_sentinel sentinels={} sentinel_master={} redis_db={}",
            c.cache
                .sentinels
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            c.cache.sentinel_master.as_deref().unwrap_or(""),
            c.cache.redis_db
        ),
        StoreKind::Postgres => "postgres postgres_url=<set>".to_owned(),
        StoreKind::Memory => "memory".to_owned(),
    };
    out.push_str(&format!(
        "cache: store={store} refresh={}\n",
        d(c.cache.refresh)
    ));
    out.push_str(&tlsrpt_lines(&c.tlsrpt));
    out.push_str("zones:\n");
    out.push_str(&zone_line("[defaults]", &c.defaults));
    for (name, zone) in &c.zones {
        out.push_str(&zone_line(name, zone));
    }
    out
}
