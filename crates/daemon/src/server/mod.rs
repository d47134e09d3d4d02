//! The socketmap server: TCP or UNIX socket, many requests per connection, pipelined
//! requests looked up concurrently with replies written in request order.
//!
//! Behaviour, per connection:
//! - Requests are netstrings `<name> <key>` ([`mta_sts_socketmap::request`]). Each lookup starts as
//!   soon as its request is complete; replies are written strictly in request order, since
//!   the protocol has no request ids. At most `max_pipelined` requests are in flight; more
//!   wait in the socket buffer (backpressure).
//! - A framing error (bad length, missing `,`, request longer than the limit) is logged once
//!   and the connection is closed without a reply for the bad request: the stream position
//!   is lost, so any reply could be taken for the answer to another request. Replies to
//!   earlier, valid requests are still written first. postfix-mta-sts-resolver closes too.
//! - A well-framed request that is not UTF-8 gets `PERM request is not valid UTF-8` and the
//!   connection is closed. The framing is intact, so the reply is unambiguous, and Postfix
//!   logs the reason ("socketmap server permanent error") instead of a bare EOF; either
//!   way Postfix treats the lookup as failed and defers.
//! - A connection with no request in progress for `idle_timeout` is closed, and so is one
//!   whose current request has not arrived completely within `idle_timeout` of its first
//!   byte (a client trickling one byte a second is cut, not kept alive by each byte), or
//!   that stops reading its replies for `idle_timeout`.
//! - An empty request (`0:,`) is answered `PERM empty request` and the connection is
//!   closed. Postfix never sends one (its socketmap client always sends `<name> <key>`), so
//!   it is no lookup and must not count as activity: before, `NOTFOUND ` to `0:,` every few
//!   seconds let a client hold a slot forever. (A request without a space is still a name
//!   with an empty key, answered `NOTFOUND `, as postfix-mta-sts-resolver does.)
//!
//! Connection limits (issue 12.4):
//! - At most `max_connections` connections are served at once, and at most
//!   `max_per_peer` per TCP source address. UNIX-socket connections have no per-peer
//!   limit: every Postfix `smtp(8)` process connects as the same uid (`postfix`), so a
//!   per-uid limit would cap Postfix itself, and the socket mode already says who may
//!   connect; they are protected by eviction alone.
//! - A connection is *idle* when it has no lookup in flight and no reply unwritten (a
//!   partial request counts as idle: Postfix writes whole requests). When a new client
//!   would exceed a limit, the longest-idle connection in that scope (the peer's, or any)
//!   is evicted — closed without a reply owed — rather than refusing the newcomer: Postfix
//!   reconnects on its next lookup, as after `idle_timeout`. With nothing idle, a new
//!   client over the per-peer limit is refused (closed at once), and one over
//!   `max_connections` waits, holding its one descriptor, until a connection ends or turns
//!   idle; further clients wait in the listen backlog.
//!
//! Reload ([`ServerHandle::update`]): zones and the lookup are swapped atomically; queries
//! already started finish with the settings they started with, open connections stay open
//! and use the new settings for their next request.
//!
//! Graceful shutdown ([`SocketmapServer::serve`]'s `shutdown` future): stop accepting,
//! stop reading new requests, let in-flight queries finish and their replies be written for
//! up to `shutdown_timeout`, then close every connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::{Listen, SocketmapConfig, Zones};
use crate::lookup::{InFlight, PolicyLookup, start};
use crate::metrics::{Metrics, bump};
use mta_sts_socketmap::netstring::{Decoder, Limits};
use mta_sts_socketmap::{Key, Reply, Request};

/// Size of one socket read.
const READ_SIZE: usize = 4096;

/// Why the server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listen address failed.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// The address.
        listen: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A UNIX socket path is taken by something that is not a stale socket.
    #[error(
        "cannot listen on unix:{}: {reason}; remove it or choose another path",
        path.display()
    )]
    SocketPathInUse {
        /// The path.
        path: PathBuf,
        /// What is there.
        reason: &'static str,
    },
    /// Giving the socket file its `socket_group` or `socket_mode` failed.
    #[error("unix:{}: {message}", path.display())]
    SocketMode {
        /// The socket path.
        path: PathBuf,
        /// What failed and how to fix it.
        message: String,
    },
}

