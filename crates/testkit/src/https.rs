//! An HTTPS policy host (rustls, ring) on one loopback port serving many hosts, each
//! with a scripted [`HostBehavior`] chosen by SNI.
//!
//! HTTP/1.1 is written by hand so faults can be injected at the byte level. Every
//! response carries `Connection: close`; one request per connection.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use crate::Error;
use crate::ca::{CertKind, Pki, server_config};

/// How a response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A correct `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding: chunked`, one HTTP chunk per write.
    Chunked,
    /// No length at all: the body ends when the connection closes.
    CloseDelimited,
    /// `Content-Length` with this value, whatever the body's real length; the server
    /// sends the body it has and closes.
    LyingContentLength(u64),
}

/// A fault before or instead of the HTTP exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFault {
    /// Read the ClientHello, then never answer it (the handshake never completes).
    HangHandshake,
    /// Complete the TLS handshake and read the request, then never respond.
    NoResponse,
    /// Behave as a server that only speaks TLS 1.0: answer the ClientHello with a
    /// TLS 1.0 ServerHello, which a TLS ≥ 1.2 client rejects (protocol version).
    LegacyTls,
    /// Complete the handshake, read the request, then close without a response.
    CloseAfterRequest,
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(Arc<[u8]>),
    /// `len` bytes generated on the fly, repeating `fill`.
    Generated {
        len: u64,
        fill: u8,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Generated { len, .. } => *len,
        }
    }
}

/// What the policy host does for one host name (selected by SNI).
///
/// Start from a constructor ([`HostBehavior::policy`], [`HostBehavior::status`],
/// [`HostBehavior::redirect`], [`HostBehavior::huge`]) and chain modifiers:
///
/// ```
/// use std::time::Duration;
/// use mta_sts_testkit::{CertKind, HostBehavior};
/// let slow = HostBehavior::policy("version: STSv1\nmode: none\nmax_age: 60\n")
///     .chunked()
///     .slow(4, Duration::from_millis(50));
/// let bad_cert = HostBehavior::policy("…").cert(CertKind::Expired);
/// let gone = HostBehavior::status(404);
/// ```
#[derive(Clone, Debug)]
pub struct HostBehavior {
    status: u16,
    content_type: Option<String>,
    body: Body,
    framing: Framing,
    headers: Vec<(String, String)>,
    chunk_size: usize,
    chunk_delay: Duration,
    response_delay: Duration,
    cert: CertKind,
    fault: Option<HostFault>,
}

impl Default for HostBehavior {
    /// 200, `text/plain`, empty body, Content-Length, valid certificate.
    fn default() -> Self {
        HostBehavior {
            status: 200,
            content_type: Some("text/plain".into()),
            body: Body::Bytes(Arc::from(&b""[..])),
            framing: Framing::ContentLength,
            headers: Vec::new(),
            chunk_size: 16 * 1024,
            chunk_delay: Duration::ZERO,
            response_delay: Duration::ZERO,
            cert: CertKind::Valid,
            fault: None,
        }
    }
}

impl HostBehavior {
    /// 200, `Content-Type: text/plain`, `body` with a correct Content-Length.
    pub fn policy(body: impl Into<Vec<u8>>) -> Self {
        HostBehavior::default().body(body)
    }

    /// `status` with a short `text/plain` body (its reason phrase).
    pub fn status(status: u16) -> Self {
        let body = format!("{} {}\n", status, reason(status));
        HostBehavior::default().with_status(status).body(body)
    }

