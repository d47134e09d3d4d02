//! The daemon's own counters and the Prometheus text exposition of `/metrics`.
//!
//! Hand-written exposition format (version 0.0.4): a handful of counters, two gauges and one
//! histogram do not justify a metrics framework. Counters are relaxed atomics, updated on
//! the hot path without locks. The resolver's [`Stats`] are rendered next to them.
//!
//! Metric names:
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `mta_sts_socketmap_queries_total` | counter | `answer` = ok, notfound, temp, timeout, perm | replies written |
//! | `mta_sts_socketmap_connections_total` | counter | | connections accepted |
//! | `mta_sts_socketmap_connections_open` | gauge | | connections open now |
//! | `mta_sts_socketmap_connections_shed_total` | counter | `action` = evicted, refused | connections closed to make room for a new one, new ones refused at the per-peer limit |
//! | `mta_sts_socketmap_budget_exceeded_total` | counter | | queries answered after the budget ran out |
//! | `mta_sts_lookup_duration_seconds` | histogram | `source` = cache, network | resolver lookups |
//! | `mta_sts_lookups_total` | counter | `outcome` = policy, no_policy, unusable | resolver lookups |
//! | `mta_sts_cache_hits_total`, `…_negative_hits_total`, `…_fetches_total`, `…_fetch_failures_total`, `…_backoff_skips_total`, `…_refreshes_total`, `…_refresh_failures_total`, `…_refreshes_adopted_total`, `…_refreshes_deferred_total`, `…_store_errors_total`, `…_flights_joined_total` | counter | | resolver [`Stats`] |
//! | `mta_sts_refresh_passes_total` | counter | | proactive refresher passes completed |
//! | `mta_sts_refresh_last_pass_duration_seconds` | gauge | | wall time of the last refresher pass |
//! | `mta_sts_refresh_backlog` | gauge | | due policies the running pass has not refetched yet |
//! | `mta_sts_cache_entries` | gauge | | domains in the memory cache |
//! | `mta_sts_cache_memory_bytes` | gauge | | bytes the memory cache counts for its entries (at most 40 % of `[cache] max_memory`, which also covers the allocator's overhead) |
//! | `mta_sts_cache_evictions_total` | counter | `kind` = policy, negative | memory entries evicted to stay within `[cache] max_memory` |
//! | `mta_sts_cache_store_reads_total` | counter | | lookups whose policy was read back from the store, not memory |
//! | `mta_sts_dane_checks_total` | counter | `verdict` = usable, not_usable | DANE checks |
//! | `mta_sts_reloads_total` | counter | `result` = ok, error | SIGHUP reloads |
//! | `mta_sts_tlsrpt_events_total` | counter | `source` = daemon, socket, probe | TLS-RPT event lines appended to the events file |
//! | `mta_sts_tlsrpt_probes_total` | counter | `outcome` = started, dropped | STARTTLS probes of `testing` domains' MX hosts |
//! | `mta_sts_tlsrpt_events_write_errors_total` | counter | | failed appends to the events file |
//! | `mta_sts_tlsrpt_datagrams_received_total` | counter | | datagrams on the collector socket |
//! | `mta_sts_tlsrpt_datagrams_invalid_total` | counter | | of those, dropped as invalid |
//! | `mta_sts_tlsrpt_reports_generated_total` | counter | | reports built by `[tlsrpt.send]` |
//! | `mta_sts_tlsrpt_deliveries_total` | counter | `outcome` = delivered, retry, failed | report delivery attempts |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mta_sts_resolver::{MemoryUsage, Stats};

use mta_sts_socketmap::Reply;

/// Upper bounds (seconds) of the lookup-duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| secs <= le)
            && let Some(bucket) = self.buckets.get(i)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Counters of the daemon itself (socketmap server, lookups, DANE, reloads). One instance
