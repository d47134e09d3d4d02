//! The daemon configuration file (`/etc/mta-sts/daemon.toml`; `packaging/daemon.toml`
//! describes every key).
//!
//! Durations, name servers and listening addresses are the values of `mta-sts-config`,
//! shared with `serve.toml`: written the same way and refused with the same words.
//!
//! Every key is optional and has a default, so an empty file is valid. Unknown keys are an
//! error that names the key and the keys its table takes, because a misspelt
//! `strict_testing` silently ignored would weaken enforcement. Every error is the shared
//! [`ConfigError`], rendered `daemon.toml:LINE:COLUMN: what is wrong and the fix` like the
//! errors of `serve.toml`.
//!
//! ```
//! use mta_sts_daemon::config::{Config, Listen, OnFailure};
//! let config = Config::parse("[socketmap]\nlisten = \"unix:/run/mta-sts.sock\"\n[zones.strict]\nstrict_testing = true\n")?;
//! assert!(matches!(config.socketmap.listen, Listen::Unix(_)));
//! assert!(config.zone("strict").strict_testing);
//! assert!(!config.zone("postfix").strict_testing); // unknown name: [defaults]
//! assert_eq!(config.zone("strict").on_failure, OnFailure::NotFound);
//! # Ok::<(), mta_sts_daemon::config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use mta_sts_config::Listen;
use mta_sts_config::Source;

use self::raw::{RawConfig, SCHEMA};

mod raw;

/// Where the daemon reads its configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mta-sts/daemon.toml";

/// Why the configuration cannot be used: the configuration error of `serve.toml` too,
/// rendered `FILE:LINE:COLUMN: what is wrong and the fix` ([`ConfigError::Invalid`]) or
/// `FILE: cannot read the configuration: …` ([`ConfigError::Read`]).
pub use mta_sts_config::ConfigError;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `[socketmap]`: the Postfix-facing server.
    pub socketmap: SocketmapConfig,
    /// `[http]`: the HTTP API.
    pub http: HttpConfig,
    /// `[resolver]`: DNS and HTTPS discovery.
    pub resolver: ResolverConfig,
    /// `[cache]`: where policies are kept.
    pub cache: CacheConfig,
    /// `[defaults]`: zone settings for socketmap names that are no zone.
    pub defaults: ZoneSettings,
    /// `[zones.<name>]`: settings per socketmap name; unset keys come from `[defaults]`.
    pub zones: BTreeMap<String, ZoneSettings>,
    /// `[tlsrpt]`: TLS-RPT data (RFC 8460): recording, the collector socket, sending.
    pub tlsrpt: TlsrptConfig,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = Source::read(path)?;
        Config::parse_source(&text, Some(path))
    }

    /// Parses configuration text (errors name it `daemon.toml`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_source(text, None)
    }

    fn parse_source(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let source = Source::new(text, path, "daemon.toml");
        let raw: RawConfig = source.parse(&SCHEMA)?;
        raw.resolve()
            .map_err(|misfit| misfit.into_error(&source, text))
    }

    /// The settings of socketmap name `name`: its `[zones.<name>]`, else `[defaults]`.
    pub fn zone(&self, name: &str) -> &ZoneSettings {
        self.zones.get(name).unwrap_or(&self.defaults)
    }

    /// The zone table the socketmap server needs.
    pub fn zone_table(&self) -> Zones {
        Zones {
            defaults: self.defaults.clone(),
            zones: self.zones.clone(),
        }
    }
}

/// Zone settings by socketmap name (the map name in `socketmap:…:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Zones {
    /// For names that are no zone.
    pub defaults: ZoneSettings,
    /// Named zones (exact, case-sensitive names, as Postfix sends them).
    pub zones: BTreeMap<String, ZoneSettings>,
}

impl Zones {
    /// Only defaults.
    pub fn new(defaults: ZoneSettings) -> Self {
        Zones {
            defaults,
            zones: BTreeMap::new(),
        }
    }

    /// Adds or replaces zone `name`.
    pub fn with_zone(mut self, name: &str, settings: ZoneSettings) -> Self {
        self.zones.insert(name.to_owned(), settings);
        self
    }

    /// The settings of `name`: its zone, else the defaults.
    pub fn get(&self, name: &str) -> &ZoneSettings {
        self.zones.get(name).unwrap_or(&self.defaults)
    }
}

