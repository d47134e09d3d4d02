//! The policy host `mta-sts.<domain>` (RFC 8461 §3.3): A/AAAA, TCP 443, TLS 1.2 or later,
//! certificate, status, redirect, Content-Type, size and time.

use mta_sts_net::policy_fetch::is_text_plain;

use super::cert::{CertArea, cert_findings};
use super::evidence::Thresholds;
use crate::finding::{Finding, ids};
use crate::probe::ProbeErrorKind;
use crate::probe::https::PolicyHostProbe;

/// Findings about the policy host; returns whether a sender would accept the response
/// (certificate valid, 200, `text/plain`, within size).
pub(super) fn analyze_policy_host(
    probe: &PolicyHostProbe,
    thresholds: &Thresholds,
    findings: &mut Vec<Finding>,
) -> bool {
    let host = &probe.host;
    let mut ok = true;
    if probe.addresses.list.is_empty() {
        match &probe.addresses.dns_error {
            Some(message) => findings.push(Finding::new(
                &ids::POLICY_HOST_DNS_FAILURE,
                format!("A/AAAA {host}: {message}"),
            )),
            None => findings.push(Finding::new(
                &ids::POLICY_HOST_DNS_MISSING,
                format!("{host} has no A or AAAA record"),
            )),
        }
        ok = false;
    }
    if let Some(error) = &probe.error {
        ok = false;
        let entry = match error.kind {
            ProbeErrorKind::NoAddress => None,
            ProbeErrorKind::Connect => Some(&ids::POLICY_HOST_CONNECT_FAILED),
            ProbeErrorKind::Timeout => Some(&ids::POLICY_HOST_TIMEOUT),
            ProbeErrorKind::TlsVersion => Some(&ids::POLICY_HOST_TLS_VERSION),
            ProbeErrorKind::Tls => Some(&ids::POLICY_HOST_TLS_FAILED),
            ProbeErrorKind::Http | ProbeErrorKind::Smtp | ProbeErrorKind::StarttlsRefused => {
                Some(&ids::POLICY_HOST_HTTP_ERROR)
            }
        };
        if let Some(entry) = entry {
            findings.push(Finding::new(entry, format!("{host}: {}", error.message)));
        }
    }
    if let Some(tls) = &probe.tls
        && !cert_findings(tls, host, CertArea::PolicyHost, thresholds, None, findings)
    {
        ok = false;
    }
    if let Some(status) = probe.status {
        if (300..400).contains(&status) {
            ok = false;
            findings.push(Finding::new(
                &ids::POLICY_HOST_REDIRECT,
                format!(
                    "https://{host}{} answered {status}{}",
                    mta_sts_net::policy_fetch::POLICY_PATH,
                    probe
                        .location
                        .as_deref()
                        .map(|l| format!(" with Location: {l}"))
                        .unwrap_or_else(|| " without Location".into())
                ),
            ));
        } else if status != 200 {
            ok = false;
            findings.push(Finding::new(
                &ids::POLICY_HOST_HTTP_STATUS,
                format!(
                    "https://{host}{} answered {status}",
                    mta_sts_net::policy_fetch::POLICY_PATH
                ),
            ));
        } else {
            // RFC 8461 §3.2: SHOULD be text/plain; this toolkit's senders require it.
            if !probe.content_type.as_deref().is_some_and(is_text_plain) {
                ok = false;
                findings.push(Finding::new(
                    &ids::POLICY_HOST_CONTENT_TYPE,
                    match &probe.content_type {
                        Some(ct) => format!("Content-Type: {ct}"),
                        None => "no Content-Type header".to_string(),
                    },
                ));
            }
            if probe.too_large {
                ok = false;
                findings.push(Finding::new(
                    &ids::POLICY_HOST_TOO_LARGE,
                    format!(
                        "more than {} bytes",
                        probe.size.unwrap_or(0).saturating_sub(1)
                    ),
                ));
            }
        }
    }
    if probe.error.is_none() && probe.elapsed_ms > thresholds.slow.as_millis() as u64 {
        findings.push(Finding::new(
            &ids::POLICY_HOST_SLOW,
            format!("{} ms for the whole fetch", probe.elapsed_ms),
        ));
    }
    ok
}
