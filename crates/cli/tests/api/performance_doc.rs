//! docs/performance.md tells readers how to reproduce each figure. Running the benchmarks
//! here would take minutes and prove nothing about their numbers, so this checks that every
//! command in the page still names things that exist: each `--example`, `--bench` and
//! `--test … FILTER` in its crate, each `scripts/…` it runs, and each `--flag` given to a
//! benchmark or script among the flags that benchmark's or script's source reads.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The crate directory whose package is `name` (`crates/<dir>/Cargo.toml`).
fn crate_dir(name: &str) -> PathBuf {
    let crates = root().join("crates");
    std::fs::read_dir(&crates)
        .expect("crates/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|t| t.contains(&format!("name = \"{name}\"")))
        })
        .unwrap_or_else(|| panic!("docs/performance.md names crate {name}, which does not exist"))
}

/// The source text of example `name` in any crate (a file, or a directory of files).
fn example_source(name: &str) -> Option<String> {
    let crates = root().join("crates");
    for dir in std::fs::read_dir(&crates).ok()?.filter_map(|e| e.ok()) {
        let examples = dir.path().join("examples");
        if let Ok(text) = std::fs::read_to_string(examples.join(format!("{name}.rs"))) {
            return Some(text);
        }
        if let Ok(files) = std::fs::read_dir(examples.join(name)) {
            let mut text = String::new();
            for f in files.filter_map(|f| f.ok()) {
                text += &std::fs::read_to_string(f.path()).unwrap_or_default();
            }
            return Some(text);
        }
    }
    None
}

/// Every file under `dir`, recursively, concatenated.
fn tree_text(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            if path.is_dir() {
                text += &tree_text(&path);
            } else {
                text += &std::fs::read_to_string(&path).unwrap_or_default();
            }
        }
    }
    text
}

/// The shell commands of the page's fenced blocks, continuation lines joined.
fn commands(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(head) => pending += &format!("{head} "),
            None => {
                pending += line;
                if !pending.trim().is_empty() && !pending.trim_start().starts_with('#') {
                    out.push(std::mem::take(&mut pending));
                }
                pending.clear();
            }
        }
    }
    out
}

fn value_after<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| *w == flag)
        .and_then(|i| words.get(i + 1).copied())
}

/// Checks one command; returns what it checked, for the summary.
fn check(command: &str) -> Option<String> {
    let words: Vec<&str> = command
        .split_whitespace()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let first = *words.first()?;
    if first.starts_with("scripts/") {
        let source = std::fs::read_to_string(root().join(first))
            .unwrap_or_else(|_| panic!("`{command}`: no {first}"));
        for flag in words[1..].iter().filter(|a| a.starts_with("--")) {
            assert!(
                source.contains(&format!("\"{flag}\"")),
                "`{command}`: {first} does not read {flag}"
            );
        }
        return Some(first.to_owned());
    }
    let (example, args): (Option<&str>, &[&str]) =
        if let Some(name) = first.strip_prefix("target/release/examples/") {
            (Some(name), &words[1..])
        } else if first == "cargo" {
            if let (Some(krate), Some(bench)) =
                (value_after(&words, "-p"), value_after(&words, "--bench"))
            {
                let path = crate_dir(krate).join(format!("benches/{bench}.rs"));
                assert!(path.exists(), "`{command}`: no {}", path.display());
            }
            if let (Some(krate), Some("api")) =
                (value_after(&words, "-p"), value_after(&words, "--test"))
            {
                let filter = words
                    .iter()
                    .skip_while(|w| **w != "api")
                    .nth(1)
                    .filter(|w| !w.starts_with('-'))
                    .expect("a test filter after --test api");
                let name = filter.rsplit("::").next().unwrap_or(filter);
                let tests = tree_text(&crate_dir(krate).join("tests/api"));
                assert!(
                    tests.contains(&format!("fn {name}(")),
                    "`{command}`: no test {name} in {krate}"
                );
            }
            let dashdash = words.iter().position(|w| *w == "--");
            (
                value_after(&words, "--example"),
                dashdash.map_or(&[][..], |i| &words[i + 1..]),
            )
        } else {
            return None;
        };
    let example = example?;
    let source = example_source(example)
        .unwrap_or_else(|| panic!("`{command}`: no example {example} in any crate"));
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            source.contains(&format!("\"{flag}\"")),
            "`{command}`: {example} does not read {flag}"
        );
    }
    Some(example.to_owned())
}

#[test]
fn performance_doc_commands_name_what_exists() {
    let page =
        std::fs::read_to_string(root().join("docs/performance.md")).expect("docs/performance.md");
    let checked: Vec<String> = commands(&page).iter().filter_map(|c| check(c)).collect();
    for bench in [
        "socketmap_bench",
        "handshake_bench",
        "report_bench",
        "scripts/serve-burst-rss",
    ] {
        assert!(
            checked.iter().any(|c| c == bench),
            "docs/performance.md has no command running {bench}: {checked:?}"
        );
    }
}

#[test]
fn the_checker_catches_a_flag_a_benchmark_does_not_read() {
    let caught = std::panic::catch_unwind(|| {
        check("target/release/examples/socketmap_bench --secs 2 --no-such-flag 1")
    });
    assert!(caught.is_err());
    assert_eq!(
        check("target/release/examples/socketmap_bench --secs 2").as_deref(),
        Some("socketmap_bench")
    );
    let caught = std::panic::catch_unwind(|| {
        check("scripts/serve-burst-rss target/debug/mta-sts --no-such-flag 1")
    });
    assert!(caught.is_err());
    assert!(std::panic::catch_unwind(|| check("scripts/no-such-script")).is_err());
}
