//! Property tests of the `_smtp._tls` record parser (RFC 8460 §3).

use proptest::prelude::*;
use tlsrpt::{Rua, TlsRptRecord, lint, select};

fn mailto_uri() -> impl Strategy<Value = String> {
    (
        "[a-z0-9._+-]{1,12}",
        "[a-z0-9-]{1,12}",
        "[a-z]{2,6}",
        "(%2B)?",
    )
        .prop_map(|(local, host, tld, enc)| format!("mailto:{local}{enc}@{host}.{tld}"))
}

fn https_uri() -> impl Strategy<Value = String> {
    (
        "[a-z0-9-]{1,12}",
        "(:[0-9]{1,5})?",
        "[A-Za-z0-9/._~=&?%-]{0,20}",
    )
        .prop_map(|(host, port, path)| {
            // Keep the path a valid URI: a `%` must start `%HH`.
            let path = path.replace('%', "%25");
            format!("https://{host}.example{port}/{path}")
        })
}

fn other_uri() -> impl Strategy<Value = String> {
    ("(http|ftp|urn|Xy-1\\.z)", "[a-z0-9./]{1,12}")
        .prop_map(|(scheme, rest)| format!("{scheme}:{rest}"))
}

fn any_uri() -> impl Strategy<Value = String> {
    prop_oneof![3 => mailto_uri(), 3 => https_uri(), 1 => other_uri()]
}

/// 1 to 6 distinct URIs, at least one usable.
fn uri_list() -> impl Strategy<Value = Vec<String>> {
    (
        mailto_uri(),
        prop::collection::vec(any_uri(), 0..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(usable, mut rest, at)| {
            let i = at.index(rest.len() + 1);
            rest.insert(i, usable);
            let mut seen = std::collections::HashSet::new();
            rest.retain(|u| seen.insert(u.clone()));
            rest
        })
}

fn extension() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z0-9][A-Za-z0-9_.-]{0,31}",
        "[\\x21-\\x3a\\x3c\\x3e-\\x7e]{1,16}",
    )
        .prop_filter("rua is the rua field", |(n, _)| n != "rua")
}

fn wsp() -> impl Strategy<Value = String> {
    "[ \t]{0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The canonical form parses back to the same record, strictly and without warnings.
    #[test]
    fn display_parse_round_trip(
        uris in uri_list(),
        extensions in prop::collection::vec(extension(), 0..4),
    ) {
        let rua: Vec<Rua> = uris.iter().map(|u| Rua::parse(u).unwrap()).collect();
        let record = TlsRptRecord { rua, extensions };
        let text = record.to_string();
        prop_assert_eq!(TlsRptRecord::parse_strict(&text), Ok(record.clone()));
        let l = lint(&text);
        prop_assert!(l.is_strict_valid(), "{}: {:?}", text, l.diagnostics);
        prop_assert_eq!(l.record.as_ref(), Some(&record));
        prop_assert_eq!(record.to_string(), text);
    }

    /// A valid record written with arbitrary grammatical whitespace, extension placement and
    /// final `;` yields exactly its k URIs, in order.
    #[test]
    fn k_uris_in_k_uris_out(
        uris in uri_list(),
        seps in prop::collection::vec((wsp(), wsp()), 6),
        delims in prop::collection::vec((wsp(), wsp()), 8),
        before in prop::collection::vec(extension(), 0..3),
        after in prop::collection::vec(extension(), 0..3),
        final_delim in any::<bool>(),
    ) {
        let mut list = String::new();
        for (i, u) in uris.iter().enumerate() {
            if i > 0 {
                let (a, b) = &seps[i % seps.len()];
                list.push_str(&format!("{a},{b}"));
            }
            list.push_str(u);
        }
        let mut fields: Vec<String> = before.iter().map(|(n, v)| format!("{n}={v}")).collect();
        fields.push(format!("rua={list}"));
        fields.extend(after.iter().map(|(n, v)| format!("{n}={v}")));
        let mut text = String::from("v=TLSRPTv1");
        for (i, f) in fields.iter().enumerate() {
            let (a, b) = &delims[i % delims.len()];
            text.push_str(&format!("{a};{b}{f}"));
        }
        if final_delim {
            let (a, b) = &delims[7];
            text.push_str(&format!("{a};{b}"));
        }
        let record = TlsRptRecord::parse_strict(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let got: Vec<&str> = record.rua.iter().map(Rua::uri).collect();
        prop_assert_eq!(got, uris.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(record.extensions.len(), before.len() + after.len());
        // One RR among others, split into strings anywhere.
        let cut = text.len() / 2;
        let (x, y) = text.split_at(cut);
        prop_assert_eq!(select([vec!["v=spf1 -all"], vec![x, y]]), Ok(record));
    }

    /// Arbitrary strings never panic; parse, strict parse and lint agree.
    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,80}", tail in "[ -~\t]{0,60}") {
        for text in [s.clone(), format!("v=TLSRPTv1;{tail}"), format!("v=TLSRPTv1; rua={tail}")] {
            let parsed = TlsRptRecord::parse(&text);
            let l = lint(&text);
            prop_assert_eq!(parsed.is_ok(), l.is_valid(), "{:?}: {:?}", text, l.diagnostics);
            prop_assert_eq!(parsed.as_ref().ok(), l.record.as_ref());
            if let Ok(strict) = TlsRptRecord::parse_strict(&text) {
                prop_assert!(l.is_strict_valid());
                prop_assert_eq!(Ok(&strict), parsed.as_ref());
            }
            if let Ok(record) = parsed {
                // What we accept prints to a canonical form we accept strictly.
                let canonical = record.to_string();
                prop_assert_eq!(TlsRptRecord::parse_strict(&canonical), Ok(record));
            }
        }
    }

    /// Arbitrary bytes, split into RRs and strings, never panic `select`.
    #[test]
    fn arbitrary_bytes_never_panic(rrs in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4), 0..4)) {
        let _ = select(&rrs);
        let mut prefixed = rrs.clone();
        prefixed.push(vec![b"v=TLSRPTv1;".to_vec(), rrs.concat().concat()]);
        let _ = select(&prefixed);
    }
}
