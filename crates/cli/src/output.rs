//! Rendering for humans: colour only on a terminal (and never with `NO_COLOR`), errors as
//! one sentence on standard error.
//!
//! Standard output is written through [`outln!`]/[`out!`], which return a [`StdoutError`]
//! instead of panicking as `println!` does when the pipe is closed or the disk is full;
//! `main` turns that error into a quiet exit 0 (closed pipe) or one sentence and exit 2.
//! No `print!`/`println!` is used in this crate (clippy's `print_stdout` lint keeps it so).

use std::io::{IsTerminal, Write};

use mta_sts::{Diagnostic, Severity};

/// ANSI styling that switches itself off when standard output is not a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    enabled: bool,
}

impl Style {
    /// Colour when standard output is a terminal and `NO_COLOR` is unset.
    pub fn stdout() -> Self {
        Style {
            enabled: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Green.
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Red, bold.
    pub fn bad(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Yellow.
    pub fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Dim.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// One diagnostic as a line: `  line 3: error [invalid-mx]: …`.
pub fn diagnostic_line(style: Style, d: &Diagnostic) -> String {
    let severity = match d.severity {
        Severity::Error => style.bad("error"),
        Severity::Warning if d.breaks_abnf => style.warn("warning"),
        Severity::Warning => style.warn("note"),
    };
    let place = d.line.map(|l| format!("line {l}: ")).unwrap_or_default();
    format!(
        "  {place}{severity} {}: {}",
        style.dim(&format!("[{}]", d.code)),
        d.message
    )
}

/// Prints an error that stopped a command, with its causes, to standard error.
pub fn print_error(error: &anyhow::Error) {
    let mut message = format!("mta-sts: {error}");
    for cause in error.chain().skip(1) {
        message.push_str(&format!(": {cause}"));
    }
    // Nothing more can be said when standard error itself cannot be written.
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Standard output could not be written: the reader closed the pipe, the disk is full, ….
#[derive(Debug)]
pub struct StdoutError(pub std::io::Error);

impl StdoutError {
    /// Whether the reader went away (`mta-sts … | head`): not an error for the user, who
    /// has read all they wanted, so the command ends quietly with exit 0 (as ripgrep does).
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write to standard output: {}; check the disk space, or where the output is redirected",
            self.0
        )
    }
}

impl std::error::Error for StdoutError {}

/// Writes to standard output, returning the error `print!` would panic with.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(StdoutError)
}

/// Flushes standard output (text without a final newline stays buffered until then).
pub fn flush_stdout() -> Result<(), StdoutError> {
    std::io::stdout().lock().flush().map_err(StdoutError)
}

/// `println!` returning `Result<(), StdoutError>` instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` returning `Result<(), StdoutError>` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