/// Server tuning, normally from `[socketmap]` ([`ServerOptions::from_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Netstring limits for requests.
    pub limits: Limits,
    /// Close a connection with no request in progress after this long.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections served at once per TCP source address (not applied to UNIX
    /// sockets).
    pub max_per_peer: usize,
    /// Most requests in flight per connection.
    pub max_pipelined: usize,
    /// How long in-flight queries may finish after shutdown starts.
    pub shutdown_timeout: Duration,
    /// File mode of a UNIX socket.
    pub socket_mode: u32,
    /// Group given to a UNIX socket (a name or a number), `None`: the daemon's.
    pub socket_group: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::from_config(&SocketmapConfig::default())
    }
}

impl ServerOptions {
    /// The options of a `[socketmap]` section.
    pub fn from_config(config: &SocketmapConfig) -> Self {
        ServerOptions {
            limits: Limits {
                max_digits: Limits::for_payload(config.max_request).max_digits.max(5),
                max_payload: config.max_request,
            },
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections.max(1),
            max_per_peer: config.max_connections_per_peer.max(1),
            max_pipelined: config.max_pipelined.max(1),
            shutdown_timeout: config.shutdown_timeout,
            socket_mode: config.socket_mode,
            socket_group: config.socket_group.clone(),
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    /// The socket, its path, and whether the socket file is ours to remove at shutdown
    /// (not when systemd passed it: it keeps listening for the next start).
    Unix(UnixListener, PathBuf, bool),
}

/// What a reload may change: the zones and the lookup.
struct Served {
    zones: Zones,
    lookup: Arc<dyn PolicyLookup>,
}

/// [`Slot::state`] of a connection with a lookup in flight or a reply unwritten.
const BUSY: u64 = 0;
/// [`Slot::state`] of a connection chosen for eviction.
const EVICTED: u64 = u64::MAX;

/// A connection's entry in the [`Registry`].
struct Slot {
    /// [`BUSY`], [`EVICTED`], or when it turned idle (see [`Registry::stamp`]). Only the
    /// evictor moves an idle state to `EVICTED` (compare-and-swap), only the connection
    /// moves it to `BUSY` (swap, seeing an eviction it lost to).
    state: AtomicU64,
    /// Wakes the connection when it is evicted.
    evict: Notify,
}

/// The open connections, for the connection limits and eviction (module documentation).
struct Registry {
    epoch: tokio::time::Instant,
    max: usize,
    max_per_peer: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    slots: HashMap<u64, (Option<IpAddr>, Arc<Slot>)>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let (peer, slot) = self.slots.remove(&id)?;
        if let Some(ip) = peer
            && let Some(count) = self.per_peer.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_peer.remove(&ip);
            }
        }
        Some(slot)
    }
}

