//! # mta-sts-config: the configuration vocabulary of `serve.toml` and `daemon.toml`
//!
//! The values both configuration files share, parsed once with serde and refused with the
//! same words everywhere:
//!
//! | value | type | written as |
//! |---|---|---|
//! | a duration | [`HumanDuration`] | `"10s"`, `"5m"`, `"1h 30m"` (humantime), or seconds `10` |
//! | a name server | [`Nameserver`] | `"127.0.0.1"` (port 53) or `"IP:PORT"` |
//! | a listening address | [`Listen`] | `"127.0.0.1:8461"`, `"[::1]:8461"` or `"unix:/path"` |
//! | a store location | [`StoreLocation`] | a SQLite file path, `postgres://…` or `redis://…` |
//!
//! and one error, [`ConfigError`], rendered `file:line:column: message` where the message
//! says what is wrong and how to fix it; [`Source`] turns TOML byte spans into those
//! locations and unknown keys into the list of keys their table takes.
//!
//! No I/O beyond reading the configuration file ([`Source::read`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod source;
mod value;

pub use error::ConfigError;
pub use source::{Schema, Source};
pub use value::{HumanDuration, Listen, Nameserver, StoreLocation, is_postgres_url};
