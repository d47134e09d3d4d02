//! The in-memory layer of the RFC 8461 cache: compact entries, sharded locks.
//!
//! Entry (RFC 8461 §3.3, §5.1): the policy last fetched successfully with its TXT id,
//! `fetched_at` and `expires_at = fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2), the
//! per-(domain, id) fetch failure marks (RFC 8461 §3.3 back-off), the negative-cache
//! deadline, and the refresher's bookkeeping (RFC 8461 §10.2). The state machine itself is in
//! [`crate::resolver`].

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use indexmap::IndexMap;
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

/// Highest CLOCK count: a slot the hand passes this many times without a lookup in
/// between is evicted on the next pass.
const CLOCK_MAX: u8 = 3;

/// CLOCK count of a new slot that keeps a policy or a failure mark; a slot that keeps only a
/// negative answer starts at 0, so cold negative answers go before cold policies.
const CLOCK_POLICY: u8 = 1;

/// The size glibc's malloc gives a request of `n` bytes (16-byte steps, 8 bytes of header,
/// 32 at least): what a weight counts, so the bound is on memory used, not asked for.
fn chunk(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// Heap bytes of a `compact_str` string: none up to 24 bytes (kept inline).
fn compact_heap(len: usize) -> usize {
    if len > 24 { chunk(len) } else { 0 }
}

/// Heap bytes behind an [`Error`] kept in an entry. A "no record" answer (the common
/// negative entry) holds the `_mta-sts` name; other errors hold a name and a message,
/// counted as 128 bytes.
fn error_heap(error: &Error) -> usize {
    match error {
        Error::NoRecord { name } => chunk(name.capacity()),
        _ => 128,
    }
}

impl CachedPolicy {
    /// Bytes this policy holds on the heap, its own `Arc` allocation included.
    fn weight(&self) -> usize {
        let policy = &self.policy;
        let patterns: usize = policy
            .mx
            .iter()
            .map(|p| compact_heap(p.base().len() + if p.is_wildcard() { 2 } else { 0 }))
            .sum();
        let extensions: usize = policy
            .extensions
            .iter()
            .map(|(k, v)| chunk(k.capacity()) + chunk(v.capacity()))
            .sum();
        chunk(2 * size_of::<usize>() + size_of::<CachedPolicy>())
            + chunk(policy.mx.capacity() * size_of::<mta_sts::MxPattern>())
            + patterns
            + chunk(policy.extensions.capacity() * size_of::<(String, String)>())
            + extensions
            + self.verbatim.as_ref().map_or(0, |b| chunk(b.len()))
    }
}

impl Entry {
    /// Bytes this entry holds on the heap (the policy counted in full, although lookups
    /// may share it for a while).
    fn heap_weight(&self) -> usize {
        let policy = self.policy.as_ref().map_or(0, |p| p.weight());
        let trouble = self.trouble.as_ref().map_or(0, |t| {
            chunk(size_of::<Trouble>())
                + t.negative_error.as_ref().map_or(0, error_heap)
                + chunk(t.fail_marks.capacity() * size_of::<FailMark>())
                + t.fail_marks
                    .iter()
                    .map(|m| chunk(2 * size_of::<usize>() + m.id.len()) + error_heap(&m.error))
                    .sum::<usize>()
        });
        policy + trouble
    }

    /// Whether losing the entry costs a fetch or a back-off (a policy, failure marks) rather
    /// than a DNS query (a negative answer only).
    fn is_keeper(&self) -> bool {
        self.policy.is_some() || !self.fail_marks().is_empty()
    }
}

/// The weight of `domain`'s slot holding `entry`.
fn weigh(domain: &Domain, entry: &Entry) -> u32 {
    let bytes = compact_heap(domain.as_str().len()) + entry.heap_weight();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// One entry in the map with its weight and CLOCK count.
struct Slot {
    entry: Entry,
    /// Heap bytes of the domain and the entry ([`Entry::heap_weight`]); 32 bits keep the
    /// slot at 48 bytes.
    weight: u32,
    /// Lookups since the hand last passed, at most [`CLOCK_MAX`].
    clock: AtomicU8,
}

impl Slot {
    /// A lookup used the entry: it survives one more pass of the hand.
    fn touch(&self) {
        // Load first: a hot entry already at the top is not written again, so readers
        // on other cores do not fight over its cache line.
        let count = self.clock.load(Ordering::Relaxed);
        if count < CLOCK_MAX {
            self.clock.store(count + 1, Ordering::Relaxed);
        }
    }
}

/// Bytes one slot of a table costs whether used or not: the entry (key, value and the hash
/// IndexMap keeps) and its index in the hash table (8 bytes and a control byte at a load
/// factor of 7/8).
const SLOT_BYTES: usize = size_of::<(u64, Domain, Slot)>() + (size_of::<usize>() + 1) * 8 / 7 + 1;

/// One class of entries of a shard in insertion order (the CLOCK ring), with its weight.
#[derive(Default)]
struct Ring {
    map: IndexMap<Domain, Slot>,
    /// Σ slot weights.
    weight: usize,
    /// The CLOCK hand: the index the next eviction looks at first.
    hand: usize,
}

impl Ring {
    /// Bytes the ring holds: its entries and its table, spare capacity included.
    fn bytes(&self) -> usize {
        self.weight + self.map.capacity() * SLOT_BYTES
    }

    /// What inserting one more entry would add to the table: nothing while it has spare
    /// capacity, else the slots of a doubled table.
    fn growth(&self) -> usize {
        if self.map.len() < self.map.capacity() {
            0
        } else {
            self.map.capacity().max(4) * SLOT_BYTES
        }
    }

    /// Gives back the table's spare slots once a quarter or less of them are used (a flood
    /// of negative answers, mostly evicted since, leaves a large table behind): the slots
    /// count against the bound, so they would crowd out entries of the other ring. Halving
    /// at a quarter and doubling when full keeps a ring from resizing back and forth.
    fn shrink_if_sparse(&mut self) {
        const SMALLEST: usize = 16;
        let capacity = self.map.capacity();
        if capacity > SMALLEST && self.map.len() <= capacity / 4 {
            self.map.shrink_to((self.map.len() * 2).max(SMALLEST));
        }
    }

    /// Evicts one entry other than `keep` with the CLOCK hand: entries it passes lose one
    /// count, the first found at 0 goes. `None` when there is nothing else to evict.
    fn evict_one(&mut self, keep: &Domain) -> Option<Slot> {
        // Ends: every step lowers a count or evicts, and `keep` is passed once a round.
        while self.map.len() > usize::from(self.map.contains_key(keep)) {
            if self.hand >= self.map.len() {
                self.hand = 0;
            }
            let (domain, slot) = self.map.get_index_mut(self.hand)?;
            let clock = slot.clock.get_mut();
            if domain == keep || *clock > 0 {
                *clock = clock.saturating_sub(u8::from(domain != keep));
                self.hand += 1;
                continue;
            }
            // The last entry moves to the hand's index: the hand looks at it next.
            let (_, slot) = self.map.swap_remove_index(self.hand)?;
            self.weight -= slot.weight as usize;
            self.shrink_if_sparse();
            return Some(slot);
        }
        None
    }
}

/// One shard: entries keeping a policy or failure marks, and entries keeping only a
/// negative answer, each a CLOCK ring.
#[derive(Default)]
struct Shard {
    keepers: Ring,
    negatives: Ring,
}

impl Shard {
    fn bytes(&self) -> usize {
        self.keepers.bytes() + self.negatives.bytes()
    }

    fn get(&self, domain: &Domain) -> Option<&Slot> {
        self.keepers
            .map
            .get(domain)
            .or_else(|| self.negatives.map.get(domain))
    }

    fn ring(&mut self, keeper: bool) -> &mut Ring {
        if keeper {
            &mut self.keepers
        } else {
            &mut self.negatives
        }
    }

    fn len(&self) -> usize {
        self.keepers.map.len() + self.negatives.map.len()
    }
}

/// What the memory layer holds and has dropped, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes held (entries, their heap, the tables' capacity).
    pub bytes: u64,
    /// The bound (`None`: unbounded).
    pub limit: Option<u64>,
    /// Entries held.
    pub entries: u64,
    /// Entries with a policy or failure marks evicted to stay within the bound.
    pub evicted_policies: u64,
    /// Negative entries evicted to stay within the bound.
    pub evicted_negatives: u64,
}

/// Sharded map from domain to [`Entry`]; reads of a cached policy take one shared lock.
///
/// With a bound (`max_memory`), each of the 32 shards holds at most 1/32 of it, counted as
/// each entry's heap bytes as malloc hands them out plus the tables' slots (spare capacity
/// included). A shard keeps two CLOCK rings: entries with a policy or failure marks, and
/// entries with only a negative answer. Lookups raise an entry's count (up to 3), the hand
/// lowers it and evicts an entry it finds at 0, so entries no lookup asked for lately go.
/// Negative entries go first. A negative answer that needs room takes it from other
/// negative answers while they hold more than a quarter of the shard's share (what is kept
/// for the hottest of them), else from policies; a policy that needs room takes it from
/// negative answers until they are down to a sixteenth, so a hot set of policies gets
/// three quarters of the share back after a flood of negative answers. Either takes from
/// the other class when its own is empty. A table is not grown past what the bound pays for: the ring evicts
/// one of its own instead.
pub(crate) struct MemoryCache {
    shards: Box<[RwLock<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Bytes one shard may hold; `None`: unbounded.
    shard_budget: Option<usize>,
    limit: Option<u64>,
    evicted_policies: AtomicU64,
    evicted_negatives: AtomicU64,
    /// The earliest refresh time of an evicted policy (`u64::MAX`: none): the refresher
    /// looks for due policies in the store from then on.
    evicted_due: AtomicU64,
}

impl MemoryCache {
    /// An empty cache holding at most about `limit` bytes (`None`: unbounded).
    pub fn new(limit: Option<u64>) -> Self {
        MemoryCache {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            shard_budget: limit.map(|l| usize::try_from(l / SHARDS as u64).unwrap_or(usize::MAX)),
            limit,
            evicted_policies: AtomicU64::new(0),
            evicted_negatives: AtomicU64::new(0),
            evicted_due: AtomicU64::new(u64::MAX),
        }
    }

    fn shard(&self, domain: &Domain) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(domain) as usize) % SHARDS]
    }

    fn read(&self, domain: &Domain) -> RwLockReadGuard<'_, Shard> {
        // A panic while holding the lock cannot leave an entry half-written: recover.
        self.shard(domain).read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, domain: &Domain) -> RwLockWriteGuard<'_, Shard> {
        self.shard(domain)
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn shards(&self) -> impl Iterator<Item = RwLockReadGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The slot of `domain`, counted as used when the cache is bounded.
    fn used<'a>(&self, shard: &'a Shard, domain: &Domain) -> Option<&'a Slot> {
        let slot = shard.get(domain)?;
        if self.shard_budget.is_some() {
            slot.touch();
        }
        Some(slot)
    }

    /// The fresh policy whose TXT confirmation is still within its TTL (no I/O needed).
    pub fn confirmed(&self, domain: &Domain, now: u64) -> Option<Arc<CachedPolicy>> {
        let shard = self.read(domain);
        // Policies are in the keepers' ring: one probe.
        let slot = shard.keepers.map.get(domain)?;
        let policy = slot.entry.confirmed_policy(now)?;
        if self.shard_budget.is_some() {
            slot.touch();
        }
        Some(policy.clone())
    }

    /// The cached policy (fresh or not), for a lookup.
    pub fn policy(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        let shard = self.read(domain);
        self.used(&shard, domain)
            .and_then(|s| s.entry.policy.clone())
    }

    /// Whether a policy (fresh or not) is in memory; not counted as a use.
    pub fn has_policy(&self, domain: &Domain) -> bool {
        self.read(domain)
            .keepers
            .map
            .get(domain)
            .is_some_and(|s| s.entry.policy.is_some())
    }

    /// A copy of the entry, for a lookup.
    pub fn lookup_entry(&self, domain: &Domain) -> Option<Entry> {
        let shard = self.read(domain);
        self.used(&shard, domain).map(|s| s.entry.clone())
    }

    /// A copy of the entry; not counted as a use (the refresher's scan).
    pub fn entry(&self, domain: &Domain) -> Option<Entry> {
        self.read(domain).get(domain).map(|s| s.entry.clone())
    }

    /// Runs `f` on the entry, created empty if needed, then, with a bound, evicts other
    /// entries of the shard while it holds more than its share.
    pub fn update<R>(&self, domain: &Domain, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut guard = self.write(domain);
        let shard = &mut *guard;
        let was_keeper = shard.keepers.map.contains_key(domain);
        if !was_keeper && !shard.negatives.map.contains_key(domain) {
            // A new entry: filled first, then put in the ring of its class.
            let mut entry = Entry::default();
            let result = f(&mut entry);
            let keeper = entry.is_keeper();
            self.make_room(shard, domain, keeper);
            let ring = shard.ring(keeper);
            let weight = weigh(domain, &entry);
            ring.weight += weight as usize;
            let clock = if keeper { CLOCK_POLICY } else { 0 };
            ring.map.insert(
                domain.clone(),
                Slot {
                    entry,
                    weight,
                    clock: AtomicU8::new(clock),
                },
            );
            self.fit(shard, domain);
            return result;
        }
        let ring = shard.ring(was_keeper);
        let Some(slot) = ring.map.get_mut(domain) else {
            unreachable!("the entry was found above")
        };
        let result = f(&mut slot.entry);
        let weight = weigh(domain, &slot.entry);
        ring.weight = ring.weight - slot.weight as usize + weight as usize;
        slot.weight = weight;
        let keeper = slot.entry.is_keeper();
        if keeper != was_keeper {
            // The entry changed class: move it to the other ring.
            if let Some(mut slot) = ring.map.swap_remove(domain) {
                ring.weight -= slot.weight as usize;
                self.make_room(shard, domain, keeper);
                if keeper {
                    let clock = slot.clock.get_mut();
                    *clock = (*clock).max(CLOCK_POLICY);
                }
                let ring = shard.ring(keeper);
                ring.weight += slot.weight as usize;
                ring.map.insert(domain.clone(), slot);
            }
        }
        self.fit(shard, domain);
        result
    }

    /// With a bound, evicts entries of `shard` other than `keep` while it holds more than
    /// its share.
    fn fit(&self, shard: &mut Shard, keep: &Domain) {
        if let Some(budget) = self.shard_budget {
            let keeper = shard.keepers.map.contains_key(keep);
            while shard.bytes() > budget && self.evict(shard, keep, budget, keeper) {}
        }
    }

    /// Before an entry joins the `keeper` ring of `shard`: when the ring's table would
    /// have to grow past what the bound pays for, evicts instead (others first, then one of
    /// the ring's own so the table keeps its size).
    fn make_room(&self, shard: &mut Shard, keep: &Domain, keeper: bool) {
        let Some(budget) = self.shard_budget else {
            return;
        };
        let growth = shard.ring(keeper).growth();
        if growth == 0 || shard.bytes() + growth <= budget {
            return;
        }
        let target = budget.saturating_sub(growth);
        while shard.bytes() > target && self.evict(shard, keep, target, keeper) {}
        if shard.bytes() + growth > budget
            && let Some(slot) = shard.ring(keeper).evict_one(keep)
        {
            self.note_eviction(&slot);
        }
    }

    /// Evicts one entry of `shard` other than `keep` to make room for an entry of the
    /// class `for_keeper` names: negative answers first while they hold more than a quarter
    /// of `budget` (room for a negative answer) or a sixteenth (room for a policy). Returns
    /// whether it did.
    fn evict(&self, shard: &mut Shard, keep: &Domain, budget: usize, for_keeper: bool) -> bool {
        let negatives_floor = if for_keeper { budget / 16 } else { budget / 4 };
        let negatives_first = shard.negatives.bytes() > negatives_floor;
        let order = if negatives_first {
            [false, true]
        } else {
            [true, false]
        };
        for keeper in order {
            if let Some(slot) = shard.ring(keeper).evict_one(keep) {
                self.note_eviction(&slot);
                return true;
            }
        }
        false
    }

    fn note_eviction(&self, slot: &Slot) {
        if slot.entry.is_keeper() {
            self.evicted_policies.fetch_add(1, Ordering::Relaxed);
            if slot.entry.policy.is_some() {
                self.evicted_due
                    .fetch_min(slot.entry.next_refresh, Ordering::Relaxed);
            }
        } else {
            self.evicted_negatives.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Makes room for about `additional` more policies in all, spread over the shards;
    /// with a bound, for no more than half of what it can pay for.
    pub fn reserve(&self, additional: usize) {
        let additional = match self.limit {
            // The smallest an entry with a policy can be: its slot and its `Arc`.
            Some(limit) => {
                let smallest =
                    SLOT_BYTES + chunk(2 * size_of::<usize>() + size_of::<CachedPolicy>());
                additional.min(usize::try_from(limit).unwrap_or(usize::MAX) / smallest / 2)
            }
            None => additional,
        };
        // Hashing spreads entries unevenly: leave each shard a 10 % margin.
        let per_shard = additional / SHARDS + additional / SHARDS / 10 + 1;
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .keepers
                .map
                .reserve(per_shard);
        }
    }

    /// Removes the entry.
    pub fn remove(&self, domain: &Domain) {
        let mut shard = self.write(domain);
        for keeper in [true, false] {
            let ring = shard.ring(keeper);
            if let Some(slot) = ring.map.swap_remove(domain) {
                ring.weight -= slot.weight as usize;
            }
        }
    }

    /// Every domain with an entry.
    pub fn domains(&self) -> Vec<Domain> {
        let mut out = Vec::new();
        for shard in self.shards() {
            out.extend(shard.keepers.map.keys().cloned());
            out.extend(shard.negatives.map.keys().cloned());
        }
        out
    }

    /// Drops entries with nothing worth keeping.
    pub fn prune(&self, now: u64, backoff: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            for keeper in [true, false] {
                let ring = shard.ring(keeper);
                let before = ring.map.len();
                let mut freed = 0;
                ring.map.retain(|_, s| {
                    let dead = s.entry.is_dead(now, backoff);
                    if dead {
                        freed += s.weight as usize;
                    }
                    !dead
                });
                ring.weight -= freed;
                removed += before - ring.map.len();
            }
        }
        removed
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards().map(|s| s.len()).sum()
    }

    /// What the cache holds and has evicted.
    pub fn usage(&self) -> MemoryUsage {
        let (mut bytes, mut entries) = (0, 0);
        for shard in self.shards() {
            bytes += shard.bytes() as u64;
            entries += shard.len() as u64;
        }
        MemoryUsage {
            bytes,
            limit: self.limit,
            entries,
            evicted_policies: self.evicted_policies.load(Ordering::Relaxed),
            evicted_negatives: self.evicted_negatives.load(Ordering::Relaxed),
        }
    }

    /// Takes the earliest refresh time of the policies evicted since the last call
    /// (`u64::MAX`: none), for the refresher's look into the store.
    pub fn take_evicted_due(&self) -> u64 {
        self.evicted_due.swap(u64::MAX, Ordering::Relaxed)
    }

    /// Lowers the time from which the refresher looks for due policies in the store.
    pub fn note_evicted_due(&self, at: u64) {
        self.evicted_due.fetch_min(at, Ordering::Relaxed);
    }

    /// The time from which the refresher looks for due policies in the store
    /// (`u64::MAX`: no policy was evicted).
    pub fn evicted_due(&self) -> u64 {
        self.evicted_due.load(Ordering::Relaxed)
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
    next_refresh_at(seed, domain, policy.fetched_at, policy.expires_at, interval)
}

