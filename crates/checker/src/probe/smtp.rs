//! The MX probe: SMTP on port 25 (RFC 5321), EHLO, STARTTLS (RFC 3207) and a TLS handshake
//! with SNI = the MX host name, as an MTA-STS sender does before validating the
//! certificate (RFC 8461 §4.2). No mail is sent: the probe says QUIT after the handshake.

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{Addresses, ProbeError, ProbeErrorKind, Target};
use crate::tls::{CertProblem, ProbeTls, TlsSession, is_version_error};
use mta_sts::decision::TlsOutcome;

/// Longest reply line read (RFC 5321 §4.5.3.1.5 says 512; be generous).
const MAX_LINE: u64 = 4096;
/// Most lines of one multi-line reply.
const MAX_REPLY_LINES: usize = 200;

/// Everything the SMTP probe of one MX host saw. Shared by every domain using the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxProbe {
    /// The MX host name.
    pub host: String,
    /// Its addresses.
    pub addresses: Addresses,
    /// TLSA records at `_25._tcp.<host>` (count), `None` when the lookup failed.
    pub tlsa: Option<usize>,
    /// Where the probe connected.
    pub connected_to: Option<SocketAddr>,
    /// The probe's own end of the connection (the `sending-mta-ip` of an RFC 8460 §4.4
    /// report). Not part of `mta-sts check --json`.
    #[serde(skip)]
    pub local_addr: Option<SocketAddr>,
    /// The greeting (all lines joined with a space).
    pub banner: Option<String>,
    /// The EHLO keywords (upper case), e.g. `STARTTLS`, `PIPELINING`.
    pub ehlo: Option<Vec<String>>,
    /// Whether STARTTLS was advertised.
    pub starttls: Option<bool>,
    /// The TLS session after STARTTLS.
    pub tls: Option<TlsSession>,
    /// Milliseconds for the whole probe.
    pub elapsed_ms: u64,
    /// Why the probe stopped early.
    pub error: Option<ProbeError>,
}

impl MxProbe {
    /// The outcome of the TLS attempt as a sender's delivery decision sees it (RFC 8461
    /// §4.2, [`mta_sts::decision::decide`]); `None` when the host could not be reached or
    /// the SMTP dialogue broke before STARTTLS (no TLS outcome to judge). The same mapping
    /// as the MX findings of `mta-sts check`: STARTTLS not advertised, refused or its
    /// handshake failing is `StarttlsNotSupported`, a TLS version below 1.2 a
    /// `ValidationFailure`, and a finished handshake is judged by its certificate.
    pub fn tls_outcome(&self) -> Option<TlsOutcome> {
        if let Some(error) = &self.error {
            return match error.kind {
                ProbeErrorKind::NoAddress
                | ProbeErrorKind::Connect
                | ProbeErrorKind::Timeout
                | ProbeErrorKind::Smtp
                | ProbeErrorKind::Http => None,
                ProbeErrorKind::StarttlsRefused | ProbeErrorKind::Tls => {
                    Some(TlsOutcome::StarttlsNotSupported)
                }
                ProbeErrorKind::TlsVersion => Some(TlsOutcome::ValidationFailure),
            };
        }
        if self.starttls == Some(false) {
            return Some(TlsOutcome::StarttlsNotSupported);
        }
        let tls = self.tls.as_ref()?;
        Some(match &tls.certificate {
            Some(cert) if cert.valid => TlsOutcome::Valid,
            Some(cert) => cert
                .problem
                .map(CertProblem::outcome)
                .unwrap_or(TlsOutcome::ValidationFailure),
            None => TlsOutcome::ValidationFailure,
        })
    }
}

