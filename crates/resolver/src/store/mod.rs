//! Where cached policies live between lookups and across restarts.
//!
//! A [`Store`] persists [`StoredPolicy`] entries: the raw policy body exactly as fetched,
//! the TXT record id it was fetched under, and the RFC 8461 §3.2 timestamps. The resolver
//! always keeps its own memory layer in front of the store, so a store outage never makes a
//! lookup fail (RFC 8461 §3.3 asks only for a cache that outlives lookups); stores only have to be durable and shareable.
//!
//! Times are seconds since the Unix epoch passed in by the caller, never read from a clock
//! here, so the cache can be tested with an injected clock.

use std::time::Duration;

use async_trait::async_trait;

mod memory;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "redis")]
pub use self::redis::{RedisOptions, RedisSentinelOptions, RedisStore, SentinelAddress};
#[cfg(feature = "sqlite")]
pub use self::sqlite::{SqliteOptions, SqliteStore};

/// One cached policy as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredPolicy {
    /// Canonical policy domain (lower-case A-labels, no trailing dot).
    pub domain: String,
    /// The `id` of the `_mta-sts` TXT record the policy was fetched under.
    pub record_id: String,
    /// The policy body exactly as served (UTF-8); parse it with `mta_sts::Policy::parse`.
    pub body: String,
    /// When the last successful HTTPS fetch happened (RFC 8461 §3.2: max_age counts from it).
    pub fetched_at: u64,
    /// `fetched_at + min(max_age, 31557600)`: after this the entry must not be applied.
    pub expires_at: u64,
}

impl StoredPolicy {
    /// Whether the entry may still be applied at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }
}

/// Why a store operation failed. The resolver logs it and carries on from memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or refused the operation (connection, I/O, lock).
    #[error("the {backend} store is unavailable: {message}")]
    Unavailable {
        /// `sqlite`, `redis`, `redis_sentinel`, `postgres`, …
        backend: &'static str,
        /// What the backend said.
        message: String,
    },
    /// Stored data could not be decoded; the entry is ignored.
    #[error("a stored entry for {domain} is corrupt: {message}")]
    Corrupt {
        /// The domain whose entry is unreadable.
        domain: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A durable home for cached policies, shared by one or many resolvers.
///
/// Implementations must be safe to call concurrently. `put` keeps the newer of two entries
/// for the same domain (by `fetched_at`) so that several daemons sharing one store never
/// replace a fresh policy with an older one.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The entry for `domain`, if any (expired entries may be returned; the caller decides).
    async fn get(&self, domain: &str) -> Result<Option<StoredPolicy>, StoreError>;

    /// Stores `entry` unless a newer one (larger `fetched_at`) is already there. `now` is the
    /// current time, for backends that expire keys themselves.
    async fn put(&self, entry: &StoredPolicy, now: u64) -> Result<(), StoreError>;

    /// Stores `entry` like [`Store::put`], but may return before it is written: the store
    /// writes it within a bounded window it documents, and its `get` returns it meanwhile.
    /// The resolver stores fetched policies so, since a lookup need not wait for the disk
    /// (RFC 8461 §3.3 asks only that a cache outlive lookups). The default is
    /// [`Store::put`]; the SQLite store batches them (`[cache] flush_window`).
    async fn put_behind(&self, entry: &StoredPolicy, now: u64) -> Result<(), StoreError> {
        self.put(entry, now).await
    }

    /// Writes at once what [`Store::put_behind`] still holds; the daemon calls it when it
    /// stops. Nothing to do by default.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes the entry for `domain`, a pending [`Store::put_behind`] included.
    async fn remove(&self, domain: &str) -> Result<(), StoreError>;

    /// Every unexpired entry at `now`, for a warm start and for the proactive refresher.
    async fn load_all(&self, now: u64) -> Result<Vec<StoredPolicy>, StoreError>;

    /// About how many unexpired entries there are at `now`, when the backend can tell
    /// cheaply: a warm start sizes the memory table once instead of growing it by doubling,
    /// which would leave the outgrown tables as holes in the heap. `None` by default.
    async fn count_hint(&self, _now: u64) -> Option<usize> {
        None
    }

    /// Up to `limit` unexpired entries at `now` whose domains sort after `after`, in domain
    /// order: a warm start of 100,000 entries reads them a page at a time, so it never holds
    /// them all at once (less peak memory, and less heap left fragmented behind the cache).
    ///
    /// The default reads everything through [`Store::load_all`] and slices it; backends that
    /// can page natively override it.
    async fn load_page(
        &self,
        now: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredPolicy>, StoreError> {
        let mut all = self.load_all(now).await?;
        all.retain(|e| after.is_none_or(|a| e.domain.as_str() > a));
        all.sort_unstable_by(|a, b| a.domain.cmp(&b.domain));
        all.truncate(limit);
        Ok(all)
    }

    /// Claims the proactive refresh of `domain` for `ttl`: `Ok(false)` while another
    /// resolver sharing this store holds a live lease on it, so a fleet refetches each due
    /// policy once instead of once per daemon. The default (a store no other daemon
    /// shares) always grants it.
    async fn try_lease(&self, _domain: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Short backend name for logs and metrics: `memory`, `sqlite`, `redis`,
    /// `redis_sentinel`, `postgres`.
    fn backend(&self) -> &'static str;
}
