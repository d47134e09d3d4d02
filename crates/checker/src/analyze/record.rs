//! The `_mta-sts` TXT record (RFC 8461 §3.1): absent, several, unrelated TXT, syntax
//! (`record-<code>`), at the apex, CNAME chain.

use mta_sts::diagnostic::Verdict as _;
use mta_sts::{Diagnostic, StsRecord};
use mta_sts_net::dns::DnsOutcome;

use super::evidence::Evidence;
use super::message::{diagnostic_finding, lossy};
use crate::finding::{Area, Finding, ids};
use crate::report::RecordReport;

/// Whether some TXT RR at `_mta-sts` is a candidate record (begins with `v=STSv1;`).
pub fn has_candidate(sts: &DnsOutcome<Vec<u8>>) -> bool {
    sts.records()
        .iter()
        .any(|rr| mta_sts::record::is_candidate(rr))
}

/// The `record-*` findings and the record section of the report.
pub(super) fn analyze_record(
    evidence: &Evidence,
    findings: &mut Vec<Finding>,
) -> Option<RecordReport> {
    let name = format!("_mta-sts.{}", evidence.domain);
    let mut report = RecordReport {
        name: name.clone(),
        txt: evidence.sts.records().iter().map(|r| lossy(r)).collect(),
        cname_chain: evidence.sts_cname.clone(),
        id: None,
        valid: false,
    };
    // RFC 8461 §3.1: "MAY return a CNAME … senders MUST follow the CNAME pointers".
    if evidence.sts_cname.len() > 1 {
        findings.push(Finding::new(
            &ids::RECORD_CNAME,
            format!(
                "{} (policy host stays mta-sts.{})",
                evidence.sts_cname.join(" → "),
                evidence.domain
            ),
        ));
    }
    match &evidence.sts {
        DnsOutcome::Failure { message, .. } => {
            findings.push(Finding::new(
                &ids::RECORD_DNS_FAILURE,
                format!("TXT {name}: {message}"),
            ));
        }
        DnsOutcome::NoRecord { .. } => {
            findings.push(Finding::new(
                &ids::RECORD_MISSING,
                format!("{name} has no TXT record"),
            ));
        }
        DnsOutcome::Found { records, .. } => {
            let candidates: Vec<&Vec<u8>> = records
                .iter()
                .filter(|rr| mta_sts::record::is_candidate(rr))
                .collect();
            // Near misses: look like an attempt (`v=STSv1` without `;`, `v=stsv1`, …).
            let near: Vec<&Vec<u8>> = records
                .iter()
                .filter(|rr| !mta_sts::record::is_candidate(rr))
                .filter(|rr| {
                    let t = lossy(rr).trim_start().to_ascii_lowercase();
                    t.starts_with("v=sts") || t.starts_with("v = sts")
                })
                .collect();
            let unrelated: Vec<String> = records
                .iter()
                .filter(|rr| !candidates.contains(rr) && !near.contains(rr))
                .map(|rr| format!("\"{}\"", lossy(rr)))
                .collect();
            if !unrelated.is_empty() {
                findings.push(Finding::new(
                    &ids::RECORD_UNRELATED_TXT,
                    format!("{name}: {}", unrelated.join(", ")),
                ));
            }
            match candidates.len() {
                0 => {
                    findings.push(Finding::new(
                        &ids::RECORD_MISSING,
                        format!(
                            "no TXT record at {name} begins with `v=STSv1;` ({} other record{})",
                            records.len(),
                            if records.len() == 1 { "" } else { "s" }
                        ),
                    ));
                    for rr in near {
                        lint_record(rr, Area::Record, findings);
                    }
                }
                1 => {
                    let rr = candidates[0];
                    if lint_record(rr, Area::Record, findings)
                        && let Ok(record) = StsRecord::parse_bytes(rr)
                    {
                        report.id = Some(record.id);
                        report.valid = true;
                    }
                }
                n => {
                    let list: Vec<String> = candidates
                        .iter()
                        .map(|rr| format!("\"{}\"", lossy(rr)))
                        .collect();
                    findings.push(Finding::new(
                        &ids::RECORD_MULTIPLE,
                        format!("{n} records at {name}: {}", list.join(", ")),
                    ));
                }
            }
        }
    }
    // A record at the apex is a common mistake: senders only look at _mta-sts.
    let apex: Vec<String> = evidence
        .apex
        .records()
        .iter()
        .map(|rr| lossy(rr))
        .filter(|t| t.trim_start().to_ascii_lowercase().starts_with("v=stsv1"))
        .collect();
    if !apex.is_empty() {
        findings.push(Finding::new(
            &ids::RECORD_AT_APEX,
            format!("TXT {}: \"{}\"", evidence.domain, apex.join("\", \"")),
        ));
    }
    Some(report)
}

/// Lints one TXT RR as an `_mta-sts` record; pushes `record-<code>` findings; returns
/// whether it is valid.
fn lint_record(rr: &[u8], area: Area, findings: &mut Vec<Finding>) -> bool {
    let text = lossy(rr);
    let diagnostics = match std::str::from_utf8(rr) {
        Ok(t) => mta_sts::record::lint(t).diagnostics,
        Err(e) => {
            let error = mta_sts::RecordError::NotAscii {
                position: e.valid_up_to(),
            };
            vec![Diagnostic::error(error.code(), None, error.to_string())]
        }
    };
    for d in &diagnostics {
        findings.push(diagnostic_finding("record", area, d, format!("\"{text}\"")));
    }
    diagnostics.is_valid()
}
