//! The integration tests of `mta-sts`, one test binary (`tests/api/main.rs`, as rustls
//! keeps `tests/api.rs`): each module is one former test file, named after the RFC section
//! it checks, so that `cargo test -p mta-sts rfc8461_3_1` still selects a section's tests.

mod corpus;
mod peers;
mod properties;
mod rfc8461_3_1_record;
mod rfc8461_3_2_policy;
mod rfc8461_4_1_matching;
mod rfc8461_5_decision;
