//! The running daemon (`mta_sts_daemon::app::Daemon`) against a testkit world: wiring from
//! the configuration, HTTP API, reload, graceful shutdown, the SQLite warm start, two
//! daemons sharing one Redis, DANE precedence, slow clients.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::Client;
use mta_sts_daemon::app::Daemon;
use mta_sts_daemon::config::{Config, Listen};
use mta_sts_net::ManualClock;
use mta_sts_testkit::{CertKind, HostBehavior, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const ENFORCE: &str = "OK secure match=mail.good.test servername=hostname";

pub(crate) fn world() -> World {
    // TTL 0: the resolver's DNS answer cache must not hide zone changes made mid-test.
    World::builder()
        .default_ttl(0)
        .domain("good.test", |d| d.enforce())
        .domain("testing.test", |d| {
            d.mta_sts("testing", &["mail.testing.test"])
        })
        .domain("none.test", |d| d.mta_sts("none", &[]))
        .domain("badcert.test", |d| {
            d.sts_id("1").policy_behavior(
                mta_sts_testkit::HostBehavior::policy(
                    "version: STSv1\nmode: enforce\nmx: mail.badcert.test\nmax_age: 86400\n",
                )
                .cert(CertKind::WrongName),
            )
        })
        .start()
}

/// A configuration pointing at `world`, listening on free loopback ports.
fn config_text(world: &World, cache: &str, extra: &str) -> String {
    format!(
        r#"
[socketmap]
listen = "127.0.0.1:0"
idle_timeout = "2s"
shutdown_timeout = "3s"
[http]
listen = "127.0.0.1:0"
[resolver]
nameservers = ["{dns}"]
ca_file = "{ca}"
connect_to = ["{connect}"]
timeout = "3s"
dane_require_ad = false
[cache]
{cache}
{extra}
"#,
        dns = world.dns_addr(),
        ca = world.ca_file().display(),
        connect = world.connect_to_any(),
    )
}

pub(crate) fn config(world: &World, cache: &str, extra: &str) -> Config {
    Config::parse(&config_text(world, cache, extra)).expect("test config")
}

pub(crate) async fn query(daemon: &Daemon, request: &str) -> String {
    let mut client = Client::new(daemon.socketmap_listen(), 4096).await;
    client.query(request).await.expect("a reply")
}

/// GET `path` on the HTTP API: (status, body).
async fn http_get(daemon: &Daemon, path: &str) -> (u16, String) {
    let addr = daemon.http_addr().expect("tcp http");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("response in time")
    .expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Longer than our ~120-line rule, on purpose: one daemon's life (start, HTTP API, reload,
/// shutdown) in order, each step asserting on the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiring_http_api_reload_and_graceful_shutdown() {
    let world = world();
    let daemon = Daemon::start(config(&world, "store = \"memory\"", ""))
        .await
        .expect("daemon starts");

    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
    assert_eq!(query(&daemon, "strict testing.test").await, "NOTFOUND ");
    assert_eq!(query(&daemon, "postfix badcert.test").await, "NOTFOUND ");

    // HTTP: policy JSON.
    let (status, body) = http_get(&daemon, "/v1/policy/good.test").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["cached"], true);
    assert_eq!(json["policy"]["mode"], "enforce");
    assert_eq!(json["policy"]["mx"][0], "mail.good.test");
    assert_eq!(json["record_id"], "1");
    assert_eq!(json["socketmap_answer"], ENFORCE);
    assert!(json["expires_at"].as_u64() > json["fetched_at"].as_u64());
    // The last error of a failing domain.
    let (_, body) = http_get(&daemon, "/v1/policy/BADCERT.test.").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["cached"], false);
    assert_eq!(
        json["last_error"]["result_type"], "sts-webpki-invalid",
        "{json}"
    );
    assert_eq!(json["socketmap_answer"], "NOTFOUND ");
    // refresh=1 looks up now: a policy change under a new id is picked up.
    world.add_domain("good.test", |d| {
        d.sts_id("2")
            .policy("version: STSv1\nmode: enforce\nmx: mx2.good.test\nmax_age: 600\n")
    });
    let (_, body) = http_get(&daemon, "/v1/policy/good.test?refresh=1").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["lookup"]["outcome"], "policy", "{json}");
    assert_eq!(json["record_id"], "2", "{json}");
    assert_eq!(json["policy"]["max_age"], 600);
    let (status, _) = http_get(&daemon, "/v1/policy/not a domain").await;
    assert_eq!(status, 400);
    let (status, _) = http_get(&daemon, "/nothing").await;
    assert_eq!(status, 404);

    // Metrics.
    let (status, metrics) = http_get(&daemon, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "mta_sts_socketmap_queries_total{answer=\"ok\"} 1",
        "mta_sts_socketmap_queries_total{answer=\"notfound\"} 3",
        "mta_sts_socketmap_connections_total 4",
        "mta_sts_lookup_duration_seconds_bucket{source=\"network\",le=\"+Inf\"}",
        "mta_sts_fetches_total",
        // The socketmap's lookup and the API's (badcert.test was not cached).
        "mta_sts_lookups_total{outcome=\"unusable\"} 2",
        "mta_sts_cache_entries",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let (status, body) = http_get(&daemon, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // Reload: a new zone and a stricter default, on the connection opened before.
    let mut kept = Client::new(daemon.socketmap_listen(), 4096).await;
    assert_eq!(
        kept.query("strict testing.test").await.as_deref(),
        Some("NOTFOUND ")
    );
    let fetches_before = world.https().request_count("mta-sts.good.test");
    daemon
        .reload(config(
            &world,
            "store = \"memory\"",
            "[zones.strict]\nstrict_testing = true\n[defaults]\nrequire_sni = false\n",
        ))
        .await
        .expect("reload");
    assert_eq!(
        kept.query("strict testing.test").await.as_deref(),
        Some("OK secure match=mail.testing.test"),
        "the open connection sees the new zone"
    );
    assert_eq!(
        kept.query("postfix good.test").await.as_deref(),
        Some("OK secure match=mx2.good.test")
    );
    // Same resolver settings: the memory cache was kept, nothing refetched.
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        fetches_before
    );

    // A reload whose resolver cannot be built is refused; the old settings stay.
    let mut bad = config(&world, "store = \"memory\"", "");
    bad.resolver.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(daemon.reload(bad).await.is_err());
    assert_eq!(
        kept.query("strict testing.test").await.as_deref(),
        Some("OK secure match=mail.testing.test")
    );
    let (_, metrics) = http_get(&daemon, "/metrics").await;
    assert!(
        metrics.contains("mta_sts_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mta_sts_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );

    // Graceful shutdown: an in-flight query (slow policy host) still gets its reply.
    world.add_domain("slow.test", |d| {
        d.sts_id("1").mx(10, "mail.slow.test").policy_behavior(
            mta_sts_testkit::HostBehavior::policy(
                "version: STSv1\nmode: enforce\nmx: mail.slow.test\nmax_age: 86400\n",
            )
            .delay(Duration::from_millis(800)),
        )
    });
    let listen = daemon.socketmap_listen().clone();
    let in_flight = tokio::spawn(async move {
        let mut c = Client::new(&listen, 4096).await;
        c.query("postfix slow.test").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listen = daemon.socketmap_listen().clone();
    let started = std::time::Instant::now();
    daemon.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        in_flight.await.expect("task").as_deref(),
        Some("OK secure match=mail.slow.test"),
        "require_sni = false from the reload is still in force"
    );
    if let Listen::Tcp(addr) = listen {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_warm_start_answers_without_fetching() {
    let world = world();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = format!(
        "store = \"sqlite\"\npath = \"{}\"",
        dir.path().join("cache.db").display()
    );
    let daemon = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("start");
    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), 1);
    daemon.shutdown().await;

    let daemon = Daemon::start(config(&world, &cache, ""))
        .await
        .expect("restart");
    assert_eq!(
        daemon.core().current().lookup.resolver().cache_len(),
        1,
        "warm start"
    );
    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    assert_eq!(
        world.https().request_count("mta-sts.good.test"),
        1,
        "answered from the SQLite store after the restart, no HTTPS fetch"
    );
    daemon.shutdown().await;
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
}

/// Issue #14: `/metrics` shows the refresher's passes, refreshed and failed policies, the
/// last pass's duration and the backlog, with HELP lines, and they move after a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_metrics_move_after_a_refresh_pass() {
    let world = world();
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let daemon = Daemon::start_with_clock(
        config(&world, "store = \"memory\"\nrefresh = \"1h\"", ""),
        clock.clone(),
    )
    .await
    .expect("start");
    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    assert_eq!(query(&daemon, "postfix testing.test").await, "NOTFOUND ");
    let (_, before) = http_get(&daemon, "/metrics").await;
    for name in [
        "mta_sts_refresh_passes_total",
        "mta_sts_refresh_last_pass_duration_seconds",
        "mta_sts_refresh_backlog",
        "mta_sts_refreshes_total",
        "mta_sts_refresh_failures_total",
    ] {
        assert!(
            before.contains(&format!("# HELP {name} ")),
            "{name}: {before}"
        );
    }

    // Both policies are due; testing.test's host now fails.
    world
        .https()
        .set("mta-sts.testing.test", HostBehavior::status(500));
    clock.advance(2 * 3600);
    let generation = daemon.core().current();
    let report = generation.lookup.resolver().refresh_due().await;
    assert_eq!((report.refreshed, report.failed), (1, 1), "{report:?}");

    let (_, after) = http_get(&daemon, "/metrics").await;
    let delta = |name| sample(&after, name) - sample(&before, name);
    assert_eq!(delta("mta_sts_refresh_passes_total"), 1.0, "{after}");
    assert_eq!(delta("mta_sts_refreshes_total"), 1.0, "{after}");
    assert_eq!(delta("mta_sts_refresh_failures_total"), 1.0, "{after}");
    assert!(sample(&after, "mta_sts_refresh_last_pass_duration_seconds") > 0.0);
    assert_eq!(sample(&after, "mta_sts_refresh_backlog"), 0.0);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_defer_answers_dane_only_when_every_mx_has_usable_tlsa() {
    // The testkit DNS is an unsigned authoritative server (no AD bit), so these run with
    // dane_require_ad = false; the AD requirement is tested below against the same server.
    let world = World::builder()
        .domain("dane.test", |d| {
            d.mta_sts("enforce", &["mx1.dane.test", "mx2.dane.test"])
        })
        .start();
    let sha = [0xab_u8; 32];
    world
        .dns()
        .set_tlsa("_25._tcp.mx1.dane.test", &[(3, 1, 1, &sha)]);
    let daemon = Daemon::start(config(
        &world,
        "store = \"memory\"",
        "[zones.dane]\ndane = \"defer\"\n",
    ))
    .await
    .expect("start");
    let secure = "OK secure match=mx1.dane.test:mx2.dane.test servername=hostname";
    // One MX of two has TLSA: MTA-STS stands.
    assert_eq!(query(&daemon, "dane dane.test").await, secure);
    // Every MX has usable TLSA: DANE governs.
    world
        .dns()
        .set_tlsa("_25._tcp.mx2.dane.test", &[(2, 0, 1, &sha)]);
    assert_eq!(query(&daemon, "dane dane.test").await, "OK dane-only");
    // Zones without dane = "defer" ignore TLSA.
    assert_eq!(query(&daemon, "postfix dane.test").await, secure);
    // PKIX usages (0, 1) are unusable for SMTP (RFC 7672 §3.1.3).
    world
        .dns()
        .set_tlsa("_25._tcp.mx2.dane.test", &[(1, 0, 1, &sha)]);
    assert_eq!(query(&daemon, "dane dane.test").await, secure);
    world
        .dns()
        .set_tlsa("_25._tcp.mx2.dane.test", &[(3, 1, 1, &sha)]);
    assert_eq!(query(&daemon, "dane dane.test").await, "OK dane-only");
    // With the AD bit required, the unsigned answers of the test server do not count.
    let mut strict = config(
        &world,
        "store = \"memory\"",
        "[zones.dane]\ndane = \"defer\"\n",
    );
    strict.resolver.dane_require_ad = true;
    daemon.reload(strict).await.expect("reload");
    assert_eq!(query(&daemon, "dane dane.test").await, secure);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_cut_at_the_idle_timeout() {
    let world = world();
    let daemon = Daemon::start(config(&world, "store = \"memory\"", ""))
        .await
        .expect("start");
    let mut client = Client::new(daemon.socketmap_listen(), 4096).await;
    // "17:postfix good.test," one byte every 250 ms would take 5.25 s; idle_timeout is 2 s.
    let request = b"17:postfix good.test,";
    let started = std::time::Instant::now();
    let mut cut = false;
    for byte in request {
        if client.io.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(250), client.io.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => panic!("no reply expected for a partial request"),
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    assert!(cut, "the trickling client was not disconnected");
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4),
        "cut after {elapsed:?}, expected about the 2 s idle timeout"
    );
    daemon.shutdown().await;
}

/// Two daemons sharing one Redis: a policy fetched by one is answered by the other without
/// an HTTPS fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_one_redis() {
    let Some(redis) = mta_sts_testkit::redis::start_or_skip("two_daemons_share_one_redis") else {
        return;
    };
    let world = world();
    let cache = format!(
        "store = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"",
        redis.port()
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
        "daemon b answered from Redis"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// GET `path` with extra raw header lines: (status, headers, body).
async fn http_get_full(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("response in time")
    .expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Issue 12.3: an HTTP connection that sends nothing (or never finishes its headers) is
/// closed after `[http] idle_timeout`; before, it stayed open for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_and_slow_header_connections_are_closed() {
    let world = world();
    let mut config = config(&world, "store = \"memory\"", "");
    config.http.idle_timeout = Duration::from_secs(1);
    let daemon = Daemon::start(config).await.expect("start");
    let addr = daemon.http_addr().expect("tcp");
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut partial = tokio::net::TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    for (what, stream) in [("silent", &mut silent), ("partial headers", &mut partial)] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "{what}: connection still open 8 s after a 1 s idle timeout"
        );
    }
    // The API still answers.
    let (status, _) = http_get(&daemon, "/healthz").await;
    assert_eq!(status, 200);
    daemon.shutdown().await;
}

/// Issue 12.3: more HTTP connections than `[http] max_connections` do not take more
/// descriptors: the extra ones wait in the backlog and the socketmap keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connection_cap_leaves_the_socketmap_alone() {
    let world = world();
    let mut config = config(&world, "store = \"memory\"", "");
    config.http.max_connections = 4;
    let daemon = Daemon::start(config).await.expect("start");
    let addr = daemon.http_addr().expect("tcp");
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fifth is not served while the four hold their slots.
    let fifth = tokio::time::timeout(Duration::from_millis(500), http_get(&daemon, "/healthz"));
    assert!(fifth.await.is_err(), "the fifth connection was served");
    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    drop(idle);
    let (status, _) = http_get(&daemon, "/healthz").await;
    assert_eq!(status, 200);
    daemon.shutdown().await;
}

/// Issue 18.4: the API answers as the socketmap does: a domain never looked up is looked
/// up (within the budget) instead of `"policy": null, "socketmap_answer": "NOTFOUND "`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_policy_looks_up_a_domain_not_yet_cached() {
    let world = world();
    let daemon = Daemon::start(config(&world, "store = \"memory\"", ""))
        .await
        .expect("start");
    let (status, body) = http_get(&daemon, "/v1/policy/good.test").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["socketmap_answer"], ENFORCE, "{json}");
    assert_eq!(json["cached"], true, "{json}");
    assert_eq!(json["policy"]["mode"], "enforce", "{json}");
    // The socketmap agrees, answered from the cache the API filled: no second fetch.
    let fetched = world.https().request_count("mta-sts.good.test");
    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    assert_eq!(world.https().request_count("mta-sts.good.test"), fetched);
    // A domain without a policy: NOTFOUND, as the socketmap says.
    let (_, body) = http_get(&daemon, "/v1/policy/none.test").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["socketmap_answer"], "NOTFOUND ", "{json}");
    daemon.shutdown().await;
}

