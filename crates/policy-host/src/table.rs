//! The routing table: for each policy host, the pre-rendered policy and the certificate.
//!
//! A [`Table`] is built from a [`ServeConfig`] in one go (reading certificates, looking up
//! MX records for `mx = "auto"`) and then never changes; a reload builds a new one and
//! swaps it in atomically, so a request sees either the old or the new table, never a mix,
//! and a broken config never replaces a working one. The policy body of each host is
//! rendered here, so serving a request does no formatting work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use mta_sts::{Domain, Policy};
use mta_sts_net::clock::{Clock, SystemClock};
use rustls::sign::CertifiedKey;

pub use crate::cert::{CertError, ChainError};
use crate::cert::{LoadedCert, load_pem};
use crate::config::{CertPaths, DomainConfig, MxSource, ServeConfig};
use crate::id::policy_id;
pub use crate::mx_auto::MxError;
use crate::records::{Records, records};

/// Where a host's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `cert`/`key` of its `[[domain]]` table.
    Domain(CertPaths),
    /// Found in `cert_dir`.
    CertDir(CertPaths),
    /// The top-level `cert`/`key`, which covers this host.
    Shared(CertPaths),
    /// Issued by ACME and kept in the ACME storage directory.
    Acme(CertPaths),
    /// None yet: ACME will issue one; until then handshakes for this host are aborted.
    AcmePending,
}

/// One policy host.
#[derive(Debug)]
pub struct HostEntry {
    /// The policy domain.
    pub domain: Domain,
    /// `mta-sts.<domain>`.
    pub host: String,
    /// The policy served.
    pub policy: Policy,
    /// Its derived id (for the `_mta-sts` TXT record).
    pub id: String,
    /// The canonical body (CRLF), ready to send.
    pub body: Bytes,
    /// `rua` for the `_smtp._tls` record.
    pub rua: Option<String>,
    /// The certificate presented for `host`, if any.
    pub cert: Option<Arc<CertifiedKey>>,
    /// Where it came from.
    pub cert_source: CertSource,
    /// When the certificate was issued and expires (for ACME renewal and warnings).
    pub cert_validity: Option<(SystemTime, SystemTime)>,
}

impl HostEntry {
    /// The DNS records to publish for this domain.
    pub fn records(&self) -> Records {
        records(&self.domain, &self.policy, self.rua.as_deref())
    }
}

/// Why a table could not be built from a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// A configured certificate could not be loaded or does not fit.
    #[error("certificate for {host}: {message}")]
    Cert {
        /// The policy host.
        host: String,
        /// What is wrong, with the fix.
        message: String,
    },
    /// A configured certificate or its key could not be loaded.
    #[error("certificate for {host}: {source}")]
    CertFile {
        /// The policy host.
        host: String,
        /// Why it could not be loaded.
        #[source]
        source: CertError,
    },
    /// No certificate source covers a host and ACME is off.
    #[error(
        "no certificate for {host} (domain configured at {origin}): set cert/key in its [[domain]] table, put {host}.pem and {host}.key in cert_dir, give a top-level cert covering it, or enable [acme]"
    )]
    NoCert {
        /// The policy host.
        host: String,
        /// Where the domain is configured.
        origin: String,
    },
    /// `mx = "auto"` failed.
    #[error("mx = \"auto\" for {domain} (configured at {origin}): {source}")]
    Mx {
        /// The domain.
        domain: String,
        /// Where it is configured.
        origin: String,
        /// What went wrong (boxed: resolver errors are large).
        #[source]
        source: Box<MxError>,
    },
    /// The generated policy is not valid (a bug or an impossible configuration).
    #[error("the policy for {domain} is not valid: {message}")]
    Policy {
        /// The domain.
        domain: String,
        /// The first error.
        message: String,
    },
}

/// Everything served, by policy host name.
#[derive(Debug)]
pub struct Table {
    config: Arc<ServeConfig>,
    hosts: HashMap<String, Arc<HostEntry>>,
    order: Vec<String>,
    files: Vec<PathBuf>,
}

