//! Report delivery (RFC 8460 §5): looking up where reports go, POSTing them over HTTPS
//! (§5.4) with hyper's HTTP/1.1 client, and mailing them through an SMTP relay (§5.3) with
//! lettre. Both over tokio and rustls (ring provider only).
//!
//! # Mail and RFC 8460 §3, §5.3
//!
//! - Report mail is handed to a configured **relay** (e.g. the local Postfix on
//!   `127.0.0.1:25`, optionally with STARTTLS). RFC 8460 §5.3 requires a valid DKIM signature
//!   of the reporting domain (no `l=`, `h=` including `tls-report-domain:tls-report-submitter`,
//!   key record preferably `s=tlsrpt`): either configure a key ([`mta_sts_dkim`], `mta-sts
//!   report send --dkim-key`), or let the relay sign, e.g. OpenDKIM with
//!   `SignHeaders From,To,Subject,Date,Message-ID,TLS-Report-Domain,TLS-Report-Submitter`.
//! - Report mail MUST NOT be subject to MTA-STS or DANE failures of the report domain itself
//!   (RFC 8460 §3: otherwise a domain with broken TLS never learns about it). With Postfix and
//!   this project's socketmap policy, send reports from a dedicated sender address and route
//!   them through a transport without the policy lookup:
//!
//!   ```text
//!   # main.cf
//!   sender_dependent_default_transport_maps = hash:/etc/postfix/sender_transport
//!   # /etc/postfix/sender_transport
//!   tlsrpt@sender.example   tlsrpt-smtp:
//!   # master.cf: opportunistic TLS, no policy map, no TLSRPT about TLSRPT
//!   tlsrpt-smtp unix - - n - - smtp
//!     -o smtp_tls_security_level=may
//!     -o smtp_tls_policy_maps=
//!     -o smtp_tlsrpt_enable=no
//!   ```
//!
//! # HTTPS
//!
//! `POST` with `Content-Type: application/tlsrpt+gzip`; any 2xx is delivered (RFC 8460 §5.4).
//! Certificates are verified by default; RFC 8460 §3 allows ignoring certificate errors for
//! report submission, which [`DeliveryConfig::insecure_https`] turns on.
//!
//! # Errors
//!
//! [`DeliveryError::is_permanent`] tells the outbox whether retrying can help (an SMTP 5xx,
//! an unusable URI or configuration) or not (everything else: connection, TLS, HTTP status,
//! SMTP 4xx, timeouts); the outbox retries the latter for 24 hours (RFC 8460 §5.3).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use lettre::address::{AddressError, Envelope};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mta_sts_net::ConnectTo;
use mta_sts_net::dns::{Dns, DnsOutcome};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use tlsrpt::Rua;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A failed delivery attempt. [`DeliveryError::is_permanent`] decides between a retry and
/// giving up; the cause is kept as the [`source`](std::error::Error::source) (the outbox
/// log shows the whole chain, see [`DeliveryError::detail`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The rua is not a usable `https:` URI (permanent).
    #[error("`{uri}` is not an https: URI")]
    NotHttps {
        /// The URI.
        uri: String,
    },
    /// The rua is neither `mailto:` nor `https:` (permanent, RFC 8460 §3).
    #[error("`{rua}` is not a mailto: or https: URI")]
    UnusableRua {
        /// The rua.
        rua: String,
    },
    /// The `https:` URI does not parse (permanent).
    #[error("`{uri}`")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// Why.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// The `https:` URI has no host (permanent).
    #[error("`{uri}` has no host")]
    NoHost {
        /// The URI.
        uri: String,
    },
    /// A host name cannot be a TLS server name (permanent).
    #[error("`{host}`")]
    ServerName {
        /// The name.
        host: String,
        /// Why.
        #[source]
        source: InvalidDnsNameError,
    },
    /// The TLS client could not be set up (permanent).
    #[error("TLS setup")]
    TlsSetup(#[source] rustls::Error),
    /// The TCP connection failed (transient).
    #[error("connect to {target}")]
    Connect {
        /// `ADDR:PORT` connected to (after `--connect-to`).
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed, e.g. the certificate was refused (transient).
    #[error("TLS with {host}")]
    Tls {
        /// The server name.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (transient).
    #[error("HTTPS {host}")]
    Http {
        /// The server name.
        host: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The endpoint answered with a status other than 2xx (transient, RFC 8460 §5.4).
    #[error("{uri}: HTTP {status}")]
    Status {
        /// The rua.
        uri: String,
        /// The HTTP status.
        status: u16,
    },
    /// No relay is configured, so `mailto:` cannot be served (permanent).
    #[error("no SMTP relay configured for mailto: reports (--relay)")]
    NoRelay,
    /// The relay setting is not `HOST:PORT` (permanent).
    #[error("relay `{relay}` is not HOST:PORT")]
    BadRelay {
        /// The setting.
        relay: String,
    },
    /// A sender or recipient address is not an address (permanent).
    #[error("address `{address}`")]
    Address {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: AddressError,
    },
    /// The SMTP envelope could not be formed (permanent).
    #[error("SMTP envelope")]
    Envelope(#[source] lettre::error::Error),
    /// The SMTP relay refused or the dialogue failed: permanent for 5xx replies and for
    /// client-side refusals (e.g. STARTTLS required but not offered), transient otherwise.
    #[error("SMTP relay {relay}")]
    Smtp {
        /// The relay (`HOST:PORT` as configured).
        relay: String,
        /// What lettre reported.
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The attempt did not finish within [`DeliveryConfig::timeout`] (transient).
    #[error("{target}: timed out")]
    Timeout {
        /// The rua or `SMTP relay HOST:PORT`.
        target: String,
    },
    /// The stored report does not parse (permanent).
    #[error("stored report")]
    Report(#[source] tlsrpt::ReportError),
    /// The report mail could not be DKIM-signed (permanent).
    #[error("DKIM signing")]
    Sign(#[source] mta_sts_dkim::DkimError),
}

impl DeliveryError {
    /// Whether retrying cannot help (SMTP 5xx, an unusable URI or configuration).
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::NotHttps { .. }
            | DeliveryError::UnusableRua { .. }
            | DeliveryError::InvalidUri { .. }
            | DeliveryError::NoHost { .. }
            | DeliveryError::ServerName { .. }
            | DeliveryError::TlsSetup(_)
            | DeliveryError::NoRelay
            | DeliveryError::BadRelay { .. }
            | DeliveryError::Address { .. }
            | DeliveryError::Envelope(_)
            | DeliveryError::Report(_)
            | DeliveryError::Sign(_) => true,
            // RFC 5321 §4.2.1: 5xx is permanent. lettre's client errors are refusals before
            // anything was sent (STARTTLS required but not offered, 8-bit data without
            // 8BITMIME): the relay's answer would be the same next time.
            DeliveryError::Smtp { source, .. } => source.is_permanent() || source.is_client(),
            DeliveryError::Connect { .. }
            | DeliveryError::Tls { .. }
            | DeliveryError::Http { .. }
            | DeliveryError::Status { .. }
            | DeliveryError::Timeout { .. } => false,
        }
    }

    /// The error and its causes in one line (`what: why: deeper why`), for the outbox log.
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            // Some sources already repeat their own source in their text.
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
}

/// How to deliver.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// SMTP relay `host:port` for `mailto:` URIs; `None`: mail delivery fails (permanently).
    pub relay: Option<String>,
    /// Use STARTTLS with the relay (the relay's certificate is verified).
    pub relay_starttls: bool,
    /// Name given in EHLO.
    pub helo: String,
    /// Extra trusted CA certificates (PEM), besides the platform's roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Accept any certificate on `https:` endpoints (RFC 8460 §3 MAY). Default off.
    pub insecure_https: bool,
    /// curl-like `--connect-to` overrides for HTTPS and the relay.
    pub connect_to: Vec<ConnectTo>,
    /// Upper bound for one attempt.
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            relay: None,
            relay_starttls: false,
            helo: "localhost".into(),
            extra_roots: Vec::new(),
            insecure_https: false,
            connect_to: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Reads PEM certificates (for [`DeliveryConfig::extra_roots`]).
pub fn read_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, std::io::Error> {
    rustls_pemfile::certs(&mut &pem[..]).collect()
}

/// Where reports for a domain go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuaLookup {
    /// The usable `rua` URIs (`mailto:` and `https:`) of the one `_smtp._tls` record.
    Found(Vec<Rua>),
    /// No (single, valid) TLSRPT record: nothing is sent (RFC 8460 §3).
    NoRecord(String),
    /// DNS failed; try again later.
    DnsFailure(String),
}

/// Looks up `_smtp._tls.<domain>` (RFC 8460 §3; no walk to parent domains).
pub async fn lookup_rua(dns: &Dns, policy_domain: &str) -> RuaLookup {
    let name = format!("_smtp._tls.{policy_domain}");
    match dns.txt(&name).await {
        DnsOutcome::Found { records, .. } => {
            match tlsrpt::select(records.iter().map(std::slice::from_ref)) {
                Ok(record) => {
                    let ruas: Vec<Rua> = record.usable_rua().cloned().collect();
                    if ruas.is_empty() {
                        RuaLookup::NoRecord(format!("{name}: no mailto: or https: rua"))
                    } else {
                        RuaLookup::Found(ruas)
                    }
                }
                Err(e) => RuaLookup::NoRecord(format!("{name}: {e}")),
            }
        }
        DnsOutcome::NoRecord { .. } => RuaLookup::NoRecord(format!("{name}: no TXT record")),
        DnsOutcome::Failure { message, .. } => RuaLookup::DnsFailure(format!("{name}: {message}")),
    }
}

/// Accepts any server certificate (RFC 8460 §3 permits it for report submission).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client of HTTPS submission: ring, TLS 1.2 and 1.3, ALPN `http/1.1`, and the
/// platform's roots plus [`DeliveryConfig::extra_roots`] (what
/// `mta_sts_net::tls::verifier` builds for `Trust::PlatformAnd`, here from
/// certificates already read rather than a file), or [`AnyCert`] when `insecure`.
fn tls_connector(config: &DeliveryConfig, insecure: bool) -> Result<TlsConnector, DeliveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(DeliveryError::TlsSetup)?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if insecure {
        Arc::new(AnyCert(provider.clone()))
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                config.extra_roots.iter().cloned(),
                provider,
            )
            .map_err(DeliveryError::TlsSetup)?,
        )
    };
    let mut client = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(client)))
}

