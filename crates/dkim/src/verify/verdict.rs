//! RFC 8460 §3 over a whole message: the reporting domain(s) a signature must be aligned
//! with, why a signature does not count ([`DkimRefusal`]), and the [`Verdict`] over all of a
//! message's signatures.

use crate::verify::domain::{address_domain, normalize_name};
use crate::verify::message::SignedMessage;
use crate::verify::signature::{Algorithm, Signature};

/// The reporting domain(s) of a report message: every `TLS-Report-Submitter` value
/// (RFC 8460 §5.3), else the domain of `From:`; empty when there is neither.
pub fn reporting_domains(message: &SignedMessage<'_>) -> Vec<String> {
    let submitters: Vec<String> = message
        .header_values("tls-report-submitter")
        .iter()
        .map(|s| normalize_name(s))
        .filter(|s| !s.is_empty())
        .collect();
    if !submitters.is_empty() {
        return submitters;
    }
    message
        .header_values("from")
        .first()
        .and_then(|f| address_domain(f))
        .into_iter()
        .collect()
}

/// The label of a signature in refusals: `d=… s=…`.
pub fn signer_label(sig: &Signature) -> String {
    format!("d={} s={}", sig.domain, sig.selector)
}

/// Why a signature (or a whole message) does not count as "a valid DKIM signature by the
/// reporting domain" (RFC 8460 §3). [`DkimRefusal::code`] is a stable kebab-case code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DkimRefusal {
    /// No `DKIM-Signature` field.
    #[error(
        "dkim-missing: the message has no DKIM signature (RFC 8460 §3: such reports are ignored)"
    )]
    Missing,
    /// Neither `TLS-Report-Submitter` nor a `From:` domain.
    #[error(
        "dkim-no-reporting-domain: no TLS-Report-Submitter header or From: domain to match the signing domain against"
    )]
    NoReportingDomain,
    /// Signed, but not by (a domain aligned with) the reporting domain.
    #[error(
        "dkim-not-aligned: signed by d={signing}, which is not the reporting domain {reporting} (RFC 8460 §3)"
    )]
    NotAligned {
        /// `d=`.
        signing: String,
        /// The reporting domain(s), comma-separated.
        reporting: String,
    },
    /// The signature is malformed, forbidden (`l=`, `rsa-sha1`) or does not verify.
    #[error("dkim-invalid: {reason}{}", signer.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
    Invalid {
        /// `d=… s=…` when known.
        signer: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// NXDOMAIN or NODATA at `<s>._domainkey.<d>`.
    #[error("dkim-key-not-found: no DKIM key record at {name}")]
    KeyNotFound {
        /// The name queried.
        name: String,
    },
    /// The key lookup failed (SERVFAIL, timeout, …): nothing is known; try again later.
    #[error(
        "dkim-temporary: the DNS lookup of the DKIM key {name} failed ({message}); try the import again later"
    )]
    Temporary {
        /// The name queried.
        name: String,
        /// The resolver's message.
        message: String,
    },
    /// A valid aligned signature whose key lacks `s=tlsrpt`, refused on request
    /// (RFC 8460 §3 MAY).
    #[error(
        "dkim-no-tlsrpt-service: the key at {name} does not declare s=tlsrpt (RFC 8460 §3), which was required"
    )]
    ServiceNotDeclared {
        /// The key's DNS name.
        name: String,
    },
}

impl DkimRefusal {
    /// The stable code: `dkim-missing`, `dkim-no-reporting-domain`, `dkim-not-aligned`,
    /// `dkim-invalid`, `dkim-key-not-found`, `dkim-temporary`, `dkim-no-tlsrpt-service`.
    pub fn code(&self) -> &'static str {
        match self {
            DkimRefusal::Missing => "dkim-missing",
            DkimRefusal::NoReportingDomain => "dkim-no-reporting-domain",
            DkimRefusal::NotAligned { .. } => "dkim-not-aligned",
            DkimRefusal::Invalid { .. } => "dkim-invalid",
            DkimRefusal::KeyNotFound { .. } => "dkim-key-not-found",
            DkimRefusal::Temporary { .. } => "dkim-temporary",
            DkimRefusal::ServiceNotDeclared { .. } => "dkim-no-tlsrpt-service",
        }
    }

    /// Whether trying again later may succeed (a DNS failure, not a verdict on the message).
    pub fn is_temporary(&self) -> bool {
        matches!(self, DkimRefusal::Temporary { .. })
    }

    /// Which refusal to report when several signatures failed: a temporary failure first (a
    /// retry may pass), then the most specific verdict on an aligned signature.
    fn rank(&self) -> u8 {
        match self {
            DkimRefusal::Temporary { .. } => 0,
            DkimRefusal::ServiceNotDeclared { .. } => 1,
            DkimRefusal::Invalid { .. } | DkimRefusal::KeyNotFound { .. } => 2,
            DkimRefusal::NotAligned { .. } => 3,
            DkimRefusal::NoReportingDomain => 4,
            DkimRefusal::Missing => 5,
        }
    }
}

/// A valid, aligned signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `a=`.
    pub algorithm: Algorithm,
    /// Whether the key declares `s=tlsrpt` (or `*`).
    pub declares_tlsrpt: bool,
}

/// The outcome for a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// At least one valid signature aligned with the reporting domain.
    Pass(Pass),
    /// None: the report must be ignored (RFC 8460 §3).
    Refused(DkimRefusal),
}

impl Verdict {
    /// Combines the outcomes of every signature of a message: any pass wins (one whose key
    /// declares `s=tlsrpt` preferred); otherwise the most useful refusal
    /// ([`DkimRefusal::Missing`] when there was no signature).
    pub fn from_outcomes(outcomes: Vec<Result<Pass, DkimRefusal>>) -> Verdict {
        let mut best_pass: Option<Pass> = None;
        let mut best_refusal: Option<DkimRefusal> = None;
        for outcome in outcomes {
            match outcome {
                Ok(p) => {
                    if best_pass
                        .as_ref()
                        .is_none_or(|b| !b.declares_tlsrpt && p.declares_tlsrpt)
                    {
                        best_pass = Some(p);
                    }
                }
                Err(r) => {
                    if best_refusal.as_ref().is_none_or(|b| r.rank() < b.rank()) {
                        best_refusal = Some(r);
                    }
                }
            }
        }
        match (best_pass, best_refusal) {
            (Some(p), _) => Verdict::Pass(p),
            (None, Some(r)) => Verdict::Refused(r),
            (None, None) => Verdict::Refused(DkimRefusal::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_prefers_pass_then_temporary() {
        let pass = Pass {
            domain: "a.example".into(),
            selector: "s".into(),
            algorithm: Algorithm::Ed25519Sha256,
            declares_tlsrpt: false,
        };
        let temp = DkimRefusal::Temporary {
            name: "n".into(),
            message: "SERVFAIL".into(),
        };
        assert_eq!(
            Verdict::from_outcomes(vec![Err(DkimRefusal::Missing), Ok(pass.clone())]),
            Verdict::Pass(pass)
        );
        assert_eq!(
            Verdict::from_outcomes(vec![
                Err(DkimRefusal::KeyNotFound { name: "n".into() }),
                Err(temp.clone())
            ]),
            Verdict::Refused(temp)
        );
        assert_eq!(
            Verdict::from_outcomes(vec![]),
            Verdict::Refused(DkimRefusal::Missing)
        );
    }
}
