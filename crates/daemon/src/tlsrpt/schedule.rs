//! Sending on a schedule: the [`Sender`] of `[tlsrpt.send]`, and the cycle after each UTC
//! day (flush, ingest, generate, deliver) with retries in between.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_net::ConnectTo;
use mta_sts_report_store::outbox::AttemptResult;
use mta_sts_report_store::send::Sender;
use mta_sts_report_store::sending::{DkimKeyFile, SenderSettings, open_outbox};
use tlsrpt::UtcDateTime;
use tokio::sync::watch;

use super::error::TlsrptError;
use super::flush::Flusher;
use crate::config::{ResolverConfig, TlsrptSendConfig};
use crate::metrics::bump;
use mta_sts_net::with_causes;

/// The sender settings of `[tlsrpt.send]` (as `mta-sts report send` reads its flags).
fn sender_settings(
    send: &TlsrptSendConfig,
    resolver: &ResolverConfig,
    connect_to: Vec<ConnectTo>,
) -> SenderSettings {
    SenderSettings {
        submitter: send.submitter.clone(),
        from: send.from.clone(),
        organization: send.organization.clone(),
        contact: send.contact.clone(),
        dkim: dkim_key_file(send),
        relay: send.relay.clone(),
        starttls: send.starttls,
        insecure_https: send.insecure_https,
        ca_file: resolver.ca_file.clone(),
        connect_to,
        nameservers: resolver.nameservers.clone(),
        timeout: send.timeout,
    }
}

/// The DKIM key of `[tlsrpt.send]`, when both `dkim_key` and `dkim_selector` are set.
pub(super) fn dkim_key_file(send: &TlsrptSendConfig) -> Option<DkimKeyFile> {
    let (Some(key), Some(selector)) = (&send.dkim_key, &send.dkim_selector) else {
        return None;
    };
    Some(DkimKeyFile {
        key: key.clone(),
        selector: selector.clone(),
        domain: send.dkim_domain.clone(),
    })
}

/// Builds the [`Sender`] of `[tlsrpt.send]`.
pub(super) fn build_sender(
    send: &TlsrptSendConfig,
    resolver: &ResolverConfig,
) -> Result<Sender, TlsrptError> {
    let outbox = open_outbox(&send.db).map_err(TlsrptError::Send)?;
    let connect_to = resolver
        .connect_to
        .iter()
        .map(|c| c.parse::<ConnectTo>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsrptError::ConnectTo)?;
    sender_settings(send, resolver, connect_to)
        .build(outbox)
        .map_err(TlsrptError::Send)
}

/// The send schedule (see the module documentation).
pub(super) struct Schedule {
    pub(super) sender: Sender,
    pub(super) flusher: Arc<Flusher>,
    pub(super) jitter: Duration,
    pub(super) retry_interval: Duration,
}

/// A random number of seconds in `0..=max`.
fn random_delay(max: Duration) -> i64 {
    let secs = max.as_secs();
    if secs == 0 {
        return 0;
    }
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    i64::try_from(random % (secs + 1)).unwrap_or(0)
}

impl Schedule {
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        // The first cycle at start catches up on days missed while the daemon was down.
        let mut done_day = None::<i64>;
        let mut delay = 0;
        loop {
            let now = self.flusher.now();
            let day = now.div_euclid(tlsrpt::report_datetime::SECONDS_PER_DAY);
            let into_day = now.rem_euclid(tlsrpt::report_datetime::SECONDS_PER_DAY);
            if done_day.is_none() || (done_day < Some(day) && into_day >= delay) {
                self.cycle(now).await;
                done_day = Some(day);
                delay = random_delay(self.jitter);
            } else {
                self.deliver(now).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.retry_interval) => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// Flush, ingest, generate, deliver.
    async fn cycle(&self, now: i64) {
        let flusher = Arc::clone(&self.flusher);
        flusher.flush();
        // A missing file just means nothing was recorded yet.
        if let Some(path) = flusher.events.path().filter(|p| p.exists()) {
            match self.sender.ingest_file(&path, now) {
                Ok(ingested) if !ingested.refused.is_empty() => {
                    tracing::warn!(path = %path.display(), refused = ingested.refused.len(), "TLS-RPT events refused while ingesting");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %with_causes(&e), "TLS-RPT ingest failed"),
            }
        }
        match self.sender.generate(now, None, false).await {
            Ok(generated) => {
                for g in &generated {
                    bump(&self.flusher.metrics.tlsrpt_reports_generated);
                    tracing::info!(
                        report_id = %g.report.report_id,
                        policy_domain = %g.policy_domain,
                        day = %g.day,
                        successful = g.report.total_successful(),
                        failed = g.report.total_failed(),
                        ruas = g.ruas.len(),
                        note = g.note.as_deref().unwrap_or(""),
                        "TLS-RPT report generated"
                    );
                }
            }
            Err(e) => tracing::error!(error = %with_causes(&e), "TLS-RPT report generation failed"),
        }
        self.deliver(now).await;
    }

    async fn deliver(&self, now: i64) {
        match self.sender.deliver_due(now).await {
            Ok(attempts) => {
                for a in &attempts {
                    let m = &self.flusher.metrics;
                    match &a.result {
                        AttemptResult::Delivered => {
                            bump(&m.tlsrpt_deliveries_ok);
                            tracing::info!(report_id = %a.entry.report_id, rua = %a.entry.rua, "TLS-RPT report delivered");
                        }
                        AttemptResult::Retry { at, error } => {
                            bump(&m.tlsrpt_deliveries_retry);
                            tracing::warn!(report_id = %a.entry.report_id, rua = %a.entry.rua, %error, next = %UtcDateTime::from_unix_seconds(*at), "TLS-RPT report delivery failed; will retry");
                        }
                        AttemptResult::Failed { error } => {
                            bump(&m.tlsrpt_deliveries_failed);
                            tracing::error!(report_id = %a.entry.report_id, rua = %a.entry.rua, %error, "TLS-RPT report delivery failed for good");
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %with_causes(&e), "TLS-RPT delivery run failed"),
        }
    }
}
