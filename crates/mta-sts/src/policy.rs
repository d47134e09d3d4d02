//! The policy file served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (RFC 8461 §3.2): parsing with diagnostics, the canonical form, and MX checks.
//!
//! The parser follows the ABNF of RFC 8461 §3.2 and reports every deviation as a
//! [`Diagnostic`]. Deviations that are common in the wild and leave the meaning clear
//! (blank lines, a BOM, leading whitespace, comment lines, U-label `mx` values) are
//! *warnings* with `breaks_abnf` set: this toolkit applies such a policy, since honouring
//! the domain's intent beats dropping it over a blank line, while [`PolicyLint::is_strict_valid`]
//! gives the exact ABNF verdict that strict senders (mox, postfix-tlspol) apply. Anything
//! that leaves the meaning unclear is an *error* and the policy is unusable. See docs/design.md §2.

use std::fmt;

use crate::diagnostic::{Diagnostic, Verdict};
use crate::pattern::{MxPattern, PatternNote};
use crate::record::is_ext_name;

/// The largest `max_age` a sender honours, in seconds (RFC 8461 §3.2: "maximum value of
/// 31557600").
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// The only policy version defined (RFC 8461 §3.2).
pub const VERSION: &str = "STSv1";

/// What a sender does when validation fails (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Mode {
    /// Do not deliver to hosts that fail MX matching or certificate validation, or that lack
    /// STARTTLS.
    Enforce,
    /// Report failures but deliver as if there were no policy.
    Testing,
    /// Treat the domain as having no active policy.
    None,
}

impl Mode {
    /// The value as written in a policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }

    /// Parses `enforce`, `testing` or `none`, case-sensitively (ABNF `%s`).
    pub fn parse(value: &str) -> Option<Mode> {
        match value {
            "enforce" => Some(Mode::Enforce),
            "testing" => Some(Mode::Testing),
            "none" => Some(Mode::None),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A usable MTA-STS policy.
///
/// ```
/// use mta_sts::{Mode, Policy};
/// let policy = Policy::parse(b"version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 604800\n").unwrap();
/// assert_eq!(policy.mode, Mode::Enforce);
/// assert!(policy.allows_mx("mx1.example.com"));
/// assert_eq!(policy.to_string(), "version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 604800\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `enforce`, `testing` or `none`.
    pub mode: Mode,
    /// `max_age` as written, in seconds; see [`Policy::effective_max_age`].
    pub max_age: u64,
    /// The `mx` patterns in policy order (duplicates removed).
    pub mx: Vec<MxPattern>,
    /// Fields this version does not define, in order, first occurrence of each name.
    pub extensions: Vec<(String, String)>,
}

impl Policy {
    /// Parses a policy body, returning the policy if it is usable.
    ///
    /// Use [`lint`] to see warnings and every error.
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        let lint = lint(body);
        match lint.policy {
            Some(policy) => Ok(policy),
            None => Err(PolicyError {
                diagnostics: lint.diagnostics,
            }),
        }
    }

    /// `max_age` clamped to [`MAX_AGE_LIMIT`]: how long a sender may cache the policy.
    pub fn effective_max_age(&self) -> u64 {
        self.max_age.min(MAX_AGE_LIMIT)
    }

    /// Whether some `mx` pattern matches the MX host name (RFC 8461 §4.1), whatever the mode.
    pub fn matches_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }

    /// Whether a sender applying this policy may deliver to the MX host as far as MX matching
    /// goes: always under `testing` and `none`, only to matching hosts under `enforce`
    /// (RFC 8461 §5).
    pub fn allows_mx(&self, host: &str) -> bool {
        self.mode != Mode::Enforce || self.matches_mx(host)
    }

    /// The canonical lines, without line ends: `version`, `mode`, each `mx`, `max_age`, then
    /// the extensions.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(3 + self.mx.len() + self.extensions.len());
        lines.push(format!("version: {VERSION}"));
        lines.push(format!("mode: {}", self.mode));
        lines.extend(self.mx.iter().map(|mx| format!("mx: {mx}")));
        lines.push(format!("max_age: {}", self.max_age));
        lines.extend(self.extensions.iter().map(|(k, v)| format!("{k}: {v}")));
        lines
    }
}

/// The canonical form: CRLF line ends (RFC 8461 §3.2 prose), `version`, `mode`, `mx` lines,
/// `max_age`, extensions.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            write!(f, "{line}\r\n")?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("version", VERSION)?;
        map.serialize_entry("mode", &self.mode)?;
        map.serialize_entry("max_age", &self.max_age)?;
        map.serialize_entry("effective_max_age", &self.effective_max_age())?;
        map.serialize_entry("mx", &self.mx)?;
        map.serialize_entry("extensions", &crate::record::OrderedPairs(&self.extensions))?;
        map.end()
    }
}

