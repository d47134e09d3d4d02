//! The PostgreSQL store, for hosters receiving reports for many domains (tokio-postgres with a
//! deadpool connection pool). Same schema and rules as [`crate::SqliteStore`].

use std::sync::LazyLock;

use deadpool_postgres::{Config, Pool, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::intake::ParsedReport;
use crate::listing::{
    self, DetailFilter, Details, ListingSql, OrganizationSessions, PolicySeen, ReportListing,
    SenderFailures,
};
use crate::overview::{OverviewKeys, OverviewSql, organization_of};
use crate::rollups::{
    AllTimeDelta, DETAIL_SUMMARY_INDEXES_DROP, DayTotals, ROLLUP_REFILL, ROLLUPS_V2_DROP,
    RollupDelta, RollupSql, rollup_schema,
};
use crate::store::{
    DaySummary, Inserted, ReportStore, SCHEMA_VERSION, StoreError, StoredReport, SummaryBuilder,
    SummaryFilter, SummarySql, db_count, json_list, mx_key, normalize_domain, stored,
};
use crate::totals::{self, DomainTotals, PeriodFilter};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    id                BIGSERIAL PRIMARY KEY,
    organization_name TEXT NOT NULL,
    report_id         TEXT NOT NULL,
    contact_info      TEXT NOT NULL,
    start_ts          BIGINT NOT NULL,
    end_ts            BIGINT NOT NULL,
    day               TEXT NOT NULL,
    source            TEXT NOT NULL,
    imported_at       BIGINT NOT NULL,
    raw_json          TEXT NOT NULL,
    dkim              TEXT,
    UNIQUE (organization_name, report_id)
);
CREATE INDEX IF NOT EXISTS reports_report_id ON reports (report_id);
CREATE TABLE IF NOT EXISTS report_policies (
    id                BIGSERIAL PRIMARY KEY,
    report            BIGINT NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    idx               BIGINT NOT NULL,
    policy_type       TEXT NOT NULL,
    policy_domain     TEXT NOT NULL,
    policy_string     TEXT NOT NULL,
    mx_host           TEXT NOT NULL,
    day               TEXT NOT NULL,
    organization_name TEXT NOT NULL,
    successful        BIGINT NOT NULL,
    failed            BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS report_policies_report ON report_policies (report);
CREATE TABLE IF NOT EXISTS failure_details (
    id                     BIGSERIAL PRIMARY KEY,
    policy                 BIGINT NOT NULL REFERENCES report_policies (id) ON DELETE CASCADE,
    result_type            TEXT NOT NULL,
    sending_mta_ip         TEXT,
    receiving_mx_hostname  TEXT,
    receiving_mx_helo      TEXT,
    receiving_ip           TEXT,
    failed_session_count   BIGINT NOT NULL,
    additional_information TEXT,
    failure_reason_code    TEXT,
    policy_domain          TEXT NOT NULL,
    day                    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failure_details_policy ON failure_details (policy);
CREATE TABLE IF NOT EXISTS report_store_schema (version BIGINT NOT NULL);
";

/// Summary rows in (domain, day) order as Rust compares strings (bytewise), whatever the
/// database's collation.
const ORDER_BY: &str = "ORDER BY policy_domain COLLATE \"C\", day COLLATE \"C\"";

/// The rollup UPSERTs, one statement per table for all rows (arrays, `UNNEST`).
static ROLLUP_SQL: LazyLock<RollupSql> = LazyLock::new(|| {
    RollupSql::new(
        |types| {
            let arrays: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("${}::{t}[]", i + 1))
                .collect();
            format!("SELECT * FROM UNNEST({})", arrays.join(", "))
        },
        "GREATEST",
        "LEAST",
    )
});

/// Key of the transaction-scoped advisory lock that serialises schema migrations of
/// concurrent connects (ASCII "TLSRPTv2").
const MIGRATION_LOCK: i64 = 0x544c_5352_5054_7632;

/// The PostgreSQL report store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// A tokio-postgres or pool error as a [`StoreError`], keeping it as the source.
fn db(e: impl Into<StoreError>) -> StoreError {
    e.into()
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, libpq key=value strings
    /// also work) and creates the tables if needed. Connections are plain TCP or UNIX sockets
    /// (no TLS yet: keep the database on a private network or loopback).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let open_err =
            |cause: Box<dyn std::error::Error + Send + Sync>| StoreError::open(redact(url), cause);
        let cfg = Config {
            url: Some(url.to_owned()),
            ..Config::default()
        };
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| open_err(e.into()))?;
        let mut client = pool.get().await.map_err(|e| open_err(e.into()))?;
        migrate(&mut client).await.map_err(|e| open_err(e.into()))?;
        Ok(PostgresStore { pool })
    }

    /// The summary aggregated from the detail rows instead of the rollups: what
    /// [`ReportStore::summary`] must always equal (the tests' oracle).
    #[cfg(test)]
    pub(crate) async fn summary_from_details(
        &self,
        filter: &SummaryFilter,
    ) -> Result<Vec<DaySummary>, StoreError> {
        let sql = SummarySql::details(filter, |n| format!("${n}"), ORDER_BY);
        let client = self.pool.get().await.map_err(db)?;
        run_summary(&client, &sql, &SummarySql::params(filter)).await
    }

    /// Inserts one report inside the open transaction `tx`; a new one is added to `delta`.
    async fn insert_in(
        tx: &deadpool_postgres::Transaction<'_>,
        parsed: &ParsedReport,
        source: &str,
        imported_at: i64,
        delta: &mut RollupDelta,
    ) -> Result<Inserted, StoreError> {
        let r = &parsed.report;
        let day = r.date_range.start.date_string();
        let inserted = tx
            .query_opt(
                "INSERT INTO reports (organization_name, report_id, contact_info, start_ts, \
                 end_ts, day, source, imported_at, raw_json, dkim) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (organization_name, report_id) DO NOTHING RETURNING id",
                &[
                    &r.organization_name,
                    &r.report_id,
                    &r.contact_info,
                    &r.date_range.start.unix_seconds(),
                    &r.date_range.end.unix_seconds(),
                    &day,
                    &source,
                    &imported_at,
                    &parsed.raw_json,
                    &parsed.dkim,
                ],
            )
            .await
            .map_err(db)?;
        let Some(row) = inserted else {
            let row = tx
                .query_one(
                    "SELECT id FROM reports WHERE organization_name = $1 AND report_id = $2",
                    &[&r.organization_name, &r.report_id],
                )
                .await
                .map_err(db)?;
            return Ok(Inserted::Duplicate(row.try_get(0).map_err(db)?));
        };
        let report_row: i64 = row.try_get(0).map_err(db)?;
        let policy_stmt = tx
            .prepare_cached(
                "INSERT INTO report_policies (report, idx, policy_type, policy_domain, \
                 policy_string, mx_host, day, organization_name, successful, failed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .await
            .map_err(db)?;
        let detail_stmt = tx
            .prepare_cached(
                "INSERT INTO failure_details (policy, result_type, sending_mta_ip, \
                 receiving_mx_hostname, receiving_mx_helo, receiving_ip, failed_session_count, \
                 additional_information, failure_reason_code, policy_domain, day) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await
            .map_err(db)?;
        for (idx, p) in r.policies.iter().enumerate() {
            let domain = normalize_domain(&p.policy.policy_domain);
            let row = tx
                .query_one(
                    &policy_stmt,
                    &[
                        &report_row,
                        &(idx as i64),
                        &p.policy.policy_type.as_str(),
                        &domain,
                        &json_list(&p.policy.policy_string),
                        &json_list(&p.policy.mx_host),
                        &day,
                        &r.organization_name,
                        &db_count(p.summary.total_successful_session_count),
                        &db_count(p.summary.total_failure_session_count),
                    ],
                )
                .await
                .map_err(db)?;
            let policy_row: i64 = row.try_get(0).map_err(db)?;
            for d in &p.failure_details {
                tx.execute(
                    &detail_stmt,
                    &[
                        &policy_row,
                        &d.result_type.as_str(),
                        &d.sending_mta_ip,
                        &d.receiving_mx_hostname.as_deref().map(normalize_domain),
                        &d.receiving_mx_helo,
                        &d.receiving_ip,
                        &db_count(d.failed_session_count),
                        &d.additional_information,
                        &d.failure_reason_code,
                        &domain,
                        &day,
                    ],
                )
                .await
                .map_err(db)?;
            }
        }
        delta.add(r);
        Ok(Inserted::New(report_row))
    }
}

/// Creates the tables and brings the schema to [`SCHEMA_VERSION`] (table
/// `report_store_schema`): a database without it, or older, has its rollups rebuilt from the
/// detail rows. One transaction, under an advisory lock so that concurrent connects never
/// migrate twice. An older build that stores reports after the migration leaves the
/// rollups behind without a mark (SQLite's older builds reset `user_version`; nothing here
/// does): `DELETE FROM report_store_schema` then makes the next connect rebuild them.
async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    tx.batch_execute(SCHEMA).await.map_err(db)?;
    let current: Option<i64> = tx
        .query_one("SELECT MAX(version) FROM report_store_schema", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let current = current.unwrap_or(1);
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { version: current });
    }
    if current < SCHEMA_VERSION {
        tx.batch_execute("ALTER TABLE reports ADD COLUMN IF NOT EXISTS dkim TEXT")
            .await
            .map_err(db)?;
        tx.batch_execute(ROLLUPS_V2_DROP).await.map_err(db)?;
    }
    tx.batch_execute(&rollup_schema("")).await.map_err(db)?;
    if current < SCHEMA_VERSION {
        refill_rollups(&tx).await?;
        tx.batch_execute(DETAIL_SUMMARY_INDEXES_DROP)
            .await
            .map_err(db)?;
        tx.batch_execute("DELETE FROM report_store_schema")
            .await
            .map_err(db)?;
        tx.execute(
            "INSERT INTO report_store_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// Empties the rollups and fills them from the detail rows (inside the migration).
async fn refill_rollups(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(ROLLUP_REFILL).await.map_err(db)?;
    // The MX key (absent or blank → NO_MX) is computed as at insert, in Rust.
    let sql = SummarySql::details(&SummaryFilter::default(), |n| format!("${n}"), ORDER_BY);
    let mut by_mx = std::collections::BTreeMap::<(String, String, String), i64>::new();
    for row in tx.query(&sql.by_mx, &[]).await.map_err(db)? {
        let domain: String = row.try_get(0).map_err(db)?;
        let day: String = row.try_get(1).map_err(db)?;
        let mx: Option<&str> = row.try_get(2).map_err(db)?;
        let n: i64 = row.try_get(3).map_err(db)?;
        let v = by_mx
            .entry((domain, day, mx_key(mx).to_owned()))
            .or_default();
        *v = v.saturating_add(n);
    }
    let delta = RollupDelta {
        by_mx: by_mx
            .into_iter()
            .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .collect(),
        ..RollupDelta::default()
    };
    add_rollups(tx, &delta).await
}

/// Adds what the reports stored in transaction `tx` count to the rollups (before it
/// commits): one statement per table.
async fn add_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    delta: &RollupDelta,
) -> Result<(), StoreError> {
    let updated = upsert_sessions(
        tx,
        &ROLLUP_SQL.days,
        delta.days.iter().map(|((d, day), t)| ([d, day], t)),
    )
    .await?;
    let mut new_days = std::collections::BTreeSet::new();
    for row in updated {
        let key: (String, String) = (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
        let after: i64 = row.try_get(2).map_err(db)?;
        if delta.days.get(&key).map(|t| db_count(t.reports)) == Some(after) {
            new_days.insert(key);
        }
    }
    let domains = delta.domain_sums(|key| new_days.contains(key));
    if !domains.is_empty() {
        let mut names: Vec<&str> = Vec::new();
        let mut counts: [Vec<i64>; 4] = Default::default();
        let (mut first, mut last): (Vec<&str>, Vec<&str>) = Default::default();
        for (domain, d) in &domains {
            names.push(domain);
            let t = &d.totals;
            for (column, n) in
                counts
                    .iter_mut()
                    .zip([d.new_days, t.reports, t.successful, t.failed])
            {
                column.push(db_count(n));
            }
            first.push(&d.first_day);
            last.push(&d.last_day);
        }
        let [days, reports, ok, ko] = &counts;
        let s = tx.prepare_cached(&ROLLUP_SQL.domain).await.map_err(db)?;
        tx.execute(&s, &[&names, days, reports, ok, ko, &first, &last])
            .await
            .map_err(db)?;
    }
    upsert_sessions(
        tx,
        &ROLLUP_SQL.org,
        delta
            .by_org
            .iter()
            .map(|((d, day, org), t)| ([d, day, org], t)),
    )
    .await?;
    upsert_sessions(
        tx,
        &ROLLUP_SQL.policy,
        delta
            .by_policy
            .iter()
            .map(|((d, day, kind, strings), t)| ([d, day, kind, strings], t)),
    )
    .await?;
    for (sql, rows) in [
        (&ROLLUP_SQL.result_type, &delta.by_type),
        (&ROLLUP_SQL.mx, &delta.by_mx),
    ] {
        if rows.is_empty() {
            continue;
        }
        let mut cols: (Vec<&str>, Vec<&str>, Vec<&str>, Vec<i64>) = Default::default();
        for ((domain, day, key), n) in rows {
            cols.0.push(domain);
            cols.1.push(day);
            cols.2.push(key);
            cols.3.push(db_count(*n));
        }
        let s = tx.prepare_cached(sql).await.map_err(db)?;
        tx.execute(&s, &[&cols.0, &cols.1, &cols.2, &cols.3])
            .await
            .map_err(db)?;
    }
    add_all_time(tx, &delta.all_time()).await
}

/// Adds a delta's all-time sums to the `report_domain_*` tables, one statement each.
async fn add_all_time(
    tx: &deadpool_postgres::Transaction<'_>,
    all: &AllTimeDelta,
) -> Result<(), StoreError> {
    let sessions = |t: &DayTotals| [t.reports, t.successful, t.failed];
    upsert_all_time(
        tx,
        &ROLLUP_SQL.domain_org,
        all.orgs
            .iter()
            .map(|((d, org), (t, last))| ([d.as_str(), org], sessions(t), last.as_str())),
    )
    .await?;
    upsert_all_time(
        tx,
        &ROLLUP_SQL.domain_policy,
        all.policies.iter().map(|((d, kind, strings), (t, last))| {
            ([d.as_str(), kind, strings], sessions(t), last.as_str())
        }),
    )
    .await?;
    upsert_all_time(
        tx,
        &ROLLUP_SQL.domain_result_type,
        all.result_types
            .iter()
            .map(|((d, kind), (n, last))| ([d.as_str(), kind], [*n], last.as_str())),
    )
    .await
}

/// One UPSERT into an all-time table: `K` key columns, `N` counts, the last day; each
/// column an array (a transaction's rows in one statement).
async fn upsert_all_time<'a, const K: usize, const N: usize>(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    rows: impl Iterator<Item = ([&'a str; K], [u64; N], &'a str)>,
) -> Result<(), StoreError> {
    let mut keys: [Vec<&str>; K] = std::array::from_fn(|_| Vec::new());
    let mut counts: [Vec<i64>; N] = std::array::from_fn(|_| Vec::new());
    let mut last_days: Vec<&str> = Vec::new();
    for (key, n, last) in rows {
        for (column, value) in keys.iter_mut().zip(key) {
            column.push(value);
        }
        for (column, n) in counts.iter_mut().zip(n) {
            column.push(db_count(n));
        }
        last_days.push(last);
    }
    if last_days.is_empty() {
        return Ok(());
    }
    let params: Vec<&(dyn ToSql + Sync)> = keys
        .iter()
        .map(|k| k as &(dyn ToSql + Sync))
        .chain(counts.iter().map(|c| c as &(dyn ToSql + Sync)))
        .chain(std::iter::once(&last_days as &(dyn ToSql + Sync)))
        .collect();
    let s = tx.prepare_cached(sql).await.map_err(db)?;
    tx.execute(&s, &params).await.map_err(db)?;
    Ok(())
}

