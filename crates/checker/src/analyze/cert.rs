//! TLS certificates, of the policy host (RFC 8461 §3.3) and of MX hosts (RFC 8461 §4.2):
//! trust, name, expiry, each a finding of its area.

use super::evidence::Thresholds;
use crate::finding::{Finding, Severity, ids};
use crate::tls::{CertProblem, TlsSession};

/// Whose certificate: the finding ids differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CertArea {
    /// The policy host's certificate (`policy-host-cert-*`).
    PolicyHost,
    /// An MX host's certificate (`mx-cert-*`).
    Mx,
}

/// Certificate findings; returns whether the certificate is valid. `severity` overrides
/// the error severity (MX findings depend on the policy mode).
pub(super) fn cert_findings(
    tls: &TlsSession,
    name: &str,
    area: CertArea,
    thresholds: &Thresholds,
    severity: Option<Severity>,
    findings: &mut Vec<Finding>,
) -> bool {
    let Some(cert) = &tls.certificate else {
        return false;
    };
    let evidence = format!(
        "{name}: subject {}, issuer {}, SAN [{}], valid {} to {}{}",
        cert.subject,
        cert.issuer,
        cert.sans.join(", "),
        cert.not_before,
        cert.not_after,
        cert.error
            .as_deref()
            .map(|e| format!("; verifier: {e}"))
            .unwrap_or_default()
    );
    let pick = |problem: CertProblem| match (area, problem) {
        (CertArea::PolicyHost, CertProblem::Untrusted) => &ids::POLICY_HOST_CERT_UNTRUSTED,
        (CertArea::PolicyHost, CertProblem::NameMismatch) => &ids::POLICY_HOST_CERT_NAME_MISMATCH,
        (CertArea::PolicyHost, CertProblem::Expired) => &ids::POLICY_HOST_CERT_EXPIRED,
        (CertArea::PolicyHost, CertProblem::Invalid) => &ids::POLICY_HOST_CERT_INVALID,
        (CertArea::Mx, CertProblem::Untrusted) => &ids::MX_CERT_UNTRUSTED,
        (CertArea::Mx, CertProblem::NameMismatch) => &ids::MX_CERT_NAME_MISMATCH,
        (CertArea::Mx, CertProblem::Expired) => &ids::MX_CERT_EXPIRED,
        (CertArea::Mx, CertProblem::Invalid) => &ids::MX_CERT_INVALID,
    };
    if cert.valid {
        if cert.days_left < thresholds.cert_warn_days {
            let entry = match area {
                CertArea::PolicyHost => &ids::POLICY_HOST_CERT_EXPIRING,
                CertArea::Mx => &ids::MX_CERT_EXPIRING,
            };
            findings.push(Finding::new(
                entry,
                format!(
                    "{name}: expires {} ({} days left)",
                    cert.not_after, cert.days_left
                ),
            ));
        }
        return true;
    }
    for problem in cert.problems() {
        let mut f = Finding::new(pick(problem), evidence.clone());
        if let Some(s) = severity {
            f = f.with_severity(s);
        }
        findings.push(f);
    }
    false
}
