//! The policy file (RFC 8461 §3.2, §10.4): every lint diagnostic (`policy-<code>`), the
//! strict-sender verdict, mode, `max_age`, broad wildcards and patterns no MX uses.

use mta_sts::{Mode, Policy};

use super::evidence::MxSet;
use super::message::diagnostic_finding;
use crate::finding::{Area, Finding, Severity, ids};
use crate::report::PolicyReport;

/// The `policy-*` findings of a fetched policy body, the policy (when usable) and the
/// policy section of the report.
pub(super) fn analyze_policy(
    domain: &str,
    body: &[u8],
    findings: &mut Vec<Finding>,
) -> (Option<Policy>, PolicyReport) {
    let lint = mta_sts::policy::lint(body);
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &lint.diagnostics {
        let detail = match d.line {
            Some(n) => format!(
                "line {n}: \"{}\"",
                lines
                    .get(n as usize - 1)
                    .map(|l| l.trim_end_matches('\r').escape_debug().to_string())
                    .unwrap_or_default()
            ),
            None => "the whole policy".to_string(),
        };
        let mut f = diagnostic_finding("policy", Area::Policy, d, detail);
        // RFC 8461 §3.2 caps max_age at 31557600 while its grammar admits 10 digits
        // (erratum 7282): the parser accepts and clamps, the checker reports an error.
        if d.code == "max-age-above-limit" {
            f.severity = Severity::Error;
        }
        findings.push(f);
    }
    let valid = lint.is_valid();
    let strict = lint.is_strict_valid();
    if valid && !strict {
        let codes: Vec<&str> = lint
            .diagnostics
            .iter()
            .filter(|d| d.breaks_abnf)
            .map(|d| d.code)
            .collect();
        findings.push(Finding::new(
            &ids::POLICY_NOT_STRICT,
            format!(
                "deviations from the RFC 8461 §3.2 grammar: {}",
                codes.join(", ")
            ),
        ));
    }
    let mut report = PolicyReport {
        version: None,
        mode: None,
        max_age: None,
        effective_max_age: None,
        mx: Vec::new(),
        valid,
        strict_valid: strict,
        applied: false,
    };
    let Some(policy) = lint.policy else {
        return (None, report);
    };
    report.version = Some(mta_sts::policy::VERSION.to_string());
    report.mode = Some(policy.mode.as_str().to_string());
    report.max_age = Some(policy.max_age);
    report.effective_max_age = Some(policy.effective_max_age());
    report.mx = policy.mx.iter().map(|p| p.to_string()).collect();
    match policy.mode {
        Mode::Testing => findings.push(Finding::new(
            &ids::POLICY_MODE_TESTING,
            "mode: testing (senders deliver even when validation fails, and only report)",
        )),
        Mode::None => findings.push(Finding::new(&ids::POLICY_MODE_NONE, "mode: none")),
        Mode::Enforce => {}
    }
    if policy.mode != Mode::None {
        // RFC 8461 §3.2 ("weeks or greater"), §10.2.
        if policy.max_age < 86_400 {
            findings.push(Finding::new(
                &ids::POLICY_MAX_AGE_SHORT,
                format!("max_age: {} seconds", policy.max_age),
            ));
        } else if policy.max_age < 604_800 {
            findings.push(Finding::new(
                &ids::POLICY_MAX_AGE_BELOW_WEEK,
                format!("max_age: {} seconds", policy.max_age),
            ));
        }
    }
    // RFC 8461 §10.4: `*.<domain>` lets any host of the domain receive mail.
    for p in &policy.mx {
        if p.is_wildcard() && p.base() == domain {
            findings.push(Finding::new(
                &ids::POLICY_BROAD_WILDCARD,
                format!("mx: {p}"),
            ));
        }
    }
    (Some(policy), report)
}

/// `policy-mx-unused`: patterns that match none of the domain's MX hosts.
pub(super) fn unused_patterns(policy: &Policy, mx: &MxSet, findings: &mut Vec<Finding>) {
    if policy.mode == Mode::None {
        return;
    }
    let hosts: Vec<&str> = match mx {
        MxSet::Hosts(list) => list.iter().map(|e| e.host.as_str()).collect(),
        MxSet::Implicit(e) => vec![e.host.as_str()],
        _ => return,
    };
    for p in &policy.mx {
        if !hosts.iter().any(|h| p.matches(h)) {
            findings.push(Finding::new(
                &ids::POLICY_MX_UNUSED,
                format!("mx: {p} matches none of: {}", hosts.join(", ")),
            ));
        }
    }
}
