//! docs/postfix.md, followed step by step against a real Postfix (issue #18).
//!
//! Nothing of the document is copied here: the commands, the main.cf and daemon.toml lines
//! and the log lines it promises are read from its fenced blocks marked
//! `<!-- test: NAME -->`, so this test fails when the document drifts from what the software
//! does. What differs from a real installation is in two tables, printed at the start of
//! each run:
//! - [`substitutions`]: the doc's paths move under a temporary root, its ports become free
//!   ones, its example domain becomes a test domain;
//! - [`daemon_toml_edits`]: the lines the test world needs in packaging/daemon.toml as the
//!   doc installs it (the testkit DNS and CA, the free ports, the cache under the root).
//!
//! The set-ups: TCP on loopback (§1 `install`, §2 `main.cf tcp`, `check tcp`), and §3's UNIX
//! socket inside Postfix's queue directory applied to that running set-up ([`UNIX_BLOCKS`]).
//! Both then check §2's "What success looks like": the `postmap -q` replies, deliveries whose
//! log lines match the doc's samples (`log sent`, `log deferred`, `log deferred
//! no-starttls`; `…` matches anything), and the daemon-down behaviour. Postfix runs with
//! Debian's master.cf, so `smtp(8)` is chrooted to the queue directory. It finds the MX hosts
//! through `/etc/resolv.conf`, so the testkit zones are also served on port 53 of a spare
//! loopback address and Postfix runs in a private mount namespace with a bind-mounted
//! resolv.conf naming it (interop-lab §3b); the chroot gets a copy, as Debian's start script
//! makes one.
//!
//! There is no systemd here: `systemctl` is emulated from the unit file the doc installs and
//! its drop-ins ([`start_unit`]): ExecStart runs as an unprivileged uid (`DynamicUser=`),
//! with `Group=`/`SupplementaryGroups=`, `UMask=`, `NoNewPrivileges=`, `ExecStartPre=+…`,
//! the `StateDirectory=`/`RuntimeDirectory=` created and owned by that uid,
//! `ProtectSystem=strict` as a read-only temporary root but for those directories and
//! `ReadWritePaths=`, and `Type=notify` (the start waits for `READY=1` on `$NOTIFY_SOCKET`).
//!
//! `MTA_STS_POSTFIX_DOC=FILE` runs the test on another copy of the document (to try an edit,
//! or to watch the test fail on a drifted one). Needs root (port 53, mount namespaces, the
//! uid switch) and Postfix; skips with a message otherwise, unless
//! `MTA_STS_REQUIRE_INTEROP=1`.

mod document;
mod lab;
mod unit;

use crate::daemon_support;

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};
use std::time::Duration;

use daemon_support::{bin, eventually};
use document::*;
use lab::*;

