//! TLS-RPT data (RFC 8460) from the daemon: what it records about policy discovery, a
//! collector for the session results of the MTA, and scheduled report sending. Everything
//! is off by default (`[tlsrpt]` in the configuration, see [`crate::config::TlsrptConfig`]).
//!
//! # What is recorded (the session rule)
//!
//! RFC 8460 §4 reports count **sessions**: SMTP connections to an MX host, with their TLS
//! outcome. The daemon does not see sessions. It sees socketmap queries: Postfix asks for the
//! TLS policy of a next-hop domain before it connects, once per delivery attempt, so one
//! query stands for (roughly) one attempt. What the daemon *knows* is the outcome of policy
//! discovery; whether TLS then succeeded is known only to the MTA. Hence:
//!
//! - **Discovery failures are always recorded** (when `events` is set): a query for a domain
//!   that published an `_mta-sts` record but whose policy could not be fetched or used, with
//!   nothing unexpired cached, is one failed session of result type `sts-policy-fetch-error`,
//!   `sts-policy-invalid` or `sts-webpki-invalid` (RFC 8460 §4.3.2, the mapping of
//!   `mta_sts_resolver::Error::result_type`), with the resolver's reason code (e.g.
//!   `certificate-wrong-name`) as `failure-reason-code`. That session went ahead without the
//!   policy the domain asked for, which is what §4.3.2 reports. Not recorded: "no record"
//!   (the domain has no policy: nothing failed), an invalid domain (no query was made), and
//!   DNS failures of the TXT lookup (transient, RFC 8460 §4.3.4, and whether the domain has a
//!   policy at all is unknown). A failed *refresh* while an unexpired cached policy still
//!   applies is not a failure either: the session uses the cached policy (RFC 8461 §5.1).
//! - **Successes are never recorded from queries**: a socketmap query is not a session.
//!   Postfix asks before it connects, and `postmap -q` asks without connecting at all; a
//!   delivery that then fails certificate verification (`Server certificate not verified`)
//!   was asked for exactly like one that succeeded. Successful sessions come only from the
//!   MTA itself: Postfix ≥ 3.10 through the collector socket below. The former
//!   `count_applied = true` (one success per query that applied a policy) is refused at
//!   configuration load for that reason ([`crate::config`]).
//!
//! Counting is in memory and cheap (per policy domain an entry of atomic counters in a
//! sharded map: a known domain costs a hash, a shared lock and an atomic add, no allocation
//! and no I/O on the socketmap path). Every `flush_interval` (aligned to the wall clock, so
//! no interval straddles 00:00 UTC), on reload and on shutdown the counters are appended to
//! the events file as lines of the `tlsrpt::event` format with `"count": n` and one extra
//! member `"source": "daemon"`, which the aggregator ignores. Each line is stamped with the
//! last second of its interval, so it lands in the right UTC day (RFC 8460 §4.1).
//!
//! Overlap with MTA reports: when Postfix reports sessions itself and the daemon answered
//! `NOTFOUND ` after a discovery failure, Postfix reports that session as `no-policy-found`
//! while the daemon records an `sts` failure for it. Both lines describe the same session
//! from two sides; the report then shows the `sts` policy failing and the delivery that went
//! ahead without it.
//!
//! # The collector socket
//!
//! With `socket` set, the daemon receives on a Unix **datagram** socket what Postfix 3.10
//! sends through sys4's libtlsrpt (`smtp_tlsrpt_socket_name`), taking the place of
//! `tlsrpt-collectd`. Each valid datagram is stamped with its arrival time (datagrams carry
//! none) and appended as event lines (`"source": "socket"`), see [`tlsrpt::event`] for the
//! mapping of one delivery request to sessions. A datagram may also hold our own event
//! objects, one per line. An invalid datagram is dropped whole, counted in
//! `mta_sts_tlsrpt_datagrams_invalid_total` and logged at debug level at most once
//! per [`INVALID_LOG_EVERY`].
//!
//! # Sending on a schedule
//!
//! With `[tlsrpt.send]`, a worker thread runs what `mta-sts report send` does, through
//! [`mta_sts_report_store::send::Sender`] and the same SQLite outbox: after each UTC day has
//! rolled over plus a random delay of up to `jitter` (RFC 8460 §4.1 "some delay"), it flushes
//! the counters, ingests the new lines of the events file, generates the reports of every
//! completed day not reported yet and delivers them; every `retry_interval` it retries the
//! due outbox entries (RFC 8460 §5.3: retry for up to 24 hours). It also runs once at start,
//! which catches up on days missed while the daemon was down.
//!
//! Report mail must reach the reporting address even when that domain's own MTA-STS or DANE
//! fails (RFC 8460 §3, §5.3): send it through a relay/transport that does not consult the
//! daemon's policy map (see docs/postfix.md).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mta_sts::Domain;
use mta_sts_report_store::deliver::{DeliveryConfig, read_pem_certs};
use mta_sts_report_store::outbox::{AttemptResult, Outbox};
use mta_sts_report_store::send::{SendConfig, Sender};
use mta_sts_resolver::dns::{Dns, DnsConfig};
use mta_sts_resolver::{ConnectTo, Error as ResolverError, Lookup};
use tlsrpt::aggregate::Submitter;
use tlsrpt::event::{Event, EventPolicy, Outcome, parse_line};
use tlsrpt::{PolicyType, ResultType, UtcDateTime};
use tokio::net::UnixDatagram;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ResolverConfig, TlsrptConfig, TlsrptSendConfig};
use crate::metrics::{Metrics, bump};

