//! Allocator settings for the long-running servers.
//!
//! glibc's malloc gives every thread that allocates its own arena (up to 8 per core) and
//! keeps what is freed there for reuse. `serve` parses TLS-RPT reports of up to
//! `max_report` bytes on tokio's blocking pool, a different thread each time, so after a
//! burst of large reports each of those arenas holds a report's worth of freed memory.
//! Measured on a debug build, three rounds of 16 parallel gzip reports inflating to 15 MB
//! each (one accepted, 15 answered 503 per round; baseline 32 MB): without these settings
//! the process kept 108, 182 and 133 MB after the rounds; with them, 50 MB after every
//! round and a peak of 162 MB.
//! `scripts/serve-burst-rss BINARY` re-runs that scenario; docs/performance.md §5 has its
//! latest figures.

/// Caps glibc's arenas at two and returns large blocks to the system when freed. Called
/// before the runtime starts any thread. Elsewhere (musl, other systems) it does nothing.
pub fn bound_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called from `main` before any
    // other thread exists. A refused setting (return value 0) leaves glibc's default, which
    // is correct, only less frugal.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