/// A policy body that is not usable, with every diagnostic found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", first_error(.diagnostics))]
pub struct PolicyError {
    /// All diagnostics; at least one is an error.
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyError {
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

fn first_error(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .find(|d| d.is_error())
        .map(ToString::to_string)
        .unwrap_or_else(|| "the policy is invalid".to_owned())
}

/// The result of [`lint`]: the policy when usable, and everything noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLint {
    /// The policy, present exactly when no diagnostic is an error.
    pub policy: Option<Policy>,
    /// Errors and warnings in line order, whole-file findings last.
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyLint {
    /// No error: a sender following docs/design.md §2 applies the policy.
    pub fn is_valid(&self) -> bool {
        self.policy.is_some()
    }

    /// The exact RFC 8461 verdict: no error and no deviation from the ABNF.
    pub fn is_strict_valid(&self) -> bool {
        self.is_valid() && self.diagnostics.is_strict_valid()
    }
}

/// Parses a policy body and reports every diagnostic.
///
/// ```
/// let lint = mta_sts::policy::lint(b"version: STSv1\n\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n");
/// assert!(lint.is_valid());
/// assert!(!lint.is_strict_valid());
/// assert_eq!(lint.diagnostics[0].code, "blank-line");
/// assert_eq!(lint.diagnostics[0].line, Some(2));
/// ```
pub fn lint(body: &[u8]) -> PolicyLint {
    let mut parser = Parser::default();
    parser.run(body);
    parser.finish()
}

/// The lines of a policy body as RFC 8460 §4.3 `policy-string` wants them: split at LF or
/// CRLF, without line ends, without the empty string after a final line end.
pub fn policy_strings(body: &str) -> Vec<&str> {
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let body = body.strip_suffix('\n').unwrap_or(body);
    if body.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect()
}

/// Keys RFC 8461 defines.
const KNOWN_KEYS: [&str; 4] = ["version", "mode", "mx", "max_age"];

#[derive(Default)]
struct Parser {
    diagnostics: Vec<Diagnostic>,
    trailing: Vec<Diagnostic>,
    version_seen: bool,
    mode: Option<(Mode, u32)>,
    max_age: Option<u64>,
    mx: Vec<MxPattern>,
    extensions: Vec<(String, String)>,
    /// A line that probably meant a known key, for did-you-mean hints: (key, line, what).
    near_misses: Vec<(&'static str, u32, String)>,
    failed_keys: Vec<&'static str>,
}

impl Parser {
    fn run(&mut self, body: &[u8]) {
        if body.is_empty() {
            self.trailing.push(Diagnostic::error(
                "empty-body",
                None,
                "the policy is empty: serve the lines `version: STSv1`, `mode: …`, `mx: …` and `max_age: …`",
            ));
            return;
        }
        let text = match std::str::from_utf8(body) {
            Ok(text) => text,
            Err(e) => {
                let line = line_of(body, e.valid_up_to());
                let utf16 = body.starts_with(&[0xff, 0xfe]) || body.starts_with(&[0xfe, 0xff]);
                self.trailing.push(Diagnostic::error(
                    "not-utf8",
                    Some(line),
                    if utf16 {
                        "the policy is UTF-16 text: save the file as UTF-8 (or plain ASCII)"
                    } else {
                        "the policy is not UTF-8 text: save the file as UTF-8 (or plain ASCII)"
                    },
                ));
                return;
            }
        };
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => {
                self.diagnostics.push(Diagnostic::deviation(
                    "bom",
                    Some(1),
                    "the file starts with a UTF-8 byte order mark: save it without BOM; strict senders reject it",
                ));
                rest
            }
            None => text,
        };
        // RFC 8461 §3.2: sts-policy-term = LF / CRLF; one optional final terminator.
        let mut rest = text.strip_suffix('\n').unwrap_or(text);
        let mut number = 0u32;
        loop {
            number = number.saturating_add(1);
            let (line, next) = match rest.bytes().position(|b| b == b'\n') {
                Some(at) => (&rest[..at], Some(&rest[at + 1..])),
                None => (rest, None),
            };
            self.line(number, line.strip_suffix('\r').unwrap_or(line));
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }

    fn line(&mut self, number: u32, raw: &str) {
        let mut line = raw;
        if line.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            self.diagnostics.push(Diagnostic::deviation(
                "blank-line",
                Some(number),
                if raw.is_empty() {
                    "blank line: remove it; the RFC grammar allows no empty lines and strict senders reject the policy"
                } else {
                    "line of only whitespace: remove it; the RFC grammar allows no empty lines and strict senders reject the policy"
                },
            ));
            return;
        }
        if line.ends_with('\r') {
            self.diagnostics.push(Diagnostic::deviation(
                "stray-cr",
                Some(number),
                "the line ends with a carriage return not followed by a line feed: end lines with CRLF or LF",
            ));
            line = line.trim_end_matches('\r');
        }
        if line.starts_with(is_wsp) {
            self.diagnostics.push(Diagnostic::deviation(
                "leading-whitespace",
                Some(number),
                "the line starts with whitespace: remove it; strict senders read such a line as a continuation and reject the policy",
            ));
            line = line.trim_start_matches(is_wsp);
        }
        if line.starts_with('#') {
            self.diagnostics.push(Diagnostic::deviation(
                "comment",
                Some(number),
                "policy files have no comments: remove this line; strict senders reject the policy",
            ));
            return;
        }
        let Some((key, value)) = split_colon(line) else {
            self.note_near_miss_without_colon(number, line);
            self.diagnostics.push(Diagnostic::deviation(
                "invalid-line",
                Some(number),
                format!(
                    "`{}` is not a `key: value` field: remove the line or add the colon",
                    abbreviate(line)
                ),
            ));
            return;
        };
        // sts-policy-field-delim = ":" *WSP, and each field may be followed by *WSP.
        let value = value.trim_matches(is_wsp);
        match key {
            "version" => self.version(number, value),
            "mode" => self.mode(number, value),
            "max_age" => self.max_age(number, value),
            "mx" => self.mx(number, value),
            _ => self.extension(number, key, value),
        }
    }

    fn duplicate(&mut self, number: u32, key: &str, value: &str) {
        // RFC 8461 §3.2: "If any non-repeated field ... is duplicated, all entries except for
        // the first SHALL be ignored."
        self.diagnostics.push(Diagnostic::advice(
            "duplicate-field",
            Some(number),
            format!("`{key}` appears again (`{}`); senders ignore every `{key}` line but the first: remove this one", abbreviate(value)),
        ));
    }

    fn version(&mut self, number: u32, value: &str) {
        if self.version_seen {
            return self.duplicate(number, "version", value);
        }
        self.version_seen = true;
        if value != "STSv1" {
            self.failed_keys.push("version");
            let hint = if value.eq_ignore_ascii_case("STSv1") {
                " (values are case-sensitive)"
            } else {
                ""
            };
            self.diagnostics.push(Diagnostic::error(
                "invalid-version",
                Some(number),
                format!(
                    "version is `{}`; the only version is `STSv1`{hint}: write `version: STSv1`",
                    abbreviate(value)
                ),
            ));
        }
    }

    fn mode(&mut self, number: u32, value: &str) {
        if self.mode.is_some() || self.failed_keys.contains(&"mode") {
            return self.duplicate(number, "mode", value);
        }
        match Mode::parse(value) {
            Some(mode) => self.mode = Some((mode, number)),
            None => {
                self.failed_keys.push("mode");
                let hint = match closest_mode(value) {
                    Some(mode) => format!(": did you mean `mode: {mode}`?"),
                    None => ": write `mode: enforce`, `mode: testing` or `mode: none`".to_owned(),
                };
                self.diagnostics.push(Diagnostic::error(
                    "unknown-mode",
                    Some(number),
                    format!(
                        "mode `{}` is not one of enforce, testing, none (case-sensitive){hint}",
                        abbreviate(value)
                    ),
                ));
            }
        }
    }

    fn max_age(&mut self, number: u32, value: &str) {
        if self.max_age.is_some() || self.failed_keys.contains(&"max_age") {
            return self.duplicate(number, "max_age", value);
        }
        // sts-policy-max-age-value = 1*10(DIGIT)
        if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
            self.failed_keys.push("max_age");
            let hint = if value.len() > 10 && value.bytes().all(|b| b.is_ascii_digit()) {
                format!("it has more than 10 digits; the largest useful value is {MAX_AGE_LIMIT}")
            } else {
                "write whole seconds, digits only, e.g. `max_age: 604800` for a week".to_owned()
            };
            self.diagnostics.push(Diagnostic::error(
                "invalid-max-age",
                Some(number),
                format!(
                    "max_age `{}` is not a number of seconds: {hint}",
                    abbreviate(value)
                ),
            ));
            return;
        }
        // Ten digits always fit in a u64.
        let seconds = value
            .bytes()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        if seconds > MAX_AGE_LIMIT {
            // Erratum 7282: grammatical but above the stated maximum; senders clamp.
            self.diagnostics.push(Diagnostic::advice(
                "max-age-above-limit",
                Some(number),
                format!(
                    "max_age {seconds} is above the maximum of {MAX_AGE_LIMIT} (a year): senders cache for {MAX_AGE_LIMIT} seconds at most and some reject the policy; write `max_age: {MAX_AGE_LIMIT}`"
                ),
            ));
        }
        self.max_age = Some(seconds);
    }

    fn mx(&mut self, number: u32, value: &str) {
        match MxPattern::parse_noted(value) {
            Ok((pattern, note)) => {
                match note {
                    Some(PatternNote::ConvertedULabel) => self.diagnostics.push(Diagnostic::deviation(
                        "mx-u-label",
                        Some(number),
                        format!("`{value}` is a U-label; RFC 8461 §3.2 requires the A-label: write `mx: {pattern}`"),
                    )),
                    Some(PatternNote::IpAddress) => self.diagnostics.push(Diagnostic::advice(
                        "mx-ip-address",
                        Some(number),
                        format!("`{value}` looks like an IP address; mx patterns match MX host names, never addresses: give the MX host name"),
                    )),
                    None => {}
                }
                if self.mx.contains(&pattern) {
                    self.diagnostics.push(Diagnostic::advice(
                        "duplicate-mx",
                        Some(number),
                        format!("`mx: {pattern}` is listed twice: remove this line"),
                    ));
                } else {
                    self.mx.push(pattern);
                }
            }
            Err(error) => {
                self.failed_keys.push("mx");
                self.diagnostics.push(Diagnostic::error(
                    "invalid-mx",
                    Some(number),
                    error.to_string(),
                ));
            }
        }
    }

    fn extension(&mut self, number: u32, key: &str, value: &str) {
        if let Some(known) = misspelling_of(key) {
            self.near_misses
                .push((known, number, format!("`{}`", abbreviate(key))));
            self.diagnostics.push(Diagnostic::advice(
                "misspelled-key",
                Some(number),
                format!("`{key}` is not the field `{known}` (field names are case-sensitive), so senders ignore this line: write `{known}:`"),
            ));
            return;
        }
        if let Some(known) = one_edit_from_known(key) {
            // Probably a typo, but it may be a real extension: keep it as one (RFC 8461 §3.2
            // "unknown fields ... MUST be ignored") and only advise.
            self.near_misses
                .push((known, number, format!("`{}`", abbreviate(key))));
            self.diagnostics.push(Diagnostic::advice(
                "misspelled-key",
                Some(number),
                format!("`{}` is not a field of RFC 8461, so senders ignore this line as an unknown extension: did you mean `{known}:`?", abbreviate(key)),
            ));
        }
        if !is_ext_name(key) {
            self.diagnostics.push(Diagnostic::deviation(
                "invalid-line",
                Some(number),
                format!("`{}` is not a valid field name (letters, digits, `_`, `-`, `.`; at most 32): remove the line", abbreviate(key)),
            ));
            return;
        }
        if !is_ext_value(value) {
            self.diagnostics.push(Diagnostic::deviation(
                "invalid-line",
                Some(number),
                format!("the value of `{key}` is empty or has control characters: remove the line or fix the value"),
            ));
            return;
        }
        if self.extensions.iter().any(|(k, _)| k == key) {
            return self.duplicate(number, key, value);
        }
        self.extensions.push((key.to_owned(), value.to_owned()));
    }

    fn note_near_miss_without_colon(&mut self, number: u32, line: &str) {
        let word = line.split(is_wsp).next().unwrap_or(line);
        if let Some(known) = KNOWN_KEYS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(word))
            .copied()
            .or_else(|| misspelling_of(word))
            .or_else(|| one_edit_from_known(word))
        {
            self.near_misses.push((
                known,
                number,
                format!("`{}` lacks the colon", abbreviate(line)),
            ));
        }
    }

