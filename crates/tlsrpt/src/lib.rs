//! Sans-I/O core of SMTP TLS Reporting (RFC 8460).
//!
//! This crate does no I/O: callers hand it the text they fetched (a TXT record, a report) and
//! get typed data and [`Diagnostic`]s back.
//!
//! - [`record`]: the `_smtp._tls` TXT record (RFC 8460 §3): [`TlsRptRecord::parse`], the
//!   [`lint`] entry point and [`select`], which picks the one record among a name's TXT RRs.
//!
//! ```
//! use tlsrpt::{select, Rua};
//!
//! // Two TXT RRs at _smtp._tls.example.com; the SPF-like one is discarded.
//! let rrs = [vec!["v=spf1 -all"], vec!["v=TLSRPTv1; rua=mailto:", "tlsrpt@example.com"]];
//! let record = select(&rrs)?;
//! assert_eq!(record.usable_rua().count(), 1);
//! assert!(matches!(&record.rua[0], Rua::Mailto { address, .. } if address == "tlsrpt@example.com"));
//! # Ok::<(), tlsrpt::SelectError>(())
//! ```
//!
//! - [`report`]: the aggregate report of RFC 8460 §4 ([`Report`]), read tolerantly and written
//!   strictly; [`report_schema`] validates what we write against §4.4; [`report_filename`] is
//!   the §5.1 file name; [`report_datetime`] the report date-times.
//!
//! - [`event`], [`aggregate`], [`mail`]: the generating side (RFC 8460 §4, §5.3): session
//!   events in, one report per policy domain and UTC day out, and its e-mail.
//!
//! [`Diagnostic`]: mta_sts::diagnostic::Diagnostic

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "serde")]
pub mod aggregate;
#[cfg(feature = "serde")]
pub mod event;
pub mod mail;
pub mod record;
pub mod report;
pub mod report_datetime;
pub mod report_filename;
#[cfg(feature = "serde")]
pub mod report_schema;

pub use record::{
    RecordError, RecordLint, Rua, SelectError, TlsRptRecord, has_record_prefix, lint, select,
};
pub use report::{
    DateRange, FailureDetail, MAX_COUNT, PolicyDescriptor, PolicyResult, PolicyType, Report,
    ReportError, ResultType, SessionSummary,
};
pub use report_datetime::{DateTimeError, UtcDateTime};
pub use report_filename::{FileNameError, ReportFileName};
#[cfg(feature = "serde")]
pub use report_schema::{SchemaViolation, validate_report_json};