/// Invalid datagrams are logged (at debug level) at most once per this interval; the others
/// are only counted.
pub const INVALID_LOG_EVERY: Duration = Duration::from_secs(10);

/// Largest datagram accepted; a longer one is cut by the kernel and refused as invalid.
pub const MAX_DATAGRAM: usize = 256 * 1024;

/// Most event lines kept in memory while the events file cannot be written; beyond, the
/// oldest are dropped (with a warning).
pub const MAX_PENDING_LINES: usize = 100_000;

/// Number of shards of the counter map.
const SHARDS: usize = 32;

/// The time source, in Unix seconds. [`system_clock`] in production; tests inject one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// Why the TLS-RPT part of the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsrptError {
    /// The collector socket cannot be bound or given its mode.
    #[error("cannot listen on the TLS-RPT collector socket {}: {message}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `[tlsrpt.send]` cannot be set up (outbox, DKIM key, CA file, DNS).
    #[error("[tlsrpt.send]: {0}")]
    Send(String),
}

/// Whether a discovery error is recorded as a failed session (see the module
/// documentation): not for "no record", an invalid domain or a DNS failure.
pub fn is_recorded_failure(error: &ResolverError) -> bool {
    !matches!(
        error,
        ResolverError::NoRecord { .. }
            | ResolverError::InvalidDomain { .. }
            | ResolverError::DnsFailure { .. }
    )
}

/// The failure kinds counted per domain: (RFC 8460 result type, reason code). The last
/// three are the fall-backs for reason codes not listed (new resolver errors).
const FAILURES: [(&str, &str); 19] = [
    ("sts-policy-fetch-error", "connect-failed"),
    ("sts-policy-fetch-error", "tls-version"),
    ("sts-policy-fetch-error", "tls-handshake-failed"),
    ("sts-policy-fetch-error", "timeout"),
    ("sts-policy-fetch-error", "redirect"),
    ("sts-policy-fetch-error", "http-status"),
    ("sts-policy-fetch-error", "too-large"),
    ("sts-policy-fetch-error", "http-protocol"),
    ("sts-policy-invalid", "invalid-record"),
    ("sts-policy-invalid", "multiple-records"),
    ("sts-policy-invalid", "media-type"),
    ("sts-policy-invalid", "invalid-policy"),
    ("sts-webpki-invalid", "certificate-expired"),
    ("sts-webpki-invalid", "certificate-untrusted"),
    ("sts-webpki-invalid", "certificate-wrong-name"),
    ("sts-webpki-invalid", "certificate-invalid"),
    ("sts-policy-fetch-error", ""),
    ("sts-policy-invalid", ""),
    ("sts-webpki-invalid", ""),
];

fn failure_slot(error: &ResolverError) -> usize {
    let reason = error.reason_code();
    let result_type = error.result_type().as_str();
    FAILURES
        .iter()
        .position(|(r, code)| *r == result_type && *code == reason)
        .or_else(|| {
            FAILURES
                .iter()
                .rposition(|(r, code)| *r == result_type && code.is_empty())
        })
        .unwrap_or(FAILURES.len() - 3)
}

/// The counters of one policy domain since the last flush.
#[derive(Debug, Default)]
struct DomainCounters {
    failures: [AtomicU64; FAILURES.len()],
}

type Shard = RwLock<HashMap<Domain, Arc<DomainCounters>>>;

