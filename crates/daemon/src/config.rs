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
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

pub use mta_sts_config::Listen;
use mta_sts_config::{HumanDuration, Nameserver, Schema, Source};

/// Where the daemon reads its configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mta-sts/daemon.toml";

/// Why the configuration cannot be used: the configuration error of `serve.toml` too,
/// rendered `FILE:LINE:COLUMN: what is wrong and the fix` ([`ConfigError::Invalid`]) or
/// `FILE: cannot read the configuration: …` ([`ConfigError::Read`]).
pub use mta_sts_config::ConfigError;

/// How unknown keys and bad values of `daemon.toml` are explained.
const SCHEMA: Schema = Schema {
    sections: &[
        ("", &[]),
        (
            "socketmap",
            &[
                "listen",
                "socket_mode",
                "socket_group",
                "idle_timeout",
                "max_connections",
                "max_connections_per_peer",
                "max_request",
                "max_pipelined",
                "shutdown_timeout",
            ],
        ),
        (
            "http",
            &[
                "listen",
                "max_connections",
                "idle_timeout",
                "lookup_rate",
                "lookup_burst",
            ],
        ),
        (
            "resolver",
            &[
                "nameservers",
                "ca_file",
                "connect_to",
                "timeout",
                "dane_require_ad",
            ],
        ),
        ("cache", &["store", "path", "redis_url", "refresh"]),
        ("defaults", ZONE_KEYS),
        ("zones.*", ZONE_KEYS),
        (
            "tlsrpt",
            &[
                "events",
                "count_applied",
                "flush_interval",
                "socket",
                "socket_mode",
                "socket_group",
                "send",
            ],
        ),
        (
            "tlsrpt.send",
            &[
                "db",
                "submitter",
                "from",
                "organization",
                "contact",
                "relay",
                "starttls",
                "dkim_key",
                "dkim_selector",
                "dkim_domain",
                "insecure_https",
                "timeout",
                "jitter",
                "retry_interval",
            ],
        ),
    ],
    tables: "[socketmap], [http], [resolver], [cache], [defaults], [zones.<name>], [tlsrpt], [tlsrpt.send]",
    described_in: "packaging/daemon.toml",
    hint: " (see the keys of each table in packaging/daemon.toml)",
};

/// The keys of `[defaults]` and `[zones.<name>]`.
const ZONE_KEYS: &[&str] = &[
    "strict_testing",
    "require_sni",
    "tlsrpt",
    "on_failure",
    "budget",
    "dane",
];

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
    /// Memory only: lost on restart.
    Memory,
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
    /// `refresh`: proactive re-fetch interval, default 24 h.
    pub refresh: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            store: StoreKind::Sqlite,
            path: PathBuf::from("/var/lib/mta-sts/cache.db"),
            redis_url: None,
            refresh: Duration::from_secs(24 * 3600),
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

