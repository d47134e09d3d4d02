//! Drift between what a policy host serves and what the world sees (`mta-sts serve
//! --check`): pure comparison of a [`Report`] of the live domain with the configured
//! policy, its id and its certificate. Findings reuse the checker's ids where they exist.

use std::time::{Duration, SystemTime};

use mta_sts::Policy;

use crate::analyze::Thresholds;
use crate::finding::{Finding, ids};
use crate::report::Report;

/// What the policy host serves for one domain.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The configured policy.
    pub policy: &'a Policy,
    /// Its content-derived id, as in the `_mta-sts` record to publish.
    pub id: &'a str,
    /// When the certificate presented for `mta-sts.<domain>` expires, if known.
    pub cert_not_after: Option<SystemTime>,
}

/// Findings about `served` that the live `report` reveals, beyond the report's own:
/// a published id that is not the served one, a live policy that differs, MX records the
/// served policy does not cover, and a served certificate close to expiry.
pub fn drift(
    report: &Report,
    served: &Served<'_>,
    thresholds: &Thresholds,
    now: SystemTime,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(published) = report.record.as_ref().and_then(|r| r.id.as_deref())
        && published != served.id
    {
        findings.push(Finding::new(
            &ids::SERVE_ID_NOT_PUBLISHED,
            format!(
                "_mta-sts.{} has id={published}; the served policy has id={}",
                report.domain, served.id
            ),
        ));
    }
    if let Some(live) = &report.policy
        && live.valid
        && !same_policy(live, served.policy)
    {
        findings.push(Finding::new(
            &ids::SERVE_POLICY_DIFFERS,
            format!(
                "fetched: mode {} max_age {} mx {}; served here: mode {} max_age {} mx {}",
                live.mode.as_deref().unwrap_or("-"),
                live.max_age
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into()),
                live.mx.join(" "),
                served.policy.mode,
                served.policy.max_age,
                served
                    .policy
                    .mx
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ));
    }
    if !report.has(ids::MX_NOT_IN_POLICY.id) {
        for mx in &report.mx {
            if !served.policy.mx.is_empty() && !served.policy.matches_mx(&mx.host) {
                findings.push(Finding::new(
                    &ids::MX_NOT_IN_POLICY,
                    format!("MX {} matches no mx line of the served policy", mx.host),
                ));
            }
        }
    }
    if let Some(not_after) = served.cert_not_after
        && !report.has(ids::POLICY_HOST_CERT_EXPIRING.id)
    {
        let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
        let days = left.as_secs() / 86_400;
        if left.is_zero() {
            findings.push(Finding::new(
                &ids::POLICY_HOST_CERT_EXPIRED,
                "the certificate configured for the policy host has expired",
            ));
        } else if i64::try_from(days).unwrap_or(i64::MAX) < thresholds.cert_warn_days {
            findings.push(Finding::new(
                &ids::POLICY_HOST_CERT_EXPIRING,
                format!("the certificate configured for the policy host expires in {days} days"),
            ));
        }
    }
    findings
}

/// Whether the fetched policy is the served one. The `mx` lines are a set (RFC 8461 §3.2
/// gives their order no meaning; §4.1 matches against any of them), so another order or
/// a repeated line is the same policy; patterns are compared in their canonical lower-case
/// A-label form.
fn same_policy(live: &crate::report::PolicyReport, served: &Policy) -> bool {
    let mut live_mx: Vec<String> = live.mx.iter().map(|m| m.to_ascii_lowercase()).collect();
    let mut served_mx: Vec<String> = served.mx.iter().map(ToString::to_string).collect();
    live_mx.sort();
    live_mx.dedup();
    served_mx.sort();
    served_mx.dedup();
    live.mode.as_deref() == Some(served.mode.as_str())
        && live.max_age == Some(served.max_age)
        && live_mx == served_mx
}