impl Registry {
    fn new(options: &ServerOptions) -> Registry {
        Registry {
            epoch: tokio::time::Instant::now(),
            max: options.max_connections,
            max_per_peer: options.max_per_peer,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle state for now: milliseconds since the server started, plus one (never
    /// [`BUSY`]).
    fn stamp(&self) -> u64 {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(EVICTED - 2);
        ms.saturating_add(1).min(EVICTED - 1)
    }

    /// Whether a connection from `peer` may be registered now without evicting.
    fn peer_full(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            self.table().per_peer.get(&ip).copied().unwrap_or(0) >= self.max_per_peer
        })
    }

    fn full(&self) -> bool {
        self.table().slots.len() >= self.max
    }

    fn register(&self, peer: Option<IpAddr>) -> (u64, Arc<Slot>) {
        let slot = Arc::new(Slot {
            state: AtomicU64::new(self.stamp()),
            evict: Notify::new(),
        });
        let mut table = self.table();
        let id = table.next_id;
        table.next_id += 1;
        table.slots.insert(id, (peer, Arc::clone(&slot)));
        if let Some(ip) = peer {
            *table.per_peer.entry(ip).or_default() += 1;
        }
        (id, slot)
    }

    /// Evicts the longest-idle connection (of `peer` when given); false when none is idle.
    /// The evicted connection leaves the table at once; it closes a moment later.
    fn evict_longest_idle(&self, peer: Option<IpAddr>) -> bool {
        let mut table = self.table();
        // A candidate may turn busy between the scan and the swap: scan again.
        for _ in 0..8 {
            let oldest = table
                .slots
                .iter()
                .filter(|(_, (ip, _))| peer.is_none() || *ip == peer)
                .filter_map(|(id, (_, slot))| {
                    let state = slot.state.load(Ordering::Acquire);
                    (state != BUSY && state != EVICTED).then_some((state, *id))
                })
                .min();
            let Some((state, id)) = oldest else {
                return false;
            };
            let Some((_, slot)) = table.slots.get(&id) else {
                return false;
            };
            if slot
                .state
                .compare_exchange(state, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if let Some(slot) = table.remove(id) {
                    slot.evict.notify_one();
                }
                return true;
            }
        }
        false
    }

    fn release(&self, id: u64) {
        self.table().remove(id);
    }
}

/// Removes a connection from the [`Registry`] however its task ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.registry.release(self.id);
        self.shared
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything a connection needs.
struct Shared {
    options: ServerOptions,
    served: RwLock<Arc<Served>>,
    /// Bumped by every reload, so a connection re-reads `served` only when it changed.
    generation: AtomicU64,
    metrics: Arc<Metrics>,
    registry: Registry,
}

impl Shared {
    fn served(&self) -> Arc<Served> {
        Arc::clone(&self.served.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A connection's copy of what the server serves, refreshed after a reload.
struct ServedCopy {
    served: Arc<Served>,
    generation: u64,
}

impl ServedCopy {
    fn new(shared: &Shared) -> ServedCopy {
        let generation = shared.generation.load(Ordering::Acquire);
        ServedCopy {
            served: shared.served(),
            generation,
        }
    }

    /// The current zones and lookup: one atomic load per request, no lock.
    fn current(&mut self, shared: &Shared) -> &Served {
        if shared.generation.load(Ordering::Acquire) != self.generation {
            *self = ServedCopy::new(shared);
        }
        &self.served
    }
}

/// A handle to a bound or running server: swaps zones and lookup (reload), reads metrics.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Replaces the zones and the lookup used by requests from now on.
    pub fn update(&self, zones: Zones, lookup: Arc<dyn PolicyLookup>) {
        let served = Arc::new(Served { zones, lookup });
        *self
            .shared
            .served
            .write()
            .unwrap_or_else(|p| p.into_inner()) = served;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current zone table.
    pub fn zones(&self) -> Zones {
        self.shared.served().zones.clone()
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }
}

/// A bound socketmap server; run it with [`SocketmapServer::serve`].
pub struct SocketmapServer {
    listener: Listener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SocketmapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketmapServer")
            .field("listen", &self.listen().to_string())
            .finish_non_exhaustive()
    }
}

impl SocketmapServer {
    /// Binds `listen`. A UNIX socket gets `options.socket_group` and `options.socket_mode`; a stale socket file (one
    /// nobody accepts on) is replaced, anything else at the path is an error.
    pub async fn bind(
        listen: &Listen,
        options: ServerOptions,
        zones: Zones,
        lookup: Arc<dyn PolicyLookup>,
    ) -> Result<Self, ServerError> {
        Self::bind_with_metrics(listen, options, zones, lookup, Arc::default()).await
    }

    /// [`SocketmapServer::bind`], counting into `metrics` (shared with `/metrics`).
    pub async fn bind_with_metrics(
        listen: &Listen,
        options: ServerOptions,
        zones: Zones,
        lookup: Arc<dyn PolicyLookup>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let listener = match listen {
            Listen::Tcp(addr) => {
                Listener::Tcp(bind_tcp(*addr).map_err(|source| ServerError::Bind {
                    listen: listen.to_string(),
                    source,
                })?)
            }
            Listen::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
                    listen: listen.to_string(),
                    source,
                })?;
                crate::socket_path::set_group_and_mode(
                    path,
                    options.socket_group.as_deref(),
                    options.socket_mode,
                )
                .map_err(|message| ServerError::SocketMode {
                    path: path.clone(),
                    message,
                })?;
                Listener::Unix(listener, path.clone(), true)
            }
        };
        tracing::info!(listen = %listen, "socketmap server listening");
        Ok(Self::serving(listener, options, zones, lookup, metrics))
    }

