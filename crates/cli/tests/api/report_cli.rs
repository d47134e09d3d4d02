//! `mta-sts report` end to end: import a Maildir built here, summary JSON numbers, show,
//! the HTML page, exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus/tlsrpt")
}

fn bin(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .arg("report")
        .arg("--db")
        .arg(db)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    // A stored (uncompressed) deflate stream inside a gzip member, so the test needs no
    // compression crate: header, stored blocks of at most 65535 bytes, CRC-32, ISIZE.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(65_535).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(bytes).to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= c.len() {
                T[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn email(json: &[u8], id: &str) -> Vec<u8> {
    format!(
        "From: tlsrpt@reporter.example\r\nTo: tlsrpt@example.net\r\n\
         Subject: Report Domain: example.net Submitter: reporter.example Report-ID: <{id}@reporter.example>\r\n\
         TLS-Report-Domain: example.net\r\nTLS-Report-Submitter: reporter.example\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nreport\r\n\
         --b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"reporter.example!example.net!1!2.json.gz\"\r\n\r\n{}\r\n--b--\r\n",
        base64(&gzip(json))
    )
    .into_bytes()
}

/// The Maildir: every corpus report as a mail (cur/ and new/), plus one broken message.
fn maildir(dir: &Path) -> PathBuf {
    let md = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        let name = format!("{i}.M1P1.host{}", if sub == "cur" { ":2,S" } else { "" });
        let mut file = std::fs::File::create(md.join(sub).join(name)).unwrap();
        file.write_all(&email(&std::fs::read(f).unwrap(), &i.to_string()))
            .unwrap();
    }
    std::fs::write(
        md.join("new/99.broken"),
        b"Subject: broken\r\nContent-Type: application/tlsrpt+json\r\n\r\n{\"report-id\": \"x\"",
    )
    .unwrap();
    std::fs::write(md.join("tmp/100.partial"), b"half a message").unwrap();
    md
}

#[test]
fn import_summary_show_html() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reports.db");
    let md = maildir(dir.path());

    // Import: the broken message is refused (exit 1), the rest imported; RFC 8460 example
    // copies (001-004, 023-025 share organisation and report-id) are duplicates.
    // The mail is unsigned: --no-dkim (RFC 8460 §3 verification is tested in report_import_dkim.rs).
    let out = bin(
        &db,
        &["import", "--no-dkim", "--json", md.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let imported = result["imported"].as_u64().unwrap();
    let duplicates = result["duplicates"].as_u64().unwrap();
    assert_eq!(imported + duplicates, 28);
    assert!(duplicates >= 5, "{result}");
    let refused = result["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1);
    assert!(refused[0]["input"].as_str().unwrap().ends_with("99.broken"));
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a TLS-RPT report")
    );

    // Again: everything is a duplicate; the human form says so.
    let out = bin(
        &db,
        &["import", "--no-dkim", md.join("cur").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("0 imported, 14 duplicates, 0 refused"),
        "{text}"
    );

    // Summary JSON: hand-checked numbers from the corpus.
    let out = bin(&db, &["summary", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let days = summary["days"].as_array().unwrap();
    let row = |domain: &str, day: &str| {
        days.iter()
            .find(|d| d["policy_domain"] == domain && d["day"] == day)
            .unwrap_or_else(|| panic!("{domain} {day}: {summary}"))
            .clone()
    };
    let b = row("company-y.example", "2016-04-01");
    assert_eq!(b["successful"], 5326);
    assert_eq!(b["failed"], 303);
    assert_eq!(b["failures_by_result_type"]["starttls-not-supported"], 200);
    assert_eq!(b["failures_by_organization"]["Company-X"], 303);
    assert_eq!(b["failures_by_mx"]["mx1.mail.company-y.example"], 100);
    // 017: Microsoft sts + tlsa policies for krvtz.net, 2 + 2 sessions.
    let k = row("krvtz.net", "2024-09-13");
    assert_eq!(k["successful"], 4);
    assert_eq!(k["failed"], 0);
    // 015: Google-style certificate-expired failure.
    let total_ok: u64 = days.iter().map(|d| d["successful"].as_u64().unwrap()).sum();
    assert!(total_ok > 5326);

    // --domain and --since filters.
    let out = bin(
        &db,
        &[
            "summary",
            "--json",
            "--domain",
            "krvtz.net",
            "--since",
            "2024-09-14",
        ],
    );
    let only: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        only["days"].as_array().unwrap().iter().all(
            |d| d["policy_domain"] == "krvtz.net" && d["day"].as_str().unwrap() >= "2024-09-14"
        )
    );

    // Human summary and HTML page.
    let page = dir.path().join("summary.html");
    let out = bin(&db, &["summary", "--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("company-y.example"), "{text}");
    assert!(text.contains("5326 ok  303 failed"), "{text}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg"));
    assert!(html.contains("<polyline") || html.contains("<circle"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http"));
    assert!(!html.contains("href=\"http"));

    // Show, by report-id and by row id; JSON carries the RFC 8460 report.
    let out = bin(&db, &["show", "5065427c-23d3-47ca-b6e0-946ea0e8c4be"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Company-X"));
    assert!(text.contains("certificate-expired x100"), "{text}");
    let out = bin(&db, &["show", "--json", "133198585438131172+test.xmox.nl"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown[0]["report"]["date-range"]["start-datetime"],
        "2023-01-10T00:00:00Z"
    );
    let row_id = shown[0]["id"].as_i64().unwrap().to_string();
    let out = bin(&db, &["show", "--json", &row_id]);
    let by_row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_row, shown);
    let out = bin(&db, &["show", "no-such-id"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A report written by the model, imported from a .json.gz file, shows back identically.
#[test]
fn generated_report_round_trips_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut report = tlsrpt::Report::daily(
        "example.org",
        "tlsrpt@example.org",
        "rt-1",
        tlsrpt::UtcDateTime::parse("2024-06-01T00:00:00Z").unwrap(),
    );
    report.policies.push(tlsrpt::PolicyResult {
        policy: tlsrpt::PolicyDescriptor {
            policy_type: tlsrpt::PolicyType::NoPolicyFound,
            policy_string: vec![],
            policy_domain: "example.com".into(),
            mx_host: vec![],
        },
        summary: tlsrpt::SessionSummary {
            total_successful_session_count: 7,
            total_failure_session_count: 1,
        },
        failure_details: vec![tlsrpt::FailureDetail {
            sending_mta_ip: Some("192.0.2.7".into()),
            receiving_mx_hostname: Some("mx.example.com".into()),
            ..tlsrpt::FailureDetail::new(tlsrpt::ResultType::StarttlsNotSupported, 1)
        }],
    });
    let json = report.to_json();
    assert!(tlsrpt::validate_report_json(&serde_json::from_str(&json).unwrap()).is_empty());
    let name = tlsrpt::ReportFileName::for_report(&report, "example.org", None, true).unwrap();
    let file = dir.path().join(name.to_string());
    std::fs::write(&file, gzip(json.as_bytes())).unwrap();
    let out = bin(&db, &["import", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bin(&db, &["show", "--json", "rt-1"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let back = tlsrpt::Report::from_json(shown[0]["report"].to_string().as_bytes()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let out = bin(&db, &["summary", "--since", "last week"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
    let out = bin(&db, &["import"]);
    assert_eq!(out.status.code(), Some(2));
    // A database below a regular file cannot be opened.
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let out = bin(&dir.path().join("f/r.db"), &["summary"]);
    assert_eq!(out.status.code(), Some(2));
    // Missing input paths are refused (exit 1), not fatal.
    let out = bin(
        &db,
        &["import", dir.path().join("missing").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
}

fn import_json(db: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["import", "--json"];
    all.extend_from_slice(args);
    let out = bin(db, &all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), value, stderr)
}

fn refusal<'a>(result: &'a Value, input: &str) -> &'a str {
    result["refused"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["input"].as_str().is_some_and(|i| i.ends_with(input)))
        .and_then(|r| r["reason"].as_str())
        .unwrap_or_else(|| panic!("{input} not refused: {result}"))
}

/// Issue #12 item 9: special files get a clear refusal (they used to be skipped silently),
/// and what is neither JSON, gzip, zip nor mail is "not a TLS-RPT report", not unsigned mail.
#[test]
fn import_refuses_special_and_non_report_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("empty.eml"), b"").unwrap();
    std::fs::write(inbox.join("expected.tsv"), b"domain\tday\nexample.com\t1\n").unwrap();

    // /dev/null named on the command line.
    let (code, result, stderr) = import_json(&db, &["/dev/null"]);
    assert_eq!(code, Some(1), "{result} {stderr}");
    assert!(
        refusal(&result, "/dev/null").contains("not a regular file"),
        "{result}"
    );

    // A FIFO: refused without being opened (opening would wait for a writer).
    let fifo = dir.path().join("fifo");
    match Command::new("mkfifo").arg(&fifo).status() {
        Ok(s) if s.success() => {
            let (code, result, _) = import_json(&db, &[fifo.to_str().unwrap()]);
            assert_eq!(code, Some(1));
            assert!(refusal(&result, "fifo").contains("FIFO"), "{result}");
        }
        _ => eprintln!("skipped the FIFO case: mkfifo is not available"),
    }

    // DKIM is on (the default): the empty file and the .tsv are still not "dkim-missing".
    for extra in [None, Some("--no-dkim")] {
        let mut args: Vec<&str> = extra.into_iter().collect();
        args.push(inbox.to_str().unwrap());
        let (code, result, stderr) = import_json(&db, &args);
        assert_eq!(code, Some(1), "{result}");
        assert_eq!(result["refused"].as_array().unwrap().len(), 2, "{result}");
        let empty = refusal(&result, "empty.eml");
        assert!(empty.starts_with("not a TLS-RPT report ("), "{empty}");
        let tsv = refusal(&result, "expected.tsv");
        assert!(tsv.starts_with("not a TLS-RPT report ("), "{tsv}");
        assert!(
            result["refused"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["code"].is_null())
        );
        // Nothing was imported: no note about mail imported without DKIM.
        assert!(!stderr.contains("--no-dkim"), "{stderr}");
    }
    // Human output (where the note is printed) says it only once mail was imported.
    let out = bin(&db, &["import", "--no-dkim", inbox.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note: --no-dkim"));
    let corpus = std::fs::read(corpus_dir().join("005.json")).unwrap();
    std::fs::write(inbox.join("report.eml"), email(&corpus, "n1")).unwrap();
    let out = bin(&db, &["import", "--no-dkim", inbox.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: --no-dkim: 1 mail message"),
        "{stderr}"
    );
}

/// Issue #12 item 9: a MIME body without its closing boundary still has its base64 report
/// decoded (as Python's email parser does).
#[test]
fn mail_without_closing_boundary_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let corpus = std::fs::read(corpus_dir().join("005.json")).unwrap();
    let whole = String::from_utf8(email(&corpus, "open")).unwrap();
    let open = whole.strip_suffix("--b--\r\n").unwrap();
    assert!(!open.contains("--b--"));
    let file = dir.path().join("open.eml");
    std::fs::write(&file, open).unwrap();
    let (code, result, _) = import_json(&db, &["--no-dkim", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{result}");
    assert_eq!(result["imported"], 1, "{result}");
}

/// Issue #12 item 10: commands that only read never create a database.
#[test]
fn reading_commands_need_an_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo/reports.db");
    for args in [
        vec!["summary"],
        vec!["summary", "--json"],
        vec!["show", "1"],
    ] {
        let out = bin(&db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no report database exists at"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
        assert!(!dir.path().join("typo").exists(), "{args:?}");
    }
}

/// Issue #12 item 11: the human summary shows the top MX hosts and "and N more" (`--json`
/// keeps all); a missing and an empty receiving-mx-hostname are one `(none)` entry.
#[test]
fn summary_shows_top_mx_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut report = tlsrpt::Report::daily(
        "reporter.example",
        "tlsrpt@reporter.example",
        "many-mx",
        tlsrpt::UtcDateTime::parse("2024-06-01T00:00:00Z").unwrap(),
    );
    let detail = |mx: Option<&str>, n: u64| tlsrpt::FailureDetail {
        receiving_mx_hostname: mx.map(str::to_owned),
        ..tlsrpt::FailureDetail::new(tlsrpt::ResultType::CertificateExpired, n)
    };
    let mut details: Vec<_> = (0..25)
        .map(|i| detail(Some(&format!("mx{i:02}.example.com")), 1 + i))
        .collect();
    details.push(detail(None, 2));
    details.push(detail(Some(""), 3));
    let failed: u64 = details.iter().map(|d| d.failed_session_count).sum();
    report.policies.push(tlsrpt::PolicyResult {
        policy: tlsrpt::PolicyDescriptor {
            policy_type: tlsrpt::PolicyType::Sts,
            policy_string: vec![],
            policy_domain: "example.com".into(),
            mx_host: vec![],
        },
        summary: tlsrpt::SessionSummary {
            total_successful_session_count: 1,
            total_failure_session_count: failed,
        },
        failure_details: details,
    });
    let file = dir.path().join("report.json");
    std::fs::write(&file, report.to_json()).unwrap();
    let (code, result, _) = import_json(&db, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{result}");

    let out = bin(&db, &["summary"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("failures by MX"))
        .unwrap_or_else(|| panic!("{text}"));
    // 26 hosts: the 10 largest, then the rest counted.
    assert!(line.ends_with(", and 16 more"), "{line}");
    assert!(
        line.contains("mx24.example.com 25, mx23.example.com 24"),
        "{line}"
    );
    assert!(!line.contains("mx00.example.com"), "{line}");
    assert!(line.len() < 400, "{line}");

    let out = bin(&db, &["summary", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_mx = v["days"][0]["failures_by_mx"].as_object().unwrap();
    assert_eq!(by_mx.len(), 26, "{v}");
    assert_eq!(by_mx["(none)"], 5, "{v}");
    assert!(!by_mx.contains_key(""), "{v}");
}

/// `summary --by-domain`: one line (or JSON object) per policy domain, summed over its
/// days; `--since` and `--domain` narrow it as they do the per-day summary.
#[test]
fn summary_by_domain_sums_each_domains_days() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut files = Vec::new();
    for (i, (domain, day, ok, ko)) in [
        ("a.example", "2024-06-01", 10u64, 2u64),
        ("a.example", "2024-06-02", 5, 0),
        ("B.example.", "2024-06-02", 7, 7),
    ]
    .into_iter()
    .enumerate()
    {
        let mut report = tlsrpt::Report::daily(
            "reporter.example",
            "tlsrpt@reporter.example",
            format!("by-domain-{i}"),
            tlsrpt::UtcDateTime::parse(&format!("{day}T00:00:00Z")).unwrap(),
        );
        report.policies.push(tlsrpt::PolicyResult {
            policy: tlsrpt::PolicyDescriptor {
                policy_type: tlsrpt::PolicyType::Sts,
                policy_string: vec![],
                policy_domain: domain.into(),
                mx_host: vec![],
            },
            summary: tlsrpt::SessionSummary {
                total_successful_session_count: ok,
                total_failure_session_count: ko,
            },
            failure_details: vec![],
        });
        let file = dir.path().join(format!("{i}.json"));
        std::fs::write(&file, report.to_json()).unwrap();
        files.push(file.to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, result, _) = import_json(&db, &args);
    assert_eq!(code, Some(0), "{result}");

    let out = bin(&db, &["summary", "--by-domain", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["domains"],
        serde_json::json!([
            {"policy_domain": "a.example", "days": 2, "reports": 2, "successful": 15, "failed": 2,
             "first_day": "2024-06-01", "last_day": "2024-06-02"},
            {"policy_domain": "b.example", "days": 1, "reports": 1, "successful": 7, "failed": 7,
             "first_day": "2024-06-02", "last_day": "2024-06-02"},
        ]),
        "{v}"
    );

    let out = bin(&db, &["summary", "--by-domain"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("a.example  15 ok  2 failed  88.24% success  (2 reports, 2 days)"),
        "{text}"
    );

    let out = bin(
        &db,
        &[
            "summary",
            "--by-domain",
            "--since",
            "2024-06-02",
            "--domain",
            "A.EXAMPLE",
            "--json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["domains"],
        serde_json::json!([
            {"policy_domain": "a.example", "days": 1, "reports": 1, "successful": 5, "failed": 0,
             "first_day": "2024-06-02", "last_day": "2024-06-02"},
        ]),
        "{v}"
    );
}
