//! From evidence to findings: pure functions, no I/O, no clock (certificate ages come with
//! the evidence). The [`crate::Checker`] gathers an [`Evidence`] and calls [`analyze`].

use std::sync::Arc;
use std::time::Duration;

use mta_sts::decision::{Decision, TlsOutcome, decide};
use mta_sts::diagnostic::Verdict as _;
use mta_sts::{Diagnostic, Mode, Policy, StsRecord};
use mta_sts_net::dns::DnsOutcome;
use mta_sts_net::policy_fetch::is_text_plain;

use crate::finding::{Finding, Severity, ids};
use crate::probe::ProbeErrorKind;
use crate::probe::https::PolicyHostProbe;
use crate::probe::smtp::MxProbe;
use crate::report::{
    Delivery, IfEnforced, MxReport, PolicyReport, RecordReport, Report, SkippedMx, TlsRptReport,
};
use crate::tls::{CertProblem, TlsSession};

/// Limits the analysis applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Warn when a certificate expires within this many days (default 14).
    pub cert_warn_days: i64,
    /// Warn when the policy host takes longer than this (default 5 s).
    pub slow: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cert_warn_days: 14,
            slow: Duration::from_secs(5),
        }
    }
}

/// The MX set of a domain (RFC 5321 §5.1, RFC 7505).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxSet {
    /// MX records, sorted by preference.
    Hosts(Vec<MxEntry>),
    /// `0 .`: the domain accepts no mail (RFC 7505).
    Null,
    /// No MX record but the domain has an address: it is its own MX (RFC 5321 §5.1).
    Implicit(MxEntry),
    /// No MX record and no address.
    None,
    /// The MX lookup failed.
    DnsFailure(String),
}

/// One MX host with its probe (shared between domains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxEntry {
    /// The MX RDATA name.
    pub host: String,
    /// Preference; `None` for the implicit MX.
    pub preference: Option<u16>,
    /// The probe, `None` with `--no-smtp`.
    pub probe: Option<Arc<MxProbe>>,
}

/// Whether a TLS-RPT `rua` destination can receive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuaReach {
    /// The URI.
    pub uri: String,
    /// Empty: it can; else why not (RFC 8460 §3, §5.3, §5.4).
    pub problems: Vec<RuaProblem>,
}

/// One reason a `rua` destination cannot (or may not) receive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuaProblem {
    /// What kind.
    pub kind: RuaProblemKind,
    /// The evidence.
    pub message: String,
}

/// The kinds of [`RuaProblem`], one finding id each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuaProblemKind {
    /// No MX/address for a `mailto:` domain; no address, no TCP or TLS for an `https:` host
    /// (`tlsrpt-rua-unreachable`).
    Unreachable,
    /// The `https:` host's certificate fails WebPKI validation (`tlsrpt-rua-cert-invalid`).
    Certificate,
    /// The `https:` path does not take a report POST (`tlsrpt-rua-rejects-post`).
    RejectsPost,
}

/// Everything the checker gathered about one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The domain, canonical.
    pub domain: String,
    /// TXT RRs at `_mta-sts.<domain>` (CNAMEs followed).
    pub sts: DnsOutcome<Vec<u8>>,
    /// The CNAME chain from `_mta-sts.<domain>` (empty without CNAME).
    pub sts_cname: Vec<String>,
    /// TXT RRs at the domain itself.
    pub apex: DnsOutcome<Vec<u8>>,
    /// The policy host probe, when made.
    pub policy_host: Option<PolicyHostProbe>,
    /// The MX set.
    pub mx: MxSet,
    /// TXT RRs at `_smtp._tls.<domain>`.
    pub tlsrpt: DnsOutcome<Vec<u8>>,
    /// Reachability of each `rua` URI.
    pub rua: Vec<RuaReach>,
}

/// What the record analysis concluded, for the checker to decide about the policy host.
pub fn has_candidate(sts: &DnsOutcome<Vec<u8>>) -> bool {
    sts.records()
        .iter()
        .any(|rr| mta_sts::record::is_candidate(rr))
}

