//! The resolver: the RFC 8461 §3 / §5.1 / §10.2 cache state machine over [`Dns`] and
//! [`Fetcher`], with an injected [`Clock`], a memory layer in front of a [`Store`],
//! single-flight per domain and a proactive refresher.
//!
//! The RFC 8461 §3.3 / §5.1 rules as a table, implemented in `Inner::resolve`:
//!
//! | TXT at t | cache | action |
//! |---|---|---|
//! | valid, id == cached id | fresh | apply cached, no HTTPS, expiry not extended |
//! | valid, id != cached id | fresh | fetch unless (domain, id) failed < backoff ago; success replaces, failure keeps cached |
//! | valid | none/expired | fetch (same back-off); failure → no policy, error reported |
//! | NX/NODATA/invalid/multiple/SERVFAIL/timeout | fresh | apply cached, keep entry |
//! | same | none/expired | no policy; "no record" cached negatively for min(TTL, cap) |

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mta_sts::{Domain, Policy, SelectError, StsRecord};
use tokio::sync::watch;

use crate::cache::{CachedPolicy, MemoryCache, MemoryUsage, next_refresh};
use mta_sts_net::policy_fetch::DEFAULT_MAX_BODY;
use mta_sts_net::{Clock, ConnectTo, Dns, DnsConfig, DnsOutcome, FetchConfig, Fetcher, Trust};

use crate::error::{Error, SetupError};
use crate::store::Store;

pub mod refresh;

/// Resolver settings (the daemon configuration's `[resolver]` and `[cache]` sections).
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// DNS servers; empty = system configuration.
    pub nameservers: Vec<SocketAddrList>,
    /// Extra CA certificates (PEM) trusted for policy hosts, added to the platform roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Trust only `ca_file` (tests and labs).
    pub ca_file_only: bool,
    /// curl-style connection overrides.
    pub connect_to: Vec<ConnectTo>,
    /// Total HTTPS fetch timeout (≤ 60 s); DNS lookups get the same bound.
    pub timeout: Duration,
    /// Require `Content-Type: text/plain` (RFC 8461 §3.2 SHOULD).
    pub check_media_type: bool,
    /// Largest policy body in bytes.
    pub max_body: usize,
    /// Minimum wait before refetching a (domain, id) whose fetch failed (RFC 8461 §3.3: ≥ 5 min).
    pub backoff: Duration,
    /// Upper bound for negative caching of "no policy" (the DNS negative TTL is used below it).
    pub negative_ttl_cap: Duration,
    /// Negative TTL when the DNS answer carried none.
    pub negative_ttl_default: Duration,
    /// Proactive refresh period (RFC 8461 §3.3 suggests daily), jittered ±10 % at random
    /// per resolver, so daemons sharing a store do not refresh in step.
    pub refresh_interval: Duration,
    /// How often the refresher wakes up to look for due entries.
    pub refresh_tick: Duration,
    /// Most refetches one refresher pass keeps in flight at once (0 is taken as 1).
    pub refresh_concurrency: usize,
    /// Entries of hickory's DNS answer cache (0 = off).
    pub dns_cache_size: u64,
    /// Most bytes the memory layer holds (`None`: unbounded), [`DEFAULT_MAX_MEMORY`] by
    /// default. Past it, entries no lookup used lately are evicted, negative answers first;
    /// an evicted policy is read back from the store on its next lookup (RFC 8461 §5.1: it
    /// is still cached), not refetched, and the refresher still refreshes it. The memory
    /// store has no second level: there an evicted policy is fetched again. It bounds what
    /// the cache costs the process, the allocator's overhead included: the cache's own count
    /// stops at [`COUNTED_SHARE`] of it.
    pub max_memory: Option<u64>,
}

/// The share of `max_memory` (numerator, denominator) that the memory layer's own count of
/// its entries may fill. Entries come and go, and glibc's malloc keeps the freed chunks that
/// lie between live ones: measured with `memory_bound_bench` (1,000,000 policies and as many
/// negative answers through a bounded resolver), resident memory grows by about 2.1 bytes
/// per byte counted, plus about 30 MB for SQLite's page caches, the DNS cache and the
/// runtime. Counting up to 40 % keeps the process within `max_memory` and some headroom.
pub const COUNTED_SHARE: (u64, u64) = (2, 5);

