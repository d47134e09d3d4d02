//! The store interface shared by SQLite and PostgreSQL, and the summary it answers.
//!
//! Schema (same tables in both back ends):
//!
//! - `reports`: one row per report, unique on (`organization_name`, `report_id`), so a report
//!   delivered twice (two `rua` URIs, a retried POST, RFC 8460 §3, §5.5) is stored once; it
//!   keeps the JSON as received (`raw_json`), the UTC `day` of `start-datetime`, the source
//!   label and the import time;
//! - `report_policies`: one row per `policies[]` element with its counts, denormalised with
//!   `day` and `organization_name`;
//! - `failure_details`: one row per `failure-details[]` element, with `policy_domain` and `day`
//!   again;
//! - the rollups the summary is answered from, one row per policy domain and day
//!   (`report_days`: reports, successful and failed sessions) and per domain, day and key
//!   (`report_day_organizations`: reports, successful and failed sessions per organisation;
//!   `report_day_policies`: the same per policy type and policy string;
//!   `report_day_result_types`: failed sessions per `result-type`; `report_day_mx`: failed
//!   sessions per `receiving-mx-hostname`, [`NO_MX`] when absent or empty). A report adds to
//!   them (UPSERT, `n = n + excluded.n`) in the transaction that stores it, and only when it
//!   is new: a duplicate adds nothing. Nothing deletes reports, so nothing subtracts. A
//!   summary reads the rollups only, so its cost grows with domains × days, not with
//!   reports. Their tables, the per-domain all-time ones (`report_domain*`) beside them,
//!   and what a transaction's new reports add to each, are in the crate's `rollups.rs`.
//!
//! A report lands whole or not at all: each insert is one transaction. The schema version
//! is [`SCHEMA_VERSION`] (SQLite `PRAGMA user_version`, PostgreSQL table
//! `report_store_schema`): opening a database of an older version (no rollups) creates the
//! rollups and fills them from the detail rows, once, in one transaction, and drops the
//! detail tables' summary indexes, which nothing reads any more; a database of a newer
//! version is refused ([`StoreError::NewerSchema`]).

use std::collections::BTreeMap;

use serde::Serialize;
use tlsrpt::Report;

use crate::intake::ParsedReport;
use crate::listing::{DetailFilter, Details};
pub use crate::totals::DaySummary;
use crate::totals::{DomainTotals, PeriodFilter};

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
    /// The transaction that stored this report together with others failed, for the
    /// reason given; none of them was stored (a busy database is
    /// [`StoreError::Busy`] instead, for each of them).
    #[cfg(feature = "sqlite")]
    #[error("the transaction storing this report with others failed: {0}")]
    Batch(String),
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
    /// The database was written by a newer build (its schema version is above
    /// [`SCHEMA_VERSION`]); it is left untouched.
    #[error(
        "the report database has schema version {version}, newer than this build's; upgrade mta-sts"
    )]
    NewerSchema {
        /// The version found.
        version: i64,
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
    /// The DKIM result of the mail it came in (RFC 8460 §3), as [`crate::import::DkimStatus::label`]
    /// words it; `None` when it did not come by mail (HTTPS POST, a JSON file) or was
    /// stored before version 3 of the schema.
    pub dkim: Option<String>,
}

