//! The HTTPS policy host: TLS with SNI certificates, HTTP/1.1 and HTTP/2, the policy
//! resource, the TLS-RPT intake, reload and graceful shutdown.
//!
//! Behaviour, with the RFC 8461 sections that ask for it:
//! - TLS 1.3 and 1.2 only; the certificate is chosen by SNI among the configured policy
//!   hosts; any other name (or none) aborts the handshake (§7.1).
//! - `GET`/`HEAD /.well-known/mta-sts.txt` (§3.2) → 200, `text/plain; charset=utf-8`,
//!   the canonical CRLF body, pre-rendered when the configuration was loaded.
//! - An unknown `Host` → 404: a policy is never served for a host that did not ask for it
//!   by name. No `Host` (nor `:authority`), several, or an invalid one → 400 (RFC 9112
//!   §3.2). Any other path → 404; another method → 405 with `Allow`. Never a redirect
//!   (senders MUST NOT follow them, §3.3).
//! - No `Cache-Control` by default: senders MUST NOT use HTTP caching (§8.2), and a cache
//!   in front of us would break the "body before id" ordering of §8.1. The suggested
//!   `max-age=60` for a caching reverse proxy is one config key away (`cache_control`).
//! - Header size limit (431), header read timeout, idle timeout (no bytes moving, or no
//!   request in progress), handshake timeout, body timeout (408), a connection limit;
//!   HTTP/2: at most `max_streams` concurrent streams per connection and small flow-control
//!   windows ([`H2_STREAM_WINDOW`], [`H2_CONN_WINDOW`]), so unread request data a
//!   connection can make us buffer is bounded. The policy answer stays far within the one
//!   minute / 64 KiB that §3.3 suggests.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use mta_sts_net::activation::Inherited;
use mta_sts_net::clock::{Clock, SystemClock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::acme::{AcmeHost, Challenges};
use crate::cert::normalize_host;
use crate::config::{ConfigError, ServeConfig, TlsRptConfig};
use crate::idle::{Activity, IdleIo, InFlight};
use crate::intake::{IntakeGate, ReportSink, SpoolSink};
use crate::listen::ListenError;
use crate::table::{Table, TableError};
use crate::tls::{ACME_TLS_ALPN, SniResolver, server_config};
use mta_sts_net::with_causes;

pub use crate::config::POLICY_PATH;

/// The media type of the policy (RFC 8461 §3.2).
pub const POLICY_MEDIA_TYPE: &str = "text/plain; charset=utf-8";

/// Up to this many policy hosts, each gets its own "policy ready" line at start.
const STARTUP_HOSTS_LISTED: usize = 20;

/// How long connections may take to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// HTTP/2 initial stream window, bytes (RFC 9113 §6.9.2): request data one stream can send
/// before we read it. The RFC default; hyper's is 1 MiB.
pub const H2_STREAM_WINDOW: u32 = 65_535;

/// HTTP/2 connection window, bytes (RFC 9113 §6.9.1): unread request data one connection
/// can make us buffer over all its streams.
pub const H2_CONN_WINDOW: u32 = 256 * 1024;

/// HTTP/2 send buffer per stream, bytes: answers here are small.
const H2_SEND_BUF: usize = 64 * 1024;

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates or MX lookups failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A listening socket could not be opened.
    #[error(
        "cannot listen on {addr}: {source} (is another server using the port, or does it need root?)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A listener cannot be bound or taken from systemd.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// `[tlsrpt] store` is set but the server was started without a sink for it
    /// ([`Server::start_with_sink`]; `mta-sts serve` opens the store and passes one).
    #[error(
        "[tlsrpt] store = \"{0}\" needs the report store: run `mta-sts serve`, or start the server with a sink for it"
    )]
    NoStoreSink(String),
}

/// The table a running [`Server`] serves, following its reloads ([`Server::table_handle`]).
#[derive(Clone)]
pub struct TableHandle(Arc<ArcSwap<Table>>);

