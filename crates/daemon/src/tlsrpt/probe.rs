//! Testing mode that reports: the daemon's own STARTTLS probe of a `mode: testing` domain's
//! MX hosts, validated as `enforce` would be, recorded as TLS-RPT sessions (RFC 8460 §4) of
//! that policy domain. The rules are in the parent module's documentation ("Testing mode").
//!
//! [`Prober::consider`] is called on the socketmap answering path: for anything but a
//! `testing` policy it returns after one comparison; for a `testing` one it takes a lock,
//! checks the per-domain interval and spawns the probe. The answer never waits for it.
//! The SMTP probe itself (EHLO, STARTTLS, handshake, the WebPKI verdict) is the checker's
//! ([`mta_sts_checker::probe::smtp`]); what its result means for a sender is
//! [`session_event`], a pure function over [`mta_sts::decision::decide`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mta_sts::decision::{Decision, decide};
use mta_sts::policy::policy_strings;
use mta_sts::{Domain, Mode};
use mta_sts_checker::probe::smtp::{self as smtp_probe, MxProbe};
use mta_sts_checker::probe::{Addresses, Target};
use mta_sts_checker::tls::ProbeTls;
use mta_sts_net::dns::{Dns, DnsConfig, DnsOutcome};
use mta_sts_net::{Clock, ConnectTo, Trust};
use mta_sts_resolver::CachedPolicy;
use tlsrpt::event::{Event, EventPolicy, Outcome};
use tlsrpt::{PolicyType, ResultType, UtcDateTime};
use tokio::sync::Semaphore;

use super::error::TlsrptError;
use super::recorder::Recorder;
use crate::config::{ResolverConfig, TlsrptConfig};
use crate::metrics::{Metrics, bump};

/// The SMTP port senders connect to (RFC 5321 §2.3.2 via RFC 8461 §4).
const SMTP_PORT: u16 = 25;
/// Most MX hosts probed per domain, lowest preference value first.
pub const MAX_MX_PROBED: usize = 8;
/// Most probes started and not finished (running or waiting for one of the
/// `probe_concurrency` slots); beyond, a probe is dropped and may run at a later lookup.
pub const MAX_PENDING: usize = 1_024;
/// Most domains remembered with the time of their last probe; when full, entries older
/// than `probe_interval` are forgotten first.
const MAX_REMEMBERED: usize = 100_000;

/// The `probe_testing` settings in force: the interval, the probe's TLS client, DNS and
/// connect-to overrides. Built from the configuration (fallible: the CA file, the DNS
/// configuration, the overrides) and replaced as a whole on reload.
pub struct ProbeSetup(Option<Arc<Setup>>);

struct Setup {
    interval: u64,
    timeout: Duration,
    ehlo: String,
    dns: Dns,
    tls: ProbeTls,
    connect_to: Vec<ConnectTo>,
    slots: Arc<Semaphore>,
}

