//! Prometheus metrics of the policy host, served as text on `metrics_listen` (off unless
//! set; keep it on loopback or a monitoring network: it names every policy host).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `mta_sts_serve_requests_total{kind,class}` | counter | HTTPS responses: `kind` `policy` (RFC 8461 §3.3 fetches), `tlsrpt` (RFC 8460 §5.4 report POSTs), `other`; `class` `2xx`…`5xx` |
//! | `mta_sts_serve_tls_handshake_failures_total` | counter | handshakes that failed or timed out |
//! | `mta_sts_serve_connections_open` | gauge | HTTPS connections open now |
//! | `mta_sts_serve_policy_hosts` | gauge | `mta-sts.<domain>` hosts served |
//! | `mta_sts_serve_certificate_expiry_timestamp_seconds{host}` | gauge | when each host's certificate expires (Unix time); a host without one has no line |
//! | `mta_sts_serve_reloads_total{result}` | counter | reloads (SIGHUP, changed files), `ok` or `error` |
//!
//! `packaging/grafana/mta-sts.json` charts them; a test checks every name it queries exists.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::table::Table;

/// What a request was for, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `/.well-known/mta-sts.txt`.
    Policy,
    /// `[tlsrpt] intake_path`.
    Tlsrpt,
    /// Anything else.
    Other,
}

const KINDS: [(RequestKind, &str); 3] = [
    (RequestKind::Policy, "policy"),
    (RequestKind::Tlsrpt, "tlsrpt"),
    (RequestKind::Other, "other"),
];
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The counters, shared by every connection.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `[kind][class]`, class 1xx and odd codes counted as 5xx (never sent).
    requests: [[AtomicU64; 4]; 3],
    handshake_failures: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
}

impl Metrics {
    /// Counts one response.
    pub fn response(&self, kind: RequestKind, status: StatusCode) {
        let class = match status.as_u16() {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        let kind = KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(2);
        self.requests[kind][class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed or timed-out TLS handshake.
    pub fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload.
    pub fn reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with the gauges of `table` and `connections_open`.
    pub fn render(&self, table: &Table, connections_open: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP mta_sts_serve_requests_total HTTPS responses, by what was asked (policy, tlsrpt, other) and status class.\n# TYPE mta_sts_serve_requests_total counter"
        );
        for (k, (_, kind)) in KINDS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "mta_sts_serve_requests_total{{kind=\"{kind}\",class=\"{class}\"}} {}",
                    get(&self.requests[k][c])
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mta_sts_serve_tls_handshake_failures_total TLS handshakes that failed or timed out.\n# TYPE mta_sts_serve_tls_handshake_failures_total counter\nmta_sts_serve_tls_handshake_failures_total {}",
            get(&self.handshake_failures)
        );
        let _ = writeln!(
            out,
            "# HELP mta_sts_serve_connections_open HTTPS connections open now.\n# TYPE mta_sts_serve_connections_open gauge\nmta_sts_serve_connections_open {connections_open}"
        );
        let _ = writeln!(
            out,
            "# HELP mta_sts_serve_policy_hosts Policy hosts (mta-sts.<domain>) served.\n# TYPE mta_sts_serve_policy_hosts gauge\nmta_sts_serve_policy_hosts {}",
            table.hosts().count()
        );
        let _ = writeln!(
            out,
            "# HELP mta_sts_serve_certificate_expiry_timestamp_seconds When each policy host's certificate expires (Unix time).\n# TYPE mta_sts_serve_certificate_expiry_timestamp_seconds gauge"
        );
        for entry in table.hosts() {
            if let Some((_, not_after)) = entry.cert_validity {
                let secs = not_after
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                // Host names are A-labels: nothing to escape.
                let _ = writeln!(
                    out,
                    "mta_sts_serve_certificate_expiry_timestamp_seconds{{host=\"{}\"}} {secs}",
                    entry.host
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mta_sts_serve_reloads_total Reloads (SIGHUP, changed files), by result.\n# TYPE mta_sts_serve_reloads_total counter\nmta_sts_serve_reloads_total{{result=\"ok\"}} {}\nmta_sts_serve_reloads_total{{result=\"error\"}} {}",
            get(&self.reloads_ok),
            get(&self.reloads_error)
        );
        out
    }
}

/// Serves `GET /metrics` (anything else: 404) over plain HTTP/1.1 on `listener` until
/// `shutdown` turns true; `render` makes the text of each scrape.
pub async fn serve(
    listener: TcpListener,
    render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _)) = accepted else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let render = render.clone();
                async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        (StatusCode::OK, render())
                    } else {
                        (StatusCode::NOT_FOUND, "only /metrics here\n".to_owned())
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
        });
    }
}
