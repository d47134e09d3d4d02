//! The embedded default store: one SQLite file in WAL mode.
//!
//! # Durability
//!
//! A `put` returns once the transaction holding its policy has committed. The journal is WAL.
//! By default ([`Synchronous::Bounded`]) SQLite runs with `synchronous=NORMAL` and a flusher
//! thread fsyncs the WAL at most [`DEFAULT_FLUSH_WINDOW`] (100 ms) after each commit (module
//! `flush`): an acknowledged policy survives `kill -9` of the daemon at once (the commit is
//! in the OS page cache, which a killed process cannot lose), and an OS crash or a power cut
//! once its window has passed; a power cut loses at most the policies fetched in the last
//! window, which the next lookup fetches again. [`Synchronous::Full`] fsyncs every commit
//! before the put returns (no window, about a tenth fewer cold lookups per second);
//! [`Synchronous::Normal`] never fsyncs outside SQLite's automatic checkpoints. No mode can
//! corrupt the file.
//!
//! The resolver stores what it fetched with `put_behind` (module `write_behind`): under
//! [`Synchronous::Bounded`] the policy waits in memory (where `get` finds it) and the flusher
//! writes the window's policies in one transaction just before its checkpoint, so a lookup
//! never waits for the store and a policy is in the file, and on disk, at most the window
//! after it was fetched: `kill -9` and a power cut lose at most the last window's policies,
//! fetched again on their next lookup. A transaction costs the same few system calls for one
//! policy as for a hundred; one per lookup was most of what the store cost a fresh lookup
//! (docs/performance.md §2). Dropping the store, or `flush`, writes what is pending at once.
//! Under the other modes `put_behind` is a `put`.
//!
//! Puts are group-committed (module `group_commit`): those that arrive while a commit is in flight
//! wait for it and then share the next transaction, and its one fsync. There is no time
//! window: a lone put commits at once, as before; under load, concurrent puts stop queueing
//! behind one fsync each.
//!
//! # Schema
//!
//! The schema version lives in `PRAGMA user_version`; [`SqliteStore::open`] migrates older
//! files forward inside one `BEGIN IMMEDIATE` transaction (so two processes opening the same
//! file never migrate twice) and refuses files written by a newer build.
//!
//! A call that may wait runs on tokio's blocking pool (`spawn_blocking`), never on the async
//! runtime's worker threads: a commit under [`Synchronous::Full`] or [`Synchronous::Normal`]
//! (an fsync, or a checkpoint's), anything that has to wait for another connection's lock
//! (the busy timeout), the warm start's pages. Two calls that a cold lookup makes run on the
//! caller's thread when they need no waiting, because handing them to the pool and back
//! cost more CPU than they do (measured with the socketmap benchmark: three context
//! switches per cold lookup, docs/performance.md §2): the `get` of a domain, on a
//! connection of its own without busy timeout, and, under [`Synchronous::Bounded`], a
//! group commit's first batch (a few writes into the page cache; the flusher does the
//! fsyncs and the checkpoints). Either falls back to the pool when its connection is in
//! use or SQLite reports a lock held.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{Store, StoreError, StoredPolicy};

mod flush;
mod group_commit;
mod write_behind;
use group_commit::{Leader, Waiting, WriteQueue};
use tokio::sync::oneshot;
use write_behind::Pending;

const BACKEND: &str = "sqlite";

/// Where the daemon keeps its cache unless configured otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/mta-sts/cache.db";

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// Migrations: `MIGRATIONS[i]` takes a file from version `i` to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the policy table.
    "CREATE TABLE policies (
         domain     TEXT    NOT NULL PRIMARY KEY,
         record_id  TEXT    NOT NULL,
         body       TEXT    NOT NULL,
         fetched_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     );
     CREATE INDEX policies_expires_at ON policies (expires_at);",
];

/// Up to `limit` fresh entries of `rows`; corrupt rows are logged and skipped.
fn collect_fresh(
    rows: impl Iterator<Item = rusqlite::Result<Result<StoredPolicy, StoreError>>>,
    now: u64,
    limit: usize,
    path: &Path,
) -> Result<Vec<StoredPolicy>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(4096));
    for row in rows {
        if out.len() >= limit {
            break;
        }
        match row.map_err(|e| sql_error(path, e))? {
            Ok(entry) if entry.is_fresh(now) => out.push(entry),
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "skipping a corrupt cached policy");
            }
        }
    }
    Ok(out)
}

