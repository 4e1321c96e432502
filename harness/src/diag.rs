//! One-line rendering of an error and its causes, for terminals and step failures.

use std::error::Error;

/// `outer: cause: root cause`, skipping a cause whose text the line already holds
/// (many errors print their source in their own message too), on one line.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = text_of(err);
    // An API refusal's source is its Status again: the text already says it all.
    let mut source = if is_api(err) { None } else { err.source() };
    while let Some(cause) = source {
        let text = text_of(cause);
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = if is_api(cause) { None } else { cause.source() };
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_api(err: &(dyn Error + 'static)) -> bool {
    matches!(err.downcast_ref::<kube::Error>(), Some(kube::Error::Api(_)))
}

/// An error's own text; for an API server's refusal, its message and code only (kube's
/// Display appends the whole `Status` in Debug form, which buries the message).
fn text_of(err: &(dyn Error + 'static)) -> String {
    match err.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => format!("{} ({} {})", s.message, s.code, s.reason),
        _ => err.to_string(),
    }
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

    #[derive(Debug, thiserror::Error)]
    #[error("deleting pod openalex/p failed")]
    struct Delete(#[source] kube::Error);

    #[test]
    fn api_refusals_show_their_message_not_the_status_dump() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "pods \"p\" is forbidden: User \"ro\" cannot delete resource \"pods\"",
            "metadata": {}
        }))
        .unwrap();
        let e = Delete(kube::Error::Api(Box::new(status)));
        assert_eq!(
            one_line(&e),
            "deleting pod openalex/p failed: pods \"p\" is forbidden: User \"ro\" cannot \
             delete resource \"pods\" (403 Forbidden)"
        );
    }

    #[test]
    fn chain_without_repeats_on_one_line() {
        let e = Outer(Mid(std::io::Error::other("connection\nrefused")));
        assert_eq!(
            one_line(&e),
            "cluster x is unreachable: HyperError: connection refused"
        );
    }
}
