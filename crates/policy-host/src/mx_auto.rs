//! `mx = "auto"`: the domain's current MX records become the policy's `mx` lines.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use mta_sts::{Domain, MxPattern};
use mta_sts_net::dns::{DnsConfig, DnsSetupError, build_resolver};

/// A resolver for the configured nameservers, or the system configuration (the workspace's
/// one resolver builder, with its defaults for timeout and answer cache).
pub(crate) fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    build_resolver(&DnsConfig {
        nameservers: nameservers.to_vec(),
        ..DnsConfig::default()
    })
    .map_err(|e| match e {
        DnsSetupError::SystemConfig(e) => format!(
            "cannot read the system DNS configuration: {e}; set `nameservers` in serve.toml"
        ),
        e => e.to_string(),
    })
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
