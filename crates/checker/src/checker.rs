//! [`Checker`]: gathers the evidence for a domain (DNS, policy host, MX hosts, TLS-RPT) and
//! hands it to [`crate::analyze`]. One checker serves any number of domains concurrently
//! and shares what can be shared: DNS answers (hickory's TTL-respecting cache) and the
//! probe of each MX host:port (many domains use the same MX hosts).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use mta_sts::Domain;
use mta_sts_net::dns::{Dns, DnsConfig, DnsOutcome};
use mta_sts_net::{Clock, ConnectTo, DnsFailureKind, SystemClock, Trust};
use tokio::sync::OnceCell;

use crate::analyze::{
    self, Evidence, MxEntry, MxSet, RuaProblem, RuaProblemKind, RuaReach, Thresholds,
};
use crate::error::Error;
use crate::finding::{Finding, ids};
use crate::join;
use crate::probe::https::{self as https_probe, PolicyHostProbe};
use crate::probe::rua::{self as rua_probe, HttpsUri};
use crate::probe::smtp::{self as smtp_probe, MxProbe};
use crate::probe::{Addresses, Target};
use crate::report::Report;
use crate::tls::ProbeTls;

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Name servers; empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Trust anchors for the policy host and MX certificates.
    pub trust: Trust,
    /// `--connect-to` overrides, for HTTPS (port 443) and SMTP (port 25) alike.
    pub connect_to: Vec<ConnectTo>,
    /// DNS lookups and the policy fetch, each.
    pub timeout: Duration,
    /// One SMTP probe (connect, EHLO, STARTTLS, handshake).
    pub smtp_timeout: Duration,
    /// Probe MX hosts over SMTP (`--no-smtp` turns it off).
    pub smtp: bool,
    /// The SMTP port senders use (25).
    pub smtp_port: u16,
    /// Our EHLO name.
    pub ehlo_name: String,
    /// Largest policy body accepted: 65536 bytes, reading RFC 8461 §3.3's "suggested
    /// maximum policy size" of 64 kilobytes as 64 KiB.
    pub max_body: usize,
    /// Analysis thresholds.
    pub thresholds: Thresholds,
    /// Entries of the shared DNS answer cache.
    pub dns_cache_size: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            nameservers: Vec::new(),
            trust: Trust::Platform,
            connect_to: Vec::new(),
            timeout: Duration::from_secs(10),
            smtp_timeout: Duration::from_secs(20),
            smtp: true,
            smtp_port: 25,
            ehlo_name: "mta-sts-checker.localhost".to_string(),
            max_body: mta_sts_net::policy_fetch::DEFAULT_MAX_BODY,
            thresholds: Thresholds::default(),
            dns_cache_size: 65_536,
        }
    }
}

type ProbeCell = Arc<OnceCell<Arc<MxProbe>>>;
type RuaCell = Arc<OnceCell<Vec<RuaProblem>>>;

