//! Rendering for humans: colour only on a terminal (and never with `NO_COLOR`), errors as
//! one sentence on standard error.

use std::io::IsTerminal;

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
    eprintln!("{message}");
}
