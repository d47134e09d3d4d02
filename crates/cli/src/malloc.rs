//! Allocator settings for the long-running servers.
//!
//! The Rust code allocates with mimalloc (`main.rs`); the C code (SQLite) with glibc's
//! malloc. `serve` parses TLS-RPT reports of up to `max_report` bytes on tokio's blocking
//! pool, a different thread each time, and each allocator would keep a burst's freed
//! reports for reuse: glibc in one arena per thread, mimalloc for its purge delay (1 s for
//! pages, 10 s for whole arenas, and only once it is called again). Measured with
//! `scripts/serve-burst-rss` (debug build, three rounds of 16 parallel gzip reports
//! inflating to 15 MB each, one accepted and 15 answered 503 per round; baseline 34 MB,
//! RSS two seconds after each round; docs/performance.md §5):
//!
//! | allocator | after the rounds | peak |
//! |---|---|---|
//! | glibc, its defaults | 111.0, 158.8, 174.4 MB | 208.2 MB |
//! | glibc, two arenas (five runs) | 50.6–66.0 MB | 164.4–178.6 MB |
//! | mimalloc, its defaults (three runs) | 93.7–130.8 MB | 170.5–178.0 MB |
//! | mimalloc, no purge delay (this function; three runs) | 39.2–39.8 MB | 159.2–159.3 MB |

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`'s `mi_option_e`, whose indices mimalloc
/// keeps stable by leaving deprecated options in place); the Rust bindings name only the
/// options of older releases.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has both allocators hand freed memory back to the system at once, for `serve`: mimalloc
/// purges freed pages without delay, glibc's arenas are capped at two and large blocks are
/// unmapped when freed. Called from `main` before the runtime starts any thread.
pub fn return_freed_memory() {
    // SAFETY: mi_option_set only stores an option's value; any value is valid for the purge
    // delay (0: purge at once).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called from `main` before any
    // other thread exists. A refused setting (return value 0) leaves glibc's default, which
    // is correct, only less frugal.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is mimalloc's purge delay: it starts at that option's default (1,000 ms in
    /// mimalloc 3) and `return_freed_memory` sets it to 0.
    #[test]
    fn return_freed_memory_sets_mimallocs_purge_delay_to_zero() {
        // SAFETY: mi_option_get only reads an option.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            before, 1000,
            "index {MI_OPTION_PURGE_DELAY} is not the purge delay"
        );
        return_freed_memory();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, 0);
    }
}
