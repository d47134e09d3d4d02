//! The embedded SQLite store (the default; one file, WAL journal).

use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::intake::ParsedReport;
use crate::listing::{
    self, DetailFilter, Details, ListingSql, OrganizationSessions, PolicySeen, ReportListing,
    SenderFailures,
};
use crate::overview::{OverviewKeys, OverviewSql, organization_of};
use crate::rollups::{
    DETAIL_SUMMARY_INDEXES_DROP, DayTotals, ROLLUP_REFILL, ROLLUPS_V2_DROP, RollupDelta, RollupSql,
    rollup_schema,
};
use crate::store::{
    DaySummary, Inserted, ReportStore, SCHEMA_VERSION, StoreError, StoredReport, SummaryBuilder,
    SummaryFilter, SummarySql, db_count, json_list, mx_key, normalize_domain, stored,
};
use crate::totals::{self, DomainTotals, PeriodFilter};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    id                INTEGER PRIMARY KEY,
    organization_name TEXT NOT NULL,
    report_id         TEXT NOT NULL,
    contact_info      TEXT NOT NULL,
    start_ts          INTEGER NOT NULL,
    end_ts            INTEGER NOT NULL,
    day               TEXT NOT NULL,
    source            TEXT NOT NULL,
    imported_at       INTEGER NOT NULL,
    raw_json          TEXT NOT NULL,
    dkim              TEXT,
    UNIQUE (organization_name, report_id)
);
CREATE INDEX IF NOT EXISTS reports_report_id ON reports (report_id);
CREATE TABLE IF NOT EXISTS report_policies (
    id                INTEGER PRIMARY KEY,
    report            INTEGER NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL,
    policy_type       TEXT NOT NULL,
    policy_domain     TEXT NOT NULL,
    policy_string     TEXT NOT NULL,
    mx_host           TEXT NOT NULL,
    day               TEXT NOT NULL,
    organization_name TEXT NOT NULL,
    successful        INTEGER NOT NULL,
    failed            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS report_policies_report ON report_policies (report);
CREATE TABLE IF NOT EXISTS failure_details (
    id                     INTEGER PRIMARY KEY,
    policy                 INTEGER NOT NULL REFERENCES report_policies (id) ON DELETE CASCADE,
    result_type            TEXT NOT NULL,
    sending_mta_ip         TEXT,
    receiving_mx_hostname  TEXT,
    receiving_mx_helo      TEXT,
    receiving_ip           TEXT,
    failed_session_count   INTEGER NOT NULL,
    additional_information TEXT,
    failure_reason_code    TEXT,
    policy_domain          TEXT NOT NULL,
    day                    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failure_details_policy ON failure_details (policy);
";

/// Summary rows in (domain, day) order: SQLite compares text bytewise (`BINARY`), as Rust
/// does.
const ORDER_BY: &str = "ORDER BY policy_domain, day";

/// The rollup UPSERTs with SQLite placeholders.
static ROLLUP_SQL: LazyLock<RollupSql> = LazyLock::new(|| {
    RollupSql::new(
        |types| {
            let params: Vec<String> = (1..=types.len()).map(|n| format!("?{n}")).collect();
            format!("VALUES ({})", params.join(", "))
        },
        "MAX",
        "MIN",
    )
});

/// The SQLite report store.
///
/// Concurrent [`ReportStore::insert`]s share transactions: each queues its report, and
/// whichever call holds the connection next stores everything queued in one transaction
/// (one commit, the rollup deltas merged) and answers each caller after it committed. A
/// caller is told only what its own transaction did, so an acknowledged report is stored
/// exactly as with one transaction each; what changes is that an import running inputs
/// side by side writes the rollups' pages once per batch instead of once per report.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    queue: Arc<Mutex<Vec<QueuedInsert>>>,
}

/// One [`ReportStore::insert`] waiting for a transaction.
struct QueuedInsert {
    report: ParsedReport,
    source: String,
    received_at: i64,
    done: tokio::sync::oneshot::Sender<Result<Inserted, StoreError>>,
}

impl std::fmt::Debug for QueuedInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedInsert")
            .field("report_id", &self.report.report.report_id)
            .finish_non_exhaustive()
    }
}

