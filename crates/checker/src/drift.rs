//! Drift between what a policy host serves and what the world sees (`mta-sts serve
//! --check`): pure comparison of a [`Report`] of the live domain with the configured
//! policy, its id and its certificate. Findings reuse the checker's ids where they exist.
//!
//! [`served_drift`] is everything `mta-sts serve --check` adds to a domain's check, and
//! what the dashboard (`mta-sts web --serve-config`, `[web]` of `serve`) adds to its
//! "re-run check": [`drift`] and [`rua_drift`].

use std::path::Path;
use std::time::{Duration, SystemTime};

use mta_sts::Policy;

use crate::analyze::Thresholds;
use crate::finding::{Finding, ids};
use crate::report::Report;

/// What the policy host serves for one domain.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The configured policy.
    pub policy: &'a Policy,
    /// Its content-derived id, as in the `_mta-sts` record to publish.
    pub id: &'a str,
    /// When the certificate presented for `mta-sts.<domain>` expires, if known.
    pub cert_not_after: Option<SystemTime>,
}

/// Findings about `served` that the live `report` reveals, beyond the report's own:
/// a published id that is not the served one, a live policy that differs, MX records the
/// served policy does not cover, and a served certificate close to expiry.
pub fn drift(
    report: &Report,
    served: &Served<'_>,
    thresholds: &Thresholds,
    now: SystemTime,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(published) = report.record.as_ref().and_then(|r| r.id.as_deref())
        && published != served.id
    {
        findings.push(Finding::new(
            &ids::SERVE_ID_NOT_PUBLISHED,
            format!(
                "_mta-sts.{} has id={published}; the served policy has id={}",
                report.domain, served.id
            ),
        ));
    }
    if let Some(live) = &report.policy
        && live.valid
        && !same_policy(live, served.policy)
    {
        findings.push(Finding::new(
            &ids::SERVE_POLICY_DIFFERS,
            format!(
                "fetched: mode {} max_age {} mx {}; served here: mode {} max_age {} mx {}",
                live.mode.as_deref().unwrap_or("-"),
                live.max_age
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into()),
                live.mx.join(" "),
                served.policy.mode,
                served.policy.max_age,
                served
                    .policy
                    .mx
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ));
    }
    if !report.has(ids::MX_NOT_IN_POLICY.id) {
        for mx in &report.mx {
            if !served.policy.mx.is_empty() && !served.policy.matches_mx(&mx.host) {
                findings.push(Finding::new(
                    &ids::MX_NOT_IN_POLICY,
                    format!("MX {} matches no mx line of the served policy", mx.host),
                ));
            }
        }
    }
    if let Some(not_after) = served.cert_not_after
        && !report.has(ids::POLICY_HOST_CERT_EXPIRING.id)
    {
        let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
        let days = left.as_secs() / 86_400;
        if left.is_zero() {
            findings.push(Finding::new(
                &ids::POLICY_HOST_CERT_EXPIRED,
                "the certificate configured for the policy host has expired",
            ));
        } else if i64::try_from(days).unwrap_or(i64::MAX) < thresholds.cert_warn_days {
            findings.push(Finding::new(
                &ids::POLICY_HOST_CERT_EXPIRING,
                format!("the certificate configured for the policy host expires in {days} days"),
            ));
        }
    }
    findings
}

/// This policy host's TLS-RPT intake, as [`rua_drift`] compares published `rua` URIs with.
#[derive(Clone, Copy)]
pub struct Intake<'a> {
    /// Whether a host name (lower case, no trailing dot) is one of this host's policy
    /// hosts (`mta-sts.<domain>` of a configured domain).
    pub serves_host: &'a (dyn Fn(&str) -> bool + Sync),
    /// `[tlsrpt] intake_path`, `None` without a `[tlsrpt]` section.
    pub intake_path: Option<&'a str>,
    /// The serve configuration file, named in the fixes.
    pub config: &'a Path,
}

