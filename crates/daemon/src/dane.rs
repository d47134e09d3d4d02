//! The DANE check behind `dane = "defer"` (RFC 8461 §2, RFC 7672 §2.2).
//!
//! **DNSSEC.** The daemon does not validate DNSSEC itself. It asks the configured resolver
//! (`[resolver] nameservers`, else the first `nameserver` of `/etc/resolv.conf`) with the AD
//! bit set in the query (RFC 6840 §5.7) and the EDNS DO bit, and trusts the AD bit of the
//! response (RFC 4035 §3.2.3). That is only sound when the resolver is a *validating*
//! resolver on the same host (e.g. unbound on 127.0.0.1), as Postfix's own DANE support
//! requires (`smtp_dns_support_level = dnssec`). `[resolver] dane_require_ad = false` turns
//! the AD requirement off: for tests against an unsigned test zone only.
//!
//! **Decision (RFC 7672 §2.2).** DANE applies per MX host: a host with a secure, usable
//! TLSA RRset must be authenticated with DANE, a host without one is contacted with
//! opportunistic TLS. Postfix's `dane-only` level, which is the only DANE reply a policy map
//! can give for a whole destination, *requires* usable TLSA records for every MX host and
//! skips the others. So the verdict is [`DaneVerdict::Usable`] only when
//!
//! 1. the MX RRset is secure (AD) — RFC 7672 §2.2.1: with an insecure MX RRset DANE does not
//!    apply; no MX records at all means the domain itself is the one host (RFC 5321 §5.1);
//! 2. **every** MX host has a secure TLSA RRset at `_25._tcp.<host>` (RFC 7672 §3) with at
//!    least one usable record: usage DANE-TA(2) or DANE-EE(3) (PKIX usages 0/1 are unusable
//!    for SMTP, RFC 7672 §3.1.3), selector 0/1, matching type 0/1/2 (RFC 6698 §2.1).
//!
//! When only some MX hosts have usable TLSA records the verdict is
//! [`DaneVerdict::NotUsable`] and the MTA-STS answer stands: answering `dane-only` would
//! make the hosts without TLSA undeliverable, which neither RFC asks for. CNAME expansion of
//! MX host names (RFC 7672 §2.2.2) is not attempted: such hosts count as without TLSA.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use mta_sts::Domain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::answer::DaneVerdict;

/// Why one DNS question got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum DaneError {
    /// No name server is configured or found in `/etc/resolv.conf`.
    #[error("no DNS server for DANE checks: set [resolver] nameservers")]
    NoServer,
    /// The name is not a DNS name.
    #[error("`{0}` is not a DNS name")]
    Name(String),
    /// Sending, receiving or decoding failed.
    #[error("DNS query for {name} failed: {message}")]
    Query {
        /// The name asked.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error code other than NXDOMAIN.
    #[error("DNS query for {name} answered {rcode}")]
    Rcode {
        /// The name asked.
        name: String,
        /// The response code.
        rcode: String,
    },
    /// No answer in time.
    #[error("DNS query for {name} timed out")]
    Timeout {
        /// The name asked.
        name: String,
    },
}

/// One DNS answer: records of the asked type and whether the resolver vouched for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer section records of the asked type.
    pub records: Vec<RData>,
    /// The AD bit of the response.
    pub authentic: bool,
}

/// A DNS client for the DANE check: MX and TLSA queries with AD and DO set.
#[derive(Debug, Clone)]
pub struct DaneClient {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    require_ad: bool,
}

impl DaneClient {
    /// A client asking `servers` (empty: the `nameserver` lines of `/etc/resolv.conf`).
    /// `require_ad = false` accepts unsigned answers (tests only).
    pub fn new(servers: &[SocketAddr], timeout: Duration, require_ad: bool) -> Self {
        let servers = if servers.is_empty() {
            system_nameservers()
        } else {
            servers.to_vec()
        };
        DaneClient {
            servers,
            timeout,
            require_ad,
        }
    }

