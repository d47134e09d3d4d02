//! `mta-sts daemon` as a process: `--check-config` exit codes; socketmap and HTTP answers;
//! SIGHUP reload (good and bad configurations); systemd notifications; `kill -9` and a
//! restart answered from the SQLite store without any HTTPS fetch; SIGTERM drains and
//! exits 0; 10,000 idle connections without a leak.

use crate::daemon_support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_support::*;
use mta_sts_testkit::World;

const ENFORCE: &str = "OK secure match=mail.good.test servername=hostname";

fn world() -> World {
    World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"])
        })
        .start()
}

#[test]
fn check_config_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[zones.strict]\nstrict_testing = true\n[cache]\nstore = \"memory\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["daemon", "--check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid"), "{text}");
    assert!(text.contains("socketmap: listen=127.0.0.1:8461"), "{text}");
    assert!(text.contains("strict: strict_testing=true"), "{text}");
    assert!(text.contains("cache: store=memory"), "{text}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[defaults]\nstrict_testin = true\n").unwrap();
    let out = Command::new(bin())
        .args(["daemon", "--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("strict_testin"), "names the bad key: {err}");

    let out = Command::new(bin())
        .args(["daemon", "--check-config", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an explicit file must exist");
}

/// Issues 12.12 and 18.2: `--check-config` loads what the start loads (store, CA file,
/// socket paths), so "valid" means "will start".
#[test]
fn check_config_loads_what_the_start_loads() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin())
            .args(["daemon", "--check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cache = |path: &std::path::Path| {
        format!(
            "[cache]\nstore = \"sqlite\"\npath = \"{}\"\n",
            path.display()
        )
    };
    let good_db = dir.path().join("state/cache.db");
    assert_eq!(check("good.toml", &cache(&good_db)).0, Some(0));

    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "this is no certificate\n").unwrap();
    for (name, text, needle) in [
        (
            "ca-missing.toml",
            format!(
                "[resolver]\nca_file = \"{}\"\n{}",
                dir.path().join("nope.pem").display(),
                cache(&good_db)
            ),
            "nope.pem",
        ),
        (
            "ca-not-pem.toml",
            format!(
                "[resolver]\nca_file = \"{}\"\n{}",
                not_pem.display(),
                cache(&good_db)
            ),
            "not-pem.txt",
        ),
        ("store-dir.toml", cache(dir.path()), "directory"),
        (
            "store-unwritable.toml",
            cache(std::path::Path::new("/proc/mta-sts-no-such-dir/cache.db")),
            "/proc/mta-sts-no-such-dir",
        ),
        (
            "http-on-file.toml",
            format!(
                "[http]\nlisten = \"unix:{}\"\n{}",
                not_pem.display(),
                cache(&good_db)
            ),
            "not a socket",
        ),
        (
            "socket-group-unknown.toml",
            format!(
                "[socketmap]\nsocket_group = \"mta-sts-no-such-group\"\n{}",
                cache(&good_db)
            ),
            "[socketmap] socket_group: no group `mta-sts-no-such-group`",
        ),
    ] {
        let (code, err) = check(name, &text);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
    assert!(not_pem.is_file(), "the check deletes nothing");
}

/// Issue 16 item 5: `--check-config` on the fleet stores (Redis Sentinel, PostgreSQL):
/// valid files pass without the servers running (the daemon connects lazily, as at start),
/// print the store without its passwords, and each mistake is one line with the fix.
#[test]
fn check_config_fleet_stores() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, cache: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("[cache]\n{cache}\n")).unwrap();
        let out = Command::new(bin())
            .args(["daemon", "--check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = check(
        "sentinel.toml",
        "store = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26379\", \"10.0.0.2\"]\n\
         sentinel_master = \"mymaster\"\nredis_password = \"hunter2\"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            "cache: store=redis_sentinel sentinels=127.0.0.1:26379,10.0.0.2:26379 \
             sentinel_master=mymaster redis_db=0"
        ),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );

    let (code, out, err) = check(
        "postgres.toml",
        "store = \"postgres\"\npostgres_url = \"postgres://mta:hunter2@127.0.0.1/mta_sts\"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("cache: store=postgres postgres_url=<set>"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");

    for (name, cache, needle) in [
        (
            "no-master.toml",
            "store = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26379\"]",
            "needs sentinel_master, the name the sentinels monitor the master under, e.g. \
             `sentinel_master = \"mymaster\"`",
        ),
        (
            "no-sentinels.toml",
            "store = \"redis_sentinel\"\nsentinel_master = \"mymaster\"",
            "needs sentinels, the Redis Sentinel addresses, e.g. \
             `sentinels = [\"127.0.0.1:26379\"]`",
        ),
        (
            "bad-port.toml",
            "store = \"redis_sentinel\"\nsentinel_master = \"m\"\nsentinels = [\"10.0.0.2:sentinel\"]",
            "[cache] sentinels: `10.0.0.2:sentinel` has no valid port (write host:port",
        ),
        (
            "no-url.toml",
            "store = \"postgres\"",
            "needs postgres_url, e.g. `postgres_url = \"postgres://",
        ),
        (
            "bad-url.toml",
            "store = \"postgres\"\npostgres_url = \"postgres://mta:hunter2@127.0.0.1:port/db\"",
            "cannot open the postgres policy store: the postgres store is unavailable: \
             invalid PostgreSQL URL postgres://mta:***@127.0.0.1:port/db",
        ),
    ] {
        let (code, _, err) = check(name, cache);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("hunter2"), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
    }
}

