//! Real Postfix as the daemon's client (docs/design.md §6 interop):
//! - `postmap -q` through `socketmap:inet:…` for enforce, testing (with and without a strict
//!   zone), none and absent domains;
//! - full delivery through a Postfix instance in a temporary directory whose
//!   `smtp_tls_policy_maps` points at the daemon, to testkit SMTP servers: enforce with a
//!   valid certificate → sent over verified TLS; enforce with a wrong-name certificate →
//!   deferred 4.7.5; testing → sent.
//!
//! Postfix finds MX records through `/etc/resolv.conf` (no port syntax), so the delivery test
//! serves the testkit zones on port 53 of a spare loopback address and runs Postfix in a
//! private mount namespace (`unshare -m`) with a bind-mounted resolv.conf naming it
//! (interop-lab §3b). Needs root. Skips with a message when Postfix or root is missing,
//! unless `MTA_STS_REQUIRE_INTEROP=1`.

use crate::daemon_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::*;
use mta_sts_testkit::{CertKind, SmtpConfig, World};

fn postmap(dir: &Path, key: &str, map: &str) -> (i32, String) {
    let out = Command::new("postmap")
        .arg("-c")
        .arg(dir)
        .args(["-q", key, map])
        .output()
        .expect("run postmap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
    )
}

#[test]
fn postmap_queries_the_daemon() {
    if !have("postmap", "postfix") {
        return;
    }
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"])
        })
        .domain("none.test", |d| d.mta_sts("none", &[]))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[cache]\nstore = \"memory\"\n[zones.strict]\nstrict_testing = true\n",
        resolver_section(&world)
    );
    let daemon = DaemonProc::start(dir.path(), "", &body, &[]);
    let pf = dir.path().join("pf");
    std::fs::create_dir(&pf).unwrap();
    std::fs::write(pf.join("main.cf"), "compatibility_level = 3.6\n").unwrap();
    let map = |zone: &str| format!("socketmap:inet:{}:{zone}", daemon.socketmap);

    assert_eq!(
        postmap(&pf, "good.test", &map("postfix")),
        (
            0,
            "secure match=mail.good.test servername=hostname".to_owned()
        )
    );
    assert_eq!(
        postmap(&pf, "[good.test]:25", &map("postfix")).1,
        "secure match=mail.good.test servername=hostname"
    );
    assert_eq!(
        postmap(&pf, "testing.test", &map("postfix")),
        (1, String::new())
    );
    assert_eq!(
        postmap(&pf, "testing.test", &map("strict")),
        (
            0,
            "secure match=mail.testing.test servername=hostname".to_owned()
        )
    );
    assert_eq!(
        postmap(&pf, "none.test", &map("postfix")),
        (1, String::new())
    );
    assert_eq!(
        postmap(&pf, "absent.test", &map("postfix")),
        (1, String::new())
    );
    assert_eq!(
        postmap(&pf, ".good.test", &map("postfix")),
        (1, String::new())
    );
}