    /// The servers asked.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The DANE verdict for `domain` (see the module documentation).
    pub async fn check(&self, domain: &Domain) -> DaneVerdict {
        match self.check_inner(domain).await {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::debug!(%domain, %error, "DANE check failed; MTA-STS answer stands");
                DaneVerdict::NotUsable
            }
        }
    }

    async fn check_inner(&self, domain: &Domain) -> Result<DaneVerdict, DaneError> {
        let mx = self.query(domain.as_str(), RecordType::MX).await?;
        if !self.trusted(&mx) {
            tracing::debug!(%domain, "MX RRset not DNSSEC-validated: DANE does not apply");
            return Ok(DaneVerdict::NotUsable);
        }
        let mut hosts: Vec<String> = mx
            .records
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some(name_text(&mx.exchange)),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            // RFC 5321 §5.1: no MX, the domain is the implicit MX.
            hosts.push(domain.as_str().to_owned());
        }
        if hosts.iter().any(|h| h.is_empty()) {
            // Null MX (RFC 7505): no mail at all; nothing for DANE to govern.
            return Ok(DaneVerdict::NotUsable);
        }
        let mut checks = tokio::task::JoinSet::new();
        for host in hosts {
            let client = self.clone();
            checks.spawn(async move {
                let answer = client
                    .query(&format!("_25._tcp.{host}"), RecordType::TLSA)
                    .await;
                let usable = matches!(&answer, Ok(a) if client.trusted(a) && a.records.iter().any(usable_tlsa));
                (host, usable)
            });
        }
        while let Some(joined) = checks.join_next().await {
            let Ok((host, usable)) = joined else {
                return Ok(DaneVerdict::NotUsable);
            };
            if !usable {
                tracing::debug!(%domain, mx = %host, "MX host without usable DNSSEC-validated TLSA records");
                return Ok(DaneVerdict::NotUsable);
            }
        }
        Ok(DaneVerdict::Usable)
    }

    fn trusted(&self, answer: &Answer) -> bool {
        answer.authentic || !self.require_ad
    }

    /// Asks `name`/`rtype` with RD, AD and DO set; UDP first, TCP when truncated. NXDOMAIN
    /// and NODATA are an empty answer (whose AD bit still tells whether the denial is
    /// authenticated).
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DaneError> {
        let server = *self.servers.first().ok_or(DaneError::NoServer)?;
        let mut fqdn = Name::from_ascii(name).map_err(|_| DaneError::Name(name.to_owned()))?;
        fqdn.set_fqdn(true);
        let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.metadata.authentic_data = true;
        message.add_query(Query::query(fqdn, rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232).set_dnssec_ok(true);
        message.set_edns(edns);
        let err = |message: String| DaneError::Query {
            name: name.to_owned(),
            message,
        };
        let bytes = message.to_vec().map_err(|e| err(e.to_string()))?;
        let exchange = async {
            let mut response = udp_exchange(server, &bytes)
                .await
                .map_err(|e| err(e.to_string()))?;
            if response.metadata.truncation {
                response = tcp_exchange(server, &bytes)
                    .await
                    .map_err(|e| err(e.to_string()))?;
            }
            Ok::<Message, DaneError>(response)
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DaneError::Timeout {
                name: name.to_owned(),
            })??;
        if response.metadata.id != message.metadata.id {
            return Err(err("response id does not match the query".to_owned()));
        }
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            other => {
                return Err(DaneError::Rcode {
                    name: name.to_owned(),
                    rcode: other.to_string(),
                });
            }
        }
        Ok(Answer {
            records: response
                .answers
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect(),
            authentic: response.metadata.authentic_data,
        })
    }
}

/// RFC 7672 §3.1.3 / RFC 6698 §2.1: a TLSA record SMTP can use.
fn usable_tlsa(data: &RData) -> bool {
    match data {
        RData::TLSA(t) => {
            let usage: u8 = t.cert_usage.into();
            let selector: u8 = t.selector.into();
            let matching: u8 = t.matching.into();
            matches!(usage, 2 | 3) && selector <= 1 && matching <= 2
        }
        _ => false,
    }
}

/// A DNS message id that an off-path attacker cannot guess (RFC 5452 §9.2): from the
/// system's random source, not from the clock (which is no entropy, and is the injected
/// clock's business only where rules depend on time).
fn rand_id() -> u16 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut id = [0u8; 2];
    if SystemRandom::new().fill(&mut id).is_err() {
        // The OS random source failed: a hash with this process's random keys still
        // differs per query and is not predictable from outside.
        use std::hash::{BuildHasher, Hasher};
        return std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u16;
    }
    u16::from_be_bytes(id)
}

async fn udp_exchange(server: SocketAddr, query: &[u8]) -> std::io::Result<Message> {
    let bind: SocketAddr = match server.ip() {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).await?;
    Message::from_vec(buf.get(..n).unwrap_or_default())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> std::io::Result<Message> {
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// The `nameserver` addresses of `/etc/resolv.conf` (port 53).
fn system_nameservers() -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

fn name_text(name: &Name) -> String {
    let text = name.to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_ascii_lowercase()
}
