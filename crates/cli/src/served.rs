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
use mta_sts_policy_host::{Records, ServeConfig, Table, TableHandle};
use mta_sts_web::{ServedRecords, ServedSource, ServedTxt};

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

/// Where the table of what is served comes from: read once (`web --serve-config`,
/// `serve --check`), or the running policy host's, following its reloads (`[web]` of
/// `serve`).
#[derive(Clone)]
pub(crate) enum Tables {
    /// A table built once from the file.
    Fixed(Arc<Table>),
    /// The policy host's current table.
    Live(TableHandle),
}

impl Tables {
    /// The table now.
    pub(crate) fn load(&self) -> Arc<Table> {
        match self {
            Tables::Fixed(table) => table.clone(),
            Tables::Live(handle) => handle.load(),
        }
    }

    /// The entry of a configured policy domain (lower case), if any.
    pub(crate) fn entry(&self, domain: &str) -> Option<Arc<HostEntry>> {
        let host = format!("mta-sts.{}", domain.to_ascii_lowercase());
        self.load().host(&host).cloned()
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Tables::Fixed(_) => "Fixed",
            Tables::Live(_) => "Live",
        };
        f.debug_struct("Tables")
            .field("kind", &kind)
            .field("hosts", &self.load().hosts().count())
            .finish()
    }
}

/// The dashboard's view of a serve configuration: the records of a configured domain,
/// computed from the table when a page asks (so they follow the policy host's reloads).
#[derive(Debug)]
pub(crate) struct LiveServed {
    tables: Tables,
    config: String,
}

impl LiveServed {
    /// The records of the domains of `tables`, from the configuration file `config`.
    pub(crate) fn new(tables: Tables, config: &Path) -> LiveServed {
        LiveServed {
            tables,
            config: config.display().to_string(),
        }
    }
}

impl ServedSource for LiveServed {
    fn records(&self, domain: &str) -> Option<ServedRecords> {
        let table = self.tables.load();
        let entry = table.host(&format!("mta-sts.{}", domain.to_ascii_lowercase()))?;
        let r = entry.records();
        let txt = |t: &mta_sts_policy_host::records::TxtRecord| ServedTxt {
            name: t.name.clone(),
            value: t.value.clone(),
        };
        Some(ServedRecords {
            policy_host: r.policy_host.clone(),
            id: r.id.clone(),
            sts: txt(&r.sts),
            tlsrpt: r.tlsrpt.as_ref().map(txt),
            text: records_text(&r, table.config().tlsrpt.as_ref()),
        })
    }

    fn config(&self) -> Option<String> {
        Some(self.config.clone())
    }
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
    pub(crate) tables: Tables,
    /// The serve configuration file.
    pub(crate) config: PathBuf,
    /// The checker's thresholds (certificate expiry warnings).
    pub(crate) thresholds: Thresholds,
    /// Who answers DNS, for "no record" findings.
    pub(crate) asked: String,
}

impl ServedCheck {
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
        let table = self.tables.load();
        let serves_host = |host: &str| table.host(host).is_some();
        let intake = Intake {
            serves_host: &serves_host,
            intake_path: table
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
