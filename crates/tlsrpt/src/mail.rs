//! The report e-mail of RFC 8460 §5.3, built with mail-builder: sans-I/O, the caller
//! supplies the gzip-compressed report (RFC 8460 §5.2) and the time.
//!
//! ```text
//! From: <from>
//! To: <rua address>
//! Date: <RFC 5322 date>
//! Message-ID: <...>
//! Subject: Report Domain: <domain>
//!  Submitter: <submitter> Report-ID: <<report-id>>        (RFC 8460 §5.3 ABNF, folded at FWS)
//! TLS-Report-Domain: <domain>                              (§5.3 MUST)
//! TLS-Report-Submitter: <submitter>                        (§5.3 MUST)
//! MIME-Version: 1.0
//! Content-Type: multipart/report; report-type="tlsrpt"; boundary="..."
//!
//! text/plain part (human-readable)
//! application/tlsrpt+gzip part, base64, Content-Disposition: attachment;
//!   filename="<submitter>!<domain>!<begin>!<end>!<unique>.json.gz"  (§5.1)
//! ```
//!
//! DKIM (RFC 8460 §5.3: the message MUST carry a valid DKIM signature of the reporting domain,
//! `h=` covering `TLS-Report-Domain` and `TLS-Report-Submitter`, no `l=`) is not applied here
//! (this crate does no cryptography): `mta-sts-report-store`'s `dkim` module signs the built
//! message with a configured key, or else the relay must sign (e.g. Postfix with OpenDKIM or
//! rspamd, with `SignHeaders` including `tls-report-domain,tls-report-submitter`).

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use crate::report::Report;
use crate::report_datetime::UtcDateTime;
use crate::report_filename::ReportFileName;

/// Everything the message needs besides the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailParams<'a> {
    /// `From:` address (the reporting domain's, for DKIM alignment).
    pub from: &'a str,
    /// `To:` address (the `mailto:` rua).
    pub to: &'a str,
    /// The submitter domain (`TLS-Report-Submitter`, the domain of `contact-info`).
    pub submitter: &'a str,
    /// The policy domain (`TLS-Report-Domain`).
    pub policy_domain: &'a str,
    /// `Date:`.
    pub date: UtcDateTime,
}

/// 64-bit FNV-1a: stable unique-ids and boundaries without a random source.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The RFC 8460 §5.1 file name of a gzip report: `unique-id` is a hex hash of the report-id.
pub fn file_name(report: &Report, submitter: &str, policy_domain: &str) -> ReportFileName {
    ReportFileName {
        sender: submitter.to_owned(),
        policy_domain: policy_domain.to_owned(),
        begin: u64::try_from(report.date_range.start.unix_seconds()).unwrap_or(0),
        end: u64::try_from(report.date_range.end.unix_seconds()).unwrap_or(0),
        unique_id: Some(format!("{:016x}", fnv1a(report.report_id.as_bytes()))),
        gzip: true,
    }
}

/// The §5.3 Subject value, folded before `Submitter:` so the line stays under 78 octets for
/// ordinary names (the ABNF has FWS there).
pub fn subject(policy_domain: &str, submitter: &str, report_id: &str) -> String {
    format!(
        "Report Domain: {policy_domain}\r\n Submitter: {submitter}\r\n Report-ID: <{report_id}>"
    )
}

/// Standard base64 (RFC 4648 §4) in lines of 76 characters joined by CRLF (RFC 2045 §6.8),
/// as PEM bodies and DKIM key records want it (the message itself is encoded by
/// mail-builder).
pub fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut lines = String::with_capacity(encoded.len() + encoded.len() / 76 * 2);
    for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            lines.push_str("\r\n");
        }
        // Base64 output is ASCII, so every 76-byte chunk is valid UTF-8.
        lines.push_str(std::str::from_utf8(line).unwrap_or_default());
    }
    lines
}

/// The human-readable first part of the report mail.
fn text_part(report: &Report, policy_domain: &str) -> String {
    format!(
        "This is an aggregate SMTP TLS report (RFC 8460) for {} from {}.\r\n\
         Period: {} to {}. Sessions: {} successful, {} failed.\r\n\
         Report-ID: {}\r\n",
        policy_domain,
        report.organization_name.replace(['\r', '\n'], " "),
        report.date_range.start,
        report.date_range.end,
        report.total_successful(),
        report.total_failed(),
        report.report_id,
    )
}

/// The complete message (CRLF line ends, ready for SMTP DATA after dot-stuffing).
///
/// Built with mail-builder; everything it would otherwise take from the machine (boundary,
/// `Date:`, `Message-ID:`) is given here, so the same input always yields the same bytes.
pub fn build_message(report: &Report, gzipped: &[u8], params: &MailParams<'_>) -> Vec<u8> {
    let name = file_name(report, params.submitter, params.policy_domain);
    let unique = fnv1a(format!("{}\0{}", report.report_id, params.to).as_bytes());
    let boundary = format!("tlsrpt-{unique:016x}");
    // RFC 8460 §5.3: `multipart/report; report-type="tlsrpt"`, a human-readable part and the
    // report as an `application/tlsrpt+gzip` attachment named per §5.1.
    let body = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "tlsrpt")
            .attribute("boundary", boundary),
        vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "us-ascii"),
                text_part(report, params.policy_domain),
            ),
            MimePart::new("application/tlsrpt+gzip", gzipped).attachment(name.to_string()),
        ],
    );
    let message = MessageBuilder::new()
        .header("From", Raw::new(params.from))
        .header("To", Raw::new(params.to))
        .date(Date::new(params.date.unix_seconds()))
        .message_id(format!("tlsrpt.{unique:016x}@{}", params.submitter))
        // Raw: the value is already folded at the ABNF's FWS (see [`subject`]).
        .header(
            "Subject",
            Raw::new(subject(
                params.policy_domain,
                params.submitter,
                &report.report_id,
            )),
        )
        // RFC 8460 §5.3: both MUST be present (and covered by the DKIM signature).
        .header("TLS-Report-Domain", Raw::new(params.policy_domain))
        .header("TLS-Report-Submitter", Raw::new(params.submitter))
        .header("MIME-Version", Raw::new("1.0"))
        .body(body);
    let mut out = Vec::with_capacity(gzipped.len() * 4 / 3 + 2048);
    message.serialize(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_lines(plain.as_bytes()), encoded);
        }
        assert!(
            base64_lines(&[0u8; 100])
                .split("\r\n")
                .all(|l| l.len() <= 76)
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn dates() {
        let t = UtcDateTime::parse("2024-05-01T13:14:15Z").unwrap();
        let report = Report::from_json(
            br#"{"organization-name":"O","report-id":"r","contact-info":"c",
            "date-range":{"start-datetime":"2024-05-01T00:00:00Z","end-datetime":"2024-05-02T00:00:00Z"},
            "policies":[]}"#,
        )
        .unwrap();
        let params = MailParams {
            from: "tlsrpt@s.test",
            to: "r@d.test",
            submitter: "s.test",
            policy_domain: "d.test",
            date: t,
        };
        let message = String::from_utf8(build_message(&report, b"gz", &params)).unwrap();
        // RFC 5322 §3.3 (a one-digit day is allowed).
        assert!(
            message.contains("\r\nDate: Wed, 1 May 2024 13:14:15 +0000\r\n"),
            "{message}"
        );
        assert!(
            message.starts_with("From: tlsrpt@s.test\r\nTo: r@d.test\r\n"),
            "{message}"
        );
        // Deterministic: no clock, no random boundary.
        assert_eq!(build_message(&report, b"gz", &params).len(), message.len());
    }
}
