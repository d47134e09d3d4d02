//! [`World`]: DNS, policy host, SMTP servers and the test CA, running together.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use tokio::runtime::Handle;

use crate::Error;
use crate::ca::{Pki, TestCa};
use crate::dns::DnsServer;
use crate::https::{HostBehavior, HttpsServer};
use crate::runtime::TestRuntime;
use crate::smtp::{SmtpConfig, SmtpServer};

/// What to publish for one domain. Built by the closure given to
/// [`WorldBuilder::domain`] or [`World::add_domain`].
///
/// Nothing is published unless asked: a bare `DomainBuilder` is a domain without any
/// record (NXDOMAIN everywhere).
#[derive(Clone, Debug)]
pub struct DomainBuilder {
    name: String,
    sts_txt: Option<Vec<Vec<String>>>,
    policy: Option<HostBehavior>,
    mx: Vec<(u16, String)>,
    tlsrpt: Option<String>,
}

impl DomainBuilder {
    /// A builder for `name` that publishes nothing yet.
    pub fn new(name: &str) -> Self {
        DomainBuilder {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            sts_txt: None,
            policy: None,
            mx: Vec::new(),
            tlsrpt: None,
        }
    }

    /// The domain name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes `_mta-sts.<domain>` TXT as one RR with one string.
    pub fn sts_txt(mut self, value: &str) -> Self {
        self.sts_txt = Some(vec![vec![value.to_string()]]);
        self
    }

    /// Publishes `_mta-sts.<domain>` TXT as several RRs of several strings each.
    pub fn sts_txt_rrs(mut self, rrs: &[&[&str]]) -> Self {
        self.sts_txt = Some(
            rrs.iter()
                .map(|rr| rr.iter().map(|s| s.to_string()).collect())
                .collect(),
        );
        self
    }

    /// Publishes `_mta-sts.<domain>` TXT `v=STSv1; id=<id>;`.
    pub fn sts_id(self, id: &str) -> Self {
        self.sts_txt(&format!("v=STSv1; id={id};"))
    }

    /// Serves `policy` (200, `text/plain`, valid certificate) at `mta-sts.<domain>`,
    /// and publishes `mta-sts.<domain>` A 127.0.0.1.
    pub fn policy(self, policy: &str) -> Self {
        self.policy_behavior(HostBehavior::policy(policy))
    }

    /// Serves `mta-sts.<domain>` with `behavior` (and publishes its A 127.0.0.1).
    pub fn policy_behavior(mut self, behavior: HostBehavior) -> Self {
        self.policy = Some(behavior);
        self
    }

    /// Publishes an MX record (and A 127.0.0.1 for `host` when it lies under the domain).
    pub fn mx(mut self, preference: u16, host: &str) -> Self {
        self.mx.push((preference, host.to_ascii_lowercase()));
        self
    }

    /// Publishes `_smtp._tls.<domain>` TXT (TLS-RPT), e.g. `v=TLSRPTv1; rua=mailto:r@x`.
    pub fn tlsrpt(mut self, value: &str) -> Self {
        self.tlsrpt = Some(value.to_string());
        self
    }

    /// Everything at once: TXT `id=1`, a policy of `mode` listing `mx_hosts` with
    /// `max_age: 86400`, MX records for the hosts that are not wildcards (preference 10,
    /// 20, …), and A 127.0.0.1 for the policy host and those MX hosts.
    pub fn mta_sts(mut self, mode: &str, mx_hosts: &[&str]) -> Self {
        let mut policy = format!("version: STSv1\nmode: {mode}\n");
        for host in mx_hosts {
            policy.push_str(&format!("mx: {host}\n"));
        }
        policy.push_str("max_age: 86400\n");
        let mut pref = 10;
        for host in mx_hosts.iter().filter(|h| !h.starts_with('*')) {
            self = self.mx(pref, host);
            pref += 10;
        }
        self.sts_id("1").policy(&policy)
    }

    /// [`DomainBuilder::mta_sts`] with `enforce` and MX `mail.<domain>`.
    pub fn enforce(self) -> Self {
        let mx = format!("mail.{}", self.name);
        self.mta_sts("enforce", &[&mx])
    }

    /// The policy host name, `mta-sts.<domain>`.
    pub fn policy_host(&self) -> String {
        format!("mta-sts.{}", self.name)
    }