/// One UPSERT of [`RollupSql`]'s sessions shape: `K` key columns, then reports, successful
/// and failed, each column an array (a transaction's rows in one statement); the rows it
/// returns, if its SQL has `RETURNING`.
async fn upsert_sessions<'a, const K: usize>(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    rows: impl Iterator<Item = ([&'a String; K], &'a DayTotals)>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let mut keys: [Vec<&str>; K] = std::array::from_fn(|_| Vec::new());
    let mut counts: [Vec<i64>; 3] = Default::default();
    for (key, t) in rows {
        for (column, value) in keys.iter_mut().zip(key) {
            column.push(value);
        }
        for (column, n) in counts.iter_mut().zip([t.reports, t.successful, t.failed]) {
            column.push(db_count(n));
        }
    }
    if counts[0].is_empty() {
        return Ok(Vec::new());
    }
    let params: Vec<&(dyn ToSql + Sync)> = keys
        .iter()
        .map(|k| k as &(dyn ToSql + Sync))
        .chain(counts.iter().map(|c| c as &(dyn ToSql + Sync)))
        .collect();
    let s = tx.prepare_cached(sql).await.map_err(db)?;
    tx.query(&s, &params).await.map_err(db)
}

/// Text parameters as the driver takes them.
fn sql_args(params: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Runs the four queries of `sql` and merges their rows.
async fn run_summary(
    client: &deadpool_postgres::Client,
    sql: &SummarySql,
    params: &[String],
) -> Result<Vec<DaySummary>, StoreError> {
    let args = sql_args(params);
    let mut b = SummaryBuilder::default();
    for row in client.query(&sql.totals, &args).await.map_err(db)? {
        b.totals(
            row.try_get(0).map_err(db)?,
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
            row.try_get(3).map_err(db)?,
            row.try_get(4).map_err(db)?,
        );
    }
    for row in client.query(&sql.by_org, &args).await.map_err(db)? {
        b.by_org(
            row.try_get(0).map_err(db)?,
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
            row.try_get(3).map_err(db)?,
        );
    }
    for row in client.query(&sql.by_type, &args).await.map_err(db)? {
        b.by_type(
            row.try_get(0).map_err(db)?,
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
            row.try_get(3).map_err(db)?,
        );
    }
    for row in client.query(&sql.by_mx, &args).await.map_err(db)? {
        b.by_mx(
            row.try_get(0).map_err(db)?,
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
            row.try_get(3).map_err(db)?,
        );
    }
    Ok(b.finish())
}

#[async_trait::async_trait]
impl ReportStore for PostgresStore {
    async fn insert(
        &self,
        report: &ParsedReport,
        source: &str,
        received_at: i64,
    ) -> Result<Inserted, StoreError> {
        let mut client = self.pool.get().await.map_err(db)?;
        let tx = client.transaction().await.map_err(db)?;
        let mut delta = RollupDelta::default();
        let out = Self::insert_in(&tx, report, source, received_at, &mut delta).await?;
        add_rollups(&tx, &delta).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn insert_batch(
        &self,
        reports: &[ParsedReport],
        source: &str,
        received_at: i64,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut client = self.pool.get().await.map_err(db)?;
        let tx = client.transaction().await.map_err(db)?;
        let mut out = Vec::with_capacity(reports.len());
        let mut delta = RollupDelta::default();
        for r in reports {
            out.push(Self::insert_in(&tx, r, source, received_at, &mut delta).await?);
        }
        add_rollups(&tx, &delta).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn summary(&self, filter: &SummaryFilter) -> Result<Vec<DaySummary>, StoreError> {
        let sql = SummarySql::rollups(filter, |n| format!("${n}"), ORDER_BY);
        let client = self.pool.get().await.map_err(db)?;
        run_summary(&client, &sql, &SummarySql::params(filter)).await
    }

    async fn details(&self, filter: &DetailFilter, limit: u32) -> Result<Details, StoreError> {
        let sql = ListingSql::new(filter, &|n| format!("${n}"), limit);
        let args = sql_args(&sql.params);
        let client = self.pool.get().await.map_err(db)?;
        let mut out = Details::default();
        let reports = match &sql.reports {
            Some(q) => client.query(q, &args).await.map_err(db)?,
            None => Vec::new(),
        };
        for row in reports {
            out.reports.push(ReportListing {
                id: row.try_get(0).map_err(db)?,
                report_id: row.try_get(1).map_err(db)?,
                organization_name: row.try_get(2).map_err(db)?,
                policy_domain: row.try_get(3).map_err(db)?,
                policy_type: row.try_get(4).map_err(db)?,
                day: row.try_get(5).map_err(db)?,
                source: row.try_get(6).map_err(db)?,
                imported_at: row.try_get(7).map_err(db)?,
                successful: totals::count(row.try_get(8).map_err(db)?),
                failed: totals::count(row.try_get(9).map_err(db)?),
            });
        }
        for row in client.query(&sql.policies, &args).await.map_err(db)? {
            out.policies.push(PolicySeen {
                policy_domain: row.try_get(0).map_err(db)?,
                policy_type: row.try_get(1).map_err(db)?,
                policy_string: listing::string_list(row.try_get(2).map_err(db)?),
                reports: totals::count(row.try_get(3).map_err(db)?),
                successful: totals::count(row.try_get(4).map_err(db)?),
                failed: totals::count(row.try_get(5).map_err(db)?),
                last_day: row.try_get(6).map_err(db)?,
            });
        }
        for row in client.query(&sql.organizations, &args).await.map_err(db)? {
            out.organizations.push(OrganizationSessions {
                policy_domain: row.try_get(0).map_err(db)?,
                organization_name: row.try_get(1).map_err(db)?,
                reports: totals::count(row.try_get(2).map_err(db)?),
                successful: totals::count(row.try_get(3).map_err(db)?),
                failed: totals::count(row.try_get(4).map_err(db)?),
                last_day: row.try_get(5).map_err(db)?,
            });
        }
        let senders = match &sql.senders {
            Some(q) => client.query(q, &args).await.map_err(db)?,
            None => Vec::new(),
        };
        for row in senders {
            out.senders.push(SenderFailures {
                sending_mta_ip: row.try_get(0).map_err(db)?,
                result_type: row.try_get(1).map_err(db)?,
                failed: totals::count(row.try_get(2).map_err(db)?),
            });
        }
        listing::sort(&mut out.policies, &mut out.organizations, &mut out.senders);
        Ok(out)
    }

    async fn domain_totals(&self, period: &PeriodFilter) -> Result<Vec<DomainTotals>, StoreError> {
        let sql = totals::sql(
            period,
            |n| format!("${n}"),
            "ORDER BY policy_domain COLLATE \"C\"",
            // PostgreSQL keeps statistics and picks the index itself.
            &|_| String::new(),
        );
        let params = totals::params(period);
        let args = sql_args(&params);
        let client = self.pool.get().await.map_err(db)?;
        client
            .query(&sql, &args)
            .await
            .map_err(db)?
            .into_iter()
            .map(|row| {
                Ok(DomainTotals {
                    policy_domain: row.try_get(0).map_err(db)?,
                    days: totals::count(row.try_get(1).map_err(db)?),
                    reports: totals::count(row.try_get(2).map_err(db)?),
                    successful: totals::count(row.try_get(3).map_err(db)?),
                    failed: totals::count(row.try_get(4).map_err(db)?),
                    first_day: row.try_get(5).map_err(db)?,
                    last_day: row.try_get(6).map_err(db)?,
                })
            })
            .collect()
    }

    async fn domain_days(
        &self,
        domains: &[String],
        since: Option<&str>,
    ) -> Result<Vec<DaySummary>, StoreError> {
        let domains: Vec<String> = domains.iter().map(|d| normalize_domain(d)).collect();
        let since = since.unwrap_or("");
        let client = self.pool.get().await.map_err(db)?;
        let rows = client
            .query(
                "SELECT policy_domain, day, reports, successful, failed FROM report_days \
                 WHERE policy_domain = ANY($1) AND day >= $2 \
                 ORDER BY policy_domain COLLATE \"C\", day COLLATE \"C\"",
                &[&domains, &since],
            )
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|row| {
                Ok(DaySummary {
                    policy_domain: row.try_get(0).map_err(db)?,
                    day: row.try_get(1).map_err(db)?,
                    reports: totals::count(row.try_get(2).map_err(db)?),
                    successful: totals::count(row.try_get(3).map_err(db)?),
                    failed: totals::count(row.try_get(4).map_err(db)?),
                    ..DaySummary::default()
                })
            })
            .collect()
    }

    async fn overview_keys(
        &self,
        period: &PeriodFilter,
        organization: Option<&str>,
    ) -> Result<OverviewKeys, StoreError> {
        let sql = OverviewSql::new(period, organization, &|n| format!("${n}"), &|_| {
            String::new()
        });
        let args = sql_args(&sql.params);
        let client = self.pool.get().await.map_err(db)?;
        let mut keys = OverviewKeys::default();
        for row in client.query(&sql.organizations, &args).await.map_err(db)? {
            keys.organization(row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
        }
        for row in client.query(&sql.policies, &args).await.map_err(db)? {
            keys.policy(
                row.try_get(0).map_err(db)?,
                row.try_get(1).map_err(db)?,
                row.try_get(2).map_err(db)?,
            );
        }
        for row in client.query(&sql.result_types, &args).await.map_err(db)? {
            let n: i64 = row.try_get(2).map_err(db)?;
            keys.failures(
                row.try_get(0).map_err(db)?,
                row.try_get(1).map_err(db)?,
                totals::count(n),
            );
        }
        if let (Some(q), Some(org)) = (&sql.organization_sessions, organization_of(&sql)) {
            let args = sql_args(&sql.organization_params);
            for row in client.query(q, &args).await.map_err(db)? {
                keys.organization_sessions.push(OrganizationSessions {
                    policy_domain: row.try_get(0).map_err(db)?,
                    organization_name: org.to_owned(),
                    reports: totals::count(row.try_get(1).map_err(db)?),
                    successful: totals::count(row.try_get(2).map_err(db)?),
                    failed: totals::count(row.try_get(3).map_err(db)?),
                    last_day: row.try_get(4).map_err(db)?,
                });
            }
        }
        keys.organization_sessions
            .sort_by(|a, b| a.policy_domain.cmp(&b.policy_domain));
        Ok(keys)
    }

    async fn find(&self, id: &str) -> Result<Vec<StoredReport>, StoreError> {
        let client = self.pool.get().await.map_err(db)?;
        let mut rows = client
            .query(
                "SELECT id, source, imported_at, raw_json, dkim FROM reports \
                 WHERE report_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .map_err(db)?;
        if rows.is_empty()
            && let Ok(row_id) = id.parse::<i64>()
        {
            rows = client
                .query(
                    "SELECT id, source, imported_at, raw_json, dkim FROM reports WHERE id = $1",
                    &[&row_id],
                )
                .await
                .map_err(db)?;
        }
        rows.into_iter()
            .map(|r| {
                stored(
                    r.try_get(0).map_err(db)?,
                    r.try_get(1).map_err(db)?,
                    r.try_get(2).map_err(db)?,
                    r.try_get(3).map_err(db)?,
                    r.try_get(4).map_err(db)?,
                )
            })
            .collect()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(db)?;
        let row = client
            .query_one("SELECT COUNT(*) FROM reports", &[])
            .await
            .map_err(db)?;
        let n: i64 = row.try_get(0).map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests;
