//! Reading command input: a file path or `-` for standard input, with a size limit.

use std::io::Read;

use anyhow::{Context, Result};

/// Input read with a size limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Capped {
    /// All of the input: at most the limit.
    Whole(Vec<u8>),
    /// The input holds more than the limit; reading stopped after limit + 1 bytes.
    TooLarge,
}

/// The bytes of `path` (or standard input for `-`), reading at most `limit` + 1 bytes:
/// memory stays bounded whatever the input (`/dev/zero`, a huge file, an endless pipe).
pub fn read_capped(path: &str, limit: usize) -> Result<Capped> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        let cannot = |e: std::io::Error| {
            anyhow::anyhow!(
                "cannot read {path}: {e}; check the path, or pass - to read standard input"
            )
        };
        std::fs::File::open(path)
            .map_err(cannot)?
            .take(cap)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
    }
    Ok(if bytes.len() > limit {
        Capped::TooLarge
    } else {
        Capped::Whole(bytes)
    })
}