/// The in-memory counters of policy outcomes per policy domain (see the module
/// documentation). Cheap to call from the socketmap path.
#[derive(Debug)]
pub struct Recorder {
    enabled: AtomicBool,
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            enabled: AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Recorder {
    /// A recorder that records nothing until [`Recorder::configure`] enables it.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Turns recording on or off.
    pub fn configure(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn shard(&self, domain: &Domain) -> &Shard {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(domain.as_str().as_bytes());
        let index = (hasher.finish() as usize) % self.shards.len();
        &self.shards[index]
    }

    /// The counters of `domain`, created on first use.
    fn counters(&self, domain: &Domain) -> Arc<DomainCounters> {
        let shard = self.shard(domain);
        if let Some(c) = shard.read().unwrap_or_else(|p| p.into_inner()).get(domain) {
            return Arc::clone(c);
        }
        let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(domain.clone()).or_default())
    }

    /// Runs `f` on the counters of `domain` under the shard's read lock (no allocation when
    /// the domain is known).
    fn with_counters(&self, domain: &Domain, f: impl FnOnce(&DomainCounters)) {
        let shard = self.shard(domain);
        {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get(domain) {
                f(c);
                return;
            }
        }
        // First query for the domain since the last flush: create its entry. A flush may
        // run in between; the entry then simply belongs to the next interval.
        f(&self.counters(domain));
    }

    /// Records the outcome of one socketmap query for `domain` (see the module
    /// documentation for what counts): a discovery failure with no policy applied. A query
    /// that applied a policy records nothing, since the session's TLS outcome is unknown here.
    pub fn record(&self, domain: &Domain, lookup: &Lookup) {
        if !self.enabled() || lookup.policy.is_some() {
            return;
        }
        if let Some(error) = &lookup.error
            && is_recorded_failure(error)
        {
            self.record_failure(domain, error);
        }
    }

    /// Records one failed session for a discovery failure of `domain` (the caller checked
    /// [`is_recorded_failure`]).
    pub fn record_failure(&self, domain: &Domain, error: &ResolverError) {
        if !self.enabled() {
            return;
        }
        let slot = failure_slot(error);
        self.with_counters(domain, |c| {
            if let Some(counter) = c.failures.get(slot) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Takes every count since the last drain as events stamped `time`, and forgets the
    /// domains that had none (so idle domains do not pile up).
    pub fn drain(&self, time: UtcDateTime) -> Vec<Event> {
        let mut events = Vec::new();
        for shard in self.shards.iter() {
            // The write lock keeps queries out while this shard is emptied, so no count
            // falls between reading a counter and forgetting its domain.
            let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|domain, counters| {
                let before = events.len();
                drain_domain(domain, counters, time, &mut events);
                events.len() > before
            });
        }
        events
    }
}

fn drain_domain(domain: &Domain, c: &DomainCounters, time: UtcDateTime, out: &mut Vec<Event>) {
    let base = |policy: EventPolicy, outcome: Outcome, count: u64| Event {
        time,
        policy_domain: domain.as_str().to_owned(),
        policy,
        outcome,
        sending_mta_ip: None,
        receiving_mx_hostname: None,
        receiving_mx_helo: None,
        receiving_ip: None,
        failure_reason_code: None,
        additional_information: None,
        count,
    };
    for ((result_type, reason), counter) in FAILURES.iter().zip(&c.failures) {
        let count = counter.swap(0, Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        // No policy could be retrieved: an `sts` policy without policy-string or mx-host
        // (RFC 8460 §4.4 makes both optional).
        let policy = EventPolicy {
            policy_type: PolicyType::Sts,
            policy_string: Vec::new(),
            mx_host: Vec::new(),
        };
        let mut event = base(
            policy,
            Outcome::Failure(ResultType::from_wire(result_type)),
            count,
        );
        event.failure_reason_code = (!reason.is_empty()).then(|| (*reason).to_owned());
        out.push(event);
    }
}

/// `event` as one events-file line with the extra member `"source"` (ignored by the
/// aggregator).
pub fn event_line(event: &Event, source: &str) -> String {
    let line = event.to_json_line();
    match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("source".into(), source.into());
            serde_json::Value::Object(object).to_string()
        }
        _ => line,
    }
}

/// The events file: appends whole lines, keeping them in memory while the file cannot be
/// written. The file is opened for each batch, so rotation (rename + new file) just works.
#[derive(Debug, Default)]
pub struct EventsFile {
    inner: Mutex<EventsInner>,
}

#[derive(Debug, Default)]
struct EventsInner {
    path: Option<PathBuf>,
    pending: Vec<String>,
}

impl EventsFile {
    /// Appending to `path` (`None`: lines are dropped).
    pub fn new(path: Option<PathBuf>) -> Self {
        EventsFile {
            inner: Mutex::new(EventsInner {
                path,
                pending: Vec::new(),
            }),
        }
    }

    /// Changes the file (reload).
    pub fn set_path(&self, path: Option<PathBuf>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).path = path;
    }

    /// The file appended to.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone()
    }