/// lives for the whole process and survives reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Replies `OK …`.
    pub replies_ok: AtomicU64,
    /// Replies `NOTFOUND `.
    pub replies_notfound: AtomicU64,
    /// Replies `TEMP …`.
    pub replies_temp: AtomicU64,
    /// Replies `PERM …`.
    pub replies_perm: AtomicU64,
    /// Replies `TIMEOUT …`.
    pub replies_timeout: AtomicU64,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub connections_evicted: AtomicU64,
    /// New connections refused at the per-peer limit (none of the peer's was idle).
    pub connections_refused: AtomicU64,
    /// Queries whose lookup outlived the budget.
    pub budget_exceeded: AtomicU64,
    /// Lookups answered from memory without network I/O beyond the TXT check.
    pub lookup_cache: Histogram,
    /// Lookups that fetched (or tried to fetch) over HTTPS, or failed in DNS.
    pub lookup_network: Histogram,
    /// DANE checks that found usable TLSA records for every MX.
    pub dane_usable: AtomicU64,
    /// DANE checks that did not.
    pub dane_not_usable: AtomicU64,
    /// Successful reloads.
    pub reloads_ok: AtomicU64,
    /// Refused reloads.
    pub reloads_error: AtomicU64,
    /// TLS-RPT event lines appended from the daemon's own counters.
    pub tlsrpt_events_daemon: AtomicU64,
    /// TLS-RPT event lines appended from collector datagrams.
    pub tlsrpt_events_socket: AtomicU64,
    /// TLS-RPT event lines appended from probes of `testing` domains' MX hosts.
    pub tlsrpt_events_probe: AtomicU64,
    /// Probes of a `testing` domain's MX hosts started (`[tlsrpt] probe_testing`).
    pub tlsrpt_probes_started: AtomicU64,
    /// Probes not started because too many were waiting for a slot.
    pub tlsrpt_probes_dropped: AtomicU64,
    /// Failed appends to the TLS-RPT events file.
    pub tlsrpt_write_errors: AtomicU64,
    /// Datagrams received on the TLS-RPT collector socket.
    pub tlsrpt_datagrams_received: AtomicU64,
    /// Of those, dropped as invalid.
    pub tlsrpt_datagrams_invalid: AtomicU64,
    /// TLS-RPT reports generated.
    pub tlsrpt_reports_generated: AtomicU64,
    /// TLS-RPT report deliveries that succeeded.
    pub tlsrpt_deliveries_ok: AtomicU64,
    /// TLS-RPT report deliveries that failed and will be retried.
    pub tlsrpt_deliveries_retry: AtomicU64,
    /// TLS-RPT report deliveries that failed for good.
    pub tlsrpt_deliveries_failed: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Adds one to `counter`.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a reply written to a client.
    pub fn count_reply(&self, reply: &Reply) {
        bump(match reply {
            Reply::Ok(_) => &self.replies_ok,
            Reply::NotFound => &self.replies_notfound,
            Reply::Temp(_) => &self.replies_temp,
            Reply::Perm(_) => &self.replies_perm,
            Reply::Timeout(_) => &self.replies_timeout,
        });
    }

    /// Renders the Prometheus text exposition of these counters, the resolver's `stats`
    /// and the memory cache size.
    ///
    /// Longer than our ~120-line rule, on purpose: a flat list of metric families in the
    /// order they are exposed, one call each; split up it would only scatter that list.
    pub fn render(&self, stats: Option<&Stats>, cache: &MemoryUsage) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, values: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in values {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        };
        counter(
            &mut out,
            "mta_sts_socketmap_queries_total",
            "Socketmap replies written, by answer.",
            &[
                ("answer=\"ok\"", get(&self.replies_ok)),
                ("answer=\"notfound\"", get(&self.replies_notfound)),
                ("answer=\"temp\"", get(&self.replies_temp)),
                ("answer=\"perm\"", get(&self.replies_perm)),
                ("answer=\"timeout\"", get(&self.replies_timeout)),
            ],
        );
        counter(
            &mut out,
            "mta_sts_socketmap_connections_total",
            "Socketmap connections accepted.",
            &[("", get(&self.connections_total))],
        );
        let _ = writeln!(
            out,
            "# HELP mta_sts_socketmap_connections_open Socketmap connections open now.\n# TYPE mta_sts_socketmap_connections_open gauge\nmta_sts_socketmap_connections_open {}",
            get(&self.connections_open)
        );
        counter(
            &mut out,
            "mta_sts_socketmap_connections_shed_total",
            "Socketmap connections evicted (longest idle, to make room) or refused (per-peer limit).",
            &[
                ("action=\"evicted\"", get(&self.connections_evicted)),
                ("action=\"refused\"", get(&self.connections_refused)),
            ],
        );
        counter(
            &mut out,
            "mta_sts_socketmap_budget_exceeded_total",
            "Queries answered from the cache or on_failure because the lookup exceeded the budget.",
            &[("", get(&self.budget_exceeded))],
        );
        let _ = writeln!(
            out,
            "# HELP mta_sts_lookup_duration_seconds Duration of resolver lookups.\n# TYPE mta_sts_lookup_duration_seconds histogram"
        );
        self.lookup_cache.render(
            &mut out,
            "mta_sts_lookup_duration_seconds",
            "source=\"cache\"",
        );
        self.lookup_network.render(
            &mut out,
            "mta_sts_lookup_duration_seconds",
            "source=\"network\"",
        );
        counter(
            &mut out,
            "mta_sts_dane_checks_total",
            "DANE checks (dane = \"defer\"), by verdict.",
            &[
                ("verdict=\"usable\"", get(&self.dane_usable)),
                ("verdict=\"not_usable\"", get(&self.dane_not_usable)),
            ],
        );
        counter(
            &mut out,
            "mta_sts_reloads_total",
            "Configuration reloads (SIGHUP), by result.",
            &[
                ("result=\"ok\"", get(&self.reloads_ok)),
                ("result=\"error\"", get(&self.reloads_error)),
            ],
        );
        counter(
            &mut out,
            "mta_sts_tlsrpt_events_total",
            "TLS-RPT event lines appended to the events file, by source.",
            &[
                ("source=\"daemon\"", get(&self.tlsrpt_events_daemon)),
                ("source=\"socket\"", get(&self.tlsrpt_events_socket)),
                ("source=\"probe\"", get(&self.tlsrpt_events_probe)),
            ],
        );
        counter(
            &mut out,
            "mta_sts_tlsrpt_probes_total",
            "STARTTLS probes of testing-mode domains' MX hosts, by outcome.",
            &[
                ("outcome=\"started\"", get(&self.tlsrpt_probes_started)),
                ("outcome=\"dropped\"", get(&self.tlsrpt_probes_dropped)),
            ],
        );
        for (name, help, value) in [
            (
                "mta_sts_tlsrpt_events_write_errors_total",
                "Failed appends to the TLS-RPT events file.",
                &self.tlsrpt_write_errors,
            ),
            (
                "mta_sts_tlsrpt_datagrams_received_total",
                "Datagrams received on the TLS-RPT collector socket.",
                &self.tlsrpt_datagrams_received,
            ),
            (
                "mta_sts_tlsrpt_datagrams_invalid_total",
                "Datagrams dropped as invalid by the TLS-RPT collector.",
                &self.tlsrpt_datagrams_invalid,
            ),
            (
                "mta_sts_tlsrpt_reports_generated_total",
                "TLS-RPT reports generated (RFC 8460 §4).",
                &self.tlsrpt_reports_generated,
            ),
        ] {
            counter(&mut out, name, help, &[("", get(value))]);
        }
        counter(
            &mut out,
            "mta_sts_tlsrpt_deliveries_total",
            "TLS-RPT report delivery attempts (RFC 8460 §5), by outcome.",
            &[
                ("outcome=\"delivered\"", get(&self.tlsrpt_deliveries_ok)),
                ("outcome=\"retry\"", get(&self.tlsrpt_deliveries_retry)),
                ("outcome=\"failed\"", get(&self.tlsrpt_deliveries_failed)),
            ],
        );
        if let Some(s) = stats {
            counter(
                &mut out,
                "mta_sts_lookups_total",
                "Resolver lookups, by outcome.",
                &[
                    ("outcome=\"policy\"", get(&s.lookups_policy)),
                    ("outcome=\"no_policy\"", get(&s.lookups_no_policy)),
                    ("outcome=\"unusable\"", get(&s.lookups_unusable)),
                ],
            );
            for (name, help, value) in [
                (
                    "mta_sts_cache_hits_total",
                    "Lookups answered from the cache without an HTTPS fetch.",
                    &s.cache_hits,
                ),
                (
                    "mta_sts_negative_hits_total",
                    "Lookups answered by the negative cache.",
                    &s.negative_hits,
                ),
                (
                    "mta_sts_flights_joined_total",
                    "Lookups that joined another caller's flight.",
                    &s.flights_joined,
                ),
                (
                    "mta_sts_fetches_total",
                    "HTTPS policy fetches started.",
                    &s.fetches,
                ),
                (
                    "mta_sts_fetch_failures_total",
                    "HTTPS policy fetches that failed.",
                    &s.fetch_failures,
                ),
                (
                    "mta_sts_backoff_skips_total",
                    "Fetches skipped by the RFC 8461 §3.3 back-off.",
                    &s.backoff_skips,
                ),
                (
                    "mta_sts_refreshes_total",
                    "Proactive refreshes that succeeded.",
                    &s.refreshes,
                ),
                (
                    "mta_sts_refresh_failures_total",
                    "Proactive refreshes that failed.",
                    &s.refresh_failures,
                ),
                (
                    "mta_sts_refreshes_adopted_total",
                    "Due policies taken from the shared store, refreshed by another daemon.",
                    &s.refresh_adopted,
                ),
                (
                    "mta_sts_refreshes_deferred_total",
                    "Due policies left to the daemon holding their refresh lease.",
                    &s.refresh_deferred,
                ),
                (
                    "mta_sts_store_errors_total",
                    "Policy store operations that failed.",
                    &s.store_errors,
                ),
                (
                    "mta_sts_cache_store_reads_total",
                    "Lookups whose policy was read back from the store, not memory.",
                    &s.store_reads,
                ),
            ] {
                counter(&mut out, name, help, &[("", get(value))]);
            }
            render_refresh(&mut out, s);
        }
        let _ = writeln!(
            out,
            "# HELP mta_sts_cache_entries Domains in the memory cache.\n# TYPE mta_sts_cache_entries gauge\nmta_sts_cache_entries {}",
            cache.entries
        );
        let _ = writeln!(
            out,
            "# HELP mta_sts_cache_memory_bytes Bytes the memory cache holds.\n# TYPE mta_sts_cache_memory_bytes gauge\nmta_sts_cache_memory_bytes {}",
            cache.bytes
        );
        counter(
            &mut out,
            "mta_sts_cache_evictions_total",
            "Memory cache entries evicted to stay within [cache] max_memory, by kind.",
            &[
                ("kind=\"policy\"", cache.evicted_policies),
                ("kind=\"negative\"", cache.evicted_negatives),
            ],
        );
        out
    }
}

/// The refresher's progress: passes (its refreshed and failed policies are the
/// `mta_sts_refreshes_total` and `mta_sts_refresh_failures_total` counters), the last
/// pass's duration and the running pass's backlog.
fn render_refresh(out: &mut String, s: &Stats) {
    let _ = writeln!(
        out,
        "# HELP mta_sts_refresh_passes_total Proactive refresher passes completed.\n# TYPE mta_sts_refresh_passes_total counter\nmta_sts_refresh_passes_total {}",
        get(&s.refresh_passes)
    );
    let secs = get(&s.refresh_last_pass_micros) as f64 / 1e6;
    let _ = writeln!(
        out,
        "# HELP mta_sts_refresh_last_pass_duration_seconds Wall time of the last proactive refresher pass.\n# TYPE mta_sts_refresh_last_pass_duration_seconds gauge\nmta_sts_refresh_last_pass_duration_seconds {secs}"
    );
    let _ = writeln!(
        out,
        "# HELP mta_sts_refresh_backlog Due policies the running refresher pass has not refetched yet.\n# TYPE mta_sts_refresh_backlog gauge\nmta_sts_refresh_backlog {}",
        get(&s.refresh_backlog)
    );
}
