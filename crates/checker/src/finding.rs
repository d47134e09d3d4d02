//! Findings: what the checker concluded, as data with stable ids.
//!
//! Every finding has a stable kebab-case [`Finding::id`] (tools and tests match on it), a
//! [`Severity`], the [`Area`] it belongs to, a one-line title, the evidence (`detail`) and
//! the fix in one or two sentences. Diagnostics of the core parsers become findings with a
//! prefix: `record-<code>` (RFC 8461 §3.1), `policy-<code>` (§3.2) and `tlsrpt-<code>`
//! (RFC 8460 §3), so their codes stay the ones `mta-sts lint` prints.

use std::fmt;

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Works, but is fragile, weaker than it looks, or rejected by some senders.
    Warning,
    /// Broken: senders ignore the policy, or an enforcing sender defers mail.
    Error,
}

impl Severity {
    /// `"info"`, `"warning"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of the setup a finding concerns; the human output groups by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// The `_mta-sts` TXT record (RFC 8461 §3.1).
    Record,
    /// The policy host `mta-sts.<domain>` and its HTTPS service (RFC 8461 §3.3).
    PolicyHost,
    /// The policy file (RFC 8461 §3.2).
    Policy,
    /// The MX hosts and their STARTTLS service (RFC 8461 §4).
    Mx,
    /// The `_smtp._tls` TLS-RPT record (RFC 8460 §3).
    Tlsrpt,
    /// DANE TLSA records (RFC 8461 §2, RFC 7672).
    Dane,
    /// The overall delivery verdict.
    Delivery,
}

impl Area {
    /// A heading for humans.
    pub fn title(self) -> &'static str {
        match self {
            Area::Record => "_mta-sts TXT record",
            Area::PolicyHost => "policy host",
            Area::Policy => "policy",
            Area::Mx => "MX hosts",
            Area::Tlsrpt => "TLS reporting",
            Area::Dane => "DANE",
            Area::Delivery => "delivery",
        }
    }

    /// Every area, in display order.
    pub const ALL: [Area; 7] = [
        Area::Record,
        Area::PolicyHost,
        Area::Policy,
        Area::Mx,
        Area::Tlsrpt,
        Area::Dane,
        Area::Delivery,
    ];
}

/// One conclusion of the checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable kebab-case identifier, e.g. `policy-host-redirect`.
    pub id: String,
    /// Error, warning or info.
    pub severity: Severity,
    /// What it concerns.
    pub area: Area,
    /// One line: what is wrong (or worth knowing).
    pub title: String,
    /// The evidence: what was seen, with names, values and addresses.
    pub detail: String,
    /// What to do, in one or two sentences; empty for pure information.
    pub fix: String,
}

impl Finding {
    /// A finding of the catalogue entry `entry` with this evidence.
    pub fn new(entry: &Entry, detail: impl Into<String>) -> Finding {
        Finding {
            id: entry.id.to_string(),
            severity: entry.severity,
            area: entry.area,
            title: entry.title.to_string(),
            detail: detail.into(),
            fix: entry.fix.to_string(),
        }
    }

    /// The same finding with another severity (several MX findings depend on the mode).
    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }
}

/// A catalogue entry: the fixed parts of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Stable id.
    pub id: &'static str,
    /// Default severity (some MX findings are errors under `enforce` only).
    pub severity: Severity,
    /// Area.
    pub area: Area,
    /// Title.
    pub title: &'static str,
    /// Fix.
    pub fix: &'static str,
}

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $name:ident = ($id:literal, $sev:ident, $area:ident, $title:literal, $fix:literal); )*) => {
        $( $(#[$doc])* pub const $name: Entry = Entry {
            id: $id, severity: Severity::$sev, area: Area::$area, title: $title, fix: $fix,
        }; )*
        /// Every fixed entry of the catalogue (the prefixed parser diagnostics
        /// `record-<code>`, `policy-<code>` and `tlsrpt-<code>` come on top).
        pub const CATALOGUE: &[Entry] = &[$($name),*];
    };
}

/// The fixed catalogue entries.
pub mod ids {
    use super::{Area, Entry, Severity};

