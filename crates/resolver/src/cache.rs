//! The in-memory layer of the RFC 8461 cache: compact entries, sharded locks.
//!
//! Entry (rfc-requirements §2.5): the policy last fetched successfully with its TXT id,
//! `fetched_at` and `expires_at = fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2), the
//! per-(domain, id) fetch failure marks (RFC 8461 §3.3 back-off), the negative-cache
//! deadline, and the refresher's bookkeeping (RFC 8461 §10.2). The state machine itself is in
//! [`crate::resolver`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mta_sts::{Domain, Policy};

use crate::error::Error;
use crate::store::StoredPolicy;

/// A policy as cached and applied. Shared (`Arc`) between the cache and every [`Lookup`]
/// that applies it.
///
/// [`Lookup`]: crate::Lookup
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The parsed policy.
    pub policy: Arc<Policy>,
    /// The `_mta-sts` TXT id the policy was fetched under.
    pub record_id: Arc<str>,
    /// The body exactly as served (TLS-RPT `policy-string` wants its lines).
    pub body: Arc<str>,
    /// Time of the successful HTTPS fetch (unix seconds).
    pub fetched_at: u64,
    /// `fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2).
    pub expires_at: u64,
}

impl CachedPolicy {
    /// Builds an entry for a policy fetched at `now` (RFC 8461 §3.2: max_age counts from the
    /// fetch; [`Policy::effective_max_age`] clamps it to 31557600).
    pub fn new(policy: Policy, record_id: &str, body: &str, now: u64) -> CachedPolicy {
        let expires_at = now.saturating_add(policy.effective_max_age());
        CachedPolicy {
            policy: Arc::new(policy),
            record_id: Arc::from(record_id),
            body: Arc::from(body),
            fetched_at: now,
            expires_at,
        }
    }

    /// Whether the entry may still be applied at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// Rebuilds an entry from a store; `None` when the stored body no longer parses.
    pub fn from_stored(stored: &StoredPolicy) -> Option<CachedPolicy> {
        let policy = Policy::parse(stored.body.as_bytes()).ok()?;
        Some(CachedPolicy {
            policy: Arc::new(policy),
            record_id: Arc::from(stored.record_id.as_str()),
            body: Arc::from(stored.body.as_str()),
            fetched_at: stored.fetched_at,
            expires_at: stored.expires_at,
        })
    }

    /// The store form.
    pub fn to_stored(&self, domain: &Domain) -> StoredPolicy {
        StoredPolicy {
            domain: domain.as_str().to_string(),
            record_id: self.record_id.to_string(),
            body: self.body.to_string(),
            fetched_at: self.fetched_at,
            expires_at: self.expires_at,
        }
    }
}

/// A failed fetch for one TXT id (RFC 8461 §3.3: retry no sooner than 5 minutes later).
#[derive(Debug, Clone)]
pub(crate) struct FailMark {
    pub id: Arc<str>,
    pub at: u64,
    pub error: Error,
}

/// Everything known about one domain.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub policy: Option<Arc<CachedPolicy>>,
    /// "No policy" is remembered until then (DNS negative TTL, bounded).
    pub negative_until: u64,
    /// The error that produced the negative entry.
    pub negative_error: Option<Box<Error>>,
    /// Recent failure marks, newest last; a handful at most.
    pub fail_marks: Vec<FailMark>,
    /// Consecutive failed proactive refreshes.
    pub refresh_failures: u32,
    /// When the refresher should fetch again.
    pub next_refresh: u64,
    /// Until when the last `_mta-sts` TXT answer, which confirmed the cached policy's id,
    /// is current (its DNS TTL): a DNS cache would give the same answer until then.
    pub txt_until: u64,
}

impl Entry {
    pub fn fresh_policy(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.policy.as_ref().filter(|p| p.is_fresh(now))
    }

