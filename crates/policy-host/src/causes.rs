//! An error with its whole cause chain, for log lines.
//!
//! This crate's errors say their immediate cause in their message and keep it as
//! `source()` too (typed, for callers); errors from other crates (the report store's) keep
//! causes only as sources. [`with_causes`] prints both kinds once each. Local because the
//! report store's `with_causes` is only there with the `report-store` feature, and it would
//! repeat causes that these messages already say.

use std::error::Error;

/// `error: cause: cause …`, each cause added unless the text already says it.
pub(crate) fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Says(#[source] Silent);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Silent(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let error = Says(Silent(std::io::Error::other("disk full")));
        assert_eq!(with_causes(&error), "outer: middle: disk full");
    }
}
