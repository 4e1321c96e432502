//! "Did you mean" helpers: close names for unknown kinds and unknown steps.

/// Levenshtein distance over chars.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Candidates within a third of the word's length (at least 2 edits), or sharing a
/// prefix of 4+ chars, closest first, at most `limit`.
pub fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Vec<&'a str> {
    let word = word.to_lowercase();
    let max = (word.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lc = c.to_lowercase();
            let d = distance(&word, &lc);
            let prefix = word.len() >= 4 && (lc.starts_with(&word) || word.starts_with(&lc));
            (d <= max || prefix).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(limit).map(|(_, c)| c).collect()
}

/// The single closest candidate, however far; for suggesting a known step.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .min_by_key(|c| distance(&word.to_lowercase(), &c.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn close_names() {
        let kinds = [
            "deployment",
            "deployments",
            "daemonset",
            "service",
            "secret",
        ];
        assert_eq!(
            closest("deploymnt", kinds, 5),
            ["deployment", "deployments"]
        );
        assert_eq!(closest("servce", kinds, 5), ["service"]);
        assert!(closest("zzz", kinds, 5).is_empty());
        assert_eq!(
            nearest("every nodes is ready", ["every node is Ready", "x"]),
            Some("every node is Ready")
        );
    }
}
