//! The `_smtp._tls` TXT record (RFC 8460 §3).
//!
//! ```abnf
//! tlsrpt-record     = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//! field-delim       = *WSP ";" *WSP
//! tlsrpt-field      = tlsrpt-rua / tlsrpt-extension
//! tlsrpt-version    = %s"v=TLSRPTv1"
//! tlsrpt-rua        = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//! tlsrpt-uri        = URI  ; commas, "!" and ";" MUST be percent-encoded
//! tlsrpt-extension  = tlsrpt-ext-name "=" tlsrpt-ext-value
//! tlsrpt-ext-name   = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//! tlsrpt-ext-value  = 1*(%x21-3A / %x3C / %x3E-7E)
//! ```
//!
//! The parser follows this grammar exactly, byte by byte (no regular expressions), and turns
//! every deviation into a [`RecordError`] or a [`Diagnostic`]. Where the RFC is silent or
//! ambiguous it follows the project's reading (see `docs/rfc-requirements.md` §4
//! items 2 and 7):
//!
//! - **Discard rule.** RFC 8460 §3 discards TXT RRs "that do not begin with `v=TLSRPTv1;`",
//!   while the ABNF allows whitespace before the `;`. The prefix is read as `v=TLSRPTv1`
//!   `*WSP ";"` (the reading of RFC 8461 erratum 6285), see [`has_record_prefix`].
//! - **Repeated `rua=` fields** (no rule in the RFC; the grammar allows the repetition): the
//!   URIs of all of them are taken, in order, and [`lint`] warns (`duplicate-rua`).
//! - **Empty URI elements** (`rua=mailto:a@x,`, a trailing or doubled comma): ungrammatical
//!   but unambiguous, so the empty element is ignored with a `breaks_abnf` warning
//!   (`empty-uri`). A `rua=` with no URI at all is an error (`empty-rua`).
//! - **Other URI schemes** (`http:`, `ftp:`): kept as [`Rua::Other`] for diagnostics but never
//!   used for delivery (RFC 8460 §3 supports only `mailto` and `https`), with a warning
//!   (`unsupported-scheme`). A record without any `mailto:`/`https:` URI is an error
//!   (`no-usable-rua`).
//! - **Trailing whitespace without a final `;`** (`…rua=mailto:a@x  `): ungrammatical, but
//!   strict peers (mox) accept it and its meaning is clear, so [`TlsRptRecord::parse`]
//!   accepts it and [`lint`] gives a `breaks_abnf` warning (`trailing-whitespace`);
//!   [`TlsRptRecord::parse_strict`] rejects it.

use std::fmt;

use mta_sts::diagnostic::{Diagnostic, Verdict};

use self::parser::{Mode, Sink, is_wsp, run, run_to_result};
use self::uri::classify_uri;

mod parser;
#[cfg(test)]
mod tests;
mod uri;

/// The version field every TLS-RPT record begins with (case-sensitive).
pub const VERSION_FIELD: &str = "v=TLSRPTv1";

/// Length of the longest extension name the ABNF allows (1 + 31 characters).
const MAX_EXT_NAME: usize = 32;

/// Advice when a record lacks a usable `rua`.
const RUA_FIX: &str = "add rua=mailto:tlsrpt@<domain>";

/// One `rua` URI of a TLS-RPT record: where aggregate reports go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "scheme", rename_all = "lowercase"))]
pub enum Rua {
    /// A `mailto:` URI: reports are mailed to `address`.
    Mailto {
        /// The URI as written in the record.
        uri: String,
        /// The email address: the URI path, percent-decoded (RFC 6068), without `?` headers.
        address: String,
    },
    /// An `https:` URI: reports are POSTed to it.
    Https {
        /// The URI as written in the record.
        uri: String,
    },
    /// A URI of another scheme (`http:`, `ftp:`, …). RFC 8460 §3 supports only `mailto` and
    /// `https`, so it is kept for diagnostics but never used for delivery.
    Other {
        /// The URI as written in the record.
        uri: String,
    },
}

