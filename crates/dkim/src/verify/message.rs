//! A message as the verifier reads it: line ends made CRLF, header fields found, the
//! `DKIM-Signature` fields parsed.

use std::borrow::Cow;

use crate::error::SignatureError;
use crate::header::{RawField, raw_fields, split_message};
use crate::verify::signature::Signature;

/// At most this many `DKIM-Signature` fields of one message are evaluated (from the top);
/// more are ignored, so a message cannot make the importer do unbounded DNS work.
pub const MAX_SIGNATURES: usize = 8;

/// A message prepared for verification: line ends made CRLF, headers split.
#[derive(Debug, Clone)]
pub struct SignedMessage<'a> {
    bytes: Cow<'a, [u8]>,
}

impl<'a> SignedMessage<'a> {
    /// Wraps `message`; bare LF line ends (files in a Maildir or mbox) become CRLF, as the
    /// signer saw them on the wire (RFC 5322 §2.1).
    pub fn new(message: &'a [u8]) -> Self {
        let bytes = if has_bare_lf(message) {
            let mut out = Vec::with_capacity(message.len() + message.len() / 32);
            let mut prev = 0u8;
            for &b in message {
                if b == b'\n' && prev != b'\r' {
                    out.push(b'\r');
                }
                out.push(b);
                prev = b;
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(message)
        };
        SignedMessage { bytes }
    }

    /// The header fields, top to bottom.
    pub(crate) fn fields(&self) -> Vec<RawField<'_>> {
        raw_fields(split_message(&self.bytes).0)
    }

    /// The body (after the first empty line), line ends CRLF.
    pub(crate) fn body(&self) -> &[u8] {
        split_message(&self.bytes).1
    }

    /// The unfolded, trimmed values of every field called `name`, top to bottom.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.fields()
            .iter()
            .filter(|f| f.is(name))
            .map(|f| {
                let v = String::from_utf8_lossy(f.value).replace("\r\n", "");
                v.trim().to_owned()
            })
            .collect()
    }

    /// The `DKIM-Signature` fields (at most [`MAX_SIGNATURES`], from the top), each parsed.
    pub fn signatures(&self) -> Vec<Result<Signature, SignatureError>> {
        self.fields()
            .iter()
            .filter(|f| f.is("dkim-signature"))
            .take(MAX_SIGNATURES)
            .map(|f| Signature::parse(f.value))
            .collect()
    }
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}
