//! Fuzz the TLS-RPT report JSON model (RFC 8460 §4) and the report intake (gzip, zip,
//! MIME, mbox): no input may panic, and every report that parses must write back to JSON
//! that parses to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_report_store::intake::{Limits, parse_input};
use mta_sts_report_store::mailbox::split_mbox;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = tlsrpt::Report::from_json(data) {
        let again = tlsrpt::Report::from_json(report.to_json().as_bytes());
        assert_eq!(again.ok().as_ref(), Some(&report));
    }
    let limits = Limits {
        max_input_bytes: 1 << 20,
        max_report_bytes: 1 << 20,
        max_reports_per_input: 16,
    };
    if let Ok(reports) = parse_input(data, None, &limits) {
        assert!(!reports.is_empty());
    }
    for message in split_mbox(data).iter().take(4) {
        let _ = parse_input(message, None, &limits);
    }
});
