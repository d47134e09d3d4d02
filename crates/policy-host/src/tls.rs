//! TLS: certificates from PEM files, and the SNI certificate resolver.
//!
//! RFC 8461 §7.1: "HTTP servers MUST respond with a certificate chain that matches the
//! policy hostname or abort the TLS handshake if unable to do so." The resolver answers
//! only for configured policy hosts; a handshake without SNI or for any other name gets no
//! certificate, which aborts it (rustls sends a fatal alert).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::cert::normalize_host;
use crate::challenges::Challenges;
use crate::table::Table;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

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
