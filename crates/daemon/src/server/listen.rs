//! The listener (TCP or UNIX socket, bound or passed by systemd) and accepting a client.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use super::ServerError;

pub(super) enum Listener {
    Tcp(TcpListener),
    /// The socket, its path, and whether the socket file is ours to remove at shutdown
    /// (not when systemd passed it: it keeps listening for the next start).
    Unix(UnixListener, PathBuf, bool),
}

pub(super) enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Accepts one client: the stream, the peer for logs, the source address (TCP only).
pub(super) async fn accept(listener: &Listener) -> io::Result<(Stream, String, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
            // An IPv4-mapped IPv6 source is the IPv4 peer.
            let ip = peer.ip().to_canonical();
            Ok((Stream::Tcp(stream), peer.to_string(), Some(ip)))
        }
        Listener::Unix(l, ..) => {
            let (stream, _) = l.accept().await?;
            Ok((Stream::Unix(stream), "unix".to_owned(), None))
        }
    }
}

/// Listen backlog: the kernel caps it at `net.core.somaxconn`. Larger than tokio's default
/// so that a burst of Postfix `smtp` processes connecting at once is not dropped (a dropped
/// handshake costs the client a 1 s SYN retransmission).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (restart while old
/// connections linger in TIME_WAIT).
pub(super) fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(super) async fn remove_stale_socket(path: &Path) -> Result<(), ServerError> {
    use crate::socket_path::{SocketKind, SocketPathError, clear_stale};
    clear_stale(path, SocketKind::Stream)
        .await
        .map_err(|e| match e {
            SocketPathError::NotASocket => ServerError::SocketPathInUse {
                path: path.to_owned(),
                reason: "a file that is not a socket exists there",
            },
            SocketPathError::InUse => ServerError::SocketPathInUse {
                path: path.to_owned(),
                reason: "another process is listening on it",
            },
            SocketPathError::Remove(source) => ServerError::Bind {
                listen: format!("unix:{}", path.display()),
                source,
            },
        })
}
