//! [`PolicyLookup`] over the real resolver ([`mta_sts_resolver::Resolver`]): DNS, HTTPS,
//! the RFC 8461 §5.1 cache, single-flight; plus the DANE check ([`crate::dane`]), lookup
//! metrics and the last error per domain for the HTTP API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use mta_sts::Domain;
use mta_sts_resolver::{CachedPolicy, Lookup, Resolver};
use serde::Serialize;

use crate::answer::{DaneVerdict, PolicyFailure};
use crate::dane::DaneClient;
use crate::lookup::{LookupResult, PolicyLookup, Source};
use crate::metrics::{Metrics, bump};
use crate::tlsrpt::{Prober, Recorder};

/// Most domains whose last error is remembered; the table is cleared when full.
const LAST_ERRORS_CAP: usize = 10_000;

/// The last discovery failure of a domain (RFC 8460 §4.3 result type), for the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// RFC 8460 result type, e.g. `sts-webpki-invalid`.
    pub result_type: String,
    /// Stable reason code, e.g. `certificate-wrong-name`.
    pub reason: String,
    /// The sentence for humans.
    pub message: String,
    /// When it happened (unix seconds).
    pub at: u64,
}

/// The daemon's lookup through a [`Resolver`].
///
/// Mapping of [`mta_sts_resolver::Lookup`]:
/// - a policy (fresh, or cached and unexpired after a failed refresh) → [`LookupResult::Policy`];
/// - no policy after a DNS failure (the domain's intent unknown) → [`LookupResult::Failed`],
///   answered per `on_failure` (RFC 8461 §3.3 default: as if there were no policy);
/// - no policy behind a published record (fetch, certificate or parse failure) →
///   [`LookupResult::Unusable`] with its RFC 8460 result type, answered per `on_failure`
///   too, and with `policy_failure=` where the zone defers and speaks Postfix 3.10;
/// - no policy otherwise (no record, invalid or multiple records) → [`LookupResult::NoPolicy`].
#[derive(Debug, Clone)]
pub struct ResolverLookup {
    resolver: Resolver,
    dane: Option<DaneClient>,
    metrics: Arc<Metrics>,
    last_errors: Arc<Mutex<HashMap<Domain, LastError>>>,
    tlsrpt: Option<Arc<Recorder>>,
    prober: Option<Arc<Prober>>,
}

impl ResolverLookup {
    /// Wraps a resolver (no DANE client, private metrics).
    pub fn new(resolver: Resolver) -> Self {
        ResolverLookup {
            resolver,
            dane: None,
            metrics: Arc::default(),
            last_errors: Arc::default(),
            tlsrpt: None,
            prober: None,
        }
    }

    /// Records the outcome of each socketmap query in `recorder` (TLS-RPT, RFC 8460; see
    /// [`crate::tlsrpt`]). HTTP API lookups are not recorded.
    pub fn with_tlsrpt(mut self, recorder: Arc<Recorder>) -> Self {
        self.tlsrpt = Some(recorder);
        self
    }

    /// Hands every `testing` policy a socketmap query applies to `prober`, which probes
    /// the domain's MX hosts in the background at most once per `probe_interval`
    /// (`[tlsrpt] probe_testing`, see [`crate::tlsrpt`]).
    pub fn with_prober(mut self, prober: Arc<Prober>) -> Self {
        self.prober = Some(prober);
        self
    }

    /// This lookup without TLS-RPT recording or probing (for the HTTP API, whose lookups
    /// are no sessions and answer no MTA).
    pub fn without_tlsrpt(&self) -> Self {
        ResolverLookup {
            tlsrpt: None,
            prober: None,
            ..self.clone()
        }
    }

    /// Starts the testing-mode probe for `policy` if it is due (cheap; never waits).
    fn consider_probe(&self, domain: &Domain, policy: &Arc<CachedPolicy>) {
        if let Some(prober) = &self.prober {
            prober.consider(domain, policy);
        }
    }

    /// Uses `client` for zones with `dane = "defer"`.
    pub fn with_dane(mut self, client: DaneClient) -> Self {
        self.dane = Some(client);
        self
    }