    /// Appends `lines` (and any kept from failed writes) in one write. Blocking I/O.
    pub fn append(&self, lines: Vec<String>) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = inner.path.clone() else {
            return Ok(());
        };
        inner.pending.extend(lines);
        if inner.pending.is_empty() {
            return Ok(());
        }
        if inner.pending.len() > MAX_PENDING_LINES {
            let excess = inner.pending.len() - MAX_PENDING_LINES;
            inner.pending.drain(..excess);
            tracing::warn!(
                dropped = excess,
                "TLS-RPT events file unwritable for long: oldest event lines dropped"
            );
        }
        let mut text = inner.pending.join("\n");
        text.push('\n');
        write_append(&path, text.as_bytes())?;
        inner.pending.clear();
        Ok(())
    }
}

fn write_append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    // One write of whole lines; O_APPEND keeps concurrent writers' lines apart.
    file.write_all(bytes)
}

/// Counters → events file, shared by the flush ticker, reload, shutdown and the scheduler.
struct Flusher {
    recorder: Arc<Recorder>,
    events: Arc<EventsFile>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Clock second of the last flush (start of the current interval).
    last: Mutex<i64>,
}

impl Flusher {
    /// Appends the counts since the last flush. Blocking I/O.
    fn flush(&self) {
        let now = (self.clock)();
        let stamp = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            // The interval's last second, never before the interval began.
            let stamp = (now - 1).max(*last).min(now);
            *last = now;
            stamp
        };
        let events = self.recorder.drain(UtcDateTime::from_unix_seconds(stamp));
        let lines: Vec<String> = events.iter().map(|e| event_line(e, "daemon")).collect();
        let count = lines.len() as u64;
        match self.events.append(lines) {
            Ok(()) => {
                self.metrics
                    .tlsrpt_events_daemon
                    .fetch_add(count, Ordering::Relaxed);
                if count > 0 {
                    tracing::debug!(lines = count, "TLS-RPT counters flushed");
                }
            }
            Err(e) => {
                bump(&self.metrics.tlsrpt_write_errors);
                tracing::warn!(error = %e, path = ?self.events.path(), "cannot append to the TLS-RPT events file; kept in memory for the next flush");
            }
        }
    }
}

/// The TLS-RPT part of a running daemon: the recorder, the flush ticker, the collector
/// socket and the send scheduler (see the module documentation).
pub struct TlsrptService {
    flusher: Arc<Flusher>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    socket: Option<PathBuf>,
}

impl std::fmt::Debug for TlsrptService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsrptService")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Seconds until the next multiple of `interval` on the system clock, or the next 00:00 UTC
/// if that comes first.
fn until_next_tick(interval: Duration) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let step = interval.as_millis().max(1);
    let now_ms = now.as_millis();
    let next = (now_ms / step + 1) * step;
    let midnight = (now_ms / 86_400_000 + 1) * 86_400_000;
    let wait = next.min(midnight).saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(wait).unwrap_or(u64::MAX).max(1))
}