/// Probes one MX host. `tlsa` is the count of TLSA records (looked up by the caller).
pub async fn probe(
    tls: &ProbeTls,
    target: &Target,
    addresses: Addresses,
    tlsa: Option<usize>,
    ehlo_name: &str,
    timeout: Duration,
) -> MxProbe {
    let mut out = MxProbe {
        host: target.host.clone(),
        addresses,
        tlsa,
        connected_to: None,
        local_addr: None,
        banner: None,
        ehlo: None,
        starttls: None,
        tls: None,
        elapsed_ms: 0,
        error: None,
    };
    let (elapsed_ms, error) = super::timed(
        timeout,
        "no complete SMTP dialogue",
        dialogue(tls, target, ehlo_name, &mut out),
    )
    .await;
    out.elapsed_ms = elapsed_ms;
    out.error = error;
    out
}

/// One SMTP reply: code and text lines.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ProbeError> {
    let smtp = |m: String| ProbeError::new(ProbeErrorKind::Smtp, m);
    let mut lines = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = (&mut *reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| smtp(format!("reading the reply: {e}")))?;
        if n == 0 {
            return Err(smtp("the server closed the connection".into()));
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| smtp(format!("not an SMTP reply: `{line}`")))?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if last {
            return Ok(Reply { code, lines });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(smtp("reply too long".into()));
        }
    }
}

async fn dialogue(
    tls: &ProbeTls,
    target: &Target,
    ehlo_name: &str,
    out: &mut MxProbe,
) -> Result<(), ProbeError> {
    let addrs = target.socket_addrs(&out.addresses);
    if addrs.is_empty() {
        return Err(ProbeError::new(
            ProbeErrorKind::NoAddress,
            format!("{} has no address to connect to", target.host),
        ));
    }
    let (tcp, addr) = super::connect_any(&addrs).await?;
    out.connected_to = Some(addr);
    out.local_addr = tcp.local_addr().ok();
    let _ = tcp.set_nodelay(true);
    let mut conn = BufReader::new(tcp);
    let smtp = |m: String| ProbeError::new(ProbeErrorKind::Smtp, m);
    let write_err = |e: std::io::Error| smtp(format!("writing: {e}"));

    let banner = read_reply(&mut conn).await?;
    out.banner = Some(format!("{} {}", banner.code, banner.lines.join(" ")));
    if banner.code != 220 {
        return Err(smtp(format!(
            "greeting is not 220: {}",
            banner.lines.join(" ")
        )));
    }
    conn.get_mut()
        .write_all(format!("EHLO {ehlo_name}\r\n").as_bytes())
        .await
        .map_err(write_err)?;
    let ehlo = read_reply(&mut conn).await?;
    if ehlo.code != 250 {
        return Err(smtp(format!(
            "EHLO answered {} {}",
            ehlo.code,
            ehlo.lines.join(" ")
        )));
    }
    // The first line is the greeting; the others are keywords (RFC 5321 §4.1.1.1).
    let keywords: Vec<String> = ehlo
        .lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect();
    let offered = keywords.iter().any(|k| k == "STARTTLS");
    out.ehlo = Some(keywords);
    out.starttls = Some(offered);
    if !offered {
        let _ = conn.get_mut().write_all(b"QUIT\r\n").await;
        return Ok(());
    }
    conn.get_mut()
        .write_all(b"STARTTLS\r\n")
        .await
        .map_err(write_err)?;
    let reply = read_reply(&mut conn).await?;
    if reply.code != 220 {
        return Err(ProbeError::new(
            ProbeErrorKind::StarttlsRefused,
            format!("STARTTLS answered {} {}", reply.code, reply.lines.join(" ")),
        ));
    }
    // Anything buffered after the 220 is discarded (RFC 3207 §4.2).
    let tcp = conn.into_inner();
    let server_name = ServerName::try_from(target.host.clone())
        .map_err(|e| ProbeError::new(ProbeErrorKind::Tls, e.to_string()))?;
    let mut stream = tls
        .connector()
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            if is_version_error(&e) {
                ProbeError::new(ProbeErrorKind::TlsVersion, e.to_string())
            } else {
                ProbeError::new(ProbeErrorKind::Tls, e.to_string())
            }
        })?;
    out.tls = Some(tls.describe(stream.get_ref().1, &target.host));
    let _ = stream.write_all(b"QUIT\r\n").await;
    let _ = stream.shutdown().await;
    Ok(())
}
