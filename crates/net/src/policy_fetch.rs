//! The HTTPS policy fetch (RFC 8461 §3.2, §3.3).
//!
//! `GET https://mta-sts.<domain>/.well-known/mta-sts.txt` over TLS ≥ 1.2 with SNI = the
//! policy host, WebPKI validation (platform roots plus an optional CA file), no redirects,
//! no HTTP caching, status 200 only, `text/plain` only (switchable), a body capped on the
//! stream, one total timeout.
//!
//! The client is tokio `TcpStream` →
//! tokio-rustls → hyper 1 `client::conn::http1` rather than reqwest, because reqwest's
//! `resolve()` override ignores the port, so curl-style `--connect-to HOST:PORT:ADDR:PORT`
//! cannot be implemented through it. Owning the connection also makes every rule explicit:
//! one request per connection, no redirect machinery at all, no cache, body frames counted
//! here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use hyper_util::rt::TokioIo;
use mta_sts::Domain;
use rustls::{CertificateError, PeerIncompatible};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::connect_to::ConnectTo;
use crate::dns::{Dns, DnsOutcome};
use crate::tls::{TlsSetupError, Trust, tls_client_config};

/// The RFC 8461 §3.3 path.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
/// Default body cap: RFC 8461 §3.3's "64 kilobytes", read as 65536 bytes.
pub const DEFAULT_MAX_BODY: usize = 65536;
/// The largest timeout accepted: RFC 8461 §3.3 suggests one minute.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// `mta-sts/<version>`.
pub const USER_AGENT_VALUE: &str = concat!("mta-sts/", env!("CARGO_PKG_VERSION"));

/// Fetch settings.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Trusted CAs.
    pub trust: Trust,
    /// Connection overrides, first match wins.
    pub connect_to: Vec<ConnectTo>,
    /// Total time for connect + TLS + request + body; clamped to [`MAX_TIMEOUT`].
    pub timeout: Duration,
    /// Reject media types other than `text/plain` (RFC 8461 §3.2 SHOULD).
    pub check_media_type: bool,
    /// Largest body accepted, in bytes.
    pub max_body: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            trust: Trust::Platform,
            connect_to: Vec::new(),
            timeout: Duration::from_secs(10),
            check_media_type: true,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// A successful fetch: status 200, acceptable media type, body within the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body as received.
    pub body: Vec<u8>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
}