    catalogue! {
        /// No `_mta-sts` TXT record beginning with `v=STSv1;` (RFC 8461 §3.1).
        RECORD_MISSING = ("record-missing", Error, Record,
            "no MTA-STS TXT record",
            "Publish one TXT record `v=STSv1; id=<1-32 letters or digits>;` at _mta-sts.<domain>.");
        /// The `_mta-sts` lookup failed (SERVFAIL, timeout): not the same as no record.
        RECORD_DNS_FAILURE = ("record-dns-failure", Error, Record,
            "the _mta-sts TXT lookup failed",
            "Make the domain's name servers answer for _mta-sts.<domain> (SERVFAIL or timeouts make senders skip MTA-STS).");
        /// Several `v=STSv1` records: senders then use none (RFC 8461 §3.1).
        RECORD_MULTIPLE = ("record-multiple", Error, Record,
            "several MTA-STS TXT records",
            "Delete all but one `v=STSv1` TXT record at _mta-sts.<domain>: with several, senders ignore them all.");
        /// Other TXT records at `_mta-sts` (harmless, ignored by senders).
        RECORD_UNRELATED_TXT = ("record-unrelated-txt", Info, Record,
            "other TXT records at _mta-sts",
            "Senders ignore TXT records there that do not begin with `v=STSv1;`; remove them if they are leftovers.");
        /// A `v=STSv1` record at the domain itself instead of `_mta-sts.<domain>`.
        RECORD_AT_APEX = ("record-at-apex", Warning, Record,
            "an MTA-STS record is published at the domain itself",
            "Move the `v=STSv1` TXT record to _mta-sts.<domain>; senders never look at the domain itself.");
        /// `_mta-sts` is a CNAME (allowed; RFC 8461 §3.1, §8.2).
        RECORD_CNAME = ("record-cname", Info, Record,
            "_mta-sts is a CNAME",
            "");

        /// `mta-sts serve --check`: the published TXT id is not the id of the policy this
        /// host serves, so senders with a cached policy never fetch the new one (RFC 8461 §3.1).
        SERVE_ID_NOT_PUBLISHED = ("serve-id-not-published", Error, Record,
            "the published TXT id is not the id of the served policy",
            "Publish the record printed by `mta-sts serve --print-records` (after the new policy is served, RFC 8461 §8.1).");
        /// `mta-sts serve --check`: a published `https:` `rua` (RFC 8460 §3) names this policy
        /// host with a path where it takes no reports (RFC 8460 §5.4): reporting MTAs get 404
        /// and the reports are lost. `serve --check` gives a fix naming its configuration.
        SERVE_RUA_NOT_INTAKE = ("serve-rua-not-intake", Error, Tlsrpt,
            "TLS-RPT reports sent to this host are lost",
            "Publish the rua printed by `mta-sts serve --print-records`, or set intake_path in [tlsrpt] of the serve configuration to the published path.");
        /// `mta-sts serve --check`: senders fetch a different policy than the one configured
        /// here (DNS for `mta-sts.<domain>` points elsewhere, or a proxy serves a stale copy).
        SERVE_POLICY_DIFFERS = ("serve-policy-differs", Error, Policy,
            "senders fetch a different policy than the one served here",
            "Point mta-sts.<domain> at this policy host (A/AAAA or CNAME) or update the server that answers instead.");

        /// `mta-sts.<domain>` has no A/AAAA record.
        POLICY_HOST_DNS_MISSING = ("policy-host-dns-missing", Error, PolicyHost,
            "the policy host has no address",
            "Publish A and/or AAAA records for mta-sts.<domain> pointing at the web server serving the policy.");
        /// The A/AAAA lookup of the policy host failed.
        POLICY_HOST_DNS_FAILURE = ("policy-host-dns-failure", Error, PolicyHost,
            "the policy host's address lookup failed",
            "Make the name servers answer A/AAAA queries for mta-sts.<domain>.");
        /// TCP port 443 unreachable.
        POLICY_HOST_CONNECT_FAILED = ("policy-host-connect-failed", Error, PolicyHost,
            "cannot connect to the policy host on port 443",
            "Make mta-sts.<domain> accept HTTPS connections on port 443 (firewall, listener).");
        /// No TLS 1.2 or later (RFC 8461 §3.3).
        POLICY_HOST_TLS_VERSION = ("policy-host-tls-version", Error, PolicyHost,
            "the policy host does not offer TLS 1.2 or later",
            "Enable TLS 1.2 and 1.3 on the policy host; senders refuse older versions.");
        /// Another TLS handshake failure.
        POLICY_HOST_TLS_FAILED = ("policy-host-tls-failed", Error, PolicyHost,
            "the TLS handshake with the policy host failed",
            "Check the policy host's TLS configuration (certificate for the SNI name, cipher suites).");
        /// The certificate does not chain to a trusted root (RFC 8461 §3.3).
        POLICY_HOST_CERT_UNTRUSTED = ("policy-host-cert-untrusted", Error, PolicyHost,
            "the policy host's certificate is not trusted",
            "Use a certificate from a public CA and serve the full chain (leaf and intermediates).");
        /// No SAN matches `mta-sts.<domain>` (RFC 8461 §3.3, RFC 6125).
        POLICY_HOST_CERT_NAME_MISMATCH = ("policy-host-cert-name-mismatch", Error, PolicyHost,
            "the policy host's certificate is not valid for mta-sts.<domain>",
            "Include mta-sts.<domain> (or *.<domain>) in the certificate's subject alternative names.");
        /// Expired or not yet valid.
        POLICY_HOST_CERT_EXPIRED = ("policy-host-cert-expired", Error, PolicyHost,
            "the policy host's certificate is expired or not yet valid",
            "Renew the certificate (and automate renewal).");
        /// Expires within the warning window.
        POLICY_HOST_CERT_EXPIRING = ("policy-host-cert-expiring", Warning, PolicyHost,
            "the policy host's certificate expires soon",
            "Renew the certificate now; check that automatic renewal works.");
        /// Another certificate problem.
        POLICY_HOST_CERT_INVALID = ("policy-host-cert-invalid", Error, PolicyHost,
            "the policy host's certificate is not acceptable",
            "Replace it with a valid WebPKI certificate for mta-sts.<domain>.");
        /// A 3xx answer: senders never follow redirects (RFC 8461 §3.3).
        POLICY_HOST_REDIRECT = ("policy-host-redirect", Error, PolicyHost,
            "the policy URL redirects",
            "Serve the policy directly at https://mta-sts.<domain>/.well-known/mta-sts.txt with status 200; senders do not follow redirects.");
        /// A status other than 200 (RFC 8461 §3.3).
        POLICY_HOST_HTTP_STATUS = ("policy-host-http-status", Error, PolicyHost,
            "the policy URL does not answer 200",
            "Serve the policy at /.well-known/mta-sts.txt with status 200.");
        /// Not `text/plain` (RFC 8461 §3.2).
        POLICY_HOST_CONTENT_TYPE = ("policy-host-content-type", Error, PolicyHost,
            "the policy is not served as text/plain",
            "Serve the policy with `Content-Type: text/plain`; many senders reject other media types.");
        /// Larger than 64 KiB (RFC 8461 §3.3).
        POLICY_HOST_TOO_LARGE = ("policy-host-too-large", Error, PolicyHost,
            "the policy body is larger than 64 KiB",
            "Serve only the policy file: a few short lines.");
        /// A broken HTTP exchange.
        POLICY_HOST_HTTP_ERROR = ("policy-host-http-error", Error, PolicyHost,
            "the policy host sent a broken HTTP response",
            "Check the web server (it closed the connection or sent malformed HTTP).");
        /// No complete answer within the timeout.
        POLICY_HOST_TIMEOUT = ("policy-host-timeout", Error, PolicyHost,
            "the policy host did not answer in time",
            "Make the policy host answer within a few seconds (RFC 8461 §3.3 suggests senders wait at most one minute).");
        /// Slow but complete.
        POLICY_HOST_SLOW = ("policy-host-slow", Warning, PolicyHost,
            "the policy host is slow",
            "Serve the policy faster: senders with short timeouts treat a slow host as no policy.");

        /// Valid for lenient senders, rejected by strict ones (mox, postfix-tlspol).
        POLICY_NOT_STRICT = ("policy-not-strict", Warning, Policy,
            "strict senders reject this policy",
            "Fix every deviation from the RFC 8461 §3.2 grammar listed here; mox and postfix-tlspol reject the whole policy over any of them.");
        /// `mode: testing` (RFC 8461 §5).
        POLICY_MODE_TESTING = ("policy-mode-testing", Warning, Policy,
            "the policy is in testing mode",
            "Once TLS-RPT reports show no failures, switch to `mode: enforce`; testing protects no mail.");
        /// `mode: none` (RFC 8461 §5).
        POLICY_MODE_NONE = ("policy-mode-none", Info, Policy,
            "the policy is in mode none",
            "Mode none withdraws MTA-STS; publish `testing` or `enforce` to protect mail.");
        /// `max_age` below one day.
        POLICY_MAX_AGE_SHORT = ("policy-max-age-short", Warning, Policy,
            "max_age is shorter than a day",
            "Use a max_age of weeks (e.g. 1209600 or 31557600): a short max_age leaves senders unprotected at every refresh (RFC 8461 §10.2).");
        /// `max_age` below one week.
        POLICY_MAX_AGE_BELOW_WEEK = ("policy-max-age-below-week", Info, Policy,
            "max_age is shorter than a week",
            "RFC 8461 §3.2 expects weeks or more; raise max_age once the policy is stable.");
        /// `*.<domain>` pattern (RFC 8461 §10.4).
        POLICY_BROAD_WILDCARD = ("policy-broad-wildcard", Info, Policy,
            "the policy allows any host under the domain",
            "List the MX hosts, or a narrower wildcard: any host of the domain with a valid certificate can receive mail otherwise (RFC 8461 §10.4).");
        /// A pattern no MX host uses.
        POLICY_MX_UNUSED = ("policy-mx-unused", Info, Policy,
            "an mx pattern matches no MX host",
            "Remove the pattern if that host no longer receives mail (keep it while old MX records may still be cached).");

        /// `0 .` null MX (RFC 7505).
        MX_NULL = ("mx-null", Info, Mx,
            "the domain accepts no mail (null MX)",
            "");
        /// No MX record: the domain itself is the MX (RFC 5321 §5.1).
        MX_IMPLICIT = ("mx-implicit", Info, Mx,
            "no MX record: mail goes to the domain itself (implicit MX)",
            "Publish an MX record to choose the mail host explicitly.");
        /// No MX and no address.
        MX_NONE = ("mx-none", Error, Mx,
            "no MX record and no address: the domain cannot receive mail",
            "Publish MX records for the domain.");
        /// MX lookup failed.
        MX_DNS_FAILURE = ("mx-dns-failure", Error, Mx,
            "the MX lookup failed",
            "Make the domain's name servers answer MX queries.");
        /// An MX host matching no pattern (RFC 8461 §4.1).
        MX_NOT_IN_POLICY = ("mx-not-in-policy", Error, Mx,
            "an MX host is not covered by the policy",
            "Add an `mx:` line for this host to the policy (and change the TXT id), or remove the MX record.");
        /// An MX host without A/AAAA.
        MX_NO_ADDRESS = ("mx-no-address", Error, Mx,
            "an MX host has no address",
            "Publish A/AAAA records for the MX host or remove its MX record.");
        /// TCP port 25 unreachable (may be the checker's network).
        MX_CONNECT_FAILED = ("mx-connect-failed", Warning, Mx,
            "cannot connect to an MX host on port 25",
            "Make the MX host accept connections on port 25 (if this network blocks outgoing port 25, check from elsewhere).");
        /// SMTP dialogue problem.
        MX_SMTP_ERROR = ("mx-smtp-error", Warning, Mx,
            "an MX host's SMTP dialogue failed",
            "Check the SMTP server: it must greet with 220 and answer EHLO with 250.");
        /// No complete SMTP/TLS dialogue in time.
        MX_TIMEOUT = ("mx-timeout", Warning, Mx,
            "an MX host did not answer in time",
            "Make the SMTP server answer promptly.");
        /// STARTTLS not offered (RFC 3207, RFC 8461 §4.2).
        MX_STARTTLS_MISSING = ("mx-starttls-missing", Error, Mx,
            "an MX host does not offer STARTTLS",
            "Enable STARTTLS on the SMTP server with a certificate for the MX host name.");
        /// STARTTLS offered but refused or the handshake failed.
        MX_STARTTLS_FAILED = ("mx-starttls-failed", Error, Mx,
            "STARTTLS with an MX host failed",
            "Fix the SMTP server's TLS setup: STARTTLS must answer 220 and the handshake must complete.");
        /// TLS below 1.2 (RFC 8461 §4.2 relies on RFC 7525 practice).
        MX_TLS_VERSION = ("mx-tls-version", Error, Mx,
            "an MX host does not offer TLS 1.2 or later",
            "Enable TLS 1.2 and 1.3 on the SMTP server.");
        /// Untrusted chain (RFC 8461 §4.2).
        MX_CERT_UNTRUSTED = ("mx-cert-untrusted", Error, Mx,
            "an MX host's certificate is not trusted",
            "Use a certificate from a public CA and serve the full chain.");
        /// No SAN for the MX host name (RFC 8461 §4.2, RFC 6125 §6.4).
        MX_CERT_NAME_MISMATCH = ("mx-cert-name-mismatch", Error, Mx,
            "an MX host's certificate is not valid for its name",
            "Include the MX host name (as in the MX record) in the certificate's subject alternative names.");
        /// Expired or not yet valid.
        MX_CERT_EXPIRED = ("mx-cert-expired", Error, Mx,
            "an MX host's certificate is expired or not yet valid",
            "Renew the certificate (and automate renewal).");
        /// Expires soon.
        MX_CERT_EXPIRING = ("mx-cert-expiring", Warning, Mx,
            "an MX host's certificate expires soon",
            "Renew the certificate now; check that automatic renewal works.");
        /// Another certificate problem.
        MX_CERT_INVALID = ("mx-cert-invalid", Error, Mx,
            "an MX host's certificate is not acceptable",
            "Replace it with a valid WebPKI certificate for the MX host name.");

        /// No `_smtp._tls` record: a warning when the domain publishes MTA-STS (without
        /// reports its owner never learns of failed deliveries, and `testing` mode exists
        /// only to produce them), information otherwise (no MTA-STS, or `mode: none`).
        TLSRPT_MISSING = ("tlsrpt-missing", Warning, Tlsrpt,
            "no TLS-RPT record",
            "Publish `v=TLSRPTv1; rua=mailto:tlsrpt@<domain>` at _smtp._tls.<domain>: without TLS-RPT reports you never learn that senders failed to deliver (RFC 8460), and `mode: testing` only produces those reports.");
        /// Several `v=TLSRPTv1` records (RFC 8460 §3).
        TLSRPT_MULTIPLE = ("tlsrpt-multiple", Error, Tlsrpt,
            "several TLS-RPT records",
            "Publish exactly one `v=TLSRPTv1` record listing every URI in its rua= field.");
        /// Lookup failed.
        TLSRPT_DNS_FAILURE = ("tlsrpt-dns-failure", Warning, Tlsrpt,
            "the _smtp._tls lookup failed",
            "Make the name servers answer TXT queries for _smtp._tls.<domain>.");
        /// A `rua` destination that cannot work.
        TLSRPT_RUA_UNREACHABLE = ("tlsrpt-rua-unreachable", Warning, Tlsrpt,
            "a TLS-RPT destination cannot receive reports",
            "Give the mailto: domain an MX (or address) record; make the https: host resolve and accept HTTPS connections (TLS 1.2 or later) on the URI's port.");
        /// An `https:` `rua` host whose certificate fails WebPKI validation. RFC 8460 §3 lets
        /// reporting MTAs ignore that, so only some reports are lost.
        TLSRPT_RUA_CERT_INVALID = ("tlsrpt-rua-cert-invalid", Warning, Tlsrpt,
            "a TLS-RPT https: destination has an invalid certificate",
            "Serve a certificate from a public CA valid for the URI's host: RFC 8460 §3 lets senders ignore certificate errors, but many validate and then drop the report.");
        /// An `https:` `rua` path that does not take a report POST (RFC 8460 §5.4): an empty
        /// `POST` of `application/tlsrpt+gzip` got 404/410, 405, 401/403, a redirect or 5xx.
        TLSRPT_RUA_REJECTS_POST = ("tlsrpt-rua-rejects-post", Warning, Tlsrpt,
            "a TLS-RPT https: destination does not take report POSTs",
            "Make the rua URI accept `POST` of application/tlsrpt+gzip and application/tlsrpt+json reports without credentials or redirects, answering 200 or 201 (RFC 8460 §5.4); check the path in the _smtp._tls record.");

        /// TLSA records at `_25._tcp.<mx>` (RFC 8461 §2: DANE takes precedence).
        DANE_TLSA_PRESENT = ("dane-tlsa-present", Info, Dane,
            "an MX host publishes DANE TLSA records",
            "DANE-capable senders validate with TLSA instead of MTA-STS (RFC 8461 §2): keep both consistent.");

        /// An enforcing sender has no MX to deliver to (RFC 8461 §5).
        DELIVERY_DEFERRED = ("delivery-deferred", Error, Delivery,
            "an enforcing sender would defer all mail",
            "Fix the MX findings above: under mode enforce no MX host passes, so senders queue mail until the policy expires or is fixed.");
        /// `mode: testing`, and under `mode: enforce` no MX host would pass: switching now
        /// would defer all mail (RFC 8461 §5). The detail names each host and why.
        ENFORCE_WOULD_DEFER = ("enforce-would-defer", Warning, Delivery,
            "switching to enforce now would defer all mail",
            "Keep `mode: testing` until the MX findings above are fixed: under mode enforce senders skip every MX host listed here and queue mail until the policy expires or is fixed.");
        /// `mode: testing`, and under `mode: enforce` some MX hosts would fail validation:
        /// mail still goes to the others, which then carry it all (RFC 8461 §5).
        ENFORCE_WOULD_DEFER_SOME = ("enforce-would-defer-some", Warning, Delivery,
            "switching to enforce now would skip some MX hosts",
            "Fix the MX hosts listed here before switching to `mode: enforce`: enforcing senders skip them, so mail waits whenever the remaining hosts are down.");
        /// The input line is not a domain name (bulk mode).
        DOMAIN_INVALID = ("domain-invalid", Error, Delivery,
            "not a domain name",
            "Give one domain name per line, such as example.com.");
        /// The per-domain time budget ran out.
        CHECK_TIMEOUT = ("check-timeout", Error, Delivery,
            "the check did not finish in time",
            "Run the check again with a longer --domain-timeout; some server did not answer.");
    }
}

