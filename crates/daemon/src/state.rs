//! The state a running daemon shares between its tasks: the configuration generation in
//! force and the handles reload and shutdown act on. Built by the `app` module, read by
//! the HTTP API (`http`); it depends on neither, so the two do not depend on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use mta_sts_resolver::Resolver;
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

/// The proactive refresher (RFC 8461 §3.3, §10.2) of one generation, stopped when the last
/// generation using it goes.
///
/// It runs on a runtime of its own whose threads have a lower CPU priority (nice
/// [`REFRESH_NICE`] above the daemon's) than the runtime that answers the MTAs: a pass over
/// many due policies (TLS handshakes, mostly) takes the CPU the socketmap leaves, so a busy
/// mail server's queries are not slowed by it, and on an idle one it runs at full speed.
/// A policy is refreshed long before it expires (daily, for a `max_age` of days or weeks),
/// so a pass that waits for a quiet moment costs nothing.
#[derive(Debug)]
pub(crate) enum Refresher {
    /// On its own runtime; dropping the sender ends it.
    Thread(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>),
    /// On the daemon's runtime (its own thread could not be started).
    Task(JoinHandle<()>),
}

/// How much lower the refresher's CPU priority is than the daemon's (nice increment).
pub(crate) const REFRESH_NICE: i32 = 10;

impl Refresher {
    /// Starts `resolver`'s refresher on a lower-priority runtime of its own.
    pub(crate) fn start(resolver: &Resolver) -> Refresher {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let for_thread = resolver.clone();
        let nice = rustix::process::getpriority_process(None).unwrap_or(0) + REFRESH_NICE;
        let spawned = std::thread::Builder::new()
            .name("mta-sts-refresh".into())
            .spawn(move || run_refresher(for_thread, stopped, nice));
        match spawned {
            Ok(_) => Refresher::Thread(stop),
            Err(e) => {
                tracing::warn!(error = %e, "refresher thread not started; refreshing on the main runtime");
                Refresher::Task(resolver.spawn_refresher())
            }
        }
    }
}

/// Body of the refresher thread: a runtime whose threads run at `nice`, running the
/// refresher until `stopped` resolves (its sender dropped).
fn run_refresher(resolver: Resolver, stopped: tokio::sync::oneshot::Receiver<()>, nice: i32) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    set_priority(nice);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("mta-sts-refresh")
        .on_thread_start(move || set_priority(nice))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "refresher runtime not started: cached policies will not be refreshed before they expire");
            return;
        }
    };
    runtime.block_on(async move {
        let refresher = resolver.spawn_refresher();
        let _ = stopped.await;
        refresher.abort();
    });
    runtime.shutdown_background();
}

/// Sets the calling thread's nice value (on Linux it is per thread, and `None` names the
/// calling thread).
fn set_priority(nice: i32) {
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::debug!(error = %e, "refresher priority unchanged");
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        if let Refresher::Task(task) = self {
            task.abort();
        }
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
