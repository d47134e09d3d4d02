//! The aggregate report (RFC 8460 §4): data model, tolerant reading, strict writing.
//!
//! **Reading** ([`Report::from_json`]) accepts what real reporters send (corpus in
//! `testdata/corpus/tlsrpt/`, peer vectors S2, S14.3, S15):
//!
//! - `mx-host` as an array of strings (the §4.4 schema) *or* a single string (Appendix B as
//!   printed, RFC 8460 erratum 6241); `null` is the same as absent;
//! - date-times without a zone designator (Microsoft): taken as UTC ([`UtcDateTime`]);
//! - missing optional members; missing counts are 0; missing `policy-domain`,
//!   `organization-name` and `contact-info` are empty strings;
//! - result types and policy types outside the registry are kept verbatim
//!   ([`ResultType::Other`], [`PolicyType::Other`]) and written back as the original string;
//! - unknown members are ignored (RFC 8460 §4.4 is an open schema; I-JSON duplicate member
//!   names are still refused, RFC 7493 §2.3).
//!
//! Required on reading: `report-id` and `date-range` (a report cannot be deduplicated or placed
//! in time without them) and `policies`, which MUST be an array (RFC 8460 §4, RPT-4-b).
//!
//! **Writing** ([`Report::to_json`], [`Report::to_json_pretty`]) is strict: exact member names
//! in schema order, date-times in `YYYY-MM-DDTHH:MM:SSZ`, no `null`s, and optional members
//! (`policy-string`, `mx-host`, the optional failure-detail members) omitted when absent or
//! empty. `policy-domain` is always written, also for `no-policy-found` (project notes §4
//! item 17, sys4/tlsrpt-reporter#51). `failure-details` is always written, as `[]` when there
//! were no failures: the §4.4 schema lists it without marking it optional, and the project's
//! reading (notes §2.8) is "recommended always present".
//!
//! Reports we generate cover one UTC day ([`DateRange::utc_day`], RFC 8460 §4.1): start
//! `00:00:00Z`, end the **next day's `00:00:00Z`**, a half-open 24-hour interval matching the
//! prose "00:00-24:00 UTC" (Appendix B's `23:59:59Z` loses the last second). Receivers accept
//! both, and so does this reader.

use std::fmt;

use crate::report_datetime::{DateTimeError, SECONDS_PER_DAY, UtcDateTime};

/// Largest count a report may carry: 2^53 − 1, the largest integer I-JSON numbers carry exactly
/// (RFC 7493 §2.2).
pub const MAX_COUNT: u64 = (1 << 53) - 1;

/// An RFC 8460 §4 aggregate TLS report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub struct Report {
    /// `organization-name`: who produced the report.
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::string"))]
    pub organization_name: String,
    /// `date-range`: the period the report covers.
    pub date_range: DateRange,
    /// `contact-info`: an RFC 5322 addr-spec (in practice sometimes a URL).
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::string"))]
    pub contact_info: String,
    /// `report-id`: unique per reporting organisation.
    pub report_id: String,
    /// `policies`: one entry per policy applied (RFC 8460 §4: always an array).
    pub policies: Vec<PolicyResult>,
}

/// `date-range` (RFC 8460 §4.1, §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub struct DateRange {
    /// `start-datetime`.
    #[cfg_attr(feature = "serde", serde(rename = "start-datetime"))]
    pub start: UtcDateTime,
    /// `end-datetime`.
    #[cfg_attr(feature = "serde", serde(rename = "end-datetime"))]
    pub end: UtcDateTime,
}

