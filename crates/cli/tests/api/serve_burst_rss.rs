//! `scripts/serve-burst-rss`, the harness behind docs/performance.md's figures for `serve`'s
//! memory after bursts of large TLS-RPT reports, run small against the built binary: it sets
//! up and starts `serve`, every report of a burst is stored (201), and it prints the lines
//! the page quotes and stops the server. Skipped without python3 or openssl unless
//! `MTA_STS_REQUIRE_INTEROP=1`.

use std::path::Path;
use std::process::Command;

use crate::daemon_support::{bin, have};

/// The MB figure of the line starting with `prefix` (`baseline 33.4 MB`, `round 1: …; RSS
/// 40.1 MB (…)`, `peak 59.3 MB`).
fn figure(out: &str, prefix: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}…` in:\n{out}"));
    let before_mb = line
        .split(" MB")
        .next()
        .unwrap_or_else(|| panic!("no MB in `{line}`"));
    let number = before_mb.rsplit(' ').next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no figure in `{line}`"))
}

#[test]
fn serve_burst_rss_measures_a_small_burst_and_stops_the_server() {
    if !have("python3", "python3") || !have("openssl", "openssl") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/serve-burst-rss");
    let out = Command::new(&script)
        .arg(bin())
        .args(["--rounds", "2", "--parallel", "3", "--mb", "1"])
        .output()
        .expect("run scripts/serve-burst-rss");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three 1 MB reports fit the default intake limits (4 at once, 32 MiB inflight).
    for round in ["round 1: 3 x 201; RSS", "round 2: 3 x 201; RSS"] {
        assert!(stdout.contains(round), "no `{round}` in:\n{stdout}");
    }
    let baseline = figure(&stdout, "baseline ");
    let peak = figure(&stdout, "peak ");
    assert!(baseline > 1.0, "{stdout}");
    assert!(figure(&stdout, "round 2: ") > 1.0, "{stdout}");
    assert!(peak >= baseline, "{stdout}");
    assert!(
        stdout.contains("stopped (SIGTERM): exit 0"),
        "the server did not stop cleanly:\n{stdout}"
    );
}

#[test]
fn serve_burst_rss_refuses_a_missing_binary() {
    if !have("python3", "python3") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/serve-burst-rss");
    let out = Command::new(&script)
        .arg("/nonexistent/mta-sts")
        .output()
        .expect("run scripts/serve-burst-rss");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an executable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
