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
    /// A `[resolver] connect_to` value the sender would use is malformed.
    #[error("[tlsrpt.send]: {0}")]
    ConnectTo(#[source] ConnectToError),
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

/// The message of `error` followed by each of its causes (`top: cause: cause`), for log
/// lines and string reasons: errors keep their causes as sources rather than in their
/// message, so printing only the top message would lose them.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::with_causes;

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