impl DateRange {
    /// The full UTC day containing `instant`: `00:00:00Z` to the next day's `00:00:00Z`
    /// (RFC 8460 §4.1 "00:00-24:00 UTC"; see the module documentation for the choice).
    ///
    /// ```
    /// use tlsrpt::{DateRange, UtcDateTime};
    /// let day = DateRange::utc_day(UtcDateTime::parse("2024-05-01T13:14:15Z")?);
    /// assert_eq!(day.start.to_string(), "2024-05-01T00:00:00Z");
    /// assert_eq!(day.end.to_string(), "2024-05-02T00:00:00Z");
    /// # Ok::<(), tlsrpt::DateTimeError>(())
    /// ```
    pub fn utc_day(instant: UtcDateTime) -> Self {
        let start = instant.day_start();
        DateRange {
            start,
            end: start.plus_seconds(SECONDS_PER_DAY),
        }
    }

    /// Whether this is exactly one UTC day in either accepted form (end `00:00:00Z` of the
    /// next day, or `23:59:59Z` of the same day).
    pub fn is_utc_day(&self) -> bool {
        self.start.day_start() == self.start
            && (self.end == self.start.plus_seconds(SECONDS_PER_DAY)
                || self.end == self.start.plus_seconds(SECONDS_PER_DAY - 1))
    }
}

/// One element of `policies`: the policy applied, its session counts and failures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub struct PolicyResult {
    /// `policy`.
    pub policy: PolicyDescriptor,
    /// `summary`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub summary: SessionSummary,
    /// `failure-details` (missing or `null` on input = none).
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::vec"))]
    pub failure_details: Vec<FailureDetail>,
}

/// `policy`: which policy was applied (RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub struct PolicyDescriptor {
    /// `policy-type`.
    pub policy_type: PolicyType,
    /// `policy-string`: the policy, one element per line (MTA-STS) or per TLSA RR.
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            deserialize_with = "de::vec",
            skip_serializing_if = "Vec::is_empty"
        )
    )]
    pub policy_string: Vec<String>,
    /// `policy-domain` (A-labels). Empty when a reporter left it out.
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::string"))]
    pub policy_domain: String,
    /// `mx-host`: the MX patterns of an `sts` policy.
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            deserialize_with = "de::string_or_vec",
            skip_serializing_if = "Vec::is_empty"
        )
    )]
    pub mx_host: Vec<String>,
}

/// `summary`: session counts (RFC 8460 §4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub struct SessionSummary {
    /// `total-successful-session-count` (missing = 0).
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::count"))]
    pub total_successful_session_count: u64,
    /// `total-failure-session-count` (missing = 0).
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::count"))]
    pub total_failure_session_count: u64,
}

/// One element of `failure-details` (RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub struct FailureDetail {
    /// `result-type` (RFC 8460 §4.3).
    pub result_type: ResultType,
    /// `sending-mta-ip`: kept as text, as reporters send it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub sending_mta_ip: Option<String>,
    /// `receiving-mx-hostname`.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo` (optional).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub receiving_mx_helo: Option<String>,
    /// `receiving-ip`.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub receiving_ip: Option<String>,
    /// `failed-session-count` (missing = 0).
    #[cfg_attr(feature = "serde", serde(default, deserialize_with = "de::count"))]
    pub failed_session_count: u64,
    /// `additional-information`: a URI (optional).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub additional_information: Option<String>,
    /// `failure-reason-code` (optional; SHOULD for `certificate-not-trusted` and
    /// `validation-failure`, RFC 8460 §4.3.1, §4.3.3).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub failure_reason_code: Option<String>,
}

impl FailureDetail {
    /// A detail with only a result type and a count.
    pub fn new(result_type: ResultType, failed_session_count: u64) -> Self {
        FailureDetail {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            failed_session_count,
            additional_information: None,
            failure_reason_code: None,
        }
    }
}

/// Defines a string enum with registered values and an `Other(String)` for the rest.
macro_rules! open_enum {
    (
        $(#[$meta:meta])* $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value outside the registry, kept verbatim and written back unchanged.
            Other(String),
        }

        impl $name {
            /// Every registered value.
            pub const REGISTERED: &'static [$name] = &[$($name::$variant),*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Other(text) => text,
                }
            }

            /// Maps a wire string; exact (case-sensitive) match, else [`Self::Other`].
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $( $text => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }

            /// Whether this is a registered value (not [`Self::Other`]).
            pub fn is_registered(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::from_wire(&text))
            }
        }
    };
}

