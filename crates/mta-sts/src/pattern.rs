//! `mx` patterns of a policy and how MX host names match them (RFC 8461 §3.2, §4.1).

use compact_str::CompactString;
use std::fmt;
use std::net::Ipv4Addr;

use crate::domain::{self, DomainError};

/// One `mx` value of a policy: a fully specified name (`mail.example.com`) or a wildcard
/// suffix (`*.example.net`), held as lower-case A-labels.
///
/// ```
/// use mta_sts::MxPattern;
/// let p = MxPattern::parse("*.example.com").unwrap();
/// assert!(p.matches("mail.example.com"));
/// assert!(p.matches("MAIL.example.com."));
/// assert!(!p.matches("example.com"));
/// assert!(!p.matches("foo.bar.example.com"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MxPattern {
    /// The pattern as written, `*.` included, in lower-case A-labels. Inline up to 24 bytes
    /// (most MX patterns): no allocation per pattern, which matters when a daemon caches
    /// 100,000 policies.
    text: CompactString,
}

/// Why an `mx` value is not a valid pattern (`sts-policy-mx-value = ["*."] Domain`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// No value at all.
    #[error(
        "the mx value is empty or a lone dot: write one host name, e.g. `mx: mail.example.com`"
    )]
    Empty,
    /// Several names on one line (RFC 8461 §3.2: each MX MUST have its own `mx:` line).
    /// Only given when every part of the value is itself a valid pattern.
    #[error("`{0}` lists several hosts on one line: write each on its own `mx:` line")]
    List(String),
    /// A `#` comment after (or instead of) the host name; policy files have no comments.
    #[error(
        "`{value}` carries a `#` comment: policy files have no comments, so the comment is read as part of the host name; {fix}",
        fix = comment_fix(.host.as_deref())
    )]
    InlineComment {
        /// The value as written.
        value: String,
        /// The text before `#`, when it is a valid pattern on its own.
        host: Option<String>,
    },
    /// An MX priority pasted in front of the host name (`Priority 5: alt1.example.com`).
    #[error(
        "`{value}` holds an MX priority: a policy lists host names only, without priorities; write `mx: {host}`"
    )]
    Priority {
        /// The value as written.
        value: String,
        /// The host name found after the priority.
        host: String,
    },
    /// Words, spaces or punctuation that make up no host name (`not a hostname!`).
    #[error(
        "`{0}` is not a host name (a host name has no spaces; only letters, digits, `-` and `.`): give one MX host name, e.g. `mx: mail.example.com`"
    )]
    NotOneHostName(String),
    /// A trailing dot (`mail.example.com.`).
    #[error("`{0}` ends with a dot: remove it (write `{fixed}`)", fixed = .0.trim_end_matches('.'))]
    TrailingDot(String),
    /// A leading dot, often meant as a wildcard (`.example.com`).
    #[error("`{0}` starts with a dot: a wildcard is written `*{0}`")]
    LeadingDot(String),
    /// A `*` that is not the whole leftmost label.
    #[error(
        "`{0}` has a misplaced `*`: a wildcard may only be the whole leftmost label, as in `*.example.com`"
    )]
    MisplacedWildcard(String),
    /// A port, address literal or URL instead of a host name.
    #[error(
        "`{0}` is not a host name: give the MX host name only, without port, brackets or scheme"
    )]
    NotAHostName(String),
    /// The name part breaks RFC 5321 `Domain` syntax.
    #[error("`{value}` is not a valid mx pattern: {reason}")]
    Domain {
        /// The value as written.
        value: String,
        /// What is wrong with the name part.
        reason: DomainError,
    },
}

/// Something valid but worth telling about a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternNote {
    /// The value was a U-label and was converted to its A-label (RFC 8461 §3.2 MUST use A-labels).
    ConvertedULabel,
    /// The value looks like an IPv4 address; it is grammatical but never matches an MX name.
    IpAddress,
}

impl MxPattern {
    /// Parses an `mx` value. U-labels are converted to A-labels; see [`MxPattern::parse_noted`]
    /// to learn whether that happened.
    pub fn parse(value: &str) -> Result<MxPattern, PatternError> {
        Self::parse_noted(value).map(|(pattern, _)| pattern)
    }

    /// Parses an `mx` value and says whether anything about it deserves a warning.
    pub fn parse_noted(value: &str) -> Result<(MxPattern, Option<PatternNote>), PatternError> {
        let (wildcard, name) = match value.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        // Fast path: a plain LDH name, checked in one pass.
        if let Some(scan) = domain::scan_ldh(name.as_bytes())
            && !scan.a_label
        {
            let note = (scan.numeric && name.parse::<Ipv4Addr>().is_ok())
                .then_some(PatternNote::IpAddress);
            let mut text = CompactString::from(value);
            if scan.upper {
                text.as_mut_str().make_ascii_lowercase();
            }
            return Ok((MxPattern { text }, note));
        }
        Self::parse_slow(value, wildcard, name)
    }