/// The findings and report sections of one domain.
pub fn analyze(evidence: &Evidence, thresholds: &Thresholds, elapsed_ms: u64) -> Report {
    let mut findings = Vec::new();
    let record = analyze_record(evidence, &mut findings);
    let record_valid = record.as_ref().is_some_and(|r| r.valid);

    // Policy host and policy file (RFC 8461 §3.2, §3.3).
    let mut published: Option<Policy> = None;
    let mut policy_report = None;
    let mut host_ok = false;
    if let Some(probe) = &evidence.policy_host {
        host_ok = analyze_policy_host(probe, thresholds, &mut findings);
        if let (Some(200), Some(body), false) = (probe.status, &probe.body, probe.too_large) {
            let (policy, report) = analyze_policy(&evidence.domain, body, &mut findings);
            published = policy;
            policy_report = Some(report);
        }
    }
    let applied = record_valid && host_ok && published.is_some();
    if let Some(report) = &mut policy_report {
        report.applied = applied;
    }
    let applied_policy = if applied { published.as_ref() } else { None };

    let (mx, enforced) = analyze_mx(
        evidence,
        published.as_ref(),
        applied_policy,
        thresholds,
        &mut findings,
    );
    if let Some(policy) = &published {
        unused_patterns(policy, &evidence.mx, &mut findings);
    }
    let mode = published.as_ref().map(|p| p.mode);
    let tlsrpt = analyze_tlsrpt(evidence, mode, &mut findings);
    let mut delivery = delivery(&evidence.mx, &mx, applied_policy, &mut findings);
    if published.as_ref().is_some_and(|p| p.mode == Mode::Testing) {
        delivery.if_enforced = Some(if_enforced(&evidence.mx, &enforced, &mut findings));
    }

    Report {
        domain: evidence.domain.clone(),
        verdict: crate::finding::Verdict::of(&findings),
        findings,
        record,
        policy: policy_report,
        policy_host: evidence.policy_host.clone(),
        mx,
        tlsrpt,
        delivery,
        elapsed_ms,
    }
}

fn lossy(rr: &[u8]) -> String {
    String::from_utf8_lossy(rr).into_owned()
}

/// Splits a diagnostic message "what is wrong: how to fix it" at the first `: ` outside
/// backticks.
fn split_message(message: &str) -> (String, String) {
    let mut in_code = false;
    let bytes = message.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'`' => in_code = !in_code,
            b':' if !in_code && bytes.get(i + 1) == Some(&b' ') => {
                return (message[..i].to_string(), message[i + 2..].to_string());
            }
            _ => {}
        }
    }
    (message.to_string(), String::new())
}

fn diagnostic_finding(
    prefix: &str,
    area: crate::finding::Area,
    d: &Diagnostic,
    detail: String,
) -> Finding {
    let (title, fix) = split_message(&d.message);
    let severity = match d.severity {
        mta_sts::Severity::Error => Severity::Error,
        mta_sts::Severity::Warning => Severity::Warning,
    };
    Finding {
        id: format!("{prefix}-{}", d.code),
        severity,
        area,
        title,
        detail,
        fix,
    }
}

