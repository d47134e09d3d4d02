//! # mta-sts-socketmap: the Postfix `socketmap_table(5)` protocol, sans I/O
//!
//! The wire format the enforcement daemon speaks with Postfix's `smtp_tls_policy_maps`,
//! with no I/O, no clock and no async runtime, like the `mta-sts` and `tlsrpt` protocol
//! crates: the caller reads and writes the socket, this crate turns bytes into requests and
//! replies into bytes. Errors are data.
//!
//! | concept | module |
//! |---|---|
//! | netstring framing (`<length>:<bytes>,`) and its size limits | [`netstring`] |
//! | request `<name> <key>`, lookup key normalisation | [`request`] |
//! | replies `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT`, `PERM` | [`reply`] |
//!
//! Modules form a DAG: [`request`] and [`reply`] use nothing of each other; [`reply`]
//! writes its own netstring frame (without an intermediate buffer) and [`netstring`] uses
//! neither.
//!
//! ```
//! use mta_sts_socketmap::netstring::{Decoder, Limits};
//! use mta_sts_socketmap::{Key, Reply, Request};
//! let mut decoder = Decoder::new(Limits::default());
//! decoder.feed(b"23:postfix [mx.example]:25,");
//! let payload = decoder.decode()?.expect("one complete request");
//! let request = Request::parse(&payload)?;
//! assert_eq!(request.name, "postfix");
//! assert!(matches!(request.key(), Key::Domain(d) if d.as_str() == "mx.example"));
//! assert_eq!(Reply::NotFound.encode(), b"9:NOTFOUND ,");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod netstring;
pub mod reply;
pub mod request;

pub use netstring::NetstringError;
pub use reply::Reply;
pub use request::{Key, Request, RequestError, SkipReason};