const SELECT_COLUMNS: &str = "SELECT domain, record_id, body, fetched_at, expires_at FROM policies";

/// The default power-loss window of [`Synchronous::Bounded`].
pub const DEFAULT_FLUSH_WINDOW: Duration = Duration::from_millis(100);

/// When commits reach the disk (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL on every commit, before the put returns: acknowledged writes survive
    /// power loss.
    Full,
    /// `synchronous=NORMAL` plus an fsync of the WAL at most `window` after each commit:
    /// acknowledged writes survive a process crash at once and power loss after `window`
    /// (default, with [`DEFAULT_FLUSH_WINDOW`]).
    Bounded {
        /// The longest a commit waits for its fsync.
        window: Duration,
    },
    /// fsync only at SQLite's automatic checkpoints: acknowledged writes survive a process
    /// crash, the last ones may be lost on power loss.
    Normal,
}

impl Default for Synchronous {
    fn default() -> Self {
        Synchronous::Bounded {
            window: DEFAULT_FLUSH_WINDOW,
        }
    }
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Bounded { .. } | Synchronous::Normal => "NORMAL",
        }
    }
}

/// Tuning for [`SqliteStore::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of each commit; [`Synchronous::Bounded`] with [`DEFAULT_FLUSH_WINDOW`] by
    /// default.
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before failing; 5 s by default.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Store`] in one SQLite file (WAL journal, versioned schema).
///
/// Several processes may open the same file; `put` is newer-wins in a single statement.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The connection that writes (shared with the flusher thread, which writes the
    /// write-behind policies).
    conn: Arc<Mutex<Connection>>,
    /// The connection that reads. In WAL mode readers never wait for a writer, so a cold
    /// lookup's `get` does not queue behind a group commit's fsync.
    reader: Mutex<Connection>,
    /// A second reading connection that never waits (no busy timeout), for a `get` tried
    /// on the caller's thread before it is handed to the blocking pool.
    quick: Mutex<Connection>,
    /// Puts waiting for their group commit.
    writes: Arc<WriteQueue>,
    /// Policies accepted by `put_behind` that the flusher has not written yet
    /// ([`Synchronous::Bounded`] only).
    pending: Arc<Pending>,
    /// Commits waiting for the flusher's fsync ([`Synchronous::Bounded`] only). With it, a
    /// commit never fsyncs (the writer does not checkpoint either: the flusher does), so a
    /// batch may be committed on the caller's thread ([`Inner::commit_here`]).
    dirty: Option<Arc<flush::Dirty>>,
    /// The writer's busy timeout, restored after a commit tried without waiting.
    busy_timeout: Duration,
    /// Dropped with the store; the flusher thread ends when it is gone.
    _alive: Arc<()>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// Commits `batch` on the caller's thread if that needs neither an fsync nor any waiting
    /// (the writing connection is free, SQLite's write lock too): a few writes into the
    /// page cache, less than the hand-off to the blocking pool and back. Gives the batch
    /// back otherwise, or when the commit failed, for [`Inner::commit`] on the pool.
    fn commit_here(&self, batch: Vec<Waiting>) -> Result<(), Vec<Waiting>> {
        let Some(dirty) = &self.dirty else {
            return Err(batch);
        };
        let mut conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(batch),
        };
        if conn.busy_timeout(Duration::ZERO).is_err() {
            return Err(batch);
        }
        let result = upsert_all(&mut conn, &self.path, &batch);
        // Setting a busy timeout only installs SQLite's handler; it cannot fail here, and if
        // it did the next commit's wait would be shorter, not wrong.
        let _ = conn.busy_timeout(self.busy_timeout);
        drop(conn);
        match result {
            Ok(()) => {
                dirty.mark();
                for waiting in batch {
                    let _ = waiting.done.send(Ok(()));
                }
                Ok(())
            }
            Err(_) => Err(batch),
        }
    }

    /// Writes `batch` in one transaction and answers each waiting put. If the transaction
    /// fails, each entry is retried alone, so that one entry the database refuses fails only
    /// its own put.
    fn commit(&self, batch: Vec<Waiting>) {
        let mut conn = self.lock();
        match upsert_all(&mut conn, &self.path, &batch) {
            Ok(()) => {
                if let Some(dirty) = &self.dirty {
                    dirty.mark();
                }
                for waiting in batch {
                    let _ = waiting.done.send(Ok(()));
                }
            }
            Err(err) if batch.len() == 1 => {
                if let Some(waiting) = batch.into_iter().next() {
                    let _ = waiting.done.send(Err(err));
                }
            }
            Err(_) => {
                for waiting in batch {
                    let _ = waiting.done.send(upsert(&conn, &self.path, &waiting.entry));
                }
            }
        }
    }
}

impl Inner {
    /// Writes the pending write-behind policies in one transaction and has the flusher
    /// fsync them. A policy the database refused is logged and dropped, as a failed `put`
    /// is; the first such error is returned.
    fn flush_pending(&self) -> Result<(), StoreError> {
        let result = write_behind::flush(&mut self.lock(), &self.pending, &self.path);
        if let Some(dirty) = &self.dirty {
            dirty.mark();
        }
        result.map(drop)
    }
}

impl Drop for Inner {
    /// Writes what is still pending before the store goes, so a daemon that stops (or a
    /// caller that drops its last handle) keeps every policy it fetched.
    fn drop(&mut self) {
        // Logged by `write_behind::flush`; nobody is left to tell.
        let _ = self.flush_pending();
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves no half-applied statement behind (SQLite rolls
    // back an unfinished transaction), so the connection is still usable.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which connection a call uses.
#[derive(Clone, Copy)]
enum Role {
    Read,
    Write,
}

/// Every entry of `batch` in one `BEGIN IMMEDIATE` transaction.
fn upsert_all(conn: &mut Connection, path: &Path, batch: &[Waiting]) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(path, e))?;
    for waiting in batch {
        upsert(&tx, path, &waiting.entry)?;
    }
    tx.commit().map_err(|e| sql_error(path, e))
}

/// Writes `entry` unless the stored row is newer.
fn upsert(conn: &Connection, path: &Path, entry: &StoredPolicy) -> Result<(), StoreError> {
    let fetched_at = to_sql_time(entry.fetched_at, "fetched_at", &entry.domain)?;
    let expires_at = to_sql_time(entry.expires_at, "expires_at", &entry.domain)?;
    // Newer-wins in one statement. A stored row whose fetched_at is not an integer is
    // corrupt and gets replaced (SQLite would otherwise rank text above every number).
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO policies (domain, record_id, body, fetched_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (domain) DO UPDATE SET
                 record_id = excluded.record_id,
                 body = excluded.body,
                 fetched_at = excluded.fetched_at,
                 expires_at = excluded.expires_at
             WHERE typeof(policies.fetched_at) <> 'integer'
                OR excluded.fetched_at >= policies.fetched_at",
        )
        .map_err(|e| sql_error(path, e))?;
    stmt.execute(params![
        entry.domain,
        entry.record_id,
        entry.body,
        fetched_at,
        expires_at
    ])
    .map_err(|e| sql_error(path, e))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the cache file at `path` with default options, creating
    /// missing parent directories, and migrates its schema to [`SCHEMA_VERSION`].
    ///
    /// A file that is not an SQLite database, an unwritable directory or a schema newer than
    /// this build gives [`StoreError::Unavailable`] naming the path and what to do.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Like [`SqliteStore::open`], with explicit [`SqliteOptions`].
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let inner = tokio::task::spawn_blocking(move || open_blocking(path, options))
            .await
            .map_err(join_error)??;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The file this store writes to.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes the pending write-behind policies before a scan (`load_all`, `load_page`,
    /// `count_hint`), so a scan sees them as `get` does: the refresher finds a policy that
    /// left memory before the flusher wrote it. Scans are rare (warm start, a refresher
    /// pass after evictions); a failure is logged by the flush and the scan goes on.
    async fn write_pending(&self) {
        if !self.inner.pending.is_empty() {
            let _ = Store::flush(self).await;
        }
    }

    /// Runs `f` with the reading or the writing connection on the blocking pool.
    async fn with_conn<T, F>(&self, role: Role, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = match role {
                Role::Read => lock(&inner.reader),
                Role::Write => inner.lock(),
            };
            let result = f(&conn, &inner.path);
            if let (Role::Write, Ok(_), Some(dirty)) = (role, &result, &inner.dirty) {
                dirty.mark();
            }
            result
        })
        .await
        .map_err(join_error)?
    }
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    unavailable(format!("the SQLite worker task failed: {err}"))
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message,
    }
}

/// Maps an SQLite error to [`StoreError::Unavailable`], with a hint for the cases an operator
/// can fix.
fn sql_error(path: &Path, err: rusqlite::Error) -> StoreError {
    let hint = match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "; the file is not an SQLite database: move it away (a new cache is created in its \
             place) or point the cache at another path"
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            "; the database is corrupt: move it away (a new cache is created in its place)"
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            "; check that the daemon's user can write the file and its directory"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; another process held the database lock longer than the busy timeout"
        }
        Some(ErrorCode::DiskFull) => "; the disk is full",
        _ => "",
    };
    unavailable(format!("{}: {err}{hint}", path.display()))
}

fn open_blocking(path: PathBuf, options: SqliteOptions) -> Result<Inner, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|err| {
            unavailable(format!(
                "cannot create the directory {} for the cache file {}: {err}; create it with \
                 write access for the daemon's user or choose another cache path",
                parent.display(),
                path.display()
            ))
        })?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| sql_error(&path, e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| sql_error(&path, e))?;
    // The first statement that reads the file: a non-database fails here with NOTADB.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| sql_error(&path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unavailable(format!(
            "{}: SQLite refused WAL journal mode (got {mode}); the cache needs a local \
             filesystem that supports shared memory",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())
        .map_err(|e| sql_error(&path, e))?;
    if let Synchronous::Bounded { .. } = options.synchronous {
        // The flusher checkpoints within its window; a checkpoint run by a commit would
        // fsync on the committing thread.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| sql_error(&path, e))?;
    }
    migrate(&mut conn, &path)?;
    let reader = Connection::open_with_flags(&path, flags).map_err(|e| sql_error(&path, e))?;
    reader
        .busy_timeout(options.busy_timeout)
        .map_err(|e| sql_error(&path, e))?;
    let quick = Connection::open_with_flags(&path, flags).map_err(|e| sql_error(&path, e))?;
    quick
        .busy_timeout(Duration::ZERO)
        .map_err(|e| sql_error(&path, e))?;
    let alive = Arc::new(());
    let conn = Arc::new(Mutex::new(conn));
    let pending = Arc::new(Pending::default());
    let dirty = match options.synchronous {
        Synchronous::Bounded { window } => {
            let checkpointer = Connection::open_with_flags(&path, flags)
                .and_then(|c| c.busy_timeout(options.busy_timeout).map(|()| c))
                .map_err(|e| sql_error(&path, e))?;
            let dirty = Arc::new(flush::Dirty::default());
            let flusher = flush::Flusher {
                conn: checkpointer,
                writer: Arc::clone(&conn),
                pending: Arc::clone(&pending),
                dirty: Arc::clone(&dirty),
            };
            flush::start(flusher, &path, Arc::downgrade(&alive), window).map_err(|err| {
                unavailable(format!("cannot start the SQLite flusher thread: {err}"))
            })?;
            Some(dirty)
        }
        Synchronous::Full | Synchronous::Normal => None,
    };
    tracing::debug!(path = %path.display(), version = SCHEMA_VERSION, "opened the SQLite policy store");
    Ok(Inner {
        path,
        conn,
        reader: Mutex::new(reader),
        quick: Mutex::new(quick),
        writes: Arc::default(),
        pending,
        dirty,
        busy_timeout: options.busy_timeout,
        _alive: alive,
    })
}

/// Brings the schema to [`SCHEMA_VERSION`], one migration per version, in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(path, e))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| sql_error(path, e))?;
    let current = u32::try_from(version).map_err(|_| {
        unavailable(format!(
            "{}: invalid schema version {version}",
            path.display()
        ))
    })?;
    if current > SCHEMA_VERSION {
        return Err(unavailable(format!(
            "{}: schema version {current} was written by a newer mta-sts (this build knows \
             version {SCHEMA_VERSION}); upgrade mta-sts or use another cache path",
            path.display()
        )));
    }
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(|e| sql_error(path, e))?;
        tracing::info!(path = %path.display(), from, to = from + 1, "migrated the SQLite policy store");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| sql_error(path, e))?;
    tx.commit().map_err(|e| sql_error(path, e))
}

fn corrupt(domain: &str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        domain: domain.to_owned(),
        message: message.into(),
    }
}

fn text_column(
    row: &rusqlite::Row<'_>,
    idx: usize,
    name: &str,
    domain: &str,
) -> Result<String, StoreError> {
    match row.get_ref(idx) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| corrupt(domain, format!("{name} is not valid UTF-8"))),
        Ok(other) => Err(corrupt(
            domain,
            format!("{name} is {:?}, not text", other.data_type()),
        )),
        Err(err) => Err(corrupt(domain, format!("{name}: {err}"))),
    }
}

fn time_column(
    row: &rusqlite::Row<'_>,
    idx: usize,
    name: &str,
    domain: &str,
) -> Result<u64, StoreError> {
    match row.get_ref(idx) {
        Ok(ValueRef::Integer(v)) => {
            u64::try_from(v).map_err(|_| corrupt(domain, format!("{name} is negative ({v})")))
        }
        Ok(other) => Err(corrupt(
            domain,
            format!("{name} is {:?}, not an integer", other.data_type()),
        )),
        Err(err) => Err(corrupt(domain, format!("{name}: {err}"))),
    }
}

/// Decodes one row of [`SELECT_COLUMNS`]; never panics on bad data.
fn decode_row(row: &rusqlite::Row<'_>) -> Result<StoredPolicy, StoreError> {
    let domain = match row.get_ref(0) {
        Ok(ValueRef::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Ok(other) => {
            return Err(corrupt(
                "?",
                format!("domain is {:?}, not text", other.data_type()),
            ));
        }
        Err(err) => return Err(corrupt("?", format!("domain: {err}"))),
    };
    Ok(StoredPolicy {
        record_id: text_column(row, 1, "record_id", &domain)?,
        body: text_column(row, 2, "body", &domain)?,
        fetched_at: time_column(row, 3, "fetched_at", &domain)?,
        expires_at: time_column(row, 4, "expires_at", &domain)?,
        domain,
    })
}

fn to_sql_time(value: u64, name: &str, domain: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| corrupt(domain, format!("{name} {value} does not fit SQLite")))
}

/// The stored row of `domain`: SQLite's error outside, a corrupt row's inside.
fn select_row(
    conn: &Connection,
    domain: &str,
) -> rusqlite::Result<Result<Option<StoredPolicy>, StoreError>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT_COLUMNS} WHERE domain = ?1"))?;
    let decoded = stmt
        .query_row(params![domain], |row| Ok(decode_row(row)))
        .optional()?;
    Ok(decoded.transpose())
}

impl Inner {
    /// `get` on the caller's thread, on the connection that never waits: `None` when that
    /// connection is in use or SQLite would have to wait for a lock (then the blocking
    /// pool answers). A point read is a few system calls, less than the hand-off to the
    /// pool and back that a cold lookup would otherwise pay.
    fn try_get(&self, domain: &str) -> Option<Result<Option<StoredPolicy>, StoreError>> {
        let conn = match self.quick.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        match select_row(&conn, domain) {
            Ok(answer) => Some(answer),
            Err(err)
                if matches!(
                    err.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) =>
            {
                None
            }
            Err(err) => Some(Err(sql_error(&self.path, err))),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, domain: &str) -> Result<Option<StoredPolicy>, StoreError> {
        // A policy whose write is pending is newer than the table's row, or the only one.
        if let Some(entry) = self.inner.pending.get(domain) {
            return Ok(Some(entry));
        }
        if let Some(answer) = self.inner.try_get(domain) {
            return answer;
        }
        let domain = domain.to_owned();
        self.with_conn(Role::Read, move |conn, path| {
            select_row(conn, &domain).map_err(|e| sql_error(path, e))?
        })
        .await
    }

    async fn put(&self, entry: &StoredPolicy, _now: u64) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        let waiting = Waiting {
            entry: entry.clone(),
            done,
        };
        if self.inner.writes.push(waiting) {
            let mut leader = Leader::new(Arc::clone(&self.inner.writes));
            // The first batch (this put's) here if it needs no fsync and no waiting; what
            // is left, or the batch if not, on the blocking pool.
            let first = match leader.next_batch().map(|b| self.inner.commit_here(b)) {
                Some(Ok(())) => leader.next_batch(),
                Some(Err(batch)) => Some(batch),
                None => None,
            };
            if let Some(first) = first {
                let inner = Arc::clone(&self.inner);
                // Not awaited: the leader answers every waiting put itself, this one
                // included.
                drop(tokio::task::spawn_blocking(move || {
                    inner.commit(first);
                    leader.run(|batch| inner.commit(batch))
                }));
            }
        }
        answer.await.map_err(|_| {
            unavailable("the SQLite writer stopped before committing the policy".into())
        })?
    }

    /// Under [`Synchronous::Bounded`], queues `entry` for the flusher, which writes the
    /// window's policies in one transaction before its checkpoint: the policy is in the
    /// file (safe from `kill -9`) and on disk (safe from a power cut) at most the flush
    /// window after this returns, and `get` answers from the queue until then. Under the
    /// other modes, a [`Store::put`].
    async fn put_behind(&self, entry: &StoredPolicy, now: u64) -> Result<(), StoreError> {
        let Some(dirty) = &self.inner.dirty else {
            return self.put(entry, now).await;
        };
        if self.inner.pending.insert(entry) >= write_behind::FLUSH_EARLY_AT {
            dirty.mark_early();
        } else {
            dirty.mark();
        }
        Ok(())
    }

    /// Writes the pending write-behind policies now (the daemon does at shutdown); the
    /// flusher fsyncs them within its window.
    async fn flush(&self) -> Result<(), StoreError> {
        if self.inner.dirty.is_none() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.flush_pending())
            .await
            .map_err(join_error)?
    }

    async fn remove(&self, domain: &str) -> Result<(), StoreError> {
        let domain = domain.to_owned();
        let pending = Arc::clone(&self.inner.pending);
        self.with_conn(Role::Write, move |conn, path| {
            // Holding the writing connection: a flush cannot write it back after the delete.
            pending.forget(&domain);
            conn.prepare_cached("DELETE FROM policies WHERE domain = ?1")
                .and_then(|mut stmt| stmt.execute(params![domain]))
                .map_err(|e| sql_error(path, e))?;
            Ok(())
        })
        .await
    }

    async fn load_all(&self, now: u64) -> Result<Vec<StoredPolicy>, StoreError> {
        self.write_pending().await;
        self.with_conn(Role::Read, move |conn, path| {
            let now_sql = i64::try_from(now).unwrap_or(i64::MAX);
            // Rows with a non-integer expires_at sort above every number and come back here,
            // to be reported as corrupt and skipped below.
            let mut stmt = conn
                .prepare_cached(&format!("{SELECT_COLUMNS} WHERE expires_at > ?1"))
                .map_err(|e| sql_error(path, e))?;
            let rows = stmt
                .query_map(params![now_sql], |row| Ok(decode_row(row)))
                .map_err(|e| sql_error(path, e))?;
            collect_fresh(rows, now, usize::MAX, path)
        })
        .await
    }

    async fn count_hint(&self, now: u64) -> Option<usize> {
        self.write_pending().await;
        self.with_conn(Role::Read, move |conn, path| {
            let now_sql = i64::try_from(now).unwrap_or(i64::MAX);
            conn.query_row(
                "SELECT COUNT(*) FROM policies WHERE expires_at > ?1",
                params![now_sql],
                |row| row.get::<_, i64>(0),
            )
            .map_err(|e| sql_error(path, e))
        })
        .await
        .ok()
        .and_then(|n| usize::try_from(n).ok())
    }

    async fn load_page(
        &self,
        now: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredPolicy>, StoreError> {
        self.write_pending().await;
        let after = after.unwrap_or_default().to_owned();
        self.with_conn(Role::Read, move |conn, path| {
            let now_sql = i64::try_from(now).unwrap_or(i64::MAX);
            // The primary key orders the pages; `domain > ''` starts at the first. No SQL
            // LIMIT: the cursor streams, and stopping after `limit` good rows means a short
            // page is the last one even when corrupt rows were skipped.
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{SELECT_COLUMNS} WHERE domain > ?2 AND expires_at > ?1 ORDER BY domain"
                ))
                .map_err(|e| sql_error(path, e))?;
            let rows = stmt
                .query_map(params![now_sql, after], |row| Ok(decode_row(row)))
                .map_err(|e| sql_error(path, e))?;
            let out = collect_fresh(rows, now, limit, path)?;
            drop(stmt);
            if out.len() < limit {
                // The last page: the warm start is over, give back the page cache it filled.
                let _ = conn.execute_batch("PRAGMA shrink_memory");
            }
            Ok(out)
        })
        .await
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}
