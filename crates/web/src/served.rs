//! What a policy host serves, for the domain pages of the domains it is configured for
//! (`mta-sts web --serve-config FILE`, and the `[web]` dashboard of `mta-sts serve`): the
//! DNS records to publish for each domain (RFC 8461 §3.1 `_mta-sts`, RFC 8460 §3
//! `_smtp._tls`), as `mta-sts serve --print-records` prints them. The caller (the CLI)
//! computes them with the policy host's code, through a [`ServedSource`] asked at each
//! page (so a policy host's dashboard follows its reloads); this module only carries them
//! to the page and its JSON. [`ServedDomains`] is a fixed set. Drift comes with the diagnosis ([`crate::diagnose`]): the caller's
//! [`crate::Diagnose`] adds it for configured domains.

use std::collections::BTreeMap;

use serde::Serialize;

/// One TXT record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServedTxt {
    /// Owner name, fully qualified, with the trailing dot.
    pub name: String,
    /// The value (the strings of the RR concatenated).
    pub value: String,
}

/// The records to publish for one configured domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServedRecords {
    /// The policy host, `mta-sts.<domain>`.
    pub policy_host: String,
    /// The policy id derived from the served policy's content.
    pub id: String,
    /// `_mta-sts.<domain>.` TXT.
    pub sts: ServedTxt,
    /// `_smtp._tls.<domain>.` TXT, when the domain has a `rua`.
    pub tlsrpt: Option<ServedTxt>,
    /// The zone-file text `mta-sts serve --print-records` prints for the domain.
    pub text: String,
}

/// The configured domains of a serve configuration, by policy domain (lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedDomains {
    config: Option<String>,
    domains: BTreeMap<String, ServedRecords>,
}

impl ServedDomains {
    /// No domains, from the configuration file named `config` (shown on the pages).
    pub fn new(config: impl Into<String>) -> ServedDomains {
        ServedDomains {
            config: Some(config.into()),
            domains: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the records of `domain`.
    pub fn insert(&mut self, domain: &str, records: ServedRecords) {
        self.domains.insert(domain.to_ascii_lowercase(), records);
    }

    /// The records of `domain`, if it is configured.
    pub fn get(&self, domain: &str) -> Option<&ServedRecords> {
        self.domains.get(&domain.to_ascii_lowercase())
    }

    /// The configuration file, if any was given.
    pub fn config(&self) -> Option<&str> {
        self.config.as_deref()
    }

    /// How many domains are configured.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether no domain is configured.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

/// Where the domain pages get the records of configured domains from.
pub trait ServedSource: Send + Sync + std::fmt::Debug {
    /// The records to publish for `domain` (lower case), `None` when it is not configured.
    fn records(&self, domain: &str) -> Option<ServedRecords>;
    /// The serve configuration file, shown on the pages.
    fn config(&self) -> Option<String>;
}

impl ServedSource for ServedDomains {
    fn records(&self, domain: &str) -> Option<ServedRecords> {
        self.get(domain).cloned()
    }

    fn config(&self) -> Option<String> {
        self.config.clone()
    }
}

/// The `served` member of a domain page's JSON.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServedJson {
    /// The serve configuration the domain is configured in.
    pub(crate) config: String,
    /// What to publish.
    #[serde(flatten)]
    pub(crate) records: ServedRecords,
}
