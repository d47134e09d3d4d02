//! DNS lookups with hickory-resolver 0.26: the `_mta-sts` TXT record (RFC 8461 §3.1) plus the
//! small TXT / MX / A / AAAA / TLSA helpers the daemon and the checker need.
//!
//! Every answer is one of three outcomes, never conflated (RFC 8461 §3.1 and §5.1: a failed
//! lookup is not the absence of a record, so a cached policy stays in force): records found,
//! [`DnsOutcome::NoRecord`] (NXDOMAIN or NODATA, with the negative TTL), or
//! [`DnsOutcome::Failure`] (SERVFAIL, REFUSED, timeout, I/O).
//!
//! [`build_resolver`] is the one place a hickory resolver is configured: the resolver
//! cache, the checker and the policy host's `mx = "auto"` all build theirs here.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig as HickoryConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use mta_sts::Domain;

/// Kind of DNS failure (never "no record": see [`DnsOutcome::NoRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DnsFailureKind {
    /// The server answered SERVFAIL.
    ServFail,
    /// The server answered REFUSED.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// A socket or connection error.
    Io,
    /// Any other error (malformed answer, other response code, …).
    Other,
}

/// Why a DNS client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsSetupError {
    /// No name servers were given and the system configuration (`/etc/resolv.conf`) could
    /// not be read.
    #[error("cannot read the system DNS configuration: {0}")]
    SystemConfig(#[source] NetError),
    /// hickory refused the configuration.
    #[error("cannot build a DNS resolver: {0}")]
    Build(#[source] NetError),
}

/// How to reach DNS.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers (UDP with TCP fallback). Empty: the system configuration
    /// (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Upper bound for one lookup, all retries included.
    pub timeout: Duration,
    /// Entries in hickory's TTL-respecting answer cache; 0 disables it (tests that change
    /// zones mid-run).
    pub cache_size: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            cache_size: 4096,
        }
    }
}

/// The result of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsOutcome<T> {
    /// Records of the asked type (CNAMEs followed and filtered out).
    Found {
        /// The records.
        records: Vec<T>,
        /// The smallest TTL among them, in seconds.
        ttl: u32,
    },
    /// NXDOMAIN or NODATA: the name has no record of this type.
    NoRecord {
        /// The negative-caching TTL from the SOA, when the server sent one.
        negative_ttl: Option<u32>,
    },
    /// The lookup failed; nothing is known about the record.
    Failure {
        /// What kind of failure.
        kind: DnsFailureKind,
        /// The resolver's message.
        message: String,
    },
}

impl<T> DnsOutcome<T> {
    /// The records when found, else an empty list.
    pub fn records(&self) -> &[T] {
        match self {
            DnsOutcome::Found { records, .. } => records,
            _ => &[],
        }
    }
}

/// One TLSA record (RFC 6698).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage (0–3).
    pub usage: u8,
    /// Selector (0 full certificate, 1 SubjectPublicKeyInfo).
    pub selector: u8,
    /// Matching type (0 exact, 1 SHA-256, 2 SHA-512).
    pub matching: u8,
    /// Association data.
    pub data: Vec<u8>,
}

/// The one hickory resolver of the workspace: `config.nameservers` (UDP with TCP fallback, each
/// on its own port) or, when empty, the system configuration; one attempt bounded by
/// `config.timeout`, hickory's TTL-respecting answer cache of `config.cache_size` entries,
/// and no search domains (every name asked is absolute).
pub fn build_resolver(config: &DnsConfig) -> Result<TokioResolver, DnsSetupError> {
    let mut builder = if config.nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(DnsSetupError::SystemConfig)?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                // hickory 0.26: a NameServerConfig holds one connection per protocol.
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut ns.connections {
                    connection.port = addr.port();
                }
                ns
            })
            .collect();
        let hickory = HickoryConfig::from_parts(None, vec![], servers);
        TokioResolver::builder_with_config(hickory, TokioRuntimeProvider::default())
    };
    let opts = builder.options_mut();
    opts.timeout = config.timeout;
    opts.attempts = 1;
    opts.cache_size = config.cache_size;
    // Names are always absolute here: never append a search domain.
    opts.ndots = 0;
    builder.build().map_err(DnsSetupError::Build)
}

