//! The in-memory layer of the RFC 8461 cache: compact entries, sharded locks.
//!
//! Entry (RFC 8461 §3.3, §5.1): the policy last fetched successfully with its TXT id,
//! `fetched_at` and `expires_at = fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2), the
//! per-(domain, id) fetch failure marks (RFC 8461 §3.3 back-off), the negative-cache
//! deadline, and the refresher's bookkeeping (RFC 8461 §10.2). The state machine itself is in
//! [`crate::resolver`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mta_sts::{Domain, Policy};

use crate::error::Error;
use crate::store::StoredPolicy;

/// A policy as cached and applied. Shared (`Arc`) between the cache and every [`Lookup`]
/// that applies it.
///
/// Compact because a daemon holds one per destination domain (100,000 in well under
/// 50 MB): the record id is stored inline, and the body as served is kept only when it is
/// not the canonical rendering of the parsed policy (with the line ending it used), since it
/// can then be rebuilt byte for byte. [`CachedPolicy::body`] gives it back either way.
///
/// ```
/// use mta_sts::Policy;
/// use mta_sts_resolver::CachedPolicy;
/// let body = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n";
/// let cached = CachedPolicy::new(Policy::parse(body.as_bytes())?, "20240101", body, 0)
///     .expect("a valid id");
/// assert_eq!(cached.body(), body);
/// assert_eq!(cached.record_id.as_str(), "20240101");
/// # Ok::<(), mta_sts::policy::PolicyError>(())
/// ```
///
/// [`Lookup`]: crate::Lookup
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The parsed policy.
    pub policy: Policy,
    /// The `_mta-sts` TXT id the policy was fetched under.
    pub record_id: StsId,
    /// The body as served, when it is not the policy's canonical rendering with `line_end`.
    verbatim: Option<Box<str>>,
    /// The line end the served body used, when `verbatim` is `None`.
    line_end: LineEnd,
    /// Time of the successful HTTPS fetch (unix seconds).
    pub fetched_at: u64,
    /// `fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2).
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    CrLf,
    Lf,
}

fn render(policy: &Policy, end: LineEnd) -> String {
    let canonical = policy.to_string(); // CRLF line ends
    match end {
        LineEnd::CrLf => canonical,
        LineEnd::Lf => canonical.replace("\r\n", "\n"),
    }
}

/// The line end with which `policy` renders exactly as `body`, if any.
fn rendering_of(policy: &Policy, body: &str) -> Option<LineEnd> {
    [LineEnd::CrLf, LineEnd::Lf]
        .into_iter()
        .find(|&end| render(policy, end) == body)
}

impl CachedPolicy {
    /// Builds an entry for a policy fetched at `now` (RFC 8461 §3.2: max_age counts from the
    /// fetch; [`Policy::effective_max_age`] clamps it to 31557600). `None` when `record_id`
    /// is not an `sts-id` (RFC 8461 §3.1: 1 to 32 letters and digits).
    pub fn new(policy: Policy, record_id: &str, body: &str, now: u64) -> Option<CachedPolicy> {
        let expires_at = now.saturating_add(policy.effective_max_age());
        let line_end = rendering_of(&policy, body);
        Some(CachedPolicy {
            record_id: StsId::new(record_id)?,
            verbatim: line_end.is_none().then(|| body.into()),
            line_end: line_end.unwrap_or(LineEnd::CrLf),
            policy,
            fetched_at: now,
            expires_at,
        })
    }

    /// The body exactly as served (TLS-RPT `policy-string` wants its lines, RFC 8460 §4.4).
    pub fn body(&self) -> Cow<'_, str> {
        match &self.verbatim {
            Some(body) => Cow::Borrowed(body),
            None => Cow::Owned(render(&self.policy, self.line_end)),
        }
    }

    /// Whether the entry may still be applied at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// Rebuilds an entry from a store; `None` when the stored body no longer parses or the
    /// id is not an `sts-id`.
    pub fn from_stored(stored: &StoredPolicy) -> Option<CachedPolicy> {
        let policy = Policy::parse(stored.body.as_bytes()).ok()?;
        let mut cached = CachedPolicy::new(policy, &stored.record_id, &stored.body, 0)?;
        cached.fetched_at = stored.fetched_at;
        cached.expires_at = stored.expires_at;
        Some(cached)
    }

    /// The store form.
    pub fn to_stored(&self, domain: &Domain) -> StoredPolicy {
        StoredPolicy {
            domain: domain.as_str().to_string(),
            record_id: self.record_id.to_string(),
            body: self.body().into_owned(),
            fetched_at: self.fetched_at,
            expires_at: self.expires_at,
        }
    }
}

