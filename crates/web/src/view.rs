//! What each page shows, computed from the store's answers with no I/O: the same values
//! feed the HTML page, its JSON endpoint and the CSV export, so they cannot disagree.

use std::collections::{BTreeMap, BTreeSet};

use mta_sts_report_store::listing::{
    Details, OrganizationSessions, PolicySeen, ReportListing, SenderFailures,
};
use mta_sts_report_store::{DaySummary, DomainTotals, OverviewKeys};
use serde::Serialize;

use crate::query::{OVERVIEW_PAGE, ViewQuery};

/// A domain is "no reports lately" when its last report day is more than this many days
/// before today: reporters send one report per UTC day (RFC 8460 §4.1) after it ends.
pub const QUIET_AFTER_DAYS: i64 = 3;

/// The state of a domain over the period, shown as a word (not only a colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Reports arrive and show no failed sessions.
    Healthy,
    /// Some sessions failed in the period.
    Failures,
    /// No report for [`QUIET_AFTER_DAYS`] days or more (and no failures).
    NoReportsLately,
}

impl Status {
    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Failures => "failures",
            Status::NoReportsLately => "no reports lately",
        }
    }

    /// The CSS class (and a symbol is shown with the label).
    pub fn class(self) -> &'static str {
        match self {
            Status::Healthy => "ok",
            Status::Failures => "bad",
            Status::NoReportsLately => "quiet",
        }
    }

    /// A symbol shown before the label.
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Healthy => "✓",
            Status::Failures => "✗",
            Status::NoReportsLately => "…",
        }
    }

    fn of(failed: u64, last_day: Option<&str>, today: &str) -> Status {
        let quiet = match (
            last_day.and_then(crate::chart::day_number),
            crate::chart::day_number(today),
        ) {
            (Some(last), Some(today)) => today - last > QUIET_AFTER_DAYS,
            _ => true,
        };
        if failed > 0 {
            Status::Failures
        } else if quiet {
            Status::NoReportsLately
        } else {
            Status::Healthy
        }
    }
}

/// Successful sessions as a percentage with two decimals, `–` without sessions.
pub fn rate_text(successful: u64, failed: u64) -> String {
    let total = successful.saturating_add(failed);
    if total == 0 {
        "–".to_owned()
    } else {
        format!("{:.2}%", successful as f64 * 100.0 / total as f64)
    }
}

/// The filters of a view, echoed in its JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// `7`, `30`, `90` or `all`.
    pub period: String,
    /// First day of the period (`None` for all), the `--since` of `report summary`.
    pub since: Option<String>,
    /// Today (UTC).
    pub today: String,
    /// Domain filter.
    pub domain: Option<String>,
    /// Organisation filter.
    pub org: Option<String>,
    /// Result-type filter.
    pub result: Option<String>,
}

impl Filters {
    /// The filters of `query` on the day of `now` (Unix seconds).
    pub fn new(query: &ViewQuery, now: i64) -> Filters {
        let period = query.period();
        Filters {
            period: period.key(),
            since: period.since(now),
            today: tlsrpt::UtcDateTime::from_unix_seconds(now).date_string(),
            domain: query.domain(),
            org: query.org().map(str::to_owned),
            result: query.result().map(str::to_owned),
        }
    }
}

/// One line of the overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainRow {
    /// Policy domain.
    pub policy_domain: String,
    /// Days with reports in the period.
    pub days: u64,
    /// Reports (of the organisation, with that filter).
    pub reports: u64,
    /// Successful sessions (of the organisation, with that filter).
    pub successful: u64,
    /// Failed sessions (of the organisation, with that filter).
    pub failed: u64,
    /// `successful / (successful + failed)`, `None` without sessions.
    pub success_rate: Option<f64>,
    /// The latest day with a report.
    pub last_day: Option<String>,
    /// The first day with a report in the period.
    pub first_day: Option<String>,
    /// Reporting organisations.
    pub organizations: Vec<String>,
    /// `policy-type`s seen, with the policy mode for `sts` (`sts enforce`, `sts testing`).
    pub policy_types: Vec<String>,
    /// Healthy, failures, no reports lately.
    pub status: Status,
    /// Failed sessions per result type.
    pub failures_by_result_type: BTreeMap<String, u64>,
    /// Failed sessions of the result type filtered for, with that filter.
    pub failed_of_result: Option<u64>,
    /// Per-day points for the sparkline.
    #[serde(skip)]
    pub points: Vec<crate::chart::DayPoint>,
}

