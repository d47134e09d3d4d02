//! The store suite (the `common` module) against SQLite: a file in a temp dir, and in memory.

use crate::common;

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

/// Reading commands open with `open_existing`: a missing file is `Missing`, and neither it
/// nor its directory is created; an existing file opens with its reports.
#[tokio::test]
async fn sqlite_open_existing_never_creates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo/reports.db");
    let err = SqliteStore::open_existing(&path).unwrap_err();
    assert!(
        matches!(err, mta_sts_report_store::StoreError::Missing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no report database exists at"));
    assert!(!dir.path().join("typo").exists());
    let store = SqliteStore::open(&path).unwrap();
    common::store_suite(Arc::new(store.clone())).await;
    let count = store.count().await.unwrap();
    drop(store);
    let again = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(again.count().await.unwrap(), count);
}

/// A missing and an empty `receiving-mx-hostname` are one `(none)` entry whose counts add.
#[tokio::test]
async fn missing_and_empty_mx_are_one_entry() {
    use mta_sts_report_store::{InputOutcome, Limits, ReportSink};
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let sink = ReportSink::new(store.clone(), Limits::default());
    let json = br#"{"organization-name":"o","report-id":"mx","contact-info":"a@o.example",
      "date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},
      "policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com"},
      "summary":{"total-successful-session-count":0,"total-failure-session-count":5},
      "failure-details":[
        {"result-type":"validation-failure","failed-session-count":2},
        {"result-type":"validation-failure","receiving-mx-hostname":"","failed-session-count":3}]}]}"#;
    let outcome = sink
        .accept(json, None, "test", 1_700_000_000)
        .await
        .unwrap();
    assert!(
        matches!(outcome, InputOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    let summary = store.summary(&SummaryFilter::default()).await.unwrap();
    let by_mx = &summary[0].failures_by_mx;
    assert_eq!(by_mx.len(), 1, "{by_mx:?}");
    assert_eq!(by_mx.get(mta_sts_report_store::store::NO_MX), Some(&5));
}

/// Opening keeps why it failed as the source (here: the directory cannot be created).
#[test]
fn sqlite_open_error_keeps_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file.join("reports.db")).unwrap_err();
    let cause = std::error::Error::source(&err).expect("a source");
    assert!(
        cause.downcast_ref::<std::io::Error>().is_some(),
        "{cause:?}"
    );
    let text = mta_sts_net::with_causes(&err);
    assert!(text.starts_with(&format!("{err}: ")), "{text}");
}
