//! Session events: what a sending MTA records per SMTP session so that reports can be
//! generated later (RFC 8460 §4: reports count *sessions*, §4.2 successes, §4.3 failures).
//!
//! # The events file (JSON lines)
//!
//! An MTA (or this project's daemon) appends one JSON object per line to a file; `mta-sts
//! report send --events FILE` ingests new lines (it remembers, per file, the byte offset it
//! consumed, so re-running is idempotent and only a trailing partial line waits for the next
//! run):
//!
//! ```json
//! {"time": "2024-05-01T13:14:15Z",            // RFC 3339, or Unix seconds as a number
//!  "policy_domain": "example.com",
//!  "policy": {"type": "sts",                   // "sts" | "tlsa" | "no-policy-found"
//!             "string": ["version: STSv1", "mode: enforce", "mx: mx.example.com", "max_age: 86400"],
//!             "mx_host": ["mx.example.com"]},
//!  "result": "certificate-expired",            // "success" or an RFC 8460 §4.3 result type
//!  "sending_mta_ip": "192.0.2.1",              // optional, the rest too
//!  "receiving_mx_hostname": "mx.example.com",
//!  "receiving_mx_helo": "mx1.example.com",
//!  "receiving_ip": "198.51.100.7",
//!  "failure_reason_code": "X509_V_ERR_CERT_HAS_EXPIRED",
//!  "additional_information": "https://mx.example.com/tls-help", // §4.4, a URI
//!  "count": 1}                                 // optional, sessions this line stands for
//! ```
//!
//! For the negotiation failures of RFC 8460 §4.3.1 give `sending_mta_ip` and
//! `receiving_mx_hostname` (the §4.4 schema requires them there); an `sts` or `tlsa` policy
//! should carry its `string`.
//!
//! Members not listed here are ignored (the daemon adds `"source"`), so writers may annotate
//! lines.
//!
//! A failure in MTA-STS `testing` mode is recorded as a failure although the message was
//! delivered (project notes §4 item 18): the report tells the domain what *would* have failed.
//!
//! # Postfix 3.10 / libtlsrpt datagrams
//!
//! Postfix 3.10 reports TLS outcomes through sys4's libtlsrpt, which sends one JSON datagram
//! per delivery request to a Unix socket read by sys4's `tlsrpt-reporter` (the collector). The
//! datagram (as written by libtlsrpt 0.5) is
//! `{"d": recipient domain, "pr": the _smtp._tls record, "policies": [{"policy-type": 1 (tlsa)
//! | 2 (sts) | 9 (no-policy-found), "policy-domain", "policy-string": [..], "mx-host": [..],
//! "failure-details": [{"c": code, "s": sending ip, "n": mx hostname, "h": helo, "r":
//! receiving ip, "a": additional information, "f": reason code}], "t": number of failures,
//! "f": 0 final success | 1 final failure}]}` with numeric codes 201–205 (negotiation), 301–303
//! (MTA-STS) and 304–306 (DANE).
//!
//! It maps onto events, so [`parse_line`] accepts such lines too (recognised by the `"d"` and
//! `"policies"` members) when they are captured to a file, one per line. Two differences are
//! handled: a datagram carries **no time stamp** (the collector stamps it on arrival; here the
//! caller's `received` time is used), and a datagram may stand for more than one session:
//! every failure detail is one failed session (a connection to one MX), and a final success
//! (`"f": 0`) adds one successful session. Postfix 3.10 sends one datagram per TLS session
//! (a failure detail, or a success), as its tests show; a writer that batches the MX
//! attempts of one delivery is counted the same, per session. The `"h"` member carries
//! Postfix's whole EHLO reply; `receiving-mx-helo` gets the domain its first line announces. A final failure
//! without any detail cannot be attributed to a result type and is refused. Listening on the
//! Unix datagram socket itself is not done here.

use std::fmt;

use crate::report::{PolicyType, ResultType};
use crate::report_datetime::UtcDateTime;