impl Rua {
    /// Parses and classifies one URI as it may appear in a `rua=` list.
    ///
    /// The scheme is matched case-insensitively (RFC 3986 §3.1). Errors are
    /// [`RecordError::InvalidUri`] (or [`RecordError::NotAscii`]).
    ///
    /// ```
    /// use tlsrpt::Rua;
    /// let rua = Rua::parse("mailto:tls%2Brpt@example.com")?;
    /// assert_eq!(rua, Rua::Mailto {
    ///     uri: "mailto:tls%2Brpt@example.com".into(),
    ///     address: "tls+rpt@example.com".into(),
    /// });
    /// assert!(Rua::parse("noscheme").is_err());
    /// # Ok::<(), tlsrpt::RecordError>(())
    /// ```
    pub fn parse(uri: &str) -> Result<Rua, RecordError> {
        if let Some(offset) = uri.bytes().position(|c| !c.is_ascii()) {
            return Err(RecordError::NotAscii { offset });
        }
        if uri.bytes().any(|c| matches!(c, b',' | b';')) {
            return Err(RecordError::InvalidUri {
                uri: uri.to_owned(),
                reason: "`,` and `;` separate URIs and fields, so inside a URI they must be \
                         percent-encoded as %2C and %3B",
            });
        }
        classify_uri(uri).map_err(|reason| RecordError::InvalidUri {
            uri: uri.to_owned(),
            reason,
        })
    }

    /// The URI as written in the record.
    pub fn uri(&self) -> &str {
        match self {
            Rua::Mailto { uri, .. } | Rua::Https { uri } | Rua::Other { uri } => uri,
        }
    }

    /// Whether reports can be delivered to this URI (`mailto:` or `https:`).
    pub fn is_usable(&self) -> bool {
        !matches!(self, Rua::Other { .. })
    }
}

impl fmt::Display for Rua {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri())
    }
}

/// A parsed `_smtp._tls` TXT record (RFC 8460 §3).
///
/// `Display` prints the canonical form, `v=TLSRPTv1; rua=mailto:a@x,https://y/z; ext=v`,
/// which [`TlsRptRecord::parse`] reads back to an equal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TlsRptRecord {
    /// The `rua` URIs of all `rua=` fields, in order, without exact duplicates. Includes
    /// [`Rua::Other`] URIs; see [`TlsRptRecord::usable_rua`].
    pub rua: Vec<Rua>,
    /// Unknown fields (`name=value`), in order. RFC 8460 §3: "unknown fields SHALL be
    /// ignored"; they are kept for display. Serialised as a JSON object.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serialize_extensions"))]
    pub extensions: Vec<(String, String)>,
}

#[cfg(feature = "serde")]
fn serialize_extensions<S: serde::Serializer>(
    ext: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(ext.len()))?;
    for (name, value) in ext {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

impl TlsRptRecord {
    /// Parses one record (the character-strings of one TXT RR already concatenated), as a
    /// sender does: errors make the record unusable, tolerated deviations (see the module
    /// documentation) do not. Use [`lint`] to see the warnings too.
    ///
    /// ```
    /// use tlsrpt::{RecordError, Rua, TlsRptRecord};
    ///
    /// let record = TlsRptRecord::parse(
    ///     "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://rpt.example.com/v1; ext=1",
    /// )?;
    /// assert_eq!(record.rua[1], Rua::Https { uri: "https://rpt.example.com/v1".into() });
    /// assert_eq!(record.extensions, [("ext".to_string(), "1".to_string())]);
    /// assert_eq!(
    ///     record.to_string(),
    ///     "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://rpt.example.com/v1; ext=1",
    /// );
    ///
    /// // The version and `rua=` are case-sensitive; `rua` is required.
    /// assert!(matches!(
    ///     TlsRptRecord::parse("v=tlsrptv1; rua=mailto:a@example.com"),
    ///     Err(RecordError::NotTlsRptRecord { .. }),
    /// ));
    /// assert!(matches!(
    ///     TlsRptRecord::parse("v=TLSRPTv1; RUA=mailto:a@example.com"),
    ///     Err(RecordError::MissingRua { .. }),
    /// ));
    /// # Ok::<(), RecordError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        run_to_result(text, Mode::Parse)
    }

    /// Parses one record by the exact RFC 8460 §3 grammar: like [`TlsRptRecord::parse`], but
    /// the deviations it tolerates (trailing whitespace without a final `;`, empty URI
    /// elements) are errors too. Advice (another URI scheme, a repeated `rua=`) is not.
    pub fn parse_strict(text: &str) -> Result<Self, RecordError> {
        run_to_result(text, Mode::Strict)
    }

    /// The URIs reports can be delivered to (`mailto:` and `https:`), in record order.
    pub fn usable_rua(&self) -> impl Iterator<Item = &Rua> + '_ {
        self.rua.iter().filter(|r| r.is_usable())
    }
}