/// Whether any finding is an error / warning: `fail`, `warn` or `pass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No error and no warning (info findings allowed).
    Pass,
    /// Warnings but no error.
    Warn,
    /// At least one error.
    Fail,
}

impl Verdict {
    /// The verdict of a list of findings: fail if any error, warn if any warning, else pass.
    pub fn of(findings: &[Finding]) -> Verdict {
        match findings.iter().map(|f| f.severity).max() {
            Some(Severity::Error) => Verdict::Fail,
            Some(Severity::Warning) => Verdict::Warn,
            _ => Verdict::Pass,
        }
    }

    /// `"pass"`, `"warn"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for e in ids::CATALOGUE {
            assert!(seen.insert(e.id), "duplicate {}", e.id);
            assert!(
                e.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                e.id
            );
        }
    }

    #[test]
    fn serve_check_findings_are_catalogued() {
        for id in [
            "serve-id-not-published",
            "serve-policy-differs",
            "serve-rua-not-intake",
        ] {
            assert!(ids::CATALOGUE.iter().any(|e| e.id == id), "{id}");
        }
        let e = ids::SERVE_RUA_NOT_INTAKE;
        assert_eq!((e.severity, e.area), (Severity::Error, Area::Tlsrpt));
    }

    #[test]
    fn verdict_of_findings() {
        assert_eq!(Verdict::of(&[]), Verdict::Pass);
        let info = Finding::new(&ids::MX_NULL, "");
        let warn = Finding::new(&ids::POLICY_MODE_TESTING, "");
        let err = Finding::new(&ids::RECORD_MISSING, "");
        assert_eq!(Verdict::of(std::slice::from_ref(&info)), Verdict::Pass);
        assert_eq!(Verdict::of(&[info.clone(), warn.clone()]), Verdict::Warn);
        assert_eq!(Verdict::of(&[info, warn, err]), Verdict::Fail);
    }
}