impl std::fmt::Debug for Intake<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("intake_path", &self.intake_path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Every drift finding of a served domain: [`drift`], and [`rua_drift`] of the `rua` URIs
/// the report saw published (RFC 8460 §3).
pub fn served_drift(
    report: &Report,
    served: &Served<'_>,
    intake: &Intake<'_>,
    thresholds: &Thresholds,
    now: SystemTime,
) -> Vec<Finding> {
    let mut findings = drift(report, served, thresholds, now);
    if let Some(tlsrpt) = &report.tlsrpt {
        findings.extend(rua_drift(&tlsrpt.rua, intake));
    }
    findings
}

/// The host (lower case, no port, no trailing dot) and path (`/` when none, no query) of an
/// `https:` URI; `None` for other schemes.
fn https_host_path(uri: &str) -> Option<(String, String)> {
    let uri = crate::probe::rua::HttpsUri::parse(uri)?;
    Some((
        uri.host.trim_end_matches('.').to_owned(),
        uri.route().to_owned(),
    ))
}

/// The published `rua` URIs (RFC 8460 §3) that point at one of this host's policy hosts
/// over `https:` but at a path where it takes no reports (RFC 8460 §5.4): reporting MTAs
/// get 404 and the reports are lost, while everything else passes.
pub fn rua_drift(published: &[String], intake: &Intake<'_>) -> Vec<Finding> {
    let config = intake.config.display();
    let mut findings = Vec::new();
    for uri in published {
        let Some((host, path)) = https_host_path(uri) else {
            continue;
        };
        if !(intake.serves_host)(&host) {
            continue;
        }
        let (detail, fix) = match intake.intake_path {
            Some(intake_path) if intake_path == path => continue,
            Some(intake_path) => (
                format!(
                    "the _smtp._tls record has rua={uri}; this host takes reports at https://{host}{intake_path} and answers {path} with 404",
                ),
                format!(
                    "Publish rua=https://{host}{intake_path} (see `mta-sts serve --print-records`), or set intake_path = \"{path}\" in [tlsrpt] of {config}.",
                ),
            ),
            None => (
                format!(
                    "the _smtp._tls record has rua={uri}; this host has no [tlsrpt] section, so it answers {path} with 404"
                ),
                format!(
                    "Add [tlsrpt] with intake_path = \"{path}\" and a store or spool_dir to {config}, or publish another rua.",
                ),
            ),
        };
        findings.push(Finding {
            fix,
            ..Finding::new(&ids::SERVE_RUA_NOT_INTAKE, detail)
        });
    }
    findings
}

/// Whether the fetched policy is the served one. The `mx` lines are a set (RFC 8461 §3.2
/// gives their order no meaning; §4.1 matches against any of them), so another order or
/// a repeated line is the same policy; patterns are compared in their canonical lower-case
/// A-label form.
fn same_policy(live: &crate::report::PolicyReport, served: &Policy) -> bool {
    let mut live_mx: Vec<String> = live.mx.iter().map(|m| m.to_ascii_lowercase()).collect();
    let mut served_mx: Vec<String> = served.mx.iter().map(ToString::to_string).collect();
    live_mx.sort();
    live_mx.dedup();
    served_mx.sort();
    served_mx.dedup();
    live.mode.as_deref() == Some(served.mode.as_str())
        && live.max_age == Some(served.max_age)
        && live_mx == served_mx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_uri_parts() {
        let parts = |uri: &str| https_host_path(uri).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(
            parts("https://MTA-STS.Example.org./reports?x=1#f").as_deref(),
            Some("mta-sts.example.org /reports")
        );
        assert_eq!(
            parts("https://u@mta-sts.example.org:443").as_deref(),
            Some("mta-sts.example.org /")
        );
        assert_eq!(parts("mailto:tlsrpt@example.org"), None);
        assert_eq!(parts("http://mta-sts.example.org/tlsrpt"), None);
    }

    #[test]
    fn rua_drift_flags_only_this_hosts_other_paths() {
        let serves = |h: &str| h == "mta-sts.example.org";
        let intake = Intake {
            serves_host: &serves,
            intake_path: Some("/tlsrpt"),
            config: Path::new("/etc/mta-sts/serve.toml"),
        };
        let published = [
            "https://mta-sts.example.org/tlsrpt".to_owned(),
            "https://mta-sts.example.org/reports".to_owned(),
            "https://elsewhere.example/reports".to_owned(),
            "mailto:tlsrpt@example.org".to_owned(),
        ];
        let found = rua_drift(&published, &intake);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, "serve-rua-not-intake");
        assert!(found[0].detail.contains("/reports"), "{}", found[0].detail);
        assert!(
            found[0].fix.contains("intake_path = \"/reports\""),
            "{}",
            found[0].fix
        );
        let none = Intake {
            intake_path: None,
            ..intake
        };
        let found = rua_drift(&published[..1], &none);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("no [tlsrpt] section"));
    }
}
