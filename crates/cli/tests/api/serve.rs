//! `mta-sts records` and `mta-sts serve` end to end: the real binary serves a policy over
//! HTTPS with a certificate from the test CA, the records it prints are published in a
//! testkit DNS server, and `mta-sts query` then discovers and validates the policy.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mta_sts_testkit::{Pki, World};

use crate::serve_support::{ServeProc, mta_sts, sts_txt};

const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mx1.served.test\nmax_age: 604800\n";

#[test]
fn records_prints_zone_lines_and_json_with_a_content_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("mta-sts.txt");
    std::fs::write(&policy, POLICY).expect("write");
    let out = mta_sts()
        .args(["records", "served.test", "--policy"])
        .arg(&policy)
        .args(["--rua", "mailto:tls@served.test"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("_mta-sts.served.test. IN TXT \"v=STSv1; id="),
        "{text}"
    );
    assert!(
        text.contains("_smtp._tls.served.test. IN TXT \"v=TLSRPTv1; rua=mailto:tls@served.test\""),
        "{text}"
    );
    let json = |body: &str| -> serde_json::Value {
        std::fs::write(&policy, body).expect("write");
        let out = mta_sts()
            .args(["records", "served.test", "--json", "--policy"])
            .arg(&policy)
            .output()
            .expect("run");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let a = json(POLICY);
    let same = json(&POLICY.replace('\n', "\r\n"));
    let changed = json(&POLICY.replace("604800", "604801"));
    assert_eq!(
        a["id"], same["id"],
        "the id depends on the policy, not its line ends"
    );
    assert_ne!(a["id"], changed["id"], "any policy change gives a new id");
    assert!(mta_sts::StsRecord::parse(a["sts"]["value"].as_str().expect("value")).is_ok());
    let bad = mta_sts()
        .args(["records", "served.test", "--policy"])
        .arg(&policy)
        .args(["--rua", "ftp://x"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn serve_is_discovered_by_query_and_stops_on_sigterm() {
    let world = World::empty();
    let mut serve = ServeProc::new(
        world.ca(),
        &["mta-sts.served.test"],
        "[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\nmax_age = 604800\ncert = \"host.pem\"\nkey = \"host.key\"\n",
    );

    let check = serve.run(&["--check-config"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let printed = serve.run(&["--print-records"]);
    let records = String::from_utf8_lossy(&printed.stdout).into_owned();
    let txt = sts_txt(&records, "served.test");
    world
        .dns()
        .set_txt("_mta-sts.served.test", &[&[txt.as_str()]]);
    world
        .dns()
        .set_a("mta-sts.served.test", &[Ipv4Addr::LOCALHOST]);

    serve.start();
    let query = || {
        mta_sts()
            .args([
                "query",
                "served.test",
                "--json",
                "--dns",
                &world.dns_addr().to_string(),
                "--ca-file",
            ])
            .arg(world.ca_file())
            .args([
                "--connect-to",
                &serve.connect_to("mta-sts.served.test"),
                "--timeout",
                "2",
            ])
            .output()
            .expect("query")
    };
    let started = Instant::now();
    let out = loop {
        let out = query();
        if out.status.code() == Some(0) || started.elapsed() > Duration::from_secs(15) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["outcome"], "policy", "{v}");
    assert_eq!(v["policy"]["mx"], serde_json::json!(["mx1.served.test"]));
    assert_eq!(
        format!("v=STSv1; id={};", v["record"]["id"].as_str().expect("id")),
        txt
    );

    // serve --check: no drift while the published record matches; drift once it does not.
    world
        .dns()
        .set_mx("served.test", &[(10, "mx1.served.test")]);
    let self_check = || {
        let out = serve
            .command(&["--check", "--no-smtp", "--json"])
            .args(["--dns", &world.dns_addr().to_string(), "--ca-file"])
            .arg(world.ca_file())
            .args([
                "--connect-to",
                &serve.connect_to("mta-sts.served.test"),
                "--timeout",
                "5",
            ])
            .output()
            .expect("serve --check");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let ids: Vec<String> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["id"].as_str().map(String::from))
            .collect();
        (out.status.code(), ids)
    };
    let (_, ids) = self_check();
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("serve-") || id == "mx-not-in-policy"),
        "{ids:?}"
    );
    world
        .dns()
        .set_txt("_mta-sts.served.test", &[&["v=STSv1; id=stale1;"]]);
    world.dns().set_mx(
        "served.test",
        &[(10, "mx1.served.test"), (20, "backup.elsewhere.test")],
    );
    let (code, ids) = self_check();
    assert_eq!(code, Some(1), "{ids:?}");
    assert!(
        ids.contains(&"serve-id-not-published".to_owned()),
        "{ids:?}"
    );
    assert!(ids.contains(&"mx-not-in-policy".to_owned()), "{ids:?}");

    serve.signal("TERM");
    let status = serve
        .wait_exit(Duration::from_secs(15))
        .expect("serve did not stop on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

// Issue #19 item 7: with [tlsrpt] on, a domain without `rua` gets no _smtp._tls record, and
// --print-records says so with the rua that points at this host's intake; a domain with
// `rua` gets its record and no hint; without [tlsrpt], no hint.
#[test]
fn print_records_hints_at_the_missing_tlsrpt_record() {
    let base = "cert = \"host.pem\"\nkey = \"host.key\"\n\
        [default]\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\ndomains = [\"plain.test\"]\n\
        [[domain]]\nname = \"served.test\"\nrua = \"mailto:tls@served.test\"\n";
    let hosts = ["mta-sts.served.test", "mta-sts.plain.test"];
    let pki = Pki::new().expect("pki");
    let print = |config: &str| {
        let out = ServeProc::new(pki.ca(), &hosts, config).run(&["--print-records"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = print(&format!(
        "{base}[tlsrpt]\nintake_path = \"/reports\"\nspool_dir = \"spool\"\n"
    ));
    assert!(
        text.contains("_smtp._tls.served.test. IN TXT \"v=TLSRPTv1; rua=mailto:tls@served.test\""),
        "{text}"
    );
    assert!(!text.contains("_smtp._tls.plain.test."), "{text}");
    let hints: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("; no _smtp._tls record"))
        .collect();
    assert_eq!(hints.len(), 1, "{text}");
    assert!(hints[0].contains("for plain.test"), "{text}");
    assert!(
        hints[0].contains("rua = \"https://mta-sts.plain.test/reports\""),
        "{text}"
    );
    // Every line is a zone-file line: a comment or a record.
    assert!(
        text.lines()
            .all(|l| l.starts_with(';') || l.contains(" IN TXT ")),
        "{text}"
    );
    let text = print(base);
    assert!(!text.contains("; no _smtp._tls record"), "{text}");
}

// Issue #19 item 5: --check-config is "valid" for a host that waits for its ACME
// certificate, and says which hosts wait (`serve` refuses TLS for them until issuance).
#[test]
fn check_config_names_hosts_waiting_for_an_acme_certificate() {
    let pki = Pki::new().expect("pki");
    let serve = ServeProc::new(
        pki.ca(),
        &["mta-sts.served.test"],
        "[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\ncert = \"host.pem\"\nkey = \"host.key\"\n\
         [[domain]]\nname = \"new.test\"\nmode = \"testing\"\nmx = [\"mx1.new.test\"]\n\
         [acme]\ndirectory = \"https://acme.invalid/dir\"\ncontact = [\"mailto:hostmaster@served.test\"]\nstorage = \"acme\"\n",
    );
    let out = serve.run(&["--check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("waiting for an ACME certificate"))
        .unwrap_or_else(|| panic!("no waiting line: {stdout}"));
    assert!(line.contains("(1 host): mta-sts.new.test."), "{line}");
    assert!(!line.contains("served.test"), "{line}");
    assert!(line.contains("https://acme.invalid/dir"), "{line}");
}

// Issue #19 items 10 and 2: `serve --check` without --dns asks the nameservers of
// serve.toml (and says which servers answer); a published https: rua that names this host
// with a path other than its intake path is an error with the fix, the intake path passes.
#[test]
fn self_check_uses_config_nameservers_and_checks_the_rua_path() {
    let world = World::empty();
    let dns = world.dns_addr().to_string();
    let mut serve = ServeProc::new(
        world.ca(),
        &["mta-sts.served.test"],
        &format!(
            "nameservers = [\"{dns}\"]\ncert = \"host.pem\"\nkey = \"host.key\"\n\
             [[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\nmax_age = 604800\n\
             [tlsrpt]\nspool_dir = \"spool\"\n"
        ),
    );
    let ca = world.ca_file().to_path_buf();
    let printed = serve.run(&["--print-records"]);
    let records = String::from_utf8_lossy(&printed.stdout).into_owned();
    let txt = sts_txt(&records, "served.test");
    world
        .dns()
        .set_txt("_mta-sts.served.test", &[&[txt.as_str()]]);
    world
        .dns()
        .set_a("mta-sts.served.test", &[Ipv4Addr::LOCALHOST]);
    world
        .dns()
        .set_mx("served.test", &[(10, "mx1.served.test")]);
    world.dns().set_a("mx1.served.test", &[Ipv4Addr::LOCALHOST]);
    serve.start();
    let check = |json: bool| {
        let mut cmd = serve.command(&["--check", "--no-smtp"]);
        cmd.arg("--ca-file").arg(&ca).args([
            "--connect-to",
            &serve.connect_to("mta-sts.served.test"),
            "--timeout",
            "5",
        ]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("serve --check")
    };
    let findings = || {
        let out = check(true);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(
            report["record"]["id"].as_str(),
            txt.strip_prefix("v=STSv1; id=")
                .and_then(|t| t.strip_suffix(';')),
            "{report}"
        );
        let found: Vec<serde_json::Value> =
            report["findings"].as_array().expect("findings").clone();
        (out.status.code(), found)
    };

    // No _smtp._tls record yet: the finding says which server said so.
    let (_, found) = findings();
    let missing = found
        .iter()
        .find(|f| f["id"] == "tlsrpt-missing")
        .unwrap_or_else(|| panic!("no tlsrpt-missing in {found:?}"));
    assert!(
        missing["detail"]
            .as_str()
            .is_some_and(|d| d.ends_with(&format!("(answered by {dns})"))),
        "{missing}"
    );

    world.dns().set_txt(
        "_smtp._tls.served.test",
        &[&["v=TLSRPTv1; rua=https://mta-sts.served.test/reports"]],
    );
    let (code, found) = findings();
    let rua = found
        .iter()
        .find(|f| f["id"] == "serve-rua-not-intake")
        .unwrap_or_else(|| panic!("no serve-rua-not-intake in {found:?}"));
    assert_eq!(code, Some(1), "{found:?}");
    assert_eq!(rua["severity"], "error");
    let fix = rua["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("rua=https://mta-sts.served.test/tlsrpt"),
        "{fix}"
    );
    assert!(fix.contains("intake_path = \"/reports\""), "{fix}");

    world.dns().set_txt(
        "_smtp._tls.served.test",
        &[&["v=TLSRPTv1; rua=https://mta-sts.served.test/tlsrpt"]],
    );
    let (_, found) = findings();
    assert!(
        !found.iter().any(|f| f["id"] == "serve-rua-not-intake"
            || f["id"].as_str().is_some_and(|id| id.starts_with("serve-"))),
        "{found:?}"
    );
    let human = check(false);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!(
            "DNS answers from {dns} (nameservers in {})",
            serve.config.display()
        )),
        "{text}"
    );
}
