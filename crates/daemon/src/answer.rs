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
//! | `testing` (without `strict_testing`), `none`, no policy | `NOTFOUND ` |
//! | lookup failed, nothing cached, `on_failure = "notfound"` (default) | `NOTFOUND ` |
//! | lookup failed, nothing cached, `on_failure = "temp"` | `TEMP MTA-STS policy for <d> unavailable: <reason>` |
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
//! With these attributes Postfix ≥ 3.10.5 (`smtp_tls_enforce_sts_mx_patterns`) also checks the
//! MX name against the patterns, closing the wildcard-depth gap of `match=` (RFC 8461 §4.1,
//! docs/rfc-requirements.md §4 item 12).
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
        // An enforce policy without mx matches no MX host (RFC 8461 §4.1, §5): defer rather
        // than send an empty `match=` (the peer's bug, vectors §K emptymx.test).
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
