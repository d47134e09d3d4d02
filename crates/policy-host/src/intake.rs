//! TLS-RPT report intake over HTTPS (RFC 8460 §5.4).
//!
//! A reporting MTA POSTs one report per request, as `application/tlsrpt+json` or gzip
//! compressed as `application/tlsrpt+gzip`. The intake checks the media type (415), caps
//! the request body and the decompressed report (413, so a gzip bomb costs at most
//! `max_report` bytes of memory), checks that the report is a JSON object with a
//! `report-id` (400), and hands it to a [`ReportSink`].
//!
//! # Bounded work
//!
//! The intake is public and unauthenticated, so what it may cost is bounded in total, not
//! only per request (`[tlsrpt] max_concurrent`, `max_inflight`, `[limits] body_timeout`):
//!
//! - at most `max_concurrent` requests are handled at once; one more is answered 503 with
//!   `Retry-After` before its body is read, so bodies held are at most
//!   `max_concurrent × max_body`;
//! - decompressed bytes are counted against a budget of `max_inflight` bytes shared by all
//!   requests as they are produced (the gzip trailer's declared size at once, the rest as it
//!   comes; then [`PARSED_OBJECT_COST`] per JSON object and array, for what the parsed form
//!   costs), and held until the sink is done with the report; a
//!   report that does not fit now is answered 503 with `Retry-After` (RFC 8460 §5.5: the
//!   sender retries);
//! - the body must arrive within `body_timeout` (408), so a trickled body cannot hold a
//!   permit;
//! - the `report-id` check streams over the JSON and keeps nothing but the id: no JSON tree
//!   (which costs 5-10× the text) is built here.
//!
//! # Where reports go
//!
//! [`ReportSink`] is async: the real destination is a database, and its calls must not hold
//! a tokio worker. It returns a boxed future ([`SinkFuture`]) so that it stays usable as
//! `Arc<dyn ReportSink>` without an `async-trait` dependency. This crate is only the HTTPS
//! server and has no database code: the `mta-sts` binary implements the trait over the
//! report store of `mta-sts report` (SQLite or PostgreSQL, `[tlsrpt] store`), which parses
//! the report fully and de-duplicates by report-id. The built-in [`SpoolSink`] writes files
//! for `mta-sts report import`; it is the sink when only `spool_dir` is configured, and the
//! fallback when a store is configured too: if the store fails (or takes longer than
//! [`STORE_TIMEOUT`]), the report is spooled, so nothing a sender was told is saved is lost,
//! and the server moves the spool into the store once it works ([`SpoolSink::drain_into`],
//! every `[tlsrpt] drain_interval`).
//!
//! # Answers
//!
//! RFC 8460 §5.4: the receiver MUST answer "successful", typically 200 or 201, and other
//! codes may be retried by the sender for up to 24 hours (§5.5). So:
//!
//! | outcome | status |
//! |---|---|
//! | a new report was stored | 201 Created |
//! | the same report was stored before (a sender retrying) | 200 OK: idempotent |
//! | the store failed, the report was spooled instead | 201 Created (and an error in the log) |
//! | not gzip, not JSON, not a TLS-RPT report (§4) | 400 with the reason |
//! | a `policy-domain` that is not a configured domain (unless `accept_foreign`) | 403 naming it |
//! | another media type | 415; a body or report over the caps: 413 |
//! | the body did not arrive within `body_timeout` | 408 |
//! | `max_concurrent` requests in progress, or the report does not fit in `max_inflight` now | 503 with `Retry-After` |
//! | the store failed and there is no spool, or the spool failed too | 503 with `Retry-After`, so the sender retries (§5.5) |
//!
//! A spooled report gets 201, not 202: it is saved, and some senders take only the 200 and
//! 201 that §5.4 names as success.
//!
//! # Modules
//!
//! Each uses only the ones below it (and this one's [`BodyError`]):
//!
//! ```text
//! http     one request: media type, body within its limits, checks, sink, answer
//!   ├─ limits   the shared request permits and decompressed-bytes budget
//!   ├─ spool    SpoolSink: the fallback, drained into the store
//!   │    └─ sink      the ReportSink trait, Stored, SinkError, IncomingReport
//!   └─ body     gunzip within the caps, then the report-id check
//!        └─ scan      streams over the JSON: report-id, policy domains, containers
//! ```

use std::sync::Arc;

use hyper::StatusCode;

mod body;
mod http;
mod limits;
mod scan;
mod sink;
mod spool;

pub use body::{CheckedBody, PARSED_OBJECT_COST, check_body};
pub use http::RETRY_AFTER_SECS;
pub(crate) use http::handle;
pub(crate) use limits::IntakeGate;
pub use sink::{IncomingReport, ReportSink, STORE_TIMEOUT, SinkError, SinkFuture, Stored};
pub use spool::{Drained, REJECTED_DIR, SpoolSink};

/// Why a POSTed body is not taken as a report; [`BodyError::status`] is the answer, and
/// the message is the reason the sender is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// `application/tlsrpt+gzip` (RFC 8460 §6.5) that is not gzip.
    #[error("the body is not valid gzip (application/tlsrpt+gzip)")]
    Gzip,
    /// The decompressed report is over `max_report`.
    #[error("the decompressed report is larger than {0} bytes")]
    TooLarge(usize),
    /// The decompressed-bytes budget (`max_inflight`) is used by other requests now.
    #[error("too many reports are being received now; retry later")]
    Busy,
    /// Not JSON (RFC 8460 §4.4); the parser's error says where.
    #[error("the report is not valid JSON: {0}")]
    Json(#[source] JsonError),
    /// JSON, but not an object (RFC 8460 §4.4).
    #[error("the report is not a JSON object (RFC 8460 §4.4)")]
    NotObject,
    /// No `report-id` string (RFC 8460 §4.4).
    #[error("the report has no \"report-id\" string (RFC 8460 §4.4)")]
    NoReportId,
    /// The report's text plus [`PARSED_OBJECT_COST`] per JSON object and array is over
    /// `max_inflight`: it could never be handled.
    #[error(
        "the report has too many JSON objects and arrays ({containers}) to be handled within {limit} bytes"
    )]
    TooComplex {
        /// Objects and arrays in the report.
        containers: usize,
        /// `max_inflight`.
        limit: usize,
    },
    /// `report-id` twice: I-JSON member names are unique (RFC 7493 §2.3).
    #[error("the report has more than one \"report-id\" member (RFC 7493 §2.3)")]
    DuplicateReportId,
}

/// The JSON parser's error in a [`BodyError::Json`]: shared, so that [`BodyError`] stays
/// `Clone`. As rustls's `OtherError`, it is never equal to another one (compare with
/// `matches!`).
#[derive(Debug, Clone)]
pub struct JsonError(Arc<serde_json::Error>);

impl JsonError {
    /// The parser's error.
    pub fn get(&self) -> &serde_json::Error {
        &self.0
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(error: serde_json::Error) -> JsonError {
        JsonError(Arc::new(error))
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

impl PartialEq for JsonError {
    fn eq(&self, _: &JsonError) -> bool {
        false
    }
}

impl Eq for JsonError {}

impl BodyError {
    /// The HTTP answer: 400, 413, or 503 for [`BodyError::Busy`].
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) | BodyError::TooComplex { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
