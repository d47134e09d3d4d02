//! Why the TLS-RPT part of the daemon cannot start.

use mta_sts_net::ConnectToError;
use mta_sts_report_store::sending::SetupError;
use std::path::PathBuf;

/// Why the TLS-RPT part of the daemon cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsrptError {
    /// The collector socket cannot be bound or given its mode.
    #[error("cannot listen on the TLS-RPT collector socket {}: {message}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `[tlsrpt.send]` cannot be set up (outbox, DKIM key, CA file, DNS).
    #[error("[tlsrpt.send]: {}{}", send_setting(.0), .0)]
    Send(#[source] SetupError),
    /// The directory of `[tlsrpt] events` or `socket` does not exist (`--check-config`).
    #[error("[tlsrpt] {key}: directory {} does not exist", dir.display())]
    MissingDirectory {
        /// `events` or `socket`.
        key: &'static str,
        /// The directory.
        dir: PathBuf,
    },
    /// `[resolver] ca_file`, which the sender trusts, does not load (`--check-config`).
    #[error("[resolver] ca_file {0}")]
    CaFile(#[source] SetupError),
    /// A `[resolver] connect_to` value the sender would use is malformed.
    #[error("[tlsrpt.send]: {0}")]
    ConnectTo(#[source] ConnectToError),
    /// `probe_testing` cannot be set up (its DNS client, `[resolver] ca_file` for the MX
    /// certificates, a `[resolver] connect_to` value).
    #[error("[tlsrpt] probe_testing: {message}")]
    Probe {
        /// Why.
        message: String,
    },
}

/// The configuration key a failed sender set-up step read, with a space, for messages.
fn send_setting(error: &SetupError) -> &'static str {
    match error {
        SetupError::Outbox { .. } => "outbox ",
        SetupError::CaFileRead { .. } | SetupError::CaFilePem { .. } => "[resolver] ca_file ",
        SetupError::DkimKeyRead { .. } | SetupError::DkimKey { .. } => "dkim_key ",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use mta_sts_net::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot store the report")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn log_text_keeps_every_cause() {
        let error = Outer(std::io::Error::other("database is locked"));
        assert_eq!(
            with_causes(&error),
            "cannot store the report: database is locked"
        );
    }
}