/// What the memory layer may count for a `max_memory` bound ([`COUNTED_SHARE`]).
fn counted_budget(max_memory: u64) -> u64 {
    max_memory / COUNTED_SHARE.1 * COUNTED_SHARE.0
}

/// The default bound of the memory layer: 256 MB, room for about 340,000 policies (about
/// 300 bytes counted each, [`COUNTED_SHARE`] of the bound).
pub const DEFAULT_MAX_MEMORY: u64 = 256_000_000;

/// A socket address (kept as a type alias so the config reads like the TOML contract).
pub type SocketAddrList = std::net::SocketAddr;

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            ca_file: None,
            ca_file_only: false,
            connect_to: Vec::new(),
            timeout: Duration::from_secs(10),
            check_media_type: true,
            max_body: DEFAULT_MAX_BODY,
            backoff: Duration::from_secs(300),
            negative_ttl_cap: Duration::from_secs(3600),
            negative_ttl_default: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(86_400),
            refresh_tick: Duration::from_secs(60),
            refresh_concurrency: 32,
            dns_cache_size: 4096,
            max_memory: Some(DEFAULT_MAX_MEMORY),
        }
    }
}

/// Which of the three `mta-sts query` answers a result is (it exits 0 / 1 / 3 for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A policy applies.
    Policy,
    /// The domain has no (valid) MTA-STS record.
    NoPolicy,
    /// A valid record is published but the policy could not be fetched or parsed (or DNS
    /// failed, so we cannot tell).
    Unusable,
}

impl Outcome {
    /// `policy`, `no-policy` or `unusable` (the JSON contract).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Policy => "policy",
            Outcome::NoPolicy => "no-policy",
            Outcome::Unusable => "unusable",
        }
    }
}

fn classify(applied: bool, error: Option<&Error>) -> Outcome {
    match (applied, error) {
        (true, _) => Outcome::Policy,
        (false, Some(e)) if e.is_unusable() => Outcome::Unusable,
        _ => Outcome::NoPolicy,
    }
}

/// The answer to [`Resolver::lookup`].
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The policy to apply, if any (live or cached).
    pub policy: Option<Arc<CachedPolicy>>,
    /// Whether `policy` came from the cache rather than a fetch during this lookup.
    pub from_cache: bool,
    /// The live failure, if any, even when a cached policy applies (for TLS-RPT and logs).
    pub error: Option<Error>,
}

impl Lookup {
    /// policy / no-policy / unusable.
    pub fn outcome(&self) -> Outcome {
        classify(self.policy.is_some(), self.error.as_ref())
    }

    fn none(error: Option<Error>) -> Lookup {
        Lookup {
            policy: None,
            from_cache: false,
            error,
        }
    }

    fn cached(policy: Arc<CachedPolicy>, error: Option<Error>) -> Lookup {
        Lookup {
            policy: Some(policy),
            from_cache: true,
            error,
        }
    }
}

/// The answer to [`Resolver::query_live`]: discovery and fetch without any cache.
#[derive(Debug, Clone)]
pub struct LiveOutcome {
    /// The selected `_mta-sts` record, when valid.
    pub record: Option<StsRecord>,
    /// The parsed policy, when fetched and usable.
    pub policy: Option<Arc<Policy>>,
    /// The body as served, when fetched (even if it did not parse).
    pub body: Option<String>,
    /// Why there is no policy, if so.
    pub error: Option<Error>,
    /// Wall time spent.
    pub elapsed: Duration,
}

impl LiveOutcome {
    /// policy / no-policy / unusable.
    pub fn outcome(&self) -> Outcome {
        classify(self.policy.is_some(), self.error.as_ref())
    }
}

