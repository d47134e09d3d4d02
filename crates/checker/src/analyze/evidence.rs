//! What the analysis works on: the [`Evidence`] the checker gathered about one domain, and
//! the [`Thresholds`] it judges by.

use std::sync::Arc;
use std::time::Duration;

use mta_sts_net::dns::DnsOutcome;

use crate::probe::https::PolicyHostProbe;
use crate::probe::smtp::MxProbe;

/// Limits the analysis applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Warn when a certificate expires within this many days (default 14).
    pub cert_warn_days: i64,
    /// Warn when the policy host takes longer than this (default 5 s).
    pub slow: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cert_warn_days: 14,
            slow: Duration::from_secs(5),
        }
    }
}

/// The MX set of a domain (RFC 5321 §5.1, RFC 7505).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxSet {
    /// MX records, sorted by preference.
    Hosts(Vec<MxEntry>),
    /// `0 .`: the domain accepts no mail (RFC 7505).
    Null,
    /// No MX record but the domain has an address: it is its own MX (RFC 5321 §5.1).
    Implicit(MxEntry),
    /// No MX record and no address.
    None,
    /// The MX lookup failed.
    DnsFailure(String),
}

/// One MX host with its probe (shared between domains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxEntry {
    /// The MX RDATA name.
    pub host: String,
    /// Preference; `None` for the implicit MX.
    pub preference: Option<u16>,
    /// The probe, `None` with `--no-smtp`.
    pub probe: Option<Arc<MxProbe>>,
}

/// Whether a TLS-RPT `rua` destination can receive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuaReach {
    /// The URI.
    pub uri: String,
    /// Empty: it can; else why not (RFC 8460 §3, §5.3, §5.4).
    pub problems: Vec<RuaProblem>,
}

/// One reason a `rua` destination cannot (or may not) receive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuaProblem {
    /// What kind.
    pub kind: RuaProblemKind,
    /// The evidence.
    pub message: String,
}

/// The kinds of [`RuaProblem`], one finding id each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuaProblemKind {
    /// No MX/address for a `mailto:` domain; no address, no TCP or TLS for an `https:` host
    /// (`tlsrpt-rua-unreachable`).
    Unreachable,
    /// The `https:` host's certificate fails WebPKI validation (`tlsrpt-rua-cert-invalid`).
    Certificate,
    /// The `https:` path does not take a report POST (`tlsrpt-rua-rejects-post`).
    RejectsPost,
}

/// Everything the checker gathered about one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The domain, canonical.
    pub domain: String,
    /// TXT RRs at `_mta-sts.<domain>` (CNAMEs followed).
    pub sts: DnsOutcome<Vec<u8>>,
    /// The CNAME chain from `_mta-sts.<domain>` (empty without CNAME).
    pub sts_cname: Vec<String>,
    /// TXT RRs at the domain itself.
    pub apex: DnsOutcome<Vec<u8>>,
    /// The policy host probe, when made.
    pub policy_host: Option<PolicyHostProbe>,
    /// The MX set.
    pub mx: MxSet,
    /// TXT RRs at `_smtp._tls.<domain>`.
    pub tlsrpt: DnsOutcome<Vec<u8>>,
    /// Reachability of each `rua` URI.
    pub rua: Vec<RuaReach>,
}

/// Whether an MX answer is the null MX `0 .` (RFC 7505): the domain accepts no mail
/// ([`MxSet::Null`]).
pub fn is_null_mx(records: &[(u16, String)]) -> bool {
    records.len() == 1 && records[0].1.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_mx() {
        assert!(is_null_mx(&[(0, String::new())]));
        assert!(!is_null_mx(&[(10, "mx.example".into())]));
    }
}
