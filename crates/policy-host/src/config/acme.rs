//! `[acme]`: automatic certificates (RFC 8555).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mta_sts_config::Source;
use toml::Spanned;

use super::raw::RawAcme;
use super::{ConfigError, DEFAULT_ACME_DIRECTORY, parse_addr, positive_duration};

/// ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// TLS-ALPN-01 (RFC 8737), answered on the HTTPS listener through the `acme-tls/1` ALPN.
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 §8.3), answered on a plain HTTP listener (port 80).
    Http01,
}

/// `[acme]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
    /// Account contact URIs (`mailto:`).
    pub contact: Vec<String>,
    /// Where the account key and the certificates are kept.
    pub storage: PathBuf,
    /// Challenge type.
    pub challenge: ChallengeKind,
    /// Plain HTTP listener for HTTP-01 (default `0.0.0.0:80`).
    pub http_listen: SocketAddr,
    /// A PEM CA certificate to trust for the ACME server itself (Pebble, private CAs).
    pub ca_file: Option<PathBuf>,
    /// How often certificates are checked for renewal.
    pub check_interval: Duration,
    /// Renew when this fraction of the certificate lifetime has passed (default 2/3).
    pub renew_after: f64,
}

pub(super) fn build_acme(
    src: &Source<'_>,
    a: &Spanned<RawAcme>,
) -> Result<AcmeConfig, ConfigError> {
    let span = a.span();
    let a = a.get_ref();
    let challenge = match a
        .challenge
        .as_ref()
        .map(|c| (c.get_ref().as_str(), c.span()))
    {
        None | Some(("tls-alpn-01", _)) => ChallengeKind::TlsAlpn01,
        Some(("http-01", _)) => ChallengeKind::Http01,
        Some((other, span)) => {
            return Err(src.err(
                &span,
                format!("challenge `{other}` is not supported: use \"tls-alpn-01\" or \"http-01\""),
            ));
        }
    };
    let http_listen = match &a.http_listen {
        Some(v) => parse_addr(src, v.get_ref(), &v.span())?,
        None => parse_addr(src, "0.0.0.0:80", &span)?,
    };
    let check_interval = match &a.check_interval {
        Some(v) => positive_duration(src, v, "check_interval")?,
        None => Duration::from_secs(12 * 3600),
    };
    let renew_after = match &a.renew_after {
        Some(v) if (0.0..1.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            return Err(src.err(
                &v.span(),
                "`renew_after` is the fraction of a certificate's lifetime after which it is renewed: use a number in 0..1, e.g. 0.66",
            ));
        }
        None => 2.0 / 3.0,
    };
    for c in &a.contact {
        if !c.contains(':') {
            return Err(src.err(
                &span,
                format!("contact `{c}` is not a URI: write \"mailto:{c}\""),
            ));
        }
    }
    Ok(AcmeConfig {
        directory: a
            .directory
            .clone()
            .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_string()),
        contact: a.contact.clone(),
        storage: src.path(
            a.storage
                .as_deref()
                .unwrap_or(Path::new("/var/lib/mta-sts/acme")),
        ),
        challenge,
        http_listen,
        ca_file: a.ca_file.as_deref().map(|p| src.path(p)),
        check_interval,
        renew_after,
    })
}
