//! When the refresher fetches a policy again (RFC 8461 §3.3, §10.2): about once an
//! interval, jittered per resolver, and by half of the policy's lifetime at the latest.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use mta_sts::Domain;

use super::policy::CachedPolicy;

/// When to refresh a policy fetched at `fetched_at` (RFC 8461 §3.3, §10.2): after about
/// `interval`, and in any case by half of the policy's lifetime. The interval gets a ±10 %
/// jitter from hashing the domain and fetch time with `seed`, a per-resolver random key:
/// one resolver spreads its domains over the band, and two resolvers (daemons sharing a
/// store) refresh a domain at unrelated times instead of in step.
pub(crate) fn next_refresh(
    seed: &RandomState,
    domain: &Domain,
    policy: &CachedPolicy,
    interval: u64,
) -> u64 {
    next_refresh_at(seed, domain, policy.fetched_at, policy.expires_at, interval)
}

/// [`next_refresh`] from the times alone (a stored policy not parsed yet).
pub(crate) fn next_refresh_at(
    seed: &RandomState,
    domain: &Domain,
    fetched_at: u64,
    expires_at: u64,
    interval: u64,
) -> u64 {
    let spread = interval / 5; // 20 % window → ±10 %
    let jitter = if spread == 0 {
        0
    } else {
        seed.hash_one((domain, fetched_at)) % spread
    };
    let jittered = interval - interval / 10 + jitter;
    let lifetime = expires_at.saturating_sub(fetched_at);
    fetched_at + jittered.min(lifetime / 2).max(1)
}