    /// A redirect: `status` (301, 302, 307, 308…) with `Location: location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        HostBehavior::status(status).header("Location", location)
    }

    /// 200 `text/plain` with a generated body of `len` bytes (never held in memory).
    pub fn huge(len: u64) -> Self {
        HostBehavior {
            body: Body::Generated { len, fill: b'x' },
            ..HostBehavior::default()
        }
    }

    /// Sets the status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(Arc::from(body.into()));
        self
    }

    /// Sets the `Content-Type` header value (e.g. `"text/html"`, `"text/plain; charset=utf-8"`).
    pub fn content_type(mut self, value: &str) -> Self {
        self.content_type = Some(value.to_string());
        self
    }

    /// Sends no `Content-Type` header.
    pub fn no_content_type(mut self) -> Self {
        self.content_type = None;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Uses `Transfer-Encoding: chunked`.
    pub fn chunked(mut self) -> Self {
        self.framing = Framing::Chunked;
        self
    }

    /// Sends no length: the body ends at connection close.
    pub fn close_delimited(mut self) -> Self {
        self.framing = Framing::CloseDelimited;
        self
    }

    /// Announces `Content-Length: len` whatever the body is.
    pub fn lying_content_length(mut self, len: u64) -> Self {
        self.framing = Framing::LyingContentLength(len);
        self
    }

    /// Sends the body `chunk_size` bytes at a time, sleeping `delay` before each piece.
    pub fn slow(mut self, chunk_size: usize, delay: Duration) -> Self {
        self.chunk_size = chunk_size.max(1);
        self.chunk_delay = delay;
        self
    }

    /// Waits `delay` after reading the request before sending anything.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.response_delay = delay;
        self
    }

    /// Presents a certificate of this kind (default [`CertKind::Valid`]).
    pub fn cert(mut self, kind: CertKind) -> Self {
        self.cert = kind;
        self
    }

    /// Never completes the TLS handshake (see [`HostFault::HangHandshake`]).
    pub fn hang_handshake(mut self) -> Self {
        self.fault = Some(HostFault::HangHandshake);
        self
    }

    /// Never responds after the handshake (see [`HostFault::NoResponse`]).
    pub fn no_response(mut self) -> Self {
        self.fault = Some(HostFault::NoResponse);
        self
    }

    /// Speaks only TLS 1.0 (see [`HostFault::LegacyTls`]).
    pub fn legacy_tls(mut self) -> Self {
        self.fault = Some(HostFault::LegacyTls);
        self
    }

    /// Closes the connection after the request without responding.
    pub fn close_after_request(mut self) -> Self {
        self.fault = Some(HostFault::CloseAfterRequest);
        self
    }

    /// Sets or clears the fault.
    pub fn fault(mut self, fault: Option<HostFault>) -> Self {
        self.fault = fault;
        self
    }

    /// The certificate kind this host presents.
    pub fn cert_kind(&self) -> CertKind {
        self.cert
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// One HTTP request the policy host received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The SNI host name (lowercase) the connection was made for.
    pub sni: String,
    /// Negotiated TLS version, e.g. `"TLSv1_3"`.
    pub tls_version: String,
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target, e.g. `/.well-known/mta-sts.txt`.
    pub path: String,
    /// HTTP version, e.g. `HTTP/1.1`.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Request body (Content-Length or chunked), empty for GET.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<HttpRequest>,
    request_counts: HashMap<String, u64>,
    hello_counts: HashMap<String, u64>,
    /// Requests read whose response is not written yet.
    in_flight: u64,
    /// The most `in_flight` has been.
    peak_in_flight: u64,
}

struct Shared {
    hosts: RwLock<HashMap<String, HostBehavior>>,
    log: Mutex<Log>,
    pki: Arc<Pki>,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn behavior(&self, host: &str) -> Option<HostBehavior> {
        self.hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }
}

