//! The shared store: one Redis for a fleet of MTAs.
//!
//! Each policy is one string key, `<prefix><domain>` (prefix `mta-sts:policy:` by default,
//! configurable so several setups can share one Redis), holding the compact JSON of a
//! [`StoredPolicy`], with a Redis TTL of `expires_at - now` so Redis drops a policy when
//! RFC 8461 says it must no longer be applied.
//!
//! `put` is newer-wins across every daemon sharing the Redis: a small Lua script compares
//! the stored `fetched_at` with the new one and writes only if the new entry is not older,
//! atomically on the server. `load_all` walks the keys with `SCAN` (never `KEYS`, which
//! blocks Redis).
//!
//! Refresh leases (`Store::try_lease`) are keys `lease:<prefix><domain>`, set with
//! `SET NX PX`: the first daemon to claim a due domain refetches it, the others find its
//! policy in Redis afterwards. They sit outside the prefix, so `SCAN` never sees them.
//!
//! The connection goes through redis-rs's `ConnectionManager`, which reconnects in the
//! background after Redis restarts. Every round trip is bounded by
//! [`RedisOptions::timeout`] (500 ms by default): a dead or stalled Redis gives
//! [`StoreError::Unavailable`] quickly and never hangs a lookup.
//!
//! # Redis Sentinel
//!
//! [`RedisStore::with_sentinel`] builds the same store (same keys, values, scripts and
//! leases) over a master found through Redis Sentinel ([`RedisSentinelOptions`], module
//! `sentinel`): the sentinels are asked for the master of a named service, the connection
//! to it is kept, and when it breaks or the server answers that it is no longer the master
//! (`READONLY` after a failover demoted it), the next round trip asks the sentinels again
//! and goes to the new master. Such a store reports itself as `redis_sentinel`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Script, Value};
use async_trait::async_trait;

use super::{Store, StoreError, StoredPolicy};

mod sentinel;
use sentinel::SentinelLink;
pub use sentinel::{
    DEFAULT_SENTINEL_PORT, RedisSentinelOptions, SentinelAddress, SentinelAddressError,
};

const BACKEND: &str = "redis";
const SENTINEL_BACKEND: &str = "redis_sentinel";

/// The key prefix used unless configured otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "mta-sts:policy:";

/// The per-operation timeout used unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: usize = 500;

/// Newer-wins put. KEYS[1] = key; ARGV[1] = JSON, ARGV[2] = fetched_at, ARGV[3] = TTL in
/// seconds (≤ 0: the entry is already expired, so the key is deleted instead).
/// Returns 1 stored, 2 deleted (expired), 0 kept the newer stored entry.
/// An unreadable stored value is replaced.
const PUT_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then
    local stored = tonumber(decoded['fetched_at'])
    if stored and stored > tonumber(ARGV[2]) then
      return 0
    end
  end
end
local ttl = tonumber(ARGV[3])
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
return 1
";

/// How to reach Redis and how to lay out keys.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// Prepended to the domain to form each key; [`DEFAULT_KEY_PREFIX`] by default.
    pub key_prefix: String,
    /// Upper bound for each round trip (and each connection attempt);
    /// [`DEFAULT_TIMEOUT`] by default.
    pub timeout: Duration,
}

impl RedisOptions {
    /// Options for `url` with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A [`Store`] in Redis, shareable by many daemons (see the module docs).
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    key_prefix: String,
    timeout: Duration,
    put_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("backend", &self.link.backend())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where the store's connection comes from.
#[derive(Clone)]
enum Link {
    /// One Redis at a fixed address; the manager reconnects by itself.
    Direct(ConnectionManager),
    /// The master of a service, found through Redis Sentinel.
    Sentinel(Arc<SentinelLink>),
}

impl Link {
    fn backend(&self) -> &'static str {
        match self {
            Link::Direct(_) => BACKEND,
            Link::Sentinel(_) => SENTINEL_BACKEND,
        }
    }

    /// A connection for the next round trip.
    async fn connection(&self) -> RedisResult<Conn> {
        match self {
            Link::Direct(manager) => Ok(Conn::Manager(manager.clone())),
            Link::Sentinel(link) => link.connection().await,
        }
    }

    /// Whether `err`, met on `con`, is worth one retry on a fresh connection; forgets
    /// `con` when it is.
    fn retry_after(&self, err: &RedisError, con: &Conn) -> bool {
        match (self, con) {
            (Link::Direct(_), _) => is_connection_error(err),
            (Link::Sentinel(link), Conn::Sentinel { generation, .. }) => {
                let retry = is_connection_error(err) || sentinel::is_failover_error(err);
                if retry {
                    link.forget(*generation);
                }
                retry
            }
            (Link::Sentinel(_), Conn::Manager(_)) => false,
        }
    }
}

