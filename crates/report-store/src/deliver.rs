//! Report delivery (RFC 8460 §5): looking up where reports go, POSTing them over HTTPS
//! (§5.4) and mailing them through an SMTP relay (§5.3). Small hand-written clients over tokio
//! and rustls (ring provider only).
//!
//! # Mail and RFC 8460 §3, §5.3
//!
//! - Report mail is handed to a configured **relay** (e.g. the local Postfix on
//!   `127.0.0.1:25`, optionally with STARTTLS). RFC 8460 §5.3 requires a valid DKIM signature
//!   of the reporting domain (no `l=`, `h=` including `tls-report-domain:tls-report-submitter`,
//!   key record preferably `s=tlsrpt`): either configure a key ([`crate::dkim`], `mta-sts
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

use std::sync::Arc;
use std::time::Duration;

use mta_sts_net::ConnectTo;
use mta_sts_net::dns::{Dns, DnsOutcome};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tlsrpt::Rua;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Retrying will not help (SMTP 5xx, malformed URI).
    pub permanent: bool,
    /// What went wrong.
    pub message: String,
}

fn transient(message: impl Into<String>) -> DeliveryError {
    DeliveryError {
        permanent: false,
        message: message.into(),
    }
}

fn permanent(message: impl Into<String>) -> DeliveryError {
    DeliveryError {
        permanent: true,
        message: message.into(),
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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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

fn tls_connector(config: &DeliveryConfig, insecure: bool) -> Result<TlsConnector, DeliveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| permanent(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if insecure {
        Arc::new(AnyCert(provider.clone()))
    } else {
        // The platform's roots plus the configured extra CAs, as the policy fetcher does.
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                config.extra_roots.iter().cloned(),
                provider,
            )
            .map_err(|e| permanent(format!("TLS roots: {e}")))?,
        )
    };
    let client = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(client)))
}

async fn connect(
    config: &DeliveryConfig,
    host: &str,
    port: u16,
) -> Result<TcpStream, DeliveryError> {
    let (addr, port) = match config.connect_to.iter().find(|c| c.applies(host, port)) {
        Some(c) => (
            c.addr.clone().unwrap_or_else(|| host.to_owned()),
            c.addr_port.unwrap_or(port),
        ),
        None => (host.to_owned(), port),
    };
    let target = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    TcpStream::connect(&target)
        .await
        .map_err(|e| transient(format!("connect to {target}: {e}")))
}

fn server_name(host: &str) -> Result<ServerName<'static>, DeliveryError> {
    ServerName::try_from(host.to_owned()).map_err(|e| permanent(format!("`{host}`: {e}")))
}

/// Splits `https://host[:port]/path` into host, port and path.
fn parse_https(uri: &str) -> Result<(String, u16, String), DeliveryError> {
    let rest = uri
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .and_then(|_| uri.get(8..))
        .ok_or_else(|| permanent(format!("`{uri}` is not an https: URI")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
            Ok(p) => (h, p),
            Err(_) => return Err(permanent(format!("`{uri}`: bad port"))),
        },
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(permanent(format!("`{uri}` has no host")));
    }
    Ok((host.to_ascii_lowercase(), port, path))
}

/// POSTs a gzip report to an `https:` rua (RFC 8460 §5.4). Any 2xx is success.
pub async fn post_https(
    config: &DeliveryConfig,
    uri: &str,
    gzipped: &[u8],
) -> Result<u16, DeliveryError> {
    let (host, port, path) = parse_https(uri)?;
    let attempt = async {
        let tcp = connect(config, &host, port).await?;
        let connector = tls_connector(config, config.insecure_https)?;
        let mut tls = connector
            .connect(server_name(&host)?, tcp)
            .await
            .map_err(|e| transient(format!("TLS with {host}: {e}")))?;
        let host_header = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: mta-sts-tlsrpt/{}\r\n\
             Content-Type: application/tlsrpt+gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            gzipped.len()
        );
        let io = |e: std::io::Error| transient(format!("HTTPS {host}: {e}"));
        tls.write_all(head.as_bytes()).await.map_err(io)?;
        tls.write_all(gzipped).await.map_err(io)?;
        tls.flush().await.map_err(io)?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 1024];
        while !response.windows(2).any(|w| w == b"\r\n") && response.len() < 8192 {
            let n = tls.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..n]);
        }
        let status_line = String::from_utf8_lossy(&response);
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| transient(format!("{host}: no HTTP status line")))?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(transient(format!("{uri}: HTTP {status}")))
        }
    };
    tokio::time::timeout(config.timeout, attempt)
        .await
        .map_err(|_| transient(format!("{uri}: timed out")))?
}

