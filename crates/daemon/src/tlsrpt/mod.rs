//! TLS-RPT data (RFC 8460) from the daemon: what it records about policy discovery, a
//! collector for the session results of the MTA, and scheduled report sending. Everything
//! is off by default (`[tlsrpt]` in the configuration, see [`crate::config::TlsrptConfig`]).
//!
//! # What is recorded (the session rule)
//!
//! RFC 8460 §4 reports count **sessions**: SMTP connections to an MX host, with their TLS
//! outcome. The daemon does not see sessions. It sees socketmap queries: Postfix asks for the
//! TLS policy of a next-hop domain before it connects, once per delivery attempt, so one
//! query stands for (roughly) one attempt. What the daemon *knows* is the outcome of policy
//! discovery; whether TLS then succeeded is known only to the MTA. Hence:
//!
//! - **Discovery failures are always recorded** (when `events` is set): a query for a domain
//!   that published an `_mta-sts` record but whose policy could not be fetched or used, with
//!   nothing unexpired cached, is one failed session of result type `sts-policy-fetch-error`,
//!   `sts-policy-invalid` or `sts-webpki-invalid` (RFC 8460 §4.3.2, the mapping of
//!   `mta_sts_resolver::Error::result_type`), with the resolver's reason code (e.g.
//!   `certificate-wrong-name`) as `failure-reason-code`. That session went ahead without the
//!   policy the domain asked for, which is what §4.3.2 reports. Not recorded: "no record"
//!   (the domain has no policy: nothing failed), an invalid domain (no query was made), and
//!   DNS failures of the TXT lookup (transient, RFC 8460 §4.3.4, and whether the domain has a
//!   policy at all is unknown). A failed *refresh* while an unexpired cached policy still
//!   applies is not a failure either: the session uses the cached policy (RFC 8461 §5.1).
//! - **Successes are never recorded from queries**: a socketmap query is not a session.
//!   Postfix asks before it connects, and `postmap -q` asks without connecting at all; a
//!   delivery that then fails certificate verification (`Server certificate not verified`)
//!   was asked for exactly like one that succeeded. Successful sessions come only from the
//!   MTA itself: Postfix ≥ 3.10 through the collector socket below. The former
//!   `count_applied = true` (one success per query that applied a policy) is refused at
//!   configuration load for that reason ([`crate::config`]).
//!
//! Counting is in memory and cheap (per policy domain an entry of atomic counters in a
//! sharded map: a known domain costs a hash, a shared lock and an atomic add, no allocation
//! and no I/O on the socketmap path). Every `flush_interval` (aligned to the wall clock, so
//! no interval straddles 00:00 UTC), on reload and on shutdown the counters are appended to
//! the events file as lines of the `tlsrpt::event` format with `"count": n` and one extra
//! member `"source": "daemon"`, which the aggregator ignores. Each line is stamped with the
//! last second of its interval, so it lands in the right UTC day (RFC 8460 §4.1).
//!
//! Overlap with MTA reports: when Postfix reports sessions itself and the daemon answered
//! `NOTFOUND ` after a discovery failure, Postfix reports that session as `no-policy-found`
//! while the daemon records an `sts` failure for it. Both lines describe the same session
//! from two sides; the report then shows the `sts` policy failing and the delivery that went
//! ahead without it.
//!
//! # Testing mode (the daemon's own probes)
//!
//! RFC 8461 §5: under `mode: testing` a sender delivers whatever the MX presents and reports
//! what `enforce` would have failed on. The daemon answers a `testing` policy `NOTFOUND `
//! (Postfix's `secure` would defer the mail), and Postfix ≤ 3.10 has no level that verifies,
//! reports and still delivers (at `may`/`encrypt` it does not verify the certificate at
//! all). So, with `probe_testing = true`, the daemon looks itself: when a socketmap query
//! applies a `testing` policy ([`Prober::consider`], also from the cache fast path), and no
//! probe of that policy domain started within `probe_interval` (default 1 h, per domain,
//! on the daemon's clock), it spawns a probe and answers at once. The probe waits for one of
//! `probe_concurrency` slots, looks up the domain's MX hosts (lowest preference first, at
//! most [`MAX_MX_PROBED`]; the domain itself without MX records; none for a null MX or a
//! failed lookup) and runs the checker's SMTP probe on each (port 25 or its `[resolver]
//! connect_to` override; EHLO, STARTTLS, TLS 1.2+ handshake with SNI = the MX name, QUIT; no
//! mail). Each reachable MX is **one session** of the policy domain, judged exactly as
//! `enforce` ([`mta_sts::decision::decide`]): the MX name against the policy's `mx`
//! patterns (RFC 8461 §4.1; a miss is `certificate-host-mismatch` with reason
//! `mx-not-in-policy`, docs/rfc-requirements.md §4 item 17), STARTTLS offered, and the
//! certificate: WebPKI chain to the system roots plus `[resolver] ca_file`, unexpired, a
//! SAN matching the MX host name (§4.2). The session is recorded with `policy-type: sts`,
//! the `policy-string` (the lines as fetched) and `mx-host` (the patterns), as a success or
//! as a failure of RFC 8460 §4.3.1 type `certificate-host-mismatch`, `certificate-expired`,
//! `certificate-not-trusted`, `starttls-not-supported` or `validation-failure`, with
//! `sending-mta-ip`, `receiving-mx-hostname`, `receiving-ip` and a stable
//! `failure-reason-code` (`certificate-name-mismatch`, `starttls-not-offered`, …). The
//! events wait in the recorder and are written at the next flush as lines with `"source":
//! "probe"`, stamped with the time of the probe, so the report of that UTC day carries them.
//!
//! **Successes are recorded too**, and that is what keeps the numbers honest: a probe is a
//! real TLS session from this host to the MX, like any a sender reports, and a domain with
//! three MX hosts of which one is broken should read "1 of 3 failed", not "failed". What is
//! counted is probe sessions, not messages: at most one per MX per `probe_interval`,
//! however much mail went out (the report says nothing about mail volume, and never counts a
//! delivery as verified). An MX that could not be reached, or whose SMTP dialogue broke
//! before STARTTLS, is not recorded (no TLS session took place; RFC 8460 reports TLS
//! outcomes). Overlap: Postfix 3.10 reports its own session to a `testing` domain (the
//! reply was `NOTFOUND `) as `no-policy-found`; the same report then shows the `sts`
//! probe sessions next to it. With `strict_testing` the MTA verifies and reports itself, and
//! the probe sessions come on top of those; leave `probe_testing` off for such zones' MTAs.
//!
//! # The collector socket
//!
//! With `socket` set, the daemon receives on a Unix **datagram** socket what Postfix 3.10
//! sends through sys4's libtlsrpt (`smtp_tlsrpt_socket_name`), taking the place of
//! `tlsrpt-collectd`. Each valid datagram is stamped with its arrival time (datagrams carry
//! none) and appended as event lines (`"source": "socket"`), see [`tlsrpt::event`] for the
//! mapping of one delivery request to sessions. A datagram may also hold our own event
//! objects, one per line. An invalid datagram is dropped whole, counted in
//! `mta_sts_tlsrpt_datagrams_invalid_total` and logged at debug level at most once
//! per [`INVALID_LOG_EVERY`].
//!
//! # Sending on a schedule
//!
//! With `[tlsrpt.send]`, a worker thread runs what `mta-sts report send` does, through
//! [`mta_sts_report_store::send::Sender`] and the same SQLite outbox: after each UTC day has
//! rolled over plus a random delay of up to `jitter` (RFC 8460 §4.1 "some delay"), it flushes
//! the counters, ingests the new lines of the events file, generates the reports of every
//! completed day not reported yet and delivers them; every `retry_interval` it retries the
//! due outbox entries (RFC 8460 §5.3: retry for up to 24 hours). It also runs once at start,
//! which catches up on days missed while the daemon was down.
//!
//! Report mail must reach the reporting address even when that domain's own MTA-STS or DANE
//! fails (RFC 8460 §3, §5.3): send it through a relay/transport that does not consult the
//! daemon's policy map (see docs/postfix.md).
//!
//! # Modules
//!
//! They read top-down, each using only those below it: `service` (the running part:
//! tasks, reload, shutdown) → `collector` (the datagram socket), `schedule` (report
//! generation and delivery, the sender of `[tlsrpt.send]`) → `flush` (counters → events
//! file), `probe` (the testing-mode probes) → `recorder` (the counters and probe sessions),
//! `events_file` (appending lines) → `error`.
//! Time comes from the daemon's one injected [`mta_sts_net::Clock`].
//! `check` (`--check-config`) uses `schedule`.

