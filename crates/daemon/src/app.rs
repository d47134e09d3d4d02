//! The running daemon: configuration → store, resolver, socketmap server and HTTP API;
//! reload, graceful shutdown, systemd notification.
//!
//! - **Start** ([`Daemon::start`]): opens the store of `[cache]`, builds the
//!   [`Resolver`] of `[resolver]`, loads unexpired stored policies into memory up to
//!   `[cache] max_memory` (warm start: after a restart, cached domains are answered without
//!   any HTTPS fetch; those left in the store are read from it on lookup), starts the
//!   proactive refresher (RFC 8461 §3.3, §10.2), raises the soft open-files limit to the hard
//!   one and splits it between the listeners ([`connection_caps`]: the socketmap first, the
//!   HTTP API gets what is left), binds the socketmap and HTTP listeners.
//! - **Socket activation** ([`Daemon::start_with`], [`run`]): a listener systemd passed
//!   (`$LISTEN_FDS`, named by [`ACTIVATION_ROLES`]) is served instead of binding its
//!   `listen` key; the others are bound as configured.
//! - **Reload** ([`Daemon::reload`], SIGHUP in [`run`]): a new configuration replaces, without
//!   dropping a connection, `[defaults]` and `[zones.*]` (budgets included), `[resolver]`,
//!   `cache.refresh`, `cache.refresh_concurrency`, `cache.max_memory` and `[tlsrpt] events`.
//!   A changed `[resolver]` (or `cache.refresh`, `cache.refresh_concurrency`,
//!   `cache.max_memory`) builds a new resolver
//!   over the *same* store and warm-starts it; an unchanged one is kept with its memory
//!   cache. Everything else needs a restart: every `[socketmap]` and
//!   `[http]` key, `[cache] store`, `path`, `redis_url`, the Sentinel and PostgreSQL keys,
//!   `[tlsrpt] socket`, `socket_mode`,
//!   `flush_interval` and `[tlsrpt.send]`. [`restart_pending`] compares those with the
//!   values the running daemon started with (not with the last file loaded, so setting a
//!   key back to the value in use is no change) and each changed key is logged by name. A
//!   configuration that does not load is refused with a log line and the old one stays.
//! - **Shutdown** ([`Daemon::shutdown`], SIGTERM/SIGINT): `/healthz` turns 503, the
//!   socketmap server stops accepting and drains in-flight queries for up to
//!   `shutdown_timeout`, then the TLS-RPT tasks stop and the last counts are flushed
//!   ([`crate::tlsrpt`]), then the HTTP API stops.
//!
//! TLS-RPT ([`crate::tlsrpt`], `[tlsrpt]`): the counters survive reloads; a reload flushes
//! them and applies `events`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use mta_sts_net::activation::{Inherited, Plan, Role};
use mta_sts_net::with_causes;
use mta_sts_net::{Clock, ConnectTo, SystemClock};
use mta_sts_resolver::Resolver;
use mta_sts_resolver::store::sqlite::Synchronous;
use mta_sts_resolver::store::{
    MemoryStore, PostgresOptions, PostgresStore, RedisOptions, RedisSentinelOptions, RedisStore,
    SqliteOptions, SqliteStore, Store,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH, Listen, StoreKind};
use crate::dane::DaneClient;
use crate::metrics::{Metrics, bump};
use crate::notify;
use crate::resolver_lookup::ResolverLookup;
use crate::server::{ServerError, ServerOptions, SocketmapServer};
use crate::state::Refresher;
pub use crate::state::{Core, Generation};
use crate::tlsrpt::{ProbeSetup, Prober, Recorder, TlsrptError, TlsrptService};

