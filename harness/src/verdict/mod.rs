//! Criteria (a measured figure against a threshold) and the run's go/no-go verdict.

use serde::{Deserialize, Serialize};

/// How a figure is compared with its threshold; serialised as the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "==")]
    Equal,
}

impl Comparison {
    pub fn holds(self, figure: f64, threshold: f64) -> bool {
        match self {
            Comparison::AtMost => figure <= threshold,
            Comparison::Below => figure < threshold,
            Comparison::AtLeast => figure >= threshold,
            Comparison::Above => figure > threshold,
            Comparison::Equal => figure == threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::AtMost => "<=",
            Comparison::Below => "<",
            Comparison::AtLeast => ">=",
            Comparison::Above => ">",
            Comparison::Equal => "==",
        }
    }
}

/// One judged criterion: the measured figure beside its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub figure: f64,
    pub threshold: f64,
    pub unit: String,
    pub comparison: Comparison,
    pub pass: bool,
    /// Only gating criteria can turn a run into no-go; others are advisory.
    pub gating: bool,
}

impl Criterion {
    /// A gating criterion, judged on construction.
    pub fn new(
        name: impl Into<String>,
        figure: f64,
        comparison: Comparison,
        threshold: f64,
        unit: impl Into<String>,
    ) -> Self {
        Criterion {
            name: name.into(),
            figure,
            threshold,
            unit: unit.into(),
            comparison,
            // NaN never passes: a figure we could not measure is not a pass.
            pass: comparison.holds(figure, threshold),
            gating: true,
        }
    }

    /// Reported but never gating.
    pub fn advisory(mut self) -> Self {
        self.gating = false;
        self
    }
}

/// The run's verdict; exit codes follow DESIGN.md section 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Go,
    NoGo,
    Aborted,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Go => "go",
            Verdict::NoGo => "no-go",
            Verdict::Aborted => "aborted",
            Verdict::Error => "error",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioStatus {
    Passed,
    Failed,
    Skipped,
}

/// What the run reported besides its scenarios.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunFacts {
    /// Feature files that could not be parsed: the harness did not run what was asked.
    pub parsing_errors: usize,
    /// Scenario hooks that failed (e.g. the World could not be built).
    pub hook_errors: usize,
    pub aborted: bool,
}

/// A verdict and the reasons a release manager reads beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

/// One scenario as the verdict sees it.
pub struct Judged<'a> {
    pub name: &'a str,
    pub status: ScenarioStatus,
    pub criteria: &'a [Criterion],
}

/// go: at least one scenario ran, all passed, every gating criterion passed.
/// error wins over aborted, which wins over no-go: the weaker verdicts would hide
/// that the run itself was incomplete.
pub fn decide<'a>(scenarios: impl IntoIterator<Item = Judged<'a>>, facts: RunFacts) -> Decision {
    let mut reasons = Vec::new();
    if facts.parsing_errors > 0 {
        reasons.push(format!(
            "{} feature file(s) could not be parsed",
            facts.parsing_errors
        ));
    }
    if facts.hook_errors > 0 {
        reasons.push(format!("{} scenario hook(s) failed", facts.hook_errors));
    }
    if facts.aborted {
        reasons.push("the run was aborted".to_owned());
    }

    let mut ran = 0;
    for s in scenarios {
        ran += 1;
        match s.status {
            ScenarioStatus::Passed => {}
            ScenarioStatus::Failed => reasons.push(format!("scenario failed: {}", s.name)),
            ScenarioStatus::Skipped => reasons.push(format!("scenario skipped: {}", s.name)),
        }
        for c in s.criteria.iter().filter(|c| c.gating && !c.pass) {
            reasons.push(format!(
                "criterion {} failed: {} {} (threshold {} {}{})",
                c.name,
                c.figure,
                c.unit,
                c.comparison.symbol(),
                c.threshold,
                unit_suffix(&c.unit)
            ));
        }
    }
    if ran == 0 {
        reasons.push("no scenario ran".to_owned());
    }

    let verdict = if facts.parsing_errors > 0 || facts.hook_errors > 0 {
        Verdict::Error
    } else if facts.aborted {
        Verdict::Aborted
    } else if reasons.is_empty() {
        Verdict::Go
    } else {
        Verdict::NoGo
    };
    Decision { verdict, reasons }
}

fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged<'a>(status: ScenarioStatus, criteria: &'a [Criterion]) -> Judged<'a> {
        Judged {
            name: "s",
            status,
            criteria,
        }
    }

    fn crit(pass: bool, gating: bool) -> Criterion {
        let c = Criterion::new(
            "p99",
            if pass { 1.0 } else { 3.0 },
            Comparison::AtMost,
            2.0,
            "s",
        );
        if gating {
            c
        } else {
            c.advisory()
        }
    }

    #[test]
    fn comparisons() {
        assert!(Comparison::AtMost.holds(2.0, 2.0));
        assert!(!Comparison::Below.holds(2.0, 2.0));
        assert!(Comparison::AtLeast.holds(4.0, 4.0));
        assert!(!Comparison::Above.holds(4.0, 4.0));
        assert!(Comparison::Equal.holds(1.0, 1.0));
        assert!(!Criterion::new("x", f64::NAN, Comparison::AtMost, 1.0, "").pass);
    }

    #[test]
    fn go_when_all_passed_and_gating_criteria_pass() {
        let cs = [crit(true, true), crit(false, false)];
        let d = decide(
            [
                judged(ScenarioStatus::Passed, &cs),
                judged(ScenarioStatus::Passed, &[]),
            ],
            RunFacts::default(),
        );
        assert_eq!(d.verdict, Verdict::Go);
        assert!(d.reasons.is_empty());
    }

    #[test]
    fn no_go_when_nothing_ran() {
        let d = decide([], RunFacts::default());
        assert_eq!(d.verdict, Verdict::NoGo);
        assert_eq!(d.reasons, ["no scenario ran"]);
    }

    #[test]
    fn no_go_on_failed_or_skipped_scenario() {
        for status in [ScenarioStatus::Failed, ScenarioStatus::Skipped] {
            let d = decide(
                [judged(ScenarioStatus::Passed, &[]), judged(status, &[])],
                RunFacts::default(),
            );
            assert_eq!(d.verdict, Verdict::NoGo, "{status:?}");
        }
    }

    #[test]
    fn no_go_on_failed_gating_criterion_even_if_scenario_passed() {
        let cs = [crit(false, true)];
        let d = decide([judged(ScenarioStatus::Passed, &cs)], RunFacts::default());
        assert_eq!(d.verdict, Verdict::NoGo);
        assert_eq!(d.reasons, ["criterion p99 failed: 3 s (threshold <= 2 s)"]);
    }

    #[test]
    fn error_beats_aborted_beats_no_go() {
        let facts = RunFacts {
            parsing_errors: 1,
            hook_errors: 0,
            aborted: true,
        };
        let d = decide([judged(ScenarioStatus::Failed, &[])], facts);
        assert_eq!(d.verdict, Verdict::Error);

        let facts = RunFacts {
            aborted: true,
            ..RunFacts::default()
        };
        let d = decide([judged(ScenarioStatus::Passed, &[])], facts);
        assert_eq!(d.verdict, Verdict::Aborted);

        let facts = RunFacts {
            hook_errors: 2,
            ..RunFacts::default()
        };
        assert_eq!(decide([], facts).verdict, Verdict::Error);
    }

    #[test]
    fn serialised_names() {
        assert_eq!(serde_json::to_string(&Verdict::NoGo).unwrap(), "\"no-go\"");
        assert_eq!(
            serde_json::to_string(&ScenarioStatus::Skipped).unwrap(),
            "\"skipped\""
        );
        let c = serde_json::to_value(crit(true, true)).unwrap();
        assert_eq!(c["comparison"], "<=");
        assert_eq!(c["pass"], true);
        assert_eq!(c["gating"], true);
    }
}
