//! RFC 8461 §3.1: the `_mta-sts` TXT record. One test per normative rule; ids in comments
//! refer to docs/rfc-requirements.md.

use mta_sts::record::{self, RecordError, SelectError, StsRecord, concat, is_candidate};

fn id(text: &str) -> String {
    StsRecord::parse(text)
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
        .id
}

fn err(text: &str) -> RecordError {
    StsRecord::parse(text).expect_err(text)
}

// STS-3.1-a: "MTA-STS TXT records MUST be US-ASCII"
#[test]
fn rfc8461_3_1_must_be_us_ascii() {
    assert_eq!(
        err("v=STSv1; id=policy1; note=café;"),
        RecordError::NotAscii { position: 29 }
    );
    assert!(matches!(
        err("v=STSv1; id=café"),
        RecordError::NotAscii { .. }
    ));
    // typographic quotes pasted from a web page become part of the TXT data
    assert!(matches!(
        err("“v=STSv1; id=202301011200;”"),
        RecordError::NotAscii { position: 0 }
    ));
    assert!(matches!(
        StsRecord::parse_bytes(b"v=STSv1; id=a\xff"),
        Err(RecordError::NotAscii { position: 13 })
    ));
}

// STS-3.1-b: `v`: only "STSv1" is supported (case-sensitive, %s)
#[test]
fn rfc8461_3_1_version_is_exactly_stsv1() {
    assert_eq!(id("v=STSv1; id=a"), "a");
    for bad in [
        "v=STSv2; id=a",
        "v=STSv0; id=a",
        "v=STSv10; id=a",
        "v=STSv12;id=20180907T090909;",
        "v=stsv1; id=a",
        "V=STSv1; id=a",
        "v=STSv1",
    ] {
        assert!(
            matches!(err(bad), RecordError::NotStsRecord { .. }),
            "{bad}"
        );
    }
}

// STS-3.1-c: the id is 1*32(ALPHA / DIGIT)
#[test]
fn rfc8461_3_1_id_is_1_to_32_alphanumerics() {
    assert_eq!(id("v=STSv1; id=a"), "a");
    assert_eq!(
        id(&format!("v=STSv1; id={}", "7".repeat(32))),
        "7".repeat(32)
    );
    assert_eq!(id("v=STSv1; id=20160831085700Z;"), "20160831085700Z");
    for bad in [
        "v=STSv1; id=",
        "v=STSv1; id=;",
        "v=STSv1; id=2024-01-01",
        "v=STSv1; id=bad-value;",
        "v=STSv1; id=a_b",
        "v=STSv1; id=a.b",
        "v=STSv1; id=a:b",
    ] {
        assert!(matches!(err(bad), RecordError::InvalidId { .. }), "{bad}");
    }
    assert!(matches!(
        err(&format!("v=STSv1; id={}", "1".repeat(33))),
        RecordError::InvalidId { .. }
    ));
}

// STS-3.1-c: the id is required
#[test]
fn rfc8461_3_1_id_is_required() {
    assert!(matches!(err("v=STSv1;"), RecordError::MissingId { .. }));
    assert!(matches!(
        err("v=STSv1; ext=1"),
        RecordError::MissingId { .. }
    ));
    assert!(matches!(
        err("v=STSv1; x-note=ok;"),
        RecordError::MissingId { .. }
    ));
    // `%s"id="`: `ID=` is an extension, so the id is missing; the message says why.
    let e = err("v=STSv1; ID=abc");
    assert!(matches!(e, RecordError::MissingId { .. }));
    assert!(e.to_string().contains("case-sensitive"), "{e}");
}

// STS-3.1-e: the record MUST begin with the sts-version field; other fields in any order
#[test]
fn rfc8461_3_1_version_first_other_fields_any_order() {
    assert!(matches!(
        err("id=20180907T090909; v=STSv1;"),
        RecordError::NotStsRecord { .. }
    ));
    assert!(matches!(
        err("  v=STSv1; id=abc"),
        RecordError::NotStsRecord { .. }
    ));
    let r = StsRecord::parse("v=STSv1; ext=1; id=abc; more=x").unwrap();
    assert_eq!(r.id, "abc");
    assert_eq!(
        r.extensions,
        vec![("ext".into(), "1".into()), ("more".into(), "x".into())]
    );
}