impl Table {
    /// Builds the table for `config`: renders every policy, loads every certificate, looks
    /// up MX records for `mx = "auto"`.
    pub async fn build(config: Arc<ServeConfig>) -> Result<Table, TableError> {
        Table::build_with_clock(config, &SystemClock).await
    }

    /// [`Table::build`], telling expired certificates by `clock` instead of the system
    /// clock (tests move time).
    pub async fn build_with_clock(
        config: Arc<ServeConfig>,
        clock: &dyn Clock,
    ) -> Result<Table, TableError> {
        let mut resolver = None;
        let mut loaded: HashMap<CertPaths, LoadedCert> = HashMap::new();
        let mut files: Vec<PathBuf> = Vec::new();
        let mut hosts = HashMap::new();
        let mut order = Vec::new();
        let shared = match &config.shared_cert {
            Some(paths) => {
                let cert =
                    load_pem(&paths.cert, &paths.key).map_err(|source| TableError::CertFile {
                        host: "the top-level cert".to_string(),
                        source,
                    })?;
                files.extend([paths.cert.clone(), paths.key.clone()]);
                Some((paths.clone(), cert))
            }
            None => None,
        };
        for domain in &config.domains {
            let host = domain.policy_host();
            let mx = match &domain.mx {
                MxSource::List(list) => list.clone(),
                MxSource::Auto => {
                    if resolver.is_none() {
                        resolver = Some(crate::mx_auto::resolver(&config.nameservers).map_err(
                            |source| TableError::Mx {
                                domain: domain.name.to_string(),
                                origin: domain.origin.clone(),
                                source: Box::new(source),
                            },
                        )?);
                    }
                    let Some(r) = resolver.as_ref() else {
                        continue;
                    };
                    crate::mx_auto::lookup(r, &domain.name)
                        .await
                        .map_err(|source| TableError::Mx {
                            domain: domain.name.to_string(),
                            origin: domain.origin.clone(),
                            source: Box::new(source),
                        })?
                }
            };
            let policy = domain.policy_with(mx);
            let body = policy.to_string();
            // The body must be exactly valid (RFC 8461 §3.2 ABNF), not merely usable.
            let lint = mta_sts::policy::lint(body.as_bytes());
            if !lint.is_strict_valid() {
                let message = lint
                    .diagnostics
                    .first()
                    .map_or_else(|| "invalid".to_string(), |d| d.message.clone());
                return Err(TableError::Policy {
                    domain: domain.name.to_string(),
                    message,
                });
            }
            let (source, cert) = find_cert(
                &config,
                domain,
                &host,
                shared.as_ref(),
                &mut loaded,
                &mut files,
            )?;
            if let Some(c) = &cert
                && let Some(not_after) = c.not_after
                && not_after < clock.system_time()
            {
                tracing::warn!(host = %host, "the certificate has expired; senders will refuse the policy (RFC 8461 §3.3)");
            }
            let entry = HostEntry {
                domain: domain.name.clone(),
                host: host.clone(),
                id: policy_id(&policy),
                body: Bytes::from(body),
                policy,
                rua: domain.rua.clone(),
                cert_validity: cert.as_ref().and_then(|c| c.not_before.zip(c.not_after)),
                cert: cert.map(|c| c.key),
                cert_source: source,
            };
            order.push(host.clone());
            hosts.insert(host, Arc::new(entry));
        }
        files.sort();
        files.dedup();
        Ok(Table {
            config,
            hosts,
            order,
            files,
        })
    }

    /// The configuration the table was built from.
    pub fn config(&self) -> &Arc<ServeConfig> {
        &self.config
    }

    /// The entry for a policy host name (lower case, no trailing dot).
    pub fn host(&self, name: &str) -> Option<&Arc<HostEntry>> {
        self.hosts.get(name)
    }

