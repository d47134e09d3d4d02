//! # mta-sts-net: the network layer of the services
//!
//! Everything a service needs to talk to the network, and nothing about storage: the one
//! hickory DNS client ([`dns`], with its resolver builder [`dns::build_resolver`]), the trust
//! anchors and TLS client configuration of a sender ([`tls`]), curl-style connection
//! overrides ([`connect_to`]), the HTTPS policy fetch ([`policy_fetch`]), the clock
//! ([`clock`]) that every time-dependent rule reads, and the one rendering of an error with
//! its causes for log lines ([`causes`]), and the listeners systemd passes by socket
//! activation ([`activation`]).
//!
//! Layering: the protocol crates (`mta-sts`, `tlsrpt`) below, the services (the resolver
//! cache, the daemon, the checker, the policy host, the report store) above. This crate
//! links neither SQLite nor Redis, so a service that only needs DNS and HTTPS stays small.
//!
//! The RFC 8461 §3.3 policy-fetch rules (the well-known path, `text/plain`, no redirects,
//! status 200 only, the body cap) live here in [`policy_fetch`] rather than in the resolver:
//! the checker and the CLI apply the same rules (path, media type, body cap) without the
//! cache, and keeping the rules beside the one HTTPS client means a single place states
//! them. The resolver keeps only the cache state machine around the fetch.
//!
//! Modules form a DAG: [`policy_fetch`] uses [`dns`], [`tls`] and [`connect_to`]; the
//! others (including [`activation`]) use nothing of this crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation;
pub mod causes;
pub mod clock;
pub mod connect_to;
pub mod dns;
pub mod policy_fetch;
pub mod tls;

pub use causes::with_causes;
pub use clock::{Clock, ManualClock, SystemClock};
pub use connect_to::{ConnectTo, ConnectToError};
pub use dns::{Dns, DnsConfig, DnsFailureKind, DnsOutcome, DnsSetupError, Tlsa};
pub use policy_fetch::{FetchConfig, FetchError, Fetched, Fetcher};
pub use tls::{TlsSetupError, Trust};