    fn missing(&mut self, key: &'static str, code: &'static str, what: &str) {
        let mut message = format!("the policy has no `{key}` field: {what}");
        if let Some((_, line, how)) = self.near_misses.iter().find(|(k, _, _)| *k == key) {
            message.push_str(&format!(" (did you mean line {line}? {how})"));
        }
        self.trailing.push(Diagnostic::error(code, None, message));
    }

    fn finish(mut self) -> PolicyLint {
        if self.trailing.is_empty() {
            // RFC 8461 §3.2 ABNF: version, mode and max_age "required once"; mx "required at
            // least once, except when mode is none".
            if !self.version_seen {
                self.missing("version", "missing-version", "add `version: STSv1`");
            }
            if self.mode.is_none() && !self.failed_keys.contains(&"mode") {
                self.missing(
                    "mode",
                    "missing-mode",
                    "add `mode: testing` (or enforce, or none)",
                );
            }
            if self.max_age.is_none() && !self.failed_keys.contains(&"max_age") {
                self.missing(
                    "max_age",
                    "missing-max-age",
                    "add e.g. `max_age: 604800` (a week)",
                );
            }
            if let Some((mode @ (Mode::Enforce | Mode::Testing), _)) = self.mode
                && self.mx.is_empty()
                && !self.failed_keys.contains(&"mx")
            {
                self.missing(
                    "mx",
                    "missing-mx",
                    &format!("mode {mode} needs at least one `mx:` line naming the MX hosts"),
                );
            }
        }
        let mut diagnostics = self.diagnostics;
        diagnostics.append(&mut self.trailing);
        let policy = if diagnostics.iter().any(Diagnostic::is_error) {
            None
        } else {
            match (self.mode, self.max_age) {
                (Some((mode, _)), Some(max_age)) => {
                    // Policies are cached by the hundred thousand: no spare capacity.
                    self.mx.shrink_to_fit();
                    self.extensions.shrink_to_fit();
                    Some(Policy {
                        mode,
                        max_age,
                        mx: self.mx,
                        extensions: self.extensions,
                    })
                }
                _ => None,
            }
        };
        PolicyLint {
            policy,
            diagnostics,
        }
    }
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `line.split_once(':')` without the generic pattern machinery (hot path).
fn split_colon(line: &str) -> Option<(&str, &str)> {
    let at = line.bytes().position(|b| b == b':')?;
    Some((&line[..at], &line[at + 1..]))
}

/// `sts-policy-ext-value`: visible characters or UTF-8, inner spaces, no CTLs. The caller has
/// already trimmed surrounding whitespace, so only inner characters remain to check.
fn is_ext_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c == ' ' || (!c.is_control() && c != '\t'))
}

