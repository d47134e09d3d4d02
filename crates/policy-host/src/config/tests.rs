//! `serve.toml` as a whole: defaults, errors with file, line and fix, and the key lists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mta_sts::Mode;

use super::*;

#[test]
fn minimal_and_defaults() {
    let c = ServeConfig::parse(
        "[[domain]]\nname = \"example.com\"\nmode = \"enforce\"\nmx = [\"mx.example.com\"]\n",
        None,
    )
    .unwrap();
    assert_eq!(c.listen, vec!["0.0.0.0:443".parse().unwrap()]);
    assert_eq!(c.domains[0].max_age, DEFAULT_MAX_AGE);
}

#[test]
fn errors_name_line_and_fix() {
    let e = ServeConfig::parse(
        "listen = \"127.0.0.1:0\"\n\n[[domain]]\nname = \"example.com\"\nmode = \"Enforce\"\n",
        Some(Path::new("/x/serve.toml")),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("/x/serve.toml:5:"), "{e}");
    assert!(e.contains("\"enforce\""), "{e}");
    let e = ServeConfig::parse("lisen = \"1\"\n", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("serve.toml:1:1"), "{e}");
    assert!(e.contains("lisen"), "{e}");
    let e = ServeConfig::parse(
        "[[domain]]\nname = \"a.example\"\nmode = \"enforce\"\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs at least one `mx`"), "{e}");
}

