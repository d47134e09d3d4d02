//! The bounded, sharded memory layer ([`MemoryCache`]): 32 shards behind read-write locks,
//! each within its share of `max_memory`, and what it holds and has evicted
//! ([`MemoryUsage`], for `/metrics`).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mta_sts::Domain;

use super::entry::Entry;
use super::policy::CachedPolicy;
use super::ring::{CLOCK_POLICY, SLOT_BYTES, Shard, Slot};
use super::weight::{chunk, weigh};

const SHARDS: usize = 32;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::fixtures::{CANONICAL, cached};

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
}
