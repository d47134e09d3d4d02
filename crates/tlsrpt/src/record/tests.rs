//! Unit tests of the record module's private helpers.

use super::uri::percent_decode;
use super::*;

#[test]
fn prefix_rule() {
    assert!(has_record_prefix(b"v=TLSRPTv1;"));
    assert!(has_record_prefix(b"v=TLSRPTv1 \t;rua=x"));
    assert!(!has_record_prefix(b"v=TLSRPTv1"));
    assert!(!has_record_prefix(b"v=TLSRPTv10;"));
    assert!(!has_record_prefix(b" v=TLSRPTv1;"));
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Bb").as_deref(), Some("a+b"));
    assert_eq!(percent_decode("%ff"), None);
}
