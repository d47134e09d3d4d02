//! `mta-sts`: the command-line front of the toolkit (DESIGN §4). This crate only defines
//! the commands and renders their results; the work is done by the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod input;
mod lint;
mod output;

/// MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460) toolkit.
#[derive(Debug, Parser)]
#[command(name = "mta-sts", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy file, an `_mta-sts` TXT record or an `_smtp._tls` TXT record.
    Lint(lint::LintArgs),
}

/// Exit codes shared by every command (DESIGN §4).
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
    let result = match cli.command {
        Command::Lint(args) => lint::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            output::print_error(&error);
            ExitCode::from(exit::USAGE)
        }
    }
}
