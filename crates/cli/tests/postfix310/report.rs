//! TLS-RPT reports from Postfix 3.10's own events (RFC 8460 §4): Postfix → libtlsrpt → the
//! daemon's collector socket → `mta-sts report send` → `mta-sts report import`, and the same
//! datagrams cross-checked with sys4's `tlsrpt-reporter` (the reference collector,
//! `tlsrpt-collectd` + `tlsrpt-fetcher`, in a venv that `scripts/tlsrpt-reporter` installs
//! once and caches outside the repository).
//!
//! Postfix's `smtp_tlsrpt_socket_name` is a socket of the test ([`Capture`]) that records
//! every datagram and passes it on to the daemon's collector, so both collectors get exactly
//! what libtlsrpt sent.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use mta_sts_testkit::{CertKind, World};
use serde_json::Value;

use crate::daemon_support::{bin, eventually, require_interop};
use crate::lab::{MNT, trixie_root};
use crate::{Lab, TLSRPT};

/// Sessions per (policy domain, policy type, result): `"success"` or an RFC 8460 §4.3
/// result type, plus `"total-failure"` for a policy's `total-failure-session-count`.
type Sessions = BTreeMap<(String, String, String), u64>;

/// A datagram socket in the test's directory that Postfix sends its TLSRPT datagrams to:
/// each is recorded and forwarded to `forward` (the daemon's collector).
struct Capture {
    datagrams: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(path: &Path, forward: PathBuf) -> Capture {
        let socket = UnixDatagram::bind(path).unwrap();
        // Postfix's smtp(8) runs as the root's postfix user.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (datagrams, stop) = (Arc::clone(&datagrams), Arc::clone(&stop));
            std::thread::spawn(move || {
                let out = UnixDatagram::unbound().unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let datagram = buf[..len].to_vec();
                    let _ = out.send_to(&datagram, &forward);
                    datagrams.lock().unwrap().push(datagram);
                }
            })
        };
        Capture {
            datagrams,
            stop,
            thread: Some(thread),
        }
    }

    fn datagrams(&self) -> Vec<Vec<u8>> {
        self.datagrams.lock().unwrap().clone()
    }

    /// The datagrams so far, one a line, for assertion messages.
    fn dump(&self) -> String {
        let datagrams = self.datagrams();
        let mut text = format!("{} datagrams:\n", datagrams.len());
        for d in &datagrams {
            text.push_str(&String::from_utf8_lossy(d));
            text.push('\n');
        }
        text
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bin directory of the tlsrpt-reporter venv: `MTA_STS_TLSRPT_REPORTER` (set by
/// `scripts/test`), else installed (or found in the cache) by `scripts/tlsrpt-reporter`.
/// `None` with a SKIP message when it cannot be had (no python3-venv, no PyPI); a panic
/// instead under `MTA_STS_REQUIRE_INTEROP=1`.
fn tlsrpt_reporter() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BIN.get_or_init(|| {
        let usable = |dir: &Path| dir.join("tlsrpt-collectd").exists();
        if let Some(dir) = std::env::var_os("MTA_STS_TLSRPT_REPORTER") {
            let dir = PathBuf::from(dir);
            return if usable(&dir) {
                Ok(dir)
            } else {
                Err(format!(
                    "MTA_STS_TLSRPT_REPORTER={} has no tlsrpt-collectd",
                    dir.display()
                ))
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tlsrpt-reporter");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && usable(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "scripts/tlsrpt-reporter could not install tlsrpt-reporter ({})",
                out.status
            ))
        }
    });
    match found {
        Ok(dir) => Some(dir.clone()),
        Err(why) => {
            assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
            eprintln!("SKIP (cross-check with tlsrpt-reporter): {why}");
            None
        }
    }
}