fn analyze_record(evidence: &Evidence, findings: &mut Vec<Finding>) -> Option<RecordReport> {
    use crate::finding::Area;
    let name = format!("_mta-sts.{}", evidence.domain);
    let mut report = RecordReport {
        name: name.clone(),
        txt: evidence.sts.records().iter().map(|r| lossy(r)).collect(),
        cname_chain: evidence.sts_cname.clone(),
        id: None,
        valid: false,
    };
    // RFC 8461 §3.1: "MAY return a CNAME … senders MUST follow the CNAME pointers".
    if evidence.sts_cname.len() > 1 {
        findings.push(Finding::new(
            &ids::RECORD_CNAME,
            format!(
                "{} (policy host stays mta-sts.{})",
                evidence.sts_cname.join(" → "),
                evidence.domain
            ),
        ));
    }
    match &evidence.sts {
        DnsOutcome::Failure { message, .. } => {
            findings.push(Finding::new(
                &ids::RECORD_DNS_FAILURE,
                format!("TXT {name}: {message}"),
            ));
        }
        DnsOutcome::NoRecord { .. } => {
            findings.push(Finding::new(
                &ids::RECORD_MISSING,
                format!("{name} has no TXT record"),
            ));
        }
        DnsOutcome::Found { records, .. } => {
            let candidates: Vec<&Vec<u8>> = records
                .iter()
                .filter(|rr| mta_sts::record::is_candidate(rr))
                .collect();
            // Near misses: look like an attempt (`v=STSv1` without `;`, `v=stsv1`, …).
            let near: Vec<&Vec<u8>> = records
                .iter()
                .filter(|rr| !mta_sts::record::is_candidate(rr))
                .filter(|rr| {
                    let t = lossy(rr).trim_start().to_ascii_lowercase();
                    t.starts_with("v=sts") || t.starts_with("v = sts")
                })
                .collect();
            let unrelated: Vec<String> = records
                .iter()
                .filter(|rr| !candidates.contains(rr) && !near.contains(rr))
                .map(|rr| format!("\"{}\"", lossy(rr)))
                .collect();
            if !unrelated.is_empty() {
                findings.push(Finding::new(
                    &ids::RECORD_UNRELATED_TXT,
                    format!("{name}: {}", unrelated.join(", ")),
                ));
            }
            match candidates.len() {
                0 => {
                    findings.push(Finding::new(
                        &ids::RECORD_MISSING,
                        format!(
                            "no TXT record at {name} begins with `v=STSv1;` ({} other record{})",
                            records.len(),
                            if records.len() == 1 { "" } else { "s" }
                        ),
                    ));
                    for rr in near {
                        lint_record(rr, Area::Record, findings);
                    }
                }
                1 => {
                    let rr = candidates[0];
                    if lint_record(rr, Area::Record, findings)
                        && let Ok(record) = StsRecord::parse_bytes(rr)
                    {
                        report.id = Some(record.id);
                        report.valid = true;
                    }
                }
                n => {
                    let list: Vec<String> = candidates
                        .iter()
                        .map(|rr| format!("\"{}\"", lossy(rr)))
                        .collect();
                    findings.push(Finding::new(
                        &ids::RECORD_MULTIPLE,
                        format!("{n} records at {name}: {}", list.join(", ")),
                    ));
                }
            }
        }
    }
    // A record at the apex is a common mistake: senders only look at _mta-sts.
    let apex: Vec<String> = evidence
        .apex
        .records()
        .iter()
        .map(|rr| lossy(rr))
        .filter(|t| t.trim_start().to_ascii_lowercase().starts_with("v=stsv1"))
        .collect();
    if !apex.is_empty() {
        findings.push(Finding::new(
            &ids::RECORD_AT_APEX,
            format!("TXT {}: \"{}\"", evidence.domain, apex.join("\", \"")),
        ));
    }
    Some(report)
}

/// Lints one TXT RR as an `_mta-sts` record; pushes `record-<code>` findings; returns
/// whether it is valid.
fn lint_record(rr: &[u8], area: crate::finding::Area, findings: &mut Vec<Finding>) -> bool {
    let text = lossy(rr);
    let diagnostics = match std::str::from_utf8(rr) {
        Ok(t) => mta_sts::record::lint(t).diagnostics,
        Err(e) => {
            let error = mta_sts::RecordError::NotAscii {
                position: e.valid_up_to(),
            };
            vec![Diagnostic::error(error.code(), None, error.to_string())]
        }
    };
    for d in &diagnostics {
        findings.push(diagnostic_finding("record", area, d, format!("\"{text}\"")));
    }
    diagnostics.is_valid()
}

