//! `mta-sts completions SHELL` and `mta-sts man --out DIR` end to end: the scripts name every
//! subcommand, there is a page per (nested) subcommand holding its `--help` flags, groff
//! reads every page without a warning, and the configuration pages hold every `key =` line of
//! `packaging/*.toml` (they are generated from those files, so they cannot drift).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mta_sts(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mta-sts")
}

fn stdout_ok(args: &[&str]) -> String {
    let out = mta_sts(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "mta-sts {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The `Commands:` of `mta-sts PATH… --help`, without `help`.
fn commands_in_help(path: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = stdout_ok(&args);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

/// Every subcommand path (`["report", "import"]`), found through `--help` like a user would.
fn all_subcommands() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        for name in commands_in_help(&path) {
            let mut sub = path.clone();
            sub.push(name);
            found.push(sub.clone());
            todo.push(sub);
        }
    }
    let names: BTreeSet<String> = found.iter().map(|p| p.join(" ")).collect();
    for known in [
        "lint",
        "daemon",
        "serve",
        "report",
        "report import",
        "completions",
        "man",
    ] {
        assert!(
            names.contains(known),
            "`{known}` missing from --help: {names:?}"
        );
    }
    found
}

/// The `--long` flags `mta-sts PATH… --help` lists.
fn long_flags(path: &[String]) -> BTreeSet<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    stdout_ok(&args)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect()
}

/// A test that needs a program this host lacks: prints why and passes, or fails when
/// `MTA_STS_REQUIRE_INTEROP=1` says every such test must run (as the testkit's helpers do).
fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: {why} (MTA_STS_REQUIRE_INTEROP=1)");
    }
    eprintln!("SKIPPED: {test}: {why}");
}

#[test]
fn completions_name_every_subcommand() {
    let subcommands = all_subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_ok(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {script}");
        for path in &subcommands {
            let name = path.last().expect("a name");
            assert!(
                script.contains(name.as_str()),
                "{shell} script lacks `{name}`"
            );
        }
    }
    for shell in ["elvish", "powershell"] {
        assert!(
            stdout_ok(&["completions", shell]).contains("daemon"),
            "{shell}"
        );
    }
    let out = mta_sts(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "unknown shell is a usage error");
}

fn write_pages(dir: &Path) -> BTreeSet<String> {
    let listed = stdout_ok(&["man", "--out", dir.to_str().expect("UTF-8 path")]);
    let listed: BTreeSet<PathBuf> = listed.lines().map(PathBuf::from).collect();
    let files: BTreeSet<PathBuf> = std::fs::read_dir(dir)
        .expect("read --out")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(listed, files, "stdout lists exactly the files written");
    files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

fn page(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// roff source text back to what it says (the escapes the roff crate writes).
fn unescape(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\*(Aq", "'")
        .replace("\\(aq", "'")
        .replace("\\e", "\\")
        .replace("\\&", "")
}

#[test]
fn man_writes_a_page_per_subcommand_with_its_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1"); // created by the command
    let files = write_pages(&out);
    let subcommands = all_subcommands();
    let mut expected: BTreeSet<String> =
        ["mta-sts.1", "mta-sts-daemon.toml.5", "mta-sts-serve.toml.5"]
            .map(str::to_owned)
            .into();
    expected.extend(
        subcommands
            .iter()
            .map(|p| format!("mta-sts-{}.1", p.join("-"))),
    );
    assert_eq!(files, expected);

    for path in std::iter::once(Vec::new()).chain(subcommands) {
        let name = if path.is_empty() {
            "mta-sts.1".to_owned()
        } else {
            format!("mta-sts-{}.1", path.join("-"))
        };
        let text = unescape(&page(&out, &name));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{name}: {text}"
        );
        for flag in long_flags(&path) {
            assert!(
                text.contains(&flag),
                "{name} lacks {flag} of `{path:?} --help`"
            );
        }
    }
    let import = unescape(&page(&out, "mta-sts-report-import.1"));
    assert!(import.contains("--db"), "{import}");
}

#[test]
fn every_page_parses_with_groff() {
    let test = "every_page_parses_with_groff";
    if Command::new("groff").arg("--version").output().is_err() {
        return skip_or_fail(test, "groff is not installed (apt-get install groff-base)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for name in write_pages(dir.path()) {
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"]) // -k: UTF-8 input, as man(1) reads it
            .arg(dir.path().join(&name))
            .output()
            .expect("run groff");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{name}: {warnings}"
        );
    }
    if Command::new("man").arg("--version").output().is_err() {
        return skip_or_fail(test, "man is not installed (apt-get install man-db)");
    }
    let out = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.path().join("mta-sts-daemon.toml.5"))
        .env("MANWIDTH", "100")
        .output()
        .expect("run man");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("SETTINGS") && text.contains("[socketmap]"),
        "{text}"
    );
}

/// A `key = value` line of a commented configuration file (`#key =`, `#example: key =`,
/// `key =`), as written.
fn is_key_line(line: &str) -> bool {
    let bare = line
        .strip_prefix("#example: ")
        .or_else(|| line.strip_prefix('#'))
        .unwrap_or(line);
    let key_len = bare
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
        .count();
    key_len > 0 && bare[key_len..].starts_with(" =")
}

#[test]
fn config_pages_hold_every_key_line_of_the_packaged_files() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_pages(dir.path());
    let mut configs = 0;
    for entry in std::fs::read_dir(&packaging).expect("packaging/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        configs += 1;
        let stem = path.file_stem().expect("stem").to_string_lossy();
        let name = format!("mta-sts-{stem}.toml.5");
        assert!(
            files.contains(&name),
            "no page {name} for {}",
            path.display()
        );
        let text = unescape(&page(dir.path(), &name));
        let source = std::fs::read_to_string(&path).expect("read config");
        let keys: Vec<&str> = source
            .lines()
            .map(str::trim_end)
            .filter(|l| is_key_line(l))
            .collect();
        assert!(keys.len() > 20, "{}: {keys:?}", path.display());
        for line in keys {
            assert!(text.contains(line), "{name} lacks `{line}`");
        }
    }
    assert_eq!(configs, 2, "daemon.toml and serve.toml");
}

/// README's "Man pages and completions" commands, run as written with `mta-sts` on PATH, in a
/// temporary directory that is also `$HOME`.
#[test]
fn readme_man_and_completion_commands_work_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "### Man pages and completions")
        .skip_while(|l| *l != "```sh")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert!(block.len() >= 5, "{block:?}");
    let have_man = Command::new("man").arg("--version").output().is_ok();
    let home = tempfile::tempdir().expect("tempdir");
    let bin = Path::new(env!("CARGO_BIN_EXE_mta-sts"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in block {
        if line.starts_with("man ") && !have_man {
            skip_or_fail(
                "README man -l",
                "man is not installed (apt-get install man-db)",
            );
            continue;
        }
        let out = Command::new("bash")
            .args(["-ec", line])
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("PATH", &path)
            .env("MANWIDTH", "80")
            .env("PAGER", "cat")
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let h = home.path();
    assert!(h.join("target/man/mta-sts-report-send.1").is_file());
    assert!(h.join("target/man/mta-sts-serve.toml.5").is_file());
    for script in [
        ".local/share/bash-completion/completions/mta-sts",
        ".zfunc/_mta-sts",
        ".config/fish/completions/mta-sts.fish",
    ] {
        let text = std::fs::read_to_string(h.join(script)).expect(script);
        assert!(text.contains("report"), "{script}");
    }
}
