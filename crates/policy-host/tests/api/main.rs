//! The integration tests of `mta-sts-policy-host`, one test binary (`tests/api/main.rs`, as
//! rustls keeps `tests/api.rs`): each module is one former test file, so `cargo test -p
//! mta-sts-policy-host rfc8461_serve` still selects its tests; [`common`] is the shared
//! fixture (certificates from the testkit CA, a `serve.toml` in a temp dir).

mod acme_pebble;
mod acme_renewal;
mod common;
mod metrics;
mod one_clock;
mod reload;
mod resolver_discovers;
mod rfc8460_intake;
mod rfc8461_3_1_ids_and_records;
mod rfc8461_serve;
mod serve_hardening;
mod serve_toml_keys;
