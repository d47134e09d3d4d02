//! The Debian 12 roots of `scripts/bookworm-root` (one per MTA, each conflicting with the
//! host's Postfix), and what every run chrooted in one needs.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::daemon_support::{have, is_root, require_interop};

/// Where the test's temporary directory appears inside the root.
pub const MNT: &str = "/mnt";

/// Shell lines, run under `unshare -m` with `$1` the test's directory and `$2` the root,
/// that bind the directory on the root's `/mnt`, its `resolv.conf` on the root's, and mount
/// `/proc` and `/dev`: private to the namespace, so the cached root is never touched.
pub const MOUNTS: &str = "set -e\n\
     mount --bind \"$1\" \"$2/mnt\"\n\
     mount -t proc proc \"$2/proc\"\n\
     mount --bind /dev \"$2/dev\"\n\
     mount --bind \"$1/resolv.conf\" \"$2/etc/resolv.conf\"\n";

/// Makes `dir` traversable by the MTA's unprivileged user and writes the CA file and a
/// `resolv.conf` naming `nameserver` (port 53) into it.
pub fn prepare_dir(dir: &Path, ca_pem: &str, nameserver: Ipv4Addr) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(
        dir.join("resolv.conf"),
        format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n"),
    )
    .unwrap();
}

/// The program that shows `scripts/bookworm-root MTA` built a root.
fn program(mta: &str) -> &'static str {
    match mta {
        "sendmail" => "usr/libexec/sendmail/sendmail",
        _ => "usr/sbin/exim4",
    }
}

/// The Debian 12 root with `mta` (only `exim` so far): `MTA_STS_BOOKWORM_EXIM_ROOT` (set by
/// `scripts/test`), else built (or found in the cache) by `scripts/bookworm-root MTA`. `None` with a SKIP message when it cannot be had; a
/// panic instead under `MTA_STS_REQUIRE_INTEROP=1`.
pub fn bookworm_root(mta: &str) -> Option<PathBuf> {
    let found = find(mta);
    match found {
        Ok(root) => Some(root),
        Err(why) => {
            assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
            eprintln!("SKIP: {why}");
            None
        }
    }
}

fn find(mta: &str) -> Result<PathBuf, String> {
    if !is_root() {
        return Err(format!(
            "the {mta} tests need root (debootstrap, chroot, unshare -m)"
        ));
    }
    for (program, package) in [("unshare", "util-linux"), ("chroot", "coreutils")] {
        if !have(program, package) {
            return Err(format!("{program} is missing"));
        }
    }
    let var = format!("MTA_STS_BOOKWORM_{}_ROOT", mta.to_ascii_uppercase());
    if let Some(root) = std::env::var_os(&var) {
        let root = PathBuf::from(root);
        return if root.join(program(mta)).exists() {
            Ok(root)
        } else {
            Err(format!("{var}={} has no {mta}", root.display()))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bookworm-root");
    let out = Command::new(&script)
        .arg(mta)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && Path::new(&path).join(program(mta)).exists() {
        Ok(PathBuf::from(path))
    } else {
        Err(format!(
            "scripts/bookworm-root {mta} could not build the Debian 12 root ({})",
            out.status
        ))
    }
}