#[test]
fn process_serves_reloads_survives_kill_9_and_drains_on_sigterm() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let body = format!(
        "{}[cache]\nstore = \"sqlite\"\npath = \"{}\"\n",
        resolver_section(&world),
        dir.path().join("cache.db").display()
    );
    let notify_env = notify_path.to_string_lossy().into_owned();
    let mut daemon = DaemonProc::start(
        dir.path(),
        "shutdown_timeout = \"3s\"",
        &body,
        &[("NOTIFY_SOCKET", &notify_env)],
    );
    assert!(recv().contains("READY=1"));

    assert_eq!(daemon.query("postfix good.test"), ENFORCE);
    assert_eq!(daemon.query("strict testing.test"), "NOTFOUND ");
    assert_eq!(daemon.http_get("/healthz"), (200, "ok\n".to_owned()));
    let (status, json) = daemon.http_get("/v1/policy/good.test");
    assert_eq!(status, 200);
    assert!(json.contains("\"mode\":\"enforce\""), "{json}");

    // SIGHUP with a new zone: applied, connections kept.
    let mut kept = std::net::TcpStream::connect(daemon.socketmap).unwrap();
    assert_eq!(query_on(&mut kept, "strict testing.test"), "NOTFOUND ");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        format!("{text}[zones.strict]\nstrict_testing = true\n"),
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(recv().contains("RELOADING=1"));
    assert!(recv().contains("READY=1"));
    assert_eq!(
        query_on(&mut kept, "strict testing.test"),
        "OK secure match=mail.testing.test servername=hostname"
    );

    // SIGHUP with a broken file: refused, old configuration kept.
    let good_text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(&daemon.config, "[defaults]\nbudget = \"soon\"\n").unwrap();
    daemon.signal("HUP");
    assert!(recv().contains("RELOADING=1"));
    assert!(recv().contains("READY=1"));
    assert_eq!(
        query_on(&mut kept, "strict testing.test"),
        "OK secure match=mail.testing.test servername=hostname"
    );
    assert!(
        daemon.log_text().contains("reload refused"),
        "{}",
        daemon.log_text()
    );
    std::fs::write(&daemon.config, good_text).unwrap();
    drop(kept);

    // kill -9, restart on the same SQLite file: cached domains are answered without any
    // HTTPS fetch (the TXT id is unchanged, so only DNS is asked). The daemon writes what it
    // fetched within `flush_window` (100 ms): a kill before then may lose it (the store's
    // own tests time that window), so kill once both policies are in the file.
    let fetched = world.https().request_count("mta-sts.good.test");
    assert_eq!(fetched, 1);
    let db = dir.path().join("cache.db");
    assert!(
        eventually(Duration::from_secs(5), || stored_domains(&db) == 2),
        "the fetched policies never reached {}",
        db.display()
    );
    daemon.signal("KILL");
    assert!(daemon.wait_exit(Duration::from_secs(5)).is_some());
    let mut daemon = DaemonProc::spawn(
        daemon.config.clone(),
        daemon.socketmap,
        daemon.http,
        &[("NOTIFY_SOCKET", &notify_env)],
    );
    assert!(recv().contains("READY=1"));
    assert_eq!(daemon.query("postfix good.test"), ENFORCE);
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        fetched,
        "no HTTPS fetch after the restart"
    );
    assert!(
        daemon.log_text().contains("policies=2"),
        "{}",
        daemon.log_text()
    );

    // SIGTERM: drains and exits 0 within shutdown_timeout.
    let started = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}: {}", daemon.log_text());
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(recv().contains("STOPPING=1"));
}