// sts-field-delim = *WSP ";" *WSP; [sts-field-delim] at the end
#[test]
fn rfc8461_3_1_delimiters_allow_wsp_and_a_final_semicolon() {
    assert_eq!(id("v=STSv1;id=abc"), "abc");
    assert_eq!(id("v=STSv1  ;    id=foo"), "foo");
    assert_eq!(id("v=STSv1 \t; \tid=policy1 \t;"), "policy1");
    assert_eq!(id("v=STSv1; id=abc;"), "abc");
    assert_eq!(id("v=STSv1; id=abc;  \t"), "abc");
    assert_eq!(id("v=STSv1  ;    id=foo; unrelated=1"), "foo");
}

#[test]
fn rfc8461_3_1_empty_field_is_invalid() {
    assert!(matches!(
        err("v=STSv1; id=a;;"),
        RecordError::EmptyField { .. }
    ));
    assert!(matches!(
        err("v=STSv1; id=20160831085700Z;;;"),
        RecordError::EmptyField { .. }
    ));
    assert!(matches!(
        err("v=STSv1;; id=a"),
        RecordError::EmptyField { .. }
    ));
}

#[test]
fn rfc8461_3_1_trailing_whitespace_without_delimiter_is_invalid() {
    assert_eq!(err("v=STSv1; id=policy1 "), RecordError::TrailingWhitespace);
    assert_eq!(
        err("v=STSv1;        id=20160831085700Z   "),
        RecordError::TrailingWhitespace
    );
}

#[test]
fn rfc8461_3_1_fields_need_delimiters() {
    assert!(matches!(
        err("v=STSv1;    id=foo include=foo.com"),
        RecordError::MissingDelimiter { .. }
    ));
    assert!(matches!(
        err("v=STSv1; id = abc"),
        RecordError::InvalidField { .. }
    ));
    assert!(matches!(
        err("v=STSv1;    id=foo include"),
        RecordError::MissingDelimiter { .. }
    ));
}

// STS-3.2-m: extensions are accepted and ignored when syntactically valid
#[test]
fn rfc8461_3_2_unknown_extensions_are_ignored() {
    let r = StsRecord::parse("v=STSv1; id=a; more=a; ext=2").unwrap();
    assert_eq!(r.id, "a");
    assert_eq!(r.extensions.len(), 2);
    assert_eq!(id(&format!("v=STSv1; id=a; {}=1", "a".repeat(32))), "a");
    assert_eq!(
        id("v=STSv1; id=a; x=!\"#$%&'()*+,-./0123456789:<>?@[]^_`{|}~"),
        "a"
    );
}

#[test]
fn rfc8461_3_1_invalid_extensions_make_the_record_invalid() {
    for bad in [
        "v=STSv1; id=a; more=",
        "v=STSv1; id=a; a12345678901234567890123456789012=1",
        "v=STSv1; id=a; 1%=a",
        "v=STSv1; id=a; test==",
        "v=STSv1; id=a; _x=1",
        "v=STSv1; id=a; =1",
        "v=STSv1; id=policy1; note=has space;",
        "v=STSv1; id=a; note",
    ] {
        let e = err(bad);
        assert!(
            matches!(
                e,
                RecordError::InvalidField { .. } | RecordError::MissingDelimiter { .. }
            ),
            "{bad}: {e:?}"
        );
    }
}

// STS-3.2-n: duplicate non-repeated fields: the first wins (applied to TXT `id`)
#[test]
fn rfc8461_3_2_duplicate_id_first_wins_with_warning() {
    let lint = record::lint("v=STSv1; id=abc; id=def");
    assert_eq!(lint.record.as_ref().map(|r| r.id.as_str()), Some("abc"));
    assert_eq!(lint.diagnostics.len(), 1);
    assert_eq!(lint.diagnostics[0].code, "duplicate-id");
    assert!(!lint.diagnostics[0].is_error());
}

// STS-3.1-f/g: discard records not beginning with "v=STSv1;", exactly one must remain
#[test]
fn rfc8461_3_1_selection_discards_unrelated_records() {
    assert_eq!(
        StsRecord::select(["verification=abc", "v=STSv1; id=policy1;"])
            .unwrap()
            .id,
        "policy1"
    );
    assert_eq!(
        StsRecord::select(["abc", "v=STSv1; id=blah;"]).unwrap().id,
        "blah"
    );
    assert_eq!(
        StsRecord::select(["v=spf1 -all", "v=STSv1; id=1"])
            .unwrap()
            .id,
        "1"
    );
}

