//! [`Error`]: why a checker could not be built, or a check could not start.

use std::path::PathBuf;

/// Why a checker could not be built, or a check could not start. Each variant says what
/// the caller can change; the underlying error is kept as the [`std::error::Error::source`]
/// (or, for [`Error::Verifier`], is the variant's value).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a domain name: pass another.
    #[error("`{input}` is not a domain name ({source}): pass a domain such as example.com")]
    InvalidDomain {
        /// The input.
        input: String,
        /// Why it is not a domain name.
        #[source]
        source: mta_sts::DomainError,
    },
    /// The CA file is unreadable or holds no certificate: fix the path or the file.
    #[error("cannot use the CA file {path}: {message}")]
    CaFile {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The certificate verifier could not be built (the platform verifier is unavailable,
    /// or a CA certificate is unusable): pass a CA file of trust anchors instead.
    #[error(transparent)]
    Verifier(mta_sts_net::TlsSetupError),
    /// rustls refused the client configuration (TLS 1.2 and 1.3, ring).
    #[error("TLS setup failed: {source}")]
    Tls {
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The DNS client could not be built: the system's configuration is unusable (e.g. no
    /// readable `/etc/resolv.conf`; configure name servers explicitly with
    /// [`crate::CheckConfig::nameservers`]) or hickory refused the configuration.
    #[error("DNS setup failed: {source}")]
    Dns {
        /// What the DNS layer said.
        #[source]
        source: mta_sts_net::DnsSetupError,
    },
}