/// A Postfix instance in a directory, stopped on drop.
struct Postfix {
    dir: std::path::PathBuf,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("stop")
            .stderr(Stdio::null())
            .status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Binds the world's zones on port 53 of the first free 127.0.53.x address.
fn dns_on_port_53(world: &World) -> Ipv4Addr {
    for last in 1..50 {
        let ip = Ipv4Addr::new(127, 0, 53, last);
        if world
            .dns()
            .also_listen(world.handle(), SocketAddr::from((ip, 53)))
            .is_ok()
        {
            return ip;
        }
    }
    panic!("no free port 53 on 127.0.53.1-49");
}

#[test]
fn postfix_delivers_per_the_daemons_policy() {
    deliveries(Setup::Tcp);
}

/// Issue 18.1: the same deliveries with the UNIX-socket recipe of docs/postfix.md §3 as
/// Postfix uses it: `smtp(8)` chrooted to the queue directory (Debian's master.cf), the
/// daemon unprivileged in group postfix (the unit's drop-in), main.cf
/// `socketmap:unix:mta-sts/socketmap:postfix`.
#[test]
fn chrooted_smtp_delivers_through_the_unix_socket_in_the_queue_directory() {
    deliveries(Setup::UnixChrooted);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `socketmap:inet:127.0.0.1:PORT`, no chroot.
    Tcp,
    /// `socketmap:unix:mta-sts/socketmap`, smtp(8) chrooted.
    UnixChrooted,
}

fn deliveries(setup: Setup) {
    if !have("postfix", "postfix")
        || !have("unshare", "util-linux")
        || !have("setpriv", "util-linux")
    {
        return;
    }
    if !is_root() {
        assert!(
            !require_interop(),
            "the Postfix delivery test needs root (port 53, unshare -m)"
        );
        eprintln!("SKIP: the Postfix delivery test needs root (port 53, unshare -m)");
        return;
    }
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("wrongname.test", |d| d.enforce())
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"])
        })
        .start();
    // Each MX on port 25 of its own loopback address.
    let mut servers = Vec::new();
    for (i, (host, kind)) in [
        ("mail.good.test", CertKind::Valid),
        ("mail.wrongname.test", CertKind::WrongName),
        ("mail.testing.test", CertKind::WrongName),
    ]
    .into_iter()
    .enumerate()
    {
        let ip = (30u8..60)
            .map(|n| Ipv4Addr::new(127, 0, 25, n * 3 + i as u8))
            .find(|ip| std::net::TcpListener::bind((*ip, 25)).is_ok())
            .expect("a free port 25");
        world.dns().set_a(host, &[ip]);
        let smtp = world
            .start_smtp(
                SmtpConfig::new(host)
                    .starttls(kind)
                    .listen(SocketAddr::from((ip, 25))),
            )
            .expect("smtp server");
        servers.push(smtp);
    }
    let ns = dns_on_port_53(&world);

    let tmp = tempfile::tempdir().unwrap();
    // Postfix's unprivileged processes must traverse the directory and read the CA.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pf = tmp.path().join("pf");
    for d in ["", "spool", "data"] {
        std::fs::create_dir_all(pf.join(d)).unwrap();
    }
    let body = format!("{}[cache]\nstore = \"memory\"\n", resolver_section(&world));
    let (daemon, map) = match setup {
        Setup::Tcp => {
            let daemon = DaemonProc::start(tmp.path(), "", &body, &[]);
            let map = format!("inet:{}", daemon.socketmap);
            (Daemon::Tcp(daemon), map)
        }
        Setup::UnixChrooted => {
            let gid = postfix_gid().expect("the postfix group");
            let queue = pf.join("spool");
            run_exec_start_pre(&queue);
            let socket = queue.join("mta-sts/socketmap");
            let config = tmp.path().join("daemon.toml");
            std::fs::write(
                &config,
                format!(
                    "[socketmap]\nlisten = \"unix:{}\"\nsocket_mode = \"0660\"\nsocket_group = \"postfix\"\n\
                     [http]\nlisten = \"127.0.0.1:{}\"\n{body}",
                    socket.display(),
                    free_port()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
            let log = tmp.path().join("daemon.log");
            let child = start_unprivileged(&config, &socket, &log, gid);
            // The chroot gets what Debian's start script copies into it.
            std::fs::create_dir_all(queue.join("etc")).unwrap();
            for file in ["services", "hosts", "nsswitch.conf"] {
                let _ = std::fs::copy(Path::new("/etc").join(file), queue.join("etc").join(file));
            }
            (
                Daemon::Unprivileged(child, log),
                "unix:mta-sts/socketmap".to_owned(),
            )
        }
    };
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, world.ca_pem()).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {ns}\noptions timeout:1 attempts:2\n"),
    )
    .unwrap();
    let maillog = pf.join("maillog");
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {spool}\ndata_directory = {data}\n\
             maillog_file_prefixes = /var, /dev/stdout, /tmp\nmaillog_file = {log}\n\
             myhostname = client.postfix-test.invalid\nmydestination =\ninet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\nsmtp_tls_security_level = may\n\
             smtp_tls_policy_maps = socketmap:{map}:postfix\nsmtp_tls_CAfile = {ca}\n\
             smtp_tls_loglevel = 1\nalias_maps =\nalias_database =\n\
             smtp_connect_timeout = 5s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n",
            spool = pf.join("spool").display(),
            data = pf.join("data").display(),
            log = maillog.display(),
            ca = ca.display(),
        ),
    )
    .unwrap();
    std::fs::copy("/etc/postfix/master.cf", pf.join("master.cf")).unwrap();
    run(Command::new("postconf")
        .arg("-c")
        .arg(&pf)
        .args(["-F", "*/*/chroot = n"]));
    if setup == Setup::UnixChrooted {
        run(Command::new("postconf")
            .arg("-c")
            .arg(&pf)
            .args(["-F", "smtp/unix/chroot = y"]));
        std::fs::copy(&resolv, pf.join("spool/etc/resolv.conf")).unwrap();
        let chroot = Command::new("postconf")
            .arg("-c")
            .arg(&pf)
            .args(["-F", "-h", "smtp/unix/chroot"])
            .output()
            .expect("postconf");
        assert_eq!(String::from_utf8_lossy(&chroot.stdout).trim(), "y");
    }
    run(Command::new("postconf")
        .arg("-c")
        .arg(&pf)
        .args(["-M#", "smtp/inet"]));
    run(Command::new("chown").arg("postfix").arg(pf.join("data")));
    let _postfix = Postfix { dir: pf.clone() };
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/resolv.conf && postfix -c \"$2\" start",
            "sh",
        ])
        .arg(&resolv)
        .arg(&pf)
        .output()
        .expect("start postfix");
    assert!(
        out.status.success(),
        "postfix start: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for rcpt in ["user@good.test", "user@wrongname.test", "user@testing.test"] {
        let mut child = Command::new("sendmail")
            .arg("-C")
            .arg(&pf)
            .args(["-f", "probe@client.postfix-test.invalid", rcpt])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sendmail");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Subject: mta-sts {rcpt}\n\nhello\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    let log = || std::fs::read_to_string(&maillog).unwrap_or_default();
    let done = eventually(Duration::from_secs(40), || {
        let l = log();
        servers[0].messages().len() == 1
            && servers[2].messages().len() == 1
            && l.contains("to=<user@wrongname.test>")
            && l.contains("status=deferred")
    });
    let l = log();
    assert!(
        done,
        "deliveries did not complete; maillog:\n{l}\ndaemon:\n{}",
        daemon.log_text()
    );
    if setup == Setup::UnixChrooted {
        // Every lookup went through the socket: no map warning.
        assert!(!l.contains("warning: socketmap"), "{l}");
    }
    // enforce + valid certificate: verified TLS.
    assert!(servers[0].messages()[0].tls.is_some());
    assert!(
        l.contains("Verified TLS connection established to mail.good.test"),
        "{l}"
    );
    // enforce + wrong-name certificate: deferred 4.7.5, nothing delivered.
    assert!(servers[1].messages().is_empty());
    let line = l
        .lines()
        .find(|line| line.contains("to=<user@wrongname.test>") && line.contains("status=deferred"))
        .unwrap_or_default();
    assert!(line.contains("dsn=4.7.5"), "{line}");
    // testing: delivered (untrusted TLS is fine under `may`).
    assert!(
        l.contains("to=<user@testing.test>") && l.contains("status=sent"),
        "{l}"
    );
}

