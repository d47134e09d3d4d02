//! The Redis master of a service, found through Redis Sentinel (the `redis_sentinel` store).
//!
//! [`SentinelLink`] keeps one multiplexed connection to the master the sentinels named last.
//! A round trip that finds it broken (I/O error, dropped) or demoted (`READONLY`: a failover
//! made it a replica; `MASTERDOWN`) makes [`SentinelLink::forget`] drop it, and the next
//! [`SentinelLink::connection`] asks the sentinels again (redis-rs checks with `ROLE` that
//! the server they name really is the master before handing it out). Connections are
//! replaced by generation, so a late error on an old connection never drops a newer one.
//!
//! What a failover may lose is what Redis Sentinel itself may lose: writes the old master
//! acknowledged but had not yet replicated, and writes it took between the switch and its
//! demotion. For this store that is at most a policy fetched again on its next lookup, or a
//! refresh lease granted twice (one extra refetch); never a wrong answer.
//!
//! One lookup runs at a time, in a task of its own: when it outlasts the operation that
//! started it (a stalled sentinel listed first costs redis-rs's 1 s connect or 500 ms reply
//! timeout before the next one is asked), it still finishes and leaves its connection for
//! the operations after it, instead of being cancelled and started over by each of them.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, RedisError, RedisResult};
use tokio::sync::OwnedMutexGuard;

use super::{Conn, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT};

/// The port of a sentinel address that names none (Redis Sentinel's default).
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// One sentinel's address: `host:port`, `[v6-address]:port`, or a host alone for port
/// [`DEFAULT_SENTINEL_PORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why a sentinel address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SentinelAddressError {
    /// Nothing before the port.
    #[error("`{0}` names no host (write host:port, e.g. `127.0.0.1:26379`)")]
    NoHost(String),
    /// The part after the last colon is not a port number.
    #[error("`{0}` has no valid port (write host:port, e.g. `127.0.0.1:26379`)")]
    BadPort(String),
}

