//! Daemons sharing the fleet stores a postfix-mta-sts-resolver fleet may already run
//! (issue 16 item 5): PostgreSQL (`store = "postgres"`) and Redis behind Redis Sentinel
//! (`store = "redis_sentinel"`, with passwords on the master and on the sentinel). A policy
//! fetched by one daemon is answered by the other, and by a daemon started later, without
//! another HTTPS fetch.
//!
//! The servers are real and started by the tests on loopback; without them the tests print
//! why they are skipped and pass, unless `MTA_STS_REQUIRE_INTEROP=1`.

use crate::daemon_app::{ENFORCE, config, query, world};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mta_sts_daemon::app::Daemon;
use mta_sts_testkit::postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_one_postgres() {
    let server = match postgres::start() {
        Ok(server) => server,
        Err(why) => return postgres::skip_or_fail("two_daemons_share_one_postgres", &why),
    };
    let world = world();
    let cache = format!("store = \"postgres\"\npostgres_url = \"{}\"", server.url());
    let a = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon a");
    let b = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon b");
    assert_eq!(query(&a, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    assert_eq!(query(&b, "postfix good.test").await, ENFORCE);
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        1,
        "daemon b answered from PostgreSQL"
    );
    a.shutdown().await;
    b.shutdown().await;
    // A daemon started afterwards warm-starts from the database.
    let c = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon c");
    assert_eq!(query(&c, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    c.shutdown().await;
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A `redis-server` process (master or sentinel), killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server on `port` answers `AUTH password` + `PING`.
fn wait_for_pong(port: u16, password: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answered = TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 12];
            s.write_all(format!("AUTH {password}\r\nPING\r\n").as_bytes())
                .is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+OK\r\n+PONG\r\n"
        });
        if answered {
            return;
        }
        assert!(Instant::now() < deadline, "no PONG on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(args: &[&str], log: &std::path::Path) -> Process {
    let log = std::fs::File::create(log).expect("log");
    Process(
        Command::new("redis-server")
            .args(args)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_redis_through_sentinel_with_passwords() {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("redis-server is required (MTA_STS_REQUIRE_INTEROP=1) but cannot be run");
        }
        println!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (master_port, sentinel_port) = (free_port(), free_port());
    let (mp, sp) = (master_port.to_string(), sentinel_port.to_string());
    let dir_arg = dir.path().display().to_string();
    let _master = spawn(
        &[
            "--port",
            &mp,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "master-secret",
            "--dir",
            &dir_arg,
        ],
        &dir.path().join("master.log"),
    );
    wait_for_pong(master_port, "master-secret");
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sp}\nbind 127.0.0.1\ndir {dir_arg}\nrequirepass sentinel-secret\n\
             sentinel monitor fleet 127.0.0.1 {mp} 1\n\
             sentinel auth-pass fleet master-secret\n"
        ),
    )
    .expect("sentinel.conf");
    let _sentinel = spawn(
        &[&conf.display().to_string(), "--sentinel"],
        &dir.path().join("sentinel.log"),
    );
    wait_for_pong(sentinel_port, "sentinel-secret");

    let world = world();
    let cache = format!(
        "store = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:{sp}\"]\n\
         sentinel_master = \"fleet\"\nredis_db = 3\nredis_password = \"master-secret\"\n\
         sentinel_password = \"sentinel-secret\""
    );
    let a = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon a");
    let b = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("daemon b");
    assert_eq!(query(&a, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    assert_eq!(query(&b, "postfix good.test").await, ENFORCE);
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        1,
        "daemon b answered from the Redis master the sentinel named"
    );
    a.shutdown().await;
    b.shutdown().await;

    // The policy is in database 3 of the master (redis_db), under the usual key.
    let mut s = TcpStream::connect(("127.0.0.1", master_port)).expect("master");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(b"AUTH master-secret\r\nSELECT 3\r\nEXISTS mta-sts:policy:good.test\r\n")
        .expect("write");
    let mut buf = [0u8; 14];
    s.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"+OK\r\n+OK\r\n:1\r\n");
}

/// A reload that changes how the fleet store is reached names each changed key as waiting
/// for a restart (the store is opened once, at start).
#[test]
fn fleet_store_keys_wait_for_a_restart() {
    use mta_sts_daemon::app::restart_pending;
    use mta_sts_daemon::config::Config;
    let sentinel = |extra: &str| {
        Config::parse(&format!(
            "[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26379\"]\n\
             sentinel_master = \"m\"\n{extra}"
        ))
        .expect("parses")
    };
    let started = sentinel("");
    assert!(restart_pending(&started, &sentinel("")).is_empty());
    let changed = Config::parse(
        "[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26380\"]\n\
         sentinel_master = \"n\"\nredis_db = 1\nredis_password = \"p\"\n\
         sentinel_password = \"s\"\npostgres_url = \"postgres://db/x\"\n",
    )
    .expect("parses");
    assert_eq!(
        restart_pending(&started, &changed),
        [
            "[cache] sentinels",
            "[cache] sentinel_master",
            "[cache] redis_db",
            "[cache] redis_password",
            "[cache] sentinel_password",
            "[cache] postgres_url"
        ]
    );
    let postgres =
        Config::parse("[cache]\nstore = \"postgres\"\npostgres_url = \"postgres://db/x\"\n")
            .expect("parses");
    assert!(restart_pending(&started, &postgres).contains(&"[cache] store"));
}
