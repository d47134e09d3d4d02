//! MX hosts (RFC 8461 §4, §5; RFC 5321 §5.1, RFC 7505): coverage by the policy, SMTP and
//! STARTTLS, TLS version, certificate, implicit and null MX, DANE TLSA, and what a sender
//! decides for each host.

use mta_sts::decision::{Decision, TlsOutcome, decide};
use mta_sts::{Mode, Policy};

use super::cert::{CertArea, cert_findings};
use super::evidence::{Evidence, MxEntry, MxSet, Thresholds};
use crate::finding::{Area, Finding, Severity, ids};
use crate::probe::ProbeErrorKind;
use crate::probe::smtp::MxProbe;
use crate::report::MxReport;
use crate::tls::CertProblem;

/// The severity of an MX TLS problem under the published policy: an error only when the
/// policy is enforced (RFC 8461 §5).
fn mx_severity(published: Option<&Policy>) -> Severity {
    match published.map(|p| p.mode) {
        Some(Mode::Enforce) => Severity::Error,
        _ => Severity::Warning,
    }
}

/// The `mx-*` and `dane-*` findings and the MX section of the report, with each host as an
/// enforcing sender would treat it (for a `testing` policy).
pub(super) fn analyze_mx(
    evidence: &Evidence,
    published: Option<&Policy>,
    applied: Option<&Policy>,
    thresholds: &Thresholds,
    findings: &mut Vec<Finding>,
) -> (Vec<MxReport>, Vec<EnforcedMx>) {
    let entries: Vec<&MxEntry> = match &evidence.mx {
        MxSet::Hosts(list) => list.iter().collect(),
        MxSet::Implicit(entry) => {
            findings.push(Finding::new(
                &ids::MX_IMPLICIT,
                format!(
                    "{} has no MX record; senders use its own address",
                    evidence.domain
                ),
            ));
            vec![entry]
        }
        MxSet::Null => {
            findings.push(Finding::new(
                &ids::MX_NULL,
                format!("MX {}: 0 . (RFC 7505)", evidence.domain),
            ));
            return (Vec::new(), Vec::new());
        }
        MxSet::None => {
            findings.push(Finding::new(
                &ids::MX_NONE,
                format!("{} has no MX, A or AAAA record", evidence.domain),
            ));
            return (Vec::new(), Vec::new());
        }
        MxSet::DnsFailure(message) => {
            findings.push(Finding::new(
                &ids::MX_DNS_FAILURE,
                format!("MX {}: {message}", evidence.domain),
            ));
            return (Vec::new(), Vec::new());
        }
    };
    let severity = mx_severity(published);
    // RFC 8461 §5: what the same policy would do under `mode: enforce`, for an owner
    // deciding whether to leave `testing`.
    let enforce = published
        .filter(|p| p.mode == Mode::Testing)
        .map(|p| Policy {
            mode: Mode::Enforce,
            ..p.clone()
        });
    let mut out = Vec::new();
    let mut enforced = Vec::new();
    for entry in entries {
        let host = &entry.host;
        let first_finding = findings.len();
        // RFC 8461 §4.1: the MX RDATA name must match a pattern.
        let in_policy = published.map(|p| p.matches_mx(host));
        if in_policy == Some(false) && published.is_some_and(|p| p.mode != Mode::None) {
            let sev = mx_severity(published);
            findings.push(
                Finding::new(
                    &ids::MX_NOT_IN_POLICY,
                    format!(
                        "{host} matches none of the patterns: {}",
                        published
                            .map(|p| p
                                .mx
                                .iter()
                                .map(|m| m.to_string())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    ),
                )
                .with_severity(sev),
            );
        }
        let probe = entry.probe.as_deref();
        let outcome = probe.map(|p| mx_probe_findings(p, severity, thresholds, findings));
        let verdict = mx_verdict(applied, host, outcome);
        if let Some(enforce) = &enforce {
            // The findings just made about this host that fail validation (a certificate
            // that merely expires soon is valid).
            let reasons = findings[first_finding..]
                .iter()
                .filter(|f| f.area == Area::Mx)
                .filter(|f| f.severity >= Severity::Warning && f.id != ids::MX_CERT_EXPIRING.id)
                .map(|f| f.id.clone())
                .collect();
            enforced.push(EnforcedMx {
                host: host.clone(),
                verdict: mx_verdict(Some(enforce), host, outcome),
                reasons,
            });
        }
        out.push(MxReport {
            host: host.clone(),
            preference: entry.preference,
            in_policy,
            addresses: probe.map(|p| p.addresses.list.clone()).unwrap_or_default(),
            starttls: probe.and_then(|p| p.starttls),
            tls_version: probe.and_then(|p| p.tls.as_ref().map(|t| t.version.clone())),
            cipher: probe.and_then(|p| p.tls.as_ref().map(|t| t.cipher.clone())),
            certificate: probe.and_then(|p| p.tls.as_ref().and_then(|t| t.certificate.clone())),
            dane_tlsa: probe.and_then(|p| p.tlsa),
            banner: probe.and_then(|p| p.banner.clone()),
            error: probe.and_then(|p| p.error.clone()),
            verdict,
        });
    }
    (out, enforced)
}

/// One MX host as an enforcing sender would treat it (see [`super::delivery::if_enforced`]).
pub(super) struct EnforcedMx {
    /// The MX host.
    pub(super) host: String,
    /// [`mx_verdict`] under the policy with `mode: enforce`.
    pub(super) verdict: &'static str,
    /// Ids of the findings about this host that fail validation.
    pub(super) reasons: Vec<String>,
}

/// What the probe of one MX host means for a sender; `None` when the host could not be
/// reached at all (nothing to decide about).
fn mx_probe_findings(
    probe: &MxProbe,
    severity: Severity,
    thresholds: &Thresholds,
    findings: &mut Vec<Finding>,
) -> Option<TlsOutcome> {
    let host = &probe.host;
    if probe.tlsa.is_some_and(|n| n > 0) {
        findings.push(Finding::new(
            &ids::DANE_TLSA_PRESENT,
            format!(
                "_25._tcp.{host}: {} TLSA record(s)",
                probe.tlsa.unwrap_or(0)
            ),
        ));
    }
    if probe.addresses.list.is_empty() {
        findings.push(Finding::new(
            &ids::MX_NO_ADDRESS,
            match &probe.addresses.dns_error {
                Some(e) => format!("A/AAAA {host}: {e}"),
                None => format!("{host} has no A or AAAA record"),
            },
        ));
    }
    if let Some(error) = &probe.error {
        let at = probe
            .connected_to
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let detail = format!("{host}{at}: {}", error.message);
        return match error.kind {
            ProbeErrorKind::NoAddress => None,
            ProbeErrorKind::Connect => {
                findings.push(Finding::new(&ids::MX_CONNECT_FAILED, detail));
                None
            }
            ProbeErrorKind::Timeout => {
                findings.push(Finding::new(&ids::MX_TIMEOUT, detail));
                None
            }
            ProbeErrorKind::Smtp | ProbeErrorKind::Http => {
                findings.push(Finding::new(&ids::MX_SMTP_ERROR, detail));
                None
            }
            ProbeErrorKind::StarttlsRefused | ProbeErrorKind::Tls => {
                findings
                    .push(Finding::new(&ids::MX_STARTTLS_FAILED, detail).with_severity(severity));
                Some(TlsOutcome::StarttlsNotSupported)
            }
            ProbeErrorKind::TlsVersion => {
                findings.push(Finding::new(&ids::MX_TLS_VERSION, detail).with_severity(severity));
                Some(TlsOutcome::ValidationFailure)
            }
        };
    }
    if probe.starttls == Some(false) {
        findings.push(
            Finding::new(
                &ids::MX_STARTTLS_MISSING,
                format!(
                    "{host} EHLO keywords: {}",
                    probe.ehlo.as_deref().unwrap_or(&[]).join(" ")
                ),
            )
            .with_severity(severity),
        );
        return Some(TlsOutcome::StarttlsNotSupported);
    }
    let tls = probe.tls.as_ref()?;
    if cert_findings(
        tls,
        host,
        CertArea::Mx,
        thresholds,
        Some(severity),
        findings,
    ) {
        Some(TlsOutcome::Valid)
    } else {
        Some(
            tls.certificate
                .as_ref()
                .and_then(|c| c.problem)
                .map(CertProblem::outcome)
                .unwrap_or(TlsOutcome::ValidationFailure),
        )
    }
}

/// What a sender does with one host: `deliver`, `deliver-report`, `skip`, `unreachable` or
/// `not-probed`.
fn mx_verdict(
    applied: Option<&Policy>,
    host: &str,
    outcome: Option<Option<TlsOutcome>>,
) -> &'static str {
    // Under enforce the MX name is checked before connecting (RFC 8461 §4.1).
    if let Some(p) = applied
        && p.mode == Mode::Enforce
        && !p.matches_mx(host)
    {
        return "skip";
    }
    match outcome {
        None => "not-probed",
        Some(None) => "unreachable",
        Some(Some(tls)) => match decide(applied, host, tls) {
            Decision::Deliver { report: None } => "deliver",
            Decision::Deliver { report: Some(_) } => "deliver-report",
            Decision::SkipMx { .. } => "skip",
        },
    }
}
