//! The DKIM parsers (RFC 6376 §3.2 tag lists, §3.5 `DKIM-Signature`, §3.6.1 key records) on
//! arbitrary input: no panic, and well-formed tag lists parse back to their tags.

// ---- the DKIM-Signature tag parser on arbitrary input --------------------------------------

mod tag_parser {
    use mta_sts_dkim::{KeyRecord, Signature, SignedMessage, parse_tag_list};
    use proptest::prelude::*;

    proptest! {
        /// RFC 6376 §3.2: arbitrary bytes never panic the parsers.
        #[test]
        fn rfc6376_3_2_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_tag_list(&bytes);
            let _ = Signature::parse(&bytes);
            let _ = KeyRecord::parse(&bytes);
            let message = [b"DKIM-Signature:".as_slice(), &bytes, b"\r\n\r\nx\r\n"].concat();
            let message = SignedMessage::new(&message);
            for sig in message.signatures().into_iter().flatten() {
                let _ = message.check_body(&sig, 0);
            }
        }

        /// Well-formed tag lists, with folding whitespace anywhere it is allowed, parse back
        /// to the same tags.
        #[test]
        fn rfc6376_3_2_tag_lists_round_trip(
            tags in proptest::collection::btree_map("[a-z][a-z0-9_]{0,5}", "[!-:<-~]{1,12}", 1..8),
            fws in prop::sample::select(vec!["", " ", "\t", "\r\n ", "  "]),
            trailing in any::<bool>(),
        ) {
            let mut text = tags
                .iter()
                .map(|(k, v)| format!("{fws}{k}{fws}={fws}{v}{fws}"))
                .collect::<Vec<_>>()
                .join(";");
            if trailing {
                text.push(';');
            }
            let parsed = parse_tag_list(text.as_bytes()).unwrap();
            let expected: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(parsed, expected);
        }
    }
}
