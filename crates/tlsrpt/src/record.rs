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

// ---------------------------------------------------------------------------------------------
// The parser.

/// What the caller wants from a run of the parser.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Sender reading: stop at the first error, ignore warnings.
    Parse,
    /// Exact grammar: like `Parse`, but deviations are errors.
    Strict,
    /// Collect every finding as a diagnostic.
    Lint,
}

/// Collects findings. Methods return `None` when parsing should stop.
struct Sink {
    mode: Mode,
    errors: usize,
    first: Option<RecordError>,
    diags: Vec<Diagnostic>,
}

impl Sink {
    fn new(mode: Mode) -> Self {
        Sink {
            mode,
            errors: 0,
            first: None,
            diags: Vec::new(),
        }
    }

    fn error(&mut self, e: RecordError) -> Option<()> {
        self.errors += 1;
        if self.mode == Mode::Lint {
            self.diags
                .push(Diagnostic::error(e.code(), None, e.to_string()));
            Some(())
        } else {
            self.first.get_or_insert(e);
            None
        }
    }

    /// A deviation from the grammar whose meaning is clear.
    fn deviation(&mut self, e: impl FnOnce() -> RecordError) -> Option<()> {
        match self.mode {
            Mode::Parse => Some(()),
            Mode::Strict => self.error(e()),
            Mode::Lint => {
                let e = e();
                self.diags
                    .push(Diagnostic::deviation(e.code(), None, e.to_string()));
                Some(())
            }
        }
    }

    /// Advice about grammatical input.
    fn advice(&mut self, code: &'static str, message: impl FnOnce() -> String) {
        if self.mode == Mode::Lint {
            self.diags.push(Diagnostic::advice(code, None, message()));
        }
    }
}

fn run_to_result(text: &str, mode: Mode) -> Result<TlsRptRecord, RecordError> {
    let mut sink = Sink::new(mode);
    match (run(text, &mut sink), sink.first) {
        (_, Some(e)) => Err(e),
        (Some(record), None) => Ok(record),
        // Unreachable: the parser returns no record only after an error.
        (None, None) => Err(RecordError::NotTlsRptRecord {
            found: prefix_of(text),
        }),
    }
}

#[inline]
fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn skip_wsp(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos).is_some_and(|c| is_wsp(*c)) {
        pos += 1;
    }
    pos
}

/// Offset of the next `;` at or after `pos`, or the end.
fn next_semicolon(b: &[u8], pos: usize) -> usize {
    b.get(pos..)
        .and_then(|rest| rest.iter().position(|c| *c == b';'))
        .map_or(b.len(), |i| pos + i)
}

/// `&text[a..b]` without the possibility of a panic.
fn slice(text: &str, a: usize, b: usize) -> &str {
    text.get(a..b).unwrap_or_default()
}

/// The first characters of `text`, for messages.
fn prefix_of(text: &str) -> String {
    text.chars().take(24).collect()
}

fn is_ext_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// `tlsrpt-ext-value` characters: `%x21-3A / %x3C / %x3E-7E`.
fn is_ext_value_char(c: u8) -> bool {
    matches!(c, 0x21..=0x3a | 0x3c | 0x3e..=0x7e)
}

