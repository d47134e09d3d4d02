//! The integration tests of `mta-sts-daemon`, one test binary (`tests/api/main.rs`, as
//! rustls keeps `tests/api.rs`): each module is one former test file, so `cargo test -p
//! mta-sts-daemon socketmap_server` still selects its tests; [`common`] holds the shared
//! helpers (a fixed-map lookup, a server on TCP or a UNIX socket, a socketmap client).

mod answer_replies;
mod common;
mod config_file;
mod daemon_app;
mod daemon_fleet_stores;
mod peer_tables_end_to_end;
mod socketmap_server;
mod tlsrpt;
mod tlsrpt_probe;
