//! # mta-sts-resolver: policy discovery and caching (RFC 8461 §3, §5.1, §10.2)
//!
//! The sender side of MTA-STS: find a domain's `_mta-sts` TXT record, fetch its policy over
//! HTTPS, and keep it in a cache whose state machine follows RFC 8461 to the letter, backed
//! by a [`store::Store`] (memory, SQLite or Redis).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod store;
