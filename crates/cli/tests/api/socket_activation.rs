//! `mta-sts daemon` and `mta-sts serve` under socket activation (#16 item 4): listening sockets passed the way
//! systemd passes them (descriptors 3 and 4, `LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`), to the real binary. The sockets are placed by a shell (`exec 3<&0
//! 4>&1`: the test hands them over as standard input and output, then the shell moves them
//! and execs the daemon with its own pid in `LISTEN_PID`), and by systemd's own
//! `systemd-socket-activate` when it is installed. Each test checks the passed sockets are
//! the ones answering (socketmap and HTTP) and the configured addresses stay unbound; a
//! `LISTEN_PID` of another process is ignored.

use crate::daemon_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use daemon_support::*;
use mta_sts_testkit::World;

const ENFORCE: &str = "OK secure match=mail.good.test servername=hostname";

fn world() -> World {
    World::builder()
        .domain("good.test", |d| d.enforce())
        .start()
}

/// A daemon configuration whose `listen` keys name free ports nobody passes.
fn config(dir: &Path, world: &World) -> (PathBuf, SocketAddr, SocketAddr) {
    let socketmap: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.join("daemon.toml");
    std::fs::write(
        &path,
        format!(
            "[socketmap]\nlisten = \"{socketmap}\"\n[http]\nlisten = \"{http}\"\n[cache]\nstore = \"memory\"\n{}",
            resolver_section(world)
        ),
    )
    .unwrap();
    (path, socketmap, http)
}

/// Starts `mta-sts daemon --config CONFIG` with `fd3` and `fd4` at descriptors 3 and 4
/// and the activation variables `env` (`LISTEN_PID` is set to the daemon's own pid
/// unless `env` sets it).
fn spawn(config: &Path, log: &Path, fd3: OwnedFd, fd4: OwnedFd, env: &[(&str, &str)]) -> Child {
    spawn_command("daemon", config, log, fd3, fd4, env)
}

/// [`spawn`] for `mta-sts COMMAND --config CONFIG`.
fn spawn_command(
    command: &str,
    config: &Path,
    log: &Path,
    fd3: OwnedFd,
    fd4: OwnedFd,
    env: &[(&str, &str)],
) -> Child {
    let mut script = String::from("exec 3<&0 4>&1 0</dev/null 1>&2; export LISTEN_PID=$$; ");
    for (k, v) in env {
        script.push_str(&format!("export {k}='{v}'; "));
    }
    script.push_str(&format!("exec \"$0\" {command} --config \"$1\""));
    Command::new("sh")
        .args(["-c", &script, bin()])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::from(fd3))
        .stdout(Stdio::from(fd4))
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn sh")
}

/// One socketmap query over a UNIX socket.
fn query_unix(path: &Path, request: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{}:{request},", request.len()).as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    // `len:data,`
    loop {
        s.read_exact(&mut byte)?;
        reply.push(byte[0]);
        if let Some((len, data)) = std::str::from_utf8(&reply)
            .ok()
            .and_then(|t| t.split_once(':'))
            && let Ok(len) = len.parse::<usize>()
            && data.len() == len + 1
        {
            return Ok(data[..len].to_owned());
        }
    }
}

/// Waits until `ready` holds; fails with the log if the daemon exits or never gets there.
fn wait_until(child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let ok = eventually(Duration::from_secs(20), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "daemon exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ready()
    });
    assert!(
        ok,
        "daemon not ready: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = eventually(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Without names: the first descriptor (a UNIX socket) is the socketmap, the second (TCP)
/// the HTTP API. The configured addresses stay unbound, the log says where each listener
/// came from, and at shutdown the socket file, systemd's, is left in place.
#[test]
fn passed_sockets_serve_socketmap_and_http() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let (config, configured_socketmap, configured_http) = config(dir.path(), &world);
    let socket = dir.path().join("socketmap.sock");
    let socketmap = UnixListener::bind(&socket).unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http.local_addr().unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = spawn(
        &config,
        &log,
        socketmap.into(),
        http.into(),
        &[("LISTEN_FDS", "2")],
    );
    wait_until(&mut child, &log, || {
        query_unix(&socket, "policy good.test").is_ok_and(|r| r == ENFORCE)
    });
    let (status, body) = http_get(http_addr, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(http_addr, "/v1/policy/good.test");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(ENFORCE), "{body}");
    assert!(
        TcpStream::connect(configured_socketmap).is_err(),
        "the configured socketmap address must not be bound"
    );
    assert!(
        TcpStream::connect(configured_http).is_err(),
        "the configured HTTP address must not be bound"
    );
    stop(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("socketmap listener passed by systemd")
            && text.contains(&format!("unix:{}", socket.display())),
        "{text}"
    );
    assert!(
        text.contains("HTTP API listener passed by systemd")
            && text.contains(&http_addr.to_string()),
        "{text}"
    );
    assert!(
        socket.exists(),
        "the passed socket file is systemd's to remove"
    );
}

