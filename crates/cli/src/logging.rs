//! Logging for every command: standard error, colour only on a terminal, our own lines at
//! the level `-q`/`-v` choose, and the network libraries' own lines only at trace level or
//! when `RUST_LOG` names them. Their failures already reach the user as our findings and
//! error messages, with the fix; a second, bare line from the TLS library (for example
//! rustls' "failed to verify TLS certificate" for each bad MX) only repeats them.

/// Libraries whose output is about their own internals (DNS message parsing, TLS
/// handshakes, HTTP connection pools). A filter target matches every target it begins:
/// `hickory` covers hickory_net, hickory_proto and hickory_resolver; `hyper` hyper_util.
pub(crate) const QUIET_LIBRARIES: [&str; 10] = [
    "hickory",
    "rustls",
    "tokio_rustls",
    "hyper",
    "h2",
    "reqwest",
    "redis",
    "rusqlite",
    "tower",
    "mio",
];

/// The filter directives: `RUST_LOG` when set (e.g. `RUST_LOG=mta_sts_daemon=debug`), else
/// `level`; below `trace`, each of [`QUIET_LIBRARIES`] that `RUST_LOG` does not name is off.
pub(crate) fn directives(rust_log: Option<&str>, level: &str) -> String {
    let mut directives = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(env) => env.to_owned(),
        None if level == "trace" => return level.to_owned(),
        None => level.to_owned(),
    };
    for library in QUIET_LIBRARIES {
        if !directives.contains(library) {
            directives.push_str(&format!(",{library}=off"));
        }
    }
    directives
}

/// Installs the subscriber for `level` (`RUST_LOG` overrides it), as JSON lines or text.
pub(crate) fn init(level: &str, json: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let wanted = directives(rust_log.as_deref(), level);
    let filter = tracing_subscriber::EnvFilter::try_new(&wanted).unwrap_or_else(|e| {
        eprintln!("mta-sts: RUST_LOG `{wanted}` is not a filter ({e}); using `{level}`");
        tracing_subscriber::EnvFilter::new(directives(None, level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn library_internals_stay_quiet_unless_named() {
        let v = directives(None, "debug");
        assert!(v.starts_with("debug,") && v.contains("hickory=off") && v.contains("rustls=off"));
        assert_eq!(directives(None, "trace"), "trace");
        assert!(directives(Some(""), "info").starts_with("info,"));
        let named = directives(Some("debug,hickory_proto=trace"), "info");
        assert!(
            named.starts_with("debug,hickory_proto=trace")
                && !named.contains("hickory=off")
                && named.contains("rustls=off"),
            "{named}"
        );
    }
}