/// After READY=1 both listeners accept at once (the doc: "sends READY=1 once both
/// listeners are up").
fn assert_listening(lab: &Lab) {
    let service = lab.service.as_ref().expect("the unit runs");
    let socketmap = &lab.socketmap_listen;
    let ok = match socketmap.strip_prefix("unix:") {
        Some(path) => UnixStream::connect(path).is_ok(),
        None => TcpStream::connect(socketmap.as_str()).is_ok(),
    };
    assert!(
        ok,
        "socketmap {socketmap} not accepting after READY=1:\n{}",
        service.log_text()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", lab.http_port)).is_ok(),
        "http not accepting after READY=1:\n{}",
        service.log_text()
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// The doc's check block: an enforce domain prints `secure match=… servername=hostname`
/// (the same fields as the doc's example reply) and exits 0; a testing domain prints
/// nothing and exits 1.
fn assert_checks(lab: &Lab, doc: &str, name: &str) {
    let service = lab.service.as_ref().expect("the unit runs");
    let runs = lab.check_block(doc, name, "good.test");
    let postmap: Vec<_> = runs.iter().filter(|r| r.0.contains("postmap -q")).collect();
    assert!(!postmap.is_empty(), "`{name}` has a postmap -q line");
    for (line, out, example) in postmap {
        assert_eq!(
            (out.status.code(), stdout(out).as_str()),
            (Some(0), "secure match=mail.good.test servername=hostname"),
            "`{line}`: {out:?}\ndaemon:\n{}",
            service.log_text()
        );
        if !example.is_empty() {
            // The doc's example reply has the same shape: `secure`, `match=`, `servername=hostname`.
            let shape = |s: &str| -> Vec<String> {
                s.split_whitespace()
                    .map(|t| match t.split_once('=') {
                        Some(("match", _)) => "match=…".to_owned(),
                        _ => t.to_owned(),
                    })
                    .collect()
            };
            assert_eq!(
                shape(example),
                shape(&stdout(out)),
                "the doc's example reply"
            );
        }
    }
    for (line, out, _) in runs.iter().filter(|r| r.0.starts_with("curl")) {
        assert!(out.status.success(), "`{line}`: {out:?}");
        if line.contains("/v1/policy/") {
            assert!(
                stdout(out).contains(
                    "\"socketmap_answer\":\"OK secure match=mail.good.test servername=hostname\""
                ),
                "`{line}`: {}",
                stdout(out)
            );
        } else {
            assert!(!stdout(out).is_empty(), "`{line}` printed nothing");
        }
    }
    for (line, out, _) in lab
        .check_block(doc, name, "testing.test")
        .iter()
        .filter(|r| r.0.contains("postmap -q"))
    {
        assert_eq!(
            (
                out.status.code(),
                out.stdout.is_empty(),
                out.stderr.is_empty()
            ),
            (Some(1), true, true),
            "a testing domain: `{line}` prints nothing and exits 1: {out:?}"
        );
    }
}

/// The deliveries and the log lines §2 "What success looks like" promises, then the
/// daemon-down claims.
fn assert_deliveries(lab: &mut Lab, doc: &str, name: &str) {
    let mut service = lab.service.take().expect("the unit runs");
    let rcpt = |mx: &Mx| format!("user@{}", mx.host.trim_start_matches("mail."));
    for mx in &lab.mx {
        lab.send(&rcpt(mx));
    }
    let deferred = |log: &str, mx: &Mx| {
        let to = format!("to=<{}>", rcpt(mx));
        log.lines()
            .any(|l| l.contains(&to) && l.contains("status=deferred"))
    };
    let done = eventually(Duration::from_secs(30), || {
        let l = lab.maillog();
        lab.mx[0].server.messages().len() == 1 && lab.mx[1..].iter().all(|mx| deferred(&l, mx))
    });
    let log = lab.maillog();
    assert!(
        done,
        "deliveries did not complete; maillog:\n{log}\ndaemon:\n{}",
        service.log_text()
    );
    let [good, wrong_name, untrusted, no_starttls] = &lab.mx[..] else {
        panic!("four MX hosts");
    };
    assert!(good.server.messages()[0].tls.is_some());
    assert_log_sample(doc, "log sent", &log, good, &rcpt(good), |_| true);
    assert_log_sample(
        doc,
        "log deferred",
        &log,
        wrong_name,
        &rcpt(wrong_name),
        |_| true,
    );
    // An untrusted CA: the same deferral; the doc names the first line in its prose.
    assert_log_sample(
        doc,
        "log deferred",
        &log,
        untrusted,
        &rcpt(untrusted),
        |l| l.contains("status=deferred"),
    );
    let untrusted_line = format!(
        "certificate verification failed for {}[{}]:25: untrusted issuer …",
        untrusted.host, untrusted.ip
    );
    assert!(
        log.lines().any(|l| log_matches(&untrusted_line, l)),
        "docs/postfix.md: for an untrusted CA the first line reads {untrusted_line}:\n{log}"
    );
    assert_log_sample(
        doc,
        "log deferred no-starttls",
        &log,
        no_starttls,
        &rcpt(no_starttls),
        |_| true,
    );
    // Never sent in clear, and it stays in the queue.
    let queue = Command::new("postqueue")
        .env("MAIL_CONFIG", &lab.postfix)
        .arg("-p")
        .output()
        .expect("postqueue");
    for mx in [wrong_name, untrusted, no_starttls] {
        assert!(mx.server.messages().is_empty(), "{} got mail", mx.host);
        assert!(
            stdout(&queue).contains(&rcpt(mx)),
            "the deferred mail to {} stays in the queue: {}",
            rcpt(mx),
            stdout(&queue)
        );
    }

    // The daemon down: postmap warns and exits 1; Postfix defers with 4.7.5.
    service.stop();
    for (line, out, _) in lab
        .check_block(doc, name, "good.test")
        .iter()
        .filter(|r| r.0.contains("postmap -q"))
    {
        assert_eq!(out.status.code(), Some(1), "`{line}` with the daemon down");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("postmap: warning: "),
            "`{line}` with the daemon down: {out:?}"
        );
    }
    lab.send("down@good.test");
    let deferred = |l: &str| {
        l.contains("to=<down@good.test>")
            && l.contains("dsn=4.7.5")
            && l.contains("status=deferred")
            && l.contains("client TLS configuration problem")
    };
    let done = eventually(Duration::from_secs(20), || {
        lab.maillog().lines().any(deferred)
    });
    let log = lab.maillog();
    assert!(done, "with the daemon down: no 4.7.5 deferral:\n{log}");
    // "… a `warning: socketmap:…` line naming the map" (the one main.cf uses).
    let map = Command::new("postconf")
        .env("MAIL_CONFIG", &lab.postfix)
        .args(["-h", "smtp_tls_policy_maps"])
        .output()
        .expect("postconf");
    let map = stdout(&map);
    assert!(
        map.starts_with("socketmap:") && log.contains(&format!("warning: {map} lookup error")),
        "the doc promises a `warning: socketmap:…` line naming {map}:\n{log}"
    );
    assert_eq!(
        lab.mx[0].server.messages().len(),
        1,
        "nothing sent without a policy"
    );
}

#[test]
fn tcp_setup_as_documented() {
    if !prerequisites() {
        return;
    }
    let doc = read_doc();
    let mut lab = Lab::start(26);
    let table = substitutions(&lab, "good.test");
    print_substitutions(&table);
    // The doc's addresses are the daemon's defaults (memory store: nothing touches
    // /var/lib/mta-sts).
    let minimal = lab.root.join("defaults.toml");
    std::fs::write(&minimal, "[cache]\nstore = \"memory\"\n").expect("write");
    let defaults = Command::new(bin())
        .args(["daemon", "--check-config", "--config"])
        .arg(&minimal)
        .output()
        .expect("mta-sts daemon --check-config");
    let defaults = stdout(&defaults);
    for addr in [
        "socketmap: listen=127.0.0.1:8461 ",
        "http: listen=127.0.0.1:8462 ",
    ] {
        assert!(defaults.contains(addr), "{defaults}");
    }
    lab.install_postfix();
    lab.install(&doc, &table);
    assert_listening(&lab);
    lab.start_postfix(&apply(&table, &block(&doc, "main.cf tcp")));
    assert_checks(&lab, &doc, "check tcp");
    assert_deliveries(&mut lab, &doc, "check tcp");
}

/// The blocks of §3 this test follows, in this order (`<!-- test: NAME -->` before each
/// fence): `setup unix` (shell: installs the unit's drop-in), `daemon.toml unix` (TOML lines
/// set in the installed daemon.toml), `main.cf unix` (main.cf lines set in §2's main.cf),
/// `restart unix` (shell: `systemctl restart`, `postfix reload`), `check unix` (the
/// `postmap -q` checks).
const UNIX_BLOCKS: [&str; 5] = [
    "setup unix",
    "daemon.toml unix",
    "main.cf unix",
    "restart unix",
    "check unix",
];

/// §3 applied to the running TCP set-up of §1 and §2, as an administrator would.
#[test]
fn unix_socket_setup_as_documented() {
    if !prerequisites() {
        return;
    }
    let doc = read_doc();
    let missing: Vec<&str> = UNIX_BLOCKS
        .into_iter()
        .filter(|name| marked_block(&doc, name).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/postfix.md §3 (the UNIX socket inside the queue directory) has no fenced \
         block after `<!-- test: NAME -->` for {missing:?} (see UNIX_BLOCKS)"
    );
    let mut lab = Lab::start(28);
    let table = substitutions(&lab, "good.test");
    print_substitutions(&table);
    lab.install_postfix();
    lab.install(&doc, &table);
    lab.start_postfix(&apply(&table, &block(&doc, "main.cf tcp")));

    lab.run_block(&doc, "setup unix", &table);
    let config = lab.config();
    let text = std::fs::read_to_string(&config).expect("read daemon.toml");
    let fragment = apply(&table, &block(&doc, "daemon.toml unix"));
    std::fs::write(&config, merge_toml(&text, &fragment)).expect("write daemon.toml");
    let main_cf = lab.postfix.join("main.cf");
    let text = std::fs::read_to_string(&main_cf).expect("read main.cf");
    let edits = apply(&table, &block(&doc, "main.cf unix"));
    std::fs::write(&main_cf, edit_main_cf(&text, &edits)).expect("write main.cf");
    lab.run_block(&doc, "restart unix", &table);
    // §1's check of the configuration, now that the unit has run (its ExecStartPre makes
    // the socket's directory).
    let check = block(&doc, "install")
        .lines()
        .find(|l| l.contains("--check-config"))
        .map(str::to_owned)
        .expect("§1 has the --check-config line");
    let out = lab.run_line(&check, &table).expect("--check-config ran");
    lab.checked_config(&out);
    assert!(
        lab.socketmap_listen.starts_with("unix:"),
        "§3 puts the socketmap on a UNIX socket: {}",
        lab.socketmap_listen
    );
    assert_listening(&lab);
    assert_checks(&lab, &doc, "check unix");
    assert_deliveries(&mut lab, &doc, "check unix");
}

fn print_substitutions(table: &[Subst]) {
    print_table(
        "docs/postfix.md -> this test:",
        &table
            .iter()
            .map(|s| (s.doc.clone(), s.test.clone(), s.why))
            .collect::<Vec<_>>(),
    );
}

/// Asserts that every line of the doc's log sample `name` (those `lines` selects) matches a
/// line of `log`, after the sample's host, address and recipient are replaced by the test's.
fn assert_log_sample(
    doc: &str,
    name: &str,
    log: &str,
    mx: &Mx,
    rcpt: &str,
    lines: impl Fn(&str) -> bool,
) {
    let rows = [
        ("mx1.example.com", mx.host.clone(), "the test MX"),
        ("192.0.2.1", mx.ip.to_string(), "its loopback address"),
        ("user@example.com", rcpt.to_owned(), "the test recipient"),
    ];
    let table: Vec<Subst> = rows
        .iter()
        .map(|(d, t, why)| Subst {
            doc: (*d).into(),
            test: t.clone(),
            why,
        })
        .collect();
    let sample = block(doc, name);
    for sample in sample.lines().filter(|l| !l.trim().is_empty() && lines(l)) {
        let pattern = apply(&table, sample.trim());
        assert!(
            log.lines().any(|l| log_matches(&pattern, l)),
            "docs/postfix.md `{name}` promises a log line like\n  {pattern}\n\
             (… = anything) but the maillog has:\n{log}"
        );
    }
}
