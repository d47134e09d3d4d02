//! Detail listings for a dashboard: the reports behind a domain's numbers and the failures
//! per sending MTA IP, read from the detail tables (`report_policies`, `failure_details`,
//! through their (domain, day) indexes); the policies reporters saw (RFC 8460 §4.3
//! `policy-type`, `policy-string`) and the sessions per reporting organisation, read from
//! the per-day rollups `report_day_policies` and `report_day_organizations`.

use serde::Serialize;

use crate::totals::PeriodFilter;

/// Which detail rows a listing covers: the period, and optionally one policy domain
/// (compared as stored: [`crate::normalize_domain`]d).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailFilter {
    /// Only this policy domain.
    pub domain: Option<String>,
    /// Only these days.
    pub period: PeriodFilter,
}

/// One stored report's contribution to one policy domain (one `policies[]` element).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportListing {
    /// Row id of the report ([`crate::ReportStore::find`] accepts it).
    pub id: i64,
    /// `report-id`.
    pub report_id: String,
    /// `organization-name`.
    pub organization_name: String,
    /// Policy domain of this policy.
    pub policy_domain: String,
    /// `policy-type` (`sts`, `tlsa`, `no-policy-found`).
    pub policy_type: String,
    /// UTC day of `start-datetime`.
    pub day: String,
    /// Where it came from (file path, `http`, …).
    pub source: String,
    /// When it was imported, seconds since the Unix epoch.
    pub imported_at: i64,
    /// `total-successful-session-count`.
    pub successful: u64,
    /// `total-failure-session-count`.
    pub failed: u64,
}

/// One policy as reporters saw it (RFC 8460 §4.3 `policy-type` and `policy-string`), with
/// the sessions reported under it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicySeen {
    /// Policy domain.
    pub policy_domain: String,
    /// `policy-type`.
    pub policy_type: String,
    /// `policy-string` lines (empty for `no-policy-found`).
    pub policy_string: Vec<String>,
    /// Reports that carried it.
    pub reports: u64,
    /// Successful sessions reported under it.
    pub successful: u64,
    /// Failed sessions reported under it.
    pub failed: u64,
    /// Latest day it was reported.
    pub last_day: String,
}

/// Sessions one reporting organisation reported for one policy domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrganizationSessions {
    /// Policy domain.
    pub policy_domain: String,
    /// `organization-name`.
    pub organization_name: String,
    /// Reports.
    pub reports: u64,
    /// Successful sessions.
    pub successful: u64,
    /// Failed sessions.
    pub failed: u64,
    /// Latest day it reported.
    pub last_day: String,
}

/// Failed sessions per sending MTA IP and result type (RFC 8460 §4.3 `sending-mta-ip`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderFailures {
    /// `sending-mta-ip`, empty when reporters left it out.
    pub sending_mta_ip: String,
    /// `result-type`.
    pub result_type: String,
    /// Sum of `failed-session-count`.
    pub failed: u64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The `WHERE` conditions of `filter` over a table with `policy_domain` and `day` columns
/// (named with `prefix`, e.g. `p.`), and their parameters in placeholder order.
pub(crate) fn condition(
    filter: &DetailFilter,
    placeholder: &dyn Fn(usize) -> String,
    prefix: &str,
) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(d) = &filter.domain {
        params.push(crate::normalize_domain(d));
        conds.push(format!(
            "{prefix}policy_domain = {}",
            placeholder(params.len())
        ));
    }
    if let Some(s) = &filter.period.since {
        params.push(s.clone());
        conds.push(format!("{prefix}day >= {}", placeholder(params.len())));
    }
    if let Some(u) = &filter.period.until {
        params.push(u.clone());
        conds.push(format!("{prefix}day <= {}", placeholder(params.len())));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (w, params)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// SQL of the four listings for a back end's placeholders, with their parameters.
pub(crate) struct ListingSql {
    /// `None` when no report is asked for (limit 0).
    pub reports: Option<String>,
    pub policies: String,
    pub organizations: String,
    /// `None` without a domain filter (the overview does not show them).
    pub senders: Option<String>,
    pub params: Vec<String>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl ListingSql {
    /// `limit` caps the report listing (newest first). Sums are cast to `BIGINT`
    /// (PostgreSQL's `SUM(bigint)` is `numeric`).
    pub(crate) fn new(
        filter: &DetailFilter,
        placeholder: &dyn Fn(usize) -> String,
        limit: u32,
    ) -> Self {
        let (w, params) = condition(filter, placeholder, "");
        let (pw, _) = condition(filter, placeholder, "p.");
        ListingSql {
            reports: (limit > 0).then(|| format!(
                "SELECT r.id, r.report_id, r.organization_name, p.policy_domain, p.policy_type, \
                 p.day, r.source, r.imported_at, p.successful, p.failed \
                 FROM report_policies p JOIN reports r ON r.id = p.report {pw} \
                 ORDER BY p.day DESC, r.id DESC LIMIT {limit}"
            )),
            // The rollups count a report once per (domain, day, key) and a report has one
            // day, so summing the period's days counts each report once.
            policies: format!(
                "SELECT policy_domain, policy_type, policy_string, \
                 CAST(SUM(reports) AS BIGINT), CAST(SUM(successful) AS BIGINT), \
                 CAST(SUM(failed) AS BIGINT), MAX(day) \
                 FROM report_day_policies {w} GROUP BY policy_domain, policy_type, policy_string"
            ),
            organizations: format!(
                "SELECT policy_domain, organization_name, \
                 CAST(SUM(reports) AS BIGINT), CAST(SUM(successful) AS BIGINT), \
                 CAST(SUM(failed) AS BIGINT), MAX(day) \
                 FROM report_day_organizations {w} GROUP BY policy_domain, organization_name"
            ),
            senders: filter.domain.is_some().then(|| format!(
                "SELECT COALESCE(sending_mta_ip, ''), result_type, \
                 CAST(SUM(failed_session_count) AS BIGINT) \
                 FROM failure_details {w} GROUP BY COALESCE(sending_mta_ip, ''), result_type"
            )),
            params,
        }
    }
}

/// A stored JSON list of strings (`policy_string`), empty when unreadable.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn string_list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Sorts the listings as the dashboard shows them: by domain then key, in byte order
/// (the databases' collations differ).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn sort(
    policies: &mut [PolicySeen],
    organizations: &mut [OrganizationSessions],
    senders: &mut [SenderFailures],
) {
    policies.sort_by(|a, b| {
        (&a.policy_domain, &a.policy_type, &a.policy_string).cmp(&(
            &b.policy_domain,
            &b.policy_type,
            &b.policy_string,
        ))
    });
    organizations.sort_by(|a, b| {
        (&a.policy_domain, &a.organization_name).cmp(&(&b.policy_domain, &b.organization_name))
    });
    senders.sort_by(|a, b| {
        b.failed.cmp(&a.failed).then_with(|| {
            (&a.sending_mta_ip, &a.result_type).cmp(&(&b.sending_mta_ip, &b.result_type))
        })
    });
}

/// What [`crate::ReportStore::details`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Details {
    /// The newest reports (at most the limit asked for; none for 0), newest day first.
    pub reports: Vec<ReportListing>,
    /// Policies seen, by domain, type and strings.
    pub policies: Vec<PolicySeen>,
    /// Sessions per reporting organisation, by domain and organisation.
    pub organizations: Vec<OrganizationSessions>,
    /// Failures per sending MTA IP and result type, largest first; only with a domain in
    /// the filter (empty otherwise).
    pub senders: Vec<SenderFailures>,
}
