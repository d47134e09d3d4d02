//! The intake's look at a report before the store parses it: `report-id` and the
//! `policies[].policy.policy-domain` strings (RFC 8460 §4.4), and the count of objects and
//! arrays, read by streaming over the JSON without building a tree (a tree of a 15 MB
//! report took about 200× its size).

use std::cell::{Cell, RefCell};

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::BodyError;

/// The `visit_*` methods of a visitor for scalars it skips: each returns `$value`
/// (`str` first to skip strings too).
macro_rules! skip_scalars {
    (str, $value:expr) => {
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        skip_scalars!($value);
    };
    ($value:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// What the intake reads from a report without building a JSON tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scanned {
    /// The `report-id` (RFC 8460 §4.4).
    pub(super) id: String,
    /// Objects and arrays in the report.
    pub(super) containers: usize,
    /// Every distinct `policies[].policy.policy-domain` string, lower case, without a
    /// trailing dot (RFC 8460 §4.4).
    pub(super) domains: Vec<String>,
}

/// The `report-id` of a report and the count of its objects and arrays ([`scan`]).
#[cfg(test)]
pub(super) fn report_id(json: &[u8]) -> Result<(String, usize), BodyError> {
    scan(json).map(|s| (s.id, s.containers))
}

/// Reads a report: it must be a JSON object with a non-empty string `report-id` (RFC 8460
/// §4.4). Streams over the JSON; keeps only the id and the policy domains, and counts the
/// objects and arrays.
pub(super) fn scan(json: &[u8]) -> Result<Scanned, BodyError> {
    // A UTF-8 byte order mark is tolerated, as the report store does.
    let json = json.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(json);
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<IgnoredAny>(json).is_ok() => {
            return Err(BodyError::NotObject);
        }
        _ => {
            let e = serde_json::from_slice::<IgnoredAny>(json).err();
            return Err(BodyError::Json(
                e.unwrap_or_else(|| serde::de::Error::custom("empty"))
                    .into(),
            ));
        }
    }
    let containers = Cell::new(1);
    let domains = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(json);
    let id = de
        .deserialize_map(ReportIdVisitor {
            count: &containers,
            domains: &domains,
        })
        .map_err(|e| {
            if e.to_string().starts_with(DUPLICATE) {
                BodyError::DuplicateReportId
            } else {
                BodyError::Json(e.into())
            }
        })?;
    de.end().map_err(|e| BodyError::Json(e.into()))?;
    match id {
        Some(id) if !id.is_empty() => Ok(Scanned {
            id,
            containers: containers.get(),
            domains: domains.into_inner(),
        }),
        _ => Err(BodyError::NoReportId),
    }
}

const DUPLICATE: &str = "duplicate report-id";

/// From the `policies` member to the policy domains: `[ { "policy": { "policy-domain" } } ]`
/// (RFC 8460 §4.4).
const POLICY_DOMAIN_PATH: &[Step] = &[Step::Each, Step::Key("policy"), Step::Key("policy-domain")];

/// The top-level object: finds `report-id` and the policy domains, skips every other
/// member without keeping it.
struct ReportIdVisitor<'a> {
    count: &'a Cell<usize>,
    domains: &'a RefCell<Vec<String>>,
}

impl<'de> Visitor<'de> for ReportIdVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a TLS-RPT report object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id: Option<Option<String>> = None;
        while let Some(key) = map.next_key_seed(KeyIn(&["report-id", "policies"]))? {
            match key {
                Some(0) => {
                    if id.is_some() {
                        return Err(serde::de::Error::custom(DUPLICATE));
                    }
                    id = Some(map.next_value_seed(StringOrSkip(self.count))?);
                }
                Some(_) => map.next_value_seed(Follow {
                    path: POLICY_DOMAIN_PATH,
                    count: self.count,
                    found: self.domains,
                })?,
                None => map.next_value_seed(Skip(self.count))?,
            }
        }
        Ok(id.flatten())
    }
}

/// A member name: its index in the list, or `None` for another name.
struct KeyIn(&'static [&'static str]);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIn {
    type Value = Option<usize>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIn {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|k| *k == v))
    }
}

/// One step into a JSON value.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The member with this name.
    Key(&'static str),
    /// Every element of an array.
    Each,
}

