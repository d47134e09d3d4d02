//! Shared helpers and the store test suite run against SQLite and PostgreSQL.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use mta_sts_report_store::{
    InputOutcome, Inserted, Limits, ReportSink, ReportStore, SummaryFilter,
};
use serde_json::Value;

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/tlsrpt")
}

/// (file name, bytes) of every corpus report, sorted.
pub fn corpus() -> Vec<(String, Vec<u8>)> {
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
    assert_eq!(files.len(), 28);
    files
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An RFC 8460 §5.3 report message: multipart/report with a text part and the gzipped
/// report as application/tlsrpt+gzip (base64).
pub fn report_email(json: &[u8], domain: &str, submitter: &str, report_id: &str) -> Vec<u8> {
    format!(
        "From: tlsrpt@{submitter}\r\n\
         To: tlsrpt@{domain}\r\n\
         Subject: Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}@{submitter}>\r\n\
         TLS-Report-Domain: {domain}\r\n\
         TLS-Report-Submitter: {submitter}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\
         \r\n\
         This is an aggregate TLS report from {submitter}\r\n\
         --b1\r\n\
         Content-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{submitter}!{domain}!1!2.json.gz\"\r\n\
         \r\n\
         {}\r\n\
         --b1--\r\n",
        base64(&gzip(json))
    )
    .into_bytes()
}

/// A gzip stream that inflates to `gib` GiB of zeros, built without ever holding the
/// inflated data: one deflate chunk of 1 MiB of zeros, ended with a sync flush (so it is
/// byte-aligned and its back-references stay within zeros), repeated, then a final empty
/// block and the trailer. About 1 KiB of output per MiB of input.
pub fn gzip_bomb(gib: usize) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    enc.flush().unwrap(); // Z_SYNC_FLUSH: ends on a byte boundary
    let chunk = enc.get_ref().clone();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..(gib << 10) {
        out.extend_from_slice(&chunk);
    }
    out.extend_from_slice(&[0x03, 0x00]); // final fixed-Huffman block, end-of-block only
    // CRC-32 is not computed: every reader stops long before the trailer (it is not read
    // unless all data was inflated). ISIZE = length mod 2^32.
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(((gib as u64) << 30) as u32).to_le_bytes());
    out
}

