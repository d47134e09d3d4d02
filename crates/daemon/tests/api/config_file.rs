//! The TOML configuration (docs/design.md §5 config sketch).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mta_sts_daemon::config::{
    Config, ConfigError, DEFAULT_CONFIG_PATH, DaneMode, Listen, OnFailure, StoreKind,
};

const SKETCH: &str = r#"
# daemon.toml
[socketmap]
listen = "127.0.0.1:8461"          # or "unix:/run/mta-sts/socketmap.sock"
socket_mode = "0666"
[http]
listen = "127.0.0.1:8462"          # /v1/policy/{domain}, /metrics, /healthz
[resolver]
nameservers = ["127.0.0.1:53"]     # default: system configuration
ca_file = "/etc/mta-sts/extra-ca.pem"
connect_to = ["mta-sts.example.test:443:127.0.0.1:8443"]
timeout = "10s"
[cache]
store = "sqlite"                   # "sqlite" | "redis" | "memory"
path = "/var/lib/mta-sts/cache.db"
redis_url = "redis://127.0.0.1:6379/0"
refresh = "24h"
[defaults]                         # zone settings used when the socketmap name is no zone
strict_testing = false
require_sni = true
tlsrpt = false
on_failure = "notfound"            # or "temp"
budget = "5s"
dane = "off"                       # or "defer"
[zones.strict]
strict_testing = true
"#;

#[test]
fn config_empty_file_is_valid_and_default() {
    let config = Config::parse("").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(
        config.socketmap.listen,
        Listen::Tcp("127.0.0.1:8461".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        config.http.listen,
        Listen::Tcp("127.0.0.1:8462".parse().unwrap())
    );
    assert_eq!(config.socketmap.socket_mode, 0o666);
    assert_eq!(config.defaults.budget, Duration::from_secs(5));
    assert!(config.defaults.require_sni);
    assert_eq!(config.defaults.on_failure, OnFailure::NotFound);
    assert_eq!(config.cache.store, StoreKind::Sqlite);
    assert_eq!(config.resolver.timeout, Duration::from_secs(10));
    assert_eq!(DEFAULT_CONFIG_PATH, "/etc/mta-sts/daemon.toml");
}

#[test]
fn config_every_key_of_the_sketch_parses() {
    let config = Config::parse(SKETCH).unwrap();
    assert_eq!(
        config.resolver.nameservers,
        vec!["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        config.resolver.ca_file,
        Some(PathBuf::from("/etc/mta-sts/extra-ca.pem"))
    );
    assert_eq!(config.resolver.connect_to.len(), 1);
    assert_eq!(
        config.cache.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379/0")
    );
    assert_eq!(config.cache.refresh, Duration::from_secs(86400));
    assert_eq!(config.cache.refresh_concurrency, 32);
    assert!(config.zone("strict").strict_testing);
    assert!(!config.zone("postfix").strict_testing);
    // A zone inherits unset keys from [defaults].
    assert_eq!(config.zone("strict").budget, Duration::from_secs(5));
}

#[test]
fn config_other_values() {
    let config = Config::parse(
        r#"
[socketmap]
listen = "unix:/run/mta-sts/socketmap.sock"
socket_mode = 0o660
idle_timeout = "2m"
max_connections = 10
[resolver]
nameservers = ["192.0.2.53", "[::1]:5353"]
[cache]
store = "redis"
redis_url = "redis://cache/0"
refresh_concurrency = 4
[defaults]
on_failure = "temp"
dane = "defer"
budget = "1500ms"
tlsrpt = true
[zones.nosni]
require_sni = false
"#,
    )
    .unwrap();
    assert_eq!(
        config.socketmap.listen,
        Listen::Unix("/run/mta-sts/socketmap.sock".into())
    );
    assert_eq!(config.socketmap.socket_mode, 0o660);
    assert_eq!(config.socketmap.idle_timeout, Duration::from_secs(120));
    assert_eq!(
        config.resolver.nameservers[0],
        "192.0.2.53:53".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.cache.refresh_concurrency, 4);
    assert_eq!(config.defaults.on_failure, OnFailure::Temp);
    assert_eq!(config.defaults.dane, DaneMode::Defer);
    assert_eq!(config.defaults.budget, Duration::from_millis(1500));
    let nosni = config.zone("nosni");
    assert!(!nosni.require_sni);
    assert!(nosni.tlsrpt, "inherited from [defaults]");
}

fn parse_error(text: &str) -> String {
    match Config::parse(text) {
        Err(err) => err.to_string(),
        Ok(_) => panic!("{text:?} should not parse"),
    }
}

#[test]
fn config_unknown_key_error_names_it_and_its_line() {
    let msg = parse_error("[defaults]\nrequire_sni = true\nstrict_tesitng = true\n");
    assert!(msg.contains("strict_tesitng"), "{msg}");
    assert!(msg.starts_with("daemon.toml:3:"), "{msg}");
    assert!(
        msg.contains("strict_testing"),
        "lists the expected keys: {msg}"
    );
    let msg = parse_error("[socketmap]\nlisten = \"127.0.0.1:1\"\n[bogus]\n");
    assert!(
        msg.contains("bogus") && msg.starts_with("daemon.toml:3:"),
        "{msg}"
    );
    let msg = parse_error("[zones.x]\nbudgett = \"1s\"\n");
    assert!(
        msg.contains("budgett") && msg.starts_with("daemon.toml:2:"),
        "{msg}"
    );
}

#[test]
fn config_bad_duration_error() {
    let msg = parse_error("[defaults]\nbudget = \"5 parsecs\"\n");
    assert!(msg.starts_with("daemon.toml:2:"), "{msg}");
    assert!(
        msg.contains("5 parsecs") && msg.contains("\"10s\""),
        "{msg}"
    );
}

#[test]
fn config_bad_values() {
    assert!(parse_error("[socketmap]\nlisten = \"localhost\"\n").contains("unix:/path"));
    assert!(parse_error("[socketmap]\nsocket_mode = \"rw\"\n").contains("octal"));
    assert!(parse_error("[defaults]\non_failure = \"retry\"\n").contains("retry"));
    assert!(parse_error("[cache]\nstore = \"redis\"\n").contains("redis_url"));
    assert!(parse_error("[cache]\nrefresh_concurrency = 0\n").contains("at least 1"));
    assert!(parse_error("[resolver]\nconnect_to = [\"a:b\"]\n").contains("HOST:PORT:ADDR:PORT"));
    assert!(parse_error("[resolver]\nnameservers = [\"dns.example\"]\n").contains("IP:PORT"));
}

#[test]
fn config_load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.toml");
    std::fs::write(&path, "[defaults]\nnope = 1\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:2:", path.display())) && msg.contains("nope"),
        "{msg}"
    );
    let missing = Config::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    std::fs::write(&path, "").unwrap();
    assert_eq!(Config::load(&path).unwrap(), Config::default());
}

