//! # mta-sts-web: the TLS-RPT dashboard (`mta-sts web`)
//!
//! A self-hosted dashboard for domain owners over the report store
//! ([`mta_sts_report_store`]): an overview of every policy domain with reports, a page per
//! domain (sessions per UTC day, failures by RFC 8460 §4.3 result type, receiving MX,
//! sending organisation and IP, the policies reporters saw, the live diagnosis on demand),
//! with a serve configuration the records to publish and drift from what is served
//! ([`served`]), a page per report (as received, with its source), a JSON endpoint behind every page with
//! the same numbers, and CSV export. Period and filters are in the URL.
//!
//! Built on axum (routing) and askama (compiled templates, HTML auto-escaped: report
//! fields come from strangers). Charts are server-side SVG ([`chart`]) with a true time
//! axis and gaps for days without reports; `mta-sts report summary --html` renders with the
//! same code ([`summary_page`]).
//!
//! Safe by default ([`auth`]): loopback unless a token is configured; every route reads,
//! except the one POST ("re-run check"), which carries a CSRF token. The store is opened
//! read-only by the caller ([`mta_sts_report_store::SqliteStore::open_read_only`]).
//!
//! ## Modules
//!
//! Imports between modules form a DAG; each uses only those listed after it:
//!
//! ```text
//! server       → pages, auth, query, diagnose, view, chart, served
//! summary_page → chart, view
//! pages        → chart, view, query, diagnose, served
//! view         → query
//! auth, chart, query, diagnose, served   (no crate module)
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod chart;
pub mod diagnose;
mod pages;
pub mod query;
pub mod served;
pub mod server;
pub mod summary_page;
pub mod view;

pub use auth::{Auth, AuthError};
pub use diagnose::{Diagnose, Diagnosis, DiagnosisFinding};
pub use query::{Period, ViewQuery};
pub use served::{ServedDomains, ServedRecords, ServedSource, ServedTxt};
pub use server::{WebConfig, WebError, WebServer, router};
