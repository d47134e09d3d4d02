//! The generating side of TLS-RPT, end to end: events files → daily reports (RFC 8460 §4) →
//! delivery to every `rua` (§5.3 mail, §5.4 HTTPS) with retries (§5.3: "SHOULD" retry for
//! up to 24 hours). Time is always passed in (`now`, Unix seconds), so tests drive it.
//!
//! One run of `mta-sts report send` is [`Sender::ingest_file`] for each events file,
//! [`Sender::generate`] (every completed UTC day not yet reported), then
//! [`Sender::deliver_due`]. Retry schedule: 5 minutes after the first failure, doubling, at
//! most 4 hours apart; an entry still undelivered 24 hours after it was queued, or refused
//! permanently (SMTP 5xx, an unusable URI), is given up (`failed`). Everything is written to
//! the delivery log ([`Outbox::log_entries`]).

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use mta_sts_net::dns::Dns;
use tlsrpt::aggregate::{Submitter, aggregate};
use tlsrpt::event::parse_line;
use tlsrpt::mail::{MailParams, build_message};
use tlsrpt::{Report, Rua, UtcDateTime, validate_report_json};

use crate::deliver::{DeliveryConfig, DeliveryError, RuaLookup, lookup_rua, post_https, send_mail};
use crate::outbox::{AttemptResult, LogEntry, Outbox, OutboxEntry};
use crate::store::StoreError;

/// Retries stop this long after an entry was queued (RFC 8460 §5.3).
pub const RETRY_WINDOW: i64 = 24 * 3600;
/// First retry delay.
pub const FIRST_RETRY: i64 = 300;
/// Longest retry delay.
pub const MAX_RETRY: i64 = 4 * 3600;

/// Why sending failed as a whole (single deliveries fail into the outbox instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The outbox database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An events file could not be read.
    #[error("cannot read events file {path}")]
    Events {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Who reports and how.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// `organization-name`, `contact-info` and the submitter domain.
    pub submitter: Submitter,
    /// `From:` of report mail.
    pub from: String,
    /// Transport settings.
    pub delivery: DeliveryConfig,
    /// DKIM signer for report mail (RFC 8460 §5.3); `None`: the relay signs.
    pub dkim: Option<std::sync::Arc<mta_sts_dkim::DkimSigner>>,
}

/// What ingesting one events file did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ingested {
    /// The file.
    pub path: String,
    /// Events stored.
    pub events: usize,
    /// Lines refused: (1-based line number in this run's chunk, reason).
    pub refused: Vec<(usize, String)>,
    /// Byte offset consumed after this run.
    pub offset: u64,
}

/// A report built by [`Sender::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Policy domain.
    pub policy_domain: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The report.
    pub report: Report,
    /// The `rua` URIs it was queued for (empty: nothing to send, see `note`).
    pub ruas: Vec<String>,
    /// Why nothing was queued, or schema violations.
    pub note: Option<String>,
}

/// One delivery attempt made by [`Sender::deliver_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The outbox entry before the attempt.
    pub entry: OutboxEntry,
    /// What came of it.
    pub result: AttemptResult,
}

/// The retry delay after `attempts` failed attempts (1, 2, …).
pub fn backoff(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << shift).min(MAX_RETRY)
}

/// Device and inode of a file (Unix), so a rotated events file is noticed even when the new
/// one is already longer than the offset consumed from the old one.
fn file_identity(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            return format!("{}:{}", m.dev(), m.ino());
        }
    }
    let _ = path;
    String::new()
}

/// gzip (RFC 8460 §5.2).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The sending side: outbox, DNS, configuration.
#[derive(Debug, Clone)]
pub struct Sender {
    outbox: Outbox,
    dns: Dns,
    config: SendConfig,
}