/// A minimal zip archive with one entry stored (method 0) or deflated (8), with the
/// declared sizes overridable to forge them.
pub fn zip_one(
    name: &str,
    data: &[u8],
    deflate: bool,
    forge_uncompressed: Option<u32>,
    forge_compressed: Option<u32>,
) -> Vec<u8> {
    let crc = {
        let mut h = flate2::Crc::new();
        h.update(data);
        h.sum()
    };
    let (method, body) = if deflate {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        (8u16, e.finish().unwrap())
    } else {
        (0u16, data.to_vec())
    };
    let usize_ = forge_uncompressed.unwrap_or(data.len() as u32);
    let csize = forge_compressed.unwrap_or(body.len() as u32);
    let mut out = Vec::new();
    let local = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&csize.to_le_bytes());
        out.extend_from_slice(&usize_.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    };
    local(&mut out);
    out.extend_from_slice(&body);
    let cd_offset = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0x21, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&csize.to_le_bytes());
    out.extend_from_slice(&usize_.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
    out.extend_from_slice(&0u32.to_le_bytes()); // external attrs
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    let cd_len = out.len() as u32 - cd_offset;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn count(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// Expected per (domain, day) totals computed straight from the corpus JSON, first
/// occurrence of each (organisation, report-id) only.
/// (successful, failed) per (policy domain, day).
pub type Totals = BTreeMap<(String, String), (u64, u64)>;

pub fn expected_totals() -> (Totals, usize) {
    let mut seen = HashSet::new();
    let mut totals: Totals = BTreeMap::new();
    for (_, bytes) in corpus() {
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let key = (
            v["organization-name"].as_str().unwrap_or("").to_owned(),
            v["report-id"].as_str().unwrap().to_owned(),
        );
        if !seen.insert(key) {
            continue;
        }
        let day = v["date-range"]["start-datetime"].as_str().unwrap()[..10].to_owned();
        for p in v["policies"].as_array().unwrap() {
            let domain = p["policy"]["policy-domain"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase();
            let e = totals.entry((domain, day.clone())).or_default();
            e.0 += count(p["summary"].get("total-successful-session-count"));
            e.1 += count(p["summary"].get("total-failure-session-count"));
        }
    }
    (totals, seen.len())
}

/// When the suite's reports arrive (seconds since the Unix epoch), as a caller's clock
/// would give it.
pub const RECEIVED_AT: i64 = 1_700_000_000;

/// The store suite: the same assertions for every back end.
///
/// Longer than our ~120-line rule, on purpose: one numbered scenario over one store, each
/// step asserting on what the steps before it stored.
pub async fn store_suite(store: Arc<dyn ReportStore>) {
    let sink = ReportSink::new(store.clone(), Limits::default());
    assert_eq!(store.count().await.unwrap(), 0);

    // 1. Every corpus report imports (as JSON, alternating with e-mail and gzip forms).
    let (expected, unique) = expected_totals();
    let mut new = 0;
    let mut dup = 0;
    for (i, (name, bytes)) in corpus().into_iter().enumerate() {
        let input = match i % 3 {
            0 => bytes.clone(),
            1 => gzip(&bytes),
            _ => report_email(&bytes, "example.net", "reporter.example", &name),
        };
        match sink.accept(&input, None, &name, RECEIVED_AT).await.unwrap() {
            InputOutcome::Accepted { reports } => {
                assert_eq!(reports.len(), 1, "{name}");
                match reports[0].stored {
                    Inserted::New(_) => new += 1,
                    Inserted::Duplicate(_) => dup += 1,
                }
            }
            InputOutcome::Refused { reason } => panic!("{name} refused: {reason}"),
        }
    }
    assert_eq!(new, unique);
    assert_eq!(new + dup, 28);
    assert_eq!(store.count().await.unwrap(), unique as u64);

    // 2. Summary totals equal the sums in the JSON, per domain and day.
    let summary = store.summary(&SummaryFilter::default()).await.unwrap();
    let got: Totals = summary
        .iter()
        .map(|d| {
            (
                (d.policy_domain.clone(), d.day.clone()),
                (d.successful, d.failed),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // 3. Hand-checked rows. RFC 8460 Appendix B (001): 5326 ok, 303 failed.
    let row = |domain: &str, day: &str| {
        summary
            .iter()
            .find(|d| d.policy_domain == domain && d.day == day)
            .unwrap_or_else(|| panic!("no row {domain} {day}"))
            .clone()
    };
    let b = row("company-y.example", "2016-04-01");
    assert_eq!((b.successful, b.failed), (5326, 303));
    assert_eq!(b.failures_by_result_type["certificate-expired"], 100);
    assert_eq!(b.failures_by_result_type["starttls-not-supported"], 200);
    assert_eq!(b.failures_by_result_type["validation-failure"], 3);
    assert_eq!(b.failures_by_organization["Company-X"], 303);
    assert_eq!(b.failures_by_mx["mx1.mail.company-y.example"], 100);
    assert_eq!(b.failures_by_mx["mx2.mail.company-y.example"], 200);
    assert_eq!(b.failures_by_mx["mx-backup.mail.company-y.example"], 3);
    // Mail.ru (006): 1 failed session, but two fetch-error details of 1 each, no MX.
    let m = row("example.com", "2024-02-22");
    assert_eq!(m.failed, 1);
    assert_eq!(m.failures_by_organization["Mail.ru"], 1);
    assert_eq!(m.failures_by_result_type["sts-policy-fetch-error"], 2);
    assert_eq!(m.failures_by_mx["(none)"], 2);
    // Microsoft zoneless dates (016): day 2023-01-10, 2 sessions ok.
    let ms = row("test.xmox.nl", "2023-01-10");
    assert_eq!((ms.successful, ms.failed, ms.reports), (2, 0, 1));
    assert!(ms.failures_by_organization.is_empty());
    // IDN no-policy-found (021): 99 ok, 102 failed, no details.
    let idn = row("xn--gpher-jua.test", "2025-08-04");
    assert_eq!((idn.successful, idn.failed), (99, 102));
    assert!(idn.failures_by_result_type.is_empty());

    // 4. Filters.
    let only = store
        .summary(&SummaryFilter {
            domain: Some("Company-Y.Example.".into()),
            since: None,
            ..SummaryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].successful, 5326);
    let since = store
        .summary(&SummaryFilter {
            domain: None,
            since: Some("2024-09-13".into()),
            ..SummaryFilter::default()
        })
        .await
        .unwrap();
    assert!(!since.is_empty());
    assert!(since.iter().all(|d| d.day.as_str() >= "2024-09-13"));

    // 5. Duplicates are stored once, also when re-imported in another form.
    let before = store.count().await.unwrap();
    for (name, bytes) in corpus() {
        match sink
            .accept(&gzip(&bytes), None, &name, RECEIVED_AT)
            .await
            .unwrap()
        {
            InputOutcome::Accepted { reports } => {
                assert!(
                    matches!(reports[0].stored, Inserted::Duplicate(_)),
                    "{name}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(store.count().await.unwrap(), before);
    assert_eq!(
        store.summary(&SummaryFilter::default()).await.unwrap(),
        summary
    );

    // 6. Bad inputs are refused with a reason; nothing stored is lost or changed.
    let good = corpus()[0].1.clone();
    let mut two_parts = report_email(&good, "a.example", "b.example", "x");
    // A message whose second report part is corrupt is refused whole.
    let broken = String::from_utf8(two_parts.clone()).unwrap().replace(
        "--b1--",
        "--b1\r\nContent-Type: application/tlsrpt+json\r\n\r\n{\"report-id\": \r\n--b1--",
    );
    two_parts = broken.into_bytes();
    let bad_inputs: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bomb", gzip_bomb(1), "decompression bomb"),
        ("invalid json", b"{\"report-id\": 1,".to_vec(), "not a TLS-RPT report"),
        (
            "broken mime",
            b"Content-Type: multipart/report; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!not base64 at all\r\n"
                .to_vec(),
            "gzip",
        ),
        ("no report", b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n".to_vec(), "no TLS-RPT report found"),
        ("half-bad message", two_parts, "not a TLS-RPT report"),
        (
            "zip forged size",
            zip_one("report.json", &good, false, Some(u32::MAX), None),
            "larger than",
        ),
    ];
    for (what, input, needle) in bad_inputs {
        match sink.accept(&input, None, what, RECEIVED_AT).await.unwrap() {
            InputOutcome::Refused { reason } => {
                assert!(reason.contains(needle), "{what}: {reason}")
            }
            other => panic!("{what} accepted: {other:?}"),
        }
    }
    assert_eq!(store.count().await.unwrap(), before);
    assert_eq!(
        store.summary(&SummaryFilter::default()).await.unwrap(),
        summary
    );

    // 7. find by report-id and by row id; the stored report reads back equal.
    let found = store
        .find("5065427c-23d3-47ca-b6e0-946ea0e8c4be")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].report.policies[0]
            .summary
            .total_successful_session_count,
        5326
    );
    let by_row = store.find(&found[0].id.to_string()).await.unwrap();
    assert_eq!(by_row, found);
    assert!(store.find("no-such-report").await.unwrap().is_empty());

    // 8. A report we write round-trips through the store identically.
    let generated = sample_report();
    let json = generated.to_json();
    let value: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(tlsrpt::validate_report_json(&value), vec![]);
    let out = sink
        .accept(
            &gzip(json.as_bytes()),
            Some("application/tlsrpt+gzip"),
            "http",
            RECEIVED_AT + 60,
        )
        .await
        .unwrap();
    assert!(
        matches!(&out, InputOutcome::Accepted { reports } if matches!(reports[0].stored, Inserted::New(_)))
    );
    let back = store.find(&generated.report_id).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].report, generated);
    assert_eq!(back[0].source, "http");
    // The store keeps the time the caller's clock gave, not its own reading.
    assert_eq!(back[0].imported_at, RECEIVED_AT + 60);

    // 9. Batch insert: one transaction, same duplicate rule.
    let mut batch = Vec::new();
    for i in 0..5 {
        let mut r = sample_report();
        r.report_id = format!("batch-{i}");
        batch.push(mta_sts_report_store::ParsedReport {
            raw_json: r.to_json(),
            report: r,
            origin: "test".into(),
            dkim: None,
        });
    }
    batch.push(batch[0].clone());
    let ins = store
        .insert_batch(&batch, "batch", RECEIVED_AT)
        .await
        .unwrap();
    assert_eq!(
        ins.iter().filter(|i| matches!(i, Inserted::New(_))).count(),
        5
    );
    assert!(matches!(ins[5], Inserted::Duplicate(_)));
    assert_eq!(store.count().await.unwrap(), before + 6);
}

pub fn sample_report() -> tlsrpt::Report {
    use tlsrpt::*;
    let mut r = Report::daily(
        "mta-sts.example.org",
        "tlsrpt@example.org",
        "generated-2024-05-01-example.net",
        UtcDateTime::parse("2024-05-01T00:00:00Z").unwrap(),
    );
    r.policies.push(PolicyResult {
        policy: PolicyDescriptor {
            policy_type: PolicyType::Sts,
            policy_string: vec![
                "version: STSv1".into(),
                "mode: enforce".into(),
                "mx: *.example.net".into(),
                "max_age: 604800".into(),
            ],
            policy_domain: "example.net".into(),
            mx_host: vec!["*.example.net".into()],
        },
        summary: SessionSummary {
            total_successful_session_count: 41,
            total_failure_session_count: 2,
        },
        failure_details: vec![FailureDetail {
            sending_mta_ip: Some("198.51.100.7".into()),
            receiving_mx_hostname: Some("mx2.example.net".into()),
            receiving_ip: Some("203.0.113.9".into()),
            ..FailureDetail::new(ResultType::CertificateExpired, 2)
        }],
    });
    r
}
