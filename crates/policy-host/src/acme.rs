//! Automatic certificates (ACME, RFC 8555) for `mta-sts.<domain>` hosts.
//!
//! Challenges: TLS-ALPN-01 (RFC 8737), answered on the HTTPS listener itself when a
//! client offers only the `acme-tls/1` ALPN protocol, or HTTP-01 (RFC 8555 §8.3), answered
//! on a plain HTTP listener. Certificates and the account key are kept in the storage
//! directory; a certificate is renewed once `renew_after` (default 2/3) of its lifetime has
//! passed, and the new one is swapped in by a table reload, without a restart.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use mta_sts_net::clock::Clock;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::challenges::{Challenges, stored_paths};
use crate::config::{AcmeConfig, ChallengeKind};
use crate::table::{CertSource, HostEntry, Table};
use mta_sts_net::with_causes;

/// What the ACME manager and the HTTP-01 listener need of the running server (which
/// implements it), so that this module stays below the server.
pub(crate) trait AcmeHost: Send + Sync + 'static {
    /// The current table, swapped on reload.
    fn table(&self) -> &Arc<ArcSwap<Table>>;
    /// The pending challenge answers.
    fn challenges(&self) -> &Arc<Challenges>;
    /// Changes to `true` at shutdown.
    fn shutdown(&self) -> watch::Receiver<bool>;
    /// The clock renewals are timed by.
    fn clock(&self) -> &dyn Clock;
    /// Why a reload was refused (the server's own error type, which lives above this
    /// module).
    type ReloadError: std::error::Error + Send + Sync + 'static;
    /// Rebuilds the table (after a certificate was stored).
    fn reload(&self) -> impl Future<Output = Result<(), Self::ReloadError>> + Send;
}

