//! Receiving and reading SMTP TLS reports (RFC 8460): intake and storage.
//!
//! - [`intake`]: bytes → reports. JSON, gzip, zip and RFC 5322 messages (`multipart/report`
//!   with an `application/tlsrpt+gzip` or `+json` part, or a top-level TLS-RPT body), with
//!   decompression capped (RFC 8460 §7).
//! - [`mailbox`]: files, directories, Maildir folders and mbox files → inputs.
//! - [`store`]: the [`ReportStore`] trait and the daily [`DaySummary`]; back ends
//!   [`SqliteStore`] (embedded default) and [`PostgresStore`] (for hosters).
//! - [`sink`]: [`ReportSink`], raw bytes plus media type in, stored reports out; the entry
//!   point for the CLI and for the policy host's HTTPS intake (RFC 8460 §5.4).
//! - [`listing`]: the detail listings behind a dashboard's domain page (reports, policies
//!   seen, organisations, sending IPs).
//! - [`send`], [`deliver`], [`outbox`]: the generating side (RFC 8460 §4, §5): session events
//!   in, daily reports out, delivered by mail and HTTPS with retries for 24 hours, DKIM-signed
//!   by [`mta_sts_dkim::DkimSigner`] (RFC 8460 §5.3).
//!
//! - [`dkim_dns`], [`import`]: RFC 8460 §3 for mail read from files: reports
//!   without a valid DKIM signature by the reporting domain are ignored (refused with a
//!   reason); [`import::MailImporter`] is the entry point for `mta-sts report import`. The
//!   checks that need no network are in the sans-I/O [`mta_sts_dkim`] crate; this crate looks
//!   the keys up.
//!   [`ReportSink`] itself does not verify DKIM (HTTPS POSTs are not mail).
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use mta_sts_report_store::{InputOutcome, Limits, ReportSink, ReportStore, SqliteStore, SummaryFilter};
//!
//! let store = Arc::new(SqliteStore::in_memory()?);
//! let sink = ReportSink::new(store.clone(), Limits::default());
//! let json = br#"{"organization-name":"Example","report-id":"1","date-range":
//!   {"start-datetime":"2023-01-01T00:00:00Z","end-datetime":"2023-01-02T00:00:00Z"},
//!   "policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com"},
//!   "summary":{"total-successful-session-count":9,"total-failure-session-count":1}}]}"#;
//! let received_at = 1_672_617_600; // from the caller's clock
//! let outcome = sink.accept(json, Some("application/tlsrpt+json"), "http", received_at).await?;
//! assert!(matches!(outcome, InputOutcome::Accepted { .. }));
//! let summary = store.summary(&SummaryFilter::default()).await?;
//! assert_eq!((summary[0].day.as_str(), summary[0].successful, summary[0].failed), ("2023-01-01", 9, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "send")]
pub mod deliver;
#[cfg(feature = "dkim-dns")]
pub mod dkim_dns;
#[cfg(feature = "dkim-dns")]
pub mod import;
pub mod intake;
pub mod listing;
#[cfg(all(test, feature = "sqlite", feature = "postgres"))]
mod listing_tests;
pub mod mailbox;
#[cfg(feature = "sqlite")]
pub mod outbox;
pub mod overview;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rollups;
#[cfg(feature = "send")]
pub mod send;
#[cfg(feature = "send")]
pub mod sending;
pub mod sink;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;
pub mod totals;

pub use intake::{IntakeError, Limits, ParsedReport, parse_input};
pub use listing::{DetailFilter, Details};
pub use overview::{OverviewKeys, PolicyKey};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use sink::{AcceptedReport, InputOutcome, ReportSink, SinkError};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    DaySummary, Inserted, ReportStore, StoreError, StoredReport, SummaryFilter, normalize_domain,
};
pub use totals::{DomainTotals, PeriodFilter};

/// Opens a store from a `--db` value: a `postgres://` or `postgresql://` URL, otherwise a
/// SQLite file path.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub async fn open_store(location: &str) -> Result<std::sync::Arc<dyn ReportStore>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::connect(location).await?))
    } else {
        Ok(std::sync::Arc::new(SqliteStore::open(
            std::path::Path::new(location),
        )?))
    }
}

/// Opens an existing store from a `--db` value, for commands that only read: a SQLite path
/// where no file exists is [`StoreError::Missing`] (nothing is created); a `postgres://` URL
/// connects as [`open_store`] does.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub async fn open_existing_store(
    location: &str,
) -> Result<std::sync::Arc<dyn ReportStore>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::connect(location).await?))
    } else {
        Ok(std::sync::Arc::new(SqliteStore::open_existing(
            std::path::Path::new(location),
        )?))
    }
}
