//! Parser diagnostics as findings: the text helpers the areas share.

use mta_sts::Diagnostic;

use crate::finding::{Area, Finding, Severity};

pub(super) fn lossy(rr: &[u8]) -> String {
    String::from_utf8_lossy(rr).into_owned()
}

/// Splits a diagnostic message "what is wrong: how to fix it" at the first `: ` outside
/// backticks.
pub(super) fn split_message(message: &str) -> (String, String) {
    let mut in_code = false;
    let bytes = message.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'`' => in_code = !in_code,
            b':' if !in_code && bytes.get(i + 1) == Some(&b' ') => {
                return (message[..i].to_string(), message[i + 2..].to_string());
            }
            _ => {}
        }
    }
    (message.to_string(), String::new())
}

pub(super) fn diagnostic_finding(
    prefix: &str,
    area: Area,
    d: &Diagnostic,
    detail: String,
) -> Finding {
    let (title, fix) = split_message(&d.message);
    let severity = match d.severity {
        mta_sts::Severity::Error => Severity::Error,
        mta_sts::Severity::Warning => Severity::Warning,
    };
    Finding {
        id: format!("{prefix}-{}", d.code),
        severity,
        area,
        title,
        detail,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_messages() {
        assert_eq!(
            split_message("`mx: a` is bad: fix it"),
            ("`mx: a` is bad".to_string(), "fix it".to_string())
        );
        assert_eq!(split_message("plain"), ("plain".to_string(), String::new()));
    }
}
