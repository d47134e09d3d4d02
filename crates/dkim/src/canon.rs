//! Canonicalization (RFC 6376 §3.4): `simple` and `relaxed`, for header fields and the body.
//! Shared by the signer ([`crate::sign`]) and the verifier ([`crate::verify`]).

use crate::header::{RawField, trim_wsp};

/// A canonicalization algorithm (RFC 6376 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonicalization {
    /// `simple`: almost unchanged.
    Simple,
    /// `relaxed`: whitespace and header name case normalised.
    Relaxed,
}

impl Canonicalization {
    /// The `c=` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Canonicalization::Simple => "simple",
            Canonicalization::Relaxed => "relaxed",
        }
    }

    /// A header field in this canonicalization, with its CRLF (RFC 6376 §3.4.1, §3.4.2).
    pub fn header(self, field: &RawField<'_>) -> Vec<u8> {
        match self {
            Canonicalization::Simple => simple_header(field.raw),
            Canonicalization::Relaxed => relaxed_header_bytes(field.name, field.value),
        }
    }

    /// A body in this canonicalization (RFC 6376 §3.4.3, §3.4.4).
    pub fn body(self, body: &[u8]) -> Vec<u8> {
        match self {
            Canonicalization::Simple => simple_body(body),
            Canonicalization::Relaxed => relaxed_body(body),
        }
    }
}

/// RFC 6376 §3.4.2 relaxed header canonicalization of raw bytes, with CRLF: name lower-cased,
/// value unfolded, WSP runs to one SP, WSP around the colon and at the end removed.
pub fn relaxed_header_bytes(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = trim_wsp(name).to_ascii_lowercase();
    out.push(b':');
    let mut in_space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => in_space = true,
            _ => {
                if in_space && started {
                    out.push(b' ');
                }
                in_space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 §3.4.1 simple header canonicalization: the field unchanged, with CRLF.
pub fn simple_header(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 §3.4.4 relaxed body canonicalization: WSP at line ends removed, WSP runs to one
/// SP, empty lines at the end removed, a non-empty body ends with CRLF.
pub fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let (line, next, had_crlf) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], &rest[i + 2..], true),
            None => (rest, &[][..], false),
        };
        if !had_crlf && line.is_empty() {
            break;
        }
        let mut in_space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                in_space = true;
            } else {
                if in_space {
                    out.push(b' ');
                    in_space = false;
                }
                out.push(b);
            }
        }
        out.extend_from_slice(b"\r\n");
        if !had_crlf {
            break;
        }
        rest = next;
    }
    // RFC 6376 §3.4.4 (b): ignore all empty lines at the end of the message body.
    while out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    if out == b"\r\n" {
        out.clear();
    }
    out
}

/// RFC 6376 §3.4.3 simple body canonicalization: any run of CRLFs at the end becomes one CRLF;
/// an empty body is one CRLF.
pub fn simple_body(body: &[u8]) -> Vec<u8> {
    let mut end = body.len();
    while body[..end].ends_with(b"\r\n") {
        end -= 2;
    }
    let mut out = body[..end].to_vec();
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6376_3_4_relaxed_canonicalization() {
        // RFC 6376 §3.4.5 example.
        assert_eq!(relaxed_header_bytes(b"A", b" X\r\n"), b"a:X\r\n");
        assert_eq!(relaxed_header_bytes(b"B ", b" Y\t\r\n\tZ  "), b"b:Y Z\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
    }
}