/// Where to connect for `host:port`: the first applicable `--connect-to` override, else the
/// host itself. The name in TLS stays `host` either way.
fn connect_target(config: &DeliveryConfig, host: &str, port: u16) -> (String, u16) {
    match config.connect_to.iter().find(|c| c.applies(host, port)) {
        Some(c) => (
            c.addr.clone().unwrap_or_else(|| host.to_owned()),
            c.addr_port.unwrap_or(port),
        ),
        None => (host.to_owned(), port),
    }
}

async fn connect(
    config: &DeliveryConfig,
    host: &str,
    port: u16,
) -> Result<TcpStream, DeliveryError> {
    let (addr, port) = connect_target(config, host, port);
    let target = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    match TcpStream::connect(&target).await {
        Ok(tcp) => Ok(tcp),
        Err(source) => Err(DeliveryError::Connect { target, source }),
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, DeliveryError> {
    ServerName::try_from(host.to_owned()).map_err(|source| DeliveryError::ServerName {
        host: host.to_owned(),
        source,
    })
}

/// Splits `https://host[:port]/path` into host (lower case, IPv6 without brackets), port
/// and the request target (path and query, at least `/`).
fn parse_https(uri: &str) -> Result<(String, u16, String), DeliveryError> {
    let parsed: Uri = uri.parse().map_err(|source| DeliveryError::InvalidUri {
        uri: uri.to_owned(),
        source,
    })?;
    if !parsed
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Err(DeliveryError::NotHttps {
            uri: uri.to_owned(),
        });
    }
    let host = parsed
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| DeliveryError::NoHost {
            uri: uri.to_owned(),
        })?;
    let path = match parsed.path() {
        "" => "/",
        path => path,
    };
    let target = match parsed.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    Ok((
        host.to_ascii_lowercase(),
        parsed.port_u16().unwrap_or(443),
        target,
    ))
}

