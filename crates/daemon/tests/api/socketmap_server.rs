//! The socketmap server at protocol level, with a fixed-map lookup: the §D tables over TCP
//! and UNIX sockets, pipelining, framing errors (§E), limits, timeouts, shutdown.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use mta_sts_daemon::config::{Listen, OnFailure, ZoneSettings, Zones};
use mta_sts_daemon::lookup::{LookupResult, PolicyLookup};
use mta_sts_daemon::server::{ServerError, ServerOptions, SocketmapServer};
use mta_sts_socketmap::netstring::encode;
use tokio::io::AsyncWriteExt;

fn good() -> LookupResult {
    LookupResult::Policy(policy(
        "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400",
    ))
}

#[tokio::test]
async fn socketmap_peer_tables_over_tcp_and_unix_all_read_sizes() {
    let lookup = Arc::new(FixedLookup::peer());
    run_tables(lookup.clone()).await;
    // Dot keys and address literals never reached the lookup.
    let calls = lookup.calls();
    assert!(
        calls
            .iter()
            .all(|d| !d.starts_with('.') && !d.contains(':') && !d.contains("1.2.3.4")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn socketmap_junk_keys_never_looked_up() {
    let lookup = Arc::new(FixedLookup::default());
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        lookup.clone(),
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    for req in [
        "postfix ::1",
        "postfix [ipv6:::1]",
        "postfix good.test x",
        "postfix ",
        "good.test",
        "postfix [1.2.3.4]",
        "postfix 127.0.0.1",
        "postfix [::1]",
        "postfix .example.com",
    ] {
        assert_eq!(c.query(req).await.as_deref(), Some(NOTFOUND), "{req}");
    }
    assert!(lookup.calls().is_empty(), "{:?}", lookup.calls());
    server.stop().await;
}

#[tokio::test]
async fn socketmap_pipelined_replies_in_order() {
    let lookup = Arc::new(
        FixedLookup::default()
            .with(
                "slow.test",
                Duration::from_millis(600),
                LookupResult::NoPolicy,
            )
            .with("slow2.test", Duration::from_millis(600), good())
            .with("fast.test", Duration::ZERO, good()),
    );
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        lookup.clone(),
    )
    .await;
    let mut c = Client::new(&server.listen, 16).await;
    let mut wire = Vec::new();
    for req in [
        "postfix slow.test",
        "postfix fast.test",
        "postfix slow2.test",
        "postfix fast.test",
        "postfix 1.2.3.4",
    ] {
        wire.extend(encode(req.as_bytes()));
    }
    let started = Instant::now();
    c.send_raw(&wire).await;
    let sec = "OK secure match=mail.loc servername=hostname";
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND)); // slow.test first
    assert_eq!(c.reply().await.as_deref(), Some(sec));
    assert_eq!(c.reply().await.as_deref(), Some(sec));
    assert_eq!(c.reply().await.as_deref(), Some(sec));
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND));
    // The two slow lookups ran concurrently: well under 2 × 600 ms.
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    // The fast lookups finished while the first slow one was still running.
    assert_eq!(lookup.finished.load(Ordering::SeqCst), 4);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_requests_split_at_every_byte() {
    let lookup = Arc::new(FixedLookup::default().with("good.loc", Duration::ZERO, good()));
    let server = start(tcp(), ServerOptions::default(), Zones::default(), lookup).await;
    let mut c = Client::new(&server.listen, 1).await;
    let wire: Vec<u8> = ["postfix good.loc", "postfix nope.loc"]
        .iter()
        .flat_map(|r| encode(r.as_bytes()))
        .collect();
    for byte in &wire {
        c.send_raw(std::slice::from_ref(byte)).await;
        c.io.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        c.reply().await.as_deref(),
        Some("OK secure match=mail.loc servername=hostname")
    );
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND));
    // Leading zeros, as the peer accepts.
    c.send_raw(b"00016:postfix good.loc,").await;
    assert_eq!(
        c.reply().await.as_deref(),
        Some("OK secure match=mail.loc servername=hostname")
    );
    server.stop().await;
}

