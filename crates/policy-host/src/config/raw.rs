//! The TOML as written: serde structs, one per table, unknown keys refused. Values whose
//! checks need the key's name or other keys are kept [`Spanned`] and checked when the
//! configuration is built.

use std::path::PathBuf;

use mta_sts_config::{HumanDuration, Nameserver, StoreLocation};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) listen: Option<Spanned<toml::Value>>,
    pub(super) cert_dir: Option<PathBuf>,
    pub(super) cert: Option<Spanned<PathBuf>>,
    pub(super) key: Option<Spanned<PathBuf>>,
    pub(super) nameservers: Option<Vec<Nameserver>>,
    pub(super) watch_interval: Option<Spanned<HumanDuration>>,
    pub(super) cache_control: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) domain: Vec<Spanned<RawDomain>>,
    pub(super) default: Option<Spanned<RawDefault>>,
    pub(super) acme: Option<Spanned<RawAcme>>,
    pub(super) tlsrpt: Option<Spanned<RawTlsRpt>>,
    pub(super) limits: Option<Spanned<RawLimits>>,
    pub(super) web: Option<Spanned<RawWeb>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomain {
    pub(super) name: Spanned<String>,
    pub(super) policy_file: Option<Spanned<PathBuf>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) mx: Option<Spanned<toml::Value>>,
    pub(super) max_age: Option<Spanned<i64>>,
    pub(super) cert: Option<Spanned<PathBuf>>,
    pub(super) key: Option<Spanned<PathBuf>>,
    pub(super) rua: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefault {
    pub(super) mode: Option<Spanned<String>>,
    pub(super) mx: Option<Spanned<toml::Value>>,
    pub(super) max_age: Option<Spanned<i64>>,
    pub(super) rua: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) domains: Vec<Spanned<String>>,
    pub(super) domains_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub(super) directory: Option<String>,
    #[serde(default)]
    pub(super) contact: Vec<String>,
    pub(super) storage: Option<PathBuf>,
    pub(super) challenge: Option<Spanned<String>>,
    pub(super) http_listen: Option<Spanned<String>>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) check_interval: Option<Spanned<HumanDuration>>,
    pub(super) renew_after: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsRpt {
    pub(super) intake_path: Option<Spanned<String>>,
    pub(super) store: Option<Spanned<StoreLocation>>,
    pub(super) spool_dir: Option<PathBuf>,
    pub(super) drain_interval: Option<Spanned<HumanDuration>>,
    pub(super) max_body: Option<Spanned<i64>>,
    pub(super) max_report: Option<Spanned<i64>>,
    pub(super) max_concurrent: Option<Spanned<i64>>,
    pub(super) max_inflight: Option<Spanned<i64>>,
    pub(super) accept_foreign: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) handshake_timeout: Option<Spanned<HumanDuration>>,
    pub(super) header_read_timeout: Option<Spanned<HumanDuration>>,
    pub(super) idle_timeout: Option<Spanned<HumanDuration>>,
    pub(super) max_header_bytes: Option<Spanned<i64>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) body_timeout: Option<Spanned<HumanDuration>>,
    pub(super) max_streams: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) users: Option<Spanned<PathBuf>>,
    pub(super) check: Option<bool>,
}
