//! TLS for probes: a client that finishes every handshake so the certificate can be
//! described, then asks the real WebPKI verifier for its verdict.
//!
//! Senders validate the policy host (RFC 8461 §3.3) and MX hosts (§4.2) with WebPKI rules:
//! chain to a trusted root, not expired, a DNS-ID SAN matching the name (RFC 6125 §6.4: a
//! `*` only as the whole leftmost label, no partial wildcards, no CN fallback: RFC 6125
//! §6.4.3 only allows partial-label wildcards, and webpki never matches them). A failing verifier aborts the handshake and leaves nothing
//! to report, so the probe's verifier accepts the chain during the handshake (still checking
//! the handshake signatures, so the server must hold the key) and the verdict is computed
//! afterwards on the same chain with the configured trust.

use std::sync::Arc;
use std::time::Duration;

use mta_sts::decision::TlsOutcome;
use mta_sts_net::{Clock, TlsSetupError, Trust};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, PeerIncompatible, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use tokio_rustls::TlsConnector;

use crate::error::Error;

/// The probe's TLS client: one connector for every probe of a run.
#[derive(Clone)]
pub struct ProbeTls {
    connector: TlsConnector,
    verifier: Arc<dyn ServerCertVerifier>,
    /// The time certificates are judged at (validity, `days_left`).
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ProbeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTls").finish_non_exhaustive()
    }
}

impl ProbeTls {
    /// Builds the client: TLS 1.2 and 1.3 only (RFC 8461 §3.3), ring provider, the trust
    /// anchors of `trust` for the verdict.
    pub fn new(
        trust: &Trust,
        alpn: Vec<Vec<u8>>,
        clock: Arc<dyn Clock>,
    ) -> Result<ProbeTls, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_err = |source: rustls::Error| Error::Tls { source };
        let verifier =
            mta_sts_net::tls::verifier(trust, provider.clone()).map_err(|e| match e {
                TlsSetupError::CaFile { path, source } => Error::CaFile {
                    path,
                    message: source.to_string(),
                },
                TlsSetupError::NoCertificate { path } => Error::CaFile {
                    path,
                    message: "no CERTIFICATE block found".into(),
                },
                other => Error::Verifier(other),
            })?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptThenJudge {
                inner: verifier.clone(),
            }))
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        Ok(ProbeTls {
            connector: TlsConnector::from(Arc::new(config)),
            verifier,
            clock,
        })
    }

    /// The connector (SNI is the server name given to `connect`).
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// Describes the session of a finished handshake, with the WebPKI verdict for `name`.
    pub fn describe(&self, conn: &rustls::ClientConnection, name: &str) -> TlsSession {
        let version = conn
            .protocol_version()
            .map(|v| format!("{v:?}").replace("TLSv1_", "TLS 1."))
            .unwrap_or_default();
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        let chain = conn.peer_certificates().unwrap_or(&[]);
        let now = self.clock.now();
        let certificate = chain.first().map(|leaf| {
            let verdict = match ServerName::try_from(name.to_string()) {
                Ok(server_name) => self
                    .verifier
                    .verify_server_cert(
                        leaf,
                        &chain[1..],
                        &server_name,
                        &[],
                        UnixTime::since_unix_epoch(Duration::from_secs(now)),
                    )
                    .map(|_| ()),
                Err(e) => Err(rustls::Error::General(e.to_string())),
            };
            CertificateInfo::new(
                leaf,
                chain.len(),
                name,
                verdict,
                i64::try_from(now).unwrap_or(i64::MAX),
            )
        });
        TlsSession {
            version,
            cipher,
            certificate,
        }
    }
}

/// Accepts any chain during the handshake; signatures are still verified by the inner
/// verifier's crypto provider.
#[derive(Debug)]
struct AcceptThenJudge {
    inner: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for AcceptThenJudge {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What a finished handshake showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSession {
    /// `TLS 1.3` or `TLS 1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The leaf certificate with the verdict, when the server sent one.
    pub certificate: Option<CertificateInfo>,
}

/// Why a certificate fails WebPKI validation, in the terms senders report (RFC 8460 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertProblem {
    /// Does not chain to a trusted root.
    Untrusted,
    /// No DNS-ID matching the name.
    NameMismatch,
    /// Expired or not yet valid.
    Expired,
    /// Anything else (bad encoding, unsupported algorithm, revoked, …).
    Invalid,
}

impl CertProblem {
    /// The outcome a sender's delivery decision sees (RFC 8461 §4.2, mta-sts `decide`).
    pub fn outcome(self) -> TlsOutcome {
        match self {
            CertProblem::Untrusted => TlsOutcome::CertificateNotTrusted,
            CertProblem::NameMismatch => TlsOutcome::CertificateHostMismatch,
            CertProblem::Expired => TlsOutcome::CertificateExpired,
            CertProblem::Invalid => TlsOutcome::ValidationFailure,
        }
    }
}

/// The leaf certificate as seen by a sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS-ID subject alternative names.
    pub sans: Vec<String>,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// Certificates the server sent (leaf included).
    pub chain_length: usize,
    /// Whether some SAN matches the name under RFC 6125 as senders apply it.
    pub name_match: bool,
    /// Whether the full WebPKI validation passed (trust, time, name).
    pub valid: bool,
    /// The WebPKI problem, when not valid.
    pub problem: Option<CertProblem>,
    /// The verifier's message, when not valid.
    pub error: Option<String>,
}

