//! The policy host probe (RFC 8461 §3.3): one `GET /.well-known/mta-sts.txt` over TLS with
//! SNI `mta-sts.<domain>`, recording what a sender would see instead of stopping at the
//! first problem: addresses, TLS version, certificate and verdict, status, `Location`,
//! `Content-Type`, body size and response time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use mta_sts_net::dns::DnsOutcome;
use mta_sts_net::policy_fetch::{POLICY_PATH, USER_AGENT_VALUE};
use serde::Serialize;

use super::{Addresses, ProbeError, ProbeErrorKind, Target, client};
use crate::tls::{ProbeTls, TlsSession};

/// Everything the policy host probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyHostProbe {
    /// `mta-sts.<domain>`.
    pub host: String,
    /// Its A/AAAA records.
    pub addresses: Addresses,
    /// Where the probe connected (after `--connect-to`).
    pub connected_to: Option<SocketAddr>,
    /// The TLS session, when the handshake completed.
    pub tls: Option<TlsSession>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// Bytes of body read (at most the limit + 1).
    pub size: Option<u64>,
    /// Whether the body exceeded the limit.
    pub too_large: bool,
    /// The body, when status 200 and within the limit.
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
    /// Milliseconds from connecting to the end of the body.
    pub elapsed_ms: u64,
    /// Why the probe stopped early.
    pub error: Option<ProbeError>,
}

/// Probes `host` (`mta-sts.<domain>`).
pub async fn probe(
    tls: &ProbeTls,
    target: &Target,
    addresses: Addresses,
    timeout: Duration,
    max_body: usize,
) -> PolicyHostProbe {
    let mut out = PolicyHostProbe {
        host: target.host.clone(),
        addresses,
        connected_to: None,
        tls: None,
        status: None,
        location: None,
        content_type: None,
        size: None,
        too_large: false,
        body: None,
        elapsed_ms: 0,
        error: None,
    };
    let (elapsed_ms, error) = super::timed(
        timeout,
        "no complete answer",
        exchange(tls, target, &mut out, max_body),
    )
    .await;
    out.elapsed_ms = elapsed_ms;
    out.error = error;
    out
}

async fn exchange(
    tls: &ProbeTls,
    target: &Target,
    out: &mut PolicyHostProbe,
    max_body: usize,
) -> Result<(), ProbeError> {
    let mut connection = client::connect(
        tls,
        target,
        &out.addresses,
        &mut out.connected_to,
        &mut out.tls,
    )
    .await?;
    let sender = &mut connection.sender;
    let http = client::http_error;
    let result = async {
        // RFC 8461 §3.3: no HTTP caching, no conditional headers.
        let request = hyper::Request::get(POLICY_PATH)
            .header(HOST, &target.host)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeError::new(ProbeErrorKind::Http, e.to_string()))?;
        let response = sender.send_request(request).await.map_err(http)?;
        out.status = Some(response.status().as_u16());
        out.location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        out.content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut body = response.into_body();
        let mut buf = Vec::new();
        // The body is counted on the stream, whatever Content-Length says (RFC 8461 §3.3).
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(http)?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > max_body {
                    out.too_large = true;
                    break;
                }
            }
        }
        out.size = Some(buf.len() as u64);
        if !out.too_large {
            out.body = Some(buf);
        }
        Ok(())
    }
    .await;
    drop(connection);
    result
}

/// The addresses of a host from its A and AAAA answers.
pub fn addresses(
    v4: DnsOutcome<std::net::Ipv4Addr>,
    v6: DnsOutcome<std::net::Ipv6Addr>,
) -> Addresses {
    let mut list: Vec<IpAddr> = v4.records().iter().map(|ip| IpAddr::V4(*ip)).collect();
    list.extend(v6.records().iter().map(|ip| IpAddr::V6(*ip)));
    let failure = match (&v4, &v6) {
        (DnsOutcome::Failure { message, .. }, _) | (_, DnsOutcome::Failure { message, .. })
            if list.is_empty() =>
        {
            Some(message.clone())
        }
        _ => None,
    };
    Addresses {
        list,
        dns_error: failure,
    }
}