    /// Every entry, in configuration order.
    pub fn hosts(&self) -> impl Iterator<Item = &Arc<HostEntry>> + '_ {
        self.order.iter().filter_map(|h| self.hosts.get(h))
    }

    /// The DNS records to publish, one [`Records`] per domain, in configuration order.
    pub fn records(&self) -> Vec<Records> {
        self.hosts().map(|e| e.records()).collect()
    }

    /// Certificate and key files in use (watched for changes).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// The certificate of `host`: the domain's own, then `cert_dir`, then the shared one if it
/// covers the host, then ACME's stored one; with ACME on, none yet is allowed.
fn find_cert(
    config: &ServeConfig,
    domain: &DomainConfig,
    host: &str,
    shared: Option<&(CertPaths, LoadedCert)>,
    loaded: &mut HashMap<CertPaths, LoadedCert>,
    files: &mut Vec<PathBuf>,
) -> Result<(CertSource, Option<LoadedCert>), TableError> {
    let file_err = |source: CertError| TableError::CertFile {
        host: host.to_string(),
        source,
    };
    let cert_err = |message: String| TableError::Cert {
        host: host.to_string(),
        message,
    };
    let mut load = |paths: &CertPaths, files: &mut Vec<PathBuf>| -> Result<LoadedCert, CertError> {
        files.extend([paths.cert.clone(), paths.key.clone()]);
        if let Some(c) = loaded.get(paths) {
            return Ok(c.clone());
        }
        let c = load_pem(&paths.cert, &paths.key)?;
        loaded.insert(paths.clone(), c.clone());
        Ok(c)
    };
    if let Some(paths) = &domain.cert {
        let c = load(paths, files).map_err(file_err)?;
        if !c.covers(host) {
            return Err(cert_err(format!(
                "{} is valid for {} but not for {host}; RFC 8461 §3.3 requires a certificate for the policy host",
                paths.cert.display(),
                c.names.join(", ")
            )));
        }
        return Ok((CertSource::Domain(paths.clone()), Some(c)));
    }
    if let Some(dir) = &config.cert_dir
        && let Some(paths) = in_dir(dir, host)
    {
        let c = load(&paths, files).map_err(file_err)?;
        if !c.covers(host) {
            return Err(cert_err(format!(
                "{} is valid for {} but not for {host}",
                paths.cert.display(),
                c.names.join(", ")
            )));
        }
        return Ok((CertSource::CertDir(paths), Some(c)));
    }
    if let Some((paths, c)) = shared
        && c.covers(host)
    {
        return Ok((CertSource::Shared(paths.clone()), Some(c.clone())));
    }
    if let Some(acme) = &config.acme {
        let paths = crate::challenges::stored_paths(&acme.storage, host);
        if paths.cert.exists() && paths.key.exists() {
            match load(&paths, files) {
                Ok(c) if c.covers(host) => return Ok((CertSource::Acme(paths), Some(c))),
                Ok(_) => {
                    tracing::warn!(host, path = %paths.cert.display(), "stored ACME certificate does not cover the host; a new one will be ordered")
                }
                Err(e) => {
                    tracing::warn!(host, error = %e, "stored ACME certificate unusable; a new one will be ordered")
                }
            }
        } else {
            // Watch the files ACME will create, so a certificate written by another process
            // (or restored from backup) is picked up too.
            files.extend([paths.cert.clone(), paths.key.clone()]);
        }
        return Ok((CertSource::AcmePending, None));
    }
    Err(TableError::NoCert {
        host: host.to_string(),
        origin: domain.origin.clone(),
    })
}

/// `<dir>/<host>.pem` + `<dir>/<host>.key`, or certbot's `<dir>/<host>/fullchain.pem` +
/// `privkey.pem`.
fn in_dir(dir: &Path, host: &str) -> Option<CertPaths> {
    let flat = CertPaths {
        cert: dir.join(format!("{host}.pem")),
        key: dir.join(format!("{host}.key")),
    };
    if flat.cert.is_file() && flat.key.is_file() {
        return Some(flat);
    }
    let nested = CertPaths {
        cert: dir.join(host).join("fullchain.pem"),
        key: dir.join(host).join("privkey.pem"),
    };
    if nested.cert.is_file() && nested.key.is_file() {
        return Some(nested);
    }
    None
}