/// Which rows a summary covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryFilter {
    /// Only this policy domain (compared lower-case, without a trailing dot).
    pub domain: Option<String>,
    /// Only days on or after this `YYYY-MM-DD`.
    pub since: Option<String>,
    /// Totals and failures per result type only (what an overview of many domains shows):
    /// [`DaySummary::failures_by_organization`] and [`DaySummary::failures_by_mx`] stay
    /// empty, and their two queries read no rows.
    pub skip_org_and_mx: bool,
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

    /// Per policy domain over `period`, sorted by domain: one row per domain, summed over
    /// its days (a dashboard's overview). The default folds [`ReportStore::summary`]; the
    /// SQLite and PostgreSQL stores aggregate in the database instead.
    async fn domain_totals(&self, period: &PeriodFilter) -> Result<Vec<DomainTotals>, StoreError> {
        let days = self
            .summary(&SummaryFilter {
                domain: None,
                since: period.since.clone(),
                skip_org_and_mx: true,
            })
            .await?;
        Ok(crate::totals::from_days(&days, period))
    }

    /// The detail listings of `filter` (a dashboard's domain page): the newest `limit`
    /// reports, the policies seen, sessions per organisation, failures per sending IP.
    /// Policies and organisations come from the per-day rollups, the reports and sending
    /// IPs of one domain from the detail tables' (domain, day) indexes. The default, for
    /// stores without detail rows, lists nothing; SQLite and PostgreSQL answer.
    async fn details(&self, filter: &DetailFilter, limit: u32) -> Result<Details, StoreError> {
        let _ = (filter, limit);
        Ok(Details::default())
    }

    /// The per-day totals of each of `domains` since `since` (a chart per domain, e.g.
    /// the sparklines of an overview page), sorted by domain then day; only the totals are
    /// filled (no breakdown maps). The default asks [`ReportStore::summary`] once per
    /// domain; SQLite reads them in one call, PostgreSQL in one query.
    async fn domain_days(
        &self,
        domains: &[String],
        since: Option<&str>,
    ) -> Result<Vec<DaySummary>, StoreError> {
        let mut out = Vec::new();
        for domain in domains {
            out.extend(
                self.summary(&SummaryFilter {
                    domain: Some(domain.clone()),
                    since: since.map(str::to_owned),
                    skip_org_and_mx: true,
                })
                .await?
                .into_iter()
                .map(|d| DaySummary {
                    failures_by_result_type: BTreeMap::new(),
                    ..d
                }),
            );
        }
        Ok(out)
    }

    /// What an overview shows of every domain over `period` besides its totals: reporting
    /// organisations, policies, failures per result type, and the sessions of
    /// `organization` when one is asked for ([`crate::overview`]). The default derives it
    /// from [`ReportStore::details`] and [`ReportStore::summary`]
    /// ([`crate::overview::from_details`]); SQLite and PostgreSQL read small all-time tables
    /// instead.
    async fn overview_keys(
        &self,
        period: &PeriodFilter,
        organization: Option<&str>,
    ) -> Result<crate::OverviewKeys, StoreError> {
        crate::overview::from_details(self, period, organization).await
    }

    /// Reports whose `report-id` is `id`, or whose row id is `id` when it is a number.
    async fn find(&self, id: &str) -> Result<Vec<StoredReport>, StoreError>;

    /// Number of stored reports.
    async fn count(&self) -> Result<u64, StoreError>;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Rows of the four summary queries, merged into [`DaySummary`]s sorted by (domain, day).
