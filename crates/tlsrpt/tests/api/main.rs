//! The integration tests of `tlsrpt`, one test binary (`tests/api/main.rs`, as rustls
//! keeps `tests/api.rs`): each module is one former test file, named after the RFC section
//! it checks, so that `cargo test -p tlsrpt rfc8460_3` still selects a section's tests.

mod aggregate;
mod record_proptest;
mod report_rfc8460_4_model;
mod rfc8460_3_record;
