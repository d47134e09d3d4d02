//! # mta-sts-daemon: the enforcement side of MTA-STS for Postfix
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
//! | TLS-RPT: policy outcomes, collector socket, scheduled reports, testing-mode MX probes | [`tlsrpt`] |
//! | the state shared by the running daemon's tasks (generation in force, handles) | [`state`] |
//! | the running daemon: wiring, reload, shutdown, signals | [`app`] |
//! | switching from postfix-mta-sts-resolver: its YAML config converted, replies compared | [`migrate`] |
//!
//! ## Module order
//!
//! The modules form a DAG that reads top-down: each uses only modules listed after it.
//!
//! ```text
//! app             → http, state, resolver_lookup, server, tlsrpt, dane, config, metrics, socket_path, notify
//! http            → state, resolver_lookup, lookup, answer, config, metrics, socket_path
//! state           → resolver_lookup, server, tlsrpt, config, metrics
//! resolver_lookup → tlsrpt, lookup, dane, answer, metrics
//! server          → lookup, config, metrics, socket_path
//! tlsrpt          → config, metrics, socket_path
//! lookup          → answer, config
//! dane            → answer
//! answer          → config
//! config, metrics, socket_path, notify, migrate: no module of this crate
//! ```
//!
//! Inside [`tlsrpt`] the same holds: `service` → `collector`, `schedule` → `flush`,
//! `probe` → `recorder`, `events_file` → `error`. The wire protocol (netstrings, requests,
//! replies) is the `mta-sts-socketmap` crate below all of them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod app;
pub mod config;
pub mod dane;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod migrate;
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