#[test]
fn defaults_apply_and_duplicates_refused() {
    let c = ServeConfig::parse(
        "[default]\nmode = \"testing\"\nmx = [\"*.example.net\"]\ndomains = [\"a.test\", \"b.test\"]\n[[domain]]\nname = \"c.test\"\nmax_age = 86400\n",
        None,
    )
    .unwrap();
    assert_eq!(c.domains.len(), 3);
    assert!(c.domains.iter().all(|d| d.mode == Mode::Testing));
    let e = ServeConfig::parse(
        "[default]\nmode = \"none\"\ndomains = [\"a.test\"]\n[[domain]]\nname = \"A.test\"\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("configured twice"), "{e}");
}

#[test]
fn tlsrpt_store_and_spool() {
    let base = "[[domain]]\nname = \"a.test\"\nmode = \"enforce\"\nmx = [\"mx.a.test\"]\n";
    let parse = |extra: &str| {
        ServeConfig::parse(
            &format!("{base}{extra}"),
            Some(Path::new("/etc/m/serve.toml")),
        )
    };
    let c = parse("[tlsrpt]\nstore = \"reports.db\"\n").unwrap();
    let t = c.tlsrpt.unwrap();
    assert_eq!(t.store.as_deref(), Some("/etc/m/reports.db"));
    assert_eq!(t.spool_dir, None);
    assert_eq!(t.intake_path, "/tlsrpt");
    let url = "postgres://u:p@127.0.0.1/reports";
    let t = parse(&format!(
        "[tlsrpt]\nstore = \"{url}\"\nspool_dir = \"spool\"\n"
    ))
    .unwrap()
    .tlsrpt
    .unwrap();
    assert_eq!(t.store.as_deref(), Some(url), "URLs are not paths");
    assert_eq!(t.spool_dir, Some(PathBuf::from("/etc/m/spool")));
    let e = parse("[tlsrpt]\nintake_path = \"/r\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `store`"), "{e}");
    let e = parse("[tlsrpt]\nstore = \" \"\n").unwrap_err().to_string();
    assert!(e.contains("store is empty"), "{e}");
    assert_eq!(t.drain_interval, DEFAULT_DRAIN_INTERVAL);
    let t = parse("[tlsrpt]\nstore = \"r.db\"\nspool_dir = \"s\"\ndrain_interval = \"5m\"\n")
        .unwrap()
        .tlsrpt
        .unwrap();
    assert_eq!(t.drain_interval, Duration::from_secs(300));
    let e = parse("[tlsrpt]\nstore = \"r.db\"\ndrain_interval = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("drain_interval"), "{e}");
}

// Issue #12: the intake's and the connections' bounds, with defaults that hold the
// largest report, and a budget that could never hold one refused.
#[test]
fn intake_and_connection_bounds() {
    let base = "[[domain]]\nname = \"a.test\"\nmode = \"enforce\"\nmx = [\"mx.a.test\"]\n";
    let parse = |extra: &str| ServeConfig::parse(&format!("{base}{extra}"), None);
    let c = parse("[tlsrpt]\nspool_dir = \"s\"\nmax_report = 1000\n").unwrap();
    let t = c.tlsrpt.unwrap();
    assert_eq!((t.max_concurrent, t.max_inflight), (4, 2000));
    assert_eq!(c.limits.body_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.max_streams, 32);
    let c = parse(
        "[tlsrpt]\nspool_dir = \"s\"\nmax_concurrent = 2\nmax_report = 4000\nmax_inflight = 5000\n[limits]\nbody_timeout = \"5s\"\nmax_streams = 8\n",
    )
    .unwrap();
    let t = c.tlsrpt.unwrap();
    assert_eq!((t.max_concurrent, t.max_inflight), (2, 5000));
    assert_eq!(c.limits.body_timeout, Duration::from_secs(5));
    assert_eq!(c.limits.max_streams, 8);
    let e = parse("[tlsrpt]\nspool_dir = \"s\"\nmax_inflight = 100\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least `max_report`"), "{e}");
    for bad in [
        "[tlsrpt]\nspool_dir = \"s\"\nmax_concurrent = 0\n",
        "[limits]\nmax_streams = -1\n",
        "[limits]\nbody_timeout = \"0s\"\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

/// serde's own list of the fields of a table, from its unknown-field error.
fn serde_fields(section: &str) -> Vec<String> {
    let text = match section {
        "" => "zzz = 1\n".to_string(),
        "domain" => "[[domain]]\nzzz = 1\n".to_string(),
        other => format!("[{other}]\nzzz = 1\n"),
    };
    let message = match toml::from_str::<Raw>(&text) {
        Ok(_) => panic!("zzz accepted in [{section}]"),
        Err(e) => e.message().to_string(),
    };
    let (_, expected) = message.split_once("expected one of ").expect(&message);
    let mut fields: Vec<String> = expected
        .split(", ")
        .map(|f| f.trim_matches('`').to_string())
        .collect();
    fields.sort();
    fields
}

// Issue #19 item 4: the key lists the unknown-key error shows are the keys the parser
// takes, table by table.
#[test]
fn key_lists_are_the_parser_keys() {
    for (section, keys) in SECTIONS {
        let mut listed: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        if section.is_empty() {
            listed.extend(SECTIONS.iter().skip(1).map(|(name, _)| name.to_string()));
        }
        listed.sort();
        assert_eq!(serde_fields(section), listed, "[{section}]");
    }
    let e = ServeConfig::parse("[acme]\nca_fle = \"ca.pem\"\n", None)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("serve.toml:2:1: unknown key `ca_fle` in [acme]: the keys there are directory, contact, storage, ca_file,"), "{e}");
    let e = ServeConfig::parse(
        "[[domain]]\nname = \"a.test\"\n[[domain]]\npolicy = \"p\"\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("in [domain]: the keys there are name, policy_file,"),
        "{e}"
    );
}

// Issue #19 item 6: `policy_file` serves an owner's policy file as written (mode, mx,
// max_age, extensions); errors name the policy file and line; it cannot be mixed with
// the keys it replaces.
#[test]
fn policy_file_is_read_with_file_and_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        dir.path().join("p.txt"),
        "version: STSv1\nmode: testing\nmx: mx1.a.test\nmx: *.b.test\nmax_age: 86400\nx_note: kept\n",
    )
    .unwrap();
    let parse = |extra: &str| {
        ServeConfig::parse(
            &format!(
                "[default]\nmode = \"enforce\"\nmx = [\"other.test\"]\n[[domain]]\nname = \"a.test\"\npolicy_file = \"p.txt\"\n{extra}"
            ),
            Some(&config),
        )
    };
    let c = parse("").unwrap();
    let d = &c.domains[0];
    assert_eq!(d.mode, Mode::Testing);
    assert_eq!(d.max_age, 86400);
    let policy = d.policy_with(match &d.mx {
        MxSource::List(l) => l.clone(),
        MxSource::Auto => panic!("auto"),
    });
    assert_eq!(
        policy.to_string(),
        "version: STSv1\r\nmode: testing\r\nmx: mx1.a.test\r\nmx: *.b.test\r\nmax_age: 86400\r\nx_note: kept\r\n"
    );
    assert_eq!(
        d.policy_file.as_deref(),
        Some(dir.path().join("p.txt").as_path())
    );
    assert!(c.extra_watch.contains(&dir.path().join("p.txt")));
    let e = parse("mode = \"enforce\"\n").unwrap_err().to_string();
    assert!(e.contains("`mode` is set here too"), "{e}");
    std::fs::write(
        dir.path().join("p.txt"),
        "version: STSv1\nmode: enforce\nmx: mx1.a.test\nmax_age: soon\n",
    )
    .unwrap();
    let e = parse("").unwrap_err().to_string();
    let want = format!("{}:4: ", dir.path().join("p.txt").display());
    assert!(e.starts_with(&want), "{e}");
    assert!(e.contains("mta-sts lint"), "{e}");
    std::fs::remove_file(dir.path().join("p.txt")).unwrap();
    let e = parse("").unwrap_err().to_string();
    assert!(e.contains("cannot read policy_file"), "{e}");
}

