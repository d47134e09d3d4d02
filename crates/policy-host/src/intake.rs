//! TLS-RPT report intake over HTTPS (RFC 8460 §5.4).
//!
//! A reporting MTA POSTs one report per request, as `application/tlsrpt+json` or gzip
//! compressed as `application/tlsrpt+gzip`. The intake checks the media type (415), caps
//! the request body and the decompressed report (413, so a gzip bomb costs at most
//! `max_report` bytes of memory), checks that the report is a JSON object with a
//! `report-id` (400), and hands it to a [`ReportSink`].
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
//! | another media type | 415; a body or report over the caps: 413 |
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

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};

use crate::config::TlsRptConfig;

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
pub enum SinkError {
    /// Writing a file failed.
    #[error("cannot store the report in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The sink refused the report itself: it is not a valid TLS-RPT report (RFC 8460 §4).
    /// Answered 400; never spooled, since retrying cannot help.
    #[error("{0}")]
    Rejected(String),
    /// The store failed or is unreachable; the report may be retried later.
    #[error("the report store failed: {0}")]
    Store(String),
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
#[derive(Debug, Clone)]
pub struct SpoolSink {
    dir: PathBuf,
}

impl SpoolSink {
    /// A sink writing into `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> SpoolSink {
        SpoolSink { dir: dir.into() }
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
                .map_err(|e| SinkError::Store(format!("spool task failed: {e}")))?
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Reports the sink stored, now gone from the spool.
    pub stored: usize,
    /// Reports the sink had already, now gone from the spool.
    pub duplicates: usize,
    /// Reports the sink refused (not TLS-RPT, RFC 8460 §4), moved to [`REJECTED_DIR`].
    pub rejected: usize,
    /// Reports still in the spool because the sink failed.
    pub left: usize,
    /// Why the pass stopped early: the sink's failure, or the spool could not be read.
    pub error: Option<String>,
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
            Err(e) => {
                drained.error = Some(format!("cannot read {}: {e}", self.dir.display()));
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
                    drained.error = Some(e.to_string());
                }
                Err(e) => {
                    drained.left += total - done;
                    drained.error = Some(e.to_string());
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
            .unwrap_or_else(|_| SystemTime::now());
        let report = IncomingReport {
            report_id: report_id(&json).map_err(SinkError::Rejected)?,
            json,
            gzip: false,
            host: String::new(),
            path: String::new(),
            received,
            spooled: Some(file.to_path_buf()),
        };
        let stored = tokio::time::timeout(STORE_TIMEOUT, sink.store(&report))
            .await
            .map_err(|_| {
                SinkError::Store(format!("no answer within {} s", STORE_TIMEOUT.as_secs()))
            })??;
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

/// Handles one `POST <intake_path>`: `sink` first, `fallback` when `sink` fails.
pub(crate) async fn handle(
    req: Request<Incoming>,
    config: &TlsRptConfig,
    sink: Arc<dyn ReportSink>,
    fallback: Option<SpoolSink>,
    host: &str,
) -> Answer {
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
    let body = match Limited::new(req.into_body(), config.max_body)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return too_big();
            }
            return (
                StatusCode::BAD_REQUEST,
                "the request body could not be read".to_string(),
            );
        }
    };
    let max_report = config.max_report;
    let host = host.to_string();
    let path = config.intake_path.clone();
    // Decompressing and parsing are CPU work of up to `max_report` bytes: off the runtime.
    let check = move || -> Result<IncomingReport, Answer> {
        let json = if gzip {
            Bytes::from(gunzip(&body, max_report)?)
        } else {
            body
        };
        let report_id = report_id(&json).map_err(|reason| (StatusCode::BAD_REQUEST, reason))?;
        Ok(IncomingReport {
            json,
            report_id,
            gzip,
            host,
            path,
            received: SystemTime::now(),
            spooled: None,
        })
    };
    let report = match tokio::task::spawn_blocking(check).await {
        Ok(Ok(report)) => report,
        Ok(Err(answer)) => return answer,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_string(),
            );
        }
    };
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
        Err(_) => Err(SinkError::Store(format!(
            "no answer within {} s",
            STORE_TIMEOUT.as_secs()
        ))),
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
        tracing::error!(host = %report.host, report_id = %report.report_id, error = %failure, sink = %sink.describe(), "TLS-RPT report not stored; the sender is asked to retry (503)");
        return unavailable();
    };
    match spool.store(report).await {
        Ok(Stored::New(name) | Stored::Duplicate(name)) => {
            tracing::error!(host = %report.host, report_id = %report.report_id, error = %failure, sink = %sink.describe(), spooled = %name, "TLS-RPT report store failed; report spooled instead, to move into the store once it works");
            (
                StatusCode::CREATED,
                "accepted; spooled for import".to_string(),
            )
        }
        Err(e) => {
            tracing::error!(host = %report.host, report_id = %report.report_id, error = %failure, spool_error = %e, "TLS-RPT report neither stored nor spooled; the sender is asked to retry (503)");
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

/// Decompresses at most `max` bytes; more is a 413 (a gzip bomb stops here).
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Answer> {
    let mut out = Vec::new();
    let decoder = flate2::read::MultiGzDecoder::new(body);
    match decoder.take(max as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > max => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the decompressed report is larger than {max} bytes"),
        )),
        Ok(_) => Ok(out),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "the body is not valid gzip (application/tlsrpt+gzip)".to_string(),
        )),
    }
}