/// `[socketmap]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketmapConfig {
    /// `listen`, default `127.0.0.1:8461`.
    pub listen: Listen,
    /// `socket_mode` for a UNIX socket, default `0666` (Postfix's `smtp` processes must
    /// connect; postfix-mta-sts-resolver uses the same). With `socket_group = "postfix"`,
    /// `"0660"` lets Postfix in and nobody else.
    pub socket_mode: u32,
    /// `socket_group`: the group a UNIX socket is given after it is bound (a name from
    /// `/etc/group` or a number); `None` (default): the daemon's group. The daemon must be a
    /// member (systemd `SupplementaryGroups=`).
    pub socket_group: Option<String>,
    /// `idle_timeout`: a connection with no request in progress for this long is closed
    /// (default 60 s; Postfix reconnects on its next lookup).
    pub idle_timeout: Duration,
    /// `max_connections`: connections served at once (default 4096). When all are taken, a
    /// new client evicts the longest-idle connection, else waits in the listen backlog
    /// (see [`crate::server`]).
    pub max_connections: usize,
    /// `max_connections_per_peer`: connections served at once per TCP source address
    /// (default 1024); a peer over it evicts its own longest-idle connection or is refused.
    /// Not applied to UNIX sockets (see [`crate::server`]).
    pub max_connections_per_peer: usize,
    /// `max_request`: largest request payload in bytes (default 65536).
    pub max_request: usize,
    /// `max_pipelined`: requests looked up concurrently per connection (default 128); more
    /// wait until earlier replies are written.
    pub max_pipelined: usize,
    /// `shutdown_timeout`: on shutdown, how long in-flight queries may finish (default 10 s).
    pub shutdown_timeout: Duration,
}

impl Default for SocketmapConfig {
    fn default() -> Self {
        SocketmapConfig {
            listen: Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8461))),
            socket_mode: 0o666,
            socket_group: None,
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_peer: 1024,
            max_request: mta_sts_socketmap::netstring::DEFAULT_MAX_PAYLOAD,
            max_pipelined: 128,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `listen`, default `127.0.0.1:8462`.
    pub listen: Listen,
    /// `max_connections`: API connections served at once (default 64); more wait in the
    /// listen backlog. Lowered at start if the open-files limit cannot hold it next to the
    /// socketmap's connections ([`crate::app`]).
    pub max_connections: usize,
    /// `idle_timeout`: a connection whose request headers have not all arrived this long
    /// after the connection opened or the previous response was sent is closed (default 10 s).
    pub idle_timeout: Duration,
    /// `lookup_rate`: API requests that may look a domain up over the network
    /// (`?refresh=1`, or a domain with no cached policy) allowed per second on average
    /// (default 2); `0` answers such requests `429` always.
    pub lookup_rate: u32,
    /// `lookup_burst`: how many of those may come at once (default 20); past it the API
    /// answers `429` with `Retry-After`.
    pub lookup_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8462))),
            max_connections: 64,
            idle_timeout: Duration::from_secs(10),
            lookup_rate: 2,
            lookup_burst: 20,
        }
    }
}

/// `[resolver]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// `nameservers` (`IP` or `IP:PORT`, port 53 by default); empty = system configuration.
    pub nameservers: Vec<SocketAddr>,
    /// `ca_file`: extra trusted CA certificates (PEM) for policy hosts.
    pub ca_file: Option<PathBuf>,
    /// `connect_to`: `HOST:PORT:ADDR:PORT` overrides, as curl's `--connect-to`.
    pub connect_to: Vec<String>,
    /// `timeout` of one discovery (DNS + HTTPS), default 10 s (RFC 8461 §3.3 allows up to 60 s).
    pub timeout: Duration,
    /// `dane_require_ad`: DANE checks (`dane = "defer"`) trust TLSA and MX answers only when
    /// the resolver set the AD bit (default true; see [`crate::dane`]). `false` is for tests
    /// against unsigned zones only.
    pub dane_require_ad: bool,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            ca_file: None,
            connect_to: Vec::new(),
            timeout: Duration::from_secs(10),
            dane_require_ad: true,
        }
    }
}

/// `cache.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded SQLite file (default).
    #[default]
    Sqlite,
    /// Redis, shared by a fleet.
    Redis,
    /// The Redis master named by Redis Sentinel (`sentinels`, `sentinel_master`), shared by
    /// a fleet.
    #[serde(rename = "redis_sentinel")]
    RedisSentinel,
    /// PostgreSQL (`postgres_url`), shared by a fleet.
    Postgres,
    /// Memory only: lost on restart.
    Memory,
}

