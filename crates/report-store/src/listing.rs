//! Detail listings for a dashboard, read from the detail tables (`report_policies`,
//! `failure_details`) rather than the rollups: the reports behind a domain's numbers, the
//! policies reporters saw (RFC 8460 §4.3 `policy-type`, `policy-string`), sessions per
//! reporting organisation (successes included, which the rollups keep only for failures)
//! and failures per sending MTA IP.

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
            policies: format!(
                "SELECT policy_domain, policy_type, policy_string, \
                 CAST(COUNT(DISTINCT report) AS BIGINT), CAST(SUM(successful) AS BIGINT), \
                 CAST(SUM(failed) AS BIGINT), MAX(day) \
                 FROM report_policies {w} GROUP BY policy_domain, policy_type, policy_string"
            ),
            organizations: format!(
                "SELECT policy_domain, organization_name, \
                 CAST(COUNT(DISTINCT report) AS BIGINT), CAST(SUM(successful) AS BIGINT), \
                 CAST(SUM(failed) AS BIGINT), MAX(day) \
                 FROM report_policies {w} GROUP BY policy_domain, organization_name"
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

/// The listings of both stores against a model computed from the reports themselves.
#[cfg(all(test, feature = "sqlite", feature = "postgres"))]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::strategy::{Strategy, ValueTree};

    use super::*;
    use crate::intake::ParsedReport;
    use crate::store::testgen::{self, store_all};
    use crate::{ReportStore, normalize_domain};

    /// Reports (by insertion index), successful and failed sessions, last day.
    type Sums = (BTreeSet<usize>, u64, u64, String);

    /// What [`ReportStore::details`] must return for `filter`, from the reports stored
    /// (first delivery of each organisation and report-id), report listing left out.
    fn model(groups: &[Vec<ParsedReport>], filter: &DetailFilter) -> Details {
        let mut seen = BTreeSet::new();
        let mut policies: BTreeMap<(String, String, Vec<String>), Sums> = BTreeMap::new();
        let mut orgs: BTreeMap<(String, String), Sums> = BTreeMap::new();
        let mut senders: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (n, r) in groups.iter().flatten().enumerate() {
            let r = &r.report;
            if !seen.insert((r.organization_name.clone(), r.report_id.clone())) {
                continue;
            }
            let day = r.date_range.start.date_string();
            if !filter.period.contains(&day) {
                continue;
            }
            for p in &r.policies {
                let domain = normalize_domain(&p.policy.policy_domain);
                if filter
                    .domain
                    .as_ref()
                    .is_some_and(|d| normalize_domain(d) != domain)
                {
                    continue;
                }
                let (ok, ko) = (
                    p.summary.total_successful_session_count,
                    p.summary.total_failure_session_count,
                );
                for e in [
                    policies
                        .entry((
                            domain.clone(),
                            p.policy.policy_type.as_str().to_owned(),
                            p.policy.policy_string.clone(),
                        ))
                        .or_default(),
                    orgs.entry((domain.clone(), r.organization_name.clone()))
                        .or_default(),
                ] {
                    e.0.insert(n);
                    e.1 += ok;
                    e.2 += ko;
                    e.3 = e.3.clone().max(day.clone());
                }
                for d in p.failure_details.iter().filter(|_| filter.domain.is_some()) {
                    *senders
                        .entry((
                            d.sending_mta_ip.clone().unwrap_or_default(),
                            d.result_type.as_str().to_owned(),
                        ))
                        .or_default() += d.failed_session_count;
                }
            }
        }
        let mut out = Details {
            reports: Vec::new(),
            policies: policies
                .into_iter()
                .map(
                    |(
                        (policy_domain, policy_type, policy_string),
                        (r, successful, failed, last_day),
                    )| PolicySeen {
                        policy_domain,
                        policy_type,
                        policy_string,
                        reports: r.len() as u64,
                        successful,
                        failed,
                        last_day,
                    },
                )
                .collect(),
            organizations: orgs
                .into_iter()
                .map(
                    |((policy_domain, organization_name), (r, successful, failed, last_day))| {
                        OrganizationSessions {
                            policy_domain,
                            organization_name,
                            reports: r.len() as u64,
                            successful,
                            failed,
                            last_day,
                        }
                    },
                )
                .collect(),
            senders: senders
                .into_iter()
                .map(|((sending_mta_ip, result_type), failed)| SenderFailures {
                    sending_mta_ip,
                    result_type,
                    failed,
                })
                .collect(),
        };
        sort(&mut out.policies, &mut out.organizations, &mut out.senders);
        out
    }

    fn filters() -> Vec<DetailFilter> {
        let mut out = Vec::new();
        for period in testgen::periods() {
            for domain in [
                None,
                Some("a.example"),
                Some("A.EXAMPLE."),
                Some(""),
                Some("none.example"),
            ] {
                out.push(DetailFilter {
                    domain: domain.map(str::to_owned),
                    period: period.clone(),
                });
            }
        }
        out
    }

    async fn assert_details_match(store: &dyn ReportStore, groups: &[Vec<ParsedReport>]) {
        for filter in filters() {
            let mut got = store.details(&filter, 1000).await.unwrap();
            let listed: Vec<ReportListing> = std::mem::take(&mut got.reports);
            let expected = model(groups, &filter);
            assert_eq!(got, expected, "{filter:?}");
            // One listing line per policy of the period and domain, newest day first.
            let policies: u64 = expected.organizations.iter().map(|o| o.reports).sum();
            assert!(listed.len() as u64 >= policies, "{filter:?}");
            assert!(
                listed.windows(2).all(|w| w[0].day >= w[1].day),
                "{filter:?}"
            );
            let ok: u64 = listed.iter().map(|l| l.successful).sum();
            assert_eq!(
                ok,
                expected
                    .organizations
                    .iter()
                    .map(|o| o.successful)
                    .sum::<u64>(),
                "{filter:?}"
            );
            let limited = store.details(&filter, 1).await.unwrap();
            assert_eq!(limited.reports.len(), listed.len().min(1));
            assert!(store.details(&filter, 0).await.unwrap().reports.is_empty());
        }
    }

    /// Random report sets (duplicates, several spellings of a domain, blank MX) in SQLite
    /// and, when one can be started, PostgreSQL: the listings equal the model.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listings_equal_the_model_in_both_stores() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let sets: Vec<Vec<Vec<ParsedReport>>> = (0..12)
            .map(|_| testgen::groups().new_tree(&mut runner).unwrap().current())
            .collect();
        for groups in &sets {
            let store = crate::SqliteStore::in_memory().unwrap();
            store_all(&store, groups).await;
            assert_details_match(&store, groups).await;
        }
        let server = match mta_sts_testkit::postgres::start() {
            Ok(s) => s,
            Err(why) => {
                return mta_sts_testkit::postgres::skip_or_fail("PostgreSQL listing tests", &why);
            }
        };
        let store = crate::PostgresStore::connect(&server.url()).await.unwrap();
        let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        for groups in &sets {
            client
                .batch_execute(
                    "TRUNCATE reports, report_policies, failure_details, report_days, \
                     report_day_organizations, report_day_result_types, report_day_mx",
                )
                .await
                .unwrap();
            store_all(&store, groups).await;
            assert_details_match(&store, groups).await;
        }
    }
}