mod check;
mod collector;
mod error;
mod events_file;
mod flush;
mod probe;
mod recorder;
mod schedule;
mod service;

pub use check::check_files;
pub use collector::{INVALID_LOG_EVERY, MAX_DATAGRAM, parse_datagram};
pub use error::TlsrptError;
pub use events_file::{EventsFile, MAX_PENDING_LINES, event_line};
pub use probe::{
    MAX_MX_PROBED, MAX_PENDING, ProbeSetup, Prober, event_policy, mx_hosts, session_event,
};
pub use recorder::{MAX_PROBE_EVENTS, Recorder, is_recorded_failure};
pub use service::TlsrptService;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::{Config, TlsrptConfig};

    #[test]
    fn config_is_off_by_default_and_checked() {
        let c = Config::parse("").unwrap().tlsrpt;
        assert_eq!(c, TlsrptConfig::default());
        assert!(c.events.is_none() && c.socket.is_none() && c.send.is_none());
        assert!(!c.probe_testing);
        assert_eq!(c.probe_interval, Duration::from_secs(3600));

        let c = Config::parse(
            "[tlsrpt]\nevents = \"/tmp/e.jsonl\"\nsocket = \"/run/t.sock\"\nsocket_mode = \"0660\"\n[tlsrpt.send]\nsubmitter = \"Mail.Example.COM.\"\nrelay = \"127.0.0.1:25\"\ndkim_key = \"/k.pem\"\ndkim_selector = \"tlsrpt\"\njitter = \"1h\"\n",
        )
        .unwrap()
        .tlsrpt;
        assert_eq!(c.socket_mode, 0o660);
        let send = c.send.unwrap();
        assert_eq!(send.submitter, "mail.example.com");
        assert_eq!(send.db, PathBuf::from("/var/lib/mta-sts/reports.db"));
        assert_eq!(send.jitter, Duration::from_secs(3600));
        assert_eq!(send.retry_interval, Duration::from_secs(300));

        for (bad, says) in [
            ("[tlsrpt]\nevent = \"/x\"\n", "event"),
            ("[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\n", "submitter"),
            (
                "[tlsrpt.send]\nsubmitter = \"a.test\"\n",
                "needs [tlsrpt] events",
            ),
            (
                "[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\nsubmitter = \"a.test\"\ndkim_key = \"/k\"\n",
                "dkim_selector",
            ),
            (
                "[tlsrpt]\nevents = \"/x\"\n[tlsrpt.send]\nsubmitter = \"a.test\"\nrelay = \"host\"\n",
                "HOST:PORT",
            ),
            ("[tlsrpt]\nflush_interval = \"0s\"\n", "flush_interval"),
            ("[tlsrpt]\nsocket_mode = \"999\"\n", "octal"),
            // A socketmap query is not a session (issue 18.3).
            ("[tlsrpt]\ncount_applied = true\n", "count_applied"),
            // Probe results go to the events file.
            ("[tlsrpt]\nprobe_testing = true\n", "needs [tlsrpt] events"),
            ("[tlsrpt]\nprobe_interval = \"0s\"\n", "probe_interval"),
            ("[tlsrpt]\nprobe_timeout = \"0s\"\n", "probe_timeout"),
            ("[tlsrpt]\nprobe_concurrency = 0\n", "probe_concurrency"),
            ("[tlsrpt]\nprobe_ehlo = \"not a name\"\n", "probe_ehlo"),
        ] {
            let err = Config::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