/// An `_mta-sts` record id stored inline (RFC 8461 §3.1: `sts-id = 1*32(ALPHA / DIGIT)`),
/// so a cached policy needs no allocation for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StsId {
    len: u8,
    bytes: [u8; 32],
}

impl StsId {
    /// `None` unless `id` is 1 to 32 ASCII letters and digits.
    pub fn new(id: &str) -> Option<StsId> {
        let valid = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| {
            let mut bytes = [0; 32];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            StsId {
                len: id.len() as u8, // ≤ 32, checked above
                bytes,
            }
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for StsId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for StsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for StsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A failed fetch for one TXT id (RFC 8461 §3.3: retry no sooner than 5 minutes later).
#[derive(Debug, Clone)]
pub(crate) struct FailMark {
    pub id: Arc<str>,
    pub at: u64,
    pub error: Error,
}

/// Everything known about one domain. Small (40 bytes): what every cached domain needs is
/// inline, the rarer failure bookkeeping sits behind one optional box.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub policy: Option<Arc<CachedPolicy>>,
    /// "No policy" is remembered until then (DNS negative TTL, bounded).
    pub negative_until: u64,
    /// When the refresher should fetch again.
    pub next_refresh: u64,
    /// Until when the last `_mta-sts` TXT answer, which confirmed the cached policy's id,
    /// is current (its DNS TTL): a DNS cache would give the same answer until then.
    pub txt_until: u64,
    trouble: Option<Box<Trouble>>,
}

/// The failure bookkeeping of an [`Entry`], absent while all is well.
#[derive(Debug, Clone, Default)]
struct Trouble {
    /// The error that produced the negative entry.
    negative_error: Option<Error>,
    /// Recent failure marks, newest last; a handful at most.
    fail_marks: Vec<FailMark>,
    /// Consecutive failed proactive refreshes.
    refresh_failures: u32,
}

impl Entry {
    pub fn fresh_policy(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.policy.as_ref().filter(|p| p.is_fresh(now))
    }

    /// The fresh policy while the TXT answer confirming its id is within its TTL.
    pub fn confirmed_policy(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.fresh_policy(now).filter(|_| now < self.txt_until)
    }

    fn trouble(&mut self) -> &mut Trouble {
        self.trouble.get_or_insert_default()
    }

    /// Drops the bookkeeping once nothing is left in it.
    fn tidy(&mut self) {
        if self.trouble.as_ref().is_some_and(|t| {
            t.negative_error.is_none() && t.fail_marks.is_empty() && t.refresh_failures == 0
        }) {
            self.trouble = None;
        }
    }

    fn fail_marks(&self) -> &[FailMark] {
        self.trouble.as_ref().map_or(&[], |t| &t.fail_marks)
    }

    pub fn failure_for(&self, id: &str, now: u64, backoff: u64) -> Option<&FailMark> {
        self.fail_marks()
            .iter()
            .rev()
            .find(|m| &*m.id == id && now < m.at.saturating_add(backoff))
    }

    pub fn mark_failure(&mut self, id: &str, now: u64, error: Error) {
        let marks = &mut self.trouble().fail_marks;
        marks.retain(|m| &*m.id != id);
        if marks.len() >= 4 {
            marks.remove(0);
        }
        marks.push(FailMark {
            id: Arc::from(id),
            at: now,
            error,
        });
    }

    /// Forgets the failure mark of `id` (its policy was just fetched).
    pub fn clear_failure(&mut self, id: &str) {
        if let Some(t) = &mut self.trouble {
            t.fail_marks.retain(|m| &*m.id != id);
        }
        self.tidy();
    }

    /// Remembers "no policy" until `until`, because of `error`.
    pub fn set_negative(&mut self, until: u64, error: Error) {
        self.negative_until = until;
        self.trouble().negative_error = Some(error);
    }

    /// The error behind the negative entry.
    pub fn negative_error(&self) -> Option<&Error> {
        self.trouble.as_ref()?.negative_error.as_ref()
    }

    /// Counts one more failed refresh; returns the consecutive count.
    pub fn note_refresh_failure(&mut self) -> u32 {
        let trouble = self.trouble();
        trouble.refresh_failures += 1;
        trouble.refresh_failures
    }

    /// A policy was installed: no negative entry, no failed refreshes.
    pub fn clear_negative_and_refresh_failures(&mut self) {
        self.negative_until = 0;
        if let Some(t) = &mut self.trouble {
            t.negative_error = None;
            t.refresh_failures = 0;
        }
        self.tidy();
    }

    /// Nothing worth keeping at `now` (expired policy, lapsed marks and negative entry).
    pub fn is_dead(&self, now: u64, backoff: u64) -> bool {
        self.fresh_policy(now).is_none()
            && now >= self.negative_until
            && self
                .fail_marks()
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

    /// Makes room for about `additional` more entries in all, spread over the shards.
    pub fn reserve(&self, additional: usize) {
        // Hashing spreads entries unevenly: leave each shard a 10 % margin.
        let per_shard = additional / SHARDS + additional / SHARDS / 10 + 1;
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .reserve(per_shard);
        }
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
/// `interval`, and in any case by half of the policy's lifetime. The interval gets a ±10 %
/// jitter from hashing the domain and fetch time with `seed`, a per-resolver random key:
/// one resolver spreads its domains over the band, and two resolvers (daemons sharing a
/// store) refresh a domain at unrelated times instead of in step.
pub(crate) fn next_refresh(
    seed: &RandomState,
    domain: &Domain,
    policy: &CachedPolicy,
    interval: u64,
) -> u64 {
    let spread = interval / 5; // 20 % window → ±10 %
    let jitter = if spread == 0 {
        0
    } else {
        seed.hash_one((domain, policy.fetched_at)) % spread
    };
    let jittered = interval - interval / 10 + jitter;
    let lifetime = policy.expires_at.saturating_sub(policy.fetched_at);
    policy.fetched_at + jittered.min(lifetime / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n";

    fn cached(body: &str) -> CachedPolicy {
        let policy = Policy::parse(body.as_bytes()).expect("policy");
        CachedPolicy::new(policy, "20240101", body, 0).expect("id")
    }

    #[test]
    fn canonical_bodies_are_rendered_back_byte_for_byte() {
        for body in [CANONICAL, &CANONICAL.replace("\r\n", "\n")] {
            let c = cached(body);
            assert!(c.verbatim.is_none(), "{body:?} is rebuilt, not stored");
            assert_eq!(c.body(), body);
        }
    }

    #[test]
    fn other_bodies_are_kept_verbatim() {
        for body in [
            "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n",
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400",
            "version: STSv1\nmode: enforce\r\nmx: mail.example.com\nmax_age: 86400\n",
            "# comment\nversion: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n",
        ] {
            let c = cached(body);
            assert!(c.verbatim.is_some(), "{body:?}");
            assert_eq!(c.body(), body);
        }
    }

    #[test]
    fn record_ids_are_sts_ids() {
        assert_eq!(
            StsId::new("20240101T000000").map(|i| i.to_string()),
            Some("20240101T000000".into())
        );
        assert!(StsId::new(&"a".repeat(32)).is_some());
        for bad in ["", "a-b", "é", &"a".repeat(33)] {
            assert!(StsId::new(bad).is_none(), "{bad:?}");
        }
    }

    /// A daemon holds one per domain: keep it within 136 bytes (glibc serves the `Arc`
    /// allocation from a 160-byte chunk).
    #[test]
    fn cached_policy_stays_small() {
        assert!(
            size_of::<CachedPolicy>() <= 136,
            "{}",
            size_of::<CachedPolicy>()
        );
        assert!(size_of::<Entry>() <= 40, "{}", size_of::<Entry>());
    }
}
