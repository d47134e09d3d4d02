//! TLS: certificates from PEM files, and the SNI certificate resolver.
//!
//! RFC 8461 §7.1: "HTTP servers MUST respond with a certificate chain that matches the
//! policy hostname or abort the TLS handshake if unable to do so." The resolver answers
//! only for configured policy hosts; a handshake without SNI or for any other name gets no
//! certificate, which aborts it (rustls sends a fatal alert).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::acme::Challenges;
use crate::table::Table;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

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

/// Picks the certificate by SNI from the current table (swapped on reload), or the
/// TLS-ALPN-01 challenge certificate when the client asks for `acme-tls/1`.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) table: Arc<ArcSwap<Table>>,
    pub(crate) challenges: Arc<Challenges>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI: we cannot know which policy host is wanted; abort (RFC 8461 §7.1).
        let name = normalize_host(hello.server_name()?);
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: answer with the challenge certificate, only on this ALPN.
            let found = self.challenges.tls_alpn(&name);
            if found.is_none() {
                tracing::debug!(host = %name, "acme-tls/1 handshake for a host without a pending challenge");
            }
            return found;
        }
        let found = self.table.load().host(&name).and_then(|e| e.cert.clone());
        if found.is_none() {
            tracing::debug!(sni = %name, "TLS handshake aborted: no certificate for this name");
        }
        found
    }
}

/// The rustls server configuration: ring, TLS 1.3 and 1.2 only, ALPN h2, http/1.1 and
/// acme-tls/1, session tickets for cheap resumption.
pub(crate) fn server_config(
    resolver: Arc<SniResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
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