impl TableHandle {
    /// The table served now.
    pub fn load(&self) -> Arc<Table> {
        self.0.load_full()
    }
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("hosts", &self.0.load().hosts().count())
            .finish()
    }
}

/// State shared by listeners, connections, the watcher and the ACME manager.
pub(crate) struct Shared {
    pub(crate) table: Arc<ArcSwap<Table>>,
    pub(crate) challenges: Arc<Challenges>,
    sink: Option<Arc<dyn ReportSink>>,
    reload_lock: tokio::sync::Mutex<()>,
    path: Option<PathBuf>,
    pub(crate) shutdown: watch::Receiver<bool>,
    conns: Arc<Semaphore>,
    max_conns: usize,
    policy_type: HeaderValue,
    /// The TLS-RPT intake's shared limits, when there is an intake; follows reloads.
    intake_gate: arc_swap::ArcSwapOption<IntakeGate>,
    /// The last logged reload was refused.
    refused: std::sync::atomic::AtomicBool,
    /// The one clock: certificate expiry and renewal, report arrival stamps.
    clock: Arc<dyn Clock>,
    /// The counters of `metrics_listen`.
    metrics: crate::metrics::Metrics,
}

impl Shared {
    /// Re-reads the configuration (the file, or the same config again when there is none),
    /// rebuilds the table, and swaps it in. On error the old table stays.
    pub(crate) async fn reload(&self) -> Result<(), ServeError> {
        let _guard = self.reload_lock.lock().await;
        let old = self.table.load_full();
        let config = match &self.path {
            Some(path) => ServeConfig::load(path)?,
            None => ServeConfig::clone(old.config()),
        };
        if config.listen != old.config().listen {
            tracing::warn!("`listen` changed: the new addresses take effect after a restart");
        }
        self.check_store(&config)?;
        let store = |c: &ServeConfig| c.tlsrpt.as_ref().and_then(|t| t.store.clone());
        if store(&config) != store(old.config()) {
            tracing::warn!(
                "[tlsrpt] store changed: the new report store takes effect after a restart"
            );
        }
        let table = Table::build_with_clock(Arc::new(config), self.clock.as_ref()).await?;
        for entry in table.hosts() {
            match old.host(&entry.host) {
                None => tracing::info!(host = %entry.host, id = %entry.id, "policy host added"),
                Some(before) if before.id != entry.id => {
                    tracing::info!(host = %entry.host, old_id = %before.id, id = %entry.id, "policy changed: publish the new _mta-sts TXT id now (RFC 8461 §8.1)")
                }
                Some(_) => {}
            }
        }
        for entry in old.hosts() {
            if table.host(&entry.host).is_none() {
                tracing::info!(host = %entry.host, "policy host removed");
            }
        }
        self.update_gate(table.config());
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// [`Shared::reload`], with its outcome logged: after a refused reload, the next one
    /// that applies says so, so the last line of the log is never a stale "refused".
    pub(crate) async fn reload_logged(&self) -> bool {
        let result = self.reload().await;
        self.metrics.reloaded(result.is_ok());
        match result {
            Ok(()) => {
                let hosts = self.table.load().hosts().count();
                if self.refused.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        hosts,
                        "reloaded: the configuration is valid again and now served"
                    );
                } else {
                    tracing::info!(hosts, "reloaded");
                }
                true
            }
            Err(e) => {
                self.refused.store(true, Ordering::Relaxed);
                tracing::error!(error = %with_causes(&e), "reload refused; still serving the previous configuration");
                false
            }
        }
    }

    /// A new intake gate when `[tlsrpt] max_concurrent` or `max_inflight` changed; requests
    /// in progress keep (and then release) their permits of the old one.
    fn update_gate(&self, config: &ServeConfig) {
        match &config.tlsrpt {
            None => self.intake_gate.store(None),
            Some(t) => {
                let current = self.intake_gate.load();
                if !current.as_ref().is_some_and(|g| g.matches(t)) {
                    self.intake_gate.store(Some(Arc::new(IntakeGate::new(t))));
                }
            }
        }
    }

    /// A `store` needs a sink from the front end; without one, reports would silently go
    /// elsewhere than configured.
    fn check_store(&self, config: &ServeConfig) -> Result<(), ServeError> {
        match config.tlsrpt.as_ref().and_then(|t| t.store.as_ref()) {
            Some(store) if self.sink.is_none() => Err(ServeError::NoStoreSink(store.clone())),
            _ => Ok(()),
        }
    }

    /// Where a report goes now: the front end's sink with the spool as fallback, or the
    /// spool alone. The spool follows the current configuration (reloads apply).
    fn sinks(&self, intake: &TlsRptConfig) -> Option<(Arc<dyn ReportSink>, Option<SpoolSink>)> {
        let spool = intake
            .spool_dir
            .clone()
            .map(|dir| SpoolSink::new(dir).with_clock(self.clock.clone()));
        match (&self.sink, spool) {
            (Some(sink), spool) => Some((sink.clone(), spool)),
            (None, Some(spool)) => Some((Arc::new(spool) as Arc<dyn ReportSink>, None)),
            (None, None) => None,
        }
    }
}