/// With `LISTEN_FDNAMES` the names decide, whatever the order: `http:socketmap` puts
/// the HTTP API at descriptor 3.
#[test]
fn names_decide_the_roles() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = config(dir.path(), &world);
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let socketmap = TcpListener::bind("127.0.0.1:0").unwrap();
    let (http_addr, socketmap_addr) = (http.local_addr().unwrap(), socketmap.local_addr().unwrap());
    let log = dir.path().join("daemon.log");
    let mut child = spawn(
        &config,
        &log,
        http.into(),
        socketmap.into(),
        &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "http:socketmap")],
    );
    wait_until(&mut child, &log, || {
        TcpStream::connect(socketmap_addr).is_ok()
    });
    let mut s = TcpStream::connect(socketmap_addr).unwrap();
    assert_eq!(query_on(&mut s, "policy good.test"), ENFORCE);
    assert_eq!(http_get(http_addr, "/healthz").0, 200);
    stop(&mut child);
}

/// A `LISTEN_PID` that is not the daemon's (variables inherited from a parent) is
/// ignored: the configured addresses are bound and the passed socket gets no answer.
#[test]
fn another_process_listen_pid_is_ignored() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let (config, configured_socketmap, configured_http) = config(dir.path(), &world);
    let socket = dir.path().join("passed.sock");
    let passed = UnixListener::bind(&socket).unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = spawn(
        &config,
        &log,
        passed.into(),
        http.into(),
        // pid 1 is never the daemon's.
        &[("LISTEN_FDS", "2"), ("LISTEN_PID", "1")],
    );
    wait_until(&mut child, &log, || {
        TcpStream::connect(configured_socketmap).is_ok()
    });
    let mut s = TcpStream::connect(configured_socketmap).unwrap();
    assert_eq!(query_on(&mut s, "policy good.test"), ENFORCE);
    assert_eq!(http_get(configured_http, "/healthz").0, 200);
    // Still open in the daemon (never taken), so the connect succeeds; nobody answers.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(b"16:policy good.test,").unwrap();
    let mut byte = [0u8; 1];
    assert!(
        s.read(&mut byte).is_err(),
        "the passed socket must not be served"
    );
    stop(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("LISTEN_FDS ignored"), "{text}");
    assert!(!text.contains("passed by systemd"), "{text}");
}

/// The `systemd-socket-activate` command of docs/postfix.md ("Socket activation"), as
/// written but for its paths and port.
fn doc_command(socket: &Path, http: SocketAddr, config: &Path) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/postfix.md"
    ))
    .unwrap();
    let (_, after) = doc
        .split_once("<!-- test: socket activation -->\n```sh\n")
        .expect("docs/postfix.md has the socket activation block");
    let (block, _) = after.split_once("```").unwrap();
    let line = block.replace("\\\n", " ");
    assert!(line.starts_with("systemd-socket-activate "), "{line}");
    line.replace("/run/mta-sts/socketmap", &socket.display().to_string())
        .replace("127.0.0.1:8462", &http.to_string())
        .replace("/etc/mta-sts/daemon.toml", &config.display().to_string())
        .replace(
            " mta-sts daemon",
            &format!(" -E RUST_LOG=info {} daemon", bin()),
        )
}