/// The policy an event was evaluated under (RFC 8460 §4.4 `policy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventPolicy {
    /// `policy-type`.
    pub policy_type: PolicyType,
    /// `policy-string`: the policy lines (MTA-STS) or TLSA RRs.
    pub policy_string: Vec<String>,
    /// `mx-host` patterns of an MTA-STS policy.
    pub mx_host: Vec<String>,
}

/// What happened in a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// TLS negotiated and validated (RFC 8460 §4.2).
    Success,
    /// A failure of this RFC 8460 §4.3 result type.
    Failure(ResultType),
}

/// One line of the events file: `count` sessions with the same outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When the session happened.
    pub time: UtcDateTime,
    /// The policy domain (lower case, no trailing dot).
    pub policy_domain: String,
    /// The policy applied.
    pub policy: EventPolicy,
    /// Success or the failure's result type.
    pub outcome: Outcome,
    /// `sending-mta-ip`.
    pub sending_mta_ip: Option<String>,
    /// `receiving-mx-hostname`.
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`.
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`.
    pub receiving_ip: Option<String>,
    /// `failure-reason-code`.
    pub failure_reason_code: Option<String>,
    /// `additional-information` (a URI): libtlsrpt's `"a"`, or `additional_information`.
    pub additional_information: Option<String>,
    /// Sessions this event stands for (at least 1).
    pub count: u64,
}

impl Event {
    /// `count` sessions for `policy_domain` at `time` under `policy` with `outcome`, and none
    /// of the optional failure-detail fields (RFC 8460 §4.3) set: fill in those known.
    pub fn new(
        time: UtcDateTime,
        policy_domain: impl Into<String>,
        policy: EventPolicy,
        outcome: Outcome,
        count: u64,
    ) -> Event {
        Event {
            time,
            policy_domain: policy_domain.into(),
            policy,
            outcome,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            failure_reason_code: None,
            additional_information: None,
            count,
        }
    }
}

/// Why a line is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EventError(pub String);

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a TLS-RPT session event: {}", self.0)
    }
}

fn err(message: impl Into<String>) -> EventError {
    EventError(message.into())
}

/// Lower case without one trailing dot.
fn domain(text: &str) -> String {
    text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase()
}

#[cfg(feature = "serde")]
mod parse {
    use serde_json::{Map, Value};

    use super::*;
    use crate::report::MAX_COUNT;

