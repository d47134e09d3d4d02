//! State of the generating side of TLS-RPT (RFC 8460 §4, §5), in the same SQLite file as the
//! received reports (own tables, prefixed `tlsrpt_`; PostgreSQL is not supported for sending):
//!
//! - `tlsrpt_event_files`: per events file, the byte offset already consumed, so ingesting is
//!   idempotent (`mta-sts report send --events FILE` can run from cron);
//! - `tlsrpt_events`: the session events, one row per line (JSON as in [`tlsrpt::event`]);
//! - `tlsrpt_generated`: one row per (policy domain, UTC day) reported, with the report JSON
//!   (a day is never reported twice);
//! - `tlsrpt_outbox`: one row per (report, rua): `attempts`, `next_attempt`, `last_error`,
//!   `delivered_at`, `failed_at` (given up: permanent error or 24 h of retries, RFC 8460 §5.3);
//! - `tlsrpt_delivery_log`: every attempt and every "nothing to send" decision (no
//!   `_smtp._tls` record), shown by `mta-sts report send --log`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tlsrpt_event_files (
    path     TEXT PRIMARY KEY,
    offset   INTEGER NOT NULL,
    identity TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tlsrpt_events (
    id            INTEGER PRIMARY KEY,
    policy_domain TEXT NOT NULL,
    day           TEXT NOT NULL,
    time          INTEGER NOT NULL,
    line          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tlsrpt_events_domain_day ON tlsrpt_events (policy_domain, day);
CREATE TABLE IF NOT EXISTS tlsrpt_generated (
    policy_domain TEXT NOT NULL,
    day           TEXT NOT NULL,
    report_id     TEXT NOT NULL,
    report_json   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (policy_domain, day)
);
CREATE TABLE IF NOT EXISTS tlsrpt_outbox (
    id            INTEGER PRIMARY KEY,
    report_id     TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    rua           TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    last_error    TEXT,
    delivered_at  INTEGER,
    failed_at     INTEGER,
    created_at    INTEGER NOT NULL,
    UNIQUE (report_id, rua)
);
CREATE TABLE IF NOT EXISTS tlsrpt_delivery_log (
    id            INTEGER PRIMARY KEY,
    time          INTEGER NOT NULL,
    report_id     TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    rua           TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    detail        TEXT NOT NULL
);
";

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxEntry {
    /// Row id.
    pub id: i64,
    /// The report's `report-id`.
    pub report_id: String,
    /// The policy domain.
    pub policy_domain: String,
    /// The `rua` URI.
    pub rua: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt, Unix seconds.
    pub next_attempt: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When delivered.
    pub delivered_at: Option<i64>,
    /// When given up.
    pub failed_at: Option<i64>,
    /// When queued.
    pub created_at: i64,
}

/// One delivery log row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogEntry {
    /// Unix seconds.
    pub time: i64,
    /// The report's `report-id`.
    pub report_id: String,
    /// The policy domain.
    pub policy_domain: String,
    /// The `rua` URI (empty when there was none).
    pub rua: String,
    /// `delivered`, `retry`, `failed`, `no-record`, `dns-failure`, `no-rua`.
    pub outcome: String,
    /// Details (error message, HTTP status, SMTP reply).
    pub detail: String,
}

/// The sending side's SQLite state.
#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::from(e)
}

const ENTRY_COLUMNS: &str = "id, report_id, policy_domain, rua, attempts, next_attempt, \
     last_error, delivered_at, failed_at, created_at";

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.get(0)?,
        report_id: row.get(1)?,
        policy_domain: row.get(2)?,
        rua: row.get(3)?,
        attempts: row.get(4)?,
        next_attempt: row.get(5)?,
        last_error: row.get(6)?,
        delivered_at: row.get(7)?,
        failed_at: row.get(8)?,
        created_at: row.get(9)?,
    })
}

