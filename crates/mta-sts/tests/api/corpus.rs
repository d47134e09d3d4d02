//! Every real-world policy file and `_mta-sts` record of the corpus (testdata/corpus) goes
//! through the parsers: no panic, and the verdict and diagnostic codes of each equal the
//! reviewed expectation in tests/corpus/*.expected, so that any change of verdict shows up
//! in review. `MTA_STS_BLESS=1 cargo test -p mta-sts --test api corpus` rewrites the
//! expectation files after a deliberate change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mta_sts::policy;
use mta_sts::record;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/corpus")
}

fn verdict(valid: bool, strict: bool) -> &'static str {
    match (valid, strict) {
        (true, true) => "valid",
        (true, false) => "tolerated",
        _ => "invalid",
    }
}

fn codes(diagnostics: &[mta_sts::Diagnostic]) -> String {
    let codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    if codes.is_empty() {
        "-".to_owned()
    } else {
        codes.join(",")
    }
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    if std::env::var_os("MTA_STS_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write expectation file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .filter(|(e, a)| e != a)
            .map(|(e, a)| format!("- {e}\n+ {a}"))
            .take(20)
            .collect();
        panic!(
            "{name} changed (review, then MTA_STS_BLESS=1):\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn corpus_policies_match_reviewed_verdicts() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("policies"))
        .expect("testdata/corpus/policies")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 205);
    let mut out =
        String::from("# file\tverdict\tmode\tmx\tdiagnostics (reviewed; see tests/corpus.rs)\n");
    for path in files {
        let body = std::fs::read(&path).expect("read policy");
        let lint = policy::lint(&body);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let (mode, mx) = lint
            .policy
            .as_ref()
            .map(|p| (p.mode.as_str(), p.mx.len()))
            .unwrap_or(("-", 0));
        writeln!(
            out,
            "{name}\t{}\t{mode}\t{mx}\t{}",
            verdict(lint.is_valid(), lint.is_strict_valid()),
            codes(&lint.diagnostics)
        )
        .ok();
    }
    check("policies.expected", &out);
}

#[test]
fn corpus_sts_records_match_reviewed_verdicts() {
    let tsv = std::fs::read_to_string(root().join("records.tsv")).expect("records.tsv");
    let mut out = String::from("# records.tsv line\tkind\tverdict\tdiagnostics\teffective_txt\n");
    let mut rows = 0;
    for (index, line) in tsv.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if line.starts_with('#')
            || fields.len() < 4
            || fields[0] == "kind"
            || !fields[0].starts_with("mta-sts")
        {
            continue;
        }
        let txt = fields[3].replace("<TAB>", "\t");
        let txt = txt.as_str();
        let lint = record::lint(txt);
        rows += 1;
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{txt}",
            index + 1,
            fields[0],
            verdict(lint.record.is_some(), lint.record.is_some()),
            codes(&lint.diagnostics)
        )
        .ok();
    }
    assert_eq!(rows, 74);
    check("records.expected", &out);
}
