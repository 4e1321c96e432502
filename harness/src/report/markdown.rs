//! `summary.md`: the verdict and criteria as GitHub-flavoured Markdown, sized for
//! `$GITHUB_STEP_SUMMARY` (failed criteria first, so they show without scrolling).

use std::{fs, io, path::PathBuf};

use super::{RunDir, ScenarioRecord, Summary};
use crate::verdict::{format_figure, Criterion, Verdict};

pub const MARKDOWN_FILE: &str = "summary.md";

#[derive(Debug, thiserror::Error)]
pub enum MarkdownError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A criterion with the scenario it was judged in.
pub(crate) struct Row<'a> {
    pub scenario: &'a ScenarioRecord,
    pub criterion: &'a Criterion,
}

impl Row<'_> {
    /// `feature:line`, the same locator the terminal and JUnit use.
    pub fn location(&self) -> String {
        format!("{}:{}", self.scenario.feature, self.scenario.line)
    }

    /// Only gating failures make a run no-go; advisory failures are listed but not
    /// counted as failed.
    pub fn failed(&self) -> bool {
        self.criterion.gating && !self.criterion.pass
    }
}

pub(crate) fn rows(summary: &Summary) -> Vec<Row<'_>> {
    summary
        .scenarios
        .iter()
        .flat_map(|s| {
            s.criteria.iter().map(move |c| Row {
                scenario: s,
                criterion: c,
            })
        })
        .collect()
}

/// `42 ms`, or `42` without a unit.
pub(crate) fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        format_figure(v)
    } else {
        format!("{} {unit}", format_figure(v))
    }
}

/// `<= 30 s`, plus where the threshold came from when it is not the feature's text.
pub(crate) fn threshold_text(c: &Criterion) -> String {
    let mut t = format!(
        "{} {}",
        c.comparison.symbol(),
        with_unit(c.threshold, &c.unit)
    );
    if let Some(src) = &c.source {
        t.push_str(&format!(" ({src})"));
    }
    t
}

/// The verdict as a heading word, with a mark that survives plain-text terminals.
pub(crate) fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Go => "GO",
        Verdict::NoGo => "NO-GO",
        Verdict::Aborted => "ABORTED",
        Verdict::Error => "ERROR",
    }
}

/// Keeps a cell inside its table cell: `|` would end it, a newline the row, and `<`
/// starting a tag would be read as HTML by GitHub. Other Markdown (and `<=`) is left
/// alone so the file stays readable as plain text.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        let tag_start = |c: &char| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?');
        match ch {
            '|' => out.push_str("\\|"),
            '<' if chars.peek().is_some_and(tag_start) => out.push_str("&lt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn table(rows: &[&Row<'_>]) -> String {
    let mut out = String::from(
        "| scenario | criterion | figure | threshold | result | gating | where |\n\
         |---|---|---:|---|---|---|---|\n",
    );
    for r in rows {
        let c = r.criterion;
        let result = match (c.pass, c.gating) {
            (true, _) => "pass",
            (false, true) => "**FAIL**",
            (false, false) => "fail (advisory)",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.scenario.name),
            cell(&c.name),
            cell(&with_unit(c.figure, &c.unit)),
            cell(&threshold_text(c)),
            result,
            if c.gating { "yes" } else { "no" },
            cell(&r.location()),
        ));
    }
    out
}

/// The terminal's closing word on the criteria when none failed: [`failed_section`],
/// unless the run could not run (too little was judged for "all N criteria passed")
/// or a reason already says that nothing was judged.
pub fn closing_criteria(summary: &Summary) -> Option<String> {
    let said = summary
        .reasons
        .iter()
        .any(|r| r == crate::verdict::NO_CRITERIA);
    (summary.verdict != Verdict::Error && !said)
        .then(|| failed_section(summary).trim_end().to_owned())
}

/// The failed-criteria part: a table of failed gating criteria, or one line saying all
/// passed. Also printed to the terminal at the end of a run.
pub fn failed_section(summary: &Summary) -> String {
    let all = rows(summary);
    let failed: Vec<&Row<'_>> = all.iter().filter(|r| r.failed()).collect();
    if failed.is_empty() {
        return if all.is_empty() {
            "no criteria were judged\n".to_owned()
        } else {
            format!("all {} criteria passed\n", all.len())
        };
    }
    format!(
        "### Failed criteria ({})\n\n{}",
        failed.len(),
        table(&failed)
    )
}