/// Handle to a running HTTPS policy host. Cheap to clone.
#[derive(Clone)]
pub struct HttpsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HttpsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpsServer {
    /// Binds `127.0.0.1:0` and serves on the runtime behind `handle`, with certificates
    /// from `pki`.
    pub fn start(handle: &Handle, pki: Arc<Pki>) -> Result<Self, Error> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _guard = handle.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            hosts: RwLock::new(HashMap::new()),
            log: Mutex::new(Log::default()),
            pki,
        });
        let server_shared = shared.clone();
        handle.spawn(async move {
            loop {
                let Ok((tcp, _peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = server_shared.clone();
                tokio::spawn(async move {
                    serve_connection(shared, tcp).await;
                });
            }
        });
        Ok(HttpsServer { shared, addr })
    }

    /// Address all hosts are served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets (or replaces) the behaviour of `host` (e.g. `mta-sts.good.test`).
    pub fn set(&self, host: &str, behavior: HostBehavior) {
        self.shared
            .hosts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_ascii_lowercase(), behavior);
    }

    /// Changes the behaviour of `host` in place (a default behaviour if it had none).
    pub fn update(&self, host: &str, change: impl FnOnce(HostBehavior) -> HostBehavior) {
        let mut hosts = self.shared.hosts.write().unwrap_or_else(|p| p.into_inner());
        let key = host.to_ascii_lowercase();
        let current = hosts.remove(&key).unwrap_or_default();
        hosts.insert(key, change(current));
    }

    /// Removes `host`: its handshakes are then aborted with `unrecognized_name`.
    pub fn remove(&self, host: &str) {
        self.shared
            .hosts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&host.to_ascii_lowercase());
    }

    /// The current behaviour of `host`.
    pub fn get(&self, host: &str) -> Option<HostBehavior> {
        self.shared.behavior(&host.to_ascii_lowercase())
    }

    /// Names of the hosts configured, in no particular order.
    pub fn host_names(&self) -> Vec<String> {
        self.shared
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Number of hosts configured.
    pub fn host_count(&self) -> usize {
        self.shared
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Requests received for `host` (by SNI), in order.
    pub fn requests(&self, host: &str) -> Vec<HttpRequest> {
        let host = host.to_ascii_lowercase();
        self.shared
            .log()
            .requests
            .iter()
            .filter(|r| r.sni == host)
            .cloned()
            .collect()
    }

    /// Every request received, in order.
    pub fn all_requests(&self) -> Vec<HttpRequest> {
        self.shared.log().requests.clone()
    }

    /// Number of HTTP requests received for `host`.
    pub fn request_count(&self, host: &str) -> u64 {
        let host = host.to_ascii_lowercase();
        self.shared
            .log()
            .request_counts
            .get(&host)
            .copied()
            .unwrap_or(0)
    }

    /// Number of TLS ClientHellos received with SNI `host` (including failed handshakes).
    pub fn hello_count(&self, host: &str) -> u64 {
        let host = host.to_ascii_lowercase();
        self.shared
            .log()
            .hello_counts
            .get(&host)
            .copied()
            .unwrap_or(0)
    }

    /// The most requests (over all hosts) that were read and not yet answered at one time
    /// since the start or the last [`HttpsServer::clear_log`]: how many fetches a client
    /// had in flight at once.
    pub fn peak_concurrent_requests(&self) -> u64 {
        self.shared.log().peak_in_flight
    }

    /// Forgets the request log and counters.
    pub fn clear_log(&self) {
        *self.shared.log() = Log::default();
    }
}

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// A fatal `unrecognized_name` alert (TLS 1.2 record).
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// A TLS 1.0 ServerHello (TLS_RSA_WITH_AES_128_CBC_SHA, no extensions), as a legacy
/// server sends when it negotiates down to its only version.
fn tls10_server_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x01];
    body.extend_from_slice(&[0x5a; 32]); // server random
    body.push(0); // empty session id
    body.extend_from_slice(&[0x00, 0x2f]); // cipher suite
    body.push(0); // null compression
    let mut handshake = vec![0x02, 0x00, 0x00, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

/// Reads and discards until the peer closes (or the runtime stops).
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, mut tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf = vec![0u8; 16 * 1024];
    let accepted = loop {
        let n = match tokio::time::timeout(HELLO_TIMEOUT, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            if acceptor.read_tls(&mut data).is_err() {
                return;
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => continue,
            Err((_error, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                let _ = tcp.write_all(&out).await;
                return;
            }
        }
    };
    let sni = accepted
        .client_hello()
        .server_name()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    *shared.log().hello_counts.entry(sni.clone()).or_insert(0) += 1;
    let Some(behavior) = shared.behavior(&sni) else {
        let _ = tcp.write_all(&ALERT_UNRECOGNIZED_NAME).await;
        return;
    };
    match behavior.fault {
        Some(HostFault::HangHandshake) => {
            drain(&mut tcp).await;
            return;
        }
        Some(HostFault::LegacyTls) => {
            let _ = tcp.write_all(&tls10_server_hello()).await;
            drain(&mut tcp).await;
            return;
        }
        _ => {}
    }
    let Ok(key) = shared.pki.certified_key(&sni, behavior.cert) else {
        return;
    };
    let Ok(config) = server_config(key) else {
        return;
    };
    let handshake = tokio_rustls::StartHandshake::from_parts(accepted, tcp).into_stream(config);
    let tls = match tokio::time::timeout(HELLO_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        _ => return,
    };
    let tls_version = tls
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let mut stream = BufReader::new(tls);
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(Some(req))) => req,
        _ => return,
    };
    let request = HttpRequest {
        sni: sni.clone(),
        tls_version,
        ..request
    };
    {
        let mut log = shared.log();
        *log.request_counts.entry(sni.clone()).or_insert(0) += 1;
        log.requests.push(request);
        log.in_flight += 1;
        log.peak_in_flight = log.peak_in_flight.max(log.in_flight);
    }
    answer(&mut stream, &behavior).await;
    // Saturating: a clear_log while this request was in flight reset the count.
    let mut log = shared.log();
    log.in_flight = log.in_flight.saturating_sub(1);
}

