//! The delivery decision for one MX host (RFC 8461 §4, §5; RFC 8460 §4.3): a pure function
//! of the applied policy, the MX host name and the outcome of the TLS attempt.
//!
//! A sender walks the MX hosts in preference order (RFC 8461 §8.4) and asks [`decide`] for
//! each. [`Decision::SkipMx`] means "treat this host as unreachable and try the next one";
//! when every host is skipped the message is deferred (a transient failure, RFC 8461 §5),
//! never bounced before the sender has re-checked the policy (RFC 8461 §5.1).

use crate::policy::{Mode, Policy};

/// What happened when the sender tried TLS with one MX host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsOutcome {
    /// STARTTLS was negotiated with TLS ≥ 1.2 and the certificate chains to a trusted root,
    /// is unexpired and has a DNS-ID matching the MX host name (RFC 8461 §4.2).
    Valid,
    /// The host does not offer STARTTLS, or the handshake could not start.
    StarttlsNotSupported,
    /// The certificate has expired.
    CertificateExpired,
    /// The certificate does not chain to a trusted root.
    CertificateNotTrusted,
    /// No DNS-ID of the certificate matches the MX host name.
    CertificateHostMismatch,
    /// Any other TLS failure: protocol version below 1.2, handshake failure, bad signature.
    ValidationFailure,
}

/// Why a policy check failed, with its TLS-RPT result type (RFC 8460 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The MX host name matches no `mx` pattern (RFC 8461 §4.1).
    MxNotInPolicy,
    /// The TLS attempt failed.
    Tls(TlsOutcome),
}

impl Failure {
    /// The RFC 8460 §4.3 `result-type` to report.
    ///
    /// RFC 8460 has no result type for an MX missing from the policy; following RFC 8461
    /// Appendix B (`E_HOST_MISMATCH`) it is reported as `certificate-host-mismatch`, with
    /// [`Failure::reason_code`] telling the two cases apart (docs/rfc-requirements.md §4 item 17).
    pub fn result_type(self) -> &'static str {
        match self {
            Failure::MxNotInPolicy => "certificate-host-mismatch",
            Failure::Tls(TlsOutcome::StarttlsNotSupported) => "starttls-not-supported",
            Failure::Tls(TlsOutcome::CertificateExpired) => "certificate-expired",
            Failure::Tls(TlsOutcome::CertificateNotTrusted) => "certificate-not-trusted",
            Failure::Tls(TlsOutcome::CertificateHostMismatch) => "certificate-host-mismatch",
            Failure::Tls(TlsOutcome::ValidationFailure | TlsOutcome::Valid) => "validation-failure",
        }
    }

    /// A `failure-reason-code` for the report, when the result type alone is ambiguous.
    pub fn reason_code(self) -> Option<&'static str> {
        match self {
            Failure::MxNotInPolicy => Some("mx-not-in-policy"),
            _ => None,
        }
    }
}

/// What the sender does with one MX host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Deliver to this host. `report` is set when a `testing` policy failed: deliver, and
    /// report the failure (RFC 8461 §5 "testing").
    Deliver {
        /// The failure to report, under `testing`.
        report: Option<Failure>,
    },
    /// Do not deliver to this host: treat it as unreachable and try the next MX; if none is
    /// left, defer the message (RFC 8461 §5 "enforce", §8.4).
    SkipMx {
        /// Why, for logs and TLS-RPT.
        failure: Failure,
    },
}

/// Whether the MX host passes the policy's MX check, taking the mode into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MxVerdict {
    /// The host matches an `mx` pattern.
    Allowed,
    /// The host matches no pattern and the mode is `enforce`: do not deliver to it.
    Denied,
    /// The host matches no pattern and the mode is `testing`: deliver, but report.
    ReportOnly,
    /// The mode is `none`: the policy is not applied.
    NotApplied,
}

/// Checks only the MX host name against the policy (RFC 8461 §4.1, §5).
///
/// ```
/// use mta_sts::{Policy, decision::{mx_verdict, MxVerdict}};
/// let p = Policy::parse(b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400").unwrap();
/// assert_eq!(mx_verdict(&p, "mx.example.com."), MxVerdict::Allowed);
/// assert_eq!(mx_verdict(&p, "evil.example.net"), MxVerdict::Denied);
/// ```
pub fn mx_verdict(policy: &Policy, mx_host: &str) -> MxVerdict {
    match policy.mode {
        Mode::None => MxVerdict::NotApplied,
        _ if policy.matches_mx(mx_host) => MxVerdict::Allowed,
        Mode::Enforce => MxVerdict::Denied,
        Mode::Testing => MxVerdict::ReportOnly,
    }
}

/// Decides what to do with one MX host (RFC 8461 §4, §5).
///
/// `policy` is the applied policy (live or cached and unexpired), `None` when the domain
/// has no usable policy. `tls` is the outcome of the STARTTLS attempt with the host; the MX
/// name check comes first, as a sender checks it before connecting.
///
/// ```
/// use mta_sts::{Policy, decision::{decide, Decision, Failure, TlsOutcome}};
/// let p = Policy::parse(b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400").unwrap();
/// assert_eq!(decide(Some(&p), "mx.example.com", TlsOutcome::Valid), Decision::Deliver { report: None });
/// assert_eq!(
///     decide(Some(&p), "mx.example.com", TlsOutcome::StarttlsNotSupported),
///     Decision::SkipMx { failure: Failure::Tls(TlsOutcome::StarttlsNotSupported) },
/// );
/// ```
pub fn decide(policy: Option<&Policy>, mx_host: &str, tls: TlsOutcome) -> Decision {
    let Some(policy) = policy else {
        return Decision::Deliver { report: None };
    };
    let failure = if !policy.matches_mx(mx_host) {
        Some(Failure::MxNotInPolicy)
    } else if tls != TlsOutcome::Valid {
        Some(Failure::Tls(tls))
    } else {
        None
    };
    match (policy.mode, failure) {
        (_, None) | (Mode::None, _) => Decision::Deliver { report: None },
        (Mode::Testing, Some(failure)) => Decision::Deliver {
            report: Some(failure),
        },
        (Mode::Enforce, Some(failure)) => Decision::SkipMx { failure },
    }
}
