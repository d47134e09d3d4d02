//! Reading command input: a file path or `-` for standard input, with a size limit.

use std::io::Read;

use anyhow::{Context, Result};

/// Input read with a size limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Capped {
    /// All of the input: at most the limit.
    Whole(Vec<u8>),
    /// The input holds more than the limit; reading stopped after limit + 1 bytes.
    TooLarge,
}

/// The bytes of `path` (or standard input for `-`), reading at most `limit` + 1 bytes:
/// memory stays bounded whatever the input (`/dev/zero`, a huge file, an endless pipe).
pub fn read_capped(path: &str, limit: usize) -> Result<Capped> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        let cannot = |e: std::io::Error| {
            anyhow::anyhow!(
                "cannot read {path}: {e}; check the path, or pass - to read standard input"
            )
        };
        std::fs::File::open(path)
            .map_err(cannot)?
            .take(cap)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
    }
    Ok(if bytes.len() > limit {
        Capped::TooLarge
    } else {
        Capped::Whole(bytes)
    })
}

/// Splits record input into TXT RRs, each as its concatenated character-strings.
///
/// One RR per non-empty line. A line in zone-file presentation form (`"v=STSv1; id=" "1;"`,
/// as `dig +short` prints it) is decoded: each quoted string unescaped, then the strings of
/// the line concatenated without spaces (RFC 8461 §3.1). Other lines are taken verbatim.
pub fn txt_rrs(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| presentation_strings(line).unwrap_or_else(|| line.to_vec()))
        .collect()
}

/// Decodes `"a" "b"` into `ab`; `None` when the line is not entirely quoted strings.
fn presentation_strings(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line.trim_ascii();
    if !rest.starts_with(b"\"") {
        return None;
    }
    while !rest.is_empty() {
        rest = rest.strip_prefix(b"\"")?;
        loop {
            match rest.split_first()? {
                (b'"', tail) => {
                    rest = tail.trim_ascii_start();
                    break;
                }
                (b'\\', tail) => {
                    let (value, tail) = unescape(tail)?;
                    out.push(value);
                    rest = tail;
                }
                (&b, tail) => {
                    out.push(b);
                    rest = tail;
                }
            }
        }
    }
    Some(out)
}

/// RFC 1035 §5.1 escapes: `\X` and `\DDD`.
fn unescape(after_backslash: &[u8]) -> Option<(u8, &[u8])> {
    match after_backslash {
        [a, b, c, tail @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let value = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            Some((u8::try_from(value).ok()?, tail))
        }
        [x, tail @ ..] => Some((*x, tail)),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_file_strings_are_joined() {
        assert_eq!(
            txt_rrs(b"\"v=STSv1; id=\" \"abc;\"\n"),
            vec![b"v=STSv1; id=abc;".to_vec()]
        );
        assert_eq!(
            txt_rrs(b"\"a\\\"b\\059\"\r\nv=STSv1; id=1\n\n"),
            vec![b"a\"b;".to_vec(), b"v=STSv1; id=1".to_vec()]
        );
        assert_eq!(
            txt_rrs(b"\"unterminated\n"),
            vec![b"\"unterminated".to_vec()]
        );
    }
}
