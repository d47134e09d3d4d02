//! The store interface shared by SQLite and PostgreSQL, and the summary it answers.
//!
//! Schema (same tables in both back ends):
//!
//! - `reports`: one row per report, unique on (`organization_name`, `report_id`), so a report
//!   delivered twice (two `rua` URIs, a retried POST, RFC 8460 §3, §5.5) is stored once; it
//!   keeps the JSON as received (`raw_json`), the UTC `day` of `start-datetime`, the source
//!   label and the import time;
//! - `report_policies`: one row per `policies[]` element with its counts, denormalised with
//!   `day` and `organization_name` and indexed on (`policy_domain`, `day`, …) for the summary;
//! - `failure_details`: one row per `failure-details[]` element, with `policy_domain` and `day`
//!   again for an indexed summary.
//!
//! A report lands whole or not at all: each insert is one transaction.

use std::collections::BTreeMap;

use serde::Serialize;
use tlsrpt::Report;

use crate::intake::ParsedReport;

/// Why the store failed. The database's own error is kept as the
/// [`source`](std::error::Error::source); [`StoreError::Busy`] is the one to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused or failed.
    #[cfg(feature = "sqlite")]
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
    /// The SQLite database stayed locked by another connection beyond the busy timeout
    /// (`SQLITE_BUSY`, `SQLITE_LOCKED`): nothing was written; the operation may be retried.
    #[cfg(feature = "sqlite")]
    #[error("database is locked")]
    Busy(#[source] rusqlite::Error),
    /// PostgreSQL refused or failed.
    #[cfg(feature = "postgres")]
    #[error("database error")]
    Postgres(#[source] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool (server down, pool timeout).
    #[cfg(feature = "postgres")]
    #[error("database connection")]
    Pool(#[source] deadpool_postgres::PoolError),
    /// The blocking task that ran the database call panicked or was cancelled.
    #[cfg(feature = "sqlite")]
    #[error("database task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A database call panicked earlier while holding the connection, so it is not used.
    #[error("database connection lock poisoned")]
    Poisoned,
    /// The database location could not be used. The cause (the directory could not be
    /// created, SQLite or PostgreSQL refused, no answer in time) is the source.
    #[error("cannot open the report database {location}")]
    Open {
        /// Path or URL (without password).
        location: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A command that only reads found no database at the location (it is not created:
    /// a typo in `--db` must not look like an empty store).
    #[error("no report database exists at {location}")]
    Missing {
        /// The path.
        location: String,
    },
    /// A stored report could not be read back.
    #[error("stored report {id} is unreadable: {reason}")]
    Corrupt {
        /// Row id.
        id: i64,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// [`StoreError::Open`] for `location` (a path, or a URL without its password) with
    /// `cause` kept as the source.
    pub fn open(
        location: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Open {
            location: location.into(),
            source: cause.into(),
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    /// [`StoreError::Busy`] for `SQLITE_BUSY` and `SQLITE_LOCKED`, [`StoreError::Sqlite`]
    /// otherwise.
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e)
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Pool(e)
    }
}

/// What happened to one report handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "id", rename_all = "kebab-case")]
pub enum Inserted {
    /// Stored under this row id.
    New(i64),
    /// Already stored (same organisation and report-id) under this row id; nothing changed.
    Duplicate(i64),
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReport {
    /// Row id (the `ID` that `mta-sts report show` also accepts).
    pub id: i64,
    /// Where it came from (file path, `PATH#N`, `http`, …).
    pub source: String,
    /// When it was imported, seconds since the Unix epoch.
    pub imported_at: i64,
    /// The report, read back from the stored JSON.
    pub report: Report,
    /// The JSON as received.
    #[serde(skip)]
    pub raw_json: String,
}

/// Which rows a summary covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryFilter {
    /// Only this policy domain (compared lower-case, without a trailing dot).
    pub domain: Option<String>,
    /// Only days on or after this `YYYY-MM-DD`.
    pub since: Option<String>,
}

/// Sessions for one policy domain on one UTC day (the day of each report's
/// `start-datetime`), over all reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DaySummary {
    /// Policy domain (lower-case; empty when reporters left it out).
    pub policy_domain: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Reports contributing.
    pub reports: u64,
    /// Sum of `total-successful-session-count`.
    pub successful: u64,
    /// Sum of `total-failure-session-count`.
    pub failed: u64,
    /// Sum of `failed-session-count` per `result-type` (from `failure-details`; reporters'
    /// details need not add up to their totals, e.g. corpus 006).
    pub failures_by_result_type: BTreeMap<String, u64>,
    /// Sum of `total-failure-session-count` per reporting organisation (only non-zero).
    pub failures_by_organization: BTreeMap<String, u64>,
    /// Sum of `failed-session-count` per `receiving-mx-hostname` ([`NO_MX`], `(none)`, when
    /// absent or empty, as for policy fetch failures).
    pub failures_by_mx: BTreeMap<String, u64>,
}

impl DaySummary {
    /// Successful sessions as a fraction of all sessions; `None` without sessions.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.successful.saturating_add(self.failed);
        (total > 0).then(|| self.successful as f64 / total as f64)
    }
}

/// Label for failure details without `receiving-mx-hostname`.
pub const NO_MX: &str = "(none)";

/// Lower-case, one trailing dot removed: the form domains are stored and filtered in.
pub fn normalize_domain(domain: &str) -> String {
    domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

/// A report store: SQLite ([`crate::SqliteStore`]) or PostgreSQL ([`crate::PostgresStore`]).
#[async_trait::async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores one report in one transaction; a report with the same organisation and
    /// report-id is not stored again.
    ///
    /// `received_at` (seconds since the Unix epoch) is stored as the import time
    /// ([`StoredReport::imported_at`]): the caller reads it from its clock, the store never
    /// reads the wall clock itself.
    async fn insert(
        &self,
        report: &ParsedReport,
        source: &str,
        received_at: i64,
    ) -> Result<Inserted, StoreError>;

    /// Stores many reports in one transaction (bulk loading); same duplicate rule, one
    /// `received_at` for all.
    async fn insert_batch(
        &self,
        reports: &[ParsedReport],
        source: &str,
        received_at: i64,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut out = Vec::with_capacity(reports.len());
        for r in reports {
            out.push(self.insert(r, source, received_at).await?);
        }
        Ok(out)
    }

    /// Per policy domain and day, sorted by domain then day.
    async fn summary(&self, filter: &SummaryFilter) -> Result<Vec<DaySummary>, StoreError>;

    /// Reports whose `report-id` is `id`, or whose row id is `id` when it is a number.
    async fn find(&self, id: &str) -> Result<Vec<StoredReport>, StoreError>;

    /// Number of stored reports.
    async fn count(&self) -> Result<u64, StoreError>;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Rows of the four summary queries, merged into [`DaySummary`]s.
#[derive(Debug, Default)]
pub(crate) struct SummaryBuilder {
    days: BTreeMap<(String, String), DaySummary>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SummaryBuilder {
    fn entry(&mut self, domain: String, day: String) -> &mut DaySummary {
        self.days
            .entry((domain.clone(), day.clone()))
            .or_insert_with(|| DaySummary {
                policy_domain: domain,
                day,
                ..DaySummary::default()
            })
    }

    pub(crate) fn totals(&mut self, domain: String, day: String, reports: i64, ok: i64, ko: i64) {
        let e = self.entry(domain, day);
        e.reports = to_u64(reports);
        e.successful = to_u64(ok);
        e.failed = to_u64(ko);
    }

    pub(crate) fn by_org(&mut self, domain: String, day: String, org: String, ko: i64) {
        if ko > 0 {
            self.entry(domain, day)
                .failures_by_organization
                .insert(org, to_u64(ko));
        }
    }

    pub(crate) fn by_type(&mut self, domain: String, day: String, kind: String, n: i64) {
        self.entry(domain, day)
            .failures_by_result_type
            .insert(kind, to_u64(n));
    }

    /// A missing and an empty `receiving-mx-hostname` are one key, [`NO_MX`]; their
    /// counts add up.
    pub(crate) fn by_mx(&mut self, domain: String, day: String, mx: Option<String>, n: i64) {
        let key = mx
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| NO_MX.to_owned());
        let count = self
            .entry(domain, day)
            .failures_by_mx
            .entry(key)
            .or_default();
        *count = count.saturating_add(to_u64(n));
    }

    pub(crate) fn finish(self) -> Vec<DaySummary> {
        self.days.into_values().collect()
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// SQL text of the summary queries with `{where}` filled for a back end's placeholders.
pub(crate) struct SummarySql {
    pub totals: String,
    pub by_org: String,
    pub by_type: String,
    pub by_mx: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SummarySql {
    /// `placeholder(n)` renders the n-th (1-based) parameter: `?1` or `$1`.
    pub(crate) fn new(filter: &SummaryFilter, placeholder: impl Fn(usize) -> String) -> Self {
        let mut conds = Vec::new();
        let mut n = 0;
        if filter.domain.is_some() {
            n += 1;
            conds.push(format!("policy_domain = {}", placeholder(n)));
        }
        if filter.since.is_some() {
            n += 1;
            conds.push(format!("day >= {}", placeholder(n)));
        }
        let w = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        SummarySql {
            totals: format!(
                "SELECT policy_domain, day, COUNT(DISTINCT report), SUM(successful), SUM(failed) \
                 FROM report_policies {w} GROUP BY policy_domain, day"
            ),
            by_org: format!(
                "SELECT policy_domain, day, organization_name, SUM(failed) \
                 FROM report_policies {w} GROUP BY policy_domain, day, organization_name"
            ),
            by_type: format!(
                "SELECT policy_domain, day, result_type, SUM(failed_session_count) \
                 FROM failure_details {w} GROUP BY policy_domain, day, result_type"
            ),
            by_mx: format!(
                "SELECT policy_domain, day, receiving_mx_hostname, SUM(failed_session_count) \
                 FROM failure_details {w} GROUP BY policy_domain, day, receiving_mx_hostname"
            ),
        }
    }

    /// The filter's parameters in placeholder order.
    pub(crate) fn params(filter: &SummaryFilter) -> Vec<String> {
        filter
            .domain
            .as_deref()
            .map(normalize_domain)
            .into_iter()
            .chain(filter.since.clone())
            .collect()
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A JSON array of strings as text (policy-string, mx-host columns).
pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Count as a database integer; counts are at most 2^53−1 (checked by the model).
pub(crate) fn db_count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Reads a stored row back into a [`StoredReport`].
pub(crate) fn stored(
    id: i64,
    source: String,
    imported_at: i64,
    raw_json: String,
) -> Result<StoredReport, StoreError> {
    let report =
        tlsrpt::Report::from_json(raw_json.as_bytes()).map_err(|e| StoreError::Corrupt {
            id,
            reason: e.to_string(),
        })?;
    Ok(StoredReport {
        id,
        source,
        imported_at,
        report,
        raw_json,
    })
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::StoreError;

    #[test]
    fn a_locked_sqlite_database_is_busy_with_its_cause() {
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            let e = StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ));
            assert!(matches!(e, StoreError::Busy(_)), "{e:?}");
            assert!(std::error::Error::source(&e).is_some());
        }
        let e = StoreError::from(rusqlite::Error::QueryReturnedNoRows);
        assert!(matches!(e, StoreError::Sqlite(_)), "{e:?}");
    }
}
