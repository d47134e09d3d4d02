//! Postfix `socketmap_table(5)` requests and the lookup key normalisation of
//! postfix-mta-sts-resolver (whose replies this toolkit answers drop-in compatibly).
//!
//! A request payload is `<name> <key>`: the map name (our zone) and the key Postfix looks up
//! in `smtp_tls_policy_maps`, i.e. the next-hop destination: a domain, `[host]`,
//! `[host]:port`, `host:port`, or, for parent-domain matching, `.domain`.
//!
//! The Policy Domain is the next-hop name exactly as configured, with brackets and port
//! stripped (RFC 8461 §3.4 leaves open whether a smart host `[smtp.provider.example]:587`
//! names `smtp.provider.example` or `provider.example`; the existing daemons take the key
//! Postfix supplies, and so do we), one trailing dot removed, compared case-insensitively
//! (RFC 8461 §4.1). Keys that cannot name a Policy Domain are answered `NOTFOUND ` without
//! any lookup ([`Key::Skip`]): `.domain` keys, address literals, and junk. Unlike
//! postfix-mta-sts-resolver, junk never causes a DNS query: a key that cannot name a
//! Policy Domain is decided here, before any lookup.

use std::net::IpAddr;

use mta_sts::Domain;

/// Why a request payload is unusable. The framing was intact, so the server can say so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The payload is not UTF-8 (Postfix sends host names, UTF-8 with SMTPUTF8).
    #[error("socketmap request is not valid UTF-8 (byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

/// One socketmap request: `<name> <key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The map name (`socketmap:inet:127.0.0.1:8461:<name>`), used as the zone name.
    pub name: &'a str,
    /// The lookup key exactly as sent (after the first space).
    pub key: &'a str,
}

impl<'a> Request<'a> {
    /// Parses a request payload. A payload without a space is a name with an empty key
    /// (answered `NOTFOUND `), as postfix-mta-sts-resolver reads it.
    ///
    /// ```
    /// use mta_sts_socketmap::Request;
    /// let req = Request::parse(b"postfix [mail.example]:25")?;
    /// assert_eq!((req.name, req.key), ("postfix", "[mail.example]:25"));
    /// # Ok::<(), mta_sts_socketmap::RequestError>(())
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<Request<'a>, RequestError> {
        let text = std::str::from_utf8(payload).map_err(|e| RequestError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let (name, key) = text.split_once(' ').unwrap_or((text, ""));
        Ok(Request { name, key })
    }

    /// The normalised key.
    pub fn key(&self) -> Key {
        Key::normalise(self.key)
    }
}

/// Why a key is answered `NOTFOUND ` without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `.domain`: Postfix's parent-domain lookup. MTA-STS applies to the exact Policy
    /// Domain only (RFC 8461 §4.1 matches MX names, not parents), so there is never a policy.
    ParentDomain,
    /// An address literal (`[192.0.2.1]`, `127.0.0.1`, `[::1]`, `[ipv6:…]`): no domain, no policy.
    AddressLiteral,
    /// Not a valid domain name after normalisation (empty, spaces, `:` …).
    Invalid,
}

impl SkipReason {
    /// Short text for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::ParentDomain => "parent-domain key",
            SkipReason::AddressLiteral => "address literal",
            SkipReason::Invalid => "not a domain name",
        }
    }
}

/// A normalised lookup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Look up the policy of this Policy Domain.
    Domain(Domain),
    /// Answer `NOTFOUND ` at once.
    Skip(SkipReason),
}

impl Key {
    /// Normalises a key as postfix-mta-sts-resolver does, but stricter on junk:
    /// surrounding whitespace is ignored; `[host]` and `[host]:port` give `host`; `host:port`
    /// gives `host`; an address (bracketed or not, `[ipv6:…]` included) is an
    /// [`SkipReason::AddressLiteral`]; a leading dot is a [`SkipReason::ParentDomain`]; one
    /// trailing dot is removed and case is folded by [`Domain::parse`]; anything else that is
    /// not a domain name is [`SkipReason::Invalid`].
    ///
    /// ```
    /// use mta_sts_socketmap::{Key, SkipReason};
    /// let Key::Domain(d) = Key::normalise("[GOOD.test.]:25") else { panic!() };
    /// assert_eq!(d.as_str(), "good.test");
    /// assert_eq!(Key::normalise("[a:bb:ccc::dddd]:123"), Key::Skip(SkipReason::AddressLiteral));
    /// assert_eq!(Key::normalise(".good.test"), Key::Skip(SkipReason::ParentDomain));
    /// assert_eq!(Key::normalise("good.test x"), Key::Skip(SkipReason::Invalid));
    /// ```
    pub fn normalise(key: &str) -> Key {
        let key = key.trim_matches([' ', '\t']);
        let host = if let Some(rest) = key.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Key::Skip(SkipReason::Invalid);
            };
            if !after.is_empty() && !is_port_suffix(after) {
                return Key::Skip(SkipReason::Invalid);
            }
            // Postfix writes IPv6 address literals `[ipv6:…]` (RFC 5321 §4.1.3).
            let is_tagged_v6 = inner
                .get(..5)
                .is_some_and(|tag| tag.eq_ignore_ascii_case("ipv6:"));
            if is_tagged_v6 || inner.parse::<IpAddr>().is_ok() {
                return Key::Skip(SkipReason::AddressLiteral);
            }
            inner
        } else {
            if key.parse::<IpAddr>().is_ok() {
                return Key::Skip(SkipReason::AddressLiteral);
            }
            match key.rsplit_once(':') {
                Some((host, port))
                    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    host
                }
                Some(_) => return Key::Skip(SkipReason::Invalid),
                None => key,
            }
        };
        if host.parse::<IpAddr>().is_ok() {
            return Key::Skip(SkipReason::AddressLiteral);
        }
        if host.starts_with('.') {
            return Key::Skip(SkipReason::ParentDomain);
        }
        match Domain::parse(host) {
            Ok(domain) => Key::Domain(domain),
            Err(_) => Key::Skip(SkipReason::Invalid),
        }
    }
}

/// `:<digits>` after a bracketed host.
fn is_port_suffix(text: &str) -> bool {
    text.strip_prefix(':')
        .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}
