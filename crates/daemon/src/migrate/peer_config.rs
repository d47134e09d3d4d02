//! postfix-mta-sts-resolver's `/etc/mta-sts-daemon.yml` (format of release 1.5.1, its man
//! page `mta-sts-daemon.yml(5)`) to the equivalent `daemon.toml`, with one warning per key
//! that has no equivalent. Pure: text in, text and warnings out.
//!
//! Two of the peer's rules the TOML must spell out, because ours differ: a peer zone does
//! not inherit `default_zone` (its unset keys take the built-in defaults), and the peer's
//! default cache is in memory (`internal`) where ours is SQLite. So every zone is written
//! with all its keys, and the store always.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::yaml::{self, Kind, Value, YamlError};

/// The peer's built-in defaults (`postfix_mta_sts_resolver/defaults.py`, 1.5.1).
mod peer_default {
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: i64 = 8461;
    pub const TIMEOUT: f64 = 4.0;
    pub const STRICT_TESTING: bool = false;
    pub const REQUIRE_SNI: bool = true;
    pub const TLSRPT: bool = false;
}

/// The converted configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The `daemon.toml` text.
    pub toml: String,
    /// One per peer key that has no equivalent (listener, cache, refresh, zones, others).
    pub warnings: Vec<Warning>,
}

/// A peer key that has no equivalent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key's dotted path (`cache.options.max_connections`).
    pub key: String,
    /// Why it is left out, and what to do instead if anything.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a peer configuration cannot be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerConfigError {
    /// Not YAML.
    #[error("not YAML at {0}")]
    Yaml(#[from] YamlError),
    /// A key holds a value of the wrong type.
    #[error("line {line}: `{key}` must be {expected}, not {found}")]
    WrongType {
        /// Dotted key.
        key: String,
        /// 1-based line.
        line: usize,
        /// What the peer expects.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// A key holds a value the peer itself would refuse or crash on.
    #[error("line {line}: `{key}`: {message}")]
    BadValue {
        /// Dotted key.
        key: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, with the fix.
        message: String,
    },
}

/// Converts the text of a peer configuration file.
pub fn convert(text: &str) -> Result<Conversion, PeerConfigError> {
    convert_value(&yaml::parse(text)?)
}

/// Converts a parsed peer configuration (`Null` is the empty file: every default).
pub fn convert_value(root: &Value) -> Result<Conversion, PeerConfigError> {
    let mut c = Converter::default();
    let empty = Value {
        kind: Kind::Map(Vec::new()),
        line: 1,
    };
    let root = match root.kind {
        Kind::Null => &empty,
        Kind::Map(_) => root,
        _ => return Err(wrong("(top level)", root, "a mapping")),
    };
    c.socketmap(root)?;
    c.cache(root)?;
    c.refresh(root)?;
    c.zones(root)?;
    for key in root.keys() {
        if !TOP_KEYS.contains(&key) {
            c.unknown(key);
        }
    }
    if let Some(v) = root.get("cache_grace") {
        c.warn(
            "cache_grace",
            format!(
                "{}: no equivalent: the daemon checks a cached policy's _mta-sts id again once the TXT record's DNS TTL has passed, not after a fixed number of seconds",
                show(v)
            ),
        );
    }
    Ok(Conversion {
        toml: c.out,
        warnings: c.warnings,
    })
}

const TOP_KEYS: &[&str] = &[
    "host",
    "port",
    "path",
    "mode",
    "reuse_port",
    "shutdown_timeout",
    "cache_grace",
    "cache",
    "proactive_policy_fetching",
    "default_zone",
    "zones",
];

#[derive(Default)]
struct Converter {
    out: String,
    warnings: Vec<Warning>,
}

fn wrong(key: &str, v: &Value, expected: &'static str) -> PeerConfigError {
    PeerConfigError::WrongType {
        key: key.to_owned(),
        line: v.line,
        expected,
        found: v.type_name(),
    }
}

fn bad(key: &str, v: &Value, message: impl Into<String>) -> PeerConfigError {
    PeerConfigError::BadValue {
        key: key.to_owned(),
        line: v.line,
        message: message.into(),
    }
}

/// A scalar as the file wrote it, for warnings.
fn show(v: &Value) -> String {
    match &v.kind {
        Kind::Null => "null".to_owned(),
        Kind::Bool(b) => b.to_string(),
        Kind::Int(i) => i.to_string(),
        Kind::Float(f) => format!("{f:?}"),
        Kind::Str(s) => format!("{s:?}"),
        Kind::Seq(_) => "[…]".to_owned(),
        Kind::Map(_) => "{…}".to_owned(),
    }
}

fn get_bool(parent: &Value, key: &str, path: &str) -> Result<Option<bool>, PeerConfigError> {
    match parent.get(key) {
        None => Ok(None),
        Some(v) => match v.kind {
            Kind::Bool(b) => Ok(Some(b)),
            // `key:` with no value is None in Python: falsy.
            Kind::Null => Ok(Some(false)),
            _ => Err(wrong(path, v, "true or false")),
        },
    }
}

fn get_int(parent: &Value, key: &str, path: &str) -> Result<Option<(i64, usize)>, PeerConfigError> {
    match parent.get(key) {
        None => Ok(None),
        Some(v) => match v.kind {
            Kind::Int(i) => Ok(Some((i, v.line))),
            _ => Err(wrong(path, v, "an integer")),
        },
    }
}

fn get_str<'a>(
    parent: &'a Value,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, PeerConfigError> {
    match parent.get(key) {
        None => Ok(None),
        Some(v) => match &v.kind {
            Kind::Str(s) => Ok(Some(s)),
            _ => Err(wrong(path, v, "a string")),
        },
    }
}

