//! RFC 8461 §4 and §5: what a sender does with each MX host under each mode, and the
//! TLS-RPT result type of each failure (RFC 8460 §4.3).

use mta_sts::Policy;
use mta_sts::decision::{Decision, Failure, MxVerdict, TlsOutcome, decide, mx_verdict};

fn policy(mode: &str) -> Policy {
    Policy::parse(
        format!("version: STSv1\nmode: {mode}\nmx: mx.example.com\nmax_age: 86400").as_bytes(),
    )
    .unwrap()
}

const TLS_FAILURES: [TlsOutcome; 5] = [
    TlsOutcome::StarttlsNotSupported,
    TlsOutcome::CertificateExpired,
    TlsOutcome::CertificateNotTrusted,
    TlsOutcome::CertificateHostMismatch,
    TlsOutcome::ValidationFailure,
];

// STS-4-a, STS-5-a: enforce never delivers to a host failing MX matching, STARTTLS or PKIX
#[test]
fn rfc8461_5_enforce_skips_failing_hosts() {
    let p = policy("enforce");
    assert_eq!(
        decide(Some(&p), "mx.example.com", TlsOutcome::Valid),
        Decision::Deliver { report: None }
    );
    assert_eq!(
        decide(Some(&p), "other.example.net", TlsOutcome::Valid),
        Decision::SkipMx {
            failure: Failure::MxNotInPolicy
        }
    );
    for tls in TLS_FAILURES {
        assert_eq!(
            decide(Some(&p), "mx.example.com", tls),
            Decision::SkipMx {
                failure: Failure::Tls(tls)
            }
        );
    }
}

// STS-5-b: testing delivers and reports
#[test]
fn rfc8461_5_testing_delivers_and_reports() {
    let p = policy("testing");
    assert_eq!(
        decide(Some(&p), "other.example.net", TlsOutcome::Valid),
        Decision::Deliver {
            report: Some(Failure::MxNotInPolicy)
        }
    );
    for tls in TLS_FAILURES {
        assert_eq!(
            decide(Some(&p), "mx.example.com", tls),
            Decision::Deliver {
                report: Some(Failure::Tls(tls))
            }
        );
    }
}

// STS-5-c: none is treated as no active policy; no reports (STS-6-a)
#[test]
fn rfc8461_5_none_is_no_policy() {
    let p = Policy::parse(b"version: STSv1\nmode: none\nmax_age: 86400").unwrap();
    for tls in TLS_FAILURES {
        assert_eq!(
            decide(Some(&p), "anything.example", tls),
            Decision::Deliver { report: None }
        );
    }
    assert_eq!(
        decide(None, "anything.example", TlsOutcome::StarttlsNotSupported),
        Decision::Deliver { report: None }
    );
}

#[test]
fn rfc8461_5_mx_verdict_by_mode() {
    assert_eq!(
        mx_verdict(&policy("enforce"), "mx.example.com"),
        MxVerdict::Allowed
    );
    assert_eq!(
        mx_verdict(&policy("enforce"), "x.example.com"),
        MxVerdict::Denied
    );
    assert_eq!(
        mx_verdict(&policy("testing"), "x.example.com"),
        MxVerdict::ReportOnly
    );
    assert_eq!(
        mx_verdict(&policy("none"), "x.example.com"),
        MxVerdict::NotApplied
    );
    assert!(policy("testing").allows_mx("x.example.com"));
    assert!(!policy("enforce").allows_mx("x.example.com"));
}

// RFC 8460 §4.3 result types
#[test]
fn rfc8460_4_3_result_types() {
    let cases = [
        (
            Failure::Tls(TlsOutcome::StarttlsNotSupported),
            "starttls-not-supported",
        ),
        (
            Failure::Tls(TlsOutcome::CertificateExpired),
            "certificate-expired",
        ),
        (
            Failure::Tls(TlsOutcome::CertificateNotTrusted),
            "certificate-not-trusted",
        ),
        (
            Failure::Tls(TlsOutcome::CertificateHostMismatch),
            "certificate-host-mismatch",
        ),
        (
            Failure::Tls(TlsOutcome::ValidationFailure),
            "validation-failure",
        ),
        (Failure::MxNotInPolicy, "certificate-host-mismatch"),
    ];
    for (failure, expected) in cases {
        assert_eq!(failure.result_type(), expected);
    }
    assert_eq!(
        Failure::MxNotInPolicy.reason_code(),
        Some("mx-not-in-policy")
    );
    assert_eq!(
        Failure::Tls(TlsOutcome::CertificateExpired).reason_code(),
        None
    );
}
