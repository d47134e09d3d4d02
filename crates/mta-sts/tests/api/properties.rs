//! Property tests: canonical forms round-trip, arbitrary input never panics, and a wildcard
//! matches exactly the hosts with one more label.

use mta_sts::policy;
use mta_sts::record::{self, StsRecord};
use mta_sts::{Mode, MxPattern, Policy};
use proptest::prelude::*;

/// An LDH label that is not reserved: hyphens in the third and fourth positions mark an
/// A-label (`xn--`, whose Punycode the generator would get wrong) or a reserved label
/// (RFC 5891 §4.2.3.1), which the parser rightly refuses.
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
        .prop_filter("reserved or A-label", |l| l.get(2..4) != Some("--"))
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    (any::<bool>(), domain()).prop_map(|(wild, d)| if wild { format!("*.{d}") } else { d })
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    let mode = prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)];
    let ext = prop::collection::vec(("x[a-z0-9_.-]{0,20}", "[!-~]([ !-~]{0,20}[!-~])?"), 0..3);
    (
        mode,
        0u64..=9_999_999_999,
        prop::collection::btree_set(pattern(), 1..6),
        ext,
    )
        .prop_map(|(mode, max_age, mx, ext)| {
            let mut extensions: Vec<(String, String)> = Vec::new();
            for (k, v) in ext {
                if !extensions.iter().any(|(name, _)| *name == k) {
                    extensions.push((k, v));
                }
            }
            Policy {
                mode,
                max_age,
                mx: mx
                    .iter()
                    .map(|p| MxPattern::parse(p).expect("generated pattern"))
                    .collect(),
                extensions,
            }
        })
}

proptest! {
    #[test]
    fn policy_display_round_trips(p in policy_strategy()) {
        let text = p.to_string();
        let lint = policy::lint(text.as_bytes());
        prop_assert!(lint.diagnostics.iter().all(|d| !d.breaks_abnf), "{:?}", lint.diagnostics);
        prop_assert_eq!(lint.policy, Some(p));
    }

    #[test]
    fn record_display_round_trips(id in "[A-Za-z0-9]{1,32}", ext in prop::collection::vec(("[a-z0-9][a-z0-9_.-]{0,31}", "[!-:<>-~]{1,20}"), 0..3)) {
        let ext: Vec<(String, String)> = ext.into_iter().filter(|(k, _)| k != "id").collect();
        let r = StsRecord { id, extensions: ext };
        prop_assert_eq!(StsRecord::parse(&r.to_string()), Ok(r.clone()));
        prop_assert_eq!(StsRecord::select([r.to_string()]), Ok(r));
    }

    #[test]
    fn policy_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let lint = policy::lint(&bytes);
        prop_assert_eq!(lint.policy.is_some(), lint.diagnostics.iter().all(|d| !d.is_error()));
    }

    #[test]
    fn policy_parser_never_panics_on_policy_like_text(text in "((version|mode|mx|max_age|Mode|x)[: \t]{0,3}[ -~\t\r\u{e9}\u{feff}]{0,20}(\r?\n)?){0,8}") {
        let _ = policy::lint(text.as_bytes());
    }

    #[test]
    fn record_parser_never_panics(text in "(v=STSv1)?[ -~\t\u{e9}]{0,60}", bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        let lint = record::lint(&text);
        prop_assert_eq!(lint.record.is_some(), lint.error().is_none());
        let _ = StsRecord::select([bytes.as_slice(), text.as_bytes()]);
    }

    #[test]
    fn wildcard_matches_exactly_one_more_label(base in domain(), first in label(), second in label(), host_case in any::<bool>()) {
        let p = MxPattern::parse(&format!("*.{base}")).expect("valid");
        let one = format!("{first}.{base}");
        let one = if host_case { one.to_ascii_uppercase() } else { one };
        prop_assert!(p.matches(&one));
        let with_dot = format!("{one}.");
        let two_more = format!("{second}.{first}.{base}");
        let other_base = format!("{first}.x{base}");
        prop_assert!(p.matches(&with_dot));
        prop_assert!(!p.matches(&base));
        prop_assert!(!p.matches(&two_more));
        prop_assert!(!p.matches(&other_base));
    }

    #[test]
    fn exact_pattern_matches_only_itself(name in domain(), other in domain()) {
        let p = MxPattern::parse(&name).expect("valid");
        prop_assert!(p.matches(&name.to_ascii_uppercase()));
        prop_assert_eq!(p.matches(&other), other == name);
    }
}
