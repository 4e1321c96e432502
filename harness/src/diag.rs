//! One-line rendering of an error and its causes, for terminals and step failures.

use std::error::Error;

/// `outer: cause: root cause`, skipping a cause whose text the line already holds
/// (many errors print their source in their own message too), on one line.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cluster x is unreachable")]
    struct Outer(#[source] Mid);

    #[derive(Debug, thiserror::Error)]
    #[error("HyperError: {0}")]
    struct Mid(#[source] std::io::Error);

    #[test]
    fn chain_without_repeats_on_one_line() {
        let e = Outer(Mid(std::io::Error::other("connection\nrefused")));
        assert_eq!(
            one_line(&e),
            "cluster x is unreachable: HyperError: connection refused"
        );
    }
}
