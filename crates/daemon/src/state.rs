//! The state a running daemon shares between its tasks: the configuration generation in
//! force and the handles reload and shutdown act on. Built by the `app` module, read by
//! the HTTP API (`http`); it depends on neither, so the two do not depend on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use mta_sts_resolver::store::Store;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::resolver_lookup::ResolverLookup;
use crate::server::ServerHandle;
use crate::tlsrpt::TlsrptService;

/// One configuration in force: the configuration and the lookup built from it. Replaced
/// as a whole on reload; dropping the last reference stops its refresher.
#[derive(Debug)]
pub struct Generation {
    /// The configuration.
    pub config: Config,
    /// The lookup (resolver, DANE client, last errors).
    pub lookup: ResolverLookup,
    pub(crate) refresher: Arc<Refresher>,
}

/// Aborts the proactive refresher when the last generation using it goes.
#[derive(Debug)]
pub(crate) struct Refresher(pub(crate) JoinHandle<()>);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// State shared by the daemon, the HTTP API and reloads.
pub struct Core {
    pub(crate) store: Arc<dyn Store>,
    /// The configuration the listeners, the store and the TLS-RPT tasks were started with:
    /// what `app::restart_pending` compares a reload with.
    pub(crate) started: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) current: RwLock<Arc<Generation>>,
    pub(crate) server: ServerHandle,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    pub(crate) tlsrpt: TlsrptService,
    /// The one clock of the daemon (the resolver's, the TLS-RPT stamps', the schedule's).
    pub(crate) clock: Arc<dyn mta_sts_net::Clock>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("store", &self.store.backend())
            .field("shutting_down", &self.shutting_down())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// The generation in force.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The daemon's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The TLS-RPT recorder, collector and scheduler.
    pub fn tlsrpt(&self) -> &TlsrptService {
        &self.tlsrpt
    }

    /// Whether shutdown has started (`/healthz` answers 503).
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
