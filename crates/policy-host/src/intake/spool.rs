//! The spool: reports written as files ([`SpoolSink`]), the fallback when the store fails,
//! and moved into the store once it works ([`SpoolSink::drain_into`], RFC 8460 §5.4).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use mta_sts_net::clock::{Clock, SystemClock};

use super::scan::scan;
use super::sink::{IncomingReport, ReportSink, STORE_TIMEOUT, SinkError, SinkFuture, Stored};

/// Writes each report as `<sha256 of the JSON, 32 hex>.json` into a directory, atomically
/// (temporary file, fsync, rename), for `mta-sts report import <dir>` or
/// [`SpoolSink::drain_into`]. The name comes from
/// the content, never from client input, so a re-sent report is a [`Stored::Duplicate`]
/// instead of a second file.
#[derive(Clone)]
pub struct SpoolSink {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SpoolSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolSink")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SpoolSink {
    /// A sink writing into `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> SpoolSink {
        SpoolSink {
            dir: dir.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// This sink, stamping drained reports whose file time cannot be read with `clock`'s
    /// time instead of the system clock's.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> SpoolSink {
        SpoolSink { clock, ..self }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `json` now, blocking; the name of the file, and whether it was there before.
    pub fn write(&self, json: &[u8]) -> Result<Stored, SinkError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SinkError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, json);
        let name = format!("{}.json", &crate::id::hex(digest.as_ref())[..32]);
        let target = self.dir.join(&name);
        if target.is_file() {
            return Ok(Stored::Duplicate(target.display().to_string()));
        }
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(json).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &target).map_err(io(&target))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| Stored::New(target.display().to_string()))
    }
}

impl ReportSink for SpoolSink {
    fn store<'a>(&'a self, report: &'a IncomingReport) -> SinkFuture<'a> {
        let sink = self.clone();
        let json = report.json.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || sink.write(&json))
                .await
                .map_err(|e| SinkError::Store(Box::new(e)))?
        })
    }

    fn describe(&self) -> String {
        format!("the spool directory {}", self.dir.display())
    }
}

/// The subdirectory of the spool where [`SpoolSink::drain_into`] puts reports the store
/// refused, so that they are kept for a person to look at and not tried again.
pub const REJECTED_DIR: &str = "rejected";

/// What one [`SpoolSink::drain_into`] pass did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Reports the sink stored, now gone from the spool.
    pub stored: usize,
    /// Reports the sink had already, now gone from the spool.
    pub duplicates: usize,
    /// Reports the sink refused (not TLS-RPT, RFC 8460 §4), moved to [`REJECTED_DIR`].
    pub rejected: usize,
    /// Reports still in the spool because the sink failed.
    pub left: usize,
    /// Why the pass stopped early: the sink's failure, or the spool could not be read
    /// ([`SinkError::SpoolUnreadable`]); the last file error when it went on past one.
    pub error: Option<SinkError>,
}

impl Drained {
    /// How many reports the pass took out of the spool: stored, duplicate or refused.
    pub fn moved(&self) -> usize {
        self.stored + self.duplicates + self.rejected
    }
}

