//! Fuzz how `mta-sts report import` reads one input from disk, without DKIM or a store:
//! the not-a-report check, the repair of MIME messages without their closing boundary, then
//! the intake (JSON, gzip, zip, mail). No input may panic; the repair only ever appends
//! close delimiters, and what is refused as not a report is never parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_report_store::intake::Limits;
use mta_sts_report_store::mailbox::{parse_file_input, prepare};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_input_bytes: 1 << 20,
        max_report_bytes: 1 << 20,
        max_reports_per_input: 16,
    };
    match prepare(data) {
        Ok(prepared) => assert!(prepared.starts_with(data)),
        Err(_) => assert!(parse_file_input(data, &limits).is_err()),
    }
    if let Ok(reports) = parse_file_input(data, &limits) {
        assert!(!reports.is_empty());
    }
});
