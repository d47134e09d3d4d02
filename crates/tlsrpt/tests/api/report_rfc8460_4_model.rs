//! RFC 8460 §4 report model: tolerant reading of the real-world corpus, strict writing,
//! §4.4 schema validation of what we write, §5.1 file names.

use std::path::PathBuf;

use serde_json::Value;
use tlsrpt::{
    DateRange, FailureDetail, PolicyDescriptor, PolicyResult, PolicyType, Report, ReportFileName,
    ResultType, SessionSummary, UtcDateTime, validate_report_json,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/tlsrpt")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn count(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// Every corpus report parses, and the model's totals equal the sums taken directly from
/// the JSON (independently of the model).
#[test]
fn corpus_reads_and_totals_match_the_json() {
    let files = corpus();
    assert_eq!(files.len(), 28);
    for (name, bytes) in files {
        let report = Report::from_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let raw: Value = serde_json::from_slice(&bytes).unwrap();
        let policies = raw["policies"].as_array().unwrap();
        let ok: u64 = policies
            .iter()
            .map(|p| count(p["summary"].get("total-successful-session-count")))
            .sum();
        let failed: u64 = policies
            .iter()
            .map(|p| count(p["summary"].get("total-failure-session-count")))
            .sum();
        assert_eq!(report.total_successful(), ok, "{name}");
        assert_eq!(report.total_failed(), failed, "{name}");
        assert_eq!(report.policies.len(), policies.len(), "{name}");
        for (p, rp) in report.policies.iter().zip(policies) {
            let details = rp
                .get("failure-details")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            assert_eq!(p.failure_details.len(), details, "{name}");
            assert_eq!(
                p.policy.policy_type.as_str(),
                rp["policy"]["policy-type"].as_str().unwrap(),
                "{name}"
            );
        }
        assert_eq!(report.report_id, raw["report-id"].as_str().unwrap());
        // Re-reading what we write gives the same model.
        let again = Report::from_json(report.to_json().as_bytes()).unwrap();
        assert_eq!(again, report, "{name}");
    }
}

/// RFC 8460 Appendix B as printed (001): values checked by hand.
#[test]
fn appendix_b_example_values() {
    let report = Report::from_json(&std::fs::read(corpus_dir().join("001.json")).unwrap()).unwrap();
    assert_eq!(report.organization_name, "Company-X");
    assert_eq!(report.date_range.start.to_string(), "2016-04-01T00:00:00Z");
    assert_eq!(report.date_range.end.to_string(), "2016-04-01T23:59:59Z");
    assert!(report.date_range.is_utc_day());
    let p = &report.policies[0];
    assert_eq!(p.policy.policy_type, PolicyType::Sts);
    assert_eq!(p.policy.policy_domain, "company-y.example");
    // mx-host given as a plain string (erratum 6241) becomes a one-element list.
    assert_eq!(p.policy.mx_host, ["*.mail.company-y.example"]);
    assert_eq!(p.policy.policy_string.len(), 4);
    assert_eq!(p.summary.total_successful_session_count, 5326);
    assert_eq!(p.summary.total_failure_session_count, 303);
    assert_eq!(p.failure_details.len(), 3);
    assert_eq!(
        p.failure_details[0].result_type,
        ResultType::CertificateExpired
    );
    assert_eq!(
        p.failure_details[1].receiving_ip.as_deref(),
        Some("203.0.113.56")
    );
    assert_eq!(
        p.failure_details[2].failure_reason_code.as_deref(),
        Some("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED")
    );
    // The same report with mx-host as an array (002, 004) is equal.
    for other in ["002.json", "004.json", "025.json"] {
        let r = Report::from_json(&std::fs::read(corpus_dir().join(other)).unwrap()).unwrap();
        assert_eq!(r.policies[0].policy.mx_host, p.policy.mx_host, "{other}");
        assert_eq!(r.policies[0].summary, p.summary, "{other}");
    }
}

/// Microsoft's zoneless date-times are read as UTC (016, 028).
#[test]
fn microsoft_zoneless_datetimes_are_utc() {
    for (file, start) in [("016.json", 1_673_308_800), ("028.json", 1_711_411_200)] {
        let r = Report::from_json(&std::fs::read(corpus_dir().join(file)).unwrap()).unwrap();
        assert_eq!(r.date_range.start.unix_seconds(), start, "{file}");
        assert_eq!(r.date_range.end.unix_seconds(), start + 86_399, "{file}");
        assert!(r.to_json().contains(r#""start-datetime":""#));
        assert!(r.to_json().contains("T00:00:00Z"));
    }
}

/// Unknown policy types and result types are kept verbatim and written back unchanged
/// (never as "Other", unlike a peer: vectors S14.3 (e)); 020 also lacks counts and domains.
#[test]
fn unknown_types_kept_verbatim() {
    let r = Report::from_json(&std::fs::read(corpus_dir().join("020.json")).unwrap()).unwrap();
    assert_eq!(
        r.policies[1].policy.policy_type,
        PolicyType::Other("invalid-policy-type".into())
    );
    assert_eq!(r.policies[0].summary.total_failure_session_count, 0);
    assert_eq!(r.policies[0].policy.policy_domain, "");
    let json = r.to_json();
    assert!(
        json.contains(r#""policy-type":"invalid-policy-type""#),
        "{json}"
    );
    assert!(!json.contains("Other"));

    let text = r#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z",
      "end-datetime":"2024-01-02T00:00:00Z"},"policies":[{"policy":{"policy-type":"sts",
      "policy-domain":"example.com"},"summary":{"total-failure-session-count":3},
      "failure-details":[{"result-type":"brand-new-type","failed-session-count":3,
      "some-future-member":{"x":1}}]}],"future-top-level":true}"#;
    let r = Report::from_json(text.as_bytes()).unwrap();
    assert_eq!(
        r.policies[0].failure_details[0].result_type,
        ResultType::Other("brand-new-type".into())
    );
    assert!(r.to_json().contains(r#""result-type":"brand-new-type""#));
}

/// Writing omits absent optional members (no nulls, no empty optional arrays), always
/// writes policy-domain and failure-details (vectors S14.3 (b), (c)).
#[test]
fn strict_writing_shape() {
    let r = Report::from_json(&std::fs::read(corpus_dir().join("006.json")).unwrap()).unwrap();
    let json = r.to_json();
    assert!(!json.contains("null"), "{json}");
    assert!(!json.contains("policy-string"), "{json}");
    assert!(!json.contains("mx-host"), "{json}");
    assert!(!json.contains("sending-mta-ip"), "{json}");
    assert!(json.starts_with(r#"{"organization-name":"Mail.ru","date-range":{"start-datetime""#));
    let r = Report::from_json(&std::fs::read(corpus_dir().join("009.json")).unwrap()).unwrap();
    let json = r.to_json();
    assert!(json.contains(r#""policy-domain":"cardinalhealth.ca""#));
    assert!(json.contains(r#""failure-details":[]"#));
}

/// Bad documents are refused with a reason, never defaulted (vectors S14.3 (d)).
#[test]
fn refuses_bad_documents() {
    let base = |start: &str, extra: &str| {
        format!(
            r#"{{"report-id":"x","date-range":{{"start-datetime":"{start}","end-datetime":"2024-01-02T00:00:00Z"}},"policies":[{extra}]}}"#
        )
    };
    for bad in [
        base("yesterday", ""),
        base("2024-01-03T00:00:00Z", ""), // ends before it starts
        base(
            "2024-01-01T00:00:00Z",
            r#"{"policy":{"policy-type":"sts"},"summary":{"total-successful-session-count":-1}}"#,
        ),
        base(
            "2024-01-01T00:00:00Z",
            r#"{"policy":{"policy-type":"sts"},"summary":{"total-successful-session-count":9007199254740992}}"#,
        ),
        r#"{"report-id":"x","report-id":"y","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"policies":[]}"#.to_owned(),
        r#"{"date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"policies":[]}"#.to_owned(),
        r#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"policies":{}}"#.to_owned(),
        "[]".to_owned(),
        "{".to_owned(),
    ] {
        assert!(Report::from_json(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(Report::from_json(b"\xff\xfe{}").is_err());
}

fn sample() -> Report {
    let mut r = Report::daily(
        "mta-sts.example.org",
        "tlsrpt@example.org",
        "2024-05-01.example.net.1",
        UtcDateTime::parse("2024-05-01T17:00:00Z").unwrap(),
    );
    r.policies.push(PolicyResult {
        policy: PolicyDescriptor {
            policy_type: PolicyType::Sts,
            policy_string: vec![
                "version: STSv1".into(),
                "mode: enforce".into(),
                "mx: mx1.example.net".into(),
                "max_age: 86400".into(),
            ],
            policy_domain: "example.net".into(),
            mx_host: vec!["mx1.example.net".into()],
        },
        summary: SessionSummary {
            total_successful_session_count: 10,
            total_failure_session_count: 2,
        },
        failure_details: vec![
            FailureDetail {
                sending_mta_ip: Some("192.0.2.1".into()),
                receiving_mx_hostname: Some("mx1.example.net".into()),
                receiving_ip: Some("2001:db8::25".into()),
                failure_reason_code: Some("unable to get local issuer certificate".into()),
                ..FailureDetail::new(ResultType::CertificateNotTrusted, 1)
            },
            FailureDetail::new(ResultType::StsPolicyFetchError, 1),
        ],
    });
    r.policies.push(PolicyResult {
        policy: PolicyDescriptor {
            policy_type: PolicyType::NoPolicyFound,
            policy_string: vec![],
            policy_domain: "example.com".into(),
            mx_host: vec![],
        },
        summary: SessionSummary {
            total_successful_session_count: 3,
            total_failure_session_count: 0,
        },
        failure_details: vec![],
    });
    r
}

/// A report we generate covers one UTC day, validates against §4.4, and round-trips.
#[test]
fn generated_report_validates_and_round_trips() {
    let r = sample();
    assert_eq!(r.date_range, DateRange::utc_day(r.date_range.start));
    assert_eq!(r.date_range.end.to_string(), "2024-05-02T00:00:00Z");
    for json in [r.to_json(), r.to_json_pretty()] {
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(validate_report_json(&value), vec![], "{json}");
        assert_eq!(Report::from_json(json.as_bytes()).unwrap(), r);
    }
}

/// A change to a valid document.
type Mutation = Box<dyn Fn(&mut Value)>;

/// The validator finds each kind of deviation in a document (that our reader would accept).
#[test]
fn validator_catches_deviations() {
    let valid: Value = serde_json::from_str(&sample().to_json()).unwrap();
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "/date-range/start-datetime",
            Box::new(|v| v["date-range"]["start-datetime"] = "2024-05-01T00:00:00".into()),
        ),
        (
            "/date-range/end-datetime",
            Box::new(|v| v["date-range"]["end-datetime"] = "2024-05-03T00:00:00Z".into()),
        ),
        ("/report-id", Box::new(|v| v["report-id"] = Value::Null)),
        ("/extra", Box::new(|v| v["extra"] = 1.into())),
        (
            "/policies/0/policy/mx-host",
            Box::new(|v| v["policies"][0]["policy"]["mx-host"] = "mx1.example.net".into()),
        ),
        (
            "/policies/0/policy/policy-type",
            Box::new(|v| v["policies"][0]["policy"]["policy-type"] = "STS".into()),
        ),
        (
            "/policies/1/policy/policy-domain",
            Box::new(|v| {
                v["policies"][1]["policy"]
                    .as_object_mut()
                    .unwrap()
                    .remove("policy-domain");
            }),
        ),
        (
            "/policies/0/failure-details/0/sending-mta-ip",
            Box::new(|v| {
                v["policies"][0]["failure-details"][0]["sending-mta-ip"] = "192.0.2.01".into()
            }),
        ),
        (
            "/policies/0/failure-details/0/result-type",
            Box::new(|v| v["policies"][0]["failure-details"][0]["result-type"] = "Other".into()),
        ),
        (
            "/policies/0/summary/total-failure-session-count",
            Box::new(|v| v["policies"][0]["summary"]["total-failure-session-count"] = 1.5.into()),
        ),
        (
            "/policies/1/failure-details",
            Box::new(|v| {
                v["policies"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("failure-details");
            }),
        ),
        (
            "/policies",
            Box::new(|v| v["policies"] = Value::Array(vec![])),
        ),
    ];
    for (path, mutate) in cases {
        let mut doc = valid.clone();
        mutate(&mut doc);
        let violations = validate_report_json(&doc);
        assert!(
            violations.iter().any(|v| v.path == path),
            "{path}: {violations:?}"
        );
    }
    // Every corpus report is readable, but real reporters' documents are not all strictly
    // valid (zoneless dates, string mx-host, missing failure-details): the validator is for
    // our own output.
    let ms: Value =
        serde_json::from_slice(&std::fs::read(corpus_dir().join("028.json")).unwrap()).unwrap();
    assert!(!validate_report_json(&ms).is_empty());
}

/// RFC 8460 §5.1 file names: build, print, parse, refuse path tricks.
#[test]
fn file_names() {
    let r = sample();
    let name =
        ReportFileName::for_report(&r, "mta-sts.example.org", Some("1".into()), true).unwrap();
    assert_eq!(
        name.to_string(),
        "mta-sts.example.org!example.net!1714521600!1714608000!1.json.gz"
    );
    assert_eq!(ReportFileName::parse(&name.to_string()).unwrap(), name);
    // Real names from the corpus sources.
    for ok in [
        "google.com!test.xmox.nl!1663200000!1663286399!001.json.gz",
        "microsoft.com!test.xmox.nl!1673308800!1673395199!133198585438131172.json.gz",
        "mail.sender.example!example.com!1013662812!1013749130.json",
    ] {
        let n = ReportFileName::parse(ok).unwrap();
        assert_eq!(n.to_string(), ok);
    }
    for bad in [
        "../../etc!example.com!1!2.json",
        "a/b!example.com!1!2.json",
        "google.com!example.com!1!2.json.zip",
        "google.com!example.com!1!2!3!4.json",
        "google.com!example.com!x!2.json",
        "google.com!example.com!1!2!a-b.json",
        "google.com!example.com!1!2!.json",
        "google.com!!1!2.json",
        "google.com!example.com!1!99999999999999999999999.json",
    ] {
        assert!(ReportFileName::parse(bad).is_err(), "{bad}");
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[ -~\u{e9}\u{4e2d}\"\\\\]{0,12}"
    }

    fn result_type() -> impl Strategy<Value = ResultType> {
        prop_oneof![
            proptest::sample::select(ResultType::REGISTERED.to_vec()),
            "[a-z-]{1,20}".prop_map(|s| ResultType::from_wire(&s)),
        ]
    }

    fn policy_type() -> impl Strategy<Value = PolicyType> {
        prop_oneof![
            proptest::sample::select(PolicyType::REGISTERED.to_vec()),
            "[a-z-]{1,20}".prop_map(|s| PolicyType::from_wire(&s)),
        ]
    }

    fn detail() -> impl Strategy<Value = FailureDetail> {
        (
            result_type(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            0..=tlsrpt::MAX_COUNT,
            proptest::option::of(text()),
            proptest::option::of(text()),
        )
            .prop_map(|(t, a, b, c, d, n, e, f)| FailureDetail {
                result_type: t,
                sending_mta_ip: a,
                receiving_mx_hostname: b,
                receiving_mx_helo: c,
                receiving_ip: d,
                failed_session_count: n,
                additional_information: e,
                failure_reason_code: f,
            })
    }

    fn policy() -> impl Strategy<Value = PolicyResult> {
        (
            policy_type(),
            proptest::collection::vec(text(), 0..4),
            text(),
            proptest::collection::vec(text(), 0..3),
            0..=tlsrpt::MAX_COUNT,
            0..=tlsrpt::MAX_COUNT,
            proptest::collection::vec(detail(), 0..3),
        )
            .prop_map(|(t, s, d, m, ok, ko, details)| PolicyResult {
                policy: PolicyDescriptor {
                    policy_type: t,
                    policy_string: s,
                    policy_domain: d,
                    mx_host: m,
                },
                summary: SessionSummary {
                    total_successful_session_count: ok,
                    total_failure_session_count: ko,
                },
                failure_details: details,
            })
    }

    fn report() -> impl Strategy<Value = Report> {
        (
            text(),
            text(),
            "[!-~]{1,20}",
            0i64..253_402_300_799,
            0i64..1_000_000,
            proptest::collection::vec(policy(), 0..3),
        )
            .prop_map(|(org, contact, id, start, len, policies)| Report {
                organization_name: org,
                date_range: DateRange {
                    start: UtcDateTime::from_unix_seconds(start),
                    end: UtcDateTime::from_unix_seconds((start + len).min(253_402_300_799)),
                },
                contact_info: contact,
                report_id: id,
                policies,
            })
    }

    proptest! {
        /// serialise → deserialise is the identity on the model.
        #[test]
        fn model_round_trip(r in report()) {
            let back = Report::from_json(r.to_json().as_bytes()).unwrap();
            prop_assert_eq!(&back, &r);
            let back = Report::from_json(r.to_json_pretty().as_bytes()).unwrap();
            prop_assert_eq!(back, r);
        }

        /// The reader never panics on arbitrary bytes.
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Report::from_json(&bytes);
        }

        /// File names print and parse back.
        #[test]
        fn file_name_round_trip(
            s in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}",
            d in "[a-z0-9]{1,10}\\.[a-z]{2,5}",
            b in any::<u64>(), e in any::<u64>(),
            u in proptest::option::of("[A-Za-z0-9]{1,12}"),
            gz in any::<bool>(),
        ) {
            let n = ReportFileName { sender: s, policy_domain: d, begin: b, end: e, unique_id: u, gzip: gz };
            prop_assert_eq!(ReportFileName::parse(&n.to_string()).unwrap(), n);
        }
    }
}
