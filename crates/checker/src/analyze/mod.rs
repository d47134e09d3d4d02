//! From evidence to findings: pure functions, no I/O, no clock (certificate ages come with
//! the evidence). The [`crate::Checker`] gathers an [`Evidence`] and calls [`analyze`].
//!
//! One module per area of the findings, in the order [`analyze`] runs them:
//!
//! | module | area | RFC |
//! |---|---|---|
//! | `record` | the `_mta-sts` TXT record | 8461 §3.1 |
//! | `policy_host` | the policy host and its HTTPS service | 8461 §3.3 |
//! | `policy` | the policy file | 8461 §3.2, §10.4 |
//! | `mx` | the MX hosts, their STARTTLS service, the per-host decision | 8461 §4, §5 |
//! | `cert` | certificates of the policy host and the MX hosts (TLS) | 8461 §3.3, §4.2 |
//! | `reporting` | the `_smtp._tls` record and its `rua` destinations (reporting) | 8460 §3, §5.4 |
//! | `delivery` | the delivery verdict, and what `enforce` would do | 8461 §5 |
//!
//! Imports read top-down (no cycle): `mod` → `delivery` → `mx` → `cert`; `mod` →
//! `reporting` → `record`; `policy_host` → `cert`; every area → `evidence` (what the checker
//! gathered) and `message` (diagnostics as findings).

mod cert;
mod delivery;
mod evidence;
mod message;
mod mx;
mod policy;
mod policy_host;
mod record;
mod reporting;

use mta_sts::{Mode, Policy};

pub use evidence::{
    Evidence, MxEntry, MxSet, RuaProblem, RuaProblemKind, RuaReach, Thresholds, is_null_mx,
};
pub use record::has_candidate;
pub use reporting::https_rua_problems;

use crate::report::Report;

/// The findings and report sections of one domain.
pub fn analyze(evidence: &Evidence, thresholds: &Thresholds, elapsed_ms: u64) -> Report {
    let mut findings = Vec::new();
    let record = record::analyze_record(evidence, &mut findings);
    let record_valid = record.as_ref().is_some_and(|r| r.valid);

    // Policy host and policy file (RFC 8461 §3.2, §3.3).
    let mut published: Option<Policy> = None;
    let mut policy_report = None;
    let mut host_ok = false;
    if let Some(probe) = &evidence.policy_host {
        host_ok = policy_host::analyze_policy_host(probe, thresholds, &mut findings);
        if let (Some(200), Some(body), false) = (probe.status, &probe.body, probe.too_large) {
            let (policy, report) = policy::analyze_policy(&evidence.domain, body, &mut findings);
            published = policy;
            policy_report = Some(report);
        }
    }
    let applied = record_valid && host_ok && published.is_some();
    if let Some(report) = &mut policy_report {
        report.applied = applied;
    }
    let applied_policy = if applied { published.as_ref() } else { None };

    let (mx, enforced) = mx::analyze_mx(
        evidence,
        published.as_ref(),
        applied_policy,
        thresholds,
        &mut findings,
    );
    if let Some(policy) = &published {
        policy::unused_patterns(policy, &evidence.mx, &mut findings);
    }
    let mode = published.as_ref().map(|p| p.mode);
    let tlsrpt = reporting::analyze_tlsrpt(evidence, mode, &mut findings);
    let mut delivery = delivery::delivery(&evidence.mx, &mx, applied_policy, &mut findings);
    if published.as_ref().is_some_and(|p| p.mode == Mode::Testing) {
        delivery.if_enforced = Some(delivery::if_enforced(
            &evidence.mx,
            &enforced,
            &mut findings,
        ));
    }

    Report {
        domain: evidence.domain.clone(),
        verdict: crate::finding::Verdict::of(&findings),
        findings,
        record,
        policy: policy_report,
        policy_host: evidence.policy_host.clone(),
        mx,
        tlsrpt,
        delivery,
        elapsed_ms,
    }
}