#[test]
fn packaging_example_is_valid() {
    let text = include_str!("../../../../packaging/serve.toml");
    let c = ServeConfig::parse(text, Some(Path::new("/etc/mta-sts/serve.toml"))).unwrap();
    let t = c.tlsrpt.unwrap();
    assert_eq!(t.store.as_deref(), Some("/var/lib/mta-sts/reports.db"));
    assert_eq!(
        t.spool_dir,
        Some(PathBuf::from("/var/spool/mta-sts/tlsrpt"))
    );
    assert_eq!(c.domains.len(), 1);
}

const WEB_BASE: &str = "[[domain]]\nname = \"example.com\"\nmode = \"enforce\"\nmx = [\"mx.example.com\"]\n[tlsrpt]\nstore = \"/var/lib/mta-sts/reports.db\"\n";

#[test]
fn web_section_defaults() {
    let c = ServeConfig::parse(WEB_BASE, None).unwrap();
    assert_eq!(c.web, None, "no [web]: no dashboard");
    let c = ServeConfig::parse(&format!("{WEB_BASE}[web]\n"), None).unwrap();
    let web = c.web.unwrap();
    assert_eq!(web.listen, DEFAULT_WEB_LISTEN.parse().unwrap());
    assert_eq!(web.listen.to_string(), "127.0.0.1:8480");
    assert!(web.check);
    assert_eq!((web.token_file, web.users), (None, None));
    assert_eq!(web.store, "/var/lib/mta-sts/reports.db");
    let c = ServeConfig::parse(
        &format!("{WEB_BASE}[web]\nlisten = \"0.0.0.0:8480\"\ntoken_file = \"web.token\"\ncheck = false\n"),
        Some(Path::new("/etc/mta-sts/serve.toml")),
    )
    .unwrap();
    let web = c.web.unwrap();
    assert_eq!(web.listen, "0.0.0.0:8480".parse().unwrap());
    assert_eq!(
        web.token_file,
        Some(PathBuf::from("/etc/mta-sts/web.token"))
    );
    assert!(!web.check);
    let c = ServeConfig::parse(
        &format!("{WEB_BASE}[web]\nlisten = \"[::]:8480\"\nusers = \"web.users\"\n"),
        Some(Path::new("/etc/mta-sts/serve.toml")),
    )
    .unwrap();
    assert_eq!(
        c.web.unwrap().users,
        Some(PathBuf::from("/etc/mta-sts/web.users"))
    );
}

#[test]
fn web_section_refuses_a_public_listen_without_authentication() {
    let e = ServeConfig::parse(
        &format!("{WEB_BASE}[web]\nlisten = \"0.0.0.0:8480\"\n"),
        Some(Path::new("/x/serve.toml")),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("/x/serve.toml:8:"), "{e}");
    assert!(
        e.contains("refusing to listen on 0.0.0.0:8480 without authentication: set `token_file` or `users` in [web] (or listen on 127.0.0.1)"),
        "{e}"
    );
    let e = ServeConfig::parse(
        &format!("{WEB_BASE}[web]\ntoken_file = \"t\"\nusers = \"u\"\n"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not both"), "{e}");
    let e = ServeConfig::parse(&format!("{WEB_BASE}[web]\nlisten = \"nowhere\"\n"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`nowhere` is not a listening address"), "{e}");
    let e = ServeConfig::parse(&format!("{WEB_BASE}[web]\nport = 1\n"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("port") && e.contains("token_file"), "{e}");
}

#[test]
fn web_section_needs_the_tlsrpt_store() {
    let domain =
        "[[domain]]\nname = \"example.com\"\nmode = \"enforce\"\nmx = [\"mx.example.com\"]\n";
    for config in [
        format!("{domain}[web]\n"),
        format!("{domain}[tlsrpt]\nspool_dir = \"/var/spool/mta-sts\"\n[web]\n"),
    ] {
        let e = ServeConfig::parse(&config, None).unwrap_err().to_string();
        assert!(
            e.contains("[web] shows the reports of the [tlsrpt] store, and this file has no [tlsrpt] section with `store`"),
            "{e}"
        );
    }
}
