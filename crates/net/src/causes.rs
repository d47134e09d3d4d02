//! An error with its whole cause chain, for log lines and reason strings.

/// The message of `error` followed by each of its causes (`top: cause: cause`).
///
/// Errors across the workspace keep their causes as sources, and some also say their
/// immediate cause in their message (as do some dependencies' errors); printing only the top
/// message would lose the rest of the chain. A cause whose text the line already contains is
/// not repeated, so nothing said is lost and nothing is said twice.
///
/// ```
/// # #[derive(Debug, thiserror::Error)]
/// # #[error("cannot store the report")]
/// # struct Outer(#[source] std::io::Error);
/// # #[derive(Debug, thiserror::Error)]
/// # #[error("cannot open {0}: {1}")]
/// # struct Says(&'static str, #[source] std::io::Error);
/// use mta_sts_net::with_causes;
/// let error = Outer(std::io::Error::other("database is locked"));
/// assert_eq!(with_causes(&error), "cannot store the report: database is locked");
/// let error = Says("cache.db", std::io::Error::other("disk full"));
/// assert_eq!(with_causes(&error), "cannot open cache.db: disk full");
/// ```
pub fn with_causes(error: &dyn std::error::Error) -> String {
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