/// Why the ACME account could not be had, or a certificate could not be ordered or stored.
/// Each names the step and keeps the cause as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// A directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key, certificate or account file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `ca_file` could not be used as the ACME server's root.
    #[error("cannot use ca_file {}: {source}", path.display())]
    CaFile {
        /// The `ca_file`.
        path: PathBuf,
        /// Why.
        #[source]
        source: instant_acme::Error,
    },
    /// The HTTP client for the ACME server could not be built.
    #[error("cannot build the ACME HTTP client: {0}")]
    Client(#[source] instant_acme::Error),
    /// The stored account file is not an account.
    #[error(
        "{} is not an ACME account file: {source}; move it away to register a new account",
        path.display()
    )]
    AccountFile {
        /// The account file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The stored account could not be restored at the ACME server.
    #[error("cannot restore the ACME account: {0}")]
    Restore(#[source] instant_acme::Error),
    /// A new account could not be registered (RFC 8555 §7.3).
    #[error("cannot register an ACME account at {directory}: {source}")]
    Register {
        /// The ACME directory URL.
        directory: String,
        /// Why.
        #[source]
        source: instant_acme::Error,
    },
    /// The new account's credentials could not be serialized.
    #[error("cannot serialize the account: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A step of an order failed at the ACME server (RFC 8555 §7.4, §7.5).
    #[error("{step}: {source}")]
    Order {
        /// The step: `new order`, `authorization`, `challenge ready`, `waiting for
        /// validation`, `finalize`, `certificate`.
        step: &'static str,
        /// The ACME client's error (a problem document from the server, HTTP, …).
        #[source]
        source: instant_acme::Error,
    },
    /// An authorization is neither pending nor valid (RFC 8555 §7.1.6).
    #[error("authorization is {0:?}")]
    Authorization(AuthorizationStatus),
    /// The ACME server offers no challenge of the configured kind.
    #[error("the ACME server offers no {0:?} challenge")]
    NoChallenge(ChallengeType),
    /// Validation failed: the order did not become ready (RFC 8555 §7.1.6).
    #[error("the order is {0:?}, not ready (validation failed)")]
    NotReady(OrderStatus),
    /// A key, a challenge certificate or the CSR could not be made.
    #[error("{what}: {source}")]
    Generate {
        /// What: `key`, `challenge certificate`, `CSR`.
        what: &'static str,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// The TLS-ALPN-01 challenge key is not usable by rustls (RFC 8737 §3).
    #[error("challenge key: {0}")]
    ChallengeKey(#[source] rustls::Error),
    /// The issued chain is not PEM.
    #[error("the issued chain is not PEM: {0}")]
    ChainPem(#[source] rustls_pki_types::pem::Error),
    /// The issued chain does not parse or does not match its key.
    #[error(transparent)]
    Chain(#[from] crate::cert::ChainError),
    /// The issued certificate does not cover the host asked for.
    #[error("the issued certificate does not cover {0}")]
    NotCovering(String),
}

/// The HTTP-01 path prefix (RFC 8555 §8.3).
const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Serves HTTP-01 key authorizations on a plain HTTP listener; everything else is 404
/// (never a redirect: this listener exists for the ACME server only).
pub(crate) async fn http01_loop<H: AcmeHost>(shared: Arc<H>, listener: TcpListener) {
    let mut shutdown = shared.shutdown();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let challenges = shared.challenges().clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = req
                        .uri()
                        .path()
                        .strip_prefix(HTTP01_PREFIX)
                        .and_then(|token| challenges.http(token));
                    async move {
                        let response = match answer {
                            Some(key_authorization) => {
                                Response::new(Full::new(Bytes::from(key_authorization)))
                            }
                            None => {
                                let mut r =
                                    Response::new(Full::new(Bytes::from_static(b"not found\n")));
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Whether `entry` needs a certificate from ACME now.
fn due(entry: &HostEntry, renew_after: f64, now: SystemTime) -> bool {
    match &entry.cert_source {
        CertSource::AcmePending => true,
        CertSource::Acme(_) => renewal_time(entry, renew_after).is_none_or(|t| t <= now),
        _ => false,
    }
}

/// When the certificate of `entry` should be renewed: `renew_after` of its lifetime.
fn renewal_time(entry: &HostEntry, renew_after: f64) -> Option<SystemTime> {
    let (not_before, not_after) = entry.cert_validity?;
    let lifetime = not_after.duration_since(not_before).ok()?;
    Some(not_before + lifetime.mul_f64(renew_after))
}

/// The ACME manager: orders certificates for hosts that have none (or whose certificate is
/// due for renewal), then reloads the table so they are served. Runs until shutdown; idles
/// while the configuration has no `[acme]`.
pub(crate) async fn run<H: AcmeHost>(shared: Arc<H>) {
    let mut shutdown = shared.shutdown();
    let mut account: Option<(String, Account)> = None;
    let mut failures: u32 = 0;
    loop {
        let table = shared.table().load_full();
        let wait = match table.config().acme.clone() {
            None => Duration::from_secs(60),
            Some(acme) => {
                let now = shared.clock().system_time();
                let hosts: Vec<String> = table
                    .hosts()
                    .filter(|e| due(e, acme.renew_after, now))
                    .map(|e| e.host.clone())
                    .collect();
                let mut ok = true;
                if !hosts.is_empty() {
                    match ensure_account(&mut account, &acme).await {
                        Ok(acct) => {
                            let mut issued = false;
                            for host in &hosts {
                                match issue(&acct, &acme, shared.challenges(), host).await {
                                    Ok(()) => {
                                        tracing::info!(host = %host, "ACME certificate issued and stored");
                                        issued = true;
                                    }
                                    Err(e) => {
                                        ok = false;
                                        tracing::error!(host = %host, error = %with_causes(&e), "ACME order failed; will retry");
                                    }
                                }
                            }
                            if issued && let Err(e) = shared.reload().await {
                                tracing::error!(error = %with_causes(&e), "reload after ACME issuance refused; the new certificate is on disk and will be used once the configuration loads");
                            }
                        }
                        Err(e) => {
                            ok = false;
                            tracing::error!(error = %with_causes(&e), directory = %acme.directory, "ACME account unavailable; will retry");
                        }
                    }
                }
                if ok {
                    failures = 0;
                    // Sleep until the next renewal is due, at most `check_interval`.
                    let table = shared.table().load_full();
                    let now = shared.clock().system_time();
                    let next = table
                        .hosts()
                        .filter_map(|e| renewal_time(e, acme.renew_after))
                        .filter_map(|t| t.duration_since(now).ok())
                        .min()
                        .unwrap_or(acme.check_interval);
                    next.min(acme.check_interval).max(Duration::from_secs(1))
                } else {
                    failures = failures.saturating_add(1);
                    // 2 s, 4 s, … up to the check interval: a broken CA is not hammered.
                    Duration::from_secs(1u64 << failures.min(16)).min(acme.check_interval)
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Loads the stored account for the configured directory, or registers a new one.
async fn ensure_account(
    cached: &mut Option<(String, Account)>,
    acme: &AcmeConfig,
) -> Result<Account, AcmeError> {
    let key = format!("{}|{:?}", acme.directory, acme.ca_file);
    if let Some((k, account)) = cached
        && *k == key
    {
        return Ok(account.clone());
    }
    std::fs::create_dir_all(&acme.storage).map_err(|source| AcmeError::CreateDir {
        path: acme.storage.clone(),
        source,
    })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, acme.directory.as_bytes());
    let file = acme.storage.join(format!(
        "account-{}.json",
        &crate::id::hex(digest.as_ref())[..16]
    ));
    let builder = || match &acme.ca_file {
        Some(ca) => Account::builder_with_root(ca).map_err(|source| AcmeError::CaFile {
            path: ca.clone(),
            source,
        }),
        None => Account::builder().map_err(AcmeError::Client),
    };
    let account = match std::fs::read(&file) {
        Ok(bytes) => {
            let credentials: AccountCredentials =
                serde_json::from_slice(&bytes).map_err(|source| AcmeError::AccountFile {
                    path: file.clone(),
                    source,
                })?;
            builder()?
                .from_credentials(credentials)
                .await
                .map_err(AcmeError::Restore)?
        }
        Err(_) => {
            let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
            let (account, credentials) = builder()?
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    acme.directory.clone(),
                    None,
                )
                .await
                .map_err(|source| AcmeError::Register {
                    directory: acme.directory.clone(),
                    source,
                })?;
            let json = serde_json::to_vec_pretty(&credentials).map_err(AcmeError::Serialize)?;
            write_private(&file, &json)?;
            tracing::info!(directory = %acme.directory, id = %account.id(), "ACME account registered");
            account
        }
    };
    *cached = Some((key, account.clone()));
    Ok(account)
}

/// Orders, validates and stores a certificate for `host`.
async fn issue(
    account: &Account,
    acme: &AcmeConfig,
    challenges: &Challenges,
    host: &str,
) -> Result<(), AcmeError> {
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(order_step("new order"))?;
    let mut answered = Answered::default();
    let result = async {
        authorize(&mut order, acme, challenges, host, &mut answered).await?;
        finalize_and_store(&mut order, acme, host).await
    }
    .await;
    // The challenge answers are withdrawn whatever happened.
    if answered.tls_alpn {
        challenges.set_tls_alpn(host, None);
    }
    for token in answered.http_tokens {
        challenges.set_http(&token, None);
    }
    result
}

/// Challenge answers put up for an order, to withdraw afterwards.
#[derive(Default)]
struct Answered {
    /// A TLS-ALPN-01 certificate for the host.
    tls_alpn: bool,
    /// HTTP-01 tokens.
    http_tokens: Vec<String>,
}

/// An `instant_acme` error of an order step, named.
fn order_step(step: &'static str) -> impl Fn(instant_acme::Error) -> AcmeError {
    move |source| AcmeError::Order { step, source }
}

/// Answers the configured challenge of every pending authorization of `order` (RFC 8555
/// §7.5.1) and tells the ACME server it is ready.
async fn authorize(
    order: &mut instant_acme::Order,
    acme: &AcmeConfig,
    challenges: &Challenges,
    host: &str,
    answered: &mut Answered,
) -> Result<(), AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(order_step("authorization"))?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        if authz.status != AuthorizationStatus::Pending {
            return Err(AcmeError::Authorization(authz.status));
        }
        let kind = match acme.challenge {
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            ChallengeKind::Http01 => ChallengeType::Http01,
        };
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or(AcmeError::NoChallenge(kind))?;
        let key_authorization = challenge.key_authorization();
        match acme.challenge {
            ChallengeKind::TlsAlpn01 => {
                let certified = tls_alpn_certificate(host, key_authorization.digest().as_ref())?;
                challenges.set_tls_alpn(host, Some(Arc::new(certified)));
                answered.tls_alpn = true;
            }
            ChallengeKind::Http01 => {
                challenges.set_http(
                    &challenge.token,
                    Some(key_authorization.as_str().to_string()),
                );
                answered.http_tokens.push(challenge.token.clone());
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(order_step("challenge ready"))?;
    }
    Ok(())
}

/// RFC 8737 §3: a self-signed certificate for `host` with the acmeIdentifier extension
/// holding `digest`, SHA-256(key authorization).
fn tls_alpn_certificate(host: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let generate = |what| move |source| AcmeError::Generate { what, source };
    let mut params = CertificateParams::new(vec![host.to_string()])
        .map_err(generate("challenge certificate"))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(generate("key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(generate("challenge certificate"))?;
    // Not through `tls::from_der`: webpki (rightly) refuses to parse a certificate with the
    // critical acmeIdentifier extension, and this one only ever goes to the ACME server's
    // validator.
    let signing = rustls::crypto::ring::sign::any_supported_type(
        &rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .map_err(AcmeError::ChallengeKey)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Waits for validation, sends the CSR (RFC 8555 §7.4), checks the issued chain against
/// the new key and the host, and stores both.
async fn finalize_and_store(
    order: &mut instant_acme::Order,
    acme: &AcmeConfig,
    host: &str,
) -> Result<(), AcmeError> {
    let generate = |what| move |source| AcmeError::Generate { what, source };
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(order_step("waiting for validation"))?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::NotReady(status));
    }
    let key = KeyPair::generate().map_err(generate("key"))?;
    let mut params = CertificateParams::new(vec![host.to_string()]).map_err(generate("CSR"))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(generate("CSR"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(order_step("finalize"))?;
    let chain = order
        .poll_certificate(&retry)
        .await
        .map_err(order_step("certificate"))?;
    // Check before storing: the chain must parse, match the key and cover the host.
    let key_pem = key.serialize_pem();
    let paths = stored_paths(&acme.storage, host);
    let chain_der: Vec<rustls_pki_types::CertificateDer<'static>> = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(AcmeError::ChainPem)?
    };
    let loaded = crate::cert::from_der(
        chain_der,
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )?;
    if !loaded.covers(host) {
        return Err(AcmeError::NotCovering(host.to_string()));
    }
    // Key first, then chain: the table loads a host's certificate only when both exist
    // and match, so a crash in between leaves the old pair or a mismatch it rejects.
    write_private(&paths.key, key_pem.as_bytes())?;
    write_private(&paths.cert, chain.as_bytes())?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename), mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| AcmeError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        AcmeError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}