/// Parses `text`, reporting to `sink`. Returns the record unless an error stopped it (in
/// lint mode the caller must still check `sink.errors`).
fn run(text: &str, sink: &mut Sink) -> Option<TlsRptRecord> {
    let b = text.as_bytes();
    if let Some(offset) = b.iter().position(|c| !c.is_ascii()) {
        sink.error(RecordError::NotAscii { offset });
        return None;
    }
    let version_ok = b.starts_with(VERSION_FIELD.as_bytes())
        && b.get(VERSION_FIELD.len())
            .is_none_or(|c| *c == b';' || is_wsp(*c));
    if !version_ok {
        sink.error(RecordError::NotTlsRptRecord {
            found: prefix_of(text),
        });
        return None;
    }

    let mut record = TlsRptRecord::default();
    let mut rua_fields = 0usize;
    let mut rua_failed = false;
    let mut pos = VERSION_FIELD.len();
    loop {
        // Here a field (or the version) has just ended: `*WSP ";" *WSP`, or the end.
        let ws_start = pos;
        pos = skip_wsp(b, pos);
        match b.get(pos) {
            None => {
                if pos > ws_start {
                    sink.deviation(|| RecordError::TrailingWhitespace)?;
                }
                break;
            }
            Some(b';') => pos += 1,
            Some(_) => {
                let end = next_semicolon(b, pos);
                sink.error(RecordError::UnexpectedText {
                    offset: pos,
                    text: slice(text, pos, end).trim_end().to_owned(),
                })?;
                pos = end;
                continue;
            }
        }
        pos = skip_wsp(b, pos);
        match b.get(pos) {
            None => break, // a final `field-delim`, trailing whitespace included
            Some(b';') => {
                sink.error(RecordError::EmptyField { offset: pos })?;
                continue; // the loop consumes this `;`
            }
            Some(_) => {}
        }

        if b.get(pos..).is_some_and(|rest| rest.starts_with(b"rua=")) {
            rua_fields += 1;
            if rua_fields == 2 {
                sink.advice("duplicate-rua", || {
                    "the record has more than one rua= field: RFC 8460 has no rule for this, so \
                     the URIs of all of them are used, but strict senders may reject the \
                     record; list all URIs in one rua= field, separated by commas"
                        .to_owned()
                });
            }
            let field_start = pos;
            pos += 4;
            let mut uris = 0usize;
            let mut first_empty: Option<usize> = None;
            loop {
                let start = pos;
                while b
                    .get(pos)
                    .is_some_and(|c| !matches!(c, b' ' | b'\t' | b',' | b';'))
                {
                    pos += 1;
                }
                let element = slice(text, start, pos);
                let after = pos;
                let next = skip_wsp(b, pos);
                if element.is_empty() {
                    first_empty.get_or_insert(start);
                } else {
                    uris += 1;
                    match classify_uri(element) {
                        Ok(rua) => add_rua(&mut record.rua, rua, sink),
                        Err(reason) => {
                            rua_failed = true;
                            sink.error(RecordError::InvalidUri {
                                uri: element.to_owned(),
                                reason,
                            })?;
                        }
                    }
                }
                if b.get(next) == Some(&b',') {
                    pos = skip_wsp(b, next + 1);
                } else {
                    pos = after;
                    break;
                }
            }
            if uris == 0 {
                rua_failed = true;
                sink.error(RecordError::EmptyRua {
                    offset: field_start,
                })?;
            } else if let Some(offset) = first_empty {
                sink.deviation(|| RecordError::EmptyUri { offset })?;
            }
            continue;
        }

        // tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
        let name_start = pos;
        while b.get(pos).is_some_and(|c| is_ext_name_char(*c)) {
            pos += 1;
        }
        let name = slice(text, name_start, pos);
        let mut reason: Option<&'static str> = None;
        if b.get(pos) != Some(&b'=') {
            reason = Some(if name.is_empty() {
                "a field must be `name=value`, with a name of letters, digits, `_`, `-` and `.`"
            } else {
                "`=` must follow the field name directly (a field is `name=value`)"
            });
        } else if !name
            .as_bytes()
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            reason = Some("an extension name must begin with a letter or digit");
        } else if name.len() > MAX_EXT_NAME {
            reason = Some("an extension name is at most 32 characters long");
        }
        let mut value_end = pos;
        if reason.is_none() {
            let value_start = pos + 1;
            value_end = value_start;
            while b.get(value_end).is_some_and(|c| is_ext_value_char(*c)) {
                value_end += 1;
            }
            match b.get(value_end) {
                Some(b'=') => reason = Some("`=` is not allowed in an extension value"),
                Some(c) if !is_wsp(*c) && *c != b';' => {
                    reason = Some("an extension value must not contain control characters")
                }
                _ if value_end == value_start => {
                    reason = Some("the value is empty (an extension is `name=value`)")
                }
                _ => {
                    record.extensions.push((
                        name.to_owned(),
                        slice(text, value_start, value_end).to_owned(),
                    ));
                }
            }
        }
        if let Some(reason) = reason {
            let end = next_semicolon(b, name_start);
            sink.error(RecordError::InvalidField {
                field: slice(text, name_start, end).trim_end().to_owned(),
                reason,
            })?;
            pos = end;
        } else {
            pos = value_end;
        }
    }

    if rua_fields == 0 {
        let similar = record
            .extensions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("rua") || n.eq_ignore_ascii_case("ruf"))
            .map(|(n, _)| n.clone());
        sink.error(RecordError::MissingRua { similar })?;
    } else if !rua_failed && !record.rua.iter().any(Rua::is_usable) {
        sink.error(RecordError::NoUsableRua)?;
    }
    Some(record)
}

