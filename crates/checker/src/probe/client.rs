//! The connection both HTTPS probes make ([`super::https`], the policy host, and
//! [`super::rua`], an `https:` TLS-RPT destination): TCP to the first address that accepts,
//! a TLS handshake with SNI = the target's host (the certificate is judged afterwards, see
//! [`crate::tls`]), then an HTTP/1.1 connection.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use super::{Addresses, ProbeError, ProbeErrorKind, Target, connect_any};
use crate::tls::{ProbeTls, TlsSession, is_version_error};

/// An HTTP/1.1 connection over TLS; dropping it stops the connection task.
pub(crate) struct Http1 {
    /// Sends the (one) request.
    pub sender: SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Http1 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A probe error of kind [`ProbeErrorKind::Http`].
pub(crate) fn http_error(e: hyper::Error) -> ProbeError {
    ProbeError::new(ProbeErrorKind::Http, e.to_string())
}

/// Connects to `target` (its `--connect-to` override, else `addresses`), completes the TLS
/// handshake and the HTTP/1.1 connection set-up. Where TCP connected and the TLS session
/// are written to `connected_to` and `session` as soon as known, so the probe records them
/// even when it fails or times out later.
pub(crate) async fn connect(
    tls: &ProbeTls,
    target: &Target,
    addresses: &Addresses,
    connected_to: &mut Option<SocketAddr>,
    session: &mut Option<TlsSession>,
) -> Result<Http1, ProbeError> {
    let addrs = target.socket_addrs(addresses);
    if addrs.is_empty() {
        return Err(ProbeError::new(
            ProbeErrorKind::NoAddress,
            format!("{} has no address to connect to", target.host),
        ));
    }
    let (tcp, addr) = connect_any(&addrs).await?;
    *connected_to = Some(addr);
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(target.host.clone())
        .map_err(|e| ProbeError::new(ProbeErrorKind::Tls, e.to_string()))?;
    let stream = tls
        .connector()
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            let kind = if is_version_error(&e) {
                ProbeErrorKind::TlsVersion
            } else {
                ProbeErrorKind::Tls
            };
            ProbeError::new(kind, e.to_string())
        })?;
    *session = Some(tls.describe(stream.get_ref().1, &target.host));
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Http1 { sender, driver })
}
