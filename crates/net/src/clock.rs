//! Time: an injected [`Clock`] so that rules about time (the RFC 8461 §3.2 / §5.1 cache
//! state machine, report windows, back-off marks) can be tested by moving time instead of
//! waiting. The one clock of the workspace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in whole seconds since the Unix epoch.
///
/// The cache only compares these numbers (fetch time, expiry, back-off marks); sleeping for
/// the refresher uses tokio's timer, which tests can pause separately.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;

    /// [`Clock::now`] as a [`SystemTime`] (whole seconds), for certificate validity and
    /// report stamps.
    ///
    /// ```
    /// use mta_sts_net::clock::{Clock, ManualClock};
    /// use std::time::{Duration, UNIX_EPOCH};
    /// assert_eq!(ManualClock::new(60).system_time(), UNIX_EPOCH + Duration::from_secs(60));
    /// ```
    fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(self.now())
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests).
///
/// ```
/// use mta_sts_net::clock::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance(60);
/// assert_eq!(clock.now(), 1_060);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(start),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
