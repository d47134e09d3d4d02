//! Issue #19: the README's owner walkthrough, end to end, as written.
//!
//! The commands, the `serve.toml` example and the output the README shows are read from
//! README.md (each fenced block follows an HTML comment `<!-- test: owner NAME -->`), so this
//! test fails when the document drifts from the program. What the test changes is in one
//! place, [`substitutions`]: paths under a temporary directory, a loopback port, Pebble as
//! the ACME directory; plus the network options of [`net_args`] (testkit DNS, the CAs,
//! `--connect-to`), which the README documents but a real host does not need.
//!
//! The walk: three domains served by the real `mta-sts serve`, their records (as printed)
//! published in the testkit DNS, certificates from Pebble over ACME TLS-ALPN-01, a gzip
//! TLS-RPT report POSTed to the published `https:` rua and read back with
//! `report summary`, and a `testing` → `enforce` rollout of a domain whose MX (testkit
//! SMTP) presents a certificate for another name: `check` warns before the switch that
//! enforce would defer its mail, and fails after it.
//!
//! Needs Pebble (Debian package `pebble`): skipped with a message when it is not installed,
//! a failure under `MTA_STS_REQUIRE_INTEROP=1`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mta_sts_report_store::deliver::{DeliveryConfig, post_https, read_pem_certs};
use mta_sts_testkit::{CertKind, SmtpConfig, Validity, World};
use serde_json::Value;
use tokio_rustls::rustls;

const README: &str = include_str!("../../../../README.md");

/// Where `[acme]` orders certificates when `directory` is not set (Let's Encrypt).
const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The MX hosts of the walkthrough and the certificates their SMTP servers present:
/// `[default]`'s MX is fine, `example.com`'s presents a certificate for another name.
const MX_HOSTS: [(&str, CertKind); 2] = [
    ("mx1.example.net", CertKind::Valid),
    ("mail.example.com", CertKind::WrongName),
];

/// The README's domains, with the MX each publishes.
const DOMAINS: [(&str, &str); 3] = [
    ("example.org", "mx1.example.net"),
    ("example.com", "mail.example.com"),
    ("example.info", "mx1.example.net"),
];

// ---------------------------------------------------------------------------------------
// Reading the README.

/// The fenced block that follows `<!-- test: owner NAME -->` (without its fences).
fn block(name: &str) -> String {
    let marker = format!("<!-- test: owner {name} -->");
    let mut found = README
        .split('\n')
        .skip_while(|l| l.trim() != marker)
        .skip(1);
    let fence = found
        .next()
        .unwrap_or_else(|| panic!("README.md has no `{marker}`: mark the block this test follows"));
    assert!(
        fence.starts_with("```"),
        "README.md: `{marker}` must be followed by a fenced block, not {fence:?}"
    );
    found
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// One `$ command` of a console block and the output the README shows under it.
#[derive(Debug)]
struct Step {
    command: String,
    output: Vec<String>,
}

impl Step {
    /// The command's words (no quoting is used in these examples; a `#` word starts a
    /// comment).
    fn words(&self) -> Vec<&str> {
        self.command
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect()
    }
}

/// The `$ ` commands of a console block.
fn steps(name: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in block(name).lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                output: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.output.push(line.to_owned());
        } else {
            panic!("README.md block `{name}`: output before any `$ ` command: {line:?}");
        }
    }
    steps
}

/// The one step of block `name` whose command starts with `prefix`.
fn step(name: &str, prefix: &str) -> Step {
    let mut found: Vec<Step> = steps(name)
        .into_iter()
        .filter(|s| s.command.starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "README.md block `{name}`: expected one `$ {prefix}…` command"
    );
    found.remove(0)
}

// ---------------------------------------------------------------------------------------
// What the test changes.

