//! The Redis launcher: a data node answers on its port, comes back empty on the same port
//! after a stop, keeps its password, stalls under SIGSTOP; a sentinel monitors it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mta_sts_testkit::redis::{self, Server};

/// Sends raw RESP `commands` to `port`; the first `len` bytes of the answer (`None`: no
/// connection, or no full answer within a second).
fn ask(port: u16, commands: &str, len: usize) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(commands.as_bytes()).ok()?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn data_node_restarts_empty_on_its_port_and_stalls_when_stopped() {
    if !redis::require("data_node_restarts_empty_on_its_port_and_stalls_when_stopped") {
        return;
    }
    let mut server = Server::start(&[]).expect("redis-server");
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert_eq!(
        ask(server.port(), "SET k v\r\nEXISTS k\r\n", 9).as_deref(),
        Some("+OK\r\n:1\r\n")
    );
    assert!(matches!(server.restart(), Err(redis::Error::Running(_))));

    server.signal("STOP").expect("SIGSTOP");
    assert_eq!(
        ask(server.port(), "PING\r\n", 7),
        None,
        "a stalled server answers"
    );
    server.signal("CONT").expect("SIGCONT");
    assert_eq!(
        ask(server.port(), "PING\r\n", 7).as_deref(),
        Some("+PONG\r\n")
    );

    server.stop();
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_err());
    assert!(server.signal("CONT").is_err(), "no process to signal");
    server.restart().expect("restart");
    assert_eq!(
        ask(server.port(), "EXISTS k\r\n", 4).as_deref(),
        Some(":0\r\n"),
        "no persistence: back empty"
    );
}

#[test]
fn stopped_server_listens_only_once_started() {
    if !redis::require("stopped_server_listens_only_once_started") {
        return;
    }
    let mut server = Server::stopped(&[]).expect("redis-server");
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_err());
    server.restart().expect("start");
    assert_eq!(
        ask(server.port(), "PING\r\n", 7).as_deref(),
        Some("+PONG\r\n")
    );
}

#[test]
fn password_node_and_its_sentinel() {
    if !redis::require("password_node_and_its_sentinel") {
        return;
    }
    let master = Server::start(&["--requirepass", "master-secret"]).expect("master");
    assert_eq!(
        ask(master.port(), "PING\r\n", 7).as_deref(),
        Some("-NOAUTH")
    );
    assert_eq!(
        ask(master.port(), "AUTH master-secret\r\nPING\r\n", 12).as_deref(),
        Some("+OK\r\n+PONG\r\n")
    );
    let sentinel = Server::start_sentinel(&format!(
        "sentinel monitor m 127.0.0.1 {} 1\nsentinel auth-pass m master-secret\n",
        master.port()
    ))
    .expect("sentinel");
    let want = format!(
        "*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{}\r\n",
        master.port().to_string().len(),
        master.port()
    );
    assert_eq!(
        ask(
            sentinel.port(),
            "SENTINEL GET-MASTER-ADDR-BY-NAME m\r\n",
            want.len()
        ),
        Some(want)
    );
}