/// Why a policy fetch failed (RFC 8461 §3.3). The resolver maps each variant to its RFC 8460
/// result type; the cause is kept as the source where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// TCP connection to the policy host failed (or its name did not resolve).
    #[error("cannot connect to {host}: {message}")]
    Connect {
        /// The policy host.
        host: String,
        /// What went wrong (which address, or why the name did not resolve).
        message: String,
        /// The socket error of the last address tried, if it came to that.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The policy host only offers TLS below 1.2 (RFC 8461 §3.3 requires TLS 1.2 or later).
    #[error("{host} does not support TLS 1.2 or later")]
    TlsVersion {
        /// The policy host.
        host: String,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The certificate has expired or is not yet valid (RFC 8461 §3.3).
    #[error("the certificate of {host} is expired or not yet valid")]
    CertificateExpired {
        /// The policy host.
        host: String,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The certificate does not chain to a trusted root (RFC 8461 §3.3).
    #[error("the certificate of {host} is not issued by a trusted CA")]
    CertificateUntrusted {
        /// The policy host.
        host: String,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The certificate has no DNS-ID matching the policy host (RFC 8461 §3.3).
    #[error("the certificate of {host} is not valid for that name")]
    CertificateWrongName {
        /// The policy host.
        host: String,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// Another certificate problem (revoked, bad encoding, unsupported algorithm, …).
    #[error("the certificate of {host} is not acceptable ({message})")]
    Certificate {
        /// The policy host.
        host: String,
        /// The certificate error as rustls names it.
        message: String,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// Another TLS handshake failure (alert, no common cipher, unknown SNI, …).
    #[error("the TLS handshake with {host} failed: {source}")]
    Tls {
        /// The policy host.
        host: String,
        /// The handshake error (a rustls error inside, when rustls raised it).
        #[source]
        source: std::io::Error,
    },
    /// The whole fetch took longer than the configured timeout (RFC 8461 §3.3).
    #[error("fetching the policy from {host} took longer than {}s", after.as_secs_f32())]
    Timeout {
        /// The policy host.
        host: String,
        /// The limit that was hit.
        after: Duration,
    },
    /// A 3xx answer: redirects are never followed (RFC 8461 §3.3).
    #[error("the policy host answered {status} redirect")]
    Redirect {
        /// The status code.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },
    /// A status other than 200 (RFC 8461 §3.3).
    #[error("the policy host answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// The media type is not `text/plain` (RFC 8461 §3.2).
    #[error("the policy is not served as text/plain")]
    MediaType {
        /// The Content-Type header, if any.
        content_type: Option<String>,
    },
    /// The body exceeds the size limit (RFC 8461 §3.3).
    #[error("the policy body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An HTTP protocol error (malformed or truncated response).
    #[error("the policy host sent a broken HTTP response: {0}")]
    Http(#[source] hyper::Error),
    /// The request could not be built (a host name that is no valid header value).
    #[error("cannot build the request: {0}")]
    Request(#[source] hyper::http::Error),
}

/// Fetches policies.
#[derive(Clone)]
pub struct Fetcher {
    connector: TlsConnector,
    config: Arc<FetchConfig>,
    dns: Dns,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Builds a fetcher; `dns` resolves policy hosts (and `--connect-to` names).
    pub fn new(config: FetchConfig, dns: Dns) -> Result<Fetcher, TlsSetupError> {
        let tls = tls_client_config(&config.trust)?;
        let mut config = config;
        config.timeout = config.timeout.min(MAX_TIMEOUT);
        Ok(Fetcher {
            connector: TlsConnector::from(tls),
            config: Arc::new(config),
            dns,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Fetches the policy of `domain` (RFC 8461 §3.3), all within the total timeout.
    pub async fn fetch(&self, domain: &Domain) -> Result<Fetched, FetchError> {
        let host = domain.policy_host();
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.fetch_inner(&host)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                host,
                after: timeout,
            }),
        }
    }

    async fn targets(&self, host: &str) -> Result<Vec<SocketAddr>, FetchError> {
        // RFC 8461 §3.3: port 443, unless a --connect-to override redirects the connection.
        let (target, port) = match self.config.connect_to.iter().find(|c| c.applies(host, 443)) {
            Some(c) => (
                c.addr.clone().unwrap_or_else(|| host.to_string()),
                c.addr_port.unwrap_or(443),
            ),
            None => (host.to_string(), 443),
        };
        if let Ok(ip) = target.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let connect_err = |message: String| FetchError::Connect {
            host: host.to_string(),
            message,
            source: None,
        };
        let name = Domain::parse(&target).map_err(|e| connect_err(e.to_string()))?;
        let (v4, v6) = tokio::join!(self.dns.a(&name), self.dns.aaaa(&name));
        let mut addrs: Vec<SocketAddr> = v4
            .records()
            .iter()
            .map(|ip| SocketAddr::new(IpAddr::V4(*ip), port))
            .collect();
        addrs.extend(
            v6.records()
                .iter()
                .map(|ip| SocketAddr::new(IpAddr::V6(*ip), port)),
        );
        if addrs.is_empty() {
            let why = match v4 {
                DnsOutcome::Failure { message, .. } => format!("resolving {target}: {message}"),
                _ => format!("{target} has no A or AAAA record"),
            };
            return Err(connect_err(why));
        }
        Ok(addrs)
    }

    async fn fetch_inner(&self, host: &str) -> Result<Fetched, FetchError> {
        let addrs = self.targets(host).await?;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some((addr, e)),
            }
        }
        let tcp = match tcp {
            Some(tcp) => tcp,
            None => {
                let (message, source) = match last {
                    Some((addr, e)) => (format!("{addr}: {e}"), Some(e)),
                    None => ("no address".to_string(), None),
                };
                return Err(FetchError::Connect {
                    host: host.to_string(),
                    message,
                    source,
                });
            }
        };
        let _ = tcp.set_nodelay(true);
        // SNI and the name validated are always the policy host (RFC 8461 §3.3).
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| FetchError::Connect {
                host: host.to_string(),
                message: e.to_string(),
                source: None,
            })?;
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_error(host, e))?;

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(FetchError::Http)?;
        // The connection is driven in this task, beside the request, rather than spawned:
        // one connection carries one request, and a spawned task would cost a task and a
        // cross-task wake-up per read. Dropping it closes the connection.
        let mut conn = std::pin::pin!(conn);
        let exchange = self.exchange(host, &mut sender);
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            biased;
            result = &mut exchange => result,
            // The connection ended (the server closed it, or an I/O error, which hyper also
            // hands to the response or body): what was received is still read out.
            _ = &mut conn => exchange.await,
        }
    }

    async fn exchange(
        &self,
        host: &str,
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    ) -> Result<Fetched, FetchError> {
        // RFC 8461 §3.3: no HTTP caching, so no If-None-Match / If-Modified-Since.
        let request = hyper::Request::get(POLICY_PATH)
            .header(HOST, host)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(FetchError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(FetchError::Http)?;
        let status = response.status().as_u16();
        // RFC 8461 §3.3: 3xx MUST NOT be followed; only 200 is valid.
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(FetchError::Redirect { status, location });
        }
        if status != 200 {
            return Err(FetchError::Status { status });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // RFC 8461 §3.2: SHOULD validate that the media type is text/plain.
        if self.config.check_media_type && !content_type.as_deref().is_some_and(is_text_plain) {
            return Err(FetchError::MediaType { content_type });
        }
        let max = self.config.max_body;
        let too_large = || FetchError::TooLarge { limit: max };
        // RFC 8461 §3.3: size limit. An honest Content-Length above it fails early; the
        // stream count below catches lying or absent lengths.
        if let Some(len) = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            && len > max as u64
        {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(FetchError::Http)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Fetched {
            body: buf,
            content_type,
        })
    }
}

/// Whether a `Content-Type` value is `text/plain` (RFC 8461 §3.2): type and subtype compared
/// case-insensitively (RFC 2045 §5.1), parameters such as `charset` ignored.
///
/// ```
/// use mta_sts_net::policy_fetch::is_text_plain;
/// assert!(is_text_plain("TEXT/PLAIN; charset=utf-8"));
/// assert!(!is_text_plain("text/plain+"));
/// ```
pub fn is_text_plain(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("text/plain")
}

fn tls_error(host: &str, e: std::io::Error) -> FetchError {
    let host = host.to_string();
    let Some(tls) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
    else {
        return FetchError::Tls { host, source: e };
    };
    use rustls::Error as R;
    match &tls {
        R::InvalidCertificate(cert) => match cert {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                FetchError::CertificateExpired { host, source: tls }
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                FetchError::CertificateWrongName { host, source: tls }
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                FetchError::CertificateUntrusted { host, source: tls }
            }
            other => FetchError::Certificate {
                host,
                message: format!("{other:?}"),
                source: tls,
            },
        },
        R::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        )
        | R::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
            FetchError::TlsVersion { host, source: tls }
        }
        _ => FetchError::Tls { host, source: e },
    }
}
