//! Shared test fixture: certificates from the testkit CA, a `serve.toml` in a temp dir, a
//! running server on 127.0.0.1:0, and raw HTTP/1.1 / HTTP/2 clients over real TLS.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mta_sts_policy_host::{ServeConfig, Server};
use mta_sts_testkit::{Pki, Validity};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const POLICY_A: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.a.test\r\nmx: *.mail.a.test\r\nmax_age: 86400\r\n";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A temp dir with certificates for policy hosts, and helpers to write configs.
pub struct Fixture {
    pub pki: Pki,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        init_tracing();
        Fixture {
            pki: Pki::new().expect("pki"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate for `names` and writes `<stem>.pem` / `<stem>.key`.
    pub fn write_cert(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let issued = self
            .pki
            .ca()
            .issue(names, Validity::Current)
            .expect("issue");
        let cert = self.path(&format!("{stem}.pem"));
        let key = self.path(&format!("{stem}.key"));
        let mut chain = issued.cert_pem.clone();
        chain.push_str(&self.pki.ca().pem());
        std::fs::write(&cert, chain).expect("write cert");
        std::fs::write(&key, &issued.key_pem).expect("write key");
        (cert, key)
    }

    /// Writes `serve.toml` with `text` and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("serve.toml");
        write_atomic(&path, text.as_bytes());
        path
    }

    pub fn ca_file(&self) -> PathBuf {
        let path = self.path("ca.pem");
        std::fs::write(&path, self.pki.ca().pem()).expect("ca");
        path
    }

    /// The standard two-domain config: a.test (explicit list, own cert) and b.test
    /// (testing, from [default], cert from cert_dir), plus `extra` appended.
    pub fn standard_config(&self, extra: &str) -> PathBuf {
        self.write_cert("a", &["mta-sts.a.test"]);
        std::fs::create_dir_all(self.path("certs")).expect("certs dir");
        self.write_cert("certs/mta-sts.b.test", &["mta-sts.b.test"]);
        self.write_config(&format!(
            r#"listen = "127.0.0.1:0"
cert_dir = "certs"
watch_interval = "200ms"

[default]
mode = "testing"
mx = ["mx.b.test"]
max_age = 604800
domains = ["b.test"]

[[domain]]
name = "a.test"
mode = "enforce"
mx = ["mx1.a.test", "*.mail.a.test"]
max_age = 86400
cert = "a.pem"
key = "a.key"
rua = "mailto:tlsrpt@a.test"
{extra}"#
        ))
    }

    pub async fn start(&self, config: &Path) -> Server {
        let config = ServeConfig::load(config).expect("config");
        Server::start(config).await.expect("server starts")
    }
}

/// Replaces a file atomically with a new mtime (rename), as editors and deploy tools do.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Opens TLS to `addr` with SNI `sni`, trusting `pki`'s CA, offering `alpn`.
pub async fn tls(
    pki: &Pki,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, BoxError> {
    let mut config = (*pki.ca().client_config()?).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string())?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 or HTTP/2 connection over TLS.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    pub async fn open(pki: &Pki, addr: SocketAddr, sni: &str, h2: bool) -> Result<Conn, BoxError> {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        let stream = tls(pki, addr, sni, alpn).await?;
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        let response = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// `method path` with `Host: host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub async fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
    ) -> Result<Answer, BoxError> {
        let h2 = matches!(self, Conn::H2(_));
        let req = build(method, host, path, h2, Bytes::new(), None)?;
        self.send(req).await
    }
}

pub fn build(
    method: &str,
    host: &str,
    path: &str,
    h2: bool,
    body: Bytes,
    content_type: Option<&str>,
) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut builder = Request::builder().method(method);
    if h2 {
        builder = builder.uri(format!("https://{host}{path}"));
    } else {
        builder = builder.uri(path).header("host", host);
    }
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    Ok(builder.body(Full::new(body))?)
}

/// One GET of the policy over a fresh HTTP/1.1 connection.
pub async fn get_policy(pki: &Pki, addr: SocketAddr, host: &str) -> Result<Answer, BoxError> {
    let mut conn = Conn::open(pki, addr, host, false).await?;
    conn.request("GET", host, "/.well-known/mta-sts.txt").await
}
