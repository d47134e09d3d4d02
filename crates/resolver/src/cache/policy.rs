//! A policy as cached and applied ([`CachedPolicy`]): the parsed policy, its `_mta-sts` id
//! stored inline ([`StsId`], RFC 8461 §3.1), its fetch and expiry times (RFC 8461 §3.2), and
//! the body as served, kept only when it is not the policy's canonical rendering.

use std::borrow::Cow;

use mta_sts::{Domain, Policy};

use crate::store::StoredPolicy;

/// A policy as cached and applied. Shared (`Arc`) between the cache and every [`Lookup`]
/// that applies it.
///
/// Compact because a daemon holds one per destination domain (100,000 in well under
/// 50 MB): the record id is stored inline, and the body as served is kept only when it is
/// not the canonical rendering of the parsed policy (with the line ending it used), since it
/// can then be rebuilt byte for byte. [`CachedPolicy::body`] gives it back either way.
///
/// ```
/// use mta_sts::Policy;
/// use mta_sts_resolver::CachedPolicy;
/// let body = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n";
/// let cached = CachedPolicy::new(Policy::parse(body.as_bytes())?, "20240101", body, 0)
///     .expect("a valid id");
/// assert_eq!(cached.body(), body);
/// assert_eq!(cached.record_id.as_str(), "20240101");
/// # Ok::<(), mta_sts::policy::PolicyError>(())
/// ```
///
/// [`Lookup`]: crate::Lookup
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The parsed policy.
    pub policy: Policy,
    /// The `_mta-sts` TXT id the policy was fetched under.
    pub record_id: StsId,
    /// The body as served, when it is not the policy's canonical rendering with `line_end`.
    pub(super) verbatim: Option<Box<str>>,
    /// The line end the served body used, when `verbatim` is `None`.
    line_end: LineEnd,
    /// Time of the successful HTTPS fetch (unix seconds).
    pub fetched_at: u64,
    /// `fetched_at + min(max_age, 31557600)` (RFC 8461 §3.2).
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    CrLf,
    Lf,
}

fn render(policy: &Policy, end: LineEnd) -> String {
    let canonical = policy.to_string(); // CRLF line ends
    match end {
        LineEnd::CrLf => canonical,
        LineEnd::Lf => canonical.replace("\r\n", "\n"),
    }
}

/// The line end with which `policy` renders exactly as `body`, if any.
fn rendering_of(policy: &Policy, body: &str) -> Option<LineEnd> {
    [LineEnd::CrLf, LineEnd::Lf]
        .into_iter()
        .find(|&end| render(policy, end) == body)
}

impl CachedPolicy {
    /// Builds an entry for a policy fetched at `now` (RFC 8461 §3.2: max_age counts from the
    /// fetch; [`Policy::effective_max_age`] clamps it to 31557600). `None` when `record_id`
    /// is not an `sts-id` (RFC 8461 §3.1: 1 to 32 letters and digits).
    pub fn new(policy: Policy, record_id: &str, body: &str, now: u64) -> Option<CachedPolicy> {
        let expires_at = now.saturating_add(policy.effective_max_age());
        let line_end = rendering_of(&policy, body);
        Some(CachedPolicy {
            record_id: StsId::new(record_id)?,
            verbatim: line_end.is_none().then(|| body.into()),
            line_end: line_end.unwrap_or(LineEnd::CrLf),
            policy,
            fetched_at: now,
            expires_at,
        })
    }

    /// The body exactly as served (TLS-RPT `policy-string` wants its lines, RFC 8460 §4.4).
    pub fn body(&self) -> Cow<'_, str> {
        match &self.verbatim {
            Some(body) => Cow::Borrowed(body),
            None => Cow::Owned(render(&self.policy, self.line_end)),
        }
    }

    /// Whether the entry may still be applied at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// Rebuilds an entry from a store; `None` when the stored body no longer parses or the
    /// id is not an `sts-id`.
    pub fn from_stored(stored: &StoredPolicy) -> Option<CachedPolicy> {
        let policy = Policy::parse(stored.body.as_bytes()).ok()?;
        let mut cached = CachedPolicy::new(policy, &stored.record_id, &stored.body, 0)?;
        cached.fetched_at = stored.fetched_at;
        cached.expires_at = stored.expires_at;
        Some(cached)
    }

    /// The store form.
    pub fn to_stored(&self, domain: &Domain) -> StoredPolicy {
        StoredPolicy {
            domain: domain.as_str().to_string(),
            record_id: self.record_id.to_string(),
            body: self.body().into_owned(),
            fetched_at: self.fetched_at,
            expires_at: self.expires_at,
        }
    }
}

/// An `_mta-sts` record id stored inline (RFC 8461 §3.1: `sts-id = 1*32(ALPHA / DIGIT)`),
/// so a cached policy needs no allocation for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StsId {
    len: u8,
    bytes: [u8; 32],
}

impl StsId {
    /// `None` unless `id` is 1 to 32 ASCII letters and digits.
    pub fn new(id: &str) -> Option<StsId> {
        let valid = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| {
            let mut bytes = [0; 32];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            StsId {
                len: id.len() as u8, // ≤ 32, checked above
                bytes,
            }
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for StsId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for StsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for StsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::fixtures::{CANONICAL, cached};

    #[test]
    fn canonical_bodies_are_rendered_back_byte_for_byte() {
        for body in [CANONICAL, &CANONICAL.replace("\r\n", "\n")] {
            let c = cached(body);
            assert!(c.verbatim.is_none(), "{body:?} is rebuilt, not stored");
            assert_eq!(c.body(), body);
        }
    }

    #[test]
    fn other_bodies_are_kept_verbatim() {
        for body in [
            "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n",
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400",
            "version: STSv1\nmode: enforce\r\nmx: mail.example.com\nmax_age: 86400\n",
            "# comment\nversion: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n",
        ] {
            let c = cached(body);
            assert!(c.verbatim.is_some(), "{body:?}");
            assert_eq!(c.body(), body);
        }
    }

    #[test]
    fn record_ids_are_sts_ids() {
        assert_eq!(
            StsId::new("20240101T000000").map(|i| i.to_string()),
            Some("20240101T000000".into())
        );
        assert!(StsId::new(&"a".repeat(32)).is_some());
        for bad in ["", "a-b", "é", &"a".repeat(33)] {
            assert!(StsId::new(bad).is_none(), "{bad:?}");
        }
    }
}
