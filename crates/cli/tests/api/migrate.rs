//! `mta-sts migrate config`: postfix-mta-sts-resolver's own configuration files
//! (`testdata/peer-configs/`, from its repository) and the shapes its tests build in Python
//! convert, and the converted files pass `mta-sts daemon --check-config` (PostgreSQL and
//! Redis Sentinel: the emitted text is checked, their stores are another branch's).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::daemon_support::{bin, free_port};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/peer-configs")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run mta-sts")
}

/// Converts `yaml` (written to `dir`), expecting success: (TOML, warning lines).
fn convert(dir: &Path, yaml: &str) -> (String, Vec<String>) {
    let file = dir.join("mta-sts-daemon.yml");
    std::fs::write(&file, yaml).expect("write yaml");
    let out = run(&["migrate", "config", file.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "migrate config failed: {stderr}");
    let warnings = stderr
        .lines()
        .map(|l| {
            l.strip_prefix("mta-sts migrate config: warning: ")
                .unwrap_or_else(|| panic!("not a warning line: {l}"))
                .to_owned()
        })
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), warnings)
}

/// `mta-sts daemon --check-config` on `toml` (with `[http]` on a free port, as the peer
/// has no HTTP API and the default port may be taken by another test).
fn check_config(dir: &Path, toml: &str) -> String {
    let file = dir.join("daemon.toml");
    std::fs::write(
        &file,
        format!("{toml}\n[http]\nlisten = \"127.0.0.1:{}\"\n", free_port()),
    )
    .expect("write toml");
    let out = run(&[
        "daemon",
        "--check-config",
        "--config",
        file.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "check-config refused the converted file:\n{toml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys_of(warnings: &[String]) -> Vec<&str> {
    warnings
        .iter()
        .map(|w| w.split(": ").next().unwrap_or(""))
        .collect()
}

/// The peer's example files (paths moved into a temporary directory) convert and pass
/// `--check-config`; every key without an equivalent gets exactly one warning naming it.
#[test]
fn peer_example_configs_convert_and_pass_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cache.db");
    let sock = dir.path().join("mta-sts.sock");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "internal.yml",
            &["reuse_port", "cache.options.cache_size"],
            "store=memory",
        ),
        ("sqlite.yml", &["reuse_port"], "store=sqlite"),
        ("sqlite_unixsock.yml", &[], "store=sqlite"),
        ("docker-config.yml", &["reuse_port"], "store=sqlite"),
        // What `apt-get install postfix-mta-sts-resolver` puts in /etc on Debian 12.
        ("debian-bookworm.yml", &[], "store=sqlite"),
        (
            "man-example.yml",
            &[
                "reuse_port",
                "cache.options.cache_size",
                "proactive_policy_fetching.grace_ratio",
            ],
            "store=memory",
        ),
    ];
    for (name, warned, store) in cases {
        let text = std::fs::read_to_string(fixture(name))
            .expect("fixture")
            .replace("/var/lib/mta-sts/cache.db", db.to_str().expect("utf-8"))
            .replace("/var/run/mta-sts.sock", sock.to_str().expect("utf-8"));
        let (toml, warnings) = convert(dir.path(), &text);
        assert_eq!(keys_of(&warnings), *warned, "{name}: {warnings:?}");
        let summary = check_config(dir.path(), &toml);
        assert!(summary.contains(store), "{name}: {summary}");
        // The peer's zones do not inherit default_zone: every key is written out.
        if text.lines().any(|l| l.starts_with("zones:")) {
            assert!(
                toml.contains(
                    "[zones.myzone]\nstrict_testing = false\nrequire_sni = true\ntlsrpt = false\n"
                ),
                "{name}: {toml}"
            );
        }
        assert!(toml.contains("budget = \"4s\""), "{name}: {toml}");
    }
    // The UNIX socket file and its mode 0666 (YAML 1.1 octal, as PyYAML reads it).
    let (toml, _) = convert(
        dir.path(),
        &std::fs::read_to_string(fixture("sqlite_unixsock.yml"))
            .expect("fixture")
            .replace("/var/run/mta-sts.sock", sock.to_str().expect("utf-8"))
            .replace("/var/lib/mta-sts/cache.db", db.to_str().expect("utf-8")),
    );
    assert!(
        toml.contains(&format!(
            "listen = \"unix:{}\"\nsocket_mode = \"0666\"",
            sock.display()
        )),
        "{toml}"
    );
}

