//! TLS-RPT report intake over HTTPS (RFC 8460 §5.3.2).
//!
//! A reporting MTA POSTs one report per request, as `application/tlsrpt+json` or gzip
//! compressed as `application/tlsrpt+gzip`. The intake checks the media type (415), caps
//! the request body and the decompressed report (413, so a gzip bomb costs at most
//! `max_report` bytes of memory), checks that the report is a JSON object with a
//! `report-id` (400), and hands it to a [`ReportSink`]; 201 means stored.
//!
//! The full report model and its checks live in the `tlsrpt` crate's later store; the
//! default sink, [`SpoolSink`], writes each report atomically into a spool directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};

use crate::config::TlsRptConfig;

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
    /// When it arrived.
    pub received: SystemTime,
}

/// A report could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed.
    #[error("cannot store the report in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another sink's failure.
    #[error("cannot store the report: {0}")]
    Other(String),
}

/// Where accepted reports go. Implement it to plug in a report database; the intake calls
/// it from a blocking thread.
pub trait ReportSink: Send + Sync + 'static {
    /// Stores `report`, returning a name for it (for the log and the 201 answer).
    fn store(&self, report: &IncomingReport) -> Result<String, SinkError>;
}

/// Writes each report as `<sha256 of the JSON, 32 hex>.json` into a directory, atomically
/// (temporary file, fsync, rename). The name comes from the content, never from client
/// input, so a re-sent report overwrites its earlier copy instead of duplicating it.
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
}

impl ReportSink for SpoolSink {
    fn store(&self, report: &IncomingReport) -> Result<String, SinkError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SinkError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &report.json);
        let name = format!("{}.json", &crate::id::hex(digest.as_ref())[..32]);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(&report.json).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
            let target = self.dir.join(&name);
            std::fs::rename(&tmp, &target).map_err(io(&target))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| name)
    }
}

/// An intake answer: status and one-line reason.
pub(crate) type Answer = (StatusCode, String);

/// `application/tlsrpt+json` or `application/tlsrpt+gzip` (RFC 8460 §5.3.2, §6.4, §6.5);
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
            "send application/tlsrpt+json or application/tlsrpt+gzip (RFC 8460 §5.3.2)".to_string(),
        )),
    }
}

/// Handles one `POST <intake_path>`.
pub(crate) async fn handle(
    req: Request<Incoming>,
    config: &TlsRptConfig,
    sink: Arc<dyn ReportSink>,
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
    let work = move || -> Answer {
        let json = if gzip {
            match gunzip(&body, max_report) {
                Ok(json) => Bytes::from(json),
                Err(answer) => return answer,
            }
        } else {
            body
        };
        let report_id = match report_id(&json) {
            Ok(id) => id,
            Err(reason) => return (StatusCode::BAD_REQUEST, reason),
        };
        let report = IncomingReport {
            json,
            report_id,
            gzip,
            host,
            received: SystemTime::now(),
        };
        match sink.store(&report) {
            Ok(name) => {
                tracing::info!(host = %report.host, report_id = %report.report_id, stored = %name, "TLS-RPT report accepted");
                (StatusCode::CREATED, format!("stored {name}"))
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS-RPT report not stored");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the report could not be stored".to_string(),
                )
            }
        }
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(answer) => answer,
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error".to_string(),
        ),
    }
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