/// `mta-sts report --db DB ARGS…`, which must exit 0; its standard output.
pub(crate) fn mta_sts_report(db: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(["report", "--db"])
        .arg(db)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mta-sts report {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sessions of RFC 8460 reports (JSON objects).
pub(crate) fn report_sessions(reports: &[Value]) -> Sessions {
    let mut sessions = Sessions::new();
    for report in reports {
        for policy in report["policies"].as_array().unwrap() {
            let domain = policy["policy"]["policy-domain"]
                .as_str()
                .unwrap()
                .to_owned();
            let kind = policy["policy"]["policy-type"].as_str().unwrap().to_owned();
            let mut add = |result: &str, n: u64| {
                *sessions
                    .entry((domain.clone(), kind.clone(), result.to_owned()))
                    .or_default() += n;
            };
            add(
                "success",
                policy["summary"]["total-successful-session-count"]
                    .as_u64()
                    .unwrap(),
            );
            add(
                "total-failure",
                policy["summary"]["total-failure-session-count"]
                    .as_u64()
                    .unwrap(),
            );
            for detail in policy["failure-details"].as_array().into_iter().flatten() {
                // RFC 8460 §4.4: the EHLO string, not Postfix's whole EHLO reply.
                if let Some(helo) = detail["receiving-mx-helo"].as_str() {
                    assert!(
                        !helo.contains(char::is_whitespace) && !helo.starts_with("250"),
                        "receiving-mx-helo {helo:?}"
                    );
                }
                add(
                    detail["result-type"].as_str().unwrap(),
                    detail["failed-session-count"].as_u64().unwrap(),
                );
            }
        }
    }
    sessions.retain(|_, n| *n > 0);
    sessions
}

/// The sessions sys4's tlsrpt-reporter reports for the `datagrams`: fed to `tlsrpt-collectd`
/// (its SQLite storage in `dir`), read back with `tlsrpt-fetcher` for the day, and counted
/// the way `tlsrpt-reportd` renders its reports (`TLSRPTReportd.render_report`): per policy
/// `total-successful-session-count = cntrtotal - cntrfailure`,
/// `total-failure-session-count = cntrfailure`, and one `failed-session-count` per failure
/// detail, its code mapped to the RFC 8460 result type.
fn sys4_sessions(venv: &Path, dir: &Path, datagrams: &[Vec<u8>]) -> Sessions {
    let db = dir.join("sys4.sqlite");
    let storage = format!("sqlite://{}", db.display());
    let socket = dir.join("sys4.sock");
    let mut collectd = Command::new(venv.join("tlsrpt-collectd"))
        .arg("--storage")
        .arg(&storage)
        .arg("--socketname")
        .arg(&socket)
        .arg("--logfilename")
        .arg(dir.join("sys4-collectd.log"))
        .arg("--pidfilename")
        .arg(dir.join("sys4-collectd.pid"))
        .args(["--sockettimeout", "1", "--log_level", "debug"])
        .spawn()
        .expect("tlsrpt-collectd");
    assert!(
        eventually(Duration::from_secs(20), || socket.exists()),
        "tlsrpt-collectd did not bind its socket"
    );
    let out = UnixDatagram::unbound().unwrap();
    for datagram in datagrams {
        out.send_to(datagram, &socket).unwrap();
    }
    // It commits once the socket has been idle for `--sockettimeout`, and logs the total
    // read so far (at debug level); then it can stop (SIGTERM).
    let log = dir.join("sys4-collectd.log");
    let total = format!("({} total)", datagrams.len());
    let committed = eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&total))
    });
    let _ = Command::new("kill")
        .args(["-TERM", &collectd.id().to_string()])
        .status();
    assert!(collectd.wait().unwrap().success(), "tlsrpt-collectd failed");
    assert!(
        committed,
        "tlsrpt-collectd did not commit {total}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The collector rolls its database over at 00:00 UTC, and the fetcher reads the rolled
    // over one (`<db>.yesterday`); a test does that rename itself.
    std::fs::rename(&db, dir.join("sys4.sqlite.yesterday")).unwrap();
    let day = time_now_day();
    let fetch = |args: &[&str]| {
        let out = Command::new(venv.join("tlsrpt-fetcher"))
            .arg("--storage")
            .arg(&storage)
            .arg("--logfilename")
            .arg(dir.join("sys4-fetcher.log"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tlsrpt-fetcher {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // The domain list: a version line, the fetcher's time, maybe the completed day, the
    // domains, ".".
    let list = fetch(&[&day]);
    let domains: Vec<String> = list
        .lines()
        .skip(2)
        .take_while(|l| *l != ".")
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    let codes: BTreeMap<i64, &str> = [
        (201, "starttls-not-supported"),
        (202, "certificate-host-mismatch"),
        (203, "certificate-not-trusted"),
        (204, "certificate-expired"),
        (205, "validation-failure"),
        (301, "sts-policy-fetch-error"),
        (302, "sts-policy-invalid"),
        (303, "sts-webpki-invalid"),
        (304, "tlsa-invalid"),
        (305, "dnssec-invalid"),
        (306, "dane-required"),
    ]
    .into();
    let types: BTreeMap<i64, &str> = [(1, "tlsa"), (2, "sts"), (9, "no-policy-found")].into();
    let mut sessions = Sessions::new();
    for domain in domains {
        let details: Value = serde_json::from_str(&fetch(&[&day, &domain])).unwrap();
        for policies in details["policies"].as_object().unwrap().values() {
            for (policy, counts) in policies.as_object().unwrap() {
                let policy: Value = serde_json::from_str(policy).unwrap();
                let key = |result: &str| {
                    (
                        policy["policy-domain"].as_str().unwrap().to_owned(),
                        types[&policy["policy-type"].as_i64().unwrap()].to_owned(),
                        result.to_owned(),
                    )
                };
                let total = counts["cntrtotal"].as_u64().unwrap();
                let failed = counts["cntrfailure"].as_u64().unwrap();
                *sessions.entry(key("success")).or_default() += total - failed;
                *sessions.entry(key("total-failure")).or_default() += failed;
                for (detail, n) in counts["failures"].as_object().unwrap() {
                    let detail: Value = serde_json::from_str(detail).unwrap();
                    let result = codes[&detail["c"].as_i64().unwrap()];
                    *sessions.entry(key(result)).or_default() += n.as_u64().unwrap();
                }
            }
        }
    }
    sessions.retain(|_, n| *n > 0);
    sessions
}

/// Today's UTC date (YYYY-MM-DD), the day tlsrpt-collectd files datagrams under.
fn time_now_day() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tlsrpt::UtcDateTime::from_unix_seconds(i64::try_from(now).unwrap()).to_string()[..10].to_owned()
}

pub(crate) fn key(domain: &str, kind: &str, result: &str) -> (String, String, String) {
    (domain.to_owned(), kind.to_owned(), result.to_owned())
}

/// RFC 8460 §4: a day of Postfix 3.10 deliveries becomes the day's reports. Postfix reports
/// every TLS session through libtlsrpt to the daemon's collector; `mta-sts report send`
/// generates the reports of the completed day from the collector's events file, and
/// `mta-sts report import` reads them back with the same sessions per policy domain and
/// result type: `good.test` two successes; `wrongname.test` one failed session
/// (`certificate-host-mismatch`, deferred and, with `maximal_queue_lifetime = 0`, not
/// retried); `mixed.test`, whose first MX has a certificate for another name and whose
/// second is valid, per message one failed session on the first MX and one successful on
/// the second; `nosts.test` one `no-policy-found` success.
///
/// The same datagrams fed to sys4's `tlsrpt-collectd` give the same sessions per (policy
/// domain, policy type, result type), totals included: there is no difference to explain.
/// Two things one might expect to differ do not:
/// - Postfix 3.10 sends one datagram per TLS *session*, not per delivery request: a
///   message that fails on the first MX and is delivered by the second is two datagrams
///   (`"f": 1` with one failure detail, then `"f": 0`), so tlsrpt-reporter's per-datagram
///   counting (`cntrtotal`, `cntrfailure`) and the daemon's per-session events agree (the
///   daemon would also count a datagram whose final success follows failure details as
///   failed sessions plus one success, where tlsrpt-reporter would count one success;
///   Postfix 3.10 never sends one).
/// - Postfix puts the MX's whole multi-line EHLO reply in `"h"`; tlsrpt-reporter carries it
///   verbatim into `receiving-mx-helo`, the daemon the domain its first line announces (RFC
///   8460 §4.4 asks for the EHLO string). Sessions are counted the same either way.
#[test]
fn rfc8460_4_postfix_events_make_the_days_report_read_back_and_match_tlsrpt_reporter() {
    let Some(root) = trixie_root() else {
        return;
    };
    let world = World::builder()
        .domain("good.test", |d| d.enforce().tlsrpt(TLSRPT))
        .domain("wrongname.test", |d| d.enforce().tlsrpt(TLSRPT))
        .domain("mixed.test", |d| {
            d.mta_sts("enforce", &["mail1.mixed.test", "mail2.mixed.test"])
                .tlsrpt(TLSRPT)
        })
        .domain("nosts.test", |d| d.mx(10, "mail.nosts.test").tlsrpt(TLSRPT))
        .start();
    let dns = world.dns_addr().to_string();
    let lab = Lab::start(
        &root,
        world,
        &[
            ("mail.good.test", CertKind::Valid),
            ("mail.wrongname.test", CertKind::WrongName),
            ("mail1.mixed.test", CertKind::WrongName),
            ("mail2.mixed.test", CertKind::Valid),
            ("mail.nosts.test", CertKind::Valid),
        ],
        "",
        // Postfix reports to the capture socket (the later setting wins); a deferred message
        // is tried once, so the day's failures are known.
        &format!(
            "smtp_tlsrpt_socket_name = {MNT}/capture.sock\n\
             maximal_queue_lifetime = 0\nbounce_queue_lifetime = 0\n"
        ),
        "",
    );
    let capture = Capture::start(&lab.dir.join("capture.sock"), lab.dir.join("tlsrpt.sock"));
    // One message at a time: each is its own delivery request, and each TLS session its
    // own datagram (mixed.test: two per message).
    for rcpt in [
        "user@good.test",
        "other@good.test",
        "user@wrongname.test",
        "user@mixed.test",
        "other@mixed.test",
        "user@nosts.test",
    ] {
        lab.postfix.send(rcpt);
        let status = lab.postfix.status_line(rcpt);
        let expected = if rcpt.ends_with("wrongname.test") {
            "dsn=4.7.5"
        } else {
            "status=sent"
        };
        assert!(status.contains(expected), "{status}\n{}", lab.dump());
    }
    let all_collected = eventually(Duration::from_secs(10), || {
        capture.datagrams().len() == 8 && lab.events().lines().count() == 8
    });
    assert!(all_collected, "{}\n{}", capture.dump(), lab.dump());

    // The day's reports, as `report send` generates them once the day is over.
    let last_day = lab
        .events()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["time"]
                .as_str()
                .unwrap()[..10]
                .to_owned()
        })
        .max()
        .unwrap();
    let next_day = tlsrpt::UtcDateTime::parse(&format!("{last_day}T00:10:00Z"))
        .unwrap()
        .unix_seconds()
        + 86_400;
    let events = lab.dir.join("events.jsonl");
    let printed = mta_sts_report(
        &lab.dir.join("outbox.db"),
        &[
            "send",
            "--events",
            events.to_str().unwrap(),
            "--submitter",
            "sender.test",
            "--dns",
            &dns,
            "--now",
            &next_day.to_string(),
            "--dry-run",
        ],
    );
    let reports: Vec<Value> = serde_json::Deserializer::from_str(&printed)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    let ours = report_sessions(&reports);
    let expected: Sessions = [
        (key("good.test", "sts", "success"), 2),
        (key("wrongname.test", "sts", "total-failure"), 1),
        (key("wrongname.test", "sts", "certificate-host-mismatch"), 1),
        (key("mixed.test", "sts", "success"), 2),
        (key("mixed.test", "sts", "total-failure"), 2),
        (key("mixed.test", "sts", "certificate-host-mismatch"), 2),
        (key("nosts.test", "no-policy-found", "success"), 1),
    ]
    .into();
    assert_eq!(ours, expected, "{printed}\n{}", lab.dump());

    // `report import` reads them back: the same sessions per policy domain and result type.
    let files = lab.dir.join("reports");
    std::fs::create_dir(&files).unwrap();
    for (n, report) in reports.iter().enumerate() {
        std::fs::write(files.join(format!("{n}.json")), report.to_string()).unwrap();
    }
    let store = lab.dir.join("reports.db");
    let imported: Value = serde_json::from_str(&mta_sts_report(
        &store,
        &["import", "--json", "--no-dkim", files.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(imported["imported"], reports.len(), "{imported}");
    let summary: Value =
        serde_json::from_str(&mta_sts_report(&store, &["summary", "--json"])).unwrap();
    let mut read_back: BTreeMap<String, (u64, u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for day in summary["days"].as_array().unwrap() {
        let entry = read_back
            .entry(day["policy_domain"].as_str().unwrap().to_owned())
            .or_default();
        entry.0 += day["successful"].as_u64().unwrap();
        entry.1 += day["failed"].as_u64().unwrap();
        for (result, n) in day["failures_by_result_type"].as_object().unwrap() {
            *entry.2.entry(result.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    let mismatch = |n: u64| BTreeMap::from([("certificate-host-mismatch".to_owned(), n)]);
    let expected_back = BTreeMap::from([
        ("good.test".to_owned(), (2, 0, BTreeMap::new())),
        ("wrongname.test".to_owned(), (0, 1, mismatch(1))),
        ("mixed.test".to_owned(), (2, 2, mismatch(2))),
        ("nosts.test".to_owned(), (1, 0, BTreeMap::new())),
    ]);
    assert_eq!(read_back, expected_back, "{summary}");

    // The cross-check: the same datagrams through sys4's collector.
    let Some(venv) = tlsrpt_reporter() else {
        return;
    };
    let theirs = sys4_sessions(&venv, &lab.dir, &capture.datagrams());
    assert_eq!(theirs, expected, "{}", capture.dump());
}