/// README text → the test's value, applied in order to the `serve.toml` example, to every
/// command word and to the output the README shows.
fn substitutions(root: &Path, port: u16, pebble: &str, ca_file: &Path) -> Vec<(String, String)> {
    let root = root.display();
    vec![
        // Files live in a temporary directory.
        ("/etc/mta-sts/".into(), format!("{root}/etc/")),
        ("/var/lib/mta-sts/".into(), format!("{root}/lib/")),
        ("/var/spool/mta-sts/".into(), format!("{root}/spool/")),
        // A free loopback port instead of 443 (the README's example keeps the default):
        // a top-level key, so before the first table.
        (
            "[default]\n".into(),
            format!("listen = \"127.0.0.1:{port}\"\n\n[default]\n"),
        ),
        // Pebble instead of Let's Encrypt, and the CA that Pebble's own HTTPS certificate
        // is from (`[acme] ca_file`).
        (
            "[acme]\n".into(),
            format!(
                "[acme]\ndirectory = \"{pebble}\"\nca_file = \"{}\"\n",
                ca_file.display()
            ),
        ),
        // `--check-config` before the first start: no report stored yet, and the hosts
        // wait for certificates from Pebble.
        ("42 report(s) stored".into(), "0 report(s) stored".into()),
        (DEFAULT_ACME_DIRECTORY.into(), pebble.into()),
    ]
}

fn apply(subst: &[(String, String)], text: &str) -> String {
    subst.iter().fold(text.to_owned(), |t, (from, to)| {
        t.replace(from.as_str(), to)
    })
}

/// Options added to every README command that goes to the network: the testkit DNS, trust
/// for Pebble's root and the testkit CA (the MX certificates), and where the policy host
/// (the running `serve`) and the MX hosts (testkit SMTP) listen.
fn net_args(world: &World, trust: &Path, port: u16) -> Vec<String> {
    let mut args = vec![
        "--dns".to_owned(),
        world.dns_addr().to_string(),
        "--ca-file".to_owned(),
        trust.display().to_string(),
        "--connect-to".to_owned(),
        format!(":443:127.0.0.1:{port}"),
    ];
    for (host, _) in MX_HOSTS {
        if let Some(addr) = world.smtp_addr(host) {
            args.push("--connect-to".to_owned());
            args.push(format!("{host}:25:{}:{}", addr.ip(), addr.port()));
        }
    }
    args.extend(["--timeout".to_owned(), "5".to_owned()]);
    args
}

// ---------------------------------------------------------------------------------------
// Running things.

/// A README command (`mta-sts …`) with the substitutions applied, run by the test binary.
fn command(step: &Step, subst: &[(String, String)]) -> Command {
    let words = step.words();
    assert_eq!(
        words.first(),
        Some(&"mta-sts"),
        "not an mta-sts command: {step:?}"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mta-sts"));
    cmd.args(words[1..].iter().map(|w| apply(subst, w)))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run mta-sts")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The command's standard output is the output the README shows (after substitution).
fn assert_output_as_shown(step: &Step, subst: &[(String, String)], out: &Output) {
    let shown: Vec<String> = step.output.iter().map(|l| apply(subst, l)).collect();
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        printed,
        shown,
        "README.md: `$ {}` prints something else than the README shows; fix the README \
         (or the program)\n{}",
        step.command,
        text(out)
    );
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
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

fn pebble_installed() -> bool {
    let found = Command::new("pebble")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "pebble is not installed (apt-get install pebble) and MTA_STS_REQUIRE_INTEROP=1"
        );
        eprintln!(
            "SKIPPED: pebble is not installed (apt-get install pebble); set MTA_STS_REQUIRE_INTEROP=1 to make this a failure"
        );
    }
    found
}