#[tokio::test]
async fn socketmap_corrupt_netstring_closes_connection() {
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::peer()),
    )
    .await;
    // E2: terminator replaced by "!".
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"13:test good.loc!").await;
    assert!(c.closed_without_reply().await);
    // Length mismatch (vectors §K "5:abc,") and a non-digit length.
    for bad in [&b"5:abc,"[..], b"x:abc,", b":,"] {
        let mut c = Client::new(&server.listen, 4096).await;
        c.send_raw(bad).await;
        if bad == b"5:abc," {
            // Needs more bytes to be sure; send the rest of a wrong frame.
            c.send_raw(b"zz").await;
        }
        assert!(c.closed_without_reply().await, "{bad:?}");
    }
    // A valid request before the corruption is still answered, then the connection closes.
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"13:test good.loc,13:test good.loc!").await;
    assert_eq!(
        c.reply().await.as_deref(),
        Some("OK secure match=mail.loc servername=hostname")
    );
    assert_eq!(c.reply().await, None);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_non_utf8_gets_perm_then_close() {
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(&encode(b"postfix \xff\xfe.test")).await;
    assert_eq!(
        c.reply().await.as_deref(),
        Some("PERM request is not valid UTF-8")
    );
    assert_eq!(c.reply().await, None);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_empty_dialog_and_early_disconnect_are_harmless() {
    let lookup =
        Arc::new(FixedLookup::default().with("good.loc", Duration::from_millis(100), good()));
    let server = start(tcp(), ServerOptions::default(), Zones::default(), lookup).await;
    // E1: connect and close.
    drop(connect(&server.listen).await);
    // E3: send a request and close at once.
    for _ in 0..20 {
        let mut io = connect(&server.listen).await;
        io.write_all(b"13:test good.loc,").await.unwrap();
        drop(io);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::new(&server.listen, 4096).await;
    assert_eq!(
        c.query("test good.loc").await.as_deref(),
        Some("OK secure match=mail.loc servername=hostname")
    );
    // E4: two pipelined identical requests, identical replies.
    c.send_raw(b"13:test good.loc,13:test good.loc,").await;
    assert_eq!(c.reply().await, c.reply().await);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_request_over_64k_closes_connection() {
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    // Exactly 64 KiB is accepted (a junk key: NOTFOUND).
    let mut c = Client::new(&server.listen, 4096).await;
    let mut big = b"postfix ".to_vec();
    big.resize(65536, b'a');
    c.send_raw(&encode(&big)).await;
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND));
    // One byte more is refused as soon as the length is read.
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"65537:postfix ").await;
    assert!(c.closed_without_reply().await);
    // So is a length with too many digits.
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"1000000000:").await;
    assert!(c.closed_without_reply().await);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_thousand_concurrent_connections() {
    let lookup =
        Arc::new(FixedLookup::default().with("good.loc", Duration::from_millis(50), good()));
    let server = start(tcp(), ServerOptions::default(), Zones::default(), lookup).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(Client::new(&server.listen, 4096).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in clients {
        tasks.spawn(async move {
            let a = c.query("postfix good.loc").await;
            let b = c.query("postfix other.loc").await;
            (a, b, c)
        });
    }
    let mut served = 0;
    let mut keep = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (a, b, c) = joined.unwrap();
        assert_eq!(
            a.as_deref(),
            Some("OK secure match=mail.loc servername=hostname")
        );
        assert_eq!(b.as_deref(), Some(NOTFOUND));
        keep.push(c); // all 1000 stay open at once
        served += 1;
    }
    assert_eq!(served, 1000);
    drop(keep);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_connection_cap_queues_extra_clients_while_all_are_busy() {
    let options = ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    };
    let lookup =
        Arc::new(FixedLookup::default().with("slow.test", Duration::from_millis(1500), good()));
    let server = start(tcp(), options, Zones::default(), lookup).await;
    let mut a = Client::new(&server.listen, 4096).await;
    let mut b = Client::new(&server.listen, 4096).await;
    a.send("p slow.test").await;
    b.send("p slow.test").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = Client::new(&server.listen, 4096).await;
    c.send("p x.test").await;
    // Both slots are busy (lookups in flight): nothing to evict, the third waits.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.reply())
            .await
            .is_err()
    );
    // Busy connections are never evicted: both get their replies.
    assert_eq!(a.reply().await.as_deref(), Some(SECURE));
    assert_eq!(b.reply().await.as_deref(), Some(SECURE));
    // Then one of them, now idle, makes room for the third.
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND));
    server.stop().await;
}