/// Counters for `/metrics`, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lookups that applied a policy.
    pub lookups_policy: AtomicU64,
    /// Lookups with no policy.
    pub lookups_no_policy: AtomicU64,
    /// Lookups of a published but unusable policy.
    pub lookups_unusable: AtomicU64,
    /// Lookups answered from the cache without an HTTPS fetch.
    pub cache_hits: AtomicU64,
    /// Lookups answered by the negative cache (no DNS query).
    pub negative_hits: AtomicU64,
    /// Lookups that joined another caller's flight.
    pub flights_joined: AtomicU64,
    /// HTTPS fetches started (lookups and refreshes).
    pub fetches: AtomicU64,
    /// Fetches that failed (transport or invalid policy).
    pub fetch_failures: AtomicU64,
    /// Fetches skipped by the RFC 8461 §3.3 back-off.
    pub backoff_skips: AtomicU64,
    /// Store operations that failed (logged, never fatal).
    pub store_errors: AtomicU64,
    /// Proactive refreshes that succeeded.
    pub refreshes: AtomicU64,
    /// Proactive refreshes that failed.
    pub refresh_failures: AtomicU64,
    /// Refresher passes completed ([`Resolver::refresh_due`] calls that ran to the end).
    pub refresh_passes: AtomicU64,
    /// Wall time of the last completed refresher pass, in microseconds.
    pub refresh_last_pass_micros: AtomicU64,
    /// Due policies of the running refresher pass not refetched yet (0 between passes).
    pub refresh_backlog: AtomicU64,
    /// Due policies taken from the store as another resolver had refreshed them.
    pub refresh_adopted: AtomicU64,
    /// Due policies left to the resolver holding their refresh lease.
    pub refresh_deferred: AtomicU64,
    /// Lookups that found their policy in the store, not in memory (evicted, or cached by
    /// another resolver sharing the store).
    pub store_reads: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

type Flight = watch::Receiver<Option<Lookup>>;

struct Inner {
    config: ResolverConfig,
    dns: Dns,
    fetcher: Fetcher,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    memory: MemoryCache,
    flights: Mutex<HashMap<Domain, Flight>>,
    stats: Stats,
    /// Random key of this resolver's refresh jitter (seeded from the OS by std).
    jitter_seed: RandomState,
}

