//! The raw TOML shapes of `daemon.toml` (every key optional, unknown keys rejected), the
//! schema its unknown-key errors list, and the checks that turn them into a [`Config`]:
//! defaults applied, values that do not fit together refused at their key's line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use mta_sts_config::{ConfigError, HumanDuration, Listen, Nameserver, Schema, Source};
use serde::Deserialize;

use super::{
    CacheConfig, Config, DaneMode, HttpConfig, OnFailure, ResolverConfig, Secret, SocketmapConfig,
    StoreKind, TlsrptConfig, TlsrptSendConfig, ZoneSettings,
};

/// How unknown keys and bad values of `daemon.toml` are explained.
pub(super) const SCHEMA: Schema = Schema {
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
        (
            "cache",
            &[
                "store",
                "path",
                "redis_url",
                "sentinels",
                "sentinel_master",
                "redis_db",
                "redis_password",
                "sentinel_password",
                "postgres_url",
                "refresh",
                "refresh_concurrency",
                "max_memory",
                "flush_window",
            ],
        ),
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
                "probe_testing",
                "probe_interval",
                "probe_concurrency",
                "probe_timeout",
                "probe_ehlo",
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
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
    probe_testing: Option<bool>,
    probe_interval: Option<HumanDuration>,
    probe_concurrency: Option<usize>,
    probe_timeout: Option<HumanDuration>,
    probe_ehlo: Option<String>,
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
        let probe_testing = self.probe_testing.unwrap_or(d.probe_testing);
        if probe_testing && self.events.is_none() {
            return Err(Misfit::new(
                "tlsrpt",
                "probe_testing",
                "[tlsrpt] probe_testing needs [tlsrpt] events: the file the probe results are recorded in, e.g. `events = \"/var/lib/mta-sts/tlsrpt-events.jsonl\"`",
            ));
        }
        let probe_interval = self.probe_interval.map(|t| t.0).unwrap_or(d.probe_interval);
        if probe_interval.is_zero() {
            return Err(Misfit::new(
                "tlsrpt",
                "probe_interval",
                "[tlsrpt] probe_interval must be above 0 (default \"1h\")",
            ));
        }
        let probe_timeout = self.probe_timeout.map(|t| t.0).unwrap_or(d.probe_timeout);
        if probe_timeout.is_zero() {
            return Err(Misfit::new(
                "tlsrpt",
                "probe_timeout",
                "[tlsrpt] probe_timeout must be above 0 (default \"30s\")",
            ));
        }
        let probe_concurrency = self.probe_concurrency.unwrap_or(d.probe_concurrency);
        if !(1..=256).contains(&probe_concurrency) {
            return Err(Misfit::new(
                "tlsrpt",
                "probe_concurrency",
                "[tlsrpt] probe_concurrency must be 1 to 256 (default 4)",
            ));
        }
        let probe_ehlo = match self.probe_ehlo {
            None => None,
            Some(name) => match mta_sts::Domain::parse(&name) {
                Ok(domain) => Some(domain.as_str().to_owned()),
                Err(_) => {
                    return Err(Misfit::new(
                        "tlsrpt",
                        "probe_ehlo",
                        format!(
                            "[tlsrpt] probe_ehlo `{name}` is not a domain name (e.g. \"mail.example.com\")"
                        ),
                    ));
                }
            },
        };
        Ok(TlsrptConfig {
            events: self.events,
            flush_interval,
            socket: self.socket,
            socket_mode: self.socket_mode.map(|m| m.0).unwrap_or(d.socket_mode),
            socket_group: self.socket_group.map(|g| g.0.0),
            send,
            probe_testing,
            probe_interval,
            probe_concurrency,
            probe_timeout,
            probe_ehlo,
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
    sentinels: Option<Vec<String>>,
    sentinel_master: Option<String>,
    redis_db: Option<i64>,
    redis_password: Option<Secret>,
    sentinel_password: Option<Secret>,
    postgres_url: Option<String>,
    refresh: Option<HumanDuration>,
    refresh_concurrency: Option<usize>,
    max_memory: Option<ByteSize>,
    flush_window: Option<HumanDuration>,
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
    pub(super) fn resolve(self) -> Result<Config, Misfit> {
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

/// The longest `[cache] flush_window` accepted: the power-loss window stays short.
const MAX_FLUSH_WINDOW: Duration = Duration::from_secs(1);

impl RawCache {
    fn resolve(self) -> Result<CacheConfig, Misfit> {
        let d = CacheConfig::default();
        let mut sentinels = Vec::new();
        for text in self.sentinels.iter().flatten() {
            let address = text.parse().map_err(
                |e: mta_sts_resolver::store::redis::SentinelAddressError| {
                    Misfit::new("cache", "sentinels", format!("[cache] sentinels: {e}"))
                },
            )?;
            sentinels.push(address);
        }
        let cache = CacheConfig {
            store: self.store.unwrap_or(d.store),
            path: self.path.unwrap_or(d.path),
            redis_url: self.redis_url,
            sentinels,
            sentinel_master: self.sentinel_master,
            redis_db: self.redis_db.unwrap_or(d.redis_db),
            redis_password: self.redis_password,
            sentinel_password: self.sentinel_password,
            postgres_url: self.postgres_url,
            refresh: self.refresh.map(|t| t.0).unwrap_or(d.refresh),
            refresh_concurrency: self.refresh_concurrency.unwrap_or(d.refresh_concurrency),
            max_memory: self.max_memory.map_or(d.max_memory, |b| b.0),
            flush_window: self.flush_window.map_or(d.flush_window, |t| t.0),
        };
        if cache.flush_window > MAX_FLUSH_WINDOW {
            return Err(Misfit::new(
                "cache",
                "flush_window",
                "[cache] flush_window must be at most 1s (kill -9 or a power cut loses the \
                 policies fetched in the last window); the default is 100ms, \"0s\" writes \
                 and fsyncs each policy before the lookup is answered",
            ));
        }
        if cache.refresh_concurrency == 0 {
            return Err(Misfit::new(
                "cache",
                "refresh_concurrency",
                "[cache] refresh_concurrency must be at least 1; the default is 32",
            ));
        }
        if cache.store == StoreKind::Redis && cache.redis_url.is_none() {
            return Err(Misfit::new(
                "cache",
                "store",
                "[cache] store = \"redis\" needs redis_url, e.g. `redis_url = \"redis://127.0.0.1:6379/0\"`",
            ));
        }
        if cache.redis_db < 0 {
            return Err(Misfit::new(
                "cache",
                "redis_db",
                "[cache] redis_db is a database number, 0 or more; the default is 0",
            ));
        }
        if cache.sentinel_master.as_deref() == Some("") {
            return Err(Misfit::new(
                "cache",
                "sentinel_master",
                "[cache] sentinel_master is empty: write the name the sentinels monitor the \
                 master under (`sentinel monitor NAME …` in sentinel.conf), e.g. \
                 `sentinel_master = \"mymaster\"`",
            ));
        }
        if cache.store == StoreKind::RedisSentinel {
            if cache.sentinels.is_empty() {
                return Err(Misfit::new(
                    "cache",
                    "store",
                    "[cache] store = \"redis_sentinel\" needs sentinels, the Redis Sentinel \
                     addresses, e.g. `sentinels = [\"127.0.0.1:26379\"]`",
                ));
            }
            if cache.sentinel_master.is_none() {
                return Err(Misfit::new(
                    "cache",
                    "store",
                    "[cache] store = \"redis_sentinel\" needs sentinel_master, the name the \
                     sentinels monitor the master under, e.g. `sentinel_master = \"mymaster\"`",
                ));
            }
        }
        if cache.store == StoreKind::Postgres && cache.postgres_url.is_none() {
            return Err(Misfit::new(
                "cache",
                "store",
                "[cache] store = \"postgres\" needs postgres_url, e.g. \
                 `postgres_url = \"postgres://mta-sts:PASSWORD@127.0.0.1/mta_sts\"`",
            ));
        }
        Ok(cache)
    }
}

/// Values that parse but do not fit together: the table and key to point at, and what is
/// wrong with the fix. The raw values carry no spans, so the location is found in the text
/// ([`locate`]).
#[derive(Debug)]
pub(super) struct Misfit {
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
    pub(super) fn into_error(self, source: &Source<'_>, text: &str) -> ConfigError {
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

/// What every size error ends with: how to write one.
const SIZE_FORMS: &str =
    "write e.g. \"128MB\", \"1GiB\", \"500000KB\", a number of bytes, or \"unlimited\" (also 0)";

/// A size in bytes: a number of bytes, or a number with a unit: `B`, `KB`/`MB`/`GB`
/// (powers of 1000), `KiB`/`MiB`/`GiB` (powers of 1024), any case; `"unlimited"` or `0` for
/// no bound (`None`).
struct ByteSize(Option<u64>);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("unlimited") {
            return Ok(ByteSize(None));
        }
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let factor: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => Some(1),
            "kb" | "k" => Some(1000),
            "mb" | "m" => Some(1000 * 1000),
            "gb" | "g" => Some(1000 * 1000 * 1000),
            "kib" => Some(1 << 10),
            "mib" => Some(1 << 20),
            "gib" => Some(1 << 30),
            _ => None,
        };
        match (number.parse::<u64>().ok(), factor) {
            (Some(n), Some(factor)) => n
                .checked_mul(factor)
                .map(|bytes| ByteSize((bytes > 0).then_some(bytes)))
                .ok_or_else(|| format!("`{text}` is too large a size: {SIZE_FORMS}")),
            _ => Err(format!("`{text}` is not a size: {SIZE_FORMS}")),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a size: {SIZE_FORMS}")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize((n > 0).then_some(n)))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(|n| ByteSize((n > 0).then_some(n)))
                    .map_err(|_| E::custom(format!("`{n}` is not a size: {SIZE_FORMS}")))
            }
        }
        deserializer.deserialize_any(V)
    }
}
