//! Turning received bytes into reports: JSON, gzip, zip and RFC 5322 messages.
//!
//! The content is untrusted (RFC 8460 §7): every decompression is capped
//! ([`Limits::max_report_bytes`], default 25 MiB, the cap a peer uses, vectors S2.2) by
//! counting the bytes actually produced, never by trusting a declared size, so a 1 GB gzip
//! bomb is refused after 25 MiB of output without allocating more. Zip entries whose declared
//! size is over the cap are refused before reading; embedded file names (gzip `FNAME`, zip
//! entry names, MIME `filename=`) are kept only as labels and never used as paths
//! (RFC 8460 §6.3).
//!
//! Format detection sniffs the bytes first (gzip magic `1f 8b`, RFC 8460 §6.5; zip `PK\3\4`;
//! JSON `{`) and falls back to an RFC 5322 message. The declared media type of an HTTPS POST
//! (`application/tlsrpt+gzip` / `+json`, RFC 8460 §5.4) is only logged: the bytes decide.
//!
//! In a message, TLS-RPT parts are found anywhere in the MIME tree (also in forwarded
//! `message/rfc822` parts): media types `application/tlsrpt+gzip`, `application/tlsrpt+json`
//! and `application/tlsrpt` (seen in the wild, vectors S2 rpt02.eml); generic types
//! (`application/gzip`, `application/json`, `application/zip`, `application/octet-stream`)
//! only when the attachment's name is an RFC 8460 §5.1 report file name. Unlike one peer
//! (vectors S15.4) a `multipart/related` wrapper is not refused: the report type of the part
//! is what identifies a report.
//!
//! DKIM (RFC 8460 §3: reports without a valid signature by the reporting domain "MUST be
//! ignored") is not checked by this parser: mail read from files goes through
//! [`crate::import::MailImporter`], which verifies the signature first
//! ([`is_message`] tells which inputs are mail). Bare JSON, gzip and zip files, and HTTPS
//! POSTs (RFC 8460 §5.4), are not mail and carry no signature.

use std::io::Read;

use mail_parser::{MessageParser, MimeHeaders};
use tlsrpt::{Report, ReportFileName};

/// Size limits for one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted (an uploaded file, one message), before decompression.
    pub max_input_bytes: usize,
    /// Largest decompressed report (JSON bytes) accepted.
    pub max_report_bytes: usize,
    /// Most reports taken from one input (parts of one message, entries of one zip).
    pub max_reports_per_input: usize,
}

impl Default for Limits {
    /// 64 MiB per input, 25 MiB per decompressed report, 100 reports per input.
    fn default() -> Self {
        Limits {
            max_input_bytes: 64 << 20,
            max_report_bytes: 25 << 20,
            max_reports_per_input: 100,
        }
    }
}

/// Why an input was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// The input is larger than [`Limits::max_input_bytes`].
    #[error("input is larger than the {limit}-byte limit")]
    InputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A report decompresses (or is declared to decompress) past the cap: a bomb, or a
    /// report larger than the limit.
    #[error("report is larger than the {limit}-byte limit once decompressed (decompression bomb?)")]
    ReportTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A gzip stream is corrupt or truncated; the decoder's error is the source.
    #[error("corrupt gzip data")]
    Gzip(#[source] std::io::Error),
    /// A part declared as gzip (RFC 8460 §5.3 `application/tlsrpt+gzip`) is not gzip.
    #[error(
        "corrupt gzip data: {origin} is declared as gzip but does not start with the gzip magic bytes 1f 8b"
    )]
    NotGzip {
        /// Where the part came from (e.g. `MIME part 2`).
        origin: String,
    },
    /// A zip archive is corrupt, unsupported, or declares impossible sizes, or an entry
    /// does not read (corrupt data, a checksum mismatch: [`zip::result::ZipError::Io`]); the
    /// zip reader's error is the source.
    #[error("corrupt or unsupported zip archive")]
    Zip(#[source] zip::result::ZipError),
    /// Neither JSON, gzip, zip nor a message with a TLS-RPT part.
    #[error(
        "no TLS-RPT report found: expected JSON, gzip, zip, or an e-mail with an application/tlsrpt+gzip or application/tlsrpt+json part"
    )]
    NoReport,
    /// More reports than [`Limits::max_reports_per_input`].
    #[error("more than {limit} reports in one input")]
    TooManyReports {
        /// The limit.
        limit: usize,
    },
    /// The decoded content is not a TLS-RPT report.
    #[error("{origin}: {source}")]
    Report {
        /// Where the bad report came from (e.g. `gzip`, `MIME part 2`).
        origin: String,
        /// What is wrong with it.
        source: tlsrpt::ReportError,
    },
}