/// The overview page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// Period and filters.
    pub filters: Filters,
    /// One row per policy domain, by domain.
    pub domains: Vec<DomainRow>,
    /// Organisations reporting in the period (for the filter's choices).
    pub organizations: Vec<String>,
    /// Result types seen in the period (for the filter's choices).
    pub result_types: Vec<String>,
}

/// `sts` with its mode from the policy string (`sts enforce`), other types as they are.
pub fn policy_label(policy_type: &str, policy_string: &[String]) -> String {
    if policy_type == "sts" {
        let mode = policy_string.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "mode").then(|| v.trim().to_owned())
        });
        match mode {
            Some(m) => format!("sts {m}"),
            None => "sts".to_owned(),
        }
    } else {
        policy_type.to_owned()
    }
}

/// Builds the overview from the per-domain totals over the period and what the store
/// keeps of each domain's organisations, policies and result types
/// ([`mta_sts_report_store::OverviewKeys`], asked for with the organisation filter). The
/// rows' sparkline points are left empty: the page fetches them for the rows it shows
/// ([`Overview::attach_points`]).
pub fn overview(filters: Filters, totals: &[DomainTotals], keys: &OverviewKeys) -> Overview {
    let org_sessions: BTreeMap<&str, &OrganizationSessions> = keys
        .organization_sessions
        .iter()
        .map(|o| (o.policy_domain.as_str(), o))
        .collect();
    let mut rows = Vec::new();
    for t in totals {
        if filters
            .domain
            .as_deref()
            .is_some_and(|d| d != t.policy_domain)
        {
            continue;
        }
        let by_type = keys
            .failures_by_result_type
            .get(&t.policy_domain)
            .cloned()
            .unwrap_or_default();
        let (mut reports, mut successful, mut failed) = (t.reports, t.successful, t.failed);
        if filters.org.is_some() {
            let Some(o) = org_sessions.get(t.policy_domain.as_str()) else {
                continue;
            };
            (reports, successful, failed) = (o.reports, o.successful, o.failed);
        }
        let failed_of_result = filters
            .result
            .as_ref()
            .map(|r| by_type.get(r).copied().unwrap_or(0));
        if failed_of_result == Some(0) {
            continue;
        }
        let last_day = (!t.last_day.is_empty()).then(|| t.last_day.clone());
        let total = successful.saturating_add(failed);
        rows.push(DomainRow {
            policy_domain: t.policy_domain.clone(),
            days: t.days,
            reports,
            successful,
            failed,
            success_rate: (total > 0).then(|| successful as f64 / total as f64),
            status: Status::of(failed, last_day.as_deref(), &filters.today),
            last_day,
            first_day: (!t.first_day.is_empty()).then(|| t.first_day.clone()),
            organizations: keys
                .organizations
                .get(&t.policy_domain)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            policy_types: keys
                .policies
                .get(&t.policy_domain)
                .map(|s| {
                    s.iter()
                        .map(|p| policy_label(&p.policy_type, &p.policy_string))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            failures_by_result_type: by_type,
            failed_of_result,
            points: Vec::new(),
        });
    }
    let organizations: BTreeSet<String> = keys.organizations.values().flatten().cloned().collect();
    let result_types: BTreeSet<String> = keys
        .failures_by_result_type
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect();
    Overview {
        filters,
        domains: rows,
        organizations: organizations.into_iter().collect(),
        result_types: result_types.into_iter().collect(),
    }
}

impl Overview {
    /// The rows of overview page `page` (1-based; past the end, the last page).
    pub fn page_rows(&self, page: usize) -> std::ops::Range<usize> {
        let pages = self.pages();
        let page = page.clamp(1, pages);
        let start = (page - 1) * OVERVIEW_PAGE;
        start.min(self.domains.len())..(start + OVERVIEW_PAGE).min(self.domains.len())
    }

    /// The number of overview pages (at least 1).
    pub fn pages(&self) -> usize {
        self.domains.len().div_ceil(OVERVIEW_PAGE).max(1)
    }

    /// Sets the sparkline points of the rows in `rows` from the per-day rows of their
    /// domains (any order; rows of other domains are ignored).
    pub fn attach_points(&mut self, rows: std::ops::Range<usize>, days: &[DaySummary]) {
        let mut by_domain: BTreeMap<&str, Vec<&DaySummary>> = BTreeMap::new();
        for d in days {
            by_domain.entry(&d.policy_domain).or_default().push(d);
        }
        for row in &mut self.domains[rows] {
            if let Some(days) = by_domain.get(row.policy_domain.as_str()) {
                row.points = crate::chart::points(days.iter().copied());
            }
        }
    }
}

/// A key and its count, for the breakdown tables (largest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The key (result type, MX host, organisation).
    pub key: String,
    /// Failed sessions.
    pub failed: u64,
}

fn counts(map: BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = map
        .into_iter()
        .map(|(key, failed)| Count { key, failed })
        .collect();
    v.sort_by(|a, b| b.failed.cmp(&a.failed).then_with(|| a.key.cmp(&b.key)));
    v
}

/// The domain page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainPage {
    /// Period and filters.
    pub filters: Filters,
    /// The policy domain.
    pub policy_domain: String,
    /// Sums over the period's days (what `report summary --by-domain` prints).
    pub totals: DomainTotals,
    /// `successful / (successful + failed)`.
    pub success_rate: Option<f64>,
    /// Healthy, failures, no reports lately.
    pub status: Status,
    /// Per UTC day, as `report summary --json --domain D --since S` prints them.
    pub days: Vec<DaySummary>,
    /// Failed sessions per result type over the period (only the filtered type, with
    /// that filter).
    pub failures_by_result_type: Vec<Count>,
    /// Failed sessions per receiving MX over the period.
    pub failures_by_mx: Vec<Count>,
    /// Failed sessions per reporting organisation over the period.
    pub failures_by_organization: Vec<Count>,
    /// Failed sessions per sending MTA IP and result type (only the filtered type, with
    /// that filter).
    pub senders: Vec<SenderFailures>,
    /// The policies reporters saw.
    pub policies: Vec<PolicySeen>,
    /// Sessions per reporting organisation (only the filtered one, with that filter).
    pub organizations: Vec<OrganizationSessions>,
    /// The newest reports (only the filtered organisation's, with that filter).
    pub reports: Vec<ReportListing>,
}

