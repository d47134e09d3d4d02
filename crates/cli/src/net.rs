//! Network options shared by the commands that look things up (docs/design.md §4): `--dns`,
//! `--ca-file`, `--connect-to`, `--timeout`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mta_sts_net::ConnectTo;
use mta_sts_resolver::ResolverConfig;

/// Where to resolve and whom to trust.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// DNS server to ask instead of the system's, as IP or IP:PORT (repeatable).
    #[arg(long = "dns", value_name = "IP[:PORT]", value_parser = parse_nameserver)]
    pub dns: Vec<SocketAddr>,
    /// Extra CA certificates (PEM) to trust for policy hosts, besides the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Connect to ADDR:PORT whenever HOST:PORT is asked for, like curl; the name validated
    /// stays HOST (repeatable).
    #[arg(long = "connect-to", value_name = "HOST:PORT:ADDR:PORT")]
    pub connect_to: Vec<ConnectTo>,
    /// Give up on a DNS lookup or HTTPS fetch after this many seconds (at most 60).
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_timeout)]
    pub timeout: f64,
}

impl NetArgs {
    /// The resolver configuration these options describe.
    pub fn resolver_config(&self) -> ResolverConfig {
        ResolverConfig {
            nameservers: self.dns.clone(),
            ca_file: self.ca_file.clone(),
            connect_to: self.connect_to.clone(),
            timeout: Duration::from_secs_f64(self.timeout),
            ..ResolverConfig::default()
        }
    }
}

pub(crate) fn parse_nameserver(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{value}` is not IP or IP:PORT (e.g. 127.0.0.1:53 or [::1]:5353)"))
}

pub(crate) fn parse_timeout(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 60.0 => Ok(secs),
        _ => Err(format!(
            "`{value}` is not a number of seconds between 0 and 60 (RFC 8461 §3.3 suggests at most one minute)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_forms() {
        assert_eq!(
            parse_nameserver("127.0.0.1"),
            Ok("127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("[::1]:5353"),
            Ok("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_nameserver("::1"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_nameserver("dns.example").is_err());
        assert!(
            parse_timeout("0").is_err()
                && parse_timeout("61").is_err()
                && parse_timeout("x").is_err()
        );
    }
}
