//! Certificates from PEM files and DER chains: the names a leaf covers and its validity.
//!
//! The bottom of the TLS side: the table loads configured certificates with [`load_pem`],
//! the ACME manager checks an issued chain with [`from_der`], the SNI resolver and the
//! router compare host names with [`normalize_host`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{Error as PemError, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A loaded certificate: the rustls key, the names it covers and when it expires.
#[derive(Debug, Clone)]
pub(crate) struct LoadedCert {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) names: Vec<String>,
    pub(crate) not_before: Option<SystemTime>,
    pub(crate) not_after: Option<SystemTime>,
}

impl LoadedCert {
    /// Whether the leaf covers `host` (exact name, or a `*.` wildcard for one label,
    /// RFC 6125 §6.4.3).
    pub(crate) fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, host))
    }
}

fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    if let Some(base) = pattern.strip_prefix("*.") {
        match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == base,
            None => false,
        }
    } else {
        pattern == host
    }
}

/// Why a certificate and key could not be loaded. The messages are the ones the
/// `serve` errors print after "certificate for HOST:".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate file could not be read.
    #[error("cannot read certificate {}: {source}", path.display())]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: PemError,
    },
    /// The certificate file is not valid PEM.
    #[error("certificate {} is not valid PEM: {source}", path.display())]
    CertPem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: PemError,
    },
    /// The private key file could not be read or holds no key.
    #[error("cannot read private key {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: PemError,
    },
    /// The chain and key were read but do not make a usable pair.
    #[error("{}: {source}", path.display())]
    Unusable {
        /// The certificate file.
        path: PathBuf,
        /// Why the pair is unusable.
        #[source]
        source: ChainError,
    },
}

/// Why a DER chain and key do not make a usable certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain is empty.
    #[error("no certificate in the file")]
    Empty,
    /// The leaf certificate is not parseable X.509.
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
    /// rustls supports no signing scheme for this key.
    #[error("unsupported private key: {0}")]
    UnsupportedKey(#[source] rustls::Error),
    /// The key does not belong to the leaf certificate.
    #[error("the private key does not belong to the certificate: {0}")]
    KeyMismatch(#[source] rustls::Error),
}

/// Loads a PEM chain (leaf first) and a PEM private key, and checks that they belong
/// together.
pub(crate) fn load_pem(cert: &Path, key: &Path) -> Result<LoadedCert, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|source| CertError::ReadCert {
            path: cert.to_path_buf(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::CertPem {
            path: cert.to_path_buf(),
            source,
        })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| CertError::ReadKey {
        path: key.to_path_buf(),
        source,
    })?;
    from_der(chain, key_der).map_err(|source| CertError::Unusable {
        path: cert.to_path_buf(),
        source,
    })
}

/// Builds a [`LoadedCert`] from a DER chain and key.
pub(crate) fn from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<LoadedCert, ChainError> {
    let Some(leaf) = chain.first() else {
        return Err(ChainError::Empty);
    };
    let (names, not_before, not_after) = leaf_info(leaf)?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(ChainError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(ChainError::KeyMismatch)?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}

/// DNS names (SAN, else CN) and validity of a leaf certificate.
#[allow(clippy::type_complexity)]
pub(crate) fn leaf_info(
    der: &CertificateDer<'_>,
) -> Result<(Vec<String>, Option<SystemTime>, Option<SystemTime>), ChainError> {
    use x509_parser::prelude::*;
    // x509-parser's error borrows nothing but is a nom wrapper; its text is kept.
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| ChainError::Parse(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    let to_time = |t: ASN1Time| {
        u64::try_from(t.timestamp())
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
    };
    let validity = cert.validity();
    Ok((
        names,
        to_time(validity.not_before),
        to_time(validity.not_after),
    ))
}

/// Lower case, without one trailing dot.
pub(crate) fn normalize_host(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::{CertError, load_pem, name_matches};
    use std::error::Error as _;

    #[test]
    fn a_missing_certificate_file_is_a_read_error_with_its_cause() {
        let dir = std::env::temp_dir().join("mta-sts-cert-test-missing");
        let err = load_pem(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap_err();
        assert!(matches!(err, CertError::ReadCert { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot read certificate "),
            "{err}"
        );
        assert!(err.source().is_some(), "the I/O cause is kept");
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.com", "mta-sts.example.com"));
        assert!(!name_matches("*.example.com", "a.mta-sts.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("MTA-STS.example.com", "mta-sts.example.com"));
    }
}