/// Builds the domain page from the domain's per-day rows since the period's first day and
/// its detail listings.
pub fn domain_page(
    filters: Filters,
    domain: &str,
    days: Vec<DaySummary>,
    details: Details,
) -> DomainPage {
    let mut totals = DomainTotals {
        policy_domain: domain.to_owned(),
        ..DomainTotals::default()
    };
    let (mut by_type, mut by_mx, mut by_org) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for d in &days {
        totals.days += 1;
        totals.reports += d.reports;
        totals.successful += d.successful;
        totals.failed += d.failed;
        for (map, src) in [
            (&mut by_type, &d.failures_by_result_type),
            (&mut by_mx, &d.failures_by_mx),
            (&mut by_org, &d.failures_by_organization),
        ] {
            for (k, v) in src {
                *map.entry(k.clone()).or_insert(0u64) += v;
            }
        }
    }
    if let Some(r) = &filters.result {
        by_type.retain(|k, _| k == r);
    }
    let Details {
        mut reports,
        policies,
        mut organizations,
        mut senders,
    } = details;
    if let Some(org) = &filters.org {
        reports.retain(|r| &r.organization_name == org);
        organizations.retain(|o| &o.organization_name == org);
    }
    if let Some(r) = &filters.result {
        senders.retain(|s| &s.result_type == r);
    }
    let last_day = days.last().map(|d| d.day.clone());
    let total = totals.successful.saturating_add(totals.failed);
    DomainPage {
        status: Status::of(totals.failed, last_day.as_deref(), &filters.today),
        success_rate: (total > 0).then(|| totals.successful as f64 / total as f64),
        filters,
        policy_domain: domain.to_owned(),
        totals,
        days,
        failures_by_result_type: counts(by_type),
        failures_by_mx: counts(by_mx),
        failures_by_organization: counts(by_org),
        senders,
        policies,
        organizations,
        reports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(domain: &str, day: &str, ok: u64, ko: u64) -> DaySummary {
        let mut d = DaySummary {
            policy_domain: domain.into(),
            day: day.into(),
            reports: 1,
            successful: ok,
            failed: ko,
            ..DaySummary::default()
        };
        if ko > 0 {
            d.failures_by_result_type
                .insert("certificate-expired".into(), ko);
        }
        d
    }

    fn filters(today: &str) -> Filters {
        Filters {
            period: "all".into(),
            today: today.into(),
            ..Filters::default()
        }
    }

    #[test]
    fn status_says_failures_then_quiet_then_healthy() {
        assert_eq!(
            Status::of(1, Some("2024-01-01"), "2024-03-01"),
            Status::Failures
        );
        assert_eq!(
            Status::of(0, Some("2024-01-01"), "2024-03-01"),
            Status::NoReportsLately
        );
        assert_eq!(
            Status::of(0, Some("2024-02-27"), "2024-03-01"),
            Status::Healthy
        );
        assert_eq!(Status::of(0, None, "2024-03-01"), Status::NoReportsLately);
    }

    #[test]
    fn the_result_filter_keeps_domains_with_such_failures() {
        let days = vec![
            day("a.example", "2024-01-01", 5, 1),
            day("b.example", "2024-01-01", 5, 0),
        ];
        let totals = mta_sts_report_store::totals::from_days(&days, &Default::default());
        let mut keys = OverviewKeys::default();
        keys.failures_by_result_type.insert(
            "a.example".into(),
            [("certificate-expired".to_owned(), 1)].into(),
        );
        let mut f = filters("2024-01-02");
        let all = overview(f.clone(), &totals, &keys);
        assert_eq!(all.domains.len(), 2);
        assert_eq!(all.domains[0].status, Status::Failures);
        assert_eq!(all.domains[1].status, Status::Healthy);
        f.result = Some("certificate-expired".into());
        let some = overview(f, &totals, &keys);
        assert_eq!(some.domains.len(), 1);
        assert_eq!(some.domains[0].failed_of_result, Some(1));
    }

    #[test]
    fn the_domain_page_sums_its_days() {
        let days = vec![
            day("a.example", "2024-01-01", 5, 1),
            day("a.example", "2024-01-05", 7, 2),
        ];
        let p = domain_page(filters("2024-01-06"), "a.example", days, Details::default());
        assert_eq!(
            (
                p.totals.days,
                p.totals.reports,
                p.totals.successful,
                p.totals.failed
            ),
            (2, 2, 12, 3)
        );
        assert_eq!(
            p.failures_by_result_type,
            vec![Count {
                key: "certificate-expired".into(),
                failed: 3
            }]
        );
    }

    #[test]
    fn sts_policies_are_labelled_with_their_mode() {
        let lines = ["version: STSv1".to_owned(), "mode: testing".to_owned()];
        assert_eq!(policy_label("sts", &lines), "sts testing");
        assert_eq!(policy_label("sts", &[]), "sts");
        assert_eq!(policy_label("tlsa", &lines), "tlsa");
    }
}