/// Findings about the policy host; returns whether a sender would accept the response
/// (certificate valid, 200, `text/plain`, within size).
fn analyze_policy_host(
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum CertArea {
    PolicyHost,
    Mx,
}

/// Certificate findings; returns whether the certificate is valid. `severity` overrides
/// the error severity (MX findings depend on the policy mode).
fn cert_findings(
    tls: &TlsSession,
    name: &str,
    area: CertArea,
    thresholds: &Thresholds,
    severity: Option<Severity>,
    findings: &mut Vec<Finding>,
) -> bool {
    let Some(cert) = &tls.certificate else {
        return false;
    };
    let evidence = format!(
        "{name}: subject {}, issuer {}, SAN [{}], valid {} to {}{}",
        cert.subject,
        cert.issuer,
        cert.sans.join(", "),
        cert.not_before,
        cert.not_after,
        cert.error
            .as_deref()
            .map(|e| format!("; verifier: {e}"))
            .unwrap_or_default()
    );
    let pick = |problem: CertProblem| match (area, problem) {
        (CertArea::PolicyHost, CertProblem::Untrusted) => &ids::POLICY_HOST_CERT_UNTRUSTED,
        (CertArea::PolicyHost, CertProblem::NameMismatch) => &ids::POLICY_HOST_CERT_NAME_MISMATCH,
        (CertArea::PolicyHost, CertProblem::Expired) => &ids::POLICY_HOST_CERT_EXPIRED,
        (CertArea::PolicyHost, CertProblem::Invalid) => &ids::POLICY_HOST_CERT_INVALID,
        (CertArea::Mx, CertProblem::Untrusted) => &ids::MX_CERT_UNTRUSTED,
        (CertArea::Mx, CertProblem::NameMismatch) => &ids::MX_CERT_NAME_MISMATCH,
        (CertArea::Mx, CertProblem::Expired) => &ids::MX_CERT_EXPIRED,
        (CertArea::Mx, CertProblem::Invalid) => &ids::MX_CERT_INVALID,
    };
    if cert.valid {
        if cert.days_left < thresholds.cert_warn_days {
            let entry = match area {
                CertArea::PolicyHost => &ids::POLICY_HOST_CERT_EXPIRING,
                CertArea::Mx => &ids::MX_CERT_EXPIRING,
            };
            findings.push(Finding::new(
                entry,
                format!(
                    "{name}: expires {} ({} days left)",
                    cert.not_after, cert.days_left
                ),
            ));
        }
        return true;
    }
    for problem in cert.problems() {
        let mut f = Finding::new(pick(problem), evidence.clone());
        if let Some(s) = severity {
            f = f.with_severity(s);
        }
        findings.push(f);
    }
    false
}

fn analyze_policy(
    domain: &str,
    body: &[u8],
    findings: &mut Vec<Finding>,
) -> (Option<Policy>, PolicyReport) {
    use crate::finding::Area;
    let lint = mta_sts::policy::lint(body);
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &lint.diagnostics {
        let detail = match d.line {
            Some(n) => format!(
                "line {n}: \"{}\"",
                lines
                    .get(n as usize - 1)
                    .map(|l| l.trim_end_matches('\r').escape_debug().to_string())
                    .unwrap_or_default()
            ),
            None => "the whole policy".to_string(),
        };
        let mut f = diagnostic_finding("policy", Area::Policy, d, detail);
        // rfc-requirements erratum 7282 / §2.2 item 12: the checker reports an error.
        if d.code == "max-age-above-limit" {
            f.severity = Severity::Error;
        }
        findings.push(f);
    }
    let valid = lint.is_valid();
    let strict = lint.is_strict_valid();
    if valid && !strict {
        let codes: Vec<&str> = lint
            .diagnostics
            .iter()
            .filter(|d| d.breaks_abnf)
            .map(|d| d.code)
            .collect();
        findings.push(Finding::new(
            &ids::POLICY_NOT_STRICT,
            format!(
                "deviations from the RFC 8461 §3.2 grammar: {}",
                codes.join(", ")
            ),
        ));
    }
    let mut report = PolicyReport {
        version: None,
        mode: None,
        max_age: None,
        effective_max_age: None,
        mx: Vec::new(),
        valid,
        strict_valid: strict,
        applied: false,
    };
    let Some(policy) = lint.policy else {
        return (None, report);
    };
    report.version = Some(mta_sts::policy::VERSION.to_string());
    report.mode = Some(policy.mode.as_str().to_string());
    report.max_age = Some(policy.max_age);
    report.effective_max_age = Some(policy.effective_max_age());
    report.mx = policy.mx.iter().map(|p| p.to_string()).collect();
    match policy.mode {
        Mode::Testing => findings.push(Finding::new(
            &ids::POLICY_MODE_TESTING,
            "mode: testing (senders deliver even when validation fails, and only report)",
        )),
        Mode::None => findings.push(Finding::new(&ids::POLICY_MODE_NONE, "mode: none")),
        Mode::Enforce => {}
    }
    if policy.mode != Mode::None {
        // RFC 8461 §3.2 ("weeks or greater"), §10.2.
        if policy.max_age < 86_400 {
            findings.push(Finding::new(
                &ids::POLICY_MAX_AGE_SHORT,
                format!("max_age: {} seconds", policy.max_age),
            ));
        } else if policy.max_age < 604_800 {
            findings.push(Finding::new(
                &ids::POLICY_MAX_AGE_BELOW_WEEK,
                format!("max_age: {} seconds", policy.max_age),
            ));
        }
    }
    // RFC 8461 §10.4: `*.<domain>` lets any host of the domain receive mail.
    for p in &policy.mx {
        if p.is_wildcard() && p.base() == domain {
            findings.push(Finding::new(
                &ids::POLICY_BROAD_WILDCARD,
                format!("mx: {p}"),
            ));
        }
    }
    (Some(policy), report)
}

fn unused_patterns(policy: &Policy, mx: &MxSet, findings: &mut Vec<Finding>) {
    if policy.mode == Mode::None {
        return;
    }
    let hosts: Vec<&str> = match mx {
        MxSet::Hosts(list) => list.iter().map(|e| e.host.as_str()).collect(),
        MxSet::Implicit(e) => vec![e.host.as_str()],
        _ => return,
    };
    for p in &policy.mx {
        if !hosts.iter().any(|h| p.matches(h)) {
            findings.push(Finding::new(
                &ids::POLICY_MX_UNUSED,
                format!("mx: {p} matches none of: {}", hosts.join(", ")),
            ));
        }
    }
}

/// The severity of an MX TLS problem under the published policy: an error only when the
/// policy is enforced (RFC 8461 §5).
fn mx_severity(published: Option<&Policy>) -> Severity {
    match published.map(|p| p.mode) {
        Some(Mode::Enforce) => Severity::Error,
        _ => Severity::Warning,
    }
}

fn analyze_mx(
    evidence: &Evidence,
    published: Option<&Policy>,
    applied: Option<&Policy>,
    thresholds: &Thresholds,
    findings: &mut Vec<Finding>,
) -> (Vec<MxReport>, Vec<EnforcedMx>) {
    let entries: Vec<&MxEntry> = match &evidence.mx {
        MxSet::Hosts(list) => list.iter().collect(),
        MxSet::Implicit(entry) => {
            findings.push(Finding::new(
                &ids::MX_IMPLICIT,
                format!(
                    "{} has no MX record; senders use its own address",
                    evidence.domain
                ),
            ));
            vec![entry]
        }
        MxSet::Null => {
            findings.push(Finding::new(
                &ids::MX_NULL,
                format!("MX {}: 0 . (RFC 7505)", evidence.domain),
            ));
            return (Vec::new(), Vec::new());
        }
        MxSet::None => {
            findings.push(Finding::new(
                &ids::MX_NONE,
                format!("{} has no MX, A or AAAA record", evidence.domain),
            ));
            return (Vec::new(), Vec::new());
        }
        MxSet::DnsFailure(message) => {
            findings.push(Finding::new(
                &ids::MX_DNS_FAILURE,
                format!("MX {}: {message}", evidence.domain),
            ));
            return (Vec::new(), Vec::new());
        }
    };
    let severity = mx_severity(published);
    // RFC 8461 §5: what the same policy would do under `mode: enforce`, for an owner
    // deciding whether to leave `testing`.
    let enforce = published
        .filter(|p| p.mode == Mode::Testing)
        .map(|p| Policy {
            mode: Mode::Enforce,
            ..p.clone()
        });
    let mut out = Vec::new();
    let mut enforced = Vec::new();
    for entry in entries {
        let host = &entry.host;
        let first_finding = findings.len();
        // RFC 8461 §4.1: the MX RDATA name must match a pattern.
        let in_policy = published.map(|p| p.matches_mx(host));
        if in_policy == Some(false) && published.is_some_and(|p| p.mode != Mode::None) {
            let sev = mx_severity(published);
            findings.push(
                Finding::new(
                    &ids::MX_NOT_IN_POLICY,
                    format!(
                        "{host} matches none of the patterns: {}",
                        published
                            .map(|p| p
                                .mx
                                .iter()
                                .map(|m| m.to_string())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    ),
                )
                .with_severity(sev),
            );
        }
        let probe = entry.probe.as_deref();
        let outcome = probe.map(|p| mx_probe_findings(p, severity, thresholds, findings));
        let verdict = mx_verdict(applied, host, outcome);
        if let Some(enforce) = &enforce {
            // The findings just made about this host that fail validation (a certificate
            // that merely expires soon is valid).
            let reasons = findings[first_finding..]
                .iter()
                .filter(|f| f.area == crate::finding::Area::Mx)
                .filter(|f| f.severity >= Severity::Warning && f.id != ids::MX_CERT_EXPIRING.id)
                .map(|f| f.id.clone())
                .collect();
            enforced.push(EnforcedMx {
                host: host.clone(),
                verdict: mx_verdict(Some(enforce), host, outcome),
                reasons,
            });
        }
        out.push(MxReport {
            host: host.clone(),
            preference: entry.preference,
            in_policy,
            addresses: probe.map(|p| p.addresses.list.clone()).unwrap_or_default(),
            starttls: probe.and_then(|p| p.starttls),
            tls_version: probe.and_then(|p| p.tls.as_ref().map(|t| t.version.clone())),
            cipher: probe.and_then(|p| p.tls.as_ref().map(|t| t.cipher.clone())),
            certificate: probe.and_then(|p| p.tls.as_ref().and_then(|t| t.certificate.clone())),
            dane_tlsa: probe.and_then(|p| p.tlsa),
            banner: probe.and_then(|p| p.banner.clone()),
            error: probe.and_then(|p| p.error.clone()),
            verdict,
        });
    }
    (out, enforced)
}

/// One MX host as an enforcing sender would treat it (see [`if_enforced`]).
struct EnforcedMx {
    host: String,
    /// [`mx_verdict`] under the policy with `mode: enforce`.
    verdict: &'static str,
    /// Ids of the findings about this host that fail validation.
    reasons: Vec<String>,
}

/// What a sender would do if the `testing` policy said `enforce` (RFC 8461 §5), with the
/// `enforce-would-defer` / `enforce-would-defer-some` finding, and the advice of
/// `policy-mode-testing` made to fit: switch only when enforce would deliver.
fn if_enforced(set: &MxSet, mx: &[EnforcedMx], findings: &mut Vec<Finding>) -> IfEnforced {
    let skipped: Vec<SkippedMx> = mx
        .iter()
        .filter(|m| m.verdict == "skip")
        .map(|m| SkippedMx {
            host: m.host.clone(),
            reasons: m.reasons.clone(),
        })
        .collect();
    let list = skipped
        .iter()
        .map(|s| {
            if s.reasons.is_empty() {
                s.host.clone()
            } else {
                format!("{} ({})", s.host, s.reasons.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let first = mx
        .iter()
        .find(|m| m.verdict == "deliver" || m.verdict == "deliver-report");
    let (would_deliver, host, reason, advice) = match (set, first) {
        (MxSet::Null | MxSet::None, _) => (
            Some(false),
            None,
            "the domain accepts no mail".to_string(),
            None,
        ),
        (MxSet::DnsFailure(_), _) => (None, None, "the MX lookup failed".to_string(), None),
        (_, Some(first)) => {
            if skipped.is_empty() {
                (
                    Some(true),
                    Some(first.host.clone()),
                    format!("an enforcing sender delivers to {}", first.host),
                    None,
                )
            } else {
                findings.push(Finding::new(
                    &ids::ENFORCE_WOULD_DEFER_SOME,
                    format!(
                        "under mode enforce senders skip {list}, and deliver to {}",
                        first.host
                    ),
                ));
                (
                    Some(true),
                    Some(first.host.clone()),
                    format!(
                        "an enforcing sender delivers to {} but skips {} of {} MX hosts",
                        first.host,
                        skipped.len(),
                        mx.len()
                    ),
                    Some(
                        "Fix the MX hosts listed under enforce-would-defer-some, then switch to \
                         `mode: enforce` once TLS-RPT reports show no failures; testing protects \
                         no mail.",
                    ),
                )
            }
        }
        (_, None) if !skipped.is_empty() && mx.iter().all(|m| m.verdict != "not-probed") => {
            findings.push(Finding::new(
                &ids::ENFORCE_WOULD_DEFER,
                format!("under mode enforce senders skip {list}"),
            ));
            (
                Some(false),
                None,
                format!("switching to enforce now would defer all mail: senders skip {list}"),
                Some(
                    "Do not switch to `mode: enforce` yet: it would defer all mail (see \
                     enforce-would-defer). Fix the MX hosts first, then switch once TLS-RPT \
                     reports show no failures.",
                ),
            )
        }
        (_, None) => (
            None,
            None,
            "unknown: the MX hosts were not probed or not reachable from here".to_string(),
            Some(
                "Switch to `mode: enforce` once `mta-sts check` reaches every MX host over \
                 SMTP without MX findings and TLS-RPT reports show no failures; testing \
                 protects no mail.",
            ),
        ),
    };
    if let Some(advice) = advice {
        for f in findings
            .iter_mut()
            .filter(|f| f.id == ids::POLICY_MODE_TESTING.id)
        {
            f.fix = advice.to_string();
        }
    }
    IfEnforced {
        would_deliver,
        mx: host,
        reason,
        skipped,
    }
}

/// What the probe of one MX host means for a sender; `None` when the host could not be
/// reached at all (nothing to decide about).
fn mx_probe_findings(
    probe: &MxProbe,
    severity: Severity,
    thresholds: &Thresholds,
    findings: &mut Vec<Finding>,
) -> Option<TlsOutcome> {
    let host = &probe.host;
    if probe.tlsa.is_some_and(|n| n > 0) {
        findings.push(Finding::new(
            &ids::DANE_TLSA_PRESENT,
            format!(
                "_25._tcp.{host}: {} TLSA record(s)",
                probe.tlsa.unwrap_or(0)
            ),
        ));
    }
    if probe.addresses.list.is_empty() {
        findings.push(Finding::new(
            &ids::MX_NO_ADDRESS,
            match &probe.addresses.dns_error {
                Some(e) => format!("A/AAAA {host}: {e}"),
                None => format!("{host} has no A or AAAA record"),
            },
        ));
    }
    if let Some(error) = &probe.error {
        let at = probe
            .connected_to
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let detail = format!("{host}{at}: {}", error.message);
        return match error.kind {
            ProbeErrorKind::NoAddress => None,
            ProbeErrorKind::Connect => {
                findings.push(Finding::new(&ids::MX_CONNECT_FAILED, detail));
                None
            }
            ProbeErrorKind::Timeout => {
                findings.push(Finding::new(&ids::MX_TIMEOUT, detail));
                None
            }
            ProbeErrorKind::Smtp | ProbeErrorKind::Http => {
                findings.push(Finding::new(&ids::MX_SMTP_ERROR, detail));
                None
            }
            ProbeErrorKind::StarttlsRefused | ProbeErrorKind::Tls => {
                findings
                    .push(Finding::new(&ids::MX_STARTTLS_FAILED, detail).with_severity(severity));
                Some(TlsOutcome::StarttlsNotSupported)
            }
            ProbeErrorKind::TlsVersion => {
                findings.push(Finding::new(&ids::MX_TLS_VERSION, detail).with_severity(severity));
                Some(TlsOutcome::ValidationFailure)
            }
        };
    }
    if probe.starttls == Some(false) {
        findings.push(
            Finding::new(
                &ids::MX_STARTTLS_MISSING,
                format!(
                    "{host} EHLO keywords: {}",
                    probe.ehlo.as_deref().unwrap_or(&[]).join(" ")
                ),
            )
            .with_severity(severity),
        );
        return Some(TlsOutcome::StarttlsNotSupported);
    }
    let tls = probe.tls.as_ref()?;
    if cert_findings(
        tls,
        host,
        CertArea::Mx,
        thresholds,
        Some(severity),
        findings,
    ) {
        Some(TlsOutcome::Valid)
    } else {
        Some(
            tls.certificate
                .as_ref()
                .and_then(|c| c.problem)
                .map(CertProblem::outcome)
                .unwrap_or(TlsOutcome::ValidationFailure),
        )
    }
}

fn mx_verdict(
    applied: Option<&Policy>,
    host: &str,
    outcome: Option<Option<TlsOutcome>>,
) -> &'static str {
    // Under enforce the MX name is checked before connecting (RFC 8461 §4.1).
    if let Some(p) = applied
        && p.mode == Mode::Enforce
        && !p.matches_mx(host)
    {
        return "skip";
    }
    match outcome {
        None => "not-probed",
        Some(None) => "unreachable",
        Some(Some(tls)) => match decide(applied, host, tls) {
            Decision::Deliver { report: None } => "deliver",
            Decision::Deliver { report: Some(_) } => "deliver-report",
            Decision::SkipMx { .. } => "skip",
        },
    }
}

fn delivery(
    set: &MxSet,
    mx: &[MxReport],
    applied: Option<&Policy>,
    findings: &mut Vec<Finding>,
) -> Delivery {
    let policy_mode = applied.map(|p| p.mode.as_str().to_string());
    let under = match applied {
        Some(p) => format!("under its {} policy", p.mode),
        None => "without an applicable MTA-STS policy".to_string(),
    };
    let (would, host, reason) = match set {
        MxSet::Null => (
            Some(false),
            None,
            "the domain accepts no mail (null MX)".to_string(),
        ),
        MxSet::None => (
            Some(false),
            None,
            "the domain has no MX and no address".to_string(),
        ),
        MxSet::DnsFailure(_) => (None, None, "the MX lookup failed".to_string()),
        MxSet::Hosts(_) | MxSet::Implicit(_) => {
            if let Some(first) = mx
                .iter()
                .find(|m| m.verdict == "deliver" || m.verdict == "deliver-report")
            {
                (
                    Some(true),
                    Some(first.host.clone()),
                    format!("a sender {under} delivers to {}", first.host),
                )
            } else if !mx.is_empty()
                && mx
                    .iter()
                    .all(|m| m.verdict == "skip" || m.verdict == "unreachable")
            {
                let skipped = mx.iter().any(|m| m.verdict == "skip");
                if skipped && applied.is_some_and(|p| p.mode == Mode::Enforce) {
                    let list: Vec<String> = mx
                        .iter()
                        .map(|m| format!("{} ({})", m.host, m.verdict))
                        .collect();
                    findings.push(Finding::new(&ids::DELIVERY_DEFERRED, list.join(", ")));
                }
                (
                    Some(false),
                    None,
                    format!(
                        "a sender {under} finds no MX host it may deliver to and defers the mail"
                    ),
                )
            } else {
                (None, None, "MX hosts were not probed".to_string())
            }
        }
    };
    Delivery {
        policy_mode,
        would_deliver: would,
        mx: host,
        reason,
        if_enforced: None,
    }
}

fn analyze_tlsrpt(
    evidence: &Evidence,
    mode: Option<Mode>,
    findings: &mut Vec<Finding>,
) -> Option<TlsRptReport> {
    use crate::finding::Area;
    let name = format!("_smtp._tls.{}", evidence.domain);
    // A domain that publishes MTA-STS (a `v=STSv1` record, and no policy known to be
    // `none`) without TLS-RPT never learns of failed deliveries (RFC 8460 §1), and RFC 8461
    // §5 `testing` exists only to produce those reports: a warning. Without MTA-STS, or
    // while withdrawing it with `mode: none`, the record is merely useful: information.
    let missing_severity = if has_candidate(&evidence.sts) && mode != Some(Mode::None) {
        Severity::Warning
    } else {
        Severity::Info
    };
    let records = match &evidence.tlsrpt {
        DnsOutcome::Failure { message, .. } => {
            findings.push(Finding::new(
                &ids::TLSRPT_DNS_FAILURE,
                format!("TXT {name}: {message}"),
            ));
            return None;
        }
        DnsOutcome::NoRecord { .. } => {
            findings.push(
                Finding::new(&ids::TLSRPT_MISSING, format!("{name} has no TXT record"))
                    .with_severity(missing_severity),
            );
            return None;
        }
        DnsOutcome::Found { records, .. } => records,
    };
    let candidates: Vec<&Vec<u8>> = records
        .iter()
        .filter(|rr| tlsrpt::has_record_prefix(rr))
        .collect();
    let mut report = TlsRptReport {
        txt: candidates.iter().map(|rr| lossy(rr)).collect(),
        rua: Vec::new(),
        valid: false,
    };
    match candidates.len() {
        0 => {
            findings.push(
                Finding::new(
                    &ids::TLSRPT_MISSING,
                    format!("no TXT record at {name} begins with `v=TLSRPTv1;`"),
                )
                .with_severity(missing_severity),
            );
        }
        1 => {
            let text = lossy(candidates[0]);
            let lint = tlsrpt::lint(&text);
            for d in &lint.diagnostics {
                findings.push(diagnostic_finding(
                    "tlsrpt",
                    Area::Tlsrpt,
                    d,
                    format!("\"{text}\""),
                ));
            }
            report.valid = lint.is_valid();
            if let Some(record) = &lint.record {
                report.rua = record.rua.iter().map(|r| r.uri().to_string()).collect();
            }
            for reach in &evidence.rua {
                for problem in &reach.problems {
                    let entry = match problem.kind {
                        RuaProblemKind::Unreachable => &ids::TLSRPT_RUA_UNREACHABLE,
                        RuaProblemKind::Certificate => &ids::TLSRPT_RUA_CERT_INVALID,
                        RuaProblemKind::RejectsPost => &ids::TLSRPT_RUA_REJECTS_POST,
                    };
                    findings.push(Finding::new(
                        entry,
                        format!("{}: {}", reach.uri, problem.message),
                    ));
                }
            }
        }
        n => findings.push(Finding::new(
            &ids::TLSRPT_MULTIPLE,
            format!("{n} records at {name}: {}", report.txt.join(" | ")),
        )),
    }
    Some(report)
}

/// Addresses of the implicit MX, for [`MxSet::Implicit`] decisions by the checker.
pub fn is_null_mx(records: &[(u16, String)]) -> bool {
    records.len() == 1 && records[0].1.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_messages() {
        assert_eq!(
            split_message("`mx: a` is bad: fix it"),
            ("`mx: a` is bad".to_string(), "fix it".to_string())
        );
        assert_eq!(split_message("plain"), ("plain".to_string(), String::new()));
    }

    #[test]
    fn null_mx() {
        assert!(is_null_mx(&[(0, String::new())]));
        assert!(!is_null_mx(&[(10, "mx.example".into())]));
    }
}
