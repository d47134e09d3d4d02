//! A YAML document as postfix-mta-sts-resolver reads it: parsed by yaml-rust2's event parser,
//! with plain scalars typed by the YAML 1.1 rules of the peer's PyYAML (`yaml.safe_load`),
//! not YAML 1.2's. The two differ where it matters for its configuration: `mode: 0666` is the
//! octal 438 and `reuse_port: yes` is `true` to PyYAML, the decimal 666 and a string to a
//! YAML 1.2 loader.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What the node holds.
    pub kind: Kind,
    /// 1-based line of the node in the file.
    pub line: usize,
}

/// The types `yaml.safe_load` gives a configuration file's nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// `true`, `yes`, `on`, `false`, `no`, `off` in their three spellings.
    Bool(bool),
    /// Decimal, `0`-prefixed octal, `0x`, `0b` or sexagesimal integers.
    Int(i64),
    /// Numbers with a `.`, `.inf`, `.nan`.
    Float(f64),
    /// Any other scalar, and every quoted or block scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Value>),
    /// A mapping; on duplicate keys the last wins, as in PyYAML ([`Value::get`]).
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The value of `key` when this is a mapping (the last one if the key repeats).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The keys of a mapping, each once, in file order (empty for other nodes).
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        if let Kind::Map(entries) = &self.kind {
            for (k, _) in entries {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        keys
    }

    /// The YAML type name of the node, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// The file is not YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The parser's description.
    pub message: String,
}

/// Parses the first document of `text` (as `yaml.safe_load` does; an empty file is
/// [`Kind::Null`]).
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| YamlError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Value {
        kind: Kind::Null,
        line: 1,
    }))
}

/// A collection being built: its items (a mapping's pending key waits in `key`).
enum Frame {
    Seq {
        anchor: usize,
        line: usize,
        items: Vec<Value>,
    },
    Map {
        anchor: usize,
        line: usize,
        entries: Vec<(String, Value)>,
        key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    root: Option<Value>,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, message: &str) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                line: mark.line(),
                column: mark.col() + 1,
                message: message.to_owned(),
            });
        }
    }

    /// Places a finished node in its parent (or as the document).
    fn complete(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(value);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, value)),
                None => match value.kind {
                    Kind::Str(s) => *key = Some(s),
                    Kind::Null => *key = Some(String::new()),
                    Kind::Bool(b) => *key = Some(b.to_string()),
                    Kind::Int(i) => *key = Some(i.to_string()),
                    Kind::Float(f) => *key = Some(f.to_string()),
                    Kind::Seq(_) | Kind::Map(_) => {
                        self.fail(mark, "a mapping key must be a scalar");
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let kind = resolve(&text, style, tag.as_ref());
                self.complete(Value { kind, line }, anchor, mark);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(value) => self.complete(value, 0, mark),
                None => self.fail(mark, "alias to an unknown anchor"),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                anchor,
                line,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                anchor,
                line,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    anchor,
                    line,
                    items,
                }) => self.complete(
                    Value {
                        kind: Kind::Seq(items),
                        line,
                    },
                    anchor,
                    mark,
                ),
                Some(Frame::Map {
                    anchor,
                    line,
                    entries,
                    ..
                }) => self.complete(
                    Value {
                        kind: Kind::Map(entries),
                        line,
                    },
                    anchor,
                    mark,
                ),
                None => self.fail(mark, "unbalanced collection end"),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Types a scalar: quoted and block scalars are strings, `!!str` too; plain scalars follow
/// PyYAML's YAML 1.1 resolver (null, bool, int, float, else string).
fn resolve(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Kind {
    let tagged = tag.map(|t| t.suffix.trim_start_matches("tag:yaml.org,2002:"));
    if style != TScalarStyle::Plain || tagged == Some("str") {
        return Kind::Str(text.to_owned());
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Kind::Null;
    }
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Kind::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Kind::Bool(false);
        }
        _ => {}
    }
    if let Some(i) = yaml11_int(text) {
        return Kind::Int(i);
    }
    if let Some(f) = yaml11_float(text) {
        return Kind::Float(f);
    }
    Kind::Str(text.to_owned())
}

