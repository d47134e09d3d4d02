//! The Debian package installed for real: `cargo test -p mta-sts-cli --test deb_install`.
//!
//! For Debian 12 (bookworm) and Debian 13 (trixie): a private copy of a clean root
//! (`scripts/install-root`, cached), the package (`MTA_STS_DEB`, else `scripts/package`
//! around this build's binary) installed with the README's `apt-get install
//! ./target/debian/mta-sts_*.deb`, then, in the root: `mta-sts --version`; the man pages
//! found by `man -w` and readable; the completions in place; the system user and its state
//! directory; which units are enabled; `systemd-analyze verify` of the units with the
//! release's own systemd; `mta-sts daemon --check-config` and `mta-sts serve --check-config`
//! on the installed conffiles as the units' user; the daemon started from the installed
//! unit's `ExecStart=` as its `User=` answers `postmap -q example.com` through the root's
//! Postfix (a testkit world on loopback publishes example.com's policy), and again through
//! the socket unit's listener passed as systemd passes it; reinstalling (an upgrade) keeps
//! the edited configuration and the state; `dpkg -r` keeps them too; `dpkg --purge` leaves
//! nothing behind (no path the package or its scripts made, no user, no group). lintian
//! checks the release package.
//!
//! Needs root. Skips with a message without it (or without debootstrap, dpkg-dev), and fails
//! instead under `MTA_STS_REQUIRE_INTEROP=1`.

mod chroot;
#[path = "../api/daemon_support.rs"]
mod daemon_support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chroot::{Root, clean_root, deb, host_ready};
use daemon_support::{eventually, free_port, have, require_interop};
use mta_sts_testkit::World;

/// Where the test's own files go inside the root (readable by the daemon's user).
const TEST_DIR: &str = "/srv/mta-sts-test";

const README: &str = include_str!("../../../../README.md");

