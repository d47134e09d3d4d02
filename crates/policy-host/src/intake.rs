//! TLS-RPT report intake over HTTPS (RFC 8460 §5.4).
//!
//! A reporting MTA POSTs one report per request, as `application/tlsrpt+json` or gzip
//! compressed as `application/tlsrpt+gzip`. The intake checks the media type (415), caps
//! the request body and the decompressed report (413, so a gzip bomb costs at most
//! `max_report` bytes of memory), checks that the report is a JSON object with a
//! `report-id` (400), and hands it to a [`ReportSink`].
//!
//! # Bounded work
//!
//! The intake is public and unauthenticated, so what it may cost is bounded in total, not
//! only per request (`[tlsrpt] max_concurrent`, `max_inflight`, `[limits] body_timeout`):
//!
//! - at most `max_concurrent` requests are handled at once; one more is answered 503 with
//!   `Retry-After` before its body is read, so bodies held are at most
//!   `max_concurrent × max_body`;
//! - decompressed bytes are counted against a budget of `max_inflight` bytes shared by all
//!   requests as they are produced (the gzip trailer's declared size at once, the rest as it
//!   comes; then [`PARSED_OBJECT_COST`] per JSON object and array, for what the parsed form
//!   costs), and held until the sink is done with the report; a
//!   report that does not fit now is answered 503 with `Retry-After` (RFC 8460 §5.5: the
//!   sender retries);
//! - the body must arrive within `body_timeout` (408), so a trickled body cannot hold a
//!   permit;
//! - the `report-id` check streams over the JSON and keeps nothing but the id: no JSON tree
//!   (which costs 5-10× the text) is built here.
//!
//! # Where reports go
//!
//! [`ReportSink`] is async: the real destination is a database, and its calls must not hold
//! a tokio worker. It returns a boxed future ([`SinkFuture`]) so that it stays usable as
//! `Arc<dyn ReportSink>` without an `async-trait` dependency. This crate is only the HTTPS
//! server and has no database code: the `mta-sts` binary implements the trait over the
//! report store of `mta-sts report` (SQLite or PostgreSQL, `[tlsrpt] store`), which parses
//! the report fully and de-duplicates by report-id. The built-in [`SpoolSink`] writes files
//! for `mta-sts report import`; it is the sink when only `spool_dir` is configured, and the
//! fallback when a store is configured too: if the store fails (or takes longer than
//! [`STORE_TIMEOUT`]), the report is spooled, so nothing a sender was told is saved is lost,
//! and the server moves the spool into the store once it works ([`SpoolSink::drain_into`],
//! every `[tlsrpt] drain_interval`).
//!
//! # Answers
//!
//! RFC 8460 §5.4: the receiver MUST answer "successful", typically 200 or 201, and other
//! codes may be retried by the sender for up to 24 hours (§5.5). So:
//!
//! | outcome | status |
//! |---|---|
//! | a new report was stored | 201 Created |
//! | the same report was stored before (a sender retrying) | 200 OK: idempotent |
//! | the store failed, the report was spooled instead | 201 Created (and an error in the log) |
//! | not gzip, not JSON, not a TLS-RPT report (§4) | 400 with the reason |
//! | a `policy-domain` that is not a configured domain (unless `accept_foreign`) | 403 naming it |
//! | another media type | 415; a body or report over the caps: 413 |
//! | the body did not arrive within `body_timeout` | 408 |
//! | `max_concurrent` requests in progress, or the report does not fit in `max_inflight` now | 503 with `Retry-After` |
//! | the store failed and there is no spool, or the spool failed too | 503 with `Retry-After`, so the sender retries (§5.5) |
//!
//! A spooled report gets 201, not 202: it is saved, and some senders take only the 200 and
//! 201 that §5.4 names as success.

use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use mta_sts_net::clock::{Clock, SystemClock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::causes::with_causes;
use crate::config::TlsRptConfig;

mod scan;

#[cfg(test)]
use scan::report_id;
use scan::{Scanned, scan};

/// How long a [`ReportSink`] may take for one report before the intake gives up on it and
/// spools the report (or answers 503). A late store write that does finish is harmless: the
/// later import of the spooled copy is a duplicate.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a 503 asks the sender to wait before retrying, seconds (RFC 8460 §5.5 retries).
pub const RETRY_AFTER_SECS: u32 = 300;

/// A report accepted by the intake, ready to be stored.
#[derive(Debug, Clone)]
pub struct IncomingReport {
    /// The report JSON (decompressed).
    pub json: Bytes,
    /// Its `report-id` (RFC 8460 §4.4).
    pub report_id: String,
    /// Whether it arrived gzip-compressed.
    pub gzip: bool,
    /// The policy host it was posted to.
    pub host: String,
    /// The path it was posted to (`[tlsrpt] intake_path`).
    pub path: String,
    /// When it arrived.
    pub received: SystemTime,
    /// The spool file it was read back from, when [`SpoolSink::drain_into`] hands it on.
    pub spooled: Option<PathBuf>,
}

impl IncomingReport {
    /// Where it came from, for a store's `source` column: `https://<host><path>`, or the
    /// spool file of a drained report.
    pub fn source(&self) -> String {
        match &self.spooled {
            Some(file) => file.display().to_string(),
            None => format!("https://{}{}", self.host, self.path),
        }
    }
}

/// What a sink did with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; the name is for the log and the answer (e.g. `report 42`).
    New(String),
    /// Stored before (same report, e.g. a sender's retry); nothing changed.
    Duplicate(String),
}