impl StoreKind {
    /// The value of `store` that names this kind.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Redis => "redis",
            StoreKind::RedisSentinel => "redis_sentinel",
            StoreKind::Postgres => "postgres",
            StoreKind::Memory => "memory",
        }
    }
}

/// A password from the configuration: compared like a string, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `store`, default `sqlite`.
    pub store: StoreKind,
    /// `path` of the SQLite file, default `/var/lib/mta-sts/cache.db`.
    pub path: PathBuf,
    /// `redis_url`, required when `store = "redis"`.
    pub redis_url: Option<String>,
    /// `sentinels`: the Redis Sentinel addresses (`host:port`), required when
    /// `store = "redis_sentinel"`.
    pub sentinels: Vec<mta_sts_resolver::store::SentinelAddress>,
    /// `sentinel_master`: the service name the sentinels monitor, required when
    /// `store = "redis_sentinel"`.
    pub sentinel_master: Option<String>,
    /// `redis_db`: the database number on the master found through Sentinel, default 0.
    pub redis_db: i64,
    /// `redis_password`: the master's password (Sentinel), if it needs one.
    pub redis_password: Option<Secret>,
    /// `sentinel_password`: the sentinels' password, if they need one.
    pub sentinel_password: Option<Secret>,
    /// `postgres_url`, required when `store = "postgres"`.
    pub postgres_url: Option<String>,
    /// `refresh`: proactive re-fetch interval, default 24 h.
    pub refresh: Duration,
    /// `refresh_concurrency`: most proactive re-fetches in flight at once, default 32.
    pub refresh_concurrency: usize,
    /// `max_memory`: most bytes the resolver's memory cache holds, default 256 MB
    /// (`"unlimited"` or 0: `None`, no bound).
    pub max_memory: Option<u64>,
    /// `flush_window` of the SQLite store: the longest a fetched policy waits to be written
    /// (one transaction per window) and fsynced, default 100 ms; zero writes and fsyncs each
    /// before the lookup is answered.
    pub flush_window: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            store: StoreKind::Sqlite,
            path: PathBuf::from("/var/lib/mta-sts/cache.db"),
            redis_url: None,
            sentinels: Vec::new(),
            sentinel_master: None,
            redis_db: 0,
            redis_password: None,
            sentinel_password: None,
            postgres_url: None,
            refresh: Duration::from_secs(24 * 3600),
            refresh_concurrency: 32,
            max_memory: Some(mta_sts_resolver::DEFAULT_MAX_MEMORY),
            flush_window: mta_sts_resolver::store::sqlite::DEFAULT_FLUSH_WINDOW,
        }
    }
}

/// What to answer when a lookup fails and nothing is cached (`on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// `NOTFOUND `: deliver as if the domain had no policy (RFC 8461 §3.3; default).
    #[default]
    NotFound,
    /// `TEMP …`: Postfix defers the message and retries later.
    Temp,
}

/// How DANE interacts with MTA-STS answers (`dane`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaneMode {
    /// Ignore DANE (default; behaves like postfix-mta-sts-resolver).
    #[default]
    Off,
    /// When the lookup reports usable TLSA records, answer `OK dane-only` instead of
    /// `OK secure …`, so MTA-STS never overrides DANE (RFC 8461 §2).
    Defer,
}

/// Settings of one zone (socketmap name), or `[defaults]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSettings {
    /// `strict_testing`: treat `testing` policies like `enforce` (default false).
    pub strict_testing: bool,
    /// `require_sni`: append ` servername=hostname` (default true).
    pub require_sni: bool,
    /// `tlsrpt`: append Postfix 3.10 TLS-RPT attributes (default false).
    pub tlsrpt: bool,
    /// `on_failure`, default `notfound`.
    pub on_failure: OnFailure,
    /// `budget`: how long one query may take before the answer comes from the cache or
    /// `on_failure` (default 5 s).
    pub budget: Duration,
    /// `dane`, default `off`.
    pub dane: DaneMode,
}

impl Default for ZoneSettings {
    fn default() -> Self {
        ZoneSettings {
            strict_testing: false,
            require_sni: true,
            tlsrpt: false,
            on_failure: OnFailure::NotFound,
            budget: Duration::from_secs(5),
            dane: DaneMode::Off,
        }
    }
}

