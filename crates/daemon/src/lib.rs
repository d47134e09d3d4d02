//! # mta-sts-daemon: the enforcement side of MTA-STS for Postfix (DESIGN §5)
//!
//! A Postfix `socketmap_table(5)` server that answers `smtp_tls_policy_maps` lookups with
//! the TLS policy an MTA-STS policy (RFC 8461) requires, drop-in compatible with
//! postfix-mta-sts-resolver's replies.
//!
//! | concept | module |
//! |---|---|
//! | netstring framing, socketmap requests, key normalisation, replies | the `mta-sts-socketmap` crate (sans I/O) |
//! | policy + zone settings → reply | [`answer`] |
//! | configuration file | [`config`] |
//! | the lookup trait and the per-query budget | [`lookup`] |
//! | the lookup through `mta_sts_resolver::Resolver` | [`resolver_lookup`] |
//! | the server (TCP, UNIX socket, pipelining, shutdown) | [`server`] |
//! | DANE check (`dane = "defer"`) | [`dane`] |
//! | counters and `/metrics` | [`metrics`] |
//! | HTTP API | [`http`] |
//! | taking over a UNIX socket path (stale sockets only) | [`socket_path`] |
//! | systemd notification | [`notify`] |
//! | TLS-RPT: policy outcomes, collector socket, scheduled reports | [`tlsrpt`] |
//! | the running daemon: wiring, reload, shutdown, signals | [`app`] |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod app;
pub mod config;
pub mod dane;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod notify;
pub mod resolver_lookup;
pub mod server;
pub mod socket_path;
pub mod state;
pub mod tlsrpt;

pub use answer::DaneVerdict;
pub use app::{ConfigSource, Daemon, DaemonError};
pub use config::{Config, ConfigError, Listen, ZoneSettings, Zones};
pub use lookup::{LookupResult, PolicyLookup};
pub use mta_sts_socketmap::{Key, Reply, Request};
pub use resolver_lookup::ResolverLookup;
pub use server::{ServerError, ServerHandle, ServerOptions, SocketmapServer};
