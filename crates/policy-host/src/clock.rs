//! The one clock of the policy host: an injected [`Clock`] (default [`SystemClock`]) read
//! as a [`SystemTime`] where certificates and reports need one, so that tests can move time
//! instead of waiting.

use std::time::{Duration, SystemTime};

use mta_sts_net::clock::Clock;
#[cfg(doc)]
use mta_sts_net::clock::SystemClock;

/// The time `clock` reads, as a [`SystemTime`] (whole seconds).
pub(crate) fn wall_time(clock: &dyn Clock) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(clock.now())
}