// ---- raw TOML shapes: every key optional, unknown keys rejected ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    socketmap: RawSocketmap,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    resolver: RawResolver,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    defaults: RawZone,
    #[serde(default)]
    zones: BTreeMap<String, RawZone>,
    #[serde(default)]
    tlsrpt: RawTlsrpt,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTlsrpt {
    events: Option<PathBuf>,
    /// Accepted as `false` only, for files written for earlier versions.
    count_applied: Option<bool>,
    flush_interval: Option<HumanDuration>,
    socket: Option<PathBuf>,
    socket_mode: Option<FileMode>,
    socket_group: Option<Parsed<GroupName>>,
    send: Option<RawTlsrptSend>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTlsrptSend {
    db: Option<PathBuf>,
    submitter: Option<String>,
    from: Option<String>,
    organization: Option<String>,
    contact: Option<String>,
    relay: Option<String>,
    starttls: Option<bool>,
    dkim_key: Option<PathBuf>,
    dkim_selector: Option<String>,
    dkim_domain: Option<String>,
    insecure_https: Option<bool>,
    timeout: Option<HumanDuration>,
    jitter: Option<HumanDuration>,
    retry_interval: Option<HumanDuration>,
}

impl RawTlsrpt {
    fn resolve(self) -> Result<TlsrptConfig, Misfit> {
        let d = TlsrptConfig::default();
        let empty_path = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        if empty_path(&self.events) || empty_path(&self.socket) {
            let key = if empty_path(&self.events) {
                "events"
            } else {
                "socket"
            };
            return Err(Misfit::new(
                "tlsrpt",
                key,
                "[tlsrpt] events and socket need a path; leave the key out to turn it off",
            ));
        }
        // RFC 8460 §4: reports count sessions. A socketmap query is asked before a session
        // (or by `postmap -q`, with none), so it cannot be counted as a successful one.
        if self.count_applied == Some(true) {
            return Err(Misfit::new(
                "tlsrpt",
                "count_applied",
                "[tlsrpt] count_applied = true is not supported: a socketmap query is not an SMTP session, so it would report deliveries Postfix deferred as successes; remove the key (successful sessions come from Postfix >= 3.10 through [tlsrpt] socket, see docs/postfix.md §6)",
            ));
        }
        let flush_interval = self.flush_interval.map(|t| t.0).unwrap_or(d.flush_interval);
        if flush_interval.is_zero() {
            return Err(Misfit::new(
                "tlsrpt",
                "flush_interval",
                "[tlsrpt] flush_interval must be above 0 (default \"60s\")",
            ));
        }
        let send = match self.send {
            None => None,
            Some(raw) => Some(raw.resolve()?),
        };
        if send.is_some() && self.events.is_none() {
            return Err(Misfit::table(
                "tlsrpt.send",
                "[tlsrpt.send] needs [tlsrpt] events: the file the reports are built from, e.g. `events = \"/var/lib/mta-sts/tlsrpt-events.jsonl\"`",
            ));
        }
        Ok(TlsrptConfig {
            events: self.events,
            flush_interval,
            socket: self.socket,
            socket_mode: self.socket_mode.map(|m| m.0).unwrap_or(d.socket_mode),
            socket_group: self.socket_group.map(|g| g.0.0),
            send,
        })
    }
}

impl RawTlsrptSend {
    fn resolve(self) -> Result<TlsrptSendConfig, Misfit> {
        let submitter = self
            .submitter
            .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Misfit::new(
                    "tlsrpt.send",
                    "submitter",
                    "[tlsrpt.send] needs submitter = \"DOMAIN\": the domain of the reports' contact-info (RFC 8460 §5.3 TLS-Report-Submitter)",
                )
            })?;
        if mta_sts::Domain::parse(&submitter).is_err() {
            return Err(Misfit::new(
                "tlsrpt.send",
                "submitter",
                format!(
                    "[tlsrpt.send] submitter `{submitter}` is not a domain name (e.g. \"mail.example.com\")"
                ),
            ));
        }
        if self.dkim_key.is_some() != self.dkim_selector.is_some() {
            let key = if self.dkim_key.is_some() {
                "dkim_key"
            } else {
                "dkim_selector"
            };
            return Err(Misfit::new(
                "tlsrpt.send",
                key,
                "[tlsrpt.send] dkim_key and dkim_selector go together (e.g. dkim_selector = \"tlsrpt\")",
            ));
        }
        if let Some(relay) = &self.relay
            && relay
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(Misfit::new(
                "tlsrpt.send",
                "relay",
                format!("[tlsrpt.send] relay `{relay}` is not HOST:PORT (e.g. \"127.0.0.1:25\")"),
            ));
        }
        for (key, value) in [("from", &self.from), ("contact", &self.contact)] {
            if value.as_ref().is_some_and(|v| !v.contains('@')) {
                return Err(Misfit::new(
                    "tlsrpt.send",
                    key,
                    format!(
                        "[tlsrpt.send] {key} must be an e-mail address (e.g. \"tlsrpt@{submitter}\")"
                    ),
                ));
            }
        }
        let retry_interval = self
            .retry_interval
            .map(|t| t.0)
            .unwrap_or(Duration::from_secs(300));
        if retry_interval.is_zero() {
            return Err(Misfit::new(
                "tlsrpt.send",
                "retry_interval",
                "[tlsrpt.send] retry_interval must be above 0 (default \"5m\")",
            ));
        }
        let jitter = self.jitter.map(|t| t.0).unwrap_or(Duration::from_secs(900));
        if jitter > Duration::from_secs(12 * 3600) {
            return Err(Misfit::new(
                "tlsrpt.send",
                "jitter",
                "[tlsrpt.send] jitter must be at most 12h (reports cover the previous UTC day; default \"15m\")",
            ));
        }
        Ok(TlsrptSendConfig {
            db: self
                .db
                .unwrap_or_else(|| PathBuf::from("/var/lib/mta-sts/reports.db")),
            submitter,
            from: self.from,
            organization: self.organization,
            contact: self.contact,
            relay: self.relay,
            starttls: self.starttls.unwrap_or(false),
            dkim_key: self.dkim_key,
            dkim_selector: self.dkim_selector,
            dkim_domain: self.dkim_domain,
            insecure_https: self.insecure_https.unwrap_or(false),
            timeout: self.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(30)),
            jitter,
            retry_interval,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSocketmap {
    listen: Option<Listen>,
    socket_mode: Option<FileMode>,
    socket_group: Option<Parsed<GroupName>>,
    idle_timeout: Option<HumanDuration>,
    max_connections: Option<usize>,
    max_connections_per_peer: Option<usize>,
    max_request: Option<usize>,
    max_pipelined: Option<usize>,
    shutdown_timeout: Option<HumanDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Listen>,
    max_connections: Option<usize>,
    idle_timeout: Option<HumanDuration>,
    lookup_rate: Option<u32>,
    lookup_burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    nameservers: Option<Vec<Nameserver>>,
    ca_file: Option<PathBuf>,
    connect_to: Option<Vec<String>>,
    timeout: Option<HumanDuration>,
    dane_require_ad: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    store: Option<StoreKind>,
    path: Option<PathBuf>,
    redis_url: Option<String>,
    refresh: Option<HumanDuration>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawZone {
    strict_testing: Option<bool>,
    require_sni: Option<bool>,
    tlsrpt: Option<bool>,
    on_failure: Option<OnFailure>,
    budget: Option<HumanDuration>,
    dane: Option<DaneMode>,
}

impl RawZone {
    fn over(&self, base: &ZoneSettings) -> ZoneSettings {
        ZoneSettings {
            strict_testing: self.strict_testing.unwrap_or(base.strict_testing),
            require_sni: self.require_sni.unwrap_or(base.require_sni),
            tlsrpt: self.tlsrpt.unwrap_or(base.tlsrpt),
            on_failure: self.on_failure.unwrap_or(base.on_failure),
            budget: self.budget.map(|d| d.0).unwrap_or(base.budget),
            dane: self.dane.unwrap_or(base.dane),
        }
    }
}

impl RawConfig {
    /// The checked configuration: each table's defaults applied and its values checked
    /// together.
    fn resolve(self) -> Result<Config, Misfit> {
        let defaults = self.defaults.over(&ZoneSettings::default());
        let zones = self
            .zones
            .iter()
            .map(|(name, zone)| (name.clone(), zone.over(&defaults)))
            .collect();
        Ok(Config {
            socketmap: self.socketmap.resolve()?,
            http: self.http.resolve()?,
            resolver: self.resolver.resolve()?,
            cache: self.cache.resolve()?,
            defaults,
            zones,
            tlsrpt: self.tlsrpt.resolve()?,
        })
    }
}

impl RawSocketmap {
    fn resolve(self) -> Result<SocketmapConfig, Misfit> {
        let d = SocketmapConfig::default();
        let socketmap = SocketmapConfig {
            listen: self.listen.unwrap_or(d.listen),
            socket_mode: self.socket_mode.map(|m| m.0).unwrap_or(d.socket_mode),
            socket_group: self.socket_group.map(|g| g.0.0),
            idle_timeout: self.idle_timeout.map(|t| t.0).unwrap_or(d.idle_timeout),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_peer: self
                .max_connections_per_peer
                .unwrap_or(d.max_connections_per_peer),
            max_request: self.max_request.unwrap_or(d.max_request),
            max_pipelined: self.max_pipelined.unwrap_or(d.max_pipelined),
            shutdown_timeout: self
                .shutdown_timeout
                .map(|t| t.0)
                .unwrap_or(d.shutdown_timeout),
        };
        let zero = [
            ("max_connections", socketmap.max_connections),
            (
                "max_connections_per_peer",
                socketmap.max_connections_per_peer,
            ),
            ("max_pipelined", socketmap.max_pipelined),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        if let Some((key, _)) = zero {
            return Err(Misfit::new(
                "socketmap",
                key,
                "[socketmap] max_connections, max_connections_per_peer and max_pipelined must be at least 1",
            ));
        }
        if socketmap.max_request == 0 {
            return Err(Misfit::new(
                "socketmap",
                "max_request",
                "[socketmap] max_request must be at least 1 byte (default 65536)",
            ));
        }
        Ok(socketmap)
    }
}

impl RawHttp {
    fn resolve(self) -> Result<HttpConfig, Misfit> {
        let d = HttpConfig::default();
        let http = HttpConfig {
            listen: self.listen.unwrap_or(d.listen),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            idle_timeout: self.idle_timeout.map(|t| t.0).unwrap_or(d.idle_timeout),
            lookup_rate: self.lookup_rate.unwrap_or(d.lookup_rate),
            lookup_burst: self.lookup_burst.unwrap_or(d.lookup_burst),
        };
        if http.max_connections == 0 || http.idle_timeout.is_zero() {
            let key = if http.max_connections == 0 {
                "max_connections"
            } else {
                "idle_timeout"
            };
            return Err(Misfit::new(
                "http",
                key,
                "[http] max_connections must be at least 1 and idle_timeout above 0 (defaults 64, \"10s\")",
            ));
        }
        if http.lookup_burst == 0 && http.lookup_rate > 0 {
            return Err(Misfit::new(
                "http",
                "lookup_burst",
                "[http] lookup_burst must be at least 1 when lookup_rate is above 0 (default 20)",
            ));
        }
        Ok(http)
    }
}

impl RawResolver {
    fn resolve(self) -> Result<ResolverConfig, Misfit> {
        let d = ResolverConfig::default();
        let resolver = ResolverConfig {
            nameservers: self
                .nameservers
                .map(|v| v.into_iter().map(|n| n.0).collect())
                .unwrap_or(d.nameservers),
            ca_file: self.ca_file,
            connect_to: self.connect_to.unwrap_or(d.connect_to),
            timeout: self.timeout.map(|t| t.0).unwrap_or(d.timeout),
            dane_require_ad: self.dane_require_ad.unwrap_or(d.dane_require_ad),
        };
        if let Some(bad) = resolver
            .connect_to
            .iter()
            .find(|c| c.parse::<mta_sts_net::ConnectTo>().is_err())
        {
            return Err(Misfit::new(
                "resolver",
                "connect_to",
                format!(
                    "[resolver] connect_to `{bad}` is not HOST:PORT:ADDR:PORT (e.g. `mta-sts.example.test:443:127.0.0.1:8443`; an empty HOST matches every host)"
                ),
            ));
        }
        if resolver.timeout > Duration::from_secs(60) {
            // RFC 8461 §3.3: senders SHOULD allow at least one minute; above that is pointless
            // for a daemon Postfix is waiting on.
            return Err(Misfit::new(
                "resolver",
                "timeout",
                "[resolver] timeout must be at most 60s (RFC 8461 §3.3); the default is 10s",
            ));
        }
        Ok(resolver)
    }
}

impl RawCache {
    fn resolve(self) -> Result<CacheConfig, Misfit> {
        let d = CacheConfig::default();
        let cache = CacheConfig {
            store: self.store.unwrap_or(d.store),
            path: self.path.unwrap_or(d.path),
            redis_url: self.redis_url,
            refresh: self.refresh.map(|t| t.0).unwrap_or(d.refresh),
        };
        if cache.store == StoreKind::Redis && cache.redis_url.is_none() {
            return Err(Misfit::new(
                "cache",
                "store",
                "[cache] store = \"redis\" needs redis_url, e.g. `redis_url = \"redis://127.0.0.1:6379/0\"`",
            ));
        }
        Ok(cache)
    }
}

/// Values that parse but do not fit together: the table and key to point at, and what is
/// wrong with the fix. The raw values carry no spans, so the location is found in the text
/// ([`locate`]).
#[derive(Debug)]
struct Misfit {
    table: &'static str,
    key: Option<&'static str>,
    message: String,
}

impl Misfit {
    /// At `key` of `[table]`.
    fn new(table: &'static str, key: &'static str, message: impl Into<String>) -> Misfit {
        Misfit {
            table,
            key: Some(key),
            message: message.into(),
        }
    }

    /// At the header of `[table]`.
    fn table(table: &'static str, message: impl Into<String>) -> Misfit {
        Misfit {
            table,
            key: None,
            message: message.into(),
        }
    }

    /// The error at the key's line of `text` (else at its table's header, else at the file).
    fn into_error(self, source: &Source<'_>, text: &str) -> ConfigError {
        match locate(text, self.table, self.key) {
            Some(span) => source.err(&span, self.message),
            None => ConfigError::Invalid {
                location: source.name().to_owned(),
                message: self.message,
            },
        }
    }
}

/// The byte span of the line `key = …` of `[table]` in `text`, else of the `[table]`
/// header. A line search: a key written as a dotted key or inline table elsewhere is found
/// by its table header only, or not at all.
fn locate(text: &str, table: &str, key: Option<&str>) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    let mut in_table = false;
    let mut header = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let start = offset + (line.len() - line.trim_start().len());
        offset += line.len();
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name.trim_start_matches('[').split(']').next().unwrap_or("");
            in_table = name.trim() == table;
            if in_table && header.is_none() {
                header = Some(start..start + trimmed.len());
            }
            continue;
        }
        if in_table
            && let Some(key) = key
            && trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(start..start + trimmed.len());
        }
    }
    header
}

/// A value parsed from a TOML string with [`FromStr`], the error becoming a TOML error
/// (so it carries the line).
struct Parsed<T>(T);

impl<'de, T: FromStr<Err = String>> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Parsed).map_err(serde::de::Error::custom)
    }
}

/// A group name or number for `socket_group` (resolved when the socket is bound).
struct GroupName(String);

impl FromStr for GroupName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            Ok(GroupName(s.to_owned()))
        } else {
            Err(format!(
                "socket_group `{s}` is not a group name or number (e.g. \"postfix\")"
            ))
        }
    }
}

/// A UNIX file mode: the string `"0666"` (octal) or a TOML integer such as `0o666`.
struct FileMode(u32);

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u32),
        }
        let mode = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8).ok(),
            Raw::Number(n) => Some(n),
        };
        match mode {
            Some(mode) if mode <= 0o7777 => Ok(FileMode(mode)),
            _ => Err(serde::de::Error::custom(
                "socket_mode must be an octal file mode such as \"0666\" or \"0660\"",
            )),
        }
    }
}