    /// The fresh policy while the TXT answer confirming its id is within its TTL.
    pub fn confirmed_policy(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.fresh_policy(now).filter(|_| now < self.txt_until)
    }

    pub fn failure_for(&self, id: &str, now: u64, backoff: u64) -> Option<&FailMark> {
        self.fail_marks
            .iter()
            .rev()
            .find(|m| &*m.id == id && now < m.at.saturating_add(backoff))
    }

    pub fn mark_failure(&mut self, id: &str, now: u64, error: Error) {
        self.fail_marks.retain(|m| &*m.id != id);
        if self.fail_marks.len() >= 4 {
            self.fail_marks.remove(0);
        }
        self.fail_marks.push(FailMark {
            id: Arc::from(id),
            at: now,
            error,
        });
    }

    /// Nothing worth keeping at `now` (expired policy, lapsed marks and negative entry).
    pub fn is_dead(&self, now: u64, backoff: u64) -> bool {
        self.fresh_policy(now).is_none()
            && now >= self.negative_until
            && self
                .fail_marks
                .iter()
                .all(|m| now >= m.at.saturating_add(backoff))
    }
}

const SHARDS: usize = 32;

/// Sharded map from domain to [`Entry`]; reads of a cached policy take one shared lock.
pub(crate) struct MemoryCache {
    shards: Box<[RwLock<HashMap<Domain, Entry>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl MemoryCache {
    pub fn new() -> Self {
        MemoryCache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, domain: &Domain) -> &RwLock<HashMap<Domain, Entry>> {
        &self.shards[(self.hasher.hash_one(domain) as usize) % SHARDS]
    }

    fn read(&self, domain: &Domain) -> RwLockReadGuard<'_, HashMap<Domain, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written: recover.
        self.shard(domain).read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, domain: &Domain) -> RwLockWriteGuard<'_, HashMap<Domain, Entry>> {
        self.shard(domain)
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The fresh policy whose TXT confirmation is still within its TTL (no I/O needed).
    pub fn confirmed(&self, domain: &Domain, now: u64) -> Option<Arc<CachedPolicy>> {
        self.read(domain)
            .get(domain)
            .and_then(|e| e.confirmed_policy(now).cloned())
    }

    /// The cached policy (fresh or not).
    pub fn policy(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        self.read(domain).get(domain).and_then(|e| e.policy.clone())
    }

    /// A copy of the entry.
    pub fn entry(&self, domain: &Domain) -> Option<Entry> {
        self.read(domain).get(domain).cloned()
    }

    /// Runs `f` on the entry, created empty if needed.
    pub fn update<R>(&self, domain: &Domain, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut shard = self.write(domain);
        f(shard.entry(domain.clone()).or_default())
    }

    /// Removes the entry.
    pub fn remove(&self, domain: &Domain) {
        self.write(domain).remove(domain);
    }

    /// Every domain with an entry.
    pub fn domains(&self) -> Vec<Domain> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.keys().cloned());
        }
        out
    }

    /// Drops entries with nothing worth keeping.
    pub fn prune(&self, now: u64, backoff: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            let before = shard.len();
            shard.retain(|_, e| !e.is_dead(now, backoff));
            removed += before - shard.len();
        }
        removed
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// When to refresh a policy fetched at `fetched_at` (RFC 8461 §3.3, §10.2): after about
/// `interval` (±10 % jitter derived from the domain, so a fleet does not refetch in step),
/// and in any case by half of the policy's lifetime.
pub(crate) fn next_refresh(domain: &Domain, policy: &CachedPolicy, interval: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    domain.hash(&mut h);
    policy.fetched_at.hash(&mut h);
    let spread = interval / 5; // 20 % window → ±10 %
    let jitter = if spread == 0 { 0 } else { h.finish() % spread };
    let jittered = interval - interval / 10 + jitter;
    let lifetime = policy.expires_at.saturating_sub(policy.fetched_at);
    policy.fetched_at + jittered.min(lifetime / 2).max(1)
}
