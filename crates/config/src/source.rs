//! A configuration text and its file: byte spans become `file:line:column`, relative paths
//! start at the file's directory, and serde's errors become [`ConfigError`]s.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::ConfigError;

/// The keys a configuration file takes, table by table, for the unknown-key error.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Every key by table (`""`: the top level; the top level's tables are not listed;
    /// `"name.*"`: every `[name.<anything>]`).
    pub sections: &'static [(&'static str, &'static [&'static str])],
    /// The tables of the top level as written, e.g. `"[default], [[domain]]"`.
    pub tables: &'static str,
    /// Where every key is described, e.g. `"packaging/serve.toml"`.
    pub described_in: &'static str,
    /// Appended to other serde errors that do not already show how to write the value:
    /// where to look for the keys and their values.
    pub hint: &'static str,
}

/// A configuration text, the name it is shown under and the directory relative paths
/// start at.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    name: String,
    text: &'a str,
    dir: PathBuf,
}

impl<'a> Source<'a> {
    /// `text` read from `path`, or given directly (`None`: shown as `default_name`, relative
    /// paths start at the current directory).
    pub fn new(text: &'a str, path: Option<&Path>, default_name: &str) -> Source<'a> {
        Source {
            name: path.map_or_else(|| default_name.to_string(), |p| p.display().to_string()),
            text,
            dir: path
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// Reads the configuration file `path` (the only I/O of this crate).
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })
    }

    /// The name the file is shown under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `file:line:column` of the start of `span`.
    pub fn location(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(start, |nl| start - nl - 1) + 1;
        format!("{}:{line}:{column}", self.name)
    }

    /// `file:line` of the start of `span`.
    pub fn line(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let line = self.text.get(..start).unwrap_or("").matches('\n').count() + 1;
        format!("{}:{line}", self.name)
    }

    /// The error `message` at `span`.
    pub fn err(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(span),
            message: message.into(),
        }
    }

    /// `p`, made absolute against the file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Deserializes the text; an unknown key is refused with the keys of its table
    /// (from `schema`), any other error with `schema.hint`.
    pub fn parse<T: DeserializeOwned>(&self, schema: &Schema) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| self.toml_error(&e, schema))
    }

    fn toml_error(&self, e: &toml::de::Error, schema: &Schema) -> ConfigError {
        let message = e.message().to_string();
        let Some(span) = e.span() else {
            return ConfigError::Invalid {
                location: self.name.clone(),
                message,
            };
        };
        let Some(key) = unknown_key(&message) else {
            // The values of this crate say how to write them; serde's own messages
            // ("invalid type: …") get the hint where to look.
            let hint = if message.contains("e.g.") || message.contains("write ") {
                ""
            } else {
                schema.hint
            };
            return self.err(&span, format!("{message}{hint}"));
        };
        let section = section_at(self.text, span.start);
        let keys = schema
            .sections
            .iter()
            .find(|(name, _)| section_matches(name, section))
            .map_or(&[][..], |(_, keys)| keys);
        let takes = match (section.is_empty(), keys.is_empty()) {
            (false, _) => format!("in [{section}]: the keys there are {}", keys.join(", ")),
            // A file whose top level holds tables only (daemon.toml).
            (true, true) => format!("at the top level: the tables are {}", schema.tables),
            (true, false) => format!(
                "at the top level: the keys there are {}, and the tables {}",
                keys.join(", "),
                schema.tables
            ),
        };
        self.err(
            &span,
            format!(
                "unknown key `{key}` {takes} ({} describes each)",
                schema.described_in
            ),
        )
    }
}

/// Whether the schema's table `name` is `section`; `"zones.*"` stands for every
/// `[zones.<name>]`.
fn section_matches(name: &str, section: &str) -> bool {
    match name.strip_suffix(".*") {
        Some(parent) => section
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
        None => name == section,
    }
}

/// The key of serde's "unknown field `x`, expected …" message.
fn unknown_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key)
}

/// The table a byte offset of `text` is in: the name of the last `[name]` or `[[name]]`
/// header before it, `""` for the top level. An offset inside a header (an unknown table
/// `[name]`) is in the table above it: `""` for `[name]`, `a` for `[a.name]`.
fn section_at(text: &str, offset: usize) -> &str {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    if before[line_start..].trim_start().starts_with('[') {
        let rest = text.get(line_start..).unwrap_or("");
        let header = rest.lines().next().unwrap_or("").trim();
        let name = header.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or("").trim();
        return name
            .rsplit_once('.')
            .map_or("", |(parent, _)| parent.trim());
    }
    before[..line_start]
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let name = line.strip_prefix('[')?;
            let end = name.find(']')?;
            Some(name[..end].trim_matches(['[', ' ']))
        })
        .next_back()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based() {
        let s = Source::new("a = 1\nbb = 2\n", Some(Path::new("/etc/x.toml")), "x.toml");
        assert_eq!(s.location(&(9..10)), "/etc/x.toml:2:4");
        assert_eq!(s.line(&(9..10)), "/etc/x.toml:2");
        assert_eq!(s.path(Path::new("r.db")), PathBuf::from("/etc/r.db"));
        assert_eq!(section_at("[a]\nx=1\n[[b]]\ny=2\n", 16), "b");
        assert_eq!(section_at("[a]\nx=1\n[bogus]\n", 10), "");
        assert_eq!(section_at("[a]\nx=1\n[a.bogus]\n", 10), "a");
        assert!(section_matches("zones.*", "zones.strict"));
        assert!(!section_matches("zones.*", "zones"));
        assert!(section_matches("cache", "cache"));
    }
}
