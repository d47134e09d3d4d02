//! The dashboard listings ([`crate::listing`]) of both stores against a model computed
//! from the reports themselves (a module of its own: it uses the store's test generator,
//! and `store` uses `listing`).

use std::collections::{BTreeMap, BTreeSet};

use proptest::strategy::{Strategy, ValueTree};

use crate::intake::ParsedReport;
use crate::listing::*;
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
    crate::listing::sort(&mut out.policies, &mut out.organizations, &mut out.senders);
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

/// The overview's keys read from the all-time tables equal those derived from the
/// listings and the summary, for every period and organisation filter.
async fn assert_overview_matches(store: &dyn ReportStore) {
    for period in testgen::periods() {
        for org in [None, Some("Google Inc."), Some("google inc."), Some("none")] {
            let got = store.overview_keys(&period, org).await.unwrap();
            let expected = crate::overview::from_details(store, &period, org)
                .await
                .unwrap();
            assert_eq!(got, expected, "{period:?} {org:?}");
        }
        // The days of a page's domains (one call) equal each domain's summary.
        let domains: Vec<String> = ["b.example", "A.Example.", "", "none.example"]
            .map(str::to_owned)
            .into();
        let mut expected = Vec::new();
        for d in ["", "a.example", "b.example", "none.example"] {
            for day in store
                .summary(&crate::SummaryFilter {
                    domain: Some(d.to_owned()),
                    since: period.since.clone(),
                    skip_org_and_mx: true,
                })
                .await
                .unwrap()
            {
                expected.push(crate::DaySummary {
                    failures_by_result_type: BTreeMap::new(),
                    ..day
                });
            }
        }
        let got = store
            .domain_days(&domains, period.since.as_deref())
            .await
            .unwrap();
        assert_eq!(got, expected, "{period:?}");
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
        assert_overview_matches(&store).await;
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
                 report_day_organizations, report_day_policies, report_day_result_types, report_day_mx, \
                 report_domains, report_domain_organizations, report_domain_policies, \
                 report_domain_result_types",
            )
            .await
            .unwrap();
        store_all(&store, groups).await;
        assert_details_match(&store, groups).await;
        assert_overview_matches(&store).await;
    }
}
