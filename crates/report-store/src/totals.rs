//! Per-domain totals over a period: one row per policy domain (a dashboard's overview),
//! aggregated by the database from the per-day rollup table `report_days`, so the answer
//! is as many rows as there are domains, however many days the period spans.

use serde::Serialize;

use crate::store::DaySummary;

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
                ..DomainTotals::default()
            });
        }
        let Some(t) = out.last_mut() else { break };
        t.days += 1;
        t.reports = t.reports.saturating_add(d.reports);
        t.successful = t.successful.saturating_add(d.successful);
        t.failed = t.failed.saturating_add(d.failed);
    }
    out
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The query over `report_days` (columns: domain, days, reports, successful, failed),
/// grouped by domain, with `placeholder(n)` rendering the n-th parameter (`?1`, `$1`) and
/// `order` sorting by domain in byte order. PostgreSQL's `SUM(bigint)` is `numeric`, so the
/// sums are cast back to `BIGINT`. The table's key (domain, day) is the group order, so
/// the database aggregates in one pass without sorting.
pub(crate) fn sql(
    period: &PeriodFilter,
    placeholder: impl Fn(usize) -> String,
    order: &str,
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
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    format!(
        "SELECT policy_domain, CAST(COUNT(*) AS BIGINT), CAST(SUM(reports) AS BIGINT), \
         CAST(SUM(successful) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
         FROM report_days {w} GROUP BY policy_domain {order}"
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
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod testgen {
    use std::collections::BTreeMap;

    use tlsrpt::UtcDateTime;

    use super::{DomainTotals, PeriodFilter, from_days};
    use crate::store::{ReportStore, SummaryFilter};

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
