//! # mta-sts-resolver: the policy cache (RFC 8461 §3, §5.1, §10.2)
//!
//! The sender side of MTA-STS above the network layer: discover a domain's `_mta-sts` TXT
//! record and fetch its policy through `mta-sts-net` (its `Dns` and `Fetcher`), and keep
//! the result in a cache whose state machine follows RFC 8461 ([`cache`], [`Resolver`]),
//! backed by a [`store::Store`]: memory always; SQLite, Redis (direct or through Redis
//! Sentinel) and PostgreSQL behind the `sqlite`, `redis` and `postgres` cargo features (all
//! on by default). Every failure is a typed [`Error`] with its
//! RFC 8460 result type ([`tlsrpt::ResultType`]).
//!
//! Modules form a DAG: [`resolver`] uses [`cache`], [`store`] and [`error`]; [`cache`] uses
//! [`store`] and [`error`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod resolver;
pub mod store;

pub use cache::{CachedPolicy, MemoryUsage};
pub use error::{Error, SetupError};
/// The DNS failure kind carried by [`Error::DnsFailure`] (defined in `mta-sts-net`).
pub use mta_sts_net::DnsFailureKind;
pub use resolver::refresh::RefreshReport;
pub use resolver::{
    COUNTED_SHARE, DEFAULT_MAX_MEMORY, LiveOutcome, Lookup, Outcome, Resolver, ResolverConfig,
    Stats,
};