impl Sender {
    /// A sender over `outbox`, looking up `_smtp._tls` records with `dns`.
    pub fn new(outbox: Outbox, dns: Dns, config: SendConfig) -> Self {
        Sender {
            outbox,
            dns,
            config,
        }
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Ingests the complete lines of `path` after the offset consumed last time. A file
    /// shorter than that offset was rotated and is read from the start. Unparsable lines are
    /// skipped (reported in [`Ingested::refused`]).
    pub fn ingest_file(&self, path: &Path, now: i64) -> Result<Ingested, SendError> {
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string();
        let bytes = std::fs::read(path).map_err(|source| SendError::Events {
            path: path.display().to_string(),
            source,
        })?;
        let identity = file_identity(path);
        let (mut offset, known) = self.outbox.file_offset(&key)?;
        if offset > bytes.len() as u64 || (!known.is_empty() && known != identity) {
            tracing::warn!(file = %key, offset, "events file was rotated; reading it from the start");
            offset = 0;
        }
        let start = usize::try_from(offset).unwrap_or(0);
        let chunk = bytes.get(start..).unwrap_or_default();
        // Only complete lines: an MTA may be writing the last one right now.
        let complete = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let received = UtcDateTime::from_unix_seconds(now);
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        for (index, line) in chunk[..complete].split(|b| *b == b'\n').enumerate() {
            let text = String::from_utf8_lossy(line);
            match parse_line(&text, received) {
                Ok(events) => rows.extend(events.into_iter().map(|e| {
                    (
                        e.policy_domain.clone(),
                        e.time.date_string(),
                        e.time.unix_seconds(),
                        e.to_json_line(),
                    )
                })),
                Err(e) => {
                    tracing::warn!(file = %key, line = index + 1, error = %e, "event refused");
                    refused.push((index + 1, e.to_string()));
                }
            }
        }
        let new_offset = offset + complete as u64;
        self.outbox.add_events(&key, &identity, new_offset, &rows)?;
        tracing::info!(file = %key, events = rows.len(), offset = new_offset, "events ingested");
        Ok(Ingested {
            path: key,
            events: rows.len(),
            refused,
            offset: new_offset,
        })
    }

    /// Builds the report of every (policy domain, completed UTC day) not reported yet, looks
    /// up its `rua`s and queues it. With `dry_run` nothing is recorded. A DNS failure leaves
    /// the day pending for the next run.
    /// `only_day` (`YYYY-MM-DD`) restricts generation to that day.
    pub async fn generate(
        &self,
        now: i64,
        only_day: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<Generated>, SendError> {
        let today = UtcDateTime::from_unix_seconds(now).date_string();
        let mut generated = Vec::new();
        for (domain, day) in self.outbox.pending_days(&today)? {
            if only_day.is_some_and(|d| d != day) {
                continue;
            }
            let Ok(day_start) = UtcDateTime::parse(&format!("{day}T00:00:00Z")) else {
                continue;
            };
            let events: Vec<_> = self
                .outbox
                .event_lines(&domain, &day)?
                .iter()
                .filter_map(|l| parse_line(l, day_start).ok())
                .flatten()
                .collect();
            let report = aggregate(&events, &domain, day_start, &self.config.submitter);
            if report.policies.is_empty() {
                continue;
            }
            let json = report.to_json();
            let mut note = None;
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) {
                let violations = validate_report_json(&value);
                if !violations.is_empty() {
                    let text = violations
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    tracing::warn!(report_id = %report.report_id, %text, "generated report deviates from RFC 8460 §4.4");
                    note = Some(format!("schema: {text}"));
                }
            }
            let (ruas, outcome) = match lookup_rua(&self.dns, &domain).await {
                RuaLookup::Found(ruas) => (
                    ruas.iter().map(|r| r.uri().to_owned()).collect::<Vec<_>>(),
                    None,
                ),
                RuaLookup::NoRecord(why) => (Vec::new(), Some(("no-record", why))),
                RuaLookup::DnsFailure(why) => {
                    tracing::warn!(%domain, %day, %why, "DNS failure; the report waits for the next run");
                    if !dry_run {
                        self.log(now, &report.report_id, &domain, "", "dns-failure", &why)?;
                    }
                    continue;
                }
            };
            if !dry_run {
                self.outbox
                    .add_report(&domain, &day, &report.report_id, &json, &ruas, now)?;
                if let Some((outcome, why)) = &outcome {
                    tracing::info!(%domain, %day, %why, "nothing to send");
                    self.log(now, &report.report_id, &domain, "", outcome, why)?;
                }
            }
            generated.push(Generated {
                policy_domain: domain,
                day,
                report,
                ruas,
                note: outcome.map(|(_, why)| why).or(note),
            });
        }
        Ok(generated)
    }

    fn log(
        &self,
        now: i64,
        report_id: &str,
        domain: &str,
        rua: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.outbox.log(&LogEntry {
            time: now,
            report_id: report_id.to_owned(),
            policy_domain: domain.to_owned(),
            rua: rua.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
        })
    }

    /// Attempts every outbox entry due at `now` once.
    pub async fn deliver_due(&self, now: i64) -> Result<Vec<Attempt>, SendError> {
        let mut attempts = Vec::new();
        for entry in self.outbox.due(now)? {
            let result = match self.outbox.report_json(&entry.report_id)? {
                None => AttemptResult::Failed {
                    error: "the report is missing from the database".into(),
                },
                Some(json) => match self.deliver_one(&entry, json.as_bytes(), now).await {
                    Ok(_) => AttemptResult::Delivered,
                    Err(e) if e.is_permanent() => AttemptResult::Failed { error: e.detail() },
                    Err(e) => {
                        let at = now + backoff(entry.attempts + 1);
                        if at > entry.created_at + RETRY_WINDOW {
                            AttemptResult::Failed {
                                error: format!("{} (gave up after 24 hours)", e.detail()),
                            }
                        } else {
                            AttemptResult::Retry {
                                at,
                                error: e.detail(),
                            }
                        }
                    }
                },
            };
            let (outcome, detail) = match &result {
                AttemptResult::Delivered => ("delivered", String::new()),
                AttemptResult::Retry { at, error } => ("retry", format!("{error}; next at {at}")),
                AttemptResult::Failed { error } => ("failed", error.clone()),
            };
            tracing::info!(report_id = %entry.report_id, rua = %entry.rua, outcome, %detail, "delivery attempt");
            self.outbox.record_attempt(entry.id, now, &result)?;
            self.log(
                now,
                &entry.report_id,
                &entry.policy_domain,
                &entry.rua,
                outcome,
                &detail,
            )?;
            attempts.push(Attempt { entry, result });
        }
        Ok(attempts)
    }

    async fn deliver_one(
        &self,
        entry: &OutboxEntry,
        json: &[u8],
        now: i64,
    ) -> Result<String, DeliveryError> {
        let report = Report::from_json(json).map_err(DeliveryError::Report)?;
        let gzipped = gzip(json);
        match Rua::parse(&entry.rua) {
            Ok(Rua::Https { uri }) => post_https(&self.config.delivery, &uri, &gzipped)
                .await
                .map(|status| format!("HTTP {status}")),
            Ok(Rua::Mailto { address, .. }) => {
                let message = build_message(
                    &report,
                    &gzipped,
                    &MailParams {
                        from: &self.config.from,
                        to: &address,
                        submitter: &self.config.submitter.domain,
                        policy_domain: &entry.policy_domain,
                        date: UtcDateTime::from_unix_seconds(now),
                    },
                );
                let message = match &self.config.dkim {
                    Some(signer) => signer.sign(&message, now).map_err(DeliveryError::Sign)?,
                    None => message,
                };
                send_mail(&self.config.delivery, &self.config.from, &address, &message).await
            }
            _ => Err(DeliveryError::UnusableRua {
                rua: entry.rua.clone(),
            }),
        }
    }
}
