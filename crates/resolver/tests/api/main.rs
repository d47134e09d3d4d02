//! The integration tests of `mta-sts-resolver`, one test binary (`tests/api/main.rs`, as
//! rustls keeps `tests/api.rs`): each module is one former test file, so `cargo test -p
//! mta-sts-resolver rfc8461_5_1_cache` still selects its tests; [`common`] points a resolver
//! at a testkit world and [`store_conformance`] is the suite every `Store` backend shares.
//! The store modules are gated on the store features, as their binaries were.

mod common;
mod memory_bound;
mod peer_postfix_mta_sts_resolver;
mod refresh_concurrency;
mod refresh_jitter;
#[cfg(feature = "redis")]
mod resolver_redis;
mod rfc8461_3_3_fetch;
mod rfc8461_5_1_cache;
mod rfc8461_5_1_fast_path;
mod store_conformance;
#[cfg(feature = "postgres")]
mod store_postgres;
#[cfg(feature = "redis")]
mod store_redis;
#[cfg(feature = "redis")]
mod store_redis_sentinel;
#[cfg(feature = "sqlite")]
mod store_sqlite;
