//! The I/O half of DKIM verification: key lookups at `<s>._domainkey.<d>` (RFC 6376
//! §3.6.2) over DNS, driving the sans-I/O checks of [`mta_sts_dkim::verify`].
//!
//! NXDOMAIN or NODATA is [`DkimRefusal::KeyNotFound`]; SERVFAIL, REFUSED, a timeout or an I/O
//! error is [`DkimRefusal::Temporary`] ("try again later"), never "invalid" (RFC 6376 §6.1.2:
//! TEMPFAIL). Only signatures aligned with the reporting domain cause a lookup, so a message
//! cannot make the importer query names of its choosing beyond its own signers, and at most
//! [`MAX_SIGNATURES`](mta_sts_dkim::MAX_SIGNATURES) of them.

use mta_sts_net::dns::{Dns, DnsOutcome};

use mta_sts_dkim::{
    DkimRefusal, KeyRecord, Pass, SignedMessage, Verdict, aligned, reporting_domains, signer_label,
};

/// Verifies report mail: a DNS client and the `s=tlsrpt` policy.
#[derive(Debug, Clone)]
pub struct DkimVerifier {
    dns: Dns,
    require_service: bool,
}

impl DkimVerifier {
    /// A verifier that looks keys up with `dns`. Keys without `s=tlsrpt` are accepted
    /// (RFC 8460 §3 only says a receiver MAY ignore them); see
    /// [`DkimVerifier::require_service`].
    pub fn new(dns: Dns) -> Self {
        DkimVerifier {
            dns,
            require_service: false,
        }
    }

    /// With `true`, a signature whose key lacks `s=tlsrpt` (or `s=*`) does not count
    /// ([`DkimRefusal::ServiceNotDeclared`]), as RFC 8460 §3 allows.
    pub fn require_service(mut self, require: bool) -> Self {
        self.require_service = require;
        self
    }

    /// Whether a report message carries a valid DKIM signature by its reporting domain
    /// (RFC 8460 §3). `now` (Unix seconds) is compared with `x=`.
    pub async fn verify(&self, message: &[u8], now: u64) -> Verdict {
        let message = SignedMessage::new(message);
        let signatures = message.signatures();
        if signatures.is_empty() {
            return Verdict::Refused(DkimRefusal::Missing);
        }
        let reporting = reporting_domains(&message);
        if reporting.is_empty() {
            return Verdict::Refused(DkimRefusal::NoReportingDomain);
        }
        let mut outcomes = Vec::with_capacity(signatures.len());
        for (index, parsed) in signatures.into_iter().enumerate() {
            let sig = match parsed {
                Ok(s) => s,
                Err(e) => {
                    outcomes.push(Err(DkimRefusal::Invalid {
                        signer: None,
                        reason: e.to_string(),
                    }));
                    continue;
                }
            };
            // RFC 8460 §3: "by the reporting domain".
            if !reporting.iter().all(|r| aligned(&sig.domain, r)) {
                outcomes.push(Err(DkimRefusal::NotAligned {
                    signing: sig.domain.clone(),
                    reporting: reporting.join(", "),
                }));
                continue;
            }
            let invalid = |reason: String| DkimRefusal::Invalid {
                signer: Some(signer_label(&sig)),
                reason,
            };
            if let Err(e) = message.check_body(&sig, now) {
                outcomes.push(Err(invalid(e.to_string())));
                continue;
            }
            let name = sig.key_name();
            let records = match self.dns.txt(&name).await {
                DnsOutcome::Found { records, .. } => records,
                DnsOutcome::NoRecord { .. } => {
                    outcomes.push(Err(DkimRefusal::KeyNotFound { name }));
                    continue;
                }
                DnsOutcome::Failure { kind, message } => {
                    tracing::info!(%name, ?kind, %message, "DKIM key lookup failed");
                    outcomes.push(Err(DkimRefusal::Temporary { name, message }));
                    continue;
                }
            };
            // RFC 6376 §3.6.2.2: with several records, any one may be the key.
            let mut outcome = Err(DkimRefusal::KeyNotFound { name: name.clone() });
            for record in &records {
                let key = match KeyRecord::parse(record) {
                    Ok(k) => k,
                    Err(e) => {
                        if outcome.is_err() {
                            outcome = Err(invalid(e.to_string()));
                        }
                        continue;
                    }
                };
                match message.verify(index, &sig, &key) {
                    Ok(()) => {
                        outcome = Ok(Pass {
                            domain: sig.domain.clone(),
                            selector: sig.selector.clone(),
                            algorithm: sig.algorithm,
                            declares_tlsrpt: key.declares_tlsrpt(),
                        });
                        break;
                    }
                    Err(e) => outcome = Err(invalid(e.to_string())),
                }
            }
            // RFC 8460 §3: "the receiving system MAY ignore reports lacking that service type".
            if let Ok(pass) = &outcome
                && self.require_service
                && !pass.declares_tlsrpt
            {
                outcome = Err(DkimRefusal::ServiceNotDeclared { name });
            }
            outcomes.push(outcome);
        }
        Verdict::from_outcomes(outcomes)
    }
}