/// Stores `batch` in one transaction on `conn` and answers each caller: all its reports,
/// or, when the transaction fails, the error for every one (nothing of the batch stored).
fn commit_queued(conn: &mut Connection, batch: Vec<QueuedInsert>) {
    let stored = (|| {
        let tx = conn.transaction().map_err(db)?;
        let mut delta = RollupDelta::default();
        let out = batch
            .iter()
            .map(|q| insert_one(&tx, &q.report, &q.source, q.received_at, &mut delta))
            .collect::<Result<Vec<_>, _>>()?;
        add_rollups(&tx, &delta)?;
        tx.commit().map_err(db)?;
        Ok::<_, StoreError>(out)
    })();
    match stored {
        Ok(out) => {
            for (q, inserted) in batch.into_iter().zip(out) {
                let _ = q.done.send(Ok(inserted));
            }
        }
        Err(e) => {
            let reason = mta_sts_net::causes::with_causes(&e).to_string();
            for q in batch {
                let each = match e {
                    StoreError::Busy(_) => StoreError::Busy(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        None,
                    )),
                    _ => StoreError::Batch(reason.clone()),
                };
                let _ = q.done.send(Err(each));
            }
        }
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::from(e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, and its parent directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |cause: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::open(path.display().to_string(), cause)
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(e.into()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.into()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| open_err(e.into()))?;
        Self::init(conn).map_err(|e| open_err(e.into()))
    }

    /// Opens the existing database file at `path`, for commands that only read: a missing
    /// file is [`StoreError::Missing`], and neither it nor its directory is created.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        let open_err = |cause: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::open(path.display().to_string(), cause)
        };
        if !path.exists() {
            return Err(StoreError::Missing {
                location: path.display().to_string(),
            });
        }
        // No SQLITE_OPEN_CREATE: should the file vanish meanwhile, opening fails instead.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.into()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| open_err(e.into()))?;
        Self::init(conn).map_err(|e| open_err(e.into()))
    }

    /// Opens the existing database file at `path` read-only (`SQLITE_OPEN_READONLY`), for
    /// a reader that must never write, e.g. the dashboard: nothing is created or migrated,
    /// so a file of another schema version is refused ([`StoreError::NewerSchema`], or
    /// [`StoreError::Open`] for an older one: open it once with a writing command first).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let open_err = |cause: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::open(path.display().to_string(), cause)
        };
        if !path.exists() {
            return Err(StoreError::Missing {
                location: path.display().to_string(),
            });
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.into()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| open_err(e.into()))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| open_err(e.into()))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { version });
        }
        if version < SCHEMA_VERSION {
            return Err(open_err(
                format!(
                    "schema version {version} needs migrating to {SCHEMA_VERSION}, which a \
                     read-only reader does not do; run `mta-sts report summary --db PATH` once"
                )
                .into(),
            ));
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            queue: Arc::default(),
        })
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db)?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            queue: Arc::default(),
        })
    }

    /// The summary aggregated from the detail rows instead of the rollups: what
    /// [`ReportStore::summary`] must always equal (the tests' oracle).
    #[cfg(test)]
    pub(crate) async fn summary_from_details(
        &self,
        filter: &SummaryFilter,
    ) -> Result<Vec<DaySummary>, StoreError> {
        let sql = SummarySql::details(filter, |n| format!("?{n}"), ORDER_BY);
        let params = SummarySql::params(filter);
        self.with(move |conn| run_summary(conn, &sql, &params))
            .await
    }

    /// Runs `f` with the connection on the blocking thread pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(StoreError::Task)?
    }
}

/// `INDEXED BY` the index named: a period's rows are read through the rollups' `day`
/// indexes (covering), which the planner, without statistics, passes over for a scan in
/// key order (measured at 1,000,000 reports: 47 against 22 ms for 30 days' totals).
fn indexed_by(index: &str) -> String {
    format!(" INDEXED BY {index}")
}