    /// [`SocketmapServer::bind_with_metrics`] on a listener systemd passed (socket
    /// activation, `mta_sts_net::activation`): `[socketmap] listen`, `socket_mode` and
    /// `socket_group` are the `.socket` unit's business then, and a UNIX socket file is
    /// left in place at shutdown.
    pub fn inherited(
        listener: mta_sts_net::activation::InheritedListener,
        options: ServerOptions,
        zones: Zones,
        lookup: Arc<dyn PolicyLookup>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        use mta_sts_net::activation::InheritedListener;
        let listen = listener.to_string();
        let bind_error = |source| ServerError::Bind {
            listen: listen.clone(),
            source,
        };
        let listener = match listener {
            InheritedListener::Tcp(l) => {
                Listener::Tcp(TcpListener::from_std(l).map_err(bind_error)?)
            }
            InheritedListener::Unix(l) => {
                let path = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                    .unwrap_or_default();
                Listener::Unix(UnixListener::from_std(l).map_err(bind_error)?, path, false)
            }
        };
        Ok(Self::serving(listener, options, zones, lookup, metrics))
    }

    fn serving(
        listener: Listener,
        options: ServerOptions,
        zones: Zones,
        lookup: Arc<dyn PolicyLookup>,
        metrics: Arc<Metrics>,
    ) -> Self {
        SocketmapServer {
            listener,
            shared: Arc::new(Shared {
                registry: Registry::new(&options),
                options,
                served: RwLock::new(Arc::new(Served { zones, lookup })),
                generation: AtomicU64::new(0),
                metrics,
            }),
        }
    }

    /// A handle for reloads and metrics.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The TCP address actually bound (useful with port 0), `None` for a UNIX socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Where the server listens.
    pub fn listen(&self) -> Listen {
        match &self.listener {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) => Listen::Tcp(addr),
                Err(_) => Listen::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
            },
            Listener::Unix(_, path, _) => Listen::Unix(path.clone()),
        }
    }

    /// Serves until `shutdown` completes, then drains (see the module documentation).
    pub async fn serve<F>(self, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        let SocketmapServer { listener, shared } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        // An accepted client waiting for a free slot (every connection busy).
        let mut waiting: Option<(Stream, String, Option<IpAddr>)> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!(error = %err, "socketmap connection task failed");
                    }
                }
                // Nothing tells when a connection turns idle: look again shortly.
                () = tokio::time::sleep(ADMIT_RETRY), if waiting.is_some() => {}
                accepted = accept(&listener), if waiting.is_none() => match accepted {
                    Ok((stream, peer, ip)) => {
                        let registry = &shared.registry;
                        if registry.peer_full(ip) {
                            if registry.evict_longest_idle(ip) {
                                bump(&shared.metrics.connections_evicted);
                            } else {
                                tracing::info!(%peer, limit = shared.options.max_per_peer, "socketmap connection refused: per-peer limit reached and none of the peer's connections is idle");
                                bump(&shared.metrics.connections_refused);
                                continue;
                            }
                        }
                        waiting = Some((stream, peer, ip));
                    }
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "socketmap accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            if let Some((stream, peer, ip)) = waiting.take() {
                let registry = &shared.registry;
                let admit = !registry.full() || {
                    let evicted = registry.evict_longest_idle(None);
                    if evicted {
                        bump(&shared.metrics.connections_evicted);
                    }
                    evicted
                };
                if !admit {
                    waiting = Some((stream, peer, ip));
                    continue;
                }
                let (id, slot) = registry.register(ip);
                let shared = Arc::clone(&shared);
                let stop = stop_rx.clone();
                bump(&shared.metrics.connections_total);
                bump(&shared.metrics.connections_open);
                let registered = Registered {
                    shared: Arc::clone(&shared),
                    id,
                };
                match stream {
                    Stream::Tcp(s) => connections.spawn(async move {
                        connection(s, &peer, &shared, &slot, stop).await;
                        drop(registered);
                    }),
                    Stream::Unix(s) => connections.spawn(async move {
                        connection(s, &peer, &shared, &slot, stop).await;
                        drop(registered);
                    }),
                };
            }
        }
        drop(waiting);
        // Stop accepting: close the listener (and remove a UNIX socket file).
        if let Listener::Unix(_, path, true) = &listener
            && let Err(err) = std::fs::remove_file(path)
        {
            tracing::debug!(path = %path.display(), error = %err, "cannot remove socket file");
        }
        drop(listener);
        let open = connections.len();
        tracing::info!(
            connections = open,
            "socketmap server stopping; draining in-flight queries"
        );
        // Connections stop reading new requests and finish what is in flight.
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(shared.options.shutdown_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                timeout = ?shared.options.shutdown_timeout,
                "shutdown timeout reached; closing connections with queries in flight"
            );
            connections.shutdown().await;
        }
        tracing::info!("socketmap server stopped");
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// How often a client waiting for a free slot looks for an idle connection to evict.
const ADMIT_RETRY: Duration = Duration::from_millis(20);

