//! What a dashboard's overview shows of every policy domain besides its totals
//! ([`crate::totals`]): the organisations that reported on it, the policies they saw
//! (RFC 8460 §4.3 `policy-type`, `policy-string`), its failed sessions per result type, and,
//! when the overview is filtered to one organisation, that organisation's sessions.
//!
//! Over a period that runs to today (the overview's 7, 30 or 90 days, or all time) the
//! organisations and policies come from the all-time tables (`report_domain_*`, one row per
//! domain and key with the latest day it was reported): "reported in the period" is "last
//! reported on or after its first day". Failures per result type are summed from the day
//! rollup over the period's days, or read from the all-time table for all time. A period
//! with an end sums the day rollups for everything.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::listing::OrganizationSessions;
use crate::totals::PeriodFilter;
use crate::{DetailFilter, ReportStore, StoreError, SummaryFilter};

/// One policy as reporters described it: `policy-type` and `policy-string` lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PolicyKey {
    /// `policy-type` (`sts`, `tlsa`, `no-policy-found`).
    pub policy_type: String,
    /// `policy-string` lines (empty for `no-policy-found`).
    pub policy_string: Vec<String>,
}

/// What [`crate::ReportStore::overview_keys`] returns; maps keyed by policy domain (as
/// stored: [`crate::normalize_domain`]d), in byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OverviewKeys {
    /// Organisations that reported on each domain in the period.
    pub organizations: BTreeMap<String, BTreeSet<String>>,
    /// Policies reported for each domain in the period.
    pub policies: BTreeMap<String, BTreeSet<PolicyKey>>,
    /// Failed sessions per result type of each domain in the period (only non-zero ones).
    pub failures_by_result_type: BTreeMap<String, BTreeMap<String, u64>>,
    /// The sessions of the organisation asked for, per domain it reported on in the period
    /// (empty when none was asked for).
    pub organization_sessions: Vec<OrganizationSessions>,
}

impl OverviewKeys {
    /// Adds one organisation of a domain.
    pub(crate) fn organization(&mut self, domain: &str, org: &str) {
        self.organizations
            .entry(domain.to_owned())
            .or_default()
            .insert(org.to_owned());
    }

    /// Adds one policy of a domain (`policy_string` as stored: a JSON list).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn policy(&mut self, domain: &str, policy_type: &str, policy_string: &str) {
        self.policies
            .entry(domain.to_owned())
            .or_default()
            .insert(PolicyKey {
                policy_type: policy_type.to_owned(),
                policy_string: crate::listing::string_list(policy_string),
            });
    }

    /// Adds failed sessions of one result type of a domain.
    pub(crate) fn failures(&mut self, domain: &str, result_type: &str, failed: u64) {
        if failed > 0 {
            let n = self
                .failures_by_result_type
                .entry(domain.to_owned())
                .or_default()
                .entry(result_type.to_owned())
                .or_default();
            *n = n.saturating_add(failed);
        }
    }
}

/// [`OverviewKeys`] from a store's detail listings and per-day summary: what the SQLite
/// and PostgreSQL answers must equal, and the trait's default for other stores.
pub async fn from_details(
    store: &(impl ReportStore + ?Sized),
    period: &PeriodFilter,
    organization: Option<&str>,
) -> Result<OverviewKeys, StoreError> {
    let details = store
        .details(
            &DetailFilter {
                domain: None,
                period: period.clone(),
            },
            0,
        )
        .await?;
    let days = store
        .summary(&SummaryFilter {
            domain: None,
            since: period.since.clone(),
            skip_org_and_mx: true,
        })
        .await?;
    let mut keys = OverviewKeys::default();
    for o in details.organizations {
        keys.organization(&o.policy_domain, &o.organization_name);
        if organization == Some(o.organization_name.as_str()) {
            keys.organization_sessions.push(o);
        }
    }
    for p in details.policies {
        keys.policies
            .entry(p.policy_domain)
            .or_default()
            .insert(PolicyKey {
                policy_type: p.policy_type,
                policy_string: p.policy_string,
            });
    }
    for d in days.iter().filter(|d| period.contains(&d.day)) {
        for (kind, n) in &d.failures_by_result_type {
            keys.failures(&d.policy_domain, kind, *n);
        }
    }
    Ok(keys)
}