impl FromStr for SentinelAddress {
    type Err = SentinelAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            // [v6]:port or [v6]
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| SentinelAddressError::BadPort(s.to_owned()))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| SentinelAddressError::BadPort(s.to_owned()))?,
                    ),
                ),
            }
        } else {
            match text.split_once(':') {
                // More than one colon without brackets: a bare IPv6 address.
                Some((_, rest)) if rest.contains(':') => (text, None),
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(SentinelAddressError::NoHost(s.to_owned()));
        }
        let port = match port {
            None => DEFAULT_SENTINEL_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| SentinelAddressError::BadPort(s.to_owned()))?,
        };
        Ok(SentinelAddress {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for SentinelAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to reach the master through Redis Sentinel, and how to lay out keys (the same keys
/// as [`super::RedisOptions`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSentinelOptions {
    /// The sentinels to ask, in order (at least one).
    pub sentinels: Vec<SentinelAddress>,
    /// The service (master) name the sentinels monitor, e.g. `mymaster`.
    pub master_name: String,
    /// The database number on the master; 0 by default.
    pub db: i64,
    /// The password of the master (`AUTH`), if it needs one.
    pub password: Option<String>,
    /// The password of the sentinels, if they need one.
    pub sentinel_password: Option<String>,
    /// Prepended to the domain to form each key; [`DEFAULT_KEY_PREFIX`] by default.
    pub key_prefix: String,
    /// Upper bound for each round trip, the master lookup included; [`DEFAULT_TIMEOUT`] by
    /// default.
    pub timeout: Duration,
}

impl RedisSentinelOptions {
    /// Options for the master `master_name` known to `sentinels`, database 0, no passwords,
    /// the default prefix and timeout.
    pub fn new(sentinels: Vec<SentinelAddress>, master_name: impl Into<String>) -> Self {
        Self {
            sentinels,
            master_name: master_name.into(),
            db: 0,
            password: None,
            sentinel_password: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for RedisSentinelOptions {
    // Never print the passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("RedisSentinelOptions")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("db", &self.db)
            .field("password", &redacted(&self.password))
            .field("sentinel_password", &redacted(&self.sentinel_password))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Whether the server answered that it is not (or no longer) a usable master: after a
/// failover the old master is a replica and refuses writes with `READONLY`.
pub(super) fn is_failover_error(err: &RedisError) -> bool {
    matches!(err.code(), Some("READONLY" | "MASTERDOWN")) || err.to_string().contains("READONLY")
}

/// The current master connection of a sentinel-backed store (see the module docs).
pub(super) struct SentinelLink {
    /// Asks the sentinels; held by the one lookup in flight, so that a failover seen by
    /// many operations at once makes one lookup, not one each.
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
    /// The connection in use and its generation.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Why the last lookup failed, for the operations that waited for it.
    last_error: Mutex<Option<String>>,
    /// The last generation handed out.
    generation: AtomicU64,
    /// Timeouts of new master connections.
    config: AsyncConnectionConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded value is a plain Option, always consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SentinelLink {
    /// A link for `options`; no I/O. `Err` says what is wrong with the options.
    pub(super) fn new(options: &RedisSentinelOptions) -> Result<Self, String> {
        if options.sentinels.is_empty() {
            return Err("no sentinel address given".to_owned());
        }
        if options.master_name.is_empty() {
            return Err("no master name given".to_owned());
        }
        let addresses = options
            .sentinels
            .iter()
            .map(|a| ConnectionAddr::Tcp(a.host.clone(), a.port));
        let mut builder =
            SentinelClientBuilder::new(addresses, &options.master_name, SentinelServerType::Master)
                .map_err(|e| format!("invalid sentinel settings: {e}"))?
                .set_client_to_redis_db(options.db);
        if let Some(password) = &options.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &options.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let client = builder
            .build()
            .map_err(|e| format!("invalid sentinel settings: {e}"))?;
        Ok(Self {
            sentinel: Arc::new(tokio::sync::Mutex::new(client)),
            current: Mutex::new(None),
            last_error: Mutex::new(None),
            generation: AtomicU64::new(0),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.timeout))
                .set_response_timeout(Some(options.timeout)),
        })
    }

    fn cached(&self) -> Option<Conn> {
        lock(&self.current)
            .as_ref()
            .map(|(generation, con)| Conn::Sentinel {
                generation: *generation,
                con: con.clone(),
            })
    }

    /// The connection to the current master: the kept one, or a new one to the master the
    /// sentinels name now (see the module docs for why the lookup runs in a task).
    pub(super) async fn connection(self: &Arc<Self>) -> RedisResult<Conn> {
        if let Some(con) = self.cached() {
            return Ok(con);
        }
        if let Ok(guard) = Arc::clone(&self.sentinel).try_lock_owned() {
            let link = Arc::clone(self);
            return tokio::spawn(async move { link.look_up(guard).await })
                .await
                .map_err(|e| {
                    RedisError::from((
                        ErrorKind::Client,
                        "the master lookup through Redis Sentinel failed",
                        e.to_string(),
                    ))
                })?;
        }
        // A lookup is in flight: take its connection when it is done.
        drop(self.sentinel.lock().await);
        self.cached().ok_or_else(|| {
            let why = lock(&self.last_error).clone().unwrap_or_default();
            RedisError::from((
                ErrorKind::Client,
                "no master found through Redis Sentinel",
                why,
            ))
        })
    }

    /// Asks the sentinels for the master and connects to it, holding `sentinel`.
    async fn look_up(&self, mut sentinel: OwnedMutexGuard<SentinelClient>) -> RedisResult<Conn> {
        // Another lookup may have finished between the caller's check and the lock.
        if let Some(con) = self.cached() {
            return Ok(con);
        }
        let found = async {
            let client = sentinel.async_get_client().await?;
            client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
        }
        .await;
        let con = match found {
            Ok(con) => con,
            Err(err) => {
                *lock(&self.last_error) = Some(err.to_string());
                return Err(err);
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *lock(&self.current) = Some((generation, con.clone()));
        tracing::debug!(
            generation,
            "connected to the master named by Redis Sentinel"
        );
        Ok(Conn::Sentinel { generation, con })
    }

    /// Drops connection `generation` if it is still the current one: the next round trip
    /// asks the sentinels for the master again.
    pub(super) fn forget(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    /// Drops the current connection, whichever it is (a round trip on it timed out: the
    /// master may be gone without a word, as a host that died).
    pub(super) fn forget_current(&self) {
        *lock(&self.current) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_addresses_parse() {
        let ok = |s: &str, host: &str, port: u16| {
            assert_eq!(
                s.parse::<SentinelAddress>(),
                Ok(SentinelAddress {
                    host: host.to_owned(),
                    port
                }),
                "{s}"
            );
        };
        ok("127.0.0.1:26379", "127.0.0.1", 26379);
        ok("10.0.0.2:26380", "10.0.0.2", 26380);
        ok(
            "sentinel.example",
            "sentinel.example",
            DEFAULT_SENTINEL_PORT,
        );
        ok("[::1]:26381", "::1", 26381);
        ok("[::1]", "::1", DEFAULT_SENTINEL_PORT);
        ok("::1", "::1", DEFAULT_SENTINEL_PORT);
        for bad in [
            "",
            ":26379",
            "host:",
            "host:port",
            "host:0",
            "host:70000",
            "[::1]x",
        ] {
            assert!(bad.parse::<SentinelAddress>().is_err(), "{bad:?} parsed");
        }
        let a: SentinelAddress = "[::1]:26381".parse().expect("parses");
        assert_eq!(a.to_string(), "[::1]:26381");
    }

    #[test]
    fn passwords_are_never_printed() {
        let mut o = RedisSentinelOptions::new(vec![], "mymaster");
        o.password = Some("hunter2".into());
        o.sentinel_password = Some("swordfish".into());
        let printed = format!("{o:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("swordfish"));
        assert!(printed.contains("<redacted>"));
    }
}
