//! The values both configuration files take, each with one parser and one error text.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::Source;

/// What every duration error ends with: how to write one.
const DURATION_FORMS: &str =
    "write e.g. \"500ms\", \"10s\", \"5m\", \"24h\" (or a number of seconds: 10)";

/// A duration written like `"10s"`, `"500ms"`, `"24h"`, `"1h 30m"` (humantime syntax), or
/// as a number of seconds (`10`, `0.5`). Zero is a duration; callers that need a positive
/// one say so with the key's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text)
            .map(HumanDuration)
            .map_err(|e| format!("`{text}` is not a duration ({e}): {DURATION_FORMS}"))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration: {DURATION_FORMS}")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                u64::try_from(n)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("`{n}` is not a duration: {DURATION_FORMS}")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(n)))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<HumanDuration, E> {
                Duration::try_from_secs_f64(f)
                    .map(HumanDuration)
                    .map_err(|_| E::custom(format!("`{f}` is not a duration: {DURATION_FORMS}")))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A name server: `IP` (port 53) or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nameserver(pub SocketAddr);

impl FromStr for Nameserver {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Nameserver(addr));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Nameserver(SocketAddr::new(ip, 53)));
        }
        Err(format!(
            "nameserver `{text}` is not IP or IP:PORT (e.g. \"127.0.0.1\", \"127.0.0.1:5353\", \"[::1]:53\")"
        ))
    }
}

/// Where a server listens: `127.0.0.1:8461`, `[::1]:8461` or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UNIX socket path.
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs a socket path, e.g. `unix:/run/mta-sts/socketmap.sock`"
                        .to_owned(),
                );
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
            format!("`{s}` is not IP:PORT (e.g. `127.0.0.1:8461`, `[::1]:8461`) or `unix:/path`")
        })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "{addr}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Where a store is: a SQLite file, a PostgreSQL URL or a Redis URL (the syntax of
/// `mta-sts report --db` and of the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, as written.
    Postgres(String),
    /// A `redis://` or `rediss://` URL, as written.
    Redis(String),
}

impl StoreLocation {
    /// Relative SQLite paths made absolute against the configuration file's directory,
    /// like every other path; URLs stay as written.
    pub fn resolve(self, source: &Source<'_>) -> StoreLocation {
        match self {
            StoreLocation::Sqlite(path) => StoreLocation::Sqlite(source.path(&path)),
            url => url,
        }
    }
}

/// Whether a store location names PostgreSQL (the `mta-sts report --db` rule).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl FromStr for StoreLocation {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            Err("store is empty: write a SQLite file path such as \"/var/lib/mta-sts/reports.db\" or a postgres:// URL".to_string())
        } else if is_postgres_url(text) {
            Ok(StoreLocation::Postgres(text.to_string()))
        } else if text.starts_with("redis://") || text.starts_with("rediss://") {
            Ok(StoreLocation::Redis(text.to_string()))
        } else {
            Ok(StoreLocation::Sqlite(PathBuf::from(text)))
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) | StoreLocation::Redis(url) => f.write_str(url),
        }
    }
}

/// Strings parsed with [`FromStr`], the error becoming a serde error (so TOML gives it the
/// line of the value).
macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(Nameserver, Listen, StoreLocation);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct T {
        d: HumanDuration,
    }

    fn duration(value: &str) -> Result<Duration, String> {
        toml::from_str::<T>(&format!("d = {value}"))
            .map(|t| t.d.0)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn durations_in_every_form() {
        assert_eq!(duration("\"1h 30m\""), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        let e = duration("\"5 parsecs\"").unwrap_err();
        assert!(e.contains("5 parsecs") && e.contains("\"10s\""), "{e}");
        assert!(duration("-1").unwrap_err().contains("\"10s\""));
        assert!(duration("true").unwrap_err().contains("\"10s\""));
    }

    #[test]
    fn addresses_and_stores() {
        assert_eq!(
            "127.0.0.1".parse::<Nameserver>().unwrap().0,
            "127.0.0.1:53".parse::<SocketAddr>().unwrap()
        );
        assert!(
            "dns.example"
                .parse::<Nameserver>()
                .unwrap_err()
                .contains("IP:PORT")
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<Listen>().unwrap().to_string(),
            "unix:/run/x.sock"
        );
        assert!(
            "localhost"
                .parse::<Listen>()
                .unwrap_err()
                .contains("unix:/path")
        );
        let source = Source::new("", Some(std::path::Path::new("/etc/m/serve.toml")), "x");
        let local = "r.db".parse::<StoreLocation>().unwrap().resolve(&source);
        assert_eq!(local.to_string(), "/etc/m/r.db");
        let url = "postgres://u@h/db".parse::<StoreLocation>().unwrap();
        assert_eq!(url, StoreLocation::Postgres("postgres://u@h/db".into()));
        assert!(
            " ".parse::<StoreLocation>()
                .unwrap_err()
                .contains("store is empty")
        );
    }
}
