//! `[tlsrpt]`: the TLS-RPT report intake (RFC 8460 §5.4).

use std::path::PathBuf;
use std::time::Duration;

use mta_sts_config::{Source, StoreLocation};
use toml::Spanned;

use super::raw::RawTlsRpt;
use super::{ConfigError, POLICY_PATH, positive, positive_duration};

/// Default `[tlsrpt] drain_interval`.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_secs(60);

/// `[tlsrpt]`: the report intake (RFC 8460 §5.4). At least one of `store` and `spool_dir`
/// is set.
///
/// | `store` | `spool_dir` | a POSTed report goes |
/// |---|---|---|
/// | set | unset | into the store; when the store fails, 503 and the sender retries (§5.5) |
/// | set | set | into the store; when the store fails, into the spool, moved into the store every `drain_interval` once it works |
/// | unset | set | into the spool, for `mta-sts report import <spool_dir>` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptConfig {
    /// The path reports are POSTed to, e.g. `/tlsrpt`.
    pub intake_path: String,
    /// The report store, in the syntax of `mta-sts report --db`: a `postgres://` or
    /// `postgresql://` URL, or a SQLite file path (made absolute against the configuration
    /// file's directory). The policy host does not open it; the front end supplies a
    /// `ReportSink` (of the intake module) for it.
    pub store: Option<String>,
    /// The spool directory: the fallback for `store`, or where every report goes without it.
    pub spool_dir: Option<PathBuf>,
    /// With both `store` and `spool_dir`: how often reports spooled while the store failed
    /// are moved into it (default 60 s; also once at start).
    pub drain_interval: Duration,
    /// Largest request body accepted, bytes (default 1 MiB).
    pub max_body: usize,
    /// Largest decompressed report accepted, bytes (default 16 MiB).
    pub max_report: usize,
    /// Most intake requests handled at once, over all hosts and connections (default 4);
    /// one more is answered 503 with `Retry-After` before its body is read (RFC 8460 §5.5:
    /// the sender retries). Bounds the request bodies held: `max_concurrent × max_body`.
    pub max_concurrent: usize,
    /// Most decompressed report bytes held at once by all intake requests together, each
    /// JSON object or array counted 64 bytes more for its parsed form (default twice
    /// `max_report`, minimum `max_report`); a report that would go over now is answered 503
    /// with `Retry-After`, one that never fits 413. Bounds the memory that parsing and
    /// storing reports takes (about 6× this).
    pub max_inflight: usize,
    /// Whether reports whose `policy-domain` (RFC 8460 §4.4) is not one of the configured
    /// domains are accepted (default `false`: they are answered 403). For hosters that
    /// receive reports for domains whose policies they do not serve.
    pub accept_foreign: bool,
}

pub(super) fn build_tlsrpt(
    src: &Source<'_>,
    t: &Spanned<RawTlsRpt>,
) -> Result<TlsRptConfig, ConfigError> {
    let span = t.span();
    let t = t.get_ref();
    let intake_path = match &t.intake_path {
        Some(p) => {
            let path = p.get_ref();
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path == POLICY_PATH {
                return Err(src.err(
                    &p.span(),
                    format!("intake_path `{path}` must be an absolute URL path such as \"/tlsrpt\" (no query, not the policy path)"),
                ));
            }
            path.clone()
        }
        None => "/tlsrpt".to_string(),
    };
    let store = match &t.store {
        Some(s) => Some(store_location(src, s)?),
        None => None,
    };
    let spool_dir = t.spool_dir.as_deref().map(|p| src.path(p));
    if store.is_none() && spool_dir.is_none() {
        return Err(src.err(
            &span,
            "[tlsrpt] needs `store` (the report database, as `mta-sts report --db` takes it) or `spool_dir` (a directory for `mta-sts report import`), or both",
        ));
    }
    let max_report = match &t.max_report {
        Some(v) => positive(src, v, "max_report")?,
        None => 16 << 20,
    };
    let max_inflight = match &t.max_inflight {
        Some(v) => {
            let n = positive(src, v, "max_inflight")?;
            if n < max_report {
                return Err(src.err(
                    &v.span(),
                    format!("`max_inflight` ({n}) must be at least `max_report` ({max_report}), or no report of the largest accepted size could ever be handled"),
                ));
            }
            n
        }
        None => max_report.saturating_mul(2),
    };
    Ok(TlsRptConfig {
        intake_path,
        store,
        spool_dir,
        drain_interval: match &t.drain_interval {
            Some(v) => positive_duration(src, v, "drain_interval")?,
            None => DEFAULT_DRAIN_INTERVAL,
        },
        max_body: match &t.max_body {
            Some(v) => positive(src, v, "max_body")?,
            None => 1 << 20,
        },
        max_report,
        max_concurrent: match &t.max_concurrent {
            Some(v) => positive(src, v, "max_concurrent")?,
            None => 4,
        },
        max_inflight,
        accept_foreign: t.accept_foreign.unwrap_or(false),
    })
}

/// A `store` value: URLs as written, SQLite paths made absolute like every other path.
/// The report store is SQLite or PostgreSQL; a Redis URL names the daemon's cache.
fn store_location(src: &Source<'_>, s: &Spanned<StoreLocation>) -> Result<String, ConfigError> {
    match s.get_ref().clone().resolve(src) {
        StoreLocation::Redis(url) => Err(src.err(
            &s.span(),
            format!("store `{url}`: the report store is a SQLite file path such as \"/var/lib/mta-sts/reports.db\" or a postgres:// URL (Redis holds the daemon's policy cache only)"),
        )),
        location => Ok(location.to_string()),
    }
}
