//! The one configuration error: where, what, and the fix.

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid: `location` is `file:line:column` (or `file:line`, or `file`).
    #[error("{location}: {message}")]
    Invalid {
        /// Where: `file:line:column`, `file:line` or `file`.
        location: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}
