//! Report file names (RFC 8460 §5.1, used by the e-mail transport of §5.3):
//!
//! ```abnf
//! filename        = sender "!" policy-domain "!" begin-timestamp
//!                   "!" end-timestamp [ "!" unique-id ] "." extension
//! unique-id       = 1*(ALPHA / DIGIT)
//! sender          = domain     ; RFC 5321, A-labels
//! policy-domain   = domain     ; RFC 5321, A-labels
//! begin-timestamp = 1*DIGIT    ; seconds since the Unix epoch
//! end-timestamp   = 1*DIGIT
//! extension       = "json" / "json.gz"
//! ```
//!
//! A received file name is only metadata: the report body is authoritative (RFC 8460 §5.6),
//! and a name is never used as a path (RFC 8460 §6.3). The parser refuses anything outside the
//! grammar, which excludes `/`, `\`, `..` path tricks and control characters.

use std::fmt;

/// A parsed or generated RFC 8460 §5.1 report file name.
///
/// ```
/// use tlsrpt::ReportFileName;
/// let name: ReportFileName =
///     "mail.sndr.example.com!example.net!1470013207!1470186007!001.json.gz".parse()?;
/// assert_eq!(name.sender, "mail.sndr.example.com");
/// assert_eq!(name.unique_id.as_deref(), Some("001"));
/// assert!(name.gzip);
/// assert_eq!(name.to_string(), "mail.sndr.example.com!example.net!1470013207!1470186007!001.json.gz");
/// # Ok::<(), tlsrpt::FileNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportFileName {
    /// The submitter's domain (the domain of `contact-info`).
    pub sender: String,
    /// The policy domain the report is about.
    pub policy_domain: String,
    /// Start of the report period, seconds since the Unix epoch.
    pub begin: u64,
    /// End of the report period, seconds since the Unix epoch.
    pub end: u64,
    /// Optional `unique-id` (ALPHA / DIGIT only).
    pub unique_id: Option<String>,
    /// `.json.gz` (gzip, RFC 8460 §5.2) rather than `.json`.
    pub gzip: bool,
}

/// Why a file name does not follow RFC 8460 §5.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// The name does not end in `.json` or `.json.gz`.
    #[error("a report file name ends in .json or .json.gz (RFC 8460 §5.1)")]
    Extension,
    /// Not 4 or 5 `!`-separated fields.
    #[error("a report file name has 4 or 5 fields separated by `!` (RFC 8460 §5.1)")]
    FieldCount,
    /// `sender` or `policy-domain` is not an LDH domain name.
    #[error("`{0}` is not a domain name in A-labels (RFC 8460 §5.1)")]
    Domain(String),
    /// A timestamp is not 1*DIGIT or does not fit 64 bits.
    #[error("`{0}` is not a timestamp in seconds (RFC 8460 §5.1)")]
    Timestamp(String),
    /// `unique-id` is not 1*(ALPHA / DIGIT).
    #[error("`{0}` is not a unique-id of letters and digits (RFC 8460 §5.1)")]
    UniqueId(String),
}

/// RFC 5321 `Domain`: dot-separated labels of letters, digits and inner hyphens.
fn is_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn timestamp(text: &str) -> Result<u64, FileNameError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FileNameError::Timestamp(text.to_owned()));
    }
    text.parse()
        .map_err(|_| FileNameError::Timestamp(text.to_owned()))
}

impl ReportFileName {
    /// Checks every field against the grammar; [`Display`](fmt::Display) of a checked name
    /// parses back to the same value.
    pub fn validate(&self) -> Result<(), FileNameError> {
        for domain in [&self.sender, &self.policy_domain] {
            if !is_domain(domain) {
                return Err(FileNameError::Domain(domain.clone()));
            }
        }
        if let Some(id) = &self.unique_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(FileNameError::UniqueId(id.clone()));
        }
        Ok(())
    }

    /// The name for a report: `sender` is the submitter's domain, the period and policy
    /// domain come from the report (its first policy's domain).
    pub fn for_report(
        report: &crate::Report,
        sender: impl Into<String>,
        unique_id: Option<String>,
        gzip: bool,
    ) -> Result<Self, FileNameError> {
        let name = ReportFileName {
            sender: sender.into(),
            policy_domain: report
                .policies
                .first()
                .map(|p| p.policy.policy_domain.clone())
                .unwrap_or_default(),
            begin: u64::try_from(report.date_range.start.unix_seconds())
                .map_err(|_| FileNameError::Timestamp(report.date_range.start.to_string()))?,
            end: u64::try_from(report.date_range.end.unix_seconds())
                .map_err(|_| FileNameError::Timestamp(report.date_range.end.to_string()))?,
            unique_id,
            gzip,
        };
        name.validate()?;
        Ok(name)
    }

    /// Parses a file name (only the final path component; no directories).
    pub fn parse(text: &str) -> Result<Self, FileNameError> {
        let (stem, gzip) = if let Some(stem) = text.strip_suffix(".json.gz") {
            (stem, true)
        } else if let Some(stem) = text.strip_suffix(".json") {
            (stem, false)
        } else {
            return Err(FileNameError::Extension);
        };
        let fields: Vec<&str> = stem.split('!').collect();
        let (sender, domain, begin, end, unique) = match fields.as_slice() {
            [s, d, b, e] => (*s, *d, *b, *e, None),
            [s, d, b, e, u] => (*s, *d, *b, *e, Some((*u).to_owned())),
            _ => return Err(FileNameError::FieldCount),
        };
        let name = ReportFileName {
            sender: sender.to_owned(),
            policy_domain: domain.to_owned(),
            begin: timestamp(begin)?,
            end: timestamp(end)?,
            unique_id: unique,
            gzip,
        };
        name.validate()?;
        Ok(name)
    }
}

impl std::str::FromStr for ReportFileName {
    type Err = FileNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReportFileName::parse(s)
    }
}

impl fmt::Display for ReportFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}!{}!{}!{}",
            self.sender, self.policy_domain, self.begin, self.end
        )?;
        if let Some(id) = &self.unique_id {
            write!(f, "!{id}")?;
        }
        f.write_str(if self.gzip { ".json.gz" } else { ".json" })
    }
}