/// A key that is probably meant as a known one: wrong case or a common misspelling.
fn misspelling_of(key: &str) -> Option<&'static str> {
    if let Some(known) = KNOWN_KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some(known);
    }
    let folded: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match folded.as_str() {
        "maxage" => Some("max_age"),
        "mxs" | "mxhost" => Some("mx"),
        "versions" => Some("version"),
        "modes" => Some("mode"),
        _ => None,
    }
}

/// A key one typo away from a known one, for a did-you-mean hint.
fn one_edit_from_known(key: &str) -> Option<&'static str> {
    // One edit (insertion, deletion, substitution or swap of neighbours) away from a known
    // key: `nmx`, `mod`, `max-age`, `verison`. Keys of one character are too short to guess.
    let lower = key.to_ascii_lowercase();
    if lower.len() < 2 {
        return None;
    }
    KNOWN_KEYS
        .iter()
        .find(|known| one_edit_apart(lower.as_bytes(), known.as_bytes()))
        .copied()
}

/// Whether `a` becomes `b` by one insertion, deletion, substitution or transposition of
/// neighbouring bytes (optimal string alignment distance 1).
fn one_edit_apart(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        if prefix == short.len() {
            return false; // equal
        }
        let (sa, sb) = (&short[prefix + 1..], &long[prefix + 1..]);
        // substitution, or a swap of two neighbours
        sa == sb
            || (prefix + 1 < short.len()
                && short[prefix] == long[prefix + 1]
                && short[prefix + 1] == long[prefix]
                && short[prefix + 2..] == long[prefix + 2..])
    } else {
        // one byte inserted into `short` at `prefix`
        short[prefix..] == long[prefix + 1..]
    }
}

fn closest_mode(value: &str) -> Option<Mode> {
    let lower = value.to_ascii_lowercase();
    [Mode::Enforce, Mode::Testing, Mode::None]
        .into_iter()
        .find(|mode| {
            lower == mode.as_str()
                || lower.starts_with(mode.as_str())
                || (lower.len() >= 4 && mode.as_str().starts_with(&lower))
        })
}

/// The 1-based line number of byte `offset`.
fn line_of(body: &[u8], offset: usize) -> u32 {
    let newlines = body[..offset.min(body.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

/// Shortens user text for messages.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        return text.escape_debug().to_string();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{}…", head.escape_debug())
}
