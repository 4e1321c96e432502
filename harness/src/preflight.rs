//! Pre-flight: everything a run can find wrong with its input without a target, found
//! before anything is started (`stormdrill check`, and the first thing `stormdrill run`
//! does). Every feature parses, every scenario has steps, every step matches a
//! definition, every `the profile's KEY` is in the acceptance profile and every
//! game-day scenario file a step names loads. Each problem names its file:line and
//! what to do about it; a run that would only find them halfway, after deploying the
//! stack, costs minutes and ends in a misleading no-go.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cucumber::gherkin::{self, GherkinEnv, Step, StepType};

use crate::{
    cli::CheckArgs,
    config::{threshold, ConfigError, Profile},
    gameday::scenario,
    runner::{self, FeatureSet, RunnerError},
    similar, steps,
    tags::TagExpr,
    target::TargetKind,
};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Features(#[from] RunnerError),
    #[error(transparent)]
    Profile(#[from] ConfigError),
    /// Each problem on its own line, the count last.
    #[error("{}", render(.0))]
    Problems(Vec<Problem>),
}

/// One thing wrong with the input, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The feature file as reports show it.
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

fn render(problems: &[Problem]) -> String {
    let mut out: Vec<String> = problems.iter().map(ToString::to_string).collect();
    out.push(format!(
        "{} problem(s) found before anything was started",
        problems.len()
    ));
    out.join("\n")
}

/// The checked input of a run.
#[derive(Debug)]
pub struct Checked {
    pub features: FeatureSet,
    pub profile: Option<Profile>,
    pub files: usize,
    pub scenarios: usize,
    pub steps: usize,
    pub took: Duration,
}

impl Checked {
    /// `stormdrill check`'s closing line.
    pub fn summary_line(&self) -> String {
        format!(
            "ok: {} feature file(s), {} scenario(s), {} step(s) checked against {} in {} ms",
            self.files,
            self.scenarios,
            self.steps,
            self.profile.as_ref().map_or_else(
                || "no acceptance profile".to_owned(),
                |p| format!("profile {}", p.path.display())
            ),
            self.took.as_millis()
        )
    }
}

/// Resolves the feature paths (default `features/`) and the profile (`--profile`, else
/// the target's default), then checks them.
pub fn check(
    paths: &[PathBuf],
    profile: Option<&Path>,
    target: TargetKind,
    tags: Option<&TagExpr>,
) -> Result<Checked, PreflightError> {
    let started = Instant::now();
    let paths = if paths.is_empty() {
        vec![PathBuf::from("features")]
    } else {
        paths.to_vec()
    };
    let features = FeatureSet::resolve(&paths)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let profile = threshold::profile_path(profile, target, &cwd)
        .as_deref()
        .map(Profile::load)
        .transpose()?;
    let files = features.files();
    let mut counts = (0, 0);
    let mut problems = Vec::new();
    for path in &files {
        let shown = features.display(path);
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let c = check_text(&shown, &text, profile.as_ref(), tags, &mut problems);
                counts = (counts.0 + c.0, counts.1 + c.1);
            }
            Err(e) => problems.push(Problem {
                file: shown,
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(PreflightError::Problems(problems));
    }
    Ok(Checked {
        features,
        profile,
        files: files.len(),
        scenarios: counts.0,
        steps: counts.1,
        took: started.elapsed(),
    })
}

/// `stormdrill check`.
pub fn check_command(args: &CheckArgs) -> Result<Checked, PreflightError> {
    check(
        &args.features,
        args.profile.as_deref(),
        args.target,
        args.tags.as_ref(),
    )
}

/// Checks one feature file's text; returns (scenarios, steps) checked. Every step must
/// be known; profile keys and scenario files count for the scenarios `tags` selects
/// (a run of `@phase1` on a cluster needs no chaos thresholds).
pub fn check_text(
    file: &str,
    text: &str,
    profile: Option<&Profile>,
    tags: Option<&TagExpr>,
    problems: &mut Vec<Problem>,
) -> (usize, usize) {
    let mut problem = |line: usize, message: String| {
        problems.push(Problem {
            file: file.to_owned(),
            line,
            message,
        })
    };
    let feature = match gherkin::Feature::parse(text, GherkinEnv::default()) {
        Ok(f) => f,
        Err(e) => {
            let (line, message) = syntax_error(text, &e.to_string());
            problem(line, message);
            return (0, 0);
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut counts = (0, 0);
    for (line, message) in description_problems(&lines, feature.position.line, false) {
        problem(line, message);
    }
    let scenarios: Vec<(Option<&gherkin::Rule>, &gherkin::Scenario)> = feature
        .scenarios
        .iter()
        .map(|sc| (None, sc))
        .chain(
            feature
                .rules
                .iter()
                .flat_map(|r| r.scenarios.iter().map(move |sc| (Some(r), sc))),
        )
        .collect();
    let selected = |rule: Option<&gherkin::Rule>, sc: &gherkin::Scenario| {
        tags.is_none_or(|t| t.matches(runner::all_tags(&feature, rule, sc)))
    };
    // Background steps run in every scenario; checked once, fully when a scenario of
    // theirs is selected.
    let any_selected = scenarios.iter().any(|(r, sc)| selected(*r, sc));
    let backgrounds = feature
        .background
        .iter()
        .chain(feature.rules.iter().filter_map(|r| r.background.as_ref()));
    for step in backgrounds.flat_map(|b| &b.steps) {
        counts.1 += 1;
        if let Some(message) = step_problem(step.ty, &step.value, profile, any_selected) {
            problem(step.position.line, message);
        }
    }
    for &(rule, sc) in &scenarios {
        let full = selected(rule, sc);
        counts.0 += 1;
        // gherkin takes a line it does not know (`Gvien ...`, a bare `Given`) for the
        // scenario's description: the step silently disappears.
        for (line, message) in description_problems(&lines, sc.position.line, true) {
            problem(line, message);
        }
        if sc.steps.is_empty() {
            problem(
                sc.position.line,
                format!(
                    "scenario `{}` has no steps: it would pass without checking anything",
                    sc.name
                ),
            );
        }
        // An outline's steps match once their `<placeholders>` are filled in.
        for step in &sc.steps {
            for text in expanded(step, sc) {
                counts.1 += 1;
                if let Some(message) = step_problem(step.ty, &text, profile, full) {
                    problem(step.position.line, message);
                }
            }
        }
    }
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    counts
}

/// The step's text for each row of the scenario's examples (itself when none).
fn expanded(step: &Step, sc: &gherkin::Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for table in sc.examples.iter().filter_map(|e| e.table.as_ref()) {
        let Some((header, rows)) = table.rows.split_first() else {
            continue;
        };
        for row in rows {
            let mut text = step.value.clone();
            for (name, value) in header.iter().zip(row) {
                text = text.replace(&format!("<{name}>"), value);
            }
            out.push(text);
        }
    }
    if out.is_empty() {
        out.push(step.value.clone());
    }
    out
}

/// What is wrong with one step, if anything; `full`: also its profile keys and
/// scenario file (the scenario will run).
fn step_problem(ty: StepType, text: &str, profile: Option<&Profile>, full: bool) -> Option<String> {
    let kw = steps::keyword(ty);
    if !steps::is_known(ty, text) {
        return Some(format!(
            "unknown step `{kw} {text}`; {}",
            steps::suggestion(ty, text)
        ));
    }
    if !full {
        return None;
    }
    for key in profile_keys(text) {
        if let Err(e) = threshold::required(profile, key) {
            let mut message = e.to_string();
            if let Some(p) = profile {
                let keys: Vec<String> = p.thresholds().into_iter().map(|t| t.0).collect();
                let close = similar::closest(key, keys.iter().map(String::as_str), 3);
                if !close.is_empty() {
                    message.push_str(&format!("; did you mean {}?", close.join(", ")));
                }
            }
            return Some(message);
        }
    }
    if let Some(name) = crate::steps::gameday::scenario_named(text) {
        if let Err(e) = scenario::load(name) {
            return Some(crate::diag::one_line(&e));
        }
    }
    None
}

/// The KEYs of every `the profile's KEY` in a step.
fn profile_keys(text: &str) -> Vec<&str> {
    text.match_indices(crate::steps::limit::PROFILE_PREFIX)
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .filter(|k| !k.is_empty())
        .collect()
}

const STEP_KEYWORDS: &[&str] = &["Given", "When", "Then", "And", "But"];

/// Lines gherkin read as the description of the block at `header` (1-based) that look
/// like steps: a keyword without text, a misspelt or lowercase keyword, and (in a
/// feature's description, `in_scenario` false) a step outside any scenario.
fn description_problems(lines: &[&str], header: usize, in_scenario: bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in lines.iter().enumerate().skip(header) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        let word = first.trim_end_matches(':');
        let is_step = STEP_KEYWORDS.contains(&word) && line.len() > first.len();
        // The description ends where the steps, examples or the next block start.
        if is_step && !in_scenario {
            out.push((
                i + 1,
                "a step outside any `Scenario:` or `Background:`: gherkin ignores it".into(),
            ));
            continue;
        }
        if is_step
            || line.starts_with("* ")
            || ["@", "|", "\"\"\"", "```"]
                .iter()
                .any(|p| line.starts_with(p))
            || ["Scenario", "Example", "Background", "Rule", "Feature"]
                .iter()
                .any(|k| word.starts_with(k))
        {
            break;
        }
        let close = STEP_KEYWORDS.iter().find(|k| looks_like_keyword(word, k));
        match close {
            Some(k) if *k == word => out.push((
                i + 1,
                format!("`{word}` without a step: write the step after the keyword"),
            )),
            Some(k) => out.push((
                i + 1,
                format!(
                    "`{word}` is not a step keyword (Given, When, Then, And, But; capitalised): \
                     did you mean `{k}`? gherkin takes this line for the scenario's description"
                ),
            )),
            None => {}
        }
    }
    out
}

/// `word` is `keyword` lowercased, or capitalised with one letter wrong or two swapped
/// (`Gvien`, `Thne`); prose such as `The`, `than` or `what` is not.
fn looks_like_keyword(word: &str, keyword: &str) -> bool {
    if word.eq_ignore_ascii_case(keyword) {
        return true;
    }
    let sorted = |w: &str| {
        let mut c: Vec<char> = w.to_lowercase().chars().collect();
        c.sort_unstable();
        c
    };
    word.chars().next().is_some_and(char::is_uppercase)
        && word.len() == keyword.len()
        && keyword.len() > 3
        && (similar::distance(word, keyword) <= 1 || sorted(word) == sorted(keyword))
}

/// A gherkin syntax error as (line, message); gherkin's error has only a Display
/// (`Error at LINE:COL: {expected tokens}`).
fn syntax_error(text: &str, error: &str) -> (usize, String) {
    let lines: Vec<&str> = text.lines().collect();
    let reported = error
        .strip_prefix("Error at ")
        .and_then(|r| r.split(':').next())
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    // gherkin often stops at the end of the file or a blank line after the culprit:
    // name the last line with text up to there.
    let line = (1..=reported.min(lines.len()))
        .rev()
        .find(|&l| !lines[l - 1].trim().is_empty() && !lines[l - 1].trim().starts_with('#'))
        .unwrap_or(reported);
    let at = lines.get(line.saturating_sub(1)).map_or("", |l| l.trim());
    (
        line,
        format!(
            "not valid Gherkin at `{at}`: steps go under `Scenario:` or `Background:`, blocks \
             start with `Feature:`, `Rule:`, `Scenario:` or `Examples:` (with the colon)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str, profile: Option<&Profile>) -> Vec<String> {
        let mut out = Vec::new();
        check_text("f.feature", text, profile, None, &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_clean_feature_has_no_problems() {
        let text = "Feature: f\n  Background:\n    Given the cluster is reachable\n  \
                    Scenario: s\n    Then every node is Ready\n";
        let mut out = Vec::new();
        assert_eq!(check_text("f.feature", text, None, None, &mut out), (1, 2));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn garbled_keywords_and_empty_scenarios() {
        let p = problems(
            "Feature: f\n  Scenario: s\n    Given\n    Gvien the cluster is reachable\n",
            None,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("f.feature:2: scenario `s` has no steps"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("f.feature:3: `Given` without a step"),
            "{p:?}"
        );
        assert!(
            p[2].contains("f.feature:4: `Gvien` is not a step keyword"),
            "{p:?}"
        );
        assert!(p[2].contains("did you mean `Given`?"), "{p:?}");
    }

    #[test]
    fn profile_keys_are_resolved() {
        let profile =
            Profile::parse(Path::new("p.yaml"), "chaos:\n  osd:\n    recovery_s: 60\n").unwrap();
        let step = "Feature: f\n  Scenario: s\n    Then every OSD is up and in within the \
                    profile's chaos.osd.recovery_sec\n";
        let p = problems(step, Some(&profile));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("f.feature:3: threshold `chaos.osd.recovery_sec`"));
        assert!(
            p[0].ends_with("did you mean chaos.osd.recovery_s?"),
            "{p:?}"
        );
        assert_eq!(
            profile_keys("within the profile's a.b_s and the profile's c."),
            ["a.b_s", "c"]
        );
    }

    #[test]
    fn profile_keys_count_for_selected_scenarios_only() {
        let text = "Feature: f\n  @chaos\n  Scenario: s\n    Then every OSD is up and in within \
                    the profile's chaos.osd.recovery_s\n  Scenario: t\n    Then every nods are Ready\n";
        let phase1: TagExpr = "@phase1".parse().unwrap();
        let mut out = Vec::new();
        check_text("f.feature", text, None, Some(&phase1), &mut out);
        // The unknown step still counts; the unselected scenario's key does not.
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].line, 6);
        let p = problems(text, None);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("needs an acceptance profile"), "{p:?}");
    }

    #[test]
    fn outlines_are_matched_per_example_row() {
        let text = "Feature: f\n  Scenario Outline: s\n    Then every <what> is Ready\n\n    \
                    Examples:\n      | what |\n      | node |\n      | nods |\n";
        let p = problems(text, None);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("unknown step `Then every nods is Ready`"),
            "{p:?}"
        );
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let p = problems(
            "Feature: f\n  Scenario: s\n    Given the cluster is reachable\n  Examples\n",
            None,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("f.feature:4: not valid Gherkin at `Examples`"),
            "{p:?}"
        );
        let p = problems(
            "Feature: f\n  Given the cluster is reachable\n  Scenario: s\n    Then every node is Ready\n",
            None,
        );
        assert_eq!(
            p,
            ["f.feature:2: a step outside any `Scenario:` or `Background:`: gherkin ignores it"]
        );
    }
}