/// A report could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing a file failed.
    #[error("cannot store the report in {}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sink refused the report itself: it is not a valid TLS-RPT report (RFC 8460 §4).
    /// Answered 400; never spooled, since retrying cannot help.
    #[error("{0}")]
    Rejected(String),
    /// The store failed or is unreachable; the report may be retried later. The cause is
    /// the store's own error (for the report store, its `StoreError`: `Busy` is a locked
    /// database), for callers to tell apart with `downcast_ref`.
    #[error("the report store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sink gave no answer within the time allowed ([`STORE_TIMEOUT`]); the report may
    /// be retried later.
    #[error("the report store gave no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The spool directory could not be read, so no spooled report was handed on.
    #[error("cannot read the spool {}: {source}", dir.display())]
    SpoolUnreadable {
        /// The spool directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The future a [`ReportSink`] returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<Stored, SinkError>> + Send + 'a>>;

/// Where accepted reports go.
///
/// Async so that a database behind it does not block the server's runtime; a boxed future
/// keeps it object safe (`Arc<dyn ReportSink>`). Implementations must not block: run
/// blocking work with `tokio::task::spawn_blocking`. See the [module docs](self) for how
/// the results map to HTTP answers.
pub trait ReportSink: Send + Sync + 'static {
    /// Stores `report`.
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a>;

    /// Where reports go, for logs and `--check-config`; no secrets (passwords).
    fn describe(&self) -> String;
}

/// Writes each report as `<sha256 of the JSON, 32 hex>.json` into a directory, atomically
/// (temporary file, fsync, rename), for `mta-sts report import <dir>` or
/// [`SpoolSink::drain_into`]. The name comes from
/// the content, never from client input, so a re-sent report is a [`Stored::Duplicate`]
/// instead of a second file.
#[derive(Clone)]
pub struct SpoolSink {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SpoolSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolSink")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SpoolSink {
    /// A sink writing into `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> SpoolSink {
        SpoolSink {
            dir: dir.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// This sink, stamping drained reports whose file time cannot be read with `clock`'s
    /// time instead of the system clock's.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> SpoolSink {
        SpoolSink { clock, ..self }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `json` now, blocking; the name of the file, and whether it was there before.
    pub fn write(&self, json: &[u8]) -> Result<Stored, SinkError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SinkError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, json);
        let name = format!("{}.json", &crate::id::hex(digest.as_ref())[..32]);
        let target = self.dir.join(&name);
        if target.is_file() {
            return Ok(Stored::Duplicate(target.display().to_string()));
        }
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(json).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &target).map_err(io(&target))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| Stored::New(target.display().to_string()))
    }
}

impl ReportSink for SpoolSink {
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
        let sink = self.clone();
        let json = report.json.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || sink.write(&json))
                .await
                .map_err(|e| SinkError::Store(Box::new(e)))?
        })
    }

    fn describe(&self) -> String {
        format!("the spool directory {}", self.dir.display())
    }
}

/// The subdirectory of the spool where [`SpoolSink::drain_into`] puts reports the store
/// refused, so that they are kept for a person to look at and not tried again.
pub const REJECTED_DIR: &str = "rejected";

/// What one [`SpoolSink::drain_into`] pass did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Reports the sink stored, now gone from the spool.
    pub stored: usize,
    /// Reports the sink had already, now gone from the spool.
    pub duplicates: usize,
    /// Reports the sink refused (not TLS-RPT, RFC 8460 §4), moved to [`REJECTED_DIR`].
    pub rejected: usize,
    /// Reports still in the spool because the sink failed.
    pub left: usize,
    /// Why the pass stopped early: the sink's failure, or the spool could not be read
    /// ([`SinkError::SpoolUnreadable`]); the last file error when it went on past one.
    pub error: Option<SinkError>,
}

impl Drained {
    /// How many reports the pass took out of the spool: stored, duplicate or refused.
    pub fn moved(&self) -> usize {
        self.stored + self.duplicates + self.rejected
    }
}

