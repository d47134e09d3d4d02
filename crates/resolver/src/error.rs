//! Why a policy could not be discovered or used: one variant per cause, each mapped to an
//! RFC 8460 §4.3 result type ([`tlsrpt::ResultType`]) and a stable kebab-case reason code.
//!
//! [`Error`] is data, not a chain of causes: one result is shared by every caller of a
//! single flight and kept with the back-off marks, so it is `Clone` and compares equal, and
//! the underlying errors of [`FetchError`] are carried as their messages.

use std::time::Duration;

use mta_sts::{PolicyError, RecordError};
use mta_sts_net::{DnsFailureKind, DnsSetupError, FetchError, TlsSetupError};
use tlsrpt::ResultType;

/// Why a [`crate::Resolver`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The DNS client could not be built (system configuration unreadable).
    #[error("DNS setup failed: {0}")]
    Dns(#[from] DnsSetupError),
    /// The TLS client could not be built (CA file missing or empty, platform verifier).
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// Every reason a policy lookup can fail. Cloneable so one result can be shared by all
/// callers of a single flight and kept with back-off marks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a domain name; no query was made.
    #[error("`{input}` is not a domain name ({reason}): pass a plain domain such as example.com")]
    InvalidDomain {
        /// The input as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The `_mta-sts` TXT lookup failed (SERVFAIL, REFUSED, timeout, I/O): not the same as
    /// no record (RFC 8461 §3.1): a cached policy stays in force (RFC 8461 §5.1).
    #[error(
        "the DNS lookup of {name} failed ({message}): check the resolver and the domain's name servers"
    )]
    DnsFailure {
        /// The name queried.
        name: String,
        /// What kind of failure.
        kind: DnsFailureKind,
        /// Resolver message.
        message: String,
    },
    /// NXDOMAIN / NODATA, or no TXT record beginning with `v=STSv1;` (RFC 8461 §3.1).
    #[error("{name} has no MTA-STS TXT record: publish `v=STSv1; id=…` there to enable MTA-STS")]
    NoRecord {
        /// The name queried.
        name: String,
    },
    /// The one candidate TXT record is syntactically invalid (RFC 8461 §3.1).
    #[error("the MTA-STS TXT record is invalid: {0}")]
    InvalidRecord(RecordError),
    /// Several TXT records begin with `v=STSv1;` (RFC 8461 §3.1).
    #[error(
        "{0} TXT records begin with `v=STSv1;`: publish exactly one, senders ignore them all otherwise"
    )]
    MultipleRecords(usize),
    /// TCP connection to the policy host failed (or its name did not resolve).
    #[error(
        "cannot connect to {host}: {message}: check that the policy host resolves and listens on port 443"
    )]
    Connect {
        /// The policy host.
        host: String,
        /// What went wrong.
        message: String,
    },
    /// The policy host only offers TLS below 1.2 (RFC 8461 §3.3 requires TLS 1.2 or later here).
    #[error("{host} does not support TLS 1.2 or later: enable TLS 1.2/1.3 on the policy host")]
    TlsVersion {
        /// The policy host.
        host: String,
    },
    /// The certificate has expired (or is not yet valid) (RFC 8461 §3.3).
    #[error("the certificate of {host} is expired or not yet valid: renew it")]
    CertificateExpired {
        /// The policy host.
        host: String,
    },
    /// The certificate does not chain to a trusted root (RFC 8461 §3.3).
    #[error(
        "the certificate of {host} is not issued by a trusted CA: use a certificate from a public CA with its full chain"
    )]
    CertificateUntrusted {
        /// The policy host.
        host: String,
    },
    /// The certificate has no DNS-ID matching the policy host (RFC 8461 §3.3).
    #[error(
        "the certificate of {host} is not valid for that name: include {host} (or a `*.` wildcard of its parent) in the certificate's subject alternative names"
    )]
    CertificateWrongName {
        /// The policy host.
        host: String,
    },
    /// Another certificate problem (revoked, bad encoding, unsupported algorithm, …).
    #[error(
        "the certificate of {host} is not acceptable ({message}): replace it with a valid WebPKI certificate"
    )]
    Certificate {
        /// The policy host.
        host: String,
        /// rustls' description.
        message: String,
    },
    /// Another TLS handshake failure (alert, no common cipher, unknown SNI, …).
    #[error(
        "the TLS handshake with {host} failed ({message}): check the policy host's TLS configuration"
    )]
    Tls {
        /// The policy host.
        host: String,
        /// rustls' description.
        message: String,
    },
    /// The whole fetch took longer than the configured timeout (RFC 8461 §3.3).
    #[error("fetching the policy from {host} took longer than {}s: make the policy host answer faster", after.as_secs_f32())]
    Timeout {
        /// The policy host.
        host: String,
        /// The limit that was hit.
        after: Duration,
    },
    /// A 3xx answer: redirects are never followed (RFC 8461 §3.3).
    #[error("the policy host answered {status} redirect{}: serve the policy directly at /.well-known/mta-sts.txt, redirects are not followed", location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default())]
    Redirect {
        /// The status code.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },
    /// A status other than 200 (RFC 8461 §3.3).
    #[error(
        "the policy host answered HTTP {status}: serve the policy at /.well-known/mta-sts.txt with status 200"
    )]
    Status {
        /// The status code.
        status: u16,
    },
    /// The media type is not `text/plain` (RFC 8461 §3.2).
    #[error("the policy is served as {}: serve it with `Content-Type: text/plain`", content_type.as_deref().map(|c| format!("`{c}`")).unwrap_or_else(|| "no Content-Type".into()))]
    MediaType {
        /// The Content-Type header, if any.
        content_type: Option<String>,
    },
    /// The body exceeds the size limit (RFC 8461 §3.3).
    #[error(
        "the policy body is larger than {limit} bytes: a policy is a few lines, serve only the policy"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An HTTP protocol error (malformed or truncated response).
    #[error("the policy host sent a broken HTTP response ({message}): check the web server")]
    Http {
        /// What went wrong.
        message: String,
    },
    /// The body is not a usable policy (RFC 8461 §3.2); carries every diagnostic.
    #[error("the policy file is invalid: {0}")]
    InvalidPolicy(PolicyError),
}

