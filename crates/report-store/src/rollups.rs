//! The rollups both back ends keep beside the detail rows: per domain and day
//! (`report_day*`) and per domain over all time (`report_domain*`).
//!
//! [`rollup_schema`] creates their tables; [`ROLLUP_REFILL`] (with [`ROLLUPS_V2_DROP`] and
//! [`DETAIL_SUMMARY_INDEXES_DROP`]) fills them from the detail rows when an older database
//! is migrated; [`RollupDelta`] is what the reports newly stored in one transaction add to
//! them, [`AllTimeDelta`] and [`DomainSums`] its all-time part, and [`RollupSql`] the
//! UPSERTs a back end adds them with, in the transaction that stores the reports. The
//! summary queries that read the day rollups are [`SummarySql`](crate::store::SummarySql), in
//! `store.rs`.

use std::collections::{BTreeMap, BTreeSet};

use tlsrpt::Report;

use crate::store::{json_list, mx_key, normalize_domain};

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

/// Empties the rollups and fills three of them from the detail rows (the fourth,
/// `report_day_mx`, needs [`mx_key`]: the back end fills it from the
/// [`SummarySql::details`](crate::store::SummarySql::details) `by_mx` rows with
/// [`RollupSql::mx`]).
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

/// The rollups whose columns changed in version 3 (every organisation's sessions, not only
/// failures), dropped before the schema creates them anew and the refill fills them.
pub(crate) const ROLLUPS_V2_DROP: &str = "DROP TABLE IF EXISTS report_day_organizations;";

/// Drops the indexes that version 1 kept on the detail tables for the summary queries: the
/// summary reads the rollups now, and every import paid for these indexes (dropped after
/// the rollups are filled, which uses them).
pub(crate) const DETAIL_SUMMARY_INDEXES_DROP: &str = "
DROP INDEX IF EXISTS report_policies_summary;
DROP INDEX IF EXISTS report_policies_day;
DROP INDEX IF EXISTS failure_details_summary;
";

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

/// Reports, successful and failed sessions under one rollup key (a policy domain on one
/// day; with an organisation; with a policy).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayTotals {
    pub reports: u64,
    pub successful: u64,
    pub failed: u64,
}

impl DayTotals {
    /// Adds one policy's sessions, and its report when it is the first of the report
    /// under this key.
    fn add(&mut self, new_report: bool, successful: u64, failed: u64) {
        self.reports += u64::from(new_report);
        self.successful = self.successful.saturating_add(successful);
        self.failed = self.failed.saturating_add(failed);
    }
}

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

/// What a [`RollupDelta`] adds to the all-time tables (`report_domain_*`): its per-day keys
/// without the day, summed, with the latest day.
#[derive(Debug, Default)]
pub(crate) struct AllTimeDelta {
    pub orgs: BTreeMap<(String, String), (DayTotals, String)>,
    pub policies: BTreeMap<(String, String, String), (DayTotals, String)>,
    pub result_types: BTreeMap<(String, String), (u64, String)>,
}

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

/// One domain's row of `report_domains` as a delta adds to it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DomainSums {
    /// Days new to `report_days`.
    pub new_days: u64,
    pub totals: DayTotals,
    pub first_day: String,
    pub last_day: String,
}

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

fn add_to(
    map: &mut BTreeMap<(String, String, String), u64>,
    key: (String, String, String),
    n: u64,
) {
    let v = map.entry(key).or_default();
    *v = v.saturating_add(n);
}

/// A count as the detail rows hold it ([`db_count`](crate::store::db_count)).
fn stored_count(v: u64) -> u64 {
    v.min(i64::MAX as u64)
}