impl ProbeSetup {
    /// Builds what `tlsrpt` asks for: nothing when `probe_testing` is off or `events` unset.
    /// MX certificates are judged at `clock`'s time against the platform's roots plus
    /// `[resolver] ca_file` (as the policy host's are); DNS servers, time-out and connect-to
    /// overrides (`HOST:25:ADDR:PORT`) are `[resolver]`'s.
    pub fn new(
        tlsrpt: &TlsrptConfig,
        resolver: &ResolverConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TlsrptError> {
        if !tlsrpt.probe_testing || tlsrpt.events.is_none() {
            return Ok(ProbeSetup(None));
        }
        let probe_error = |message: String| TlsrptError::Probe { message };
        let connect_to = resolver
            .connect_to
            .iter()
            .map(|c| c.parse::<ConnectTo>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| probe_error(e.to_string()))?;
        let dns = Dns::new(&DnsConfig {
            nameservers: resolver.nameservers.clone(),
            timeout: resolver.timeout,
            cache_size: 1024,
        })
        .map_err(|e| probe_error(e.to_string()))?;
        let trust = match &resolver.ca_file {
            Some(path) => Trust::PlatformAnd(path.clone()),
            None => Trust::Platform,
        };
        let tls =
            ProbeTls::new(&trust, Vec::new(), clock).map_err(|e| probe_error(e.to_string()))?;
        let ehlo = tlsrpt
            .probe_ehlo
            .clone()
            .or_else(|| tlsrpt.send.as_ref().map(|s| s.submitter.clone()))
            .unwrap_or_else(|| "localhost".to_owned());
        Ok(ProbeSetup(Some(Arc::new(Setup {
            interval: tlsrpt.probe_interval.as_secs().max(1),
            timeout: tlsrpt.probe_timeout,
            ehlo,
            dns,
            tls,
            connect_to,
            slots: Arc::new(Semaphore::new(tlsrpt.probe_concurrency.max(1))),
        }))))
    }
}

/// The probe scheduler of `[tlsrpt] probe_testing` (see the module documentation).
pub struct Prober {
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    setup: RwLock<Option<Arc<Setup>>>,
    /// Policy domain → clock second of its last probe.
    last: Mutex<HashMap<Domain, u64>>,
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober that probes nothing until a [`ProbeSetup`] is installed. Probe sessions go
    /// to `recorder`, stamped with `clock`'s time.
    pub fn new(recorder: Arc<Recorder>, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Prober {
            recorder,
            metrics,
            clock,
            setup: RwLock::new(None),
            last: Mutex::new(HashMap::new()),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Puts `setup` in force (start, reload). The times of the last probes are kept, so a
    /// reload does not probe every domain again.
    pub fn install(&self, setup: ProbeSetup) {
        *self.setup.write().unwrap_or_else(|p| p.into_inner()) = setup.0;
    }

    /// Whether probes run (`probe_testing` with `events`).
    pub fn enabled(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<Setup>> {
        self.setup.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Called for every policy a socketmap query applied: for a `mode: testing` policy,
    /// starts a probe of `domain`'s MX hosts in the background unless one ran within
    /// `probe_interval` (RFC 8461 §5 "testing": failures are reported, mail still goes).
    /// Returns whether a probe was started. Never waits for I/O.
    pub fn consider(&self, domain: &Domain, policy: &Arc<CachedPolicy>) -> bool {
        if policy.policy.mode != Mode::Testing {
            return false;
        }
        let Some(setup) = self.current() else {
            return false;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let now = self.clock.now();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last
                .get(domain)
                .is_some_and(|t| now < t.saturating_add(setup.interval))
            {
                return false;
            }
            if last.len() >= MAX_REMEMBERED {
                last.retain(|_, t| now < t.saturating_add(setup.interval));
                if last.len() >= MAX_REMEMBERED {
                    bump(&self.metrics.tlsrpt_probes_dropped);
                    return false;
                }
            }
            if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                bump(&self.metrics.tlsrpt_probes_dropped);
                return false;
            }
            last.insert(domain.clone(), now);
        }
        bump(&self.metrics.tlsrpt_probes_started);
        let domain = domain.clone();
        let policy = Arc::clone(policy);
        let recorder = Arc::clone(&self.recorder);
        let clock = Arc::clone(&self.clock);
        let pending = Arc::clone(&self.pending);
        runtime.spawn(async move {
            let slot = Arc::clone(&setup.slots).acquire_owned().await;
            let events = probe_domain(&setup, &domain, &policy, &*clock).await;
            drop(slot);
            let sessions = events.len();
            let dropped = recorder.record_probe(events);
            tracing::debug!(%domain, sessions, dropped, "testing-mode MX probe done");
            pending.fetch_sub(1, Ordering::AcqRel);
        });
        true
    }
}

/// The MX hosts of `domain` a sender would try, lowest preference value first, at most
/// [`MAX_MX_PROBED`]: the MX records, or the domain itself without any (the implicit MX,
/// RFC 5321 §5.1); none for a null MX (RFC 7505) or when the lookup failed.
pub fn mx_hosts(domain: &Domain, mx: &DnsOutcome<(u16, String)>) -> Vec<String> {
    match mx {
        DnsOutcome::Found { .. } => {
            let mut records: Vec<(u16, String)> = mx
                .records()
                .iter()
                .map(|(preference, host)| {
                    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
                    (*preference, host)
                })
                .collect();
            // RFC 7505 §3: a single "." MX says the domain accepts no mail.
            if records.iter().any(|(_, host)| host.is_empty()) {
                return Vec::new();
            }
            records.sort();
            let mut hosts: Vec<String> = Vec::new();
            for (_, host) in records {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            hosts.truncate(MAX_MX_PROBED);
            hosts
        }
        DnsOutcome::NoRecord { .. } => vec![domain.as_str().to_owned()],
        DnsOutcome::Failure { .. } => Vec::new(),
    }
}

/// The RFC 8460 §4.4 `policy` of a session under `cached`: type `sts`, the policy lines as
/// fetched (`policy-string`), the `mx` patterns as written (`mx-host`).
pub fn event_policy(cached: &CachedPolicy) -> EventPolicy {
    EventPolicy {
        policy_type: PolicyType::Sts,
        policy_string: policy_strings(&cached.body())
            .into_iter()
            .map(str::to_owned)
            .collect(),
        mx_host: cached.policy.mx.iter().map(|p| p.to_string()).collect(),
    }
}

/// The session one MX probe stands for, judged as `enforce` would judge it (RFC 8461 §4.1
/// MX name against the patterns, §4.2 STARTTLS and the WebPKI certificate for the MX host
/// name): a success, or a failure with its RFC 8460 §4.3.1 result type and a
/// `failure-reason-code` naming what the probe saw. `None` when the host could not be
/// reached or its SMTP dialogue broke before STARTTLS: no TLS session took place, so nothing
/// is reported (RFC 8460 reports TLS outcomes, not reachability).
pub fn session_event(
    domain: &Domain,
    cached: &CachedPolicy,
    probe: &MxProbe,
    time: UtcDateTime,
) -> Option<Event> {
    let tls = probe.tls_outcome()?;
    let outcome = match decide(Some(&cached.policy), &probe.host, tls) {
        Decision::Deliver { report: None } => None,
        Decision::Deliver {
            report: Some(failure),
        }
        | Decision::SkipMx { failure } => Some(failure),
    };
    let mut event = Event::new(
        time,
        domain.as_str(),
        event_policy(cached),
        match outcome {
            None => Outcome::Success,
            Some(f) => Outcome::Failure(ResultType::from_wire(f.result_type())),
        },
        1,
    );
    if let Some(failure) = outcome {
        event.sending_mta_ip = probe.local_addr.map(|a| a.ip().to_string());
        event.receiving_mx_hostname = Some(probe.host.clone());
        event.receiving_ip = probe.connected_to.map(|a| a.ip().to_string());
        event.failure_reason_code = Some(
            failure
                .reason_code()
                .map(str::to_owned)
                .unwrap_or_else(|| reason_code(probe)),
        );
    }
    Some(event)
}

/// A short, stable `failure-reason-code` for what the probe saw (stable, so that the
/// sessions of many probes aggregate into one failure-details entry).
fn reason_code(probe: &MxProbe) -> String {
    use mta_sts_checker::probe::ProbeErrorKind;
    if let Some(error) = &probe.error {
        return match error.kind {
            ProbeErrorKind::StarttlsRefused => "starttls-refused",
            ProbeErrorKind::TlsVersion => "tls-version",
            _ => "tls-handshake-failed",
        }
        .to_owned();
    }
    if probe.starttls == Some(false) {
        return "starttls-not-offered".to_owned();
    }
    let problem = probe
        .tls
        .as_ref()
        .and_then(|t| t.certificate.as_ref())
        .and_then(|c| c.problem);
    match problem {
        Some(p) => format!(
            "certificate-{}",
            serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "invalid".to_owned())
        ),
        None => "certificate-invalid".to_owned(),
    }
}

/// Probes the MX hosts of `domain` (in parallel, each within the time-out) and returns the
/// sessions to record.
async fn probe_domain(
    setup: &Setup,
    domain: &Domain,
    cached: &CachedPolicy,
    clock: &dyn Clock,
) -> Vec<Event> {
    let mx = setup.dns.mx(domain).await;
    if let DnsOutcome::Failure { message, .. } = &mx {
        tracing::debug!(%domain, %message, "testing-mode probe: MX lookup failed; nothing recorded");
    }
    let hosts = mx_hosts(domain, &mx);
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        let tls = setup.tls.clone();
        let ehlo = setup.ehlo.clone();
        let timeout = setup.timeout;
        let target = target(setup, &host);
        let dns = setup.dns.clone();
        tasks.spawn(async move {
            let addresses = match &target.connect_to {
                Some(_) => Addresses::default(),
                None => addresses(&dns, &host).await,
            };
            smtp_probe::probe(&tls, &target, addresses, None, &ehlo, timeout).await
        });
    }
    let mut events = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let Ok(probe) = done else { continue };
        let time = UtcDateTime::from_unix_seconds(i64::try_from(clock.now()).unwrap_or(i64::MAX));
        match session_event(domain, cached, &probe, time) {
            Some(event) => events.push(event),
            None => tracing::debug!(
                %domain,
                host = %probe.host,
                error = probe.error.as_ref().map(|e| e.message.as_str()).unwrap_or(""),
                "testing-mode probe: no TLS session with the MX; nothing recorded"
            ),
        }
    }
    events
}

/// Where the probe of `host` connects: a `[resolver] connect_to` override for
/// `host:25`, else the host's addresses.
fn target(setup: &Setup, host: &str) -> Target {
    let connect_to = setup
        .connect_to
        .iter()
        .find(|c| c.applies(host, SMTP_PORT))
        .and_then(|c| {
            let port = c.addr_port.unwrap_or(SMTP_PORT);
            let ip = c.addr.as_deref()?.trim_matches(['[', ']']).parse().ok()?;
            Some(vec![SocketAddr::new(ip, port)])
        });
    Target {
        host: host.to_owned(),
        port: SMTP_PORT,
        connect_to,
    }
}

async fn addresses(dns: &Dns, host: &str) -> Addresses {
    match Domain::parse(host) {
        Ok(name) => {
            let (v4, v6) = tokio::join!(dns.a(&name), dns.aaaa(&name));
            mta_sts_checker::probe::https::addresses(v4, v6)
        }
        Err(e) => Addresses {
            list: Vec::new(),
            dns_error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mta_sts_checker::probe::{ProbeError, ProbeErrorKind};
    use mta_sts_checker::tls::{CertProblem, CertificateInfo, TlsSession};

    const BODY: &str = "version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmx: *.backup.example.com\r\nmax_age: 86400\r\n";

    fn cached() -> CachedPolicy {
        let policy = mta_sts::Policy::parse(BODY.as_bytes()).expect("policy");
        CachedPolicy::new(policy, "1", BODY, 0).expect("id")
    }

    fn domain() -> Domain {
        "example.com".parse().expect("domain")
    }

    /// A probe of `host` that finished a handshake with a certificate of `problem`
    /// (`None`: valid), or stopped with `error`.
    fn probe(host: &str, problem: Option<CertProblem>, error: Option<ProbeErrorKind>) -> MxProbe {
        let certificate = CertificateInfo {
            subject: String::new(),
            issuer: String::new(),
            sans: vec![host.to_owned()],
            not_before: String::new(),
            not_after: String::new(),
            days_left: 30,
            chain_length: 2,
            name_match: problem != Some(CertProblem::NameMismatch),
            valid: problem.is_none(),
            problem,
            error: problem.map(|_| "verifier says no".to_owned()),
        };
        MxProbe {
            host: host.to_owned(),
            addresses: Addresses::default(),
            tlsa: None,
            connected_to: Some("192.0.2.25:25".parse().expect("addr")),
            local_addr: Some("198.51.100.1:40000".parse().expect("addr")),
            banner: Some("220 ready".into()),
            ehlo: Some(vec!["STARTTLS".into()]),
            starttls: Some(error.is_none()),
            tls: error.is_none().then(|| TlsSession {
                version: "TLS 1.3".into(),
                cipher: String::new(),
                certificate: Some(certificate),
            }),
            elapsed_ms: 1,
            error: error.map(|kind| ProbeError::new(kind, "stopped")),
        }
    }

    fn judged(probe: &MxProbe) -> Option<(String, Option<String>)> {
        let event = session_event(&domain(), &cached(), probe, UtcDateTime::EPOCH)?;
        assert_eq!(event.policy_domain, "example.com");
        assert_eq!(event.count, 1);
        Some(match event.outcome {
            Outcome::Success => ("success".to_owned(), event.failure_reason_code),
            Outcome::Failure(t) => (t.as_str().to_owned(), event.failure_reason_code),
        })
    }

    fn pair(result: &str, reason: Option<&str>) -> Option<(String, Option<String>)> {
        Some((result.to_owned(), reason.map(str::to_owned)))
    }

    /// RFC 8461 §4.1 (MX name against the patterns) and §4.2 (STARTTLS, WebPKI), judged
    /// as enforce would; RFC 8460 §4.3.1 result types.
    #[test]
    fn rfc8460_4_3_1_probe_outcomes_as_enforce_judges_them() {
        assert_eq!(
            judged(&probe("mx.example.com", None, None)),
            pair("success", None)
        );
        // A wildcard covers one label (RFC 8461 §4.1).
        assert_eq!(
            judged(&probe("a.backup.example.com", None, None)),
            pair("success", None)
        );
        assert_eq!(
            judged(&probe("a.b.backup.example.com", None, None)),
            pair("certificate-host-mismatch", Some("mx-not-in-policy"))
        );
        for (problem, result, reason) in [
            (
                CertProblem::NameMismatch,
                "certificate-host-mismatch",
                "certificate-name-mismatch",
            ),
            (
                CertProblem::Expired,
                "certificate-expired",
                "certificate-expired",
            ),
            (
                CertProblem::Untrusted,
                "certificate-not-trusted",
                "certificate-untrusted",
            ),
            (
                CertProblem::Invalid,
                "validation-failure",
                "certificate-invalid",
            ),
        ] {
            assert_eq!(
                judged(&probe("mx.example.com", Some(problem), None)),
                pair(result, Some(reason)),
                "{problem:?}"
            );
        }
        let mut plain = probe("mx.example.com", None, None);
        plain.starttls = Some(false);
        plain.tls = None;
        assert_eq!(
            judged(&plain),
            pair("starttls-not-supported", Some("starttls-not-offered"))
        );
        assert_eq!(
            judged(&probe(
                "mx.example.com",
                None,
                Some(ProbeErrorKind::StarttlsRefused)
            )),
            pair("starttls-not-supported", Some("starttls-refused"))
        );
        assert_eq!(
            judged(&probe(
                "mx.example.com",
                None,
                Some(ProbeErrorKind::TlsVersion)
            )),
            pair("validation-failure", Some("tls-version"))
        );
        // No TLS session took place: nothing to report.
        for kind in [
            ProbeErrorKind::Connect,
            ProbeErrorKind::Timeout,
            ProbeErrorKind::NoAddress,
            ProbeErrorKind::Smtp,
        ] {
            assert_eq!(judged(&probe("mx.example.com", None, Some(kind))), None);
        }
    }

    #[test]
    fn rfc8460_4_4_failure_details_and_policy_of_a_probe_session() {
        let event = session_event(
            &domain(),
            &cached(),
            &probe("mx.example.com", Some(CertProblem::NameMismatch), None),
            UtcDateTime::from_unix_seconds(1_714_564_800),
        )
        .expect("a session");
        assert_eq!(event.policy.policy_type, PolicyType::Sts);
        assert_eq!(
            event.policy.policy_string,
            [
                "version: STSv1",
                "mode: testing",
                "mx: mx.example.com",
                "mx: *.backup.example.com",
                "max_age: 86400"
            ]
        );
        assert_eq!(
            event.policy.mx_host,
            ["mx.example.com", "*.backup.example.com"]
        );
        assert_eq!(event.sending_mta_ip.as_deref(), Some("198.51.100.1"));
        assert_eq!(event.receiving_ip.as_deref(), Some("192.0.2.25"));
        assert_eq!(
            event.receiving_mx_hostname.as_deref(),
            Some("mx.example.com")
        );
        // A success carries no failure details.
        let ok = session_event(
            &domain(),
            &cached(),
            &probe("mx.example.com", None, None),
            UtcDateTime::EPOCH,
        )
        .expect("a session");
        assert!(ok.sending_mta_ip.is_none() && ok.failure_reason_code.is_none());
    }

    #[test]
    fn rfc5321_5_1_mx_hosts_in_preference_order_implicit_and_null() {
        let found = |records: &[(u16, &str)]| DnsOutcome::Found {
            records: records.iter().map(|(p, h)| (*p, (*h).to_owned())).collect(),
            ttl: 60,
        };
        assert_eq!(
            mx_hosts(
                &domain(),
                &found(&[
                    (20, "B.example.com."),
                    (10, "a.example.com"),
                    (30, "b.example.com")
                ])
            ),
            ["a.example.com", "b.example.com"]
        );
        // No MX: the domain itself (implicit MX).
        assert_eq!(
            mx_hosts(&domain(), &DnsOutcome::NoRecord { negative_ttl: None }),
            ["example.com"]
        );
        // Null MX (RFC 7505): no mail, nothing to probe.
        assert!(mx_hosts(&domain(), &found(&[(0, ".")])).is_empty());
        let many: Vec<(u16, String)> = (0..20).map(|i| (i, format!("mx{i}.example.com"))).collect();
        let many: Vec<(u16, &str)> = many.iter().map(|(p, h)| (*p, h.as_str())).collect();
        assert_eq!(mx_hosts(&domain(), &found(&many)).len(), MAX_MX_PROBED);
        assert!(
            mx_hosts(
                &domain(),
                &DnsOutcome::Failure {
                    kind: mta_sts_net::dns::DnsFailureKind::Timeout,
                    message: "timed out".into()
                }
            )
            .is_empty()
        );
    }
}