impl std::str::FromStr for TlsRptRecord {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlsRptRecord::parse(s)
    }
}

impl fmt::Display for TlsRptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(VERSION_FIELD)?;
        f.write_str("; rua=")?;
        for (i, rua) in self.rua.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(rua.uri())?;
        }
        for (name, value) in &self.extensions {
            write!(f, "; {name}={value}")?;
        }
        Ok(())
    }
}

/// Why a `_smtp._tls` record is unusable (or, for [`TlsRptRecord::parse_strict`], not exactly
/// what RFC 8460 §3 allows). `Display` is one sentence that says how to fix it; [`code`]
/// is the stable diagnostic code [`lint`] uses for it.
///
/// Byte offsets are 0-based positions in the concatenated record text.
///
/// [`code`]: RecordError::code
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A byte outside US-ASCII.
    #[error(
        "the record contains a non-ASCII character at byte {offset}: TLS-RPT records must be \
         US-ASCII, so percent-encode it in the URI or use the A-label (xn--…) of the domain"
    )]
    NotAscii {
        /// Offset of the first non-ASCII byte.
        offset: usize,
    },
    /// The text does not begin with `v=TLSRPTv1` followed by `;`, whitespace or the end.
    #[error("{}", not_record_message(found))]
    NotTlsRptRecord {
        /// The beginning of the text (at most 24 characters).
        found: String,
    },
    /// No `rua=` field.
    #[error("{}", missing_rua_message(similar.as_deref()))]
    MissingRua {
        /// A field that looks like a misspelt `rua` (`RUA`, `ruf`), if any.
        similar: Option<String>,
    },
    /// `rua=` fields exist but none lists a `mailto:` or `https:` URI.
    #[error(
        "the record has no usable rua URI: reports go only to mailto: and https: URIs \
         (RFC 8460 §3), so {RUA_FIX}"
    )]
    NoUsableRua,
    /// A `rua=` field that lists no URI at all (`rua=`, `rua=,,`).
    #[error("the rua= field at byte {offset} lists no URI: {RUA_FIX}")]
    EmptyRua {
        /// Offset of the `rua=` field.
        offset: usize,
    },
    /// A `rua` element that is not a URI RFC 8460 accepts.
    #[error("the rua URI `{uri}` is invalid: {reason}")]
    InvalidUri {
        /// The element as written.
        uri: String,
        /// What is wrong with it and how to fix it.
        reason: &'static str,
    },
    /// An empty element in a `rua=` list (a trailing or doubled comma). Tolerated by
    /// [`TlsRptRecord::parse`]; an error only for [`TlsRptRecord::parse_strict`].
    #[error(
        "the rua= list has an empty element at byte {offset}: remove the extra comma \
         (RFC 8460 §3 allows a comma only between two URIs)"
    )]
    EmptyUri {
        /// Offset of the empty element.
        offset: usize,
    },
    /// Nothing between two `;` (`;;`).
    #[error("empty field at byte {offset} (`;;`): remove the extra semicolon")]
    EmptyField {
        /// Offset of the second `;`.
        offset: usize,
    },
    /// A field that is neither `rua=…` nor a grammatical `name=value` extension.
    #[error("the field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The field as written (up to the next `;`).
        field: String,
        /// What is wrong with it and how to fix it.
        reason: &'static str,
    },
    /// Text where a `;` (or, in a `rua=` list, a `,`) was expected.
    #[error(
        "unexpected `{text}` at byte {offset}: separate fields with `;` and rua URIs with `,`, \
         and percent-encode spaces inside a URI (%20)"
    )]
    UnexpectedText {
        /// Offset of the unexpected text.
        offset: usize,
        /// The text, up to the next `;`.
        text: String,
    },
    /// Whitespace at the end without a final `;`. Tolerated by [`TlsRptRecord::parse`]; an
    /// error only for [`TlsRptRecord::parse_strict`].
    #[error(
        "the record ends in whitespace after its last field: remove the trailing whitespace \
         (RFC 8460 §3 allows it only after a final `;`)"
    )]
    TrailingWhitespace,
}