/// One connection of a [`Link`], usable by every redis-rs command.
#[derive(Clone)]
enum Conn {
    Manager(ConnectionManager),
    Sentinel {
        /// Which connection of the link this is (see [`SentinelLink::forget`]).
        generation: u64,
        con: ::redis::aio::MultiplexedConnection,
    },
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(con) => con.req_packed_command(cmd),
            Conn::Sentinel { con, .. } => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(con) => con.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel { con, .. } => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(con) => con.get_db(),
            Conn::Sentinel { con, .. } => con.get_db(),
        }
    }
}

fn unavailable(message: String) -> StoreError {
    unavailable_from(BACKEND, message)
}

fn unavailable_from(backend: &'static str, message: String) -> StoreError {
    StoreError::Unavailable { backend, message }
}

/// Whether an error means the connection is gone (so one retry on the reconnected link is
/// worth it).
fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error()
}

impl RedisStore {
    /// A store for `options` that connects lazily: no I/O happens here, so a daemon starts
    /// even while Redis is down, and operations fail with [`StoreError::Unavailable`] until
    /// it is back. Must be called inside a tokio runtime. Fails only on an invalid URL.
    pub fn new(options: RedisOptions) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(options.url.as_str())
            .map_err(|err| unavailable(format!("invalid Redis URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| unavailable(format!("cannot set up the Redis connection: {err}")))?;
        Ok(Self {
            link: Link::Direct(manager),
            key_prefix: options.key_prefix,
            timeout: options.timeout,
            put_script: Script::new(PUT_SCRIPT),
        })
    }

    /// Like [`RedisStore::new`], then checks that Redis answers `PING` within the timeout.
    pub async fn connect(options: RedisOptions) -> Result<Self, StoreError> {
        let store = Self::new(options)?;
        store.ping().await?;
        Ok(store)
    }

    /// A store on the master that Redis Sentinel names for `options.master_name`, with the
    /// keys and semantics of [`RedisStore::new`]. Connects lazily, like it: no I/O happens
    /// here, so a daemon starts while the sentinels or the master are down. Must be called
    /// inside a tokio runtime. Fails only when there is no sentinel address.
    pub fn with_sentinel(options: RedisSentinelOptions) -> Result<Self, StoreError> {
        let link = SentinelLink::new(&options)
            .map_err(|message| unavailable_from(SENTINEL_BACKEND, message))?;
        Ok(Self {
            link: Link::Sentinel(Arc::new(link)),
            key_prefix: options.key_prefix,
            timeout: options.timeout,
            put_script: Script::new(PUT_SCRIPT),
        })
    }

    /// Like [`RedisStore::with_sentinel`], then checks that the master answers `PING`
    /// within the timeout.
    pub async fn connect_sentinel(options: RedisSentinelOptions) -> Result<Self, StoreError> {
        let store = Self::with_sentinel(options)?;
        store.ping().await?;
        Ok(store)
    }

    /// Sends `PING`: `Ok` if Redis answered within the timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("PING", |mut con| async move {
            ::redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .map(|_| ())
        })
        .await
    }

    /// The Redis key holding `domain`'s policy.
    pub fn key_for(&self, domain: &str) -> String {
        format!("{}{domain}", self.key_prefix)
    }

    /// The Redis key of the refresh lease on `domain` (outside the policy keys' prefix).
    pub fn lease_key_for(&self, domain: &str) -> String {
        format!("lease:{}{domain}", self.key_prefix)
    }

    /// Runs one round trip under the timeout. If the connection turns out to be broken (for
    /// example after a Redis restart), retries once on the reconnected link within the same
    /// time budget. Every operation here is idempotent, so the retry is safe.
    ///
    /// Through Sentinel, a broken connection or a `READONLY` answer (the server was demoted
    /// by a failover) also makes the retry ask the sentinels for the current master.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            let con = self.link.connection().await?;
            match op(con.clone()).await {
                Err(err) if self.link.retry_after(&err, &con) => {
                    tracing::debug!(error = %err, "Redis connection broken, retrying once");
                    op(self.link.connection().await?).await
                }
                other => other,
            }
        };
        let backend = self.link.backend();
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(unavailable_from(backend, format!("{what}: {err}"))),
            Err(_) => {
                if let Link::Sentinel(link) = &self.link {
                    link.forget_current();
                }
                Err(unavailable_from(
                    backend,
                    format!("{what}: no answer within {} ms", self.timeout.as_millis()),
                ))
            }
        }
    }

    /// Decodes a stored value; `domain` is the one its key names.
    fn decode(domain: &str, value: &[u8]) -> Result<StoredPolicy, StoreError> {
        let entry: StoredPolicy =
            serde_json::from_slice(value).map_err(|err| StoreError::Corrupt {
                domain: domain.to_owned(),
                message: format!("bad JSON: {err}"),
            })?;
        if entry.domain != domain {
            return Err(StoreError::Corrupt {
                domain: domain.to_owned(),
                message: format!("the value names another domain ({})", entry.domain),
            });
        }
        Ok(entry)
    }

    /// The `SCAN MATCH` pattern for every key under the prefix (glob characters escaped).
    fn scan_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.key_prefix.len() + 1);
        for c in self.key_prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, domain: &str) -> Result<Option<StoredPolicy>, StoreError> {
        let key = self.key_for(domain);
        let value = self
            .run("GET", |mut con| {
                let key = &key;
                async move {
                    ::redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<Vec<u8>>>(&mut con)
                        .await
                }
            })
            .await?;
        value.map(|bytes| Self::decode(domain, &bytes)).transpose()
    }

    async fn put(&self, entry: &StoredPolicy, now: u64) -> Result<(), StoreError> {
        let key = self.key_for(&entry.domain);
        let json = serde_json::to_string(entry).map_err(|err| StoreError::Corrupt {
            domain: entry.domain.clone(),
            message: format!("cannot encode: {err}"),
        })?;
        let ttl = i64::try_from(entry.expires_at.saturating_sub(now)).unwrap_or(i64::MAX);
        let outcome = self
            .run("put", |mut con| {
                let (key, json, script) = (&key, &json, &self.put_script);
                async move {
                    script
                        .key(key)
                        .arg(json)
                        .arg(entry.fetched_at)
                        .arg(ttl)
                        .invoke_async::<i64>(&mut con)
                        .await
                }
            })
            .await?;
        match outcome {
            0 => tracing::debug!(domain = %entry.domain, "kept the newer policy already in Redis"),
            2 => tracing::debug!(domain = %entry.domain, "policy already expired, key removed"),
            _ => {}
        }
        Ok(())
    }

    async fn remove(&self, domain: &str) -> Result<(), StoreError> {
        let key = self.key_for(domain);
        self.run("DEL", |mut con| {
            let key = &key;
            async move {
                ::redis::cmd("DEL")
                    .arg(key)
                    .query_async::<i64>(&mut con)
                    .await
            }
        })
        .await
        .map(|_| ())
    }

    async fn load_all(&self, now: u64) -> Result<Vec<StoredPolicy>, StoreError> {
        let pattern = self.scan_pattern();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) = self
                .run("SCAN", |mut con| {
                    let pattern = &pattern;
                    async move {
                        ::redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(SCAN_COUNT)
                            .query_async::<(u64, Vec<String>)>(&mut con)
                            .await
                    }
                })
                .await?;
            // SCAN may return a key more than once.
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            if !keys.is_empty() {
                let values = self
                    .run("MGET", |mut con| {
                        let keys = &keys;
                        async move {
                            ::redis::cmd("MGET")
                                .arg(keys)
                                .query_async::<Vec<Option<Vec<u8>>>>(&mut con)
                                .await
                        }
                    })
                    .await?;
                for (key, value) in keys.iter().zip(values) {
                    // Expired or removed between SCAN and MGET.
                    let Some(value) = value else { continue };
                    let domain = key.strip_prefix(&self.key_prefix).unwrap_or(key);
                    match Self::decode(domain, &value) {
                        Ok(entry) if entry.is_fresh(now) => out.push(entry),
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(key = %key, error = %err, "skipping a corrupt cached policy");
                        }
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out)
    }

    async fn try_lease(&self, domain: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.lease_key_for(domain);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // `OK` when set, nil when another daemon's lease is live. (If a reply is lost and
        // the retry of `run` finds our own key, the lease counts as taken elsewhere: the
        // domain is then refreshed after the lease, not twice.)
        let set = self
            .run("SET NX", |mut con| {
                let key = &key;
                async move {
                    ::redis::cmd("SET")
                        .arg(key)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis)
                        .query_async::<Option<String>>(&mut con)
                        .await
                }
            })
            .await?;
        Ok(set.is_some())
    }

    fn backend(&self) -> &'static str {
        self.link.backend()
    }
}
