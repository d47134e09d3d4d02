//! Counters → events file: the flush shared by the ticker, reload, shutdown and the
//! scheduler, and the wall-clock ticks it runs on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tlsrpt::UtcDateTime;

use mta_sts_net::Clock;

use super::events_file::{EventsFile, event_line};
use super::recorder::Recorder;
use crate::metrics::{Metrics, bump};

/// Counters → events file, shared by the flush ticker, reload, shutdown and the scheduler.
pub(super) struct Flusher {
    pub(super) recorder: Arc<Recorder>,
    pub(super) events: Arc<EventsFile>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: Arc<dyn Clock>,
    /// Clock second of the last flush (start of the current interval).
    pub(super) last: Mutex<i64>,
}

impl Flusher {
    /// The clock's reading as the signed seconds TLS-RPT dates are built from.
    pub(super) fn now(&self) -> i64 {
        unix_seconds(&*self.clock)
    }

    /// Appends the counts since the last flush. Blocking I/O.
    pub(super) fn flush(&self) {
        let now = self.now();
        let stamp = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            // The interval's last second, never before the interval began.
            let stamp = (now - 1).max(*last).min(now);
            *last = now;
            stamp
        };
        let events = self.recorder.drain(UtcDateTime::from_unix_seconds(stamp));
        let mut lines: Vec<String> = events.iter().map(|e| event_line(e, "daemon")).collect();
        let daemon_count = lines.len() as u64;
        // Probe sessions keep their own time stamps (the moment of the probe).
        let probed = self.recorder.drain_probes();
        lines.extend(probed.iter().map(|e| event_line(e, "probe")));
        let count = lines.len() as u64;
        match self.events.append(lines) {
            Ok(()) => {
                self.metrics
                    .tlsrpt_events_daemon
                    .fetch_add(daemon_count, Ordering::Relaxed);
                self.metrics
                    .tlsrpt_events_probe
                    .fetch_add(count - daemon_count, Ordering::Relaxed);
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

/// `clock`'s reading in signed seconds (saturating; the epoch never comes near `i64::MAX`).
pub(super) fn unix_seconds(clock: &dyn Clock) -> i64 {
    i64::try_from(clock.now()).unwrap_or(i64::MAX)
}

/// Time until the next multiple of `interval` on `clock`, or the next 00:00 UTC if that
/// comes first. The clock reads whole seconds, so a tick lands within the second after the
/// boundary, never before it (the flush stamps whole seconds too).
pub(super) fn until_next_tick(interval: Duration, clock: &dyn Clock) -> Duration {
    let now = Duration::from_secs(clock.now());
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
            let wait = until_next_tick(Duration::from_secs(interval), &mta_sts_net::SystemClock);
            assert!(wait > Duration::ZERO && wait <= Duration::from_secs(interval.min(86_400)));
        }
    }

    /// With an injected clock the tick is exact: the next multiple of the interval, cut
    /// at 00:00 UTC so a day's counts never spill into the next report day (RFC 8460 §4.1
    /// reports cover whole UTC days).
    #[test]
    fn ticks_land_on_interval_boundaries_and_midnight() {
        const DAY: u64 = 86_400;
        let day = 19_844 * DAY; // 2024-05-01T00:00:00Z
        let clock = mta_sts_net::ManualClock::new(day + 12 * 3600 + 10);
        let secs = |interval: u64| until_next_tick(Duration::from_secs(interval), &clock).as_secs();
        assert_eq!(secs(60), 50);
        assert_eq!(secs(3600), 3590);
        clock.set(day + DAY - 10);
        assert_eq!(secs(3600), 10);
        assert_eq!(secs(100_000), 10, "a long interval is cut at midnight");
        clock.set(day + DAY);
        assert_eq!(
            secs(60),
            60,
            "on a boundary the next tick is a whole interval away"
        );
    }
}
