//! The RFC 8460 §3 record grammar, byte by byte: one pass over the fields that reports every
//! finding to a [`Sink`], which decides (by [`Mode`]) whether to stop.

use super::uri::{classify_uri, slice};
use super::{MAX_EXT_NAME, RecordError, Rua, TlsRptRecord, VERSION_FIELD};
use mta_sts::diagnostic::Diagnostic;

/// What the caller wants from a run of the parser.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Sender reading: stop at the first error, ignore warnings.
    Parse,
    /// Exact grammar: like `Parse`, but deviations are errors.
    Strict,
    /// Collect every finding as a diagnostic.
    Lint,
}

/// Collects findings. Methods return `None` when parsing should stop.
pub(super) struct Sink {
    mode: Mode,
    pub(super) errors: usize,
    first: Option<RecordError>,
    pub(super) diags: Vec<Diagnostic>,
}

impl Sink {
    pub(super) fn new(mode: Mode) -> Self {
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

pub(super) fn run_to_result(text: &str, mode: Mode) -> Result<TlsRptRecord, RecordError> {
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
pub(super) fn is_wsp(c: u8) -> bool {
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
pub(super) fn run(text: &str, sink: &mut Sink) -> Option<TlsRptRecord> {
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
            pos = rua_field(text, pos, &mut record, &mut rua_failed, sink)?;
            continue;
        }

        pos = extension_field(text, pos, &mut record, sink)?;
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

/// `tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)` (RFC 8460 §3), the field
/// starting at `field_start`: its URIs go to `record`, `failed` is set when one (or the
/// whole field) is unusable. The position after the field, or `None` when the sink stops.
fn rua_field(
    text: &str,
    field_start: usize,
    record: &mut TlsRptRecord,
    failed: &mut bool,
    sink: &mut Sink,
) -> Option<usize> {
    let b = text.as_bytes();
    let mut pos = field_start + 4;
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
                    *failed = true;
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
        *failed = true;
        sink.error(RecordError::EmptyRua {
            offset: field_start,
        })?;
    } else if let Some(offset) = first_empty {
        sink.deviation(|| RecordError::EmptyUri { offset })?;
    }
    Some(pos)
}

/// `tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value` (RFC 8460 §3) at `pos`: kept in
/// `record` when valid, else an `invalid-field` error. The position after the field, or
/// `None` when the sink stops.
fn extension_field(
    text: &str,
    mut pos: usize,
    record: &mut TlsRptRecord,
    sink: &mut Sink,
) -> Option<usize> {
    let b = text.as_bytes();
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
    Some(pos)
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
