//! RFC 8461 §3.1 ids derived from the policy, and the records `mta-sts records` prints
//! (RFC 8461 §3.1 `_mta-sts`, RFC 8460 §3 `_smtp._tls`).

use crate::common;

use common::Fixture;
use mta_sts::{Domain, Mode, MxPattern, Policy, StsRecord};
use mta_sts_policy_host::{ServeConfig, Table, policy_id, records};
use std::sync::Arc;

fn policy(mode: Mode, mx: &[&str], max_age: u64) -> Policy {
    Policy {
        mode,
        max_age,
        mx: mx.iter().map(|m| MxPattern::parse(m).unwrap()).collect(),
        extensions: Vec::new(),
    }
}

#[test]
fn id_changes_exactly_when_the_policy_changes() {
    let base = policy(Mode::Enforce, &["mx1.example.com", "*.example.net"], 604800);
    let id = policy_id(&base);
    // Same policy, however it was written → same id.
    let reparsed = Policy::parse(
        b"max_age: 604800\nmx: mx1.example.com\nversion: STSv1\nmx: *.example.net\nmode: enforce\n",
    )
    .unwrap();
    assert_eq!(policy_id(&reparsed), id);
    assert_eq!(policy_id(&base.clone()), id);
    // Any field change → new id.
    let variants = [
        policy(Mode::Testing, &["mx1.example.com", "*.example.net"], 604800),
        policy(Mode::Enforce, &["mx1.example.com", "*.example.net"], 604801),
        policy(Mode::Enforce, &["mx1.example.com"], 604800),
        policy(Mode::Enforce, &["mx2.example.com", "*.example.net"], 604800),
        policy(Mode::Enforce, &["*.example.net", "mx1.example.com"], 604800),
    ];
    let mut seen = vec![id.clone()];
    for v in &variants {
        let vid = policy_id(v);
        assert!(!seen.contains(&vid), "{v:?}");
        seen.push(vid);
    }
    // Valid ids for senders: 1-32 ALPHA/DIGIT inside a valid record.
    for id in &seen {
        let record = StsRecord::parse(&format!("v=STSv1; id={id};")).unwrap();
        assert_eq!(&record.id, id);
        assert!(id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_config_same_ids_across_restarts() {
    let f = Fixture::new();
    let path = f.standard_config("");
    let first = Table::build(Arc::new(ServeConfig::load(&path).unwrap()))
        .await
        .unwrap();
    let second = Table::build(Arc::new(ServeConfig::load(&path).unwrap()))
        .await
        .unwrap();
    let ids = |t: &Table| {
        t.hosts()
            .map(|e| (e.host.clone(), e.id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&second));
    // The id is the id of the body actually served.
    for e in first.hosts() {
        assert_eq!(e.id, mta_sts_policy_host::id::id_for_body(&e.body));
    }
}

#[test]
fn records_parse_back_and_lint_valid() {
    let domain: Domain = "example.com".parse().unwrap();
    let p = policy(Mode::Enforce, &["mx.example.com"], 604800);
    let r = records(
        &domain,
        &p,
        Some("mailto:tlsrpt@example.com,https://reports.example.com/tlsrpt"),
    );
    let text = r.to_string();
    let sts_line = text
        .lines()
        .find(|l| l.starts_with("_mta-sts.example.com. IN TXT "))
        .unwrap();
    let tls_line = text
        .lines()
        .find(|l| l.starts_with("_smtp._tls.example.com. IN TXT "))
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with(';') && l.contains("mta-sts.example.com"))
    );
    let sts_value = unquote(sts_line);
    let lint = mta_sts::record::lint(&sts_value);
    assert!(
        lint.record.is_some() && lint.diagnostics.is_empty(),
        "{lint:?}"
    );
    assert_eq!(lint.record.unwrap().id, policy_id(&p));
    let tls_value = unquote(tls_line);
    let lint = tlsrpt::lint(&tls_value);
    assert!(lint.is_strict_valid(), "{lint:?}");
    // Without rua: no _smtp._tls line.
    assert!(
        !records(&domain, &p, None)
            .to_string()
            .contains("_smtp._tls")
    );
}

#[test]
fn long_txt_values_are_split_into_255_octet_strings() {
    let domain: Domain = "example.com".parse().unwrap();
    let p = policy(Mode::Enforce, &["mx.example.com"], 604800);
    let rua: String = (0..12)
        .map(|i| format!("mailto:tls-reports-mailbox-number-{i}@reports.example.com"))
        .collect::<Vec<_>>()
        .join(",");
    let r = records(&domain, &p, Some(&rua));
    let tlsrpt = r.tlsrpt.as_ref().unwrap();
    assert!(tlsrpt.value.len() > 255);
    let line = tlsrpt.to_string();
    let strings = quoted_strings(&line);
    assert!(strings.len() >= 3, "{line}");
    assert!(strings.iter().all(|s| s.len() <= 255));
    let joined: String = strings.concat();
    assert_eq!(joined, tlsrpt.value);
    assert!(tlsrpt::lint(&joined).is_valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_records_cover_every_domain() {
    let f = Fixture::new();
    let table = Table::build(Arc::new(ServeConfig::load(f.standard_config("")).unwrap()))
        .await
        .unwrap();
    let all = table.records();
    assert_eq!(all.len(), 2);
    assert!(all[0].tlsrpt.is_some(), "a.test has rua");
    assert!(all[1].tlsrpt.is_none(), "b.test has none");
}

/// The strings of a zone-file TXT line, unescaped.
fn quoted_strings(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => s.push(chars.next().unwrap()),
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

fn unquote(line: &str) -> String {
    quoted_strings(line).concat()
}
