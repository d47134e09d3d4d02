//! Shared helpers: a checker pointed at a testkit world.

#![allow(dead_code)]

use std::time::Duration;

use mta_sts_checker::{CheckConfig, Checker};
use mta_sts_net::{ConnectTo, Trust};
use mta_sts_testkit::{DomainBuilder, World};

/// A domain with everything right: TXT, enforce policy for `mail.<d>`, max_age two weeks,
/// MX `mail.<d>`, TLS-RPT to `tlsrpt@<d>`.
pub fn good(d: DomainBuilder) -> DomainBuilder {
    good_with(d, "enforce", 1_209_600)
}

/// [`good`] with another mode and max_age.
pub fn good_with(d: DomainBuilder, mode: &str, max_age: u64) -> DomainBuilder {
    let name = d.name().to_string();
    d.sts_id("1")
        .policy(&policy(&name, mode, max_age))
        .mx(10, &format!("mail.{name}"))
        .tlsrpt(&format!("v=TLSRPTv1; rua=mailto:tlsrpt@{name}"))
}

/// The policy text of [`good_with`].
pub fn policy(name: &str, mode: &str, max_age: u64) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: mail.{name}\nmax_age: {max_age}\n")
}

/// `--connect-to` entries: every served policy host, and every SMTP server on port 25.
pub fn connect_to(world: &World, smtp_hosts: &[String]) -> Vec<ConnectTo> {
    let mut list: Vec<ConnectTo> = world
        .connect_to_args()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    for host in smtp_hosts {
        if let Some(addr) = world.smtp_addr(host)
            && let Ok(c) = format!("{host}:25:{}:{}", addr.ip(), addr.port()).parse()
        {
            list.push(c);
        }
    }
    list
}

/// A configuration for the world: its DNS, its CA only, short timeouts.
pub fn config(world: &World, smtp_hosts: &[String]) -> CheckConfig {
    CheckConfig {
        nameservers: vec![world.dns_addr()],
        trust: Trust::Only(world.ca_file().to_path_buf()),
        connect_to: connect_to(world, smtp_hosts),
        timeout: Duration::from_secs(3),
        smtp_timeout: Duration::from_secs(3),
        dns_cache_size: 0,
        ..CheckConfig::default()
    }
}

/// A checker for `config`.
pub fn checker(config: CheckConfig) -> Checker {
    match Checker::new(config) {
        Ok(c) => c,
        Err(e) => panic!("checker: {e}"),
    }
}
