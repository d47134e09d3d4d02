//! The `_mta-sts` TXT record (RFC 8461 §3.1): parsing, selection among several TXT
//! records, and the canonical form.
//!
//! ```abnf
//! sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//! sts-field       = sts-id / sts-extension
//! sts-field-delim = *WSP ";" *WSP
//! sts-version     = %s"v=STSv1"
//! sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//! sts-extension   = sts-ext-name "=" sts-ext-value
//! sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//! sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
//! ```
//!
//! The parser is exact: a record that breaks the grammar is invalid, and RFC 8461 §3.1 says
//! senders MUST then assume there is no policy. The only reading beyond the grammar is the
//! duplicate `id` rule (first wins, RFC 8461 §3.2), reported as a warning.

use std::fmt;

use crate::diagnostic::Diagnostic;

/// The version field every record starts with.
pub const VERSION_FIELD: &str = "v=STSv1";

/// A valid `_mta-sts` TXT record.
///
/// ```
/// use mta_sts::StsRecord;
/// let record = StsRecord::parse("v=STSv1; id=20240101T000000Z;").unwrap();
/// assert_eq!(record.id, "20240101T000000Z");
/// assert_eq!(record.to_string(), "v=STSv1; id=20240101T000000Z");
/// assert!(StsRecord::parse("v=STSv1; id=2024-01-01").is_err()); // `-` is not allowed in an id
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StsRecord {
    /// The policy instance id: 1 to 32 letters and digits, compared for equality only.
    pub id: String,
    /// Extension fields in order (ignored by senders, RFC 8461 §3.2).
    pub extensions: Vec<(String, String)>,
}

/// Why a TXT string is not a valid MTA-STS record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A byte outside US-ASCII (RFC 8461 §3.1: records MUST be US-ASCII).
    #[error(
        "the record has a non-ASCII character at position {position}: MTA-STS records must be plain US-ASCII (check for typographic quotes)"
    )]
    NotAscii {
        /// 0-based byte offset.
        position: usize,
    },
    /// The record does not begin with `v=STSv1` followed by `;` (RFC 8461 §3.1).
    #[error(
        "the record does not begin with `v=STSv1;`: start it with exactly `v=STSv1; id=…` ({hint})"
    )]
    NotStsRecord {
        /// What the start looks like instead.
        hint: &'static str,
    },
    /// No `id=` field (RFC 8461 §3.1: the id is required).
    #[error(
        "the record has no `id=` field{hint}: add `id=` with 1 to 32 letters or digits, e.g. `v=STSv1; id=20240101T000000;`"
    )]
    MissingId {
        /// Extra explanation, possibly empty.
        hint: &'static str,
    },
    /// An `id` that is empty, longer than 32 characters, or has characters other than
    /// letters and digits.
    #[error(
        "the id `{id}` is invalid: an id is 1 to 32 letters or digits only (no `-`, `_`, `.` or spaces), e.g. `id=20240101T000000`"
    )]
    InvalidId {
        /// The id as written.
        id: String,
    },
    /// Two delimiters with nothing between (`;;`).
    #[error("the record has an empty field at position {position} (`;;`): remove the extra `;`")]
    EmptyField {
        /// 0-based byte offset.
        position: usize,
    },
    /// A field that is not `name=value` with a valid name and value.
    #[error(
        "`{field}` at position {position} is not a valid `name=value` field: names are letters, digits, `_`, `-`, `.`; values have no spaces, `=` or `;`"
    )]
    InvalidField {
        /// The field text.
        field: String,
        /// 0-based byte offset.
        position: usize,
    },
    /// Two fields without a `;` between them.
    #[error("a `;` is missing before position {position}: separate fields with `;`")]
    MissingDelimiter {
        /// 0-based byte offset.
        position: usize,
    },
    /// Whitespace at the end that is not after a final `;`.
    #[error("the record ends with whitespace: remove it, or end the record with `;`")]
    TrailingWhitespace,
}

impl RecordError {
    /// The stable diagnostic code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::NotAscii { .. } => "not-ascii",
            RecordError::NotStsRecord { .. } => "not-sts-record",
            RecordError::MissingId { .. } => "missing-id",
            RecordError::InvalidId { .. } => "invalid-id",
            RecordError::EmptyField { .. } => "empty-field",
            RecordError::InvalidField { .. } => "invalid-field",
            RecordError::MissingDelimiter { .. } => "missing-delimiter",
            RecordError::TrailingWhitespace => "trailing-whitespace",
        }
    }
}

