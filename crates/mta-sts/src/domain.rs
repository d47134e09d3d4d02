//! Domain names as MTA-STS uses them: lower-case A-labels without a trailing dot.
//!
//! RFC 8461 §3.2 and §4.1 compare names as A-labels ([RFC 5891]); RFC 6125 §6.4.1 makes the
//! comparison ASCII case-insensitive, and §6.4.2 requires U-labels to be converted first.
//! [`Domain`] holds a name in that canonical form, so equality is plain string equality.

use compact_str::CompactString;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// Longest domain name in presentation form without the trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input is empty (or only a dot).
    #[error("the domain name is empty")]
    Empty,
    /// Two dots in a row, or a leading dot.
    #[error("the domain name `{0}` has an empty label (a leading dot or two dots in a row)")]
    EmptyLabel(String),
    /// A label longer than 63 octets.
    #[error("a label of `{0}` is longer than 63 characters")]
    LabelTooLong(String),
    /// A name longer than 253 octets.
    #[error("the domain name is longer than 253 characters")]
    TooLong,
    /// A character other than letters, digits and inner hyphens (RFC 5321 §4.1.2 `Domain`).
    #[error(
        "`{name}` is not a host name: `{character}` is not allowed (only letters, digits and inner hyphens)"
    )]
    InvalidCharacter {
        /// The name as given.
        name: String,
        /// The first offending character.
        character: char,
    },
    /// A label that starts or ends with a hyphen.
    #[error("a label of `{0}` starts or ends with a hyphen")]
    HyphenAtEdge(String),
    /// An internationalised name that IDNA (UTS #46) rejects, or a malformed `xn--` label.
    #[error("`{0}` is not a valid internationalised domain name")]
    Idna(String),
}

/// A domain name in canonical form: ASCII lower case, A-labels, no trailing dot, syntax of
/// RFC 5321 §4.1.2 `Domain` (letters, digits, inner hyphens).
///
/// ```
/// use mta_sts::Domain;
/// let d: Domain = "Example.COM.".parse().unwrap();
/// assert_eq!(d.as_str(), "example.com");
/// assert_eq!(d.policy_host(), "mta-sts.example.com");
/// let idn: Domain = "bücher.example".parse().unwrap();
/// assert_eq!(idn.as_str(), "xn--bcher-kva.example");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Domain(CompactString);

impl Domain {
    /// Parses a name, accepting U-labels, any case and one trailing dot.
    pub fn parse(input: &str) -> Result<Domain, DomainError> {
        let name = input.strip_suffix('.').unwrap_or(input);
        // Inline up to 24 bytes, so most names need no allocation (a daemon keys its cache
        // of 100,000 policies by them).
        Ok(Domain(CompactString::from(to_a_labels(name)?)))
    }

    /// The canonical name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Policy Host, `mta-sts.<domain>` (RFC 8461 §3.2).
    pub fn policy_host(&self) -> String {
        format!("mta-sts.{}", self.0)
    }

    /// The policy URL, `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 §3.2).
    pub fn policy_url(&self) -> String {
        format!("https://mta-sts.{}/.well-known/mta-sts.txt", self.0)
    }

    /// The owner name of the MTA-STS TXT record, `_mta-sts.<domain>` (RFC 8461 §3.1).
    pub fn sts_record_name(&self) -> String {
        format!("_mta-sts.{}", self.0)
    }

    /// The owner name of the TLS-RPT TXT record, `_smtp._tls.<domain>` (RFC 8460 §3).
    pub fn tlsrpt_record_name(&self) -> String {
        format!("_smtp._tls.{}", self.0)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Domain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Converts a name without trailing dot to lower-case A-labels and checks the syntax of
/// RFC 5321 §4.1.2 `Domain`. ASCII input that is already canonical is returned borrowed.
pub(crate) fn to_a_labels(name: &str) -> Result<Cow<'_, str>, DomainError> {
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    match scan_ldh(name.as_bytes()) {
        Some(scan) if scan.a_label => {
            // An A-label must decode; UTS #46 also lower-cases it for us.
            idna::domain_to_ascii_strict(name)
                .map(Cow::Owned)
                .map_err(|_| DomainError::Idna(name.to_owned()))
        }
        Some(scan) if scan.upper => Ok(Cow::Owned(name.to_ascii_lowercase())),
        Some(_) => Ok(Cow::Borrowed(name)),
        None if !name.is_ascii() => {
            // RFC 6125 §6.4.2: U-labels are converted to A-labels before comparison.
            let ascii = idna::domain_to_ascii_strict(name)
                .map_err(|_| DomainError::Idna(name.to_owned()))?;
            check_ldh(&ascii)?;
            Ok(Cow::Owned(ascii))
        }
        // Not LDH: let the label-by-label check say exactly why.
        None => check_ldh(name).map(|()| Cow::Borrowed(name)),
    }
}

/// What one pass over a valid LDH name learnt about it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LdhScan {
    /// Some letter is upper case.
    pub(crate) upper: bool,
    /// Some label starts with `xn--`.
    pub(crate) a_label: bool,
    /// Only digits and dots: it may be an IPv4 address.
    pub(crate) numeric: bool,
}