    /// Publishes / serves what was asked.
    pub fn apply(&self, dns: &DnsServer, https: &HttpsServer) {
        let d = &self.name;
        if let Some(rrs) = &self.sts_txt {
            let rrs: Vec<Vec<&str>> = rrs
                .iter()
                .map(|rr| rr.iter().map(String::as_str).collect())
                .collect();
            let rrs: Vec<&[&str]> = rrs.iter().map(Vec::as_slice).collect();
            dns.set_txt(&format!("_mta-sts.{d}"), &rrs);
        }
        if let Some(behavior) = &self.policy {
            let host = self.policy_host();
            dns.set_a(&host, &[Ipv4Addr::LOCALHOST]);
            https.set(&host, behavior.clone());
        }
        if !self.mx.is_empty() {
            let mx: Vec<(u16, &str)> = self.mx.iter().map(|(p, h)| (*p, h.as_str())).collect();
            dns.set_mx(d, &mx);
            let suffix = format!(".{d}");
            for (_, host) in &self.mx {
                if host.ends_with(&suffix) {
                    dns.set_a(host, &[Ipv4Addr::LOCALHOST]);
                }
            }
        }
        if let Some(value) = &self.tlsrpt {
            dns.set_txt(&format!("_smtp._tls.{d}"), &[&[value.as_str()]]);
        }
    }
}

type DomainFn = Box<dyn FnOnce(DomainBuilder) -> DomainBuilder>;

/// Builds a [`World`]. Get one from [`World::builder`].
#[must_use]
#[derive(Default)]
pub struct WorldBuilder {
    domains: Vec<(String, DomainFn)>,
    smtp: Vec<SmtpConfig>,
    default_ttl: Option<u32>,
    negative_ttl: Option<u32>,
}

impl std::fmt::Debug for WorldBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldBuilder")
            .field("domains", &self.domains.len())
            .field("smtp", &self.smtp)
            .finish_non_exhaustive()
    }
}

impl WorldBuilder {
    /// Adds a domain, described by `describe`.
    pub fn domain(
        mut self,
        name: &str,
        describe: impl FnOnce(DomainBuilder) -> DomainBuilder + 'static,
    ) -> Self {
        self.domains.push((name.to_string(), Box::new(describe)));
        self
    }

    /// Adds `count` generated domains `d0.bench.test`, `d1.bench.test`, … each with
    /// [`DomainBuilder::enforce`] (TXT, policy, MX `mail.dN.bench.test`, A records).
    pub fn bulk(mut self, count: usize) -> Self {
        for i in 0..count {
            self = self.domain(&bulk_name(i), DomainBuilder::enforce);
        }
        self
    }

    /// Starts an SMTP server with `config` along with the world.
    pub fn smtp(mut self, config: SmtpConfig) -> Self {
        self.smtp.push(config);
        self
    }

    /// TTL of records set without one (default 300).
    pub fn default_ttl(mut self, ttl: u32) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// TTL of negative answers (SOA TTL and minimum; default 300).
    pub fn negative_ttl(mut self, ttl: u32) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Starts every server.
    ///
    /// # Panics
    /// If a socket cannot be bound or a certificate cannot be made (see
    /// [`WorldBuilder::try_start`]).
    pub fn start(self) -> World {
        match self.try_start() {
            Ok(world) => world,
            Err(e) => panic!("testkit: cannot start the world: {e}"),
        }
    }

    /// Starts every server, or says why it could not.
    pub fn try_start(self) -> Result<World, Error> {
        let runtime = TestRuntime::start()?;
        let pki = Arc::new(Pki::new()?);
        let dns = DnsServer::start(runtime.handle())?;
        if let Some(ttl) = self.default_ttl {
            dns.set_default_ttl(ttl);
        }
        if let Some(ttl) = self.negative_ttl {
            dns.set_negative_ttl(ttl);
        }
        let https = HttpsServer::start(runtime.handle(), pki.clone())?;
        let dir = tempfile::Builder::new()
            .prefix("mta-sts-testkit")
            .tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        pki.ca().write_pem(&ca_file)?;
        let world = World {
            runtime,
            pki,
            dns,
            https,
            smtp: Mutex::new(HashMap::new()),
            ca_file,
            _dir: dir,
        };
        for (name, describe) in self.domains {
            describe(DomainBuilder::new(&name)).apply(&world.dns, &world.https);
        }
        for config in self.smtp {
            world.start_smtp(config)?;
        }
        Ok(world)
    }
}

/// The name of generated domain `i` of [`WorldBuilder::bulk`]: `d{i}.bench.test`.
pub fn bulk_name(i: usize) -> String {
    format!("d{i}.bench.test")
}

