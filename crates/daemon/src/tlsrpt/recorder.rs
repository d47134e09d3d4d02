//! The in-memory counters of discovery failures per policy domain (RFC 8460 §4.3.2; the
//! session rule is in the parent module's documentation).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use mta_sts::Domain;
use mta_sts_resolver::{Error as ResolverError, Lookup};
use tlsrpt::event::{Event, EventPolicy, Outcome};
use tlsrpt::{PolicyType, ResultType, UtcDateTime};

/// Number of shards of the counter map.
const SHARDS: usize = 32;

/// Most probe events kept between two flushes; beyond, new ones are dropped (a probe runs
/// at most once per domain per `probe_interval`, so this takes a very large fleet).
pub const MAX_PROBE_EVENTS: usize = 100_000;

/// Whether a discovery error is recorded as a failed session (see the module
/// documentation): not for "no record", an invalid domain or a DNS failure.
pub fn is_recorded_failure(error: &ResolverError) -> bool {
    !matches!(
        error,
        ResolverError::NoRecord { .. }
            | ResolverError::InvalidDomain { .. }
            | ResolverError::DnsFailure { .. }
    )
}

/// The failure kinds counted per domain: (RFC 8460 result type, reason code). The last
/// three are the fall-backs for reason codes not listed (new resolver errors).
const FAILURES: [(ResultType, &str); 19] = [
    (ResultType::StsPolicyFetchError, "connect-failed"),
    (ResultType::StsPolicyFetchError, "tls-version"),
    (ResultType::StsPolicyFetchError, "tls-handshake-failed"),
    (ResultType::StsPolicyFetchError, "timeout"),
    (ResultType::StsPolicyFetchError, "redirect"),
    (ResultType::StsPolicyFetchError, "http-status"),
    (ResultType::StsPolicyFetchError, "too-large"),
    (ResultType::StsPolicyFetchError, "http-protocol"),
    (ResultType::StsPolicyInvalid, "invalid-record"),
    (ResultType::StsPolicyInvalid, "multiple-records"),
    (ResultType::StsPolicyInvalid, "media-type"),
    (ResultType::StsPolicyInvalid, "invalid-policy"),
    (ResultType::StsWebpkiInvalid, "certificate-expired"),
    (ResultType::StsWebpkiInvalid, "certificate-untrusted"),
    (ResultType::StsWebpkiInvalid, "certificate-wrong-name"),
    (ResultType::StsWebpkiInvalid, "certificate-invalid"),
    (ResultType::StsPolicyFetchError, ""),
    (ResultType::StsPolicyInvalid, ""),
    (ResultType::StsWebpkiInvalid, ""),
];

fn failure_slot(error: &ResolverError) -> usize {
    let reason = error.reason_code();
    let result_type = error.result_type();
    FAILURES
        .iter()
        .position(|(r, code)| *r == result_type && *code == reason)
        .or_else(|| {
            FAILURES
                .iter()
                .rposition(|(r, code)| *r == result_type && code.is_empty())
        })
        .unwrap_or(FAILURES.len() - 3)
}

/// The counters of one policy domain since the last flush.
#[derive(Debug, Default)]
struct DomainCounters {
    failures: [AtomicU64; FAILURES.len()],
}

type Shard = RwLock<HashMap<Domain, Arc<DomainCounters>>>;

/// The in-memory counters of policy outcomes per policy domain (see the module
/// documentation). Cheap to call from the socketmap path.
#[derive(Debug)]
pub struct Recorder {
    enabled: AtomicBool,
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    /// Sessions of the daemon's own STARTTLS probes (`probe_testing`), whole events with
    /// their own time stamps, until the next flush.
    probed: Mutex<Vec<Event>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            enabled: AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            probed: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    /// A recorder that records nothing until [`Recorder::configure`] enables it.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Turns recording on or off.
    pub fn configure(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn shard(&self, domain: &Domain) -> &Shard {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(domain.as_str().as_bytes());
        let index = (hasher.finish() as usize) % self.shards.len();
        &self.shards[index]
    }

    /// The counters of `domain`, created on first use.
    fn counters(&self, domain: &Domain) -> Arc<DomainCounters> {
        let shard = self.shard(domain);
        if let Some(c) = shard.read().unwrap_or_else(|p| p.into_inner()).get(domain) {
            return Arc::clone(c);
        }
        let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(domain.clone()).or_default())
    }

    /// Runs `f` on the counters of `domain` under the shard's read lock (no allocation when
    /// the domain is known).
    fn with_counters(&self, domain: &Domain, f: impl FnOnce(&DomainCounters)) {
        let shard = self.shard(domain);
        {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get(domain) {
                f(c);
                return;
            }
        }
        // First query for the domain since the last flush: create its entry. A flush may
        // run in between; the entry then simply belongs to the next interval.
        f(&self.counters(domain));
    }

    /// Records the outcome of one socketmap query for `domain` (see the module
    /// documentation for what counts): a discovery failure with no policy applied. A query
    /// that applied a policy records nothing, since the session's TLS outcome is unknown here.
    pub fn record(&self, domain: &Domain, lookup: &Lookup) {
        if !self.enabled() || lookup.policy.is_some() {
            return;
        }
        if let Some(error) = &lookup.error
            && is_recorded_failure(error)
        {
            self.record_failure(domain, error);
        }
    }

