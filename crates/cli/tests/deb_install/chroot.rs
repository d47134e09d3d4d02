//! The package under test and the Debian roots it is installed into: the `.deb` (from
//! `MTA_STS_DEB`, else built by `scripts/package` around this build's binary), the cached
//! clean roots of `scripts/install-root`, and one private copy of a root per test, in which
//! commands run chrooted, each in its own mount namespace (`unshare -m`, with `/proc` and
//! `/dev` mounted) so that nothing stays mounted when it ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::daemon_support::{bin, have, is_root, require_interop};

/// Shell lines, run under `unshare -m` with `$1` the root, that mount what programs in it
/// expect (`/proc`, `/dev`), private to the namespace.
const MOUNTS: &str = "set -e\n\
     mount -t proc proc \"$1/proc\"\n\
     mount --bind /dev \"$1/dev\"\n";

/// `None` with a SKIP message for `why`, or a panic under `MTA_STS_REQUIRE_INTEROP=1`.
fn skip<T>(why: &str) -> Option<T> {
    assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
    eprintln!("SKIP: {why}");
    None
}

/// What the install test needs from the host: root (debootstrap, chroot, unshare -m) and
/// the programs that build and read the package. `false` after a SKIP message.
pub fn host_ready() -> bool {
    if !is_root() {
        return skip::<()>("the package install test needs root (debootstrap, chroot, unshare -m)")
            .is_some();
    }
    [
        ("unshare", "util-linux"),
        ("chroot", "coreutils"),
        ("debootstrap", "debootstrap"),
        ("dpkg-deb", "dpkg"),
        ("dpkg-shlibdeps", "dpkg-dev"),
    ]
    .iter()
    .all(|(program, package)| have(program, package))
}

/// The repository's top directory.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The package: `MTA_STS_DEB` (set by `scripts/test`, which builds the release package before
/// the tests), else `scripts/package --binary` around this build's `mta-sts` (a debug build,
/// packaged by the same script, without the slow xz pass), built once per test run into the
/// target's tmp directory.
pub fn deb() -> Option<PathBuf> {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = DEB.get_or_init(|| {
        if let Some(deb) = std::env::var_os("MTA_STS_DEB") {
            let deb = PathBuf::from(deb);
            return if deb.is_file() {
                Ok(deb)
            } else {
                Err(format!("MTA_STS_DEB={} is not a file", deb.display()))
            };
        }
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb_install");
        let out = Command::new(repo().join("scripts/package"))
            .args(["--binary", bin(), "--uncompressed", "--out"])
            .arg(&out_dir)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("scripts/package: {e}"))?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && path.is_file() {
            Ok(path)
        } else {
            Err(format!("scripts/package failed ({})", out.status))
        }
    });
    match found {
        Ok(deb) => Some(deb.clone()),
        Err(why) => skip(why),
    }
}

/// The cached clean root of `suite` (`bookworm`, `trixie`), built once by
/// `scripts/install-root SUITE`.
pub fn clean_root(suite: &str) -> Option<PathBuf> {
    let script = repo().join("scripts/install-root");
    let out = match Command::new(&script)
        .arg(suite)
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(out) => out,
        Err(e) => return skip(&format!("{}: {e}", script.display())),
    };
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.join("usr/sbin/postmap").exists() {
        Some(path)
    } else {
        skip(&format!(
            "scripts/install-root {suite} could not build the Debian root ({})",
            out.status
        ))
    }
}

/// A private copy of a clean root, deleted on drop.
pub struct Root {
    _dir: tempfile::TempDir,
    /// The copy's top directory.
    pub path: PathBuf,
}

impl Root {
    /// Copies `clean` (`cp -a`, next to it in the cache: same file system, a second or two).
    pub fn copy_of(clean: &Path) -> Root {
        let parent = clean.parent().expect("the cache directory");
        let dir = tempfile::Builder::new()
            .prefix(".deb-install-")
            .tempdir_in(parent)
            .expect("temporary directory in the fixture cache");
        let path = dir.path().join("root");
        let status = Command::new("cp")
            .arg("-a")
            .arg(clean)
            .arg(&path)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -a {} failed", clean.display());
        Root { _dir: dir, path }
    }

    /// The host path of `path` inside the root.
    pub fn host(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }

    /// A command that runs `sh -c script` chrooted in the root, in a mount namespace of its
    /// own; `exec`s down to the last program, so killing the child kills it.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "sh",
            "-c",
            &format!("{MOUNTS}exec chroot \"$1\" sh -c \"$2\""),
            "sh",
        ])
        .arg(&self.path)
        .arg(script)
        // A clean environment, as root's login would have (no host PATH, no cargo vars).
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    /// Runs `script` chrooted; its exit code and its standard output and error.
    pub fn run(&self, script: &str) -> (i32, String, String) {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(script).output().expect("run unshare");
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }

    /// Runs `script` chrooted and returns its standard output; fails the test with both
    /// outputs unless it exits 0.
    pub fn ok(&self, script: &str) -> String {
        let (code, out, err) = self.run(script);
        assert_eq!(code, 0, "`{script}` failed:\n{out}\n{err}");
        out
    }

    /// Every path in the root (relative, `/`-led), but for the places that change whatever
    /// is installed: the kernel's file systems, temporary files, logs, dpkg's, apt's and
    /// debconf's databases and caches, man-db's index; and `ignore` (the test's own files).
    pub fn paths(&self, ignore: &[&str]) -> BTreeSet<String> {
        const CHANGING: [&str; 11] = [
            "/proc",
            "/dev",
            "/sys",
            "/run",
            "/tmp",
            "/var/log",
            "/var/lib/dpkg",
            "/var/lib/apt",
            "/var/cache/apt",
            "/var/cache/debconf",
            "/var/cache/man",
        ];
        let mut paths = BTreeSet::new();
        let mut todo = vec![(self.path.clone(), String::new())];
        while let Some((dir, rel)) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
                if CHANGING.contains(&rel.as_str()) || ignore.contains(&rel.as_str()) {
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push((entry.path(), rel.clone()));
                }
                paths.insert(rel);
            }
        }
        paths
    }
}