impl SpoolSink {
    /// The spooled reports, by name: `*.json` files, not the temporary `.tmp-*` ones.
    async fn spooled(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut dir = match tokio::fs::read_dir(&self.dir).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(e),
        };
        while let Some(entry) = dir.next_entry().await? {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.')
                && name.ends_with(".json")
                && entry.file_type().await?.is_file()
            {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Hands the spooled reports to `sink`, the store they should have gone to (RFC 8460
    /// §5.4), so the spool empties by itself once the store works again:
    ///
    /// - a report the sink stores, or already has, leaves the spool;
    /// - a report it refuses moves to [`REJECTED_DIR`], kept but not tried again;
    /// - the first store failure (or [`STORE_TIMEOUT`]) ends the pass, leaving that report
    ///   and the rest for the next one.
    ///
    /// A report is removed only after the sink said it is stored, so a crash in between
    /// costs a duplicate on the next pass, never a report.
    pub async fn drain_into(&self, sink: &dyn ReportSink) -> Drained {
        let mut drained = Drained::default();
        let files = match self.spooled().await {
            Ok(files) => files,
            Err(source) => {
                drained.error = Some(SinkError::SpoolUnreadable {
                    dir: self.dir.clone(),
                    source,
                });
                return drained;
            }
        };
        let total = files.len();
        for (done, file) in files.into_iter().enumerate() {
            match self.drain_one(&file, sink).await {
                Ok(Stored::New(_)) => drained.stored += 1,
                Ok(Stored::Duplicate(_)) => drained.duplicates += 1,
                Err(SinkError::Rejected(reason)) => {
                    drained.rejected += 1;
                    self.reject(&file, &reason).await;
                }
                // This file could not be read or removed: the others may still go.
                Err(e @ SinkError::Io { .. }) => {
                    drained.left += 1;
                    drained.error = Some(e);
                }
                Err(e) => {
                    drained.left += total - done;
                    drained.error = Some(e);
                    return drained;
                }
            }
        }
        drained
    }

    /// Stores one spooled file and, once stored, removes it.
    async fn drain_one(&self, file: &Path, sink: &dyn ReportSink) -> Result<Stored, SinkError> {
        let io = |source| SinkError::Io {
            path: file.to_path_buf(),
            source,
        };
        let json = Bytes::from(tokio::fs::read(file).await.map_err(io)?);
        let received = tokio::fs::metadata(file)
            .await
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| self.clock.system_time());
        let report = IncomingReport {
            report_id: scan(&json)
                .map_err(|e| SinkError::Rejected(e.to_string()))?
                .id,
            json,
            gzip: false,
            host: String::new(),
            path: String::new(),
            received,
            spooled: Some(file.to_path_buf()),
        };
        let stored = tokio::time::timeout(STORE_TIMEOUT, sink.store(&report))
            .await
            .map_err(|_| SinkError::Timeout(STORE_TIMEOUT))??;
        match tokio::fs::remove_file(file).await {
            Ok(()) => {}
            // Another pass (a second server on the same spool) took it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        tracing::info!(file = %file.display(), report_id = %report.report_id, stored = ?stored, "spooled TLS-RPT report moved into the store");
        Ok(stored)
    }

    /// Moves a refused report to [`REJECTED_DIR`].
    async fn reject(&self, file: &Path, reason: &str) {
        let dir = self.dir.join(REJECTED_DIR);
        let target = dir.join(file.file_name().unwrap_or_default());
        let moved = match tokio::fs::create_dir_all(&dir).await {
            Ok(()) => tokio::fs::rename(file, &target).await,
            Err(e) => Err(e),
        };
        match moved {
            Ok(()) => {
                tracing::warn!(file = %target.display(), %reason, "spooled TLS-RPT report refused by the store (RFC 8460 §4); kept in the rejected directory")
            }
            Err(e) => {
                tracing::error!(file = %file.display(), %reason, error = %e, "spooled TLS-RPT report refused by the store and could not be moved aside")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::sink::testing::{Scripted, failing, report};

    /// The counts of a drain pass, and whether it stopped on an error.
    fn counts(d: &Drained) -> (usize, usize, usize, usize, bool) {
        (
            d.stored,
            d.duplicates,
            d.rejected,
            d.left,
            d.error.is_some(),
        )
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    // Spooled reports go to the store once it works: stored ones and ones it already had
    // leave the spool, refused ones are kept aside, a failing store leaves everything.
    #[tokio::test]
    async fn rfc8460_s5_4_spool_drains_into_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolSink::new(dir.path());
        for id in ["new", "dup", "bad"] {
            spool.write(report(id).json.as_ref()).unwrap();
        }
        // A write in progress and a stray file are not reports.
        std::fs::write(dir.path().join(".tmp-1-0"), b"{").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();

        let down = spool.drain_into(&Scripted(failing)).await;
        assert_eq!((down.moved(), down.left), (0, 3), "{down:?}");
        // The store's own error, for the caller to act on (the pass stopped at it).
        assert!(
            matches!(&down.error, Some(SinkError::Store(cause)) if cause.is::<crate::intake::sink::testing::Locked>()),
            "{down:?}"
        );
        assert_eq!(names(dir.path()).len(), 5);

        let up = Scripted(|r| match r.report_id.as_str() {
            "dup" => Ok(Stored::Duplicate("report 1".into())),
            "bad" => Err(SinkError::Rejected("no policies".into())),
            _ => {
                assert!(r.source().ends_with(".json"), "{}", r.source());
                Ok(Stored::New("report 2".into()))
            }
        });
        let drained = spool.drain_into(&up).await;
        assert_eq!(counts(&drained), (1, 1, 1, 0, false), "{drained:?}");
        assert_eq!(names(dir.path()), [".tmp-1-0", "notes.txt", REJECTED_DIR]);
        let kept = names(&dir.path().join(REJECTED_DIR));
        assert_eq!(kept.len(), 1);
        assert_eq!(
            std::fs::read(dir.path().join(REJECTED_DIR).join(&kept[0])).unwrap(),
            report("bad").json.as_ref()
        );
        // Nothing left: a pass is a no-op; a missing spool is not an error.
        let nothing = counts(&Drained::default());
        assert_eq!(counts(&spool.drain_into(&up).await), nothing);
        let none = SpoolSink::new(dir.path().join("absent"));
        assert_eq!(counts(&none.drain_into(&up).await), nothing);
    }
}
