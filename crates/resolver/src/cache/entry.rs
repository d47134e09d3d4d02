//! Everything the cache knows about one domain ([`Entry`]): its policy, the per-(domain, id)
//! fetch failure marks (RFC 8461 §3.3 back-off), the negative answer and the refresher's
//! bookkeeping (RFC 8461 §10.2).

use std::sync::Arc;

use super::policy::CachedPolicy;
use crate::error::Error;

/// A failed fetch for one TXT id (RFC 8461 §3.3: retry no sooner than 5 minutes later).
#[derive(Debug, Clone)]
pub(crate) struct FailMark {
    pub id: Arc<str>,
    pub at: u64,
    pub error: Error,
}

/// Everything known about one domain. Small (40 bytes): what every cached domain needs is
/// inline, the rarer failure bookkeeping sits behind one optional box.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub policy: Option<Arc<CachedPolicy>>,
    /// "No policy" is remembered until then (DNS negative TTL, bounded).
    pub negative_until: u64,
    /// When the refresher should fetch again.
    pub next_refresh: u64,
    /// Until when the last `_mta-sts` TXT answer, which confirmed the cached policy's id,
    /// is current (its DNS TTL): a DNS cache would give the same answer until then.
    pub txt_until: u64,
    pub(super) trouble: Option<Box<Trouble>>,
}

/// The failure bookkeeping of an [`Entry`], absent while all is well.
#[derive(Debug, Clone, Default)]
pub(super) struct Trouble {
    /// The error that produced the negative entry.
    pub(super) negative_error: Option<Error>,
    /// Recent failure marks, newest last; a handful at most.
    pub(super) fail_marks: Vec<FailMark>,
    /// Consecutive failed proactive refreshes.
    pub(super) refresh_failures: u32,
}

impl Entry {
    pub fn fresh_policy(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.policy.as_ref().filter(|p| p.is_fresh(now))
    }

    /// The fresh policy while the TXT answer confirming its id is within its TTL.
    pub fn confirmed_policy(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.fresh_policy(now).filter(|_| now < self.txt_until)
    }

    fn trouble(&mut self) -> &mut Trouble {
        self.trouble.get_or_insert_default()
    }

    /// Drops the bookkeeping once nothing is left in it.
    fn tidy(&mut self) {
        if self.trouble.as_ref().is_some_and(|t| {
            t.negative_error.is_none() && t.fail_marks.is_empty() && t.refresh_failures == 0
        }) {
            self.trouble = None;
        }
    }

    fn fail_marks(&self) -> &[FailMark] {
        self.trouble.as_ref().map_or(&[], |t| &t.fail_marks)
    }

    pub fn failure_for(&self, id: &str, now: u64, backoff: u64) -> Option<&FailMark> {
        self.fail_marks()
            .iter()
            .rev()
            .find(|m| &*m.id == id && now < m.at.saturating_add(backoff))
    }

    pub fn mark_failure(&mut self, id: &str, now: u64, error: Error) {
        let marks = &mut self.trouble().fail_marks;
        marks.retain(|m| &*m.id != id);
        if marks.len() >= 4 {
            marks.remove(0);
        }
        marks.push(FailMark {
            id: Arc::from(id),
            at: now,
            error,
        });
    }

    /// Forgets the failure mark of `id` (its policy was just fetched).
    pub fn clear_failure(&mut self, id: &str) {
        if let Some(t) = &mut self.trouble {
            t.fail_marks.retain(|m| &*m.id != id);
        }
        self.tidy();
    }

    /// Remembers "no policy" until `until`, because of `error`.
    pub fn set_negative(&mut self, until: u64, error: Error) {
        self.negative_until = until;
        self.trouble().negative_error = Some(error);
    }

    /// The error behind the negative entry.
    pub fn negative_error(&self) -> Option<&Error> {
        self.trouble.as_ref()?.negative_error.as_ref()
    }

    /// Counts one more failed refresh; returns the consecutive count.
    pub fn note_refresh_failure(&mut self) -> u32 {
        let trouble = self.trouble();
        trouble.refresh_failures += 1;
        trouble.refresh_failures
    }

    /// A policy was installed: no negative entry, no failed refreshes.
    pub fn clear_negative_and_refresh_failures(&mut self) {
        self.negative_until = 0;
        if let Some(t) = &mut self.trouble {
            t.negative_error = None;
            t.refresh_failures = 0;
        }
        self.tidy();
    }

    /// Nothing worth keeping at `now` (expired policy, lapsed marks and negative entry).
    pub fn is_dead(&self, now: u64, backoff: u64) -> bool {
        self.fresh_policy(now).is_none()
            && now >= self.negative_until
            && self
                .fail_marks()
                .iter()
                .all(|m| now >= m.at.saturating_add(backoff))
    }

    /// Whether losing the entry costs a fetch or a back-off (a policy, failure marks) rather
    /// than a DNS query (a negative answer only).
    pub(super) fn is_keeper(&self) -> bool {
        self.policy.is_some() || !self.fail_marks().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon holds one per domain: keep it within 136 bytes (glibc serves the `Arc`
    /// allocation from a 160-byte chunk).
    #[test]
    fn cached_policy_stays_small() {
        assert!(
            size_of::<CachedPolicy>() <= 136,
            "{}",
            size_of::<CachedPolicy>()
        );
        assert!(size_of::<Entry>() <= 40, "{}", size_of::<Entry>());
    }
}
