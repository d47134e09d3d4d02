//! A minimal socketmap client: asks one server `NAME KEY` and reads the reply netstring,
//! for `mta-sts migrate compare`. Addresses are written as in Postfix's main.cf
//! (`inet:127.0.0.1:8461`, `unix:/path`), or plain `127.0.0.1:8461`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use mta_sts_socketmap::netstring::{self, Decoder, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::compare::Answer;

/// Where a socketmap server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketmapAddr {
    /// `inet:HOST:PORT` (an IP address).
    Tcp(SocketAddr),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl FromStr for SocketmapAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path".to_owned());
            }
            return Ok(SocketmapAddr::Unix(PathBuf::from(path)));
        }
        let inet = s.strip_prefix("inet:").unwrap_or(s);
        inet.parse().map(SocketmapAddr::Tcp).map_err(|_| {
            format!("`{s}` is not inet:IP:PORT (e.g. inet:127.0.0.1:8461) or unix:/path")
        })
    }
}

impl std::fmt::Display for SocketmapAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketmapAddr::Tcp(a) => write!(f, "inet:{a}"),
            SocketmapAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Opens (and closes) one connection to `addr`: whether the server is there at all.
pub async fn reachable(addr: &SocketmapAddr, timeout: Duration) -> std::io::Result<()> {
    let connect = async {
        match addr {
            SocketmapAddr::Tcp(a) => tokio::net::TcpStream::connect(a).await.map(drop),
            SocketmapAddr::Unix(p) => tokio::net::UnixStream::connect(p).await.map(drop),
        }
    };
    tokio::time::timeout(timeout, connect)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            ))
        })
}

/// Largest reply accepted (Postfix's own socketmap client limit is 100000 bytes).
const MAX_REPLY: usize = 100_000;

/// Asks `addr` for `map key` on a new connection; any failure is [`Answer::Failed`].
pub async fn ask(addr: &SocketmapAddr, map: &str, key: &str, timeout: Duration) -> Answer {
    let request = format!("{map} {key}");
    let result = tokio::time::timeout(timeout, async {
        match addr {
            SocketmapAddr::Tcp(a) => {
                exchange(tokio::net::TcpStream::connect(a).await?, &request).await
            }
            SocketmapAddr::Unix(p) => {
                exchange(tokio::net::UnixStream::connect(p).await?, &request).await
            }
        }
    })
    .await;
    match result {
        Ok(Ok(reply)) => Answer::Reply(reply),
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Err(_) => Answer::Failed(format!("no reply within {}s", timeout.as_secs_f64())),
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> std::io::Result<String> {
    stream
        .write_all(&netstring::encode(request.as_bytes()))
        .await?;
    let mut decoder = Decoder::new(Limits::for_payload(MAX_REPLY));
    let mut buf = [0u8; 4096];
    loop {
        match decoder.decode() {
            Ok(Some(payload)) => return Ok(String::from_utf8_lossy(&payload).into_owned()),
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad reply netstring: {e}"),
                ));
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed without a reply",
            ));
        }
        decoder.feed(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_in_main_cf() {
        assert_eq!(
            "inet:127.0.0.1:8461".parse(),
            Ok(SocketmapAddr::Tcp(([127, 0, 0, 1], 8461).into()))
        );
        assert_eq!(
            "[::1]:8461".parse::<SocketmapAddr>().map(|a| a.to_string()),
            Ok("inet:[::1]:8461".to_owned())
        );
        assert_eq!(
            "unix:/run/x.sock".parse(),
            Ok(SocketmapAddr::Unix("/run/x.sock".into()))
        );
        assert!("unix:".parse::<SocketmapAddr>().is_err());
        assert!("inet:localhost:8461".parse::<SocketmapAddr>().is_err());
    }
}
