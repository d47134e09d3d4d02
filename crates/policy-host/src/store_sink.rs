//! The report store of `mta-sts report` as the intake's sink (`[tlsrpt] store`), built
//! with the `report-store` feature (which `mta-sts serve` enables; without it the library
//! has no database code and a `store` needs a sink from the front end).
//!
//! Reports POSTed to the policy host (RFC 8460 §5.4) are validated, de-duplicated and
//! stored like imported ones, by `mta_sts_report_store::ReportSink`.

use std::time::Duration;

use mta_sts_report_store::{InputOutcome, Inserted, Limits, StoreError, open_store};

use crate::config::{TlsRptConfig, is_postgres_url};
use crate::intake::{IncomingReport, ReportSink, SinkError, SinkFuture, Stored};

/// How long opening the report store may take (a PostgreSQL server that does not answer).
const STORE_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The report store of `mta-sts report` as the policy host's intake sink (`[tlsrpt] store`).
///
/// - Opened at start; if that fails (PostgreSQL down, a SQLite path not writable yet) the
///   server still starts, and the store is opened again with the next report, so the
///   intake recovers without a restart. Until then reports go to the spool, or get 503.
/// - The report is parsed and checked fully (RFC 8460 §4) by
///   `mta_sts_report_store::ReportSink`; a report it refuses is [`SinkError::Rejected`]
///   (400), a store error is [`SinkError::Store`] (spool or 503), and a report-id already
///   stored is [`Stored::Duplicate`] (200).
/// - Parsing a report of up to `max_report` bytes is CPU work, so the whole call runs on
///   the blocking pool; the SQLite store itself also keeps its calls there, PostgreSQL is
///   async I/O.
pub struct StoreSink {
    location: String,
    limits: Limits,
    sink: tokio::sync::OnceCell<mta_sts_report_store::ReportSink>,
}

impl StoreSink {
    /// A sink for `location` (a SQLite path or a `postgres://` URL); not opened yet.
    pub fn new(location: &str, intake: &TlsRptConfig) -> StoreSink {
        let defaults = Limits::default();
        // The intake already capped the body and the decompressed report; the store must
        // not refuse what `max_report` allows.
        let limits = Limits {
            max_input_bytes: defaults.max_input_bytes.max(intake.max_report),
            max_report_bytes: defaults.max_report_bytes.max(intake.max_report),
            ..defaults
        };
        StoreSink {
            location: location.to_owned(),
            limits,
            sink: tokio::sync::OnceCell::new(),
        }
    }

    /// Opens the store once; after a failure the next call tries again.
    pub async fn open(&self) -> Result<&mta_sts_report_store::ReportSink, StoreError> {
        self.sink
            .get_or_try_init(|| async {
                let location = self.location.clone();
                let handle = tokio::runtime::Handle::current();
                // SQLite opens (and creates the schema) with blocking calls.
                let open = tokio::task::spawn_blocking(move || {
                    handle.block_on(async {
                        tokio::time::timeout(STORE_OPEN_TIMEOUT, open_store(&location)).await
                    })
                });
                let failed = |cause: Box<dyn std::error::Error + Send + Sync>| {
                    StoreError::open(shown_location(&self.location), cause)
                };
                let store = open.await.map_err(|e| failed(e.into()))?.map_err(|_| {
                    failed(format!("no answer within {} s", STORE_OPEN_TIMEOUT.as_secs()).into())
                })??;
                Ok(mta_sts_report_store::ReportSink::new(store, self.limits))
            })
            .await
    }
}

impl ReportSink for StoreSink {
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
        Box::pin(async move {
            let sink = self
                .open()
                .await
                .map_err(|e| SinkError::Store(Box::new(e)))?
                .clone();
            let json = report.json.clone();
            let source = report.source();
            let received_at = report
                .received
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let handle = tokio::runtime::Handle::current();
            let outcome = tokio::task::spawn_blocking(move || {
                handle.block_on(sink.accept(
                    &json,
                    Some("application/tlsrpt+json"),
                    &source,
                    received_at,
                ))
            })
            .await
            .map_err(|e| SinkError::Store(Box::new(e)))?
            .map_err(store_error)?;
            let reports = match outcome {
                InputOutcome::Refused { reason } => return Err(SinkError::Rejected(reason)),
                InputOutcome::Accepted { reports } => reports,
            };
            let name = |stored: &Inserted| match stored {
                Inserted::New(id) | Inserted::Duplicate(id) => format!("report {id}"),
            };
            let names = reports
                .iter()
                .map(|r| name(&r.stored))
                .collect::<Vec<_>>()
                .join(", ");
            if reports.is_empty() {
                Err(SinkError::Rejected("no report in the body".to_owned()))
            } else if reports.iter().any(|r| matches!(r.stored, Inserted::New(_))) {
                Ok(Stored::New(names))
            } else {
                // Same organisation and report-id stored before: a sender's retry.
                Ok(Stored::Duplicate(names))
            }
        })
    }

    fn describe(&self) -> String {
        let kind = if is_postgres_url(&self.location) {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        format!(
            "the report store {} ({kind})",
            shown_location(&self.location)
        )
    }
}

/// The report store's error itself as the cause ([`StoreError::Busy`] for a locked
/// database), not the sink error around it.
fn store_error(error: mta_sts_report_store::SinkError) -> SinkError {
    match error {
        mta_sts_report_store::SinkError::Store(e) => SinkError::Store(Box::new(e)),
        other => SinkError::Store(Box::new(other)),
    }
}

/// A store location for messages: a URL without its password.
fn shown_location(location: &str) -> String {
    if !is_postgres_url(location) {
        return location.to_owned();
    }
    match (location.find("://"), location.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &location[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:***{}", &location[..scheme + 3], &location[at..])
                }
                None => location.to_owned(),
            }
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServeConfig;

    // A store that cannot be opened: the sink's error keeps the report store's own error as
    // its cause, for a caller to act on (not its text).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_store_keeps_its_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"not a directory").unwrap();
        let location = dir.path().join("file/reports.db");
        let config = ServeConfig::parse(
            &format!(
                "[[domain]]\nname = \"a.test\"\nmode = \"testing\"\nmx = [\"mx.a.test\"]\n\n[tlsrpt]\nstore = \"{}\"\n",
                location.display()
            ),
            None,
        )
        .unwrap();
        let intake = config.tlsrpt.as_ref().unwrap();
        let sink = StoreSink::new(intake.store.as_deref().unwrap(), intake);
        let report = IncomingReport {
            json: bytes::Bytes::from_static(br#"{"report-id":"r"}"#),
            report_id: "r".to_owned(),
            gzip: false,
            host: "mta-sts.a.test".to_owned(),
            path: "/tlsrpt".to_owned(),
            received: std::time::SystemTime::UNIX_EPOCH,
            spooled: None,
        };
        let error = sink.store(&report).await.unwrap_err();
        assert!(
            matches!(&error, SinkError::Store(cause) if cause.is::<StoreError>()),
            "{error:?}"
        );
    }
}