/// packaging/daemon.toml as shipped.
const SHIPPED: &str = include_str!("../../../../packaging/daemon.toml");

/// The section a line of the shipped file is in: a live `[name]` header or an example one
/// (`#example: [name]`).
fn section_of(line: &str) -> Option<&str> {
    let header = line.strip_prefix("#example: ").unwrap_or(line);
    header.strip_prefix('[')?.strip_suffix(']')
}

/// Issue 18.8: packaging/daemon.toml tells defaults from examples. Each `#key = value` line
/// is the default: uncommented alone, it parses to the same configuration as the file
/// without it (for `[tlsrpt.send]`, whose defaults apply once the section is present, next
/// to the keys it requires). Each `#example: …` line is valid: all of them uncommented
/// together parse. Nothing else is set.
#[test]
fn shipped_daemon_toml_defaults_are_the_defaults_and_examples_parse() {
    const SEND_CONTEXT: &str =
        "[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\nsubmitter = \"mail.example.com\"\n";
    let mut section = "";
    let mut defaults = 0;
    for (number, line) in SHIPPED.lines().enumerate() {
        let at = format!("packaging/daemon.toml:{}: {line}", number + 1);
        if let Some(name) = section_of(line) {
            section = name;
            continue;
        }
        let trimmed = line.trim();
        assert!(
            trimmed.is_empty() || trimmed.starts_with('#'),
            "{at}: only section headers are live"
        );
        let Some(setting) = line.strip_prefix('#') else {
            continue;
        };
        let is_key = setting.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        if !is_key {
            continue;
        }
        defaults += 1;
        let (base, with) = if section == "tlsrpt.send" {
            (
                SEND_CONTEXT.to_owned(),
                format!("{SEND_CONTEXT}{setting}\n"),
            )
        } else {
            (String::new(), format!("[{section}]\n{setting}\n"))
        };
        let expected = Config::parse(&base).expect("context parses");
        let got = Config::parse(&with).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(got, expected, "{at}: not the default; write `#example: …`");
    }
    assert!(defaults > 30, "{defaults} default lines");

    let examples: String = SHIPPED
        .lines()
        .map(|l| l.strip_prefix("#example: ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = Config::parse(&examples).unwrap_or_else(|e| panic!("examples: {e}"));
    assert_ne!(config, Config::default());
    assert!(config.zone("strict").strict_testing);
    assert_eq!(config.socketmap.socket_group.as_deref(), Some("postfix"));
    assert!(config.tlsrpt.send.is_some());
}

/// Values that parse but do not fit are located like syntax errors: at their key's line,
/// else at their table's header, in the form `mta-sts serve --check-config` uses.
#[test]
fn config_misfit_errors_name_the_line_of_the_key() {
    let msg = parse_error("[http]\nlisten = \"127.0.0.1:1\"\n[cache]\n\nstore = \"redis\"\n");
    assert!(
        msg.starts_with("daemon.toml:5:1: [cache] store = \"redis\" needs redis_url"),
        "{msg}"
    );
    let msg = parse_error("[tlsrpt]\nevents = \"/tmp/e.jsonl\"\n[tlsrpt.send]\nfrom = \"x\"\n");
    assert!(
        msg.starts_with("daemon.toml:3:1: [tlsrpt.send] needs submitter"),
        "{msg}"
    );
    let msg = parse_error("[tlsrpt.send]\nsubmitter = \"example.com\"\n");
    assert!(
        msg.starts_with("daemon.toml:1:1: [tlsrpt.send] needs [tlsrpt] events"),
        "{msg}"
    );
}

/// Issue #14: `[cache] max_memory` bounds the resolver's memory cache: a size in bytes or
/// with a unit, "unlimited" or 0 for none, 256 MB by default; anything else is an error at
/// the key's line that says how to write a size.
#[test]
fn cache_max_memory_is_a_size() {
    let max_memory = |value: &str| {
        Config::parse(&format!("[cache]\nmax_memory = {value}\n"))
            .map(|c| c.cache.max_memory)
            .map_err(|e| e.to_string())
    };
    assert_eq!(Config::default().cache.max_memory, Some(256_000_000));
    assert_eq!(max_memory("\"128MB\""), Ok(Some(128_000_000)));
    assert_eq!(max_memory("\"128mb\""), Ok(Some(128_000_000)));
    assert_eq!(max_memory("\"1GiB\""), Ok(Some(1 << 30)));
    assert_eq!(max_memory("\"64 KiB\""), Ok(Some(64 << 10)));
    assert_eq!(max_memory("\"2GB\""), Ok(Some(2_000_000_000)));
    assert_eq!(max_memory("1000000"), Ok(Some(1_000_000)));
    assert_eq!(max_memory("\"unlimited\""), Ok(None));
    assert_eq!(max_memory("0"), Ok(None));
    for bad in [
        "\"128XB\"",
        "\"MB\"",
        "\"-1MB\"",
        "-5",
        "\"1.5GB\"",
        "true",
        "\"99999999999GB\"",
    ] {
        let msg = max_memory(bad).expect_err(bad);
        assert!(msg.starts_with("daemon.toml:2:"), "{bad}: {msg}");
        assert!(msg.contains("size"), "{bad}: {msg}");
    }
}

/// Issue #14: `[cache] flush_window` bounds the SQLite store's power-loss window: 100 ms by
/// default, "0s" for an fsync per commit, never more than 1 s.
#[test]
fn cache_flush_window_is_bounded() {
    let window = |value: &str| {
        Config::parse(&format!("[cache]\nflush_window = {value}\n"))
            .map(|c| c.cache.flush_window)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        Config::default().cache.flush_window,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(window("\"0s\""), Ok(std::time::Duration::ZERO));
    assert_eq!(
        window("\"250ms\""),
        Ok(std::time::Duration::from_millis(250))
    );
    let msg = window("\"5s\"").expect_err("5s is past the bound");
    assert!(msg.contains("at most 1s"), "{msg}");
}

/// Issue 16 item 5: the fleet stores of a postfix-mta-sts-resolver set-up, with the keys
/// the migration converter writes.
#[test]
fn config_redis_sentinel_and_postgres_stores() {
    let config = Config::parse(
        r#"
[cache]
store = "redis_sentinel"
sentinels = ["127.0.0.1:26379", "10.0.0.2:26380", "[::1]:26381", "sentinel.example"]
sentinel_master = "mymaster"
redis_db = 2
redis_password = "master-secret"
sentinel_password = "sentinel-secret"
"#,
    )
    .unwrap();
    let cache = &config.cache;
    assert_eq!(cache.store, StoreKind::RedisSentinel);
    assert_eq!(cache.store.name(), "redis_sentinel");
    let sentinels: Vec<String> = cache.sentinels.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        sentinels,
        [
            "127.0.0.1:26379",
            "10.0.0.2:26380",
            "[::1]:26381",
            "sentinel.example:26379"
        ]
    );
    assert_eq!(cache.sentinel_master.as_deref(), Some("mymaster"));
    assert_eq!(cache.redis_db, 2);
    assert_eq!(
        cache.redis_password.as_ref().map(|p| p.0.as_str()),
        Some("master-secret")
    );
    assert_eq!(
        cache.sentinel_password.as_ref().map(|p| p.0.as_str()),
        Some("sentinel-secret")
    );
    // Passwords never show in Debug output (logs of the configuration).
    let printed = format!("{config:?}");
    assert!(
        !printed.contains("master-secret") && !printed.contains("sentinel-secret"),
        "{printed}"
    );

    // Defaults: database 0, no passwords.
    let config = Config::parse(
        "[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26379\"]\nsentinel_master = \"m\"\n",
    )
    .unwrap();
    assert_eq!(config.cache.redis_db, 0);
    assert_eq!(config.cache.redis_password, None);

    let config = Config::parse(
        "[cache]\nstore = \"postgres\"\npostgres_url = \"postgres://mta-sts:pw@db.example/mta_sts\"\n",
    )
    .unwrap();
    assert_eq!(config.cache.store, StoreKind::Postgres);
    assert_eq!(
        config.cache.postgres_url.as_deref(),
        Some("postgres://mta-sts:pw@db.example/mta_sts")
    );
}

/// A fleet store that is missing a key, or has one that does not parse, is an error at the
/// key's line that shows how to write it.
#[test]
fn config_fleet_store_errors_say_the_fix() {
    let msg = parse_error("[cache]\nstore = \"redis_sentinel\"\nsentinel_master = \"m\"\n");
    assert!(
        msg.starts_with("daemon.toml:2:1: [cache] store = \"redis_sentinel\" needs sentinels")
            && msg.contains("sentinels = [\"127.0.0.1:26379\"]"),
        "{msg}"
    );
    let msg =
        parse_error("[cache]\nstore = \"redis_sentinel\"\nsentinels = [\"127.0.0.1:26379\"]\n");
    assert!(
        msg.starts_with(
            "daemon.toml:2:1: [cache] store = \"redis_sentinel\" needs sentinel_master"
        ) && msg.contains("sentinel_master = \"mymaster\""),
        "{msg}"
    );
    let msg = parse_error(
        "[cache]\nstore = \"redis_sentinel\"\nsentinel_master = \"m\"\nsentinels = [\"127.0.0.1:port\"]\n",
    );
    assert!(
        msg.starts_with("daemon.toml:4:1: [cache] sentinels: `127.0.0.1:port` has no valid port")
            && msg.contains("host:port"),
        "{msg}"
    );
    let msg = parse_error("[cache]\nredis_db = -1\n");
    assert!(
        msg.starts_with("daemon.toml:2:1: [cache] redis_db"),
        "{msg}"
    );
    let msg = parse_error("[cache]\nsentinel_master = \"\"\n");
    assert!(msg.contains("sentinel monitor NAME"), "{msg}");
    let msg = parse_error("[cache]\nstore = \"postgres\"\n");
    assert!(
        msg.starts_with("daemon.toml:2:1: [cache] store = \"postgres\" needs postgres_url")
            && msg.contains("postgres_url = \"postgres://"),
        "{msg}"
    );
    // An unknown store names the valid ones.
    let msg = parse_error("[cache]\nstore = \"postgresql\"\n");
    assert!(
        msg.contains("redis_sentinel") && msg.contains("postgres"),
        "{msg}"
    );
}
