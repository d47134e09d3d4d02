//! The document side: its marked blocks, the substitution table applied to them, and
//! the matching of its log-line samples.

use std::path::{Path, PathBuf};

pub(super) fn repo() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// docs/postfix.md, or the file named by `MTA_STS_POSTFIX_DOC` (to try an edit of the
/// document, or to see this test fail on a drifted copy).
pub(super) fn read_doc() -> String {
    let path = std::env::var_os("MTA_STS_POSTFIX_DOC")
        .map_or_else(|| repo().join("docs/postfix.md"), PathBuf::from);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The fenced code block right after the line `<!-- test: NAME -->`, with the fence's
/// indentation removed; `None` when the document has no such marker (or no fence after it).
pub(super) fn marked_block(doc: &str, name: &str) -> Option<String> {
    let marker = format!("<!-- test: {name} -->");
    let mut lines = doc.lines();
    lines.by_ref().find(|l| l.trim() == marker)?;
    let fence = lines.next()?;
    let indent = fence.len() - fence.trim_start().len();
    if !fence.trim_start().starts_with("```") {
        return None;
    }
    let mut out = String::new();
    for line in lines {
        if line.trim_start().starts_with("```") {
            return Some(out);
        }
        out.push_str(line.get(indent..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    None
}

pub(super) fn block(doc: &str, name: &str) -> String {
    marked_block(doc, name).unwrap_or_else(|| {
        panic!(
            "docs/postfix.md has no fenced block right after `<!-- test: {name} -->`; \
             tests/api/postfix_docs/ runs the blocks so marked"
        )
    })
}

/// One difference between the text of docs/postfix.md and what this test runs.
pub(super) struct Subst {
    pub(super) doc: String,
    pub(super) test: String,
    pub(super) why: &'static str,
}

pub(super) fn apply(table: &[Subst], text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'next: while let Some(c) = rest.chars().next() {
        for s in table {
            if let Some(after) = rest.strip_prefix(s.doc.as_str()) {
                out.push_str(&s.test);
                rest = after;
                continue 'next;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

pub(super) fn print_table(title: &str, rows: &[(String, String, &str)]) {
    eprintln!("{title}");
    for (doc, test, why) in rows {
        eprintln!("  {doc:<40} -> {test}\n  {:<40}    ({why})", "");
    }
}

/// Sets `line` (`key = value`) in the `[section]` of `toml` the way an administrator edits
/// the file: replaces the key's line where the section already sets it, else inserts the
/// line right below the section's header (appending the section if missing).
pub(super) fn set_in_section(toml: &str, section: &str, line: &str) -> String {
    let header = format!("[{section}]");
    let key = |l: &str| {
        let l = l.trim();
        (!l.starts_with('#') && !l.starts_with('['))
            .then(|| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .flatten()
    };
    let mut lines: Vec<String> = toml.lines().map(str::to_owned).collect();
    let start = lines.iter().position(|l| l.trim() == header);
    let Some(start) = start else {
        return format!("{toml}{header}\n{line}\n");
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |n| start + 1 + n);
    match (start + 1..end).find(|&i| key(&lines[i]).is_some() && key(&lines[i]) == key(line)) {
        Some(i) => lines[i] = line.to_owned(),
        None => lines.insert(start + 1, line.to_owned()),
    }
    lines.join("\n") + "\n"
}

/// Merges a TOML fragment of the doc (`[section]` headers and `key = value` lines) into
/// `toml` with [`set_in_section`].
pub(super) fn merge_toml(toml: &str, fragment: &str) -> String {
    let mut out = toml.to_owned();
    let mut section = String::new();
    for l in fragment.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        out = set_in_section(&out, &section, l);
    }
    out
}

/// §2's main.cf lines with §3's applied the way an administrator edits the file: a
/// parameter already set is replaced in place (Postfix warns about a duplicate), a new one
/// is appended.
pub(super) fn edit_main_cf(main_cf: &str, edits: &str) -> String {
    let name = |l: &str| {
        let l = l.trim();
        (!l.starts_with('#'))
            .then(|| l.split_once('=').map(|(n, _)| n.trim().to_owned()))
            .flatten()
    };
    let mut lines: Vec<String> = main_cf.lines().map(str::to_owned).collect();
    for edit in edits.lines() {
        let Some(param) = name(edit) else { continue };
        match lines.iter_mut().find(|l| name(l).as_ref() == Some(&param)) {
            Some(l) => *l = edit.to_owned(),
            None => lines.push(edit.to_owned()),
        }
    }
    lines.join("\n") + "\n"
}

/// Whether `line` ends with a match of `pattern`, where `…` in the pattern matches any run
/// of characters (the document's ellipsis for the varying parts of a log line).
pub(super) fn log_matches(pattern: &str, line: &str) -> bool {
    let p: Vec<char> = format!("…{pattern}").chars().collect();
    let s: Vec<char> = line.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == '…' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '…')
}
