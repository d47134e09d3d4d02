//! Assembling a report [`Sender`] from settings: the outbox, the extra CA certificates, the
//! DKIM key, the DNS client and the report metadata, with the defaults both front ends share
//! (`mta-sts report send` from its flags, the daemon from `[tlsrpt.send]`).
//!
//! The defaults: `From:` is `tlsrpt@<submitter>`, `organization-name` the submitter domain,
//! `contact-info` the `From:` address (RFC 8460 §4.4 asks for a contact, §5.3 for the
//! submitter domain in `TLS-Report-Submitter`), the DKIM signing domain (`d=`) the
//! submitter domain, EHLO the submitter domain.
//!
//! Errors keep their cause and say which input failed ([`SetupError`]); each front end
//! names the input in its own words (`--ca-file`, `[resolver] ca_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_net::ConnectTo;
use mta_sts_net::dns::{Dns, DnsConfig};
use rustls::pki_types::CertificateDer;
use tlsrpt::aggregate::Submitter;

use crate::StoreError;
use crate::deliver::{DeliveryConfig, read_pem_certs};
use crate::outbox::Outbox;
use crate::send::{SendConfig, Sender};
use mta_sts_dkim::{DkimError, DkimSigner};

/// Why a [`Sender`] cannot be assembled. Each variant names the input that failed and keeps
/// its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The outbox database does not open.
    #[error("{}: {source}", path.display())]
    Outbox {
        /// The SQLite file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The CA file cannot be read.
    #[error("{}: {source}", path.display())]
    CaFileRead {
        /// The PEM file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file is not PEM certificates.
    #[error("{}: {source}", path.display())]
    CaFilePem {
        /// The PEM file.
        path: PathBuf,
        /// The parse error.
        source: std::io::Error,
    },
    /// The DKIM key file cannot be read.
    #[error("{}: {source}", path.display())]
    DkimKeyRead {
        /// The PEM file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The DKIM key is not a usable RSA or Ed25519 key.
    #[error("{}: {source}", path.display())]
    DkimKey {
        /// The PEM file.
        path: PathBuf,
        /// Why.
        source: DkimError,
    },
    /// The DNS client (system configuration or nameservers) cannot be set up.
    #[error("cannot set up DNS: {0}")]
    Dns(#[source] mta_sts_net::DnsSetupError),
}

/// The DKIM key report mail is signed with (RFC 8460 §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKeyFile {
    /// PEM file of an RSA or Ed25519 private key.
    pub key: PathBuf,
    /// Selector (`s=`).
    pub selector: String,
    /// Signing domain (`d=`); `None`: the submitter domain.
    pub domain: Option<String>,
}

/// Everything a [`Sender`] is assembled from, as the front ends read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderSettings {
    /// The submitter domain (RFC 8460 §5.3 `TLS-Report-Submitter`).
    pub submitter: String,
    /// `From:` of report mail; `None`: `tlsrpt@<submitter>`.
    pub from: Option<String>,
    /// `organization-name`; `None`: the submitter domain.
    pub organization: Option<String>,
    /// `contact-info`; `None`: the `From:` address.
    pub contact: Option<String>,
    /// DKIM signing; `None`: the relay signs.
    pub dkim: Option<DkimKeyFile>,
    /// SMTP relay `host:port` for `mailto:` report URIs.
    pub relay: Option<String>,
    /// STARTTLS with the relay.
    pub starttls: bool,
    /// Accept any certificate of `https:` report endpoints (RFC 8460 §3 allows it).
    pub insecure_https: bool,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// curl-like `--connect-to` overrides for HTTPS and the relay.
    pub connect_to: Vec<ConnectTo>,
    /// DNS servers; empty: the system configuration.
    pub nameservers: Vec<SocketAddr>,
    /// Upper bound of one DNS query and one delivery attempt.
    pub timeout: Duration,
}

impl SenderSettings {
    /// The `From:` address: the configured one or `tlsrpt@<submitter>`.
    pub fn from_address(&self) -> String {
        self.from
            .clone()
            .unwrap_or_else(|| format!("tlsrpt@{}", self.submitter))
    }

    /// Loads the files (CA certificates, DKIM key) and builds the [`SendConfig`]. Blocking
    /// file I/O.
    pub fn send_config(&self) -> Result<SendConfig, SetupError> {
        let extra_roots = match &self.ca_file {
            Some(path) => load_ca_file(path)?,
            None => Vec::new(),
        };
        let dkim = match &self.dkim {
            Some(key) => Some(Arc::new(load_dkim_key(key, &self.submitter)?)),
            None => None,
        };
        let from = self.from_address();
        Ok(SendConfig {
            submitter: Submitter {
                organization_name: self
                    .organization
                    .clone()
                    .unwrap_or_else(|| self.submitter.clone()),
                contact_info: self.contact.clone().unwrap_or_else(|| from.clone()),
                domain: self.submitter.clone(),
            },
            from,
            delivery: DeliveryConfig {
                relay: self.relay.clone(),
                relay_starttls: self.starttls,
                helo: self.submitter.clone(),
                extra_roots,
                insecure_https: self.insecure_https,
                connect_to: self.connect_to.clone(),
                timeout: self.timeout,
            },
            dkim,
        })
    }

    /// The DNS client the sender looks up `_smtp._tls` records with.
    pub fn dns(&self) -> Result<Dns, SetupError> {
        Dns::new(&DnsConfig {
            nameservers: self.nameservers.clone(),
            timeout: self.timeout,
            ..DnsConfig::default()
        })
        .map_err(SetupError::Dns)
    }

    /// The [`Sender`] over `outbox`: [`SenderSettings::send_config`] and
    /// [`SenderSettings::dns`].
    pub fn build(&self, outbox: Outbox) -> Result<Sender, SetupError> {
        let config = self.send_config()?;
        let dns = self.dns()?;
        Ok(Sender::new(outbox, dns, config))
    }
}

/// Opens the outbox database at `path`.
pub fn open_outbox(path: &Path) -> Result<Outbox, SetupError> {
    Outbox::open(path).map_err(|source| SetupError::Outbox {
        path: path.to_owned(),
        source,
    })
}

/// Reads the PEM certificates of a CA file.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = std::fs::read(path).map_err(|source| SetupError::CaFileRead {
        path: path.to_owned(),
        source,
    })?;
    read_pem_certs(&pem).map_err(|source| SetupError::CaFilePem {
        path: path.to_owned(),
        source,
    })
}

/// Loads a DKIM signing key; the signing domain defaults to `submitter`.
pub fn load_dkim_key(key: &DkimKeyFile, submitter: &str) -> Result<DkimSigner, SetupError> {
    let pem = std::fs::read(&key.key).map_err(|source| SetupError::DkimKeyRead {
        path: key.key.clone(),
        source,
    })?;
    let domain = key.domain.as_deref().unwrap_or(submitter);
    DkimSigner::from_pem(&pem, domain, &key.selector).map_err(|source| SetupError::DkimKey {
        path: key.key.clone(),
        source,
    })
}
