//! Aggregation: the session [`Event`]s of one policy domain and one UTC day become one
//! RFC 8460 §4 report. Pure: no clock, no I/O.
//!
//! - one `policies[]` element per distinct (policy type, policy string, mx-host) (§4.4);
//! - `summary` counts sessions (§4.2): successes, and failures **including** failures seen in
//!   MTA-STS `testing` mode, where the mail was still delivered (project notes §4 item 18);
//! - `failure-details` grouped by (result type, sending IP, receiving MX hostname, HELO,
//!   receiving IP, reason code, additional information) with their `failed-session-count`
//!   (§4.3, §4.4), in a stable order;
//! - `policy-domain` is always written, also for `no-policy-found` (notes §4 item 17);
//! - the date range is the UTC day, `00:00:00Z` to the next day's `00:00:00Z`
//!   ([`DateRange::utc_day`](crate::DateRange::utc_day), the model's choice);
//! - the `report-id` is [`report_id`]: `<YYYY-MM-DD>_<policy-domain>@<submitter>`. It is
//!   deterministic, so a report regenerated for the same day and domain carries the same id
//!   and receivers deduplicate it (RFC 8460 §4.4: unique per reporting organisation), and it
//!   is an RFC 5322 `id-left "@" id-right` as the §5.3 Subject ABNF wants
//!   (`Report-ID: <...>`).

use std::collections::BTreeMap;

use crate::event::{Event, EventPolicy, Outcome};
use crate::report::{
    FailureDetail, MAX_COUNT, PolicyDescriptor, PolicyResult, PolicyType, Report, ResultType,
    SessionSummary,
};
use crate::report_datetime::UtcDateTime;

/// Who writes the reports (RFC 8460 §4.4 `organization-name`, `contact-info`, and the §5.3
/// `TLS-Report-Submitter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    /// `organization-name`.
    pub organization_name: String,
    /// `contact-info`: an e-mail address (RFC 5322 addr-spec).
    pub contact_info: String,
    /// The submitter domain: the domain of `contact-info` (RFC 8460 §5.1 `sender`, §5.3
    /// `TLS-Report-Submitter`), in A-labels.
    pub domain: String,
}

/// The report id used for `policy_domain` on the UTC day starting at `day`:
/// `<YYYY-MM-DD>_<policy-domain>@<submitter>` (see the module documentation).
///
/// ```
/// use tlsrpt::{aggregate::report_id, UtcDateTime};
/// let day = UtcDateTime::parse("2024-05-01T13:00:00Z")?;
/// assert_eq!(report_id("example.com", day, "mail.sender.test"), "2024-05-01_example.com@mail.sender.test");
/// # Ok::<(), tlsrpt::DateTimeError>(())
/// ```
pub fn report_id(policy_domain: &str, day: UtcDateTime, submitter_domain: &str) -> String {
    format!("{}_{policy_domain}@{submitter_domain}", day.date_string())
}

/// The key failure details are grouped by.
type DetailKey = (
    ResultType,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[derive(Default)]
struct PolicyAcc {
    successful: u64,
    failed: u64,
    details: BTreeMap<DetailKey, u64>,
}

/// Builds the report for `policy_domain` on the UTC day containing `day` from `events`.
/// Events of other domains or days are ignored; counts saturate at [`MAX_COUNT`]. With no
/// matching event the report has no policies (callers skip such days).
pub fn aggregate(
    events: &[Event],
    policy_domain: &str,
    day: UtcDateTime,
    submitter: &Submitter,
) -> Report {
    let start = day.day_start();
    let mut report = Report::daily(
        submitter.organization_name.clone(),
        submitter.contact_info.clone(),
        report_id(policy_domain, start, &submitter.domain),
        start,
    );
    let range = report.date_range;
    let mut policies: BTreeMap<&EventPolicy, PolicyAcc> = BTreeMap::new();
    let add = |a: u64, b: u64| a.saturating_add(b).min(MAX_COUNT);
    for event in events
        .iter()
        .filter(|e| e.policy_domain == policy_domain && e.time >= range.start && e.time < range.end)
    {
        let acc = policies.entry(&event.policy).or_default();
        match &event.outcome {
            Outcome::Success => acc.successful = add(acc.successful, event.count),
            Outcome::Failure(result_type) => {
                acc.failed = add(acc.failed, event.count);
                let key = (
                    result_type.clone(),
                    event.sending_mta_ip.clone(),
                    event.receiving_mx_hostname.clone(),
                    event.receiving_mx_helo.clone(),
                    event.receiving_ip.clone(),
                    event.failure_reason_code.clone(),
                    event.additional_information.clone(),
                );
                let count = acc.details.entry(key).or_default();
                *count = add(*count, event.count);
            }
        }
    }
    report.policies = policies
        .into_iter()
        .map(|(policy, acc)| PolicyResult {
            policy: PolicyDescriptor {
                policy_type: policy.policy_type.clone(),
                // §4.4: no policy string for no-policy-found, mx-host only for sts.
                policy_string: match policy.policy_type {
                    PolicyType::NoPolicyFound => Vec::new(),
                    _ => policy.policy_string.clone(),
                },
                policy_domain: policy_domain.to_owned(),
                mx_host: match policy.policy_type {
                    PolicyType::Sts => policy.mx_host.clone(),
                    _ => Vec::new(),
                },
            },
            summary: SessionSummary {
                total_successful_session_count: acc.successful,
                total_failure_session_count: acc.failed,
            },
            failure_details: acc
                .details
                .into_iter()
                .map(|((result_type, s, n, h, r, f, a), count)| FailureDetail {
                    result_type,
                    sending_mta_ip: s,
                    receiving_mx_hostname: n,
                    receiving_mx_helo: h,
                    receiving_ip: r,
                    failed_session_count: count,
                    additional_information: a,
                    failure_reason_code: f,
                })
                .collect(),
        })
        .collect();
    report
}

/// The distinct (policy domain, UTC day start) pairs among `events`, sorted.
pub fn domain_days(events: &[Event]) -> Vec<(String, UtcDateTime)> {
    let mut pairs: Vec<(String, UtcDateTime)> = events
        .iter()
        .map(|e| (e.policy_domain.clone(), e.time.day_start()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}
