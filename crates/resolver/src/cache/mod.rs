//! The in-memory layer of the RFC 8461 cache: compact entries, sharded locks.
//!
//! Entry (RFC 8461 §3.3, §5.1): the policy last fetched successfully with its TXT id,
//! `fetched_at` and `expires_at = fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2), the
//! per-(domain, id) fetch failure marks (RFC 8461 §3.3 back-off), the negative-cache
//! deadline, and the refresher's bookkeeping (RFC 8461 §10.2). The state machine itself is in
//! [`crate::resolver`].
//!
//! One module a concept, each using only those listed before it:
//! - `policy`: [`CachedPolicy`], a policy as cached, with its [`StsId`] and the body rebuilt
//!   from its canonical rendering;
//! - `entry`: everything known about one domain (policy, failure marks, negative answer);
//! - `weight`: the heap bytes of an entry, as malloc hands them out;
//! - `ring`: the CLOCK rings of a shard and their eviction;
//! - `memory`: the bounded, sharded memory layer and its [`MemoryUsage`];
//! - `refresh_time`: when the refresher fetches a policy again.

mod entry;
mod memory;
mod policy;
mod refresh_time;
mod ring;
mod weight;

pub(crate) use memory::MemoryCache;
pub use memory::MemoryUsage;
pub use policy::{CachedPolicy, StsId};
pub(crate) use refresh_time::{next_refresh, next_refresh_at};

/// What the unit tests of these modules share.
#[cfg(test)]
mod fixtures {
    use mta_sts::Policy;

    use super::CachedPolicy;

    pub(super) const CANONICAL: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n";

    pub(super) fn cached(body: &str) -> CachedPolicy {
        let policy = Policy::parse(body.as_bytes()).expect("policy");
        CachedPolicy::new(policy, "20240101", body, 0).expect("id")
    }
}