/// The MTA-STS policy resolver. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.inner.config)
            .field("store", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver. Fails when the DNS or TLS configuration cannot be set up (system
    /// resolver configuration unreadable, CA file missing).
    pub fn new(
        config: ResolverConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Resolver, SetupError> {
        let dns = Dns::new(&DnsConfig {
            nameservers: config.nameservers.clone(),
            timeout: config.timeout,
            cache_size: config.dns_cache_size,
        })?;
        let trust = match (&config.ca_file, config.ca_file_only) {
            (Some(path), true) => Trust::Only(path.clone()),
            (Some(path), false) => Trust::PlatformAnd(path.clone()),
            (None, _) => Trust::Platform,
        };
        let fetcher = Fetcher::new(
            FetchConfig {
                trust,
                connect_to: config.connect_to.clone(),
                timeout: config.timeout,
                check_media_type: config.check_media_type,
                max_body: config.max_body,
            },
            dns.clone(),
        )?;
        let max_memory = config.max_memory;
        Ok(Resolver {
            inner: Arc::new(Inner {
                config,
                dns,
                fetcher,
                store,
                clock,
                memory: MemoryCache::new(max_memory.map(counted_budget)),
                flights: Mutex::new(HashMap::new()),
                stats: Stats::default(),
                jitter_seed: RandomState::new(),
            }),
        })
    }

    /// The clock the cache's ages are read from (for callers that stamp what they report
    /// about the resolver's answers with the same time).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The DNS client (for MX / TLSA / TXT lookups by the daemon and checker).
    pub fn dns(&self) -> &Dns {
        &self.inner.dns
    }

    /// The HTTPS fetcher.
    pub fn fetcher(&self) -> &Fetcher {
        &self.inner.fetcher
    }

    /// The settings.
    pub fn config(&self) -> &ResolverConfig {
        &self.inner.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Number of domains with a memory entry (policies, negative entries, failure marks).
    pub fn cache_len(&self) -> usize {
        self.inner.memory.len()
    }

    /// What the memory layer holds and has evicted (`max_memory`).
    pub fn memory_usage(&self) -> MemoryUsage {
        self.inner.memory.usage()
    }

    /// Loads unexpired store entries into memory (warm start), a page at a time, until the
    /// memory layer is nine tenths full (`max_memory`); the rest is read from the store on
    /// lookup. Returns how many.
    pub async fn warm_start(&self) -> usize {
        const PAGE: usize = 1000;
        let inner = &self.inner;
        let now = inner.clock.now();
        if let Some(count) = inner.store.count_hint(now).await {
            inner.memory.reserve(count);
        }
        let mut loaded = 0;
        let mut after: Option<String> = None;
        loop {
            let page = match inner.store.load_page(now, after.as_deref(), PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    inner.store_error("load_page", &e);
                    return loaded;
                }
            };
            let full = page.len() == PAGE;
            let usage = inner.memory.usage();
            if usage
                .limit
                .is_some_and(|limit| usage.bytes >= limit / 10 * 9 || usage.evicted_policies > 0)
            {
                return loaded;
            }
            for stored in &page {
                let (Ok(domain), Some(policy)) = (
                    Domain::parse(&stored.domain),
                    CachedPolicy::from_stored(stored),
                ) else {
                    continue;
                };
                if inner.install(&domain, Arc::new(policy), now) {
                    loaded += 1;
                }
            }
            match page.into_iter().next_back() {
                Some(last) if full => after = Some(last.domain),
                _ => return loaded,
            }
        }
    }

    /// The cached policy of `domain` if fresh now, from memory only (no I/O).
    pub fn cached(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        let now = self.inner.clock.now();
        self.inner.memory.policy(domain).filter(|p| p.is_fresh(now))
    }

    /// The cached policy of `domain` if fresh now, from memory or else the store (where a
    /// policy evicted from memory is still cached); no DNS or HTTPS.
    pub async fn cached_or_stored(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        let now = self.inner.clock.now();
        self.inner.cached_policy(domain, now).await
    }

    /// The policy [`Resolver::lookup`] would apply right now without any I/O: a fresh cached
    /// policy whose `_mta-sts` TXT id was confirmed by an answer still within its DNS TTL
    /// (the answer a DNS cache would give again). `None` means a full lookup is needed.
    /// Never set up when the DNS answer cache is off (`dns_cache_size = 0`), where every
    /// lookup queries the TXT record.
    pub fn lookup_fast(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        let inner = &self.inner;
        let policy = inner.memory.confirmed(domain, inner.clock.now())?;
        bump(&inner.stats.cache_hits);
        bump(&inner.stats.lookups_policy);
        Some(policy)
    }

    /// Resolves the policy to apply to `domain` (RFC 8461 §5.1). Never fails: failures are
    /// in [`Lookup::error`]. Concurrent calls for one domain share one flight.
    pub async fn lookup(&self, domain: &Domain) -> Lookup {
        if let Some(policy) = self.lookup_fast(domain) {
            return Lookup::cached(policy, None);
        }
        let inner = &self.inner;
        let mut rx = {
            let mut flights = inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(domain) {
                Some(rx) => {
                    bump(&inner.stats.flights_joined);
                    rx.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(domain.clone(), rx.clone());
                    // The flight runs in its own task so that a cancelled caller cannot
                    // strand the others.
                    let this = self.inner.clone();
                    let domain = domain.clone();
                    tokio::spawn(async move {
                        let result = this.resolve(&domain).await;
                        this.count(&result);
                        this.flights
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&domain);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or_else(|| Lookup::none(None)),
            // The flight task panicked: answer from the cache if possible.
            Err(_) => match self.cached(domain) {
                Some(p) => Lookup::cached(p, None),
                None => Lookup::none(None),
            },
        }
    }

    /// Discovers and fetches the live policy of `domain`, bypassing every cache (the
    /// `mta-sts query` command).
    pub async fn query_live(&self, domain: &Domain) -> LiveOutcome {
        let started = Instant::now();
        let mut out = LiveOutcome {
            record: None,
            policy: None,
            body: None,
            error: None,
            elapsed: Duration::ZERO,
        };
        match self.inner.discover(domain).await {
            Ok((record, _ttl)) => {
                out.record = Some(record);
                match self.inner.fetcher.fetch(domain).await {
                    Ok(fetched) => {
                        out.body = Some(String::from_utf8_lossy(&fetched.body).into_owned());
                        match Policy::parse(&fetched.body) {
                            Ok(p) => out.policy = Some(Arc::new(p)),
                            Err(e) => out.error = Some(Error::InvalidPolicy(e)),
                        }
                    }
                    Err(e) => out.error = Some(e.into()),
                }
            }
            Err((e, _)) => out.error = Some(e),
        }
        out.elapsed = started.elapsed();
        out
    }

    /// Writes the policies the store still holds behind (its write-behind window) now; the
    /// daemon calls it when it stops, so none of what it fetched is lost to the exit.
    pub async fn flush_store(&self) {
        if let Err(e) = self.inner.store.flush().await {
            self.inner.store_error("flush", &e);
        }
    }

    /// Forgets `domain` in memory and in the store.
    pub async fn forget(&self, domain: &Domain) {
        self.inner.memory.remove(domain);
        if let Err(e) = self.inner.store.remove(domain.as_str()).await {
            self.inner.store_error("remove", &e);
        }
    }
}

impl Inner {
    /// Remembers that a TXT answer valid for `ttl` seconds confirmed the cached policy's id,
    /// so lookups until then need no DNS query ([`Resolver::lookup_fast`]). Only with the
    /// DNS answer cache on: without it every lookup is meant to query.
    fn confirm_txt(&self, domain: &Domain, now: u64, ttl: u32) {
        if self.config.dns_cache_size == 0 {
            return;
        }
        let until = now.saturating_add(u64::from(ttl).min(self.config.negative_ttl_cap.as_secs()));
        self.memory.update(domain, |entry| entry.txt_until = until);
    }

    fn store_error(&self, op: &str, e: &crate::store::StoreError) {
        bump(&self.stats.store_errors);
        tracing::warn!(
            backend = self.store.backend(),
            op,
            "store error, continuing from memory: {e}"
        );
    }

    fn count(&self, lookup: &Lookup) {
        match lookup.outcome() {
            Outcome::Policy => bump(&self.stats.lookups_policy),
            Outcome::NoPolicy => bump(&self.stats.lookups_no_policy),
            Outcome::Unusable => bump(&self.stats.lookups_unusable),
        }
    }

    /// Puts a policy in memory unless a newer one is there. Returns whether it was installed.
    fn install(&self, domain: &Domain, policy: Arc<CachedPolicy>, now: u64) -> bool {
        let interval = self.config.refresh_interval.as_secs();
        self.memory.update(domain, |entry| {
            if entry
                .policy
                .as_ref()
                .is_some_and(|p| p.fetched_at > policy.fetched_at)
            {
                return false;
            }
            entry.next_refresh = next_refresh(&self.jitter_seed, domain, &policy, interval)
                .max(now.min(policy.fetched_at));
            entry.policy = Some(policy);
            entry.clear_negative_and_refresh_failures();
            true
        })
    }

    /// Memory first, then the store (read-through).
    async fn cached_policy(&self, domain: &Domain, now: u64) -> Option<Arc<CachedPolicy>> {
        if let Some(p) = self.memory.policy(domain) {
            return p.is_fresh(now).then_some(p);
        }
        match self.store.get(domain.as_str()).await {
            Ok(Some(stored)) if stored.is_fresh(now) => {
                let policy = Arc::new(CachedPolicy::from_stored(&stored)?);
                bump(&self.stats.store_reads);
                self.install(domain, policy.clone(), now);
                Some(policy)
            }
            Ok(_) => None,
            Err(e) => {
                self.store_error("get", &e);
                None
            }
        }
    }

    /// The `_mta-sts` record (RFC 8461 §3.1). On failure also returns the TTL to cache the
    /// negative answer for, when it is a definite "no record".
    async fn discover(&self, domain: &Domain) -> Result<(StsRecord, u32), (Error, Option<u32>)> {
        let name = domain.sts_record_name();
        match self.dns.sts_txt(domain).await {
            DnsOutcome::Found { records, ttl } => match StsRecord::select(&records) {
                Ok(record) => Ok((record, ttl)),
                Err(SelectError::NoRecord) => Err((Error::NoRecord { name }, Some(ttl))),
                Err(SelectError::MultipleRecords(n)) => Err((Error::MultipleRecords(n), Some(ttl))),
                Err(SelectError::Invalid(e)) => Err((Error::InvalidRecord(e), Some(ttl))),
            },
            DnsOutcome::NoRecord { negative_ttl } => Err((
                Error::NoRecord { name },
                Some(negative_ttl.unwrap_or(self.config.negative_ttl_default.as_secs() as u32)),
            )),
            DnsOutcome::Failure { kind, message } => Err((
                Error::DnsFailure {
                    name,
                    kind,
                    message,
                },
                None,
            )),
        }
    }

    /// Fetches and parses the policy for `id`; on success installs it (memory + store).
    async fn fetch_policy(
        &self,
        domain: &Domain,
        id: &str,
        now: u64,
    ) -> Result<Arc<CachedPolicy>, Error> {
        bump(&self.stats.fetches);
        let result = match self.fetcher.fetch(domain).await {
            Ok(fetched) => match Policy::parse(&fetched.body) {
                // Policy::parse succeeded, so the body is UTF-8.
                Ok(policy) => {
                    CachedPolicy::new(policy, id, &String::from_utf8_lossy(&fetched.body), now)
                        // Unreachable: the id comes from a record that parsed (RFC 8461 §3.1).
                        .ok_or_else(|| {
                            Error::InvalidRecord(mta_sts::RecordError::InvalidId { id: id.into() })
                        })
                }
                Err(e) => Err(Error::InvalidPolicy(e)),
            },
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(policy) => {
                let policy = Arc::new(policy);
                self.install(domain, policy.clone(), now);
                self.memory.update(domain, |e| e.clear_failure(id));
                // Write-behind (the store's bounded window); a store failure never fails
                // the lookup: memory still answers.
                if let Err(e) = self.store.put_behind(&policy.to_stored(domain), now).await {
                    self.store_error("put", &e);
                }
                Ok(policy)
            }
            Err(e) => {
                bump(&self.stats.fetch_failures);
                // RFC 8461 §3.3: remember the failure per (domain, id) for the back-off.
                self.memory
                    .update(domain, |entry| entry.mark_failure(id, now, e.clone()));
                tracing::info!(
                    domain = %domain,
                    id,
                    reason = e.reason_code(),
                    result_type = %e.result_type(),
                    "policy fetch failed: {e}"
                );
                Err(e)
            }
        }
    }

    /// The RFC 8461 §5.1 state machine (the table in the module documentation) for one lookup.
    async fn resolve(&self, domain: &Domain) -> Lookup {
        let now = self.clock.now();
        let cached = self.cached_policy(domain, now).await;

        // Negative cache: "no policy" remembered for the DNS negative TTL (bounded).
        if cached.is_none()
            && let Some(entry) = self.memory.lookup_entry(domain)
            && now < entry.negative_until
        {
            bump(&self.stats.negative_hits);
            return Lookup::none(entry.negative_error().cloned());
        }

        let (record, txt_ttl) = match self.discover(domain).await {
            Ok(found) => found,
            Err((error, negative_ttl)) => {
                // RFC 8461 §3.1 / §5.1: no usable TXT record or a DNS failure never evicts
                // a fresh cached policy; apply it.
                if let Some(policy) = cached {
                    bump(&self.stats.cache_hits);
                    return Lookup::cached(policy, Some(error));
                }
                if let Some(ttl) = negative_ttl {
                    let ttl = u64::from(ttl).min(self.config.negative_ttl_cap.as_secs());
                    if ttl > 0 {
                        let error = error.clone();
                        self.memory
                            .update(domain, |entry| entry.set_negative(now + ttl, error));
                    }
                }
                return Lookup::none(Some(error));
            }
        };

        // RFC 8461 §3.1: ids are compared for equality only.
        if let Some(policy) = &cached
            && *policy.record_id == *record.id
        {
            self.confirm_txt(domain, now, txt_ttl);
            bump(&self.stats.cache_hits);
            return Lookup::cached(policy.clone(), None);
        }

        // RFC 8461 §3.3: limit attempts to one per backoff period per (domain, id).
        let backoff = self.config.backoff.as_secs();
        if let Some(mark) = self
            .memory
            .entry(domain)
            .and_then(|e| e.failure_for(&record.id, now, backoff).cloned())
        {
            bump(&self.stats.backoff_skips);
            return match cached {
                Some(policy) => {
                    bump(&self.stats.cache_hits);
                    Lookup::cached(policy, Some(mark.error))
                }
                None => Lookup::none(Some(mark.error)),
            };
        }

        match self.fetch_policy(domain, &record.id, now).await {
            Ok(policy) => {
                self.confirm_txt(domain, now, txt_ttl);
                Lookup {
                    policy: Some(policy),
                    from_cache: false,
                    error: None,
                }
            }
            // RFC 8461 §3.3: on failure keep applying a fresh cached policy; without one,
            // deliver as if the domain had no MTA-STS.
            Err(e) => match cached {
                Some(policy) => {
                    bump(&self.stats.cache_hits);
                    Lookup::cached(policy, Some(e))
                }
                None => Lookup::none(Some(e)),
            },
        }
    }
}
