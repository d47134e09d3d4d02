//! What `--check-config` checks of `[tlsrpt]` beyond parsing.

use mta_sts_report_store::sending::{load_ca_file, load_dkim_key};

use super::error::TlsrptError;
use super::schedule::dkim_key_file;
use crate::config::{ResolverConfig, TlsrptConfig};

/// The checks `--check-config` adds to parsing for `[tlsrpt]`: the DKIM key and the CA
/// file load, the parent directories of `events` and `socket` exist. Nothing is created.
pub fn check_files(config: &TlsrptConfig, resolver: &ResolverConfig) -> Result<(), TlsrptError> {
    for (key, path) in [("events", &config.events), ("socket", &config.socket)] {
        if let Some(parent) = path
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(TlsrptError::MissingDirectory {
                key,
                dir: parent.to_owned(),
            });
        }
    }
    if let Some(send) = &config.send {
        if let Some(key) = dkim_key_file(send) {
            load_dkim_key(&key, &send.submitter).map_err(TlsrptError::Send)?;
        }
        if let Some(path) = &resolver.ca_file {
            load_ca_file(path).map_err(TlsrptError::CaFile)?;
        }
    }
    Ok(())
}
