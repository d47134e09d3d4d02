//! Where accepted reports go: the [`ReportSink`] trait, what a sink answers ([`Stored`],
//! [`SinkError`]) and the report handed to it ([`IncomingReport`]).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// How long a [`ReportSink`] may take for one report before the intake gives up on it and
/// spools the report (or answers 503). A late store write that does finish is harmless: the
/// later import of the spooled copy is a duplicate.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// A report accepted by the intake, ready to be stored.
#[derive(Debug, Clone)]
pub struct IncomingReport {
    /// The report JSON (decompressed).
    pub json: Bytes,
    /// Its `report-id` (RFC 8460 §4.4).
    pub report_id: String,
    /// Whether it arrived gzip-compressed.
    pub gzip: bool,
    /// The policy host it was posted to.
    pub host: String,
    /// The path it was posted to (`[tlsrpt] intake_path`).
    pub path: String,
    /// When it arrived.
    pub received: SystemTime,
    /// The spool file it was read back from, when [`SpoolSink::drain_into`](super::SpoolSink::drain_into) hands it on.
    pub spooled: Option<PathBuf>,
}

impl IncomingReport {
    /// Where it came from, for a store's `source` column: `https://<host><path>`, or the
    /// spool file of a drained report.
    pub fn source(&self) -> String {
        match &self.spooled {
            Some(file) => file.display().to_string(),
            None => format!("https://{}{}", self.host, self.path),
        }
    }
}

/// What a sink did with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; the name is for the log and the answer (e.g. `report 42`).
    New(String),
    /// Stored before (same report, e.g. a sender's retry); nothing changed.
    Duplicate(String),
}

/// A report could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing a file failed.
    #[error("cannot store the report in {}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sink refused the report itself: it is not a valid TLS-RPT report (RFC 8460 §4).
    /// Answered 400; never spooled, since retrying cannot help.
    #[error("{0}")]
    Rejected(String),
    /// The store failed or is unreachable; the report may be retried later. The cause is
    /// the store's own error (for the report store, its `StoreError`: `Busy` is a locked
    /// database), for callers to tell apart with `downcast_ref`.
    #[error("the report store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sink gave no answer within the time allowed ([`STORE_TIMEOUT`]); the report may
    /// be retried later.
    #[error("the report store gave no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The spool directory could not be read, so no spooled report was handed on.
    #[error("cannot read the spool {}: {source}", dir.display())]
    SpoolUnreadable {
        /// The spool directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The future a [`ReportSink`] returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<Stored, SinkError>> + Send + 'a>>;

/// Where accepted reports go.
///
/// Async so that a database behind it does not block the server's runtime; a boxed future
/// keeps it object safe (`Arc<dyn ReportSink>`). Implementations must not block: run
/// blocking work with `tokio::task::spawn_blocking`. See the [module docs](crate::intake) for how
/// the results map to HTTP answers.
pub trait ReportSink: Send + Sync + 'static {
    /// Stores `report`.
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a>;

    /// Where reports go, for logs and `--check-config`; no secrets (passwords).
    fn describe(&self) -> String;
}

/// Reports and sinks for the intake's unit tests.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    pub(in crate::intake) fn report(id: &str) -> IncomingReport {
        IncomingReport {
            json: Bytes::from(format!(r#"{{"report-id":"{id}"}}"#)),
            report_id: id.to_string(),
            gzip: false,
            host: "mta-sts.a.test".to_string(),
            path: "/tlsrpt".to_string(),
            received: SystemTime::UNIX_EPOCH,
            spooled: None,
        }
    }

    /// A sink that answers from a script.
    pub(in crate::intake) struct Scripted(
        pub(in crate::intake) fn(&IncomingReport) -> Result<Stored, SinkError>,
    );

    impl ReportSink for Scripted {
        fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
            let answer = (self.0)(report);
            Box::pin(async move { answer })
        }
        fn describe(&self) -> String {
            "scripted".to_string()
        }
    }

    /// What the scripted store fails with (as the report store's `StoreError::Busy`).
    #[derive(Debug, thiserror::Error)]
    #[error("database is locked")]
    pub(in crate::intake) struct Locked;

    pub(in crate::intake) fn failing(_: &IncomingReport) -> Result<Stored, SinkError> {
        Err(SinkError::Store(Box::new(Locked)))
    }
}
