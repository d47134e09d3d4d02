//! The open connections, for the connection limits and eviction (the [`server`](super)
//! module documentation): every connection has a [`Slot`] in the [`Registry`] while it is
//! [`Registered`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{ServerOptions, Shared};

/// [`Slot::state`] of a connection with a lookup in flight or a reply unwritten.
pub(super) const BUSY: u64 = 0;
/// [`Slot::state`] of a connection chosen for eviction.
pub(super) const EVICTED: u64 = u64::MAX;

/// A connection's entry in the [`Registry`].
pub(super) struct Slot {
    /// [`BUSY`], [`EVICTED`], or when it turned idle (see [`Registry::stamp`]). Only the
    /// evictor moves an idle state to `EVICTED` (compare-and-swap), only the connection
    /// moves it to `BUSY` (swap, seeing an eviction it lost to).
    pub(super) state: AtomicU64,
    /// Wakes the connection when it is evicted.
    pub(super) evict: Notify,
}

/// The open connections, for the connection limits and eviction (the [`server`](super)
/// module documentation).
pub(super) struct Registry {
    epoch: tokio::time::Instant,
    max: usize,
    max_per_peer: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    slots: HashMap<u64, (Option<IpAddr>, Arc<Slot>)>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let (peer, slot) = self.slots.remove(&id)?;
        if let Some(ip) = peer
            && let Some(count) = self.per_peer.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_peer.remove(&ip);
            }
        }
        Some(slot)
    }
}

impl Registry {
    pub(super) fn new(options: &ServerOptions) -> Registry {
        Registry {
            epoch: tokio::time::Instant::now(),
            max: options.max_connections,
            max_per_peer: options.max_per_peer,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle state for now: milliseconds since the server started, plus one (never
    /// [`BUSY`]).
    pub(super) fn stamp(&self) -> u64 {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(EVICTED - 2);
        ms.saturating_add(1).min(EVICTED - 1)
    }

    /// Whether a connection from `peer` may be registered now without evicting.
    pub(super) fn peer_full(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            self.table().per_peer.get(&ip).copied().unwrap_or(0) >= self.max_per_peer
        })
    }

    pub(super) fn full(&self) -> bool {
        self.table().slots.len() >= self.max
    }

    pub(super) fn register(&self, peer: Option<IpAddr>) -> (u64, Arc<Slot>) {
        let slot = Arc::new(Slot {
            state: AtomicU64::new(self.stamp()),
            evict: Notify::new(),
        });
        let mut table = self.table();
        let id = table.next_id;
        table.next_id += 1;
        table.slots.insert(id, (peer, Arc::clone(&slot)));
        if let Some(ip) = peer {
            *table.per_peer.entry(ip).or_default() += 1;
        }
        (id, slot)
    }

    /// Evicts the longest-idle connection (of `peer` when given); false when none is idle.
    /// The evicted connection leaves the table at once; it closes a moment later.
    pub(super) fn evict_longest_idle(&self, peer: Option<IpAddr>) -> bool {
        let mut table = self.table();
        // A candidate may turn busy between the scan and the swap: scan again.
        for _ in 0..8 {
            let oldest = table
                .slots
                .iter()
                .filter(|(_, (ip, _))| peer.is_none() || *ip == peer)
                .filter_map(|(id, (_, slot))| {
                    let state = slot.state.load(Ordering::Acquire);
                    (state != BUSY && state != EVICTED).then_some((state, *id))
                })
                .min();
            let Some((state, id)) = oldest else {
                return false;
            };
            let Some((_, slot)) = table.slots.get(&id) else {
                return false;
            };
            if slot
                .state
                .compare_exchange(state, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if let Some(slot) = table.remove(id) {
                    slot.evict.notify_one();
                }
                return true;
            }
        }
        false
    }

    fn release(&self, id: u64) {
        self.table().remove(id);
    }
}

/// Removes a connection from the [`Registry`] however its task ends.
pub(super) struct Registered {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.registry.release(self.id);
        self.shared
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}