impl SpoolSink {
    /// The spooled reports, by name: `*.json` files, not the temporary `.tmp-*` ones.
    async fn spooled(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut dir = match tokio::fs::read_dir(&self.dir).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(e),
        };
        while let Some(entry) = dir.next_entry().await? {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.')
                && name.ends_with(".json")
                && entry.file_type().await?.is_file()
            {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Hands the spooled reports to `sink`, the store they should have gone to (RFC 8460
    /// §5.4), so the spool empties by itself once the store works again:
    ///
    /// - a report the sink stores, or already has, leaves the spool;
    /// - a report it refuses moves to [`REJECTED_DIR`], kept but not tried again;
    /// - the first store failure (or [`STORE_TIMEOUT`]) ends the pass, leaving that report
    ///   and the rest for the next one.
    ///
    /// A report is removed only after the sink said it is stored, so a crash in between
    /// costs a duplicate on the next pass, never a report.
    pub async fn drain_into(&self, sink: &dyn ReportSink) -> Drained {
        let mut drained = Drained::default();
        let files = match self.spooled().await {
            Ok(files) => files,
            Err(source) => {
                drained.error = Some(SinkError::SpoolUnreadable {
                    dir: self.dir.clone(),
                    source,
                });
                return drained;
            }
        };
        let total = files.len();
        for (done, file) in files.into_iter().enumerate() {
            match self.drain_one(&file, sink).await {
                Ok(Stored::New(_)) => drained.stored += 1,
                Ok(Stored::Duplicate(_)) => drained.duplicates += 1,
                Err(SinkError::Rejected(reason)) => {
                    drained.rejected += 1;
                    self.reject(&file, &reason).await;
                }
                // This file could not be read or removed: the others may still go.
                Err(e @ SinkError::Io { .. }) => {
                    drained.left += 1;
                    drained.error = Some(e);
                }
                Err(e) => {
                    drained.left += total - done;
                    drained.error = Some(e);
                    return drained;
                }
            }
        }
        drained
    }

    /// Stores one spooled file and, once stored, removes it.
    async fn drain_one(&self, file: &Path, sink: &dyn ReportSink) -> Result<Stored, SinkError> {
        let io = |source| SinkError::Io {
            path: file.to_path_buf(),
            source,
        };
        let json = Bytes::from(tokio::fs::read(file).await.map_err(io)?);
        let received = tokio::fs::metadata(file)
            .await
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| crate::clock::wall_time(self.clock.as_ref()));
        let report = IncomingReport {
            report_id: scan(&json)
                .map_err(|e| SinkError::Rejected(e.to_string()))?
                .id,
            json,
            gzip: false,
            host: String::new(),
            path: String::new(),
            received,
            spooled: Some(file.to_path_buf()),
        };
        let stored = tokio::time::timeout(STORE_TIMEOUT, sink.store(&report))
            .await
            .map_err(|_| SinkError::Timeout(STORE_TIMEOUT))??;
        match tokio::fs::remove_file(file).await {
            Ok(()) => {}
            // Another pass (a second server on the same spool) took it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        tracing::info!(file = %file.display(), report_id = %report.report_id, stored = ?stored, "spooled TLS-RPT report moved into the store");
        Ok(stored)
    }

    /// Moves a refused report to [`REJECTED_DIR`].
    async fn reject(&self, file: &Path, reason: &str) {
        let dir = self.dir.join(REJECTED_DIR);
        let target = dir.join(file.file_name().unwrap_or_default());
        let moved = match tokio::fs::create_dir_all(&dir).await {
            Ok(()) => tokio::fs::rename(file, &target).await,
            Err(e) => Err(e),
        };
        match moved {
            Ok(()) => {
                tracing::warn!(file = %target.display(), %reason, "spooled TLS-RPT report refused by the store (RFC 8460 §4); kept in the rejected directory")
            }
            Err(e) => {
                tracing::error!(file = %file.display(), %reason, error = %e, "spooled TLS-RPT report refused by the store and could not be moved aside")
            }
        }
    }
}

/// An intake answer: status and one-line reason.
pub(crate) type Answer = (StatusCode, String);

/// `application/tlsrpt+json` or `application/tlsrpt+gzip` (RFC 8460 §5.4, §6.4, §6.5);
/// `Content-Encoding: gzip` on the JSON type is accepted too.
fn media_type(req: &Request<Incoming>) -> Result<bool, Answer> {
    let value = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let encoded_gzip = match encoding.as_deref() {
        None | Some("identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other} is not supported; send application/tlsrpt+gzip"),
            ));
        }
    };
    match essence.as_str() {
        "application/tlsrpt+gzip" => Ok(true),
        "application/tlsrpt+json" => Ok(encoded_gzip),
        _ => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/tlsrpt+json or application/tlsrpt+gzip (RFC 8460 §5.4)".to_string(),
        )),
    }
}

/// The intake's limits shared by every request (see the module docs): a permit per request
/// in progress, and a budget of decompressed bytes in flight.
#[derive(Debug)]
pub(crate) struct IntakeGate {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_concurrent: usize,
    max_inflight: usize,
}

impl IntakeGate {
    /// The gate for `config`'s `max_concurrent` and `max_inflight`.
    pub(crate) fn new(config: &TlsRptConfig) -> IntakeGate {
        let max_inflight = config.max_inflight.min(Semaphore::MAX_PERMITS);
        IntakeGate {
            requests: Arc::new(Semaphore::new(
                config.max_concurrent.min(Semaphore::MAX_PERMITS),
            )),
            bytes: Arc::new(Semaphore::new(max_inflight)),
            max_concurrent: config.max_concurrent,
            max_inflight: config.max_inflight,
        }
    }

