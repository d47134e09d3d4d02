//! `mta-sts check` end to end: the real binary against testkit worlds. Exit codes 0 pass
//! (warnings allowed), 1 any fail, 2 usage; the JSON document of docs/design.md §4; bulk mode over
//! 1,000 domains with a summary.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use mta_sts_testkit::{CertKind, SmtpConfig, World};
use serde_json::Value;

use crate::serve_support::ServeProc;

const MX_SERVERS: usize = 4;

fn good_policy(mx: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 1209600\n")
}

fn world() -> World {
    World::builder()
        .domain("good.test", |d| {
            d.sts_id("20240101")
                .policy(&good_policy("mail.good.test"))
                .mx(10, "mail.good.test")
                .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@good.test")
        })
        .domain("plain.test", |d| {
            d.sts_id("1")
                .policy(&good_policy("mail.plain.test"))
                .mx(10, "mail.plain.test")
                .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@plain.test")
        })
        .domain("testing.test", |d| {
            d.sts_id("1")
                .policy(&good_policy("mail.testing.test").replace("enforce", "testing"))
                .mx(10, "mail.testing.test")
                .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@testing.test")
        })
        .domain("testingbad.test", |d| {
            d.sts_id("1")
                .policy(&good_policy("mail.testingbad.test").replace("enforce", "testing"))
                .mx(10, "mail.testingbad.test")
                .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@testingbad.test")
        })
        .domain("badcert.test", |d| {
            d.sts_id("1")
                .policy(&good_policy("mail.badcert.test"))
                .mx(10, "mail.badcert.test")
                .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@badcert.test")
        })
        .smtp(SmtpConfig::new("mail.good.test").starttls(CertKind::Valid))
        .smtp(SmtpConfig::new("mail.testing.test").starttls(CertKind::Valid))
        .smtp(SmtpConfig::new("mail.plain.test"))
        .smtp(SmtpConfig::new("mail.badcert.test").starttls(CertKind::WrongName))
        .smtp(SmtpConfig::new("mail.testingbad.test").starttls(CertKind::WrongName))
        .start()
}

fn smtp_connect_to(world: &World, hosts: &[&str]) -> Vec<String> {
    hosts
        .iter()
        .filter_map(|h| {
            world
                .smtp_addr(h)
                .map(|a| format!("{h}:25:{}:{}", a.ip(), a.port()))
        })
        .flat_map(|c| ["--connect-to".to_string(), c])
        .collect()
}

fn check(world: &World, smtp: &[&str], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mta-sts"));
    cmd.arg("check")
        .args(args)
        .args(["--dns", &world.dns_addr().to_string(), "--ca-file"])
        .arg(world.ca_file())
        .args(["--connect-to", &world.connect_to_any()])
        .args(smtp_connect_to(world, smtp))
        .args(["--timeout", "5", "--smtp-timeout", "5"])
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run mta-sts");
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("wait for mta-sts")
}

