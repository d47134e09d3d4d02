//! The intake's shared limits (RFC 8460 §5.4 intake is public and unauthenticated): a
//! permit per request in progress, and a budget of decompressed bytes in flight.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::TlsRptConfig;

/// The intake's limits shared by every request (see the module docs): a permit per request
/// in progress, and a budget of decompressed bytes in flight.
#[derive(Debug)]
pub(crate) struct IntakeGate {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_concurrent: usize,
    max_inflight: usize,
}

impl IntakeGate {
    /// The gate for `config`'s `max_concurrent` and `max_inflight`.
    pub(crate) fn new(config: &TlsRptConfig) -> IntakeGate {
        let max_inflight = config.max_inflight.min(Semaphore::MAX_PERMITS);
        IntakeGate {
            requests: Arc::new(Semaphore::new(
                config.max_concurrent.min(Semaphore::MAX_PERMITS),
            )),
            bytes: Arc::new(Semaphore::new(max_inflight)),
            max_concurrent: config.max_concurrent,
            max_inflight: config.max_inflight,
        }
    }

    /// A permit for one more request in progress now, or none (never waits).
    pub(super) fn try_request(&self) -> Option<OwnedSemaphorePermit> {
        self.requests.clone().try_acquire_owned().ok()
    }

    /// Whether this gate has `config`'s limits (a reload keeps the gate when they did not
    /// change, so requests in progress stay counted).
    pub(crate) fn matches(&self, config: &TlsRptConfig) -> bool {
        self.max_concurrent == config.max_concurrent && self.max_inflight == config.max_inflight
    }
}

/// Bytes of the decompressed-report budget held by one request.
pub(super) struct Reservation {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Nothing of `gate`'s budget held yet.
    pub(super) fn new(gate: &IntakeGate) -> Reservation {
        Reservation {
            budget: gate.bytes.clone(),
            held: None,
        }
    }

    /// Takes `n` more bytes of the budget now, or says no (never waits).
    pub(super) fn take(&mut self, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match self.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }
}
