//! Test certificate authorities (rcgen) and the certificates the servers present.
//!
//! [`TestCa`] is one root CA. [`Pki`] holds the trusted test CA and an independent
//! "other" CA (for untrusted certificates) and issues, lazily and cached, the
//! certificate of each [`CertKind`] for a host name.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::Error;

/// The one crypto provider of the testkit: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which certificate a server presents for a host name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CertKind {
    /// Issued by the test CA for the host name, valid now.
    #[default]
    Valid,
    /// Issued by the test CA for the host name, `not_after` in the past.
    Expired,
    /// Issued by the test CA, valid now, but for `wrong-name.invalid` only.
    WrongName,
    /// Issued for the host name by another CA that clients do not trust.
    Untrusted,
    /// Self-signed certificate for the host name.
    SelfSigned,
    /// Issued by the test CA for the host name, `not_before` in the future.
    NotYetValid,
}

/// The name put in [`CertKind::WrongName`] certificates.
pub const WRONG_NAME: &str = "wrong-name.invalid";

/// A leaf certificate with its key.
#[derive(Clone)]
pub struct IssuedCert {
    /// Leaf certificate (DER), then the issuer's certificate if any.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8 DER).
    pub key_der: Vec<u8>,
    /// The leaf certificate in PEM.
    pub cert_pem: String,
    /// The leaf's private key in PEM.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// The private key as rustls wants it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A rustls [`CertifiedKey`] (chain + signing key) for a server.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, Error> {
        let key = rustls::crypto::ring::sign::any_supported_type(&self.private_key())?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), key)))
    }
}

/// Validity window of an issued certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to one year ahead.
    Current,
    /// Ended yesterday (started 400 days ago).
    Expired,
    /// Starts in 30 days.
    NotYetValid,
}

impl Validity {
    fn window(self) -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        match self {
            Validity::Current => (now - Duration::days(1), now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(400), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(30), now + Duration::days(400)),
        }
    }
}

/// A root certificate authority for tests.
///
/// ```
/// use mta_sts_testkit::{TestCa, Validity};
/// let ca = TestCa::new("example test CA").unwrap();
/// let leaf = ca.issue(&["mta-sts.example.test"], Validity::Current).unwrap();
/// assert_eq!(leaf.chain.len(), 2);
/// assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// ```
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Creates a root CA (ECDSA P-256) whose subject common name is `common_name`.
    pub fn new(common_name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "mta-sts testkit");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(800);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate in DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_pem(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.pem())?;
        Ok(())
    }

    /// A root store trusting only this CA.
    pub fn root_store(&self) -> Result<RootCertStore, Error> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der())?;
        Ok(roots)
    }

    /// A rustls client configuration (TLS 1.2 and 1.3, ring) trusting only this CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store()?)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Issues a leaf (server authentication) certificate for `names` (DNS names or IP
    /// addresses), signed by this CA. The chain holds the leaf then the CA.
    pub fn issue(&self, names: &[&str], validity: Validity) -> Result<IssuedCert, Error> {
        let params = leaf_params(names, validity)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            chain: vec![cert.der().clone(), self.der()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Issues a self-signed leaf certificate for `names`.
pub fn self_signed(names: &[&str]) -> Result<IssuedCert, Error> {
    let params = leaf_params(names, Validity::Current)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(IssuedCert {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn leaf_params(names: &[&str], validity: Validity) -> Result<CertificateParams, Error> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let (not_before, not_after) = validity.window();
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// The trusted test CA, an untrusted CA, and a cache of issued server certificates.
///
/// Certificates are issued on first use per (host, [`CertKind`]) and cached, so a world
/// of 10,000 hosts costs only the handshakes it actually serves.
pub struct Pki {
    ca: TestCa,
    other: TestCa,
    cache: Mutex<HashMap<(String, CertKind), Arc<CertifiedKey>>>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Creates the trusted test CA and the independent untrusted CA.
    pub fn new() -> Result<Self, Error> {
        Ok(Pki {
            ca: TestCa::new("mta-sts testkit root CA")?,
            other: TestCa::new("mta-sts testkit untrusted CA")?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The trusted test CA.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA that clients do not trust (issuer of [`CertKind::Untrusted`]).
    pub fn untrusted_ca(&self) -> &TestCa {
        &self.other
    }

    /// Issues (uncached) the certificate of `kind` for `host`.
    pub fn issue(&self, host: &str, kind: CertKind) -> Result<IssuedCert, Error> {
        match kind {
            CertKind::Valid => self.ca.issue(&[host], Validity::Current),
            CertKind::Expired => self.ca.issue(&[host], Validity::Expired),
            CertKind::NotYetValid => self.ca.issue(&[host], Validity::NotYetValid),
            CertKind::WrongName => self.ca.issue(&[WRONG_NAME], Validity::Current),
            CertKind::Untrusted => self.other.issue(&[host], Validity::Current),
            CertKind::SelfSigned => self_signed(&[host]),
        }
    }

    /// The cached rustls key of `kind` for `host`, issuing it on first use.
    pub fn certified_key(&self, host: &str, kind: CertKind) -> Result<Arc<CertifiedKey>, Error> {
        let key = (host.to_ascii_lowercase(), kind);
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let issued = self.issue(&key.0, kind)?.certified_key()?;
        self.lock().insert(key, issued.clone());
        Ok(issued)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, CertKind), Arc<CertifiedKey>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A server certificate resolver that always answers with one key.
#[derive(Debug)]
pub(crate) struct FixedCert(pub(crate) Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3) presenting `key`.
pub(crate) fn server_config(key: Arc<CertifiedKey>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(key)));
    Ok(Arc::new(config))
}