/// Checks domains. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Checker {
    config: CheckConfig,
    dns: Dns,
    chain: TokioResolver,
    https_tls: ProbeTls,
    smtp_tls: ProbeTls,
    mx_probes: Mutex<HashMap<(String, u16), ProbeCell>>,
    /// `https:` rua probes by URI: reporting services serve many domains.
    rua_probes: Mutex<HashMap<String, RuaCell>>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Checker {
    /// Builds a checker (DNS clients and TLS configurations). Must run inside a tokio
    /// runtime.
    pub fn new(config: CheckConfig) -> Result<Checker, Error> {
        Checker::with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`Checker::new`], with the clock that certificate validity (WebPKI time checks,
    /// `days_left`, the expiry findings) is judged against.
    pub fn with_clock(config: CheckConfig, clock: Arc<dyn Clock>) -> Result<Checker, Error> {
        let dns = Dns::new(&dns_config(&config)).map_err(|source| Error::Dns { source })?;
        let chain = chain_resolver(&config)?;
        let https_tls = ProbeTls::new(&config.trust, vec![b"http/1.1".to_vec()], clock.clone())?;
        let smtp_tls = ProbeTls::new(&config.trust, Vec::new(), clock)?;
        Ok(Checker {
            config,
            dns,
            chain,
            https_tls,
            smtp_tls,
            mx_probes: Mutex::new(HashMap::new()),
            rua_probes: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CheckConfig {
        &self.config
    }

    /// How many distinct MX host:port pairs were probed (or are being probed).
    pub fn mx_probe_count(&self) -> usize {
        self.mx_probes
            .lock()
            .map(|m| m.len())
            .unwrap_or_else(|p| p.into_inner().len())
    }

    /// Checks one domain. Fails only when `input` is not a domain name.
    pub async fn check(&self, input: &str) -> Result<Report, Error> {
        let domain = Domain::parse(input.trim()).map_err(|source| Error::InvalidDomain {
            input: input.to_string(),
            source,
        })?;
        let start = Instant::now();
        let evidence = self.gather(&domain).await;
        let elapsed = start.elapsed().as_millis() as u64;
        tracing::debug!(domain = %domain, elapsed_ms = elapsed, "checked");
        Ok(analyze::analyze(
            &evidence,
            &self.config.thresholds,
            elapsed,
        ))
    }

    /// [`Checker::check`] within `budget`; never fails: a bad input or a timeout becomes
    /// a failing report (bulk mode: one bad domain never stalls the run).
    pub async fn check_bounded(&self, input: &str, budget: Duration) -> Report {
        match tokio::time::timeout(budget, self.check(input)).await {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => Report::failed(
                input.trim(),
                Finding::new(&ids::DOMAIN_INVALID, e.to_string()),
            ),
            Err(_) => Report::failed(
                &Domain::parse(input.trim())
                    .map(|d| d.to_string())
                    .unwrap_or_else(|_| input.trim().to_string()),
                Finding::new(
                    &ids::CHECK_TIMEOUT,
                    format!("no result within {:.1} s", budget.as_secs_f64()),
                ),
            ),
        }
    }

    async fn gather(&self, domain: &Domain) -> Evidence {
        let sts_name = domain.sts_record_name();
        let tlsrpt_name = domain.tlsrpt_record_name();
        let ((sts, sts_cname), apex, mx, tlsrpt) = tokio::join!(
            self.txt_with_chain(&sts_name),
            self.dns.txt(domain.as_str()),
            self.dns.mx(domain),
            self.dns.txt(&tlsrpt_name),
        );
        // Probe the policy host when something at _mta-sts looks like an attempt at a
        // record; a sender would only with exactly one valid record, but the owner wants
        // to know about the policy either way.
        let attempt = sts.records().iter().any(|rr| {
            String::from_utf8_lossy(rr)
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("v=sts")
        });
        let (policy_host, mx_set, rua) = tokio::join!(
            async {
                if attempt {
                    Some(self.probe_policy_host(domain).await)
                } else {
                    None
                }
            },
            self.mx_set(domain, mx),
            self.rua_reach(&tlsrpt),
        );
        Evidence {
            domain: domain.to_string(),
            sts,
            sts_cname,
            apex,
            policy_host,
            mx: mx_set,
            tlsrpt,
            rua,
        }
    }

    /// TXT lookup that also returns the CNAME chain (RFC 8461 §3.1: senders follow it).
    async fn txt_with_chain(&self, name: &str) -> (DnsOutcome<Vec<u8>>, Vec<String>) {
        let fqdn = match Name::from_ascii(name) {
            Ok(mut n) => {
                n.set_fqdn(true);
                n
            }
            Err(e) => {
                return (
                    DnsOutcome::Failure {
                        kind: DnsFailureKind::Other,
                        message: format!("`{name}` is not a DNS name: {e}"),
                    },
                    Vec::new(),
                );
            }
        };
        let answer = tokio::time::timeout(
            self.config.timeout,
            self.chain.lookup(fqdn, RecordType::TXT),
        )
        .await;
        let lookup = match answer {
            Err(_) => {
                return (
                    DnsOutcome::Failure {
                        kind: DnsFailureKind::Timeout,
                        message: format!("no answer within {:?}", self.config.timeout),
                    },
                    Vec::new(),
                );
            }
            Ok(Err(_)) => {
                // Classify like the resolver does (NXDOMAIN/NODATA vs failure).
                return (self.dns.txt(name).await, Vec::new());
            }
            Ok(Ok(lookup)) => lookup,
        };
        let mut chain = Vec::new();
        let mut records = Vec::new();
        let mut ttl = u32::MAX;
        for r in lookup.answers() {
            match &r.data {
                RData::CNAME(target) => {
                    if chain.is_empty() {
                        chain.push(trim_dot(&r.name.to_ascii()));
                    }
                    chain.push(trim_dot(&target.0.to_ascii()));
                }
                RData::TXT(txt) => {
                    ttl = ttl.min(r.ttl);
                    records.push(mta_sts::record::concat(&txt.txt_data));
                }
                _ => {}
            }
        }
        let outcome = if records.is_empty() {
            DnsOutcome::NoRecord { negative_ttl: None }
        } else {
            DnsOutcome::Found { records, ttl }
        };
        (outcome, chain)
    }

    async fn addresses(&self, host: &str) -> Addresses {
        match Domain::parse(host) {
            Ok(name) => {
                let (v4, v6) = tokio::join!(self.dns.a(&name), self.dns.aaaa(&name));
                https_probe::addresses(v4, v6)
            }
            Err(e) => Addresses {
                list: Vec::new(),
                dns_error: Some(e.to_string()),
            },
        }
    }

    /// The `--connect-to` destinations for host:port, if an override applies.
    async fn target(&self, host: &str, port: u16) -> Target {
        let connect_to = match self
            .config
            .connect_to
            .iter()
            .find(|c| c.applies(host, port))
        {
            None => None,
            Some(c) => {
                let to_port = c.addr_port.unwrap_or(port);
                let addr = c.addr.clone().unwrap_or_else(|| host.to_string());
                match addr.parse::<IpAddr>() {
                    Ok(ip) => Some(vec![SocketAddr::new(ip, to_port)]),
                    Err(_) => Some(
                        self.addresses(&addr)
                            .await
                            .list
                            .into_iter()
                            .map(|ip| SocketAddr::new(ip, to_port))
                            .collect(),
                    ),
                }
            }
        };
        Target {
            host: host.to_string(),
            port,
            connect_to,
        }
    }

    async fn probe_policy_host(&self, domain: &Domain) -> PolicyHostProbe {
        let host = domain.policy_host();
        let (addresses, target) = tokio::join!(self.addresses(&host), self.target(&host, 443));
        https_probe::probe(
            &self.https_tls,
            &target,
            addresses,
            self.config.timeout,
            self.config.max_body,
        )
        .await
    }

    async fn mx_set(&self, domain: &Domain, mx: DnsOutcome<(u16, String)>) -> MxSet {
        match mx {
            DnsOutcome::Failure { message, .. } => MxSet::DnsFailure(message),
            DnsOutcome::Found { mut records, .. } => {
                if analyze::is_null_mx(&records) {
                    return MxSet::Null;
                }
                records.sort();
                records.dedup_by(|a, b| a.1.eq_ignore_ascii_case(&b.1));
                let probes = records.iter().map(|(_, host)| self.mx_probe(host));
                let probes = join::join_all(probes).await;
                MxSet::Hosts(
                    records
                        .into_iter()
                        .zip(probes)
                        .map(|((preference, host), probe)| MxEntry {
                            host: host.to_ascii_lowercase(),
                            preference: Some(preference),
                            probe,
                        })
                        .collect(),
                )
            }
            DnsOutcome::NoRecord { .. } => {
                // RFC 5321 §5.1: no MX → the domain itself, if it has an address.
                let addresses = self.addresses(domain.as_str()).await;
                if addresses.list.is_empty() {
                    MxSet::None
                } else {
                    MxSet::Implicit(MxEntry {
                        host: domain.to_string(),
                        preference: None,
                        probe: self.mx_probe(domain.as_str()).await,
                    })
                }
            }
        }
    }

    /// The probe of one MX host, shared by every domain of the run (single flight).
    async fn mx_probe(&self, host: &str) -> Option<Arc<MxProbe>> {
        if !self.config.smtp {
            return None;
        }
        let host = host.to_ascii_lowercase();
        let port = self.config.smtp_port;
        let cell = {
            let mut map = self.mx_probes.lock().unwrap_or_else(|p| p.into_inner());
            map.entry((host.clone(), port)).or_default().clone()
        };
        let probe = cell
            .get_or_init(|| async {
                let tlsa = async {
                    match Domain::parse(&host) {
                        Ok(name) => match self.dns.tlsa(&name, port).await {
                            DnsOutcome::Found { records, .. } => Some(records.len()),
                            DnsOutcome::NoRecord { .. } => Some(0),
                            DnsOutcome::Failure { .. } => None,
                        },
                        Err(_) => None,
                    }
                };
                let (addresses, target, tlsa) =
                    tokio::join!(self.addresses(&host), self.target(&host, port), tlsa);
                Arc::new(
                    smtp_probe::probe(
                        &self.smtp_tls,
                        &target,
                        addresses,
                        tlsa,
                        &self.config.ehlo_name,
                        self.config.smtp_timeout,
                    )
                    .await,
                )
            })
            .await;
        Some(probe.clone())
    }

    /// Whether each `rua` destination can receive reports (RFC 8460 §3): a `mailto:`
    /// domain needs an MX (or address); an `https:` URI needs an address, a TLS handshake
    /// with a valid certificate and a path that takes a report POST (see
    /// [`crate::probe::rua`]: an empty POST, never a made-up report).
    async fn rua_reach(&self, tlsrpt: &DnsOutcome<Vec<u8>>) -> Vec<RuaReach> {
        let candidates: Vec<&Vec<u8>> = tlsrpt
            .records()
            .iter()
            .filter(|rr| tlsrpt::has_record_prefix(rr))
            .collect();
        let [one] = candidates.as_slice() else {
            return Vec::new();
        };
        let Some(record) = tlsrpt::lint(&String::from_utf8_lossy(one)).record else {
            return Vec::new();
        };
        let checks = record.rua.iter().map(|rua| async move {
            let uri = rua.uri().to_string();
            let unreachable = |message: String| {
                vec![RuaProblem {
                    kind: RuaProblemKind::Unreachable,
                    message,
                }]
            };
            let problems = match rua {
                tlsrpt::Rua::Mailto { address, .. } => {
                    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                    match Domain::parse(domain) {
                        Err(e) => unreachable(format!("`{domain}` is not a domain: {e}")),
                        Ok(d) => match self.dns.mx(&d).await {
                            DnsOutcome::Found { records, .. } if !analyze::is_null_mx(&records) => {
                                Vec::new()
                            }
                            DnsOutcome::Found { .. } => {
                                unreachable(format!("{d} has a null MX: it accepts no mail"))
                            }
                            DnsOutcome::Failure { message, .. } => {
                                unreachable(format!("MX {d}: {message}"))
                            }
                            DnsOutcome::NoRecord { .. } => {
                                if self.addresses(d.as_str()).await.list.is_empty() {
                                    unreachable(format!("{d} has no MX, A or AAAA record"))
                                } else {
                                    Vec::new()
                                }
                            }
                        },
                    }
                }
                tlsrpt::Rua::Https { uri } => self.https_rua(uri).await,
                tlsrpt::Rua::Other { .. } => Vec::new(),
            };
            RuaReach { uri, problems }
        });
        join::join_all(checks).await
    }

    /// [`Checker::probe_https_rua`], once per URI for the whole run (single flight).
    async fn https_rua(&self, uri: &str) -> Vec<RuaProblem> {
        let cell = {
            let mut map = self.rua_probes.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(uri.to_string()).or_default().clone()
        };
        cell.get_or_init(|| self.probe_https_rua(uri)).await.clone()
    }

    /// Probes one `https:` destination (RFC 8460 §3, §5.4).
    async fn probe_https_rua(&self, uri: &str) -> Vec<RuaProblem> {
        let problem = |kind, message| RuaProblem { kind, message };
        let Some(parsed) = HttpsUri::parse(uri) else {
            return vec![problem(
                RuaProblemKind::Unreachable,
                "not an https://host[:port]/path URI".to_string(),
            )];
        };
        let addresses = match parsed.host.parse::<IpAddr>() {
            Ok(ip) => Addresses {
                list: vec![ip],
                dns_error: None,
            },
            Err(_) => self.addresses(&parsed.host).await,
        };
        let target = self.target(&parsed.host, parsed.port).await;
        if addresses.list.is_empty() && target.connect_to.is_none() {
            return vec![problem(
                RuaProblemKind::Unreachable,
                format!(
                    "{} has no A or AAAA record{}",
                    parsed.host,
                    addresses
                        .dns_error
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            )];
        }
        let probe = rua_probe::probe(
            &self.https_tls,
            &target,
            &addresses,
            &parsed.path,
            self.config.timeout,
        )
        .await;
        analyze::https_rua_problems(&parsed.host, parsed.port, &probe)
    }
}

fn trim_dot(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase()
}

fn chain_resolver(config: &CheckConfig) -> Result<TokioResolver, Error> {
    mta_sts_net::dns::build_resolver(&dns_config(config)).map_err(|source| Error::Dns { source })
}

fn dns_config(config: &CheckConfig) -> DnsConfig {
    DnsConfig {
        nameservers: config.nameservers.clone(),
        timeout: config.timeout,
        cache_size: config.dns_cache_size,
    }
}
