//! Network probes: the policy host over HTTPS ([`https`]), MX hosts over SMTP with
//! STARTTLS ([`smtp`]) and `https:` TLS-RPT destinations ([`rua`]). They only record what
//! they see; [`crate::analyze`] turns that into findings. The two HTTPS probes connect
//! through one helper (`client`): TCP, the TLS handshake, then HTTP/1.1.

mod client;
pub mod https;
pub mod rua;
pub mod smtp;

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use tokio::net::TcpStream;

/// The A/AAAA addresses of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Addresses {
    /// IPv4 then IPv6 addresses.
    pub list: Vec<IpAddr>,
    /// The lookup error, when the lookup failed and found nothing.
    pub dns_error: Option<String>,
}

/// Where a probe goes: the name validated and, with `--connect-to`, where it really
/// connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name (SNI and the name validated).
    pub host: String,
    /// The port a sender uses (443 or 25).
    pub port: u16,
    /// `--connect-to` destinations replacing the host's addresses.
    pub connect_to: Option<Vec<SocketAddr>>,
}

impl Target {
    /// The addresses to try, in order.
    pub fn socket_addrs(&self, addresses: &Addresses) -> Vec<SocketAddr> {
        match &self.connect_to {
            Some(list) => list.clone(),
            None => addresses
                .list
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.port))
                .collect(),
        }
    }
}

/// What kind of failure stopped a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeErrorKind {
    /// No address to connect to.
    NoAddress,
    /// TCP connection failed.
    Connect,
    /// The whole probe took too long.
    Timeout,
    /// The peer offers no TLS 1.2 or later.
    TlsVersion,
    /// Another TLS handshake failure.
    Tls,
    /// HTTP protocol error.
    Http,
    /// SMTP dialogue error (greeting, EHLO).
    Smtp,
    /// STARTTLS advertised but refused.
    StarttlsRefused,
}

/// Why a probe stopped early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeError {
    /// What kind of failure.
    pub kind: ProbeErrorKind,
    /// The message.
    pub message: String,
}

impl ProbeError {
    /// A probe error.
    pub fn new(kind: ProbeErrorKind, message: impl Into<String>) -> ProbeError {
        ProbeError {
            kind,
            message: message.into(),
        }
    }
}

/// Runs one probe exchange within `timeout`: the milliseconds it took, and its error, if
/// any (a time-out is a [`ProbeErrorKind::Timeout`] saying "`what` within N s").
pub(crate) async fn timed(
    timeout: std::time::Duration,
    what: &str,
    exchange: impl std::future::Future<Output = Result<(), ProbeError>>,
) -> (u64, Option<ProbeError>) {
    let start = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, exchange).await;
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(ProbeError::new(
            ProbeErrorKind::Timeout,
            format!("{what} within {:.1} s", timeout.as_secs_f64()),
        )),
    };
    (elapsed_ms, error)
}

/// Connects to the first address that accepts.
pub(crate) async fn connect_any(
    addrs: &[SocketAddr],
) -> Result<(TcpStream, SocketAddr), ProbeError> {
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok((tcp, *addr)),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(ProbeError::new(ProbeErrorKind::Connect, last))
}