/// A running world: authoritative DNS, the HTTPS policy host, SMTP servers and the test
/// CA, on loopback, on a runtime of their own (usable from sync tests, async tests of
/// any flavour, and tests that spawn the `mta-sts` binary). Dropping it stops everything.
///
/// ```
/// use mta_sts_testkit::{HostBehavior, World};
///
/// let world = World::builder()
///     .domain("good.test", |d| {
///         d.sts_txt("v=STSv1; id=1;")
///             .policy("version: STSv1\nmode: enforce\nmx: mail.good.test\nmax_age: 86400\n")
///             .mx(10, "mail.good.test")
///     })
///     .domain("quick.test", |d| d.enforce())
///     .start();
///
/// // Point a client at it:
/// let _dns = world.dns_addr(); // UDP and TCP
/// let _args = world.connect_to_args(); // ["mta-sts.good.test:443:127.0.0.1:PORT", …]
/// let _ca = world.ca_file(); // PEM for --ca-file
///
/// // Change it mid-test:
/// world.dns().set_txt("_mta-sts.good.test", &[&["v=STSv1; id=2;"]]);
/// world.https().set("mta-sts.good.test", HostBehavior::status(404));
/// assert!(world.https().requests("mta-sts.good.test").is_empty());
/// ```
pub struct World {
    // Dropped first: stops the servers before the CA file goes away.
    runtime: TestRuntime,
    pki: Arc<Pki>,
    dns: DnsServer,
    https: HttpsServer,
    smtp: Mutex<HashMap<String, SmtpServer>>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("dns", &self.dns.addr())
            .field("https", &self.https.addr())
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl World {
    /// A builder for a world.
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    /// An empty world (servers running, no zones, no hosts).
    pub fn empty() -> World {
        World::builder().start()
    }

    /// The DNS server (to mutate zones and read the query log).
    pub fn dns(&self) -> &DnsServer {
        &self.dns
    }

    /// The HTTPS policy host (to change behaviours and read the request log).
    pub fn https(&self) -> &HttpsServer {
        &self.https
    }

    /// Address of the DNS server, UDP and TCP on the same port.
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns.addr()
    }

    /// Address of the policy host (all `mta-sts.*` hosts, selected by SNI).
    pub fn https_addr(&self) -> SocketAddr {
        self.https.addr()
    }

    /// `HOST:443:127.0.0.1:PORT` for one policy host (curl's `--connect-to` syntax).
    pub fn connect_to(&self, host: &str) -> String {
        let addr = self.https.addr();
        format!("{host}:443:{}:{}", addr.ip(), addr.port())
    }

    /// [`World::connect_to`] for every host the policy host serves, sorted.
    pub fn connect_to_args(&self) -> Vec<String> {
        let mut hosts = self.https.host_names();
        hosts.sort();
        hosts.iter().map(|h| self.connect_to(h)).collect()
    }

    /// `:443:127.0.0.1:PORT`: curl's form with an empty host, meaning every host.
    pub fn connect_to_any(&self) -> String {
        let addr = self.https.addr();
        format!(":443:{}:{}", addr.ip(), addr.port())
    }

    /// Path of a PEM file holding the test CA certificate (for `--ca-file`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The test CA certificate in PEM.
    pub fn ca_pem(&self) -> String {
        self.pki.ca().pem()
    }

    /// The trusted test CA.
    pub fn ca(&self) -> &TestCa {
        self.pki.ca()
    }

    /// The CA, the untrusted CA and the certificate cache.
    pub fn pki(&self) -> &Arc<Pki> {
        &self.pki
    }

    /// A rustls client configuration trusting only the test CA.
    ///
    /// # Panics
    /// Never in practice (the CA certificate is well-formed).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        match self.pki.ca().client_config() {
            Ok(config) => config,
            Err(e) => panic!("testkit: client config: {e}"),
        }
    }

    /// Handle of the world's runtime, to run more servers of your own on it.
    pub fn handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// Publishes a domain while the world runs.
    pub fn add_domain(&self, name: &str, describe: impl FnOnce(DomainBuilder) -> DomainBuilder) {
        describe(DomainBuilder::new(name)).apply(&self.dns, &self.https);
    }

    /// Starts an SMTP server; it is then also reachable by [`World::smtp`] by host name.
    pub fn start_smtp(&self, config: SmtpConfig) -> Result<SmtpServer, Error> {
        let hostname = config.hostname.clone();
        let server = SmtpServer::start(self.runtime.handle(), self.pki.clone(), config)?;
        self.smtp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hostname, server.clone());
        Ok(server)
    }

    /// The SMTP server started for `hostname`.
    pub fn smtp(&self, hostname: &str) -> Option<SmtpServer> {
        self.smtp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hostname.to_ascii_lowercase())
            .cloned()
    }

    /// Address of the SMTP server started for `hostname`.
    pub fn smtp_addr(&self, hostname: &str) -> Option<SocketAddr> {
        self.smtp(hostname).map(|s| s.addr())
    }
}
