//! The bounded power-loss window of [`Synchronous::Bounded`](super::Synchronous::Bounded).
//!
//! With `synchronous=NORMAL` a commit is written to the WAL in the OS page cache: a killed
//! daemon loses nothing, but a power cut may lose what the kernel had not yet written. A
//! flusher thread makes that window bounded: at most `window` after a commit it runs a
//! passive checkpoint on its own connection, which fsyncs the WAL (and copies it into the
//! database file, fsynced too) without blocking writers or readers. One fsync pair per
//! window replaces one fsync per group commit.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use rusqlite::Connection;

/// Tells the flusher thread that commits are waiting for their fsync.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    pending: Mutex<bool>,
    wake: Condvar,
}

impl Dirty {
    /// Marks a commit as not yet on disk; the flusher makes it durable within its window.
    pub(super) fn mark(&self) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !*pending {
            *pending = true;
            self.wake.notify_one();
        }
    }

    /// Waits up to `timeout` for a commit; true (and cleared) when there was one.
    fn take(&self, timeout: Duration) -> bool {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut pending, _) = self
            .wake
            .wait_timeout_while(pending, timeout, |pending| !*pending)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *pending)
    }
}

/// Starts the flusher for the store whose liveness `alive` tracks; it ends (after a last
/// flush) once the store is dropped.
pub(super) fn start(
    conn: Connection,
    path: &Path,
    dirty: Arc<Dirty>,
    alive: Weak<()>,
    window: Duration,
) -> std::io::Result<()> {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("mta-sts-sqlite-flush".into())
        .spawn(move || {
            loop {
                let store_alive = alive.upgrade().is_some();
                if dirty.take(Duration::from_secs(1)) {
                    if store_alive {
                        std::thread::sleep(window);
                    }
                    if !checkpoint(&conn, &path) {
                        // A reader pinned the WAL: try again next window.
                        dirty.mark();
                    }
                } else if !store_alive {
                    return;
                }
            }
        })
        .map(drop)
}

/// One passive checkpoint; true when the whole WAL is now in the (fsynced) database file.
fn checkpoint(conn: &Connection, path: &Path) -> bool {
    // Columns: busy, frames in the WAL, frames checkpointed.
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    }) {
        Ok((log, done)) => done >= log,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "SQLite checkpoint failed; retrying");
            false
        }
    }
}
