//! Finding inputs on disk: files, directories, Maildir folders (`cur/` and `new/`) and mbox
//! files (split into messages).
//!
//! A path that is a directory is walked recursively (symbolic links are not followed, `tmp/`
//! of a Maildir is skipped: messages there are still being written). A file whose first line
//! begins with `From ` is an mbox (mboxo/mboxrd: `>From ` lines are unescaped), anything else is
//! one input. Reading is bounded by [`Limits::max_input_bytes`](crate::intake::Limits) per
//! file (an mbox may be larger: it is read whole but each message is then bounded).

use std::path::{Path, PathBuf};

/// One input found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// For messages: `PATH` or `PATH#N` (N-th message of an mbox, from 1).
    pub label: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Why a path could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct InputError {
    /// The path.
    pub path: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Lists the files under `paths`, in a stable order (sorted per directory).
pub fn list_files(paths: &[PathBuf]) -> Vec<Result<PathBuf, InputError>> {
    let mut out = Vec::new();
    for path in paths {
        walk(path, &mut out, 0);
    }
    out
}

fn walk(path: &Path, out: &mut Vec<Result<PathBuf, InputError>>, depth: u32) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(source) => {
            out.push(Err(InputError {
                path: path.display().to_string(),
                source,
            }));
            return;
        }
    };
    if meta.is_file() || (depth == 0 && meta.file_type().is_symlink() && path.is_file()) {
        out.push(Ok(path.to_path_buf()));
        return;
    }
    if !meta.is_dir() || depth > 16 {
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(source) => {
            out.push(Err(InputError {
                path: path.display().to_string(),
                source,
            }));
            return;
        }
    };
    entries.sort();
    let is_maildir = path.join("cur").is_dir() && path.join("new").is_dir();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Maildir: tmp/ holds messages being delivered; dot-files are metadata
        // (dovecot-uidlist, .subscriptions, …).
        if (is_maildir && name == "tmp") || name.starts_with('.') {
            continue;
        }
        walk(&entry, out, depth + 1);
    }
}

/// Reads one file into inputs: one, or one per message for an mbox.
pub fn read_file(path: &Path, max_bytes: usize) -> Result<Vec<Input>, InputError> {
    let err = |source| InputError {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    // An mbox may hold many messages: allow 64 times the per-input limit for it.
    let cap = max_bytes.saturating_mul(64);
    if len > cap as u64 {
        return Err(err(std::io::Error::other(format!(
            "file is larger than {cap} bytes"
        ))));
    }
    let bytes = crate::intake::read_capped(file, cap).map_err(err)?;
    let label = path.display().to_string();
    if bytes.starts_with(b"From ") {
        return Ok(split_mbox(&bytes)
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| Input {
                label: format!("{label}#{}", i + 1),
                bytes,
            })
            .collect());
    }
    Ok(vec![Input { label, bytes }])
}

/// Splits an mbox into messages: a message starts at a line beginning `From ` at the start
/// of the file or after a line break (the `From_` line is dropped); `>From ` / `>>From `
/// lines are unescaped one level (mboxrd).
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(done) = current.take() {
                messages.push(done);
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let gt = line.iter().take_while(|b| **b == b'>').count();
        if gt > 0 && line[gt..].starts_with(b"From ") {
            message.extend_from_slice(&line[1..]);
        } else {
            message.extend_from_slice(line);
        }
    }
    if let Some(done) = current {
        messages.push(done);
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_split_and_unescape() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: 1\n\n>From here\nbody\nFrom c@d Tue\nSubject: 2\n\nx\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], b"Subject: 1\n\nFrom here\nbody\n");
        assert_eq!(m[1], b"Subject: 2\n\nx\n");
    }
}