fn parse(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn is_str_or_null(v: &Value) -> bool {
    v.is_string() || v.is_null()
}

/// Validates one `check --json` document against the documented shape (docs/design.md §4 and
/// crates/checker/src/report.rs).
fn validate(v: &Value) {
    let obj = v.as_object().expect("a JSON object");
    for key in [
        "domain",
        "verdict",
        "findings",
        "record",
        "policy",
        "policy_host",
        "mx",
        "tlsrpt",
        "delivery",
        "elapsed_ms",
    ] {
        assert!(obj.contains_key(key), "missing `{key}` in {v}");
    }
    assert!(v["domain"].is_string());
    assert!(matches!(
        v["verdict"].as_str(),
        Some("pass" | "warn" | "fail")
    ));
    for f in v["findings"].as_array().expect("findings array") {
        for key in ["id", "severity", "area", "title", "detail", "fix"] {
            assert!(f[key].is_string(), "finding `{key}` in {f}");
        }
        assert!(matches!(
            f["severity"].as_str(),
            Some("error" | "warning" | "info")
        ));
    }
    if !v["record"].is_null() {
        let r = &v["record"];
        assert!(r["name"].is_string() && r["txt"].is_array() && r["cname_chain"].is_array());
        assert!(is_str_or_null(&r["id"]) && r["valid"].is_boolean());
    }
    if !v["policy"].is_null() {
        let p = &v["policy"];
        assert!(is_str_or_null(&p["mode"]) && p["mx"].is_array());
        assert!(
            p["valid"].is_boolean() && p["strict_valid"].is_boolean() && p["applied"].is_boolean()
        );
        assert!(p["max_age"].is_u64() || p["max_age"].is_null());
    }
    if !v["policy_host"].is_null() {
        let h = &v["policy_host"];
        assert!(h["host"].is_string() && h["addresses"]["list"].is_array());
        assert!(h["status"].is_u64() || h["status"].is_null());
        assert!(is_str_or_null(&h["location"]) && is_str_or_null(&h["content_type"]));
        assert!(h["elapsed_ms"].is_u64() && h["too_large"].is_boolean());
        assert!(h["tls"].is_null() || h["tls"]["version"].is_string());
    }
    for mx in v["mx"].as_array().expect("mx array") {
        assert!(mx["host"].is_string());
        assert!(mx["preference"].is_u64() || mx["preference"].is_null());
        assert!(mx["in_policy"].is_boolean() || mx["in_policy"].is_null());
        assert!(mx["starttls"].is_boolean() || mx["starttls"].is_null());
        assert!(is_str_or_null(&mx["tls_version"]));
        assert!(matches!(
            mx["verdict"].as_str(),
            Some("deliver" | "deliver-report" | "skip" | "unreachable" | "not-probed")
        ));
        let c = &mx["certificate"];
        if !c.is_null() {
            for key in ["subject", "issuer", "not_before", "not_after"] {
                assert!(c[key].is_string(), "certificate `{key}`");
            }
            assert!(c["sans"].is_array() && c["days_left"].is_i64());
            assert!(c["valid"].is_boolean() && c["name_match"].is_boolean());
        }
    }
    if !v["tlsrpt"].is_null() {
        assert!(v["tlsrpt"]["rua"].is_array() && v["tlsrpt"]["valid"].is_boolean());
    }
    let d = &v["delivery"];
    assert!(d["would_deliver"].is_boolean() || d["would_deliver"].is_null());
    let e = &d["if_enforced"];
    assert!(e.is_null() || (e["reason"].is_string() && e["skipped"].is_array()));
    assert!(e.is_null() || e["would_deliver"].is_boolean() || e["would_deliver"].is_null());
    assert!(is_str_or_null(&d["mx"]) && d["reason"].is_string());
}

#[test]
fn perfect_domain_passes_with_json_contract() {
    let world = world();
    let out = check(&world, &["mail.good.test"], &["GOOD.test.", "--json"], None);
    let v = parse(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    validate(&v);
    assert_eq!(v["domain"], "good.test");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["findings"], serde_json::json!([]));
    assert_eq!(v["record"]["id"], "20240101");
    assert_eq!(v["policy"]["mode"], "enforce");
    assert_eq!(v["policy"]["applied"], true);
    assert_eq!(v["policy_host"]["status"], 200);
    assert_eq!(v["mx"][0]["host"], "mail.good.test");
    assert_eq!(v["mx"][0]["starttls"], true);
    assert_eq!(v["mx"][0]["in_policy"], true);
    assert_eq!(v["mx"][0]["certificate"]["valid"], true);
    assert_eq!(v["mx"][0]["verdict"], "deliver");
    assert_eq!(v["delivery"]["would_deliver"], true);
    assert_eq!(v["delivery"]["mx"], "mail.good.test");
}

#[test]
fn failing_domain_exits_1_and_shows_fixes() {
    let world = world();
    let out = check(&world, &["mail.plain.test"], &["plain.test"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("plain.test: FAIL"), "{text}");
    assert!(text.contains("[mx-starttls-missing]"), "{text}");
    assert!(text.contains("[delivery-deferred]"), "{text}");
    assert!(text.contains("fix: Enable STARTTLS"), "{text}");
    assert!(
        text.contains("would an enforcing sender deliver mail? no"),
        "{text}"
    );

    let out = check(
        &world,
        &["mail.plain.test"],
        &["plain.test", "--json"],
        None,
    );
    let v = parse(&out);
    validate(&v);
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["mx"][0]["verdict"], "skip");
}

/// Issue #19 item 9: the TLS library's own `ERROR failed to verify TLS certificate` log line
/// repeated each bad MX certificate finding on standard error. Library internals log at
/// trace level only (`-vvv` or `RUST_LOG`); the finding on standard output says it all.
#[test]
fn bad_mx_certificate_leaves_stderr_quiet() {
    let world = world();
    for verbosity in [None, Some("-v"), Some("-vv")] {
        let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
            .arg("check")
            .arg("badcert.test")
            .args(verbosity)
            .args(["--dns", &world.dns_addr().to_string(), "--ca-file"])
            .arg(world.ca_file())
            .args(["--connect-to", &world.connect_to_any()])
            .args(smtp_connect_to(&world, &["mail.badcert.test"]))
            .args(["--timeout", "5", "--smtp-timeout", "5"])
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .expect("run mta-sts check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stdout.contains("[mx-cert-name-mismatch]"), "{stdout}");
        assert!(
            !stderr.contains("failed to verify TLS certificate") && !stderr.contains("ERROR"),
            "library log lines on stderr ({verbosity:?}):\n{stderr}"
        );
    }
}

/// Issue #19 item 1: a `testing` domain whose MX certificate has the wrong name. The owner
/// asks "may I switch to enforce?": the headline answers no, names the host and the reason,
/// and the advice of `policy-mode-testing` no longer says to switch.
#[test]
fn testing_domain_says_enforce_would_defer() {
    let world = world();
    let out = check(
        &world,
        &["mail.testingbad.test"],
        &["testingbad.test"],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("testingbad.test: WARN"), "{text}");
    assert!(
        text.contains(
            "would an enforcing sender deliver mail? no: switching to enforce now would defer \
             all mail: senders skip mail.testingbad.test (mx-cert-name-mismatch)"
        ),
        "{text}"
    );
    assert!(
        text.contains("and today? yes: a sender under its testing policy delivers"),
        "{text}"
    );
    assert!(text.contains("[enforce-would-defer]"), "{text}");
    assert!(
        text.contains("fix: Do not switch to `mode: enforce` yet"),
        "{text}"
    );
    assert!(!text.contains("switch to `mode: enforce`;"), "{text}");

    let out = check(
        &world,
        &["mail.testingbad.test"],
        &["testingbad.test", "--json"],
        None,
    );
    let v = parse(&out);
    validate(&v);
    let what_if = &v["delivery"]["if_enforced"];
    assert_eq!(what_if["would_deliver"], false, "{v:#}");
    assert_eq!(
        what_if["skipped"],
        serde_json::json!([{"host": "mail.testingbad.test", "reasons": ["mx-cert-name-mismatch"]}])
    );
    assert_eq!(v["delivery"]["would_deliver"], true);

    // A testing domain with a good MX: enforce would deliver, and the advice is to switch.
    let out = check(&world, &["mail.testing.test"], &["testing.test"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would an enforcing sender deliver mail? yes: an enforcing sender delivers to mail.testing.test"),
        "{text}"
    );
    assert!(text.contains("switch to `mode: enforce`"), "{text}");
    assert!(!text.contains("enforce-would-defer"), "{text}");
}

/// `mta-sts serve` with a `[tlsrpt]` intake at `/tlsrpt` for `mta-sts.served.test`, with a
/// certificate from the world's CA, started; killed on drop.
fn start_intake(world: &World) -> ServeProc {
    let mut intake = ServeProc::new(
        world.ca(),
        &["mta-sts.served.test"],
        "[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\nmax_age = 604800\ncert = \"host.pem\"\nkey = \"host.key\"\n\n[tlsrpt]\nintake_path = \"/tlsrpt\"\nspool_dir = \"spool\"\n",
    );
    intake.start();
    intake
}

/// Issue #19 item 2: an `https:` rua pointing at our own `serve` intake passes (its answer
/// to the checker's empty POST is a 4xx that is not 404/405); the same host with a path the
/// intake does not serve is reported with the status it answered.
#[test]
fn https_rua_probed_against_our_own_intake() {
    let world = world();
    let intake = start_intake(&world);
    world
        .dns()
        .set_a("mta-sts.served.test", &[Ipv4Addr::LOCALHOST]);
    let to = intake.connect_to("mta-sts.served.test");
    for (path, want) in [("/tlsrpt", None), ("/wrong", Some("answered 404"))] {
        world.dns().set_txt(
            "_smtp._tls.good.test",
            &[&[&format!(
                "v=TLSRPTv1; rua=https://mta-sts.served.test{path}"
            )]],
        );
        let out = check(
            &world,
            &["mail.good.test"],
            &["good.test", "--json", "--connect-to", &to],
            None,
        );
        let v = parse(&out);
        validate(&v);
        let rua: Vec<&Value> = v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["id"].as_str().is_some_and(|id| id.starts_with("tlsrpt-")))
            .collect();
        match want {
            None => {
                assert!(rua.is_empty(), "{v:#}");
                assert_eq!(v["verdict"], "pass", "{v:#}");
            }
            Some(status) => {
                assert_eq!(rua.len(), 1, "{v:#}");
                assert_eq!(rua[0]["id"], "tlsrpt-rua-rejects-post");
                let detail = rua[0]["detail"].as_str().unwrap_or_default();
                assert!(detail.contains(status), "{detail}");
                assert_eq!(v["verdict"], "warn", "{v:#}");
            }
        }
    }
}

#[test]
fn warnings_exit_0_and_several_domains_give_json_lines() {
    let world = world();
    let out = check(
        &world,
        &["mail.good.test", "mail.testing.test"],
        &["testing.test", "good.test", "--json"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    lines.iter().for_each(validate);
    assert_eq!(lines[0]["verdict"], "warn");
    assert_eq!(lines[1]["verdict"], "pass");
}

#[test]
fn no_smtp_skips_mx_probes() {
    let world = world();
    let out = check(&world, &[], &["plain.test", "--json", "--no-smtp"], None);
    let v = parse(&out);
    validate(&v);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["mx"][0]["verdict"], "not-probed");
    assert_eq!(v["delivery"]["would_deliver"], Value::Null);
}

#[test]
fn usage_errors_exit_2() {
    let world = world();
    let out = check(&world, &[], &["not a domain"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a domain name"));
    let out = check(&world, &[], &[], None);
    assert_eq!(out.status.code(), Some(2));
    let out = check(&world, &[], &["--input", "/nonexistent/list.txt"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// 1,000 domains sharing four STARTTLS MX hosts; every tenth has no `_mta-sts` record.
#[test]
fn bulk_thousand_domains_with_summary() {
    const N: usize = 1000;
    let mut builder = World::builder();
    for i in 0..N {
        let name = format!("b{i}.bulk.test");
        let mx = format!("mx{}.shared.test", i % MX_SERVERS);
        builder = builder.domain(&name, move |d| {
            let d = d
                .policy(&good_policy(&mx))
                .mx(10, &mx)
                .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@shared.test");
            if i % 10 == 9 { d } else { d.sts_id("1") }
        });
    }
    let mut hosts = Vec::new();
    for k in 0..MX_SERVERS {
        let host = format!("mx{k}.shared.test");
        builder = builder.smtp(SmtpConfig::new(&host).starttls(CertKind::Valid));
        hosts.push(host);
    }
    let world = builder.start();
    for host in &hosts {
        world.dns().set_a(host, &[Ipv4Addr::LOCALHOST]);
    }
    world
        .dns()
        .set_mx("shared.test", &[(10, "mx0.shared.test")]);

    let mut input = String::from("# bulk test list\n\n");
    for i in 0..N {
        input.push_str(&format!("b{i}.bulk.test\n"));
    }
    input.push_str("not a domain!\n");
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let out = check(
        &world,
        &host_refs,
        &["--input", "-", "--concurrency", "64"],
        Some(input.as_bytes()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines.len(),
        N + 2,
        "one line per domain, the bad line, the summary"
    );
    let summary = &lines[N + 1]["summary"];
    assert_eq!(summary["domains"], N + 1);
    assert_eq!(summary["pass"], N - N / 10, "{summary:#}");
    assert_eq!(summary["warn"], 0);
    assert_eq!(summary["fail"], N / 10 + 1);
    assert_eq!(summary["findings"]["record-missing"], N / 10);
    assert_eq!(summary["findings"]["domain-invalid"], 1);
    assert_eq!(summary["mx_hosts_probed"], MX_SERVERS);
    for v in &lines[..=N] {
        validate(v);
    }
    // Each shared MX host was probed exactly once.
    for host in &hosts {
        let sessions = world.smtp(host).map(|s| s.sessions().len()).unwrap_or(0);
        assert_eq!(sessions, 1, "{host}");
    }
}

/// The bulk progress bar (issue #12 item 17): drawn on a terminal, in a pseudo-terminal
/// made by util-linux `script`, and absent with `--no-progress`; the words summary follows
/// either way. Skipped without `script` unless `MTA_STS_REQUIRE_INTEROP=1`.
#[test]
fn bulk_progress_bar_on_a_terminal() {
    const N: usize = 200;
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "script is required (MTA_STS_REQUIRE_INTEROP=1): apt-get install util-linux"
        );
        eprintln!("skipping: script (util-linux) not installed");
        return;
    }
    let mut builder = World::builder();
    for i in 0..N {
        builder = builder.domain(&format!("p{i}.progress.test"), |d| d.enforce());
    }
    let world = builder.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("domains.txt");
    let names: Vec<String> = (0..N).map(|i| format!("p{i}.progress.test\n")).collect();
    std::fs::write(&list, names.concat()).expect("write list");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let run = |extra: &[&str]| {
        let mut argv = vec![
            env!("CARGO_BIN_EXE_mta-sts").to_owned(),
            "check".into(),
            "--no-smtp".into(),
            "--input".into(),
            list.display().to_string(),
            "--concurrency".into(),
            "4".into(),
            "--dns".into(),
            world.dns_addr().to_string(),
            "--ca-file".into(),
            world.ca_file().display().to_string(),
            "--connect-to".into(),
            world.connect_to_any(),
            "--timeout".into(),
            "5".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let line: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        // stdout of the child is the pty too: the transcript is everything it drew.
        let out = Command::new("script")
            .args(["-qefc", &line.join(" "), "/dev/null"])
            .env("TERM", "xterm")
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .stdin(Stdio::null())
            .output()
            .expect("run script");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let bar = format!("/{N} domains");
    let summary = format!("{N} domains in ");

    let (code, transcript) = run(&[]);
    assert_eq!(code, Some(0), "{transcript}");
    assert!(
        transcript.contains(&bar),
        "no progress bar `{bar}` in:\n{transcript}"
    );
    assert!(transcript.contains(&summary), "{transcript}");

    let (code, transcript) = run(&["--no-progress"]);
    assert_eq!(code, Some(0), "{transcript}");
    assert!(!transcript.contains(&bar), "{transcript}");
    assert!(transcript.contains(&summary), "{transcript}");
}
