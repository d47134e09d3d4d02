//! Bulk throughput of the checker against a testkit world (a measurement, not a test).
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-checker cargo run --release -p mta-sts-checker \
//!     --example bulk_bench -- [DOMAINS=10000] [CONCURRENCY=64] [distinct|shared]
//! ```
//!
//! `distinct` (default): every domain `dN.bench.test` has its own MX `mail.dN.bench.test`,
//! so every MX is probed over SMTP + STARTTLS; one SNI-aware SMTP server answers for all
//! of them with a certificate for the name asked. `shared`: the domains share 16 MX hosts,
//! so the run probes 16 hosts and reuses the results (the common case in real lists).
//! Certificates are issued before timing (server-side cost, not the checker's).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mta_sts_checker::bulk::{self, BulkConfig};
use mta_sts_checker::{CheckConfig, Checker};
use mta_sts_net::Trust;
use mta_sts_testkit::{CertKind, Pki, World, world::bulk_name};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Presents, for each SNI name, a valid test-CA certificate for that name.
#[derive(Debug)]
struct SniCerts(Arc<Pki>);

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_string();
        self.0.certified_key(&name, CertKind::Valid).ok()
    }
}

/// A minimal SMTP server: banner, EHLO with STARTTLS, TLS with the SNI certificate, QUIT.
async fn smtp_server(listener: TcpListener, tls: tokio_rustls::TlsAcceptor) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut conn = BufReader::new(tcp);
            if conn
                .get_mut()
                .write_all(b"220 bench ESMTP\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut line = String::new();
            loop {
                line.clear();
                if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let verb = line.trim().to_ascii_uppercase();
                let reply: &[u8] = if verb.starts_with("EHLO") {
                    b"250-bench\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
                } else if verb == "STARTTLS" {
                    b"220 2.0.0 go ahead\r\n"
                } else if verb == "QUIT" {
                    b"221 bye\r\n"
                } else {
                    b"502 5.5.2 no\r\n"
                };
                if conn.get_mut().write_all(reply).await.is_err() {
                    return;
                }
                if verb == "STARTTLS" {
                    break;
                }
                if verb == "QUIT" {
                    return;
                }
            }
            let Ok(mut stream) = tls.accept(conn.into_inner()).await else {
                return;
            };
            let mut buf = [0u8; 512];
            use tokio::io::AsyncReadExt;
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || buf[..n].windows(4).any(|w| w.eq_ignore_ascii_case(b"QUIT")) {
                    let _ = stream.write_all(b"221 bye\r\n").await;
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let distinct = args.get(2).map(String::as_str) != Some("shared");

    let t = Instant::now();
    let mut builder = World::builder();
    if distinct {
        builder = builder.bulk(n);
    } else {
        for i in 0..n {
            let mx = format!("mx{}.shared.bench", i % 16);
            builder = builder.domain(&bulk_name(i), move |d| d.mta_sts("enforce", &[&mx]));
        }
    }
    let world = builder.start();
    if !distinct {
        for k in 0..16 {
            world
                .dns()
                .set_a(&format!("mx{k}.shared.bench"), &[Ipv4Addr::LOCALHOST]);
        }
    }
    // Issue every certificate up front.
    let pki = world.pki().clone();
    for i in 0..n {
        let d = bulk_name(i);
        pki.certified_key(&format!("mta-sts.{d}"), CertKind::Valid)?;
        if distinct {
            pki.certified_key(&format!("mail.{d}"), CertKind::Valid)?;
        }
    }
    for k in 0..16 {
        pki.certified_key(&format!("mx{k}.shared.bench"), CertKind::Valid)?;
    }
    let server_config =
        rustls::ServerConfig::builder_with_provider(mta_sts_testkit::ca::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniCerts(pki)));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let std_listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    std_listener.set_nonblocking(true)?;
    let smtp_addr = std_listener.local_addr()?;
    {
        let _guard = world.handle().enter();
        let listener = TcpListener::from_std(std_listener)?;
        world.handle().spawn(smtp_server(listener, acceptor));
    }
    eprintln!(
        "world of {n} domains ready in {:.1} s ({} MX hosts)",
        t.elapsed().as_secs_f64(),
        if distinct { "distinct" } else { "16 shared" }
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        let config = CheckConfig {
            nameservers: vec![world.dns_addr()],
            trust: Trust::Only(world.ca_file().to_path_buf()),
            connect_to: vec![
                world.connect_to_any().parse()?,
                format!(":25:{}:{}", smtp_addr.ip(), smtp_addr.port()).parse()?,
            ],
            timeout: Duration::from_secs(10),
            smtp_timeout: Duration::from_secs(10),
            ..CheckConfig::default()
        };
        let checker = Arc::new(Checker::new(config)?);
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            for i in 0..n {
                if tx.send(bulk_name(i)).await.is_err() {
                    break;
                }
            }
        });
        let bulk_config = BulkConfig {
            concurrency,
            domain_timeout: Duration::from_secs(60),
        };
        Ok::<_, Box<dyn std::error::Error>>(bulk::run(checker, rx, bulk_config, |_| {}).await)
    })?;
    println!(
        "{} domains, concurrency {concurrency}, {} MX probes: {:.2} s, {:.0} domains/s; pass {}, warn {}, fail {}",
        summary.domains,
        summary.mx_hosts_probed,
        summary.elapsed_ms as f64 / 1000.0,
        summary.domains_per_second,
        summary.pass,
        summary.warn,
        summary.fail
    );
    println!("findings: {:?}", summary.findings);
    Ok(())
}