/// [`next_refresh`] from the times alone (a stored policy not parsed yet).
pub(crate) fn next_refresh_at(
    seed: &RandomState,
    domain: &Domain,
    fetched_at: u64,
    expires_at: u64,
    interval: u64,
) -> u64 {
    let spread = interval / 5; // 20 % window → ±10 %
    let jitter = if spread == 0 {
        0
    } else {
        seed.hash_one((domain, fetched_at)) % spread
    };
    let jittered = interval - interval / 10 + jitter;
    let lifetime = expires_at.saturating_sub(fetched_at);
    fetched_at + jittered.min(lifetime / 2).max(1)
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

    /// `n` domains named `<prefix><i>.test` that land in the same shard of `cache`.
    fn one_shard(cache: &MemoryCache, prefix: &str, n: usize) -> Vec<Domain> {
        (0..)
            .filter_map(|i| Domain::parse(&format!("{prefix}{i}.test")).ok())
            .filter(|d| std::ptr::eq(cache.shard(d), &cache.shards[0]))
            .take(n)
            .collect()
    }

    /// After a flood of negative answers fills a shard, policies take room from them until
    /// they are down to a sixteenth of the share; only then is a policy evicted.
    #[test]
    fn policies_take_room_from_negative_answers_down_to_a_sixteenth() {
        const BUDGET: usize = 64_000;
        let cache = MemoryCache::new(Some((BUDGET * SHARDS) as u64));
        let negatives = one_shard(&cache, "none", 2000);
        for d in &negatives {
            cache.update(d, |e| e.negative_until = u64::MAX);
        }
        let first = &negatives[0];
        let bytes = |cache: &MemoryCache| {
            let shard = cache.read(first);
            (shard.keepers.bytes(), shard.negatives.bytes())
        };
        assert!(bytes(&cache).1 > BUDGET / 4, "{:?}", bytes(&cache));

        let policy = Arc::new(cached(CANONICAL));
        let mut at_first_eviction = None;
        for d in one_shard(&cache, "policy", 2000) {
            let before = bytes(&cache);
            cache.update(&d, |e| e.policy = Some(policy.clone()));
            if cache.evicted_policies.load(Ordering::Relaxed) > 0 {
                at_first_eviction = Some(before);
                break;
            }
        }
        let (keepers, negatives) = at_first_eviction.expect("the shard filled with policies");
        assert!(
            negatives <= BUDGET / 16,
            "{negatives} bytes of negative answers left"
        );
        assert!(keepers > BUDGET * 3 / 4, "{keepers} bytes of policies");
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