/// Accepts one client: the stream, the peer for logs, the source address (TCP only).
async fn accept(listener: &Listener) -> io::Result<(Stream, String, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
            // An IPv4-mapped IPv6 source is the IPv4 peer.
            let ip = peer.ip().to_canonical();
            Ok((Stream::Tcp(stream), peer.to_string(), Some(ip)))
        }
        Listener::Unix(l, ..) => {
            let (stream, _) = l.accept().await?;
            Ok((Stream::Unix(stream), "unix".to_owned(), None))
        }
    }
}

/// Listen backlog: the kernel caps it at `net.core.somaxconn`. Larger than tokio's default
/// so that a burst of Postfix `smtp` processes connecting at once is not dropped (a dropped
/// handshake costs the client a 1 s SYN retransmission).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (restart while old
/// connections linger in TIME_WAIT).
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn remove_stale_socket(path: &Path) -> Result<(), ServerError> {
    use crate::socket_path::{SocketKind, SocketPathError, clear_stale};
    clear_stale(path, SocketKind::Stream)
        .await
        .map_err(|e| match e {
            SocketPathError::NotASocket => ServerError::SocketPathInUse {
                path: path.to_owned(),
                reason: "a file that is not a socket exists there",
            },
            SocketPathError::InUse => ServerError::SocketPathInUse {
                path: path.to_owned(),
                reason: "another process is listening on it",
            },
            SocketPathError::Remove(source) => ServerError::Bind {
                listen: format!("unix:{}", path.display()),
                source,
            },
        })
}

/// A reply in the making, queued in request order.
enum Pending {
    Ready(Reply),
    Lookup(InFlight),
}

impl Pending {
    /// The reply now if it needs no waiting.
    fn into_ready(self) -> Result<Reply, InFlight> {
        match self {
            Pending::Ready(reply) => Ok(reply),
            Pending::Lookup(in_flight) => in_flight.into_ready(),
        }
    }
}

/// Waits for a started lookup, counting budget overruns.
async fn finish(in_flight: InFlight, metrics: &Metrics) -> Reply {
    let (reply, exceeded) = in_flight.finish_reporting().await;
    if exceeded {
        bump(&metrics.budget_exceeded);
    }
    reply
}

/// What to do with one request payload.
enum Handled {
    Queue(Pending),
    /// Queue the reply, then stop reading.
    QueueAndClose(Pending),
}

