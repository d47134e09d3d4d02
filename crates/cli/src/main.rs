//! `mta-sts`: the command-line front of the toolkit (docs/design.md §4). This crate only defines
//! the commands and renders their results; the work is done by the library crates.

#![deny(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc rather than the system's allocator. A fresh lookup allocates and frees many
/// short-lived buffers (DNS messages, TLS records, HTTP headers); with glibc's malloc the
/// daemon spent about 4 % of its CPU per fresh lookup in malloc and free beyond what the
/// bare protocol client of `socketmap_bench` spends there. With mimalloc, daemon/floor CPU
/// per fresh lookup measured 1.01–1.10 (median 1.065) against glibc's 1.07–1.19 (median
/// 1.11), six runs each, alternating; and a daemon bounded at `max_memory = "128MB"` held
/// 102.8 MB after a million policies and five million negative answers against glibc's
/// 141.9 MB (docs/performance.md §2 and §6). The C code (SQLite) still uses glibc's malloc;
/// `malloc.rs` tunes both for `serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod check;
mod daemon;
mod input;
mod lint;
mod logging;
mod malloc;
mod manpages;
mod migrate;
mod net;
mod output;
mod query;
mod report;
mod serve;
mod serve_web;
mod served;
mod web;

/// MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460) toolkit.
#[derive(Debug, Parser)]
#[command(name = "mta-sts", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on standard error (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on standard error.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy file, an `_mta-sts` TXT record or an `_smtp._tls` TXT record.
    Lint(lint::LintArgs),
    /// Discover and fetch a domain's live MTA-STS policy (no cache); exit 0 policy, 1 none,
    /// 3 published but unusable.
    Query(query::QueryArgs),
    /// Full diagnosis of domains' MTA-STS and TLS-RPT setup (DNS, policy host, every MX
    /// over STARTTLS); exit 0 pass (warnings allowed), 1 any fail. `--input FILE` for bulk.
    Check(check::CheckArgs),
    /// Run the socketmap policy server for Postfix and the HTTP API (`--check-config`
    /// validates the configuration: exit 0 valid, 2 invalid).
    Daemon(daemon::DaemonArgs),
    /// Serve MTA-STS policies over HTTPS for many domains (SNI certificates, ACME, reload on
    /// SIGHUP, TLS-RPT intake); `--print-records` lists the DNS records to publish.
    Serve(serve::ServeArgs),
    /// Print the DNS records to publish for a policy: `_mta-sts` TXT with an id derived from
    /// the policy content, `_smtp._tls` TXT with `--rua`.
    Records(serve::RecordsArgs),
    /// TLS-RPT (RFC 8460): import reports, summarise them per domain and day, show one.
    Report(report::ReportArgs),
    /// Switch from postfix-mta-sts-resolver: convert its YAML configuration, compare its
    /// socketmap replies with ours (docs/migrating.md).
    Migrate(migrate::MigrateArgs),
    /// Serve the TLS-RPT dashboard (overview, domain and report pages, JSON, CSV) over a
    /// report database, on loopback unless --token-file is given.
    Web(web::WebArgs),
    /// Print a shell completion script for this command to standard output
    /// (e.g. `mta-sts completions bash > /etc/bash_completion.d/mta-sts`).
    Completions(manpages::CompletionsArgs),
    /// Write man pages (mta-sts.1, one per subcommand, and mta-sts-daemon.toml.5,
    /// mta-sts-serve.toml.5 for the configuration files) into a directory.
    Man(manpages::ManArgs),
}

/// Exit codes shared by every command (docs/design.md §4).
pub(crate) mod exit {
    /// Valid, pass, success.
    pub const OK: u8 = 0;
    /// Invalid, fail, no policy.
    pub const FAIL: u8 = 1;
    /// Usage or I/O error.
    pub const USAGE: u8 = 2;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        // A running policy host logs its lifecycle (started, reloaded, certificate issued,
        // report received) by default; the other commands only problems.
        let default = match &cli.command {
            Command::Serve(a) if !(a.check || a.check_config || a.print_records) => "info",
            Command::Web(_) => "info",
            _ => "warn",
        };
        init_logging(cli.verbose, cli.quiet, default);
    }
    // A closed pipe or a full disk on standard output is an error value, never a panic:
    // every command writes with `output::outln!`/`out!` (no `print!` in this crate).
    let result = run(cli).and_then(|code| {
        output::flush_stdout()?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let stdout = error
                .chain()
                .find_map(|e| e.downcast_ref::<output::StdoutError>());
            if stdout.is_some_and(output::StdoutError::is_closed_pipe) {
                // The reader has what it wanted (`mta-sts … | head`): end quietly.
                return ExitCode::from(exit::OK);
            }
            output::print_error(&error);
            ExitCode::from(exit::USAGE)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Lint(args) => lint::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Daemon(args) => daemon::run(&args, cli.verbose, cli.quiet),
        Command::Report(args) => report::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Serve(args) => {
            malloc::return_freed_memory();
            serve::run_serve(&args)
        }
        Command::Records(args) => serve::run_records(&args),
        Command::Web(args) => web::run(&args),
        Command::Completions(args) => manpages::run_completions(&args, Cli::command()),
        Command::Man(args) => manpages::run_man(&args, Cli::command()),
    }
}

/// The commands' logging ([`logging`]): `default` without `-v`/`-q` (`warn`, or `info` for a
/// running `serve`), `RUST_LOG` overrides.
fn init_logging(verbose: u8, quiet: bool, default: &str) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => default,
        (false, 1) if default == "info" => "debug",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    logging::init(level, false);
}
