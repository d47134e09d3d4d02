//! The header block of a message as DKIM sees it: split from the body, cut into fields
//! exactly as written (RFC 5322 §2.2), which both canonicalizations (RFC 6376 §3.4) start
//! from. Shared by the signer and the verifier.

/// Header block (with its final CRLF) and body: the message is cut at the first empty line
/// (RFC 5322 §2.1). Without one, all of it is header.
pub fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// One header field exactly as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawField<'a> {
    /// The name as written (before the colon, trailing WSP included).
    pub name: &'a [u8],
    /// The value after the colon, folding CRLFs included, without the final CRLF.
    pub value: &'a [u8],
    /// The whole field (name, colon, value), without the final CRLF: what `c=simple` hashes.
    pub raw: &'a [u8],
}

impl RawField<'_> {
    /// Whether the field's name is `name` (ASCII case-insensitive, WSP before the colon
    /// ignored).
    pub fn is(&self, name: &str) -> bool {
        trim_wsp(self.name).eq_ignore_ascii_case(name.as_bytes())
    }
}

/// `bytes` without leading and trailing SP and HTAB.
pub(crate) fn trim_wsp(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// The header fields of a CRLF header block, in order (RFC 5322 §2.2: a line starting with
/// WSP continues the previous field). Lines without a colon are skipped.
pub fn raw_fields(head: &[u8]) -> Vec<RawField<'_>> {
    let mut out: Vec<RawField<'_>> = Vec::new();
    // (start of the field, end of its last line) for the field being read.
    let mut current: Option<(usize, usize)> = None;
    let mut pos = 0;
    fn push<'a>(head: &'a [u8], out: &mut Vec<RawField<'a>>, (start, end): (usize, usize)) {
        let raw = &head[start..end];
        if let Some(colon) = raw.iter().position(|b| *b == b':') {
            out.push(RawField {
                name: &raw[..colon],
                value: &raw[colon + 1..],
                raw,
            });
        }
    }
    while pos < head.len() {
        let line_end = head[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |i| pos + i);
        let line = &head[pos..line_end];
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some((_, end)) = current.as_mut() {
                *end = line_end;
            }
        } else {
            if let Some(field) = current.take() {
                push(head, &mut out, field);
            }
            if !line.is_empty() {
                current = Some((pos, line_end));
            }
        }
        pos = line_end + 2;
    }
    if let Some(field) = current {
        push(head, &mut out, field);
    }
    out
}