/// How many policies the SQLite cache file at `path` holds, read as another process would.
fn stored_domains(path: &std::path::Path) -> usize {
    use mta_sts_resolver::store::{SqliteStore, Store};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(path).await.expect("open the cache file");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        store.load_all(now).await.map(|all| all.len()).unwrap_or(0)
    })
}

/// Soft limit of open files of this process.
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

#[test]
fn ten_thousand_idle_connections_no_crash_no_leak() {
    let wanted = 10_000;
    let count = wanted.min(fd_limit().saturating_sub(200));
    if count < wanted {
        eprintln!(
            "NOTE: open-files limit {}: testing {count} connections instead of {wanted}",
            fd_limit()
        );
    }
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{}[cache]\nstore = \"memory\"\n", resolver_section(&world));
    let daemon = DaemonProc::start(
        dir.path(),
        "max_connections = 20000\nmax_connections_per_peer = 20000\nidle_timeout = \"60s\"",
        &body,
        &[],
    );
    let reply = std::panic::catch_unwind(|| daemon.query("postfix good.test"));
    assert_eq!(
        reply.ok().as_deref(),
        Some(ENFORCE),
        "{}",
        daemon.log_text()
    );
    // Let the query's connection close before taking the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let baseline = daemon.fd_count();
    let mut idle = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        idle.push(std::net::TcpStream::connect(daemon.socketmap).expect("connect"));
    }
    eprintln!("{count} connections opened in {:?}", started.elapsed());
    assert!(
        eventually(Duration::from_secs(20), || daemon.fd_count()
            >= baseline + count),
        "accepted {} of {count}",
        daemon.fd_count().saturating_sub(baseline)
    );
    eprintln!("accepted after {:?}", started.elapsed());
    // Still serving while 10,000 connections sit idle.
    let reply = std::panic::catch_unwind(|| daemon.query("postfix good.test"));
    assert_eq!(
        reply.ok().as_deref(),
        Some(ENFORCE),
        "{}",
        daemon.log_text()
    );
    // The query's own connection closes a moment after its reply: wait for it.
    let open = format!("mta_sts_socketmap_connections_open {count}\n");
    assert!(
        eventually(Duration::from_secs(5), || daemon
            .http_get("/metrics")
            .1
            .contains(&open)),
        "{}",
        daemon.http_get("/metrics").1
    );
    drop(idle);
    assert!(
        eventually(Duration::from_secs(20), || daemon.fd_count() <= baseline),
        "fds: baseline {baseline}, now {}",
        daemon.fd_count()
    );
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(
        metrics.contains("mta_sts_socketmap_connections_open 0"),
        "{metrics}"
    );
}

