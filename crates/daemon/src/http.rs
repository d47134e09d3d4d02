//! The HTTP API (DESIGN §5), HTTP/1.1 on `[http] listen` (default `127.0.0.1:8462`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/policy/{domain}` | JSON: the cached policy of the domain, its record id and times, the last discovery error, and the socketmap reply it yields in `[defaults]` |
//! | `GET /v1/policy/{domain}?refresh=1` | the same after a lookup now (DNS, and HTTPS if the TXT id changed or nothing is cached) |
//! | `GET /metrics` | Prometheus text format ([`crate::metrics`]) |
//! | `GET /healthz` | `200 ok`; `503` once shutdown has started |
//!
//! JSON of `/v1/policy/{domain}`:
//!
//! ```json
//! {"domain":"example.com","cached":true,
//!  "policy":{"version":"STSv1","mode":"enforce","mx":["mail.example.com"],"max_age":86400},
//!  "record_id":"20240101","fetched_at":1700000000,"expires_at":1700086400,"age":12,
//!  "last_error":null,"socketmap_answer":"OK secure match=mail.example.com servername=hostname",
//!  "refreshed":false,"lookup":null}
//! ```
//! `lookup` is `{"outcome":"policy|no-policy|unusable","from_cache":bool}` when
//! `refresh=1`. The API has no authentication: keep it on loopback (the default).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mta_sts::Domain;
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::answer::{DaneVerdict, answer};
use crate::app::Core;
use crate::config::Listen;
use crate::resolver_lookup::unix_now;

/// A bound HTTP listener.
#[derive(Debug)]
pub enum HttpListener {
    /// TCP.
    Tcp(TcpListener),
    /// A UNIX socket and its path.
    Unix(UnixListener, PathBuf),
}

impl HttpListener {
    /// Binds `listen` (a stale UNIX socket file is replaced).
    pub async fn bind(listen: &Listen) -> std::io::Result<HttpListener> {
        match listen {
            Listen::Tcp(addr) => Ok(HttpListener::Tcp(TcpListener::bind(addr).await?)),
            Listen::Unix(path) => {
                if std::fs::symlink_metadata(path).is_ok()
                    && tokio::net::UnixStream::connect(path).await.is_err()
                {
                    std::fs::remove_file(path)?;
                }
                Ok(HttpListener::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    /// The bound TCP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            HttpListener::Tcp(l) => l.local_addr().ok(),
            HttpListener::Unix(..) => None,
        }
    }
}

/// Serves the API until `stop` turns true; open connections are then closed.
pub async fn serve(listener: HttpListener, core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept(&listener) => match accepted {
                Ok(io) => {
                    let core = Arc::clone(&core);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let core = Arc::clone(&core);
                            async move { Ok::<_, Infallible>(route(req, &core).await) }
                        });
                        let result = match io {
                            Io::Tcp(s) => hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(s), service)
                                .await,
                            Io::Unix(s) => hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(s), service)
                                .await,
                        };
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "HTTP connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    if let HttpListener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    connections.shutdown().await;
}

enum Io {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &HttpListener) -> std::io::Result<Io> {
    match listener {
        HttpListener::Tcp(l) => Ok(Io::Tcp(l.accept().await?.0)),
        HttpListener::Unix(l, _) => Ok(Io::Unix(l.accept().await?.0)),
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = value.to_string();
    body.push('\n');
    text(status, "application/json", body)
}

async fn route(req: Request<Incoming>, core: &Core) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    match path {
        "/healthz" => {
            if core.shutting_down() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n".into(),
                )
            } else {
                text(StatusCode::OK, "text/plain", "ok\n".into())
            }
        }
        "/metrics" => {
            let generation = core.current();
            let resolver = generation.lookup.resolver();
            let body = core
                .metrics()
                .render(Some(resolver.stats()), resolver.cache_len());
            text(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        _ => match path.strip_prefix("/v1/policy/") {
            Some(domain) if !domain.is_empty() && !domain.contains('/') => {
                let refresh = query
                    .split('&')
                    .any(|kv| matches!(kv, "refresh=1" | "refresh=true" | "refresh"));
                policy(core, domain, refresh).await
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /v1/policy/{domain}, /metrics, /healthz\n".into(),
            ),
        },
    }
}

async fn policy(core: &Core, raw: &str, refresh: bool) -> Response<Full<Bytes>> {
    let decoded = percent_decode(raw);
    let domain = match Domain::parse(decoded.trim_end_matches('.')) {
        Ok(d) => d,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("`{decoded}` is not a domain name: {e}")}),
            );
        }
    };
    let generation = core.current();
    let lookup = &generation.lookup;
    let fresh = if refresh {
        Some(lookup.lookup_full(&domain).await)
    } else {
        None
    };
    let cached = lookup.resolver().cached(&domain);
    let now = unix_now();
    let policy = cached.as_ref().map(|c| {
        json!({
            "version": "STSv1",
            "mode": c.policy.mode.to_string(),
            "mx": c.policy.mx.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "max_age": c.policy.max_age,
        })
    });
    let reply = answer(
        &domain,
        cached.as_ref().map(|c| &c.policy),
        &generation.config.defaults,
        DaneVerdict::NotChecked,
    );
    let last_error = lookup
        .last_error(&domain)
        .and_then(|e| serde_json::to_value(e).ok());
    let body = json!({
        "domain": domain.as_str(),
        "cached": cached.is_some(),
        "policy": policy,
        "record_id": cached.as_ref().map(|c| c.record_id.to_string()),
        "fetched_at": cached.as_ref().map(|c| c.fetched_at),
        "expires_at": cached.as_ref().map(|c| c.expires_at),
        "age": cached.as_ref().map(|c| now.saturating_sub(c.fetched_at)),
        "last_error": last_error,
        "socketmap_answer": reply.payload(),
        "refreshed": refresh,
        "lookup": fresh.map(|l| json!({"outcome": l.outcome().as_str(), "from_cache": l.from_cache})),
    });
    json_response(StatusCode::OK, &body)
}

/// `%XX` decoding of a path segment (invalid escapes are kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
