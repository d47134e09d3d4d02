//! The trust anchors and TLS client configuration of a sender (RFC 8461 §3.3): WebPKI
//! validation against the platform's roots, optionally plus or only a CA file, TLS 1.2 or
//! later, ring as the one crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

/// Which certificate authorities are trusted for policy hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// The platform's roots (rustls-platform-verifier).
    #[default]
    Platform,
    /// The platform's roots plus the CA certificates in this PEM file (`--ca-file`).
    PlatformAnd(PathBuf),
    /// Only the CA certificates in this PEM file (tests, labs).
    Only(PathBuf),
}

/// Why the TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The CA file could not be read or parsed.
    #[error("cannot use the CA file {path}: {source}")]
    CaFile {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no certificate.
    #[error("cannot use the CA file {path}: no CERTIFICATE block found")]
    NoCertificate {
        /// The path.
        path: PathBuf,
    },
    /// rustls refused the configuration or a root (platform verifier unavailable, …).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The WebPKI verifier could not be built from the roots.
    #[error("TLS setup failed: {0}")]
    Verifier(#[from] VerifierBuilderError),
}

/// The certificates of a PEM file (`--ca-file`).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let err = |source: std::io::Error| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(err)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The WebPKI verifier for `trust` (RFC 8461 §3.3: chain to a trusted root, unexpired,
/// DNS-ID of the server name): the platform's roots, optionally plus a CA file, or only the
/// CA file. Shared by everything that validates certificates as a sender does.
pub fn verifier(
    trust: &Trust,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsSetupError> {
    Ok(match trust {
        Trust::Only(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_ca_file(path)? {
                roots.add(cert)?;
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?
        }
        Trust::Platform => Arc::new(rustls_platform_verifier::Verifier::new(provider)?),
        Trust::PlatformAnd(path) => {
            Arc::new(rustls_platform_verifier::Verifier::new_with_extra_roots(
                read_ca_file(path)?,
                provider,
            )?)
        }
    })
}

/// The TLS client configuration of policy fetches: ring, TLS 1.3 and 1.2 only (RFC 8461
/// §3.3), the [`verifier`] for `trust`, ALPN `http/1.1`.
pub fn tls_client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut provider = rustls::crypto::ring::default_provider();
    // Offer TLS13_AES_128_GCM_SHA256 first (RFC 8446 §9.1's mandatory suite, first in
    // browsers too): where SHA-256 has hardware support, its key schedule took 1 % of a
    // fresh lookup's CPU against 4 % for AES_256_GCM_SHA384's SHA-384 (socketmap_bench
    // under perf). All ring's suites stay offered.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let verifier = verifier(trust, provider.clone())?;
    // RFC 8461 §3.3: TLS 1.2 or later only.
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls13_aes_128_gcm_sha256_is_offered_first_and_nothing_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        mta_sts_testkit::TestCa::new("suite test CA")
            .unwrap()
            .write_pem(&ca)
            .unwrap();
        let config = tls_client_config(&Trust::Only(ca)).unwrap();
        let offered: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            offered.first(),
            Some(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert_eq!(
            offered.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
}
