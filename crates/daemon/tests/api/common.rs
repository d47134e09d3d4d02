//! Shared helpers: a fixed-map lookup, a server on TCP or a UNIX socket, a socketmap client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mta_sts::{Domain, Policy};
use mta_sts_daemon::config::{Listen, ZoneSettings, Zones};
use mta_sts_daemon::lookup::{LookupResult, PolicyLookup};
use mta_sts_daemon::server::{ServerOptions, SocketmapServer};
use mta_sts_resolver::CachedPolicy;
use mta_sts_socketmap::netstring::{Decoder, Limits, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn policy(text: &str) -> Arc<CachedPolicy> {
    let parsed = Policy::parse(text.as_bytes()).expect("test policy");
    Arc::new(CachedPolicy::new(parsed, "1", text, 0).expect("test id"))
}

/// A lookup backed by a fixed map: domain → (delay, result). Unknown domains: no policy.
#[derive(Default)]
pub struct FixedLookup {
    pub answers: HashMap<String, (Duration, LookupResult)>,
    pub cache: HashMap<String, Arc<CachedPolicy>>,
    pub calls: Mutex<Vec<String>>,
    pub finished: AtomicUsize,
}

impl FixedLookup {
    pub fn with(mut self, domain: &str, delay: Duration, result: LookupResult) -> Self {
        self.answers.insert(domain.to_owned(), (delay, result));
        self
    }

    pub fn cached_policy(mut self, domain: &str, p: Arc<CachedPolicy>) -> Self {
        self.cache.insert(domain.to_owned(), p);
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The peer's fixture domains (vectors §A/§B) as lookup results.
    pub fn peer() -> Self {
        let good = policy("version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400");
        let failed = || LookupResult::Failed {
            reason: "fetch failed".into(),
        };
        let mut l = FixedLookup::default()
            .with("good.loc", Duration::ZERO, LookupResult::Policy(good))
            .with(
                "testing.loc",
                Duration::ZERO,
                LookupResult::Policy(policy(
                    "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.loc\n",
                )),
            )
            .with(
                "valid-none.loc",
                Duration::ZERO,
                LookupResult::Policy(policy("version: STSv1\nmode: none\nmax_age: 86400")),
            );
        for d in [
            "bad-policy1.loc",
            "bad-policy2.loc",
            "bad-policy3.loc",
            "bad-cert1.loc",
            "bad-cert2.loc",
        ] {
            l = l.with(d, Duration::ZERO, failed());
        }
        l
    }
}

#[async_trait]
impl PolicyLookup for FixedLookup {
    async fn lookup(&self, domain: &Domain) -> LookupResult {
        self.calls.lock().unwrap().push(domain.as_str().to_owned());
        let (delay, result) = self
            .answers
            .get(domain.as_str())
            .cloned()
            .unwrap_or((Duration::ZERO, LookupResult::NoPolicy));
        tokio::time::sleep(delay).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        result
    }

    async fn cached(&self, domain: &Domain) -> Option<Arc<CachedPolicy>> {
        self.cache.get(domain.as_str()).cloned()
    }
}

pub struct Running {
    pub listen: Listen,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

pub fn tcp() -> Listen {
    Listen::Tcp("127.0.0.1:0".parse().unwrap())
}

pub async fn start(
    listen: Listen,
    options: ServerOptions,
    zones: Zones,
    lookup: Arc<dyn PolicyLookup>,
) -> Running {
    let server = SocketmapServer::bind(&listen, options, zones, lookup)
        .await
        .expect("bind");
    let listen = server.listen();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    Running {
        listen,
        stop: Some(tx),
        task,
    }
}

/// The peer's zones: "test" is no zone (defaults), "test2" a zone with default settings.
pub fn peer_zones(defaults: ZoneSettings) -> Zones {
    Zones::new(defaults.clone()).with_zone("test2", defaults)
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn connect(listen: &Listen) -> Box<dyn Io> {
    match listen {
        Listen::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await.expect("connect")),
        Listen::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .expect("connect"),
        ),
    }
}

/// A socketmap client reading `read_size` bytes at a time.
pub struct Client {
    pub io: Box<dyn Io>,
    decoder: Decoder,
    read_size: usize,
}

impl Client {
    pub async fn new(listen: &Listen, read_size: usize) -> Client {
        Client {
            io: connect(listen).await,
            decoder: Decoder::new(Limits::default()),
            read_size,
        }
    }

    /// A client on a TCP connection from `source` (e.g. `127.0.0.2`: every 127/8 address
    /// is local on Linux), to test per-peer limits.
    pub async fn from_source(listen: &Listen, source: std::net::Ipv4Addr) -> Client {
        let Listen::Tcp(addr) = listen else {
            panic!("TCP only")
        };
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from((source, 0)))
            .expect("bind source");
        Client {
            io: Box::new(socket.connect(*addr).await.expect("connect")),
            decoder: Decoder::new(Limits::default()),
            read_size: 4096,
        }
    }

    pub async fn send(&mut self, request: &str) {
        self.io
            .write_all(&encode(request.as_bytes()))
            .await
            .expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    /// The next reply, or None at EOF.
    pub async fn reply(&mut self) -> Option<String> {
        let mut buf = vec![0u8; self.read_size];
        loop {
            if let Some(p) = self.decoder.decode().expect("server netstring") {
                return Some(String::from_utf8(p.to_vec()).expect("utf-8 reply"));
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut buf))
                .await
                .expect("reply within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    pub async fn query(&mut self, request: &str) -> Option<String> {
        self.send(request).await;
        self.reply().await
    }

    /// True when the server closed the connection (EOF or reset) with no bytes.
    pub async fn closed_without_reply(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub const SECURE: &str = "OK secure match=mail.loc servername=hostname";
pub const SECURE_NOSNI: &str = "OK secure match=mail.loc";
pub const NOTFOUND: &str = "NOTFOUND ";

/// Vectors §D1 (default), §D2 (nosni) and §D3 (strict) as (request, D1, D2, D3).
pub const TABLE_D: &[(&str, &str, &str, &str)] = &[
    ("test good.loc", SECURE, SECURE_NOSNI, SECURE),
    ("test [good.loc]", SECURE, SECURE_NOSNI, SECURE),
    ("test [good.loc]:123", SECURE, SECURE_NOSNI, SECURE),
    ("test good.loc:123", SECURE, SECURE_NOSNI, SECURE),
    ("test2 good.loc", SECURE, SECURE_NOSNI, SECURE),
    ("test good.loc.", SECURE, SECURE_NOSNI, SECURE),
    ("test .good.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test valid-none.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test testing.loc", NOTFOUND, NOTFOUND, SECURE),
    ("test no-record.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test [no-record.loc]", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test .no-record.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test [1.2.3.4]", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test [a:bb:ccc::dddd]:123", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-record1.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-record2.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-policy1.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-policy2.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-policy3.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-cert1.loc", NOTFOUND, NOTFOUND, NOTFOUND),
    ("test bad-cert2.loc", NOTFOUND, NOTFOUND, NOTFOUND),
];

/// Zone settings of the three tables.
pub fn table_settings() -> [ZoneSettings; 3] {
    [
        ZoneSettings::default(),
        ZoneSettings {
            require_sni: false,
            ..ZoneSettings::default()
        },
        ZoneSettings {
            strict_testing: true,
            ..ZoneSettings::default()
        },
    ]
}

pub fn expected(
    row: &(&str, &'static str, &'static str, &'static str),
    table: usize,
) -> &'static str {
    [row.1, row.2, row.3][table]
}

/// Runs the three §D tables over TCP and a UNIX socket with read sizes 4096/128/16/1.
pub async fn run_tables(lookup: Arc<dyn PolicyLookup>) {
    let dir = tempfile::tempdir().unwrap();
    for (t, settings) in table_settings().into_iter().enumerate() {
        for listen in [tcp(), Listen::Unix(dir.path().join(format!("sm{t}.sock")))] {
            let server = start(
                listen,
                ServerOptions::default(),
                peer_zones(settings.clone()),
                Arc::clone(&lookup),
            )
            .await;
            for read_size in [4096, 128, 16, 1] {
                let mut client = Client::new(&server.listen, read_size).await;
                for row in TABLE_D {
                    let reply = client.query(row.0).await;
                    assert_eq!(
                        reply.as_deref(),
                        Some(expected(row, t)),
                        "table D{} {} read size {read_size}: {}",
                        t + 1,
                        server.listen,
                        row.0
                    );
                }
            }
            server.stop().await;
        }
    }
}
