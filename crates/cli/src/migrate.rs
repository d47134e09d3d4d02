//! `mta-sts migrate`: switching from postfix-mta-sts-resolver (docs/migrating.md). `config`
//! prints the `daemon.toml` equivalent of its YAML file; `compare` asks both daemons about
//! the operator's destinations. The work is in `mta_sts_daemon::migrate`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use mta_sts_daemon::migrate::{self, SocketmapAddr, Verdict};

use crate::exit;
use crate::output::{Style, out, outln};

/// `mta-sts migrate` arguments.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Print the daemon.toml equivalent of postfix-mta-sts-resolver's YAML configuration
    /// (/etc/mta-sts-daemon.yml) on standard output, and one warning per key without an
    /// equivalent on standard error; exit 0 converted, 2 not convertible.
    Config(ConfigArgs),
    /// Ask two socketmap servers (postfix-mta-sts-resolver's and ours) about every
    /// destination of a list and print where the replies differ, with the reason when ours
    /// differs on purpose; exit 0 all the same, 1 some differ, 2 usage error.
    Compare(CompareArgs),
}

/// `mta-sts migrate config` arguments.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// postfix-mta-sts-resolver's configuration file, e.g. /etc/mta-sts-daemon.yml.
    file: PathBuf,
}

/// `mta-sts migrate compare` arguments.
#[derive(Debug, Args)]
struct CompareArgs {
    /// postfix-mta-sts-resolver's socketmap address, as in main.cf: inet:127.0.0.1:8461 or
    /// unix:/path.
    #[arg(long, value_name = "ADDR")]
    peer: SocketmapAddr,
    /// Our daemon's socketmap address (run it on another address than the peer's while
    /// comparing).
    #[arg(long, value_name = "ADDR")]
    ours: SocketmapAddr,
    /// Destinations, one per line (`#` comments allowed), e.g. from your mail log; `-` reads
    /// standard input.
    #[arg(value_name = "FILE")]
    destinations: PathBuf,
    /// The socketmap name sent with each key: the last field of main.cf's
    /// `socketmap:inet:127.0.0.1:8461:NAME` (selects the zone on both sides).
    #[arg(long, default_value = "postfix")]
    map: String,
    /// How long to wait for one reply, in seconds.
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    timeout: f64,
    /// Destinations asked at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print every destination, not only those that differ.
    #[arg(long)]
    all: bool,
}

/// Runs `mta-sts migrate`.
pub fn run(args: &MigrateArgs) -> Result<u8> {
    match &args.command {
        MigrateCommand::Config(a) => run_config(a),
        MigrateCommand::Compare(a) => run_compare(a),
    }
}

fn run_config(args: &ConfigArgs) -> Result<u8> {
    let text = std::fs::read_to_string(&args.file).with_context(|| {
        format!(
            "cannot read {}; pass postfix-mta-sts-resolver's configuration file (usually /etc/mta-sts-daemon.yml)",
            args.file.display()
        )
    })?;
    let converted = match migrate::peer_config::convert(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "mta-sts migrate config: {}: {e}; fix the file (postfix-mta-sts-resolver would not start with it either) and run again",
                args.file.display()
            );
            return Ok(exit::USAGE);
        }
    };
    outln!(
        "# Converted from {} (postfix-mta-sts-resolver) by `mta-sts migrate config`.",
        args.file.display()
    )?;
    outln!("# Check it with: mta-sts daemon --check-config --config FILE")?;
    out!("{}", converted.toml)?;
    for w in &converted.warnings {
        eprintln!("mta-sts migrate config: warning: {w}");
    }
    Ok(exit::OK)
}

fn run_compare(args: &CompareArgs) -> Result<u8> {
    let text = if args.destinations.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&args.destinations).with_context(|| {
            format!(
                "cannot read {}; pass a file with one destination domain per line",
                args.destinations.display()
            )
        })?
    };
    let keys = migrate::destination_keys(&text);
    if keys.is_empty() {
        anyhow::bail!(
            "{} lists no destination; put one domain per line",
            args.destinations.display()
        );
    }
    if !(args.timeout > 0.0 && args.timeout <= 3600.0) {
        anyhow::bail!("--timeout must be above 0 and at most 3600 seconds");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs_f64(args.timeout);
    for (who, addr) in [("--peer", &args.peer), ("--ours", &args.ours)] {
        if let Err(e) = runtime.block_on(migrate::client::reachable(addr, timeout)) {
            anyhow::bail!(
                "cannot connect to {who} {addr}: {e}; start that daemon or give the address it listens on (main.cf smtp_tls_policy_maps, or [socketmap] listen)"
            );
        }
    }
    let rows = runtime.block_on(migrate::compare_servers(
        &args.peer,
        &args.ours,
        &args.map,
        &keys,
        timeout,
        args.concurrency,
    ));
    let style = Style::stdout();
    let (mut same, mut on_purpose, mut other) = (0, 0, 0);
    for row in &rows {
        match row.verdict {
            Verdict::Same => {
                same += 1;
                if args.all {
                    outln!("{} {}: {}", style.good("same"), row.key, row.ours)?;
                }
            }
            Verdict::Differs(reason) => {
                let tag = if reason.on_purpose() {
                    on_purpose += 1;
                    style.warn("differs")
                } else {
                    other += 1;
                    style.bad("differs")
                };
                outln!("{tag} {}", row.key)?;
                outln!("  peer: {}", row.peer)?;
                outln!("  ours: {}", row.ours)?;
                outln!("  why:  {}", reason.explain())?;
            }
        }
    }
    outln!(
        "{} destinations: {same} same, {} differ ({on_purpose} where ours differs on purpose, {other} to look at); peer {}, ours {}, map {}",
        rows.len(),
        on_purpose + other,
        args.peer,
        args.ours,
        args.map
    )?;
    Ok(if on_purpose + other == 0 {
        exit::OK
    } else {
        exit::FAIL
    })
}
