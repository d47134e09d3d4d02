//! The policy host's listening sockets: the HTTPS ones of `listen` and the HTTP-01 one of
//! `[acme] http_listen`, bound here or passed by systemd (socket activation,
//! `mta_sts_net::activation`).

use std::io;
use std::net::SocketAddr;

use mta_sts_net::activation::{Inherited, InheritedListener, Role};
use tokio::net::TcpListener;

use crate::config::ServeConfig;

/// Why a listener cannot serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// A listening socket could not be opened.
    #[error(
        "cannot listen on {addr}: {source} (is another server using the port, or does it need root?)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A socket systemd passed cannot serve.
    #[error(
        "descriptor {fd} ({role}) passed by systemd, {listen}: {message}; use ListenStream=ADDRESS:PORT in the .socket unit"
    )]
    Inherited {
        /// The descriptor number.
        fd: i32,
        /// `https` or `http`.
        role: &'static str,
        /// What it listens on.
        listen: String,
        /// Why it cannot serve.
        message: String,
    },
}

/// The names of the policy host's listeners in `$LISTEN_FDNAMES` (a `.socket` unit's
/// `FileDescriptorName=`): `https` (any number: they replace `listen`) and `http` (the
/// HTTP-01 listener, replacing `[acme] http_listen`). Without names the first descriptor
/// is the HTTPS listener, the second the HTTP-01 one.
pub const ACTIVATION_ROLES: [Role; 2] = [Role::many("https"), Role::one("http")];

/// Binds the HTTPS listeners of `config`, and the HTTP-01 one when ACME uses HTTP-01, or
/// takes those systemd passed in `inherited`.
pub(crate) async fn bind(
    config: &ServeConfig,
    inherited: &mut Inherited,
) -> Result<(Vec<TcpListener>, Option<TcpListener>), ListenError> {
    let bind_one = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })
    };
    let mut listeners = Vec::new();
    let passed = inherited.take_all(ACTIVATION_ROLES[0].name);
    if passed.is_empty() {
        for addr in &config.listen {
            listeners.push(bind_one(*addr).await?);
        }
    }
    for (fd, listener) in passed {
        listeners.push(inherited_tcp(fd, "https", listener)?);
    }
    let passed_http = inherited.take(ACTIVATION_ROLES[1].name);
    let http01 = match &config.acme {
        Some(acme) if acme.challenge == crate::config::ChallengeKind::Http01 => match passed_http {
            Some((fd, listener)) => Some(inherited_tcp(fd, "http", listener)?),
            None => Some(bind_one(acme.http_listen).await?),
        },
        _ => {
            if let Some((fd, listener)) = passed_http {
                tracing::warn!(fd, listen = %listener, "the `http` socket passed by systemd is unused: [acme] challenge is not http-01; closed");
            }
            None
        }
    };
    Ok((listeners, http01))
}

/// A TCP listener systemd passed, for tokio.
fn inherited_tcp(
    fd: i32,
    role: &'static str,
    listener: InheritedListener,
) -> Result<TcpListener, ListenError> {
    let listen = listener.to_string();
    let error = |message: String| ListenError::Inherited {
        fd,
        role,
        listen: listen.clone(),
        message,
    };
    match listener {
        InheritedListener::Tcp(l) => {
            let l = TcpListener::from_std(l).map_err(|e| error(e.to_string()))?;
            tracing::info!(fd, role, listen = %listen, "listener passed by systemd (socket activation)");
            Ok(l)
        }
        InheritedListener::Unix(_) => Err(error(
            "a UNIX socket; the policy host serves over TCP only".to_owned(),
        )),
    }
}