/// A line-oriented SMTP client connection.
struct Smtp {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Smtp {
    async fn reply(&mut self) -> Result<(u16, String), DeliveryError> {
        let mut text = String::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    break String::from_utf8_lossy(&line).trim_end().to_owned();
                }
                if self.buf.len() > 65_536 {
                    return Err(transient("SMTP reply line too long"));
                }
                let mut chunk = [0u8; 1024];
                let n = self
                    .io
                    .read(&mut chunk)
                    .await
                    .map_err(|e| transient(format!("SMTP read: {e}")))?;
                if n == 0 {
                    return Err(transient("SMTP relay closed the connection"));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            };
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| transient(format!("bad SMTP reply `{line}`")))?;
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
            text.push('\n');
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), DeliveryError> {
        self.io
            .write_all(data)
            .await
            .map_err(|e| transient(format!("SMTP write: {e}")))?;
        self.io
            .flush()
            .await
            .map_err(|e| transient(format!("SMTP write: {e}")))
    }

    /// Sends a command and expects a reply of class `expect` (2 or 3).
    async fn command(&mut self, line: &str, expect: u16) -> Result<String, DeliveryError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.expect(line, expect).await
    }

    async fn expect(&mut self, what: &str, expect: u16) -> Result<String, DeliveryError> {
        let (code, text) = self.reply().await?;
        let verb = what.split([':', ' ']).next().unwrap_or(what);
        match code / 100 {
            c if c == expect => Ok(text),
            5 => Err(permanent(format!("{verb}: {code} {text}"))),
            _ => Err(transient(format!("{verb}: {code} {text}"))),
        }
    }
}

/// Dot-stuffs a message for DATA (RFC 5321 §4.5.2) and appends the terminator.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Submits a message to the configured relay (RFC 5321), with STARTTLS if configured.
pub async fn send_mail(
    config: &DeliveryConfig,
    from: &str,
    to: &str,
    message: &[u8],
) -> Result<String, DeliveryError> {
    let relay = config
        .relay
        .as_deref()
        .ok_or_else(|| permanent("no SMTP relay configured for mailto: reports (--relay)"))?;
    let (host, port) = relay
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().ok()?,
            ))
        })
        .ok_or_else(|| permanent(format!("relay `{relay}` is not HOST:PORT")))?;
    let attempt = async {
        let tcp = connect(config, host, port).await?;
        let mut smtp = Smtp {
            io: Box::new(tcp),
            buf: Vec::new(),
        };
        smtp.expect("greeting", 2).await?;
        let ehlo = format!("EHLO {}", config.helo);
        smtp.command(&ehlo, 2).await?;
        if config.relay_starttls {
            smtp.command("STARTTLS", 2).await?;
            let connector = tls_connector(config, false)?;
            let tls = connector
                .connect(server_name(host)?, smtp.io)
                .await
                .map_err(|e| transient(format!("STARTTLS with {host}: {e}")))?;
            smtp = Smtp {
                io: Box::new(tls),
                buf: Vec::new(),
            };
            smtp.command(&ehlo, 2).await?;
        }
        smtp.command(&format!("MAIL FROM:<{from}>"), 2).await?;
        smtp.command(&format!("RCPT TO:<{to}>"), 2).await?;
        smtp.command("DATA", 3).await?;
        smtp.send(&dot_stuff(message)).await?;
        let accepted = smtp.expect("end of DATA", 2).await?;
        let _ = smtp.command("QUIT", 2).await;
        Ok(accepted)
    };
    tokio::time::timeout(config.timeout, attempt)
        .await
        .map_err(|_| transient(format!("SMTP relay {relay}: timed out")))?
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
        assert!(parse_https("http://r.example/").unwrap_err().permanent);
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
    }
}