/// The README's "Install the package" commands: the fenced block after its
/// `<!-- test: package … -->` comment, one command a line, comments dropped.
fn readme_commands() -> Vec<String> {
    README
        .split('\n')
        .skip_while(|l| !l.starts_with("<!-- test: package"))
        .skip(2)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn readme_builds_with_scripts_package_and_installs_with_apt() {
    let commands = readme_commands();
    assert_eq!(
        commands,
        [
            "scripts/package",
            "apt-get install ./target/debian/mta-sts_*.deb"
        ],
        "the README's install block changed: update deb_install, which runs it"
    );
}

#[test]
fn debian_12_bookworm_install_run_upgrade_purge() {
    install_run_upgrade_purge("bookworm");
}

#[test]
fn debian_13_trixie_install_run_upgrade_purge() {
    install_run_upgrade_purge("trixie");
}

/// Debian's own package checker finds no error and no warning in the release package (the
/// one override, in packaging/debian/lintian-overrides, says why). Not in the test build's
/// package: a debug binary is unstripped, which lintian rightly calls an error.
#[test]
fn lintian_finds_no_error_or_warning_in_the_release_package() {
    let Some(deb) = std::env::var_os("MTA_STS_DEB") else {
        let why = "lintian checks the release package, named by MTA_STS_DEB (scripts/test sets it)";
        assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
        eprintln!("SKIP: {why}");
        return;
    };
    if !have("lintian", "lintian") {
        return;
    }
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("run lintian");
    assert!(
        out.status.success(),
        "lintian {}:\n{}{}",
        Path::new(&deb).display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn install_run_upgrade_purge(suite: &str) {
    if !host_ready() {
        return;
    }
    let (Some(deb), Some(clean)) = (deb(), clean_root(suite)) else {
        return;
    };
    let root = Root::copy_of(&clean);
    let test_dir = root.host(TEST_DIR);
    std::fs::create_dir_all(test_dir.join("pf")).unwrap();
    // Where the README's install command finds the package scripts/package built.
    let deb_name = deb.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::create_dir_all(test_dir.join("target/debian")).unwrap();
    std::fs::copy(&deb, test_dir.join("target/debian").join(&deb_name)).unwrap();
    // apt-get as a script runs it: no questions.
    std::fs::write(
        root.host("/etc/apt/apt.conf.d/90mta-sts-test"),
        "APT::Get::Assume-Yes \"true\";\n",
    )
    .unwrap();
    // postmap's own configuration directory (whatever main.cf the root's Postfix has).
    std::fs::write(test_dir.join("pf/main.cf"), "compatibility_level = 3.6\n").unwrap();
    let before = root.paths(&[TEST_DIR]);

    // Install with the README's command, as written (apt resolves the Depends from the
    // root's packages).
    let install = &readme_commands()[1];
    root.ok(&format!("cd {TEST_DIR} && {install}"));
    let upstream = deb_name
        .strip_prefix("mta-sts_")
        .and_then(|v| v.split('_').next())
        .and_then(|v| v.rsplit_once('-'))
        .map(|(upstream, _revision)| upstream.to_owned())
        .expect("mta-sts_<version>-<revision>_<arch>.deb");
    assert_eq!(
        root.ok("mta-sts --version").trim(),
        format!("mta-sts {upstream}")
    );

    installed_files(&root);
    user_and_units(&root, suite);
    let daemon_toml = root.host("/etc/mta-sts/daemon.toml");
    let pristine = std::fs::read_to_string(&daemon_toml).unwrap();
    assert_eq!(
        pristine,
        include_str!("../../../../packaging/daemon.toml"),
        "the conffile is packaging/daemon.toml as shipped"
    );
    // The shipped file is valid as is, for the unit's user (its store opens in the state
    // directory).
    root.ok("setpriv --reuid=mta-sts --regid=mta-sts --init-groups \
         mta-sts daemon --check-config --config /etc/mta-sts/daemon.toml");

    // serve.toml too, as mta-sts-serve.service's user, with its ExecStart= plus
    // --check-config (as the unit's comment tells the admin): it opens the report store in
    // the state directory.
    let serve = unit_settings(&root, "mta-sts-serve.service");
    let check = root.ok(&format!(
        "setpriv --reuid={} --regid={} --init-groups {} --check-config",
        serve["User"], serve["Group"], serve["ExecStart"]
    ));
    assert!(
        check.starts_with("/etc/mta-sts/serve.toml: valid"),
        "{check}"
    );
    assert_eq!(
        root.ok("stat -c %U /var/lib/mta-sts/reports.db").trim(),
        "mta-sts"
    );

    let edited = daemon_answers_postfix(&root);

    // An upgrade (the same package again) keeps the admin's configuration and the state.
    let uid = root.ok("id -u mta-sts");
    root.ok(&format!("dpkg -i {TEST_DIR}/target/debian/{deb_name}"));
    assert_eq!(std::fs::read_to_string(&daemon_toml).unwrap(), edited);
    assert_eq!(root.ok("id -u mta-sts"), uid);
    assert!(
        root.host("/var/lib/mta-sts/cache.db").exists(),
        "the cache survives an upgrade"
    );

    // Remove: the program goes, configuration, state and user stay.
    root.ok("dpkg -r mta-sts");
    assert!(!root.host("/usr/bin/mta-sts").exists());
    assert_eq!(std::fs::read_to_string(&daemon_toml).unwrap(), edited);
    assert!(root.host("/var/lib/mta-sts/cache.db").exists());
    root.ok("getent passwd mta-sts");

    // Purge: nothing is left.
    let (code, out, err) = root.run("dpkg --purge mta-sts");
    assert_eq!(code, 0, "dpkg --purge:\n{out}\n{err}");
    assert!(
        !err.contains("mta-sts postrm"),
        "the postrm complained:\n{err}"
    );
    let after = root.paths(&[TEST_DIR]);
    let left: Vec<&String> = after.difference(&before).collect();
    assert!(left.is_empty(), "left behind by the package: {left:?}");
    let gone: Vec<&String> = before.difference(&after).collect();
    assert!(gone.is_empty(), "deleted by the package: {gone:?}");
    for db in ["passwd", "group", "shadow", "gshadow"] {
        let text = std::fs::read_to_string(root.host(&format!("/etc/{db}"))).unwrap();
        assert!(
            !text.lines().any(|l| l.starts_with("mta-sts:")),
            "/etc/{db} still names mta-sts"
        );
    }
}

/// The program, man pages, completions, documentation and units where Debian looks for them.
fn installed_files(root: &Root) {
    assert_eq!(
        root.ok("man -w mta-sts-daemon").trim(),
        "/usr/share/man/man1/mta-sts-daemon.1.gz"
    );
    assert_eq!(
        root.ok("man -w 5 mta-sts-daemon.toml").trim(),
        "/usr/share/man/man5/mta-sts-daemon.toml.5.gz"
    );
    assert_eq!(
        root.ok("man -w 5 mta-sts-serve.toml").trim(),
        "/usr/share/man/man5/mta-sts-serve.toml.5.gz"
    );
    // Rendered by the root's man and groff: the section-5 page holds the file's keys.
    let page = root.ok("MANWIDTH=200 man -P cat 5 mta-sts-daemon.toml 2>/dev/null");
    assert!(
        page.contains("max_connections") && page.contains("shutdown_timeout"),
        "{page}"
    );
    let page = root.ok("MANWIDTH=200 man -P cat mta-sts-serve 2>/dev/null");
    assert!(page.contains("--check-config"), "{page}");

    for (path, marker) in [
        (
            "/usr/share/bash-completion/completions/mta-sts",
            "complete -F",
        ),
        (
            "/usr/share/zsh/vendor-completions/_mta-sts",
            "#compdef mta-sts",
        ),
        (
            "/usr/share/fish/vendor_completions.d/mta-sts.fish",
            "complete -c mta-sts",
        ),
    ] {
        let text = std::fs::read_to_string(root.host(path)).unwrap_or_default();
        assert!(text.contains(marker), "{path} lacks `{marker}`");
    }
    // The bash completion loads and completes the subcommands (the function it registers
    // for `mta-sts`, called as bash-completion would).
    std::fs::write(
        root.host(&format!("{TEST_DIR}/complete.bash")),
        ". /usr/share/bash-completion/completions/mta-sts\n\
         f=$(complete -p mta-sts | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         COMP_WORDS=(mta-sts da); COMP_CWORD=1; COMP_LINE='mta-sts da'; COMP_POINT=10\n\
         \"$f\" mta-sts da mta-sts\n\
         printf '%s\\n' \"${COMPREPLY[@]}\"\n",
    )
    .unwrap();
    let words = root.ok(&format!("bash {TEST_DIR}/complete.bash"));
    assert_eq!(words.trim(), "daemon");

    for doc in ["README.md", "postfix.md", "copyright"] {
        assert!(
            root.host(&format!("/usr/share/doc/mta-sts/{doc}"))
                .is_file(),
            "{doc}"
        );
    }
    for unit in [
        "mta-sts-daemon.service",
        "mta-sts-serve.service",
        "mta-sts-daemon.socket",
    ] {
        assert!(
            root.host(&format!("/usr/lib/systemd/system/{unit}"))
                .is_file(),
            "{unit}"
        );
    }
}

/// The postinst's user and state directory, the enabled units, and the units verified by the
/// release's own `systemd-analyze`.
fn user_and_units(root: &Root, suite: &str) {
    let passwd = root.ok("getent passwd mta-sts");
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.get(5), Some(&"/var/lib/mta-sts"), "{passwd}");
    assert_eq!(fields.get(6), Some(&"/usr/sbin/nologin"), "{passwd}");
    assert!(
        fields
            .get(2)
            .and_then(|uid| uid.parse::<u32>().ok())
            .is_some_and(|uid| uid < 1000),
        "a system user: {passwd}"
    );
    for dir in ["/var/lib/mta-sts", "/var/spool/mta-sts"] {
        assert_eq!(
            root.ok(&format!("stat -c %U:%G:%a {dir}")).trim(),
            "mta-sts:mta-sts:750",
            "{dir}"
        );
    }
    // The daemon is enabled (loopback only by default); serve and the socket are not.
    let wants = |target: &str, unit: &str| {
        root.host(&format!("/etc/systemd/system/{target}.wants/{unit}"))
            .symlink_metadata()
            .is_ok()
    };
    assert!(wants("multi-user.target", "mta-sts-daemon.service"));
    assert!(!wants("multi-user.target", "mta-sts-serve.service"));
    assert!(!wants("sockets.target", "mta-sts-daemon.socket"));

    if !root.host("/usr/bin/systemd-analyze").exists() {
        eprintln!("SKIP systemd-analyze verify: the {suite} root has no systemd");
        return;
    }
    let (code, out, err) = root.run(
        "cd /usr/lib/systemd/system && systemd-analyze verify --man=no \
         mta-sts-daemon.service mta-sts-serve.service mta-sts-daemon.socket",
    );
    assert_eq!(code, 0, "systemd-analyze verify ({suite}):\n{out}\n{err}");
    let complaints: Vec<&str> = err.lines().filter(|l| l.contains("mta-sts")).collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify ({suite}):\n{err}"
    );
}

/// The installed daemon, configured by editing the conffile as an admin would (its own ports,
/// and the test world's DNS and CA), started from the installed unit's `ExecStart=` as its
/// `User=`/`Group=`, answers Postfix's `postmap -q`; then the same from the installed
/// `mta-sts-daemon.socket`'s socket. Returns the edited conffile.
fn daemon_answers_postfix(root: &Root) -> String {
    let world = World::builder()
        .domain("example.com", |d| d.enforce())
        .start();
    std::fs::write(root.host(&format!("{TEST_DIR}/ca.pem")), world.ca_pem()).unwrap();
    let (socketmap, http) = (free_port(), free_port());
    let conffile = root.host("/etc/mta-sts/daemon.toml");
    let edited = std::fs::read_to_string(&conffile)
        .unwrap()
        .replacen(
            "[socketmap]\n",
            &format!("[socketmap]\nlisten = \"127.0.0.1:{socketmap}\"\n"),
            1,
        )
        .replacen(
            "[http]\n",
            &format!("[http]\nlisten = \"127.0.0.1:{http}\"\n"),
            1,
        )
        .replacen(
            "[resolver]\n",
            &format!(
                "[resolver]\nnameservers = [\"{}\"]\nca_file = \"{TEST_DIR}/ca.pem\"\n\
                 connect_to = [\"{}\"]\ntimeout = \"5s\"\n",
                world.dns_addr(),
                world.connect_to_any()
            ),
            1,
        );
    assert_eq!(edited.matches(&format!("{TEST_DIR}/ca.pem")).count(), 1);
    std::fs::write(&conffile, &edited).unwrap();

    let service = unit_settings(root, "mta-sts-daemon.service");
    assert_eq!(
        service.get("DynamicUser"),
        None,
        "the package's unit runs as its static user"
    );
    let (user, group) = (&service["User"], &service["Group"]);
    assert_eq!((user.as_str(), group.as_str()), ("mta-sts", "mta-sts"));
    let exec_start = &service["ExecStart"];
    assert!(
        !exec_start.contains(['"', '\'', '$', '%']),
        "run as written by sh: {exec_start}"
    );
    let command = format!("setpriv --reuid={user} --regid={group} --init-groups {exec_start}");

    let run = run_daemon(root, &command, socketmap, "daemon.log");
    assert_eq!(
        run.answer,
        (
            0,
            "secure match=mail.example.com servername=hostname".to_owned()
        ),
        "postmap: {}\ndaemon:\n{}",
        run.postmap_err,
        run.log
    );
    assert!(run.stopped, "not stopped by SIGTERM:\n{}", run.log);
    // The policy went into the SQLite cache in the state directory, as the unit's user.
    assert_eq!(
        root.ok("stat -c %U /var/lib/mta-sts/cache.db").trim(),
        "mta-sts"
    );

    socket_activation(root, &command);
    edited
}

/// The socket unit's listener, passed the way systemd passes it (`systemd-socket-activate`,
/// with the unit's `FileDescriptorName=`), on a free port instead of the unit's 8461: the
/// daemon serves Postfix on it, not on daemon.toml's `listen`.
fn socket_activation(root: &Root, command: &str) {
    let socket = unit_settings(root, "mta-sts-daemon.socket");
    assert_eq!(socket["ListenStream"], "127.0.0.1:8461");
    assert_eq!(socket["Service"], "mta-sts-daemon.service");
    let name = &socket["FileDescriptorName"];
    assert_eq!(
        name, "socketmap",
        "the daemon's name for its socketmap listener"
    );
    if !root.host("/usr/bin/systemd-socket-activate").exists() {
        let why = "socket activation: the root has no systemd-socket-activate";
        assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
        eprintln!("SKIP {why}");
        return;
    }
    let port = free_port();
    let run = run_daemon(
        root,
        &format!("systemd-socket-activate -l 127.0.0.1:{port} --fdname={name} {command}"),
        port,
        "daemon-socket.log",
    );
    assert_eq!(
        run.answer,
        (
            0,
            "secure match=mail.example.com servername=hostname".to_owned()
        ),
        "postmap through the passed socket: {}\ndaemon:\n{}",
        run.postmap_err,
        run.log
    );
    assert!(
        run.log.contains("passed by systemd"),
        "the daemon took the socket from systemd:\n{}",
        run.log
    );
    assert!(run.stopped, "not stopped by SIGTERM:\n{}", run.log);
}

/// The `Key=value` settings of an installed unit (the last one of each key).
fn unit_settings(root: &Root, unit: &str) -> HashMap<String, String> {
    let path = root.host(&format!("/usr/lib/systemd/system/{unit}"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What one run of the daemon gave.
struct DaemonRun {
    /// `postmap -q example.com`'s exit code and output.
    answer: (i32, String),
    postmap_err: String,
    /// Whether SIGTERM stopped it with exit code 0.
    stopped: bool,
    /// Its standard error.
    log: String,
}

/// Starts `command` (exec'd by sh, so the child is the daemon) in the root, waits until
/// `port` accepts, asks `postmap -q example.com` through it, and stops the daemon with
/// SIGTERM as `systemctl stop` does.
fn run_daemon(root: &Root, command: &str, port: u16, log: &str) -> DaemonRun {
    let mut daemon = root
        .command(&format!("exec {command} 2>{TEST_DIR}/{log}"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let log_path = root.host(&format!("{TEST_DIR}/{log}"));
    let listening = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, out, postmap_err) = if listening {
        root.run(&format!(
            "postmap -c {TEST_DIR}/pf -q example.com socketmap:inet:127.0.0.1:{port}:postfix"
        ))
    } else {
        (-1, String::new(), format!("nothing listens on {port}"))
    };
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let exited = eventually(Duration::from_secs(20), || {
        daemon.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = daemon.kill();
    }
    let status = daemon.wait().expect("wait for the daemon");
    DaemonRun {
        answer: (code, out.trim().to_owned()),
        postmap_err,
        stopped: exited && status.success(),
        log: std::fs::read_to_string(log_path).unwrap_or_default(),
    }
}
