//! Fuzz the HTTPS TLS-RPT intake of `serve` (RFC 8460 §5.4): a POSTed body, gzip
//! (`application/tlsrpt+gzip`, §6.5) or plain JSON, through the decompression cap and the
//! streaming `report-id` check, then the report store's full parse, as `serve` does it. No
//! input may panic; the output stays within the cap; when both accept a report they agree
//! on its `report-id`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_policy_host::check_body;
use mta_sts_report_store::intake::{Limits, parse_input};

const MAX_REPORT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let gzip = flags & 1 == 1;
    let Ok(checked) = check_body(body.to_vec(), gzip, MAX_REPORT) else {
        return;
    };
    assert!(checked.json.len() <= MAX_REPORT);
    assert!(!checked.report_id.is_empty());
    let limits = Limits {
        max_input_bytes: MAX_REPORT,
        max_report_bytes: MAX_REPORT,
        max_reports_per_input: 1,
    };
    if let Ok(reports) = parse_input(&checked.json, Some("application/tlsrpt+json"), &limits) {
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].report.report_id, checked.report_id);
    }
});
