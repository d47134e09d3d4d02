//! `packaging/grafana/mta-sts.json` (#16 item 7) cannot drift from the metrics: every
//! metric each panel (and each template variable) queries, and every `label="value"`
//! matcher on it, must appear in the real `/metrics` output of a running `mta-sts daemon`
//! and a running `mta-sts serve` (with `metrics_listen`).

use crate::daemon_support;
use crate::serve_support::ServeProc;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::*;
use mta_sts_testkit::World;

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

/// A running `mta-sts serve` with a policy host certificate and `metrics_listen`.
struct PolicyHost {
    _serve: ServeProc,
    metrics: SocketAddr,
}

fn start_policy_host() -> PolicyHost {
    let world = World::empty();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut serve = ServeProc::new(
        world.ca(),
        &["mta-sts.served.test"],
        &format!(
            "metrics_listen = \"{metrics}\"\n[[domain]]\nname = \"served.test\"\nmode = \"enforce\"\nmx = [\"mx1.served.test\"]\ncert = \"host.pem\"\nkey = \"host.key\"\n"
        ),
    );
    serve.start();
    let up = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(metrics).is_ok() && http_get(metrics, "/metrics").0 == 200
    });
    assert!(up, "mta-sts serve did not serve /metrics on {metrics}");
    PolicyHost {
        _serve: serve,
        metrics,
    }
}

/// The dashboard as JSON.
fn dashboard() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap()
}

/// A daemon answering one MTA-STS domain (and having answered it once).
fn start_daemon(dir: &std::path::Path, world: &World) -> DaemonProc {
    let daemon = DaemonProc::start(
        dir,
        "",
        &format!("[cache]\nstore = \"memory\"\n{}", resolver_section(world)),
        &[],
    );
    assert!(daemon.query("policy good.test").starts_with("OK secure"));
    daemon
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let dashboard = dashboard();
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
    let daemon = start_daemon(dir.path(), &world);
    let (status, daemon_text) = daemon.http_get("/metrics");
    assert_eq!(status, 200);
    let host = start_policy_host();
    let (status, serve_text) = http_get(host.metrics, "/metrics");
    assert_eq!(status, 200);
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

/// A PromQL query through Prometheus's HTTP API (HTTP/1.0: no chunked answer): the JSON.
fn prometheus_query(addr: SocketAddr, query: &str) -> serde_json::Value {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = format!("query={encoded}");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/query HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let json = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{query}: {e}: {response}"))
}

/// Every panel query is valid PromQL that draws something: a real Prometheus scrapes a
/// running daemon and policy host, then evaluates each one (Grafana's `$__rate_interval`,
/// `$__range` and instance variables filled in as Grafana would). Skips without
/// `prometheus` (Debian package `prometheus`).
#[test]
fn every_panel_query_evaluates_in_prometheus() {
    if !have("prometheus", "prometheus") {
        return;
    }
    let world = World::builder()
        .domain("good.test", |d| d.enforce())
        .start();
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path(), &world);
    let host = start_policy_host();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mta-sts-daemon\n    static_configs:\n      - targets: [\"{}\"]\n  - job_name: mta-sts-serve\n    static_configs:\n      - targets: [\"{}\"]\n",
            daemon.http, host.metrics
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let scraped = eventually(Duration::from_secs(60), || {
        std::net::TcpStream::connect(web).is_ok()
            && http_get(web, "/-/ready").0 == 200
            && prometheus_query(web, "count_over_time(up[1m]) >= 4 and up == 1")["data"]["result"]
                .as_array()
                .is_some_and(|r| r.len() == 2)
    });
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let mut failures = Vec::new();
    if scraped {
        for (title, expr) in queries(&dashboard())
            .into_iter()
            .filter(|(t, _)| !t.starts_with("variable"))
        {
            let promql = expr
                .replace("$__rate_interval", "4s")
                .replace("$__range", "1m")
                .replace("$serve_instance", ".*")
                .replace("$instance", ".*");
            let answer = prometheus_query(web, &promql);
            let drawn = answer["data"]["result"].as_array().map_or(0, Vec::len);
            if answer["status"] != "success" || drawn == 0 {
                failures.push(format!("{title}: {promql}: {answer}"));
            }
        }
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(scraped, "Prometheus did not scrape both targets: {log}");
    assert!(
        failures.is_empty(),
        "queries that fail or draw nothing:\n{}",
        failures.join("\n")
    );
}
