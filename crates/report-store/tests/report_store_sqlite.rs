//! The store suite (tests/common) against SQLite: a file in a temp dir, and in memory.

mod common;

use std::sync::Arc;

use mta_sts_report_store::{ReportStore, SqliteStore, SummaryFilter};

#[tokio::test]
async fn sqlite_file_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/reports.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    common::store_suite(store.clone()).await;
    let summary = store.summary(&SummaryFilter::default()).await.unwrap();
    let count = store.count().await.unwrap();
    drop(store);
    // Reopening the file keeps everything (schema creation is idempotent).
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.count().await.unwrap(), count);
    assert_eq!(
        again.summary(&SummaryFilter::default()).await.unwrap(),
        summary
    );
}

#[tokio::test]
async fn sqlite_memory_store_suite() {
    common::store_suite(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[test]
fn sqlite_open_error_is_clear() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    // A path below a regular file cannot be created.
    let err = SqliteStore::open(&file.join("reports.db")).unwrap_err();
    assert!(
        err.to_string().contains("cannot open the report database"),
        "{err}"
    );
}