/// systemd's own launcher, run as docs/postfix.md shows it: it sets the variables as the
/// service manager does (skips when the program is absent).
#[test]
fn systemd_socket_activate_launches_the_daemon() {
    if !have("systemd-socket-activate", "systemd") {
        return;
    }
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let (config, configured_socketmap, _) = config(dir.path(), &world);
    let socket = dir.path().join("socketmap.sock");
    let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("daemon.log");
    let command = doc_command(&socket, http_addr, &config);
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn systemd-socket-activate");
    wait_until(&mut child, &log, || {
        query_unix(&socket, "policy good.test").is_ok_and(|r| r == ENFORCE)
    });
    assert_eq!(http_get(http_addr, "/healthz").0, 200);
    assert!(TcpStream::connect(configured_socketmap).is_err());
    stop(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("socketmap listener passed by systemd"),
        "{text}"
    );
    assert!(
        text.contains("HTTP API listener passed by systemd"),
        "{text}"
    );
}

/// `mta-sts serve` takes its HTTPS listeners from systemd: two sockets named `https`
/// (as a `.socket` unit with `ListenStream=` for IPv4 and IPv6 would pass them) both serve
/// the policy, and `listen` stays unbound.
#[test]
fn serve_takes_its_https_listeners_from_systemd() {
    if !have("curl", "curl") {
        return;
    }
    let world = World::empty();
    let dir = tempfile::tempdir().unwrap();
    let issued = world
        .ca()
        .issue(&["mta-sts.served.test"], mta_sts_testkit::Validity::Current)
        .unwrap();
    std::fs::write(
        dir.path().join("host.pem"),
        format!("{}{}", issued.cert_pem, world.ca_pem()),
    )
    .unwrap();
    std::fs::write(dir.path().join("host.key"), &issued.key_pem).unwrap();
    std::fs::write(dir.path().join("ca.pem"), world.ca_pem()).unwrap();
    let configured: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{configured}\"\n[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\ncert = \"host.pem\"\nkey = \"host.key\"\n"
        ),
    )
    .unwrap();
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = [first.local_addr().unwrap(), second.local_addr().unwrap()];
    let log = dir.path().join("serve.log");
    let mut child = spawn_command(
        "serve",
        &config,
        &log,
        first.into(),
        second.into(),
        &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "https:https")],
    );
    let fetch = |addr: SocketAddr| {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(dir.path().join("ca.pem"))
            .arg("--resolve")
            .arg(format!("mta-sts.served.test:{}:127.0.0.1", addr.port()))
            .arg(format!(
                "https://mta-sts.served.test:{}/.well-known/mta-sts.txt",
                addr.port()
            ))
            .output()
            .unwrap()
    };
    wait_until(&mut child, &log, || fetch(addrs[0]).status.success());
    for addr in addrs {
        let out = fetch(addr);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.contains("mode: enforce"), "{addr}: {body} {out:?}");
    }
    assert!(
        TcpStream::connect(configured).is_err(),
        "`listen` must not be bound when systemd passes the HTTPS sockets"
    );
    stop(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("listener passed by systemd").count(),
        2,
        "{text}"
    );
}

/// Descriptors that cannot serve stop the start with a message naming the fix: a regular
/// file where the socketmap socket should be, and a `LISTEN_FDS` that is no number.
#[test]
fn unusable_passed_descriptors_stop_the_start() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = config(dir.path(), &world);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 2] = [
        (
            "file",
            &[("LISTEN_FDS", "2")],
            "descriptor 3 (socketmap) passed by systemd is not a listening TCP or UNIX stream socket",
        ),
        (
            "count",
            &[("LISTEN_FDS", "two")],
            "LISTEN_FDS=\"two\" is not a number",
        ),
    ];
    for (name, env, expected) in cases {
        let file = std::fs::File::create(dir.path().join(name)).unwrap();
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let mut child = spawn(&config, &log, file.into(), http.into(), env);
        let exited = eventually(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(exited, "{name}: the daemon must not start: {text}");
        assert_eq!(status.code(), Some(1), "{name}: {text}");
        assert!(text.contains(expected), "{name}: {text}");
    }
}