/// The whole summary.md.
pub fn render(summary: &Summary) -> String {
    let mut out = format!("## stormdrill: {}\n\n", verdict_label(summary.verdict));
    out.push_str(&format!(
        "Run `{}` against `{}`, seed `{}`, {} to {}.\n\n",
        summary.run_id,
        cell(&summary.target),
        summary.seed,
        summary.started.format("%Y-%m-%d %H:%M:%S UTC"),
        summary.finished.format("%H:%M:%S UTC"),
    ));
    if let Some(e) = &summary.error {
        out.push_str(&format!("**Error:** {}\n\n", cell(e)));
    }
    if summary.verdict != Verdict::Go && !summary.reasons.is_empty() {
        for r in &summary.reasons {
            out.push_str(&format!("- {}\n", cell(r)));
        }
        out.push('\n');
    }
    out.push_str(&failed_section(summary));
    let all = rows(summary);
    if !all.is_empty() {
        out.push_str(&format!("\n### All criteria ({})\n\n", all.len()));
        out.push_str(&table(&all.iter().collect::<Vec<_>>()));
    }
    out
}

pub fn write(run_dir: &RunDir, summary: &Summary) -> Result<PathBuf, MarkdownError> {
    let path = run_dir.path().join(MARKDOWN_FILE);
    fs::write(&path, render(summary)).map_err(|source| MarkdownError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{
        report::SCHEMA,
        verdict::{Comparison, ScenarioStatus},
    };

    /// A no-go run: one passed criterion, one failed with a name that needs escaping.
    pub(crate) fn sample() -> Summary {
        let t = Utc::now();
        Summary {
            schema: SCHEMA.into(),
            run_id: "r1".into(),
            target: "twin".into(),
            started: t,
            finished: t,
            verdict: Verdict::NoGo,
            reasons: vec!["criterion p99<x> failed".into()],
            seed: 7,
            error: None,
            profile: Some("twin".into()),
            harness: Some("stormdrill 0.1.0 (abc1234)".into()),
            scenarios: vec![ScenarioRecord {
                feature: "features/x.feature".into(),
                line: 3,
                name: "api survives <node> loss".into(),
                tags: vec![],
                status: ScenarioStatus::Failed,
                measurements: [("t0_s".to_owned(), 2.0), ("rto_s".to_owned(), 3.0)].into(),
                criteria: vec![
                    Criterion::new("rto_s", 3.0, Comparison::AtMost, 30.0, "s"),
                    Criterion::new("p99<x>|y", 900.0, Comparison::AtMost, 500.0, "ms")
                        .with_source("profile api.p99_ms"),
                ],
                message: None,
                timeline: None,
                health: None,
            }],
        }
    }

    #[test]
    fn failed_first_then_all() {
        let md = render(&sample());
        assert!(md.starts_with("## stormdrill: NO-GO\n"), "{md}");
        let failed = md.find("### Failed criteria (1)").expect(&md);
        let all = md.find("### All criteria (2)").expect(&md);
        assert!(failed < all);
        assert!(md.contains(
            "| api survives &lt;node> loss | p99&lt;x>\\|y | 900 ms | \
             <= 500 ms (profile api.p99_ms) | **FAIL** | yes | features/x.feature:3 |"
        ));
        assert!(
            md.contains("| rto_s | 3 s | <= 30 s | pass | yes |"),
            "{md}"
        );
    }

    #[test]
    fn all_passed_line() {
        let mut s = sample();
        s.scenarios[0].criteria.truncate(1);
        assert_eq!(failed_section(&s), "all 1 criteria passed\n");
        s.scenarios[0].criteria.clear();
        assert_eq!(failed_section(&s), "no criteria were judged\n");
    }

    #[test]
    fn the_terminal_does_not_say_all_passed_when_the_run_could_not_run() {
        let mut s = sample();
        s.scenarios[0].criteria.truncate(1);
        s.verdict = Verdict::NoGo;
        assert_eq!(
            closing_criteria(&s).as_deref(),
            Some("all 1 criteria passed")
        );
        s.verdict = Verdict::Error;
        assert_eq!(closing_criteria(&s), None);
        s.verdict = Verdict::NoGo;
        s.reasons = vec![crate::verdict::NO_CRITERIA.to_owned()];
        assert_eq!(closing_criteria(&s), None);
    }
}