/// Issue 12.5: lookups through the API are rate-limited (429 with Retry-After), and an
/// address literal is a 400, not a domain to look up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lookups_are_rate_limited_and_address_literals_refused() {
    let world = world();
    let mut config = config(&world, "store = \"memory\"", "");
    config.http.lookup_rate = 1;
    config.http.lookup_burst = 3;
    let daemon = Daemon::start(config).await.expect("start");
    let addr = daemon.http_addr().expect("tcp");
    for literal in ["127.0.0.1", "%5B127.0.0.1%5D", "[::1]", ".good.test"] {
        let (status, _, body) = http_get_full(addr, &format!("/v1/policy/{literal}")).await;
        assert_eq!(status, 400, "{literal}: {body}");
    }
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..8 {
        let (status, head, _) =
            http_get_full(addr, &format!("/v1/policy/d{i}.good.test?refresh=1")).await;
        statuses.push(status);
        if status == 429 {
            retry_after = head
                .lines()
                .find_map(|l| l.strip_prefix("retry-after: "))
                .and_then(|v| v.trim().parse::<u64>().ok());
        }
    }
    assert!(
        statuses.iter().filter(|s| **s == 200).count() <= 4,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        retry_after.is_some_and(|s| (1..=2).contains(&s)),
        "{retry_after:?}"
    );
    // A cached domain costs nothing: answered while the bucket is empty.
    assert_eq!(query(&daemon, "postfix good.test").await, ENFORCE);
    let (status, _, body) = http_get_full(addr, "/v1/policy/good.test").await;
    assert_eq!(status, 200, "{body}");
    daemon.shutdown().await;
}

