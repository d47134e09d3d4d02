//! Certificates from PEM files and DER chains: the names a leaf covers and its validity.
//!
//! The bottom of the TLS side: the table loads configured certificates with [`load_pem`],
//! the ACME manager checks an issued chain with [`from_der`], the SNI resolver and the
//! router compare host names with [`normalize_host`].

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
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

/// Loads a PEM chain (leaf first) and a PEM private key, and checks that they belong
/// together.
pub(crate) fn load_pem(cert: &Path, key: &Path) -> Result<LoadedCert, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {} is not valid PEM: {e}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    from_der(chain, key_der).map_err(|e| format!("{}: {e}", cert.display()))
}

/// Builds a [`LoadedCert`] from a DER chain and key.
pub(crate) fn from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<LoadedCert, String> {
    let Some(leaf) = chain.first() else {
        return Err("no certificate in the file".to_string());
    };
    let (names, not_before, not_after) = leaf_info(leaf)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
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
) -> Result<(Vec<String>, Option<SystemTime>, Option<SystemTime>), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
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
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.com", "mta-sts.example.com"));
        assert!(!name_matches("*.example.com", "a.mta-sts.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("MTA-STS.example.com", "mta-sts.example.com"));
    }
}
