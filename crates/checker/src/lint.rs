//! `mta-sts lint` in library form: one policy file or one TXT record value judged as a
//! sender would, without any lookup. [`lint`] gives the [`LintReport`] (the `lint --json`
//! document; additive changes only); [`too_large`] the report for input over the size cap.

use mta_sts::diagnostic::Verdict as _;
use mta_sts::{Diagnostic, policy, record};
use serde::Serialize;

/// What the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LintKind {
    /// A policy file (RFC 8461 §3.2), `"policy"`.
    Policy,
    /// `_mta-sts` TXT record values (RFC 8461 §3.1), `"sts-record"`.
    StsRecord,
    /// `_smtp._tls` TXT record values (RFC 8460 §3), `"tlsrpt-record"`.
    TlsrptRecord,
}

/// The verdict on one input: the `lint --json` document.
#[derive(Debug, Clone, Serialize)]
pub struct LintReport {
    /// What the input is.
    pub kind: LintKind,
    /// Whether senders that tolerate what `mta-sts` tolerates accept it.
    pub valid: bool,
    /// Whether it also follows the exact RFC grammar (strict senders accept it).
    pub strict_valid: bool,
    /// The policy, when the input is a usable policy file.
    pub policy: Option<mta_sts::Policy>,
    /// The record as JSON, when the input holds a usable record.
    pub record: Option<serde_json::Value>,
    /// Every problem, each with its code and fix.
    pub diagnostics: Vec<Diagnostic>,
}

/// Lints `bytes` as `kind`. Record input holds one TXT record value per line (zone-file
/// quoting as `dig +short` prints it is understood, see [`txt_rrs`]).
pub fn lint(kind: LintKind, bytes: &[u8]) -> LintReport {
    match kind {
        LintKind::Policy => policy_file(bytes),
        LintKind::StsRecord => sts_record(bytes),
        LintKind::TlsrptRecord => tlsrpt_record(bytes),
    }
}

/// The report for input over `limit` bytes: invalid, with one `too-large` error.
pub fn too_large(kind: LintKind, limit: usize) -> LintReport {
    let message = match kind {
        LintKind::StsRecord | LintKind::TlsrptRecord => format!(
            "the input is larger than {limit} bytes: pass the TXT record value, a line of text"
        ),
        LintKind::Policy => format!(
            "the policy is larger than {limit} bytes, so senders refuse to fetch it (RFC 8461 §3.3 suggests a 64-kilobyte cap): a policy is a few lines, serve only the policy"
        ),
    };
    LintReport {
        kind,
        valid: false,
        strict_valid: false,
        policy: None,
        record: None,
        diagnostics: vec![Diagnostic::error("too-large", None, message)],
    }
}

fn policy_file(bytes: &[u8]) -> LintReport {
    let lint = policy::lint(bytes);
    LintReport {
        kind: LintKind::Policy,
        valid: lint.is_valid(),
        strict_valid: lint.is_strict_valid(),
        policy: lint.policy,
        record: None,
        diagnostics: lint.diagnostics,
    }
}

fn sts_record(bytes: &[u8]) -> LintReport {
    let rrs = txt_rrs(bytes);
    let (record, diagnostics) = match choose(&rrs, record::is_candidate) {
        Ok(rr) => {
            let lint = match std::str::from_utf8(rr) {
                Ok(text) => record::lint(text),
                Err(_) => record::lint(&String::from_utf8_lossy(rr)),
            };
            (lint.record, lint.diagnostics)
        }
        Err(diagnostic) => (None, vec![diagnostic]),
    };
    let valid = diagnostics.is_valid() && record.is_some();
    LintReport {
        kind: LintKind::StsRecord,
        valid,
        strict_valid: valid && diagnostics.is_strict_valid(),
        policy: None,
        record: record.and_then(|r| serde_json::to_value(r).ok()),
        diagnostics,
    }
}

fn tlsrpt_record(bytes: &[u8]) -> LintReport {
    let rrs = txt_rrs(bytes);
    let (record, diagnostics) = match choose(&rrs, tlsrpt::has_record_prefix) {
        Ok(rr) => {
            let lint = tlsrpt::lint(&String::from_utf8_lossy(rr));
            (lint.record, lint.diagnostics)
        }
        Err(diagnostic) => (None, vec![diagnostic]),
    };
    let valid = diagnostics.is_valid() && record.is_some();
    LintReport {
        kind: LintKind::TlsrptRecord,
        valid,
        strict_valid: valid && diagnostics.is_strict_valid(),
        policy: None,
        record: record.and_then(|r| serde_json::to_value(r).ok()),
        diagnostics,
    }
}

/// Applies the "exactly one record with the version prefix" rule (RFC 8461 §3.1, RFC 8460
/// §3) when the input holds several records; a single record is linted whatever it starts
/// with, so that its own problem is reported.
fn choose(rrs: &[Vec<u8>], is_candidate: fn(&[u8]) -> bool) -> Result<&[u8], Diagnostic> {
    match rrs {
        [] => Err(Diagnostic::error(
            "empty-input",
            None,
            "the input holds no record: pass the TXT value, e.g. `v=STSv1; id=20240101T000000;`",
        )),
        [one] => Ok(one),
        many => {
            let candidates: Vec<&Vec<u8>> = many.iter().filter(|rr| is_candidate(rr)).collect();
            match candidates.as_slice() {
                [one] => Ok(one),
                [] => Err(Diagnostic::error(
                    "no-record",
                    None,
                    "none of the records begins with the version field: publish exactly one record that starts with it",
                )),
                _ => Err(Diagnostic::error(
                    "multiple-records",
                    None,
                    format!(
                        "{} records begin with the version field; senders then ignore them all: publish exactly one",
                        candidates.len()
                    ),
                )),
            }
        }
    }
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
