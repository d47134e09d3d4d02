//! The `_mta-sts` TXT record id, derived from the policy content.
//!
//! RFC 8461 §3.1: the id "MUST uniquely identify a given instance of a policy, such that
//! senders can determine when the policy has been updated by comparing to the `id` of a
//! previously seen policy", and is 1 to 32 ALPHA/DIGIT. Deriving it from the canonical
//! policy body makes it change exactly when the body served changes, and stay the same
//! across restarts, machines and re-deployments of the same policy, so operators never
//! bump ids by hand (and never forget to).

use mta_sts::Policy;

/// Number of characters in a derived id: 20 lower-case hex digits (80 bits of SHA-256),
/// well inside the 32-character limit of RFC 8461 §3.1.
pub const ID_LEN: usize = 20;

/// The id of the policy whose canonical body (the [`Policy`] `Display`, CRLF line ends)
/// is `body`: the first [`ID_LEN`] lower-case hex digits of its SHA-256.
///
/// ```
/// let id = mta_sts_policy_host::id::id_for_body(b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n");
/// assert_eq!(id.len(), 20);
/// assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
/// ```
pub fn id_for_body(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    hex(digest.as_ref())
        .chars()
        .take(ID_LEN)
        .collect::<String>()
}

/// The id of `policy`: [`id_for_body`] of its canonical form.
///
/// ```
/// use mta_sts::Policy;
/// use mta_sts_policy_host::policy_id;
/// let a = Policy::parse(b"version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n").unwrap();
/// let b = Policy::parse(b"mode: enforce\r\nversion: STSv1\r\nmax_age: 86400\r\nmx: mx.example.com\r\n").unwrap();
/// assert_eq!(policy_id(&a), policy_id(&b)); // same policy, same canonical form
/// let mut c = a.clone();
/// c.max_age = 86401;
/// assert_ne!(policy_id(&a), policy_id(&c));
/// ```
pub fn policy_id(policy: &Policy) -> String {
    id_for_body(policy.to_string().as_bytes())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