    /// Records one failed session for a discovery failure of `domain` (the caller checked
    /// [`is_recorded_failure`]).
    pub fn record_failure(&self, domain: &Domain, error: &ResolverError) {
        if !self.enabled() {
            return;
        }
        let slot = failure_slot(error);
        self.with_counters(domain, |c| {
            if let Some(counter) = c.failures.get(slot) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Keeps the sessions of one probe (see [`crate::tlsrpt`], "Testing mode") for the next
    /// flush; returns how many were dropped (recording off, or [`MAX_PROBE_EVENTS`] kept).
    pub fn record_probe(&self, events: Vec<Event>) -> usize {
        if !self.enabled() {
            return events.len();
        }
        let mut probed = self.probed.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_PROBE_EVENTS.saturating_sub(probed.len());
        let dropped = events.len().saturating_sub(room);
        probed.extend(events.into_iter().take(room));
        dropped
    }

    /// Takes the probe sessions kept since the last call.
    pub fn drain_probes(&self) -> Vec<Event> {
        std::mem::take(&mut *self.probed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes every count since the last drain as events stamped `time`, and forgets the
    /// domains that had none (so idle domains do not pile up).
    pub fn drain(&self, time: UtcDateTime) -> Vec<Event> {
        let mut events = Vec::new();
        for shard in self.shards.iter() {
            // The write lock keeps queries out while this shard is emptied, so no count
            // falls between reading a counter and forgetting its domain.
            let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|domain, counters| {
                let before = events.len();
                drain_domain(domain, counters, time, &mut events);
                events.len() > before
            });
        }
        events
    }
}

fn drain_domain(domain: &Domain, c: &DomainCounters, time: UtcDateTime, out: &mut Vec<Event>) {
    let base = |policy: EventPolicy, outcome: Outcome, count: u64| {
        Event::new(time, domain.as_str(), policy, outcome, count)
    };
    for ((result_type, reason), counter) in FAILURES.iter().zip(&c.failures) {
        let count = counter.swap(0, Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        // No policy could be retrieved: an `sts` policy without policy-string or mx-host
        // (RFC 8460 §4.4 makes both optional).
        let policy = EventPolicy {
            policy_type: PolicyType::Sts,
            policy_string: Vec::new(),
            mx_host: Vec::new(),
        };
        let mut event = base(policy, Outcome::Failure(result_type.clone()), count);
        event.failure_reason_code = (!reason.is_empty()).then(|| (*reason).to_owned());
        out.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mta_sts_resolver::CachedPolicy;

    fn cached(body: &str) -> Arc<CachedPolicy> {
        let policy = mta_sts::Policy::parse(body.as_bytes()).expect("policy");
        Arc::new(CachedPolicy::new(policy, "1", body, 0).expect("a valid record id"))
    }

    fn lookup(policy: Option<Arc<CachedPolicy>>, error: Option<ResolverError>) -> Lookup {
        Lookup {
            policy,
            from_cache: false,
            error,
        }
    }

    #[test]
    fn rfc8460_4_3_2_failures_by_result_type_and_reason() {
        let r = Recorder::new();
        let d: Domain = "example.com".parse().unwrap();
        let wrong_name = ResolverError::CertificateWrongName {
            host: "mta-sts.example.com".into(),
        };
        // Off until configured.
        r.record(&d, &lookup(None, Some(wrong_name.clone())));
        assert!(r.drain(UtcDateTime::EPOCH).is_empty());

        r.configure(true);
        r.record(&d, &lookup(None, Some(wrong_name.clone())));
        r.record(&d, &lookup(None, Some(wrong_name)));
        r.record(
            &d,
            &lookup(None, Some(ResolverError::Status { status: 404 })),
        );
        // Not failures: no record, DNS trouble, a cached policy still applying.
        r.record(
            &d,
            &lookup(None, Some(ResolverError::NoRecord { name: "x".into() })),
        );
        r.record(
            &d,
            &lookup(
                None,
                Some(ResolverError::DnsFailure {
                    name: "x".into(),
                    kind: mta_sts_resolver::DnsFailureKind::Timeout,
                    message: "t".into(),
                }),
            ),
        );
        let policy = cached("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n");
        r.record(
            &d,
            &lookup(Some(policy), Some(ResolverError::Status { status: 500 })),
        );
        let events = r.drain(UtcDateTime::EPOCH);
        let got: Vec<(String, Option<String>, u64)> = events
            .iter()
            .map(|e| {
                let result = match &e.outcome {
                    Outcome::Success => "success".to_owned(),
                    Outcome::Failure(t) => t.as_str().to_owned(),
                };
                (result, e.failure_reason_code.clone(), e.count)
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "sts-policy-fetch-error".to_owned(),
                    Some("http-status".to_owned()),
                    1
                ),
                (
                    "sts-webpki-invalid".to_owned(),
                    Some("certificate-wrong-name".to_owned()),
                    2
                ),
            ]
        );
        // A query that applied a policy is no session outcome: nothing is recorded, however
        // often it is asked (a `postmap -q` or a delivery Postfix then defers alike).
        let enforce = cached("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n");
        r.record(&d, &lookup(Some(Arc::clone(&enforce)), None));
        r.record(&d, &lookup(Some(enforce), None));
        assert!(r.drain(UtcDateTime::EPOCH).is_empty());
        // Drained, and the idle domain forgotten.
        assert!(r.drain(UtcDateTime::EPOCH).is_empty());
        assert!(r.shards.iter().all(|s| s.read().unwrap().is_empty()));
    }
}
