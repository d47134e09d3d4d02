//! `mta-sts records` and `mta-sts serve` end to end: the real binary serves a policy over
//! HTTPS with a certificate from the test CA, the records it prints are published in a
//! testkit DNS server, and `mta-sts query` then discovers and validates the policy.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mta_sts_testkit::{Validity, World};

const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mx1.served.test\nmax_age: 604800\n";

fn mta_sts() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mta-sts"));
    cmd.env("NO_COLOR", "1");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let dir = tempfile::tempdir().expect("tempdir");
    let issued = world
        .ca()
        .issue(&["mta-sts.served.test"], Validity::Current)
        .expect("issue");
    std::fs::write(
        dir.path().join("host.pem"),
        format!("{}{}", issued.cert_pem, world.ca_pem()),
    )
    .expect("cert");
    std::fs::write(dir.path().join("host.key"), &issued.key_pem).expect("key");
    let port = free_port();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\nmax_age = 604800\ncert = \"host.pem\"\nkey = \"host.key\"\n"
        ),
    )
    .expect("config");

    let check = mta_sts()
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let printed = mta_sts()
        .args(["serve", "--print-records", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    let records = String::from_utf8_lossy(&printed.stdout).into_owned();
    let txt = records
        .lines()
        .find_map(|l| {
            l.strip_prefix("_mta-sts.served.test. IN TXT \"")
                .and_then(|v| v.strip_suffix('"'))
        })
        .unwrap_or_else(|| panic!("no TXT line in {records}"))
        .to_owned();
    world
        .dns()
        .set_txt("_mta-sts.served.test", &[&[txt.as_str()]]);
    world
        .dns()
        .set_a("mta-sts.served.test", &[Ipv4Addr::LOCALHOST]);

    let server = Killed(
        mta_sts()
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve"),
    );
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
                &format!("mta-sts.served.test:443:127.0.0.1:{port}"),
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
        let out = mta_sts()
            .args(["serve", "--check", "--no-smtp", "--json", "--config"])
            .arg(&config)
            .args(["--dns", &world.dns_addr().to_string(), "--ca-file"])
            .arg(world.ca_file())
            .args([
                "--connect-to",
                &format!("mta-sts.served.test:443:127.0.0.1:{port}"),
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

    let mut server = server;
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}