/// A report read from an input, with the JSON it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReport {
    /// The report.
    pub report: Report,
    /// The JSON text as received (after decompression); UTF-8, since it parsed.
    pub raw_json: String,
    /// How it was found, e.g. `json`, `gzip`, `MIME part 3 (application/tlsrpt+gzip)
    /// "google.com!example.com!1!2!001.json.gz"`. A label only, never a path.
    pub origin: String,
    /// The DKIM result of the mail it came in (RFC 8460 §3), as
    /// [`crate::import::DkimStatus::label`] words it; `None` when it did not come by mail.
    pub dkim: Option<String>,
}

impl ParsedReport {
    /// Parses one JSON report.
    pub fn from_json(json: &[u8], origin: impl Into<String>) -> Result<Self, IntakeError> {
        let origin = origin.into();
        let report = Report::from_json(json).map_err(|source| IntakeError::Report {
            origin: origin.clone(),
            source,
        })?;
        // from_json succeeded, so the bytes are UTF-8 (after an optional BOM).
        let json = json.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(json);
        Ok(ParsedReport {
            report,
            raw_json: String::from_utf8_lossy(json).into_owned(),
            origin,
            dkim: None,
        })
    }
}

/// Reads at most `limit` bytes from `reader`; more is an error. Memory grows with the bytes
/// actually produced, never with a declared size (vectors S2.2 `read_capped`).
pub fn read_capped(reader: impl Read, limit: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other(TooLarge));
    }
    Ok(out)
}

#[derive(Debug)]
struct TooLarge;
impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too large")
    }
}
impl std::error::Error for TooLarge {}

