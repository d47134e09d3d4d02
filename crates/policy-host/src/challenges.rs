//! ACME state below the server: the pending challenge answers (read by the TLS resolver
//! and the HTTP-01 listener, written by the ACME manager) and where issued certificates are
//! stored (read by the table).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

use crate::config::CertPaths;

/// Pending challenge answers, shared by the TLS resolver and the HTTP-01 listener.
#[derive(Debug, Default)]
pub struct Challenges {
    tls_alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    http: RwLock<HashMap<String, String>>,
}

impl Challenges {
    /// The TLS-ALPN-01 certificate for `host`, while its challenge is pending.
    pub(crate) fn tls_alpn(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }

    /// The key authorization for an HTTP-01 `token`, while its challenge is pending.
    pub(crate) fn http(&self, token: &str) -> Option<String> {
        self.http
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    pub(crate) fn set_tls_alpn(&self, host: &str, key: Option<Arc<CertifiedKey>>) {
        let mut map = self.tls_alpn.write().unwrap_or_else(|p| p.into_inner());
        match key {
            Some(key) => map.insert(host.to_string(), key),
            None => map.remove(host),
        };
    }

    pub(crate) fn set_http(&self, token: &str, key_authorization: Option<String>) {
        let mut map = self.http.write().unwrap_or_else(|p| p.into_inner());
        match key_authorization {
            Some(value) => map.insert(token.to_string(), value),
            None => map.remove(token),
        };
    }
}

/// Where the certificate of `host` is stored: `<storage>/<host>.pem` and `<host>.key`.
pub fn stored_paths(storage: &Path, host: &str) -> CertPaths {
    CertPaths {
        cert: storage.join(format!("{host}.pem")),
        key: storage.join(format!("{host}.key")),
    }
}