/// Follows `path` into a value and collects the distinct strings at its end (lower case,
/// without a trailing dot: domain names); everything else is skipped and counted like
/// [`Skip`] does.
struct Follow<'a> {
    path: &'static [Step],
    count: &'a Cell<usize>,
    found: &'a RefCell<Vec<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Follow<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Follow<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        if self.path.is_empty() {
            let name = v.trim_end_matches('.').to_ascii_lowercase();
            let mut found = self.found.borrow_mut();
            if !found.contains(&name) {
                found.push(name);
            }
        }
        Ok(())
    }
    skip_scalars!(());
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Each, rest)) = self.path.split_first() else {
            return Skip(self.count).visit_seq(seq);
        };
        self.count.set(self.count.get().saturating_add(1));
        while seq
            .next_element_seed(Follow {
                path: rest,
                count: self.count,
                found: self.found,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(name), rest)) = self.path.split_first() else {
            return Skip(self.count).visit_map(map);
        };
        self.count.set(self.count.get().saturating_add(1));
        while let Some(key) = map.next_key_seed(KeyIn(std::slice::from_ref(name)))? {
            if key.is_some() {
                map.next_value_seed(Follow {
                    path: rest,
                    count: self.count,
                    found: self.found,
                })?;
            } else {
                map.next_value_seed(Skip(self.count))?;
            }
        }
        Ok(())
    }
}

/// The `report-id` value: the string, or `None` for anything else (skipped, not kept).
struct StringOrSkip<'a>(&'a Cell<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for StringOrSkip<'_> {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringOrSkip<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a report-id")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    skip_scalars!(None);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip(self.0).visit_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip(self.0).visit_map(map).map(|()| None)
    }
}

/// Any value, skipped without keeping it; its objects and arrays are counted. Depth is
/// bounded by serde_json's recursion limit (128).
struct Skip<'a>(&'a Cell<usize>);

impl<'de> serde::de::DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    skip_scalars!(str, ());
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.set(self.0.get().saturating_add(1));
        while seq.next_element_seed(Skip(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.set(self.0.get().saturating_add(1));
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip(self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_id_required() {
        assert_eq!(
            report_id(br#"{"report-id":"x"}"#).unwrap(),
            ("x".to_string(), 1)
        );
        // Objects and arrays are counted, also inside a report-id that is not a string.
        assert_eq!(
            report_id(br#"{"a":[{},{"b":[1,[]]}],"report-id":"x","c":{"d":"e"}}"#)
                .unwrap()
                .1,
            7
        );
        assert_eq!(
            report_id(br#"{"report-id":[{}],"x":1}"#),
            Err(BodyError::NoReportId)
        );
        assert_eq!(
            report_id(b"\xEF\xBB\xBF {\"a\":[{\"report-id\":1}],\"report-id\":\"y\\u0031\"}")
                .unwrap()
                .0,
            "y1"
        );
        assert_eq!(report_id(br#"[1]"#), Err(BodyError::NotObject));
        assert_eq!(report_id(br#""x""#), Err(BodyError::NotObject));
        assert_eq!(report_id(br#"{"report-id":1}"#), Err(BodyError::NoReportId));
        assert_eq!(
            report_id(br#"{"report-id":{"report-id":"x"}}"#),
            Err(BodyError::NoReportId)
        );
        assert_eq!(
            report_id(br#"{"report-id":""}"#),
            Err(BodyError::NoReportId)
        );
        assert_eq!(report_id(br#"{"policies":[]}"#), Err(BodyError::NoReportId));
        assert_eq!(
            report_id(br#"{"report-id":"a","report-id":"b"}"#),
            Err(BodyError::DuplicateReportId)
        );
        for bad in [
            &b"{"[..],
            b"",
            b"  ",
            b"{\"report-id\":\"x\"} x",
            b"{\"report-id\":\"x\",}",
        ] {
            assert!(matches!(report_id(bad), Err(BodyError::Json(_))), "{bad:?}");
        }
    }

    // RFC 8460 §4.4: the policy domains are read on the way, distinct and canonical, from
    // `policies[].policy.policy-domain` only; containers are counted as before.
    #[test]
    fn scan_finds_policy_domains() {
        let json = br#"{"policy-domain":"top.test","policies":[{"policy":{"policy-domain":"A.test."},"summary":{"policy-domain":"x.test"}},{"policy":{"policy-domain":"a.test","mx-host":["m"]}},{"policy":{"policy-domain":7}},[],"s"],"report-id":"r"}"#;
        let scanned = scan(json).unwrap();
        assert_eq!(scanned.domains, ["a.test"]);
        assert_eq!(scanned.containers, 11);
        assert_eq!(
            scan(br#"{"report-id":"r"}"#).unwrap().domains,
            Vec::<String>::new()
        );
    }
}