/// Brings the database to [`SCHEMA_VERSION`]: creates the tables, and when the file is older
/// (version 1 or none: detail tables only; or written to by such a build since, which set
/// version 1 again) rebuilds the rollups from the detail rows. All in one `BEGIN IMMEDIATE`
/// transaction, so two processes opening the file never migrate twice; a file already at
/// the current version is not written to at all.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version = |c: &Connection| -> Result<i64, StoreError> {
        c.pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db)
    };
    match version(conn)? {
        v if v == SCHEMA_VERSION => return Ok(()),
        v if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { version: v }),
        _ => {}
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let current = version(&tx)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { version: current });
    }
    if current < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA).map_err(db)?;
        add_dkim_column(&tx)?;
        tx.execute_batch(ROLLUPS_V2_DROP).map_err(db)?;
        tx.execute_batch(&rollup_schema(" WITHOUT ROWID"))
            .map_err(db)?;
        refill_rollups(&tx)?;
        tx.execute_batch(DETAIL_SUMMARY_INDEXES_DROP).map_err(db)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// Adds `reports.dkim` to a table created before version 3 (a newer `SCHEMA` has it).
fn add_dkim_column(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let has: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('reports') WHERE name = 'dkim')",
            [],
            |row| row.get(0),
        )
        .map_err(db)?;
    if !has {
        tx.execute_batch("ALTER TABLE reports ADD COLUMN dkim TEXT")
            .map_err(db)?;
    }
    Ok(())
}

/// Empties the rollups and fills them from the detail rows (inside the migration).
fn refill_rollups(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(ROLLUP_REFILL).map_err(db)?;
    // The MX key (absent or blank → NO_MX) is computed as at insert, in Rust.
    let sql = SummarySql::details(&SummaryFilter::default(), |n| format!("?{n}"), ORDER_BY);
    let mut select = tx.prepare(&sql.by_mx).map_err(db)?;
    let mut rows = select.query([]).map_err(db)?;
    let mut upsert = tx.prepare(&ROLLUP_SQL.mx).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let domain: String = row.get(0).map_err(db)?;
        let day: String = row.get(1).map_err(db)?;
        let mx: Option<String> = row.get(2).map_err(db)?;
        let n: i64 = row.get(3).map_err(db)?;
        upsert
            .execute(params![domain, day, mx_key(mx.as_deref()), n])
            .map_err(db)?;
    }
    Ok(())
}

