//! A serve configuration as `serve --print-records`, `serve --check` and the dashboard
//! (`web --serve-config`, `[web]` of `serve`) all use it: the records to publish for each
//! configured domain, and a domain's check with the drift from what this host serves
//! (`mta_sts_checker::drift::served_drift`). One code path, so the dashboard shows what
//! the commands print.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_checker::analyze::Thresholds;
use mta_sts_checker::drift::{Intake, Served, served_drift};
use mta_sts_checker::{Checker, Report, Verdict};
use mta_sts_net::Clock;
use mta_sts_policy_host::config::TlsRptConfig;
use mta_sts_policy_host::table::HostEntry;
use mta_sts_policy_host::{Records, ServeConfig, Table};
use mta_sts_web::{ServedDomains, ServedRecords, ServedTxt};

use crate::net::NetArgs;

/// Findings that say a DNS record is missing: the check adds who answered.
const NO_RECORD_FINDINGS: &[&str] = &["record-missing", "tlsrpt-missing"];

/// With `[tlsrpt]` on and no `rua` for a domain, no `_smtp._tls` record is printed: a
/// zone-file comment says so and what to set, so reports reach this host's intake.
pub(crate) fn tlsrpt_hint(records: &Records, intake: Option<&TlsRptConfig>) -> Option<String> {
    let intake = intake?;
    if records.tlsrpt.is_some() {
        return None;
    }
    let uri = format!("https://{}{}", records.policy_host, intake.intake_path);
    Some(format!(
        "; no _smtp._tls record for {domain}: it has no `rua`. To receive its TLS-RPT reports \
         (RFC 8460 §3) at this host's intake, set rua = \"{uri}\" in its [[domain]] table or in \
         [default], then run --print-records again.",
        domain = records.domain
    ))
}

/// The zone-file text `serve --print-records` prints for one domain: its records, and the
/// hint of [`tlsrpt_hint`] when it has one.
pub(crate) fn records_text(records: &Records, intake: Option<&TlsRptConfig>) -> String {
    let mut text = records.to_string();
    if let Some(hint) = tlsrpt_hint(records, intake) {
        text.push_str(&hint);
        text.push('\n');
    }
    text
}

/// The records of every domain of `table`, for the dashboard's domain pages.
pub(crate) fn served_domains(table: &Table, config: &Path) -> ServedDomains {
    let intake = table.config().tlsrpt.as_ref();
    let mut served = ServedDomains::new(config.display().to_string());
    for r in table.records() {
        let txt = |t: &mta_sts_policy_host::records::TxtRecord| ServedTxt {
            name: t.name.clone(),
            value: t.value.clone(),
        };
        served.insert(
            r.domain.as_str(),
            ServedRecords {
                policy_host: r.policy_host.clone(),
                id: r.id.clone(),
                sts: txt(&r.sts),
                tlsrpt: r.tlsrpt.as_ref().map(txt),
                text: records_text(&r, intake),
            },
        );
    }
    served
}

/// Which DNS servers a check of the served domains asks: `--dns` if given, else the
/// `nameservers` of the serve configuration (the ones its own `mx = "auto"` lookups use),
/// else the system's. Returns the network options to check with, the sentence naming them
/// (`DNS answers from …`) and the short name added to "no record" findings.
pub(crate) fn dns_choice(
    net: &NetArgs,
    config: &ServeConfig,
    path: &Path,
) -> (NetArgs, String, String) {
    let join = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut net = net.clone();
    if !net.dns.is_empty() {
        let asked = join(&net.dns);
        (net, format!("{asked} (--dns)"), asked)
    } else if !config.nameservers.is_empty() {
        net.dns = config.nameservers.clone();
        let asked = join(&net.dns);
        (
            net,
            format!("{asked} (nameservers in {})", path.display()),
            asked,
        )
    } else {
        (
            net,
            "the system resolver (/etc/resolv.conf)".to_owned(),
            "the system resolver".to_owned(),
        )
    }
}

/// What checking a served domain needs besides the checker: the table of what is served,
/// the configuration file (named in fixes), the thresholds and who answers DNS.
pub(crate) struct ServedCheck {
    /// What this host serves.
    pub(crate) table: Arc<Table>,
    /// The serve configuration file.
    pub(crate) config: PathBuf,
    /// The checker's thresholds (certificate expiry warnings).
    pub(crate) thresholds: Thresholds,
    /// Who answers DNS, for "no record" findings.
    pub(crate) asked: String,
}

impl ServedCheck {
    /// The entry of a configured policy domain (lower case), if any.
    pub(crate) fn entry(&self, domain: &str) -> Option<&Arc<HostEntry>> {
        self.table
            .hosts()
            .find(|e| e.domain.as_str().eq_ignore_ascii_case(domain))
    }

    /// `serve --check` of one configured domain: the checker's report within `budget`,
    /// plus the drift findings, with the verdict recomputed over all of them.
    pub(crate) async fn check(
        &self,
        checker: &Checker,
        entry: &HostEntry,
        budget: Duration,
        clock: &dyn Clock,
    ) -> Report {
        let mut report = checker.check_bounded(entry.domain.as_str(), budget).await;
        let served = Served {
            policy: &entry.policy,
            id: &entry.id,
            cert_not_after: entry.cert_validity.map(|(_, not_after)| not_after),
        };
        let serves_host = |host: &str| self.table.host(host).is_some();
        let intake = Intake {
            serves_host: &serves_host,
            intake_path: self
                .table
                .config()
                .tlsrpt
                .as_ref()
                .map(|t| t.intake_path.as_str()),
            config: &self.config,
        };
        let drift = served_drift(
            &report,
            &served,
            &intake,
            &self.thresholds,
            clock.system_time(),
        );
        report.findings.extend(drift);
        // "No record" depends on who was asked: say it where it is read.
        for finding in &mut report.findings {
            if NO_RECORD_FINDINGS.contains(&finding.id.as_str()) {
                finding.detail = format!("{} (answered by {})", finding.detail, self.asked);
            }
        }
        report.verdict = Verdict::of(&report.findings);
        report
    }
}