/// `[tlsrpt]`: TLS-RPT (RFC 8460) data generated and collected by the daemon; everything
/// is off by default. The recording rule is described in [`crate::tlsrpt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptConfig {
    /// `events`: the JSON-lines events file appended to (the `tlsrpt::event` format that
    /// `mta-sts report send --events` reads). `None` (default): nothing is recorded.
    pub events: Option<PathBuf>,
    /// `flush_interval`: how often the in-memory counters are appended to `events`
    /// (default 60 s; also on reload and shutdown).
    pub flush_interval: Duration,
    /// `socket`: the Unix datagram socket receiving Postfix 3.10 / libtlsrpt datagrams and
    /// our own event objects. `None` (default): no collector.
    pub socket: Option<PathBuf>,
    /// `socket_mode` of the collector socket, default `0666` (Postfix's `smtp` processes
    /// must be able to send to it, as with the socketmap socket).
    pub socket_mode: u32,
    /// `socket_group` of the collector socket, as `[socketmap] socket_group`.
    pub socket_group: Option<String>,
    /// `[tlsrpt.send]`: generate and deliver reports on a schedule; `None` (default): off.
    pub send: Option<TlsrptSendConfig>,
    /// `probe_testing`: probe the MX hosts of `mode: testing` domains over STARTTLS and
    /// record what enforce would have seen (default false; needs `events`). See
    /// [`crate::tlsrpt`], "Testing mode".
    pub probe_testing: bool,
    /// `probe_interval`: at most one probe per policy domain per this long (default 1 h).
    pub probe_interval: Duration,
    /// `probe_concurrency`: probes of domains in flight at once (default 4).
    pub probe_concurrency: usize,
    /// `probe_timeout`: one MX probe, connect to QUIT (default 30 s).
    pub probe_timeout: Duration,
    /// `probe_ehlo`: the EHLO name of the probe; default the `[tlsrpt.send]` submitter,
    /// else `localhost`.
    pub probe_ehlo: Option<String>,
}

impl Default for TlsrptConfig {
    fn default() -> Self {
        TlsrptConfig {
            events: None,
            flush_interval: Duration::from_secs(60),
            socket: None,
            socket_mode: 0o666,
            socket_group: None,
            send: None,
            probe_testing: false,
            probe_interval: Duration::from_secs(3600),
            probe_concurrency: 4,
            probe_timeout: Duration::from_secs(30),
            probe_ehlo: None,
        }
    }
}

/// `[tlsrpt.send]`: the settings of `mta-sts report send`, run by the daemon after each
/// UTC day (RFC 8460 §4.1) and every `retry_interval` for due retries (§5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptSendConfig {
    /// `db`: the SQLite outbox (events consumed, reports, delivery log); default
    /// `/var/lib/mta-sts/reports.db`, the same file `mta-sts report send --db` uses.
    pub db: PathBuf,
    /// `submitter` (required): the domain of `contact-info`, `TLS-Report-Submitter`.
    pub submitter: String,
    /// `from`: `From:` of report mail; default `tlsrpt@<submitter>`.
    pub from: Option<String>,
    /// `organization`: `organization-name`; default the submitter domain.
    pub organization: Option<String>,
    /// `contact`: `contact-info`; default the `from` address.
    pub contact: Option<String>,
    /// `relay`: SMTP relay `HOST:PORT` for `mailto:` reports; without it mail delivery fails.
    pub relay: Option<String>,
    /// `starttls`: use STARTTLS with the relay (its certificate is verified).
    pub starttls: bool,
    /// `dkim_key`: PEM key (RSA or Ed25519) to DKIM-sign report mail (RFC 8460 §5.3 MUST);
    /// without it the relay must sign.
    pub dkim_key: Option<PathBuf>,
    /// `dkim_selector`: the DKIM selector; required with `dkim_key`.
    pub dkim_selector: Option<String>,
    /// `dkim_domain`: DKIM `d=`; default the submitter domain.
    pub dkim_domain: Option<String>,
    /// `insecure_https`: accept any certificate of `https:` endpoints (RFC 8460 §3 MAY).
    pub insecure_https: bool,
    /// `timeout` of one DNS lookup or delivery attempt (default 30 s).
    pub timeout: Duration,
    /// `jitter`: reports are generated at a random moment up to this long after 00:00 UTC
    /// (default 15 min), so that not every sender posts at midnight (RFC 8460 §4.1).
    pub jitter: Duration,
    /// `retry_interval`: how often due outbox entries are retried (default 5 min).
    pub retry_interval: Duration,
}
