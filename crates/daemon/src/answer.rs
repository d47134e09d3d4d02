//! From a lookup outcome and the zone settings to the socketmap reply: a pure function.
//!
//! Reply shapes (payloads, before netstring framing):
//!
//! | situation | reply |
//! |---|---|
//! | `enforce` (or `testing` with `strict_testing`) | `OK secure match=<p1>:<p2> servername=hostname` |
//! | same, `require_sni = false` | `OK secure match=<p1>:<p2>` |
//! | same, `tlsrpt = true` | … then ` policy_type=sts policy_domain=<d> mx_host_pattern=<m1> … { policy_string = <line> } …` |
//! | same, `dane = "defer"` and usable TLSA records | `OK dane-only` |
//! | `enforce` without any `mx` | `TEMP MTA-STS policy for <d> lists no mx` |
//! | same, `tlsrpt = true` | `OK secure servername=hostname policy_type=sts policy_domain=<d> { policy_string = … } … policy_failure=sts-policy-invalid` |
//! | `testing` (without `strict_testing`), `none`, no policy | `NOTFOUND ` |
//! | lookup failed, nothing cached, `on_failure = "notfound"` (default) | `NOTFOUND ` |
//! | lookup failed, nothing cached, `on_failure = "temp"` | `TEMP MTA-STS policy for <d> unavailable: <reason>` |
//! | record published but its policy unusable, nothing cached, `on_failure = "temp"`, `tlsrpt = true` | `OK secure servername=hostname policy_type=sts policy_domain=<d> policy_failure=<type>` |
//!
//! Patterns are in policy order, de-duplicated, `*.x` written `.x` (Postfix `match=` syntax,
//! [`mta_sts::MxPattern::to_postfix`]).
//!
//! The TLS-RPT attributes (Postfix ≥ 3.10, `smtp_tls_policy_maps` with TLSRPT support) are
//! emitted exactly as postfix-mta-sts-resolver emits them: `policy_type=sts`,
//! `policy_domain=`, one `mx_host_pattern=` per pattern as written in the policy, then one
//! `{ policy_string = <line> }` per policy line in the peer's order: the `mx` lines first,
//! then `version`, `mode`, `max_age`, then extension fields. Lines containing `{` or `}` are
//! left out, because braces break Postfix's attribute syntax (postfix-tlspol drops them too).
//! The deprecated `policy_ttl` is never sent (Postfix ignores it). With these attributes
//! Postfix ≥ 3.10.5 (`smtp_tls_enforce_sts_mx_patterns`, on by default) also checks the MX
//! name against the patterns before it connects, closing the wildcard-depth gap of `match=`
//! (RFC 8461 §4.1: `*.example.com` covers one label only).
//!
//! **Which outcome gets which reply** (RFC 8461 §3.3, §4.1, §5, §5.1):
//! - a fresh policy, or an unexpired cached one while a refetch fails (§5.1: the cached
//!   policy stays in force until it expires): the policy's reply, as above;
//! - no `_mta-sts` record, or an invalid one (§3.1): `NOTFOUND `, so Postfix's own
//!   `smtp_tls_security_level` applies; Postfix 3.10 then reports the session itself as
//!   `no-policy-found`, so the daemon never sends `policy_type=no-policy-found` (which would
//!   also replace a `dane` default level with the level of the reply);
//! - a record but an unusable policy (fetch error, invalid policy, invalid certificate) and
//!   nothing cached: §3.3 says deliver as though the domain had no MTA-STS, so `NOTFOUND `
//!   by default. Only an operator who chose `on_failure = "temp"` keeps the message: with
//!   `tlsrpt = true` as `secure … policy_failure=<RFC 8460 §4.3.2.2 type>`, so Postfix defers
//!   it (4.7.5) and reports the failure to the domain, otherwise as `TEMP`;
//! - a DNS failure (the record's presence unknown) and nothing cached: per `on_failure`,
//!   `NOTFOUND ` or `TEMP`; never a `policy_failure`, as the domain may have no policy;
//! - an `enforce` policy that lists no `mx` (`Policy::parse` rejects it; one built otherwise,
//!   e.g. read from an older cache store, can still arrive): no MX can pass §4.1, and §5
//!   says a sender must not deliver; §3.2 requires one or more `mx`, so with `tlsrpt = true`
//!   it is `policy_failure=sts-policy-invalid` (deferred and reported), otherwise `TEMP`.
//!
//! **DANE** (RFC 8461 §2: an MTA-STS pass MUST NOT override a failing DANE validation): a
//! `secure` answer from `smtp_tls_policy_maps` replaces Postfix's `dane` level for the
//! destination. With `dane = "defer"` and usable (DNSSEC-validated) TLSA records we answer
//! `OK dane-only` wherever we would have answered `OK secure …`, so Postfix authenticates
//! with DANE (RFC 7672 §2.2) and never falls back. Where we answer `NOTFOUND `, Postfix's own
//! `smtp_tls_security_level` (e.g. `dane`) applies unchanged. The MX-name check of `enforce`
//! cannot be expressed next to `dane-only`; that loosening is documented (docs/rfc-requirements.md
//! §4 item 13).

