//! `systemctl` without systemd: the unit the doc installs, emulated ([`start_unit`]).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mta_sts_testkit::World;

use super::document::*;

/// The uid and gid `DynamicUser=yes` would give the service (systemd allocates them from
/// 61184–65519; no passwd entry needed).
pub(super) const SERVICE_UID: u32 = 61_847;

/// The name of the unit the doc installs.
pub(super) const UNIT: &str = "mta-sts-daemon";

/// The running service, stopped (SIGKILL) on drop.
pub(super) struct Service {
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

impl Service {
    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `systemctl stop`: SIGTERM (the unit's KillSignal=), then wait.
    pub(super) fn stop(&mut self) {
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

pub(super) fn gid_of(group: &str) -> u32 {
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
pub(super) fn start_unit(root: &Path, world: &World, table: &[Subst]) -> Service {
    let unit = root.join(format!("etc/systemd/system/{UNIT}.service"));
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
                let v = if v.contains(&*root.to_string_lossy()) {
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
            let dir = root.join(base).join(&name);
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
            p.starts_with(root),
            "ReadWritePaths={} is not under a substituted path",
            p.display()
        );
        if p.exists() || !optional {
            writable.push(p);
        }
    }
    let strict = last("ProtectSystem").as_deref() == Some("strict");
    let notify_path = root.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let log = root.join(format!("daemon-{}.log", world.dns_addr().port()));
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
        .arg(root)
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
