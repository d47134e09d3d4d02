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

use crate::daemon_support;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{bin, eventually, free_port, have, is_root, require_interop};
use mta_sts_testkit::{CertKind, SmtpConfig, SmtpServer, World};

/// The uid and gid `DynamicUser=yes` would give the service (systemd allocates them from
/// 61184–65519; no passwd entry needed).
const SERVICE_UID: u32 = 61_847;

/// The name of the unit the doc installs.
const UNIT: &str = "mta-sts-daemon";

fn repo() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// docs/postfix.md, or the file named by `MTA_STS_POSTFIX_DOC` (to try an edit of the
/// document, or to see this test fail on a drifted copy).
fn read_doc() -> String {
    let path = std::env::var_os("MTA_STS_POSTFIX_DOC")
        .map_or_else(|| repo().join("docs/postfix.md"), PathBuf::from);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The fenced code block right after the line `<!-- test: NAME -->`, with the fence's
/// indentation removed; `None` when the document has no such marker (or no fence after it).
fn marked_block(doc: &str, name: &str) -> Option<String> {
    let marker = format!("<!-- test: {name} -->");
    let mut lines = doc.lines();
    lines.by_ref().find(|l| l.trim() == marker)?;
    let fence = lines.next()?;
    let indent = fence.len() - fence.trim_start().len();
    if !fence.trim_start().starts_with("```") {
        return None;
    }
    let mut out = String::new();
    for line in lines {
        if line.trim_start().starts_with("```") {
            return Some(out);
        }
        out.push_str(line.get(indent..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    None
}

fn block(doc: &str, name: &str) -> String {
    marked_block(doc, name).unwrap_or_else(|| {
        panic!(
            "docs/postfix.md has no fenced block right after `<!-- test: {name} -->`; \
             tests/api/postfix_docs.rs runs the blocks so marked"
        )
    })
}

/// One difference between the text of docs/postfix.md and what this test runs.
struct Subst {
    doc: String,
    test: String,
    why: &'static str,
}

/// Everything this test changes in the document's runnable text (install and check
/// commands, main.cf lines, daemon.toml lines, the installed unit's paths), in one table.
/// Applied in one pass: at each position the first row that matches wins and its
/// replacement is not looked at again.
fn substitutions(lab: &Lab, domain: &str) -> Vec<Subst> {
    let root = lab.root.display().to_string();
    let at_root = |path: &str, why| Subst {
        doc: path.to_owned(),
        test: format!("{root}{path}"),
        why,
    };
    vec![
        Subst {
            doc: "target/release/mta-sts".into(),
            test: bin().into(),
            why: "cargo built the binary under test; the doc's `cargo build` step is skipped",
        },
        Subst {
            doc: "--check-config".into(),
            test: format!("--check-config --config {root}/etc/mta-sts/daemon.toml"),
            why: "the default --config, /etc/mta-sts/daemon.toml, under the temporary root",
        },
        at_root("/usr/bin/mta-sts", "temporary root"),
        at_root("/etc/mta-sts", "temporary root"),
        at_root(
            "/etc/systemd/system/",
            "temporary root (no systemd: see start_unit)",
        ),
        at_root(
            "/etc/ssl/certs/ca-certificates.crt",
            "temporary root, whose CA bundle is the test CA that signed the MX certificates",
        ),
        at_root("/var/lib/mta-sts", "temporary root (StateDirectory=)"),
        at_root("/run/", "temporary root (RuntimeDirectory=)"),
        at_root(
            "/var/spool/postfix",
            "temporary root: the private Postfix's queue_directory",
        ),
        Subst {
            doc: "127.0.0.1:8461".into(),
            test: format!("127.0.0.1:{}", lab.socketmap_port),
            why: "a free port, tests run in parallel (8461 is checked to be the default)",
        },
        Subst {
            doc: "127.0.0.1:8462".into(),
            test: format!("127.0.0.1:{}", lab.http_port),
            why: "a free port, tests run in parallel (8462 is checked to be the default)",
        },
        Subst {
            doc: "gmail.com".into(),
            test: domain.into(),
            why: "the doc's example domain: a domain of the test world",
        },
        Subst {
            doc: "example.com".into(),
            test: domain.into(),
            why: "the doc's example domain: a domain of the test world",
        },
    ]
}

fn apply(table: &[Subst], text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'next: while let Some(c) = rest.chars().next() {
        for s in table {
            if let Some(after) = rest.strip_prefix(s.doc.as_str()) {
                out.push_str(&s.test);
                rest = after;
                continue 'next;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn print_table(title: &str, rows: &[(String, String, &str)]) {
    eprintln!("{title}");
    for (doc, test, why) in rows {
        eprintln!("  {doc:<40} -> {test}\n  {:<40}    ({why})", "");
    }
}

/// The lines the test world needs in the daemon.toml the doc installs, by section; each is
/// inserted right below the file's `[SECTION]` header (packaging/daemon.toml has every key
/// commented out, so a duplicate key is an error, not a silent override).
fn daemon_toml_edits(lab: &Lab) -> Vec<(&'static str, String, &'static str)> {
    let root = lab.root.display();
    vec![
        (
            "socketmap",
            format!("listen = \"127.0.0.1:{}\"", lab.socketmap_port),
            "the free port of the substitution table",
        ),
        (
            "http",
            format!("listen = \"127.0.0.1:{}\"", lab.http_port),
            "the free port of the substitution table",
        ),
        (
            "resolver",
            format!("nameservers = [\"{}\"]", lab.world.dns_addr()),
            "the testkit DNS",
        ),
        (
            "resolver",
            format!("ca_file = \"{root}/etc/mta-sts/test-ca.pem\""),
            "the testkit CA (policy hosts)",
        ),
        (
            "resolver",
            format!("connect_to = [\"{}\"]", lab.world.connect_to_any()),
            "the testkit HTTPS server for every mta-sts.<domain>:443",
        ),
        (
            "cache",
            format!("path = \"{root}/var/lib/mta-sts/cache.db\""),
            "the default path, under the temporary root",
        ),
    ]
}

/// Sets `line` (`key = value`) in the `[section]` of `toml` the way an administrator edits
/// the file: replaces the key's line where the section already sets it, else inserts the
/// line right below the section's header (appending the section if missing).
fn set_in_section(toml: &str, section: &str, line: &str) -> String {
    let header = format!("[{section}]");
    let key = |l: &str| {
        let l = l.trim();
        (!l.starts_with('#') && !l.starts_with('['))
            .then(|| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .flatten()
    };
    let mut lines: Vec<String> = toml.lines().map(str::to_owned).collect();
    let start = lines.iter().position(|l| l.trim() == header);
    let Some(start) = start else {
        return format!("{toml}{header}\n{line}\n");
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |n| start + 1 + n);
    match (start + 1..end).find(|&i| key(&lines[i]).is_some() && key(&lines[i]) == key(line)) {
        Some(i) => lines[i] = line.to_owned(),
        None => lines.insert(start + 1, line.to_owned()),
    }
    lines.join("\n") + "\n"
}

/// Merges a TOML fragment of the doc (`[section]` headers and `key = value` lines) into
/// `toml` with [`set_in_section`].
fn merge_toml(toml: &str, fragment: &str) -> String {
    let mut out = toml.to_owned();
    let mut section = String::new();
    for l in fragment.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        out = set_in_section(&out, &section, l);
    }
    out
}

/// §2's main.cf lines with §3's applied the way an administrator edits the file: a
/// parameter already set is replaced in place (Postfix warns about a duplicate), a new one
/// is appended.
fn edit_main_cf(main_cf: &str, edits: &str) -> String {
    let name = |l: &str| {
        let l = l.trim();
        (!l.starts_with('#'))
            .then(|| l.split_once('=').map(|(n, _)| n.trim().to_owned()))
            .flatten()
    };
    let mut lines: Vec<String> = main_cf.lines().map(str::to_owned).collect();
    for edit in edits.lines() {
        let Some(param) = name(edit) else { continue };
        match lines.iter_mut().find(|l| name(l).as_ref() == Some(&param)) {
            Some(l) => *l = edit.to_owned(),
            None => lines.push(edit.to_owned()),
        }
    }
    lines.join("\n") + "\n"
}

/// Whether `line` ends with a match of `pattern`, where `…` in the pattern matches any run
/// of characters (the document's ellipsis for the varying parts of a log line).
fn log_matches(pattern: &str, line: &str) -> bool {
    let p: Vec<char> = format!("…{pattern}").chars().collect();
    let s: Vec<char> = line.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == '…' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '…')
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

/// An SMTP server of the test world on port 25 of its own loopback address.
struct Mx {
    host: String,
    ip: Ipv4Addr,
    server: SmtpServer,
}

/// The test world, the temporary root and the private Postfix.
struct Lab {
    world: World,
    mx: Vec<Mx>,
    /// The document's `/`.
    root: PathBuf,
    /// MAIL_CONFIG of the private Postfix: `<root>/etc/postfix`.
    postfix: PathBuf,
    resolv: PathBuf,
    socketmap_port: u16,
    http_port: u16,
    /// The socketmap address `--check-config` reported (`127.0.0.1:…` or `unix:/…`).
    socketmap_listen: String,
    postfix_started: bool,
    /// The emulated unit, once started.
    service: Option<Service>,
    _tmp: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.postfix_started {
            let _ = Command::new("postfix")
                .env("MAIL_CONFIG", &self.postfix)
                .arg("stop")
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `false` (after saying why, or failing under `MTA_STS_REQUIRE_INTEROP=1`) when Postfix,
/// unshare, setpriv, curl or root is missing.
fn prerequisites() -> bool {
    if !have("postfix", "postfix") || !have("unshare", "util-linux") {
        return false;
    }
    if !have("setpriv", "util-linux") || !have("curl", "curl") {
        return false;
    }
    if !is_root() {
        let why = "the docs/postfix.md test needs root (port 53, mount namespaces, setpriv)";
        assert!(!require_interop(), "{why}");
        eprintln!("SKIP: {why}");
        return false;
    }
    true
}

impl Lab {
    fn start(octet: u8) -> Lab {
        let world = World::builder()
            .domain("good.test", |d| d.enforce())
            .domain("wrongname.test", |d| d.enforce())
            .domain("untrusted.test", |d| d.enforce())
            .domain("nostarttls.test", |d| d.enforce())
            .domain("testing.test", |d| {
                d.mta_sts("testing", &["mail.testing.test"])
            })
            .start();
        let mut mx = Vec::new();
        for (host, kind) in [
            ("mail.good.test", Some(CertKind::Valid)),
            ("mail.wrongname.test", Some(CertKind::WrongName)),
            ("mail.untrusted.test", Some(CertKind::Untrusted)),
            ("mail.nostarttls.test", None),
        ] {
            let config = |ip| {
                let c = SmtpConfig::new(host).listen(SocketAddr::from((ip, 25)));
                match kind {
                    Some(kind) => c.starttls(kind),
                    None => c,
                }
            };
            let (ip, server) = (1u8..250)
                .map(|n| Ipv4Addr::new(127, 0, octet, n))
                .find_map(|ip| world.start_smtp(config(ip)).ok().map(|s| (ip, s)))
                .expect("a free port 25 on 127.0.OCTET.x");
            world.dns().set_a(host, &[ip]);
            mx.push(Mx {
                host: host.into(),
                ip,
                server,
            });
        }
        let ns = (1u8..250)
            .map(|n| Ipv4Addr::new(127, 0, octet + 1, n))
            .find(|ip| {
                world
                    .dns()
                    .also_listen(world.handle(), SocketAddr::from((*ip, 53)))
                    .is_ok()
            })
            .expect("a free port 53 on 127.0.OCTET+1.x");

        let tmp = tempfile::Builder::new()
            .prefix("postfix-docs")
            .tempdir_in("/tmp")
            .expect("temporary root");
        let root = tmp.path().to_path_buf();
        // A system's skeleton: what the doc's commands expect to exist.
        for dir in [
            "usr/bin",
            "etc/systemd/system",
            "etc/ssl/certs",
            "etc/postfix",
            "var/lib/postfix",
            "var/spool/postfix",
            "var/log",
            "run",
        ] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        // Postfix's and the service's processes must traverse the root.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(
            root.join("etc/ssl/certs/ca-certificates.crt"),
            world.ca_pem(),
        )
        .expect("CA bundle");
        let resolv = root.join("resolv.conf");
        std::fs::write(
            &resolv,
            format!("nameserver {ns}\noptions timeout:1 attempts:2\n"),
        )
        .expect("resolv.conf");
        Lab {
            world,
            mx,
            postfix: root.join("etc/postfix"),
            root,
            resolv,
            socketmap_port: free_port(),
            http_port: free_port(),
            socketmap_listen: String::new(),
            postfix_started: false,
            service: None,
            _tmp: tmp,
        }
    }

    /// A shell running one line of the doc the way an administrator would in the checkout,
    /// with the installed binary on PATH and `postfix`/`postmap` using the private instance.
    fn doc_shell(&self, line: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-ec", line])
            .current_dir(repo())
            .env(
                "PATH",
                format!(
                    "{}/usr/bin:{}",
                    self.root.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("MAIL_CONFIG", &self.postfix);
        cmd
    }

    fn postconf(&self, args: &[&str]) {
        let out = Command::new("postconf")
            .env("MAIL_CONFIG", &self.postfix)
            .args(args)
            .output()
            .expect("postconf");
        assert!(out.status.success(), "postconf {args:?}: {out:?}");
    }

    /// What the Postfix package does: a configuration directory with Debian's master.cf
    /// (smtp(8) chrooted) and a queue directory. The smtpd listener is off (port 25 belongs
    /// to the MX hosts of the test world).
    fn install_postfix(&self) {
        let r = self.root.display();
        std::fs::write(
            self.postfix.join("main.cf"),
            format!(
                "# The test world (not from docs/postfix.md): a private instance.\n\
                 compatibility_level = 3.6\nqueue_directory = {r}/var/spool/postfix\n\
                 data_directory = {r}/var/lib/postfix\n\
                 maillog_file_prefixes = /var, /dev/stdout, /tmp\nmaillog_file = {r}/var/log/mail.log\n\
                 myhostname = client.postfix-docs.invalid\nmydestination =\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nalias_maps =\nalias_database =\n\
                 smtp_connect_timeout = 5s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n\
                 queue_run_delay = 1s\n",
            ),
        )
        .expect("main.cf");
        std::fs::copy("/etc/postfix/master.cf", self.postfix.join("master.cf"))
            .expect("copy /etc/postfix/master.cf");
        self.postconf(&["-M#", "smtp/inet"]);
        let chroot = Command::new("postconf")
            .env("MAIL_CONFIG", &self.postfix)
            .args(["-F", "smtp/unix/chroot"])
            .output()
            .expect("postconf -F");
        assert_eq!(
            String::from_utf8_lossy(&chroot.stdout).trim(),
            "smtp/unix/chroot = y",
            "this test is about a chrooted smtp(8), as Debian's master.cf has it"
        );
        let status = Command::new("chown")
            .arg("postfix")
            .arg(self.root.join("var/lib/postfix"))
            .status()
            .expect("chown");
        assert!(status.success());
        // `postfix check` creates the queue directories (private/, public/, …).
        let out = Command::new("postfix")
            .env("MAIL_CONFIG", &self.postfix)
            .arg("check")
            .output()
            .expect("postfix check");
        assert!(out.status.success(), "postfix check: {out:?}");
    }

    /// Appends the doc's main.cf lines and starts Postfix the way Debian does: the files
    /// smtp(8) needs in its chroot are copied into the queue directory first.
    fn start_postfix(&mut self, main_cf: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.postfix.join("main.cf"))
            .expect("main.cf");
        write!(f, "# docs/postfix.md (substituted)\n{main_cf}").expect("append main.cf");
        let spool = self.root.join("var/spool/postfix");
        std::fs::create_dir_all(spool.join("etc")).expect("mkdir etc");
        for file in [
            "localtime",
            "services",
            "hosts",
            "host.conf",
            "nsswitch.conf",
        ] {
            let from = Path::new("/etc").join(file);
            if from.is_file() {
                std::fs::copy(&from, spool.join("etc").join(file)).expect("copy into chroot");
            }
        }
        std::fs::copy(&self.resolv, spool.join("etc/resolv.conf")).expect("resolv.conf");
        let out = Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                "mount --bind \"$1\" /etc/resolv.conf && postfix start",
                "sh",
            ])
            .arg(&self.resolv)
            .env("MAIL_CONFIG", &self.postfix)
            .output()
            .expect("postfix start");
        assert!(out.status.success(), "postfix start: {out:?}");
        self.postfix_started = true;
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.root.join("var/log/mail.log")).unwrap_or_default()
    }

    fn send(&self, rcpt: &str) {
        let mut child = Command::new("sendmail")
            .env("MAIL_CONFIG", &self.postfix)
            .args(["-f", "probe@client.postfix-docs.invalid", rcpt])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sendmail");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(format!("Subject: docs/postfix.md {rcpt}\n\nhello\n").as_bytes())
                .expect("write to sendmail");
        }
        assert!(child.wait().expect("sendmail").success());
    }

    /// Runs one line of a doc `sh` block after [`substitutions`]: `cargo build` is skipped
    /// (cargo built the binary under test), `systemctl` is emulated ([`start_unit`]), the
    /// rest runs in [`Lab::doc_shell`] and must succeed; returns the output of lines run.
    fn run_line(&mut self, line: &str, table: &[Subst]) -> Option<Output> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("cargo build") {
            return None;
        }
        let line = apply(table, line);
        if line.starts_with("systemctl ") {
            for cmd in line.split("&&").map(str::trim) {
                let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
                let name = |n: &str| assert_eq!(n, UNIT, "`{cmd}`: this test emulates {UNIT}");
                match args.as_slice() {
                    ["daemon-reload"] => {} // start_unit reads the files at each start
                    ["enable", "--now", n] | ["start", n] => {
                        name(n);
                        self.service = Some(start_unit(self, table));
                    }
                    ["restart", n] => {
                        name(n);
                        if let Some(mut s) = self.service.take() {
                            s.stop();
                        }
                        self.service = Some(start_unit(self, table));
                    }
                    _ => panic!("`{cmd}` is not emulated by this test"),
                }
            }
            return None;
        }
        let out = self.doc_shell(&line).output().expect("sh");
        assert!(
            out.status.success(),
            "docs/postfix.md step `{line}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out)
    }

    /// Runs the doc's `sh` block `name` line by line.
    fn run_block(&mut self, doc: &str, name: &str, table: &[Subst]) {
        for line in block(doc, name).lines() {
            self.run_line(line, table);
        }
    }

    fn config(&self) -> PathBuf {
        self.root.join("etc/mta-sts/daemon.toml")
    }

    /// `mta-sts daemon --check-config` passed: remembers the socketmap address it reports.
    fn checked_config(&mut self, out: &Output) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "configuration: {}: valid",
                self.config().display()
            )),
            "{stdout}"
        );
        self.socketmap_listen = stdout
            .lines()
            .find_map(|l| l.strip_prefix("socketmap: listen="))
            .and_then(|l| l.split_whitespace().next())
            .expect("--check-config prints `socketmap: listen=`")
            .to_owned();
    }

    /// §1's install block, every line as written but for [`Lab::run_line`]'s exceptions.
    /// Right after the doc installs daemon.toml, the test world's lines go into it.
    fn install(&mut self, doc: &str, table: &[Subst]) {
        let config = self.config();
        let mut checked = false;
        for line in block(doc, "install").lines() {
            let had_config = config.exists();
            let Some(out) = self.run_line(line, table) else {
                continue;
            };
            if line.contains("--check-config") {
                self.checked_config(&out);
                checked = true;
            }
            if !had_config && config.exists() {
                let edits = daemon_toml_edits(self);
                print_table(
                    "daemon.toml as the doc installs it, plus (test world):",
                    &edits
                        .iter()
                        .map(|(s, l, why)| (format!("[{s}]"), l.clone(), *why))
                        .collect::<Vec<_>>(),
                );
                let mut text = std::fs::read_to_string(&config).expect("read daemon.toml");
                for (section, l, _) in &edits {
                    text = set_in_section(&text, section, l);
                }
                std::fs::write(&config, text).expect("write daemon.toml");
                std::fs::write(
                    self.root.join("etc/mta-sts/test-ca.pem"),
                    self.world.ca_pem(),
                )
                .expect("test CA");
            }
        }
        assert!(checked, "§1 runs `mta-sts daemon --check-config`");
        assert!(
            self.service.is_some(),
            "§1 starts the unit (`systemctl enable --now {UNIT}`)"
        );
    }

    /// The doc's check block for `domain`, line by line: (command, output, the doc's
    /// comment line showing the command's reply, or "").
    fn check_block(&self, doc: &str, name: &str, domain: &str) -> Vec<(String, Output, String)> {
        let table = substitutions(self, domain);
        let mut runs: Vec<(String, Output, String)> = Vec::new();
        for line in block(doc, name).lines().map(str::trim) {
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                // A comment that starts with a TLS policy level is the reply of the command
                // above it; other comments are prose.
                let reply = comment.split_whitespace().next().is_some_and(|w| {
                    [
                        "none",
                        "may",
                        "encrypt",
                        "dane",
                        "dane-only",
                        "verify",
                        "secure",
                    ]
                    .contains(&w)
                });
                if let (true, Some(last)) = (reply, runs.last_mut()) {
                    last.2 = comment.trim().to_owned();
                }
                continue;
            }
            let line = apply(&table, line);
            let out = self.doc_shell(&line).output().expect("sh");
            runs.push((line, out, String::new()));
        }
        runs
    }
}