impl AcmeHost for Shared {
    fn table(&self) -> &Arc<ArcSwap<Table>> {
        &self.table
    }

    fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    type ReloadError = ServeError;

    async fn reload(&self) -> Result<(), ServeError> {
        Shared::reload(self).await
    }
}

/// A running policy host. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    http01: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .field("http01", &self.http01)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Builds the table (certificates, policies, MX lookups), binds every listener and
    /// starts serving, the file watcher and the ACME manager, on the current tokio runtime.
    pub async fn start(config: ServeConfig) -> Result<Server, ServeError> {
        Server::start_with_clock(config, None, Arc::new(SystemClock)).await
    }

    /// [`Server::start`] with reports going to `sink` (typically the report store named by
    /// `[tlsrpt] store`); the `[tlsrpt] spool_dir`, if set, becomes the fallback for reports
    /// the sink fails to store.
    pub async fn start_with_sink(
        config: ServeConfig,
        sink: Arc<dyn ReportSink>,
    ) -> Result<Server, ServeError> {
        Server::start_with_clock(config, Some(sink), Arc::new(SystemClock)).await
    }

    /// [`Server::start`] (or [`Server::start_with_sink`] when `sink` is given) reading time
    /// from `clock` instead of the system clock: certificate expiry and ACME renewal, and
    /// the `received` stamp of reports. The `mta-sts` binary uses [`SystemClock`]; tests
    /// move a `ManualClock`.
    pub async fn start_with_clock(
        config: ServeConfig,
        sink: Option<Arc<dyn ReportSink>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServeError> {
        Server::start_inherited(config, sink, clock, Inherited::none()).await
    }

    /// [`Server::start_with_clock`] serving on the listeners systemd passed (socket
    /// activation, [`crate::listen::ACTIVATION_ROLES`]): those named `https` replace
    /// `listen`, the one named `http` replaces `[acme] http_listen`; one not passed is bound
    /// as configured.
    pub async fn start_inherited(
        config: ServeConfig,
        sink: Option<Arc<dyn ReportSink>>,
        clock: Arc<dyn Clock>,
        mut inherited: Inherited,
    ) -> Result<Server, ServeError> {
        let path = config.path.clone();
        let max_conns = config.limits.max_connections;
        if let (None, Some(store)) = (&sink, config.tlsrpt.as_ref().and_then(|t| t.store.as_ref()))
        {
            return Err(ServeError::NoStoreSink(store.clone()));
        }
        let table = Table::build_with_clock(Arc::new(config), clock.as_ref()).await?;
        let config = table.config().clone();
        let table = Arc::new(ArcSwap::from_pointee(table));
        let challenges = Arc::new(Challenges::default());
        let resolver = Arc::new(SniResolver {
            table: table.clone(),
            challenges: challenges.clone(),
        });
        let acceptor = TlsAcceptor::from(server_config(resolver)?);
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            table,
            challenges,
            sink,
            reload_lock: tokio::sync::Mutex::new(()),
            path,
            shutdown,
            conns: Arc::new(Semaphore::new(max_conns)),
            max_conns,
            policy_type: HeaderValue::from_static(POLICY_MEDIA_TYPE),
            intake_gate: arc_swap::ArcSwapOption::from(
                config.tlsrpt.as_ref().map(|t| Arc::new(IntakeGate::new(t))),
            ),
            refused: std::sync::atomic::AtomicBool::new(false),
            clock,
            metrics: crate::metrics::Metrics::default(),
        });

        let (listeners, http01_listener) = crate::listen::bind(&config, &mut inherited).await?;
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        let mut metrics = None;
        if let Some(addr) = config.metrics_listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            metrics = Some(listener.local_addr().unwrap_or(addr));
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving Prometheus metrics at /metrics");
            let (state, https_listeners) = (shared.clone(), listeners.len());
            let render = Arc::new(move || {
                // Each accept loop holds one permit while it waits for a client.
                let busy = state.max_conns - state.conns.available_permits();
                let open = busy.saturating_sub(https_listeners);
                state.metrics.render(&state.table.load(), open)
            });
            tasks.push(tokio::spawn(crate::metrics::serve(
                listener,
                render,
                shared.shutdown.clone(),
            )));
        }
        for listener in listeners {
            let addr = listener.local_addr().map_err(|source| ServeError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            tracing::info!(%addr, "serving MTA-STS policies over HTTPS");
            addrs.push(addr);
            tasks.push(tokio::spawn(accept_loop(
                shared.clone(),
                listener,
                acceptor.clone(),
            )));
        }
        let mut http01 = None;
        if let Some(listener) = http01_listener {
            http01 = listener.local_addr().ok();
            tasks.push(tokio::spawn(crate::acme::http01_loop(
                shared.clone(),
                listener,
            )));
        }
        tasks.push(tokio::spawn(watch_loop(shared.clone())));
        tasks.push(tokio::spawn(drain_loop(shared.clone())));
        tasks.push(tokio::spawn(crate::acme::run(shared.clone())));
        log_ready(&shared, &config);
        Ok(Server {
            shared,
            addrs,
            http01,
            metrics,
            stop,
            tasks,
        })
    }

    /// The bound HTTPS addresses (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound HTTP-01 address, when ACME uses HTTP-01.
    pub fn http01_addr(&self) -> Option<SocketAddr> {
        self.http01
    }

    /// The bound `metrics_listen` address (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The table being served now.
    pub fn table(&self) -> Arc<Table> {
        self.shared.table.load_full()
    }

    /// A handle on the table being served that follows reloads, for a front end that shows
    /// what is served (the `[web]` dashboard of `mta-sts serve`).
    pub fn table_handle(&self) -> TableHandle {
        TableHandle(self.shared.table.clone())
    }

    /// Re-reads the configuration and certificates and swaps them in; existing connections
    /// keep going. On error nothing changes, and the error says why.
    pub async fn reload(&self) -> Result<(), ServeError> {
        self.shared.reload().await
    }

    /// Stops accepting, lets open connections finish their requests (at most 10 s), stops
    /// the watcher and the ACME manager.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let all = u32::try_from(self.shared.max_conns).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(DRAIN, self.shared.conns.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!("connections still open after the drain period; closing them");
        }
        // Abort and wait, so the listening sockets are closed when this returns and a
        // restart can bind the same ports.
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The start-up lines: one per host for a few, a count for thousands (each host at debug
/// level), and where TLS-RPT reports go.
fn log_ready(shared: &Shared, config: &ServeConfig) {
    let table = shared.table.load();
    let count = table.hosts().count();
    for entry in table.hosts() {
        if count <= STARTUP_HOSTS_LISTED {
            tracing::info!(host = %entry.host, id = %entry.id, mode = %entry.policy.mode, "policy ready");
        } else {
            tracing::debug!(host = %entry.host, id = %entry.id, mode = %entry.policy.mode, "policy ready");
        }
    }
    if count > STARTUP_HOSTS_LISTED {
        tracing::info!(
            hosts = count,
            "policies ready (each one at debug level: -v)"
        );
    }
    if let Some(intake) = &config.tlsrpt
        && let Some((sink, fallback)) = shared.sinks(intake)
    {
        let fallback = fallback.map(|s| s.describe());
        tracing::info!(path = %intake.intake_path, sink = %sink.describe(), fallback = fallback.as_deref().unwrap_or("none (503, the sender retries)"), "accepting TLS-RPT reports");
    }
}

/// Runs the policy host until `shutdown` completes (e.g. `tokio::signal::ctrl_c()`),
/// reloading on SIGHUP and when the configuration or a certificate file changes.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run(Server::start(config).await?, shutdown).await
}

