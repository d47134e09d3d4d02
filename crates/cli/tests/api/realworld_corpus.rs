//! The real-world set 2 (`shared/corpus/realworld/`, README there; issue #12 item 16)
//! through the real binary: every policy and TXT value through `lint --json` against the
//! verdicts of `policies/expected.tsv` and `records.tsv` (decided from RFC 8461 §3.1, §3.2
//! and RFC 8460 §3), every TLS-RPT report through `report import --no-dkim --json` against
//! `tlsrpt/expected.tsv` (import / refuse / duplicate / any / import3), and `report
//! summary --json` against session totals computed here from the reports' JSON
//! (RFC 8460 §4.4 `summary`). Duplicates imported afterwards must not change the totals.
//!
//! The corpus lives beside the clone, at `../shared/corpus` from the workspace root (as on
//! CI). Without it the test is skipped with a message, unless `MTA_STS_REQUIRE_CORPUS=1`
//! (or `MTA_STS_REQUIRE_INTEROP=1`), then it fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/realworld");
    if dir.join("manifest.tsv").is_file() {
        return Some(dir);
    }
    let required = ["MTA_STS_REQUIRE_CORPUS", "MTA_STS_REQUIRE_INTEROP"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"));
    assert!(
        !required,
        "the real-world corpus is required but {} is missing",
        dir.display()
    );
    eprintln!(
        "SKIPPED: {} not found (shared/ beside the clone); set MTA_STS_REQUIRE_CORPUS=1 to make this a failure",
        dir.display()
    );
    None
}

fn mta_sts(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(args)
        .arg(file)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mta-sts")
}

/// Data rows of a TSV file (comments and the header skipped).
fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .filter(|cols| cols.first().is_some_and(|c| c != "kind" && c != "file"))
        .collect()
}

/// Whether `got` fits `expected` (`yes`, `no` or `any`).
fn fits(expected: &str, got: bool) -> bool {
    match expected {
        "yes" => got,
        "no" => !got,
        _ => true,
    }
}

/// `lint --json` of `file`: (valid, strict_valid, diagnostic codes).
fn lint(args: &[&str], file: &Path) -> Result<(bool, bool, String), String> {
    let mut all = vec!["lint", "--json"];
    all.extend_from_slice(args);
    let out = mta_sts(&all, file);
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))?;
    let codes: Vec<&str> = v["diagnostics"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["code"].as_str()).collect())
        .unwrap_or_default();
    match (v["valid"].as_bool(), v["strict_valid"].as_bool()) {
        (Some(valid), Some(strict)) => Ok((valid, strict, codes.join(","))),
        _ => Err(format!("no valid/strict_valid in {v}")),
    }
}

