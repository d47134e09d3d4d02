//! Aggregation of session events into RFC 8460 §4 reports, by RFC section.

use tlsrpt::aggregate::{Submitter, aggregate, domain_days};
use tlsrpt::event::{Event, EventPolicy, Outcome, parse_line};
use tlsrpt::{PolicyType, Report, ResultType, UtcDateTime, validate_report_json};

fn submitter() -> Submitter {
    Submitter {
        organization_name: "Sender Org".into(),
        contact_info: "tlsrpt@sender.test".into(),
        domain: "sender.test".into(),
    }
}

fn day() -> UtcDateTime {
    UtcDateTime::parse("2024-05-01T00:00:00Z").unwrap()
}

fn events(lines: &[&str]) -> Vec<Event> {
    lines
        .iter()
        .flat_map(|l| parse_line(l, UtcDateTime::EPOCH).unwrap())
        .collect()
}

const STS: &str = r#""policy":{"type":"sts","string":["version: STSv1","mode: enforce","mx: mx.example.com","max_age: 86400"],"mx_host":["mx.example.com"]}"#;
const TESTING: &str = r#""policy":{"type":"sts","string":["version: STSv1","mode: testing","mx: mx.example.com","max_age: 86400"],"mx_host":["mx.example.com"]}"#;

fn line(time: &str, policy: &str, rest: &str) -> String {
    format!(r#"{{"time":"{time}","policy_domain":"example.com",{policy},{rest}}}"#)
}

fn schema_valid(report: &Report) {
    let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let violations = validate_report_json(&value);
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn rfc8460_4_2_summary_counts_sessions() {
    let lines = [
        line(
            "2024-05-01T01:00:00Z",
            STS,
            r#""result":"success","count":7"#,
        ),
        line("2024-05-01T02:00:00Z", STS, r#""result":"success""#),
        line(
            "2024-05-01T03:00:00Z",
            STS,
            r#""result":"certificate-expired","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"mx.example.com","count":2"#,
        ),
    ];
    let evs = events(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let report = aggregate(&evs, "example.com", day(), &submitter());
    assert_eq!(report.policies.len(), 1);
    let p = &report.policies[0];
    assert_eq!(p.summary.total_successful_session_count, 8);
    assert_eq!(p.summary.total_failure_session_count, 2);
    assert_eq!(p.policy.mx_host, ["mx.example.com"]);
    assert_eq!(p.policy.policy_string.len(), 4);
    schema_valid(&report);
}

#[test]
fn rfc8460_4_3_failure_details_grouped() {
    let fail = |mx: &str, ip: &str, code: &str| {
        line(
            "2024-05-01T05:00:00Z",
            STS,
            &format!(
                r#""result":"{code}","sending_mta_ip":"192.0.2.1","receiving_mx_hostname":"{mx}","receiving_ip":"{ip}","failure_reason_code":"X""#
            ),
        )
    };
    let lines = [
        fail("mx.example.com", "198.51.100.1", "certificate-expired"),
        fail("mx.example.com", "198.51.100.1", "certificate-expired"),
        fail("mx.example.com", "198.51.100.2", "certificate-expired"),
        fail("mx.example.com", "198.51.100.1", "starttls-not-supported"),
    ];
    let evs = events(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let report = aggregate(&evs, "example.com", day(), &submitter());
    let details = &report.policies[0].failure_details;
    assert_eq!(details.len(), 3);
    let count = |rt: ResultType, ip: &str| {
        details
            .iter()
            .find(|d| d.result_type == rt && d.receiving_ip.as_deref() == Some(ip))
            .map(|d| d.failed_session_count)
    };
    assert_eq!(
        count(ResultType::CertificateExpired, "198.51.100.1"),
        Some(2)
    );
    assert_eq!(
        count(ResultType::CertificateExpired, "198.51.100.2"),
        Some(1)
    );
    assert_eq!(
        count(ResultType::StarttlsNotSupported, "198.51.100.1"),
        Some(1)
    );
    assert_eq!(report.policies[0].summary.total_failure_session_count, 4);
    assert_eq!(details[0].failure_reason_code.as_deref(), Some("X"));
    schema_valid(&report);
}

#[test]
fn rfc8460_4_4_one_policy_entry_per_distinct_policy() {
    let lines = [
        line("2024-05-01T01:00:00Z", STS, r#""result":"success""#),
        line("2024-05-01T02:00:00Z", TESTING, r#""result":"success""#),
        line(
            "2024-05-01T03:00:00Z",
            r#""policy":{"type":"no-policy-found"}"#,
            r#""result":"success""#,
        ),
    ];
    let evs = events(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let report = aggregate(&evs, "example.com", day(), &submitter());
    assert_eq!(report.policies.len(), 3);
    schema_valid(&report);
}

#[test]
fn rfc8460_4_4_no_policy_found_carries_policy_domain() {
    let evs = events(&[&line(
        "2024-05-01T03:00:00Z",
        r#""policy":{"type":"no-policy-found"}"#,
        r#""result":"success","count":4"#,
    )]);
    let report = aggregate(&evs, "example.com", day(), &submitter());
    let p = &report.policies[0].policy;
    assert_eq!(p.policy_type, PolicyType::NoPolicyFound);
    assert_eq!(p.policy_domain, "example.com");
    assert!(
        report
            .to_json()
            .contains(r#""policy-domain":"example.com""#)
    );
    schema_valid(&report);
}

#[test]
fn rfc8460_4_3_testing_mode_failures_count_as_failures() {
    // The mail was delivered (mode testing), the session still failed validation.
    let evs = events(&[
        &line(
            "2024-05-01T03:00:00Z",
            TESTING,
            r#""result":"certificate-host-mismatch","receiving_mx_hostname":"mx.example.com""#,
        ),
        &line("2024-05-01T04:00:00Z", TESTING, r#""result":"success""#),
    ]);
    let report = aggregate(&evs, "example.com", day(), &submitter());
    assert_eq!(report.total_failed(), 1);
    assert_eq!(report.total_successful(), 1);
}

#[test]
fn rfc8460_4_1_date_range_is_the_utc_day() {
    let evs = events(&[
        &line("2024-04-30T23:59:59Z", STS, r#""result":"success""#),
        &line("2024-05-01T00:00:00Z", STS, r#""result":"success""#),
        &line("2024-05-01T23:59:59Z", STS, r#""result":"success""#),
        &line("2024-05-02T00:00:00Z", STS, r#""result":"success""#),
    ]);
    let report = aggregate(
        &evs,
        "example.com",
        UtcDateTime::parse("2024-05-01T12:00:00Z").unwrap(),
        &submitter(),
    );
    assert_eq!(report.date_range.start.to_string(), "2024-05-01T00:00:00Z");
    assert_eq!(report.date_range.end.to_string(), "2024-05-02T00:00:00Z");
    assert_eq!(report.total_successful(), 2);
    assert_eq!(domain_days(&evs).len(), 3);
}

#[test]
fn rfc8460_4_4_report_identity_and_round_trip() {
    let evs = events(&[&line("2024-05-01T03:00:00Z", STS, r#""result":"success""#)]);
    let report = aggregate(&evs, "example.com", day(), &submitter());
    assert_eq!(report.report_id, "2024-05-01_example.com@sender.test");
    assert_eq!(report.organization_name, "Sender Org");
    assert_eq!(report.contact_info, "tlsrpt@sender.test");
    let again = Report::from_json(report.to_json().as_bytes()).unwrap();
    assert_eq!(again, report);
    // Other domains are not mixed in.
    let other = aggregate(&evs, "other.test", day(), &submitter());
    assert!(other.policies.is_empty());
}

#[test]
fn rfc8460_4_libtlsrpt_datagram_aggregates() {
    let datagram = r#"{"d":"example.com","pr":"v=TLSRPTv1;rua=mailto:r@example.com","policies":[{"policy-type":2,"policy-domain":"example.com","policy-string":["version: STSv1","mode: enforce"],"mx-host":["mx.example.com"],"failure-details":[{"c":203,"s":"192.0.2.1","n":"mx.example.com"}],"t":1,"f":1}]}"#;
    let evs = parse_line(datagram, day().plus_seconds(60)).unwrap();
    let report = aggregate(&evs, "example.com", day(), &submitter());
    assert_eq!(report.total_failed(), 1);
    assert_eq!(report.total_successful(), 0);
    assert_eq!(
        report.policies[0].failure_details[0].result_type,
        ResultType::CertificateNotTrusted
    );
    schema_valid(&report);
    let _ = (
        EventPolicy {
            policy_type: PolicyType::Sts,
            policy_string: vec![],
            mx_host: vec![],
        },
        Outcome::Success,
    );
}
