//! Importing inputs read from disk (files, Maildir, mbox) with the RFC 8460 §3 DKIM rule:
//! "Reports sent via SMTP MUST contain a valid DKIM signature by the reporting domain.
//! Reports lacking such a signature MUST be ignored by the recipient."
//!
//! [`MailImporter::import`] takes one input (one file, or one message of an mbox):
//! - what is neither JSON, gzip, zip nor an e-mail (an empty file, a `.tsv`) is refused as
//!   "not a TLS-RPT report (…)" first ([`crate::mailbox::prepare`]), not as unsigned mail;
//! - mail ([`is_message`]) is verified first ([`DkimVerifier`]); without a valid signature
//!   aligned with the reporting domain (see [`mta_sts_dkim::verify`] for the rule) nothing of it
//!   is stored and the refusal says why (`dkim-missing`, `dkim-invalid: …`,
//!   `dkim-not-aligned`, `dkim-key-not-found`, `dkim-temporary` for DNS failures worth a
//!   retry, `dkim-no-tlsrpt-service` when [`DkimVerifier::require_service`] is on);
//! - a key without `s=tlsrpt` passes with a warning, unless the service is required;
//! - bare JSON, gzip and zip inputs are not mail: they are imported unchecked;
//! - [`DkimCheck::Skip`] imports mail unchecked too, for archives whose keys have since been
//!   rotated away (RFC 8460 §3 still requires the check: the caller has to ask for this).
//!
//! [`ReportSink::accept`] itself never checks DKIM: it is also the HTTPS intake
//! (RFC 8460 §5.4), which is not mail.

use mta_sts_dkim::{DkimRefusal, Pass, Verdict};

use crate::dkim_dns::DkimVerifier;
use crate::intake::is_message;
use crate::mailbox::prepare;
use crate::sink::{InputOutcome, ReportSink, SinkError};

/// Whether mail is DKIM-verified.
#[derive(Debug, Clone)]
pub enum DkimCheck {
    /// Verify, and refuse mail without a valid aligned signature (RFC 8460 §3).
    Verify(Box<DkimVerifier>),
    /// Do not verify (archives whose keys are gone). Not RFC 8460 §3 conformant.
    Skip,
}

/// What the DKIM step did for one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimStatus {
    /// Not mail (JSON, gzip, zip, or refused as not a report at all): nothing to verify.
    NotMail,
    /// Mail, imported without verification ([`DkimCheck::Skip`]).
    Skipped,
    /// Mail with a valid signature by the reporting domain.
    Verified(Pass),
    /// Mail refused: the reports were ignored.
    Refused(DkimRefusal),
}

impl DkimStatus {
    /// The words stored with each report of the input ([`crate::StoredReport::dkim`]) and
    /// shown on the dashboard's report page; `None` for input that is not mail.
    pub fn label(&self) -> Option<String> {
        match self {
            DkimStatus::NotMail => None,
            DkimStatus::Skipped => Some("not checked (imported with --no-dkim)".to_owned()),
            DkimStatus::Verified(pass) => Some(format!(
                "pass (d={}, s={}{})",
                pass.domain,
                pass.selector,
                if pass.declares_tlsrpt {
                    ""
                } else {
                    "; the key lacks s=tlsrpt"
                }
            )),
            DkimStatus::Refused(refusal) => Some(format!("refused: {refusal}")),
        }
    }
}

/// The result of importing one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// What the sink did (or the DKIM refusal, as [`InputOutcome::Refused`]).
    pub outcome: InputOutcome,
    /// The DKIM step.
    pub dkim: DkimStatus,
    /// Sentences worth showing although the input was imported (e.g. a key lacking
    /// `s=tlsrpt`).
    pub warnings: Vec<String>,
}

/// Imports inputs through a [`ReportSink`], verifying mail first.
#[derive(Debug, Clone)]
pub struct MailImporter {
    sink: ReportSink,
    dkim: DkimCheck,
}

impl MailImporter {
    /// An importer storing through `sink`, checking mail as `dkim` says.
    pub fn new(sink: ReportSink, dkim: DkimCheck) -> Self {
        MailImporter { sink, dkim }
    }

    /// The sink.
    pub fn sink(&self) -> &ReportSink {
        &self.sink
    }

    /// Imports `inputs` side by side, each in a task of the current runtime, and returns
    /// their results in input order. DKIM lookups, decompression and parsing of one input
    /// overlap with the others', and a store that shares transactions between concurrent
    /// inserts ([`crate::SqliteStore`]) commits them together. The caller bounds the work by
    /// the number of inputs it passes.
    pub async fn import_many(
        &self,
        inputs: Vec<crate::mailbox::Input>,
        now: u64,
    ) -> Vec<Result<Imported, SinkError>> {
        let mut tasks = tokio::task::JoinSet::new();
        let count = inputs.len();
        for (i, input) in inputs.into_iter().enumerate() {
            let importer = self.clone();
            tasks.spawn(async move { (i, importer.import(&input.bytes, &input.label, now).await) });
        }
        let mut done: Vec<Option<Result<Imported, SinkError>>> = (0..count).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, result)) => done[i] = Some(result),
                // A panic is a bug, not an input's fault: it stays a panic.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        done.into_iter()
            .map(|r| r.unwrap_or(Err(SinkError::Cancelled)))
            .collect()
    }

    /// Imports one input labelled `source`; `now` (Unix seconds, from the caller's clock) is
    /// compared with `x=` and stored as the reports' import time. `Err` only when the store
    /// fails.
    pub async fn import(
        &self,
        bytes: &[u8],
        source: &str,
        now: u64,
    ) -> Result<Imported, SinkError> {
        let mut warnings = Vec::new();
        let prepared = match prepare(bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(source, error = %e, "input refused");
                return Ok(Imported {
                    outcome: InputOutcome::Refused {
                        reason: e.to_string(),
                    },
                    dkim: DkimStatus::NotMail,
                    warnings,
                });
            }
        };
        let dkim = if !is_message(bytes) {
            DkimStatus::NotMail
        } else {
            match &self.dkim {
                DkimCheck::Skip => DkimStatus::Skipped,
                DkimCheck::Verify(verifier) => match verifier.verify(bytes, now).await {
                    Verdict::Pass(pass) => {
                        if !pass.declares_tlsrpt {
                            warnings.push(format!(
                                "dkim-no-tlsrpt-service: the key {}._domainkey.{} does not declare s=tlsrpt (RFC 8460 §3 SHOULD); imported",
                                pass.selector, pass.domain
                            ));
                        }
                        DkimStatus::Verified(pass)
                    }
                    Verdict::Refused(refusal) => {
                        tracing::info!(source, code = refusal.code(), %refusal, "TLS-RPT mail ignored (RFC 8460 §3)");
                        return Ok(Imported {
                            outcome: InputOutcome::Refused {
                                reason: refusal.to_string(),
                            },
                            dkim: DkimStatus::Refused(refusal),
                            warnings,
                        });
                    }
                },
            }
        };
        // DKIM was verified on the bytes as received; the prepared ones only differ by
        // close delimiters appended to an unterminated MIME message.
        let received_at = i64::try_from(now).unwrap_or(i64::MAX);
        let outcome = self
            .sink
            .accept_with_dkim(&prepared, None, source, received_at, dkim.label())
            .await?;
        Ok(Imported {
            outcome,
            dkim,
            warnings,
        })
    }
}