impl CertificateInfo {
    fn new(
        leaf: &CertificateDer<'_>,
        chain_length: usize,
        name: &str,
        verdict: Result<(), rustls::Error>,
        now: i64,
    ) -> CertificateInfo {
        use x509_parser::prelude::*;
        let mut info = CertificateInfo {
            subject: String::new(),
            issuer: String::new(),
            sans: Vec::new(),
            not_before: String::new(),
            not_after: String::new(),
            days_left: 0,
            chain_length,
            name_match: false,
            valid: verdict.is_ok(),
            problem: None,
            error: None,
        };
        let mut expired_by_date = false;
        if let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) {
            info.subject = cert.subject().to_string();
            info.issuer = cert.issuer().to_string();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for general in &san.value.general_names {
                    if let GeneralName::DNSName(n) = general {
                        info.sans.push((*n).to_string());
                    }
                }
            }
            let nb = cert.validity().not_before.timestamp();
            let na = cert.validity().not_after.timestamp();
            info.not_before = rfc3339(nb);
            info.not_after = rfc3339(na);
            info.days_left = (na - now).div_euclid(86_400);
            expired_by_date = now < nb || now > na;
        }
        info.name_match = info.sans.iter().any(|san| dns_id_matches(san, name));
        if let Err(e) = verdict {
            let problem = match &e {
                rustls::Error::InvalidCertificate(c) => match c {
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. } => CertProblem::Expired,
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => CertProblem::NameMismatch,
                    CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                        CertProblem::Untrusted
                    }
                    _ if expired_by_date => CertProblem::Expired,
                    _ => CertProblem::Invalid,
                },
                _ => CertProblem::Invalid,
            };
            info.problem = Some(problem);
            info.error = Some(e.to_string());
        }
        info
    }

    /// Every problem a sender would see, the verifier's first: the verifier stops at one,
    /// the dates and names are checked here too so that, say, an untrusted certificate
    /// for the wrong name shows both.
    pub fn problems(&self) -> Vec<CertProblem> {
        let mut out: Vec<CertProblem> = self.problem.into_iter().collect();
        if self.valid {
            return out;
        }
        if self.days_left < 0 && !out.contains(&CertProblem::Expired) {
            out.push(CertProblem::Expired);
        }
        if !self.name_match && !out.contains(&CertProblem::NameMismatch) {
            out.push(CertProblem::NameMismatch);
        }
        out
    }
}

/// Whether a TLS error means the peer offers no TLS 1.2 or later.
pub fn is_version_error(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(
            rustls::Error::PeerIncompatible(
                PeerIncompatible::ServerDoesNotSupportTls12Or13
                    | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            ) | rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
        )
    )
}

/// RFC 6125 §6.4 DNS-ID matching as WebPKI senders apply it: ASCII case-insensitive, one
/// trailing dot ignored, a `*` only as the complete leftmost label matching exactly one
/// label, no partial-label wildcards (RFC 6125 §6.4.3 says MAY; RFC 8461 §3.3 allows only a
/// complete leftmost `*` for the policy host, and webpki never matches partial labels).
///
/// ```
/// use mta_sts_checker::tls::dns_id_matches;
/// assert!(dns_id_matches("*.example.com", "mx1.example.com"));
/// assert!(!dns_id_matches("*.example.com", "example.com"));
/// assert!(!dns_id_matches("*.example.com", "a.b.example.com"));
/// assert!(!dns_id_matches("mx*.example.com", "mx1.example.com"));
/// assert!(dns_id_matches("MX1.Example.com.", "mx1.example.com"));
/// ```
pub fn dns_id_matches(san: &str, host: &str) -> bool {
    let san = san.strip_suffix('.').unwrap_or(san);
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Some(rest) = san.strip_prefix("*.") {
        if rest.contains('*') || rest.is_empty() {
            return false;
        }
        match host.split_once('.') {
            Some((first, tail)) => !first.is_empty() && tail.eq_ignore_ascii_case(rest),
            None => false,
        }
    } else {
        !san.contains('*') && san.eq_ignore_ascii_case(host)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix timestamp (proleptic Gregorian, UTC).
///
/// ```
/// assert_eq!(mta_sts_checker::tls::rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(mta_sts_checker::tls::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
/// ```
pub fn rfc3339(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}