open_enum! {
    /// `policy-type` (RFC 8460 §4.4): `tlsa`, `sts` or `no-policy-found`.
    PolicyType {
        /// `tlsa`: a DANE policy.
        Tlsa = "tlsa",
        /// `sts`: an MTA-STS policy.
        Sts = "sts",
        /// `no-policy-found`.
        NoPolicyFound = "no-policy-found",
    }
}

open_enum! {
    /// `result-type` (RFC 8460 §4.3, IANA "STARTTLS Validation Result Types").
    ResultType {
        /// `starttls-not-supported` (§4.3.1).
        StarttlsNotSupported = "starttls-not-supported",
        /// `certificate-host-mismatch` (§4.3.1).
        CertificateHostMismatch = "certificate-host-mismatch",
        /// `certificate-expired` (§4.3.1).
        CertificateExpired = "certificate-expired",
        /// `certificate-not-trusted` (§4.3.1).
        CertificateNotTrusted = "certificate-not-trusted",
        /// `validation-failure` (§4.3.1, §4.3.3).
        ValidationFailure = "validation-failure",
        /// `tlsa-invalid` (§4.3.2.1).
        TlsaInvalid = "tlsa-invalid",
        /// `dnssec-invalid` (§4.3.2.1).
        DnssecInvalid = "dnssec-invalid",
        /// `dane-required` (§4.3.2.1).
        DaneRequired = "dane-required",
        /// `sts-policy-fetch-error` (§4.3.2.2).
        StsPolicyFetchError = "sts-policy-fetch-error",
        /// `sts-policy-invalid` (§4.3.2.2).
        StsPolicyInvalid = "sts-policy-invalid",
        /// `sts-webpki-invalid` (§4.3.2.2).
        StsWebpkiInvalid = "sts-webpki-invalid",
    }
}

impl ResultType {
    /// Whether this result describes an SMTP session with an MX (a negotiation failure,
    /// RFC 8460 §4.3.1), for which `sending-mta-ip` and `receiving-mx-hostname` are known.
    pub fn is_negotiation_failure(&self) -> bool {
        matches!(
            self,
            ResultType::StarttlsNotSupported
                | ResultType::CertificateHostMismatch
                | ResultType::CertificateExpired
                | ResultType::CertificateNotTrusted
                | ResultType::ValidationFailure
        )
    }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not UTF-8, not JSON, or JSON that does not have the report's shape.
    #[error("not a TLS-RPT report (RFC 8460 §4.4): {0}")]
    Json(String),
    /// A count above [`MAX_COUNT`] (not exactly representable in I-JSON, RFC 7493 §2.2).
    #[error("a session count is larger than 2^53-1 (RFC 7493 §2.2)")]
    CountTooLarge,
    /// `end-datetime` before `start-datetime`.
    #[error("date-range ends ({end}) before it starts ({start})")]
    DateRangeReversed {
        /// `start-datetime`.
        start: UtcDateTime,
        /// `end-datetime`.
        end: UtcDateTime,
    },
    /// `report-id` is empty.
    #[error("report-id is empty")]
    EmptyReportId,
    /// A date-time could not be parsed.
    #[error(transparent)]
    DateTime(#[from] DateTimeError),
}

impl Report {
    /// A new one-day report with no policies yet (see [`DateRange::utc_day`]).
    pub fn daily(
        organization_name: impl Into<String>,
        contact_info: impl Into<String>,
        report_id: impl Into<String>,
        day: UtcDateTime,
    ) -> Self {
        Report {
            organization_name: organization_name.into(),
            date_range: DateRange::utc_day(day),
            contact_info: contact_info.into(),
            report_id: report_id.into(),
            policies: Vec::new(),
        }
    }