/// Issue 12.13: the HTTP listener on a UNIX path never deletes a file that is not a socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_unix_listener_leaves_a_regular_file_alone() {
    let world = world();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    std::fs::write(&path, "precious").expect("write");
    let mut config = config(&world, "store = \"memory\"", "");
    config.http.listen = Listen::Unix(path.clone());
    let err = Daemon::start(config).await.expect_err("must not start");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        "precious"
    );
}

/// Issue 18.9: a reload names each key whose change waits for a restart, compared with what
/// the daemon started with, so setting a key back to the value in use is no change; what
/// does reload (`[tlsrpt] events`, zones, `[resolver]`) is never reported as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_names_each_restart_only_key_against_the_values_in_use() {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let start = config(&world, "store = \"memory\"", "");
    let daemon = Daemon::start(start.clone()).await.expect("daemon starts");

    let mut moved = start.clone();
    moved.http.listen = "127.0.0.1:1".parse().unwrap();
    assert_eq!(
        daemon.reload(moved).await.expect("reload"),
        ["[http] listen"]
    );
    // Back to the address in use: nothing pending, although the last file said otherwise.
    assert_eq!(
        daemon.reload(start.clone()).await.expect("reload"),
        Vec::<&str>::new()
    );

    // One [tlsrpt] key changed: that key is named, not a list of four.
    let tlsrpt = |extra: &str| {
        config(
            &world,
            "store = \"memory\"",
            &format!("[tlsrpt]\nevents = \"{}\"\n{extra}", events.display()),
        )
    };
    // `events` reloads: not pending.
    assert_eq!(
        daemon.reload(tlsrpt("")).await.expect("reload"),
        Vec::<&str>::new()
    );
    assert_eq!(
        daemon
            .reload(tlsrpt("flush_interval = \"30s\"\n"))
            .await
            .expect("reload"),
        ["[tlsrpt] flush_interval"]
    );
    assert_eq!(
        daemon
            .reload(tlsrpt(
                "socket_mode = \"0660\"\n[zones.strict]\nstrict_testing = true\n"
            ))
            .await
            .expect("reload"),
        ["[tlsrpt] socket_mode"]
    );
    // The zone of that reload is in force.
    assert!(daemon.core().current().config.zone("strict").strict_testing);
    let mut store = start.clone();
    store.cache.path = dir.path().join("other.db");
    store.socketmap.max_pipelined = 7;
    assert_eq!(
        daemon.reload(store).await.expect("reload"),
        ["[socketmap] max_pipelined", "[cache] path"]
    );
    daemon.shutdown().await;
}