impl RecordError {
    /// The stable kebab-case diagnostic code of this error (e.g. `missing-rua`).
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::NotAscii { .. } => "not-ascii",
            RecordError::NotTlsRptRecord { .. } => "not-tlsrpt-record",
            RecordError::MissingRua { .. } => "missing-rua",
            RecordError::NoUsableRua => "no-usable-rua",
            RecordError::EmptyRua { .. } => "empty-rua",
            RecordError::InvalidUri { .. } => "invalid-uri",
            RecordError::EmptyUri { .. } => "empty-uri",
            RecordError::EmptyField { .. } => "empty-field",
            RecordError::InvalidField { .. } => "invalid-field",
            RecordError::UnexpectedText { .. } => "unexpected-text",
            RecordError::TrailingWhitespace => "trailing-whitespace",
        }
    }
}

fn not_record_message(found: &str) -> String {
    let b = found.as_bytes();
    let fix = "a TLS-RPT record must begin with `v=TLSRPTv1;`, e.g. \
               `v=TLSRPTv1; rua=mailto:tlsrpt@<domain>`";
    if found.is_empty() {
        format!("the record is empty: {fix}")
    } else if b.first().is_some_and(|c| is_wsp(*c)) {
        format!("the record begins with whitespace: remove it ({fix})")
    } else if b.len() >= VERSION_FIELD.len()
        && b[..VERSION_FIELD.len()].eq_ignore_ascii_case(VERSION_FIELD.as_bytes())
        && !b.starts_with(VERSION_FIELD.as_bytes())
    {
        format!(
            "`{found}` is not a TLS-RPT record because the version is case-sensitive: \
             write exactly `v=TLSRPTv1`"
        )
    } else {
        format!("`{found}` is not a TLS-RPT record: {fix}")
    }
}

fn missing_rua_message(similar: Option<&str>) -> String {
    match similar {
        Some(name) => format!(
            "the record has no rua= field (`{name}=` is not `rua=`: field names are \
             case-sensitive and TLS-RPT has no ruf): {RUA_FIX}"
        ),
        None => format!("the record has no rua= field: {RUA_FIX}"),
    }
}

/// Why no `_smtp._tls` record was selected among a name's TXT RRs (RFC 8460 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// No RR begins with `v=TLSRPTv1;`: the domain does not implement TLS-RPT.
    #[error(
        "no TXT record at _smtp._tls begins with `v=TLSRPTv1;`, so the domain does not \
         implement TLS-RPT: publish one such as `v=TLSRPTv1; rua=mailto:tlsrpt@<domain>`"
    )]
    NoRecord,
    /// Two or more RRs begin with `v=TLSRPTv1;`: senders must ignore them all.
    #[error(
        "{count} TXT records at _smtp._tls begin with `v=TLSRPTv1;`, so senders ignore all of \
         them (RFC 8460 §3): publish exactly one, listing every URI in its rua= field"
    )]
    MultipleRecords {
        /// How many RRs begin with the prefix.
        count: usize,
    },
    /// Exactly one RR begins with the prefix, but it is unusable.
    #[error(transparent)]
    Invalid(#[from] RecordError),
}

/// Whether one TXT RR (its strings concatenated) begins with the TLS-RPT prefix and so takes
/// part in record selection: `v=TLSRPTv1` then `*WSP ";"`.
///
/// RFC 8460 §3 says "`v=TLSRPTv1;`" while its ABNF allows whitespace before the `;`; this
/// project reads the prefix as `v=TLSRPTv1 *WSP ";"` (the reading of RFC 8461 erratum 6285).
/// A lone `v=TLSRPTv1` (no `;`) does not begin with the prefix.
pub fn has_record_prefix(txt: &[u8]) -> bool {
    match txt.strip_prefix(VERSION_FIELD.as_bytes()) {
        Some(rest) => rest.iter().find(|c| !is_wsp(**c)) == Some(&b';'),
        None => false,
    }
}