impl Error {
    /// The RFC 8460 §4.3 result type to report for this failure.
    pub fn result_type(&self) -> ResultType {
        use Error::*;
        match self {
            InvalidDomain { .. } | DnsFailure { .. } | NoRecord { .. } => {
                ResultType::StsPolicyFetchError
            }
            InvalidRecord(_) | MultipleRecords(_) => ResultType::StsPolicyInvalid,
            Connect { .. } | TlsVersion { .. } | Tls { .. } | Timeout { .. } => {
                ResultType::StsPolicyFetchError
            }
            CertificateExpired { .. }
            | CertificateUntrusted { .. }
            | CertificateWrongName { .. }
            | Certificate { .. } => ResultType::StsWebpkiInvalid,
            Redirect { .. } | Status { .. } | TooLarge { .. } | Http { .. } => {
                ResultType::StsPolicyFetchError
            }
            // RFC 8461 §3.2: a policy not served as text/plain is not a valid policy, so it
            // is reported as sts-policy-invalid (RFC 8460 §4.3.2.2).
            MediaType { .. } | InvalidPolicy(_) => ResultType::StsPolicyInvalid,
        }
    }

    /// A stable kebab-case code for logs, metrics and JSON (`failure-reason-code`).
    pub fn reason_code(&self) -> &'static str {
        use Error::*;
        match self {
            InvalidDomain { .. } => "invalid-domain",
            DnsFailure { .. } => "dns-failure",
            NoRecord { .. } => "no-record",
            InvalidRecord(_) => "invalid-record",
            MultipleRecords(_) => "multiple-records",
            Connect { .. } => "connect-failed",
            TlsVersion { .. } => "tls-version",
            CertificateExpired { .. } => "certificate-expired",
            CertificateUntrusted { .. } => "certificate-untrusted",
            CertificateWrongName { .. } => "certificate-wrong-name",
            Certificate { .. } => "certificate-invalid",
            Tls { .. } => "tls-handshake-failed",
            Timeout { .. } => "timeout",
            Redirect { .. } => "redirect",
            Status { .. } => "http-status",
            MediaType { .. } => "media-type",
            TooLarge { .. } => "too-large",
            Http { .. } => "http-protocol",
            InvalidPolicy(_) => "invalid-policy",
        }
    }

    /// Whether the domain published a valid `_mta-sts` record but the policy behind it could
    /// not be fetched or parsed ("published but unusable", `mta-sts query` exit 3). A DNS
    /// failure also counts: we cannot claim "no policy" (exit 1) when we could not look,
    /// which matches postfix-mta-sts-resolver's FETCH_ERROR for a DNS timeout.
    pub fn is_unusable(&self) -> bool {
        !matches!(
            self,
            Error::InvalidDomain { .. }
                | Error::NoRecord { .. }
                | Error::InvalidRecord(_)
                | Error::MultipleRecords(_)
        )
    }

    /// Whether this is a DNS-level outcome (no HTTPS request was made).
    pub fn is_dns(&self) -> bool {
        matches!(
            self,
            Error::InvalidDomain { .. }
                | Error::DnsFailure { .. }
                | Error::NoRecord { .. }
                | Error::InvalidRecord(_)
                | Error::MultipleRecords(_)
        )
    }
}

impl From<FetchError> for Error {
    /// The fetch failure as a resolver error, its cause kept as the message.
    fn from(e: FetchError) -> Error {
        match e {
            FetchError::Connect { host, message, .. } => Error::Connect { host, message },
            FetchError::TlsVersion { host, .. } => Error::TlsVersion { host },
            FetchError::CertificateExpired { host, .. } => Error::CertificateExpired { host },
            FetchError::CertificateUntrusted { host, .. } => Error::CertificateUntrusted { host },
            FetchError::CertificateWrongName { host, .. } => Error::CertificateWrongName { host },
            FetchError::Certificate { host, message, .. } => Error::Certificate { host, message },
            FetchError::Tls { host, source } => Error::Tls {
                host,
                message: source.to_string(),
            },
            FetchError::Timeout { host, after } => Error::Timeout { host, after },
            FetchError::Redirect { status, location } => Error::Redirect { status, location },
            FetchError::Status { status } => Error::Status { status },
            FetchError::MediaType { content_type } => Error::MediaType { content_type },
            FetchError::TooLarge { limit } => Error::TooLarge { limit },
            FetchError::Http(source) => Error::Http {
                message: source.to_string(),
            },
            FetchError::Request(source) => Error::Http {
                message: source.to_string(),
            },
            // A failure this version does not know: still a fetch error.
            other => Error::Http {
                message: other.to_string(),
            },
        }
    }
}
