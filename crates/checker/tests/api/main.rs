//! The integration tests of `mta-sts-checker`, one test binary (`tests/api/main.rs`, as
//! rustls keeps `tests/api.rs`): each module is one former test file, so `cargo test -p
//! mta-sts-checker catalogue` still selects its tests; [`common`] points a checker at a
//! testkit world.

mod catalogue;
mod clock;
mod common;
mod enforce_what_if;
mod mx_tls_version;
mod rua_https;
mod serve_drift;