impl TlsrptService {
    /// Starts what `config` turns on. `resolver` gives DNS servers, extra CA certificates
    /// and connect-to overrides to the sender; `clock` stamps events and drives the send
    /// schedule.
    pub async fn start(
        config: &TlsrptConfig,
        resolver: &ResolverConfig,
        recorder: Arc<Recorder>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<TlsrptService, TlsrptError> {
        recorder.configure(config.events.is_some());
        let events = Arc::new(EventsFile::new(config.events.clone()));
        let flusher = Arc::new(Flusher {
            recorder,
            events,
            metrics: Arc::clone(&metrics),
            last: Mutex::new(clock()),
            clock,
        });
        let sender = match &config.send {
            Some(send) => Some(build_sender(send, resolver)?),
            None => None,
        };
        let socket = match &config.socket {
            Some(path) => Some((
                bind_collector(path, config.socket_group.as_deref(), config.socket_mode).await?,
                path.clone(),
            )),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let flusher = Arc::clone(&flusher);
            let mut stop = stop_rx.clone();
            let interval = config.flush_interval;
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(until_next_tick(interval)) => {}
                        _ = stop.changed() => break,
                    }
                    if flusher.recorder.enabled() {
                        let f = Arc::clone(&flusher);
                        let _ = tokio::task::spawn_blocking(move || f.flush()).await;
                    }
                }
            }));
        }
        let socket_path = socket.as_ref().map(|(_, p)| p.clone());
        if let Some((socket, path)) = socket {
            tracing::info!(path = %path.display(), "TLS-RPT collector listening (libtlsrpt datagrams)");
            tasks.push(tokio::spawn(collect(
                socket,
                Arc::clone(&flusher),
                stop_rx.clone(),
            )));
        }
        if let (Some(sender), Some(send)) = (sender, &config.send) {
            let schedule = Schedule {
                sender,
                flusher: Arc::clone(&flusher),
                jitter: send.jitter,
                retry_interval: send.retry_interval,
            };
            let handle = tokio::runtime::Handle::current();
            let stop = stop_rx.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                handle.block_on(schedule.run(stop));
            }));
            tracing::info!(db = %send.db.display(), submitter = %send.submitter, "TLS-RPT reports are generated after each UTC day");
        }
        if let Some(path) = &config.events {
            tracing::info!(path = %path.display(), "TLS-RPT events recorded");
        }
        Ok(TlsrptService {
            flusher,
            stop,
            tasks: Mutex::new(tasks),
            socket: socket_path,
        })
    }

    /// The recorder the lookups count into.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.flusher.recorder
    }

    /// Appends the counts since the last flush to the events file now.
    pub async fn flush(&self) {
        let f = Arc::clone(&self.flusher);
        let _ = tokio::task::spawn_blocking(move || f.flush()).await;
    }

    /// Applies a reloaded configuration: flushes, then switches `events`. The other keys
    /// (`socket`, `socket_mode`, `flush_interval`, `[tlsrpt.send]`) take effect after a
    /// restart; [`crate::app::restart_pending`] names the changed ones.
    pub async fn reload(&self, config: &TlsrptConfig) {
        self.flush().await;
        self.flusher.events.set_path(config.events.clone());
        self.flusher.recorder.configure(config.events.is_some());
    }

    /// Stops the tasks, flushes the last counts and removes the collector socket.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            // The scheduler may be in the middle of a delivery; give it a moment.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("TLS-RPT task did not stop within 5s");
            }
        }
        self.flush().await;
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for TlsrptService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Binds the collector socket: replaces a stale socket file, refuses any other file or a
/// socket somebody receives on, sets the mode.
async fn bind_collector(
    path: &Path,
    group: Option<&str>,
    mode: u32,
) -> Result<UnixDatagram, TlsrptError> {
    let fail = |message: String| TlsrptError::Socket {
        path: path.to_owned(),
        message,
    };
    crate::socket_path::clear_stale(path, crate::socket_path::SocketKind::Datagram)
        .await
        .map_err(|e| match e {
            crate::socket_path::SocketPathError::InUse => fail(
                "another process receives on it (tlsrpt-collectd?): stop it or choose another path"
                    .into(),
            ),
            other => fail(other.to_string()),
        })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let socket = UnixDatagram::bind(path).map_err(|e| fail(e.to_string()))?;
    crate::socket_path::set_group_and_mode(path, group, mode).map_err(fail)?;
    Ok(socket)
}

/// Parses one datagram: a libtlsrpt datagram, or our own event objects one per line. All
/// or nothing.
pub fn parse_datagram(bytes: &[u8], received: UtcDateTime) -> Result<Vec<Event>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let mut events = Vec::new();
    for line in text.lines() {
        events.extend(parse_line(line, received).map_err(|e| e.to_string())?);
    }
    if events.is_empty() {
        return Err("no event in the datagram".into());
    }
    Ok(events)
}

