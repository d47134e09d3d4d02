//! One shard of the memory layer: two CLOCK rings (entries keeping a policy or failure
//! marks, and entries keeping only a negative answer), each evicting with its hand the
//! first entry no lookup asked for since the hand last passed.

use std::sync::atomic::{AtomicU8, Ordering};

use indexmap::IndexMap;
use mta_sts::Domain;

use super::entry::Entry;

/// Highest CLOCK count: a slot the hand passes this many times without a lookup in
/// between is evicted on the next pass.
pub(super) const CLOCK_MAX: u8 = 3;

/// CLOCK count of a new slot that keeps a policy or a failure mark; a slot that keeps only a
/// negative answer starts at 0, so cold negative answers go before cold policies.
pub(super) const CLOCK_POLICY: u8 = 1;

/// One entry in the map with its weight and CLOCK count.
pub(super) struct Slot {
    pub(super) entry: Entry,
    /// Heap bytes of the domain and the entry ([`Entry::heap_weight`]); 32 bits keep the
    /// slot at 48 bytes.
    pub(super) weight: u32,
    /// Lookups since the hand last passed, at most [`CLOCK_MAX`].
    pub(super) clock: AtomicU8,
}

impl Slot {
    /// A lookup used the entry: it survives one more pass of the hand.
    pub(super) fn touch(&self) {
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
pub(super) const SLOT_BYTES: usize =
    size_of::<(u64, Domain, Slot)>() + (size_of::<usize>() + 1) * 8 / 7 + 1;

/// One class of entries of a shard in insertion order (the CLOCK ring), with its weight.
#[derive(Default)]
pub(super) struct Ring {
    pub(super) map: IndexMap<Domain, Slot>,
    /// Σ slot weights.
    pub(super) weight: usize,
    /// The CLOCK hand: the index the next eviction looks at first.
    hand: usize,
}

impl Ring {
    /// Bytes the ring holds: its entries and its table, spare capacity included.
    pub(super) fn bytes(&self) -> usize {
        self.weight + self.map.capacity() * SLOT_BYTES
    }

    /// What inserting one more entry would add to the table: nothing while it has spare
    /// capacity, else the slots of a doubled table.
    pub(super) fn growth(&self) -> usize {
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
    pub(super) fn evict_one(&mut self, keep: &Domain) -> Option<Slot> {
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
pub(super) struct Shard {
    pub(super) keepers: Ring,
    pub(super) negatives: Ring,
}

impl Shard {
    pub(super) fn bytes(&self) -> usize {
        self.keepers.bytes() + self.negatives.bytes()
    }

    pub(super) fn get(&self, domain: &Domain) -> Option<&Slot> {
        self.keepers
            .map
            .get(domain)
            .or_else(|| self.negatives.map.get(domain))
    }

    pub(super) fn ring(&mut self, keeper: bool) -> &mut Ring {
        if keeper {
            &mut self.keepers
        } else {
            &mut self.negatives
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keepers.map.len() + self.negatives.map.len()
    }
}