fn handle(payload: &[u8], peer: &str, served: &Served) -> Handled {
    if payload.is_empty() {
        // Not a request Postfix sends (module documentation): no lookup, no keep-alive. At
        // debug level: a client sending thousands of them must not flood the log.
        tracing::debug!(%peer, "empty socketmap request; replying PERM and closing the connection");
        return Handled::QueueAndClose(Pending::Ready(Reply::Perm("empty request".to_owned())));
    }
    let request = match Request::parse(payload) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(%peer, error = %err, "bad socketmap request; replying PERM and closing the connection");
            return Handled::QueueAndClose(Pending::Ready(Reply::Perm(
                "request is not valid UTF-8".to_owned(),
            )));
        }
    };
    match request.key() {
        Key::Skip(reason) => {
            tracing::debug!(%peer, name = request.name, key = request.key, answer = "NOTFOUND ", reason = reason.as_str(), "query without lookup");
            Handled::Queue(Pending::Ready(Reply::NotFound))
        }
        Key::Domain(domain) => {
            let zone = served.zones.get(request.name).clone();
            tracing::trace!(%peer, name = request.name, %domain, "lookup");
            Handled::Queue(Pending::Lookup(start(
                Arc::clone(&served.lookup),
                domain,
                zone,
            )))
        }
    }
}

