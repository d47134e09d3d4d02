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
//!   (`report_day_organizations`: failed sessions per organisation, only non-zero;
//!   `report_day_result_types`: failed sessions per `result-type`; `report_day_mx`: failed
//!   sessions per `receiving-mx-hostname`, [`NO_MX`] when absent or empty). A report adds to
//!   them (UPSERT, `n = n + excluded.n`) in the transaction that stores it, and only when it
//!   is new: a duplicate adds nothing. Nothing deletes reports, so nothing subtracts. A
//!   summary reads the rollups only, so its cost grows with domains × days, not with
//!   reports.
//!
//! A report lands whole or not at all: each insert is one transaction. The schema version
//! is [`SCHEMA_VERSION`] (SQLite `PRAGMA user_version`, PostgreSQL table
//! `report_store_schema`): opening a database of an older version (no rollups) creates the
//! rollups and fills them from the detail rows, once, in one transaction, and drops the
//! detail tables' summary indexes, which nothing reads any more; a database of a newer
//! version is refused ([`StoreError::NewerSchema`]).

use std::collections::{BTreeMap, BTreeSet};

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
/// The rollup tables, the same in both back ends; `table_options` follows each closing
/// parenthesis (SQLite: `WITHOUT ROWID`, so rows are stored in key order).
pub(crate) fn rollup_schema(table_options: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS report_days (
    policy_domain TEXT NOT NULL,
    day           TEXT NOT NULL,
    reports       BIGINT NOT NULL,
    successful    BIGINT NOT NULL,
    failed        BIGINT NOT NULL,
    PRIMARY KEY (policy_domain, day)
){table_options};
CREATE TABLE IF NOT EXISTS report_day_organizations (
    policy_domain     TEXT NOT NULL,
    day               TEXT NOT NULL,
    organization_name TEXT NOT NULL,
    reports           BIGINT NOT NULL,
    successful        BIGINT NOT NULL,
    failed            BIGINT NOT NULL,
    PRIMARY KEY (policy_domain, day, organization_name)
){table_options};
CREATE TABLE IF NOT EXISTS report_day_policies (
    policy_domain TEXT NOT NULL,
    day           TEXT NOT NULL,
    policy_type   TEXT NOT NULL,
    policy_string TEXT NOT NULL,
    reports       BIGINT NOT NULL,
    successful    BIGINT NOT NULL,
    failed        BIGINT NOT NULL,
    PRIMARY KEY (policy_domain, day, policy_type, policy_string)
){table_options};
CREATE TABLE IF NOT EXISTS report_day_result_types (
    policy_domain   TEXT NOT NULL,
    day             TEXT NOT NULL,
    result_type     TEXT NOT NULL,
    failed_sessions BIGINT NOT NULL,
    PRIMARY KEY (policy_domain, day, result_type)
){table_options};
CREATE TABLE IF NOT EXISTS report_day_mx (
    policy_domain   TEXT NOT NULL,
    day             TEXT NOT NULL,
    receiving_mx    TEXT NOT NULL,
    failed_sessions BIGINT NOT NULL,
    PRIMARY KEY (policy_domain, day, receiving_mx)
){table_options};
CREATE TABLE IF NOT EXISTS report_domains (
    policy_domain TEXT NOT NULL PRIMARY KEY,
    days          BIGINT NOT NULL,
    reports       BIGINT NOT NULL,
    successful    BIGINT NOT NULL,
    failed        BIGINT NOT NULL,
    first_day     TEXT NOT NULL,
    last_day      TEXT NOT NULL
){table_options};
CREATE TABLE IF NOT EXISTS report_domain_organizations (
    policy_domain     TEXT NOT NULL,
    organization_name TEXT NOT NULL,
    reports           BIGINT NOT NULL,
    successful        BIGINT NOT NULL,
    failed            BIGINT NOT NULL,
    last_day          TEXT NOT NULL,
    PRIMARY KEY (policy_domain, organization_name)
){table_options};
CREATE TABLE IF NOT EXISTS report_domain_policies (
    policy_domain TEXT NOT NULL,
    policy_type   TEXT NOT NULL,
    policy_string TEXT NOT NULL,
    reports       BIGINT NOT NULL,
    successful    BIGINT NOT NULL,
    failed        BIGINT NOT NULL,
    last_day      TEXT NOT NULL,
    PRIMARY KEY (policy_domain, policy_type, policy_string)
){table_options};
CREATE TABLE IF NOT EXISTS report_domain_result_types (
    policy_domain   TEXT NOT NULL,
    result_type     TEXT NOT NULL,
    failed_sessions BIGINT NOT NULL,
    last_day        TEXT NOT NULL,
    PRIMARY KEY (policy_domain, result_type)
){table_options};
{ROLLUP_INDEXES}"
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Indexes for what a dashboard asks besides one domain's days (which the rollups' keys
/// serve): every domain over a recent period (`day` first on the rollups the overview
/// sums, covering the columns it reads, so the sum never visits the table), one
/// organisation's sessions (the overview's organisation filter), and one domain's newest
/// reports and sending IPs (the detail tables by domain and day).
const ROLLUP_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS report_days_day
    ON report_days (day, policy_domain, reports, successful, failed);
CREATE INDEX IF NOT EXISTS report_day_result_types_day
    ON report_day_result_types (day, policy_domain, result_type, failed_sessions);
CREATE INDEX IF NOT EXISTS report_day_organizations_organization
    ON report_day_organizations (organization_name, day);
CREATE INDEX IF NOT EXISTS report_policies_domain_day ON report_policies (policy_domain, day);
CREATE INDEX IF NOT EXISTS failure_details_domain_day ON failure_details (policy_domain, day);
";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Empties the rollups and fills three of them from the detail rows (the fourth,
/// `report_day_mx`, needs [`mx_key`]: the back end fills it from the
/// [`SummarySql::details`] `by_mx` rows with [`RollupSql::mx`]).
pub(crate) const ROLLUP_REFILL: &str = "
DELETE FROM report_days;
DELETE FROM report_day_organizations;
DELETE FROM report_day_policies;
DELETE FROM report_day_result_types;
DELETE FROM report_day_mx;
DELETE FROM report_domains;
DELETE FROM report_domain_organizations;
DELETE FROM report_domain_policies;
DELETE FROM report_domain_result_types;
INSERT INTO report_days (policy_domain, day, reports, successful, failed)
    SELECT policy_domain, day, COUNT(DISTINCT report), SUM(successful), SUM(failed)
    FROM report_policies GROUP BY policy_domain, day;
INSERT INTO report_day_organizations
    (policy_domain, day, organization_name, reports, successful, failed)
    SELECT policy_domain, day, organization_name, COUNT(DISTINCT report), SUM(successful),
        SUM(failed)
    FROM report_policies GROUP BY policy_domain, day, organization_name;
INSERT INTO report_day_policies
    (policy_domain, day, policy_type, policy_string, reports, successful, failed)
    SELECT policy_domain, day, policy_type, policy_string, COUNT(DISTINCT report),
        SUM(successful), SUM(failed)
    FROM report_policies GROUP BY policy_domain, day, policy_type, policy_string;
INSERT INTO report_day_result_types (policy_domain, day, result_type, failed_sessions)
    SELECT policy_domain, day, result_type, SUM(failed_session_count)
    FROM failure_details GROUP BY policy_domain, day, result_type;
INSERT INTO report_domains
    (policy_domain, days, reports, successful, failed, first_day, last_day)
    SELECT policy_domain, COUNT(*), SUM(reports), SUM(successful), SUM(failed), MIN(day),
        MAX(day)
    FROM report_days GROUP BY policy_domain;
INSERT INTO report_domain_organizations
    (policy_domain, organization_name, reports, successful, failed, last_day)
    SELECT policy_domain, organization_name, SUM(reports), SUM(successful), SUM(failed),
        MAX(day)
    FROM report_day_organizations GROUP BY policy_domain, organization_name;
INSERT INTO report_domain_policies
    (policy_domain, policy_type, policy_string, reports, successful, failed, last_day)
    SELECT policy_domain, policy_type, policy_string, SUM(reports), SUM(successful),
        SUM(failed), MAX(day)
    FROM report_day_policies GROUP BY policy_domain, policy_type, policy_string;
INSERT INTO report_domain_result_types (policy_domain, result_type, failed_sessions, last_day)
    SELECT policy_domain, result_type, SUM(failed_sessions), MAX(day)
    FROM report_day_result_types GROUP BY policy_domain, result_type;
";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The rollups whose columns changed in version 3 (every organisation's sessions, not only
/// failures), dropped before the schema creates them anew and the refill fills them.
pub(crate) const ROLLUPS_V2_DROP: &str = "DROP TABLE IF EXISTS report_day_organizations;";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Drops the indexes that version 1 kept on the detail tables for the summary queries: the
/// summary reads the rollups now, and every import paid for these indexes (dropped after
/// the rollups are filled, which uses them).
pub(crate) const DETAIL_SUMMARY_INDEXES_DROP: &str = "
DROP INDEX IF EXISTS report_policies_summary;
DROP INDEX IF EXISTS report_policies_day;
DROP INDEX IF EXISTS failure_details_summary;
";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The UPSERTs that add a [`RollupDelta`] to the rollup tables. Columns: domain, day, key
/// (not for `days`), then the counts.
pub(crate) struct RollupSql {
    /// Columns: domain, day, organisation, reports, successful, failed.
    pub org: String,
    /// Columns: domain, day, policy type, policy string, reports, successful, failed.
    pub policy: String,
    pub result_type: String,
    pub mx: String,
    /// `report_days`; returns (domain, day, `reports` after the update): equal to the
    /// delta's only for a new (domain, day), since both are at least 1.
    pub days: String,
    /// `report_domains`: domain, days, reports, successful, failed, first and last day.
    pub domain: String,
    /// The all-time tables: columns as their key, then counts, then the last day.
    pub domain_org: String,
    pub domain_policy: String,
    pub domain_result_type: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl RollupSql {
    /// `rows(types)` renders the rows to insert, given the SQL type of each column: one row
    /// of parameters (SQLite, `VALUES (?1, …)`) or arrays (PostgreSQL, `SELECT * FROM
    /// UNNEST($1::TEXT[], …)`). Their keys must be distinct: one statement may not update a
    /// row twice.
    /// `greatest` and `least` are the back end's two-argument maximum and minimum (`MAX`
    /// and `MIN`, `GREATEST` and `LEAST`).
    pub(crate) fn new(rows: impl Fn(&[&str]) -> String, greatest: &str, least: &str) -> Self {
        let keyed = |table: &str, key: &str, count: &str| {
            format!(
                "INSERT INTO {table} (policy_domain, day, {key}, {count}) {} \
                 ON CONFLICT (policy_domain, day, {key}) \
                 DO UPDATE SET {count} = {table}.{count} + excluded.{count}",
                rows(&["TEXT", "TEXT", "TEXT", "BIGINT"])
            )
        };
        // Reports, successful and failed sessions under a key of text columns.
        let sessions = |table: &str, keys: &[&str]| {
            let mut types = vec!["TEXT"; keys.len()];
            types.extend(["BIGINT"; 3]);
            let keys = keys.join(", ");
            format!(
                "INSERT INTO {table} ({keys}, reports, successful, failed) {} \
                 ON CONFLICT ({keys}) DO UPDATE SET \
                 reports = {table}.reports + excluded.reports, \
                 successful = {table}.successful + excluded.successful, \
                 failed = {table}.failed + excluded.failed",
                rows(&types)
            )
        };
        // The all-time tables: sums, and the latest day seen.
        let all_time = |table: &str, keys: &[&str], counts: &[&str]| {
            let mut types = vec!["TEXT"; keys.len()];
            types.extend(vec!["BIGINT"; counts.len()]);
            types.push("TEXT");
            let sums: Vec<String> = counts
                .iter()
                .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
                .collect();
            format!(
                "INSERT INTO {table} ({}, {}, last_day) {} ON CONFLICT ({}) DO UPDATE SET {}, \
                 last_day = {greatest}({table}.last_day, excluded.last_day)",
                keys.join(", "),
                counts.join(", "),
                rows(&types),
                keys.join(", "),
                sums.join(", ")
            )
        };
        let sessions_counts = ["reports", "successful", "failed"];
        let days = sessions("report_days", &["policy_domain", "day"]);
        RollupSql {
            days: format!("{days} RETURNING policy_domain, day, reports"),
            domain: format!(
                "INSERT INTO report_domains (policy_domain, days, reports, successful, failed, \
                 first_day, last_day) {} ON CONFLICT (policy_domain) DO UPDATE SET \
                 days = report_domains.days + excluded.days, \
                 reports = report_domains.reports + excluded.reports, \
                 successful = report_domains.successful + excluded.successful, \
                 failed = report_domains.failed + excluded.failed, \
                 first_day = {least}(report_domains.first_day, excluded.first_day), \
                 last_day = {greatest}(report_domains.last_day, excluded.last_day)",
                rows(&[
                    "TEXT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "TEXT", "TEXT"
                ])
            ),
            domain_org: all_time(
                "report_domain_organizations",
                &["policy_domain", "organization_name"],
                &sessions_counts,
            ),
            domain_policy: all_time(
                "report_domain_policies",
                &["policy_domain", "policy_type", "policy_string"],
                &sessions_counts,
            ),
            domain_result_type: all_time(
                "report_domain_result_types",
                &["policy_domain", "result_type"],
                &["failed_sessions"],
            ),
            org: sessions(
                "report_day_organizations",
                &["policy_domain", "day", "organization_name"],
            ),
            policy: sessions(
                "report_day_policies",
                &["policy_domain", "day", "policy_type", "policy_string"],
            ),
            result_type: keyed("report_day_result_types", "result_type", "failed_sessions"),
            mx: keyed("report_day_mx", "receiving_mx", "failed_sessions"),
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Reports, successful and failed sessions under one rollup key (a policy domain on one
/// day; with an organisation; with a policy).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayTotals {
    pub reports: u64,
    pub successful: u64,
    pub failed: u64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl DayTotals {
    /// Adds one policy's sessions, and its report when it is the first of the report
    /// under this key.
    fn add(&mut self, new_report: bool, successful: u64, failed: u64) {
        self.reports += u64::from(new_report);
        self.successful = self.successful.saturating_add(successful);
        self.failed = self.failed.saturating_add(failed);
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// What the reports newly stored in one transaction add to the rollups, keyed as the
/// rollup tables are (domain, day[, key]); the back end adds it with [`RollupSql`] before
/// committing. Sorted keys also give concurrent PostgreSQL transactions one lock order.
#[derive(Debug, Default)]
pub(crate) struct RollupDelta {
    pub days: BTreeMap<(String, String), DayTotals>,
    pub by_org: BTreeMap<(String, String, String), DayTotals>,
    /// Keyed by domain, day, policy type, policy string (as stored: [`json_list`]).
    pub by_policy: BTreeMap<(String, String, String, String), DayTotals>,
    pub by_type: BTreeMap<(String, String, String), u64>,
    pub by_mx: BTreeMap<(String, String, String), u64>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl RollupDelta {
    /// Adds a report that was just stored (never a duplicate), counted as the detail rows
    /// store it: domains [`normalize_domain`]d, the day of `start-datetime`, a report once
    /// per key (domain; domain and organisation; domain and policy) however many of its
    /// policies share it, so that summing a period's days counts each report once.
    pub(crate) fn add(&mut self, report: &Report) {
        let day = report.date_range.start.date_string();
        let mut counted = BTreeSet::new();
        let mut counted_policies = BTreeSet::new();
        for p in &report.policies {
            let domain = normalize_domain(&p.policy.policy_domain);
            let ok = stored_count(p.summary.total_successful_session_count);
            let ko = stored_count(p.summary.total_failure_session_count);
            let first_for_domain = counted.insert(domain.clone());
            self.days
                .entry((domain.clone(), day.clone()))
                .or_default()
                .add(first_for_domain, ok, ko);
            self.by_org
                .entry((
                    domain.clone(),
                    day.clone(),
                    report.organization_name.clone(),
                ))
                .or_default()
                .add(first_for_domain, ok, ko);
            let policy = (
                domain.clone(),
                day.clone(),
                p.policy.policy_type.as_str().to_owned(),
                json_list(&p.policy.policy_string),
            );
            let first_for_policy = counted_policies.insert(policy.clone());
            self.by_policy
                .entry(policy)
                .or_default()
                .add(first_for_policy, ok, ko);
            for d in &p.failure_details {
                let n = stored_count(d.failed_session_count);
                let mx = d.receiving_mx_hostname.as_deref().map(normalize_domain);
                let mx = mx_key(mx.as_deref()).to_owned();
                let kind = d.result_type.as_str().to_owned();
                add_to(&mut self.by_type, (domain.clone(), day.clone(), kind), n);
                add_to(&mut self.by_mx, (domain.clone(), day.clone(), mx), n);
            }
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// What a [`RollupDelta`] adds to the all-time tables (`report_domain_*`): its per-day keys
/// without the day, summed, with the latest day.
#[derive(Debug, Default)]
pub(crate) struct AllTimeDelta {
    pub orgs: BTreeMap<(String, String), (DayTotals, String)>,
    pub policies: BTreeMap<(String, String, String), (DayTotals, String)>,
    pub result_types: BTreeMap<(String, String), (u64, String)>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl RollupDelta {
    /// The all-time sums of this delta. A report has one day and is counted once per day
    /// key, so summing its days counts it once.
    pub(crate) fn all_time(&self) -> AllTimeDelta {
        fn fold<K: Ord>(
            map: &mut BTreeMap<K, (DayTotals, String)>,
            key: K,
            day: &str,
            t: &DayTotals,
        ) {
            let (sum, last) = map.entry(key).or_default();
            sum.add(false, t.successful, t.failed);
            sum.reports = sum.reports.saturating_add(t.reports);
            if last.as_str() < day {
                day.clone_into(last);
            }
        }
        let mut out = AllTimeDelta::default();
        for ((domain, day, org), t) in &self.by_org {
            fold(&mut out.orgs, (domain.clone(), org.clone()), day, t);
        }
        for ((domain, day, kind, strings), t) in &self.by_policy {
            let key = (domain.clone(), kind.clone(), strings.clone());
            fold(&mut out.policies, key, day, t);
        }
        for ((domain, day, kind), n) in &self.by_type {
            let (sum, last) = out
                .result_types
                .entry((domain.clone(), kind.clone()))
                .or_default();
            *sum = sum.saturating_add(*n);
            if last.as_str() < day.as_str() {
                day.clone_into(last);
            }
        }
        out
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// One domain's row of `report_domains` as a delta adds to it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DomainSums {
    /// Days new to `report_days`.
    pub new_days: u64,
    pub totals: DayTotals,
    pub first_day: String,
    pub last_day: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl RollupDelta {
    /// What the delta adds to `report_domains`, given which of its (domain, day) keys were
    /// new to `report_days` (the back end learns it from the day upsert).
    pub(crate) fn domain_sums(
        &self,
        is_new: impl Fn(&(String, String)) -> bool,
    ) -> BTreeMap<String, DomainSums> {
        let mut out: BTreeMap<String, DomainSums> = BTreeMap::new();
        for (key, t) in &self.days {
            let (domain, day) = key;
            let sums = out.entry(domain.clone()).or_insert_with(|| DomainSums {
                first_day: day.clone(),
                ..DomainSums::default()
            });
            sums.new_days += u64::from(is_new(key));
            sums.totals.add(false, t.successful, t.failed);
            sums.totals.reports = sums.totals.reports.saturating_add(t.reports);
            // Keys are sorted: the first day of a domain comes first, its last one last.
            day.clone_into(&mut sums.last_day);
        }
        out
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn add_to(
    map: &mut BTreeMap<(String, String, String), u64>,
    key: (String, String, String),
    n: u64,
) {
    let v = map.entry(key).or_default();
    *v = v.saturating_add(n);
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A count as the detail rows hold it ([`db_count`]).
fn stored_count(v: u64) -> u64 {
    v.min(i64::MAX as u64)
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