/// POSTs a gzip report to an `https:` rua (RFC 8460 §5.4). Any 2xx is success.
pub async fn post_https(
    config: &DeliveryConfig,
    uri: &str,
    gzipped: &[u8],
) -> Result<u16, DeliveryError> {
    let (host, port, target) = parse_https(uri)?;
    let attempt = async {
        let tcp = connect(config, &host, port).await?;
        let _ = tcp.set_nodelay(true);
        let connector = tls_connector(config, config.insecure_https)?;
        let tls = connector
            .connect(server_name(&host)?, tcp)
            .await
            .map_err(|source| DeliveryError::Tls {
                host: host.clone(),
                source,
            })?;
        let http = |source| DeliveryError::Http {
            host: host.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        let host_header = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let request = hyper::Request::post(target.as_str())
            .header(HOST, host_header)
            .header(
                USER_AGENT,
                concat!("mta-sts-tlsrpt/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONTENT_TYPE, "application/tlsrpt+gzip")
            .header(CONTENT_LENGTH, gzipped.len())
            .header(CONNECTION, "close")
            .body(Full::new(Bytes::copy_from_slice(gzipped)));
        // The parts were checked by `parse_https`; a failure here is a malformed URI.
        let request = request.map_err(|_| DeliveryError::NoHost {
            uri: uri.to_owned(),
        })?;
        // One request per connection, driven in this task beside the request (as the policy
        // fetcher does); only the status line matters, so the body is never read.
        let mut conn = std::pin::pin!(conn);
        let exchange = sender.send_request(request);
        let mut exchange = std::pin::pin!(exchange);
        let response = tokio::select! {
            biased;
            response = &mut exchange => response,
            _ = &mut conn => exchange.await,
        }
        .map_err(http)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(DeliveryError::Status {
                uri: uri.to_owned(),
                status,
            })
        }
    };
    tokio::time::timeout(config.timeout, attempt)
        .await
        .map_err(|_| DeliveryError::Timeout {
            target: uri.to_owned(),
        })?
}

/// Splits the relay setting `HOST:PORT` (`[IPv6]:PORT`).
fn parse_relay(relay: &str) -> Result<(&str, u16), DeliveryError> {
    relay
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().ok()?,
            ))
        })
        .ok_or_else(|| DeliveryError::BadRelay {
            relay: relay.to_owned(),
        })
}