#[test]
fn rfc8461_3_1_selection_zero_records_is_no_policy() {
    assert_eq!(
        StsRecord::select(Vec::<&str>::new()),
        Err(SelectError::NoRecord)
    );
    assert_eq!(
        StsRecord::select(["abc", "def"]),
        Err(SelectError::NoRecord)
    );
    assert_eq!(StsRecord::select(["v=STSv1"]), Err(SelectError::NoRecord));
    assert_eq!(
        StsRecord::select(["id=1; v=STSv1;"]),
        Err(SelectError::NoRecord)
    );
}

#[test]
fn rfc8461_3_1_selection_two_records_is_no_policy() {
    assert_eq!(
        StsRecord::select(["v=STSv1; id=policy1;", "v=STSv1; id=policy2;"]),
        Err(SelectError::MultipleRecords(2))
    );
    // even with the same id
    assert_eq!(
        StsRecord::select(["v=STSv1; id=a;", "v=STSv1; id=a;"]),
        Err(SelectError::MultipleRecords(2))
    );
    // erratum 6285 reading: `v=STSv1 ;` is a candidate too (TXT-29)
    assert_eq!(
        StsRecord::select(["v=STSv1; id=a;", "v=STSv1 ; id=b;"]),
        Err(SelectError::MultipleRecords(2))
    );
}

#[test]
fn rfc8461_3_1_selection_one_invalid_record_is_no_policy() {
    assert!(matches!(
        StsRecord::select(["v=STSv1; id=bad-value;"]),
        Err(SelectError::Invalid(RecordError::InvalidId { .. }))
    ));
    assert!(matches!(
        StsRecord::select(["v=STSv1; id=a "]),
        Err(SelectError::Invalid(RecordError::TrailingWhitespace))
    ));
}

#[test]
fn rfc8461_3_1_discard_rule_prefix_allows_wsp_before_semicolon() {
    assert!(is_candidate(b"v=STSv1;"));
    assert!(is_candidate(b"v=STSv1 \t;id=1"));
    assert!(!is_candidate(b"v=STSv1"));
    assert!(!is_candidate(b"v=STSv1 id=1;"));
    assert!(!is_candidate(b"v=STSv12;"));
    assert!(!is_candidate(b" v=STSv1;"));
}

// STS-3.1-i: multiple strings of one RR are concatenated without spaces
#[test]
fn rfc8461_3_1_strings_are_concatenated_without_spaces() {
    let rr = concat(&["v=STSv1; id=", "policy1;"]);
    assert_eq!(StsRecord::select([rr]).unwrap().id, "policy1");
    let rr = concat(&[b"v=STSv1; id=ab".as_slice(), b"c"]);
    assert_eq!(StsRecord::select([rr]).unwrap().id, "abc");
    // a record longer than 255 octets arrives as several strings
    let long_ext = format!("v=STSv1; id=1; x={}", "y".repeat(300));
    let (a, b) = long_ext.split_at(255);
    assert_eq!(
        StsRecord::select([concat(&[a, b])]).unwrap().extensions[0]
            .1
            .len(),
        300
    );
}

#[test]
fn canonical_form_round_trips() {
    let r = StsRecord::parse("v=STSv1 ;id=a;more=a;\text=2;").unwrap();
    assert_eq!(r.to_string(), "v=STSv1; id=a; more=a; ext=2");
    assert_eq!(StsRecord::parse(&r.to_string()).unwrap(), r);
}

#[test]
fn every_error_message_says_how_to_fix_it() {
    for bad in [
        "",
        "v=STSv1",
        "V=STSv1; id=1",
        "v=STSv1; id=a-b",
        "v=STSv1; id=a;;",
        "v=STSv1; id=a ",
        "v=STSv1; x y",
        "v=STSv1; id=é",
    ] {
        let lint = record::lint(bad);
        let d = lint.diagnostics.last().expect("an error");
        assert!(d.is_error(), "{bad}");
        assert!(d.message.contains(':'), "{bad}: {}", d.message);
        assert_eq!(Some(d.code), lint.error().map(RecordError::code));
    }
}
