//! Fuzz the `_smtp._tls` record parser: `lint`, `parse`, `parse_strict` and `select`.
//!
//! Input bytes are split into TXT RRs at 0xFF and each RR into character-strings at 0xFE.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsrpt::{TlsRptRecord, lint, select};

fuzz_target!(|data: &[u8]| {
    let rrs: Vec<Vec<&[u8]>> = data
        .split(|b| *b == 0xff)
        .map(|rr| rr.split(|b| *b == 0xfe).collect())
        .collect();
    let _ = select(&rrs);

    for rr in &rrs {
        let joined = rr.concat();
        let Ok(text) = std::str::from_utf8(&joined) else {
            continue;
        };
        let l = lint(text);
        let parsed = TlsRptRecord::parse(text);
        assert_eq!(parsed.is_ok(), l.is_valid());
        assert_eq!(parsed.as_ref().ok(), l.record.as_ref());
        if TlsRptRecord::parse_strict(text).is_ok() {
            assert!(l.is_strict_valid());
        }
        if let Ok(record) = parsed {
            let canonical = record.to_string();
            assert_eq!(TlsRptRecord::parse_strict(&canonical), Ok(record));
        }
    }
});