fn is_too_large(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// Decompresses gzip (all members, RFC 1952 §2.2), capped.
pub fn gunzip_capped(bytes: &[u8], limit: usize) -> Result<Vec<u8>, IntakeError> {
    read_capped(flate2::read::MultiGzDecoder::new(bytes), limit).map_err(|e| {
        if is_too_large(&e) {
            IntakeError::ReportTooLarge { limit }
        } else {
            IntakeError::Gzip(e)
        }
    })
}

const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

fn looks_like_json(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Whether [`parse_input`] reads `bytes` as an RFC 5322 message (mail, which RFC 8460 §3
/// requires to be DKIM-signed) rather than as JSON, gzip or zip.
pub fn is_message(bytes: &[u8]) -> bool {
    !(bytes.starts_with(GZIP_MAGIC) || bytes.starts_with(ZIP_MAGIC) || looks_like_json(bytes))
}

/// Extracts and parses every report in one input.
///
/// `media_type` is the declared type (an HTTP `Content-Type`), used only for logging: the
/// bytes are sniffed. Errors refuse the whole input, so that a half-read message is never
/// half-stored.
///
/// ```
/// use mta_sts_report_store::intake::{Limits, parse_input};
/// let json = br#"{"organization-name":"Example","report-id":"1","date-range":
///   {"start-datetime":"2023-01-01T00:00:00Z","end-datetime":"2023-01-02T00:00:00Z"},"policies":[]}"#;
/// let reports = parse_input(json, Some("application/tlsrpt+json"), &Limits::default())?;
/// assert_eq!(reports[0].report.report_id, "1");
/// # Ok::<(), mta_sts_report_store::intake::IntakeError>(())
/// ```
pub fn parse_input(
    bytes: &[u8],
    media_type: Option<&str>,
    limits: &Limits,
) -> Result<Vec<ParsedReport>, IntakeError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(IntakeError::InputTooLarge {
            limit: limits.max_input_bytes,
        });
    }
    tracing::debug!(len = bytes.len(), media_type, "parsing TLS-RPT input");
    let mut out = Vec::new();
    if !is_message(bytes) {
        payload(bytes, "input".to_owned(), false, limits, &mut out)?;
    } else {
        message(bytes, limits, &mut out)?;
    }
    if out.is_empty() {
        return Err(IntakeError::NoReport);
    }
    Ok(out)
}

/// One payload: gzip, zip or JSON (sniffed).
fn payload(
    bytes: &[u8],
    origin: String,
    declared_gzip: bool,
    limits: &Limits,
    out: &mut Vec<ParsedReport>,
) -> Result<(), IntakeError> {
    if out.len() >= limits.max_reports_per_input {
        return Err(IntakeError::TooManyReports {
            limit: limits.max_reports_per_input,
        });
    }
    if bytes.starts_with(GZIP_MAGIC) {
        let json = gunzip_capped(bytes, limits.max_report_bytes)?;
        out.push(ParsedReport::from_json(&json, format!("{origin}, gzip"))?);
    } else if bytes.starts_with(ZIP_MAGIC) {
        unzip(bytes, &origin, limits, out)?;
    } else if declared_gzip && !looks_like_json(bytes) {
        return Err(IntakeError::NotGzip { origin });
    } else {
        if bytes.len() > limits.max_report_bytes {
            return Err(IntakeError::ReportTooLarge {
                limit: limits.max_report_bytes,
            });
        }
        out.push(ParsedReport::from_json(bytes, origin)?);
    }
    Ok(())
}

/// Every file entry of a zip archive (RFC 8460 does not define zip; some reporters and
/// hosted tools use it, vectors S2.2). Nested archives are not opened.
fn unzip(
    bytes: &[u8],
    origin: &str,
    limits: &Limits,
    out: &mut Vec<ParsedReport>,
) -> Result<(), IntakeError> {
    let limit = limits.max_report_bytes;
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(IntakeError::Zip)?;
    for index in 0..archive.len() {
        if out.len() >= limits.max_reports_per_input {
            return Err(IntakeError::TooManyReports {
                limit: limits.max_reports_per_input,
            });
        }
        let entry = archive.by_index(index).map_err(IntakeError::Zip)?;
        if entry.is_dir() {
            continue;
        }
        // The entry name is a label only (RFC 8460 §6.3): printable ASCII, truncated.
        let name: String = String::from_utf8_lossy(entry.name_raw())
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(120)
            .collect();
        if entry.size() > limit as u64 {
            return Err(IntakeError::ReportTooLarge { limit });
        }
        let data = read_capped(entry, limit).map_err(|e| {
            if is_too_large(&e) {
                IntakeError::ReportTooLarge { limit }
            } else {
                IntakeError::Zip(zip::result::ZipError::Io(e))
            }
        })?;
        let entry_origin = format!("{origin}, zip entry \"{name}\"");
        if data.starts_with(GZIP_MAGIC) {
            let json = gunzip_capped(&data, limit)?;
            out.push(ParsedReport::from_json(
                &json,
                format!("{entry_origin}, gzip"),
            )?);
        } else {
            out.push(ParsedReport::from_json(&data, entry_origin)?);
        }
    }
    Ok(())
}

/// Whether a MIME type names a TLS-RPT report part (RFC 8460 §5.3, §6.4, §6.5).
fn is_tlsrpt_type(ctype: &str, subtype: &str) -> bool {
    ctype.eq_ignore_ascii_case("application")
        && ["tlsrpt+gzip", "tlsrpt+json", "tlsrpt"]
            .iter()
            .any(|s| subtype.eq_ignore_ascii_case(s))
}

fn is_generic_container(ctype: &str, subtype: &str) -> bool {
    ctype.eq_ignore_ascii_case("application")
        && [
            "gzip",
            "x-gzip",
            "json",
            "zip",
            "x-zip-compressed",
            "octet-stream",
        ]
        .iter()
        .any(|s| subtype.eq_ignore_ascii_case(s))
}

/// The TLS-RPT parts of an RFC 5322 message (and of messages nested in it).
fn message(bytes: &[u8], limits: &Limits, out: &mut Vec<ParsedReport>) -> Result<(), IntakeError> {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return Err(IntakeError::NoReport);
    };
    walk_message(&message, limits, out, 0)
}

fn walk_message(
    message: &mail_parser::Message<'_>,
    limits: &Limits,
    out: &mut Vec<ParsedReport>,
    depth: u32,
) -> Result<(), IntakeError> {
    // Forwarded reports sit one or two levels deep; deeper nesting is not followed.
    if depth > 3 {
        return Ok(());
    }
    for (index, part) in message.parts.iter().enumerate() {
        if let Some(nested) = part.message() {
            walk_message(nested, limits, out, depth + 1)?;
            continue;
        }
        if part.is_multipart() {
            continue;
        }
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype();
        let subtype = ct.subtype().unwrap_or("");
        let name = part.attachment_name();
        let wanted = is_tlsrpt_type(ctype, subtype)
            || (is_generic_container(ctype, subtype)
                && name.is_some_and(|n| ReportFileName::parse(n).is_ok()));
        if !wanted {
            continue;
        }
        let label: String = name
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        let origin = format!("MIME part {index} ({ctype}/{subtype}) \"{label}\"");
        let declared_gzip = subtype.to_ascii_lowercase().contains("gzip")
            || name.is_some_and(|n| n.ends_with(".gz"));
        payload(part.contents(), origin, declared_gzip, limits, out)?;
    }
    Ok(())
}
