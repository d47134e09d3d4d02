//! [`PolicyLookup`] over the real resolver ([`mta_sts_resolver::Resolver`]): DNS, HTTPS,
//! the RFC 8461 §5.1 cache, single-flight.

use std::sync::Arc;

use async_trait::async_trait;
use mta_sts::{Domain, Policy};
use mta_sts_resolver::Resolver;

use crate::lookup::{LookupResult, PolicyLookup};

/// The daemon's lookup through a [`Resolver`].
///
/// Mapping of [`mta_sts_resolver::Lookup`]:
/// - a policy (fresh, or cached and unexpired after a failed refresh) → [`LookupResult::Policy`];
/// - no policy with an error that leaves the domain's intent unknown (published record but
///   fetch or parse failed, DNS failure) → [`LookupResult::Failed`], answered per
///   `on_failure` (RFC 8461 §3.3 default: as if there were no policy);
/// - no policy otherwise (no record, invalid or multiple records) → [`LookupResult::NoPolicy`].
#[derive(Debug, Clone)]
pub struct ResolverLookup {
    resolver: Resolver,
}

impl ResolverLookup {
    /// Wraps a resolver.
    pub fn new(resolver: Resolver) -> Self {
        ResolverLookup { resolver }
    }

    /// The wrapped resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}

#[async_trait]
impl PolicyLookup for ResolverLookup {
    async fn lookup(&self, domain: &Domain) -> LookupResult {
        let lookup = self.resolver.lookup(domain).await;
        if let Some(error) = &lookup.error {
            tracing::debug!(%domain, %error, applied = lookup.policy.is_some(), "MTA-STS discovery problem");
        }
        match (lookup.policy, lookup.error) {
            (Some(cached), _) => LookupResult::Policy(Arc::clone(&cached.policy)),
            (None, Some(error)) if error.is_unusable() => LookupResult::Failed {
                reason: error.to_string(),
            },
            (None, _) => LookupResult::NoPolicy,
        }
    }

    async fn cached(&self, domain: &Domain) -> Option<Arc<Policy>> {
        self.resolver
            .cached(domain)
            .map(|cached| Arc::clone(&cached.policy))
    }
}
