//! The DNS records a domain publishes for MTA-STS and TLS-RPT, in zone-file syntax.
//!
//! - `_mta-sts.<domain>. IN TXT "v=STSv1; id=<id>;"` (RFC 8461 §3.1), the id derived from
//!   the policy content ([`crate::id`]);
//! - `_smtp._tls.<domain>. IN TXT "v=TLSRPTv1; rua=<uris>"` (RFC 8460 §3) when report
//!   addresses are given;
//! - a comment saying that `mta-sts.<domain>` (RFC 8461 §3.2) must point at the policy host.
//!
//! RFC 8461 §8.1: publish the new policy body *before* the new TXT record, so senders that
//! see the new id fetch the new body. `mta-sts serve` serves the body as soon as it (re)loads
//! the config; update the TXT record after that.

use std::fmt;

use mta_sts::{Domain, Policy};

use crate::id::policy_id;

/// Longest character-string in a TXT RDATA (RFC 1035 §3.3: a length octet, so 255).
pub const MAX_TXT_STRING: usize = 255;

/// One TXT record: owner name and value (the strings of the RR concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// Owner name, fully qualified, with the trailing dot.
    pub name: String,
    /// The value as a sender sees it after concatenating the strings of the RR.
    pub value: String,
}

impl TxtRecord {
    /// The value cut into character-strings of at most [`MAX_TXT_STRING`] octets.
    pub fn strings(&self) -> Vec<&[u8]> {
        let bytes = self.value.as_bytes();
        if bytes.is_empty() {
            return vec![bytes];
        }
        bytes.chunks(MAX_TXT_STRING).collect()
    }
}

/// `name. IN TXT "…" "…"`, each string quoted and escaped for a zone file (RFC 1035 §5.1:
/// `"` and `\` escaped with a backslash, other non-printable octets as `\DDD`).
impl fmt::Display for TxtRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} IN TXT", self.name)?;
        for string in self.strings() {
            f.write_str(" \"")?;
            for &b in string {
                match b {
                    b'"' | b'\\' => write!(f, "\\{}", char::from(b))?,
                    0x20..=0x7e => write!(f, "{}", char::from(b))?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// What to publish in DNS for one policy domain.
///
/// `Display` prints zone-file lines: comments first, then the TXT records.
///
/// ```
/// use mta_sts_policy_host::records;
/// let domain: mta_sts::Domain = "example.com".parse().unwrap();
/// let policy = mta_sts::Policy::parse(b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 604800\n").unwrap();
/// let r = records(&domain, &policy, Some("mailto:tlsrpt@example.com"));
/// let text = r.to_string();
/// assert!(text.contains(&format!("_mta-sts.example.com. IN TXT \"v=STSv1; id={};\"", r.id)));
/// assert!(text.contains("_smtp._tls.example.com. IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// The policy domain.
    pub domain: Domain,
    /// The derived policy id.
    pub id: String,
    /// `_mta-sts.<domain>.` TXT.
    pub sts: TxtRecord,
    /// `_smtp._tls.<domain>.` TXT, when report URIs were given.
    pub tlsrpt: Option<TxtRecord>,
    /// The policy host name, `mta-sts.<domain>`.
    pub policy_host: String,
}

/// The records to publish for `domain` serving `policy`; `rua` is the value of the TLS-RPT
/// `rua` field (one URI or a comma-separated list, RFC 8460 §3), `None` for no
/// `_smtp._tls` record.
pub fn records(domain: &Domain, policy: &Policy, rua: Option<&str>) -> Records {
    let id = policy_id(policy);
    let sts = TxtRecord {
        name: format!("{}.", domain.sts_record_name()),
        value: format!("v=STSv1; id={id};"),
    };
    let tlsrpt = rua.map(|rua| TxtRecord {
        name: format!("{}.", domain.tlsrpt_record_name()),
        value: format!("v=TLSRPTv1; rua={}", rua.trim()),
    });
    Records {
        domain: domain.clone(),
        id,
        sts,
        tlsrpt,
        policy_host: domain.policy_host(),
    }
}

impl fmt::Display for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "; MTA-STS (RFC 8461) for {}", self.domain)?;
        writeln!(
            f,
            "; {host}. must resolve to this policy host: publish its A/AAAA records, or \
             `{host}. IN CNAME <this host>.`;",
            host = self.policy_host
        )?;
        writeln!(
            f,
            "; the certificate it presents must be valid for {}. Publish the TXT record \
             after the policy host serves the new policy (RFC 8461 §8.1).",
            self.policy_host
        )?;
        writeln!(f, "{}", self.sts)?;
        if let Some(tlsrpt) = &self.tlsrpt {
            writeln!(f, "{tlsrpt}")?;
        }
        Ok(())
    }
}