/// Adds what the reports stored in transaction `tx` count to the rollups (before it
/// commits).
fn add_rollups(tx: &rusqlite::Transaction<'_>, delta: &RollupDelta) -> Result<(), StoreError> {
    let counts = |t: &DayTotals| {
        [
            db_count(t.reports),
            db_count(t.successful),
            db_count(t.failed),
        ]
    };
    let mut s = tx.prepare_cached(&ROLLUP_SQL.days).map_err(db)?;
    let mut new_days = std::collections::BTreeSet::new();
    for (key, t) in &delta.days {
        let [r, ok, ko] = counts(t);
        let after: i64 = s
            .query_row(params![key.0, key.1, r, ok, ko], |row| row.get(2))
            .map_err(db)?;
        if after == r {
            new_days.insert(key);
        }
    }
    let mut s = tx.prepare_cached(&ROLLUP_SQL.domain).map_err(db)?;
    for (domain, d) in delta.domain_sums(|key| new_days.contains(key)) {
        let [r, ok, ko] = counts(&d.totals);
        let days = db_count(d.new_days);
        s.execute(params![domain, days, r, ok, ko, d.first_day, d.last_day])
            .map_err(db)?;
    }
    let mut s = tx.prepare_cached(&ROLLUP_SQL.org).map_err(db)?;
    for ((domain, day, org), t) in &delta.by_org {
        let [r, ok, ko] = counts(t);
        s.execute(params![domain, day, org, r, ok, ko])
            .map_err(db)?;
    }
    let mut s = tx.prepare_cached(&ROLLUP_SQL.policy).map_err(db)?;
    for ((domain, day, kind, strings), t) in &delta.by_policy {
        let [r, ok, ko] = counts(t);
        s.execute(params![domain, day, kind, strings, r, ok, ko])
            .map_err(db)?;
    }
    for (sql, rows) in [
        (&ROLLUP_SQL.result_type, &delta.by_type),
        (&ROLLUP_SQL.mx, &delta.by_mx),
    ] {
        let mut s = tx.prepare_cached(sql).map_err(db)?;
        for ((domain, day, key), n) in rows {
            s.execute(params![domain, day, key, db_count(*n)])
                .map_err(db)?;
        }
    }
    let all = delta.all_time();
    let mut s = tx.prepare_cached(&ROLLUP_SQL.domain_org).map_err(db)?;
    for ((domain, org), (t, last)) in &all.orgs {
        let [r, ok, ko] = counts(t);
        s.execute(params![domain, org, r, ok, ko, last])
            .map_err(db)?;
    }
    let mut s = tx.prepare_cached(&ROLLUP_SQL.domain_policy).map_err(db)?;
    for ((domain, kind, strings), (t, last)) in &all.policies {
        let [r, ok, ko] = counts(t);
        s.execute(params![domain, kind, strings, r, ok, ko, last])
            .map_err(db)?;
    }
    let mut s = tx
        .prepare_cached(&ROLLUP_SQL.domain_result_type)
        .map_err(db)?;
    for ((domain, kind), (n, last)) in &all.result_types {
        s.execute(params![domain, kind, db_count(*n), last])
            .map_err(db)?;
    }
    Ok(())
}

/// Column `i` of `row` as text borrowed from the row (`None` for NULL).
fn text_or_null<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>, StoreError> {
    row.get_ref(i).map_err(db)?.as_str_or_null().map_err(|e| {
        db(rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(e),
        ))
    })
}

/// Column `i` of `row` as text borrowed from the row.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    text_or_null(row, i)?.ok_or_else(|| {
        db(rusqlite::Error::InvalidColumnType(
            i,
            String::new(),
            rusqlite::types::Type::Null,
        ))
    })
}

/// Runs the four queries of `sql` and merges their rows.
fn run_summary(
    conn: &Connection,
    sql: &SummarySql,
    params: &[String],
) -> Result<Vec<DaySummary>, StoreError> {
    let mut b = SummaryBuilder::default();
    let mut s = conn.prepare(&sql.totals).map_err(db)?;
    let mut rows = s.query(params_from_iter(params.iter())).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        b.totals(
            text(row, 0)?,
            text(row, 1)?,
            row.get(2).map_err(db)?,
            row.get(3).map_err(db)?,
            row.get(4).map_err(db)?,
        );
    }
    for (query, add) in [
        (
            &sql.by_org,
            SummaryBuilder::by_org as fn(&mut SummaryBuilder, &str, &str, &str, i64),
        ),
        (&sql.by_type, SummaryBuilder::by_type),
    ] {
        let mut s = conn.prepare(query).map_err(db)?;
        let mut rows = s.query(params_from_iter(params.iter())).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            add(
                &mut b,
                text(row, 0)?,
                text(row, 1)?,
                text(row, 2)?,
                row.get(3).map_err(db)?,
            );
        }
    }
    let mut s = conn.prepare(&sql.by_mx).map_err(db)?;
    let mut rows = s.query(params_from_iter(params.iter())).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        b.by_mx(
            text(row, 0)?,
            text(row, 1)?,
            text_or_null(row, 2)?,
            row.get(3).map_err(db)?,
        );
    }
    Ok(b.finish())
}