    /// Whether this gate has `config`'s limits (a reload keeps the gate when they did not
    /// change, so requests in progress stay counted).
    pub(crate) fn matches(&self, config: &TlsRptConfig) -> bool {
        self.max_concurrent == config.max_concurrent && self.max_inflight == config.max_inflight
    }
}

/// Bytes of the decompressed-report budget held by one request.
struct Reservation {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Takes `n` more bytes of the budget now, or says no (never waits).
    fn take(&mut self, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match self.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// 503 because the intake is at its limits; the server adds `Retry-After` (RFC 8460 §5.5).
fn busy() -> Answer {
    (StatusCode::SERVICE_UNAVAILABLE, BodyError::Busy.to_string())
}

/// Reads and drops the body, at most `max` bytes, before `deadline`; whether it all came.
async fn discard_body(mut body: Incoming, max: usize, deadline: tokio::time::Instant) -> bool {
    let mut seen = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len());
                    if seen > max {
                        return false;
                    }
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// Reads the whole body, at most `max` bytes, before `deadline`.
async fn read_body(
    mut body: Incoming,
    max: usize,
    declared: Option<u64>,
    deadline: tokio::time::Instant,
    too_big: impl Fn() -> Answer,
) -> Result<Bytes, Answer> {
    let hint = declared.map_or(0, |n| usize::try_from(n).unwrap_or(max).min(max));
    let mut buf = BytesMut::with_capacity(hint);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err((
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time".to_string(),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read".to_string(),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > max {
                return Err(too_big());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Handles one `POST <intake_path>`: `sink` first, `fallback` when `sink` fails; `gate`
/// bounds the work of all intake requests together, `body_timeout` this one's body;
/// `served` says whether a policy domain is one this host serves; `clock` stamps the
/// report's arrival.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle(
    req: Request<Incoming>,
    config: &TlsRptConfig,
    gate: &IntakeGate,
    body_timeout: Duration,
    sink: Arc<dyn ReportSink>,
    fallback: Option<SpoolSink>,
    host: &str,
    served: &(dyn Fn(&str) -> bool + Sync),
    clock: &dyn Clock,
) -> Answer {
    let deadline = tokio::time::Instant::now() + body_timeout;
    let gzip = match media_type(&req) {
        Ok(g) => g,
        Err(answer) => return answer,
    };
    let too_big = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the report is larger than {} bytes", config.max_body),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body as u64) {
        return too_big();
    }
    // Before the body is read: what waits for a permit is only a header.
    let Ok(_request) = gate.requests.clone().try_acquire_owned() else {
        tracing::debug!(%host, "TLS-RPT intake at max_concurrent; 503");
        if req.version() < hyper::Version::HTTP_2 {
            // HTTP/1.1: a sender still writing its body when the connection closes may
            // never read the 503; the body is read and dropped (nothing is kept) first,
            // within the same size and time limits.
            let _ = discard_body(req.into_body(), config.max_body, deadline).await;
        }
        return busy();
    };
    let body = match read_body(
        req.into_body(),
        config.max_body,
        declared,
        deadline,
        too_big,
    )
    .await
    {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let max_report = config.max_report;
    let max_weight = config.max_inflight;
    let mut reservation = Reservation {
        budget: gate.bytes.clone(),
        held: None,
    };
    // Decompressing and parsing are CPU work of up to `max_report` bytes: off the runtime.
    let check = move || {
        let checked = check_body_within(body, gzip, max_report, max_weight, &mut |n| {
            reservation.take(n)
        });
        (checked, reservation)
    };
    let (checked, _reservation) = match tokio::task::spawn_blocking(check).await {
        Ok(done) => done,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_string(),
            );
        }
    };
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            if e == BodyError::Busy {
                tracing::debug!(%host, "TLS-RPT intake at max_inflight; 503");
            }
            return (e.status(), e.to_string());
        }
    };
    // RFC 8460 §4: a report is about its policy-domain; one for a domain this host does not
    // serve is a stranger's (or a mistake) and is not stored, unless `accept_foreign`.
    if !config.accept_foreign
        && let Some(foreign) = checked.policy_domains.iter().find(|d| !served(d))
    {
        tracing::info!(%host, report_id = %checked.report_id, policy_domain = %foreign, "TLS-RPT report for a domain this host does not serve refused (403); set [tlsrpt] accept_foreign = true to accept reports for other domains");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "policy-domain {foreign} is not served by this host: reports for it are not accepted here (RFC 8460 §4)"
            ),
        );
    }
    let report = IncomingReport {
        json: checked.json,
        report_id: checked.report_id,
        gzip,
        host: host.to_string(),
        path: config.intake_path.clone(),
        received: crate::clock::wall_time(clock),
        spooled: None,
    };
    // `_reservation` and `_request` are held until the sink is done with the report.
    deliver(&report, sink.as_ref(), fallback.as_ref()).await
}

