//! A real MTA-STS world in process, on loopback, for tests and benchmarks.
//!
//! - [`dns`]: an authoritative DNS server (hickory-server, UDP and TCP) over mutable
//!   zones, with faults (SERVFAIL, REFUSED, black hole, delay) and a query log.
//! - [`https`]: an HTTPS policy host (rustls) whose behaviour per SNI host is scripted:
//!   status, media type, framing, slowness, size, redirects, certificates, TLS faults.
//! - [`smtp`]: SMTP servers with or without STARTTLS that record what they receive.
//! - [`ca`]: the test CA, an untrusted CA and certificates of every [`CertKind`].
//! - [`world`]: [`World`] ties them together on a dedicated runtime thread.
//! - [`postgres`] and [`redis`]: real PostgreSQL and Redis (and Redis Sentinel) servers of
//!   a test's own, on loopback.
//!
//! Nothing here is a mock: clients talk to real sockets on 127.0.0.1.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod dns;
pub mod https;
pub mod postgres;
pub mod redis;
pub mod smtp;
pub mod world;

mod runtime;

pub use ca::{CertKind, IssuedCert, Pki, TestCa, Validity};
pub use dns::{DnsFault, DnsServer, QueryRecord};
pub use https::{HostBehavior, HttpRequest, HttpsServer};
pub use smtp::{SmtpConfig, SmtpMessage, SmtpServer, SmtpSession, TlsInfo};
pub use world::{DomainBuilder, World, WorldBuilder};

/// Record types and data, re-exported from hickory-proto for [`DnsServer::set_records`].
pub use hickory_proto::rr::{RData, RecordType};

/// Everything that can go wrong while setting up the world.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or using a socket or file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// rustls refused a configuration or key.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// rcgen could not build a certificate.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A DNS name or record could not be built.
    #[error("DNS: {0}")]
    Dns(#[from] hickory_proto::ProtoError),
    /// The world's runtime thread is gone.
    #[error("the world's runtime has stopped")]
    Stopped,
}