/// Pebble with its validation authority resolving through the testkit DNS and connecting
/// to `tls_port` for TLS-ALPN-01 (where `serve` listens). Its own HTTPS certificate is from
/// the testkit CA.
fn start_pebble(world: &World, dir: &Path, tls_port: u16) -> (Killed, SocketAddr, SocketAddr) {
    let leaf = world
        .ca()
        .issue(&["localhost", "127.0.0.1"], Validity::Current)
        .expect("issue");
    std::fs::write(dir.join("pebble.pem"), &leaf.cert_pem).expect("write");
    std::fs::write(dir.join("pebble.key"), &leaf.key_pem).expect("write");
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mgmt = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let config = serde_json::json!({"pebble": {
        "listenAddress": listen.to_string(),
        "managementListenAddress": mgmt.to_string(),
        "certificate": dir.join("pebble.pem"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": free_port(),
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write");
    let child = Killed(
        Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(world.dns_addr().to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(dir.join("pebble.log")).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pebble"),
    );
    let started = Instant::now();
    while TcpStream::connect(listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "pebble did not listen on {listen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, listen, mgmt)
}

/// Pebble's issuing root (new every run), from its management interface.
fn pebble_root(world: &World, mgmt: SocketAddr) -> String {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(world.client_config(), name).expect("TLS");
    let started = Instant::now();
    let tcp = loop {
        match TcpStream::connect(mgmt) {
            Ok(tcp) => break tcp,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "pebble management {mgmt}: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = Vec::new();
    // Pebble may close without close_notify after `Connection: close`.
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let start = response.find("-----BEGIN").expect("a PEM root from pebble");
    response[start..].to_owned()
}

/// `NAME. IN TXT "VALUE"` lines of `--print-records` / `records`: (name, value).
fn txt_records(printed: &str) -> Vec<(String, String)> {
    printed
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let (name, value) = l.split_once(" IN TXT ")?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((name.trim_end_matches('.').to_owned(), value.to_owned()))
        })
        .collect()
}

/// Publishes the records as printed (the owner copies them into the zone).
fn publish(world: &World, printed: &str) -> Vec<(String, String)> {
    let records = txt_records(printed);
    for (name, value) in &records {
        world.dns().set_txt(name, &[&[value.as_str()]]);
    }
    records
}

fn value_of<'a>(records: &'a [(String, String)], name: &str) -> &'a str {
    records
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} record printed: {records:?}"))
}

/// `mta-sts query DOMAIN --json` as a sender sees it.
fn query(net: &[String], domain: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["query", domain, "--json"])
        .args(net)
        .env("NO_COLOR", "1")
        .output()
        .expect("query");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until `query DOMAIN` gets a policy whose mode is `mode`.
fn wait_for_policy(net: &[String], domain: &str, mode: &str, log: &Path) {
    let started = Instant::now();
    loop {
        let v = query(net, domain);
        if v["policy"]["mode"] == mode {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{domain}: no policy of mode {mode} served within 45 s; last query: {v}\nserve log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn report(id: &str, domain: &str) -> String {
    format!(
        r#"{{"organization-name":"Sender Inc.","date-range":{{"start-datetime":"2024-03-01T00:00:00Z","end-datetime":"2024-03-01T23:59:59Z"}},"contact-info":"tlsrpt@sender.example","report-id":"{id}","policies":[{{"policy":{{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: mail.example.com","max_age: 604800"],"policy-domain":"{domain}"}},"summary":{{"total-successful-session-count":7,"total-failure-session-count":3}},"failure-details":[{{"result-type":"certificate-host-mismatch","sending-mta-ip":"192.0.2.1","receiving-mx-hostname":"mail.example.com","failed-session-count":3}}]}}]}}"#
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------

#[test]
fn readme_owner_walkthrough() {
    if !pebble_installed() {
        return;
    }
    let mut world_builder = World::builder();
    for (host, kind) in MX_HOSTS {
        world_builder = world_builder.smtp(SmtpConfig::new(host).starttls(kind));
    }
    let world = world_builder.start();
    for (domain, mx) in DOMAINS {
        world.dns().set_mx(domain, &[(10, mx)]);
        world
            .dns()
            .set_a(&format!("mta-sts.{domain}"), &[Ipv4Addr::LOCALHOST]);
    }
    for (host, _) in MX_HOSTS {
        world.dns().set_a(host, &[Ipv4Addr::LOCALHOST]);
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // What the packaging creates on a real host.
    for dir in ["etc", "lib", "spool"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let port = free_port();
    let (_pebble, pebble_addr, pebble_mgmt) = start_pebble(&world, root, port);
    let subst = substitutions(
        root,
        port,
        &format!("https://{pebble_addr}/dir"),
        world.ca_file(),
    );
    // Clients trust Pebble's root (the policy hosts) and the testkit CA (the MX hosts).
    let pebble_root = pebble_root(&world, pebble_mgmt);
    let trust = root.join("trust.pem");
    std::fs::write(&trust, format!("{pebble_root}{}", world.ca_pem())).expect("write");
    let net = net_args(&world, &trust, port);
    // Senders fetching the policies trust Pebble's root alone: the certificates are ACME's.
    let pebble_pem = root.join("pebble-root.pem");
    std::fs::write(&pebble_pem, &pebble_root).expect("write");
    let sender = net_args(&world, &pebble_pem, port);

    // The serve.toml example, as the README shows it.
    let config_text = apply(&subst, &block("serve.toml"));
    let config: PathBuf = config_text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .map(PathBuf::from)
        .expect("the serve.toml example starts with `# <its path>`");
    std::fs::write(&config, &config_text).expect("write serve.toml");

    // Before the first start, `--check-config` prints what the README shows: valid, the
    // hosts waiting for their ACME certificates, where reports go.
    let check_config = || {
        let step = step("check-config", "mta-sts serve --check-config");
        let out = run(command(&step, &subst));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_output_as_shown(&step, &subst, &out);
    };

    // The serve commands: write the policy file, print and publish the records, serve.
    let log = root.join("serve.log");
    let mut serve: Option<Killed> = None;
    let mut published = Vec::new();
    let mut serve_check = None;
    for step in steps("serve commands") {
        let words = step.words();
        match words.as_slice() {
            ["cat", file] => {
                let file = apply(&subst, file);
                std::fs::write(&file, step.output.join("\n") + "\n").expect("write");
            }
            ["mta-sts", "serve", rest @ ..] if rest.contains(&"--print-records") => {
                let out = run(command(&step, &subst));
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                published = publish(&world, &String::from_utf8_lossy(&out.stdout));
            }
            ["mta-sts", "serve", rest @ ..] if rest.contains(&"--check") => {
                serve_check = Some(step);
            }
            ["mta-sts", "serve", ..] => {
                check_config();
                let mut cmd = command(&step, &subst);
                cmd.stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).expect("log"));
                serve = Some(Killed(cmd.spawn().expect("spawn serve")));
            }
            _ => panic!(
                "README.md block `serve commands`: what is `$ {}`?",
                step.command
            ),
        }
    }
    assert!(
        serve.is_some(),
        "README.md: no `$ mta-sts serve --config …`"
    );
    let serve_check = serve_check.expect("README.md: no `$ mta-sts serve --check …`");
    for (domain, _) in DOMAINS {
        let sts = value_of(&published, &format!("_mta-sts.{domain}"));
        assert!(sts.starts_with("v=STSv1; id="), "{sts}");
        value_of(&published, &format!("_smtp._tls.{domain}"));
    }

    // Certificates from Pebble: every domain's policy is discovered by a sender.
    for (domain, _) in DOMAINS {
        let mode = if domain == "example.com" {
            "testing"
        } else {
            "enforce"
        };
        wait_for_policy(&sender, domain, mode, &log);
    }

    // A TLS-RPT report, gzip, POSTed to the published https rua (as `report send` does),
    // lands in the store `report summary` reads.
    let rua = value_of(&published, "_smtp._tls.example.com")
        .split_once("rua=")
        .map(|(_, r)| r.trim().to_owned())
        .expect("rua");
    assert!(rua.starts_with("https://"), "{rua}");
    let delivery = DeliveryConfig {
        extra_roots: read_pem_certs(pebble_root.as_bytes()).expect("pebble root"),
        connect_to: vec![
            format!(":443:127.0.0.1:{port}")
                .parse()
                .expect("connect-to"),
        ],
        timeout: Duration::from_secs(20),
        ..DeliveryConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let post = |json: String| {
        runtime
            .block_on(post_https(&delivery, &rua, &gzip(json.as_bytes())))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        post(report("owner-1", "example.com")),
        Ok(201),
        "serve log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // A report about a domain this host does not serve is refused (403), not stored.
    match post(report("owner-2", "elsewhere.example")) {
        Err(e) if e.contains("HTTP 403") => {}
        other => panic!("a foreign report: {other:?}"),
    }
    let db = apply(&subst, "/var/lib/mta-sts/reports.db");
    let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["report", "summary", "--json", "--db", &db])
        .output()
        .expect("report summary");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    let days: Vec<&Value> = summary["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter(|d| d["policy_domain"] == "example.com" && d["day"] == "2024-03-01")
        .collect();
    assert_eq!(days.len(), 1, "{summary:#}");
    assert!(
        !summary.to_string().contains("elsewhere.example"),
        "{summary:#}"
    );
    assert_eq!(days[0]["successful"], 7, "{summary:#}");
    assert_eq!(days[0]["failed"], 3, "{summary:#}");

    // `records` prints what the README shows, for the policy file the README shows.
    for records_step in steps("records") {
        let words = records_step.words();
        if let ["cat", file] = words.as_slice() {
            std::fs::write(root.join(file), records_step.output.join("\n") + "\n").expect("write");
            continue;
        }
        let mut cmd = command(&records_step, &subst);
        cmd.current_dir(root);
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_output_as_shown(&records_step, &subst, &out);
    }

    // "`serve --print-records` prints the same [as `records`] for every configured domain":
    // the policy_file domain's records, from `records` on that file with its rua.
    let info_policy = apply(&subst, "/etc/mta-sts/example.info.txt");
    let info_rua = value_of(&published, "_smtp._tls.example.info")
        .split_once("rua=")
        .map(|(_, r)| r.trim().to_owned())
        .expect("rua");
    let out = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args([
            "records",
            "example.info",
            "--policy",
            &info_policy,
            "--rua",
            &info_rua,
        ])
        .output()
        .expect("records");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let records = txt_records(&String::from_utf8_lossy(&out.stdout));
    for (name, value) in &records {
        assert_eq!(
            value_of(&published, name),
            value,
            "{records:?} {published:?}"
        );
    }
    assert_eq!(records.len(), 2, "{records:?}");

    // Before the switch: `check` warns that enforce would defer example.com's mail.
    let check_step = step("check", "mta-sts check example.com");
    let check = || {
        let mut cmd = command(&check_step, &subst);
        cmd.args(&net).args(["--smtp-timeout", "5"]);
        run(cmd)
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout.contains("example.com: WARN"), "{stdout}");
    assert!(
        stdout.contains("would an enforcing sender deliver mail? no"),
        "{stdout}"
    );
    assert!(stdout.contains("[enforce-would-defer]"), "{stdout}");
    assert!(stdout.contains("mx-cert-name-mismatch"), "{stdout}");
    // `serve --check`: what the world sees is what is served (warnings only).
    let serve_check_run = || {
        let mut cmd = command(&serve_check, &subst);
        cmd.args(&net);
        run(cmd)
    };
    let out = serve_check_run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("[serve-"),
        "{}",
        text(&out)
    );

    // The switch, as the README says: change the mode, save; serve reloads; publish the
    // new id.
    assert_eq!(
        config_text.matches("mode = \"testing\"").count(),
        1,
        "the serve.toml example has one domain in testing mode"
    );
    std::fs::write(
        &config,
        config_text.replace("mode = \"testing\"", "mode = \"enforce\""),
    )
    .expect("write serve.toml");
    wait_for_policy(&sender, "example.com", "enforce", &log);
    let print = steps("serve commands")
        .into_iter()
        .find(|s| s.words().contains(&"--print-records"))
        .expect("--print-records");
    // Until the new id is published, `serve --check` says the world has a stale record.
    let out = serve_check_run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[serve-id-not-published]"),
        "{}",
        text(&out)
    );
    let out = run(command(&print, &subst));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let republished = publish(&world, &String::from_utf8_lossy(&out.stdout));
    assert_ne!(
        value_of(&published, "_mta-sts.example.com"),
        value_of(&republished, "_mta-sts.example.com"),
        "a new policy has a new id"
    );
    assert_eq!(
        value_of(&published, "_mta-sts.example.org"),
        value_of(&republished, "_mta-sts.example.org"),
        "an unchanged policy keeps its id"
    );

    // After the switch: senders defer example.com's mail, and `check` says so.
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout.contains("example.com: FAIL"), "{stdout}");
    assert!(stdout.contains("[delivery-deferred]"), "{stdout}");
    let out = serve_check_run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("[delivery-deferred]"), "{stdout}");
    assert!(!stdout.contains("[serve-"), "{stdout}");
}
