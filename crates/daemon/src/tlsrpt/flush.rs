//! Counters → events file: the flush shared by the ticker, reload, shutdown and the
//! scheduler, and the wall-clock ticks it runs on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tlsrpt::UtcDateTime;

use super::clock::Clock;
use super::events_file::{EventsFile, event_line};
use super::recorder::Recorder;
use crate::metrics::{Metrics, bump};

/// Counters → events file, shared by the flush ticker, reload, shutdown and the scheduler.
pub(super) struct Flusher {
    pub(super) recorder: Arc<Recorder>,
    pub(super) events: Arc<EventsFile>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: Clock,
    /// Clock second of the last flush (start of the current interval).
    pub(super) last: Mutex<i64>,
}

impl Flusher {
    /// Appends the counts since the last flush. Blocking I/O.
    pub(super) fn flush(&self) {
        let now = (self.clock)();
        let stamp = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            // The interval's last second, never before the interval began.
            let stamp = (now - 1).max(*last).min(now);
            *last = now;
            stamp
        };
        let events = self.recorder.drain(UtcDateTime::from_unix_seconds(stamp));
        let lines: Vec<String> = events.iter().map(|e| event_line(e, "daemon")).collect();
        let count = lines.len() as u64;
        match self.events.append(lines) {
            Ok(()) => {
                self.metrics
                    .tlsrpt_events_daemon
                    .fetch_add(count, Ordering::Relaxed);
                if count > 0 {
                    tracing::debug!(lines = count, "TLS-RPT counters flushed");
                }
            }
            Err(e) => {
                bump(&self.metrics.tlsrpt_write_errors);
                tracing::warn!(error = %e, path = ?self.events.path(), "cannot append to the TLS-RPT events file; kept in memory for the next flush");
            }
        }
    }
}

/// Seconds until the next multiple of `interval` on the system clock, or the next 00:00 UTC
/// if that comes first.
pub(super) fn until_next_tick(interval: Duration) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let step = interval.as_millis().max(1);
    let now_ms = now.as_millis();
    let next = (now_ms / step + 1) * step;
    let midnight = (now_ms / 86_400_000 + 1) * 86_400_000;
    let wait = next.min(midnight).saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(wait).unwrap_or(u64::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_never_straddle_midnight() {
        for interval in [1, 7, 60, 3600, 100_000] {
            let wait = until_next_tick(Duration::from_secs(interval));
            assert!(wait > Duration::ZERO && wait <= Duration::from_secs(interval.min(86_400)));
        }
    }
}