/// One pass over `name`: `Some` when it is a valid LDH name within the DNS length limits
/// (the fast path of [`to_a_labels`]), `None` otherwise.
pub(crate) fn scan_ldh(name: &[u8]) -> Option<LdhScan> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut seen = 0u8;
    let mut label_start = 0;
    for (i, &b) in name.iter().enumerate() {
        let class = LDH_CLASS[usize::from(b)];
        seen |= class;
        if class & (DOT | HYPHEN | INVALID) == 0 {
            continue; // a letter or digit: the common case
        }
        if class == INVALID || (class == HYPHEN && i == label_start) {
            return None;
        }
        if class == DOT {
            if !is_label_end(name, label_start, i) {
                return None;
            }
            if is_a_label(&name[label_start..i]) {
                seen |= A_LABEL;
            }
            label_start = i + 1;
        }
    }
    if !is_label_end(name, label_start, name.len()) {
        return None;
    }
    if is_a_label(&name[label_start..]) {
        seen |= A_LABEL;
    }
    Some(LdhScan {
        upper: seen & UPPER != 0,
        a_label: seen & A_LABEL != 0,
        numeric: seen & (LETTER | HYPHEN) == 0,
    })
}

/// Whether the label `name[start..end]` is non-empty, not too long and ends well.
fn is_label_end(name: &[u8], start: usize, end: usize) -> bool {
    end > start && end - start <= MAX_LABEL_LEN && name[end - 1] != b'-'
}

const DIGIT: u8 = 1;
const LETTER: u8 = 2;
const UPPER: u8 = 4;
const HYPHEN: u8 = 8;
const DOT: u8 = 16;
const A_LABEL: u8 = 32;
const INVALID: u8 = 64;

/// Byte classes of an LDH name.
static LDH_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'0'..=b'9' => DIGIT,
            b'a'..=b'z' => LETTER,
            b'A'..=b'Z' => LETTER | UPPER,
            b'-' => HYPHEN,
            b'.' => DOT,
            _ => INVALID,
        };
        b += 1;
    }
    table
};

fn is_a_label(label: &[u8]) -> bool {
    label.len() >= 4 && label[..4].eq_ignore_ascii_case(b"xn--")
}

/// Checks RFC 5321 §4.1.2 `Domain` syntax plus the DNS length limits.
fn check_ldh(name: &str) -> Result<(), DomainError> {
    if name.len() > MAX_NAME_LEN {
        return Err(DomainError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel(name.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong(name.to_owned()));
        }
        if let Some(character) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(DomainError::InvalidCharacter {
                name: name.to_owned(),
                character,
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::HyphenAtEdge(name.to_owned()));
        }
    }
    Ok(())
}

/// Whether `label` is one LDH label (letters, digits, inner hyphens).
pub(crate) fn is_ldh_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form() {
        assert_eq!(
            Domain::parse("MX.Example.com.").unwrap().as_str(),
            "mx.example.com"
        );
        assert_eq!(
            Domain::parse("ñaca.com").unwrap().as_str(),
            "xn--aca-6ma.com"
        );
        assert_eq!(
            Domain::parse("XN--ACA-6MA.com").unwrap().as_str(),
            "xn--aca-6ma.com"
        );
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(Domain::parse(""), Err(DomainError::Empty));
        assert_eq!(Domain::parse("."), Err(DomainError::Empty));
        assert!(matches!(
            Domain::parse(".example.com"),
            Err(DomainError::EmptyLabel(_))
        ));
        assert!(matches!(
            Domain::parse("a..b"),
            Err(DomainError::EmptyLabel(_))
        ));
        assert!(matches!(
            Domain::parse("_mta-sts.example.com"),
            Err(DomainError::InvalidCharacter { character: '_', .. })
        ));
        assert!(matches!(
            Domain::parse("-a.example"),
            Err(DomainError::HyphenAtEdge(_))
        ));
        assert!(matches!(
            Domain::parse(&"a".repeat(64)),
            Err(DomainError::LabelTooLong(_))
        ));
        assert_eq!(Domain::parse(&"a.".repeat(128)), Err(DomainError::TooLong));
        assert!(matches!(
            Domain::parse("xn--zz.example"),
            Err(DomainError::Idna(_))
        ));
        assert!(matches!(
            Domain::parse("[1.2.3.4]"),
            Err(DomainError::InvalidCharacter { .. })
        ));
    }
}
