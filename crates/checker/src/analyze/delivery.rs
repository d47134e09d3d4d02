//! The delivery verdict (RFC 8461 §5): would a sender that applies the policy it can fetch
//! now deliver mail, and to which MX; for a `testing` policy, what it would do under
//! `enforce`.

use mta_sts::{Mode, Policy};

use super::evidence::MxSet;
use super::mx::EnforcedMx;
use crate::finding::{Finding, ids};
use crate::report::{Delivery, IfEnforced, MxReport, SkippedMx};

/// What a sender that applies the policy (if any) does with the MX hosts; the
/// `delivery-deferred` finding when an enforcing sender finds none to deliver to.
pub(super) fn delivery(
    set: &MxSet,
    mx: &[MxReport],
    applied: Option<&Policy>,
    findings: &mut Vec<Finding>,
) -> Delivery {
    let policy_mode = applied.map(|p| p.mode.as_str().to_string());
    let under = match applied {
        Some(p) => format!("under its {} policy", p.mode),
        None => "without an applicable MTA-STS policy".to_string(),
    };
    let (would, host, reason) = match set {
        MxSet::Null => (
            Some(false),
            None,
            "the domain accepts no mail (null MX)".to_string(),
        ),
        MxSet::None => (
            Some(false),
            None,
            "the domain has no MX and no address".to_string(),
        ),
        MxSet::DnsFailure(_) => (None, None, "the MX lookup failed".to_string()),
        MxSet::Hosts(_) | MxSet::Implicit(_) => {
            if let Some(first) = mx
                .iter()
                .find(|m| m.verdict == "deliver" || m.verdict == "deliver-report")
            {
                (
                    Some(true),
                    Some(first.host.clone()),
                    format!("a sender {under} delivers to {}", first.host),
                )
            } else if !mx.is_empty()
                && mx
                    .iter()
                    .all(|m| m.verdict == "skip" || m.verdict == "unreachable")
            {
                let skipped = mx.iter().any(|m| m.verdict == "skip");
                if skipped && applied.is_some_and(|p| p.mode == Mode::Enforce) {
                    let list: Vec<String> = mx
                        .iter()
                        .map(|m| format!("{} ({})", m.host, m.verdict))
                        .collect();
                    findings.push(Finding::new(&ids::DELIVERY_DEFERRED, list.join(", ")));
                }
                (
                    Some(false),
                    None,
                    format!(
                        "a sender {under} finds no MX host it may deliver to and defers the mail"
                    ),
                )
            } else {
                (None, None, "MX hosts were not probed".to_string())
            }
        }
    };
    Delivery {
        policy_mode,
        would_deliver: would,
        mx: host,
        reason,
        if_enforced: None,
    }
}

/// What a sender would do if the `testing` policy said `enforce` (RFC 8461 §5), with the
/// `enforce-would-defer` / `enforce-would-defer-some` finding, and the advice of
/// `policy-mode-testing` made to fit: switch only when enforce would deliver.
pub(super) fn if_enforced(
    set: &MxSet,
    mx: &[EnforcedMx],
    findings: &mut Vec<Finding>,
) -> IfEnforced {
    let skipped: Vec<SkippedMx> = mx
        .iter()
        .filter(|m| m.verdict == "skip")
        .map(|m| SkippedMx {
            host: m.host.clone(),
            reasons: m.reasons.clone(),
        })
        .collect();
    let list = skipped
        .iter()
        .map(|s| {
            if s.reasons.is_empty() {
                s.host.clone()
            } else {
                format!("{} ({})", s.host, s.reasons.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let first = mx
        .iter()
        .find(|m| m.verdict == "deliver" || m.verdict == "deliver-report");
    let (would_deliver, host, reason, advice) = match (set, first) {
        (MxSet::Null | MxSet::None, _) => (
            Some(false),
            None,
            "the domain accepts no mail".to_string(),
            None,
        ),
        (MxSet::DnsFailure(_), _) => (None, None, "the MX lookup failed".to_string(), None),
        (_, Some(first)) => {
            if skipped.is_empty() {
                (
                    Some(true),
                    Some(first.host.clone()),
                    format!("an enforcing sender delivers to {}", first.host),
                    None,
                )
            } else {
                findings.push(Finding::new(
                    &ids::ENFORCE_WOULD_DEFER_SOME,
                    format!(
                        "under mode enforce senders skip {list}, and deliver to {}",
                        first.host
                    ),
                ));
                (
                    Some(true),
                    Some(first.host.clone()),
                    format!(
                        "an enforcing sender delivers to {} but skips {} of {} MX hosts",
                        first.host,
                        skipped.len(),
                        mx.len()
                    ),
                    Some(
                        "Fix the MX hosts listed under enforce-would-defer-some, then switch to \
                         `mode: enforce` once TLS-RPT reports show no failures; testing protects \
                         no mail.",
                    ),
                )
            }
        }
        (_, None) if !skipped.is_empty() && mx.iter().all(|m| m.verdict != "not-probed") => {
            findings.push(Finding::new(
                &ids::ENFORCE_WOULD_DEFER,
                format!("under mode enforce senders skip {list}"),
            ));
            (
                Some(false),
                None,
                format!("switching to enforce now would defer all mail: senders skip {list}"),
                Some(
                    "Do not switch to `mode: enforce` yet: it would defer all mail (see \
                     enforce-would-defer). Fix the MX hosts first, then switch once TLS-RPT \
                     reports show no failures.",
                ),
            )
        }
        (_, None) => (
            None,
            None,
            "unknown: the MX hosts were not probed or not reachable from here".to_string(),
            Some(
                "Switch to `mode: enforce` once `mta-sts check` reaches every MX host over \
                 SMTP without MX findings and TLS-RPT reports show no failures; testing \
                 protects no mail.",
            ),
        ),
    };
    if let Some(advice) = advice {
        for f in findings
            .iter_mut()
            .filter(|f| f.id == ids::POLICY_MODE_TESTING.id)
        {
            f.fix = advice.to_string();
        }
    }
    IfEnforced {
        would_deliver,
        mx: host,
        reason,
        skipped,
    }
}
