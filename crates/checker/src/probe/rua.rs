//! The `https:` TLS-RPT destination probe (RFC 8460 §3, §5.4): can a reporting MTA POST a
//! report to this URI?
//!
//! Without submitting a report: the probe completes a TLS handshake with SNI = the URI's
//! host (the certificate is judged afterwards with WebPKI rules, as for the policy host),
//! then sends `POST <path>` with `Content-Type: application/tlsrpt+gzip` and an **empty
//! body**. An empty body is no report (RFC 8460 §5.4 wants a gzip-compressed report), so no
//! receiver stores anything; what matters is how the server answers:
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | accepts (RFC 8460 §5.4: "a successful response") |
//! | 400, 408, 411, 413, 415, 422, 429, other 4xx not below | accepts: the path takes POSTs and refused only this (empty) body |
//! | 404, 410 | nothing at that path |
//! | 405 | the path does not take POST |
//! | 401, 403, 407 | wants credentials senders never send |
//! | 3xx | redirects: senders are not required to follow redirects of a POST |
//! | 5xx | server error |
//!
//! See [`accepts`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use mta_sts_net::policy_fetch::USER_AGENT_VALUE;
use serde::Serialize;

use super::{Addresses, ProbeError, ProbeErrorKind, Target, client};
use crate::tls::{ProbeTls, TlsSession};

/// The media type of the probe's (empty) POST: the one RFC 8460 §5.4 says reports use.
pub const PROBE_CONTENT_TYPE: &str = "application/tlsrpt+gzip";

/// The parts of an `https:` URI the probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUri {
    /// The host (lower case; an IPv6 literal without brackets).
    pub host: String,
    /// The port (443 when absent).
    pub port: u16,
    /// The path and query, `/` when absent.
    pub path: String,
}

impl HttpsUri {
    /// Splits `https://[userinfo@]host[:port][/path][?query][#fragment]` with `http::Uri`
    /// (RFC 3986); `None` when the scheme is not `https` or the authority is unusable.
    pub fn parse(uri: &str) -> Option<HttpsUri> {
        // `http::Uri` takes no fragment: the part after `#` is never sent anyway.
        let uri = uri.trim().split('#').next().unwrap_or_default();
        let parsed: hyper::Uri = uri.parse().ok()?;
        if !parsed.scheme_str()?.eq_ignore_ascii_case("https") {
            return None;
        }
        let host = parsed.host()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        let port = match parsed.port_u16() {
            None => 443,
            Some(0) => return None,
            Some(port) => port,
        };
        let path = match parsed.path_and_query().map(|pq| pq.as_str()) {
            None | Some("") => "/".to_string(),
            Some(pq) if pq.starts_with('?') => format!("/{pq}"),
            Some(pq) => pq.to_string(),
        };
        Some(HttpsUri {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The path without its query, as a server routes it.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }
}

/// What the probe of one `https:` destination saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuaHttpsProbe {
    /// The TLS session, when the handshake completed.
    pub tls: Option<TlsSession>,
    /// The HTTP status of the empty POST.
    pub status: Option<u16>,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// Milliseconds from connecting to the answer.
    pub elapsed_ms: u64,
    /// Why the probe stopped early.
    pub error: Option<ProbeError>,
}

/// How an answer to the empty POST is judged (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The path takes POSTs.
    Accepts,
    /// The path does not take reports; with the reason in words.
    Rejects(&'static str),
}

/// Whether `status`, the answer to an empty `POST` of `application/tlsrpt+gzip`, shows a
/// path that takes report POSTs (RFC 8460 §5.4).
pub fn accepts(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Accepts,
        404 | 410 => Answer::Rejects("nothing at this path"),
        405 => Answer::Rejects("this path does not take POST requests"),
        401 | 403 | 407 => Answer::Rejects("it wants credentials, which reporting MTAs never send"),
        400..=499 => Answer::Accepts,
        300..=399 => Answer::Rejects("it redirects, and reporting MTAs need not follow redirects"),
        500..=599 => Answer::Rejects("server error"),
        _ => Answer::Rejects("not an HTTP status a reporting MTA understands"),
    }
}

/// POSTs an empty body to `path` on `target` (SNI and certificate name = `target.host`).
pub async fn probe(
    tls: &ProbeTls,
    target: &Target,
    addresses: &Addresses,
    path: &str,
    timeout: Duration,
) -> RuaHttpsProbe {
    let mut out = RuaHttpsProbe {
        tls: None,
        status: None,
        location: None,
        elapsed_ms: 0,
        error: None,
    };
    let (elapsed_ms, error) = super::timed(
        timeout,
        "no answer",
        exchange(tls, target, addresses, path, &mut out),
    )
    .await;
    out.elapsed_ms = elapsed_ms;
    out.error = error;
    out
}

async fn exchange(
    tls: &ProbeTls,
    target: &Target,
    addresses: &Addresses,
    path: &str,
    out: &mut RuaHttpsProbe,
) -> Result<(), ProbeError> {
    let mut connected_to = None;
    let mut connection =
        client::connect(tls, target, addresses, &mut connected_to, &mut out.tls).await?;
    let sender = &mut connection.sender;
    let http = client::http_error;
    let host_header = if target.port == 443 {
        target.host.clone()
    } else if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let result = async {
        let request = hyper::Request::post(path)
            .header(HOST, host_header)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONTENT_TYPE, PROBE_CONTENT_TYPE)
            .header(CONTENT_LENGTH, "0")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeError::new(ProbeErrorKind::Http, format!("`{path}`: {e}")))?;
        let response = sender.send_request(request).await.map_err(http)?;
        out.status = Some(response.status().as_u16());
        out.location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // Read (and drop) a little of the body so the server sees an orderly close.
        let mut body = response.into_body();
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                read += data.len();
            }
            if read > 64 * 1024 {
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(connection);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = |s: &str| HttpsUri::parse(s);
        assert_eq!(
            u("https://Reports.Example.com/v1/tlsrpt?x=1#f"),
            Some(HttpsUri {
                host: "reports.example.com".into(),
                port: 443,
                path: "/v1/tlsrpt?x=1".into()
            })
        );
        assert_eq!(
            u("https://r.example:8443"),
            Some(HttpsUri {
                host: "r.example".into(),
                port: 8443,
                path: "/".into()
            })
        );
        assert_eq!(
            u("https://[2001:db8::1]:444/x"),
            Some(HttpsUri {
                host: "2001:db8::1".into(),
                port: 444,
                path: "/x".into()
            })
        );
        assert_eq!(
            u("https://user@r.example/a?b=1").map(|u| (u.host.clone(), u.route().to_owned())),
            Some(("r.example".into(), "/a".into()))
        );
        assert_eq!(u("https://r.example:0/"), None);
        assert_eq!(u("https:///x"), None);
        assert_eq!(u("http://r.example/"), None);
    }

    #[test]
    fn answers() {
        for ok in [200, 201, 202, 204, 400, 408, 411, 413, 415, 422, 429] {
            assert_eq!(accepts(ok), Answer::Accepts, "{ok}");
        }
        for bad in [
            301, 302, 307, 308, 401, 403, 404, 405, 407, 410, 500, 502, 503,
        ] {
            assert!(matches!(accepts(bad), Answer::Rejects(_)), "{bad}");
        }
    }
}
