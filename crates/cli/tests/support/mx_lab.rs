//! The MTA lab's network, shared by the `postfix310` and `other_mtas` targets: the test
//! world's DNS on port 53 and STARTTLS MX servers on port 25, each target in its own
//! 127.0.x range so that they run side by side.

use std::net::{Ipv4Addr, SocketAddr};

use mta_sts_testkit::{CertKind, SmtpConfig, SmtpServer, World};

/// Binds the world's zones on port 53 of the first free `127.0.<dns_net>.x` address.
pub fn dns_on_port_53(world: &World, dns_net: u8) -> Ipv4Addr {
    (1..50)
        .map(|last| Ipv4Addr::new(127, 0, dns_net, last))
        .find(|ip| {
            world
                .dns()
                .also_listen(world.handle(), SocketAddr::from((*ip, 53)))
                .is_ok()
        })
        .unwrap_or_else(|| panic!("no free port 53 on 127.0.{dns_net}.1-49"))
}

/// Starts one SMTP server with STARTTLS per `mx` (host name, certificate) on port 25, each
/// on its own `127.0.<mx_net>.x` address with an A record in the world's DNS.
pub fn start_mx(world: &World, mx: &[(&str, CertKind)], mx_net: u8) -> Vec<SmtpServer> {
    let mut servers = Vec::new();
    for (host, kind) in mx {
        // The first address whose port 25 is free (tests run in parallel: try to bind
        // rather than check first).
        let (ip, smtp) = (1u8..250)
            .map(|n| Ipv4Addr::new(127, 0, mx_net, n))
            .find_map(|ip| {
                let config = SmtpConfig::new(host)
                    .starttls(*kind)
                    .listen(SocketAddr::from((ip, 25)));
                world.start_smtp(config).ok().map(|smtp| (ip, smtp))
            })
            .unwrap_or_else(|| panic!("no free port 25 on 127.0.{mx_net}.1-249"));
        world.dns().set_a(host, &[ip]);
        servers.push(smtp);
    }
    servers
}
