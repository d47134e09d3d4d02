//! The report e-mail of RFC 8460 §5.3, built by hand (it is small): sans-I/O, the caller
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

/// RFC 5322 §3.3 date-time in UTC, e.g. `Wed, 01 May 2024 13:14:15 +0000`.
pub fn rfc5322_date(time: UtcDateTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = time.to_string(); // YYYY-MM-DDTHH:MM:SSZ
    let weekday = DAYS[time.unix_seconds().div_euclid(86_400).rem_euclid(7) as usize];
    let month = text
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {} {month} {} {} +0000",
        text.get(8..10).unwrap_or("01"),
        text.get(0..4).unwrap_or("1970"),
        text.get(11..19).unwrap_or("00:00:00"),
    )
}

/// Standard base64 (RFC 4648 §4) in lines of 76 characters joined by CRLF (RFC 2045 §6.8).
pub fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                encoded.push(b'=');
            }
        }
    }
    encoded
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The complete message (CRLF line ends, ready for SMTP DATA after dot-stuffing).
pub fn build_message(report: &Report, gzipped: &[u8], params: &MailParams<'_>) -> Vec<u8> {
    let name = file_name(report, params.submitter, params.policy_domain);
    let unique = fnv1a(format!("{}\0{}", report.report_id, params.to).as_bytes());
    let boundary = format!("tlsrpt-{unique:016x}");
    let mut m = String::new();
    let mut header = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(value);
        m.push_str("\r\n");
    };
    header("From", params.from);
    header("To", params.to);
    header("Date", &rfc5322_date(params.date));
    header(
        "Message-ID",
        &format!("<tlsrpt.{unique:016x}@{}>", params.submitter),
    );
    header(
        "Subject",
        &subject(params.policy_domain, params.submitter, &report.report_id),
    );
    header("TLS-Report-Domain", params.policy_domain);
    header("TLS-Report-Submitter", params.submitter);
    header("MIME-Version", "1.0");
    header(
        "Content-Type",
        &format!("multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"{boundary}\""),
    );
    m.push_str("\r\nThis is a multipart message in MIME format.\r\n\r\n");
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: text/plain; charset=\"us-ascii\"\r\n");
    m.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
    m.push_str(&format!(
        "This is an aggregate SMTP TLS report (RFC 8460) for {} from {}.\r\n\
         Period: {} to {}. Sessions: {} successful, {} failed.\r\n\
         Report-ID: {}\r\n\r\n",
        params.policy_domain,
        report.organization_name.replace(['\r', '\n'], " "),
        report.date_range.start,
        report.date_range.end,
        report.total_successful(),
        report.total_failed(),
        report.report_id,
    ));
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: application/tlsrpt+gzip\r\n");
    m.push_str("Content-Transfer-Encoding: base64\r\n");
    m.push_str(&format!(
        "Content-Disposition: attachment;\r\n filename=\"{name}\"\r\n\r\n"
    ));
    m.push_str(&base64_lines(gzipped));
    m.push_str(&format!("\r\n\r\n--{boundary}--\r\n"));
    m.into_bytes()
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

    #[test]
    fn dates() {
        let t = UtcDateTime::parse("2024-05-01T13:14:15Z").unwrap();
        assert_eq!(rfc5322_date(t), "Wed, 01 May 2024 13:14:15 +0000");
    }
}
