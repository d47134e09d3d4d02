//! The integration tests of `mta-sts-cli`, one test binary (`tests/api/main.rs`, as rustls
//! keeps `tests/api.rs`): each module is one former test file, so `cargo test -p mta-sts-cli
//! --test api architecture` still selects its tests. Most run the built `mta-sts` binary
//! (`CARGO_BIN_EXE_mta-sts`) as a process; [`daemon_support`] spawns `mta-sts daemon` with a
//! configuration, [`serve_support`] sets up and spawns `mta-sts serve` with a testkit CA's
//! certificate.

mod architecture;
mod check;
mod daemon;

mod daemon_postfix;
mod daemon_support;
mod daemon_tlsrpt_config;
mod grafana_dashboard;
mod lint;
mod manpages;
mod migrate;
mod migrate_doc;
mod migrate_peer;
mod owner_readme;
mod performance_doc;
mod postfix_docs;
mod query;
mod realworld_corpus;
mod report_cli;
mod report_import_dkim;
mod report_send;
mod serve;
mod serve_burst_rss;
mod serve_intake;
mod serve_support;
mod socket_activation;
mod web_browser;
mod web_serve_config;
