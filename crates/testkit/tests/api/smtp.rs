//! SMTP servers, seen by a hand-driven client (plaintext and STARTTLS).

use std::time::Duration;

use mta_sts_testkit::{CertKind, SmtpConfig, World};
use rustls::CertificateError;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Sends `command` (unless empty) and reads one full (multi-line) reply.
async fn say<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    command: &str,
) -> String {
    if !command.is_empty() {
        stream
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("write");
    }
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("read");
        reply.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return reply;
        }
    }
}

async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) {
    assert!(say(s, "MAIL FROM:<a@sender.test>").await.starts_with("250"));
    assert!(say(s, "RCPT TO:<b@good.test>").await.starts_with("250"));
    assert!(say(s, "DATA").await.starts_with("354"));
    let reply = say(s, "Subject: hi\r\n\r\n..dot line\r\n.").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert!(say(s, "QUIT").await.starts_with("221"));
}

#[tokio::test]
async fn plaintext_delivery_without_starttls() {
    let world = World::builder()
        .smtp(SmtpConfig::new("mail.plain.test"))
        .start();
    let server = world.smtp("mail.plain.test").expect("server");
    let mut s = BufReader::new(TcpStream::connect(server.addr()).await.expect("connect"));
    assert!(say(&mut s, "").await.starts_with("220 mail.plain.test"));
    let ehlo = say(&mut s, "EHLO client.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(say(&mut s, "STARTTLS").await.starts_with("502"));
    deliver(&mut s).await;

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].mail_from, "a@sender.test");
    assert_eq!(messages[0].rcpt_to, vec!["b@good.test".to_string()]);
    assert_eq!(messages[0].data, b"Subject: hi\r\n\r\n.dot line\r\n");
    assert_eq!(messages[0].tls, None);
    assert_eq!(messages[0].helo, "client.test");
}

async fn starttls(
    world: &World,
    addr: std::net::SocketAddr,
    sni: &str,
) -> std::io::Result<BufReader<tokio_rustls::client::TlsStream<TcpStream>>> {
    let mut s = BufReader::new(TcpStream::connect(addr).await?);
    say(&mut s, "").await;
    let ehlo = say(&mut s, "EHLO client.test").await;
    assert!(
        ehlo.contains("250-STARTTLS") || ehlo.contains("250 STARTTLS"),
        "{ehlo}"
    );
    assert!(say(&mut s, "STARTTLS").await.starts_with("220"));
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let tls = TlsConnector::from(world.client_config())
        .connect(name, s.into_inner())
        .await?;
    Ok(BufReader::new(tls))
}

#[tokio::test]
async fn starttls_delivery_records_tls() {
    let world = World::builder()
        .smtp(SmtpConfig::new("mail.good.test").starttls(CertKind::Valid))
        .smtp(SmtpConfig::new("mail.expired.test").starttls(CertKind::Expired))
        .smtp(SmtpConfig::new("mail.refuse.test").refuse_starttls())
        .start();

    let good = world.smtp("mail.good.test").expect("server");
    let mut s = starttls(&world, good.addr(), "mail.good.test")
        .await
        .expect("tls");
    let ehlo = say(&mut s, "EHLO client.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    deliver(&mut s).await;
    let messages = good.messages();
    let tls = messages[0].tls.clone().expect("tls");
    assert_eq!(tls.version, "TLSv1_3");
    assert_eq!(tls.sni.as_deref(), Some("mail.good.test"));
    let sessions = good.wait_closed_sessions(1, Duration::from_secs(2));
    assert!(sessions[0].starttls_requested);

    let expired = world.smtp("mail.expired.test").expect("server");
    let e = starttls(&world, expired.addr(), "mail.expired.test")
        .await
        .expect_err("expired certificate");
    let e = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
        .expect("tls error");
    assert!(
        matches!(
            e,
            rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. } | CertificateError::Expired
            )
        ),
        "{e:?}"
    );
    let sessions = expired.wait_closed_sessions(1, Duration::from_secs(2));
    assert!(sessions[0].tls.is_none());
    assert!(sessions[0].tls_error.is_some(), "{:?}", sessions[0]);

    let refuse = world.smtp("mail.refuse.test").expect("server");
    let mut s = BufReader::new(TcpStream::connect(refuse.addr()).await.expect("connect"));
    say(&mut s, "").await;
    assert!(say(&mut s, "EHLO c").await.contains("STARTTLS"));
    assert!(say(&mut s, "STARTTLS").await.starts_with("454"));
}
