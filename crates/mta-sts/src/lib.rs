//! # mta-sts: the sans-I/O core of SMTP MTA Strict Transport Security (RFC 8461)
//!
//! Parsing, validation, printing, matching and deciding, with no I/O, no clock and no
//! async runtime, so every other part of the toolkit (resolver, daemon, checker, policy
//! host) and any other program can build on it.
//!
//! | RFC 8461 concept | module |
//! |---|---|
//! | `_mta-sts` TXT record (§3.1) | [`record`] |
//! | policy file (§3.2) | [`policy`] |
//! | `mx` patterns and MX matching (§4.1) | [`pattern`] |
//! | domain names, A-labels (§3.2, RFC 6125 §6.4) | [`domain`] |
//! | delivery decision (§4, §5) | [`decision`] |
//! | parser findings | [`diagnostic`] |
//!
//! ```
//! use mta_sts::{Domain, Policy, StsRecord};
//!
//! let domain: Domain = "Example.com.".parse()?;
//! let record = StsRecord::select(["v=spf1 -all", "v=STSv1; id=20240101T000000;"])?;
//! let policy = Policy::parse(b"version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 604800\r\n")?;
//! assert_eq!(domain.policy_url(), "https://mta-sts.example.com/.well-known/mta-sts.txt");
//! assert_eq!(record.id, "20240101T000000");
//! assert!(policy.allows_mx("mx1.example.com."));
//! assert!(!policy.allows_mx("mx1.attacker.example"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decision;
pub mod diagnostic;
pub mod domain;
pub mod pattern;
pub mod policy;
pub mod record;

pub use diagnostic::{Diagnostic, Severity};
pub use domain::{Domain, DomainError};
pub use pattern::{MxPattern, PatternError};
pub use policy::{MAX_AGE_LIMIT, Mode, Policy, PolicyError, PolicyLint};
pub use record::{RecordError, SelectError, StsRecord};
