//! The result of checking one domain: the `check --json` document (its fields are a
//! contract: additive changes only).
//!
//! ```text
//! {"domain", "verdict": "pass|warn|fail",
//!  "findings": [{"id","severity","area","title","detail","fix"}],
//!  "record": {"name","txt":[…],"cname_chain":[…],"id","valid"} | null,
//!  "policy": {"version","mode","max_age","effective_max_age","mx":[…],"valid","strict_valid","applied"} | null,
//!  "policy_host": {"host","addresses":{"list":[ip…],"dns_error"},"connected_to",
//!                  "tls":{"version","cipher","certificate":{…}}|null,"status","location",
//!                  "content_type","size","too_large","elapsed_ms",
//!                  "error":{"kind","message"}|null} | null,
//!  "mx": [{"host","preference","in_policy","addresses","starttls","tls_version","cipher",
//!          "certificate":{"subject","issuer","sans","not_before","not_after","days_left",
//!                         "chain_length","name_match","valid","problem","error"}|null,
//!          "dane_tlsa","banner","error","verdict"}],
//!  "tlsrpt": {"txt","rua":[…],"valid"} | null,
//!  "delivery": {"policy_mode","would_deliver","mx","reason",
//!               "if_enforced": {"would_deliver","mx","reason",
//!                               "skipped":[{"host","reasons":[finding id…]}]} | null},
//!  "elapsed_ms"}
//! ```

use std::net::IpAddr;

use serde::Serialize;

use crate::finding::{Finding, Verdict};
use crate::probe::ProbeError;
use crate::probe::https::PolicyHostProbe;
use crate::tls::CertificateInfo;

/// The diagnosis of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The domain, canonical (A-labels, lower case).
    pub domain: String,
    /// `fail` if any error, `warn` if any warning, else `pass`.
    pub verdict: Verdict,
    /// Every finding, grouped by area in check order.
    pub findings: Vec<Finding>,
    /// The `_mta-sts` TXT record.
    pub record: Option<RecordReport>,
    /// The policy file, when one was fetched and parsed (even if unusable).
    pub policy: Option<PolicyReport>,
    /// The policy host probe, when the policy host was probed.
    pub policy_host: Option<PolicyHostProbe>,
    /// The MX hosts in preference order (the implicit MX when there is no MX record).
    pub mx: Vec<MxReport>,
    /// The `_smtp._tls` record.
    pub tlsrpt: Option<TlsRptReport>,
    /// What an RFC-compliant enforcing sender would do.
    pub delivery: Delivery,
    /// Milliseconds the check took.
    pub elapsed_ms: u64,
}

impl Report {
    /// Whether any finding has this id.
    pub fn has(&self, id: &str) -> bool {
        self.findings.iter().any(|f| f.id == id)
    }

    /// The finding ids, sorted and deduplicated.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.findings.iter().map(|f| f.id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// A report that consists of one failing finding (bad input, timeout).
    pub fn failed(domain: &str, finding: Finding) -> Report {
        let findings = vec![finding];
        Report {
            domain: domain.to_string(),
            verdict: Verdict::of(&findings),
            findings,
            record: None,
            policy: None,
            policy_host: None,
            mx: Vec::new(),
            tlsrpt: None,
            delivery: Delivery {
                policy_mode: None,
                would_deliver: None,
                mx: None,
                reason: "the check did not complete".to_string(),
                if_enforced: None,
            },
            elapsed_ms: 0,
        }
    }
}

/// The `_mta-sts` TXT record as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordReport {
    /// `_mta-sts.<domain>`.
    pub name: String,
    /// Every TXT RR there, strings concatenated.
    pub txt: Vec<String>,
    /// The CNAME chain followed, from `_mta-sts.<domain>` to the last target (empty
    /// without CNAME).
    pub cname_chain: Vec<String>,
    /// The id of the one valid record.
    pub id: Option<String>,
    /// Whether a sender would accept the record (RFC 8461 §3.1).
    pub valid: bool,
}

/// The policy file as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// `STSv1` when valid.
    pub version: Option<String>,
    /// `enforce`, `testing` or `none`.
    pub mode: Option<String>,
    /// As written.
    pub max_age: Option<u64>,
    /// Clamped to 31557600 (RFC 8461 §3.2).
    pub effective_max_age: Option<u64>,
    /// The `mx` patterns.
    pub mx: Vec<String>,
    /// No error: a sender applies it.
    pub valid: bool,
    /// Exactly per the RFC grammar: strict senders (mox, postfix-tlspol) accept it.
    pub strict_valid: bool,
    /// Whether a sender without cache would apply it now (valid record, valid
    /// certificate, 200, `text/plain`, valid policy).
    pub applied: bool,
}

/// One MX host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxReport {
    /// The MX RDATA name (the domain itself for the implicit MX).
    pub host: String,
    /// MX preference (`null` for the implicit MX).
    pub preference: Option<u16>,
    /// Whether a policy `mx` pattern matches it (`null` without policy).
    pub in_policy: Option<bool>,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Whether STARTTLS is offered (`null` when not probed or unreachable).
    pub starttls: Option<bool>,
    /// Negotiated TLS version.
    pub tls_version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher: Option<String>,
    /// The certificate.
    pub certificate: Option<CertificateInfo>,
    /// TLSA records at `_25._tcp.<host>`.
    pub dane_tlsa: Option<usize>,
    /// The SMTP greeting.
    pub banner: Option<String>,
    /// Why the probe stopped early.
    pub error: Option<ProbeError>,
    /// What a sender applying the published policy does with this host: `deliver`,
    /// `deliver-report` (testing: deliver and report the failure), `skip` (enforce: not
    /// this host), `unreachable`, `not-probed`.
    pub verdict: &'static str,
}

/// The `_smtp._tls` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRptReport {
    /// The TXT RRs beginning with `v=TLSRPTv1`.
    pub txt: Vec<String>,
    /// The `rua` URIs.
    pub rua: Vec<String>,
    /// Whether a sender would use it.
    pub valid: bool,
}

/// What an RFC-compliant sender (enforcing the policy it can fetch now, no cache) does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The mode of the applied policy, `null` when none applies.
    pub policy_mode: Option<String>,
    /// Whether mail would be delivered; `null` when unknown (not probed).
    pub would_deliver: Option<bool>,
    /// The MX host it would deliver to first.
    pub mx: Option<String>,
    /// One sentence.
    pub reason: String,
    /// For a `mode: testing` policy: what a sender would do with today's MX hosts if the
    /// policy said `mode: enforce` (the question an owner asks before switching);
    /// `null` for other modes and without a policy.
    pub if_enforced: Option<IfEnforced>,
}

/// What an enforcing sender would do with a `testing` policy switched to `enforce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfEnforced {
    /// Whether mail would be delivered; `null` when unknown (MX hosts not probed or not
    /// reachable from here).
    pub would_deliver: Option<bool>,
    /// The MX host it would deliver to first.
    pub mx: Option<String>,
    /// One sentence.
    pub reason: String,
    /// The MX hosts an enforcing sender would skip (RFC 8461 §4.1, §4.2), with the ids of
    /// the findings that make it skip them.
    pub skipped: Vec<SkippedMx>,
}

/// One MX host an enforcing sender would skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMx {
    /// The MX host.
    pub host: String,
    /// Ids of the findings about this host that fail validation under enforce.
    pub reasons: Vec<String>,
}