/// A DNS client over hickory-resolver.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Builds a client over [`build_resolver`]. Fails only when the system configuration is
    /// wanted and unreadable.
    pub fn new(config: &DnsConfig) -> Result<Dns, DnsSetupError> {
        Ok(Dns {
            resolver: build_resolver(config)?,
            timeout: config.timeout,
        })
    }

    /// The hickory resolver underneath, for record types this client has no helper for.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The `_mta-sts.<domain>` TXT RRs, each RR's strings concatenated (RFC 8461 §3.1).
    /// CNAMEs are followed (RFC 8461 §3.1: senders MUST follow them).
    pub async fn sts_txt(&self, domain: &Domain) -> DnsOutcome<Vec<u8>> {
        self.txt(&domain.sts_record_name()).await
    }

    /// Any TXT name (e.g. `_smtp._tls.example.com`), each RR's strings concatenated.
    pub async fn txt(&self, name: &str) -> DnsOutcome<Vec<u8>> {
        self.lookup(name, RecordType::TXT, |data| match data {
            RData::TXT(txt) => Some(mta_sts::record::concat(&txt.txt_data)),
            _ => None,
        })
        .await
    }

    /// MX records of `domain` as (preference, exchange without the trailing dot).
    pub async fn mx(&self, domain: &Domain) -> DnsOutcome<(u16, String)> {
        self.lookup(domain.as_str(), RecordType::MX, |data| match data {
            RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange))),
            _ => None,
        })
        .await
    }

    /// IPv4 addresses of `host`.
    pub async fn a(&self, host: &Domain) -> DnsOutcome<Ipv4Addr> {
        self.lookup(host.as_str(), RecordType::A, |data| match data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// IPv6 addresses of `host`.
    pub async fn aaaa(&self, host: &Domain) -> DnsOutcome<Ipv6Addr> {
        self.lookup(host.as_str(), RecordType::AAAA, |data| match data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// TLSA records at `_<port>._tcp.<host>` (RFC 6698, RFC 7672).
    pub async fn tlsa(&self, host: &Domain, port: u16) -> DnsOutcome<Tlsa> {
        let name = format!("_{port}._tcp.{}", host.as_str());
        self.lookup(&name, RecordType::TLSA, |data| match data {
            RData::TLSA(t) => Some(Tlsa {
                usage: t.cert_usage.into(),
                selector: t.selector.into(),
                matching: t.matching.into(),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .await
    }

    async fn lookup<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> DnsOutcome<T> {
        let fqdn = match Name::from_ascii(name) {
            Ok(mut n) => {
                n.set_fqdn(true);
                n
            }
            Err(e) => {
                return DnsOutcome::Failure {
                    kind: DnsFailureKind::Other,
                    message: format!("`{name}` is not a DNS name: {e}"),
                };
            }
        };
        // The resolver has its own timeout; this bounds retries and TCP fallback too.
        let answer =
            match tokio::time::timeout(self.timeout, self.resolver.lookup(fqdn, rtype)).await {
                Ok(answer) => answer,
                Err(_) => {
                    return DnsOutcome::Failure {
                        kind: DnsFailureKind::Timeout,
                        message: format!("no answer within {:?}", self.timeout),
                    };
                }
            };
        match answer {
            Ok(lookup) => {
                // hickory 0.26 answers include the CNAME chain: keep the asked type only.
                let mut ttl = u32::MAX;
                let records: Vec<T> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .filter_map(|r| {
                        ttl = ttl.min(r.ttl);
                        pick(&r.data)
                    })
                    .collect();
                if records.is_empty() {
                    DnsOutcome::NoRecord { negative_ttl: None }
                } else {
                    DnsOutcome::Found { records, ttl }
                }
            }
            Err(e) => classify(e),
        }
    }
}

fn name_text(name: &Name) -> String {
    let text = name.to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

fn classify<T>(e: NetError) -> DnsOutcome<T> {
    match &e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => {
            match no.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => DnsOutcome::NoRecord {
                    negative_ttl: no.negative_ttl.or_else(|| no.soa.as_ref().map(|s| s.ttl)),
                },
                // A referral or anything odd without records: we know nothing.
                code => DnsOutcome::Failure {
                    kind: DnsFailureKind::Other,
                    message: format!("no records, response code {code}"),
                },
            }
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain)) => {
            DnsOutcome::NoRecord { negative_ttl: None }
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => DnsOutcome::Failure {
            kind: DnsFailureKind::ServFail,
            message: "SERVFAIL".into(),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => DnsOutcome::Failure {
            kind: DnsFailureKind::Refused,
            message: "REFUSED".into(),
        },
        NetError::Timeout => DnsOutcome::Failure {
            kind: DnsFailureKind::Timeout,
            message: "timed out".into(),
        },
        NetError::Io(_) | NetError::NoConnections => DnsOutcome::Failure {
            kind: DnsFailureKind::Io,
            message: e.to_string(),
        },
        _ => DnsOutcome::Failure {
            kind: DnsFailureKind::Other,
            message: e.to_string(),
        },
    }
}
