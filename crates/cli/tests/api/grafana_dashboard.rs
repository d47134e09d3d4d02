//! `packaging/grafana/mta-sts.json` (#16 item 7) cannot drift from the metrics: every
//! metric each panel (and each template variable) queries, and every `label="value"`
//! matcher on it, must appear in the real `/metrics` output of a running `mta-sts daemon`
//! and a running `mta-sts serve` (with `metrics_listen`).

use crate::daemon_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::*;
use mta_sts_testkit::{Validity, World};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../packaging/grafana/mta-sts.json"
);

/// Metric name → the label pairs seen on its samples.
type Exposition = BTreeMap<String, BTreeSet<(String, String)>>;

/// The sample lines of a Prometheus text exposition.
fn parse_exposition(text: &str, into: &mut Exposition) {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = into.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{')
            && let Some((inner, _)) = rest.split_once('}')
        {
            labels.extend(matchers(inner));
        }
    }
}

/// `k="v"` pairs of a label list or a selector (`=~`, `!=` and `!~` matchers are left out).
fn matchers(inner: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = inner;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let regex_or_not = after.starts_with('~') || key.ends_with('!');
        let after = after.trim_start_matches('~');
        let Some(value) = after.strip_prefix('"') else {
            break;
        };
        let Some((value, tail)) = value.split_once('"') else {
            break;
        };
        if !regex_or_not {
            out.push((key.to_owned(), value.to_owned()));
        }
        rest = tail;
    }
    out
}

/// Each `mta_sts_*` metric an expression names, with the equality matchers of its selector.
fn metrics_in(expr: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("mta_sts_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let after = &tail[end..];
        let selector = after
            .strip_prefix('{')
            .and_then(|s| s.split_once('}'))
            .map(|(inner, _)| matchers(inner))
            .unwrap_or_default();
        out.push((name, selector));
        rest = after;
    }
    out
}

/// Every query of the dashboard: panel targets (rows included) and template variables.
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                out.push((title.clone(), expr.to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = var["definition"].as_str() {
            out.push((format!("variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

/// What in `queries` the exposition lacks, one line each.
fn missing(queries: &[(String, String)], exposition: &Exposition) -> Vec<String> {
    let mut out = Vec::new();
    for (title, expr) in queries {
        for (name, selector) in metrics_in(expr) {
            let Some(labels) = exposition.get(&name) else {
                out.push(format!("{title}: no metric {name}"));
                continue;
            };
            for pair in selector.iter().filter(|(k, _)| k != "instance") {
                if !labels.contains(pair) {
                    out.push(format!("{title}: {name} has no {}=\"{}\"", pair.0, pair.1));
                }
            }
        }
    }
    out
}

#[test]
fn the_checker_finds_what_is_missing() {
    let mut exposition = Exposition::new();
    parse_exposition(
        "# TYPE mta_sts_x_total counter\nmta_sts_x_total{answer=\"ok\"} 3\nmta_sts_y 1\n",
        &mut exposition,
    );
    let q = |e: &str| vec![("p".to_owned(), e.to_owned())];
    assert!(
        missing(
            &q("sum(rate(mta_sts_x_total{answer=\"ok\"}[5m])) + mta_sts_y"),
            &exposition
        )
        .is_empty()
    );
    assert!(
        missing(
            &q("mta_sts_x_total{answer=~\"temp|ok\",instance=~\"$i\"}"),
            &exposition
        )
        .is_empty()
    );
    assert_eq!(
        missing(&q("rate(mta_sts_gone_total[5m])"), &exposition),
        ["p: no metric mta_sts_gone_total"]
    );
    assert_eq!(
        missing(&q("mta_sts_x_total{answer=\"temp\"}"), &exposition),
        ["p: mta_sts_x_total has no answer=\"temp\""]
    );
}

/// `mta-sts serve` with a policy host certificate and `metrics_listen`; its `/metrics`.
fn serve_metrics() -> String {
    let world = World::empty();
    let dir = tempfile::tempdir().unwrap();
    let issued = world
        .ca()
        .issue(&["mta-sts.served.test"], Validity::Current)
        .unwrap();
    std::fs::write(
        dir.path().join("host.pem"),
        format!("{}{}", issued.cert_pem, world.ca_pem()),
    )
    .unwrap();
    std::fs::write(dir.path().join("host.key"), &issued.key_pem).unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\nmetrics_listen = \"{metrics}\"\n[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\ncert = \"host.pem\"\nkey = \"host.key\"\n",
            free_port()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    let up = eventually(Duration::from_secs(20), || {
        if std::net::TcpStream::connect(metrics).is_err() {
            return false;
        }
        let (status, body) = http_get(metrics, "/metrics");
        text = body;
        status == 200
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "mta-sts serve did not serve /metrics on {metrics}");
    text
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let queries = queries(&dashboard);
    let names: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, e)| metrics_in(e).into_iter().map(|(n, _)| n))
        .collect();
    assert!(names.len() >= 30, "the dashboard queries only {names:?}");

    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .start();
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProc::start(
        dir.path(),
        "",
        &format!("[cache]\nstore = \"memory\"\n{}", resolver_section(&world)),
        &[],
    );
    assert!(daemon.query("policy good.test").starts_with("OK secure"));
    let (status, daemon_text) = daemon.http_get("/metrics");
    assert_eq!(status, 200);
    let serve_text = serve_metrics();
    assert!(
        serve_text.contains(
            "mta_sts_serve_certificate_expiry_timestamp_seconds{host=\"mta-sts.served.test\"}"
        ),
        "{serve_text}"
    );

    let mut exposition = Exposition::new();
    parse_exposition(&daemon_text, &mut exposition);
    parse_exposition(&serve_text, &mut exposition);
    let missing = missing(&queries, &exposition);
    assert!(
        missing.is_empty(),
        "the dashboard queries what /metrics lacks:\n{}",
        missing.join("\n")
    );
    // Both sides are charted.
    assert!(names.iter().any(|n| n.starts_with("mta_sts_socketmap_")));
    assert!(names.iter().any(|n| n.starts_with("mta_sts_serve_")));

    // Panels are well-formed for Grafana: unique ids, each query on the data-source input.
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id {}",
            panel["id"]
        );
        if panel["type"] != "row" {
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{} has no query", panel["title"]);
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${DS_PROMETHEUS}",
                    "{}",
                    panel["title"]
                );
            }
        }
    }
}