/// The running service, stopped (SIGKILL) on drop.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `systemctl stop`: SIGTERM (the unit's KillSignal=), then wait.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the daemon did not stop on SIGTERM: {}", self.log_text());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gid_of(group: &str) -> u32 {
    if let Ok(n) = group.parse() {
        return n;
    }
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or_else(|| panic!("no group {group} on this system"))
}

/// `systemctl start` without systemd: reads the unit and its drop-ins (`[Service]` only),
/// prepares what systemd would, runs ExecStart and waits for `READY=1`.
fn start_unit(lab: &Lab, table: &[Subst]) -> Service {
    let unit = lab.root.join(format!("etc/systemd/system/{UNIT}.service"));
    let mut texts = vec![std::fs::read_to_string(&unit).expect("read the installed unit")];
    let dropins = unit.with_extension("service.d");
    if let Ok(entries) = std::fs::read_dir(&dropins) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            texts.push(std::fs::read_to_string(p).expect("read drop-in"));
        }
    }
    let mut keys: Vec<(String, String)> = Vec::new();
    for text in &texts {
        let mut in_service = false;
        for l in text.lines().map(str::trim) {
            if l.starts_with('[') {
                in_service = l == "[Service]";
            } else if in_service
                && !l.starts_with('#')
                && let Some((k, v)) = l.split_once('=')
            {
                // Unit files from packaging/ carry the doc's paths; a drop-in written by a
                // (substituted) doc command already has the test's.
                let v = v.trim();
                let v = if v.contains(&*lab.root.to_string_lossy()) {
                    v.to_owned()
                } else {
                    apply(table, v)
                };
                keys.push((k.trim().to_owned(), v));
            }
        }
    }
    let last = |key: &str| {
        keys.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let all = |key: &str| -> Vec<String> {
        keys.iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(
        last("Type").as_deref(),
        Some("notify"),
        "the doc says Type=notify"
    );
    let exec = last("ExecStart").expect("ExecStart=");
    assert_eq!(
        last("DynamicUser").as_deref(),
        Some("yes"),
        "emulated: DynamicUser=yes"
    );
    let uid = SERVICE_UID;
    let gid = last("Group").map_or(uid, |g| gid_of(&g));
    let groups: Vec<String> = all("SupplementaryGroups")
        .iter()
        .map(|g| gid_of(g).to_string())
        .collect();
    let umask = last("UMask").unwrap_or_else(|| "0022".into());
    // StateDirectory= and RuntimeDirectory=: created, owned by the service (systemd chowns
    // the state directory recursively when the owner differs), writable under
    // ProtectSystem=strict.
    let mut writable: Vec<PathBuf> = Vec::new();
    for (key, base, mode_key) in [
        ("StateDirectory", "var/lib", "StateDirectoryMode"),
        ("RuntimeDirectory", "run", "RuntimeDirectoryMode"),
    ] {
        for name in all(key) {
            let dir = lab.root.join(base).join(&name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let status = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success());
            let mode = last(mode_key).unwrap_or_else(|| "0755".into());
            let mode = u32::from_str_radix(&mode, 8).expect("directory mode");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            writable.push(dir);
        }
    }
    // ExecStartPre=: "+" runs with full privileges (outside the sandbox), "-" may fail.
    for pre in keys
        .iter()
        .filter(|(k, _)| k == "ExecStartPre")
        .map(|(_, v)| v)
    {
        let may_fail = pre.starts_with('-') || pre.starts_with("+-") || pre.starts_with("-+");
        let argv = pre.trim_start_matches(['+', '-']);
        assert!(
            pre.trim_start_matches('-').starts_with('+'),
            "only ExecStartPre=+… (full privileges) is emulated: {pre}"
        );
        let mut args = argv.split_whitespace();
        let status = Command::new(args.next().expect("ExecStartPre command"))
            .args(args)
            .status()
            .expect("ExecStartPre");
        assert!(status.success() || may_fail, "ExecStartPre={pre}: {status}");
    }
    for p in all("ReadWritePaths") {
        let optional = p.starts_with('-');
        let p = PathBuf::from(p.trim_start_matches('-'));
        assert!(
            p.starts_with(&lab.root),
            "ReadWritePaths={} is not under a substituted path",
            p.display()
        );
        if p.exists() || !optional {
            writable.push(p);
        }
    }
    let strict = last("ProtectSystem").as_deref() == Some("strict");
    let notify_path = lab.root.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let log = lab
        .root
        .join(format!("daemon-{}.log", lab.world.dns_addr().port()));
    // In a private mount namespace: the temporary root read-only but for the writable
    // paths (ProtectSystem=strict), then the uid switch and ExecStart.
    let script = r#"
        root=$1; strict=$2; umask_=$3; uid=$4; gid=$5; groups=$6; shift 6
        if [ "$strict" = yes ]; then
            mount --bind "$root" "$root"
            mount -o remount,bind,ro "$root"
        fi
        while [ "$1" != "--" ]; do
            if [ "$strict" = yes ]; then
                mount --bind "$1" "$1"
                mount -o remount,bind,rw "$1"
            fi
            shift
        done
        shift
        umask "$umask_"
        if [ -n "$groups" ]; then g="--groups=$groups"; else g=--clear-groups; fi
        exec setpriv --reuid="$uid" --regid="$gid" "$g" --no-new-privs -- "$@"
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-ec", script, "sh"])
        .arg(&lab.root)
        .arg(if strict { "yes" } else { "no" })
        .arg(&umask)
        .arg(uid.to_string())
        .arg(gid.to_string())
        .arg(groups.join(","))
        .args(&writable)
        .arg("--")
        .args(exec.split_whitespace())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"));
    let mut service = Service {
        child: cmd.spawn().expect("spawn ExecStart"),
        log,
    };
    eprintln!(
        "started ExecStart={exec} as uid {uid} gid {gid} groups [{}]",
        groups.join(",")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!(
                "the service exited ({status}) before READY=1:\n{}",
                service.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no READY=1 within 20 s:\n{}",
            service.log_text()
        );
        if let Ok(n) = notify.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
        {
            break;
        }
    }
    service
}

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