/// Issue 12.4: with every slot held by idle connections, a new client is served at once by
/// evicting the longest-idle connection (before: it waited in the backlog until an idle
/// timeout freed a slot).
#[tokio::test]
async fn socketmap_full_server_evicts_the_longest_idle_connection() {
    let options = ServerOptions {
        max_connections: 3,
        ..ServerOptions::default()
    };
    let server = start(
        tcp(),
        options,
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut c = Client::new(&server.listen, 4096).await;
        assert_eq!(c.query("p x.test").await.as_deref(), Some(NOTFOUND));
        holders.push(c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The newest holder sends again: still the least idle.
    assert_eq!(
        holders[2].query("p x.test").await.as_deref(),
        Some(NOTFOUND)
    );
    let started = Instant::now();
    let mut newcomer = Client::new(&server.listen, 4096).await;
    let reply = tokio::time::timeout(Duration::from_secs(5), newcomer.query("p x.test")).await;
    assert_eq!(
        reply.ok().flatten().as_deref(),
        Some(NOTFOUND),
        "a new client is served while every slot is held by an idle connection"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The longest idle (the first) was closed; the others still work.
    assert!(holders[0].closed_without_reply().await);
    assert_eq!(
        holders[1].query("p x.test").await.as_deref(),
        Some(NOTFOUND)
    );
    server.stop().await;
}

/// Issue 12.4: an empty request (`0:,`, never sent by Postfix) is answered PERM and the
/// connection closed, so it cannot be used to hold a slot (before: `NOTFOUND ` and the
/// connection stayed open).
#[tokio::test]
async fn socketmap_empty_request_gets_perm_and_close() {
    let server = start(
        tcp(),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"0:,").await;
    assert_eq!(c.reply().await.as_deref(), Some("PERM empty request"));
    assert_eq!(c.reply().await, None, "closed after the reply");
    // A real query before it is still answered first.
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"8:p x.test,0:,").await;
    assert_eq!(c.reply().await.as_deref(), Some(NOTFOUND));
    assert_eq!(c.reply().await.as_deref(), Some("PERM empty request"));
    assert_eq!(c.reply().await, None);
    server.stop().await;
}

/// Issue 12.4: the per-peer limit (TCP source address). A peer at its limit evicts its own
/// longest-idle connection, never another peer's; with none of its own idle, it is refused.
#[tokio::test]
async fn socketmap_per_peer_limit_evicts_the_peers_longest_idle_or_refuses() {
    let options = ServerOptions {
        max_connections: 100,
        max_per_peer: 2,
        ..ServerOptions::default()
    };
    let lookup =
        Arc::new(FixedLookup::default().with("slow.test", Duration::from_millis(1500), good()));
    let server = start(tcp(), options, Zones::default(), lookup).await;
    let other: std::net::Ipv4Addr = "127.0.0.2".parse().unwrap();
    let me: std::net::Ipv4Addr = "127.0.0.1".parse().unwrap();
    // The longest idle connection of all belongs to another peer.
    let mut b1 = Client::from_source(&server.listen, other).await;
    assert_eq!(b1.query("p x.test").await.as_deref(), Some(NOTFOUND));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut a1 = Client::from_source(&server.listen, me).await;
    assert_eq!(a1.query("p x.test").await.as_deref(), Some(NOTFOUND));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut a2 = Client::from_source(&server.listen, me).await;
    assert_eq!(a2.query("p x.test").await.as_deref(), Some(NOTFOUND));
    // A third from 127.0.0.1: its own longest idle (a1) goes.
    let mut a3 = Client::from_source(&server.listen, me).await;
    assert_eq!(a3.query("p x.test").await.as_deref(), Some(NOTFOUND));
    assert!(a1.closed_without_reply().await);
    assert_eq!(b1.query("p x.test").await.as_deref(), Some(NOTFOUND));
    assert_eq!(a2.query("p x.test").await.as_deref(), Some(NOTFOUND));
    // Both of 127.0.0.1's connections busy: a fourth is refused at once, not queued.
    a2.send("p slow.test").await;
    a3.send("p slow.test").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut a4 = Client::from_source(&server.listen, me).await;
    a4.send_raw(b"8:p x.test,").await;
    assert!(a4.closed_without_reply().await);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a2.reply().await.as_deref(), Some(SECURE));
    assert_eq!(a3.reply().await.as_deref(), Some(SECURE));
    // Another peer is not affected.
    let mut b2 = Client::from_source(&server.listen, other).await;
    assert_eq!(b2.query("p x.test").await.as_deref(), Some(NOTFOUND));
    server.stop().await;
}

#[tokio::test]
async fn socketmap_idle_client_disconnected_after_idle_timeout() {
    let options = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = start(
        tcp(),
        options,
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    assert_eq!(c.query("p x.test").await.as_deref(), Some(NOTFOUND));
    let started = Instant::now();
    assert!(c.closed_without_reply().await);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // Half a request sitting there is idle too (slow-loris).
    let mut c = Client::new(&server.listen, 4096).await;
    c.send_raw(b"100:postfix").await;
    assert!(c.closed_without_reply().await);
    // A slow lookup in progress is not idleness.
    server.stop().await;
    let lookup =
        Arc::new(FixedLookup::default().with("slow.test", Duration::from_millis(700), good()));
    let options = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = start(tcp(), options, Zones::default(), lookup).await;
    let mut c = Client::new(&server.listen, 4096).await;
    assert_eq!(
        c.query("p slow.test").await.as_deref(),
        Some("OK secure match=mail.loc servername=hostname")
    );
    server.stop().await;
}

#[tokio::test]
async fn socketmap_unix_socket_mode_0666_and_stale_file_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socketmap.sock");
    // A stale socket file left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = start(
        Listen::Unix(path.clone()),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o666, "{mode:o}");
    let mut c = Client::new(&server.listen, 1).await;
    assert_eq!(c.query("p x.test").await.as_deref(), Some(NOTFOUND));
    // A live socket is not taken over.
    let second = SocketmapServer::bind(
        &Listen::Unix(path.clone()),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    assert!(matches!(second, Err(ServerError::SocketPathInUse { .. })));
    server.stop().await;
    assert!(!path.exists(), "socket file removed on shutdown");
    // A regular file is never deleted.
    std::fs::write(&path, "data").unwrap();
    let third = SocketmapServer::bind(
        &Listen::Unix(path.clone()),
        ServerOptions::default(),
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    assert!(matches!(third, Err(ServerError::SocketPathInUse { .. })));
    // Other modes are applied as configured.
    let path = dir.path().join("other.sock");
    let options = ServerOptions {
        socket_mode: 0o660,
        ..ServerOptions::default()
    };
    let server = start(
        Listen::Unix(path.clone()),
        options,
        Zones::default(),
        Arc::new(FixedLookup::default()),
    )
    .await;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o660
    );
    server.stop().await;
}

#[tokio::test]
async fn socketmap_budget_answers_from_cache_then_background_lookup_finishes() {
    let cached = policy("version: STSv1\nmode: enforce\nmx: cached.slow.test\nmax_age: 86400");
    let lookup = Arc::new(
        FixedLookup::default()
            .with("slow.test", Duration::from_millis(800), good())
            .cached_policy("slow.test", cached)
            .with("nocache.test", Duration::from_millis(800), good()),
    );
    let budget = ZoneSettings {
        budget: Duration::from_millis(200),
        ..ZoneSettings::default()
    };
    let temp = ZoneSettings {
        on_failure: OnFailure::Temp,
        ..budget.clone()
    };
    let zones = Zones::new(budget).with_zone("temp", temp);
    let server = start(
        tcp(),
        ServerOptions::default(),
        zones,
        lookup.clone() as Arc<dyn PolicyLookup>,
    )
    .await;
    let mut c = Client::new(&server.listen, 4096).await;
    let started = Instant::now();
    assert_eq!(
        c.query("postfix slow.test").await.as_deref(),
        Some("OK secure match=cached.slow.test servername=hostname")
    );
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        c.query("postfix nocache.test").await.as_deref(),
        Some(NOTFOUND)
    );
    assert_eq!(
        c.query("temp nocache.test").await.as_deref(),
        Some("TEMP MTA-STS policy for nocache.test unavailable: lookup exceeded the query budget")
    );
    // The lookups went on in the background.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(lookup.finished.load(Ordering::SeqCst), 3);
    server.stop().await;
}