/// Seconds (an int or a float, as the peer reads them) as a `daemon.toml` duration.
fn get_seconds(parent: &Value, key: &str, path: &str) -> Result<Option<String>, PeerConfigError> {
    let Some(v) = parent.get(key) else {
        return Ok(None);
    };
    let secs = match v.kind {
        Kind::Int(i) => i as f64,
        Kind::Float(f) => f,
        _ => return Err(wrong(path, v, "a number of seconds")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(bad(path, v, "must be a number of seconds from 0 to 10^9"));
    }
    Ok(Some(duration(secs)))
}

/// `90.5` -> `"90500ms"`, `86400` -> `"24h"`, `20` -> `"20s"`.
fn duration(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare when it can be, else quoted.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_owned()
    } else {
        quote(s)
    }
}

impl Converter {
    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn unknown(&mut self, key: &str) {
        self.warn(
            key,
            "not a postfix-mta-sts-resolver 1.5.1 key (it ignores it too); left out",
        );
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn kv(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.out, "{key} = {value}");
    }

    /// `host`, `port`, `path`, `mode`, `reuse_port`, `shutdown_timeout` -> `[socketmap]`.
    fn socketmap(&mut self, root: &Value) -> Result<(), PeerConfigError> {
        self.line("[socketmap]");
        let path = match root.get("path") {
            None => None,
            Some(Value {
                kind: Kind::Null, ..
            }) => None,
            Some(v) => match &v.kind {
                Kind::Str(s) if !s.is_empty() => Some(s.as_str()),
                Kind::Str(_) => return Err(bad("path", v, "an empty socket path")),
                _ => return Err(wrong("path", v, "a socket path")),
            },
        };
        if let Some(path) = path {
            self.kv("listen", &quote(&format!("unix:{path}")));
            for key in ["host", "port"] {
                if let Some(v) = root.get(key) {
                    self.warn(
                        key,
                        format!(
                            "{}: ignored because `path` is set (the peer ignores it too)",
                            show(v)
                        ),
                    );
                }
            }
            if let Some((mode, line)) = get_int(root, "mode", "mode")? {
                if !(0..=0o7777).contains(&mode) {
                    return Err(PeerConfigError::BadValue {
                        key: "mode".into(),
                        line,
                        message: "a file mode is 0 to 07777 (write it with a leading 0: 0666)"
                            .into(),
                    });
                }
                self.kv("socket_mode", &quote(&format!("{mode:04o}")));
            }
        } else {
            // asyncio takes a port written as a string ("8461") too.
            let port = match root.get("port") {
                None => peer_default::PORT,
                Some(v) => {
                    let port = match &v.kind {
                        Kind::Int(p) => Some(*p),
                        Kind::Str(s) => s.trim().parse::<i64>().ok(),
                        _ => None,
                    };
                    match port {
                        Some(p) if (1..=65535).contains(&p) => p,
                        Some(_) => return Err(bad("port", v, "a TCP port is 1 to 65535")),
                        None => return Err(wrong("port", v, "an integer")),
                    }
                }
            };
            let host = get_str(root, "host", "host")?.unwrap_or(peer_default::HOST);
            let ip = match host.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    self.warn(
                        "host",
                        format!(
                            "{host:?} is not an IP address and [socketmap] listen takes one: written as 127.0.0.1; put the address {host:?} resolves to"
                        ),
                    );
                    IpAddr::from([127, 0, 0, 1])
                }
            };
            self.kv(
                "listen",
                &quote(&std::net::SocketAddr::new(ip, port as u16).to_string()),
            );
            if let Some(v) = root.get("mode") {
                self.warn(
                    "mode",
                    format!(
                        "{}: applies only to a UNIX socket (`path`); ignored (the peer ignores it too)",
                        show(v)
                    ),
                );
            }
        }
        if get_bool(root, "reuse_port", "reuse_port")? == Some(true) {
            self.warn(
                "reuse_port",
                "true: no equivalent: the daemon does not set SO_REUSEPORT, so run one daemon per listen address (daemons on several hosts share policies through [cache] store = \"redis\")",
            );
        }
        if let Some(d) = get_seconds(root, "shutdown_timeout", "shutdown_timeout")? {
            self.kv("shutdown_timeout", &quote(&d));
        }
        self.line("");
        Ok(())
    }

    /// `cache` -> `[cache]` store and its location.
    fn cache(&mut self, root: &Value) -> Result<(), PeerConfigError> {
        let empty = Value {
            kind: Kind::Map(Vec::new()),
            line: root.line,
        };
        let cache = match root.get("cache") {
            None => &empty,
            Some(v) if matches!(v.kind, Kind::Null) => &empty,
            Some(v) if matches!(v.kind, Kind::Map(_)) => v,
            Some(v) => return Err(wrong("cache", v, "a mapping")),
        };
        for key in cache.keys() {
            if key != "type" && key != "options" {
                self.unknown(&format!("cache.{key}"));
            }
        }
        let kind = get_str(cache, "type", "cache.type")?.unwrap_or("internal");
        let options = match cache.get("options") {
            None => &empty,
            Some(v) if matches!(v.kind, Kind::Null) => &empty,
            Some(v) if matches!(v.kind, Kind::Map(_)) => v,
            Some(v) => return Err(wrong("cache.options", v, "a mapping")),
        };
        self.line("[cache]");
        // Options each kind maps; every other option gets a warning below.
        let mapped: &[&str] = match kind {
            "internal" => {
                self.line(
                    "# The peer's in-memory cache (lost on restart). store = \"sqlite\" would keep",
                );
                self.line("# policies across restarts (the daemon's default).");
                self.kv("store", &quote("memory"));
                &[]
            }
            "sqlite" => {
                let path = self.required_str(cache, options, "filename")?;
                self.kv("store", &quote("sqlite"));
                self.kv("path", &quote(path));
                &["filename"]
            }
            "redis" => {
                let url = self.required_str(cache, options, "url")?;
                self.kv("store", &quote("redis"));
                self.kv("redis_url", &quote(url));
                &["url"]
            }
            "redis_sentinel" => {
                self.sentinel(cache, options)?;
                &[
                    "sentinel_master_name",
                    "sentinels",
                    "password",
                    "db",
                    "sentinel_kwargs",
                ]
            }
            "postgres" => {
                let dsn = self.required_str(cache, options, "dsn")?;
                self.kv("store", &quote("postgres"));
                self.kv("postgres_url", &quote(dsn));
                &["dsn"]
            }
            _ => {
                let v = cache.get("type").unwrap_or(cache);
                return Err(bad(
                    "cache.type",
                    v,
                    format!(
                        "{kind:?} is not a cache type of the peer (internal, sqlite, redis, redis_sentinel, postgres)"
                    ),
                ));
            }
        };
        for key in options.keys() {
            if mapped.contains(&key) {
                continue;
            }
            let path = format!("cache.options.{key}");
            let value = options.get(key).map(show).unwrap_or_default();
            let why = match (kind, key) {
                ("internal", "cache_size") => {
                    "no equivalent (a count of entries): store = \"memory\" keeps every policy; with sqlite or redis [cache] max_memory bounds the daemon's memory in bytes (default 256MB, about 340,000 policies)"
                }
                ("sqlite", "threads") => {
                    "no equivalent: the daemon manages its own SQLite connections"
                }
                ("sqlite" | "postgres", "timeout") => {
                    "no equivalent: the daemon has no store timeout setting; a lookup is answered within its zone's budget whatever the store does"
                }
                ("redis" | "redis_sentinel", _) => {
                    "no equivalent: a redis-py connection option; the daemon's Redis client has no such setting"
                }
                ("postgres", _) => {
                    "no equivalent: an asyncpg pool option; put connection parameters in postgres_url"
                }
                _ => "not an option of this cache type in the peer; left out",
            };
            self.warn(&path, format!("{value}: {why}"));
        }
        Ok(())
    }

    /// `options.KEY` that the cache type needs, as a string.
    fn required_str<'a>(
        &self,
        cache: &Value,
        options: &'a Value,
        key: &str,
    ) -> Result<&'a str, PeerConfigError> {
        let path = format!("cache.options.{key}");
        match get_str(options, key, &path)? {
            Some(s) => Ok(s),
            None => Err(bad(
                &path,
                cache.get("options").unwrap_or(cache),
                "required for this cache type (the peer fails to start without it)",
            )),
        }
    }

    /// `redis_sentinel`: `sentinels` ([host, port] pairs), `sentinel_master_name`,
    /// `password`, `db`, `sentinel_kwargs.password`.
    fn sentinel(&mut self, cache: &Value, options: &Value) -> Result<(), PeerConfigError> {
        let master = self.required_str(cache, options, "sentinel_master_name")?;
        let Some(list) = options.get("sentinels") else {
            return Err(bad(
                "cache.options.sentinels",
                cache,
                "required for redis_sentinel (a list of [host, port])",
            ));
        };
        let Kind::Seq(items) = &list.kind else {
            return Err(wrong(
                "cache.options.sentinels",
                list,
                "a list of [host, port]",
            ));
        };
        let mut sentinels = Vec::new();
        for item in items {
            let pair = match &item.kind {
                Kind::Seq(pair) => pair.as_slice(),
                Kind::Str(s) => {
                    // "host:port" is not what redis-py takes, but it is unambiguous.
                    sentinels.push(quote(s));
                    continue;
                }
                _ => return Err(wrong("cache.options.sentinels", item, "[host, port]")),
            };
            match pair {
                [
                    Value {
                        kind: Kind::Str(host),
                        ..
                    },
                    Value {
                        kind: Kind::Int(port),
                        ..
                    },
                ] if (1..=65535).contains(port) => {
                    let host = if host.contains(':') {
                        format!("[{host}]")
                    } else {
                        host.clone()
                    };
                    sentinels.push(quote(&format!("{host}:{port}")));
                }
                _ => return Err(wrong("cache.options.sentinels", item, "[host, port]")),
            }
        }
        self.kv("store", &quote("redis_sentinel"));
        self.kv("sentinels", &format!("[{}]", sentinels.join(", ")));
        self.kv("sentinel_master", &quote(master));
        if let Some((db, _)) = get_int(options, "db", "cache.options.db")? {
            self.kv("redis_db", &db.to_string());
        }
        if let Some(pw) = get_str(options, "password", "cache.options.password")? {
            self.kv("redis_password", &quote(pw));
        }
        if let Some(kwargs) = options.get("sentinel_kwargs") {
            if !matches!(kwargs.kind, Kind::Map(_)) {
                return Err(wrong("cache.options.sentinel_kwargs", kwargs, "a mapping"));
            }
            for key in kwargs.keys() {
                let path = format!("cache.options.sentinel_kwargs.{key}");
                if key == "password" {
                    if let Some(pw) = get_str(kwargs, key, &path)? {
                        self.kv("sentinel_password", &quote(pw));
                    }
                } else {
                    self.warn(
                        &path,
                        "no equivalent: a redis-py option of the sentinel connections; the daemon's Redis client has no such setting",
                    );
                }
            }
        }
        Ok(())
    }

    /// `proactive_policy_fetching` -> `[cache]` refresh (still in the `[cache]` table).
    fn refresh(&mut self, root: &Value) -> Result<(), PeerConfigError> {
        const P: &str = "proactive_policy_fetching";
        let Some(section) = root.get(P) else {
            self.line("");
            return Ok(());
        };
        if matches!(section.kind, Kind::Null) {
            self.line("");
            return Ok(());
        }
        if !matches!(section.kind, Kind::Map(_)) {
            return Err(wrong(P, section, "a mapping"));
        }
        for key in section.keys() {
            if !["enabled", "interval", "concurrency_limit", "grace_ratio"].contains(&key) {
                self.unknown(&format!("{P}.{key}"));
            }
        }
        if get_bool(section, "enabled", &format!("{P}.enabled"))? == Some(false) {
            self.warn(
                &format!("{P}.enabled"),
                "false: no equivalent: the daemon always refreshes cached policies, every [cache] refresh (default 24h; RFC 8461 §3.3 suggests daily)",
            );
        }
        if let Some(d) = get_seconds(section, "interval", &format!("{P}.interval"))? {
            if d == "0s" {
                return Err(bad(
                    &format!("{P}.interval"),
                    section.get("interval").unwrap_or(section),
                    "must be above 0",
                ));
            }
            self.kv("refresh", &quote(&d));
        }
        if let Some((n, line)) = get_int(
            section,
            "concurrency_limit",
            &format!("{P}.concurrency_limit"),
        )? {
            if n < 1 {
                return Err(PeerConfigError::BadValue {
                    key: format!("{P}.concurrency_limit"),
                    line,
                    message: "must be at least 1".into(),
                });
            }
            self.kv("refresh_concurrency", &n.to_string());
        }
        if let Some(v) = section.get("grace_ratio") {
            self.warn(
                &format!("{P}.grace_ratio"),
                format!(
                    "{}: no equivalent: each cached policy is refetched once per [cache] refresh interval (jittered ±10 %), and a policy fetched for a lookup in between counts as refreshed",
                    show(v)
                ),
            );
        }
        self.line("");
        Ok(())
    }

    /// `default_zone` -> `[defaults]`, `zones.NAME` -> `[zones.NAME]`, each with every key.
    fn zones(&mut self, root: &Value) -> Result<(), PeerConfigError> {
        let empty = Value {
            kind: Kind::Map(Vec::new()),
            line: root.line,
        };
        let default_zone = match root.get("default_zone") {
            None => &empty,
            Some(v) if matches!(v.kind, Kind::Null) => &empty,
            Some(v) if matches!(v.kind, Kind::Map(_)) => v,
            Some(v) => return Err(wrong("default_zone", v, "a mapping")),
        };
        self.line("[defaults]");
        self.zone(default_zone, "default_zone")?;
        let Some(zones) = root.get("zones") else {
            return Ok(());
        };
        let entries = match &zones.kind {
            Kind::Null => return Ok(()),
            Kind::Map(entries) => entries,
            _ => return Err(wrong("zones", zones, "a mapping")),
        };
        for name in zones.keys() {
            let Some((_, zone)) = entries.iter().rev().find(|(k, _)| k == name) else {
                continue;
            };
            let path = format!("zones.{name}");
            let zone = match zone.kind {
                Kind::Null => &empty,
                Kind::Map(_) => zone,
                _ => return Err(wrong(&path, zone, "a mapping")),
            };
            self.line("");
            self.line(&format!("[zones.{}]", toml_key(name)));
            self.zone(zone, &path)?;
        }
        Ok(())
    }

    /// One zone's four keys; unset ones take the peer's built-in defaults.
    fn zone(&mut self, zone: &Value, path: &str) -> Result<(), PeerConfigError> {
        for key in zone.keys() {
            if !["timeout", "strict_testing", "require_sni", "tlsrpt"].contains(&key) {
                self.unknown(&format!("{path}.{key}"));
            }
        }
        let flag = |key: &str, default: bool| -> Result<bool, PeerConfigError> {
            Ok(get_bool(zone, key, &format!("{path}.{key}"))?.unwrap_or(default))
        };
        let strict = flag("strict_testing", peer_default::STRICT_TESTING)?;
        let sni = flag("require_sni", peer_default::REQUIRE_SNI)?;
        let tlsrpt = flag("tlsrpt", peer_default::TLSRPT)?;
        let budget = get_seconds(zone, "timeout", &format!("{path}.timeout"))?
            .unwrap_or_else(|| duration(peer_default::TIMEOUT));
        if budget == "0s" {
            return Err(bad(
                &format!("{path}.timeout"),
                zone.get("timeout").unwrap_or(zone),
                "must be above 0",
            ));
        }
        self.kv("strict_testing", &strict.to_string());
        self.kv("require_sni", &sni.to_string());
        self.kv("tlsrpt", &tlsrpt.to_string());
        self.line(
            "# The peer's `timeout`: past it the lookup answers NOTFOUND (or from the cache).",
        );
        self.kv("budget", &quote(&budget));
        Ok(())
    }
}
