//! The SQLite store's own tests: rollups against the detail rows, migrations from older
//! files, shared transactions.

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::*;
use crate::store::testgen::{self, store_all};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The summary from the rollups equals the one aggregated from the detail rows, and the
/// per-domain totals equal the sum of its rows.
async fn assert_rollups_match(store: &SqliteStore) {
    for filter in testgen::filters() {
        assert_eq!(
            store.summary(&filter).await.unwrap(),
            store.summary_from_details(&filter).await.unwrap(),
            "{filter:?}"
        );
    }
    crate::store::testgen::assert_totals_match(store).await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn rollups_equal_the_detail_summary(groups in testgen::groups()) {
        runtime().block_on(async {
            let store = SqliteStore::in_memory().unwrap();
            store_all(&store, &groups).await;
            assert_rollups_match(&store).await;
        });
    }
}

/// Inserts running side by side share transactions: every caller learns what became of
/// its own report (each organisation and report-id stored once, the others told
/// `Duplicate` of the same row), the reports keep their own source, and the rollups
/// equal the detail rows. The calls run on a multi-threaded runtime, so batches of
/// several reports form.
#[test]
fn concurrent_inserts_share_transactions_and_each_learns_its_outcome() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let reports: Vec<ParsedReport> = sample().into_iter().flatten().collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in reports.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.spawn(async move { (i, store.insert(&r, &format!("src{i}"), 1).await) });
        }
        let mut outcomes = vec![None; reports.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, inserted) = joined.unwrap();
            outcomes[i] = Some(inserted.unwrap());
        }
        let mut rows = std::collections::BTreeMap::new();
        for (r, outcome) in reports.iter().zip(&outcomes) {
            let key = (&r.report.organization_name, &r.report.report_id);
            let id = match outcome.unwrap() {
                Inserted::New(id) | Inserted::Duplicate(id) => id,
            };
            assert_eq!(*rows.entry(key).or_insert(id), id, "one row per report");
        }
        let new: Vec<usize> = (0..reports.len())
            .filter(|&i| matches!(outcomes[i], Some(Inserted::New(_))))
            .collect();
        assert_eq!(new.len(), rows.len(), "exactly one New per report");
        assert_eq!(store.count().await.unwrap(), rows.len() as u64);
        for i in new {
            let Some(Inserted::New(id)) = outcomes[i] else {
                unreachable!()
            };
            let stored = store.find(&id.to_string()).await.unwrap();
            assert_eq!(stored[0].source, format!("src{i}"), "its own source");
        }
        assert_rollups_match(&store).await;
    });
}

/// RFC 8460 §3, §5.5: a report stored again (same organisation and report-id, even with
/// other counts) changes no rollup.
#[test]
fn a_duplicate_adds_nothing() {
    runtime().block_on(async {
        let store = SqliteStore::in_memory().unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (first, again) = testgen::duplicate_pair(&mut runner);
        assert!(matches!(
            store.insert(&first, "t", 1).await.unwrap(),
            Inserted::New(_)
        ));
        let before = store.summary(&SummaryFilter::default()).await.unwrap();
        assert!(matches!(
            store.insert(&again, "t", 2).await.unwrap(),
            Inserted::Duplicate(_)
        ));
        let out = store
            .insert_batch(&[again.clone(), first.clone()], "t", 3)
            .await
            .unwrap();
        assert!(out.iter().all(|i| matches!(i, Inserted::Duplicate(_))));
        assert_eq!(
            store.summary(&SummaryFilter::default()).await.unwrap(),
            before
        );
        assert_rollups_match(&store).await;
    });
}

/// Reports for the migration tests: every spelling and MX shape of [`testgen`].
fn sample() -> Vec<Vec<ParsedReport>> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..6)
        .flat_map(|_| testgen::groups().new_tree(&mut runner).unwrap().current())
        .collect()
}

/// The indexes version 1 kept for the summary queries.
const OLD_INDEXES: &str = "
    CREATE INDEX report_policies_summary ON report_policies
        (policy_domain, day, organization_name, report, successful, failed);
    CREATE INDEX report_policies_day ON report_policies (day);
    CREATE INDEX failure_details_summary ON failure_details
        (policy_domain, day, result_type, receiving_mx_hostname, failed_session_count);";