/// Redis: the converted file passes `--check-config` against a real Redis.
#[test]
fn peer_redis_config_passes_check_config() {
    let Some(redis) =
        mta_sts_testkit::redis::start_or_skip("peer_redis_config_passes_check_config")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = redis.port();
    let text = std::fs::read_to_string(fixture("redis.yml"))
        .expect("fixture")
        .replace(
            "redis://127.0.0.1/0",
            &format!("redis://127.0.0.1:{port}/0"),
        );
    let (toml, warnings) = convert(dir.path(), &text);
    assert_eq!(
        keys_of(&warnings),
        [
            "reuse_port",
            "cache.options.max_connections",
            "cache.options.socket_timeout",
            "cache.options.socket_connect_timeout"
        ]
    );
    let summary = check_config(dir.path(), &toml);
    drop(redis);
    assert!(summary.contains("store=redis"), "{summary}");
}

/// PostgreSQL and Redis Sentinel: the keys of the stores `[cache] store = "postgres"` and
/// `"redis_sentinel"`, which `--check-config` accepts (it connects to neither).
#[test]
fn peer_postgres_and_sentinel_configs_emit_their_store_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (toml, warnings) = convert(
        dir.path(),
        &std::fs::read_to_string(fixture("postgres.yml")).expect("fixture"),
    );
    assert!(
        toml.contains(
            "[cache]\nstore = \"postgres\"\npostgres_url = \"postgres://user@%2Frun%2Fpostgresql/user\"\n"
        ),
        "{toml}"
    );
    assert_eq!(keys_of(&warnings), ["reuse_port"]);
    let summary = check_config(dir.path(), &toml);
    assert!(
        summary.contains("store=postgres postgres_url=<set>"),
        "{summary}"
    );
    let (toml, warnings) = convert(
        dir.path(),
        &std::fs::read_to_string(fixture("redis_sentinel.yml")).expect("fixture"),
    );
    let summary = check_config(dir.path(), &toml);
    assert!(
        summary.contains("store=redis_sentinel sentinels=sentinel1:26379,sentinel2:26379,sentinel3:26379 sentinel_master=mymaster"),
        "{summary}"
    );
    assert!(
        toml.contains(
            "[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"sentinel1:26379\", \"sentinel2:26379\", \"sentinel3:26379\"]\nsentinel_master = \"mymaster\"\nredis_password = \"StrongPassword\"\n"
        ),
        "{toml}"
    );
    assert_eq!(
        keys_of(&warnings),
        [
            "reuse_port",
            "cache.options.max_connections",
            "cache.options.socket_timeout",
            "cache.options.socket_connect_timeout"
        ]
    );
    let (toml, warnings) = convert(
        dir.path(),
        "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: m\n    sentinels: [[\"::1\", 26379]]\n    db: 2\n    sentinel_kwargs: {password: s3, ssl: true}\n",
    );
    assert!(
        toml.contains("sentinels = [\"[::1]:26379\"]\nsentinel_master = \"m\"\nredis_db = 2\nsentinel_password = \"s3\"\n"),
        "{toml}"
    );
    assert_eq!(keys_of(&warnings), ["cache.options.sentinel_kwargs.ssl"]);
}

/// Every key of the peer's man page, set away from its default: each is either in the TOML
/// or named by exactly one warning.
#[test]
fn every_peer_key_maps_or_gets_one_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("c.db");
    let yaml = format!(
        "host: 127.0.0.2\nport: 18461\nreuse_port: yes\nshutdown_timeout: 1.5\ncache_grace: 30\n\
         proactive_policy_fetching:\n  enabled: true\n  interval: 3600\n  concurrency_limit: 7\n  grace_ratio: 4\n\
         cache:\n  type: sqlite\n  options:\n    filename: {}\n    threads: 2\n    timeout: 9\n\
         default_zone:\n  strict_testing: true\n  timeout: 2\n  require_sni: no\n  tlsrpt: on\n\
         zones:\n  strict:\n    strict_testing: true\n  \"odd name\":\n    tlsrpt: true\n    timeout: 0.5\n\
         logging: verbose\n",
        db.display()
    );
    let (toml, warnings) = convert(dir.path(), &yaml);
    assert_eq!(
        keys_of(&warnings),
        [
            "reuse_port",
            "cache.options.threads",
            "cache.options.timeout",
            "proactive_policy_fetching.grace_ratio",
            "logging",
            "cache_grace",
        ],
        "{warnings:#?}"
    );
    for line in [
        "listen = \"127.0.0.2:18461\"",
        "shutdown_timeout = \"1500ms\"",
        &format!("path = \"{}\"", db.display()),
        "refresh = \"1h\"",
        "refresh_concurrency = 7",
        "[defaults]\nstrict_testing = true\nrequire_sni = false\ntlsrpt = true\n",
        "budget = \"2s\"",
        "[zones.strict]\nstrict_testing = true\nrequire_sni = true\ntlsrpt = false\n",
        "[zones.\"odd name\"]\nstrict_testing = false\nrequire_sni = true\ntlsrpt = true\n",
        "budget = \"500ms\"",
    ] {
        assert!(toml.contains(line), "missing {line:?} in:\n{toml}");
    }
    let summary = check_config(dir.path(), &toml);
    assert!(summary.contains("odd name"), "{summary}");
}

