//! The proactive refresher (RFC 8461 §3.3, §10.2): every due cached policy is refetched,
//! whatever its TXT record says, up to `refresh_concurrency` at a time, with jitter random
//! per resolver; on a store shared by a fleet, one resolver refreshes a given domain per
//! lease window and the others take its result.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mta_sts::{Domain, Mode};

use super::{Inner, Resolver, bump};
use crate::cache::{CachedPolicy, next_refresh_at};

/// What one refresher pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Entries refetched.
    pub attempted: usize,
    /// Refetches that succeeded.
    pub refreshed: usize,
    /// Refetches that failed.
    pub failed: usize,
    /// Due policies another resolver sharing the store had refreshed already: its newer
    /// entry was taken instead of a refetch.
    pub adopted: usize,
    /// Due policies another resolver held the refresh lease on: looked at again once the
    /// lease ends.
    pub deferred: usize,
}

/// How [`Inner::refresh_one`] ended.
enum Refreshed {
    Fetched,
    Failed,
    Adopted,
    Deferred,
}

impl Resolver {
    /// One refresher pass: refetches every cached policy that is due (RFC 8461 §3.3, §10.2),
    /// whatever its TXT record says, with up to
    /// [`refresh_concurrency`](super::ResolverConfig::refresh_concurrency) refetches in
    /// flight, and drops entries with nothing left to keep.
    pub async fn refresh_due(&self) -> RefreshReport {
        let inner = &self.inner;
        let started = Instant::now();
        let now = inner.clock.now();
        let mut due = inner.due(now);
        due.extend(inner.due_in_store(now).await);
        let stats = &inner.stats;
        stats
            .refresh_backlog
            .store(due.len() as u64, Ordering::Relaxed);
        let mut due = due.into_iter();
        let limit = inner.config.refresh_concurrency.max(1);
        let mut report = RefreshReport::default();
        // Each refetch is its own task, so a pass uses every worker thread; dropping the
        // set (a cancelled pass) aborts the refetches still running.
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < limit {
                let Some((domain, policy)) = due.next() else {
                    break;
                };
                report.attempted += 1;
                let inner = Arc::clone(&self.inner);
                tasks.spawn(async move { inner.refresh_one(&domain, &policy, now).await });
            }
            match tasks.join_next().await {
                Some(Ok(Refreshed::Fetched)) => report.refreshed += 1,
                Some(Ok(Refreshed::Adopted)) => report.adopted += 1,
                Some(Ok(Refreshed::Deferred)) => report.deferred += 1,
                // A refetch task that panicked counts as a failed refresh; the entry stays
                // due and the next pass retries it.
                Some(Ok(Refreshed::Failed) | Err(_)) => report.failed += 1,
                None => break,
            }
            // Saturating: a pass run by hand next to the refresher shares the gauge.
            let _ = stats
                .refresh_backlog
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        inner.memory.prune(now, inner.config.backoff.as_secs());
        stats.refresh_backlog.store(0, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats
            .refresh_last_pass_micros
            .store(micros, Ordering::Relaxed);
        bump(&stats.refresh_passes);
        report
    }

    /// Starts the proactive refresher: every `refresh_tick` it runs [`Resolver::refresh_due`].
    /// Abort the handle to stop it.
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let tick = self
            .inner
            .config
            .refresh_tick
            .max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let report = this.refresh_due().await;
                if report.attempted > 0 {
                    tracing::debug!(?report, "refresher pass");
                }
            }
        })
    }
}

impl Inner {
    /// The cached policies due for a proactive refresh at `now` (fresh, and past their
    /// refresh time).
    fn due(&self, now: u64) -> Vec<(Domain, Arc<CachedPolicy>)> {
        self.memory
            .domains()
            .into_iter()
            .filter_map(|domain| {
                let entry = self.memory.entry(&domain)?;
                let policy = entry.fresh_policy(now).cloned()?;
                (now >= entry.next_refresh).then_some((domain, policy))
            })
            .collect()
    }

