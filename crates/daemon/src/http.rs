//! The HTTP API, HTTP/1.1 on `[http] listen` (default `127.0.0.1:8462`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/policy/{domain}` | JSON: the socketmap reply for the domain in `[defaults]`, found as the socketmap finds it (cache, else a lookup within the budget), and the cached policy, its record id and times, the last discovery error |
//! | `GET /v1/policy/{domain}?refresh=1` | the same after a full lookup now (DNS, and HTTPS if the TXT id changed or nothing is cached) |
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
//! `refresh=1`. The fields are documented for users in `docs/postfix.md` ("HTTP API").
//!
//! `{domain}` is a domain name; an address literal (`127.0.0.1`, `[::1]`) or a `.parent`
//! key is answered `400` (the socketmap answers those `NOTFOUND ` without a lookup).
//!
//! Limits (the API must never starve the socketmap, issue 12.3/12.5):
//! - at most `[http] max_connections` connections at once (lowered at start so that the
//!   socketmap's connections always fit under the open-files limit, see the `app` module);
//!   more wait in the listen backlog;
//! - a connection whose request headers are not complete `[http] idle_timeout` after it
//!   opened or after its previous response is closed (slow headers and idle keep-alive);
//! - requests that may cause network lookups (`?refresh=1`, or a domain with no cached
//!   policy) take a token from a bucket of `lookup_burst` tokens refilled at `lookup_rate`
//!   per second; when it is empty the answer is `429` with `Retry-After`.
//!
//! The API has no authentication: keep it on loopback (the default).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mta_sts::Domain;
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::answer::DaneVerdict;
use crate::config::{DaneMode, HttpConfig, Listen};
use crate::lookup::{PolicyLookup, reply_for};
use crate::socket_path::{SocketKind, SocketPathError, clear_stale};
use crate::state::Core;
use mta_sts_socketmap::{Key, SkipReason};

/// The longest a connection may live, whatever it does (a client that stops reading a
/// response is cut here).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// A bound HTTP listener.
#[derive(Debug)]
pub enum HttpListener {
    /// TCP.
    Tcp(TcpListener),
    /// A UNIX socket and the path to remove at shutdown (`None` when systemd passed it:
    /// it keeps listening for the next start).
    Unix(UnixListener, Option<PathBuf>),
}

impl HttpListener {
    /// Binds `listen`. A stale UNIX socket file (one nobody accepts on) is replaced; any
    /// other file at the path is an error and left alone ([`crate::socket_path`]).
    pub async fn bind(listen: &Listen) -> std::io::Result<HttpListener> {
        match listen {
            Listen::Tcp(addr) => Ok(HttpListener::Tcp(TcpListener::bind(addr).await?)),
            Listen::Unix(path) => {
                clear_stale(path, SocketKind::Stream)
                    .await
                    .map_err(|e| match e {
                        SocketPathError::Remove(source) => source,
                        other => std::io::Error::new(
                            std::io::ErrorKind::AddrInUse,
                            format!("{}: {other}", path.display()),
                        ),
                    })?;
                Ok(HttpListener::Unix(
                    UnixListener::bind(path)?,
                    Some(path.clone()),
                ))
            }
        }
    }

    /// A listener systemd passed (socket activation, `mta_sts_net::activation`).
    pub fn inherited(
        listener: mta_sts_net::activation::InheritedListener,
    ) -> std::io::Result<HttpListener> {
        use mta_sts_net::activation::InheritedListener;
        Ok(match listener {
            InheritedListener::Tcp(l) => HttpListener::Tcp(TcpListener::from_std(l)?),
            InheritedListener::Unix(l) => HttpListener::Unix(UnixListener::from_std(l)?, None),
        })
    }

    /// The bound TCP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            HttpListener::Tcp(l) => l.local_addr().ok(),
            HttpListener::Unix(..) => None,
        }
    }
}

/// API limits, from `[http]` ([`HttpOptions::from_config`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Header / keep-alive idle timeout.
    pub idle_timeout: Duration,
    /// Lookup tokens refilled per second.
    pub lookup_rate: f64,
    /// Lookup bucket size.
    pub lookup_burst: f64,
}

impl HttpOptions {
    /// The options of an `[http]` section; `max_connections` may be lowered by the caller.
    pub fn from_config(config: &HttpConfig) -> Self {
        HttpOptions {
            max_connections: config.max_connections.max(1),
            idle_timeout: config.idle_timeout,
            lookup_rate: f64::from(config.lookup_rate),
            lookup_burst: f64::from(config.lookup_burst),
        }
    }
}

/// A token bucket for requests that may cause network lookups.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, tokio::time::Instant)>,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            state: Mutex::new((burst, tokio::time::Instant::now())),
        }
    }

    /// Takes one token, or says in how many whole seconds one will be there.
    fn take(&self) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            return Ok(());
        }
        *state = (tokens, now);
        if self.rate <= 0.0 {
            return Err(3600);
        }
        // Whole seconds, at least 1 (RFC 9110 §10.2.3 delay-seconds).
        Err((((1.0 - tokens) / self.rate).ceil() as u64).max(1))
    }
}

/// What every API request needs.
struct Api {
    core: Arc<Core>,
    bucket: Bucket,
}