/// Appends `rua` unless the same URI is already listed (the union of repeated fields).
fn add_rua(list: &mut Vec<Rua>, rua: Rua, sink: &mut Sink) {
    if list.iter().any(|r| r.uri() == rua.uri()) {
        sink.advice("duplicate-uri", || {
            format!(
                "the rua URI `{}` is listed twice: the second is ignored, so remove it",
                rua.uri()
            )
        });
        return;
    }
    if !rua.is_usable() {
        sink.advice("unsupported-scheme", || {
            format!(
                "the rua URI `{}` is ignored: RFC 8460 §3 supports only mailto: and https: URIs, \
                 so use one of those",
                rua.uri()
            )
        });
    }
    list.push(rua);
}

/// Validates one URI element (no `,`, `;` or whitespace by construction, ASCII) and
/// classifies it. The error is the reason, for [`RecordError::InvalidUri`].
fn classify_uri(uri: &str) -> Result<Rua, &'static str> {
    let b = uri.as_bytes();
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"   (RFC 3986 §3.1)
    let colon = b.iter().position(|c| *c == b':');
    let scheme_ok = colon.is_some_and(|i| {
        i > 0
            && b[0].is_ascii_alphabetic()
            && b[1..i]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    });
    let Some(colon) = colon.filter(|_| scheme_ok) else {
        return Err("it has no scheme: write mailto:address or https://host/path");
    };
    let rest = &b[colon + 1..];
    if rest.is_empty() {
        return Err("nothing follows the scheme");
    }
    let mut i = 0;
    while let Some(&c) = rest.get(i) {
        match c {
            b'!' => {
                return Err(
                    "`!` must be percent-encoded as %21 (RFC 8460 §3); DMARC-style size \
                            limits such as !10m are not part of TLS-RPT",
                );
            }
            b'%' => {
                let hex = |j: usize| rest.get(j).is_some_and(|h| h.is_ascii_hexdigit());
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err("`%` must start a percent-encoding such as %25");
                }
                i += 3;
                continue;
            }
            c if is_uri_char(c) => {}
            _ => {
                return Err(
                    "it contains a character URIs do not allow (spaces, quotes, `<`, `>`, \
                            `\\`, `^`, `` ` ``, `{`, `|`, `}`, control characters): \
                            percent-encode it",
                );
            }
        }
        i += 1;
    }
    let scheme = &b[..colon];
    if scheme.eq_ignore_ascii_case(b"mailto") {
        let path_end = rest.iter().position(|c| *c == b'?').unwrap_or(rest.len());
        let address = percent_decode(slice(uri, colon + 1, colon + 1 + path_end))
            .ok_or("its address is not UTF-8 once percent-decoded")?;
        let valid = address
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
            && !address.contains(',')
            && !address.chars().any(|c| c.is_control() || c == ' ');
        if !valid {
            return Err("a mailto: URI must hold exactly one email address, \
                        mailto:local-part@domain");
        }
        Ok(Rua::Mailto {
            uri: uri.to_owned(),
            address,
        })
    } else if scheme.eq_ignore_ascii_case(b"https") {
        let Some(after) = rest.strip_prefix(b"//") else {
            return Err("an https: URI must name a host: https://host/path");
        };
        let authority_end = after
            .iter()
            .position(|c| matches!(c, b'/' | b'?' | b'#'))
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        let host_port = match authority.iter().rposition(|c| *c == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        let host = if host_port.first() == Some(&b'[') {
            host_port
        } else {
            let end = host_port
                .iter()
                .position(|c| *c == b':')
                .unwrap_or(host_port.len());
            &host_port[..end]
        };
        if host.is_empty() {
            return Err("an https: URI must name a host: https://host/path");
        }
        Ok(Rua::Https {
            uri: uri.to_owned(),
        })
    } else {
        Ok(Rua::Other {
            uri: uri.to_owned(),
        })
    }
}

/// RFC 3986 characters other than `%` (unreserved, gen-delims, sub-delims); `!`, `,` and
/// `;` are handled by the caller.
fn is_uri_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b'='
        )
}

/// Percent-decodes `s` (already validated: every `%` starts `%HH`). `None` if the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = b.get(i + 1).and_then(|h| (*h as char).to_digit(16));
            let lo = b.get(i + 2).and_then(|h| (*h as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rule() {
        assert!(has_record_prefix(b"v=TLSRPTv1;"));
        assert!(has_record_prefix(b"v=TLSRPTv1 \t;rua=x"));
        assert!(!has_record_prefix(b"v=TLSRPTv1"));
        assert!(!has_record_prefix(b"v=TLSRPTv10;"));
        assert!(!has_record_prefix(b" v=TLSRPTv1;"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
