//! # mta-sts-resolver: policy discovery and caching (RFC 8461 §3, §5.1, §10.2)
//!
//! The sender side of MTA-STS: find a domain's `_mta-sts` TXT record ([`dns`]), fetch its
//! policy over HTTPS ([`fetch`]), and keep it in a cache whose state machine follows
//! RFC 8461 ([`cache`], [`Resolver`]), backed by a [`store::Store`] (memory, SQLite or
//! Redis). Every failure is a typed [`Error`] with its RFC 8460 result type.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod clock;
pub mod dns;
pub mod error;
pub mod fetch;
pub mod resolver;
pub mod store;

pub use cache::CachedPolicy;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DnsFailureKind, Error, ResultType};
pub use fetch::{ConnectTo, Trust};
pub use resolver::{LiveOutcome, Lookup, Outcome, Resolver, ResolverConfig, Stats};
