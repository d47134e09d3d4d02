//! Finding inputs on disk: files, directories, Maildir folders (`cur/` and `new/`) and mbox
//! files (split into messages).
//!
//! A path that is a directory is walked recursively (symbolic links are not followed, `tmp/`
//! of a Maildir is skipped: messages there are still being written). A file whose first line
//! begins with `From ` is an mbox (mboxo/mboxrd: `>From ` lines are unescaped), anything else is
//! one input. Reading is bounded by [`Limits::max_input_bytes`](crate::intake::Limits) per
//! file (an mbox may be larger: it is read whole but each message is then bounded). Special
//! files (FIFOs, devices, sockets) are refused without being opened: reading a FIFO could
//! wait forever, and `/dev/null` holds no report.
//!
//! [`prepare`] is the first look at one input's bytes: what is neither JSON, gzip, zip nor
//! an e-mail (an empty file, a `.tsv` next to the reports) is refused as "not a TLS-RPT
//! report" before any DKIM check, and a MIME message whose closing boundary is missing gets
//! it back, so that its last part is decoded (as Python's `email` parser does).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::intake::{IntakeError, Limits, ParsedReport, is_message, parse_input};

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
    // A path named on the command line is followed if it is a symbolic link.
    let meta = match (depth, meta.file_type().is_symlink()) {
        (0, true) => std::fs::metadata(path).unwrap_or(meta),
        _ => meta,
    };
    if meta.is_file() {
        out.push(Ok(path.to_path_buf()));
        return;
    }
    if let Some(kind) = special_kind(&meta.file_type()) {
        out.push(Err(InputError {
            path: path.display().to_string(),
            source: std::io::Error::other(format!(
                "not a regular file ({kind}): import reads files, directories, Maildir folders and mbox files"
            )),
        }));
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

/// What kind of special file this is; `None` for files, directories and symbolic links.
fn special_kind(file_type: &std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a FIFO");
        }
        if file_type.is_char_device() {
            return Some("a character device");
        }
        if file_type.is_block_device() {
            return Some("a block device");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
    }
    if file_type.is_file() || file_type.is_dir() || file_type.is_symlink() {
        None
    } else {
        Some("a special file")
    }
}

/// Why an input is not a TLS-RPT report at all (before any DKIM check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAReport {
    /// The input has no bytes.
    #[error("not a TLS-RPT report (the input is empty)")]
    Empty,
    /// Neither JSON, gzip, zip nor an RFC 5322 message.
    #[error(
        "not a TLS-RPT report (neither JSON, gzip, zip nor an e-mail: the first line is not a header field)"
    )]
    NotMail,
}

/// Why [`parse_file_input`] refused an input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileInputError {
    /// Not JSON, gzip, zip or mail.
    #[error(transparent)]
    NotAReport(#[from] NotAReport),
    /// The intake refused it.
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

/// The first look at one input read from disk: refuses what is not a report at all, and
/// closes MIME multiparts whose closing boundary is missing. The bytes to hand to
/// [`parse_input`] (DKIM is verified on the original bytes).
pub fn prepare(bytes: &[u8]) -> Result<Cow<'_, [u8]>, NotAReport> {
    if bytes.is_empty() {
        return Err(NotAReport::Empty);
    }
    if !is_message(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    if !starts_with_header_field(bytes) {
        return Err(NotAReport::NotMail);
    }
    Ok(close_multiparts(bytes))
}

/// `report import`'s reading of one input without DKIM and store: [`prepare`], then
/// [`parse_input`]. The fuzz target `mail_import` drives it.
pub fn parse_file_input(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<ParsedReport>, FileInputError> {
    let prepared = prepare(bytes)?;
    Ok(parse_input(&prepared, None, limits)?)
}

/// Whether the first line is an RFC 5322 §2.2 header field: a name of printable ASCII
/// other than `:` (ftext), then `:`.
fn starts_with_header_field(bytes: &[u8]) -> bool {
    let name_len = bytes
        .iter()
        .take_while(|b| matches!(b, 33..=57 | 59..=126))
        .count();
    name_len > 0 && bytes.get(name_len) == Some(&b':')
}

/// Appends the close delimiter (RFC 2046 §5.1.1 `--boundary--`) of every multipart of the
/// message that lacks one, innermost first. Some receivers' test mails end without it;
/// the parser then leaves the last part undecoded, where Python's `email` decodes it.
fn close_multiparts(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Some(message) = mail_parser::MessageParser::default().parse(bytes) else {
        return Cow::Borrowed(bytes);
    };
    let mut missing: Vec<Vec<u8>> = Vec::new();
    for part in &message.parts {
        if !part.is_multipart() {
            continue;
        }
        let Some(boundary) =
            mail_parser::MimeHeaders::content_type(part).and_then(|ct| ct.attribute("boundary"))
        else {
            continue;
        };
        let close = [b"\n--".as_slice(), boundary.as_bytes(), b"--"].concat();
        if !contains(bytes, &close) && !missing.iter().any(|m| m == &close) {
            missing.push(close);
        }
    }
    if missing.is_empty() {
        return Cow::Borrowed(bytes);
    }
    let mut out = bytes.to_vec();
    for close in missing.iter().rev() {
        out.extend_from_slice(b"\r");
        out.extend_from_slice(close);
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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

    #[test]
    fn prepare_refuses_what_is_not_a_report() {
        assert_eq!(prepare(b""), Err(NotAReport::Empty));
        assert_eq!(prepare(b"domain\tday\n"), Err(NotAReport::NotMail));
        assert_eq!(prepare(b": no name\n"), Err(NotAReport::NotMail));
        assert!(prepare(b"{}").is_ok());
        assert!(prepare(b"Subject: x\r\n\r\nbody").is_ok());
    }

    #[test]
    fn unclosed_multipart_gets_its_close_delimiter() {
        let open = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx";
        let closed = prepare(open).unwrap();
        assert!(closed.ends_with(b"x\r\n--b--\r\n"), "{closed:?}");
        let whole = [open.as_slice(), b"\r\n--b--\r\n"].concat();
        assert!(matches!(prepare(&whole), Ok(Cow::Borrowed(_))));
    }
}
