//! # mta-sts-policy-host: the library behind `mta-sts serve` and `mta-sts records`
//!
//! The publishing side of MTA-STS (RFC 8461) and a TLS-RPT (RFC 8460) report intake:
//!
//! | concept | module |
//! |---|---|
//! | `serve.toml`: domains, policies, certificates, ACME, intake | [`config`] |
//! | the `_mta-sts` id derived from the policy content (RFC 8461 §3.1) | [`id`] |
//! | the DNS records to publish, in zone-file syntax | [`records`](mod@records) |
//! | the HTTPS server: SNI certificates (§7.1), `/.well-known/mta-sts.txt` (§3.2) | [`server`] |
//! | the routing table built from a config, swapped whole on reload | [`table`] |
//! | TLS-RPT report intake over HTTPS (RFC 8460 §5.4) | [`intake`] |
//! | automatic certificates (RFC 8555, TLS-ALPN-01 RFC 8737, HTTP-01) | [`acme`] |
//! | Prometheus counters and gauges on `metrics_listen` | [`metrics`] |
//!
//! ## Module layers
//!
//! The modules form a DAG read top-down: each uses only modules below it.
//!
//! ```text
//! store_sink               (feature `report-store`) the report store as intake sink
//!   └─ intake, config
//! server                    listeners, routing, reload, watcher (implements acme::AcmeHost)
//!   ├─ acme                 the ACME manager and HTTP-01 listener
//!   ├─ tls                  the SNI resolver and the rustls configuration
//!   ├─ idle                 a connection's last activity, for the idle timeout
//!   ├─ listen               the HTTPS and HTTP-01 listeners, bound or passed by systemd (uses config)
//!   ├─ metrics              the /metrics counters and their plain-HTTP listener (uses table)
//!   ├─ intake               TLS-RPT report intake (http, limits, spool, sink, body, scan)
//!   └─ table                the routing table built from a config
//!        ├─ records         the DNS records to publish
//!        ├─ challenges      pending ACME challenge answers, stored certificate paths
//!        ├─ mx_auto         MX look-ups for `mx = "auto"`
//!        └─ cert            certificates from PEM/DER, host name matching
//! config                    `serve.toml` (uses no other module)
//! id                        the policy id (uses no other module)
//! ```
//!
//! Wiring for a command-line front end:
//!
//! ```no_run
//! use mta_sts_policy_host::{ServeConfig, records, serve};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // mta-sts records DOMAIN --policy FILE [--rua URIS]
//! let domain: mta_sts::Domain = "example.com".parse()?;
//! let policy = mta_sts::Policy::parse(&std::fs::read("policy.txt")?)?;
//! print!("{}", records(&domain, &policy, Some("mailto:tlsrpt@example.com")));
//!
//! // mta-sts serve --config FILE
//! let config = ServeConfig::load("/etc/mta-sts/serve.toml")?;
//! serve(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod config;
pub mod id;
pub mod intake;
pub mod listen;
pub mod metrics;
pub mod records;
pub mod server;
#[cfg(feature = "report-store")]
pub mod store_sink;
pub mod table;

mod cert;
mod challenges;
mod idle;
mod mx_auto;
mod tls;

pub use config::{ConfigError, ServeConfig};
pub use id::policy_id;
pub use intake::{
    BodyError, CheckedBody, Drained, IncomingReport, JsonError, REJECTED_DIR, ReportSink,
    SinkError, SinkFuture, SpoolSink, Stored, check_body,
};
pub use listen::{ACTIVATION_ROLES, ListenError};
pub use records::{Records, TxtRecord, records};
pub use server::{
    ServeError, Server, TableHandle, run_server, serve, serve_inherited, serve_with_sink,
};
pub use table::{CertError, ChainError, HostEntry, MxError, Table, TableError};
