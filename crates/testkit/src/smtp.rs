//! SMTP servers (RFC 5321, STARTTLS per RFC 3207) that accept mail and record it.
//!
//! Each server has one host name (banner, EHLO reply, certificate name) and optionally
//! offers STARTTLS with a certificate of a chosen [`CertKind`]. Every session and every
//! delivered message is recorded for assertions.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use crate::Error;
use crate::ca::{CertKind, Pki, server_config};

/// How an SMTP server is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Host name in the banner and EHLO reply, and the name certificates are issued for.
    pub hostname: String,
    /// STARTTLS offered with this certificate kind; `None`: STARTTLS not advertised.
    pub starttls: Option<CertKind>,
    /// Advertise STARTTLS but answer it `454 4.7.0 TLS not available`.
    pub refuse_starttls: bool,
    /// Listen address; default `127.0.0.1:0` (ephemeral port).
    pub listen: Option<SocketAddr>,
}

impl SmtpConfig {
    /// A server named `hostname` without STARTTLS.
    pub fn new(hostname: &str) -> Self {
        SmtpConfig {
            hostname: hostname.to_ascii_lowercase(),
            starttls: None,
            refuse_starttls: false,
            listen: None,
        }
    }

    /// Offers STARTTLS with a certificate of `kind` for the host name.
    pub fn starttls(mut self, kind: CertKind) -> Self {
        self.starttls = Some(kind);
        self
    }

    /// Advertises STARTTLS but refuses it with 454.
    pub fn refuse_starttls(mut self) -> Self {
        self.starttls = Some(self.starttls.unwrap_or_default());
        self.refuse_starttls = true;
        self
    }

    /// Listens on `addr` instead of an ephemeral loopback port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }
}

/// TLS parameters of a session after STARTTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Negotiated version, e.g. `"TLSv1_3"`.
    pub version: String,
    /// Negotiated cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"`.
    pub cipher: String,
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
}

/// A message accepted at the end of DATA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpMessage {
    /// The EHLO/HELO name the client gave.
    pub helo: String,
    /// MAIL FROM address (between the angle brackets).
    pub mail_from: String,
    /// RCPT TO addresses.
    pub rcpt_to: Vec<String>,
    /// Message data, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
    /// TLS in force when the message was sent, `None` for plaintext.
    pub tls: Option<TlsInfo>,
}

/// One client connection, as far as it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSession {
    /// Client address.
    pub peer: SocketAddr,
    /// Last EHLO/HELO name.
    pub helo: Option<String>,
    /// Commands received (verb and arguments, one line each, DATA content excluded).
    pub commands: Vec<String>,
    /// Whether the client sent STARTTLS.
    pub starttls_requested: bool,
    /// TLS once the handshake succeeded.
    pub tls: Option<TlsInfo>,
    /// Why the TLS handshake failed, if it did (e.g. the client rejected the certificate).
    pub tls_error: Option<String>,
    /// Messages delivered in this session.
    pub messages: usize,
    /// Whether the session has ended.
    pub closed: bool,
}

struct Shared {
    config: Mutex<SmtpConfig>,
    sessions: Mutex<Vec<SmtpSession>>,
    messages: Mutex<Vec<SmtpMessage>>,
    pki: Arc<Pki>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn session(&self, index: usize, change: impl FnOnce(&mut SmtpSession)) {
        if let Some(session) = lock(&self.sessions).get_mut(index) {
            change(session);
        }
    }
}