use mta_sts::{Domain, Mode, Policy};

use crate::config::{DaneMode, OnFailure, ZoneSettings};
use mta_sts_socketmap::Reply;
use tlsrpt::ResultType;

/// What a DANE check found for the domain's MX hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DaneVerdict {
    /// Not checked (DANE off, or no answer within the budget).
    #[default]
    NotChecked,
    /// No usable DNSSEC-validated TLSA records.
    NotUsable,
    /// Usable DNSSEC-validated TLSA records exist (RFC 7672 §2.2): DANE governs.
    Usable,
}

/// Why a published policy cannot be applied: the value of Postfix 3.10's `policy_failure=`
/// attribute, an RFC 8460 §4.3.2.2 result type. Postfix fails the TLS session with it (the
/// message is deferred, 4.7.5) and reports it to the domain when TLSRPT is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyFailure {
    /// `sts-policy-fetch-error`: the policy could not be fetched.
    FetchError,
    /// `sts-policy-invalid`: the policy was fetched but is not valid.
    Invalid,
    /// `sts-webpki-invalid`: the policy host's certificate did not validate.
    WebpkiInvalid,
    /// `validation-failure`: any other reason.
    ValidationFailure,
}

impl PolicyFailure {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyFailure::FetchError => "sts-policy-fetch-error",
            PolicyFailure::Invalid => "sts-policy-invalid",
            PolicyFailure::WebpkiInvalid => "sts-webpki-invalid",
            PolicyFailure::ValidationFailure => "validation-failure",
        }
    }

    /// The failure for an RFC 8460 result type: the three policy types of §4.3.2.2 as
    /// themselves, anything else as the less informative `validation-failure`.
    pub fn from_result_type(result: &ResultType) -> PolicyFailure {
        match result {
            ResultType::StsPolicyFetchError => PolicyFailure::FetchError,
            ResultType::StsPolicyInvalid => PolicyFailure::Invalid,
            ResultType::StsWebpkiInvalid => PolicyFailure::WebpkiInvalid,
            _ => PolicyFailure::ValidationFailure,
        }
    }
}

/// The reply for a completed lookup: `policy` is the policy to apply (fresh or from the
/// cache, RFC 8461 §5.1), `None` when the domain has no policy.
///
/// ```
/// use mta_sts::{Domain, Policy};
/// use mta_sts_daemon::answer::{answer, DaneVerdict};
/// use mta_sts_daemon::config::ZoneSettings;
/// let domain = Domain::parse("wild.test")?;
/// let policy = Policy::parse(b"version: STSv1\nmode: enforce\nmx: mail.wild.test\nmx: *.wild.test\nmax_age: 86400\n")?;
/// let reply = answer(&domain, Some(&policy), &ZoneSettings::default(), DaneVerdict::NotChecked);
/// assert_eq!(reply.payload(), "OK secure match=mail.wild.test:.wild.test servername=hostname");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn answer(
    domain: &Domain,
    policy: Option<&Policy>,
    zone: &ZoneSettings,
    dane: DaneVerdict,
) -> Reply {
    let Some(policy) = policy else {
        return Reply::NotFound;
    };
    let applies = match policy.mode {
        Mode::Enforce => true,
        // RFC 8461 §5: under testing, delivery must not fail; Postfix `secure` would make
        // it fail, so testing is NOTFOUND unless the operator opts into strict_testing.
        Mode::Testing => zone.strict_testing,
        Mode::None => false,
    };
    if !applies {
        return Reply::NotFound;
    }
    if zone.dane == DaneMode::Defer && dane == DaneVerdict::Usable {
        return Reply::Ok("dane-only".to_owned());
    }
    let mut matches: Vec<String> = Vec::with_capacity(policy.mx.len());
    for pattern in &policy.mx {
        let postfix = pattern.to_postfix();
        if !matches.contains(&postfix) {
            matches.push(postfix);
        }
    }
    if matches.is_empty() {
        // An enforce policy without mx matches no MX host (RFC 8461 §4.1), and §5 says not
        // to deliver: defer rather than send an empty `match=` (the peer's bug, vectors §K
        // emptymx.test). §3.2 requires one or more `mx`, so Postfix 3.10 is told the policy
        // is invalid, which it reports.
        if zone.tlsrpt {
            return failure_reply(
                zone,
                &tlsrpt_attributes(domain, policy),
                PolicyFailure::Invalid,
            );
        }
        return Reply::Temp(format!("MTA-STS policy for {domain} lists no mx"));
    }
    let mut data = format!("secure match={}", matches.join(":"));
    if zone.require_sni {
        data.push_str(" servername=hostname");
    }
    if zone.tlsrpt {
        data.push_str(&tlsrpt_attributes(domain, policy));
    }
    Reply::Ok(data)
}

