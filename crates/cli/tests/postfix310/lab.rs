//! Postfix 3.10 for the tests: the Debian 13 root of `scripts/trixie-root`, and one Postfix
//! instance per test run chrooted in it, on the host's loopback, in a private mount
//! namespace.
//!
//! Inside the namespace (`unshare -m`, so nothing is mounted on the cached root for anyone
//! else) the test's temporary directory is bind-mounted on the root's `/mnt`, its
//! `resolv.conf` (naming the testkit DNS on port 53) on the root's `/etc/resolv.conf`, and
//! `/proc` and `/dev` are mounted; then `chroot ROOT postfix -c /mnt/pf start`. The master
//! keeps the namespace alive; `sendmail` enters it with `nsenter`. The network is the host's,
//! so the daemon's socketmap on `127.0.0.1` and the testkit servers are reachable, and the
//! temporary directory carries the CA file and the daemon's TLS-RPT collector socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::daemon_support::{eventually, have, is_root, require_interop};

/// Where the test's temporary directory appears inside the root.
pub const MNT: &str = "/mnt";

/// The Debian 13 root: `MTA_STS_TRIXIE_ROOT` (set by `scripts/test`), else built (or found
/// in the cache) by `scripts/trixie-root`. `None` with a SKIP message when it cannot be had;
/// a panic instead under `MTA_STS_REQUIRE_INTEROP=1`.
pub fn trixie_root() -> Option<PathBuf> {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = ROOT.get_or_init(|| {
        if !is_root() {
            return Err(
                "the Postfix 3.10 tests need root (debootstrap, chroot, unshare -m)".into(),
            );
        }
        for (program, package) in [
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("chroot", "coreutils"),
        ] {
            if !have(program, package) {
                return Err(format!("{program} is missing"));
            }
        }
        if let Some(root) = std::env::var_os("MTA_STS_TRIXIE_ROOT") {
            let root = PathBuf::from(root);
            return if root.join("usr/sbin/postfix").exists() {
                Ok(root)
            } else {
                Err(format!(
                    "MTA_STS_TRIXIE_ROOT={} has no Postfix",
                    root.display()
                ))
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/trixie-root");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && Path::new(&path).join("usr/sbin/postfix").exists() {
            Ok(PathBuf::from(path))
        } else {
            Err(format!(
                "scripts/trixie-root could not build the Debian 13 root ({})",
                out.status
            ))
        }
    });
    match found {
        Ok(root) => Some(root.clone()),
        Err(why) => {
            assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
            eprintln!("SKIP: {why}");
            None
        }
    }
}

/// A Postfix 3.10 instance chrooted in the Debian 13 root, stopped on drop.
pub struct Postfix310 {
    root: PathBuf,
    dir: PathBuf,
    master: u32,
}

impl Postfix310 {
    /// Starts Postfix with its configuration in `dir/pf` (inside the root: `/mnt/pf`), the
    /// queue in `dir/spool`, the log in `dir/maillog`, DNS from `nameserver`, and `main_cf`
    /// appended to a main.cf that delivers everything by SMTP (no local domains, MX from DNS,
    /// `smtp(8)` not chrooted inside the root), and `master_cf` to the root's master.cf.
    pub fn start(
        root: &Path,
        dir: &Path,
        nameserver: std::net::Ipv4Addr,
        main_cf: &str,
        master_cf: &str,
    ) -> Self {
        // Postfix's unprivileged users (the root's own uids) traverse the directory.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pf = dir.join("pf");
        for d in ["pf", "spool", "data"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n"),
        )
        .unwrap();
        std::fs::write(
            pf.join("main.cf"),
            format!(
                "compatibility_level = 3.10\nqueue_directory = {MNT}/spool\ndata_directory = {MNT}/data\n\
                 maillog_file_prefixes = {MNT}\nmaillog_file = {MNT}/maillog\n\
                 myhostname = client.postfix-test.invalid\nmydestination =\ninet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\nalias_maps =\nalias_database =\n\
                 smtp_connect_timeout = 5s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n\
                 queue_run_delay = 1s\n{main_cf}"
            ),
        )
        .unwrap();
        let master = std::fs::read_to_string(root.join("etc/postfix/master.cf")).unwrap();
        std::fs::write(pf.join("master.cf"), format!("{master}{master_cf}")).unwrap();
        // The setup runs inside the namespace, with the root's own programs (its postfix user
        // and group, its postconf).
        let script = format!(
            "set -e\n\
             mount --bind \"$1\" \"$2{MNT}\"\n\
             mount -t proc proc \"$2/proc\"\n\
             mount --bind /dev \"$2/dev\"\n\
             mount --bind \"$1/resolv.conf\" \"$2/etc/resolv.conf\"\n\
             chroot \"$2\" chown postfix {MNT}/data\n\
             chroot \"$2\" postconf -c {MNT}/pf -F '*/*/chroot = n'\n\
             chroot \"$2\" postconf -c {MNT}/pf -M# smtp/inet\n\
             chroot \"$2\" postfix -c {MNT}/pf start\n"
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script, "sh"])
            .arg(dir)
            .arg(root)
            .output()
            .expect("run unshare");
        let maillog = std::fs::read_to_string(dir.join("maillog")).unwrap_or_default();
        assert!(
            out.status.success(),
            "Postfix 3.10 did not start: {}{}\n{maillog}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let master = std::fs::read_to_string(dir.join("spool/pid/master.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
            .expect("master.pid");
        Postfix310 {
            root: root.to_owned(),
            dir: dir.to_owned(),
            master,
        }
    }

    /// A command run in the instance's namespace and chrooted in the root.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.master.to_string(), "-m", "chroot"])
            .arg(&self.root)
            .arg(program);
        cmd
    }

    /// Submits a short message to `rcpt` with the root's `sendmail`.
    pub fn send(&self, rcpt: &str) {
        use std::io::Write;
        let mut child = self
            .command("sendmail")
            .args([
                "-C",
                &format!("{MNT}/pf"),
                "-f",
                "probe@client.postfix-test.invalid",
                rcpt,
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sendmail");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("Subject: mta-sts {rcpt}\n\nhello\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "sendmail {rcpt}");
    }

    /// The mail log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// The log line of the final status of `rcpt` (`status=sent` or `status=deferred`),
    /// waiting up to 40 s for it.
    pub fn status_line(&self, rcpt: &str) -> String {
        let find = || {
            self.log()
                .lines()
                .find(|l| l.contains(&format!("to=<{rcpt}>")) && l.contains("status="))
                .map(str::to_owned)
        };
        eventually(Duration::from_secs(40), || find().is_some());
        find().unwrap_or_else(|| panic!("no status for {rcpt}; maillog:\n{}", self.log()))
    }
}

impl Drop for Postfix310 {
    fn drop(&mut self) {
        // `postfix stop` is SIGTERM to the master, which stops its children; the namespace
        // and its mounts go with the last of them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.to_string()])
            .status();
        let gone = Path::new("/proc").join(self.master.to_string());
        eventually(Duration::from_secs(10), || !gone.exists());
    }
}
