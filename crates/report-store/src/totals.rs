//! Per-domain totals over a period: one row per policy domain (a dashboard's overview),
//! aggregated by the database from the per-day rollup table `report_days`, so the answer
//! is as many rows as there are domains, however many days the period spans; for all time,
//! read from `report_domains`, which every import adds to.

use std::collections::BTreeMap;

use serde::Serialize;

/// Which days [`DomainTotals`] cover: both bounds inclusive, `YYYY-MM-DD` (UTC); `None`
/// leaves that end open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodFilter {
    /// Only days on or after this `YYYY-MM-DD`.
    pub since: Option<String>,
    /// Only days on or before this `YYYY-MM-DD`.
    pub until: Option<String>,
}

impl PeriodFilter {
    /// Whether `day` (`YYYY-MM-DD`) is inside the period (string comparison, as the
    /// databases compare the `day` column).
    pub fn contains(&self, day: &str) -> bool {
        self.since.as_deref().is_none_or(|s| day >= s)
            && self.until.as_deref().is_none_or(|u| day <= u)
    }
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
    /// Sum of `failed-session-count` per `receiving-mx-hostname` (`(none)`, the store's `NO_MX`, when
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

/// Sessions for one policy domain over a period, summed over its days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DomainTotals {
    /// Policy domain (lower-case; empty when reporters left it out).
    pub policy_domain: String,
    /// Days with at least one report in the period.
    pub days: u64,
    /// Reports contributing (a report covering several domains counts for each).
    pub reports: u64,
    /// Sum of `total-successful-session-count`.
    pub successful: u64,
    /// Sum of `total-failure-session-count`.
    pub failed: u64,
    /// First day with a report in the period (`YYYY-MM-DD`).
    pub first_day: String,
    /// Last day with a report in the period (`YYYY-MM-DD`).
    pub last_day: String,
}

impl DomainTotals {
    /// Successful sessions as a fraction of all sessions; `None` without sessions.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.successful.saturating_add(self.failed);
        (total > 0).then(|| self.successful as f64 / total as f64)
    }
}

/// Folds per-day rows sorted by (domain, day), as [`crate::ReportStore::summary`] returns
/// them, into per-domain totals over `period`: what the stores' SQL must equal, and
/// the trait's default for stores without it.
pub fn from_days(days: &[DaySummary], period: &PeriodFilter) -> Vec<DomainTotals> {
    let mut out: Vec<DomainTotals> = Vec::new();
    for d in days.iter().filter(|d| period.contains(&d.day)) {
        if out
            .last()
            .is_none_or(|t| t.policy_domain != d.policy_domain)
        {
            out.push(DomainTotals {
                policy_domain: d.policy_domain.clone(),
                first_day: d.day.clone(),
                ..DomainTotals::default()
            });
        }
        let Some(t) = out.last_mut() else { break };
        t.last_day.clone_from(&d.day);
        t.days += 1;
        t.reports = t.reports.saturating_add(d.reports);
        t.successful = t.successful.saturating_add(d.successful);
        t.failed = t.failed.saturating_add(d.failed);
    }
    out
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The query over `report_days` (columns: domain, days, reports, successful, failed, first
/// and last day),
/// grouped by domain, with `placeholder(n)` rendering the n-th parameter (`?1`, `$1`) and
/// `order` sorting by domain in byte order. PostgreSQL's `SUM(bigint)` is `numeric`, so the
/// sums are cast back to `BIGINT`. The table's key (domain, day) is the group order, so
/// the database aggregates in one pass without sorting. All time reads `report_domains`,
/// where each import added its sums. `indexed_by(name)` is the back end's clause naming
/// the index a period is read through (SQLite's `INDEXED BY`: without statistics its
/// planner prefers scanning the table in key order to save the sort), or nothing.
pub(crate) fn sql(
    period: &PeriodFilter,
    placeholder: impl Fn(usize) -> String,
    order: &str,
    indexed_by: &dyn Fn(&str) -> String,
) -> String {
    let mut conds = Vec::new();
    let mut n = 0;
    if period.since.is_some() {
        n += 1;
        conds.push(format!("day >= {}", placeholder(n)));
    }
    if period.until.is_some() {
        n += 1;
        conds.push(format!("day <= {}", placeholder(n)));
    }
    if conds.is_empty() {
        // All time: the all-time table keeps these sums, one row per domain.
        return format!(
            "SELECT policy_domain, days, reports, successful, failed, first_day, last_day \
             FROM report_domains {order}"
        );
    }
    let w = format!("WHERE {}", conds.join(" AND "));
    let index = indexed_by("report_days_day");
    format!(
        "SELECT policy_domain, CAST(COUNT(*) AS BIGINT), CAST(SUM(reports) AS BIGINT), \
         CAST(SUM(successful) AS BIGINT), CAST(SUM(failed) AS BIGINT), MIN(day), MAX(day) \
         FROM report_days{index} {w} GROUP BY policy_domain {order}"
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The period's parameters in placeholder order.
pub(crate) fn params(period: &PeriodFilter) -> Vec<String> {
    period
        .since
        .iter()
        .chain(period.until.iter())
        .cloned()
        .collect()
}

/// A database count as `u64` (counts are never negative; a negative one reads as 0).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
