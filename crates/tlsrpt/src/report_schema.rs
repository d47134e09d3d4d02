//! A strict validator for the RFC 8460 §4.4 JSON report schema, for reports **we** write.
//!
//! [`Report::from_json`](crate::Report::from_json) is tolerant of what others send; this
//! validator is the opposite: it checks a JSON document member by member against §4.4 as the
//! project reads it (notes §2.8) and lists every deviation. Tests run it on every report the
//! toolkit generates.
//!
//! Rules checked:
//! - only the members of the schema, no `null`, I-JSON integers (0 ..= 2^53−1, RFC 7493);
//! - `organization-name`, `contact-info`, `report-id`: non-empty strings;
//! - `date-range`: RFC 3339 §5.6 date-times in UTC with `Z`, start at `00:00:00Z`, end the
//!   next day's `00:00:00Z` or the same day's `23:59:59Z` (RFC 8460 §4.1 "full UTC day");
//! - `policies`: a non-empty array (RFC 8460 §4); `policy-type` one of `tlsa`, `sts`,
//!   `no-policy-found` (§4.4); `policy-domain` present, an ASCII name (A-labels, §4.4);
//!   `policy-string` an array of strings, present for `sts` and `tlsa` (except for an `sts`
//!   policy that could not be retrieved: only §4.3.2 discovery failures, no success, so there
//!   is no policy text), absent for `no-policy-found`; `mx-host` an array of ASCII strings, only for `sts`;
//! - `summary`: both counts present; `failure-details` an array;
//! - each failure detail: a registered `result-type` (§4.3); `failed-session-count`;
//!   `sending-mta-ip` and `receiving-mx-hostname` required for the negotiation failures of
//!   §4.3.1 (a policy fetch failure has no MX session); IP members in RFC 8460 §4.4 IPv4
//!   dotted-decimal or IPv6 form; the optional members, when present, are strings.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Map, Value};

use crate::report::{MAX_COUNT, PolicyType, ResultType};
use crate::report_datetime::{SECONDS_PER_DAY, UtcDateTime};

/// One deviation from the schema: where (a JSON-pointer-like path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Location, e.g. `/policies/0/summary/total-failure-session-count`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Checker {
    violations: Vec<SchemaViolation>,
}

impl Checker {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.violations.push(SchemaViolation {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn object<'a>(&mut self, value: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            _ => {
                self.fail(path, "must be an object");
                None
            }
        }
    }

    fn only(&mut self, map: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.fail(&format!("{path}/{key}"), "is not a member of the schema");
            }
        }
    }

    /// A required (or, with `required == false`, optional) non-empty string member.
    fn string<'a>(
        &mut self,
        map: &'a Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'a str> {
        let here = format!("{path}/{key}");
        match map.get(key) {
            None if required => {
                self.fail(&here, "is required");
                None
            }
            None => None,
            Some(Value::String(s)) if s.is_empty() => {
                self.fail(&here, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.fail(&here, "must be a string");
                None
            }
        }
    }

    fn count(&mut self, map: &Map<String, Value>, path: &str, key: &str) {
        let here = format!("{path}/{key}");
        match map.get(key) {
            None => self.fail(&here, "is required"),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v <= MAX_COUNT) => {}
            Some(_) => self.fail(&here, "must be an integer from 0 to 2^53-1"),
        }
    }

    fn strings(&mut self, value: &Value, path: &str, ascii: bool) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if ascii && !s.is_ascii() => {
                            self.fail(&format!("{path}/{i}"), "must be ASCII (A-labels)")
                        }
                        Value::String(_) => {}
                        _ => self.fail(&format!("{path}/{i}"), "must be a string"),
                    }
                }
            }
            _ => self.fail(path, "must be an array of strings"),
        }
    }
}

/// RFC 8460 §4.4 IPv4 `dec-octet` form (no leading zeros) or an IPv6 address.
fn is_report_ip(text: &str) -> bool {
    match text.parse::<IpAddr>() {
        // Rust's parser already refuses leading zeros in IPv4 octets; round-tripping keeps
        // only the canonical dotted-decimal form.
        Ok(IpAddr::V4(v4)) => text == Ipv4Addr::to_string(&v4),
        Ok(IpAddr::V6(_)) => true,
        Err(_) => false,
    }
}

fn strict_datetime(text: &str) -> Option<UtcDateTime> {
    // Strict: the tolerant parser plus a mandatory `Z` and no fraction.
    (text.len() == 20 && text.ends_with('Z'))
        .then(|| UtcDateTime::parse(text).ok())
        .flatten()
}