/// [`serve`] or [`serve_with_sink`] on the listeners systemd passed
/// ([`Server::start_inherited`]): `inherited` comes from
/// `mta_sts_net::activation::Inherited::from_env(&ACTIVATION_ROLES)`, read before the
/// runtime starts its threads.
pub async fn serve_inherited(
    config: ServeConfig,
    sink: Option<Arc<dyn ReportSink>>,
    inherited: Inherited,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let server = Server::start_inherited(config, sink, Arc::new(SystemClock), inherited).await?;
    run(server, shutdown).await
}

/// [`serve`] with reports going to `sink` ([`Server::start_with_sink`]).
pub async fn serve_with_sink(
    config: ServeConfig,
    sink: Arc<dyn ReportSink>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run(Server::start_with_sink(config, sink).await?, shutdown).await
}

/// Runs a started [`Server`] until `shutdown` completes, reloading on SIGHUP and when the
/// configuration or a certificate file changes: what [`serve_inherited`] does once it has
/// started the server. For a front end that needs the server first (its
/// [`Server::table_handle`]).
pub async fn run_server(
    server: Server,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run(server, shutdown).await
}

async fn run(server: Server, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let shared = server.shared.clone();
    #[cfg(unix)]
    let hup = {
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|source| ServeError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                shared.reload_logged().await;
            }
        })
    };
    shutdown.await;
    tracing::info!("shutting down");
    #[cfg(unix)]
    hup.abort();
    server.shutdown().await;
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let Ok(permit) = shared.conns.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    connection(shared, acceptor, tcp, peer).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) {
    let limits = shared.table.load().config().limits.clone();
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            shared.metrics.handshake_failed();
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            shared.metrics.handshake_failed();
            return;
        }
    };
    let (alpn, sni) = {
        let (_, conn) = tls.get_ref();
        (
            conn.alpn_protocol().map(<[u8]>::to_vec),
            conn.server_name().map(normalize_host),
        )
    };
    if alpn.as_deref() == Some(ACME_TLS_ALPN) {
        // RFC 8737 §3: the validation is the handshake itself; close afterwards.
        let mut tls = tls;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return;
    }
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(IdleIo {
        inner: tls,
        activity: activity.clone(),
    });
    let service_shared = shared.clone();
    let sni: Arc<str> = Arc::from(sni.unwrap_or_default());
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = service_shared.clone();
        let sni = sni.clone();
        let in_flight = InFlight::start(service_activity.clone());
        async move {
            let kind = request_kind(&shared, req.uri().path());
            let answer = route(&shared, req, &sni).await;
            shared.metrics.response(kind, answer.status());
            drop(in_flight);
            Ok::<_, Infallible>(answer)
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    // RFC 9113 §6.5.2, §6.9: streams and unread data per connection are bounded; what a
    // stream's handler buffers beyond that is bounded by the intake's own limits.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_send_buf_size(H2_SEND_BUF);
    let builder = match alpn.as_deref() {
        Some(b"h2") => builder.http2_only(),
        _ => builder.http1_only(),
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = ticker.tick() => {
                match closing {
                    // Idle: no bytes moving, or bytes trickling without a request ever
                    // getting through (HTTP/2 has no header read timeout of its own).
                    None if activity.idle_for() >= limits.idle_timeout
                        || activity.no_request_for() >= limits.idle_timeout => {
                        tracing::debug!(%peer, "closing idle connection");
                        closing = Some(Instant::now());
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(since) if since.elapsed() >= limits.idle_timeout.min(DRAIN) => {
                        tracing::debug!(%peer, "dropping connection that did not close");
                        break;
                    }
                    _ => {}
                }
            }
            _ = shutdown.changed(), if closing.is_none() => {
                closing = Some(Instant::now());
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

type Answer = Response<Full<Bytes>>;

/// What a request asks for, for `mta_sts_serve_requests_total`.
fn request_kind(shared: &Shared, path: &str) -> crate::metrics::RequestKind {
    use crate::metrics::RequestKind;
    if path == POLICY_PATH {
        return RequestKind::Policy;
    }
    let table = shared.table.load();
    match &table.config().tlsrpt {
        Some(intake) if path == intake.intake_path => RequestKind::Tlsrpt,
        _ => RequestKind::Other,
    }
}

fn text(status: StatusCode, message: &str) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(POLICY_MEDIA_TYPE));
    response
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// The host a request is for: the URI authority (HTTP/2 `:authority`, HTTP/1.1
/// absolute-form, which overrides `Host`, RFC 9112 §3.2.2) or the `Host` header, without
/// port, lower case, no trailing dot. `None` when there is none, or the `Host` header is
/// repeated or invalid: RFC 9112 §3.2 asks for a 400 then.
fn request_host(req: &Request<Incoming>) -> Option<String> {
    if let Some(authority) = req.uri().authority() {
        return Some(normalize_host(authority.host()));
    }
    let mut values = req.headers().get_all(HOST).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let authority: hyper::http::uri::Authority = value.parse().ok()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    Some(normalize_host(authority.host()))
}

async fn route(shared: &Shared, req: Request<Incoming>, sni: &str) -> Answer {
    let table = shared.table.load_full();
    let Some(host) = request_host(&req) else {
        // RFC 9112 §3.2: no Host, several, or an invalid one → 400 (and HTTP/1.0 without
        // Host: a policy host is chosen by name, so there is nothing to answer either).
        return text(
            StatusCode::BAD_REQUEST,
            "missing or invalid Host header (RFC 9112 §3.2)",
        );
    };
    let Some(entry) = table.host(&host) else {
        tracing::debug!(%host, %sni, "request for an unknown host");
        return text(StatusCode::NOT_FOUND, "unknown host");
    };
    let path = req.uri().path();
    if path == POLICY_PATH {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        // HEAD: the same headers, no body (RFC 9110 §9.3.2). The length is set by hand
        // because the body is empty; HTTP/2 peers reject DATA on a HEAD response.
        let head = req.method() == Method::HEAD;
        let body = if head {
            Bytes::new()
        } else {
            entry.body.clone()
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, shared.policy_type.clone());
        if head {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        }
        if let Some(value) = table
            .config()
            .cache_control
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(CACHE_CONTROL, value);
        }
        return response;
    }
    if let Some(intake) = &table.config().tlsrpt
        && path == intake.intake_path
    {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let (Some((sink, fallback)), Some(gate)) =
            (shared.sinks(intake), shared.intake_gate.load_full())
        else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let h1 = req.version() < hyper::Version::HTTP_2;
        let body_timeout = table.config().limits.body_timeout;
        // A configured domain has its policy host in the table (RFC 8461 §3.2 names it).
        let served = |domain: &str| table.host(&format!("mta-sts.{domain}")).is_some();
        let (status, reason) = crate::intake::handle(
            req,
            intake,
            &gate,
            body_timeout,
            sink,
            fallback,
            &entry.host,
            &served,
            shared.clock.as_ref(),
        )
        .await;
        let mut response = text(status, &reason);
        if status == StatusCode::REQUEST_TIMEOUT && h1 {
            // RFC 9110 §15.5.9: the server SHOULD close; the unread rest of the body would be
            // taken for the next request otherwise.
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // RFC 8460 §5.5: the sender retries; say when (RFC 9110 §10.2.3).
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(crate::intake::RETRY_AFTER_SECS),
            );
        }
        return response;
    }
    text(StatusCode::NOT_FOUND, "not found")
}

/// Size and modification time of every file whose change triggers a reload.
fn fingerprint(table: &Table) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let config = table.config();
    let mut paths: Vec<PathBuf> = Vec::new();
    paths.extend(config.path.iter().cloned());
    paths.extend(config.extra_watch.iter().cloned());
    paths.extend(config.cert_dir.iter().cloned());
    paths.extend(table.files().iter().cloned());
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p)
                .ok()
                .and_then(|m| m.modified().ok().map(|t| (t, m.len())));
            (p, meta)
        })
        .collect()
}