/// The daemon of a delivery test.
enum Daemon {
    Tcp(DaemonProc),
    Unprivileged(std::process::Child, std::path::PathBuf),
}

impl Daemon {
    fn log_text(&self) -> String {
        match self {
            Daemon::Tcp(d) => d.log_text(),
            Daemon::Unprivileged(_, log) => std::fs::read_to_string(log).unwrap_or_default(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Daemon::Unprivileged(child, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The systemd drop-in for the UNIX-socket set-up (packaging/), as shipped.
const SOCKET_DROP_IN: &str =
    include_str!("../../../../packaging/mta-sts-daemon-postfix-socket.conf");

/// A uid and gid with no passwd entry, as systemd's `DynamicUser=` allocates them
/// (61184–65519).
const DYNAMIC_UID: u32 = 61_999;

/// The gid of group `postfix`.
fn postfix_gid() -> Option<u32> {
    let out = Command::new("getent")
        .args(["group", "postfix"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)?
        .trim()
        .parse()
        .ok()
}

/// Runs the drop-in's `ExecStartPre=+…` (the socket directory) with the queue directory
/// `/var/spool/postfix` moved to `queue`.
fn run_exec_start_pre(queue: &Path) {
    let line = SOCKET_DROP_IN
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre=+"))
        .expect("the drop-in has ExecStartPre=+");
    let command = line.replace("/var/spool/postfix", &queue.display().to_string());
    run(Command::new("sh").args(["-c", &command]));
}

/// Starts `mta-sts daemon` as `DYNAMIC_UID` with the supplementary group postfix, as the
/// unit with the drop-in does (`DynamicUser=yes`, `SupplementaryGroups=postfix`,
/// `UMask=0027`, no capabilities), and waits until `socket` accepts.
fn start_unprivileged(config: &Path, socket: &Path, log: &Path, gid: u32) -> std::process::Child {
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={DYNAMIC_UID}"))
        .arg(format!("--regid={DYNAMIC_UID}"))
        .arg(format!("--groups={gid}"))
        .args(["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"])
        .args(["sh", "-c", "umask 0027; exec \"$0\" \"$@\""])
        .arg(bin())
        .args(["daemon", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn the daemon through setpriv");
    let ready = eventually(Duration::from_secs(20), || {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
    assert!(
        ready && child.try_wait().ok().flatten().is_none(),
        "the daemon did not come up: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    child
}

/// Issue 18.1: the UNIX-socket recipe of docs/postfix.md §3 and §6, as written: the daemon
/// runs unprivileged (no root, no capabilities) in group postfix, the drop-in's
/// `ExecStartPre` makes `mta-sts/` in the queue directory, the daemon gives its sockets to
/// group postfix with mode 0660, and the postfix user reaches them by the main.cf names
/// relative to the queue directory (`socketmap:unix:mta-sts/socketmap:postfix`,
/// `smtp_tlsrpt_socket_name = mta-sts/tlsrpt.sock`); a user outside the group does not.
#[test]
fn unix_socket_in_the_queue_directory_as_an_unprivileged_daemon() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !have("postmap", "postfix") || !have("setpriv", "util-linux") || !have("logger", "bsdutils")
    {
        return;
    }
    let Some(gid) = postfix_gid().filter(|_| is_root()) else {
        assert!(
            !require_interop(),
            "the UNIX-socket test needs root and the postfix group"
        );
        eprintln!("SKIP: the UNIX-socket test needs root and the postfix group");
        return;
    };
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .start();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The queue directory as Debian has it: root's, with Postfix's own private/ closed.
    let queue = tmp.path().join("spool");
    std::fs::create_dir_all(queue.join("private")).unwrap();
    run(Command::new("chown")
        .arg("postfix")
        .arg(queue.join("private")));
    std::fs::set_permissions(
        queue.join("private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    run_exec_start_pre(&queue);
    let dir_meta = std::fs::metadata(queue.join("mta-sts")).unwrap();
    assert_eq!((dir_meta.uid(), dir_meta.gid()), (0, gid));
    assert_eq!(dir_meta.mode() & 0o7777, 0o2770);

    // The daemon's own state (StateDirectory= in the unit).
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    run(Command::new("chown")
        .arg(DYNAMIC_UID.to_string())
        .arg(&state));
    let socket = queue.join("mta-sts/socketmap");
    let collector = queue.join("mta-sts/tlsrpt.sock");
    let http_port = free_port();
    let config = tmp.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[socketmap]\nlisten = \"unix:{}\"\nsocket_mode = \"0660\"\nsocket_group = \"postfix\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n{}[cache]\nstore = \"memory\"\n\
             [tlsrpt]\nevents = \"{}\"\nsocket = \"{}\"\nsocket_mode = \"0660\"\nsocket_group = \"postfix\"\n",
            socket.display(),
            resolver_section(&world),
            state.join("events.jsonl").display(),
            collector.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = tmp.path().join("daemon.log");
    let mut daemon = start_unprivileged(&config, &socket, &log, gid);

    for path in [&socket, &collector] {
        let meta = std::fs::metadata(path).unwrap();
        assert!(meta.file_type().is_socket(), "{}", path.display());
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (DYNAMIC_UID, gid, 0o660),
            "{}",
            path.display()
        );
    }

    // Postfix's view: the postfix user, in the queue directory (where smtp(8) runs,
    // chrooted or not), with the map name of main.cf.
    let pf = tmp.path().join("pf");
    std::fs::create_dir(&pf).unwrap();
    std::fs::write(pf.join("main.cf"), "compatibility_level = 3.6\n").unwrap();
    let as_user = |uid: &str, gid: &str, program: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(program)
            .current_dir(&queue);
        cmd
    };
    let postmap = |uid: &str, gid: &str| {
        let out = as_user(uid, gid, "postmap")
            .arg("-c")
            .arg(&pf)
            .args([
                "-q",
                "good.test",
                "socketmap:unix:mta-sts/socketmap:postfix",
            ])
            .output()
            .expect("postmap");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, answer, err) = postmap("postfix", "postfix");
    assert_eq!(
        (code, answer.as_str()),
        (Some(0), "secure match=mail.good.test servername=hostname"),
        "{err}\ndaemon: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Nobody else: a user outside group postfix cannot connect.
    let (code, answer, err) = postmap("65534", "65534");
    assert!(code != Some(0) && answer.is_empty(), "{answer} {err}");
    assert!(err.contains("Permission denied"), "{err}");

    // The collector socket takes a datagram from the postfix user by its main.cf name.
    let sent = as_user("postfix", "postfix", "logger")
        .args([
            "--socket-errors=on",
            "-d",
            "-u",
            "mta-sts/tlsrpt.sock",
            "probe",
        ])
        .output()
        .expect("logger");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let received = eventually(Duration::from_secs(10), || {
        http_get(
            format!("127.0.0.1:{http_port}").parse().unwrap(),
            "/metrics",
        )
        .1
        .contains("mta_sts_tlsrpt_datagrams_received_total 1")
    });
    assert!(received, "the collector received the datagram");

    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
}