/// The SQL of [`OverviewKeys`] for a back end's placeholders, and its parameters: the
/// period's, then the organisation's for `organization_sessions`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct OverviewSql {
    /// Rows (domain, organisation).
    pub organizations: String,
    /// Rows (domain, policy type, policy string).
    pub policies: String,
    /// Rows (domain, result type, failed sessions).
    pub result_types: String,
    /// Rows (domain, reports, successful, failed, last day); with `organization_params`.
    pub organization_sessions: Option<String>,
    /// Parameters of the first three queries.
    pub params: Vec<String>,
    /// Parameters of `organization_sessions`.
    pub organization_params: Vec<String>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl OverviewSql {
    /// `placeholder(n)` renders the n-th (1-based) parameter: `?1` or `$1`.
    /// `indexed_by` as for [`crate::totals`]' query.
    pub(crate) fn new(
        period: &PeriodFilter,
        organization: Option<&str>,
        placeholder: &dyn Fn(usize) -> String,
        indexed_by: &dyn Fn(&str) -> String,
    ) -> Self {
        let (w, params) = crate::listing::condition(
            &crate::DetailFilter {
                domain: None,
                period: period.clone(),
            },
            placeholder,
            "",
        );
        let since_only = period.until.is_none();
        let recent = match &period.since {
            Some(_) => format!("WHERE last_day >= {}", placeholder(1)),
            None => String::new(),
        };
        let (organizations, policies) = if since_only {
            (
                format!(
                    "SELECT policy_domain, organization_name FROM report_domain_organizations {recent}"
                ),
                format!(
                    "SELECT policy_domain, policy_type, policy_string FROM report_domain_policies \
                     {recent}"
                ),
            )
        } else {
            (
                format!(
                    "SELECT DISTINCT policy_domain, organization_name \
                     FROM report_day_organizations {w}"
                ),
                format!(
                    "SELECT DISTINCT policy_domain, policy_type, policy_string \
                     FROM report_day_policies {w}"
                ),
            )
        };
        let result_types = if since_only && period.since.is_none() {
            "SELECT policy_domain, result_type, failed_sessions FROM report_domain_result_types"
                .to_owned()
        } else {
            let index = if period.since.is_some() {
                indexed_by("report_day_result_types_day")
            } else {
                String::new()
            };
            format!(
                "SELECT policy_domain, result_type, CAST(SUM(failed_sessions) AS BIGINT) \
                 FROM report_day_result_types{index} {w} GROUP BY policy_domain, result_type"
            )
        };
        let mut organization_params = Vec::new();
        let organization_sessions = organization.map(|org| {
            organization_params.push(org.to_owned());
            let org_placeholder = placeholder(1);
            if period.since.is_none() && since_only {
                format!(
                    "SELECT policy_domain, reports, successful, failed, last_day \
                     FROM report_domain_organizations WHERE organization_name = {org_placeholder}"
                )
            } else {
                // The period's parameters follow the organisation's.
                organization_params.extend(params.iter().cloned());
                let (w, _) = crate::listing::condition(
                    &crate::DetailFilter {
                        domain: None,
                        period: period.clone(),
                    },
                    &|n| placeholder(n + 1),
                    "",
                );
                let w = w.replacen("WHERE", "AND", 1);
                format!(
                    "SELECT policy_domain, CAST(SUM(reports) AS BIGINT), \
                     CAST(SUM(successful) AS BIGINT), CAST(SUM(failed) AS BIGINT), MAX(day) \
                     FROM report_day_organizations \
                     WHERE organization_name = {org_placeholder} {w} GROUP BY policy_domain"
                )
            }
        });
        OverviewSql {
            organizations,
            policies,
            result_types,
            organization_sessions,
            params,
            organization_params,
        }
    }
}

/// The organisation `sql` asks the sessions of (its first organisation parameter).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn organization_of(sql: &OverviewSql) -> Option<&str> {
    sql.organization_params.first().map(String::as_str)
}