/// Selects and parses the TLS-RPT record among the TXT RRs of `_smtp._tls.<domain>`, as
/// RFC 8460 §3 requires of senders: the character-strings of each RR are concatenated
/// without spaces (RFC 7208 §3.3), RRs not beginning with the prefix (see
/// [`has_record_prefix`]) are discarded, and exactly one must remain.
///
/// `rrs` yields one item per RR, each yielding that RR's character-strings (`&str`,
/// `&[u8]`, `Vec<u8>`, …).
///
/// ```
/// use tlsrpt::{select, SelectError};
/// let two = [["v=TLSRPTv1; rua=mailto:a@example.com"], ["v=TLSRPTv1 ;rua=mailto:b@example.com"]];
/// assert_eq!(select(two), Err(SelectError::MultipleRecords { count: 2 }));
/// assert_eq!(select([["v=spf1 -all"]]), Err(SelectError::NoRecord));
/// ```
pub fn select<I, R, S>(rrs: I) -> Result<TlsRptRecord, SelectError>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut buf = Vec::new();
    let mut found: Option<Vec<u8>> = None;
    let mut count = 0usize;
    for rr in rrs {
        buf.clear();
        for string in rr {
            buf.extend_from_slice(string.as_ref());
        }
        if has_record_prefix(&buf) {
            count += 1;
            if found.is_none() {
                found = Some(std::mem::take(&mut buf));
            }
        }
    }
    match (count, found) {
        (1, Some(bytes)) => {
            if let Some(offset) = bytes.iter().position(|c| !c.is_ascii()) {
                return Err(RecordError::NotAscii { offset }.into());
            }
            match std::str::from_utf8(&bytes) {
                Ok(text) => Ok(TlsRptRecord::parse(text)?),
                // Unreachable: ASCII is UTF-8. Kept as an error rather than a panic.
                Err(e) => Err(RecordError::NotAscii {
                    offset: e.valid_up_to(),
                }
                .into()),
            }
        }
        (0, _) | (_, None) => Err(SelectError::NoRecord),
        (count, Some(_)) => Err(SelectError::MultipleRecords { count }),
    }
}

/// The result of [`lint`]: the record if it is usable, and everything noticed about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecordLint {
    /// The record, when there is no error diagnostic (a sender would use it).
    pub record: Option<TlsRptRecord>,
    /// Errors and warnings, in the order of the text (record-wide errors such as
    /// `missing-rua` last). TXT records are one line, so `line` is always `None`.
    pub diagnostics: Vec<Diagnostic>,
}

impl RecordLint {
    /// No error: a sender would use the record.
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_valid()
    }

    /// No error and no `breaks_abnf` warning: the record is exactly what RFC 8460 §3 allows.
    pub fn is_strict_valid(&self) -> bool {
        self.diagnostics.is_strict_valid()
    }
}

/// Checks one `_smtp._tls` record (strings already concatenated) and reports every finding.
///
/// Diagnostic codes (all with `line: None`):
///
/// | code | severity | `breaks_abnf` |
/// |---|---|---|
/// | `not-ascii`, `not-tlsrpt-record`, `missing-rua`, `no-usable-rua`, `empty-rua`, `invalid-uri`, `empty-field`, `invalid-field`, `unexpected-text` | error | yes |
/// | `trailing-whitespace`, `empty-uri` | warning | yes |
/// | `unsupported-scheme`, `duplicate-rua`, `duplicate-uri` | warning | no |
///
/// `not-ascii` and `not-tlsrpt-record` stop the check; after other errors it goes on to
/// the next field, so one run lists every problem.
///
/// ```
/// let lint = tlsrpt::lint("v=TLSRPTv1; rua=mailto:a@example.com,");
/// assert!(lint.is_valid() && !lint.is_strict_valid());
/// assert_eq!(lint.diagnostics[0].code, "empty-uri");
/// ```
pub fn lint(text: &str) -> RecordLint {
    let mut sink = Sink::new(Mode::Lint);
    let record = run(text, &mut sink);
    RecordLint {
        record: if sink.errors == 0 { record } else { None },
        diagnostics: sink.diags,
    }
}