    /// Total successful sessions over all policies.
    pub fn total_successful(&self) -> u64 {
        self.policies
            .iter()
            .map(|p| p.summary.total_successful_session_count)
            .fold(0, u64::saturating_add)
    }

    /// Total failed sessions over all policies.
    pub fn total_failed(&self) -> u64 {
        self.policies
            .iter()
            .map(|p| p.summary.total_failure_session_count)
            .fold(0, u64::saturating_add)
    }

    /// Checks what the reader cannot express in types: counts within [`MAX_COUNT`], a
    /// non-empty `report-id`, a date range that does not run backwards.
    pub fn check(&self) -> Result<(), ReportError> {
        if self.report_id.is_empty() {
            return Err(ReportError::EmptyReportId);
        }
        if self.date_range.end < self.date_range.start {
            return Err(ReportError::DateRangeReversed {
                start: self.date_range.start,
                end: self.date_range.end,
            });
        }
        let too_large = self.policies.iter().any(|p| {
            p.summary.total_successful_session_count > MAX_COUNT
                || p.summary.total_failure_session_count > MAX_COUNT
                || p.failure_details
                    .iter()
                    .any(|d| d.failed_session_count > MAX_COUNT)
        });
        if too_large {
            return Err(ReportError::CountTooLarge);
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl Report {
    /// Reads a report tolerantly (see the module documentation) and [`check`](Self::check)s it.
    ///
    /// ```
    /// let json = br#"{"organization-name":"Microsoft Corporation",
    ///   "date-range":{"start-datetime":"2024-03-26T00:00:00","end-datetime":"2024-03-26T23:59:59"},
    ///   "contact-info":"tlsrpt-noreply@microsoft.com","report-id":"1+example.com",
    ///   "policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com",
    ///     "mx-host":"mx.example.com"},
    ///     "summary":{"total-successful-session-count":7},
    ///     "failure-details":[{"result-type":"brand-new-type","failed-session-count":1}]}]}"#;
    /// let report = tlsrpt::Report::from_json(json)?;
    /// assert_eq!(report.date_range.start.to_string(), "2024-03-26T00:00:00Z");
    /// assert_eq!(report.policies[0].policy.mx_host, ["mx.example.com"]);
    /// assert_eq!(report.policies[0].summary.total_failure_session_count, 0);
    /// assert!(report.to_json().contains(r#""result-type":"brand-new-type""#));
    /// # Ok::<(), tlsrpt::ReportError>(())
    /// ```
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReportError> {
        // Tolerate a UTF-8 byte order mark, which some writers put in front of JSON.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let report: Report =
            serde_json::from_slice(bytes).map_err(|e| ReportError::Json(e.to_string()))?;
        report.check()?;
        Ok(report)
    }

    /// The strict compact JSON form (see the module documentation).
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The strict JSON form, indented for people.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Tolerant deserialisers for the shapes reporters actually send.
#[cfg(feature = "serde")]
mod de {
    use serde::{Deserialize, Deserializer, de::Error};

    /// A string; `null` is the empty string.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }

    /// An array; `null` is the empty array.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }

    /// `mx-host`: an array of strings, or one string (RFC 8460 Appendix B, erratum 6241).
    pub fn string_or_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Option::<OneOrMany>::deserialize(d)? {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        })
    }

    /// A session count: a non-negative integer; `null` is 0, an integral float such as `5.0`
    /// is accepted (JSON does not distinguish them, RFC 8259 §6).
    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(0),
            Some(n) => {
                if let Some(v) = n.as_u64() {
                    return Ok(v);
                }
                match n.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= super::MAX_COUNT as f64 => {
                        Ok(f as u64)
                    }
                    _ => Err(D::Error::custom(format!(
                        "a session count must be a non-negative integer, not {n}"
                    ))),
                }
            }
        }
    }
}
