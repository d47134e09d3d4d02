//! The collector socket: libtlsrpt datagrams from Postfix ≥ 3.10 in, event lines out.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tlsrpt::UtcDateTime;
use tlsrpt::event::{Event, parse_line};
use tokio::net::UnixDatagram;
use tokio::sync::watch;

use super::error::TlsrptError;
use super::events_file::event_line;
use super::flush::Flusher;
use crate::metrics::bump;

/// Invalid datagrams are logged (at debug level) at most once per this interval; the others
/// are only counted.
pub const INVALID_LOG_EVERY: Duration = Duration::from_secs(10);

/// Largest datagram accepted; a longer one is cut by the kernel and refused as invalid.
pub const MAX_DATAGRAM: usize = 256 * 1024;

/// Binds the collector socket: replaces a stale socket file, refuses any other file or a
/// socket somebody receives on, sets the mode.
pub(super) async fn bind_collector(
    path: &Path,
    group: Option<&str>,
    mode: u32,
) -> Result<UnixDatagram, TlsrptError> {
    let fail = |message: String| TlsrptError::Socket {
        path: path.to_owned(),
        message,
    };
    crate::socket_path::clear_stale(path, crate::socket_path::SocketKind::Datagram)
        .await
        .map_err(|e| match e {
            crate::socket_path::SocketPathError::InUse => fail(
                "another process receives on it (tlsrpt-collectd?): stop it or choose another path"
                    .into(),
            ),
            other => fail(other.to_string()),
        })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let socket = UnixDatagram::bind(path).map_err(|e| fail(e.to_string()))?;
    crate::socket_path::set_group_and_mode(path, group, mode).map_err(fail)?;
    Ok(socket)
}

/// Parses one datagram: a libtlsrpt datagram, or our own event objects one per line. All
/// or nothing.
pub fn parse_datagram(bytes: &[u8], received: UtcDateTime) -> Result<Vec<Event>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let mut events = Vec::new();
    for line in text.lines() {
        events.extend(parse_line(line, received).map_err(|e| e.to_string())?);
    }
    if events.is_empty() {
        return Err("no event in the datagram".into());
    }
    Ok(events)
}

/// The collector loop: receive, stamp, append; never stops on bad input.
pub(super) async fn collect(
    socket: UnixDatagram,
    flusher: Arc<Flusher>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut last_log: Option<tokio::time::Instant> = None;
    let mut suppressed: u64 = 0;
    loop {
        tokio::select! {
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::error!(error = %e, "TLS-RPT collector socket failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            _ = stop.changed() => break,
        }
        let mut lines = Vec::new();
        // Drain what is queued now (bounded), then write it in one go.
        for _ in 0..1024 {
            let len = match socket.try_recv(&mut buf) {
                Ok(len) => len,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS-RPT collector receive error");
                    break;
                }
            };
            bump(&flusher.metrics.tlsrpt_datagrams_received);
            let received = UtcDateTime::from_unix_seconds(flusher.now());
            let parsed = if len > MAX_DATAGRAM {
                Err(format!("larger than {MAX_DATAGRAM} bytes"))
            } else {
                parse_datagram(buf.get(..len).unwrap_or_default(), received)
            };
            match parsed {
                Ok(events) => lines.extend(events.iter().map(|e| event_line(e, "socket"))),
                Err(reason) => {
                    bump(&flusher.metrics.tlsrpt_datagrams_invalid);
                    let now = tokio::time::Instant::now();
                    if last_log.is_none_or(|t| now.duration_since(t) >= INVALID_LOG_EVERY) {
                        tracing::debug!(%reason, bytes = len, suppressed, "invalid TLS-RPT datagram dropped");
                        last_log = Some(now);
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        let count = lines.len() as u64;
        let events = Arc::clone(&flusher.events);
        let written = tokio::task::spawn_blocking(move || events.append(lines)).await;
        match written {
            Ok(Ok(())) => {
                flusher
                    .metrics
                    .tlsrpt_events_socket
                    .fetch_add(count, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                bump(&flusher.metrics.tlsrpt_write_errors);
                tracing::warn!(error = %e, "cannot append to the TLS-RPT events file; kept in memory");
            }
            Err(e) => tracing::error!(error = %e, "TLS-RPT events writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_all_or_nothing() {
        let t = UtcDateTime::from_unix_seconds(1_714_564_800);
        let one =
            r#"{"policy_domain":"a.test","policy":{"type":"no-policy-found"},"result":"success"}"#;
        assert_eq!(
            parse_datagram(format!("{one}\n{one}\n").as_bytes(), t)
                .unwrap()
                .len(),
            2
        );
        assert!(parse_datagram(format!("{one}\n{{\n").as_bytes(), t).is_err());
        assert!(parse_datagram(b"", t).is_err());
        assert!(parse_datagram(b"\xff", t).is_err());
    }
}