/// STARTTLS parameters for the relay: its name is verified (RFC 3207 §4.1) against the
/// platform's roots plus [`DeliveryConfig::extra_roots`], TLS 1.2 or later, with ring.
fn relay_tls(
    config: &DeliveryConfig,
    relay: &str,
    host: &str,
) -> Result<TlsParameters, DeliveryError> {
    let smtp = |source| DeliveryError::Smtp {
        relay: relay.to_owned(),
        source,
    };
    let mut builder = TlsParameters::builder(host.to_owned());
    for root in &config.extra_roots {
        builder = builder.add_root_certificate(Certificate::from_der(root.to_vec()).map_err(smtp)?);
    }
    builder.build_rustls().map_err(smtp)
}

/// Submits a message to the configured relay (RFC 5321), with STARTTLS if configured.
///
/// lettre's [`AsyncSmtpTransport`] expresses every rule this needs: the EHLO name
/// ([`DeliveryConfig::helo`]), connecting to a `--connect-to` address while the TLS name
/// stays the relay's (`builder_dangerous(addr)` plus [`TlsParameters`] for the host),
/// STARTTLS required when configured and never attempted otherwise ([`Tls::Required`] /
/// [`Tls::None`]), dot-stuffing, and 4xx/5xx classes. It is built without its connection
/// pool: one session per message, closed with QUIT.
pub async fn send_mail(
    config: &DeliveryConfig,
    from: &str,
    to: &str,
    message: &[u8],
) -> Result<String, DeliveryError> {
    let relay = config.relay.as_deref().ok_or(DeliveryError::NoRelay)?;
    let (host, port) = parse_relay(relay)?;
    let address = |address: &str| {
        address.parse().map_err(|source| DeliveryError::Address {
            address: address.to_owned(),
            source,
        })
    };
    let envelope =
        Envelope::new(Some(address(from)?), vec![address(to)?]).map_err(DeliveryError::Envelope)?;
    let (addr, addr_port) = connect_target(config, host, port);
    let tls = if config.relay_starttls {
        Tls::Required(relay_tls(config, relay, host)?)
    } else {
        Tls::None
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr)
        .port(addr_port)
        .hello_name(ClientId::Domain(config.helo.clone()))
        .timeout(Some(config.timeout))
        .tls(tls)
        .build();
    let accepted = tokio::time::timeout(config.timeout, transport.send_raw(&envelope, message))
        .await
        .map_err(|_| DeliveryError::Timeout {
            target: format!("SMTP relay {relay}"),
        })?
        .map_err(|source| DeliveryError::Smtp {
            relay: relay.to_owned(),
            source,
        })?;
    Ok(accepted.message().collect::<Vec<_>>().join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_uris() {
        assert_eq!(
            parse_https("https://reports.example.com/tlsrpt").unwrap(),
            ("reports.example.com".into(), 443, "/tlsrpt".into())
        );
        assert_eq!(
            parse_https("HTTPS://r.example:8443").unwrap(),
            ("r.example".into(), 8443, "/".into())
        );
        assert!(parse_https("http://r.example/").unwrap_err().is_permanent());
        assert_eq!(
            parse_https("https://[2001:db8::1]:8443/r?x=1").unwrap(),
            ("2001:db8::1".into(), 8443, "/r?x=1".into())
        );
    }

    #[test]
    fn relays() {
        assert_eq!(parse_relay("127.0.0.1:25").unwrap(), ("127.0.0.1", 25));
        assert_eq!(parse_relay("[::1]:587").unwrap(), ("::1", 587));
        assert!(parse_relay("relay.example").unwrap_err().is_permanent());
    }
}