/// Issue 12.3: idle HTTP API connections must never take the descriptors the socketmap
/// needs. The daemon runs with 600 open files; 700 idle API connections used to exhaust
/// them (accept EMFILE on the socketmap, Postfix lookups timing out). Now the API's cap is
/// computed from the limit and the socketmap still answers.
#[test]
fn idle_http_connections_cannot_starve_the_socketmap() {
    if !have("prlimit", "util-linux") {
        return;
    }
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let socketmap: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[socketmap]\nlisten = \"{socketmap}\"\nmax_connections = 64\n[http]\nlisten = \"{http}\"\nidle_timeout = \"60s\"\n{}[cache]\nstore = \"memory\"\n",
            resolver_section(&world)
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let child = Command::new("prlimit")
        .arg("--nofile=600:600")
        .arg("--")
        .arg(bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn");
    let daemon = DaemonProc {
        child,
        socketmap,
        http,
        config,
        log,
    };
    assert!(
        eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(socketmap).is_ok()
        }),
        "{}",
        daemon.log_text()
    );
    assert_eq!(daemon.query("postfix good.test"), ENFORCE);
    let mut idle = Vec::new();
    for _ in 0..700 {
        match std::net::TcpStream::connect_timeout(&http, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.fd_count() < 600,
        "the daemon holds {} descriptors",
        daemon.fd_count()
    );
    let started = Instant::now();
    let reply = std::panic::catch_unwind(|| daemon.query("postfix good.test"));
    assert_eq!(
        reply.ok().as_deref(),
        Some(ENFORCE),
        "{}",
        daemon.log_text()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(idle);
}

/// Issue 18.11: after "mta-sts daemon stopped" the process exits at once (it used to linger
/// 1.3–1.8 s waiting for runtime threads).
#[test]
fn sigterm_exits_promptly_after_stopped() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[cache]\nstore = \"sqlite\"\npath = \"{}\"\n",
        resolver_section(&world),
        dir.path().join("cache.db").display()
    );
    world.add_domain("slow.test", |d| {
        d.sts_id("1").mx(10, "mail.slow.test").policy_behavior(
            mta_sts_testkit::HostBehavior::policy(
                "version: STSv1\nmode: enforce\nmx: mail.slow.test\nmax_age: 86400\n",
            )
            .delay(Duration::from_secs(5)),
        )
    });
    let body = format!("{body}[defaults]\nbudget = \"300ms\"\n");
    let mut daemon = DaemonProc::start(dir.path(), "", &body, &[]);
    assert_eq!(daemon.query("postfix good.test"), ENFORCE);
    assert_eq!(daemon.http_get("/v1/policy/testing.test").0, 200);
    // A lookup still running in the background (past its budget) at shutdown.
    assert_eq!(daemon.query("postfix slow.test"), "NOTFOUND ");
    daemon.signal("TERM");
    let mut stopped_at = None;
    assert!(eventually(Duration::from_secs(10), || {
        if stopped_at.is_none() && daemon.log_text().contains("mta-sts daemon stopped") {
            stopped_at = Some(Instant::now());
        }
        stopped_at.is_some()
    }));
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exits");
    let lingered = stopped_at.map(|t| t.elapsed()).unwrap_or_default();
    eprintln!("exited {lingered:?} after \"stopped\"");
    assert!(status.success(), "{status:?}");
    assert!(
        lingered < Duration::from_millis(700),
        "lingered {lingered:?} after \"mta-sts daemon stopped\""
    );
}

/// Issue 18.10: `-v` gives one line per query with the domain, the answer, where it came
/// from and the time, and none of the DNS/TLS/HTTP libraries' internals; a domain without
/// an `_mta-sts` record is no error in the API.
#[test]
fn verbose_logs_one_line_per_query_and_no_library_internals() {
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .domain("nosts.test", |d| d.mx(10, "mail.nosts.test"))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let socketmap: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[socketmap]\nlisten = \"{socketmap}\"\n[http]\nlisten = \"{http}\"\n{}[cache]\nstore = \"memory\"\n",
            resolver_section(&world)
        ),
    )
    .unwrap();
    // No RUST_LOG: the level comes from -v alone.
    let daemon = DaemonProc::spawn_args(config, socketmap, http, &["-v"], &[("RUST_LOG", "")]);
    let before = daemon.log_text().lines().count();
    assert_eq!(daemon.query("postfix good.test"), ENFORCE);
    assert_eq!(daemon.query("postfix good.test"), ENFORCE);
    assert_eq!(daemon.query("postfix nosts.test"), "NOTFOUND ");
    let log = daemon.log_text();
    let new: Vec<&str> = log.lines().skip(before).collect();
    let queries: Vec<&&str> = new.iter().filter(|l| l.contains(" query ")).collect();
    assert_eq!(queries.len(), 3, "{log}");
    for (line, domain, answer, source) in [
        (queries[0], "good.test", ENFORCE, "fetch"),
        (queries[1], "good.test", ENFORCE, "cache"),
        (queries[2], "nosts.test", "NOTFOUND ", "negative"),
    ] {
        assert!(line.contains("DEBUG"), "{line}");
        assert!(line.contains(&format!("domain={domain}")), "{line}");
        assert!(line.contains(&format!("answer=\"{answer}\"")), "{line}");
        assert!(line.contains(&format!("source={source}")), "{line}");
        assert!(line.contains("ms="), "{line}");
    }
    // Library internals (hickory's DNS messages, rustls, hyper) stay out of -v: the three
    // queries and the first fetch of good.test (DNS, HTTPS) make a handful of lines at most.
    assert!(new.len() <= 8, "{} lines:\n{}", new.len(), new.join("\n"));
    for noisy in ["hickory", "rustls", "hyper", "Message", "handshake"] {
        assert!(
            new.iter().all(|l| !l.contains(noisy)),
            "{noisy}:\n{}",
            new.join("\n")
        );
    }

    // No `_mta-sts` record: no policy, and no error.
    let (status, json) = daemon.http_get("/v1/policy/nosts.test");
    assert_eq!(status, 200, "{json}");
    assert!(json.contains("\"last_error\":null"), "{json}");
}
