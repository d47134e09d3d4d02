//! Domain names in signatures and report headers: normalization, the shape of a name that
//! may be queried, the domain of a `From:` address, and alignment of the signing domain with
//! the reporting domain (RFC 8460 §3, read as described in [`crate::verify`]).

/// Lower case, one trailing dot removed.
pub(crate) fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// LDH (and `_`) labels of 1–63 octets, at most 253 in all: nothing else is ever queried.
pub(crate) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The domain part of an identity (`user@domain` or `@domain`, or a bare domain),
/// normalized.
pub(crate) fn identity_domain(identity: &str) -> String {
    normalize_name(identity.rsplit_once('@').map_or(identity, |(_, d)| d))
}

/// Whether signing domain `d` is aligned with reporting domain `reporting` (see the
/// [`crate::verify`] documentation): equal, or one a subdomain of the other, the shorter
/// having two or more labels. Both are compared in lower case without a trailing dot.
///
/// ```
/// use mta_sts_dkim::aligned;
/// assert!(aligned("example.com", "mail.example.com"));
/// assert!(aligned("mail.example.com", "example.com"));
/// assert!(!aligned("com", "example.com"));
/// assert!(!aligned("example.net", "example.com"));
/// assert!(!aligned("badexample.com", "example.com"));
/// ```
pub fn aligned(d: &str, reporting: &str) -> bool {
    let d = normalize_name(d);
    let r = normalize_name(reporting);
    if d.is_empty() || r.is_empty() {
        return false;
    }
    let (short, long) = if d.len() <= r.len() {
        (&d, &r)
    } else {
        (&r, &d)
    };
    short.contains('.') && (long == short || long.ends_with(&format!(".{short}")))
}

/// The domain of the first address in a `From:` value (`Name <user@domain>` or
/// `user@domain`), lower case.
pub fn address_domain(value: &str) -> Option<String> {
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(',').next().unwrap_or(value),
    };
    let (_, domain) = addr.trim().rsplit_once('@')?;
    let domain = normalize_name(domain.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()));
    is_dns_name(&domain).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8460_3_alignment_and_from_domain() {
        assert!(aligned("Example.com.", "example.com"));
        assert!(!aligned("example.com", ""));
        assert_eq!(
            address_domain("\"TLS\" <tlsrpt@Mail.Example.com>").as_deref(),
            Some("mail.example.com")
        );
        assert_eq!(address_domain("a@b.example").as_deref(), Some("b.example"));
        assert_eq!(address_domain("nobody"), None);
    }
}