/// Stores a checked report and decides the answer (the table in the module docs).
async fn deliver(
    report: &IncomingReport,
    sink: &dyn ReportSink,
    fallback: Option<&SpoolSink>,
) -> Answer {
    let stored = match tokio::time::timeout(STORE_TIMEOUT, sink.store(report)).await {
        Ok(result) => result,
        Err(_) => Err(SinkError::Timeout(STORE_TIMEOUT)),
    };
    let failure = match stored {
        Ok(Stored::New(name)) => {
            tracing::info!(host = %report.host, report_id = %report.report_id, stored = %name, "TLS-RPT report stored");
            return (StatusCode::CREATED, format!("stored as {name}"));
        }
        Ok(Stored::Duplicate(name)) => {
            // A sender retrying a report we have: success, so it stops (RFC 8460 §5.4).
            tracing::info!(host = %report.host, report_id = %report.report_id, stored = %name, "TLS-RPT report received again; already stored");
            return (StatusCode::OK, format!("already stored as {name}"));
        }
        Err(SinkError::Rejected(reason)) => {
            tracing::info!(host = %report.host, report_id = %report.report_id, %reason, "TLS-RPT report refused");
            return (
                StatusCode::BAD_REQUEST,
                format!("not a valid TLS-RPT report (RFC 8460 §4): {reason}"),
            );
        }
        Err(e) => e,
    };
    let Some(spool) = fallback else {
        tracing::error!(host = %report.host, report_id = %report.report_id, error = %with_causes(&failure), sink = %sink.describe(), "TLS-RPT report not stored; the sender is asked to retry (503)");
        return unavailable();
    };
    match spool.store(report).await {
        Ok(Stored::New(name) | Stored::Duplicate(name)) => {
            tracing::error!(host = %report.host, report_id = %report.report_id, error = %with_causes(&failure), sink = %sink.describe(), spooled = %name, "TLS-RPT report store failed; report spooled instead, to move into the store once it works");
            (
                StatusCode::CREATED,
                "accepted; spooled for import".to_string(),
            )
        }
        Err(e) => {
            tracing::error!(host = %report.host, report_id = %report.report_id, error = %with_causes(&failure), spool_error = %with_causes(&e), "TLS-RPT report neither stored nor spooled; the sender is asked to retry (503)");
            unavailable()
        }
    }
}

/// 503: nothing was saved; the sender should retry later (RFC 8460 §5.5).
fn unavailable() -> Answer {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the report could not be stored now; retry later".to_string(),
    )
}

/// Why a POSTed body is not taken as a report; [`BodyError::status`] is the answer, and
/// the message is the reason the sender is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// `application/tlsrpt+gzip` (RFC 8460 §6.5) that is not gzip.
    #[error("the body is not valid gzip (application/tlsrpt+gzip)")]
    Gzip,
    /// The decompressed report is over `max_report`.
    #[error("the decompressed report is larger than {0} bytes")]
    TooLarge(usize),
    /// The decompressed-bytes budget (`max_inflight`) is used by other requests now.
    #[error("too many reports are being received now; retry later")]
    Busy,
    /// Not JSON (RFC 8460 §4.4); the parser's error says where.
    #[error("the report is not valid JSON: {0}")]
    Json(#[source] JsonError),
    /// JSON, but not an object (RFC 8460 §4.4).
    #[error("the report is not a JSON object (RFC 8460 §4.4)")]
    NotObject,
    /// No `report-id` string (RFC 8460 §4.4).
    #[error("the report has no \"report-id\" string (RFC 8460 §4.4)")]
    NoReportId,
    /// The report's text plus [`PARSED_OBJECT_COST`] per JSON object and array is over
    /// `max_inflight`: it could never be handled.
    #[error(
        "the report has too many JSON objects and arrays ({containers}) to be handled within {limit} bytes"
    )]
    TooComplex {
        /// Objects and arrays in the report.
        containers: usize,
        /// `max_inflight`.
        limit: usize,
    },
    /// `report-id` twice: I-JSON member names are unique (RFC 7493 §2.3).
    #[error("the report has more than one \"report-id\" member (RFC 7493 §2.3)")]
    DuplicateReportId,
}

/// The JSON parser's error in a [`BodyError::Json`]: shared, so that [`BodyError`] stays
/// `Clone`. As rustls's `OtherError`, it is never equal to another one (compare with
/// `matches!`).
#[derive(Debug, Clone)]
pub struct JsonError(Arc<serde_json::Error>);