/// A policy store that cannot be opened keeps the store's own error as the source, and the
/// line the daemon prints carries it.
#[tokio::test]
async fn store_open_failure_keeps_its_cause() {
    let config = Config::parse("[cache]\nstore = \"redis\"\nredis_url = \"no-scheme\"\n").unwrap();
    let err = match mta_sts_daemon::app::open_store(&config).await {
        Err(err) => err,
        Ok(_) => panic!("an invalid Redis URL opens"),
    };
    assert!(
        matches!(
            err,
            mta_sts_daemon::DaemonError::Store { kind: "redis", .. }
        ),
        "{err:?}"
    );
    let cause = std::error::Error::source(&err).expect("the store's error");
    let line = mta_sts_net::with_causes(&err);
    assert!(
        line.starts_with("cannot open the redis policy store: ")
            && line.contains(&cause.to_string()),
        "{line}"
    );
}

/// The nice value of the thread whose `/proc/self/task/<tid>` is `task` (stat field 19).
fn nice_of(task: &std::path::Path) -> Option<i32> {
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// Issue #14: the proactive refresher runs on threads of its own, 10 nice levels below the
/// threads that answer the MTAs, so a pass over many due policies does not slow the
/// socketmap down; and it does run there (its first pass starts at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresher_runs_at_lower_cpu_priority() {
    let world = world();
    let daemon = Daemon::start(config(&world, "store = \"memory\"", ""))
        .await
        .expect("start");
    let mut passes = 0.0;
    for _ in 0..100 {
        let (_, metrics) = http_get(&daemon, "/metrics").await;
        passes = sample(&metrics, "mta_sts_refresh_passes_total");
        if passes >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(passes >= 1.0, "the refresher never completed a pass");

    let own = nice_of(std::path::Path::new("/proc/thread-self")).expect("own nice value");
    let tasks: Vec<(String, i32)> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| {
            let path = t.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            Some((name.trim().to_owned(), nice_of(&path)?))
        })
        .collect();
    let refresh: Vec<i32> = tasks
        .iter()
        .filter(|(name, _)| name == "mta-sts-refresh")
        .map(|(_, nice)| *nice)
        .collect();
    assert!(!refresh.is_empty(), "no refresher thread among {tasks:?}");
    let expected = (own + 10).min(19);
    assert!(
        refresh.iter().all(|n| *n == expected),
        "refresher threads at nice {refresh:?}, expected {expected} (daemon at {own})"
    );
    assert!(
        tasks
            .iter()
            .filter(|(name, _)| name == "tokio-runtime-w")
            .all(|(_, n)| *n == own),
        "the daemon's own workers must keep their priority: {tasks:?}"
    );
    daemon.shutdown().await;
}