    fn opt_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, EventError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(format!("`{key}` must be a string"))),
        }
    }

    /// RFC 8460 §4.4 `receiving-mx-helo` is the HELO/EHLO string the MX announced; Postfix
    /// 3.10 hands libtlsrpt the MX's whole EHLO reply (`250-mx.example.com\r\n250-PIPELINING…`,
    /// checked against Postfix 3.10.13). Keep the domain of its first line (RFC 5321
    /// §4.1.1.1: `250-<domain> [greeting]`), without the reply code and the extension lines;
    /// text that is no SMTP reply keeps its first word.
    fn ehlo_name(h: &str) -> Option<String> {
        let first = h.lines().next()?.trim();
        let bytes = first.as_bytes();
        let text = match bytes {
            [a, b, c, rest @ ..]
                if a.is_ascii_digit()
                    && b.is_ascii_digit()
                    && c.is_ascii_digit()
                    && matches!(rest.first(), None | Some(b'-' | b' ')) =>
            {
                first.get(4..).unwrap_or("")
            }
            _ => first,
        };
        text.split_whitespace().next().map(str::to_owned)
    }

    fn strings(value: Option<&Value>, key: &str) -> Result<Vec<String>, EventError> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| err(format!("`{key}` must hold strings")))
                })
                .collect(),
            Some(_) => Err(err(format!("`{key}` must be an array of strings"))),
        }
    }

    fn policy_type(text: &str) -> Result<PolicyType, EventError> {
        match PolicyType::from_wire(text) {
            PolicyType::Other(other) => Err(err(format!(
                "policy type `{other}` is not sts, tlsa or no-policy-found (RFC 8460 §4.4)"
            ))),
            known => Ok(known),
        }
    }

    fn time(value: Option<&Value>, received: UtcDateTime) -> Result<UtcDateTime, EventError> {
        match value {
            None | Some(Value::Null) => Ok(received),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(UtcDateTime::from_unix_seconds)
                .ok_or_else(|| err("`time` is not a number of seconds")),
            Some(Value::String(s)) => UtcDateTime::parse(s).map_err(|e| err(e.to_string())),
            Some(_) => Err(err("`time` must be RFC 3339 text or Unix seconds")),
        }
    }

    /// One line of our own format.
    pub(super) fn native(
        object: &Map<String, Value>,
        received: UtcDateTime,
    ) -> Result<Vec<Event>, EventError> {
        let policy_domain = object
            .get("policy_domain")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(domain)
            .ok_or_else(|| err("`policy_domain` is missing"))?;
        let policy = object
            .get("policy")
            .and_then(Value::as_object)
            .ok_or_else(|| err("`policy` must be an object"))?;
        let policy = EventPolicy {
            policy_type: policy_type(
                policy
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("`policy.type` is missing"))?,
            )?,
            policy_string: strings(policy.get("string"), "policy.string")?,
            mx_host: strings(policy.get("mx_host"), "policy.mx_host")?,
        };
        let outcome = match object.get("result").and_then(Value::as_str) {
            Some("success") => Outcome::Success,
            Some(text) if !text.is_empty() => Outcome::Failure(ResultType::from_wire(text)),
            _ => return Err(err("`result` is missing")),
        };
        let count = match object.get("count") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .filter(|c| (1..=MAX_COUNT).contains(c))
                .ok_or_else(|| err("`count` must be a positive integer"))?,
        };
        Ok(vec![Event {
            time: time(object.get("time"), received)?,
            policy_domain,
            policy,
            outcome,
            sending_mta_ip: opt_string(object, "sending_mta_ip")?,
            receiving_mx_hostname: opt_string(object, "receiving_mx_hostname")?,
            receiving_mx_helo: opt_string(object, "receiving_mx_helo")?,
            receiving_ip: opt_string(object, "receiving_ip")?,
            failure_reason_code: opt_string(object, "failure_reason_code")?,
            additional_information: opt_string(object, "additional_information")?,
            count,
        }])
    }

    /// The libtlsrpt failure codes (`tlsrpt_failure_t`) as RFC 8460 §4.3 result types.
    fn datagram_result(code: i64) -> Result<ResultType, EventError> {
        Ok(match code {
            201 => ResultType::StarttlsNotSupported,
            202 => ResultType::CertificateHostMismatch,
            203 => ResultType::CertificateNotTrusted,
            204 => ResultType::CertificateExpired,
            205 => ResultType::ValidationFailure,
            301 => ResultType::StsPolicyFetchError,
            302 => ResultType::StsPolicyInvalid,
            303 => ResultType::StsWebpkiInvalid,
            304 => ResultType::TlsaInvalid,
            305 => ResultType::DnssecInvalid,
            306 => ResultType::DaneRequired,
            other => return Err(err(format!("unknown libtlsrpt failure code {other}"))),
        })
    }

    /// One libtlsrpt datagram (see the module documentation).
    pub(super) fn datagram(
        object: &Map<String, Value>,
        received: UtcDateTime,
    ) -> Result<Vec<Event>, EventError> {
        let recipient_domain = object.get("d").and_then(Value::as_str).unwrap_or_default();
        let policies = object
            .get("policies")
            .and_then(Value::as_array)
            .ok_or_else(|| err("`policies` must be an array"))?;
        let mut events = Vec::new();
        for policy in policies {
            let policy = policy
                .as_object()
                .ok_or_else(|| err("a policy must be an object"))?;
            let policy_type = match policy.get("policy-type").and_then(Value::as_i64) {
                Some(1) => PolicyType::Tlsa,
                Some(2) => PolicyType::Sts,
                Some(9) => PolicyType::NoPolicyFound,
                other => return Err(err(format!("unknown libtlsrpt policy type {other:?}"))),
            };
            let policy_domain = policy
                .get("policy-domain")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(recipient_domain);
            if policy_domain.is_empty() {
                return Err(err("neither `policy-domain` nor `d` names the domain"));
            }
            let event_policy = EventPolicy {
                policy_type,
                policy_string: strings(policy.get("policy-string"), "policy-string")?,
                mx_host: strings(policy.get("mx-host"), "mx-host")?,
            };
            let base = |outcome| {
                Event::new(
                    received,
                    domain(policy_domain),
                    event_policy.clone(),
                    outcome,
                    1,
                )
            };
            let details = match policy.get("failure-details") {
                None | Some(Value::Null) => &[][..],
                Some(Value::Array(items)) => items.as_slice(),
                Some(_) => return Err(err("`failure-details` must be an array")),
            };
            for detail in details {
                let detail = detail
                    .as_object()
                    .ok_or_else(|| err("a failure detail must be an object"))?;
                let code = detail
                    .get("c")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| err("a failure detail has no code `c`"))?;
                let mut event = base(Outcome::Failure(datagram_result(code)?));
                event.sending_mta_ip = opt_string(detail, "s")?;
                event.receiving_mx_hostname = opt_string(detail, "n")?;
                event.receiving_mx_helo = opt_string(detail, "h")?.and_then(|h| ehlo_name(&h));
                event.receiving_ip = opt_string(detail, "r")?;
                event.additional_information = opt_string(detail, "a")?;
                event.failure_reason_code = opt_string(detail, "f")?;
                events.push(event);
            }
            match policy.get("f").and_then(Value::as_i64) {
                Some(0) => events.push(base(Outcome::Success)),
                Some(1) if details.is_empty() => {
                    return Err(err("a final failure without failure details"));
                }
                Some(1) => {}
                other => return Err(err(format!("unknown libtlsrpt final result {other:?}"))),
            }
        }
        Ok(events)
    }
}

