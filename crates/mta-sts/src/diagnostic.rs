//! Diagnostics: what a parser noticed about its input, as data.
//!
//! Every parser of the toolkit (policy file, `_mta-sts` record, `_smtp._tls` record) reports
//! what it found as a list of [`Diagnostic`]s. Each has a stable kebab-case [`code`]
//! (`blank-line`, `unknown-mode`, …) that tools and tests can match on, a severity, the
//! 1-based line it concerns (for multi-line inputs) and a sentence that says what is wrong
//! and how to fix it.
//!
//! [`code`]: Diagnostic::code

use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Severity {
    /// The input is still usable; the diagnostic is advice or a tolerated deviation.
    Warning,
    /// The input is unusable: a sender must not apply it.
    Error,
}

impl Severity {
    /// `"warning"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of a parser.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Diagnostic {
    /// Error (input unusable) or warning (usable).
    pub severity: Severity,
    /// Stable kebab-case identifier, e.g. `blank-line`.
    pub code: &'static str,
    /// 1-based line number for multi-line inputs, `None` when the finding concerns the whole
    /// input (a missing field, say) or a one-line input such as a TXT record.
    pub line: Option<u32>,
    /// One or two sentences: what is wrong and how to fix it.
    pub message: String,
    /// Whether the input breaks the RFC's grammar or rules at this point. A warning with
    /// `breaks_abnf` is tolerated by this toolkit but rejected by strict senders.
    pub breaks_abnf: bool,
}

impl Diagnostic {
    /// An error: the input is unusable. Errors always break the RFC.
    pub fn error(code: &'static str, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            line,
            message: message.into(),
            breaks_abnf: true,
        }
    }

    /// A warning about input that breaks the RFC grammar but whose meaning is clear.
    pub fn deviation(code: &'static str, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            code,
            line,
            message: message.into(),
            breaks_abnf: true,
        }
    }

    /// A warning about valid input: advice only.
    pub fn advice(code: &'static str, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            code,
            line,
            message: message.into(),
            breaks_abnf: false,
        }
    }

    /// Whether this diagnostic makes the input unusable.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "line {line}: {} [{}]: {}",
                self.severity, self.code, self.message
            ),
            None => write!(f, "{} [{}]: {}", self.severity, self.code, self.message),
        }
    }
}

/// Summary verdicts over a list of diagnostics.
pub trait Verdict {
    /// No error: a sender applies the input.
    fn is_valid(&self) -> bool;
    /// No error and no grammar deviation: the input is exactly what the RFC allows.
    fn is_strict_valid(&self) -> bool;
}

impl Verdict for [Diagnostic] {
    fn is_valid(&self) -> bool {
        !self.iter().any(Diagnostic::is_error)
    }

    fn is_strict_valid(&self) -> bool {
        !self.iter().any(|d| d.breaks_abnf)
    }
}
