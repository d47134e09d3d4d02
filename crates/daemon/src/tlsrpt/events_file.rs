//! The events file: JSON lines of the `tlsrpt::event` format, appended in whole lines.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tlsrpt::event::Event;

/// Most event lines kept in memory while the events file cannot be written; beyond, the
/// oldest are dropped (with a warning).
pub const MAX_PENDING_LINES: usize = 100_000;

/// `event` as one events-file line with the extra member `"source"` (ignored by the
/// aggregator).
pub fn event_line(event: &Event, source: &str) -> String {
    let line = event.to_json_line();
    match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("source".into(), source.into());
            serde_json::Value::Object(object).to_string()
        }
        _ => line,
    }
}

/// The events file: appends whole lines, keeping them in memory while the file cannot be
/// written. The file is opened for each batch, so rotation (rename + new file) just works.
#[derive(Debug, Default)]
pub struct EventsFile {
    inner: Mutex<EventsInner>,
}

#[derive(Debug, Default)]
struct EventsInner {
    path: Option<PathBuf>,
    pending: Vec<String>,
}

impl EventsFile {
    /// Appending to `path` (`None`: lines are dropped).
    pub fn new(path: Option<PathBuf>) -> Self {
        EventsFile {
            inner: Mutex::new(EventsInner {
                path,
                pending: Vec::new(),
            }),
        }
    }

    /// Changes the file (reload).
    pub fn set_path(&self, path: Option<PathBuf>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).path = path;
    }

    /// The file appended to.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone()
    }

    /// Appends `lines` (and any kept from failed writes) in one write. Blocking I/O.
    pub fn append(&self, lines: Vec<String>) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = inner.path.clone() else {
            return Ok(());
        };
        inner.pending.extend(lines);
        if inner.pending.is_empty() {
            return Ok(());
        }
        if inner.pending.len() > MAX_PENDING_LINES {
            let excess = inner.pending.len() - MAX_PENDING_LINES;
            inner.pending.drain(..excess);
            tracing::warn!(
                dropped = excess,
                "TLS-RPT events file unwritable for long: oldest event lines dropped"
            );
        }
        let mut text = inner.pending.join("\n");
        text.push('\n');
        write_append(&path, text.as_bytes())?;
        inner.pending.clear();
        Ok(())
    }
}

fn write_append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    // One write of whole lines; O_APPEND keeps concurrent writers' lines apart.
    file.write_all(bytes)
}