/// Serves the API until `stop` turns true; open connections are then closed.
pub async fn serve(
    listener: HttpListener,
    core: Arc<Core>,
    options: HttpOptions,
    mut stop: watch::Receiver<bool>,
) {
    let api = Arc::new(Api {
        core,
        bucket: Bucket::new(options.lookup_rate, options.lookup_burst),
    });
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // A permit first, then accept: past the cap, clients wait in the backlog and cost
        // this process no descriptor.
        let accept = async {
            let permit = Arc::clone(&permits).acquire_owned().await;
            (permit, accept(&listener).await)
        };
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (permit, accepted) = accept => {
                let Ok(permit) = permit else { break };
                match accepted {
                    Ok(io) => {
                        let api = Arc::clone(&api);
                        let idle = options.idle_timeout;
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let api = Arc::clone(&api);
                                async move { Ok::<_, Infallible>(route(req, &api).await) }
                            });
                            let mut builder = hyper::server::conn::http1::Builder::new();
                            builder.timer(TokioTimer::new()).header_read_timeout(idle);
                            let served = async {
                                match io {
                                    Io::Tcp(s) => builder.serve_connection(TokioIo::new(s), service).await,
                                    Io::Unix(s) => builder.serve_connection(TokioIo::new(s), service).await,
                                }
                            };
                            match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
                                Ok(Err(e)) => tracing::debug!(error = %e, "HTTP connection ended with an error"),
                                Err(_) => tracing::debug!("HTTP connection open too long; closed"),
                                Ok(Ok(())) => {}
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        drop(permit);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    if let HttpListener::Unix(_, Some(path)) = &listener {
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

async fn route(req: Request<Incoming>, api: &Api) -> Response<Full<Bytes>> {
    let core = &*api.core;
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
                .render(Some(resolver.stats()), &resolver.memory_usage());
            text(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        _ => match path.strip_prefix("/v1/policy/") {
            Some(domain) if !domain.is_empty() && !domain.contains('/') => {
                let refresh = query
                    .split('&')
                    .any(|kv| matches!(kv, "refresh=1" | "refresh=true" | "refresh"));
                policy(api, domain, refresh).await
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /v1/policy/{domain}, /metrics, /healthz\n".into(),
            ),
        },
    }
}

fn bad_request(message: String) -> Response<Full<Bytes>> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

/// The Policy Domain named by a path segment, read as the socketmap reads its keys
/// ([`Key::normalise`]): an address literal or a `.parent` key names none.
fn policy_domain(decoded: &str) -> Result<Domain, String> {
    match Key::normalise(decoded) {
        Key::Domain(domain) => Ok(domain),
        Key::Skip(SkipReason::AddressLiteral) => Err(format!(
            "`{decoded}` is an address literal, not a domain name: MTA-STS applies to domain names only (RFC 8461 §4.1); the socketmap answers it `NOTFOUND ` without a lookup"
        )),
        Key::Skip(SkipReason::ParentDomain) => Err(format!(
            "`{decoded}` is a parent-domain key: MTA-STS applies to the exact Policy Domain (RFC 8461 §4.1); ask for the domain itself"
        )),
        Key::Skip(SkipReason::Invalid) => Err(match Domain::parse(decoded.trim_end_matches('.')) {
            Err(e) => format!("`{decoded}` is not a domain name: {e}"),
            Ok(_) => format!("`{decoded}` is not a domain name"),
        }),
    }
}

async fn policy(api: &Api, raw: &str, refresh: bool) -> Response<Full<Bytes>> {
    let core = &*api.core;
    let decoded = percent_decode(raw);
    let domain = match policy_domain(&decoded) {
        Ok(d) => d,
        Err(message) => return bad_request(message),
    };
    let generation = core.current();
    let lookup = &generation.lookup;
    let zone = &generation.config.defaults;
    // Anything that may go to the network costs a token (issue 12.5): the API must not let
    // whoever reaches it make the daemon fetch any number of domains.
    if (refresh || lookup.resolver().cached(&domain).is_none())
        && let Err(retry_after) = api.bucket.take()
    {
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": format!("too many lookups through the API; retry in {retry_after} s")}),
        );
        if let Ok(value) = hyper::header::HeaderValue::from_str(&retry_after.to_string()) {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, value);
        }
        return response;
    }
    // API lookups are not TLS-RPT sessions: not recorded.
    let api_lookup = lookup.without_tlsrpt();
    let (reply, fresh) = if refresh {
        let full = api_lookup.lookup_full(&domain).await;
        let result = crate::resolver_lookup::result_of(&full);
        let dane = if zone.dane == DaneMode::Defer {
            api_lookup.dane(&domain).await
        } else {
            DaneVerdict::NotChecked
        };
        (reply_for(&domain, zone, &result, dane), Some(full))
    } else {
        // As the socketmap answers: the cache, else a lookup within the zone's budget.
        let reply = crate::lookup::start(Arc::new(api_lookup), domain.clone(), zone.clone())
            .finish()
            .await;
        (reply, None)
    };
    let cached = lookup.resolver().cached(&domain);
    let now = lookup.resolver().clock().now();
    let policy = cached.as_ref().map(|c| {
        json!({
            "version": "STSv1",
            "mode": c.policy.mode.to_string(),
            "mx": c.policy.mx.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "max_age": c.policy.max_age,
        })
    });
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
