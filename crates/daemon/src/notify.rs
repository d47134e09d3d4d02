//! systemd readiness notification (`Type=notify`, sd_notify(3)) without libsystemd: one
//! datagram of `KEY=VALUE` lines to the UNIX socket named by `$NOTIFY_SOCKET` (a path, or
//! `@name` for the abstract namespace). Without `$NOTIFY_SOCKET` nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `lines` (e.g. `["READY=1"]`) to systemd. Failures are logged, never fatal.
pub fn notify(lines: &[&str]) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = lines.join("\n");
    if let Err(e) = send(&target, message.as_bytes()) {
        tracing::warn!(socket = ?target, error = %e, "cannot notify systemd");
    }
}

/// `RELOADING=1` with the monotonic timestamp systemd ≥ 253 wants for `Type=notify-reload`.
pub fn reloading() {
    let usec = monotonic_usec();
    notify(&["RELOADING=1", &format!("MONOTONIC_USEC={usec}")]);
}

fn send(target: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message, &addr)?;
    } else {
        socket.send_to(message, std::path::Path::new(target))?;
    }
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, read from /proc/uptime's clock source: tokio's
/// `Instant` has no epoch, so use the boot-time based uptime (same clock as
/// CLOCK_MONOTONIC on Linux apart from suspend).
fn monotonic_usec() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .and_then(|s| s.parse::<f64>().ok())
        .map(|secs| (secs * 1e6) as u64)
        .unwrap_or_default()
}