/// The shapes the peer's own tests build (tests/test_responder*.py): the empty file (every
/// default), `require_sni: false`, `strict_testing: true`, a UNIX socket with mode 0o666.
#[test]
fn peer_test_shapes_convert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (toml, warnings) = convert(dir.path(), "");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        toml.contains("[socketmap]\nlisten = \"127.0.0.1:8461\"\n"),
        "{toml}"
    );
    assert!(toml.contains("store = \"memory\""), "{toml}");
    check_config(
        dir.path(),
        &toml.replace("127.0.0.1:8461", &format!("127.0.0.1:{}", free_port())),
    );
    let (toml, _) = convert(dir.path(), "port: \"18461\"\nhost: \"::1\"\n");
    assert!(toml.contains("listen = \"[::1]:18461\""), "{toml}");
    let (toml, _) = convert(dir.path(), "default_zone:\n  require_sni: false\n");
    assert!(toml.contains("require_sni = false"), "{toml}");
    let (toml, _) = convert(dir.path(), "default_zone: {strict_testing: True}\n");
    assert!(toml.contains("strict_testing = true"), "{toml}");
    // Python's 0o666 is YAML 1.1's 0666 (or 438); `host`/`port` are ignored next to `path`.
    for mode in ["0666", "438"] {
        let (toml, warnings) = convert(
            dir.path(),
            &format!("path: /tmp/x.sock\nmode: {mode}\nport: 1\n"),
        );
        assert!(
            toml.contains("listen = \"unix:/tmp/x.sock\"\nsocket_mode = \"0666\"\n"),
            "{toml}"
        );
        assert_eq!(keys_of(&warnings), ["port"]);
    }
}

/// A file the peer would not start with is refused with the line and the fix; exit 2.
#[test]
fn unconvertible_files_exit_2_with_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (yaml, expect) in [
        ("port: eighty\n", "line 1: `port` must be an integer"),
        ("port: 70000\n", "line 1: `port`: a TCP port is 1 to 65535"),
        ("cache:\n  type: memcached\n", "line 2: `cache.type`"),
        (
            "cache:\n  type: sqlite\n",
            "`cache.options.filename`: required",
        ),
        (
            "zones:\n  a:\n    timeout: [1]\n",
            "line 3: `zones.a.timeout`",
        ),
        ("host: [\n", "not YAML"),
        // YAML 1.1 has no `0o` octal: PyYAML reads a string, which the peer cannot chmod.
        (
            "path: /tmp/x.sock\nmode: 0o666\n",
            "line 2: `mode` must be an integer",
        ),
    ] {
        let file = dir.path().join("bad.yml");
        std::fs::write(&file, yaml).expect("write");
        let out = run(&["migrate", "config", file.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(stderr.contains(expect), "{yaml}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{yaml}: printed TOML for a refused file"
        );
    }
}

/// `migrate compare` over a UNIX socket and TCP: two of our daemons on one test world give
/// the same answers (exit 0, `--all` lists them); a server that is not there is exit 2
/// naming it.
#[test]
fn compare_over_unix_and_tcp_and_unreachable_servers() {
    use crate::daemon_support::{DaemonProc, resolver_section};
    use mta_sts_testkit::World;
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .start();
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!(
        "{}\n[cache]\nstore = \"memory\"\n",
        resolver_section(&world)
    );
    let tcp = DaemonProc::start(dir.path(), "", &body, &[]);
    let sock = dir.path().join("sm.sock");
    let unix_dir = dir.path().join("unix");
    std::fs::create_dir(&unix_dir).expect("mkdir");
    let config = unix_dir.join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[socketmap]\nlisten = \"unix:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{body}",
            sock.display(),
            free_port()
        ),
    )
    .expect("write");
    let mut unix = Command::new(bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "unix daemon not ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "# mine\ngood.test\n\nnone.test  # no policy\n").expect("write");
    let peer = format!("unix:{}", sock.display());
    let ours = format!("inet:{}", tcp.socketmap);
    let out = run(&[
        "migrate",
        "compare",
        "--all",
        "--peer",
        &peer,
        "--ours",
        &ours,
        list.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = unix.kill();
    let _ = unix.wait();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("same good.test: \"OK secure match=mail.good.test servername=hostname\""),
        "{text}"
    );
    assert!(text.contains("same none.test: \"NOTFOUND \""), "{text}");
    assert!(text.contains("2 destinations: 2 same, 0 differ"), "{text}");

    let closed = format!("inet:127.0.0.1:{}", free_port());
    let out = run(&[
        "migrate",
        "compare",
        "--peer",
        &closed,
        "--ours",
        &ours,
        list.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to --peer {closed}")),
        "{stderr}"
    );
}