/// The collector loop: receive, stamp, append; never stops on bad input.
async fn collect(socket: UnixDatagram, flusher: Arc<Flusher>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut last_log: Option<tokio::time::Instant> = None;
    let mut suppressed: u64 = 0;
    loop {
        tokio::select! {
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::error!(error = %e, "TLS-RPT collector socket failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            _ = stop.changed() => break,
        }
        let mut lines = Vec::new();
        // Drain what is queued now (bounded), then write it in one go.
        for _ in 0..1024 {
            let len = match socket.try_recv(&mut buf) {
                Ok(len) => len,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS-RPT collector receive error");
                    break;
                }
            };
            bump(&flusher.metrics.tlsrpt_datagrams_received);
            let received = UtcDateTime::from_unix_seconds((flusher.clock)());
            let parsed = if len > MAX_DATAGRAM {
                Err(format!("larger than {MAX_DATAGRAM} bytes"))
            } else {
                parse_datagram(buf.get(..len).unwrap_or_default(), received)
            };
            match parsed {
                Ok(events) => lines.extend(events.iter().map(|e| event_line(e, "socket"))),
                Err(reason) => {
                    bump(&flusher.metrics.tlsrpt_datagrams_invalid);
                    let now = tokio::time::Instant::now();
                    if last_log.is_none_or(|t| now.duration_since(t) >= INVALID_LOG_EVERY) {
                        tracing::debug!(%reason, bytes = len, suppressed, "invalid TLS-RPT datagram dropped");
                        last_log = Some(now);
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        let count = lines.len() as u64;
        let events = Arc::clone(&flusher.events);
        let written = tokio::task::spawn_blocking(move || events.append(lines)).await;
        match written {
            Ok(Ok(())) => {
                flusher
                    .metrics
                    .tlsrpt_events_socket
                    .fetch_add(count, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                bump(&flusher.metrics.tlsrpt_write_errors);
                tracing::warn!(error = %e, "cannot append to the TLS-RPT events file; kept in memory");
            }
            Err(e) => tracing::error!(error = %e, "TLS-RPT events writer failed"),
        }
    }
}

/// Builds the [`Sender`] of `[tlsrpt.send]` (as `mta-sts report send` does from its flags).
fn build_sender(send: &TlsrptSendConfig, resolver: &ResolverConfig) -> Result<Sender, TlsrptError> {
    let err = |m: String| TlsrptError::Send(m);
    let outbox =
        Outbox::open(&send.db).map_err(|e| err(format!("outbox {}: {e}", send.db.display())))?;
    let extra_roots = match &resolver.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| err(format!("[resolver] ca_file {}: {e}", path.display())))?;
            read_pem_certs(&pem)
                .map_err(|e| err(format!("[resolver] ca_file {}: {e}", path.display())))?
        }
        None => Vec::new(),
    };
    let dkim = load_dkim(send)?;
    let connect_to = resolver
        .connect_to
        .iter()
        .map(|c| c.parse::<ConnectTo>().map_err(|e| err(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let dns = Dns::new(&DnsConfig {
        nameservers: resolver.nameservers.clone(),
        timeout: send.timeout,
        ..DnsConfig::default()
    })
    .map_err(|e| err(format!("cannot set up DNS: {e}")))?;
    let from = send
        .from
        .clone()
        .unwrap_or_else(|| format!("tlsrpt@{}", send.submitter));
    Ok(Sender::new(
        outbox,
        dns,
        SendConfig {
            submitter: Submitter {
                organization_name: send
                    .organization
                    .clone()
                    .unwrap_or_else(|| send.submitter.clone()),
                contact_info: send.contact.clone().unwrap_or_else(|| from.clone()),
                domain: send.submitter.clone(),
            },
            from,
            delivery: DeliveryConfig {
                relay: send.relay.clone(),
                relay_starttls: send.starttls,
                helo: send.submitter.clone(),
                extra_roots,
                insecure_https: send.insecure_https,
                connect_to,
                timeout: send.timeout,
            },
            dkim,
        },
    ))
}

fn load_dkim(
    send: &TlsrptSendConfig,
) -> Result<Option<Arc<mta_sts_dkim::DkimSigner>>, TlsrptError> {
    let (Some(path), Some(selector)) = (&send.dkim_key, &send.dkim_selector) else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|e| TlsrptError::Send(format!("dkim_key {}: {e}", path.display())))?;
    let domain = send.dkim_domain.as_deref().unwrap_or(&send.submitter);
    mta_sts_dkim::DkimSigner::from_pem(&pem, domain, selector)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| TlsrptError::Send(format!("dkim_key {}: {e}", path.display())))
}

/// The checks `--check-config` adds to parsing for `[tlsrpt]`: the DKIM key and the CA
/// file load, the parent directories of `events` and `socket` exist. Nothing is created.
pub fn check_files(config: &TlsrptConfig, resolver: &ResolverConfig) -> Result<(), String> {
    for (key, path) in [("events", &config.events), ("socket", &config.socket)] {
        if let Some(parent) = path
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(format!(
                "[tlsrpt] {key}: directory {} does not exist",
                parent.display()
            ));
        }
    }
    if let Some(send) = &config.send {
        load_dkim(send).map_err(|e| e.to_string())?;
        if let Some(path) = &resolver.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("[resolver] ca_file {}: {e}", path.display()))?;
            read_pem_certs(&pem)
                .map_err(|e| format!("[resolver] ca_file {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The send schedule (see the module documentation).
struct Schedule {
    sender: Sender,
    flusher: Arc<Flusher>,
    jitter: Duration,
    retry_interval: Duration,
}

/// A random number of seconds in `0..=max`.
fn random_delay(max: Duration) -> i64 {
    let secs = max.as_secs();
    if secs == 0 {
        return 0;
    }
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    i64::try_from(random % (secs + 1)).unwrap_or(0)
}

impl Schedule {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        // The first cycle at start catches up on days missed while the daemon was down.
        let mut done_day = None::<i64>;
        let mut delay = 0;
        loop {
            let now = (self.flusher.clock)();
            let day = now.div_euclid(tlsrpt::report_datetime::SECONDS_PER_DAY);
            let into_day = now.rem_euclid(tlsrpt::report_datetime::SECONDS_PER_DAY);
            if done_day.is_none() || (done_day < Some(day) && into_day >= delay) {
                self.cycle(now).await;
                done_day = Some(day);
                delay = random_delay(self.jitter);
            } else {
                self.deliver(now).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.retry_interval) => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// Flush, ingest, generate, deliver.
    async fn cycle(&self, now: i64) {
        let flusher = Arc::clone(&self.flusher);
        flusher.flush();
        // A missing file just means nothing was recorded yet.
        if let Some(path) = flusher.events.path().filter(|p| p.exists()) {
            match self.sender.ingest_file(&path, now) {
                Ok(ingested) if !ingested.refused.is_empty() => {
                    tracing::warn!(path = %path.display(), refused = ingested.refused.len(), "TLS-RPT events refused while ingesting");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "TLS-RPT ingest failed"),
            }
        }
        match self.sender.generate(now, None, false).await {
            Ok(generated) => {
                for g in &generated {
                    bump(&self.flusher.metrics.tlsrpt_reports_generated);
                    tracing::info!(
                        report_id = %g.report.report_id,
                        policy_domain = %g.policy_domain,
                        day = %g.day,
                        successful = g.report.total_successful(),
                        failed = g.report.total_failed(),
                        ruas = g.ruas.len(),
                        note = g.note.as_deref().unwrap_or(""),
                        "TLS-RPT report generated"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "TLS-RPT report generation failed"),
        }
        self.deliver(now).await;
    }

    async fn deliver(&self, now: i64) {
        match self.sender.deliver_due(now).await {
            Ok(attempts) => {
                for a in &attempts {
                    let m = &self.flusher.metrics;
                    match &a.result {
                        AttemptResult::Delivered => {
                            bump(&m.tlsrpt_deliveries_ok);
                            tracing::info!(report_id = %a.entry.report_id, rua = %a.entry.rua, "TLS-RPT report delivered");
                        }
                        AttemptResult::Retry { at, error } => {
                            bump(&m.tlsrpt_deliveries_retry);
                            tracing::warn!(report_id = %a.entry.report_id, rua = %a.entry.rua, %error, next = %UtcDateTime::from_unix_seconds(*at), "TLS-RPT report delivery failed; will retry");
                        }
                        AttemptResult::Failed { error } => {
                            bump(&m.tlsrpt_deliveries_failed);
                            tracing::error!(report_id = %a.entry.report_id, rua = %a.entry.rua, %error, "TLS-RPT report delivery failed for good");
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "TLS-RPT delivery run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use mta_sts_resolver::cache::CachedPolicy;

    fn cached(body: &str) -> Arc<CachedPolicy> {
        let policy = mta_sts::Policy::parse(body.as_bytes()).expect("policy");
        Arc::new(CachedPolicy::new(policy, "1", body, 0).expect("a valid record id"))
    }

    fn lookup(policy: Option<Arc<CachedPolicy>>, error: Option<ResolverError>) -> Lookup {
        Lookup {
            policy,
            from_cache: false,
            error,
        }
    }

    #[test]
    fn config_is_off_by_default_and_checked() {
        let c = Config::parse("").unwrap().tlsrpt;
        assert_eq!(c, TlsrptConfig::default());
        assert!(c.events.is_none() && c.socket.is_none() && c.send.is_none());

        let c = Config::parse(
            "[tlsrpt]\nevents = \"/tmp/e.jsonl\"\nsocket = \"/run/t.sock\"\nsocket_mode = \"0660\"\n[tlsrpt.send]\nsubmitter = \"Mail.Example.COM.\"\nrelay = \"127.0.0.1:25\"\ndkim_key = \"/k.pem\"\ndkim_selector = \"tlsrpt\"\njitter = \"1h\"\n",
        )
        .unwrap()
        .tlsrpt;
        assert_eq!(c.socket_mode, 0o660);
        let send = c.send.unwrap();
        assert_eq!(send.submitter, "mail.example.com");
        assert_eq!(send.db, PathBuf::from("/var/lib/mta-sts/reports.db"));
        assert_eq!(send.jitter, Duration::from_secs(3600));
        assert_eq!(send.retry_interval, Duration::from_secs(300));

        for (bad, says) in [
            ("[tlsrpt]\nevent = \"/x\"\n", "event"),
            ("[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\n", "submitter"),
            (
                "[tlsrpt.send]\nsubmitter = \"a.test\"\n",
                "needs [tlsrpt] events",
            ),
            (
                "[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\nsubmitter = \"a.test\"\ndkim_key = \"/k\"\n",
                "dkim_selector",
            ),
            (
                "[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\nsubmitter = \"a.test\"\nrelay = \"host\"\n",
                "HOST:PORT",
            ),
            ("[tlsrpt]\nflush_interval = \"0s\"\n", "flush_interval"),
            ("[tlsrpt]\nsocket_mode = \"999\"\n", "octal"),
            // A socketmap query is not a session (issue 18.3).
            ("[tlsrpt]\ncount_applied = true\n", "count_applied"),
        ] {
            let err = Config::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn rfc8460_4_3_2_failures_by_result_type_and_reason() {
        let r = Recorder::new();
        let d: Domain = "example.com".parse().unwrap();
        let wrong_name = ResolverError::CertificateWrongName {
            host: "mta-sts.example.com".into(),
        };
        // Off until configured.
        r.record(&d, &lookup(None, Some(wrong_name.clone())));
        assert!(r.drain(UtcDateTime::EPOCH).is_empty());

        r.configure(true);
        r.record(&d, &lookup(None, Some(wrong_name.clone())));
        r.record(&d, &lookup(None, Some(wrong_name)));
        r.record(
            &d,
            &lookup(None, Some(ResolverError::Status { status: 404 })),
        );
        // Not failures: no record, DNS trouble, a cached policy still applying.
        r.record(
            &d,
            &lookup(None, Some(ResolverError::NoRecord { name: "x".into() })),
        );
        r.record(
            &d,
            &lookup(
                None,
                Some(ResolverError::DnsFailure {
                    name: "x".into(),
                    kind: mta_sts_resolver::DnsFailureKind::Timeout,
                    message: "t".into(),
                }),
            ),
        );
        let policy = cached("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n");
        r.record(
            &d,
            &lookup(Some(policy), Some(ResolverError::Status { status: 500 })),
        );
        let events = r.drain(UtcDateTime::EPOCH);
        let got: Vec<(String, Option<String>, u64)> = events
            .iter()
            .map(|e| {
                let result = match &e.outcome {
                    Outcome::Success => "success".to_owned(),
                    Outcome::Failure(t) => t.as_str().to_owned(),
                };
                (result, e.failure_reason_code.clone(), e.count)
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "sts-policy-fetch-error".to_owned(),
                    Some("http-status".to_owned()),
                    1
                ),
                (
                    "sts-webpki-invalid".to_owned(),
                    Some("certificate-wrong-name".to_owned()),
                    2
                ),
            ]
        );
        // A query that applied a policy is no session outcome: nothing is recorded, however
        // often it is asked (a `postmap -q` or a delivery Postfix then defers alike).
        let enforce = cached("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n");
        r.record(&d, &lookup(Some(Arc::clone(&enforce)), None));
        r.record(&d, &lookup(Some(enforce), None));
        assert!(r.drain(UtcDateTime::EPOCH).is_empty());
        // Drained, and the idle domain forgotten.
        assert!(r.drain(UtcDateTime::EPOCH).is_empty());
        assert!(r.shards.iter().all(|s| s.read().unwrap().is_empty()));
    }

    #[test]
    fn datagrams_all_or_nothing() {
        let t = UtcDateTime::from_unix_seconds(1_714_564_800);
        let one =
            r#"{"policy_domain":"a.test","policy":{"type":"no-policy-found"},"result":"success"}"#;
        assert_eq!(
            parse_datagram(format!("{one}\n{one}\n").as_bytes(), t)
                .unwrap()
                .len(),
            2
        );
        assert!(parse_datagram(format!("{one}\n{{\n").as_bytes(), t).is_err());
        assert!(parse_datagram(b"", t).is_err());
        assert!(parse_datagram(b"\xff", t).is_err());
    }

    #[test]
    fn ticks_never_straddle_midnight() {
        for interval in [1, 7, 60, 3600, 100_000] {
            let wait = until_next_tick(Duration::from_secs(interval));
            assert!(wait > Duration::ZERO && wait <= Duration::from_secs(interval.min(86_400)));
        }
    }
}
