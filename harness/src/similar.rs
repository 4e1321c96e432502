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

/// Words that say nothing about which step is meant; matching on them made "the moon
/// is made of cheese" close to "the pod of OSD 1 is deleted".
const FILLER: &[&str] = &[
    "a", "an", "and", "are", "at", "be", "by", "for", "has", "in", "is", "it", "of", "on", "or",
    "the", "to", "with",
];

/// The meaningful words of a step: lowercase, quotes and numbers dropped (the arguments
/// differ from use to use), a plural `s` dropped, filler words skipped.
fn words(text: &str) -> Vec<String> {
    // Quoted arguments name things of one use, not the step.
    let unquoted: String = text.split('"').step_by(2).collect::<Vec<_>>().join(" ");
    let mut out: Vec<String> = unquoted
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '+'))
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .filter(|w| !FILLER.contains(&w.as_str()))
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_owned(),
            _ => w,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Candidates sharing meaningful words with `text`, most alike first (shared words over
/// all words of both), at most `limit`; none when no word is shared. A whole-line edit
/// distance ranks by length and filler, not by what the step is about.
pub fn by_shared_words<'a>(
    text: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Vec<&'a str> {
    let wanted = words(text);
    let mut scored: Vec<(usize, usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let theirs = words(c);
            let shared = theirs.iter().filter(|w| wanted.contains(w)).count();
            let union = wanted.len() + theirs.len() - shared;
            // Integer ranking of shared/union: more shared words first, then fewer others.
            (shared > 0).then(|| (union * 1000 / shared, union, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.2 == b.2);
    scored.into_iter().take(limit).map(|(_, _, c)| c).collect()
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
    }

    #[test]
    fn steps_by_shared_words() {
        let steps = [
            "the pod of OSD 1 is deleted",
            "every node is Ready",
            "every pod in namespace \"kube-system\" is Ready",
            "OSD 1 goes down",
        ];
        // Filler words alone make no suggestion.
        assert!(by_shared_words("the moon is made of cheese", steps, 3).is_empty());
        assert_eq!(
            by_shared_words("every nodes are Ready", steps, 2),
            [
                "every node is Ready",
                "every pod in namespace \"kube-system\" is Ready"
            ]
        );
        assert_eq!(
            by_shared_words("OSD 3 went down", steps, 1),
            ["OSD 1 goes down"]
        );
    }
}
