//! One `rua` URI (RFC 8460 §3 `tlsrpt-uri`, RFC 3986): checked and classified as
//! `mailto:`, `https:` or another scheme.

use super::Rua;

/// Validates one URI element (no `,`, `;` or whitespace by construction, ASCII) and
/// classifies it. The error is the reason, for [`RecordError::InvalidUri`].
pub(super) fn classify_uri(uri: &str) -> Result<Rua, &'static str> {
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
pub(super) fn percent_decode(s: &str) -> Option<String> {
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

/// `&text[a..b]` without the possibility of a panic.
pub(super) fn slice(text: &str, a: usize, b: usize) -> &str {
    text.get(a..b).unwrap_or_default()
}
