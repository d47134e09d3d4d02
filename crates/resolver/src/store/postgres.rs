//! The PostgreSQL store: one database shared by a fleet of MTAs, as Redis is.
//!
//! # Schema
//!
//! Created on first use (`CREATE TABLE IF NOT EXISTS`, under a transaction-scoped advisory
//! lock so that daemons starting together never race on it), next to whatever else the
//! database holds (the TLS-RPT report store's tables may live in the same one):
//!
//! - `mta_sts_policies`: one row per policy domain (primary key, `COLLATE "C"` so pages come
//!   in byte order, as the other stores give them), with the columns the SQLite store keeps:
//!   `record_id`, `body`, `fetched_at`, `expires_at` (seconds since the Unix epoch).
//! - `mta_sts_refresh_leases`: one row per domain being refreshed, with the end of its
//!   lease on the *database's* clock, so daemons whose clocks differ still agree.
//!
//! # Fleet semantics
//!
//! `put` is newer-wins in one statement (`INSERT … ON CONFLICT DO UPDATE … WHERE
//! excluded.fetched_at >= fetched_at`): the row lock orders concurrent puts and the newest
//! fetch stays, whatever order they arrive in. `try_lease` is one `INSERT … ON CONFLICT DO
//! UPDATE … WHERE` the stored lease has ended `RETURNING`: a row comes back only to the one
//! daemon that took the lease (RFC 8461 §10.2's proactive refresh, once per fleet).
//!
//! # Outages
//!
//! Connections come from a deadpool pool and are made lazily: a daemon starts while
//! PostgreSQL is down. Every operation (waiting for a connection, the schema on first use,
//! the statement) is bounded by [`PostgresOptions::timeout`]; a dead or stalled server
//! gives [`StoreError::Unavailable`] and never hangs a lookup. A broken connection is
//! dropped by the pool and the next operation opens a new one.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Config, Pool, PoolConfig, Runtime, Timeouts};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tokio_postgres::Row;

use super::{Store, StoreError, StoredPolicy};

const BACKEND: &str = "postgres";

/// The per-operation timeout used unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most connections one store keeps open, unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;

/// Key of the advisory lock that serialises the schema creation of concurrent daemons
/// (ASCII "MTASTSv1").
const SCHEMA_LOCK: i64 = 0x4d54_4153_5453_7631;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS mta_sts_policies (
    domain     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    record_id  TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS mta_sts_policies_expires_at ON mta_sts_policies (expires_at);
CREATE TABLE IF NOT EXISTS mta_sts_refresh_leases (
    domain TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    until  TIMESTAMPTZ NOT NULL
);
"#;

const COLUMNS: &str = "domain, record_id, body, fetched_at, expires_at";

/// How to reach PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// `postgres://user:password@host[:port]/database` (libpq `key=value` strings work too).
    pub url: String,
    /// Upper bound for each operation, connecting included; [`DEFAULT_TIMEOUT`] by default.
    pub timeout: Duration,
    /// Most connections kept open; [`DEFAULT_MAX_CONNECTIONS`] by default.
    pub max_connections: usize,
}

impl PostgresOptions {
    /// Options for `url` with the default timeout and pool size.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl std::fmt::Debug for PostgresOptions {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ if url.contains("password") => "<redacted>".to_owned(),
        _ => url.to_owned(),
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message,
    }
}

/// A [`Store`] in PostgreSQL, shareable by many daemons (see the module docs).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    timeout: Duration,
    /// Set once the schema exists (first successful operation).
    schema: std::sync::Arc<OnceCell<()>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A time in seconds as PostgreSQL's BIGINT.
fn to_sql_time(t: u64, what: &str, domain: &str) -> Result<i64, StoreError> {
    i64::try_from(t).map_err(|_| StoreError::Corrupt {
        domain: domain.to_owned(),
        message: format!("{what} {t} is out of range"),
    })
}