/// Why a set of TXT records at `_mta-sts.<domain>` yields no policy (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No record begins with `v=STSv1;`.
    #[error("no TXT record begins with `v=STSv1;`: publish `v=STSv1; id=…` at _mta-sts.<domain>")]
    NoRecord,
    /// Several records begin with `v=STSv1;`; senders then assume there is no policy.
    #[error(
        "{0} TXT records begin with `v=STSv1;`: publish exactly one, senders ignore them all otherwise"
    )]
    MultipleRecords(usize),
    /// The one candidate record is invalid.
    #[error(transparent)]
    Invalid(#[from] RecordError),
}

impl StsRecord {
    /// Parses one record (the concatenation of one TXT RR's strings), exactly per the ABNF.
    pub fn parse(text: &str) -> Result<StsRecord, RecordError> {
        lint(text).into_result()
    }

    /// Parses the bytes of one TXT RR (strings already concatenated).
    pub fn parse_bytes(bytes: &[u8]) -> Result<StsRecord, RecordError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => StsRecord::parse(text),
            Err(e) => Err(RecordError::NotAscii {
                position: e.valid_up_to(),
            }),
        }
    }

    /// Chooses the MTA-STS record among the TXT RRs at `_mta-sts.<domain>` (RFC 8461 §3.1):
    /// RRs that do not begin with `v=STSv1` *WSP `;` are discarded; exactly one must remain
    /// and be valid. Each item is one RR with its strings concatenated (see [`concat()`]).
    ///
    /// ```
    /// use mta_sts::record::{StsRecord, SelectError};
    /// let rrs = ["v=spf1 -all", "v=STSv1; id=1;"];
    /// assert_eq!(StsRecord::select(rrs).unwrap().id, "1");
    /// assert_eq!(StsRecord::select(["v=STSv1; id=1;", "v=STSv1; id=2;"]), Err(SelectError::MultipleRecords(2)));
    /// ```
    pub fn select<I, B>(rrs: I) -> Result<StsRecord, SelectError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut found: Option<B> = None;
        let mut count = 0usize;
        for rr in rrs {
            if is_candidate(rr.as_ref()) {
                count += 1;
                if found.is_none() {
                    found = Some(rr);
                }
            }
        }
        match (count, found) {
            (1, Some(rr)) => Ok(StsRecord::parse_bytes(rr.as_ref())?),
            (0, _) | (_, None) => Err(SelectError::NoRecord),
            (n, Some(_)) => Err(SelectError::MultipleRecords(n)),
        }
    }
}

/// Canonical form: `v=STSv1; id=…` then `; name=value` per extension.
impl fmt::Display for StsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION_FIELD}; id={}", self.id)?;
        for (name, value) in &self.extensions {
            write!(f, "; {name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for StsRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("extensions", &OrderedPairs(&self.extensions))?;
        map.end()
    }
}

/// Serialises name/value pairs as a JSON object in their order.
#[cfg(feature = "serde")]
pub(crate) struct OrderedPairs<'a>(pub(crate) &'a [(String, String)]);

#[cfg(feature = "serde")]
impl serde::Serialize for OrderedPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Concatenates the character-strings of one TXT RR without adding spaces (RFC 8461 §3.1,
/// RFC 7208 §3.3).
pub fn concat<S: AsRef<[u8]>>(strings: &[S]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(strings.iter().map(|s| s.as_ref().len()).sum());
    for s in strings {
        joined.extend_from_slice(s.as_ref());
    }
    joined
}

/// Whether an RR begins with `v=STSv1` *WSP `;`, the discard rule of RFC 8461 §3.1 read with
/// the ABNF's `sts-field-delim` (erratum 6285; docs/rfc-requirements.md §4 item 2).
pub fn is_candidate(rr: &[u8]) -> bool {
    match rr.strip_prefix(VERSION_FIELD.as_bytes()) {
        Some(rest) => rest.iter().find(|b| !matches!(b, b' ' | b'\t')) == Some(&b';'),
        None => false,
    }
}

/// The result of [`lint`]: the record when valid, and the diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLint {
    /// The record, present exactly when there is no error.
    pub record: Option<StsRecord>,
    /// The error (at most one: parsing stops there) and warnings.
    pub diagnostics: Vec<Diagnostic>,
    error: Option<RecordError>,
}

impl RecordLint {
    /// The error that made the record invalid, if any.
    pub fn error(&self) -> Option<&RecordError> {
        self.error.as_ref()
    }

    fn into_result(self) -> Result<StsRecord, RecordError> {
        match (self.record, self.error) {
            (Some(record), _) => Ok(record),
            (None, Some(error)) => Err(error),
            (None, None) => Err(RecordError::MissingId { hint: "" }),
        }
    }
}