/// Why the daemon cannot start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The policy store cannot be opened; the store's error is the source.
    #[error("cannot open the {kind} policy store")]
    Store {
        /// `sqlite`, `redis`, `redis_sentinel`, `postgres`.
        kind: &'static str,
        /// Why.
        #[source]
        source: mta_sts_resolver::store::StoreError,
    },
    /// The SQLite policy store's path names a directory (`[cache] path`).
    #[error("cannot open the sqlite policy store: {}: is a directory, not a database file", .path.display())]
    StoreIsDirectory {
        /// `[cache] path`.
        path: PathBuf,
    },
    /// The directory of the SQLite policy store takes no new files (SQLite's journal needs
    /// them); the I/O error is the source.
    #[error("cannot open the sqlite policy store: {}: cannot create files in {}", .path.display(), .dir.display())]
    StoreDirNotWritable {
        /// `[cache] path`.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configured file, group or socket path does not work (what
    /// [`check`] adds to parsing); the message names the key and the fix.
    #[error("{message}")]
    Unusable {
        /// What is wrong, with the key.
        message: String,
    },
    /// The resolver cannot be set up (DNS configuration, CA file).
    #[error("cannot set up the resolver: {0}")]
    Resolver(#[source] mta_sts_resolver::SetupError),
    /// A `[resolver] connect_to` value is malformed.
    #[error("cannot set up the resolver: {0}")]
    ConnectTo(#[source] mta_sts_net::ConnectToError),
    /// The socketmap server cannot listen.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The TLS-RPT collector socket or `[tlsrpt.send]` cannot be set up.
    #[error(transparent)]
    Tlsrpt(#[from] TlsrptError),
    /// The HTTP API cannot listen.
    #[error("cannot listen on {listen} for the HTTP API: {source}")]
    Http {
        /// The address.
        listen: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the configuration comes from, for start and SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`: the file must exist.
    Explicit(PathBuf),
    /// The default path: a missing file means every default.
    Default(PathBuf),
}

impl Default for ConfigSource {
    fn default() -> Self {
        ConfigSource::Default(PathBuf::from(DEFAULT_CONFIG_PATH))
    }
}

impl ConfigSource {
    /// `Explicit(path)` when given, else the default path.
    pub fn from_arg(path: Option<&Path>) -> Self {
        match path {
            Some(p) => ConfigSource::Explicit(p.to_owned()),
            None => ConfigSource::default(),
        }
    }

    /// The path read.
    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::Explicit(p) | ConfigSource::Default(p) => p,
        }
    }

    /// Loads the configuration: a missing default file is the all-defaults configuration,
    /// a missing explicit file an error.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::Explicit(path) => Config::load(path),
            ConfigSource::Default(path) => match Config::load(path) {
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(Config::default())
                }
                other => other,
            },
        }
    }
}

/// The `[resolver]`, `cache.refresh`, `cache.refresh_concurrency` and `cache.max_memory`
/// settings as the resolver wants them.
pub fn resolver_config(config: &Config) -> Result<mta_sts_resolver::ResolverConfig, DaemonError> {
    let connect_to = config
        .resolver
        .connect_to
        .iter()
        .map(|c| c.parse::<ConnectTo>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(DaemonError::ConnectTo)?;
    Ok(mta_sts_resolver::ResolverConfig {
        nameservers: config.resolver.nameservers.clone(),
        ca_file: config.resolver.ca_file.clone(),
        connect_to,
        timeout: config.resolver.timeout,
        refresh_interval: config.cache.refresh,
        refresh_concurrency: config.cache.refresh_concurrency,
        max_memory: config.cache.max_memory,
        ..mta_sts_resolver::ResolverConfig::default()
    })
}

/// The SQLite store's durability from `[cache] flush_window` (zero: fsync every commit).
fn sqlite_options(cache: &crate::config::CacheConfig) -> SqliteOptions {
    let synchronous = if cache.flush_window.is_zero() {
        Synchronous::Full
    } else {
        Synchronous::Bounded {
            window: cache.flush_window,
        }
    };
    SqliteOptions {
        synchronous,
        ..SqliteOptions::default()
    }
}

/// Opens the store of `[cache]`. Redis (direct or through Sentinel) and PostgreSQL connect
/// lazily, so a daemon starts while they are down (lookups then run from memory).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, DaemonError> {
    let cache = &config.cache;
    Ok(match cache.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sqlite => Arc::new(
            SqliteStore::open_with(&cache.path, sqlite_options(cache))
                .await
                .map_err(|source| DaemonError::Store {
                    kind: "sqlite",
                    source,
                })?,
        ),
        StoreKind::Redis => {
            let url = cache.redis_url.clone().unwrap_or_default();
            Arc::new(RedisStore::new(RedisOptions::new(url)).map_err(|source| {
                DaemonError::Store {
                    kind: "redis",
                    source,
                }
            })?)
        }
        StoreKind::RedisSentinel => {
            let mut options = RedisSentinelOptions::new(
                cache.sentinels.clone(),
                cache.sentinel_master.clone().unwrap_or_default(),
            );
            options.db = cache.redis_db;
            options.password = cache.redis_password.as_ref().map(|p| p.0.clone());
            options.sentinel_password = cache.sentinel_password.as_ref().map(|p| p.0.clone());
            Arc::new(
                RedisStore::with_sentinel(options).map_err(|source| DaemonError::Store {
                    kind: "redis_sentinel",
                    source,
                })?,
            )
        }
        StoreKind::Postgres => {
            let url = cache.postgres_url.clone().unwrap_or_default();
            Arc::new(
                PostgresStore::new(PostgresOptions::new(url)).map_err(|source| {
                    DaemonError::Store {
                        kind: "postgres",
                        source,
                    }
                })?,
            )
        }
    })
}

/// What `mta-sts daemon --check-config` checks beyond parsing, so that "valid" means "will
/// start" (issues 12.12, 18.2): loads everything [`Daemon::start`] loads and binds nothing.
///
/// - the store opens (SQLite: the file opens, its directory is writable for the journal;
///   Redis: the URL parses; Sentinel: the addresses parse; PostgreSQL: the URL parses; the
///   servers themselves may be down, as at start);
/// - the resolver builds: the DNS configuration and `[resolver] ca_file` (PEM
///   certificates) load;
/// - `[tlsrpt]` files load ([`crate::tlsrpt::check_files`]);
/// - every UNIX socket path (socketmap, HTTP, collector) is in an existing directory and
///   holds no file other than a socket (a live socket is fine: the running daemon's);
/// - every `socket_group` names a group of `/etc/group` (or is a number).
pub async fn check(config: &Config) -> Result<(), DaemonError> {
    if config.cache.store == StoreKind::Sqlite && config.cache.path.is_dir() {
        return Err(DaemonError::StoreIsDirectory {
            path: config.cache.path.clone(),
        });
    }
    // Opening creates the directory and the file, as the start does.
    let store = open_store(config).await?;
    if config.cache.store == StoreKind::Sqlite {
        check_writable_dir(&config.cache.path)?;
    }
    Resolver::new(resolver_config(config)?, store, Arc::new(SystemClock))
        .map_err(DaemonError::Resolver)?;
    crate::tlsrpt::check_files(&config.tlsrpt, &config.resolver)?;
    ProbeSetup::new(&config.tlsrpt, &config.resolver, Arc::new(SystemClock))?;
    use crate::socket_path::{SocketKind, SocketPathError, check_stale, group_id};
    for (what, group) in [
        ("[socketmap] socket_group", &config.socketmap.socket_group),
        ("[tlsrpt] socket_group", &config.tlsrpt.socket_group),
    ] {
        if let Some(group) = group {
            group_id(group).map_err(|message| DaemonError::Unusable {
                message: format!("{what}: {message}"),
            })?;
        }
    }
    let mut paths = Vec::new();
    for (what, listen) in [
        ("[socketmap] listen", &config.socketmap.listen),
        ("[http] listen", &config.http.listen),
    ] {
        if let Listen::Unix(path) = listen {
            paths.push((what, path.as_path(), SocketKind::Stream));
        }
    }
    if let Some(path) = &config.tlsrpt.socket {
        paths.push(("[tlsrpt] socket", path.as_path(), SocketKind::Datagram));
    }
    for (what, path, kind) in paths {
        let invalid = |message: String| DaemonError::Unusable {
            message: format!("{what} {}: {message}", path.display()),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
            // The collector creates its directory.
            && kind == SocketKind::Stream
        {
            return Err(invalid(format!(
                "directory {} does not exist",
                parent.display()
            )));
        }
        match check_stale(path, kind).await {
            Ok(_) | Err(SocketPathError::InUse) => {}
            Err(e) => return Err(invalid(e.to_string())),
        }
    }
    Ok(())
}

/// The SQLite store needs its directory writable (journal files), not only the file.
fn check_writable_dir(db: &Path) -> Result<(), DaemonError> {
    let dir = match db.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let probe = dir.join(format!(".mta-sts-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(DaemonError::StoreDirNotWritable {
            path: db.to_path_buf(),
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// Builds the lookup of `config` over `store`, warm-starts it and starts its refresher.
async fn build_generation(
    config: Config,
    store: Arc<dyn Store>,
    metrics: &Arc<Metrics>,
    recorder: &Arc<Recorder>,
    prober: &Arc<Prober>,
    clock: &Arc<dyn Clock>,
) -> Result<Generation, DaemonError> {
    let resolver = Resolver::new(resolver_config(&config)?, store, Arc::clone(clock))
        .map_err(DaemonError::Resolver)?;
    let loaded = resolver.warm_start().await;
    tracing::info!(
        policies = loaded,
        "warm start: cached policies loaded from the store"
    );
    let refresher = Arc::new(Refresher::start(&resolver));
    let lookup = lookup_for(&config, resolver, metrics, recorder, prober);
    Ok(Generation {
        config,
        lookup,
        refresher,
    })
}

fn lookup_for(
    config: &Config,
    resolver: Resolver,
    metrics: &Arc<Metrics>,
    recorder: &Arc<Recorder>,
    prober: &Arc<Prober>,
) -> ResolverLookup {
    let dane = DaneClient::new(
        &config.resolver.nameservers,
        config.resolver.timeout,
        config.resolver.dane_require_ad,
    );
    ResolverLookup::new(resolver)
        .with_dane(dane)
        .with_metrics(Arc::clone(metrics))
        .with_tlsrpt(Arc::clone(recorder))
        .with_prober(Arc::clone(prober))
}

/// Descriptors kept free for everything but client connections: listeners, the store, the
/// DNS and HTTPS sockets of lookups in flight, the TLS-RPT files, the runtime's own.
pub const FD_RESERVE: usize = 256;

/// Fewest HTTP API connections kept when the socketmap's must be lowered to fit.
const MIN_HTTP_CONNECTIONS: usize = 4;

/// How many connections each listener may hold (see [`connection_caps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Socketmap connections.
    pub socketmap: usize,
    /// HTTP API connections.
    pub http: usize,
}

/// Splits the open-files limit `nofile` (`None`: unlimited) so that the socketmap's
/// `max_connections` plus [`FD_RESERVE`] always fit and the HTTP API gets only what is
/// left, up to its own `max_connections` (issue 12.3: the API must never starve the
/// socketmap of descriptors). A socketmap cap that does not fit is lowered, keeping room
/// for a few API connections.
pub fn connection_caps(nofile: Option<u64>, socketmap: usize, http: usize) -> ConnectionCaps {
    let Some(limit) = nofile.map(|n| usize::try_from(n).unwrap_or(usize::MAX)) else {
        return ConnectionCaps { socketmap, http };
    };
    let room = limit.saturating_sub(FD_RESERVE);
    let socketmap_cap = socketmap
        .min(room.saturating_sub(MIN_HTTP_CONNECTIONS))
        .max(1);
    let http_cap = http.min(room.saturating_sub(socketmap_cap)).max(1);
    if socketmap_cap < socketmap {
        tracing::warn!(
            nofile = limit,
            configured = socketmap,
            effective = socketmap_cap,
            "[socketmap] max_connections does not fit under the open-files limit; lowered (raise LimitNOFILE)"
        );
    }
    if http_cap < http {
        tracing::info!(
            nofile = limit,
            configured = http,
            effective = http_cap,
            "[http] max_connections lowered to keep descriptors for the socketmap"
        );
    }
    ConnectionCaps {
        socketmap: socketmap_cap,
        http: http_cap,
    }
}

/// Raises the soft open-files limit to the hard one (systemd's `LimitNOFILE=` sets both;
/// a shell often leaves the soft one at 1024) and returns the soft limit now in force,
/// `None` when unlimited.
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(e) => {
                tracing::debug!(error = %e, "cannot raise the soft open-files limit");
            }
        }
    }
    limit.current
}

/// A running daemon (see the module documentation).
#[derive(Debug)]
pub struct Daemon {
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    socketmap: JoinHandle<()>,
    http: JoinHandle<()>,
    socketmap_listen: Listen,
    http_addr: Option<SocketAddr>,
}

impl Daemon {
    /// Opens the store, builds the resolver, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Daemon::start`] with the clock every time rule of the daemon reads: the policy
    /// cache's ages, the TLS-RPT event stamps and the report schedule (tests move it across
    /// UTC midnight).
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Daemon, DaemonError> {
        Self::start_with(config, clock, Inherited::none()).await
    }

    /// [`Daemon::start_with_clock`] serving on the listeners systemd passed (socket
    /// activation, [`ACTIVATION_ROLES`]): each one passed replaces the binding of its
    /// `listen` key (and a UNIX socket's mode and group, which the `.socket` unit sets);
    /// one not passed is bound from the configuration.
    pub async fn start_with(
        config: Config,
        clock: Arc<dyn Clock>,
        mut inherited: Inherited,
    ) -> Result<Daemon, DaemonError> {
        let metrics = Arc::new(Metrics::default());
        let store = open_store(&config).await?;
        let recorder = Arc::new(Recorder::new());
        let prober = Arc::new(Prober::new(
            Arc::clone(&recorder),
            Arc::clone(&metrics),
            Arc::clone(&clock),
        ));
        let generation = Arc::new(
            build_generation(
                config,
                Arc::clone(&store),
                &metrics,
                &recorder,
                &prober,
                &clock,
            )
            .await?,
        );
        let config = &generation.config;
        let caps = connection_caps(
            raise_nofile_limit(),
            config.socketmap.max_connections,
            config.http.max_connections,
        );
        let mut server_options = ServerOptions::from_config(&config.socketmap);
        server_options.max_connections = caps.socketmap;
        server_options.max_per_peer = server_options.max_per_peer.min(caps.socketmap);
        let mut http_options = crate::http::HttpOptions::from_config(&config.http);
        http_options.max_connections = caps.http;
        let server = match inherited.take(ACTIVATION_ROLES[0].name) {
            Some((fd, listener)) => {
                tracing::info!(fd, listen = %listener, configured = %config.socketmap.listen, "socketmap listener passed by systemd (socket activation)");
                SocketmapServer::inherited(
                    listener,
                    server_options,
                    config.zone_table(),
                    Arc::new(generation.lookup.clone()),
                    Arc::clone(&metrics),
                )?
            }
            None => {
                SocketmapServer::bind_with_metrics(
                    &config.socketmap.listen,
                    server_options,
                    config.zone_table(),
                    Arc::new(generation.lookup.clone()),
                    Arc::clone(&metrics),
                )
                .await?
            }
        };
        let (http_listener, http_listen) = match inherited.take(ACTIVATION_ROLES[1].name) {
            Some((fd, listener)) => {
                let listen = listener.to_string();
                tracing::info!(fd, listen, configured = %config.http.listen, "HTTP API listener passed by systemd (socket activation)");
                let bound = crate::http::HttpListener::inherited(listener).map_err(|source| {
                    DaemonError::Http {
                        listen: listen.clone(),
                        source,
                    }
                })?;
                (bound, listen)
            }
            None => {
                let bound = crate::http::HttpListener::bind(&config.http.listen)
                    .await
                    .map_err(|source| DaemonError::Http {
                        listen: config.http.listen.to_string(),
                        source,
                    })?;
                let listen = match bound.local_addr() {
                    Some(addr) => addr.to_string(),
                    None => config.http.listen.to_string(),
                };
                (bound, listen)
            }
        };
        let http_addr = http_listener.local_addr();
        let tlsrpt = TlsrptService::start(
            &config.tlsrpt,
            &config.resolver,
            recorder,
            prober,
            Arc::clone(&metrics),
            Arc::clone(&clock),
        )
        .await?;
        let socketmap_listen = server.listen();
        let core = Arc::new(Core {
            store,
            started: config.clone(),
            metrics,
            current: RwLock::new(Arc::clone(&generation)),
            server: server.handle(),
            shutting_down: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            tlsrpt,
            clock,
        });
        let (stop, stop_rx) = watch::channel(false);
        let socketmap = {
            let mut rx = stop_rx.clone();
            tokio::spawn(server.serve(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }))
        };
        let http = tokio::spawn(crate::http::serve(
            http_listener,
            Arc::clone(&core),
            http_options,
            stop_rx,
        ));
        tracing::info!(
            socketmap = %socketmap_listen,
            http = %http_listen,
            store = core.store.backend(),
            "mta-sts daemon ready"
        );
        Ok(Daemon {
            core,
            stop,
            socketmap,
            http,
            socketmap_listen,
            http_addr,
        })
    }

    /// Where the socketmap server listens (the bound port when the config said port 0).
    pub fn socketmap_listen(&self) -> &Listen {
        &self.socketmap_listen
    }

    /// The bound HTTP address (`None` for a UNIX socket).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The shared state (current generation, metrics).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Applies a new configuration (see the module documentation) and returns the keys
    /// whose change waits for a restart ([`restart_pending`], each also logged). On error
    /// the old configuration stays in force.
    pub async fn reload(&self, config: Config) -> Result<Vec<&'static str>, DaemonError> {
        let core = &self.core;
        let _guard = core.reload_lock.lock().await;
        let old = core.current();
        let pending = restart_pending(&core.started, &config);
        let result = async {
            for key in &pending {
                tracing::warn!("{key} changed: takes effect after a restart");
            }
            let resolver_changed = resolver_config(&old.config).map(|c| format!("{c:?}")).ok()
                != resolver_config(&config).map(|c| format!("{c:?}")).ok()
                || old.config.resolver.dane_require_ad != config.resolver.dane_require_ad;
            if resolver_changed {
                tracing::info!("resolver settings changed: new resolver over the same store");
                build_generation(
                    config,
                    Arc::clone(&core.store),
                    &core.metrics,
                    core.tlsrpt.recorder(),
                    core.tlsrpt.prober(),
                    &core.clock,
                )
                .await
            } else {
                // Same resolver, same memory cache and refresher; new zones.
                Ok(Generation {
                    lookup: old.lookup.clone(),
                    refresher: Arc::clone(&old.refresher),
                    config,
                })
            }
        }
        .await;
        // The probe settings load before anything changes, so a bad one refuses the reload.
        let result = result.and_then(|generation| {
            let probes = ProbeSetup::new(
                &generation.config.tlsrpt,
                &generation.config.resolver,
                Arc::clone(&core.clock),
            )?;
            Ok((generation, probes))
        });
        match result {
            Ok((generation, probes)) => {
                core.tlsrpt.prober().install(probes);
                let generation = Arc::new(generation);
                core.server.update(
                    generation.config.zone_table(),
                    Arc::new(generation.lookup.clone()),
                );
                core.tlsrpt.reload(&generation.config.tlsrpt).await;
                *core.current.write().unwrap_or_else(|p| p.into_inner()) = generation;
                bump(&core.metrics.reloads_ok);
                tracing::info!("configuration reloaded");
                Ok(pending)
            }
            Err(e) => {
                bump(&core.metrics.reloads_error);
                Err(e)
            }
        }
    }

    /// Stops gracefully: `/healthz` 503, socketmap drain (up to `shutdown_timeout`), then
    /// the HTTP API.
    pub async fn shutdown(self) {
        self.core.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        if let Err(e) = self.socketmap.await {
            tracing::error!(error = %e, "socketmap server task failed");
        }
        // After the drain: the policies the last lookups fetched, and their TLS-RPT counts.
        let generation = self.core.current();
        generation.lookup.resolver().flush_store().await;
        self.core.tlsrpt.shutdown().await;
        let _ = self.http.await;
        tracing::info!("mta-sts daemon stopped");
    }
}

