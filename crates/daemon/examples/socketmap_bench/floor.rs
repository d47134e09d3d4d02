//! The floor for CPU per fresh lookup: the least work any client can do for one fresh
//! policy with the daemon's TLS stack, measured against the same world.
//!
//! One blocking thread, no runtime, no cache, no socketmap: per domain one UDP `TXT` query
//! for `_mta-sts.<domain>`, one TCP connection, one TLS handshake with the fetcher's own
//! client configuration and certificate verifier, one `GET`, read to the end, parse the
//! policy. Whatever the daemon spends above this figure is its own overhead; what this
//! figure costs is the protocol (the handshake's ECDHE, signature checks and key schedule,
//! and the loopback TCP/UDP work the kernel charges to the client).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use mta_sts_net::Trust;
use mta_sts_net::policy_fetch::POLICY_PATH;
use mta_sts_net::tls::tls_client_config;
use rustls_pki_types::ServerName;

use super::BoxError;

/// Runs `names` one after another and prints `FLOOR <cpu seconds> <lookups>` on stdout,
/// then `CRYPTO <seconds>`: the public-key work of one handshake alone.
pub fn run(
    dns: SocketAddr,
    https: SocketAddr,
    ca: &Path,
    names: &[String],
) -> Result<(), BoxError> {
    let config = tls_client_config(&Trust::PlatformAnd(ca.to_path_buf()))?;
    let cpu0 = super::cpu_secs(std::process::id());
    let mut done = 0u64;
    for name in names {
        txt(dns, &format!("_mta-sts.{name}"))?;
        let body = fetch(https, &format!("mta-sts.{name}"), config.clone())?;
        mta_sts::Policy::parse(body.as_bytes())?;
        done += 1;
    }
    let cpu = super::cpu_secs(std::process::id()) - cpu0;
    println!("FLOOR {cpu} {done}");
    println!("CRYPTO {}", handshake_crypto()?);
    Ok(())
}

/// Seconds of the public-key operations every fresh TLS 1.3 handshake with a P-256 server
/// costs a client, with the same library (ring): one X25519 key pair and agreement, and
/// two ECDSA P-256 verifications (the certificate's signature by its issuer and the
/// server's CertificateVerify). Measured in a tight loop, so it is a lower bound.
fn handshake_crypto() -> Result<f64, BoxError> {
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| "P-256 key generation failed")?;
    let key = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .map_err(|_| "P-256 key rejected")?;
    let message = [7u8; 128];
    let sig = key
        .sign(&rng, &message)
        .map_err(|_| "P-256 signing failed")?;
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let peer = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .map_err(|_| "X25519 failed")?;
    let peer = peer.as_ref().to_vec();
    const ROUNDS: u32 = 2000;
    let started = std::time::Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..2 {
            public
                .verify(&message, sig.as_ref())
                .map_err(|_| "verify failed")?;
        }
        let ours = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
            .map_err(|_| "X25519 failed")?;
        ours.compute_public_key().map_err(|_| "X25519 failed")?;
        let theirs = ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, &peer);
        ring::agreement::agree_ephemeral(ours, &theirs, |secret| secret.len())
            .map_err(|_| "X25519 failed")?;
    }
    Ok(started.elapsed().as_secs_f64() / f64::from(ROUNDS))
}

/// One UDP query; the answer must hold a TXT record.
fn txt(server: SocketAddr, name: &str) -> Result<(), BoxError> {
    let mut query = Message::new(std::process::id() as u16, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::TXT));
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.send(&query.to_vec()?)?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf)?;
    let answer = Message::from_vec(buf.get(..n).unwrap_or_default())?;
    if answer
        .answers
        .iter()
        .any(|r| matches!(r.data, RData::TXT(_)))
    {
        Ok(())
    } else {
        Err(format!("{name}: no TXT record").into())
    }
}

/// One HTTPS `GET` of the policy; the body of a 200 answer.
fn fetch(
    https: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<String, BoxError> {
    let mut tcp = TcpStream::connect(https)?;
    tcp.set_nodelay(true)?;
    let mut tls = rustls::ClientConnection::new(config, ServerName::try_from(host.to_owned())?)?;
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    write!(
        stream,
        "GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify after a complete response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8(response)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{host}: {}", head.lines().next().unwrap_or_default()).into());
    }
    Ok(body.to_owned())
}
