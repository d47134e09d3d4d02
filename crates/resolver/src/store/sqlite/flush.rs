//! The bounded power-loss window of [`Synchronous::Bounded`](super::Synchronous::Bounded).
//!
//! With `synchronous=NORMAL` a commit is written to the WAL in the OS page cache: a killed
//! daemon loses nothing, but a power cut may lose what the kernel had not yet written. A
//! flusher thread makes that window bounded: at most `window` after a commit it runs a
//! passive checkpoint on its own connection, which fsyncs the WAL (and copies it into the
//! database file, fsynced too) without blocking writers or readers. One fsync pair per
//! window replaces one fsync per group commit.
//!
//! Before the checkpoint the flusher writes the window's write-behind policies (module
//! `write_behind`) in one transaction, so they reach the disk in the same step.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rusqlite::Connection;

use super::write_behind::{self, Pending};

/// What the flusher has to do.
#[derive(Debug, Default)]
struct Work {
    /// A commit (or a write-behind policy) waits for its fsync.
    pending: bool,
    /// So much waits that the flusher should not sleep out its window.
    early: bool,
}

/// Tells the flusher thread that commits are waiting for their fsync.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    work: Mutex<Work>,
    wake: Condvar,
}

impl Dirty {
    fn lock(&self) -> MutexGuard<'_, Work> {
        self.work
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks a commit as not yet on disk; the flusher makes it durable within its window.
    pub(super) fn mark(&self) {
        let mut work = self.lock();
        if !work.pending {
            work.pending = true;
            self.wake.notify_one();
        }
    }

    /// Like [`Dirty::mark`], and asks the flusher to write now rather than at the end of
    /// its window.
    pub(super) fn mark_early(&self) {
        let mut work = self.lock();
        if !work.early {
            work.pending = true;
            work.early = true;
            self.wake.notify_one();
        }
    }

    /// Waits up to `timeout` for a commit; true (and cleared) when there was one.
    fn take(&self, timeout: Duration) -> bool {
        let work = self.lock();
        let (mut work, _) = self
            .wake
            .wait_timeout_while(work, timeout, |work| !work.pending)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut work.pending)
    }

    /// Sleeps out `window` unless asked to write early; clears that request.
    fn sleep(&self, window: Duration) {
        let work = self.lock();
        let (mut work, _) = self
            .wake
            .wait_timeout_while(work, window, |work| !work.early)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work.early = false;
    }
}

/// What the flusher thread works on.
pub(super) struct Flusher {
    /// Its own connection, for the checkpoints.
    pub(super) conn: Connection,
    /// The store's writing connection, for the write-behind transaction.
    pub(super) writer: Arc<Mutex<Connection>>,
    /// The write-behind policies.
    pub(super) pending: Arc<Pending>,
    pub(super) dirty: Arc<Dirty>,
}

/// Starts the flusher for the store whose liveness `alive` tracks; it ends (after a last
/// flush) once the store is dropped.
pub(super) fn start(
    flusher: Flusher,
    path: &Path,
    alive: Weak<()>,
    window: Duration,
) -> std::io::Result<()> {
    let path = path.to_path_buf();
    let Flusher {
        conn,
        writer,
        pending,
        dirty,
    } = flusher;
    std::thread::Builder::new()
        .name("mta-sts-sqlite-flush".into())
        .spawn(move || {
            loop {
                let store_alive = alive.upgrade().is_some();
                if dirty.take(Duration::from_secs(1)) {
                    if store_alive {
                        dirty.sleep(window);
                    }
                    // Failures are logged there; the policies stay in memory.
                    let _ = write_behind::flush(&mut super::lock(&writer), &pending, &path);
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