#[tokio::test]
async fn socketmap_failed_lookup_per_on_failure() {
    let failed = LookupResult::Failed {
        reason: "DNS timeout".into(),
    };
    let lookup = Arc::new(FixedLookup::default().with("down.test", Duration::ZERO, failed));
    let zones = Zones::default().with_zone(
        "temp",
        ZoneSettings {
            on_failure: OnFailure::Temp,
            ..ZoneSettings::default()
        },
    );
    let server = start(tcp(), ServerOptions::default(), zones, lookup).await;
    let mut c = Client::new(&server.listen, 4096).await;
    assert_eq!(
        c.query("postfix down.test").await.as_deref(),
        Some(NOTFOUND)
    );
    assert_eq!(
        c.query("temp down.test").await.as_deref(),
        Some("TEMP MTA-STS policy for down.test unavailable: DNS timeout")
    );
    server.stop().await;
}

#[tokio::test]
async fn socketmap_graceful_shutdown_drains_then_closes() {
    let lookup = Arc::new(
        FixedLookup::default()
            .with("short.test", Duration::from_millis(200), good())
            .with("hang.test", Duration::from_secs(30), good()),
    );
    let options = ServerOptions {
        shutdown_timeout: Duration::from_millis(1000),
        ..ServerOptions::default()
    };
    let zones = Zones::new(ZoneSettings {
        budget: Duration::from_secs(60),
        ..ZoneSettings::default()
    });
    let server = start(tcp(), options, zones, lookup).await;
    let mut idle = Client::new(&server.listen, 4096).await;
    assert!(idle.query("p x.test").await.is_some());
    let mut short = Client::new(&server.listen, 4096).await;
    short.send("p short.test").await;
    let mut hang = Client::new(&server.listen, 4096).await;
    hang.send_raw(b"11:p hang.test,11:p hang.test,11:p hang.test,")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listen = server.listen.clone();
    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    // E7: the idle client reads EOF; the in-flight short query is answered first.
    assert!(idle.closed_without_reply().await);
    assert_eq!(
        short.reply().await.as_deref(),
        Some("OK secure match=mail.loc servername=hostname")
    );
    assert_eq!(short.reply().await, None);
    // Hung lookups: EOF once the shutdown timeout has passed.
    assert!(hang.closed_without_reply().await);
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // No longer accepting.
    if let Listen::Tcp(addr) = listen {
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