impl Outbox {
    /// Opens (creating) the tables in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |cause: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::open(path.display().to_string(), cause)
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(e.into()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.into()))?;
        Self::init(conn).map_err(|e| open_err(e.into()))
    }

    /// An in-memory outbox (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Outbox {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut guard).map_err(db)
    }

    /// The byte offset consumed from an events file and the file identity (device and inode)
    /// it was consumed from; `(0, "")` when new.
    pub fn file_offset(&self, path: &str) -> Result<(u64, String), StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT offset, identity FROM tlsrpt_event_files WHERE path = ?1",
                [path],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
        })
        .map(|o| {
            let (offset, identity) = o.unwrap_or_default();
            (u64::try_from(offset).unwrap_or(0), identity)
        })
    }

    /// Stores events (`(policy_domain, day, unix time, json line)`) and the new offset of
    /// their file in one transaction.
    pub fn add_events(
        &self,
        path: &str,
        identity: &str,
        offset: u64,
        events: &[(String, String, i64, String)],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO tlsrpt_events (policy_domain, day, time, line) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (domain, day, time, line) in events {
                    insert.execute(params![domain, day, time, line])?;
                }
            }
            tx.execute(
                "INSERT INTO tlsrpt_event_files (path, offset, identity) VALUES (?1, ?2, ?3)
                 ON CONFLICT (path) DO UPDATE SET offset = excluded.offset, identity = excluded.identity",
                params![path, i64::try_from(offset).unwrap_or(i64::MAX), identity],
            )?;
            tx.commit()
        })
    }

    /// (policy domain, day) pairs with events, before `before_day` (`YYYY-MM-DD`, exclusive)
    /// and not reported yet.
    pub fn pending_days(&self, before_day: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT DISTINCT e.policy_domain, e.day FROM tlsrpt_events e
                 WHERE e.day < ?1 AND NOT EXISTS (SELECT 1 FROM tlsrpt_generated g
                   WHERE g.policy_domain = e.policy_domain AND g.day = e.day)
                 ORDER BY e.day, e.policy_domain",
            )?;
            stmt.query_map([before_day], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    /// The event lines of one domain and day.
    pub fn event_lines(&self, domain: &str, day: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT line FROM tlsrpt_events WHERE policy_domain = ?1 AND day = ?2 ORDER BY id",
            )?;
            stmt.query_map([domain, day], |r| r.get(0))?.collect()
        })
    }

    /// Records a generated report and queues it for each rua, in one transaction.
    pub fn add_report(
        &self,
        domain: &str,
        day: &str,
        report_id: &str,
        report_json: &str,
        ruas: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO tlsrpt_generated (policy_domain, day, report_id, report_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![domain, day, report_id, report_json, now],
            )?;
            for rua in ruas {
                tx.execute(
                    "INSERT OR IGNORE INTO tlsrpt_outbox (report_id, policy_domain, rua, next_attempt, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![report_id, domain, rua, now],
                )?;
            }
            tx.commit()
        })
    }

    /// The report JSON stored for a report id.
    pub fn report_json(&self, report_id: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT report_json FROM tlsrpt_generated WHERE report_id = ?1",
                [report_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Entries not delivered nor given up whose next attempt is due at `now`.
    pub fn due(&self, now: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM tlsrpt_outbox
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt <= ?1 ORDER BY id"
            ))?;
            stmt.query_map([now], entry)?.collect()
        })
    }

    /// Every outbox entry.
    pub fn entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM tlsrpt_outbox ORDER BY id"
            ))?;
            stmt.query_map([], entry)?.collect()
        })
    }

    /// Records an attempt's result: delivered, retry at `next_attempt`, or given up.
    pub fn record_attempt(
        &self,
        id: i64,
        now: i64,
        result: &AttemptResult,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            match result {
                AttemptResult::Delivered => c.execute(
                    "UPDATE tlsrpt_outbox SET attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
                    params![id, now],
                ),
                AttemptResult::Retry { at, error } => c.execute(
                    "UPDATE tlsrpt_outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, at, error],
                ),
                AttemptResult::Failed { error } => c.execute(
                    "UPDATE tlsrpt_outbox SET attempts = attempts + 1, failed_at = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, now, error],
                ),
            }
            .map(|_| ())
        })
    }

    /// Appends to the delivery log.
    pub fn log(&self, entry: &LogEntry) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tlsrpt_delivery_log (time, report_id, policy_domain, rua, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    entry.time,
                    entry.report_id,
                    entry.policy_domain,
                    entry.rua,
                    entry.outcome,
                    entry.detail
                ],
            )
            .map(|_| ())
        })
    }

    /// The delivery log, oldest first.
    pub fn log_entries(&self) -> Result<Vec<LogEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT time, report_id, policy_domain, rua, outcome, detail
                 FROM tlsrpt_delivery_log ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok(LogEntry {
                    time: r.get(0)?,
                    report_id: r.get(1)?,
                    policy_domain: r.get(2)?,
                    rua: r.get(3)?,
                    outcome: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?
            .collect()
        })
    }
}

/// What an attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered.
    Delivered,
    /// Try again at `at` (Unix seconds).
    Retry {
        /// Next attempt.
        at: i64,
        /// Why this one failed.
        error: String,
    },
    /// Given up.
    Failed {
        /// Why.
        error: String,
    },
}
