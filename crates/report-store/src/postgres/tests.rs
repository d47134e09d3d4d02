//! The PostgreSQL store's own tests, against a server of their own: rollups against the
//! detail rows, a duplicate, migrations from older databases.

use proptest::strategy::{Strategy, ValueTree};

use super::*;
use crate::store::testgen::{self, store_all};

async fn assert_rollups_match(store: &PostgresStore) {
    for filter in testgen::filters() {
        assert_eq!(
            store.summary(&filter).await.unwrap(),
            store.summary_from_details(&filter).await.unwrap(),
            "{filter:?}"
        );
    }
    crate::store::testgen::assert_totals_match(store).await;
}

async fn sql(store: &PostgresStore, sql: &str) {
    store
        .pool
        .get()
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap();
}

const EMPTY: &str = "TRUNCATE reports, report_policies, failure_details, report_days, \
                     report_day_organizations, report_day_policies, report_day_result_types, \
                     report_day_mx, report_domains, report_domain_organizations, report_domain_policies, \
                     report_domain_result_types";

/// Against a PostgreSQL server of its own: random report sets (duplicates, several
/// spellings, blank MX) give the same summary from the rollups as from the detail rows;
/// a duplicate adds nothing; version-1 and version-2 databases are migrated at connect.
#[tokio::test]
async fn postgres_rollups() {
    let server = match mta_sts_testkit::postgres::start() {
        Ok(s) => s,
        Err(why) => {
            return mta_sts_testkit::postgres::skip_or_fail("PostgreSQL rollup tests", &why);
        }
    };
    let store = PostgresStore::connect(&server.url()).await.unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..24 {
        sql(&store, EMPTY).await;
        let groups = testgen::groups().new_tree(&mut runner).unwrap().current();
        store_all(&store, &groups).await;
        assert_rollups_match(&store).await;
    }

    // RFC 8460 §3, §5.5: the same organisation and report-id again, other counts.
    sql(&store, EMPTY).await;
    let (first, again) = testgen::duplicate_pair(&mut runner);
    store.insert(&first, "t", 1).await.unwrap();
    let before = store.summary(&SummaryFilter::default()).await.unwrap();
    assert!(matches!(
        store.insert(&again, "t", 2).await.unwrap(),
        Inserted::Duplicate(_)
    ));
    store.insert_batch(&[again, first], "t", 3).await.unwrap();
    assert_eq!(
        store.summary(&SummaryFilter::default()).await.unwrap(),
        before
    );

    // A database of the previous build: no rollups, no version table.
    for _ in 0..6 {
        let groups = testgen::groups().new_tree(&mut runner).unwrap().current();
        store_all(&store, &groups).await;
    }
    let expected = store
        .summary_from_details(&SummaryFilter::default())
        .await
        .unwrap();
    sql(
        &store,
        "DROP TABLE report_days, report_day_organizations, report_day_result_types, \
         report_day_mx, report_store_schema;
         CREATE INDEX report_policies_summary ON report_policies
             (policy_domain, day, organization_name, report, successful, failed);
         CREATE INDEX report_policies_day ON report_policies (day);
         CREATE INDEX failure_details_summary ON failure_details
             (policy_domain, day, result_type, receiving_mx_hostname, failed_session_count);",
    )
    .await;
    let migrated = PostgresStore::connect(&server.url()).await.unwrap();
    assert_eq!(
        migrated.summary(&SummaryFilter::default()).await.unwrap(),
        expected
    );
    assert_rollups_match(&migrated).await;
    let client = store.pool.get().await.unwrap();
    let old_indexes: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname IN \
             ('report_policies_summary', 'report_policies_day', 'failure_details_summary')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old_indexes, 0);
    drop(client);

    // A version-2 database: organisation rollup of failures only, no policy rollup, no
    // DKIM column. Version 3's listings come out the same after the migration.
    let all = DetailFilter::default();
    let details = migrated.details(&all, 50).await.unwrap();
    assert!(!details.policies.is_empty());
    let overview = migrated
        .overview_keys(&PeriodFilter::default(), None)
        .await
        .unwrap();
    assert!(!overview.organizations.is_empty());
    sql(
        &store,
        "DROP TABLE report_day_organizations, report_day_policies, report_domains, \
             report_domain_organizations, report_domain_policies, report_domain_result_types;
         CREATE TABLE report_day_organizations (policy_domain TEXT NOT NULL,
             day TEXT NOT NULL, organization_name TEXT NOT NULL, failed BIGINT NOT NULL,
             PRIMARY KEY (policy_domain, day, organization_name));
         ALTER TABLE reports DROP COLUMN dkim;
         UPDATE report_store_schema SET version = 2;",
    )
    .await;
    let migrated = PostgresStore::connect(&server.url()).await.unwrap();
    assert_eq!(migrated.details(&all, 50).await.unwrap(), details);
    assert_eq!(
        migrated
            .overview_keys(&PeriodFilter::default(), None)
            .await
            .unwrap(),
        overview
    );
    assert_eq!(
        migrated.summary(&SummaryFilter::default()).await.unwrap(),
        expected
    );
    let found = migrated
        .find(&details.reports[0].id.to_string())
        .await
        .unwrap();
    assert_eq!(found[0].dkim, None);

    // A newer schema is refused.
    sql(
        &store,
        "UPDATE report_store_schema SET version = version + 1",
    )
    .await;
    let err = PostgresStore::connect(&server.url()).await.unwrap_err();
    let cause = std::error::Error::source(&err).unwrap();
    assert!(
        matches!(
            cause.downcast_ref::<StoreError>(),
            Some(StoreError::NewerSchema { .. })
        ),
        "{cause:?}"
    );
    drop(server);
}
