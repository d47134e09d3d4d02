//! `mx = "auto"`: the domain's current MX records become the policy's `mx` lines.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use mta_sts::{Domain, MxPattern};

/// A resolver for the configured nameservers, or the system configuration.
pub(crate) fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    if nameservers.is_empty() {
        return TokioResolver::builder_tokio()
            .map(|b| b.build())
            .map_err(|e| {
                format!(
                    "cannot read the system DNS configuration: {e}; set `nameservers` in serve.toml"
                )
            })?
            .map_err(|e| format!("cannot build a DNS resolver: {e}"));
    }
    let servers = nameservers
        .iter()
        .map(|addr| {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            ns
        })
        .collect();
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .build()
    .map_err(|e| format!("cannot build a DNS resolver: {e}"))
}

/// The MX host names of `domain` as `mx` patterns, sorted and deduplicated so that the
/// policy (and its id) does not change when DNS rotates the order of the answer.
pub(crate) async fn lookup(
    resolver: &TokioResolver,
    domain: &Domain,
) -> Result<Vec<MxPattern>, String> {
    let fqdn = format!("{}.", domain.as_str());
    let lookup = resolver
        .mx_lookup(fqdn.as_str())
        .await
        .map_err(|e| format!("MX lookup of {domain} failed: {e}"))?;
    let mut hosts: Vec<String> = Vec::new();
    for record in lookup.answers() {
        if let RData::MX(mx) = &record.data {
            let name = mx.exchange.to_ascii();
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                // RFC 7505 null MX: the domain accepts no mail.
                return Err(format!(
                    "{domain} publishes a null MX (RFC 7505): it accepts no mail; use mode = \"none\" or list mx explicitly"
                ));
            }
            hosts.push(name);
        }
    }
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return Err(format!(
            "{domain} has no MX records; list mx explicitly instead of \"auto\""
        ));
    }
    hosts
        .iter()
        .map(|h| {
            MxPattern::parse(h)
                .map_err(|e| format!("MX host {h} of {domain} is not usable as an mx pattern: {e}"))
        })
        .collect()
}
