//! The time source TLS-RPT events are stamped with and the send schedule runs on.

use std::sync::Arc;

/// The time source, in Unix seconds. [`system_clock`] in production; tests inject one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}
