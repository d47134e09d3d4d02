//! The PostgreSQL store, for hosters receiving reports for many domains (tokio-postgres with a
//! deadpool connection pool). Same schema and rules as [`crate::SqliteStore`].

use deadpool_postgres::{Config, Pool, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::intake::ParsedReport;
use crate::store::{
    DaySummary, Inserted, ReportStore, StoreError, StoredReport, SummaryBuilder, SummaryFilter,
    SummarySql, db_count, json_list, normalize_domain, stored,
};

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
CREATE INDEX IF NOT EXISTS report_policies_summary
    ON report_policies (policy_domain, day, organization_name, report, successful, failed);
CREATE INDEX IF NOT EXISTS report_policies_day ON report_policies (day);
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
CREATE INDEX IF NOT EXISTS failure_details_summary
    ON failure_details (policy_domain, day, result_type, receiving_mx_hostname, failed_session_count);
CREATE INDEX IF NOT EXISTS failure_details_policy ON failure_details (policy);
";

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
        let client = pool.get().await.map_err(|e| open_err(e.into()))?;
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| open_err(e.into()))?;
        Ok(PostgresStore { pool })
    }

    async fn insert_in(
        tx: &deadpool_postgres::Transaction<'_>,
        parsed: &ParsedReport,
        source: &str,
        imported_at: i64,
    ) -> Result<Inserted, StoreError> {
        let r = &parsed.report;
        let day = r.date_range.start.date_string();
        let inserted = tx
            .query_opt(
                "INSERT INTO reports (organization_name, report_id, contact_info, start_ts, \
                 end_ts, day, source, imported_at, raw_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
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
        Ok(Inserted::New(report_row))
    }
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
        let out = Self::insert_in(&tx, report, source, received_at).await?;
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
        for r in reports {
            out.push(Self::insert_in(&tx, r, source, received_at).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn summary(&self, filter: &SummaryFilter) -> Result<Vec<DaySummary>, StoreError> {
        // PostgreSQL's SUM(bigint) is numeric: cast back to bigint for the client.
        let sql = SummarySql::new(filter, |n| format!("${n}"));
        let params = SummarySql::params(filter);
        let args: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = self.pool.get().await.map_err(db)?;
        let cast = |q: &str| {
            q.replace("COUNT(DISTINCT report)", "COUNT(DISTINCT report)::BIGINT")
                .replace("SUM(successful)", "SUM(successful)::BIGINT")
                .replace("SUM(failed)", "SUM(failed)::BIGINT")
                .replace(
                    "SUM(failed_session_count)",
                    "SUM(failed_session_count)::BIGINT",
                )
        };
        let mut b = SummaryBuilder::default();
        for row in client.query(&cast(&sql.totals), &args).await.map_err(db)? {
            b.totals(
                row.try_get(0).map_err(db)?,
                row.try_get(1).map_err(db)?,
                row.try_get(2).map_err(db)?,
                row.try_get(3).map_err(db)?,
                row.try_get(4).map_err(db)?,
            );
        }
        for row in client.query(&cast(&sql.by_org), &args).await.map_err(db)? {
            b.by_org(
                row.try_get(0).map_err(db)?,
                row.try_get(1).map_err(db)?,
                row.try_get(2).map_err(db)?,
                row.try_get(3).map_err(db)?,
            );
        }
        for row in client.query(&cast(&sql.by_type), &args).await.map_err(db)? {
            b.by_type(
                row.try_get(0).map_err(db)?,
                row.try_get(1).map_err(db)?,
                row.try_get(2).map_err(db)?,
                row.try_get(3).map_err(db)?,
            );
        }
        for row in client.query(&cast(&sql.by_mx), &args).await.map_err(db)? {
            b.by_mx(
                row.try_get(0).map_err(db)?,
                row.try_get(1).map_err(db)?,
                row.try_get(2).map_err(db)?,
                row.try_get(3).map_err(db)?,
            );
        }
        Ok(b.finish())
    }

    async fn find(&self, id: &str) -> Result<Vec<StoredReport>, StoreError> {
        let client = self.pool.get().await.map_err(db)?;
        let mut rows = client
            .query(
                "SELECT id, source, imported_at, raw_json FROM reports \
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
                    "SELECT id, source, imported_at, raw_json FROM reports WHERE id = $1",
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