/// The reply when a lookup failed and no unexpired cached policy exists
/// (RFC 8461 §3.3: by default deliver as if there were no policy).
pub fn answer_failure(domain: &Domain, zone: &ZoneSettings, reason: &str) -> Reply {
    match zone.on_failure {
        OnFailure::NotFound => Reply::NotFound,
        OnFailure::Temp => Reply::Temp(format!(
            "MTA-STS policy for {domain} unavailable: {}",
            short(reason)
        )),
    }
}

/// The reply when the domain publishes an `_mta-sts` record but its policy cannot be used
/// (fetch error, invalid policy, invalid certificate of the policy host) and no unexpired
/// policy is cached. RFC 8461 §3.3: deliver as though the domain had no MTA-STS, so
/// `NOTFOUND` by default. With `on_failure = "temp"` the operator keeps the message instead:
/// with `tlsrpt = true` as Postfix 3.10 `policy_failure=`, so Postfix defers it and reports
/// the failure to the domain (RFC 8460 §4.3.2.2), otherwise as `TEMP`.
///
/// ```
/// use mta_sts::Domain;
/// use mta_sts_daemon::answer::{PolicyFailure, answer_unusable};
/// use mta_sts_daemon::config::{OnFailure, ZoneSettings};
/// let domain = Domain::parse("down.test")?;
/// let zone = ZoneSettings { on_failure: OnFailure::Temp, tlsrpt: true, ..ZoneSettings::default() };
/// let reply = answer_unusable(&domain, &zone, PolicyFailure::WebpkiInvalid, "certificate expired");
/// assert_eq!(
///     reply.payload(),
///     "OK secure servername=hostname policy_type=sts policy_domain=down.test policy_failure=sts-webpki-invalid"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn answer_unusable(
    domain: &Domain,
    zone: &ZoneSettings,
    failure: PolicyFailure,
    reason: &str,
) -> Reply {
    if zone.on_failure == OnFailure::Temp && zone.tlsrpt {
        // No policy to describe: the type and domain only (RFC 8460 §4.4 policy-string is
        // the policy's lines, and there are none).
        return failure_reply(
            zone,
            &format!(" policy_type=sts policy_domain={domain}"),
            failure,
        );
    }
    answer_failure(domain, zone, reason)
}

/// `secure` with the given TLS-RPT attributes and `policy_failure=`: Postfix 3.10 fails
/// the TLS session with that result type, whatever the certificate (TLSRPT_README).
fn failure_reply(zone: &ZoneSettings, attributes: &str, failure: PolicyFailure) -> Reply {
    let mut data = "secure".to_owned();
    if zone.require_sni {
        data.push_str(" servername=hostname");
    }
    data.push_str(attributes);
    data.push_str(" policy_failure=");
    data.push_str(failure.as_str());
    Reply::Ok(data)
}

/// The Postfix 3.10 TLS-RPT attributes, with a leading space.
fn tlsrpt_attributes(domain: &Domain, policy: &Policy) -> String {
    let mut out = format!(" policy_type=sts policy_domain={domain}");
    for pattern in &policy.mx {
        out.push_str(" mx_host_pattern=");
        out.push_str(&pattern.to_string());
    }
    let lines = policy
        .mx
        .iter()
        .map(|mx| format!("mx: {mx}"))
        .chain([
            "version: STSv1".to_owned(),
            format!("mode: {}", policy.mode),
            format!("max_age: {}", policy.max_age),
        ])
        .chain(policy.extensions.iter().map(|(k, v)| format!("{k}: {v}")));
    for line in lines {
        if line.contains(['{', '}']) || line.chars().any(char::is_control) {
            continue;
        }
        out.push_str(" { policy_string = ");
        out.push_str(&line);
        out.push_str(" }");
    }
    out
}

/// A reason cut to 200 characters, so a reply stays one short log line.
fn short(reason: &str) -> String {
    const MAX: usize = 200;
    if reason.chars().count() <= MAX {
        reason.to_owned()
    } else {
        let mut cut: String = reason.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}
