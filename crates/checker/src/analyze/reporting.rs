//! TLS reporting (RFC 8460 §3, §5.4): the `_smtp._tls` record (`tlsrpt-<code>`) and
//! whether each `rua` destination can receive reports.

use mta_sts::Mode;
use mta_sts_net::dns::DnsOutcome;

use super::evidence::{Evidence, RuaProblem, RuaProblemKind};
use super::message::{diagnostic_finding, lossy};
use super::record::has_candidate;
use crate::finding::{Area, Finding, Severity, ids};
use crate::probe::rua::{self as rua_probe, Answer, RuaHttpsProbe};
use crate::report::TlsRptReport;

/// The `tlsrpt-*` findings and the TLS-RPT section of the report.
pub(super) fn analyze_tlsrpt(
    evidence: &Evidence,
    mode: Option<Mode>,
    findings: &mut Vec<Finding>,
) -> Option<TlsRptReport> {
    let name = format!("_smtp._tls.{}", evidence.domain);
    // A domain that publishes MTA-STS (a `v=STSv1` record, and no policy known to be
    // `none`) without TLS-RPT never learns of failed deliveries (RFC 8460 §1), and RFC 8461
    // §5 `testing` exists only to produce those reports: a warning. Without MTA-STS, or
    // while withdrawing it with `mode: none`, the record is merely useful: information.
    let missing_severity = if has_candidate(&evidence.sts) && mode != Some(Mode::None) {
        Severity::Warning
    } else {
        Severity::Info
    };
    let records = match &evidence.tlsrpt {
        DnsOutcome::Failure { message, .. } => {
            findings.push(Finding::new(
                &ids::TLSRPT_DNS_FAILURE,
                format!("TXT {name}: {message}"),
            ));
            return None;
        }
        DnsOutcome::NoRecord { .. } => {
            findings.push(
                Finding::new(&ids::TLSRPT_MISSING, format!("{name} has no TXT record"))
                    .with_severity(missing_severity),
            );
            return None;
        }
        DnsOutcome::Found { records, .. } => records,
    };
    let candidates: Vec<&Vec<u8>> = records
        .iter()
        .filter(|rr| tlsrpt::has_record_prefix(rr))
        .collect();
    let mut report = TlsRptReport {
        txt: candidates.iter().map(|rr| lossy(rr)).collect(),
        rua: Vec::new(),
        valid: false,
    };
    match candidates.len() {
        0 => {
            findings.push(
                Finding::new(
                    &ids::TLSRPT_MISSING,
                    format!("no TXT record at {name} begins with `v=TLSRPTv1;`"),
                )
                .with_severity(missing_severity),
            );
        }
        1 => {
            let text = lossy(candidates[0]);
            let lint = tlsrpt::lint(&text);
            for d in &lint.diagnostics {
                findings.push(diagnostic_finding(
                    "tlsrpt",
                    Area::Tlsrpt,
                    d,
                    format!("\"{text}\""),
                ));
            }
            report.valid = lint.is_valid();
            if let Some(record) = &lint.record {
                report.rua = record.rua.iter().map(|r| r.uri().to_string()).collect();
            }
            for reach in &evidence.rua {
                for problem in &reach.problems {
                    let entry = match problem.kind {
                        RuaProblemKind::Unreachable => &ids::TLSRPT_RUA_UNREACHABLE,
                        RuaProblemKind::Certificate => &ids::TLSRPT_RUA_CERT_INVALID,
                        RuaProblemKind::RejectsPost => &ids::TLSRPT_RUA_REJECTS_POST,
                    };
                    findings.push(Finding::new(
                        entry,
                        format!("{}: {}", reach.uri, problem.message),
                    ));
                }
            }
        }
        n => findings.push(Finding::new(
            &ids::TLSRPT_MULTIPLE,
            format!("{n} records at {name}: {}", report.txt.join(" | ")),
        )),
    }
    Some(report)
}

/// What an `https:` `rua` probe means (RFC 8460 §3, §5.4): the certificate, whether the host
/// answered, and whether the path takes a report POST ([`rua_probe::accepts`]).
pub fn https_rua_problems(host: &str, port: u16, probe: &RuaHttpsProbe) -> Vec<RuaProblem> {
    let problem = |kind, message| RuaProblem { kind, message };
    let mut problems = Vec::new();
    // RFC 8460 §3: senders MAY ignore certificate errors; many do not.
    if let Some(cert) = probe.tls.as_ref().and_then(|t| t.certificate.as_ref())
        && !cert.valid
    {
        problems.push(problem(
            RuaProblemKind::Certificate,
            format!(
                "{}: {} (SAN [{}], valid {} to {})",
                host,
                cert.error.as_deref().unwrap_or("not valid"),
                cert.sans.join(", "),
                cert.not_before,
                cert.not_after
            ),
        ));
    }
    if let Some(error) = &probe.error {
        problems.push(problem(
            RuaProblemKind::Unreachable,
            format!("{}:{}: {}", host, port, error.message),
        ));
    } else if let Some(status) = probe.status
        && let Answer::Rejects(why) = rua_probe::accepts(status)
    {
        problems.push(problem(
            RuaProblemKind::RejectsPost,
            format!(
                "an empty POST of {} answered {status}{}: {why}",
                rua_probe::PROBE_CONTENT_TYPE,
                probe
                    .location
                    .as_ref()
                    .map(|l| format!(" (Location: {l})"))
                    .unwrap_or_default()
            ),
        ));
    }
    problems
}