/// Parses one line of an events file: our format or a libtlsrpt datagram (see the module
/// documentation). `received` stands in for a missing time (datagrams never carry one).
/// Blank lines give no events.
///
/// ```
/// use tlsrpt::event::{parse_line, Outcome};
/// use tlsrpt::UtcDateTime;
/// let line = r#"{"time":1714569255,"policy_domain":"Example.COM.","policy":{"type":"sts",
///   "mx_host":["mx.example.com"]},"result":"certificate-expired","count":3}"#;
/// let events = parse_line(line, UtcDateTime::EPOCH)?;
/// assert_eq!(events[0].policy_domain, "example.com");
/// assert_eq!(events[0].count, 3);
/// assert!(matches!(events[0].outcome, Outcome::Failure(_)));
/// # Ok::<(), tlsrpt::event::EventError>(())
/// ```
#[cfg(feature = "serde")]
pub fn parse_line(line: &str, received: UtcDateTime) -> Result<Vec<Event>, EventError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| err("a line must be a JSON object"))?;
    if object.contains_key("d") && object.contains_key("policies") {
        parse::datagram(object, received)
    } else {
        parse::native(object, received)
    }
}

#[cfg(feature = "serde")]
impl Event {
    /// This event as one line of our events format (no trailing newline).
    pub fn to_json_line(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("time".into(), self.time.to_string().into());
        object.insert("policy_domain".into(), self.policy_domain.clone().into());
        let mut policy = serde_json::Map::new();
        policy.insert("type".into(), self.policy.policy_type.as_str().into());
        if !self.policy.policy_string.is_empty() {
            policy.insert("string".into(), self.policy.policy_string.clone().into());
        }
        if !self.policy.mx_host.is_empty() {
            policy.insert("mx_host".into(), self.policy.mx_host.clone().into());
        }
        object.insert("policy".into(), policy.into());
        let result = match &self.outcome {
            Outcome::Success => "success",
            Outcome::Failure(r) => r.as_str(),
        };
        object.insert("result".into(), result.into());
        for (key, value) in [
            ("sending_mta_ip", &self.sending_mta_ip),
            ("receiving_mx_hostname", &self.receiving_mx_hostname),
            ("receiving_mx_helo", &self.receiving_mx_helo),
            ("receiving_ip", &self.receiving_ip),
            ("failure_reason_code", &self.failure_reason_code),
            ("additional_information", &self.additional_information),
        ] {
            if let Some(v) = value {
                object.insert(key.into(), v.clone().into());
            }
        }
        object.insert("count".into(), self.count.into());
        serde_json::Value::Object(object).to_string()
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn datagram_maps_to_sessions() {
        let line = r#"{"d":"example.com","pr":"v=TLSRPTv1; rua=mailto:r@example.com","policies":[{"policy-type":2,"policy-domain":"example.com","policy-string":["version: STSv1","mode: enforce"],"mx-host":["mx.example.com"],"failure-details":[{"c":204,"s":"192.0.2.1","n":"mx1.example.com","r":"198.51.100.1"}],"t":1,"f":0}]}"#;
        let received = UtcDateTime::from_unix_seconds(1_714_569_255);
        let events = parse_line(line, received).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].outcome,
            Outcome::Failure(ResultType::CertificateExpired)
        );
        assert_eq!(
            events[0].receiving_mx_hostname.as_deref(),
            Some("mx1.example.com")
        );
        assert_eq!(events[1].outcome, Outcome::Success);
        assert_eq!(events[1].time, received);
        assert_eq!(events[0].policy.policy_type, PolicyType::Sts);
    }

    /// RFC 8460 §4.4: `receiving-mx-helo` is the EHLO string, not the whole EHLO reply
    /// Postfix 3.10 puts in `"h"`.
    #[test]
    fn rfc8460_4_4_datagram_helo_is_the_ehlo_domain() {
        let helo = |h: &str| {
            let line = format!(
                r#"{{"d":"example.com","policies":[{{"policy-type":2,"policy-domain":"example.com","failure-details":[{{"c":202,"n":"mx.example.com","h":{}}}],"f":1}}]}}"#,
                serde_json::to_string(h).unwrap()
            );
            parse_line(&line, UtcDateTime::EPOCH).unwrap()[0]
                .receiving_mx_helo
                .clone()
        };
        assert_eq!(
            helo("250-mx.example.com\r\n250-PIPELINING\r\n250 STARTTLS").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(
            helo("250 mx.example.com Hello").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(helo("mx1.example.com").as_deref(), Some("mx1.example.com"));
        assert_eq!(helo("  ").as_deref(), None);
        assert_eq!(helo("250").as_deref(), None);
    }

    #[test]
    fn datagram_lines_round_trip_with_additional_information() {
        // A collector stamps datagrams and rewrites them as lines of our format; nothing
        // of RFC 8460 §4.4 may be lost on the way (`additional-information` included).
        let line = r#"{"d":"example.com","policies":[{"policy-type":2,"policy-domain":"example.com","failure-details":[{"c":202,"s":"192.0.2.1","n":"mx.example.com","a":"https://example.com/tls","f":"name"}],"f":1}]}"#;
        let received = UtcDateTime::from_unix_seconds(1_714_569_255);
        let events = parse_line(line, received).unwrap();
        let again = parse_line(&events[0].to_json_line(), UtcDateTime::EPOCH).unwrap();
        assert_eq!(events, again);
        assert_eq!(
            again[0].additional_information.as_deref(),
            Some("https://example.com/tls")
        );
    }

    #[test]
    fn native_round_trips_and_refuses_garbage() {
        let line = r#"{"time":"2024-05-01T13:14:15Z","policy_domain":"example.com","policy":{"type":"no-policy-found"},"result":"success"}"#;
        let events = parse_line(line, UtcDateTime::EPOCH).unwrap();
        let again = parse_line(&events[0].to_json_line(), UtcDateTime::EPOCH).unwrap();
        assert_eq!(events, again);
        assert!(parse_line("[1]", UtcDateTime::EPOCH).is_err());
        assert!(parse_line(r#"{"policy_domain":"x"}"#, UtcDateTime::EPOCH).is_err());
        assert!(
            parse_line(
                r#"{"policy_domain":"x","policy":{"type":"dane"},"result":"success"}"#,
                UtcDateTime::EPOCH
            )
            .is_err()
        );
        assert!(parse_line("  ", UtcDateTime::EPOCH).unwrap().is_empty());
    }
}