/// The keys of `new` that differ from `started` (the configuration the daemon started with)
/// and that a reload cannot apply, by name (e.g. `"[http] listen"`), in file order.
pub fn restart_pending(started: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&started.socketmap, &new.socketmap);
    let (ha, hb) = (&started.http, &new.http);
    let (ca, cb) = (&started.cache, &new.cache);
    let (ta, tb) = (&started.tlsrpt, &new.tlsrpt);
    [
        ("[socketmap] listen", a.listen != b.listen),
        ("[socketmap] socket_mode", a.socket_mode != b.socket_mode),
        ("[socketmap] socket_group", a.socket_group != b.socket_group),
        ("[socketmap] idle_timeout", a.idle_timeout != b.idle_timeout),
        (
            "[socketmap] max_connections",
            a.max_connections != b.max_connections,
        ),
        (
            "[socketmap] max_connections_per_peer",
            a.max_connections_per_peer != b.max_connections_per_peer,
        ),
        ("[socketmap] max_request", a.max_request != b.max_request),
        (
            "[socketmap] max_pipelined",
            a.max_pipelined != b.max_pipelined,
        ),
        (
            "[socketmap] shutdown_timeout",
            a.shutdown_timeout != b.shutdown_timeout,
        ),
        ("[http] listen", ha.listen != hb.listen),
        (
            "[http] max_connections",
            ha.max_connections != hb.max_connections,
        ),
        ("[http] idle_timeout", ha.idle_timeout != hb.idle_timeout),
        ("[http] lookup_rate", ha.lookup_rate != hb.lookup_rate),
        ("[http] lookup_burst", ha.lookup_burst != hb.lookup_burst),
        ("[cache] store", ca.store != cb.store),
        ("[cache] path", ca.path != cb.path),
        ("[cache] redis_url", ca.redis_url != cb.redis_url),
        ("[cache] sentinels", ca.sentinels != cb.sentinels),
        (
            "[cache] sentinel_master",
            ca.sentinel_master != cb.sentinel_master,
        ),
        ("[cache] redis_db", ca.redis_db != cb.redis_db),
        (
            "[cache] redis_password",
            ca.redis_password != cb.redis_password,
        ),
        (
            "[cache] sentinel_password",
            ca.sentinel_password != cb.sentinel_password,
        ),
        ("[cache] postgres_url", ca.postgres_url != cb.postgres_url),
        (
            "[tlsrpt] flush_interval",
            ta.flush_interval != tb.flush_interval,
        ),
        ("[tlsrpt] socket", ta.socket != tb.socket),
        ("[tlsrpt] socket_mode", ta.socket_mode != tb.socket_mode),
        ("[tlsrpt] socket_group", ta.socket_group != tb.socket_group),
        ("[tlsrpt.send]", ta.send != tb.send),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// The names of the daemon's listeners in `$LISTEN_FDNAMES` (a `.socket` unit's
/// `FileDescriptorName=`), in the order taken without names: the socketmap, the HTTP API.
pub const ACTIVATION_ROLES: [Role; 2] = [Role::one("socketmap"), Role::one("http")];

/// Logs what the socket-activation variables said, when they said anything.
fn log_activation(inherited: &Inherited) {
    match inherited.plan() {
        Some(Plan::NotForUs { listen_pid }) => tracing::info!(
            listen_pid = listen_pid.as_deref().unwrap_or("(unset)"),
            pid = std::process::id(),
            "LISTEN_FDS ignored: LISTEN_PID is not this process (inherited from a parent); binding the configured listeners"
        ),
        Some(Plan::Take { unused, .. }) => {
            for (fd, name) in unused {
                tracing::warn!(
                    fd,
                    name = name.as_deref().unwrap_or("(none)"),
                    "descriptor passed by systemd is none of socketmap, http; closed (set FileDescriptorName= in the .socket unit)"
                );
            }
        }
        Some(Plan::None) | None => {}
    }
}

/// Runs the daemon until SIGTERM or SIGINT: reloads `source` on SIGHUP, tells systemd
/// (`READY=1`, `RELOADING=1`, `STOPPING=1`) when `$NOTIFY_SOCKET` is set. `inherited` holds
/// the listeners systemd passed ([`Inherited::from_env`] with [`ACTIVATION_ROLES`], taken
/// before the runtime started), [`Inherited::none`] for none.
pub async fn run(
    source: ConfigSource,
    config: Config,
    inherited: Inherited,
) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let signal_error = |e: std::io::Error| DaemonError::Http {
        listen: "signals".to_owned(),
        source: e,
    };
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    log_activation(&inherited);
    let daemon = Daemon::start_with(config, Arc::new(SystemClock), inherited).await?;
    notify::notify(&["READY=1", "STATUS=serving"]);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify::reloading();
                tracing::info!(path = %source.path().display(), "SIGHUP: reloading the configuration");
                match source.load() {
                    Ok(config) => {
                        if let Err(e) = daemon.reload(config).await {
                            tracing::error!("reload refused, the old configuration stays: {}", with_causes(&e));
                        }
                    }
                    Err(e) => {
                        bump(&daemon.core.metrics.reloads_error);
                        tracing::error!("reload refused, the old configuration stays: {}", with_causes(&e));
                    }
                }
                notify::notify(&["READY=1", "STATUS=serving"]);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    notify::notify(&["STOPPING=1"]);
    daemon.shutdown().await;
    Ok(())
}
