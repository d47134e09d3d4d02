//! RFC 8460 §3: the `_smtp._tls` TXT record.
//!
//! One test per normative rule (the RPT-3-* rows of `docs/rfc-requirements.md`
//! §1.2 and the ABNF of §2.7), the project's readings of the ambiguities (§4 items 2 and 7),
//! the peer vectors of `shared/vectors/rust-go-peers.txt` (S1.2, S1.3, S14.2, S15.3) and every
//! `tlsrpt-*` row of `testdata/corpus/records.tsv`.

use mta_sts::diagnostic::Severity;
use tlsrpt::{RecordError, Rua, SelectError, TlsRptRecord, lint, select};

fn parse(text: &str) -> TlsRptRecord {
    match TlsRptRecord::parse(text) {
        Ok(r) => r,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn parse_err(text: &str) -> RecordError {
    match TlsRptRecord::parse(text) {
        Ok(r) => panic!("{text:?} should not parse, got {r:?}"),
        Err(e) => e,
    }
}

/// The diagnostic codes of `lint(text)`, in order.
fn codes(text: &str) -> Vec<&'static str> {
    lint(text).diagnostics.iter().map(|d| d.code).collect()
}

fn uris(record: &TlsRptRecord) -> Vec<&str> {
    record.rua.iter().map(Rua::uri).collect()
}

fn mailto(uri: &str, address: &str) -> Rua {
    Rua::Mailto {
        uri: uri.into(),
        address: address.into(),
    }
}

fn https(uri: &str) -> Rua {
    Rua::Https { uri: uri.into() }
}

/// Valid by the exact grammar: parses, strictly too, and lint is silent.
fn assert_strict_valid(text: &str) -> TlsRptRecord {
    let record = parse(text);
    assert_eq!(
        TlsRptRecord::parse_strict(text).as_ref(),
        Ok(&record),
        "{text:?}"
    );
    let l = lint(text);
    assert!(l.is_strict_valid(), "{text:?}: {:?}", l.diagnostics);
    assert_eq!(l.record.as_ref(), Some(&record));
    record
}

// ---------------------------------------------------------------------------------------------
// RPT-3-b: "v" … MUST be equal to "TLSRPTv1"; tlsrpt-version = %s"v=TLSRPTv1", first.

#[test]
fn rfc8460_3_version_must_be_tlsrptv1() {
    for text in [
        "v=TLSRPTv0",
        "v=TLSRPTv10",
        "v=TLSRPTv2",
        "v=TLSRPTv10; rua=mailto:a@x.example",
    ] {
        assert!(
            matches!(parse_err(text), RecordError::NotTlsRptRecord { .. }),
            "{text:?}"
        );
        assert_eq!(codes(text), ["not-tlsrpt-record"], "{text:?}");
    }
    assert!(matches!(parse_err(""), RecordError::NotTlsRptRecord { .. }));
    assert!(matches!(
        parse_err("v=spf1 -all"),
        RecordError::NotTlsRptRecord { .. }
    ));
}

#[test]
fn rfc8460_3_version_is_case_sensitive() {
    for text in [
        "v=tlsrptv1; rua=mailto:a@example.com",
        "V=TLSRPTv1; rua=mailto:a@example.com",
        "v=TLSRPTV1; rua=mailto:a@example.com",
    ] {
        let e = parse_err(text);
        assert!(matches!(e, RecordError::NotTlsRptRecord { .. }), "{text:?}");
        assert!(e.to_string().contains("case-sensitive"), "{e}");
    }
}

#[test]
fn rfc8460_3_version_must_come_first() {
    assert!(matches!(
        parse_err("rua=mailto:a@example.com; v=TLSRPTv1"),
        RecordError::NotTlsRptRecord { .. }
    ));
    // "begin with": no leading whitespace either.
    let e = parse_err(" v=TLSRPTv1; rua=mailto:a@example.com");
    assert!(matches!(e, RecordError::NotTlsRptRecord { .. }));
    assert!(e.to_string().contains("whitespace"), "{e}");
    // A version followed by anything but WSP, ";" or the end is another version.
    assert!(matches!(
        parse_err("v=TLSRPTv1x; rua=mailto:a@example.com"),
        RecordError::NotTlsRptRecord { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// rua: required, %s"rua=", tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri).

#[test]
fn rfc8460_3_rua_is_required() {
    for text in ["v=TLSRPTv1", "v=TLSRPTv1;", "v=TLSRPTv1; ext=1"] {
        let e = parse_err(text);
        assert_eq!(e, RecordError::MissingRua { similar: None }, "{text:?}");
        assert_eq!(
            e.to_string(),
            "the record has no rua= field: add rua=mailto:tlsrpt@<domain>"
        );
        assert_eq!(codes(text), ["missing-rua"]);
    }
}

#[test]
fn rfc8460_3_rua_tag_is_case_sensitive() {
    // `RUA=MAILTO:…` is a grammatical *extension* (name "RUA"), so rua is missing.
    let text = "v=TLSRPTv1; RUA=mailto:a@example.com";
    let e = parse_err(text);
    assert_eq!(
        e,
        RecordError::MissingRua {
            similar: Some("RUA".into())
        }
    );
    assert!(e.to_string().contains("case-sensitive"), "{e}");
}

#[test]
fn rfc8460_3_mailto_scheme_is_supported() {
    // RFC 8460 §3.1.1 example.
    let r = assert_strict_valid("v=TLSRPTv1;rua=mailto:reports@example.com");
    assert_eq!(
        r.rua,
        [mailto("mailto:reports@example.com", "reports@example.com")]
    );
    // The scheme is case-insensitive (RFC 3986 §3.1); the URI is kept as written.
    let r = parse("v=TLSRPTv1; rua=MAILTO:Reports@Example.com");
    assert_eq!(
        r.rua,
        [mailto("MAILTO:Reports@Example.com", "Reports@Example.com")]
    );
}

#[test]
fn rfc8460_3_https_scheme_is_supported() {
    // RFC 8460 §3.1.2 example (the zone-file line continuation removed).
    let r = assert_strict_valid("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt");
    assert_eq!(r.rua, [https("https://reporting.example.com/v1/tlsrpt")]);
    let r = parse("v=TLSRPTv1; rua=https://reportbot.example.com:12345/tlsrpt?a=b#c");
    assert_eq!(r.usable_rua().count(), 1);
}

#[test]
fn rfc8460_3_rua_is_a_comma_separated_uri_list() {
    let r = assert_strict_valid(
        "v=TLSRPTv1; rua=mailto:a@x.example,https://x.example/r , \t mailto:b@x.example",
    );
    assert_eq!(
        uris(&r),
        [
            "mailto:a@x.example",
            "https://x.example/r",
            "mailto:b@x.example"
        ]
    );
}

#[test]
fn rfc8460_3_other_uri_schemes_are_ignored_for_delivery() {
    let text = "v=TLSRPTv1; rua=mailto:a@example.com,http://insecure.example/rpt,ftp://x.example";
    let r = parse(text);
    assert_eq!(r.rua.len(), 3);
    assert_eq!(
        r.rua[1],
        Rua::Other {
            uri: "http://insecure.example/rpt".into()
        }
    );
    assert_eq!(
        r.usable_rua().map(Rua::uri).collect::<Vec<_>>(),
        ["mailto:a@example.com"]
    );
    // Grammatical (any URI is), so only advice.
    let l = lint(text);
    assert!(l.is_strict_valid());
    assert_eq!(codes(text), ["unsupported-scheme", "unsupported-scheme"]);
    assert!(
        l.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning)
    );
}

#[test]
fn rfc8460_3_no_usable_uri_means_no_reporting() {
    for text in [
        "v=TLSRPTv1; rua=http://insecure.example/rpt",
        "v=TLSRPTv1; rua=ftp://a.example,http://b.example",
    ] {
        assert_eq!(parse_err(text), RecordError::NoUsableRua, "{text:?}");
        assert_eq!(codes(text).last(), Some(&"no-usable-rua"));
    }
}

#[test]
fn rfc8460_3_uri_commas_must_be_encoded() {
    // A literal comma always separates URIs: the second element has no scheme.
    let e = parse_err("v=TLSRPTv1; rua=mailto:a@example.com,b@example.com");
    assert!(
        matches!(&e, RecordError::InvalidUri { uri, .. } if uri == "b@example.com"),
        "{e:?}"
    );
    // Encoded, it stays inside the URI.
    let r = assert_strict_valid("v=TLSRPTv1; rua=https://r.example/rpt?a=1%2C2");
    assert_eq!(uris(&r), ["https://r.example/rpt?a=1%2C2"]);
}

#[test]
fn rfc8460_3_uri_exclamation_points_must_be_encoded() {
    // No DMARC-style size limit.
    let e = parse_err("v=TLSRPTv1; rua=mailto:a@example.com!10m");
    assert!(matches!(&e, RecordError::InvalidUri { .. }), "{e:?}");
    assert!(e.to_string().contains("%21"), "{e}");
    assert_strict_valid("v=TLSRPTv1; rua=https://r.example/a%21b");
}

#[test]
fn rfc8460_3_uri_semicolons_must_be_encoded() {
    // A literal ";" ends the field: what follows is a (grammatical) extension.
    let r = parse("v=TLSRPTv1; rua=https://r.example/a;b=c");
    assert_eq!(uris(&r), ["https://r.example/a"]);
    assert_eq!(r.extensions, [("b".to_string(), "c".to_string())]);
    let r = assert_strict_valid("v=TLSRPTv1; rua=https://r.example/a%3Bb=c");
    assert_eq!(uris(&r), ["https://r.example/a%3Bb=c"]);
}

#[test]
fn rfc8460_3_uri_must_be_an_rfc3986_uri() {
    for (text, uri) in [
        ("v=TLSRPTv1; rua=noscheme", "noscheme"),
        ("v=TLSRPTv1; rua=:x", ":x"),
        ("v=TLSRPTv1; rua=1http://x.example", "1http://x.example"),
        ("v=TLSRPTv1; rua=http://bad/%", "http://bad/%"),
        (
            "v=TLSRPTv1; rua=https://x.example/%zz",
            "https://x.example/%zz",
        ),
        ("v=TLSRPTv1; rua=mailto:", "mailto:"),
        ("v=TLSRPTv1; rua=mailto:nobody", "mailto:nobody"),
        ("v=TLSRPTv1; rua=mailto:@example.com", "mailto:@example.com"),
        ("v=TLSRPTv1; rua=https://", "https://"),
        ("v=TLSRPTv1; rua=https:/path", "https:/path"),
        (
            "v=TLSRPTv1; rua=https://x.example/<a>",
            "https://x.example/<a>",
        ),
        (
            "v=TLSRPTv1; rua=mailto:\"a\"@x.example",
            "mailto:\"a\"@x.example",
        ),
    ] {
        match parse_err(text) {
            RecordError::InvalidUri { uri: got, .. } => assert_eq!(got, uri, "{text:?}"),
            e => panic!("{text:?}: {e:?}"),
        }
        assert_eq!(codes(text), ["invalid-uri"], "{text:?}");
    }
    // No URI at all.
    for text in [
        "v=TLSRPTv1; rua=",
        "v=TLSRPTv1; rua=;",
        "v=TLSRPTv1; rua=,, ,",
    ] {
        assert!(
            matches!(parse_err(text), RecordError::EmptyRua { .. }),
            "{text:?}"
        );
    }
}

#[test]
fn rfc8460_3_mailto_address_is_percent_decoded() {
    // RFC 6068 §2: the address is the percent-decoded path, without `?` header fields.
    let r = parse("v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=tlsrpt");
    assert_eq!(
        r.rua,
        [mailto(
            "mailto:tls%2Brpt@example.com?subject=tlsrpt",
            "tls+rpt@example.com"
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// field-delim = *WSP ";" *WSP; tlsrpt-record = … [field-delim].

#[test]
fn rfc8460_3_field_delimiter_allows_surrounding_whitespace() {
    let r = assert_strict_valid("v=TLSRPTv1 \t;\t rua=mailto:a@x.example \t; ext=1 ;");
    assert_eq!(uris(&r), ["mailto:a@x.example"]);
    assert_strict_valid("v=TLSRPTv1;rua=mailto:a@x.example;ext=1");
}

#[test]
fn rfc8460_3_final_field_delimiter_is_optional() {
    assert_strict_valid("v=TLSRPTv1; rua=mailto:a@x.example");
    assert_strict_valid("v=TLSRPTv1; rua=mailto:a@x.example;");
    // Whitespace after a final ";" is part of the field-delim.
    assert_strict_valid("v=TLSRPTv1; rua=mailto:a@x.example; \t");
}

#[test]
fn rfc8460_3_trailing_whitespace_only_after_final_semicolon() {
    // Ungrammatical; tolerated (mox accepts it, see peer_mox_s15_3) with a breaks_abnf warning.
    let text = "v=TLSRPTv1; rua=mailto:a@x.example \t";
    assert_eq!(uris(&parse(text)), ["mailto:a@x.example"]);
    assert_eq!(
        TlsRptRecord::parse_strict(text),
        Err(RecordError::TrailingWhitespace)
    );
    let l = lint(text);
    assert!(l.is_valid() && !l.is_strict_valid());
    assert_eq!(codes(text), ["trailing-whitespace"]);
    assert!(l.diagnostics[0].breaks_abnf);
    assert_eq!(l.diagnostics[0].severity, Severity::Warning);
}

#[test]
fn rfc8460_3_empty_field_is_an_error() {
    for text in [
        "v=TLSRPTv1;; rua=mailto:x@x.example",
        "v=TLSRPTv1; rua=mailto:x@x.example;;",
        "v=TLSRPTv1; rua=mailto:x@x.example; ;",
    ] {
        assert!(
            matches!(parse_err(text), RecordError::EmptyField { .. }),
            "{text:?}"
        );
        assert_eq!(codes(text), ["empty-field"], "{text:?}");
    }
}

#[test]
fn rfc8460_3_fields_must_be_separated_by_semicolons() {
    for (text, found) in [
        (
            "v=TLSRPTv1 rua=mailto:x@x.example",
            "rua=mailto:x@x.example",
        ),
        ("v=TLSRPTv1; rua=mailto:x@x.example other", "other"),
        ("v=TLSRPTv1; rua=mailto:x@x.example; ext=a b", "b"),
    ] {
        match parse_err(text) {
            RecordError::UnexpectedText { text: got, .. } => assert_eq!(got, found),
            e => panic!("{text:?}: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RPT-3-q: unknown fields SHALL be ignored; tlsrpt-extension syntax.

#[test]
fn rfc8460_3_unknown_fields_are_ignored() {
    let r = assert_strict_valid(
        "v=TLSRPTv1; ext=yes; rua=mailto:a@x.example; foo.bar-baz_1=x:y/z; v=TLSRPTv2",
    );
    assert_eq!(uris(&r), ["mailto:a@x.example"]);
    assert_eq!(
        r.extensions,
        [
            ("ext".to_string(), "yes".to_string()),
            ("foo.bar-baz_1".to_string(), "x:y/z".to_string()),
            ("v".to_string(), "TLSRPTv2".to_string()),
        ]
    );
}

#[test]
fn rfc8460_3_extension_name_syntax() {
    let name32 = format!("a{}", "1".repeat(31));
    assert_strict_valid(&format!("v=TLSRPTv1; rua=mailto:x@x.example; {name32}=1"));
    assert_strict_valid("v=TLSRPTv1; rua=mailto:x@x.example; 9.x-y_z=1");
    for text in [
        &format!("v=TLSRPTv1; rua=mailto:x@x.example; {name32}2=1") as &str,
        "v=TLSRPTv1; rua=mailto:x@x.example; 1%=a",
        "v=TLSRPTv1; rua=mailto:x@x.example; _x=1",
        "v=TLSRPTv1; rua=mailto:x@x.example; -x=1",
        "v=TLSRPTv1; rua=mailto:x@x.example; =1",
        "v=TLSRPTv1; rua=mailto:x@x.example; noequals",
        "v=TLSRPTv1; rua=mailto:x@x.example; ext =1",
    ] {
        assert!(
            matches!(parse_err(text), RecordError::InvalidField { .. }),
            "{text:?}"
        );
        assert_eq!(codes(text), ["invalid-field"], "{text:?}");
    }
}

#[test]
fn rfc8460_3_extension_value_syntax() {
    // Every character of %x21-3A / %x3C / %x3E-7E.
    let all: String = (0x21u8..=0x7e)
        .filter(|c| *c != b';' && *c != b'=')
        .map(char::from)
        .collect();
    let r = assert_strict_valid(&format!("v=TLSRPTv1; rua=mailto:x@x.example; e={all}"));
    assert_eq!(r.extensions[0].1, all);
    for text in [
        "v=TLSRPTv1; rua=mailto:x@x.example; more=",
        "v=TLSRPTv1; rua=mailto:x@x.example; more=;",
        "v=TLSRPTv1; rua=mailto:x@x.example; test==",
        "v=TLSRPTv1; rua=mailto:x@x.example; a=b=c",
        "v=TLSRPTv1; rua=mailto:x@x.example; a=b\u{7f}",
        "v=TLSRPTv1; rua=mailto:x@x.example; a=b\rc",
    ] {
        assert!(
            matches!(parse_err(text), RecordError::InvalidField { .. }),
            "{text:?}"
        );
    }
}

#[test]
fn rfc8460_3_record_must_be_us_ascii() {
    let text = "v=TLSRPTv1; rua=mailto:tls@bücher.example";
    assert_eq!(parse_err(text), RecordError::NotAscii { offset: 28 });
    assert_eq!(codes(text), ["not-ascii"]);
    let rr: &[u8] = b"v=TLSRPTv1; rua=mailto:a@\xff.example";
    assert_eq!(
        select([[rr]]),
        Err(SelectError::Invalid(RecordError::NotAscii { offset: 25 }))
    );
}

// ---------------------------------------------------------------------------------------------
// Selection among the TXT RRs of _smtp._tls (RPT-3-l, RPT-3-m, RPT-3-n).

#[test]
fn rfc8460_3_records_not_beginning_with_prefix_are_discarded() {
    let r = select([
        vec!["v=spf1 -all"],
        vec!["v=TLSRPTv10; rua=mailto:new@x.example"],
        vec!["v=TLSRPTv1"],
        vec!["v=tlsrptv1; rua=mailto:lower@x.example"],
        vec!["v=TLSRPTv1; rua=mailto:a@x.example"],
    ])
    .unwrap();
    assert_eq!(uris(&r), ["mailto:a@x.example"]);
}

#[test]
fn rfc8460_3_discard_prefix_allows_whitespace_before_semicolon() {
    // Project reading (erratum-6285 style): the prefix is `v=TLSRPTv1` *WSP ";", so this RR
    // is a candidate, and with a second one both are ignored.
    let spaced = "v=TLSRPTv1 \t; rua=mailto:a@x.example";
    assert_eq!(uris(&select([[spaced]]).unwrap()), ["mailto:a@x.example"]);
    assert_eq!(
        select([[spaced], ["v=TLSRPTv1; rua=mailto:b@x.example"]]),
        Err(SelectError::MultipleRecords { count: 2 })
    );
}

#[test]
fn rfc8460_3_exactly_one_record_must_remain() {
    let none: [[&str; 1]; 0] = [];
    assert_eq!(select(none), Err(SelectError::NoRecord));
    assert_eq!(select([["v=spf1 -all"]]), Err(SelectError::NoRecord));
    assert_eq!(
        select([
            ["v=TLSRPTv1; rua=mailto:a@x.example"],
            ["v=TLSRPTv1; rua=mailto:a@x.example"],
            ["v=TLSRPTv1;"],
        ]),
        Err(SelectError::MultipleRecords { count: 3 })
    );
    // One candidate that is unusable: no TLS-RPT either, with the reason.
    assert_eq!(
        select([["v=TLSRPTv1;"]]),
        Err(SelectError::Invalid(RecordError::MissingRua {
            similar: None
        }))
    );
    assert_ne!(
        SelectError::NoRecord.to_string(),
        SelectError::MultipleRecords { count: 2 }.to_string()
    );
}

#[test]
fn rfc8460_3_strings_are_concatenated_without_spaces() {
    let r = select([["v=TLSRPTv1; rua=mailto:", "tls@example.test"]]).unwrap();
    assert_eq!(
        r.rua,
        [mailto("mailto:tls@example.test", "tls@example.test")]
    );
    // Split inside the version: the prefix test sees the concatenation.
    let r = select([vec!["v=TLS", "RPTv1;", "rua=https://r.example/x"]]).unwrap();
    assert_eq!(uris(&r), ["https://r.example/x"]);
    // A 255-byte string followed by more (RFC 1035 strings are at most 255 bytes).
    let long = format!("v=TLSRPTv1; rua=https://r.example/{}", "a".repeat(221));
    assert_eq!(long.len(), 255);
    let r = select([[long.as_bytes(), b"b,mailto:c@x.example"]]).unwrap();
    assert_eq!(r.rua.len(), 2);
    assert!(r.rua[0].uri().ends_with("ab"));
}

// ---------------------------------------------------------------------------------------------
// RPT-3-o: more than one rua; project readings of §4 item 7.

#[test]
fn rfc8460_3_more_than_one_rua_destination_in_order() {
    let r = parse("v=TLSRPTv1; rua=https://a.example/r,mailto:b@x.example,https://c.example/r");
    assert_eq!(
        uris(&r),
        [
            "https://a.example/r",
            "mailto:b@x.example",
            "https://c.example/r"
        ]
    );
}

#[test]
fn rfc8460_3_repeated_rua_fields_are_united_with_a_warning() {
    // Project reading: RFC 8460 has no duplicate rule; the grammar allows the repetition, so
    // the warning is advice (breaks_abnf false). Exact duplicates are merged (a union).
    let text = "v=TLSRPTv1; rua=mailto:a@x.example; rua=https://x.example/r,mailto:a@x.example";
    let r = assert_strict_valid(text);
    assert_eq!(uris(&r), ["mailto:a@x.example", "https://x.example/r"]);
    assert_eq!(codes(text), ["duplicate-rua", "duplicate-uri"]);
}

#[test]
fn rfc8460_3_trailing_empty_uri_is_ignored_with_a_warning() {
    // Project reading: `rua=a,` breaks the ABNF but its meaning is clear.
    let text = "v=TLSRPTv1; rua=mailto:a@x.example,";
    assert_eq!(uris(&parse(text)), ["mailto:a@x.example"]);
    assert!(matches!(
        TlsRptRecord::parse_strict(text),
        Err(RecordError::EmptyUri { offset: 35 })
    ));
    let l = lint(text);
    assert!(l.is_valid() && !l.is_strict_valid());
    assert_eq!(codes(text), ["empty-uri"]);
    // Same for a doubled comma, and before a final ";".
    assert_eq!(
        codes("v=TLSRPTv1; rua=mailto:a@x.example, ,https://x.example/r;"),
        ["empty-uri"]
    );
}

#[test]
fn rfc8460_3_lint_reports_every_problem() {
    let text = "v=TLSRPTv1;; RUA=x; 1%=a; rua=mailto:a@x.example!1";
    assert_eq!(codes(text), ["empty-field", "invalid-field", "invalid-uri"]);
    assert_eq!(
        codes("v=TLSRPTv1;; RUA=x; 1%=a"),
        ["empty-field", "invalid-field", "missing-rua"]
    );
    let l = lint(text);
    assert!(l.record.is_none());
    assert!(
        l.diagnostics
            .iter()
            .all(|d| d.line.is_none() && d.breaks_abnf)
    );
}

// ---------------------------------------------------------------------------------------------
// Display, FromStr, serde.

#[test]
fn canonical_display_round_trips() {
    let text = "v=TLSRPTv1 ;rua=mailto:a@x , https://y.example/z ;ext=v;";
    let r = parse(text);
    assert_eq!(
        r.to_string(),
        "v=TLSRPTv1; rua=mailto:a@x,https://y.example/z; ext=v"
    );
    assert_eq!(r.to_string().parse::<TlsRptRecord>(), Ok(r));
}

#[cfg(feature = "serde")]
#[test]
fn serde_json_shape() {
    let r = parse("v=TLSRPTv1; rua=mailto:a@x,https://y.example/z,ftp://f.example; ext=v");
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({
            "rua": [
                {"scheme": "mailto", "uri": "mailto:a@x", "address": "a@x"},
                {"scheme": "https", "uri": "https://y.example/z"},
                {"scheme": "other", "uri": "ftp://f.example"},
            ],
            "extensions": {"ext": "v"},
        })
    );
    let l = serde_json::to_value(lint("v=TLSRPTv1; rua=mailto:a@x,")).unwrap();
    assert_eq!(l["diagnostics"][0]["code"], "empty-uri");
    assert_eq!(l["diagnostics"][0]["breaks_abnf"], true);
    assert_eq!(l["record"]["rua"][0]["address"], "a@x");
}

// ---------------------------------------------------------------------------------------------
// Peer vectors (shared/vectors/rust-go-peers.txt).

/// S1.2: stalwartlabs/mail-auth `TlsRpt::parse` (its own tests).
#[test]
fn peer_mail_auth_s1_2() {
    let r = parse("v=TLSRPTv1;rua=mailto:reports@example.com");
    assert_eq!(
        r.rua,
        [mailto("mailto:reports@example.com", "reports@example.com")]
    );
    let r = parse("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt");
    assert_eq!(r.rua, [https("https://reporting.example.com/v1/tlsrpt")]);
    let r = parse("v=TLSRPTv1; rua=mailto:tlsrpt@mydomain.com,https://tlsrpt.mydomain.com/v1");
    assert_eq!(
        r.rua,
        [
            mailto("mailto:tlsrpt@mydomain.com", "tlsrpt@mydomain.com"),
            https("https://tlsrpt.mydomain.com/v1")
        ]
    );
}

/// S1.3: mail-auth 0.15.1 (`=` inside URIs is not quoted-printable).
#[test]
fn peer_mail_auth_s1_3() {
    let r = parse("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt?id=1");
    assert_eq!(
        r.rua,
        [https("https://reporting.example.com/v1/tlsrpt?id=1")]
    );
    let r = parse("v=TLSRPTv1; rua=https://r.example.com/tlsrpt?id=abc&token=xyz");
    assert_eq!(
        r.rua,
        [https("https://r.example.com/tlsrpt?id=abc&token=xyz")]
    );
    let r = assert_strict_valid("v=TLSRPTv1; rua=mailto:a@example.com , mailto:b=c@example.com ;");
    assert_eq!(
        r.rua,
        [
            mailto("mailto:a@example.com", "a@example.com"),
            mailto("mailto:b=c@example.com", "b=c@example.com")
        ]
    );
}

/// S14.2: mail-auth 0.13.3 as observed. Where it has BUGs or deviates from RFC 8460, we
/// assert the RFC behaviour and say why.
#[test]
fn peer_mail_auth_s14_2() {
    // Agreements.
    peer_mail_auth_s1_2();
    assert_eq!(
        parse_err("v=TLSRPTv1; rua=http://insecure.example/rpt"),
        RecordError::NoUsableRua
    );
    assert!(matches!(
        parse_err("rua=mailto:a@example.com; v=TLSRPTv1"),
        RecordError::NotTlsRptRecord { .. }
    ));
    assert!(matches!(
        parse_err("v=TLSRPTv1"),
        RecordError::MissingRua { .. }
    ));
    // BUG rows (quoted-printable decoding of "="): the URI is kept verbatim (RFC 3986).
    peer_mail_auth_s1_3();
    // mail-auth stops at the unknown scheme and loses c@: RFC 8460 §3 only says other schemes
    // are unsupported, so we keep going and deliver to both mailto URIs.
    let r = parse("v=TLSRPTv1; rua=mailto:a@example.com,ftp://x.example,mailto:c@example.com");
    assert_eq!(
        r.usable_rua().map(Rua::uri).collect::<Vec<_>>(),
        ["mailto:a@example.com", "mailto:c@example.com"]
    );
    // mail-auth accepts any case: %s"v=TLSRPTv1" and %s"rua=" are case-sensitive (RFC 7405).
    assert!(matches!(
        parse_err("v=tlsrptv1; RUA=MAILTO:A@EXAMPLE.COM"),
        RecordError::NotTlsRptRecord { .. }
    ));
    // mail-auth does not percent-decode: RFC 6068 §2 says the address is percent-encoded.
    let r = parse("v=TLSRPTv1; rua=mailto:a%40b@example.com");
    assert_eq!(
        r.rua,
        [mailto("mailto:a%40b@example.com", "a@b@example.com")]
    );
    // mail-auth ignores the second rua field; the project reading takes the union (warned).
    let text = "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com";
    assert_eq!(
        uris(&parse(text)),
        ["mailto:a@example.com", "mailto:b@example.com"]
    );
    assert_eq!(codes(text), ["duplicate-rua"]);
}

/// S15.3: mox `tlsrpt.ParseRecord` (strict). Its "good" inputs must parse; its "bad" inputs
/// must give an error or a `breaks_abnf` warning.
#[test]
fn peer_mox_s15_3() {
    let r = assert_strict_valid("v=TLSRPTv1; rua=mailto:tlsrpt@mox.example;");
    assert_eq!(uris(&r), ["mailto:tlsrpt@mox.example"]);

    // Trailing whitespace without a final ";" is outside the ABNF, yet mox accepts it: we
    // parse it too, with a breaks_abnf `trailing-whitespace` warning (parse_strict rejects it).
    let text = "v=TLSRPTv1; rua=mailto:tlsrpt@mox.example , \t\t https://mox.example/tlsrpt  ";
    assert_eq!(
        uris(&parse(text)),
        ["mailto:tlsrpt@mox.example", "https://mox.example/tlsrpt"]
    );
    assert_eq!(codes(text), ["trailing-whitespace"]);

    let r = assert_strict_valid("v=TLSRPTv1; rua=mailto:tlsrpt@mox.example; ext=yes");
    assert_eq!(r.extensions, [("ext".to_string(), "yes".to_string())]);

    // mox keeps the two rua fields as two lists; we take their union, in order, and warn
    // (advice only: the grammar allows a repeated field).
    let text = "v=TLSRPTv1 ; rua=mailto:x@x.example; rua=mailto:y@x.example";
    assert_eq!(
        uris(&parse(text)),
        ["mailto:x@x.example", "mailto:y@x.example"]
    );
    assert_eq!(codes(text), ["duplicate-rua"]);

    for bad in [
        "v=TLSRPTv0",
        "v=TLSRPTv10",
        "v=TLSRPTv2",
        "v=TLSRPTv1",
        "v=TLSRPTv1;",
        "v=TLSRPTv1; ext=1",
        "v=TLSRPTv1; rua=",
        "v=TLSRPTv1; rua=noscheme",
        "v=TLSRPTv1; rua=,, ,",
        "v=TLSRPTv1; rua=mailto:x@x.example; more=",
        "v=TLSRPTv1; rua=mailto:x@x.example; a12345678901234567890123456789012=1",
        "v=TLSRPTv1; rua=mailto:x@x.example; 1%=a",
        "v=TLSRPTv1; rua=mailto:x@x.example; test==",
        "v=TLSRPTv1; rua=mailto:x@x.example;;",
        "v=TLSRPTv1; rua=mailto:x@x.example other",
        "v=TLSRPTv1; rua=http://bad/%",
    ] {
        // All of these are errors for us, not merely warnings.
        assert!(TlsRptRecord::parse(bad).is_err(), "{bad:?}");
        let l = lint(bad);
        assert!(!l.is_valid() && !l.is_strict_valid(), "{bad:?}");
    }

    // Record{…}.String() == "v=TLSRPTv1; rua=mailto:x@mox.example; more=a; ext=2"
    let r = TlsRptRecord {
        rua: vec![mailto("mailto:x@mox.example", "x@mox.example")],
        extensions: vec![("more".into(), "a".into()), ("ext".into(), "2".into())],
    };
    assert_eq!(
        r.to_string(),
        "v=TLSRPTv1; rua=mailto:x@mox.example; more=a; ext=2"
    );
}

// ---------------------------------------------------------------------------------------------
// Corpus: every `tlsrpt-*` row of testdata/corpus/records.tsv.

/// Reviewed expectations: effective value → (valid, warning or error codes in order).
const CORPUS_EXPECT: &[(&str, bool, &[&str])] = &[
    (
        "v=TLSRPTv1;rua=mailto:tls-rua@mailcheck.service.ncsc.gov.uk",
        true,
        &[],
    ),
    ("v=TLSRPTv1;rua=mailto:postmaster@archlinux.org", true, &[]),
    (
        "v=TLSRPTv1; rua=mailto:openstreetmap-d@tlsrpt.report-uri.com",
        true,
        &[],
    ),
    (
        "v=TLSRPTv1; rua=mailto:smtp-tls-reports@guitard.ca",
        true,
        &[],
    ),
    // Trailing ";" is allowed by the grammar.
    ("v=TLSRPTv1;rua=mailto:reports@willeke.com;", true, &[]),
    // Template placeholder: `<` and `>` are not URI characters, so the record is unusable
    // until the placeholder is filled in.
    (
        "v=TLSRPTv1; rua=mailto:tls-rua@mailcheck.<your_domain.tld>",
        false,
        &["invalid-uri"],
    ),
    (
        "v=TLSRPTv1; rua=https://api.audit.alexsci.com/tlsrpt;",
        true,
        &[],
    ),
    // Published as a web file (no effect), but the text itself is a valid record.
    ("v=TLSRPTv1; rua=mailto:tlsrpt@excelsus.me", true, &[]),
    // Trailing comma: ungrammatical, tolerated (project reading).
    (
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,mailto:tlsrpt@example.net,",
        true,
        &["empty-uri"],
    ),
    (
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://tlsrpt.example.com/v1",
        true,
        &[],
    ),
    (
        "v=TLSRPTv1; rua=https://tlsrpt.example.com/v1,https://tlsrpt.example.net/v1",
        true,
        &[],
    ),
    (
        "v=TLSRPTv1; rua=mailto:tlsrpt@admin.example.com,https://reportbot.example.com:12345/tlsrpt;",
        true,
        &[],
    ),
    (
        "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt",
        true,
        &[],
    ),
    ("v=TLSRPTv1;rua=mailto:postmaster@example.org", true, &[]),
    // The generator's "disabled" branch: no rua.
    ("v=TLSRPTv1;", false, &["missing-rua"]),
    ("v=TLSRPTv1; rua=mailto:tlsrpt@mimecast.com;", true, &[]),
    (
        "v=TLSRPTv1; rua=mailto:tls-reports@alosralimited.com",
        true,
        &[],
    ),
    (
        "v=TLSRPTv1; rua=mailto:tls-reports@maxchernoff.ca",
        true,
        &[],
    ),
    ("v=TLSRPTv1; rua=mailto:tls-reports@edgerun.tech", true, &[]),
    (
        "v=TLSRPTv1; rua=mailto:uznqofwp@tls.eu.dmarcian.com",
        true,
        &[],
    ),
];

/// Effective values that describe generator output rather than being a record.
const CORPUS_SKIP: &[&str] = &[
    // `<list>` stands for a Terraform join of variable URIs.
    "v=TLSRPTv1; rua=<list>",
    // Two alternatives joined by "OR"; both are checked in `corpus_generator_alternatives`.
    "v=TLSRPTv1; rua=none;  OR  v=TLSRPTv1; ruf=...;",
];

#[test]
fn corpus_tlsrpt_records() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/corpus/records.tsv"
    );
    let tsv = std::fs::read_to_string(path).unwrap();
    let mut checked = 0;
    for (n, line) in tsv.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if line.starts_with('#') || cols.len() < 4 || !cols[0].starts_with("tlsrpt") {
            continue;
        }
        let effective = cols[3];
        if CORPUS_SKIP.contains(&effective) {
            continue;
        }
        let Some((_, valid, expect)) = CORPUS_EXPECT.iter().find(|(v, ..)| *v == effective) else {
            panic!(
                "records.tsv line {}: no reviewed expectation for {effective:?}",
                n + 1
            );
        };
        let l = lint(effective);
        assert_eq!(
            l.is_valid(),
            *valid,
            "line {}: {effective:?}: {:?}",
            n + 1,
            l.diagnostics
        );
        assert_eq!(
            l.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>(),
            *expect,
            "line {}: {effective:?}",
            n + 1
        );
        assert_eq!(TlsRptRecord::parse(effective).is_ok(), *valid);
        // The same text as one TXT RR among others.
        assert_eq!(select([[effective], ["v=spf1 -all"]]).is_ok(), *valid);
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} corpus rows checked");
}

#[test]
fn corpus_generator_alternatives() {
    // sjackson0109/tf-aws-mta-sts can emit `rua=none` (not a URI) or `ruf=` (not a TLS-RPT
    // field: an extension, so rua is missing).
    assert!(matches!(
        parse_err("v=TLSRPTv1; rua=none;"),
        RecordError::InvalidUri { .. }
    ));
    assert_eq!(
        parse_err("v=TLSRPTv1; ruf=mailto:a@x.example;"),
        RecordError::MissingRua {
            similar: Some("ruf".into())
        }
    );
}
