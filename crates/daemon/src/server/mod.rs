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
//!
//! The pieces: `registry` (the open connections, the limits and eviction), `listen` (the
//! listener and accepting a client), `connection` (one connection's request loop).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Listen, SocketmapConfig, Zones};
use crate::lookup::PolicyLookup;
use crate::metrics::{Metrics, bump};
use mta_sts_socketmap::netstring::Limits;

use connection::connection;
use listen::{Listener, Stream, accept, bind_tcp, remove_stale_socket};
use registry::{Registered, Registry};

mod connection;
mod listen;
mod registry;

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

/// What a reload may change: the zones and the lookup.
struct Served {
    zones: Zones,
    lookup: Arc<dyn PolicyLookup>,
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

/// How often a client waiting for a free slot looks for an idle connection to evict.
const ADMIT_RETRY: Duration = Duration::from_millis(20);