/// With a store and a spool (`[tlsrpt] store` and `spool_dir`): at start and then every
/// `drain_interval`, moves the reports spooled while the store failed into it, so the spool
/// empties by itself (RFC 8460 §5.4: what a sender was told is saved ends up stored). The
/// spool and the interval follow reloads.
async fn drain_loop(shared: Arc<Shared>) {
    let Some(sink) = shared.sink.clone() else {
        return;
    };
    let mut waiting = false;
    loop {
        let intake = shared.table.load().config().tlsrpt.clone();
        let Some(intake) = intake else {
            tokio::time::sleep(crate::config::DEFAULT_DRAIN_INTERVAL).await;
            continue;
        };
        if let Some(dir) = &intake.spool_dir {
            let drained = SpoolSink::new(dir)
                .with_clock(shared.clock.clone())
                .drain_into(sink.as_ref())
                .await;
            if drained.moved() > 0 {
                tracing::info!(spool = %dir.display(), stored = drained.stored, duplicates = drained.duplicates, rejected = drained.rejected, left = drained.left, "spooled TLS-RPT reports moved into the store");
            }
            match &drained.error {
                // Said once, not every pass, while the store stays down.
                Some(error) if !waiting => {
                    tracing::warn!(spool = %dir.display(), left = drained.left, error = %with_causes(error), sink = %sink.describe(), "spooled TLS-RPT reports wait for the store; trying again every {}", humantime::format_duration(intake.drain_interval));
                    waiting = true;
                }
                Some(_) => {}
                None => waiting = false,
            }
        }
        tokio::time::sleep(intake.drain_interval).await;
    }
}

/// Polls the configuration and certificate files; reloads when one changed.
async fn watch_loop(shared: Arc<Shared>) {
    let mut last = fingerprint(&shared.table.load());
    loop {
        let interval = shared.table.load().config().watch_interval;
        tokio::time::sleep(interval).await;
        let now = fingerprint(&shared.table.load());
        if now == last {
            continue;
        }
        tracing::info!("configuration or certificate files changed: reloading");
        if shared.reload_logged().await {
            // The new table may watch other files.
            last = fingerprint(&shared.table.load());
        } else {
            // Remember what was seen, so a broken file is retried only once it changes.
            last = now;
        }
    }
}
