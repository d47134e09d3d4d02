//! `[limits]`: protection against slow and greedy clients.

use std::time::Duration;

use mta_sts_config::Source;

use super::raw::RawLimits;
use super::{ConfigError, positive, positive_duration};

/// `[limits]`: protection against slow and greedy clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// TLS handshake must finish within this (default 10 s).
    pub handshake_timeout: Duration,
    /// A request's header must arrive within this (default 10 s); also closes idle
    /// HTTP/1.1 keep-alive connections.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// Largest request header block, bytes (default 8192; larger → 431).
    pub max_header_bytes: usize,
    /// Most concurrent connections (default 10000); more wait in the accept queue.
    pub max_connections: usize,
    /// A request body must arrive within this, counted from the end of the header
    /// (default 30 s); a slower one is answered 408 and its connection closed.
    pub body_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection (default 32; RFC 9113 §6.5.2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused by the HTTP/2 layer.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
            max_connections: 10_000,
            body_timeout: Duration::from_secs(30),
            max_streams: 32,
        }
    }
}

pub(super) fn build_limits(src: &Source<'_>, l: &RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    Ok(Limits {
        handshake_timeout: match &l.handshake_timeout {
            Some(v) => positive_duration(src, v, "handshake_timeout")?,
            None => d.handshake_timeout,
        },
        header_read_timeout: match &l.header_read_timeout {
            Some(v) => positive_duration(src, v, "header_read_timeout")?,
            None => d.header_read_timeout,
        },
        idle_timeout: match &l.idle_timeout {
            Some(v) => positive_duration(src, v, "idle_timeout")?,
            None => d.idle_timeout,
        },
        max_header_bytes: match &l.max_header_bytes {
            Some(v) => positive(src, v, "max_header_bytes")?.max(8192),
            None => d.max_header_bytes,
        },
        max_connections: match &l.max_connections {
            Some(v) => positive(src, v, "max_connections")?,
            None => d.max_connections,
        },
        body_timeout: match &l.body_timeout {
            Some(v) => positive_duration(src, v, "body_timeout")?,
            None => d.body_timeout,
        },
        max_streams: match &l.max_streams {
            Some(v) => u32::try_from(positive(src, v, "max_streams")?).unwrap_or(u32::MAX),
            None => d.max_streams,
        },
    })
}
