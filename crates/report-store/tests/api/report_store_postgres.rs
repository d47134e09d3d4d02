//! The store suite (the `common` module) against a real PostgreSQL server that this test
//! starts itself (initdb + pg_ctl in a temp dir, loopback, a free port; interop-lab §5).
//!
//! Without PostgreSQL installed the test prints why and passes, unless
//! `MTA_STS_REQUIRE_INTEROP=1`, when it fails. CI: `apt-get install -y postgresql`.

use crate::common;

use std::sync::Arc;

use mta_sts_report_store::{PostgresStore, ReportStore, SummaryFilter};

#[tokio::test]
async fn postgres_store_suite() {
    let server = match mta_sts_testkit::postgres::start() {
        Ok(s) => s,
        Err(why) => return mta_sts_testkit::postgres::skip_or_fail("PostgreSQL store tests", &why),
    };
    let store = Arc::new(PostgresStore::connect(&server.url()).await.unwrap());
    common::store_suite(store.clone()).await;
    let summary = store.summary(&SummaryFilter::default()).await.unwrap();
    // A second connection (schema creation idempotent) sees the same data.
    let again = PostgresStore::connect(&server.url()).await.unwrap();
    assert_eq!(
        again.summary(&SummaryFilter::default()).await.unwrap(),
        summary
    );
    assert_eq!(again.count().await.unwrap(), store.count().await.unwrap());
    // Concurrent duplicate inserts of the same report: stored once.
    let report = mta_sts_report_store::ParsedReport::from_json(
        &std::fs::read(common::corpus_dir().join("009.json")).unwrap(),
        "t",
    )
    .unwrap();
    let mut r2 = report.clone();
    r2.report.report_id = "concurrent".into();
    let (a, b) = tokio::join!(
        store.insert(&r2, "a", common::RECEIVED_AT),
        again.insert(&r2, "b", common::RECEIVED_AT)
    );
    let new = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|i| matches!(i, mta_sts_report_store::Inserted::New(_)))
        .count();
    assert_eq!(new, 1);
    drop(server);
}

#[tokio::test]
async fn postgres_unreachable_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PostgresStore::connect(&format!("postgres://u:secret@127.0.0.1:{port}/db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open the report database"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