    /// Counts into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The wrapped resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The last discovery failure seen for `domain`, if the latest lookup failed.
    pub fn last_error(&self, domain: &Domain) -> Option<LastError> {
        self.errors().get(domain).cloned()
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, HashMap<Domain, LastError>> {
        self.last_errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A full resolver lookup, timed and counted, remembering its error.
    pub async fn lookup_full(&self, domain: &Domain) -> Lookup {
        let started = Instant::now();
        let lookup = self.resolver.lookup(domain).await;
        let elapsed = started.elapsed();
        if lookup.from_cache {
            self.metrics.lookup_cache.observe(elapsed);
        } else {
            self.metrics.lookup_network.observe(elapsed);
        }
        // "No record" is no error: the domain publishes no policy (RFC 8461 §3.1); nor is an
        // invalid domain, for which nothing was asked. Neither is a `last_error`.
        match lookup.error.as_ref().filter(|e| {
            !matches!(
                e,
                mta_sts_resolver::Error::NoRecord { .. }
                    | mta_sts_resolver::Error::InvalidDomain { .. }
            )
        }) {
            Some(error) => {
                tracing::trace!(%domain, %error, applied = lookup.policy.is_some(), "MTA-STS discovery problem");
                let entry = LastError {
                    result_type: error.result_type().to_string(),
                    reason: error.reason_code().to_owned(),
                    message: error.to_string(),
                    at: self.resolver.clock().now(),
                };
                let mut errors = self.errors();
                if errors.len() >= LAST_ERRORS_CAP && !errors.contains_key(domain) {
                    errors.clear();
                }
                errors.insert(domain.clone(), entry);
            }
            None => {
                let mut errors = self.errors();
                if !errors.is_empty() {
                    errors.remove(domain);
                }
            }
        }
        lookup
    }
}

/// The [`LookupResult`] of a resolver lookup (see [`ResolverLookup`] for the mapping).
pub fn result_of(lookup: &Lookup) -> LookupResult {
    match (&lookup.policy, &lookup.error) {
        (Some(cached), _) => LookupResult::Policy(Arc::clone(cached)),
        (None, Some(error)) if error.is_unusable() && error.is_dns() => LookupResult::Failed {
            reason: error.to_string(),
        },
        (None, Some(error)) if error.is_unusable() => LookupResult::Unusable {
            failure: PolicyFailure::from_result_type(&error.result_type()),
            reason: error.to_string(),
        },
        (None, _) => LookupResult::NoPolicy,
    }
}

#[async_trait]
impl PolicyLookup for ResolverLookup {
    async fn lookup(&self, domain: &Domain) -> LookupResult {
        self.lookup_with_source(domain).await.0
    }

    async fn lookup_with_source(&self, domain: &Domain) -> (LookupResult, Source) {
        let lookup = self.lookup_full(domain).await;
        if let Some(recorder) = &self.tlsrpt {
            recorder.record(domain, &lookup);
        }
        if let Some(policy) = &lookup.policy {
            self.consider_probe(domain, policy);
        }
        let result = result_of(&lookup);
        let source = match &result {
            LookupResult::Policy(_) if lookup.from_cache => Source::Cache,
            other => Source::of(other),
        };
        (result, source)
    }

    fn fast(&self, domain: &Domain) -> Option<LookupResult> {
        // A cached policy applied: nothing for TLS-RPT (a query is not a session, see
        // crate::tlsrpt).
        let cached = self.resolver.lookup_fast(domain)?;
        self.consider_probe(domain, &cached);
        Some(LookupResult::Policy(cached))
    }

    async fn cached(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        self.resolver.cached_or_stored(domain).await
    }

    async fn dane(&self, domain: &Domain) -> DaneVerdict {
        let Some(client) = &self.dane else {
            return DaneVerdict::NotChecked;
        };
        let verdict = client.check(domain).await;
        bump(if verdict == DaneVerdict::Usable {
            &self.metrics.dane_usable
        } else {
            &self.metrics.dane_not_usable
        });
        verdict
    }
}