/// Handle to a running SMTP server. Cheap to clone.
#[derive(Clone)]
pub struct SmtpServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// Binds the configured address and serves on the runtime behind `handle`.
    pub fn start(handle: &Handle, pki: Arc<Pki>, config: SmtpConfig) -> Result<Self, Error> {
        let listen = config
            .listen
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _guard = handle.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            sessions: Mutex::new(Vec::new()),
            messages: Mutex::new(Vec::new()),
            pki,
        });
        let server_shared = shared.clone();
        handle.spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = server_shared.clone();
                tokio::spawn(async move {
                    serve_connection(shared, tcp, peer).await;
                });
            }
        });
        Ok(SmtpServer { shared, addr })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's host name.
    pub fn hostname(&self) -> String {
        lock(&self.shared.config).hostname.clone()
    }

    /// Changes STARTTLS for new sessions (`None`: not advertised).
    pub fn set_starttls(&self, kind: Option<CertKind>) {
        let mut config = lock(&self.shared.config);
        config.starttls = kind;
        config.refuse_starttls = false;
    }

    /// Replaces the whole configuration for new sessions (the listen address is kept).
    pub fn set_config(&self, config: SmtpConfig) {
        *lock(&self.shared.config) = config;
    }

    /// Messages delivered so far, in order.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        lock(&self.shared.messages).clone()
    }

    /// Sessions so far (open and closed), in order of connection.
    pub fn sessions(&self) -> Vec<SmtpSession> {
        lock(&self.shared.sessions).clone()
    }

    /// Waits (polling, up to `timeout`) until `n` sessions have closed; returns the
    /// sessions. Useful after a client failed a handshake, since the server may record
    /// the failure a moment after the client saw it.
    pub fn wait_closed_sessions(&self, n: usize, timeout: Duration) -> Vec<SmtpSession> {
        let deadline = Instant::now() + timeout;
        loop {
            let sessions = self.sessions();
            if sessions.iter().filter(|s| s.closed).count() >= n || Instant::now() >= deadline {
                return sessions;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Forgets sessions and messages.
    pub fn clear(&self) {
        lock(&self.shared.sessions).clear();
        lock(&self.shared.messages).clear();
    }
}

const MAX_LINE: u64 = 4096;
const MAX_DATA_LINE: u64 = 1024 * 1024;
const MAX_DATA: usize = 50 * 1024 * 1024;
const IDLE: Duration = Duration::from_secs(60);

enum Next {
    Close,
    StartTls,
}

struct State {
    index: usize,
    helo: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    tls: Option<TlsInfo>,
}

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let config = lock(&shared.config).clone();
    let index = {
        let mut sessions = lock(&shared.sessions);
        sessions.push(SmtpSession {
            peer,
            helo: None,
            commands: Vec::new(),
            starttls_requested: false,
            tls: None,
            tls_error: None,
            messages: 0,
            closed: false,
        });
        sessions.len() - 1
    };
    let mut state = State {
        index,
        helo: None,
        mail_from: None,
        rcpt_to: Vec::new(),
        tls: None,
    };
    let mut plain = BufReader::new(tcp);
    let banner = format!("220 {} ESMTP mta-sts-testkit\r\n", config.hostname);
    if plain.get_mut().write_all(banner.as_bytes()).await.is_ok() {
        let next = dialogue(&mut plain, &shared, &config, &mut state).await;
        if let Next::StartTls = next {
            // Anything the client pipelined after STARTTLS is discarded (RFC 3207 §4.2).
            let tcp = plain.into_inner();
            starttls(tcp, &shared, &config, &mut state).await;
        }
    }
    shared.session(index, |s| s.closed = true);
}

async fn starttls(tcp: TcpStream, shared: &Arc<Shared>, config: &SmtpConfig, state: &mut State) {
    let kind = config.starttls.unwrap_or_default();
    let key = match shared.pki.certified_key(&config.hostname, kind) {
        Ok(key) => key,
        Err(e) => {
            shared.session(state.index, |s| s.tls_error = Some(e.to_string()));
            return;
        }
    };
    let tls_config = match server_config(key) {
        Ok(c) => c,
        Err(e) => {
            shared.session(state.index, |s| s.tls_error = Some(e.to_string()));
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let tls = match tokio::time::timeout(IDLE, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared.session(state.index, |s| s.tls_error = Some(e.to_string()));
            return;
        }
        Err(_) => {
            shared.session(state.index, |s| {
                s.tls_error = Some("handshake timeout".into())
            });
            return;
        }
    };
    let conn = tls.get_ref().1;
    let info = TlsInfo {
        version: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default(),
        sni: conn.server_name().map(str::to_string),
    };
    shared.session(state.index, |s| s.tls = Some(info.clone()));
    state.tls = Some(info);
    state.helo = None;
    state.mail_from = None;
    state.rcpt_to.clear();
    let mut stream = BufReader::new(tls);
    let _ = dialogue(&mut stream, shared, config, state).await;
    let _ = stream.shutdown().await;
}

/// Reads one line of at most `MAX_LINE` bytes. `Ok(None)` at end of stream, `Err` on a
/// too-long line or an I/O error.
async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
    max: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = tokio::time::timeout(IDLE, (&mut *stream).take(max).read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    Ok(Some(line))
}

fn address(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(start), Some(end)) if start < end => arg[start + 1..end].to_string(),
        _ => arg
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// One SMTP dialogue until the client quits or asks for STARTTLS.
///
/// Longer than our ~120-line rule, on purpose: one `match` over the commands of RFC 5321 in
/// the order a client sends them, each arm a few lines, reads best as the one table it is.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    shared: &Arc<Shared>,
    config: &SmtpConfig,
    state: &mut State,
) -> Next {
    loop {
        let line = match read_line(stream, MAX_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) => return Next::Close,
            Err(_) => {
                let _ = reply(stream, "500 5.5.2 Line too long or timeout\r\n").await;
                return Next::Close;
            }
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        shared.session(state.index, |s| s.commands.push(text.to_string()));
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        let (answer, next): (String, Option<Next>) = match verb.as_str() {
            "EHLO" => {
                state.helo = Some(arg.to_string());
                let helo = arg.to_string();
                shared.session(state.index, |s| s.helo = Some(helo));
                let mut lines = vec![
                    config.hostname.clone(),
                    "PIPELINING".into(),
                    "SIZE 52428800".into(),
                    "8BITMIME".into(),
                    "ENHANCEDSTATUSCODES".into(),
                ];
                if config.starttls.is_some() && state.tls.is_none() {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                let text = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                    .collect();
                (text, None)
            }
            "HELO" => {
                state.helo = Some(arg.to_string());
                let helo = arg.to_string();
                shared.session(state.index, |s| s.helo = Some(helo));
                (format!("250 {}\r\n", config.hostname), None)
            }
            "STARTTLS" => {
                shared.session(state.index, |s| s.starttls_requested = true);
                if state.tls.is_some() {
                    ("503 5.5.1 TLS already active\r\n".into(), None)
                } else if config.starttls.is_none() {
                    ("502 5.5.1 STARTTLS not offered\r\n".into(), None)
                } else if config.refuse_starttls {
                    ("454 4.7.0 TLS not available\r\n".into(), None)
                } else {
                    (
                        "220 2.0.0 Ready to start TLS\r\n".into(),
                        Some(Next::StartTls),
                    )
                }
            }
            "MAIL" => {
                state.mail_from = Some(address(arg));
                state.rcpt_to.clear();
                ("250 2.1.0 Ok\r\n".into(), None)
            }
            "RCPT" => {
                if state.mail_from.is_none() {
                    ("503 5.5.1 MAIL first\r\n".into(), None)
                } else {
                    state.rcpt_to.push(address(arg));
                    ("250 2.1.5 Ok\r\n".into(), None)
                }
            }
            "DATA" => {
                if state.rcpt_to.is_empty() {
                    ("503 5.5.1 RCPT first\r\n".into(), None)
                } else {
                    if reply(stream, "354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await
                        .is_err()
                    {
                        return Next::Close;
                    }
                    match read_data(stream).await {
                        Some(data) => {
                            let message = SmtpMessage {
                                helo: state.helo.clone().unwrap_or_default(),
                                mail_from: state.mail_from.take().unwrap_or_default(),
                                rcpt_to: std::mem::take(&mut state.rcpt_to),
                                data,
                                tls: state.tls.clone(),
                            };
                            let n = {
                                let mut messages = lock(&shared.messages);
                                messages.push(message);
                                messages.len()
                            };
                            shared.session(state.index, |s| s.messages += 1);
                            (format!("250 2.0.0 Ok: queued as TK{n}\r\n"), None)
                        }
                        None => return Next::Close,
                    }
                }
            }
            "RSET" => {
                state.mail_from = None;
                state.rcpt_to.clear();
                ("250 2.0.0 Ok\r\n".into(), None)
            }
            "NOOP" => ("250 2.0.0 Ok\r\n".into(), None),
            "VRFY" => ("252 2.0.0 Cannot VRFY\r\n".into(), None),
            "QUIT" => ("221 2.0.0 Bye\r\n".into(), Some(Next::Close)),
            _ => ("500 5.5.2 Command not recognized\r\n".into(), None),
        };
        if reply(stream, &answer).await.is_err() {
            return Next::Close;
        }
        if let Some(next) = next {
            return next;
        }
    }
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    stream.get_mut().write_all(text.as_bytes()).await?;
    stream.get_mut().flush().await
}

/// Reads DATA content up to the lone `.` line; `None` if the client went away or sent
/// too much.
async fn read_data<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line = read_line(stream, MAX_DATA_LINE).await.ok()??;
        if line == b".\r\n" || line == b".\n" {
            return Some(data);
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + content.len() > MAX_DATA {
            return None;
        }
        data.extend_from_slice(content);
    }
}