    /// Everything but a plain LDH name: A-labels, U-labels, and errors with their reason.
    fn parse_slow(
        value: &str,
        wildcard: bool,
        name: &str,
    ) -> Result<(MxPattern, Option<PatternNote>), PatternError> {
        if value.is_empty() || value == "." {
            return Err(PatternError::Empty);
        }
        if value.contains('#') {
            return Err(inline_comment(value));
        }
        if value.contains([',', ' ', '\t', ';']) {
            return Err(several_words(value));
        }
        if value.contains([':', '[', ']', '/', '@']) {
            return Err(PatternError::NotAHostName(value.to_owned()));
        }
        if value.ends_with('.') && value.len() > 1 {
            return Err(PatternError::TrailingDot(value.to_owned()));
        }
        // Suggest the wildcard only when `*` + value is itself a valid pattern: `..--` is
        // no wildcard gone wrong, and `*..--` would be invalid advice.
        if value.starts_with('.') && MxPattern::parse(&format!("*{value}")).is_ok() {
            return Err(PatternError::LeadingDot(value.to_owned()));
        }
        if name.contains('*') {
            return Err(PatternError::MisplacedWildcard(value.to_owned()));
        }
        let ascii = domain::to_a_labels(name).map_err(|reason| PatternError::Domain {
            value: value.to_owned(),
            reason,
        })?;
        let note = if !name.is_ascii() {
            Some(PatternNote::ConvertedULabel)
        } else if ascii.parse::<Ipv4Addr>().is_ok() {
            Some(PatternNote::IpAddress)
        } else {
            None
        };
        let text = if wildcard {
            let mut text = CompactString::const_new("*.");
            text.push_str(&ascii);
            text
        } else {
            CompactString::from(ascii)
        };
        Ok((MxPattern { text }, note))
    }

    /// Whether the pattern is a wildcard (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.text.starts_with("*.")
    }

    /// The name after `*.` for a wildcard, the whole name otherwise.
    pub fn base(&self) -> &str {
        self.text.strip_prefix("*.").unwrap_or(&self.text)
    }

    /// The pattern in Postfix `match=` syntax: `*.example.com` becomes `.example.com`.
    ///
    /// Note that Postfix's `.example.com` matches names at any depth below `example.com`,
    /// while RFC 8461 §4.1 allows exactly one label; see docs/design.md §5.
    pub fn to_postfix(&self) -> String {
        self.text.strip_prefix('*').unwrap_or(&self.text).to_owned()
    }

    /// Whether the MX host name `host` matches this pattern (RFC 8461 §4.1).
    ///
    /// `host` is the MX record's name (never a CNAME target or an address). One trailing
    /// dot is ignored, comparison is ASCII case-insensitive, U-labels are converted to
    /// A-labels first (RFC 6125 §6.4.1, §6.4.2). A wildcard matches exactly one extra
    /// leftmost label: `*.example.com` matches `mail.example.com`, but not `example.com`
    /// or `foo.bar.example.com`.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_ascii() {
            return self.matches_ascii(host);
        }
        match domain::to_a_labels(host) {
            Ok(ascii) => self.matches_ascii(&ascii),
            Err(_) => false,
        }
    }

    fn matches_ascii(&self, host: &str) -> bool {
        let Some(base) = self.text.strip_prefix("*.") else {
            return host.eq_ignore_ascii_case(&self.text);
        };
        match host.split_once('.') {
            Some((first, rest)) => domain::is_ldh_label(first) && rest.eq_ignore_ascii_case(base),
            None => false,
        }
    }
}

/// The advice after an inline comment: the host name to keep, when there is a valid one.
fn comment_fix(host: Option<&str>) -> String {
    match host {
        Some(host) => format!("remove the comment: write `mx: {host}`"),
        None => {
            "remove the comment and give one MX host name, e.g. `mx: mail.example.com`".to_owned()
        }
    }
}

/// A value with `#`: RFC 8461 §3.2 has no comments, `#` is not part of `Domain`.
fn inline_comment(value: &str) -> PatternError {
    let before = value
        .split_once('#')
        .map_or(value, |(before, _)| before)
        .trim_matches([' ', '\t']);
    let host = (!before.is_empty())
        .then(|| MxPattern::parse(before).ok())
        .flatten()
        .map(|pattern| pattern.to_string());
    PatternError::InlineComment {
        value: value.to_owned(),
        host,
    }
}

/// A value with spaces, commas or semicolons: a list of hosts only when every part is a
/// valid pattern (RFC 8461 §3.2: one `mx:` line per MX), a pasted MX priority when it is
/// `Priority N: host` (or `N host`), otherwise just not a host name.
fn several_words(value: &str) -> PatternError {
    let words: Vec<&str> = value
        .split([',', ' ', '\t', ';'])
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() >= 2 && words.iter().all(|w| MxPattern::parse(w).is_ok()) {
        return PatternError::List(value.to_owned());
    }
    if let Some((last, front)) = words.split_last()
        && !front.is_empty()
        && front.iter().any(|w| {
            let w = w.trim_end_matches(':');
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit())
        })
        && front.iter().all(|w| {
            let w = w.trim_end_matches(':');
            w.eq_ignore_ascii_case("priority")
                || w.eq_ignore_ascii_case("pref")
                || w.eq_ignore_ascii_case("preference")
                || (!w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        })
        && let Ok(host) = MxPattern::parse(last)
    {
        return PatternError::Priority {
            value: value.to_owned(),
            host: host.to_string(),
        };
    }
    PatternError::NotOneHostName(value.to_owned())
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for MxPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MxPattern::parse(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for MxPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
