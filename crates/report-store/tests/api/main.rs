//! The integration tests of `mta-sts-report-store`, one test binary (`tests/api/main.rs`, as
//! rustls keeps `tests/api.rs`): each module is one former test file, so `cargo test -p
//! mta-sts-report-store report_intake` still selects its tests; [`common`] holds the shared
//! helpers and the store suite run against SQLite and PostgreSQL.

mod common;
mod dkim_import;
mod report_intake;
mod report_store_postgres;
mod report_store_sqlite;
mod send;
