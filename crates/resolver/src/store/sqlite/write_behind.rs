//! Write-behind: the policies lookups fetched, written by the flusher thread in one
//! transaction per window instead of one transaction per lookup.
//!
//! A transaction costs the same few system calls (the WAL lock, a frame per page it
//! touches, the WAL header) whether it writes one policy or a hundred, and on a fresh lookup
//! those were most of what the store cost (docs/performance.md §2). [`Pending`] holds the
//! policies that [`Store::put_behind`](super::super::Store::put_behind) accepted and that the
//! flusher has not written yet; `get` answers from it first, so the daemon never fetches a
//! policy again because its write is still pending.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

use super::super::{StoreError, StoredPolicy};
use super::{sql_error, upsert};

/// Past this many pending policies the flusher writes at once rather than at the end of its
/// window, so a burst never holds more than this in memory (about 0.5 MB).
pub(super) const FLUSH_EARLY_AT: usize = 2048;

/// Policies accepted for writing, newest per domain.
#[derive(Debug, Default)]
pub(super) struct Pending(Mutex<HashMap<String, StoredPolicy>>);

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, StoredPolicy>> {
        // A map of owned values: a panic cannot leave it half-updated.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `entry` unless a newer one for its domain is queued (newer-wins, as in the
    /// table). Returns how many policies are pending now.
    pub(super) fn insert(&self, entry: &StoredPolicy) -> usize {
        let mut pending = self.lock();
        match pending.get_mut(&entry.domain) {
            Some(queued) if queued.fetched_at > entry.fetched_at => {}
            Some(queued) => queued.clone_from(entry),
            None => {
                pending.insert(entry.domain.clone(), entry.clone());
            }
        }
        pending.len()
    }

    /// Whether nothing is pending.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The pending policy of `domain`, if any.
    pub(super) fn get(&self, domain: &str) -> Option<StoredPolicy> {
        self.lock().get(domain).cloned()
    }

    /// Drops the pending policy of `domain`. Call it holding the writing connection, so that
    /// a flush cannot write the policy after the caller deleted its row.
    pub(super) fn forget(&self, domain: &str) {
        self.lock().remove(domain);
    }

    fn take(&self) -> Vec<StoredPolicy> {
        let mut pending = self.lock();
        if pending.is_empty() {
            return Vec::new();
        }
        pending.drain().map(|(_, entry)| entry).collect()
    }
}

/// Writes every pending policy in one transaction on `conn` (the store's writing
/// connection, locked by the caller for the whole flush). If the transaction fails, each
/// policy is tried alone, so one the database refuses does not cost the others; a policy
/// that still fails is dropped with a warning, as a failed `put` is (the memory layer keeps
/// answering for it, and the next fetch writes it again). Returns how many were written, or
/// the first error when one was dropped.
pub(super) fn flush(
    conn: &mut Connection,
    pending: &Pending,
    path: &Path,
) -> Result<usize, StoreError> {
    let batch = pending.take();
    if batch.is_empty() {
        return Ok(0);
    }
    let all = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(path, e))
        .and_then(|tx| {
            for entry in &batch {
                upsert(&tx, path, entry)?;
            }
            tx.commit().map_err(|e| sql_error(path, e))
        });
    if all.is_ok() {
        return Ok(batch.len());
    }
    let mut first_error = None;
    for entry in &batch {
        if let Err(error) = upsert(conn, path, entry) {
            tracing::warn!(
                domain = %entry.domain,
                %error,
                "could not write a fetched policy to the SQLite store; it stays in memory"
            );
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(batch.len()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(domain: &str, fetched_at: u64) -> StoredPolicy {
        StoredPolicy {
            domain: domain.into(),
            record_id: format!("id{fetched_at}"),
            body: String::new(),
            fetched_at,
            expires_at: fetched_at + 86400,
        }
    }

    #[test]
    fn the_newest_policy_per_domain_waits() {
        let pending = Pending::default();
        assert_eq!(pending.insert(&entry("a.example", 10)), 1);
        assert_eq!(pending.insert(&entry("a.example", 5)), 1, "older: ignored");
        assert_eq!(pending.get("a.example").map(|e| e.fetched_at), Some(10));
        assert_eq!(
            pending.insert(&entry("a.example", 20)),
            1,
            "newer: replaces"
        );
        assert_eq!(pending.get("a.example").map(|e| e.fetched_at), Some(20));
        assert_eq!(pending.insert(&entry("b.example", 1)), 2);
        pending.forget("a.example");
        assert_eq!(pending.get("a.example"), None);
        let taken = pending.take();
        assert_eq!(taken, vec![entry("b.example", 1)]);
        assert!(pending.take().is_empty(), "taken once");
    }
}