/// Parses one record and reports diagnostics: the first grammar error, and warnings for a
/// duplicate `id`.
pub fn lint(text: &str) -> RecordLint {
    let mut warnings = Vec::new();
    match parse_fields(text, &mut warnings) {
        Ok(record) => RecordLint {
            record: Some(record),
            diagnostics: warnings,
            error: None,
        },
        Err(error) => {
            let mut diagnostics = warnings;
            diagnostics.push(Diagnostic::error(error.code(), None, error.to_string()));
            RecordLint {
                record: None,
                diagnostics,
                error: Some(error),
            }
        }
    }
}

fn parse_fields(text: &str, warnings: &mut Vec<Diagnostic>) -> Result<StsRecord, RecordError> {
    // RFC 8461 §3.1: "MTA-STS TXT records MUST be US-ASCII".
    if let Some(position) = text.bytes().position(|b| !b.is_ascii()) {
        return Err(RecordError::NotAscii { position });
    }
    // "The TXT record MUST begin with the sts-version field."
    if !is_candidate(text.as_bytes()) {
        return Err(RecordError::NotStsRecord {
            hint: not_sts_hint(text),
        });
    }
    let bytes = text.as_bytes();
    let mut pos = VERSION_FIELD.len();
    let mut id: Option<String> = None;
    let mut case_hint = "";
    let mut extensions = Vec::new();
    loop {
        // sts-field-delim = *WSP ";" *WSP
        pos = skip_wsp(bytes, pos);
        if pos == bytes.len() {
            if bytes.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
                return Err(RecordError::TrailingWhitespace);
            }
            break;
        }
        if bytes[pos] != b';' {
            return Err(RecordError::MissingDelimiter { position: pos });
        }
        pos = skip_wsp(bytes, pos + 1);
        if pos == bytes.len() {
            break; // [sts-field-delim] at the end
        }
        if bytes[pos] == b';' {
            return Err(RecordError::EmptyField { position: pos });
        }
        let start = pos;
        while pos < bytes.len() && !matches!(bytes[pos], b' ' | b'\t' | b';') {
            pos += 1;
        }
        let field = &text[start..pos];
        let Some((name, value)) = field.split_once('=') else {
            return Err(RecordError::InvalidField {
                field: field.to_owned(),
                position: start,
            });
        };
        if name == "id" {
            if value.is_empty()
                || value.len() > 32
                || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(RecordError::InvalidId {
                    id: value.to_owned(),
                });
            }
            if id.is_some() {
                // RFC 8461 §3.2: all entries but the first SHALL be ignored.
                warnings.push(Diagnostic::advice(
                    "duplicate-id",
                    None,
                    format!("the record has a second `id=` (`{value}`); senders use the first: remove the duplicate"),
                ));
            } else {
                id = Some(value.to_owned());
            }
            continue;
        }
        if !is_ext_name(name) || !is_ext_value(value) {
            return Err(RecordError::InvalidField {
                field: field.to_owned(),
                position: start,
            });
        }
        if name.eq_ignore_ascii_case("id") {
            case_hint = " (`ID=` is not `id=`: field names are case-sensitive)";
        }
        extensions.push((name.to_owned(), value.to_owned()));
    }
    match id {
        Some(id) => Ok(StsRecord { id, extensions }),
        None => Err(RecordError::MissingId { hint: case_hint }),
    }
}

fn not_sts_hint(text: &str) -> &'static str {
    let trimmed = text.trim_start();
    if text.is_empty() {
        "the record is empty"
    } else if trimmed.len() != text.len() && trimmed.starts_with(VERSION_FIELD) {
        "remove the leading whitespace"
    } else if text.starts_with(VERSION_FIELD)
        && text[VERSION_FIELD.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        "the version is exactly `STSv1`"
    } else if text.starts_with(VERSION_FIELD) {
        "a `;` must follow `v=STSv1`"
    } else if text.len() >= VERSION_FIELD.len()
        && text[..VERSION_FIELD.len()].eq_ignore_ascii_case(VERSION_FIELD)
    {
        "`v=STSv1` is case-sensitive"
    } else if text.contains(VERSION_FIELD) {
        "the version field must come first"
    } else {
        "this is not an MTA-STS record"
    }
}

fn skip_wsp(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t') {
        pos += 1;
    }
    pos
}

/// `sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`
pub(crate) fn is_ext_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.len() <= 32
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)`
pub(crate) fn is_ext_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| matches!(b, 0x21..=0x3a | 0x3c | 0x3e..=0x7e))
}
