//! curl-style `--connect-to HOST:PORT:ADDR:PORT` overrides: reach a host at another address
//! while SNI and certificate validation still use the host's name (tests, labs, a policy
//! host behind a load balancer).

use std::net::IpAddr;
use std::str::FromStr;

/// A curl-style `--connect-to HOST:PORT:ADDR:PORT` override: connections for HOST:PORT go to
/// ADDR:PORT instead, while SNI and certificate validation still use HOST.
///
/// An empty HOST or PORT matches any; an empty ADDR or PORT keeps the original.
///
/// ```
/// use mta_sts_net::ConnectTo;
/// let c: ConnectTo = "mta-sts.example.com:443:127.0.0.1:8443".parse().unwrap();
/// assert!(c.applies("mta-sts.example.com", 443));
/// let any: ConnectTo = ":443:[::1]:8443".parse().unwrap();
/// assert!(any.applies("mta-sts.other.test", 443));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    /// Host to match (lower case); `None` matches every host.
    pub host: Option<String>,
    /// Port to match; `None` matches every port.
    pub port: Option<u16>,
    /// Where to connect instead (IP or name); `None` keeps the host.
    pub addr: Option<String>,
    /// Port to connect to; `None` keeps the port.
    pub addr_port: Option<u16>,
}

impl ConnectTo {
    /// Whether this override applies to `host:port`.
    pub fn applies(&self, host: &str, port: u16) -> bool {
        self.host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host))
            && self.port.is_none_or(|p| p == port)
    }
}

/// Why a `--connect-to` value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not HOST:PORT:ADDR:PORT (e.g. mta-sts.example.com:443:127.0.0.1:8443)")]
pub struct ConnectToError(pub String);

impl FromStr for ConnectTo {
    type Err = ConnectToError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConnectToError(s.to_string());
        let (host, rest) = s.split_once(':').ok_or_else(bad)?;
        let (port, rest) = rest.split_once(':').ok_or_else(bad)?;
        // ADDR may be a bracketed IPv6 literal; the last ':' separates the port.
        let (addr, addr_port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port_of = |p: &str| -> Result<Option<u16>, ConnectToError> {
            if p.is_empty() {
                Ok(None)
            } else {
                p.parse().map(Some).map_err(|_| bad())
            }
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        if addr.contains(':') && addr.parse::<IpAddr>().is_err() {
            return Err(bad());
        }
        Ok(ConnectTo {
            host: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
            port: port_of(port)?,
            addr: (!addr.is_empty()).then(|| addr.to_string()),
            addr_port: port_of(addr_port)?,
        })
    }
}
