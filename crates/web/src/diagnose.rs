//! The live diagnosis of a domain on its page ("re-run check"): the caller supplies the
//! checker (the CLI wires `mta-sts check`'s), the dashboard runs it on demand and caches
//! the last result per domain.

use serde::Serialize;

/// One finding of a diagnosis, with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosisFinding {
    /// `error`, `warning` or `info`.
    pub severity: String,
    /// Stable identifier, e.g. `policy-host-redirect`.
    pub id: String,
    /// What is wrong.
    pub title: String,
    /// The evidence.
    pub detail: String,
    /// What to do; empty for information.
    pub fix: String,
}

/// The result of checking a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// When it ran, seconds since the Unix epoch.
    pub checked_at: i64,
    /// `pass`, `warn` or `fail`; `error` when the check could not run.
    pub verdict: String,
    /// Findings, most severe first.
    pub findings: Vec<DiagnosisFinding>,
    /// Why the check could not run, if it could not.
    pub error: Option<String>,
}

/// Runs a diagnosis of one policy domain.
#[async_trait::async_trait]
pub trait Diagnose: Send + Sync {
    /// Checks `domain` now. Failures to run are a [`Diagnosis`] with `error` set.
    async fn diagnose(&self, domain: &str) -> Diagnosis;
}
