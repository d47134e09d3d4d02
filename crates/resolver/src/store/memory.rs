//! The in-process store: a map behind a lock. Used by tests, by `--cache memory`, and as
//! the model the other stores are checked against.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Store, StoreError, StoredPolicy};

/// Keeps entries in memory only.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, StoredPolicy>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredPolicy>> {
        // A panic while holding the lock cannot leave a map half-updated, so recover.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, domain: &str) -> Result<Option<StoredPolicy>, StoreError> {
        Ok(self.lock().get(domain).cloned())
    }

    async fn put(&self, entry: &StoredPolicy, _now: u64) -> Result<(), StoreError> {
        let mut entries = self.lock();
        match entries.get(&entry.domain) {
            Some(existing) if existing.fetched_at > entry.fetched_at => {}
            _ => {
                entries.insert(entry.domain.clone(), entry.clone());
            }
        }
        Ok(())
    }

    async fn remove(&self, domain: &str) -> Result<(), StoreError> {
        self.lock().remove(domain);
        Ok(())
    }

    async fn load_all(&self, now: u64) -> Result<Vec<StoredPolicy>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|e| e.is_fresh(now))
            .cloned()
            .collect())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