    /// The policies due for a proactive refresh at `now` that are in the store but no longer
    /// in memory (evicted to stay within `max_memory`): the refresher refreshes every cached
    /// policy, not only those in memory (RFC 8461 §3.3, §10.2). Reads the store only from
    /// the earliest refresh time of the policies evicted, then notes the next such time.
    async fn due_in_store(&self, now: u64) -> Vec<(Domain, Arc<CachedPolicy>)> {
        const PAGE: usize = 1000;
        let mut due = Vec::new();
        if now < self.memory.evicted_due() {
            return due;
        }
        self.memory.take_evicted_due();
        let interval = self.config.refresh_interval.as_secs();
        let mut next = u64::MAX;
        let mut after: Option<String> = None;
        loop {
            let page = match self.store.load_page(now, after.as_deref(), PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    self.store_error("load_page", &e);
                    // Look again on the next pass.
                    next = now;
                    break;
                }
            };
            let full = page.len() == PAGE;
            for stored in &page {
                let Ok(domain) = Domain::parse(&stored.domain) else {
                    continue;
                };
                if self.memory.has_policy(&domain) {
                    continue;
                }
                // A failed refresh of an evicted policy set its retry time in memory.
                let at = match self.memory.entry(&domain) {
                    Some(entry) if entry.next_refresh > 0 => entry.next_refresh,
                    _ => next_refresh_at(
                        &self.jitter_seed,
                        &domain,
                        stored.fetched_at,
                        stored.expires_at,
                        interval,
                    ),
                };
                if now < at {
                    next = next.min(at);
                } else if let Some(policy) = CachedPolicy::from_stored(stored) {
                    due.push((domain, Arc::new(policy)));
                }
            }
            match page.into_iter().next_back() {
                Some(last) if full => after = Some(last.domain),
                _ => break,
            }
        }
        self.memory.note_evicted_due(next);
        due
    }

    /// How long a refresh lease on a shared store lasts: longer than one refresh can take
    /// (a DNS lookup and an HTTPS fetch, each bounded by the timeout, then the store write).
    fn lease_ttl(&self) -> Duration {
        self.config.timeout * 2 + Duration::from_secs(1)
    }

    /// Refreshes one due policy (RFC 8461 §3.3, §10.2). On a store shared with other
    /// resolvers, first takes a newer entry one of them stored, else claims the refresh
    /// lease ([`Store::try_lease`]) and, if another resolver holds it, looks again once the
    /// lease ends. A failed refetch keeps the cached policy, is retried after the backoff and
    /// is logged as a warning unless the policy's mode is none.
    async fn refresh_one(&self, domain: &Domain, policy: &CachedPolicy, now: u64) -> Refreshed {
        if self.adopt_newer(domain, policy, now).await {
            bump(&self.stats.refresh_adopted);
            return Refreshed::Adopted;
        }
        let lease = self.lease_ttl();
        match self.store.try_lease(domain.as_str(), lease).await {
            Ok(true) => {}
            Ok(false) => {
                let again = now + lease.as_secs().max(1);
                self.memory
                    .update(domain, |entry| entry.next_refresh = again);
                bump(&self.stats.refresh_deferred);
                return Refreshed::Deferred;
            }
            // Without the lease, refresh anyway: one refetch too many beats none.
            Err(e) => self.store_error("try_lease", &e),
        }
        if self.refetch(domain, policy, now).await {
            Refreshed::Fetched
        } else {
            Refreshed::Failed
        }
    }

    /// Installs the store's entry for `domain` if it is fresh and newer than `policy` (a
    /// resolver sharing the store refreshed it). Returns whether it did.
    async fn adopt_newer(&self, domain: &Domain, policy: &CachedPolicy, now: u64) -> bool {
        let stored = match self.store.get(domain.as_str()).await {
            Ok(Some(stored)) if stored.is_fresh(now) && stored.fetched_at > policy.fetched_at => {
                stored
            }
            Ok(_) => return false,
            Err(e) => {
                self.store_error("get", &e);
                return false;
            }
        };
        match CachedPolicy::from_stored(&stored) {
            Some(newer) => self.install(domain, Arc::new(newer), now),
            None => false,
        }
    }

    /// Refetches one due policy; see [`Inner::refresh_one`]. Returns whether it succeeded.
    async fn refetch(&self, domain: &Domain, policy: &CachedPolicy, now: u64) -> bool {
        // Prefer the current TXT id, so the stored id matches the policy now served;
        // keep the cached one when the TXT lookup does not give a valid record.
        let id = match self.discover(domain).await {
            Ok((record, _)) => Arc::<str>::from(record.id.as_str()),
            Err(_) => Arc::from(policy.record_id.as_str()),
        };
        let e = match self.fetch_policy(domain, &id, now).await {
            Ok(_) => {
                bump(&self.stats.refreshes);
                return true;
            }
            Err(e) => e,
        };
        bump(&self.stats.refresh_failures);
        let retry = now + self.config.backoff.as_secs().max(1);
        let failures = self.memory.update(domain, |entry| {
            entry.next_refresh = retry;
            entry.note_refresh_failure()
        });
        if !self.memory.has_policy(domain) {
            // An evicted policy: the refresher finds it in the store again at `retry`.
            self.memory.note_evicted_due(retry);
        }
        // RFC 8461 §3.3 / §10.2: alert on failing refreshes unless mode is none.
        if policy.policy.mode != Mode::None {
            tracing::warn!(
                domain = %domain,
                failures,
                expires_in = policy.expires_at.saturating_sub(now),
                reason = e.reason_code(),
                result_type = %e.result_type(),
                "policy refresh failed: {e}"
            );
        } else {
            tracing::debug!(domain = %domain, failures, "refresh of a mode-none policy failed: {e}");
        }
        false
    }
}