/// The report must be a JSON object with a string `report-id` (RFC 8460 §4.4).
fn report_id(json: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("the report is not valid JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("the report is not a JSON object (RFC 8460 §4.4)".to_string());
    };
    match object.get("report-id").and_then(|v| v.as_str()) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err("the report has no \"report-id\" string (RFC 8460 §4.4)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_id_required() {
        assert!(report_id(br#"{"report-id":"x"}"#).is_ok());
        assert!(report_id(br#"[1]"#).is_err());
        assert!(report_id(br#"{"report-id":1}"#).is_err());
        assert!(report_id(b"{").is_err());
    }

    fn report(id: &str) -> IncomingReport {
        IncomingReport {
            json: Bytes::from(format!(r#"{{"report-id":"{id}"}}"#)),
            report_id: id.to_string(),
            gzip: false,
            host: "mta-sts.a.test".to_string(),
            path: "/tlsrpt".to_string(),
            received: SystemTime::now(),
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

    fn failing(_: &IncomingReport) -> Result<Stored, SinkError> {
        Err(SinkError::Store("database is locked".to_string()))
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
        assert!(down.error.unwrap().contains("database is locked"));
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
        assert_eq!(
            drained,
            Drained {
                stored: 1,
                duplicates: 1,
                rejected: 1,
                left: 0,
                error: None
            }
        );
        assert_eq!(names(dir.path()), [".tmp-1-0", "notes.txt", REJECTED_DIR]);
        let kept = names(&dir.path().join(REJECTED_DIR));
        assert_eq!(kept.len(), 1);
        assert_eq!(
            std::fs::read(dir.path().join(REJECTED_DIR).join(&kept[0])).unwrap(),
            report("bad").json.as_ref()
        );
        // Nothing left: a pass is a no-op; a missing spool is not an error.
        assert_eq!(spool.drain_into(&up).await, Drained::default());
        let none = SpoolSink::new(dir.path().join("absent"));
        assert_eq!(none.drain_into(&up).await, Drained::default());
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
        assert_eq!(
            gunzip(&gz, 1000).unwrap_err().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(gunzip(&gz, 100_000).unwrap().len(), 100_000);
        assert_eq!(gunzip(b"nope", 10).unwrap_err().0, StatusCode::BAD_REQUEST);
    }
}