/// One row of `mta_sts_policies` as a [`StoredPolicy`].
fn decode(row: &Row) -> Result<StoredPolicy, StoreError> {
    let domain: String = row
        .try_get(0)
        .map_err(|e| unavailable(format!("reading a row: {e}")))?;
    let corrupt = |message: String| StoreError::Corrupt {
        domain: domain.clone(),
        message,
    };
    let record_id: String = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
    let body: String = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
    let time = |i: usize, what: &str| -> Result<u64, StoreError> {
        let t: i64 = row.try_get(i).map_err(|e| corrupt(e.to_string()))?;
        u64::try_from(t).map_err(|_| corrupt(format!("negative {what} {t}")))
    };
    let fetched_at = time(3, "fetched_at")?;
    let expires_at = time(4, "expires_at")?;
    Ok(StoredPolicy {
        domain: domain.clone(),
        record_id,
        body,
        fetched_at,
        expires_at,
    })
}

/// The fresh entries of `rows`; corrupt rows are logged and skipped.
fn fresh(rows: &[Row], now: u64) -> Vec<StoredPolicy> {
    rows.iter()
        .filter_map(|row| match decode(row) {
            Ok(entry) if entry.is_fresh(now) => Some(entry),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "skipping a corrupt cached policy");
                None
            }
        })
        .collect()
}

