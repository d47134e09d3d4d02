//! Group commit: `put`s that arrive while a commit is in flight share the next transaction
//! and its one fsync.
//!
//! Each `put` joins a queue. The first to find no commit running becomes the leader and
//! drains the queue, one transaction per batch of what is queued: the first batch on its
//! own thread when that needs no waiting and no fsync, the rest on the blocking pool. A
//! caller is answered only after the transaction holding its entry has committed, so an
//! acknowledged `put` is exactly as durable as the store's `Synchronous` mode promises (under
//! `synchronous=FULL` a commit survives power loss); what changes is that sixteen concurrent
//! lookups pay for one commit instead of queueing behind sixteen.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::super::{StoreError, StoredPolicy};

/// At most this many entries per transaction, so that a burst's first caller is not kept
/// waiting behind an unbounded batch.
pub(super) const MAX_BATCH: usize = 512;

/// One `put` waiting for its commit.
pub(super) struct Waiting {
    pub(super) entry: StoredPolicy,
    pub(super) done: oneshot::Sender<Result<(), StoreError>>,
}

/// The entries waiting for the next transaction, and whether a leader is draining them.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Waiting>,
    leader: bool,
}

/// The queue shared by every handle of one store.
#[derive(Default)]
pub(super) struct WriteQueue(Mutex<Queue>);

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue").finish_non_exhaustive()
    }
}

impl WriteQueue {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is a Vec and a flag; a panic cannot leave it half-updated.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `entry`. `true`: the caller must start a leader ([`Leader::run`]).
    pub(super) fn push(&self, waiting: Waiting) -> bool {
        let mut queue = self.lock();
        queue.waiting.push(waiting);
        !std::mem::replace(&mut queue.leader, true)
    }

    /// The next batch, or `None` (and no leader any more) when nothing waits.
    fn next_batch(&self) -> Option<Vec<Waiting>> {
        let mut queue = self.lock();
        if queue.waiting.is_empty() {
            queue.leader = false;
            return None;
        }
        let take = queue.waiting.len().min(MAX_BATCH);
        Some(queue.waiting.drain(..take).collect())
    }
}

/// The one task draining a [`WriteQueue`].
///
/// If it is dropped without having run to the end (the runtime refused the blocking task, or
/// the commit function panicked), it gives up the leadership and drops what waits, so those
/// callers get an error instead of waiting for ever, and the next `put` leads again.
pub(super) struct Leader {
    queue: Arc<WriteQueue>,
    finished: bool,
}

impl Leader {
    pub(super) fn new(queue: Arc<WriteQueue>) -> Self {
        Self {
            queue,
            finished: false,
        }
    }

    /// The next batch to commit; `None` when nothing waits, and then this leader is done
    /// (the next `put` leads).
    pub(super) fn next_batch(&mut self) -> Option<Vec<Waiting>> {
        let batch = self.queue.next_batch();
        self.finished = batch.is_none();
        batch
    }

    /// Commits batch after batch with `commit` until the queue is empty; `commit` answers
    /// every entry of the batch it is given.
    pub(super) fn run(mut self, mut commit: impl FnMut(Vec<Waiting>)) {
        while let Some(batch) = self.next_batch() {
            commit(batch);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            let mut queue = self.queue.lock();
            queue.leader = false;
            queue.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(domain: &str) -> (Waiting, oneshot::Receiver<Result<(), StoreError>>) {
        let (done, answer) = oneshot::channel();
        let entry = StoredPolicy {
            domain: domain.into(),
            record_id: "1".into(),
            body: String::new(),
            fetched_at: 0,
            expires_at: 1,
        };
        (Waiting { entry, done }, answer)
    }

    #[test]
    fn the_first_push_leads_and_later_ones_join_its_batch() {
        let queue = Arc::new(WriteQueue::default());
        let (a, mut a_answer) = waiting("a.example");
        let (b, mut b_answer) = waiting("b.example");
        assert!(queue.push(a));
        assert!(!queue.push(b), "a commit is pending: b joins it");
        let mut batches = Vec::new();
        Leader::new(queue.clone()).run(|batch| {
            batches.push(
                batch
                    .iter()
                    .map(|w| w.entry.domain.clone())
                    .collect::<Vec<_>>(),
            );
            for w in batch {
                let _ = w.done.send(Ok(()));
            }
        });
        assert_eq!(batches, vec![vec!["a.example", "b.example"]]);
        assert!(matches!(a_answer.try_recv(), Ok(Ok(()))));
        assert!(matches!(b_answer.try_recv(), Ok(Ok(()))));
        let (c, _) = waiting("c.example");
        assert!(
            queue.push(c),
            "the leader finished: the next put leads again"
        );
    }

    #[test]
    fn batches_are_bounded() {
        let queue = Arc::new(WriteQueue::default());
        let mut answers = Vec::new();
        for i in 0..MAX_BATCH + 3 {
            let (w, answer) = waiting(&format!("d{i}.example"));
            queue.push(w);
            answers.push(answer);
        }
        let mut sizes = Vec::new();
        let mut order = Vec::new();
        Leader::new(queue).run(|batch| {
            sizes.push(batch.len());
            order.extend(batch.into_iter().map(|w| w.entry.domain));
        });
        assert_eq!(sizes, vec![MAX_BATCH, 3]);
        let expected: Vec<String> = (0..MAX_BATCH + 3)
            .map(|i| format!("d{i}.example"))
            .collect();
        assert_eq!(order, expected, "first come, first committed");
    }

    #[test]
    fn a_leader_that_found_the_queue_empty_leaves_the_next_leaders_puts_alone() {
        let queue = Arc::new(WriteQueue::default());
        let (a, _a_answer) = waiting("a.example");
        assert!(queue.push(a));
        let mut leader = Leader::new(queue.clone());
        let batch = leader.next_batch().expect("a's batch");
        assert_eq!(batch.len(), 1);
        assert!(leader.next_batch().is_none(), "nothing else waits");
        let (b, mut b_answer) = waiting("b.example");
        assert!(queue.push(b), "b leads");
        drop(leader);
        assert!(
            matches!(
                b_answer.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            ),
            "b still waits for its own leader"
        );
        let mut led = Vec::new();
        Leader::new(queue).run(|batch| led.extend(batch.into_iter().map(|w| w.entry.domain)));
        assert_eq!(led, ["b.example"]);
    }

    #[test]
    fn a_leader_that_dies_frees_the_queue_and_its_callers() {
        let queue = Arc::new(WriteQueue::default());
        let (a, mut a_answer) = waiting("a.example");
        assert!(queue.push(a));
        drop(Leader::new(queue.clone()));
        assert!(
            matches!(
                a_answer.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ),
            "the caller is told, not left waiting"
        );
        let (b, _) = waiting("b.example");
        assert!(queue.push(b), "a new put leads");
    }
}
