//! Tag lists (RFC 6376 §3.2), the syntax of both the `DKIM-Signature` field and the key
//! record, and the base64 of their `b=`, `bh=` and `p=` values.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::SignatureError;

/// Splits an RFC 6376 §3.2 tag list into `(name, value)` pairs, values without surrounding
/// whitespace (internal folding whitespace is kept). Empty segments (`;;`, a trailing `;`)
/// are skipped; a duplicate name makes the whole list invalid.
///
/// ```
/// use mta_sts_dkim::parse_tag_list;
/// let tags = parse_tag_list(b"v=1; a=rsa-sha256;\r\n\tb=ab\r\n cd ;").unwrap();
/// assert_eq!(tags, [("v", "1"), ("a", "rsa-sha256"), ("b", "ab\r\n cd")]);
/// assert!(parse_tag_list(b"v=1; v=1").is_err());
/// ```
pub fn parse_tag_list(text: &[u8]) -> Result<Vec<(&str, &str)>, SignatureError> {
    let text = std::str::from_utf8(text).map_err(|_| SignatureError::Syntax("not ASCII".into()))?;
    let mut out: Vec<(&str, &str)> = Vec::new();
    for spec in text.split(';') {
        let spec = spec.trim_matches(is_fws);
        if spec.is_empty() {
            continue;
        }
        let Some((name, value)) = spec.split_once('=') else {
            return Err(SignatureError::Syntax(format!(
                "{:?} is not tag=value",
                truncate(spec)
            )));
        };
        let name = name.trim_matches(is_fws);
        let value = value.trim_matches(is_fws);
        // tag-name = ALPHA *ALNUMPUNC
        let mut chars = name.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SignatureError::Syntax(format!(
                "{:?} is not a tag name",
                truncate(name)
            )));
        }
        // tag-value: VALCHAR (%x21-3A / %x3C-7E) separated by folding whitespace.
        if !value
            .bytes()
            .all(|b| matches!(b, 0x21..=0x3A | 0x3C..=0x7E) || is_fws(char::from(b)))
        {
            return Err(SignatureError::Syntax(format!(
                "the value of {name}= has characters outside the tag-value grammar"
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(SignatureError::DuplicateTag(name.to_owned()));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The value of tag `name` in a parsed tag list.
pub(crate) fn tag<'a>(tags: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Folding whitespace (RFC 6376 §2.8): SP, HTAB, CR, LF.
pub(crate) fn is_fws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// At most 40 characters of `s`, for error messages.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `value` with every folding whitespace character removed.
pub(crate) fn strip_fws(value: &str) -> String {
    value.chars().filter(|c| !is_fws(*c)).collect()
}

/// Base64 as RFC 6376 §2.4 writes it: padding may be left out, and bits past the last whole
/// octet are not checked (the lenient reading RFC 4648 §3.5 allows).
const DKIM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Base64 (RFC 4648 §4) with folding whitespace ignored (RFC 6376 §3.5 b=, bh=, p=).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    DKIM_BASE64.decode(strip_fws(text)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6376_3_2_tag_list() {
        assert_eq!(
            parse_tag_list(b" a = b ; c=d e;").unwrap(),
            [("a", "b"), ("c", "d e")]
        );
        assert!(parse_tag_list(b"1a=b").is_err());
        assert!(parse_tag_list(b"a").is_err());
        assert!(parse_tag_list(b"a=\xff").is_err());
        assert!(matches!(
            parse_tag_list(b"a=1;a=2"),
            Err(SignatureError::DuplicateTag(_))
        ));
    }

    #[test]
    fn rfc4648_base64() {
        assert_eq!(base64_decode("Zm9v YmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert!(base64_decode("Zg=a").is_none());
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Z!==").is_none());
    }
}
