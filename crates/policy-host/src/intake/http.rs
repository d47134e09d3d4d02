//! One `POST <intake_path>` (RFC 8460 §5.4): the media type, the body within its size and
//! time limits, the checks, the sink, and the answer (the table in the [module
//! docs](super)).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use mta_sts_net::clock::Clock;

use super::BodyError;
use super::body::check_body_within;
use super::limits::{IntakeGate, Reservation};
use super::sink::{IncomingReport, ReportSink, STORE_TIMEOUT, SinkError, Stored};
use super::spool::SpoolSink;
use crate::config::TlsRptConfig;
use mta_sts_net::with_causes;

/// What a 503 asks the sender to wait before retrying, seconds (RFC 8460 §5.5 retries).
pub const RETRY_AFTER_SECS: u32 = 300;

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
    let Some(_request) = gate.try_request() else {
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
    let mut reservation = Reservation::new(gate);
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
        received: clock.system_time(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::sink::testing::{Scripted, failing, report};

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
}
