//! `mta-sts query` end to end: the real binary against a testkit world (authoritative DNS,
//! HTTPS policy host with a test CA). Exit codes 0 policy, 1 no policy, 3 unusable, 2 usage.

use std::process::{Command, Output};

use mta_sts_testkit::World;
use mta_sts_testkit::ca::CertKind;
use mta_sts_testkit::https::HostBehavior;

const POLICY: &str =
    "version: STSv1\nmode: enforce\nmx: mail.good.test\nmx: *.good.test\nmax_age: 86400\n";

fn world() -> World {
    World::builder()
        .domain("good.test", |d| {
            d.sts_txt("v=STSv1; id=20240101;").policy(POLICY)
        })
        .domain("none.test", |d| d)
        .domain("badpolicy.test", |d| {
            d.sts_id("1")
                .policy("version: STSv1\nmode: enforced\nmx: m.test\nmax_age: 1\n")
        })
        .domain("expired.test", |d| {
            d.sts_id("1")
                .policy_behavior(HostBehavior::policy(POLICY).cert(CertKind::Expired))
        })
        .domain("html.test", |d| {
            d.sts_id("1")
                .policy_behavior(HostBehavior::policy(POLICY).content_type("text/html"))
        })
        .start()
}

fn query(world: &World, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .arg("query")
        .args(args)
        .args(["--dns", &world.dns_addr().to_string(), "--ca-file"])
        .arg(world.ca_file())
        .args(["--connect-to", &world.connect_to_any(), "--timeout", "5"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run mta-sts")
}

fn json(world: &World, domain: &str) -> (Option<i32>, serde_json::Value) {
    let out = query(world, &[domain, "--json"]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v)
}

#[test]
fn query_policy_exits_0_with_json_contract() {
    let world = world();
    let (code, v) = json(&world, "GOOD.test.");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["domain"], "good.test");
    assert_eq!(v["outcome"], "policy");
    assert_eq!(v["record"]["id"], "20240101");
    assert_eq!(v["policy"]["mode"], "enforce");
    assert_eq!(
        v["policy"]["mx"],
        serde_json::json!(["mail.good.test", "*.good.test"])
    );
    assert_eq!(v["error"], serde_json::Value::Null);
    assert!(v["elapsed_ms"].is_u64());
    // no cache: a second query fetches again
    assert_eq!(json(&world, "good.test").0, Some(0));
    assert_eq!(world.https().request_count("mta-sts.good.test"), 2);
}

#[test]
fn query_human_output_shows_the_policy() {
    let world = world();
    let out = query(&world, &["good.test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text.starts_with("good.test: MTA-STS policy, mode enforce (id 20240101)"),
        "{text}"
    );
    assert!(text.contains("mx: *.good.test"), "{text}");
}

#[test]
fn query_no_policy_exits_1() {
    let world = world();
    let (code, v) = json(&world, "none.test");
    assert_eq!(code, Some(1));
    assert_eq!(v["outcome"], "no-policy");
    assert_eq!(v["policy"], serde_json::Value::Null);
}

#[test]
fn query_unusable_exits_3_with_result_type() {
    let world = world();
    for (domain, result_type) in [
        ("badpolicy.test", "sts-policy-invalid"),
        ("expired.test", "sts-webpki-invalid"),
        ("html.test", "sts-policy-invalid"),
    ] {
        let (code, v) = json(&world, domain);
        assert_eq!(code, Some(3), "{domain}: {v}");
        assert_eq!(v["outcome"], "unusable");
        assert_eq!(v["record"]["id"], "1");
        assert_eq!(v["error"]["result_type"], result_type, "{domain}: {v}");
        assert!(v["error"]["reason"].is_string() && v["error"]["message"].is_string());
    }
}

#[test]
fn query_usage_errors_exit_2() {
    let world = world();
    let out = query(&world, &["not a domain"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a domain name"));
    let bad_dns = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["query", "good.test", "--dns", "nameserver.example"])
        .output()
        .expect("run");
    assert_eq!(bad_dns.status.code(), Some(2));
    assert_eq!(
        world.dns().total_queries(),
        0,
        "no DNS query for junk input"
    );
}