/// A file made by the previous build (schema version 1, no rollup tables) gets the
/// rollups, filled from its detail rows, when opened; and once migrated, a version-1
/// build writing to it again (which resets the version, not the rollups) makes the
/// next open rebuild them.
#[test]
fn an_older_file_is_migrated_at_open() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = SqliteStore::open(&path).unwrap();
        store_all(&store, &sample()).await;
        let expected = store
            .summary_from_details(&SummaryFilter::default())
            .await
            .unwrap();
        assert!(!expected.is_empty());
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "DROP TABLE report_days; DROP TABLE report_day_organizations;
                 DROP TABLE report_day_result_types; DROP TABLE report_day_mx;
                 {OLD_INDEXES} PRAGMA user_version = 1;"
        ))
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.summary(&SummaryFilter::default()).await.unwrap(),
            expected
        );
        assert_rollups_match(&store).await;
        drop(store);
        let old_indexes = migrated_indexes(
            &path,
            "'report_policies_summary', 'report_policies_day', 'failure_details_summary'",
        );
        assert_eq!(old_indexes, 0);

        // Stale rollups under version 1 (an older build imported meanwhile).
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE report_days SET reports = reports + 7;
             DELETE FROM report_day_mx;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open_existing(&path).unwrap();
        assert_eq!(
            store.summary(&SummaryFilter::default()).await.unwrap(),
            expected
        );
    });
}

/// A version-2 file (organisation rollup of failures only, no policy rollup, no DKIM
/// column, no dashboard indexes) is brought to version 3 at open: the listings read
/// from the new rollups equal those of a file written by this build, and the reports
/// stored before read back with no DKIM result.
#[test]
fn a_version_2_file_is_migrated_at_open() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = SqliteStore::open(&path).unwrap();
        store_all(&store, &sample()).await;
        let all = DetailFilter::default();
        let expected = store.details(&all, 100).await.unwrap();
        assert!(!expected.policies.is_empty() && !expected.organizations.is_empty());
        let summary = store.summary(&SummaryFilter::default()).await.unwrap();
        let overview = store
            .overview_keys(&PeriodFilter::default(), Some("Mail.ru"))
            .await
            .unwrap();
        assert!(!overview.organizations.is_empty());
        assert!(!overview.organization_sessions.is_empty());
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE report_day_organizations;
             CREATE TABLE report_day_organizations (
                 policy_domain TEXT NOT NULL, day TEXT NOT NULL,
                 organization_name TEXT NOT NULL, failed BIGINT NOT NULL,
                 PRIMARY KEY (policy_domain, day, organization_name)) WITHOUT ROWID;
             DROP TABLE report_day_policies; DROP TABLE report_domain_organizations;
             DROP TABLE report_domains;
             DROP TABLE report_domain_policies; DROP TABLE report_domain_result_types;
             DROP INDEX report_days_day; DROP INDEX report_day_result_types_day;
             DROP INDEX report_policies_domain_day; DROP INDEX failure_details_domain_day;
             ALTER TABLE reports DROP COLUMN dkim;
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.details(&all, 100).await.unwrap(), expected);
        assert_eq!(
            store
                .overview_keys(&PeriodFilter::default(), Some("Mail.ru"))
                .await
                .unwrap(),
            overview
        );
        assert_eq!(
            store.summary(&SummaryFilter::default()).await.unwrap(),
            summary
        );
        let first = &expected.reports[0];
        let found = store.find(&first.id.to_string()).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].dkim, None);
        drop(store);
        let indexes = migrated_indexes(
            &path,
            "'report_days_day', 'report_day_organizations_organization', \
             'report_policies_domain_day', 'failure_details_domain_day'",
        );
        assert_eq!(indexes, 4);
    });
}

/// Asserts the file at `path` is at [`SCHEMA_VERSION`] and counts which of the indexes
/// named in `names` (a quoted, comma-separated SQL list) it has.
fn migrated_indexes(path: &std::path::Path, names: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    conn.query_row(
        &format!("SELECT COUNT(*) FROM sqlite_master WHERE name IN ({names})"),
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// A file of a newer schema is refused, untouched.
#[test]
fn a_newer_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap();
    assert!(
        matches!(
            cause.downcast_ref::<StoreError>(),
            Some(StoreError::NewerSchema { version }) if *version == SCHEMA_VERSION + 1
        ),
        "{cause:?}"
    );
}