impl JsonError {
    /// The parser's error.
    pub fn get(&self) -> &serde_json::Error {
        &self.0
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(error: serde_json::Error) -> JsonError {
        JsonError(Arc::new(error))
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

impl PartialEq for JsonError {
    fn eq(&self, _: &JsonError) -> bool {
        false
    }
}

impl Eq for JsonError {}

impl BodyError {
    /// The HTTP answer: 400, 413, or 503 for [`BodyError::Busy`].
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) | BodyError::TooComplex { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A body the intake takes: the report JSON (decompressed) and its `report-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBody {
    /// The report JSON.
    pub json: Bytes,
    /// Its `report-id` (RFC 8460 §4.4).
    pub report_id: String,
    /// The distinct `policy-domain` values of its policies (RFC 8460 §4.4), lower case,
    /// without a trailing dot; empty when it names none.
    pub policy_domains: Vec<String>,
}

/// What the intake does with a POSTed body before a sink sees it: gunzip when `gzip`
/// (RFC 8460 §6.5; at most `max_report` bytes, counted as they are produced), then check
/// that it is a JSON object with a `report-id` string (§4.4). Memory: the body, the JSON,
/// and the id; no JSON tree.
pub fn check_body(
    body: impl Into<Bytes>,
    gzip: bool,
    max_report: usize,
) -> Result<CheckedBody, BodyError> {
    check_body_within(body.into(), gzip, max_report, usize::MAX, &mut |_| true)
}

/// [`check_body`], asking `reserve` for every decompressed byte before keeping it.
fn check_body_within(
    body: Bytes,
    gzip: bool,
    max_report: usize,
    max_weight: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<CheckedBody, BodyError> {
    let json = if gzip {
        let json = gunzip(&body, max_report, reserve)?;
        drop(body);
        Bytes::from(json)
    } else {
        if body.len() > max_report {
            return Err(BodyError::TooLarge(max_report));
        }
        if !reserve(body.len()) {
            return Err(BodyError::Busy);
        }
        body
    };
    let Scanned {
        id: report_id,
        containers,
        domains: policy_domains,
    } = scan(&json)?;
    // What parsing and storing the report costs beyond its text grows with its objects and
    // arrays (a 20-byte `{"result-type":"x"}` becomes a struct of some 200 bytes, and the
    // store holds more than one form at once): counted too, so a report of tiny objects
    // takes the budget its memory takes.
    let weight = json
        .len()
        .saturating_add(containers.saturating_mul(PARSED_OBJECT_COST));
    if weight > max_weight {
        return Err(BodyError::TooComplex {
            containers,
            limit: max_weight,
        });
    }
    if !reserve(weight - json.len()) {
        return Err(BodyError::Busy);
    }
    Ok(CheckedBody {
        json,
        report_id,
        policy_domains,
    })
}

/// What each JSON object or array of a report counts against `max_inflight`, bytes, on top
/// of the JSON text. Measured: storing a report takes about 6× its budget count, for big
/// reports of few large objects and of many tiny ones alike.
pub const PARSED_OBJECT_COST: usize = 64;

/// Decompresses at most `max` bytes (more is a 413: a gzip bomb stops here), taking the
/// bytes from `reserve` before keeping them.
///
/// The size the gzip trailer declares (`ISIZE`, RFC 1952 §2.3.1) is taken first, at once:
/// reports that arrive together then either fit whole or are refused at once, instead of
/// each taking part of the budget and all failing. The declaration is not trusted: more
/// output is taken chunk by chunk as it comes, and the cap counts what is produced.
fn gunzip(
    body: &[u8],
    max: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, BodyError> {
    let declared = match body.len() {
        // 10-byte header, 8-byte trailer: anything shorter is not gzip.
        0..18 => 0,
        n => body[n - 4..]
            .try_into()
            .map_or(0, |b| u32::from_le_bytes(b) as usize),
    };
    let mut reserved = declared.min(max);
    if !reserve(reserved) {
        return Err(BodyError::Busy);
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(body);
    let mut out = Vec::with_capacity(reserved);
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(BodyError::Gzip),
        };
        let len = out.len().saturating_add(n);
        if len > max {
            return Err(BodyError::TooLarge(max));
        }
        if len > reserved {
            if !reserve(len - reserved) {
                return Err(BodyError::Busy);
            }
            reserved = len;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    // Growth by doubling leaves up to half the buffer unused; the report is kept a while.
    if out.capacity() - out.len() > out.len() / 8 {
        out.shrink_to_fit();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_id_required() {
        assert_eq!(
            report_id(br#"{"report-id":"x"}"#).unwrap(),
            ("x".to_string(), 1)
        );
        // Objects and arrays are counted, also inside a report-id that is not a string.
        assert_eq!(
            report_id(br#"{"a":[{},{"b":[1,[]]}],"report-id":"x","c":{"d":"e"}}"#)
                .unwrap()
                .1,
            7
        );
        assert_eq!(
            report_id(br#"{"report-id":[{}],"x":1}"#),
            Err(BodyError::NoReportId)
        );
        assert_eq!(
            report_id(b"\xEF\xBB\xBF {\"a\":[{\"report-id\":1}],\"report-id\":\"y\\u0031\"}")
                .unwrap()
                .0,
            "y1"
        );
        assert_eq!(report_id(br#"[1]"#), Err(BodyError::NotObject));
        assert_eq!(report_id(br#""x""#), Err(BodyError::NotObject));
        assert_eq!(report_id(br#"{"report-id":1}"#), Err(BodyError::NoReportId));
        assert_eq!(
            report_id(br#"{"report-id":{"report-id":"x"}}"#),
            Err(BodyError::NoReportId)
        );
        assert_eq!(
            report_id(br#"{"report-id":""}"#),
            Err(BodyError::NoReportId)
        );
        assert_eq!(report_id(br#"{"policies":[]}"#), Err(BodyError::NoReportId));
        assert_eq!(
            report_id(br#"{"report-id":"a","report-id":"b"}"#),
            Err(BodyError::DuplicateReportId)
        );
        for bad in [
            &b"{"[..],
            b"",
            b"  ",
            b"{\"report-id\":\"x\"} x",
            b"{\"report-id\":\"x\",}",
        ] {
            assert!(matches!(report_id(bad), Err(BodyError::Json(_))), "{bad:?}");
        }
    }

    // RFC 8460 §4.4: the policy domains are read on the way, distinct and canonical, from
    // `policies[].policy.policy-domain` only; containers are counted as before.
    #[test]
    fn scan_finds_policy_domains() {
        let json = br#"{"policy-domain":"top.test","policies":[{"policy":{"policy-domain":"A.test."},"summary":{"policy-domain":"x.test"}},{"policy":{"policy-domain":"a.test","mx-host":["m"]}},{"policy":{"policy-domain":7}},[],"s"],"report-id":"r"}"#;
        let scanned = scan(json).unwrap();
        assert_eq!(scanned.domains, ["a.test"]);
        assert_eq!(scanned.containers, 11);
        assert_eq!(
            scan(br#"{"report-id":"r"}"#).unwrap().domains,
            Vec::<String>::new()
        );
    }

    fn report(id: &str) -> IncomingReport {
        IncomingReport {
            json: Bytes::from(format!(r#"{{"report-id":"{id}"}}"#)),
            report_id: id.to_string(),
            gzip: false,
            host: "mta-sts.a.test".to_string(),
            path: "/tlsrpt".to_string(),
            received: SystemTime::UNIX_EPOCH,
            spooled: None,
        }
    }

    /// A sink that answers from a script.
    struct Scripted(fn(&IncomingReport) -> Result<Stored, SinkError>);

    impl ReportSink for Scripted {
        fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
            let answer = (self.0)(report);
            Box::pin(async move { answer })
        }
        fn describe(&self) -> String {
            "scripted".to_string()
        }
    }

    /// What the scripted store fails with (as the report store's `StoreError::Busy`).
    #[derive(Debug, thiserror::Error)]
    #[error("database is locked")]
    struct Locked;

    fn failing(_: &IncomingReport) -> Result<Stored, SinkError> {
        Err(SinkError::Store(Box::new(Locked)))
    }

    /// The counts of a drain pass, and whether it stopped on an error.
    fn counts(d: &Drained) -> (usize, usize, usize, usize, bool) {
        (
            d.stored,
            d.duplicates,
            d.rejected,
            d.left,
            d.error.is_some(),
        )
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    // Spooled reports go to the store once it works: stored ones and ones it already had
    // leave the spool, refused ones are kept aside, a failing store leaves everything.
    #[tokio::test]
    async fn rfc8460_s5_4_spool_drains_into_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolSink::new(dir.path());
        for id in ["new", "dup", "bad"] {
            spool.write(report(id).json.as_ref()).unwrap();
        }
        // A write in progress and a stray file are not reports.
        std::fs::write(dir.path().join(".tmp-1-0"), b"{").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();

        let down = spool.drain_into(&Scripted(failing)).await;
        assert_eq!((down.moved(), down.left), (0, 3), "{down:?}");
        // The store's own error, for the caller to act on (the pass stopped at it).
        assert!(
            matches!(&down.error, Some(SinkError::Store(cause)) if cause.is::<Locked>()),
            "{down:?}"
        );
        assert_eq!(names(dir.path()).len(), 5);

        let up = Scripted(|r| match r.report_id.as_str() {
            "dup" => Ok(Stored::Duplicate("report 1".into())),
            "bad" => Err(SinkError::Rejected("no policies".into())),
            _ => {
                assert!(r.source().ends_with(".json"), "{}", r.source());
                Ok(Stored::New("report 2".into()))
            }
        });
        let drained = spool.drain_into(&up).await;
        assert_eq!(counts(&drained), (1, 1, 1, 0, false), "{drained:?}");
        assert_eq!(names(dir.path()), [".tmp-1-0", "notes.txt", REJECTED_DIR]);
        let kept = names(&dir.path().join(REJECTED_DIR));
        assert_eq!(kept.len(), 1);
        assert_eq!(
            std::fs::read(dir.path().join(REJECTED_DIR).join(&kept[0])).unwrap(),
            report("bad").json.as_ref()
        );
        // Nothing left: a pass is a no-op; a missing spool is not an error.
        let nothing = counts(&Drained::default());
        assert_eq!(counts(&spool.drain_into(&up).await), nothing);
        let none = SpoolSink::new(dir.path().join("absent"));
        assert_eq!(counts(&none.drain_into(&up).await), nothing);
    }

    // RFC 8460 §5.4: 201 new, 200 duplicate (a retry is success), 400 refused.
    #[tokio::test]
    async fn rfc8460_s5_4_answers() {
        let new = Scripted(|r| Ok(Stored::New(format!("report {}", r.report_id))));
        let dup = Scripted(|_| Ok(Stored::Duplicate("report 1".to_string())));
        let bad = Scripted(|_| Err(SinkError::Rejected("no policies".to_string())));
        let r = report("a");
        assert_eq!(deliver(&r, &new, None).await.0, StatusCode::CREATED);
        assert_eq!(deliver(&r, &dup, None).await.0, StatusCode::OK);
        let (status, body) = deliver(&r, &bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("no policies"), "{body}");
    }

    // A failing store: the report is spooled (201) when there is a spool; a refused report
    // is never spooled; no spool, or a broken one, is 503 so the sender retries (§5.5).
    #[tokio::test]
    async fn rfc8460_s5_5_store_failure_spools_or_asks_for_retry() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolSink::new(dir.path().join("spool"));
        let r = report("b");
        assert_eq!(
            deliver(&r, &Scripted(failing), Some(&spool)).await.0,
            StatusCode::CREATED
        );
        assert_eq!(std::fs::read_dir(spool.dir()).unwrap().count(), 1);
        assert_eq!(
            spool.write(&r.json).unwrap(),
            Stored::Duplicate(
                std::fs::read_dir(spool.dir())
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path()
                    .display()
                    .to_string()
            )
        );
        let bad = Scripted(|_| Err(SinkError::Rejected("no".to_string())));
        assert_eq!(
            deliver(&report("c"), &bad, Some(&spool)).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(std::fs::read_dir(spool.dir()).unwrap().count(), 1);
        assert_eq!(
            deliver(&r, &Scripted(failing), None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // A spool that cannot be created (its parent is a file).
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let broken = SpoolSink::new(dir.path().join("file/spool"));
        assert_eq!(
            deliver(&r, &Scripted(failing), Some(&broken)).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn gunzip_caps_output() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 100_000]).unwrap();
        let gz = enc.finish().unwrap();
        let all = &mut |_| true;
        assert_eq!(gunzip(&gz, 1000, all), Err(BodyError::TooLarge(1000)));
        assert_eq!(gunzip(&gz, 100_000, all).unwrap().len(), 100_000);
        assert_eq!(gunzip(b"nope", 10, all), Err(BodyError::Gzip));
    }

    // The decompressed bytes are taken from the budget: the declared size (gzip ISIZE) at
    // once, then whatever comes beyond it as it is produced; a report that does not fit is
    // Busy (503) once the budget says no, not after inflating it all.
    #[test]
    fn gunzip_takes_from_the_budget() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        let mut asked = Vec::new();
        let mut budget = |n: usize| {
            asked.push(n);
            true
        };
        assert_eq!(gunzip(&gz, 2 << 20, &mut budget).unwrap().len(), 1 << 20);
        assert_eq!(asked, [1 << 20], "the declared size, at once");
        assert_eq!(
            gunzip(&gz, 2 << 20, &mut |n| n < (1 << 20)),
            Err(BodyError::Busy)
        );
        // A trailer that declares less than comes: the rest is taken as it comes, and
        // refused once the budget runs out.
        let mut lying = gz.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
        let mut taken = 0;
        let mut budget = |n: usize| {
            taken += n;
            taken <= 256 * 1024
        };
        assert_eq!(
            check_body_within(Bytes::from(lying), true, 2 << 20, usize::MAX, &mut budget),
            Err(BodyError::Busy)
        );
        assert!(taken <= 256 * 1024 + 64 * 1024, "{taken}");
        let json = Bytes::from_static(br#"{"report-id":"r"}"#);
        let mut seen = 0;
        let checked = check_body_within(json.clone(), false, 100, usize::MAX, &mut |n| {
            seen += n;
            true
        })
        .unwrap();
        // Plain JSON is taken whole, plus its one object's parsed cost.
        assert_eq!(
            (checked.report_id.as_str(), seen),
            ("r", json.len() + PARSED_OBJECT_COST)
        );
        assert_eq!(
            check_body_within(json, false, 100, usize::MAX, &mut |_| false),
            Err(BodyError::Busy)
        );
        assert!(matches!(
            check_body(gz, true, 1 << 20),
            Err(BodyError::Json(_))
        ));
    }

    // A report of many tiny objects counts what its parsed form costs: 1000 objects of 20
    // bytes count 64 bytes more each, and are refused (413) when that can never fit.
    #[test]
    fn tiny_objects_count_against_the_budget() {
        let details = vec![r#"{"result-type":"x"}"#; 1000].join(",");
        let json = Bytes::from(format!(
            r#"{{"report-id":"r","policies":[{{"failure-details":[{details}]}}]}}"#
        ));
        let containers = 1 + 1 + 1 + 1 + 1000;
        let weight = json.len() + containers * PARSED_OBJECT_COST;
        let mut taken = 0;
        let checked = check_body_within(json.clone(), false, 1 << 20, weight, &mut |n| {
            taken += n;
            true
        })
        .unwrap();
        assert_eq!((checked.report_id.as_str(), taken), ("r", weight));
        assert_eq!(
            check_body_within(json, false, 1 << 20, weight - 1, &mut |_| true),
            Err(BodyError::TooComplex {
                containers,
                limit: weight - 1
            })
        );
    }
}