#[test]
fn realworld_policies_and_records_lint_as_expected() {
    let Some(dir) = corpus() else {
        return;
    };
    let mut disagreements = Vec::new();
    let policies = rows(&dir.join("policies/expected.tsv"));
    assert_eq!(policies.len(), 89, "policies/expected.tsv rows");
    for row in &policies {
        let [file, valid, strict, ..] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        match lint(&[], &dir.join("policies").join(file)) {
            Ok((v, s, codes)) if !fits(valid, v) || !fits(strict, s) => disagreements.push(format!(
                "policy {file}: expected valid={valid} strict={strict}, got valid={v} strict={s} [{codes}]"
            )),
            Ok(_) => {}
            Err(e) => disagreements.push(format!("policy {file}: {e}")),
        }
    }
    let records = rows(&dir.join("records.tsv"));
    assert_eq!(records.len(), 75, "records.tsv rows");
    let tmp = tempfile::tempdir().expect("tempdir");
    for (n, row) in records.iter().enumerate() {
        let [kind, value, valid, _source, _note, strict, ..] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        let value: String = serde_json::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        let file = tmp.path().join(format!("record-{n}.txt"));
        std::fs::write(&file, format!("{value}\n")).expect("write record");
        let flag = match kind.as_str() {
            "mta-sts" => "--record",
            "tlsrpt" => "--tlsrpt-record",
            other => panic!("kind {other}"),
        };
        match lint(&[flag], &file) {
            Ok((v, s, codes)) if !fits(valid, v) || !fits(strict, s) => disagreements.push(format!(
                "{kind} record {value:?}: expected valid={valid} strict={strict}, got valid={v} strict={s} [{codes}]"
            )),
            Ok(_) => {}
            Err(e) => disagreements.push(format!("{kind} record {value:?}: {e}")),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s) with the expectations:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// Decodes standard base64, ignoring line breaks and whitespace.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// The report JSON documents in `file`: the file itself, its gzip content, or the
/// base64 `application/tlsrpt+gzip` / `+json` parts of the mail(s) in it (RFC 8460 §5.3).
fn report_jsons(file: &Path) -> Vec<Value> {
    let bytes = std::fs::read(file).expect("read report");
    let name = file.to_string_lossy();
    if name.ends_with(".json") {
        return vec![serde_json::from_slice(&bytes).expect("report JSON")];
    }
    if name.ends_with(".gz") {
        return vec![serde_json::from_slice(&gunzip(&bytes)).expect("report JSON")];
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let lower = lines[i].to_ascii_lowercase();
        let gzip = lower.starts_with("content-type: application/tlsrpt+gzip");
        if gzip || lower.starts_with("content-type: application/tlsrpt+json") {
            // part headers up to the blank line, then base64 up to a boundary or the end
            while i < lines.len() && !lines[i].trim().is_empty() {
                i += 1;
            }
            let mut b64 = String::new();
            while i < lines.len() && !lines[i].starts_with("--") && !lines[i].starts_with("From ") {
                b64.push_str(lines[i].trim());
                i += 1;
            }
            let raw = base64(&b64).expect("base64 part");
            let json = if gzip { gunzip(&raw) } else { raw };
            out.push(serde_json::from_slice(&json).expect("report JSON in mail"));
        }
        i += 1;
    }
    out
}

/// (successful, failed) sessions per policy domain of `reports`, from their `summary`.
fn totals(reports: &[Value]) -> BTreeMap<String, (u64, u64)> {
    let mut totals = BTreeMap::new();
    for report in reports {
        for p in report["policies"].as_array().into_iter().flatten() {
            let domain = p["policy"]["policy-domain"]
                .as_str()
                .unwrap_or("")
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let entry = totals.entry(domain).or_insert((0, 0));
            entry.0 += p["summary"]["total-successful-session-count"]
                .as_u64()
                .unwrap_or(0);
            entry.1 += p["summary"]["total-failure-session-count"]
                .as_u64()
                .unwrap_or(0);
        }
    }
    totals
}

/// `report import --json` of one file into `db`: (exit code, result).
fn import(db: &Path, file: &Path) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["report", "import", "--no-dkim", "--json", "--db"])
        .arg(db)
        .arg(file)
        .output()
        .expect("run mta-sts");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: {} / {}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// `report summary --json`: (successful, failed) per policy domain.
fn summary(db: &Path) -> BTreeMap<String, (u64, u64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["report", "summary", "--json", "--db"])
        .arg(db)
        .output()
        .expect("run mta-sts");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    let mut totals = BTreeMap::new();
    for day in v["days"].as_array().expect("days") {
        let domain = day["policy_domain"].as_str().unwrap_or("").to_owned();
        let entry = totals.entry(domain).or_insert((0, 0));
        entry.0 += day["successful"].as_u64().unwrap_or(0);
        entry.1 += day["failed"].as_u64().unwrap_or(0);
    }
    totals
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// Refusals, each with a clear (non-empty) reason, or a description of what is wrong.
fn refusals(v: &Value) -> Result<usize, String> {
    let refused = v["refused"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for r in refused {
        let reason = r["reason"].as_str().unwrap_or("");
        // the JSON contract gives stable codes to DKIM refusals only, `null` otherwise
        let code_ok = match &r["code"] {
            Value::Null => true,
            Value::String(code) => code.starts_with("dkim-"),
            _ => false,
        };
        if reason.is_empty() || !code_ok {
            return Err(format!(
                "refusal without a clear reason or with a bad code: {r}"
            ));
        }
    }
    Ok(refused.len())
}

#[test]
fn realworld_reports_import_and_sum_up_as_expected() {
    let Some(dir) = corpus() else {
        return;
    };
    let dir = dir.join("tlsrpt");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("a.db");
    let db_mbox = tmp.path().join("b.db");
    let mut disagreements = Vec::new();
    let mut imported_jsons = Vec::new();
    let expectations = rows(&dir.join("expected.tsv"));
    assert_eq!(expectations.len(), 35, "tlsrpt/expected.tsv rows");
    let mut before_dups: Option<BTreeMap<String, (u64, u64)>> = None;
    for row in &expectations {
        let [file, set, expect, ..] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        let path = dir.join(file);
        if set == "dup" && before_dups.is_none() {
            before_dups = Some(summary(&db));
        }
        let target = if set == "mbox" { &db_mbox } else { &db };
        let (code, v) = import(target, &path);
        let (imported, duplicates) = (count(&v, "imported"), count(&v, "duplicates"));
        let refused = match refusals(&v) {
            Ok(n) => n,
            Err(e) => {
                disagreements.push(format!("{file}: {e}"));
                continue;
            }
        };
        // exit 0, or 1 when an input was refused; never a crash or usage error
        let code_ok = code == Some(if refused > 0 { 1 } else { 0 });
        let ok = code_ok
            && match expect.as_str() {
                "import" => imported == 1 && refused == 0,
                "import3" => imported == 3 && refused == 0,
                "refuse" => imported == 0 && refused == 1,
                "duplicate" => duplicates == 1 && imported == 0 && refused == 0,
                "any" => imported + refused as u64 == 1,
                other => panic!("expect {other}"),
            };
        if !ok {
            disagreements.push(format!("{file}: expected {expect}, got exit {code:?} {v}"));
        }
        if set == "main" && imported > 0 {
            imported_jsons.extend(report_jsons(&path));
        }
    }
    let want = totals(&imported_jsons);
    let got = before_dups.unwrap_or_default();
    if got != want {
        disagreements.push(format!(
            "summary totals (successful, failed) per domain differ:\n  computed from JSON: {want:?}\n  report summary:     {got:?}"
        ));
    }
    // duplicates are not counted twice and do not change the stored report
    let after = summary(&db);
    if after != got {
        disagreements.push(format!(
            "duplicates changed the summary:\n  before: {got:?}\n  after:  {after:?}"
        ));
    }
    let mbox = dir.join("containers/real-report-mails.mbox");
    let want = totals(&report_jsons(&mbox));
    let got = summary(&db_mbox);
    if got != want {
        disagreements.push(format!(
            "mbox summary differs:\n  computed from JSON: {want:?}\n  report summary:     {got:?}"
        ));
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