///
/// The queries return their rows sorted by (domain, day) in Rust's (byte) order, so the
/// days are a sorted `Vec` built by appending, with a cursor at the last one used: a row for
/// the same or the next day is found without a search, any other by binary search (rows in
/// another order are still merged right, only slower). Keys are borrowed from the database
/// rows; a string is allocated only for a new entry.
#[derive(Debug, Default)]
pub(crate) struct SummaryBuilder {
    /// Sorted by (domain, day), unique.
    days: Vec<DaySummary>,
    cursor: usize,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SummaryBuilder {
    fn is_at(&self, i: usize, domain: &str, day: &str) -> bool {
        self.days
            .get(i)
            .is_some_and(|d| d.policy_domain == domain && d.day == day)
    }

    fn entry(&mut self, domain: &str, day: &str) -> &mut DaySummary {
        let i = if self.is_at(self.cursor, domain, day) {
            self.cursor
        } else if self.is_at(self.cursor + 1, domain, day) {
            self.cursor + 1
        } else {
            self.find_or_insert(domain, day)
        };
        self.cursor = i;
        &mut self.days[i]
    }

    fn find_or_insert(&mut self, domain: &str, day: &str) -> usize {
        fn key(d: &DaySummary) -> (&str, &str) {
            (&d.policy_domain, &d.day)
        }
        let at = match self.days.last() {
            // Appending in order, the usual case.
            None => 0,
            Some(last) if key(last) < (domain, day) => self.days.len(),
            Some(_) => match self.days.binary_search_by(|d| key(d).cmp(&(domain, day))) {
                Ok(i) => return i,
                Err(i) => i,
            },
        };
        self.days.insert(
            at,
            DaySummary {
                policy_domain: domain.to_owned(),
                day: day.to_owned(),
                ..DaySummary::default()
            },
        );
        at
    }

    pub(crate) fn totals(&mut self, domain: &str, day: &str, reports: i64, ok: i64, ko: i64) {
        let e = self.entry(domain, day);
        e.reports = to_u64(reports);
        e.successful = to_u64(ok);
        e.failed = to_u64(ko);
    }

    pub(crate) fn by_org(&mut self, domain: &str, day: &str, org: &str, ko: i64) {
        if ko > 0 {
            self.entry(domain, day)
                .failures_by_organization
                .insert(org.to_owned(), to_u64(ko));
        }
    }

    pub(crate) fn by_type(&mut self, domain: &str, day: &str, kind: &str, n: i64) {
        self.entry(domain, day)
            .failures_by_result_type
            .insert(kind.to_owned(), to_u64(n));
    }

    /// A missing and an empty `receiving-mx-hostname` are one key, [`NO_MX`]; their
    /// counts add up.
    pub(crate) fn by_mx(&mut self, domain: &str, day: &str, mx: Option<&str>, n: i64) {
        let count = self
            .entry(domain, day)
            .failures_by_mx
            .entry(mx_key(mx).to_owned())
            .or_default();
        *count = count.saturating_add(to_u64(n));
    }

    pub(crate) fn finish(self) -> Vec<DaySummary> {
        self.days
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The key a `receiving-mx-hostname` (as stored: [`normalize_domain`]d) is counted under:
/// itself, or [`NO_MX`] when absent or blank.
pub(crate) fn mx_key(mx: Option<&str>) -> &str {
    mx.filter(|m| !m.trim().is_empty()).unwrap_or(NO_MX)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// SQL text of the four summary queries with the filter's `WHERE` filled in for a back
/// end's placeholders; each returns (`policy_domain`, `day`, key…, counts…) rows for the
/// [`SummaryBuilder`] method of the same name.
pub(crate) struct SummarySql {
    pub totals: String,
    pub by_org: String,
    pub by_type: String,
    pub by_mx: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SummarySql {
    /// The `WHERE` clause of `filter`.
    fn condition(filter: &SummaryFilter, placeholder: impl Fn(usize) -> String) -> String {
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
        if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        }
    }

    /// The `WHERE` clause of the organisation and MX queries: `w`, and nothing at all with
    /// [`SummaryFilter::skip_org_and_mx`]. Skipped queries keep their parameters (both back
    /// ends insist on the count) and read nothing: the planner sees the constant condition
    /// before touching a row.
    fn skippable(filter: &SummaryFilter, w: &str) -> String {
        match (filter.skip_org_and_mx, w.is_empty()) {
            (false, _) => w.to_owned(),
            (true, true) => "WHERE 1 = 0".to_owned(),
            (true, false) => format!("{w} AND 1 = 0"),
        }
    }

    /// The summary from the rollup tables (what [`ReportStore::summary`] runs).
    /// `placeholder(n)` renders the n-th (1-based) parameter: `?1` or `$1`; `order` sorts
    /// by domain and day in byte order (what [`SummaryBuilder`] expects).
    pub(crate) fn rollups(
        filter: &SummaryFilter,
        placeholder: impl Fn(usize) -> String,
        order: &str,
    ) -> Self {
        let w = Self::condition(filter, placeholder);
        let skip = Self::skippable(filter, &w);
        let skip_and = if skip.is_empty() { "WHERE" } else { "AND" };
        SummarySql {
            totals: format!(
                "SELECT policy_domain, day, reports, successful, failed FROM report_days {w} {order}"
            ),
            // The rollup keeps every organisation (the dashboard lists sessions per
            // organisation); the summary's map has the failing ones.
            by_org: format!(
                "SELECT policy_domain, day, organization_name, failed \
                 FROM report_day_organizations {skip} {skip_and} failed > 0 {order}"
            ),
            by_type: format!(
                "SELECT policy_domain, day, result_type, failed_sessions \
                 FROM report_day_result_types {w} {order}"
            ),
            by_mx: format!(
                "SELECT policy_domain, day, receiving_mx, failed_sessions FROM report_day_mx {skip} {order}"
            ),
        }
    }

    /// The summary aggregated from the detail rows: what the rollups must always equal
    /// (used to fill them when migrating, and by tests as the oracle). PostgreSQL's
    /// `SUM(bigint)` is `numeric`, so every aggregate is cast back to `BIGINT`. Parameters
    /// as for [`SummarySql::rollups`].
    pub(crate) fn details(
        filter: &SummaryFilter,
        placeholder: impl Fn(usize) -> String,
        order: &str,
    ) -> Self {
        let w = Self::condition(filter, placeholder);
        let skip = Self::skippable(filter, &w);
        SummarySql {
            totals: format!(
                "SELECT policy_domain, day, CAST(COUNT(DISTINCT report) AS BIGINT), \
                 CAST(SUM(successful) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
                 FROM report_policies {w} GROUP BY policy_domain, day {order}"
            ),
            by_org: format!(
                "SELECT policy_domain, day, organization_name, CAST(SUM(failed) AS BIGINT) \
                 FROM report_policies {skip} GROUP BY policy_domain, day, organization_name {order}"
            ),
            by_type: format!(
                "SELECT policy_domain, day, result_type, \
                 CAST(SUM(failed_session_count) AS BIGINT) \
                 FROM failure_details {w} GROUP BY policy_domain, day, result_type {order}"
            ),
            by_mx: format!(
                "SELECT policy_domain, day, receiving_mx_hostname, \
                 CAST(SUM(failed_session_count) AS BIGINT) \
                 FROM failure_details {skip} GROUP BY policy_domain, day, receiving_mx_hostname {order}"
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

/// The schema version this build writes: 1 had the detail tables only, 2 adds the rollups,
/// 3 the sessions of every organisation and policy per day, the dashboard's indexes and
/// each report's DKIM result.
pub const SCHEMA_VERSION: i64 = 3;

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
    dkim: Option<String>,
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
        dkim,
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

/// Random report sets for the rollup tests of both back ends: few organisations, report-ids,
/// days, domains (in several spellings) and MX names (absent, empty, blank), so that
/// duplicates, shared rollup keys and [`NO_MX`] merges are frequent.
#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
pub(crate) mod testgen {
    use proptest::prelude::*;
    use tlsrpt::{
        FailureDetail, PolicyDescriptor, PolicyResult, PolicyType, Report, ResultType,
        SessionSummary, UtcDateTime,
    };

    use std::collections::BTreeMap;

    use super::{ReportStore, SummaryFilter};
    use crate::intake::ParsedReport;
    use crate::totals::{DomainTotals, PeriodFilter, from_days};

    /// Stores each group: a group of one with `insert`, larger ones with `insert_batch`.
    pub(crate) async fn store_all(store: &dyn ReportStore, groups: &[Vec<ParsedReport>]) {
        for g in groups {
            if let [one] = g.as_slice() {
                store.insert(one, "t", 1).await.unwrap();
            } else {
                store.insert_batch(g, "t", 1).await.unwrap();
            }
        }
    }

    const DOMAINS: [&str; 5] = ["a.example", "A.Example.", "b.example", "", "c.example."];
    const MX: [Option<&str>; 6] = [
        None,
        Some(""),
        Some("  "),
        Some("MX1.a.example."),
        Some("mx1.a.example"),
        Some("mx2.b.example"),
    ];
    const ORGS: [&str; 3] = ["Google Inc.", "Mail.ru", "google inc."];

    fn detail() -> impl Strategy<Value = FailureDetail> {
        (0..4usize, 0..MX.len(), 0..20u64).prop_map(|(kind, mx, n)| {
            let kind = [
                ResultType::CertificateExpired,
                ResultType::StsPolicyFetchError,
                ResultType::ValidationFailure,
                ResultType::Other("x-private".into()),
            ][kind]
                .clone();
            FailureDetail {
                receiving_mx_hostname: MX[mx].map(str::to_owned),
                ..FailureDetail::new(kind, n)
            }
        })
    }

    fn policy() -> impl Strategy<Value = PolicyResult> {
        (
            0..DOMAINS.len(),
            0..1000u64,
            prop_oneof![Just(0u64), 0..100u64],
            proptest::collection::vec(detail(), 0..3),
        )
            .prop_map(|(domain, ok, ko, failure_details)| PolicyResult {
                policy: PolicyDescriptor {
                    policy_type: PolicyType::Sts,
                    policy_string: vec!["version: STSv1".into()],
                    policy_domain: DOMAINS[domain].into(),
                    mx_host: vec![],
                },
                summary: SessionSummary {
                    total_successful_session_count: ok,
                    total_failure_session_count: ko,
                },
                failure_details,
            })
    }

    /// A report and a second delivery of it (same organisation and report-id, RFC 8460 §3,
    /// §5.5) whose policies and counts differ.
    pub(crate) fn duplicate_pair(
        runner: &mut proptest::test_runner::TestRunner,
    ) -> (ParsedReport, ParsedReport) {
        use proptest::strategy::ValueTree;
        let first = report().new_tree(runner).unwrap().current();
        let mut again = first.clone();
        again.report.policies = report().new_tree(runner).unwrap().current().report.policies;
        (first, again)
    }

    /// One report; the same (organisation, report-id) recurs, with other contents.
    pub(crate) fn report() -> impl Strategy<Value = ParsedReport> {
        (
            0..ORGS.len(),
            0..6u32,
            0..3i64,
            proptest::collection::vec(policy(), 0..4),
        )
            .prop_map(|(org, id, day, policies)| {
                let mut r = Report::daily(
                    ORGS[org],
                    "tlsrpt@reporter.example",
                    format!("r{id}"),
                    UtcDateTime::from_unix_seconds(1_700_000_000 + day * 86_400),
                );
                r.policies = policies;
                ParsedReport {
                    raw_json: r.to_json(),
                    report: r,
                    origin: "test".into(),
                    dkim: None,
                }
            })
    }

    /// Reports in groups: a group of one is stored with `insert`, a larger one with
    /// `insert_batch` (duplicates inside a batch too).
    pub(crate) fn groups() -> impl Strategy<Value = Vec<Vec<ParsedReport>>> {
        proptest::collection::vec(proptest::collection::vec(report(), 1..5), 0..8)
    }

    /// Every filter shape: none, a domain (as stored and in another spelling, and one with
    /// no rows), a day, both; and some without the organisation and MX breakdowns.
    pub(crate) fn filters() -> Vec<SummaryFilter> {
        let since = UtcDateTime::from_unix_seconds(1_700_000_000 + 86_400).date_string();
        let mut out = vec![SummaryFilter::default()];
        for domain in ["a.example", "A.EXAMPLE.", "", "none.example"] {
            out.push(SummaryFilter {
                domain: Some(domain.into()),
                since: None,
                ..SummaryFilter::default()
            });
            out.push(SummaryFilter {
                domain: Some(domain.into()),
                since: Some(since.clone()),
                ..SummaryFilter::default()
            });
        }
        out.push(SummaryFilter {
            domain: None,
            since: Some(since.clone()),
            ..SummaryFilter::default()
        });
        for domain in [None, Some("a.example".to_owned())] {
            out.push(SummaryFilter {
                domain,
                since: Some(since.clone()),
                skip_org_and_mx: true,
            });
        }
        out.push(SummaryFilter {
            skip_org_and_mx: true,
            ..SummaryFilter::default()
        });
        out
    }

    /// For every period of [`periods`]: the store's per-domain totals equal the sum of its
    /// per-day summary rows in the period (summed here independently of [`from_days`]),
    /// and so does [`from_days`], the trait's default.
    pub(crate) async fn assert_totals_match(store: &dyn ReportStore) {
        let days = store.summary(&SummaryFilter::default()).await.unwrap();
        for period in periods() {
            let mut sums: BTreeMap<&str, DomainTotals> = BTreeMap::new();
            for d in days.iter().filter(|d| period.contains(&d.day)) {
                let t = sums.entry(&d.policy_domain).or_default();
                t.policy_domain = d.policy_domain.clone();
                t.days += 1;
                t.reports += d.reports;
                t.successful += d.successful;
                t.failed += d.failed;
                if t.first_day.is_empty() || d.day < t.first_day {
                    t.first_day.clone_from(&d.day);
                }
                if d.day > t.last_day {
                    t.last_day.clone_from(&d.day);
                }
            }
            let expected: Vec<DomainTotals> = sums.into_values().collect();
            assert_eq!(
                store.domain_totals(&period).await.unwrap(),
                expected,
                "{period:?}"
            );
            assert_eq!(from_days(&days, &period), expected, "{period:?}");
        }
    }

    /// Every period shape over the generated days (1,700,000,000 + 0..3 days): open, from
    /// day 1, to day 1, exactly day 1, and an empty one.
    pub(crate) fn periods() -> Vec<PeriodFilter> {
        let day = |k: i64| UtcDateTime::from_unix_seconds(1_700_000_000 + k * 86_400).date_string();
        vec![
            PeriodFilter::default(),
            PeriodFilter {
                since: Some(day(1)),
                until: None,
            },
            PeriodFilter {
                since: None,
                until: Some(day(1)),
            },
            PeriodFilter {
                since: Some(day(1)),
                until: Some(day(1)),
            },
            PeriodFilter {
                since: Some(day(2)),
                until: Some(day(1)),
            },
        ]
    }
}