/// Writes the response `behavior` asks for (or none, for the faults that withhold it).
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, behavior: &HostBehavior) {
    match behavior.fault {
        Some(HostFault::NoResponse) => {
            drain(stream).await;
            return;
        }
        Some(HostFault::CloseAfterRequest) => {
            let _ = stream.shutdown().await;
            return;
        }
        _ => {}
    }
    if !behavior.response_delay.is_zero() {
        tokio::time::sleep(behavior.response_delay).await;
    }
    let _ = write_response(stream, behavior).await;
    let _ = stream.shutdown().await;
}

/// Reads one request head and body. `Ok(None)` when the peer closed or sent garbage.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
) -> std::io::Result<Option<HttpRequest>> {
    let mut head_len = 0usize;
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut *stream)
            .take((MAX_HEAD - head_len) as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        head_len += n;
        if head_len > MAX_HEAD {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // tolerate a leading empty line
            }
            break;
        }
        lines.push(text);
    }
    let mut first = lines[0].split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let version = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut request = HttpRequest {
        sni: String::new(),
        tls_version: String::new(),
        method,
        path,
        version,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(stream).await?;
    } else if let Some(len) = request
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut body = Vec::new();
        (&mut *stream)
            .take(len.min(MAX_BODY))
            .read_to_end(&mut body)
            .await?;
        request.body = body;
    }
    Ok(Some(request))
}

async fn read_chunked<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        (&mut *stream)
            .take(1024)
            .read_until(b'\n', &mut line)
            .await?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let Ok(size) = u64::from_str_radix(&size_text, 16) else {
            return Ok(body);
        };
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let mut trailer = Vec::new();
                let n = (&mut *stream)
                    .take(8192)
                    .read_until(b'\n', &mut trailer)
                    .await?;
                if n == 0 || trailer == b"\r\n" || trailer == b"\n" {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Ok(body);
        }
        (&mut *stream).take(size).read_to_end(&mut body).await?;
        let mut crlf = Vec::new();
        (&mut *stream).take(2).read_to_end(&mut crlf).await?;
    }
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    behavior: &HostBehavior,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: mta-sts-testkit\r\nConnection: close\r\n",
        behavior.status,
        reason(behavior.status)
    );
    if let Some(ct) = &behavior.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    match behavior.framing {
        Framing::ContentLength => {
            head.push_str(&format!("Content-Length: {}\r\n", behavior.body.len()))
        }
        Framing::LyingContentLength(len) => head.push_str(&format!("Content-Length: {len}\r\n")),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::CloseDelimited => {}
    }
    for (name, value) in &behavior.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;

    let chunked = behavior.framing == Framing::Chunked;
    let size = behavior.chunk_size.max(1);
    let total = behavior.body.len();
    let filler = match &behavior.body {
        Body::Generated { fill, .. } => vec![*fill; size],
        Body::Bytes(_) => Vec::new(),
    };
    let mut sent = 0u64;
    while sent < total {
        let n = size.min((total - sent) as usize);
        let piece: &[u8] = match &behavior.body {
            Body::Bytes(bytes) => &bytes[sent as usize..sent as usize + n],
            Body::Generated { .. } => &filler[..n],
        };
        if !behavior.chunk_delay.is_zero() {
            tokio::time::sleep(behavior.chunk_delay).await;
        }
        if chunked {
            stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            stream.write_all(piece).await?;
            stream.write_all(b"\r\n").await?;
        } else {
            stream.write_all(piece).await?;
        }
        if !behavior.chunk_delay.is_zero() {
            stream.flush().await?;
        }
        sent += n as u64;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.flush().await
}