/// Inserts one report inside the open transaction `tx`; a new one is added to `delta`.
fn insert_one(
    tx: &rusqlite::Transaction<'_>,
    parsed: &ParsedReport,
    source: &str,
    imported_at: i64,
    delta: &mut RollupDelta,
) -> Result<Inserted, StoreError> {
    let r = &parsed.report;
    let day = r.date_range.start.date_string();
    let changed = tx
        .prepare_cached(
            "INSERT INTO reports (organization_name, report_id, contact_info, start_ts, end_ts, \
             day, source, imported_at, raw_json, dkim) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (organization_name, report_id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                r.organization_name,
                r.report_id,
                r.contact_info,
                r.date_range.start.unix_seconds(),
                r.date_range.end.unix_seconds(),
                day,
                source,
                imported_at,
                parsed.raw_json,
                parsed.dkim,
            ])
        })
        .map_err(db)?;
    if changed == 0 {
        let id: i64 = tx
            .query_row(
                "SELECT id FROM reports WHERE organization_name = ?1 AND report_id = ?2",
                params![r.organization_name, r.report_id],
                |row| row.get(0),
            )
            .map_err(db)?;
        return Ok(Inserted::Duplicate(id));
    }
    let report_row = tx.last_insert_rowid();
    let mut policy_stmt = tx
        .prepare_cached(
            "INSERT INTO report_policies (report, idx, policy_type, policy_domain, policy_string, \
             mx_host, day, organization_name, successful, failed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db)?;
    let mut detail_stmt = tx
        .prepare_cached(
            "INSERT INTO failure_details (policy, result_type, sending_mta_ip, \
             receiving_mx_hostname, receiving_mx_helo, receiving_ip, failed_session_count, \
             additional_information, failure_reason_code, policy_domain, day) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(db)?;
    for (idx, p) in r.policies.iter().enumerate() {
        let domain = normalize_domain(&p.policy.policy_domain);
        policy_stmt
            .execute(params![
                report_row,
                idx as i64,
                p.policy.policy_type.as_str(),
                domain,
                json_list(&p.policy.policy_string),
                json_list(&p.policy.mx_host),
                day,
                r.organization_name,
                db_count(p.summary.total_successful_session_count),
                db_count(p.summary.total_failure_session_count),
            ])
            .map_err(db)?;
        let policy_row = tx.last_insert_rowid();
        for d in &p.failure_details {
            detail_stmt
                .execute(params![
                    policy_row,
                    d.result_type.as_str(),
                    d.sending_mta_ip,
                    d.receiving_mx_hostname.as_deref().map(normalize_domain),
                    d.receiving_mx_helo,
                    d.receiving_ip,
                    db_count(d.failed_session_count),
                    d.additional_information,
                    d.failure_reason_code,
                    domain,
                    day,
                ])
                .map_err(db)?;
        }
    }
    delta.add(r);
    Ok(Inserted::New(report_row))
}

#[async_trait::async_trait]
impl ReportStore for SqliteStore {
    async fn insert(
        &self,
        report: &ParsedReport,
        source: &str,
        received_at: i64,
    ) -> Result<Inserted, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.queue
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .push(QueuedInsert {
                report: report.clone(),
                source: source.to_owned(),
                received_at,
                done,
            });
        // Whoever holds the connection next stores what is queued, this report included
        // unless an earlier call took it into its batch already.
        let queue = Arc::clone(&self.queue);
        self.with(move |conn| {
            let batch = std::mem::take(&mut *queue.lock().map_err(|_| StoreError::Poisoned)?);
            if !batch.is_empty() {
                commit_queued(conn, batch);
            }
            Ok(())
        })
        .await?;
        answer.await.map_err(|_| StoreError::Poisoned)?
    }

    async fn insert_batch(
        &self,
        reports: &[ParsedReport],
        source: &str,
        received_at: i64,
    ) -> Result<Vec<Inserted>, StoreError> {
        let reports = reports.to_vec();
        let source = source.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let mut delta = RollupDelta::default();
            let out = reports
                .iter()
                .map(|r| insert_one(&tx, r, &source, received_at, &mut delta))
                .collect::<Result<Vec<_>, _>>()?;
            add_rollups(&tx, &delta)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }

    async fn summary(&self, filter: &SummaryFilter) -> Result<Vec<DaySummary>, StoreError> {
        let sql = SummarySql::rollups(filter, |n| format!("?{n}"), ORDER_BY);
        let params = SummarySql::params(filter);
        self.with(move |conn| run_summary(conn, &sql, &params))
            .await
    }

    async fn domain_totals(&self, period: &PeriodFilter) -> Result<Vec<DomainTotals>, StoreError> {
        let sql = totals::sql(
            period,
            |n| format!("?{n}"),
            "ORDER BY policy_domain",
            &indexed_by,
        );
        let params = totals::params(period);
        self.with(move |conn| {
            let mut s = conn.prepare_cached(&sql).map_err(db)?;
            let mut rows = s.query(params_from_iter(params.iter())).map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                out.push(DomainTotals {
                    policy_domain: text(row, 0)?.to_owned(),
                    days: totals::count(row.get(1).map_err(db)?),
                    reports: totals::count(row.get(2).map_err(db)?),
                    successful: totals::count(row.get(3).map_err(db)?),
                    failed: totals::count(row.get(4).map_err(db)?),
                    first_day: text(row, 5)?.to_owned(),
                    last_day: text(row, 6)?.to_owned(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn details(&self, filter: &DetailFilter, limit: u32) -> Result<Details, StoreError> {
        let sql = ListingSql::new(filter, &|n| format!("?{n}"), limit);
        self.with(move |conn| {
            let p = || params_from_iter(sql.params.iter());
            let mut out = Details::default();
            if let Some(q) = &sql.reports {
                let mut s = conn.prepare_cached(q).map_err(db)?;
                let mut rows = s.query(p()).map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    out.reports.push(ReportListing {
                        id: row.get(0).map_err(db)?,
                        report_id: text(row, 1)?.to_owned(),
                        organization_name: text(row, 2)?.to_owned(),
                        policy_domain: text(row, 3)?.to_owned(),
                        policy_type: text(row, 4)?.to_owned(),
                        day: text(row, 5)?.to_owned(),
                        source: text(row, 6)?.to_owned(),
                        imported_at: row.get(7).map_err(db)?,
                        successful: totals::count(row.get(8).map_err(db)?),
                        failed: totals::count(row.get(9).map_err(db)?),
                    });
                }
            }
            let mut s = conn.prepare_cached(&sql.policies).map_err(db)?;
            let mut rows = s.query(p()).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                out.policies.push(PolicySeen {
                    policy_domain: text(row, 0)?.to_owned(),
                    policy_type: text(row, 1)?.to_owned(),
                    policy_string: listing::string_list(text(row, 2)?),
                    reports: totals::count(row.get(3).map_err(db)?),
                    successful: totals::count(row.get(4).map_err(db)?),
                    failed: totals::count(row.get(5).map_err(db)?),
                    last_day: text(row, 6)?.to_owned(),
                });
            }
            drop(rows);
            let mut s = conn.prepare_cached(&sql.organizations).map_err(db)?;
            let mut rows = s.query(p()).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                out.organizations.push(OrganizationSessions {
                    policy_domain: text(row, 0)?.to_owned(),
                    organization_name: text(row, 1)?.to_owned(),
                    reports: totals::count(row.get(2).map_err(db)?),
                    successful: totals::count(row.get(3).map_err(db)?),
                    failed: totals::count(row.get(4).map_err(db)?),
                    last_day: text(row, 5)?.to_owned(),
                });
            }
            drop(rows);
            if let Some(q) = &sql.senders {
                let mut s = conn.prepare_cached(q).map_err(db)?;
                let mut rows = s.query(p()).map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    out.senders.push(SenderFailures {
                        sending_mta_ip: text(row, 0)?.to_owned(),
                        result_type: text(row, 1)?.to_owned(),
                        failed: totals::count(row.get(2).map_err(db)?),
                    });
                }
            }
            listing::sort(&mut out.policies, &mut out.organizations, &mut out.senders);
            Ok(out)
        })
        .await
    }

    async fn domain_days(
        &self,
        domains: &[String],
        since: Option<&str>,
    ) -> Result<Vec<DaySummary>, StoreError> {
        let mut domains: Vec<String> = domains.iter().map(|d| normalize_domain(d)).collect();
        domains.sort();
        domains.dedup();
        let since = since.unwrap_or("").to_owned();
        self.with(move |conn| {
            let mut s = conn
                .prepare_cached(
                    "SELECT policy_domain, day, reports, successful, failed FROM report_days \
                     WHERE policy_domain = ?1 AND day >= ?2 ORDER BY day",
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for domain in &domains {
                let mut rows = s.query(params![domain, since]).map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    out.push(DaySummary {
                        policy_domain: text(row, 0)?.to_owned(),
                        day: text(row, 1)?.to_owned(),
                        reports: totals::count(row.get(2).map_err(db)?),
                        successful: totals::count(row.get(3).map_err(db)?),
                        failed: totals::count(row.get(4).map_err(db)?),
                        ..DaySummary::default()
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn overview_keys(
        &self,
        period: &PeriodFilter,
        organization: Option<&str>,
    ) -> Result<OverviewKeys, StoreError> {
        let sql = OverviewSql::new(period, organization, &|n| format!("?{n}"), &indexed_by);
        self.with(move |conn| {
            let mut keys = OverviewKeys::default();
            let p = || params_from_iter(sql.params.iter());
            let mut s = conn.prepare_cached(&sql.organizations).map_err(db)?;
            let mut rows = s.query(p()).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                keys.organization(text(row, 0)?, text(row, 1)?);
            }
            drop(rows);
            let mut s = conn.prepare_cached(&sql.policies).map_err(db)?;
            let mut rows = s.query(p()).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                keys.policy(text(row, 0)?, text(row, 1)?, text(row, 2)?);
            }
            drop(rows);
            let mut s = conn.prepare_cached(&sql.result_types).map_err(db)?;
            let mut rows = s.query(p()).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                let n: i64 = row.get(2).map_err(db)?;
                keys.failures(text(row, 0)?, text(row, 1)?, totals::count(n));
            }
            drop(rows);
            if let (Some(q), Some(org)) = (&sql.organization_sessions, organization_of(&sql)) {
                let mut s = conn.prepare_cached(q).map_err(db)?;
                let mut rows = s
                    .query(params_from_iter(sql.organization_params.iter()))
                    .map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    keys.organization_sessions.push(OrganizationSessions {
                        policy_domain: text(row, 0)?.to_owned(),
                        organization_name: org.to_owned(),
                        reports: totals::count(row.get(1).map_err(db)?),
                        successful: totals::count(row.get(2).map_err(db)?),
                        failed: totals::count(row.get(3).map_err(db)?),
                        last_day: text(row, 4)?.to_owned(),
                    });
                }
            }
            keys.organization_sessions
                .sort_by(|a, b| a.policy_domain.cmp(&b.policy_domain));
            Ok(keys)
        })
        .await
    }

    async fn find(&self, id: &str) -> Result<Vec<StoredReport>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            let mut s = conn
                .prepare(
                    "SELECT id, source, imported_at, raw_json, dkim FROM reports \
                     WHERE report_id = ?1 ORDER BY id",
                )
                .map_err(db)?;
            let columns =
                |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
            let mut found: Vec<(i64, String, i64, String, Option<String>)> = s
                .query_map([&id], columns)
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            if found.is_empty()
                && let Ok(row_id) = id.parse::<i64>()
            {
                found.extend(
                    conn.query_row(
                        "SELECT id, source, imported_at, raw_json, dkim FROM reports WHERE id = ?1",
                        [row_id],
                        columns,
                    )
                    .optional()
                    .map_err(db)?,
                );
            }
            found
                .into_iter()
                .map(|(id, source, imported_at, raw, dkim)| {
                    stored(id, source, imported_at, raw, dkim)
                })
                .collect()
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))
                .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
