//! docs/migrating.md, run as written against the real postfix-mta-sts-resolver 1.5.1 (the
//! lab of [`crate::migrate_peer`]): its blocks marked `<!-- test: NAME -->` are read from the
//! document and run with `sh -e`, with the `mta-sts` under test first on `PATH`. What differs
//! from a real host is the substitution table below (printed at the start): paths move into
//! a temporary directory, the ports become free ones, the example domains the test world's.
//! The converted file gets the test world's `[resolver]` and a free `[http]` port appended.
//! `systemctl` is not run (no systemd here): the switch block's other lines are, and the units
//! it names are checked to be the ones packaging/ ships (ours) or the peer's. Skips as the
//! peer lab does (root, python3-venv, PyPI) unless `MTA_STS_REQUIRE_INTEROP=1`.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::daemon_support::{bin, free_port, have, resolver_section};
use crate::migrate_peer::start_lab;

fn doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/migrating.md"))
        .expect("read docs/migrating.md")
}

/// The fenced block right after `<!-- test: NAME -->` (indentation of the fence removed).
fn block(doc: &str, name: &str) -> String {
    let marker = format!("<!-- test: {name} -->");
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == marker)
        .unwrap_or_else(|| panic!("docs/migrating.md has no `{marker}`"));
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.trim_start().starts_with("```"),
        "no fence after {marker}"
    );
    let indent = fence.len() - fence.trim_start().len();
    let mut out = String::new();
    for line in lines {
        if line.trim_start().starts_with("```") {
            return out;
        }
        out.push_str(line.get(indent..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    panic!("unclosed block after {marker}")
}

/// One pass over `text`: at each place the first matching `from` of the table is replaced
/// (a replacement is never substituted again).
fn subst(text: &str, table: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'next: while let Some(c) = rest.chars().next() {
        for (from, to) in table {
            if let Some(r) = rest.strip_prefix(from.as_str()) {
                out.push_str(to);
                rest = r;
                continue 'next;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn sh(script: &str, path_dir: &Path) -> Output {
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .args(["-e", "-c", script])
        .env("PATH", path)
        .output()
        .expect("run sh")
}

/// `…` in a doc line matches any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let mut rest = line;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

struct Trial(Child);

impl Drop for Trial {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn migrating_doc_runs_as_written() {
    let doc = doc();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let Some(lab) = start_lab(d, |port| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/peer-configs/internal.yml"),
        )
        .expect("fixture")
        .replace("port: 8461", &format!("port: {port}"))
    }) else {
        return;
    };
    let bin_dir = d.join("bin");
    std::fs::create_dir(&bin_dir).expect("mkdir");
    std::os::unix::fs::symlink(bin(), bin_dir.join("mta-sts")).expect("symlink");
    let ours_port = free_port();
    let table: Vec<(String, String)> = vec![
        (
            "/etc/mta-sts-daemon.yml".into(),
            lab.yaml_file.display().to_string(),
        ),
        ("/tmp/".into(), format!("{}/", d.display())),
        (
            "/var/log/mail.log".into(),
            d.join("mail.log").display().to_string(),
        ),
        ("127.0.0.1:8461".into(), lab.peer_addr.to_string()),
        ("127.0.0.1:8471".into(), format!("127.0.0.1:{ours_port}")),
        ("maxageover.example".into(), "maxageover.loc".into()),
        ("mail.example ".into(), "mail.loc ".into()),
    ];
    eprintln!("docs/migrating.md is run with these substitutions (doc -> test):");
    for (from, to) in &table {
        eprintln!("  {from} -> {to}");
    }

    // 1. Convert: the warnings name the keys of internal.yml without an equivalent.
    let out = sh(&subst(&block(&doc, "convert"), &table), &bin_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "convert: {stderr}");
    assert!(stderr.contains("warning: reuse_port: true"), "{stderr}");
    assert!(
        stderr.contains("warning: cache.options.cache_size: 10000"),
        "{stderr}"
    );
    let converted = d.join("mta-sts-daemon.toml");
    let mut toml = std::fs::read_to_string(&converted).expect("converted file");
    toml.push_str(&format!(
        "\n# Added by the test: the test world, a free HTTP port.\n{}\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        resolver_section(&lab.world),
        free_port()
    ));
    std::fs::write(&converted, toml).expect("write");

    // 2. The trial copy passes --check-config and runs on its own port.
    let out = sh(&subst(&block(&doc, "trial"), &table), &bin_dir);
    assert!(
        out.status.success(),
        "trial: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = subst(&block(&doc, "trial-run"), &table);
    let trial_log = d.join("trial.log");
    let child = Command::new("sh")
        .args(["-c", &format!("exec {}", run.trim())])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&trial_log).expect("log"))
        .spawn()
        .expect("trial daemon");
    let _trial = Trial(child);
    let ours: SocketAddr = format!("127.0.0.1:{ours_port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(ours).is_err() {
        assert!(
            Instant::now() < deadline,
            "trial daemon not listening: {}",
            std::fs::read_to_string(&trial_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // 3. The destination list from a Postfix log.
    std::fs::write(
        d.join("mail.log"),
        "Dec  4 07:00:01 mx postfix/smtp[101]: 4F1A: to=<alice@Good.loc>, relay=mail.loc[127.0.0.1]:25, delay=1, status=sent (250 ok)\n\
         Dec  4 07:00:02 mx postfix/smtp[102]: 4F1B: to=<bob@maxageover.loc>, relay=none, delay=1, status=deferred (connect timed out)\n\
         Dec  4 07:00:03 mx postfix/smtp[103]: 4F1C: to=<carol@good.loc>, orig_to=<c@local>, relay=mail.loc[127.0.0.1]:25, status=sent (250 ok)\n\
         Dec  4 07:00:04 mx postfix/qmgr[90]: 4F1C: removed\n\
         Dec  4 07:00:05 mx postfix/smtp[104]: 4F1D: to=<dan@wild.loc>, relay=mail.wild.loc[127.0.0.1]:25, status=sent (250 ok)\n\
         Dec  4 07:00:06 mx postfix/smtp[105]: 4F1E: to=<erin@no-record.loc>, relay=mx.no-record.loc[127.0.0.1]:25, status=sent (250 ok)\n",
    )
    .expect("write log");
    let out = sh(&subst(&block(&doc, "destinations"), &table), &bin_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(d.join("destinations.txt")).expect("list"),
        "good.loc\nmaxageover.loc\nno-record.loc\nwild.loc\n"
    );

    // 4. Compare: exit 1, and the doc's sample lines are in the output.
    let out = sh(&subst(&block(&doc, "compare"), &table), &bin_dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "compare: {text}");
    let mut lines = text.lines();
    for pattern in subst(&block(&doc, "compare-output"), &table).lines() {
        assert!(
            lines.by_ref().any(|l| line_matches(pattern, l)),
            "docs/migrating.md promises a line `{pattern}`; compare printed:\n{text}"
        );
    }
    assert!(
        text.contains("4 destinations: 3 same, 1 differ"),
        "{text}\npeer log: {}",
        std::fs::read_to_string(&lab.peer_log).unwrap_or_default()
    );

    // 5. Switch: everything but systemctl runs; the units are ours and the peer's.
    let etc = d.join("etc-mta-sts");
    let switch = block(&doc, "switch");
    let mut runnable = Vec::new();
    for line in switch.lines() {
        if let Some(unit) = line.strip_prefix("systemctl ") {
            let unit = unit.split_whitespace().last().unwrap_or_default();
            assert!(
                unit == "postfix-mta-sts-resolver"
                    || Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join(format!("../../packaging/{unit}.service"))
                        .exists(),
                "docs/migrating.md names unit {unit}, which packaging/ does not ship"
            );
            eprintln!("not run (no systemd here): {line}");
        } else {
            runnable.push(line.to_owned());
        }
    }
    let mut switch_table = table.clone();
    switch_table.insert(0, ("/etc/mta-sts".into(), etc.display().to_string()));
    switch_table.insert(
        0,
        (
            "mta-sts daemon --check-config\n".into(),
            format!(
                "mta-sts daemon --check-config --config {}\n",
                etc.join("daemon.toml").display()
            ),
        ),
    );
    // After the switch ours answers on the peer's address: the trial daemon stands in.
    switch_table.retain(|(from, _)| from != "127.0.0.1:8461");
    switch_table.push(("127.0.0.1:8461".into(), ours.to_string()));
    switch_table.push(("gmail.com".into(), "good.loc".into()));
    let mut script = subst(&(runnable.join("\n") + "\n"), &switch_table);
    if !have("postmap", "postfix") {
        script = script
            .lines()
            .filter(|l| !l.starts_with("postmap"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    // postmap reads main.cf: an empty one (Postfix's defaults) in the temporary directory.
    let mail_config = d.join("postfix");
    std::fs::create_dir(&mail_config).expect("mkdir");
    std::fs::write(mail_config.join("main.cf"), "").expect("main.cf");
    let script = format!("export MAIL_CONFIG={}\n{script}", mail_config.display());
    let out = sh(&script, &bin_dir);
    assert!(
        out.status.success(),
        "switch: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if script.contains("postmap") {
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("secure match=mail.loc servername=hostname"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // 6. Roll back: only systemctl, on the two units above.
    for line in block(&doc, "rollback").lines() {
        assert!(
            line == "systemctl disable --now mta-sts-daemon"
                || line == "systemctl enable --now postfix-mta-sts-resolver",
            "unexpected rollback line {line}"
        );
    }

    // README's "Switch from postfix-mta-sts-resolver" commands are the doc's, run above.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let section = readme
        .split("### Switch from postfix-mta-sts-resolver")
        .nth(1)
        .expect("README has a section \"Switch from postfix-mta-sts-resolver\"");
    let commands = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in README's switch section");
    let tested = format!("{}{}", block(&doc, "convert"), block(&doc, "compare"));
    for line in commands.lines() {
        assert!(
            tested.lines().any(|t| t == line),
            "README's `{line}` is not one of docs/migrating.md's tested commands"
        );
    }

    // postfix-tlspol: the hand-written file passes --check-config (its port made free).
    let tlspol = d.join("tlspol.toml");
    std::fs::write(
        &tlspol,
        format!(
            "{}\n[http]\nlisten = \"127.0.0.1:{}\"\n{}",
            block(&doc, "tlspol-config")
                .replace("127.0.0.1:8642", &format!("127.0.0.1:{}", free_port())),
            free_port(),
            resolver_section(&lab.world),
        ),
    )
    .expect("write");
    let out = Command::new(bin())
        .args(["daemon", "--check-config", "--config"])
        .arg(&tlspol)
        .output()
        .expect("check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("query: ") && stdout.contains("dane=defer"),
        "{stdout}"
    );
}
