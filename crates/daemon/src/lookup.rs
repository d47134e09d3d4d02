//! The lookup side of the server, behind a small trait, and the per-query time budget.
//!
//! The server never sees resolver internals: it asks a [`PolicyLookup`] for a domain's
//! policy. [`resolve`] runs one query within the zone's `budget` (docs/design.md §5): the lookup runs
//! in its own task; if it has not finished when the budget runs out, the answer comes from
//! the unexpired cached policy ([`PolicyLookup::cached`]) if any, else from `on_failure`, and
//! the lookup keeps running in the background so the next query for the domain is fast.

use std::sync::Arc;

use async_trait::async_trait;
use mta_sts::Domain;
use mta_sts_resolver::CachedPolicy;

use crate::answer::{DaneVerdict, PolicyFailure, answer, answer_failure, answer_unusable};
use crate::config::{DaneMode, ZoneSettings};
use mta_sts_socketmap::Reply;

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
    /// The domain publishes an `_mta-sts` record but its policy could not be used (fetch
    /// failure, invalid policy, invalid policy host certificate) and nothing unexpired is
    /// cached: as [`LookupResult::Failed`], and with `on_failure = "temp"` and `tlsrpt =
    /// true` told to Postfix 3.10 as `policy_failure=` ([`answer_unusable`]).
    Unusable {
        /// The RFC 8460 §4.3.2.2 result type.
        failure: PolicyFailure,
        /// Why, for logs and `TEMP` replies.
        reason: String,
    },
}

/// Where the answer to a query came from, for the one log line per query (`source=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A cached policy (memory, or the store after a restart), no HTTPS fetch.
    Cache,
    /// A policy fetched over HTTPS during this query.
    Fetch,
    /// No policy: the domain has no `_mta-sts` record (from DNS or the negative cache), or
    /// no usable one.
    Negative,
    /// Discovery failed and nothing unexpired is cached: answered per `on_failure`.
    Failed,
    /// The query budget ran out: answered from the cache or per `on_failure`, the lookup
    /// finishes in the background.
    Budget,
}

impl Source {
    /// The word logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Fetch => "fetch",
            Source::Negative => "negative",
            Source::Failed => "failed",
            Source::Budget => "budget",
        }
    }

    /// The source of `result` when the lookup does not say whether a policy came from
    /// the cache (a policy then counts as fetched).
    pub fn of(result: &LookupResult) -> Source {
        match result {
            LookupResult::Policy(_) => Source::Fetch,
            LookupResult::NoPolicy => Source::Negative,
            LookupResult::Failed { .. } | LookupResult::Unusable { .. } => Source::Failed,
        }
    }
}

/// Where the server gets policies from. The real implementation wraps
/// `mta_sts_resolver::Resolver`; tests use fixed maps.
#[async_trait]
pub trait PolicyLookup: Send + Sync + 'static {
    /// Looks up the policy of `domain` (DNS, HTTPS, cache). May take long; [`resolve`] bounds
    /// the wait and lets it finish in the background.
    async fn lookup(&self, domain: &Domain) -> LookupResult;

    /// [`PolicyLookup::lookup`] with where the result came from (for the query log line).
    /// The default tells only from the result ([`Source::of`]).
    async fn lookup_with_source(&self, domain: &Domain) -> (LookupResult, Source) {
        let result = self.lookup(domain).await;
        let source = Source::of(&result);
        (result, source)
    }

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
    let started = tokio::time::Instant::now();
    if zone.dane != DaneMode::Defer
        && let Some(result) = lookup.fast(&domain)
    {
        return InFlight {
            lookup,
            domain,
            zone,
            started,
            task: Task::Ready(result, Source::Cache),
        };
    }
    let task = {
        let lookup = Arc::clone(&lookup);
        let domain = domain.clone();
        let check_dane = zone.dane == DaneMode::Defer;
        tokio::spawn(async move {
            if check_dane {
                let ((result, source), dane) =
                    tokio::join!(lookup.lookup_with_source(&domain), lookup.dane(&domain));
                (result, source, dane)
            } else {
                let (result, source) = lookup.lookup_with_source(&domain).await;
                (result, source, DaneVerdict::NotChecked)
            }
        })
    };
    InFlight {
        lookup,
        domain,
        zone,
        started,
        task: Task::Spawned(task),
    }
}

/// The lookup of an [`InFlight`]: answered at once, or running in its own task.
#[derive(Debug)]
enum Task {
    Ready(LookupResult, Source),
    Spawned(tokio::task::JoinHandle<(LookupResult, Source, DaneVerdict)>),
}

/// A started lookup (see [`start`]).
#[derive(Debug)]
pub struct InFlight {
    lookup: Arc<dyn PolicyLookup>,
    domain: Domain,
    zone: ZoneSettings,
    /// When the query started; its deadline is this plus `zone.budget`.
    started: tokio::time::Instant,
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
            Task::Ready(result, source) => {
                let reply = reply_for(&self.domain, &self.zone, result, DaneVerdict::NotChecked);
                log_query(&self.domain, &reply, *source, Some(result), self.started);
                Ok(reply)
            }
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
            started,
            task,
        } = self;
        let deadline = started + zone.budget;
        let task = match task {
            Task::Ready(result, source) => {
                let reply = reply_for(&domain, &zone, &result, DaneVerdict::NotChecked);
                log_query(&domain, &reply, source, Some(&result), started);
                return (reply, false);
            }
            Task::Spawned(task) => task,
        };
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok((result, source, dane))) => {
                let reply = reply_for(&domain, &zone, &result, dane);
                log_query(&domain, &reply, source, Some(&result), started);
                (reply, false)
            }
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
                log_query(&domain, &reply, Source::Budget, None, started);
                (reply, true)
            }
        }
    }
}

/// The one line per answered query (debug level, `mta-sts -v daemon`): domain,
/// name, the reply Postfix gets, where it came from and how long it took.
/// A failed discovery adds its reason.
fn log_query(
    domain: &Domain,
    reply: &Reply,
    source: Source,
    result: Option<&LookupResult>,
    started: tokio::time::Instant,
) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Some(LookupResult::Failed { reason } | LookupResult::Unusable { reason, .. }) => {
            tracing::debug!(
                %domain,
                answer = ?reply.payload(),
                source = %source.as_str(),
                %ms,
                %reason,
                "query"
            )
        }
        _ => {
            tracing::debug!(%domain, answer = ?reply.payload(), source = %source.as_str(), %ms, "query")
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
        LookupResult::Failed { reason } => answer_failure(domain, zone, reason),
        LookupResult::Unusable { failure, reason } => {
            answer_unusable(domain, zone, *failure, reason)
        }
    }
}