/// Validates a JSON document against the RFC 8460 §4.4 schema (see the module
/// documentation); an empty list means valid.
///
/// ```
/// use tlsrpt::{Report, UtcDateTime, validate_report_json};
/// let report = Report::daily("Example", "tlsrpt@example.org", "r1",
///     UtcDateTime::parse("2024-01-02T00:00:00Z")?);
/// let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
/// // No policies yet: RFC 8460 §4 wants at least one.
/// assert_eq!(validate_report_json(&json)[0].path, "/policies");
/// # Ok::<(), tlsrpt::DateTimeError>(())
/// ```
pub fn validate_report_json(document: &Value) -> Vec<SchemaViolation> {
    let mut c = Checker {
        violations: Vec::new(),
    };
    let Some(top) = c.object(document, "") else {
        return c.violations;
    };
    c.only(
        top,
        "",
        &[
            "organization-name",
            "date-range",
            "contact-info",
            "report-id",
            "policies",
        ],
    );
    c.string(top, "", "organization-name", true);
    c.string(top, "", "contact-info", true);
    c.string(top, "", "report-id", true);
    match top.get("date-range") {
        None => c.fail("/date-range", "is required"),
        Some(range) => {
            if let Some(range) = c.object(range, "/date-range") {
                c.only(range, "/date-range", &["start-datetime", "end-datetime"]);
                let start = c.string(range, "/date-range", "start-datetime", true);
                let end = c.string(range, "/date-range", "end-datetime", true);
                let start = start.and_then(|s| {
                    let t = strict_datetime(s);
                    if t.is_none() {
                        c.fail(
                            "/date-range/start-datetime",
                            "must be YYYY-MM-DDTHH:MM:SSZ (RFC 3339 §5.6, UTC)",
                        );
                    }
                    t
                });
                let end = end.and_then(|s| {
                    let t = strict_datetime(s);
                    if t.is_none() {
                        c.fail(
                            "/date-range/end-datetime",
                            "must be YYYY-MM-DDTHH:MM:SSZ (RFC 3339 §5.6, UTC)",
                        );
                    }
                    t
                });
                if let (Some(start), Some(end)) = (start, end) {
                    if start.day_start() != start {
                        c.fail(
                            "/date-range/start-datetime",
                            "must be 00:00:00Z (RFC 8460 §4.1)",
                        );
                    }
                    if end != start.plus_seconds(SECONDS_PER_DAY)
                        && end != start.plus_seconds(SECONDS_PER_DAY - 1)
                    {
                        c.fail(
                            "/date-range/end-datetime",
                            "must end the UTC day that starts at start-datetime (RFC 8460 §4.1)",
                        );
                    }
                }
            }
        }
    }
    match top.get("policies") {
        None => c.fail("/policies", "is required"),
        Some(Value::Array(policies)) if policies.is_empty() => {
            c.fail("/policies", "must hold at least one policy (RFC 8460 §4.4)")
        }
        Some(Value::Array(policies)) => {
            for (i, p) in policies.iter().enumerate() {
                validate_policy(&mut c, p, &format!("/policies/{i}"));
            }
        }
        Some(_) => c.fail("/policies", "must be an array (RFC 8460 §4)"),
    }
    c.violations
}

/// Whether an `sts` policy element only reports that its policy could not be retrieved:
/// no successful session, and every failure detail an MTA-STS discovery failure of RFC 8460
/// §4.3.2. There is no policy text to put in `policy-string` then.
fn policy_never_retrieved(policy_result: &Map<String, Value>) -> bool {
    let successful = policy_result
        .get("summary")
        .and_then(|s| s.get("total-successful-session-count"))
        .and_then(Value::as_u64);
    let details = policy_result
        .get("failure-details")
        .and_then(Value::as_array);
    successful == Some(0)
        && details.is_some_and(|d| {
            !d.is_empty()
                && d.iter().all(|detail| {
                    matches!(
                        detail.get("result-type").and_then(Value::as_str),
                        Some(
                            "sts-policy-fetch-error" | "sts-policy-invalid" | "sts-webpki-invalid"
                        )
                    )
                })
        })
}

