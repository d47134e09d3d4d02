//! The lookup side of the server, behind a small trait, and the per-query time budget.
//!
//! The server never sees resolver internals: it asks a [`PolicyLookup`] for a domain's
//! policy. [`resolve`] runs one query within the zone's `budget` (DESIGN §5): the lookup runs
//! in its own task; if it has not finished when the budget runs out, the answer comes from
//! the unexpired cached policy ([`PolicyLookup::cached`]) if any, else from `on_failure`, and
//! the lookup keeps running in the background so the next query for the domain is fast.

use std::sync::Arc;

use async_trait::async_trait;
use mta_sts::Domain;
use mta_sts_resolver::CachedPolicy;

use crate::answer::{DaneVerdict, answer, answer_failure};
use crate::config::{DaneMode, ZoneSettings};
use crate::socketmap::Reply;

/// Longest wait for [`PolicyLookup::cached`] once the budget has run out.
const CACHED_LOOKUP_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The outcome of one policy lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// A policy applies: freshly fetched, or an unexpired cached one kept after a failed or
    /// unnecessary refresh (RFC 8461 §5.1).
    Policy(Arc<CachedPolicy>),
    /// The domain has no usable MTA-STS policy (no or invalid `_mta-sts` record, RFC 8461
    /// §3.1), and nothing unexpired is cached.
    NoPolicy,
    /// Discovery failed (DNS failure, fetch failure, invalid policy) and nothing unexpired is
    /// cached: answered per `on_failure` (RFC 8461 §3.3 default: as if no policy).
    Failed {
        /// Why, for logs and `TEMP` replies.
        reason: String,
    },
}

/// Where the server gets policies from. The real implementation wraps
/// `mta_sts_resolver::Resolver`; tests use fixed maps.
#[async_trait]
pub trait PolicyLookup: Send + Sync + 'static {
    /// Looks up the policy of `domain` (DNS, HTTPS, cache). May take long; [`resolve`] bounds
    /// the wait and lets it finish in the background.
    async fn lookup(&self, domain: &Domain) -> LookupResult;

    /// The answer when it is known right now without I/O (a cached policy whose TXT
    /// confirmation is still within its DNS TTL), so no task is spawned for the query. The
    /// default never knows.
    fn fast(&self, _domain: &Domain) -> Option<LookupResult> {
        None
    }

    /// The unexpired cached policy of `domain`, without any network I/O; used when the budget
    /// runs out. The default has no cache.
    async fn cached(&self, _domain: &Domain) -> Option<Arc<CachedPolicy>> {
        None
    }

    /// Whether the domain's MX hosts have usable DNSSEC-validated TLSA records (RFC 7672
    /// §2.2). Only asked when the zone has `dane = "defer"`. The default does not check.
    async fn dane(&self, _domain: &Domain) -> DaneVerdict {
        DaneVerdict::NotChecked
    }
}

/// Answers one query for `domain` within `zone.budget`: [`start`] then [`InFlight::finish`].
pub async fn resolve(lookup: Arc<dyn PolicyLookup>, domain: Domain, zone: ZoneSettings) -> Reply {
    start(lookup, domain, zone).finish().await
}

/// Starts the lookup of `domain` in its own task now; the budget counts from now. Must be
/// called within a tokio runtime.
pub fn start(lookup: Arc<dyn PolicyLookup>, domain: Domain, zone: ZoneSettings) -> InFlight {
    let deadline = tokio::time::Instant::now() + zone.budget;
    if zone.dane != DaneMode::Defer
        && let Some(result) = lookup.fast(&domain)
    {
        return InFlight {
            lookup,
            domain,
            zone,
            deadline,
            task: Task::Ready(result),
        };
    }
    let task = {
        let lookup = Arc::clone(&lookup);
        let domain = domain.clone();
        let check_dane = zone.dane == DaneMode::Defer;
        tokio::spawn(async move {
            if check_dane {
                tokio::join!(lookup.lookup(&domain), lookup.dane(&domain))
            } else {
                (lookup.lookup(&domain).await, DaneVerdict::NotChecked)
            }
        })
    };
    InFlight {
        lookup,
        domain,
        zone,
        deadline,
        task: Task::Spawned(task),
    }
}

/// The lookup of an [`InFlight`]: answered at once, or running in its own task.
#[derive(Debug)]
enum Task {
    Ready(LookupResult),
    Spawned(tokio::task::JoinHandle<(LookupResult, DaneVerdict)>),
}

/// A started lookup (see [`start`]).
#[derive(Debug)]
pub struct InFlight {
    lookup: Arc<dyn PolicyLookup>,
    domain: Domain,
    zone: ZoneSettings,
    deadline: tokio::time::Instant,
    task: Task,
}

impl std::fmt::Debug for dyn PolicyLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyLookup")
    }
}

impl InFlight {
    /// The domain looked up.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The reply at once when the answer was known without I/O ([`PolicyLookup::fast`]),
    /// else the lookup back.
    pub fn into_ready(self) -> Result<Reply, InFlight> {
        match &self.task {
            Task::Ready(result) => Ok(reply_for(
                &self.domain,
                &self.zone,
                result,
                DaneVerdict::NotChecked,
            )),
            Task::Spawned(_) => Err(self),
        }
    }

    /// Waits for the lookup until the deadline, then answers from the cache or per
    /// `on_failure`. Dropping the task handle on timeout detaches the task: the lookup keeps
    /// running and fills the cache for the next query.
    pub async fn finish(self) -> Reply {
        self.finish_reporting().await.0
    }

    /// [`InFlight::finish`], also saying whether the budget ran out before the lookup
    /// finished (for metrics).
    pub async fn finish_reporting(self) -> (Reply, bool) {
        let InFlight {
            lookup,
            domain,
            zone,
            deadline,
            task,
        } = self;
        let task = match task {
            Task::Ready(result) => {
                return (
                    reply_for(&domain, &zone, &result, DaneVerdict::NotChecked),
                    false,
                );
            }
            Task::Spawned(task) => task,
        };
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok((result, dane))) => (reply_for(&domain, &zone, &result, dane), false),
            Ok(Err(join_error)) => {
                tracing::error!(%domain, error = %join_error, "policy lookup task failed");
                (answer_failure(&domain, &zone, "internal error"), false)
            }
            Err(_elapsed) => {
                // `cached` is memory-only by contract; bound it anyway so a misbehaving
                // implementation cannot stall the reply.
                let cached = tokio::time::timeout(CACHED_LOOKUP_LIMIT, lookup.cached(&domain))
                    .await
                    .ok()
                    .flatten();
                tracing::info!(
                    %domain,
                    budget = ?zone.budget,
                    from_cache = cached.is_some(),
                    "lookup exceeded the query budget; finishing it in the background"
                );
                let reply = match cached {
                    Some(cached) => answer(
                        &domain,
                        Some(&cached.policy),
                        &zone,
                        DaneVerdict::NotChecked,
                    ),
                    None => answer_failure(&domain, &zone, "lookup exceeded the query budget"),
                };
                (reply, true)
            }
        }
    }
}

/// The reply for a completed lookup.
pub fn reply_for(
    domain: &Domain,
    zone: &ZoneSettings,
    result: &LookupResult,
    dane: DaneVerdict,
) -> Reply {
    match result {
        LookupResult::Policy(cached) => answer(domain, Some(&cached.policy), zone, dane),
        LookupResult::NoPolicy => answer(domain, None, zone, dane),
        LookupResult::Failed { reason } => {
            tracing::debug!(%domain, %reason, "policy lookup failed, nothing cached");
            answer_failure(domain, zone, reason)
        }
    }
}
