//! [`ReportSink`]: raw bytes in, stored reports out. The one entry point for every intake
//! path: `mta-sts report import` (files, Maildir, mbox) and, later, the policy host's HTTPS
//! POST intake (RFC 8460 §5.4), which hands over the body and its `Content-Type`.

use std::sync::Arc;

use serde::Serialize;

use crate::intake::{IntakeError, Limits, parse_input};
use crate::store::{Inserted, ReportStore, StoreError};

/// What happened to one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum InputOutcome {
    /// Every report of the input was handled; each was new or a duplicate.
    Accepted {
        /// Per report: organisation, report-id, what the store did.
        reports: Vec<AcceptedReport>,
    },
    /// The input was refused whole (nothing from it was stored).
    Refused {
        /// One sentence: why.
        reason: String,
    },
}

/// One report of an accepted input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedReport {
    /// `organization-name`.
    pub organization: String,
    /// `report-id`.
    pub report_id: String,
    /// New or duplicate, with the row id.
    pub stored: Inserted,
}

/// Why a sink call failed as a whole (the store, not the input).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The store failed; the input may be retried later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task importing the input was cancelled (the runtime is shutting down); nothing
    /// is known of it, import it again.
    #[error("the import of this input was cancelled before it finished; import it again")]
    Cancelled,
}

/// Parses inputs and stores their reports.
#[derive(Clone)]
pub struct ReportSink {
    store: Arc<dyn ReportStore>,
    limits: Limits,
}

impl std::fmt::Debug for ReportSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSink")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ReportSink {
    /// A sink writing to `store` with `limits`.
    pub fn new(store: Arc<dyn ReportStore>, limits: Limits) -> Self {
        ReportSink { store, limits }
    }

    /// The store behind this sink.
    pub fn store(&self) -> &Arc<dyn ReportStore> {
        &self.store
    }

    /// Parses `bytes` (JSON, gzip, zip or an e-mail; `media_type` is the declared
    /// `Content-Type`, if any) and stores every report in it, received at `received_at`
    /// (seconds since the Unix epoch, read by the caller from its clock).
    ///
    /// A bad input is refused whole ([`InputOutcome::Refused`]) and nothing of it is stored;
    /// each report is stored in its own transaction, so earlier reports are never affected.
    /// `Err` means the store failed, not the input.
    pub async fn accept(
        &self,
        bytes: &[u8],
        media_type: Option<&str>,
        source: &str,
        received_at: i64,
    ) -> Result<InputOutcome, SinkError> {
        self.accept_with_dkim(bytes, media_type, source, received_at, None)
            .await
    }

    /// [`ReportSink::accept`] for mail whose DKIM result (RFC 8460 §3) the caller found:
    /// `dkim` is stored with each report ([`crate::import::DkimStatus::label`]).
    pub async fn accept_with_dkim(
        &self,
        bytes: &[u8],
        media_type: Option<&str>,
        source: &str,
        received_at: i64,
        dkim: Option<String>,
    ) -> Result<InputOutcome, SinkError> {
        let mut reports = match parse_input(bytes, media_type, &self.limits) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(source, error = %describe(&e), "TLS-RPT input refused");
                return Ok(InputOutcome::Refused {
                    reason: describe(&e),
                });
            }
        };
        for r in &mut reports {
            r.dkim.clone_from(&dkim);
        }
        let mut accepted = Vec::with_capacity(reports.len());
        for parsed in &reports {
            let stored = self.store.insert(parsed, source, received_at).await?;
            tracing::debug!(source, report_id = %parsed.report.report_id, ?stored, "TLS-RPT report");
            accepted.push(AcceptedReport {
                organization: parsed.report.organization_name.clone(),
                report_id: parsed.report.report_id.clone(),
                stored,
            });
        }
        Ok(InputOutcome::Accepted { reports: accepted })
    }
}

/// The refusal sentence for an intake error, with its causes (a decoder's words for a
/// corrupt gzip or zip input).
fn describe(e: &IntakeError) -> String {
    mta_sts_net::with_causes(e)
}