/// Serves one connection until EOF, error, idle timeout or shutdown.
///
/// One loop, no helper task: requests are decoded as bytes arrive, replies known at once
/// (cached policies, skipped keys) are encoded straight into the output buffer, lookups
/// that need I/O run in their own tasks and are awaited in request order while reading
/// goes on. The idle timer is armed once and only moved when it fires, so a busy
/// connection does not touch the timer wheel per request.
///
/// Longer than our ~120-line rule, on purpose: every branch of the one `select!` shares the
/// loop's state (the decoder, the reply queue, the `head` future that borrows `shared`, the
/// pinned timer and stop signal). Split into helpers, that state would move into a struct
/// whose borrow of `head` ties every field together; this loop is the hot path the
/// socketmap benchmarks measure, and it reads best as one piece.
async fn connection<S>(
    mut stream: S,
    peer: &str,
    shared: &Shared,
    slot: &Slot,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    // Reads happen only inside the `select!` below and writes only outside it, so the
    // stream needs no split (and no lock).
    let idle = shared.options.idle_timeout;
    let max_pipelined = shared.options.max_pipelined;
    let mut served = ServedCopy::new(shared);
    let mut decoder = Decoder::new(shared.options.limits);
    let mut buf = vec![0u8; READ_SIZE];
    let mut out: Vec<u8> = Vec::with_capacity(256);
    // Replies not yet known, in request order; `head` is the oldest, being awaited.
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut head: Option<Pin<Box<dyn Future<Output = Reply> + Send + '_>>> = None;
    // No more requests are read: a bad request, EOF, shutdown (perhaps already begun).
    let mut closing = *stop.borrow_and_update();
    // Last byte read or reply written, and when the request now arriving began.
    let mut last_activity = tokio::time::Instant::now();
    let mut request_started: Option<tokio::time::Instant> = None;
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    // Registered once, not once per request.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    // Whether `slot` says idle; registered idle.
    let mut marked_idle = true;

    loop {
        // Every complete request: answer or start its lookup.
        while !closing && queue.len() + usize::from(head.is_some()) < max_pipelined {
            match decoder.decode() {
                Ok(Some(payload)) => {
                    request_started = None;
                    let (pending, close) = match handle(&payload, peer, served.current(shared)) {
                        Handled::Queue(p) => (p, false),
                        Handled::QueueAndClose(p) => (p, true),
                    };
                    closing = close;
                    if head.is_none() && queue.is_empty() {
                        // Nothing ahead of it: a reply known now goes straight out.
                        match pending.into_ready() {
                            Ok(reply) => write_reply(&mut out, &reply, &shared.metrics),
                            Err(in_flight) => queue.push_back(Pending::Lookup(in_flight)),
                        }
                    } else {
                        queue.push_back(pending);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%peer, error = %err, "malformed socketmap netstring; closing the connection");
                    closing = true;
                }
            }
        }
        // Replies now known, in order.
        if head.is_none() {
            while let Some(next) = queue.pop_front() {
                match next.into_ready() {
                    Ok(reply) => write_reply(&mut out, &reply, &shared.metrics),
                    Err(in_flight) => {
                        head = Some(Box::pin(finish(in_flight, &shared.metrics)));
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            if !write_out(&mut stream, &out, idle, peer).await {
                return;
            }
            out.clear();
            last_activity = tokio::time::Instant::now();
        }
        if head.is_none() && queue.is_empty() && closing {
            let _ = stream.shutdown().await;
            return;
        }
        if !marked_idle && head.is_none() && queue.is_empty() {
            // Nothing owed to the client: evictable, longest-idle first.
            slot.state.store(shared.registry.stamp(), Ordering::Release);
            marked_idle = true;
        }
        let reading = !closing && queue.len() + usize::from(head.is_some()) < max_pipelined;
        tokio::select! {
            biased;
            _ = &mut stopped, if !closing => {
                closing = true;
            }
            () = slot.evict.notified() => {
                if slot.state.load(Ordering::Acquire) == EVICTED {
                    tracing::debug!(%peer, "idle socketmap connection evicted to make room");
                    return;
                }
            }
            reply = async {
                match head.as_mut() {
                    Some(head) => head.await,
                    None => std::future::pending().await,
                }
            }, if head.is_some() => {
                head = None;
                write_reply(&mut out, &reply, &shared.metrics);
            }
            read = stream.read(&mut buf), if reading => match read {
                Ok(0) => {
                    if decoder.buffered() > 0 {
                        tracing::debug!(%peer, buffered = decoder.buffered(), "client closed the connection inside a request");
                    }
                    closing = true;
                }
                Ok(n) => {
                    if slot.state.swap(BUSY, Ordering::AcqRel) == EVICTED {
                        // Evicted while these bytes arrived: the client sees EOF and
                        // reconnects.
                        tracing::debug!(%peer, "socketmap connection evicted to make room");
                        return;
                    }
                    marked_idle = false;
                    let now = tokio::time::Instant::now();
                    last_activity = now;
                    if decoder.buffered() == 0 {
                        request_started = Some(now);
                    }
                    decoder.feed(buf.get(..n).unwrap_or_default());
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "socketmap read failed");
                    closing = true;
                }
            },
            () = &mut timer, if reading => {
                // A partial request must be complete within `idle` of its first byte; an
                // idle connection is closed `idle` after its last activity.
                let deadline = match request_started.filter(|_| decoder.buffered() > 0) {
                    Some(started) => started + idle,
                    None => last_activity + idle,
                };
                if tokio::time::Instant::now() < deadline {
                    timer.as_mut().reset(deadline);
                } else if decoder.buffered() > 0 {
                    tracing::info!(%peer, buffered = decoder.buffered(), timeout = ?idle, "socketmap request not completed in time; closing the connection");
                    return;
                } else if head.is_none() && queue.is_empty() {
                    tracing::debug!(%peer, "idle socketmap connection closed");
                    return;
                } else {
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
            }
        }
    }
}

/// Appends the netstring of `reply` to `out` and counts it.
fn write_reply(out: &mut Vec<u8>, reply: &Reply, metrics: &Metrics) {
    metrics.count_reply(reply);
    reply.encode_into(out);
}

/// Writes `bytes`; false when the connection is to be dropped (an error, or a client that
/// has not read its replies for `idle`). A write the socket takes at once arms no timer.
async fn write_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    idle: Duration,
    peer: &str,
) -> bool {
    let done = {
        let mut attempt = std::pin::pin!(wr.write(bytes));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match attempt.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(n)) => n,
            std::task::Poll::Ready(Err(err)) => {
                tracing::debug!(%peer, error = %err, "socketmap write failed");
                return false;
            }
            std::task::Poll::Pending => 0,
        }
    };
    let rest = bytes.get(done..).unwrap_or_default();
    if rest.is_empty() {
        return true;
    }
    match tokio::time::timeout(idle, wr.write_all(rest)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "socketmap write failed");
            false
        }
        Err(_) => {
            tracing::debug!(%peer, "client does not read its replies; closing");
            false
        }
    }
}
