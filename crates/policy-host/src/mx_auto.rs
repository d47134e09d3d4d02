//! `mx = "auto"`: the domain's current MX records become the policy's `mx` lines.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use mta_sts::{Domain, MxPattern, PatternError};
use mta_sts_net::dns::{DnsConfig, DnsSetupError, build_resolver};

/// Why `mx = "auto"` found no usable MX hosts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MxError {
    /// The system DNS configuration cannot be read and serve.toml names no nameservers.
    #[error("{0}; set `nameservers` in serve.toml")]
    SystemConfig(#[source] DnsSetupError),
    /// The resolver could not be built from the configured nameservers.
    #[error(transparent)]
    Resolver(DnsSetupError),
    /// The MX query failed (no answer, SERVFAIL, a timeout, …).
    #[error("MX lookup of {domain} failed: {source}")]
    Lookup {
        /// The domain asked about.
        domain: Domain,
        /// The resolver's error.
        #[source]
        source: NetError,
    },
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    #[error(
        "{domain} publishes a null MX (RFC 7505): it accepts no mail; use mode = \"none\" or list mx explicitly"
    )]
    NullMx {
        /// The domain.
        domain: Domain,
    },
    /// The domain has no MX records.
    #[error("{domain} has no MX records; list mx explicitly instead of \"auto\"")]
    NoMx {
        /// The domain.
        domain: Domain,
    },
    /// An MX host name is not a valid `mx` pattern (RFC 8461 §3.2).
    #[error("MX host {host} of {domain} is not usable as an mx pattern: {source}")]
    Pattern {
        /// The MX host name.
        host: String,
        /// The domain.
        domain: Domain,
        /// Why.
        #[source]
        source: PatternError,
    },
}

/// A resolver for the configured nameservers, or the system configuration (the workspace's
/// one resolver builder, with its defaults for timeout and answer cache).
pub(crate) fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, MxError> {
    build_resolver(&DnsConfig {
        nameservers: nameservers.to_vec(),
        ..DnsConfig::default()
    })
    .map_err(|e| match e {
        e @ DnsSetupError::SystemConfig(_) => MxError::SystemConfig(e),
        e => MxError::Resolver(e),
    })
}

/// The MX host names of `domain` as `mx` patterns, sorted and deduplicated so that the
/// policy (and its id) does not change when DNS rotates the order of the answer.
pub(crate) async fn lookup(
    resolver: &TokioResolver,
    domain: &Domain,
) -> Result<Vec<MxPattern>, MxError> {
    let fqdn = format!("{}.", domain.as_str());
    let lookup = resolver
        .mx_lookup(fqdn.as_str())
        .await
        .map_err(|source| MxError::Lookup {
            domain: domain.clone(),
            source,
        })?;
    let mut hosts: Vec<String> = Vec::new();
    for record in lookup.answers() {
        if let RData::MX(mx) = &record.data {
            let name = mx.exchange.to_ascii();
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                // RFC 7505 null MX: the domain accepts no mail.
                return Err(MxError::NullMx {
                    domain: domain.clone(),
                });
            }
            hosts.push(name);
        }
    }
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return Err(MxError::NoMx {
            domain: domain.clone(),
        });
    }
    hosts
        .into_iter()
        .map(|host| match MxPattern::parse(&host) {
            Ok(pattern) => Ok(pattern),
            Err(source) => Err(MxError::Pattern {
                host,
                domain: domain.clone(),
                source,
            }),
        })
        .collect()
}
