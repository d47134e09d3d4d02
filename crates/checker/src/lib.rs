//! # mta-sts-checker: full diagnosis of a domain's MTA-STS and TLS-RPT setup
//!
//! `mta-sts check` in library form. For one domain the [`Checker`] gathers the evidence a
//! sender would see, then [`analyze`] turns it into [`Finding`]s, each with a stable id,
//! a severity, the evidence and the fix:
//!
//! | area | what | RFC |
//! |---|---|---|
//! | `_mta-sts` TXT | absent, several, unrelated TXT, syntax (`record-<code>`), at the apex, CNAME chain | 8461 §3.1 |
//! | policy host | A/AAAA, TCP 443, TLS ≥ 1.2, certificate trust/name/expiry, status, redirect, Content-Type, size, time | 8461 §3.3 |
//! | policy | every lint diagnostic (`policy-<code>`), strict-sender verdict, mode, `max_age`, broad wildcard, unused patterns | 8461 §3.2, §10.4 |
//! | MX | coverage by the policy, SMTP + STARTTLS, TLS version, certificate, implicit and null MX, the delivery decision | 8461 §4, §5 |
//! | TLS-RPT | record (`tlsrpt-<code>`), `rua`: `mailto:` domain has MX, `https:` handshake, certificate and an empty POST ([`probe::rua`]) | 8460 §3, §5.4 |
//! | DANE | TLSA at `_25._tcp.<mx>` | 8461 §2 |
//!
//! The verdict is `fail` when any finding is an error, `warn` when any is a warning, else
//! `pass` ([`Verdict::of`]). The report also says whether an RFC-compliant sender that
//! enforces the policy it can fetch now would deliver mail, and to which MX
//! ([`report::Delivery`]); for a `testing` policy, also what it would do under `enforce`
//! ([`report::IfEnforced`], findings `enforce-would-defer` and `enforce-would-defer-some`).
//!
//! Probes only record (module [`probe`]); all judgement is in [`analyze`], a pure function
//! of the evidence. [`bulk`] checks many domains with bounded concurrency, sharing DNS
//! answers and MX probes between domains.
//!
//! `mta-sts lint` is here too ([`lint`]): one policy file or record value judged without
//! lookups.
//!
//! ## Modules
//!
//! Imports between modules form a DAG; each module uses only those listed after it:
//!
//! ```text
//! bulk     → checker, report, finding
//! checker  → analyze, probe, tls, report, finding, error, join
//! drift    → analyze (Thresholds), report, finding, probe (the `https:` rua URI)
//! analyze  → probe, tls, report, finding      (pure: no I/O, no clock)
//! report   → probe, tls, finding
//! probe    → tls                               (records only, judges nothing)
//! tls      → error
//! lint, finding, error, join                   (no crate module)
//! ```
//!
//! Inside `analyze` one module per area of findings, also a DAG (see its docs); inside
//! `probe` the HTTPS probes share one connection helper.
//!
//! Not detectable from one probe: whether the TXT `id` changes whenever the policy does
//! (RFC 8461 §3.1); compare two runs over time for that.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mta_sts_checker::Error> {
//! use mta_sts_checker::{CheckConfig, Checker};
//! let checker = Checker::new(CheckConfig::default())?;
//! let report = checker.check("example.com").await?;
//! for finding in &report.findings {
//!     println!("{} {}: {}", finding.severity, finding.id, finding.title);
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analyze;
pub mod bulk;
pub mod checker;
pub mod drift;
mod error;
pub mod finding;
mod join;
pub mod lint;
pub mod probe;
pub mod report;
pub mod tls;

pub use checker::{CheckConfig, Checker};
pub use error::Error;
pub use finding::{Area, Finding, Severity, Verdict};
pub use report::Report;