/// YAML 1.1 `int`: `[-+]?0b[01_]+`, `[-+]?0[0-7_]+` (octal), `[-+]?(0|[1-9][0-9_]*)`,
/// `[-+]?0x[0-9a-fA-F_]+`, `[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+` (base 60).
fn yaml11_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = |s: &str, radix: u32| -> Option<i64> {
        let clean: String = s.chars().filter(|c| *c != '_').collect();
        if clean.is_empty() || !s.chars().all(|c| c == '_' || c.is_digit(radix)) {
            return None;
        }
        i64::from_str_radix(&clean, radix).ok()
    };
    let value = if let Some(bin) = body.strip_prefix("0b") {
        digits(bin, 2)?
    } else if let Some(hex) = body.strip_prefix("0x") {
        digits(hex, 16)?
    } else if body == "0" {
        0
    } else if let Some(oct) = body.strip_prefix('0') {
        digits(oct, 8)?
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| c.is_ascii_digit() && c != '0') {
            return None;
        }
        let mut value = digits(first, 10)?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n: i64 = part.parse().ok()?;
            if n > 59 {
                return None;
            }
            value = value.checked_mul(60)?.checked_add(n)?;
        }
        value
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        digits(body, 10)?
    };
    Some(if negative { -value } else { value })
}

/// YAML 1.1 `float` (PyYAML's resolver): a `.` is required; `.inf`, `.nan`.
fn yaml11_float(text: &str) -> Option<f64> {
    let body = text.trim_start_matches(['-', '+']);
    let negative = text.starts_with('-');
    if text.len() - body.len() > 1 {
        return None;
    }
    match body {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if body.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    if !mantissa.contains('.')
        || !mantissa
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
    {
        return None;
    }
    if let Some(exp) = exponent {
        // PyYAML requires the exponent's sign.
        let digits = exp.strip_prefix(['+', '-'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    clean.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(yaml: &str) -> Kind {
        parse(&format!("k: {yaml}\n"))
            .expect("yaml")
            .get("k")
            .expect("k")
            .kind
            .clone()
    }

    #[test]
    fn plain_scalars_follow_yaml_1_1() {
        assert_eq!(kind("0666"), Kind::Int(0o666));
        assert_eq!(kind("438"), Kind::Int(438));
        assert_eq!(kind("0x1A"), Kind::Int(26));
        assert_eq!(kind("0b101"), Kind::Int(5));
        assert_eq!(kind("86_400"), Kind::Int(86400));
        assert_eq!(kind("1:30"), Kind::Int(90));
        assert_eq!(kind("-3"), Kind::Int(-3));
        assert_eq!(kind("yes"), Kind::Bool(true));
        assert_eq!(kind("Off"), Kind::Bool(false));
        assert_eq!(kind("~"), Kind::Null);
        assert_eq!(kind(""), Kind::Null);
        assert_eq!(kind("1.5"), Kind::Float(1.5));
        assert_eq!(kind("1e5"), Kind::Str("1e5".into()));
        assert_eq!(kind("1.0e+3"), Kind::Float(1000.0));
        assert_eq!(kind("09"), Kind::Str("09".into()));
        assert_eq!(kind("'0666'"), Kind::Str("0666".into()));
        assert_eq!(kind("\"yes\""), Kind::Str("yes".into()));
        assert_eq!(kind("!!str 12"), Kind::Str("12".into()));
    }

    #[test]
    fn mappings_sequences_anchors_and_lines() {
        let v = parse("a: &x\n  - [h, 1]\nb: *x\na: 2\n").expect("yaml");
        assert_eq!(v.keys(), ["a", "b"]);
        assert_eq!(v.get("a").map(|v| &v.kind), Some(&Kind::Int(2)));
        let b = v.get("b").expect("b");
        let Kind::Seq(items) = &b.kind else {
            panic!("{b:?}")
        };
        assert_eq!(items.len(), 1);
        assert_eq!(parse("").expect("empty").kind, Kind::Null);
        let e = parse("a: [1\n").expect_err("unclosed");
        assert!(e.line >= 1, "{e}");
    }
}
