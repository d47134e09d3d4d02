//! The test world, the temporary root and the private Postfix the doc's steps run in.

use crate::daemon_support;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use daemon_support::{bin, free_port, have, is_root, require_interop};
use mta_sts_testkit::{CertKind, SmtpConfig, SmtpServer, World};

use super::document::*;
use super::unit::*;

/// Everything this test changes in the document's runnable text (install and check
/// commands, main.cf lines, daemon.toml lines, the installed unit's paths), in one table.
/// Applied in one pass: at each position the first row that matches wins and its
/// replacement is not looked at again.
pub(super) fn substitutions(lab: &Lab, domain: &str) -> Vec<Subst> {
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

/// The lines the test world needs in the daemon.toml the doc installs, by section; each is
/// inserted right below the file's `[SECTION]` header (packaging/daemon.toml has every key
/// commented out, so a duplicate key is an error, not a silent override).
pub(super) fn daemon_toml_edits(lab: &Lab) -> Vec<(&'static str, String, &'static str)> {
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

/// An SMTP server of the test world on port 25 of its own loopback address.
pub(super) struct Mx {
    pub(super) host: String,
    pub(super) ip: Ipv4Addr,
    pub(super) server: SmtpServer,
}

/// The test world, the temporary root and the private Postfix.
pub(super) struct Lab {
    pub(super) world: World,
    pub(super) mx: Vec<Mx>,
    /// The document's `/`.
    pub(super) root: PathBuf,
    /// MAIL_CONFIG of the private Postfix: `<root>/etc/postfix`.
    pub(super) postfix: PathBuf,
    pub(super) resolv: PathBuf,
    pub(super) socketmap_port: u16,
    pub(super) http_port: u16,
    /// The socketmap address `--check-config` reported (`127.0.0.1:…` or `unix:/…`).
    pub(super) socketmap_listen: String,
    pub(super) postfix_started: bool,
    /// The emulated unit, once started.
    pub(super) service: Option<Service>,
    pub(super) _tmp: tempfile::TempDir,
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
pub(super) fn prerequisites() -> bool {
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
    pub(super) fn start(octet: u8) -> Lab {
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
    pub(super) fn doc_shell(&self, line: &str) -> Command {
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

    pub(super) fn postconf(&self, args: &[&str]) {
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
    pub(super) fn install_postfix(&self) {
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
    pub(super) fn start_postfix(&mut self, main_cf: &str) {
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

    pub(super) fn maillog(&self) -> String {
        std::fs::read_to_string(self.root.join("var/log/mail.log")).unwrap_or_default()
    }

    pub(super) fn send(&self, rcpt: &str) {
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
    pub(super) fn run_line(&mut self, line: &str, table: &[Subst]) -> Option<Output> {
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
                        self.service = Some(start_unit(&self.root, &self.world, table));
                    }
                    ["restart", n] => {
                        name(n);
                        if let Some(mut s) = self.service.take() {
                            s.stop();
                        }
                        self.service = Some(start_unit(&self.root, &self.world, table));
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
    pub(super) fn run_block(&mut self, doc: &str, name: &str, table: &[Subst]) {
        for line in block(doc, name).lines() {
            self.run_line(line, table);
        }
    }

    pub(super) fn config(&self) -> PathBuf {
        self.root.join("etc/mta-sts/daemon.toml")
    }

    /// `mta-sts daemon --check-config` passed: remembers the socketmap address it reports.
    pub(super) fn checked_config(&mut self, out: &Output) {
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
    pub(super) fn install(&mut self, doc: &str, table: &[Subst]) {
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
    pub(super) fn check_block(
        &self,
        doc: &str,
        name: &str,
        domain: &str,
    ) -> Vec<(String, Output, String)> {
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