fn validate_policy(c: &mut Checker, value: &Value, path: &str) {
    let Some(map) = c.object(value, path) else {
        return;
    };
    c.only(map, path, &["policy", "summary", "failure-details"]);
    let ppath = format!("{path}/policy");
    match map.get("policy") {
        None => c.fail(&ppath, "is required"),
        Some(policy) => {
            if let Some(policy) = c.object(policy, &ppath) {
                c.only(
                    policy,
                    &ppath,
                    &["policy-type", "policy-string", "policy-domain", "mx-host"],
                );
                let kind = c
                    .string(policy, &ppath, "policy-type", true)
                    .map(PolicyType::from_wire);
                if let Some(PolicyType::Other(t)) = &kind {
                    c.fail(
                        &format!("{ppath}/policy-type"),
                        format!("`{t}` is not tlsa, sts or no-policy-found"),
                    );
                }
                if let Some(domain) = c.string(policy, &ppath, "policy-domain", true)
                    && !domain.is_ascii()
                {
                    c.fail(
                        &format!("{ppath}/policy-domain"),
                        "must be A-labels (RFC 8460 §4.4)",
                    );
                }
                let here = format!("{ppath}/policy-string");
                match (policy.get("policy-string"), &kind) {
                    (Some(v), Some(PolicyType::NoPolicyFound)) => {
                        let _ = v;
                        c.fail(&here, "is not written for no-policy-found");
                    }
                    (Some(v), _) => c.strings(v, &here, false),
                    (None, Some(PolicyType::Sts)) if policy_never_retrieved(map) => {}
                    (None, Some(PolicyType::Sts | PolicyType::Tlsa)) => {
                        c.fail(&here, "is required for sts and tlsa")
                    }
                    (None, _) => {}
                }
                let here = format!("{ppath}/mx-host");
                match (policy.get("mx-host"), &kind) {
                    (Some(v), Some(PolicyType::Sts)) => c.strings(v, &here, true),
                    (Some(_), _) => c.fail(&here, "is only written for sts policies"),
                    (None, _) => {}
                }
            }
        }
    }
    let spath = format!("{path}/summary");
    match map.get("summary") {
        None => c.fail(&spath, "is required"),
        Some(summary) => {
            if let Some(summary) = c.object(summary, &spath) {
                c.only(
                    summary,
                    &spath,
                    &[
                        "total-successful-session-count",
                        "total-failure-session-count",
                    ],
                );
                c.count(summary, &spath, "total-successful-session-count");
                c.count(summary, &spath, "total-failure-session-count");
            }
        }
    }
    let fpath = format!("{path}/failure-details");
    match map.get("failure-details") {
        None => c.fail(&fpath, "is required (write [] when there are no failures)"),
        Some(Value::Array(details)) => {
            for (i, d) in details.iter().enumerate() {
                validate_detail(c, d, &format!("{fpath}/{i}"));
            }
        }
        Some(_) => c.fail(&fpath, "must be an array"),
    }
}

fn validate_detail(c: &mut Checker, value: &Value, path: &str) {
    let Some(map) = c.object(value, path) else {
        return;
    };
    c.only(
        map,
        path,
        &[
            "result-type",
            "sending-mta-ip",
            "receiving-mx-hostname",
            "receiving-mx-helo",
            "receiving-ip",
            "failed-session-count",
            "additional-information",
            "failure-reason-code",
        ],
    );
    let kind = c
        .string(map, path, "result-type", true)
        .map(ResultType::from_wire);
    if let Some(ResultType::Other(t)) = &kind {
        c.fail(
            &format!("{path}/result-type"),
            format!("`{t}` is not a result type of RFC 8460 §4.3"),
        );
    }
    let session = kind
        .as_ref()
        .is_some_and(ResultType::is_negotiation_failure);
    for key in ["sending-mta-ip", "receiving-ip"] {
        let required = session && key == "sending-mta-ip";
        if let Some(ip) = c.string(map, path, key, required)
            && !is_report_ip(ip)
        {
            c.fail(
                &format!("{path}/{key}"),
                "must be an IPv4 (dotted decimal) or IPv6 address (RFC 8460 §4.4)",
            );
        }
    }
    c.string(map, path, "receiving-mx-hostname", session);
    c.string(map, path, "receiving-mx-helo", false);
    c.string(map, path, "additional-information", false);
    c.string(map, path, "failure-reason-code", false);
    c.count(map, path, "failed-session-count");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_forms() {
        assert!(is_report_ip("192.0.2.1"));
        assert!(is_report_ip("2001:db8::1"));
        assert!(!is_report_ip("192.0.2.01"));
        assert!(!is_report_ip("mx.example"));
    }

    #[test]
    fn rfc8460_4_3_2_policy_string_may_be_absent_when_no_policy_was_retrieved() {
        let report = |successful: u64, result_type: &str| {
            serde_json::json!({
                "organization-name": "o", "contact-info": "t@s.test", "report-id": "r@s.test",
                "date-range": {"start-datetime": "2024-05-01T00:00:00Z",
                               "end-datetime": "2024-05-02T00:00:00Z"},
                "policies": [{
                    "policy": {"policy-type": "sts", "policy-domain": "example.com"},
                    "summary": {"total-successful-session-count": successful,
                                "total-failure-session-count": 1},
                    "failure-details": [{"result-type": result_type, "failed-session-count": 1,
                                         "sending-mta-ip": "192.0.2.1",
                                         "receiving-mx-hostname": "mx.example.com"}]
                }]
            })
        };
        assert!(validate_report_json(&report(0, "sts-webpki-invalid")).is_empty());
        // A session that applied a policy, or a TLS failure under it: the policy is known.
        assert!(!validate_report_json(&report(1, "sts-webpki-invalid")).is_empty());
        assert!(!validate_report_json(&report(0, "certificate-expired")).is_empty());
    }
}