impl PostgresStore {
    /// A store for `options` that connects lazily: no I/O happens here, so a daemon starts
    /// while PostgreSQL is down, and operations fail with [`StoreError::Unavailable`] until
    /// it is up. The tables are created by the first operation that reaches it. Must be
    /// called inside a tokio runtime. Fails only on an invalid URL.
    pub fn new(options: PostgresOptions) -> Result<Self, StoreError> {
        // Checked here so that a typo is reported at start, not at the first lookup.
        options.url.parse::<tokio_postgres::Config>().map_err(|e| {
            unavailable(format!(
                "invalid PostgreSQL URL {}: {e}",
                redact(&options.url)
            ))
        })?;
        let timeouts = Timeouts {
            wait: Some(options.timeout),
            create: Some(options.timeout),
            recycle: Some(options.timeout),
        };
        let cfg = Config {
            url: Some(options.url.clone()),
            connect_timeout: Some(options.timeout),
            pool: Some(PoolConfig {
                max_size: options.max_connections.max(1),
                timeouts,
                ..PoolConfig::default()
            }),
            ..Config::default()
        };
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| unavailable(format!("cannot set up the PostgreSQL pool: {e}")))?;
        Ok(Self {
            pool,
            timeout: options.timeout,
            schema: std::sync::Arc::new(OnceCell::new()),
        })
    }

    /// Like [`PostgresStore::new`], then connects and creates the tables within the
    /// timeout.
    pub async fn connect(options: PostgresOptions) -> Result<Self, StoreError> {
        let store = Self::new(options)?;
        store.run("connect", |_client| async { Ok(()) }).await?;
        Ok(store)
    }

    /// Runs `op` on a pooled connection, the schema created first if this store has not
    /// yet seen it, all under the timeout.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let attempt = async {
            let mut client = self
                .pool
                .get()
                .await
                .map_err(|e| unavailable(format!("{what}: {e}")))?;
            self.schema
                .get_or_try_init(|| create_schema(&mut client))
                .await
                .map_err(|e| unavailable(format!("creating the tables: {e}")))?;
            op(client).await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(format!(
                "{what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// Creates the tables if they are missing (see the module docs).
async fn create_schema(
    client: &mut deadpool_postgres::Object,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(SCHEMA).await?;
    tx.commit().await
}

/// A statement error as [`StoreError::Unavailable`].
fn sql(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| unavailable(format!("{what}: {}", with_source(&e)))
}

/// The error with its database message (tokio-postgres's `Display` alone says only "db
/// error").
fn with_source(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, domain: &str) -> Result<Option<StoredPolicy>, StoreError> {
        let row = self
            .run("get", |client| async move {
                client
                    .query_opt(
                        &format!("SELECT {COLUMNS} FROM mta_sts_policies WHERE domain = $1"),
                        &[&domain],
                    )
                    .await
                    .map_err(sql("get"))
            })
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn put(&self, entry: &StoredPolicy, _now: u64) -> Result<(), StoreError> {
        let fetched_at = to_sql_time(entry.fetched_at, "fetched_at", &entry.domain)?;
        let expires_at = to_sql_time(entry.expires_at, "expires_at", &entry.domain)?;
        self.run("put", |client| async move {
            client
                .execute(
                    "INSERT INTO mta_sts_policies (domain, record_id, body, fetched_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (domain) DO UPDATE SET
                         record_id = excluded.record_id,
                         body = excluded.body,
                         fetched_at = excluded.fetched_at,
                         expires_at = excluded.expires_at
                     WHERE excluded.fetched_at >= mta_sts_policies.fetched_at",
                    &[
                        &entry.domain,
                        &entry.record_id,
                        &entry.body,
                        &fetched_at,
                        &expires_at,
                    ],
                )
                .await
                .map_err(sql("put"))
        })
        .await
        .map(|_| ())
    }

    async fn remove(&self, domain: &str) -> Result<(), StoreError> {
        self.run("remove", |client| async move {
            client
                .execute("DELETE FROM mta_sts_policies WHERE domain = $1", &[&domain])
                .await
                .map_err(sql("remove"))
        })
        .await
        .map(|_| ())
    }

    async fn load_all(&self, now: u64) -> Result<Vec<StoredPolicy>, StoreError> {
        let at = i64::try_from(now).unwrap_or(i64::MAX);
        let rows = self
            .run("load_all", |client| async move {
                client
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM mta_sts_policies WHERE expires_at > $1 \
                             ORDER BY domain"
                        ),
                        &[&at],
                    )
                    .await
                    .map_err(sql("load_all"))
            })
            .await?;
        Ok(fresh(&rows, now))
    }

    async fn count_hint(&self, now: u64) -> Option<usize> {
        let at = i64::try_from(now).unwrap_or(i64::MAX);
        let count = self
            .run("count", |client| async move {
                client
                    .query_one(
                        "SELECT COUNT(*) FROM mta_sts_policies WHERE expires_at > $1",
                        &[&at],
                    )
                    .await
                    .map_err(sql("count"))?
                    .try_get::<_, i64>(0)
                    .map_err(sql("count"))
            })
            .await
            .ok()?;
        usize::try_from(count).ok()
    }

    async fn load_page(
        &self,
        now: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredPolicy>, StoreError> {
        let at = i64::try_from(now).unwrap_or(i64::MAX);
        let max = i64::try_from(limit).unwrap_or(i64::MAX);
        // The primary key is in byte order (COLLATE "C"), as Rust compares strings.
        let rows = self
            .run("load_page", |client| async move {
                client
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM mta_sts_policies \
                             WHERE expires_at > $1 AND ($2::TEXT IS NULL OR domain > $2) \
                             ORDER BY domain LIMIT $3"
                        ),
                        &[&at, &after, &max],
                    )
                    .await
                    .map_err(sql("load_page"))
            })
            .await?;
        Ok(fresh(&rows, now))
    }

    async fn try_lease(&self, domain: &str, ttl: Duration) -> Result<bool, StoreError> {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        // A row comes back when this call inserted the lease or took over one that had
        // ended; none while another daemon's lease is live. The database's clock decides.
        let row = self
            .run("try_lease", |client| async move {
                client
                    .query_opt(
                        "INSERT INTO mta_sts_refresh_leases (domain, until)
                         VALUES ($1, clock_timestamp() + $2::BIGINT * INTERVAL '1 millisecond')
                         ON CONFLICT (domain) DO UPDATE SET until = excluded.until
                         WHERE mta_sts_refresh_leases.until <= clock_timestamp()
                         RETURNING 1",
                        &[&domain, &millis],
                    )
                    .await
                    .map_err(sql("try_lease"))
            })
            .await?;
        Ok(row.is_some())
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_printed() {
        let o = PostgresOptions::new("postgres://mta:hunter2@db.example/mta");
        let printed = format!("{o:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://mta:***@db.example/mta"),
            "{printed}"
        );
        let kv = PostgresOptions::new("host=db.example password=hunter2");
        assert!(!format!("{kv:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn an_invalid_url_is_refused_at_once() {
        let err = PostgresStore::new(PostgresOptions::new("postgres://h:notaport/db"))
            .expect_err("invalid URL");
        assert!(err.to_string().contains("invalid PostgreSQL URL"), "{err}");
    }
}
