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
    /// Where the threshold comes from when not from the feature's text: the profile
    /// key (`profile storage.claim_bind_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
            source: None,
        }
    }

    /// Records where the threshold comes from (e.g. `profile storage.claim_bind_s`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
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
    /// A dry run plans its faults and measures nothing: no criteria is expected.
    pub dry_run: bool,
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

/// How a reason about a failed criterion starts (the closing table shows those).
pub const CRITERION_REASON: &str = "criterion ";

/// The reason of a run whose scenarios judged no gating criterion.
pub const NO_CRITERIA: &str = "no criteria were judged: a go needs at least one";

/// go: at least one scenario ran, at least one gating criterion was judged, all passed, every gating criterion passed.
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

    let (mut ran, mut judged) = (0, 0);
    for s in scenarios {
        ran += 1;
        judged += s.criteria.iter().filter(|c| c.gating).count();
        match s.status {
            ScenarioStatus::Passed => {}
            ScenarioStatus::Failed => reasons.push(format!("scenario failed: {}", s.name)),
            ScenarioStatus::Skipped => reasons.push(format!("scenario skipped: {}", s.name)),
        }
        for c in s.criteria.iter().filter(|c| c.gating && !c.pass) {
            reasons.push(format!(
                "{CRITERION_REASON}{} failed: {} {} (threshold {} {}{})",
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
    } else if judged == 0 && !facts.dry_run {
        // Passing steps that measure nothing prove nothing: go needs evidence.
        reasons.push(NO_CRITERIA.to_owned());
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

/// A figure as people read it: integers without decimals, others to 3 significant
/// decimals; NaN (nothing could be measured) as `n/a`.
pub fn format_figure(v: f64) -> String {
    if v.is_nan() {
        "n/a".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A failed gating criterion and where it was judged (`feature:line`).
pub struct FailedCriterion<'a> {
    pub criterion: &'a Criterion,
    pub location: String,
}

/// The closing table of failed gating criteria: figure against threshold and where,
/// e.g.
///
/// ```text
/// failed criteria (1):
///   criterion         figure  threshold                           where
///   claim_bound_s[x]  n/a s   <= 30 s (profile storage.claim_bind_s)  features/a.feature:7
/// ```
///
/// Empty when nothing failed.
pub fn failed_table<'a>(rows: impl IntoIterator<Item = FailedCriterion<'a>>) -> Vec<String> {
    const MAX_NAME: usize = 48;
    let cells: Vec<[String; 4]> = rows
        .into_iter()
        .map(|r| {
            let c = r.criterion;
            let mut name = c.name.clone();
            if name.chars().count() > MAX_NAME {
                name = name.chars().take(MAX_NAME - 1).collect::<String>() + "…";
            }
            let figure = format!("{}{}", format_figure(c.figure), unit_suffix(&c.unit));
            let mut threshold = format!(
                "{} {}{}",
                c.comparison.symbol(),
                format_figure(c.threshold),
                unit_suffix(&c.unit)
            );
            if let Some(src) = &c.source {
                threshold.push_str(&format!(" ({src})"));
            }
            [name, figure, threshold, r.location]
        })
        .collect();
    if cells.is_empty() {
        return Vec::new();
    }
    let header = [
        "criterion".to_owned(),
        "figure".to_owned(),
        "threshold".to_owned(),
        "where".to_owned(),
    ];
    let width = |i: usize| {
        cells
            .iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |r: &[String; 4]| {
        format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .trim_end()
        .to_owned()
    };
    let mut out = vec![format!("failed criteria ({}):", cells.len()), line(&header)];
    out.extend(cells.iter().map(line));
    out
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
    fn no_go_when_no_criterion_was_judged() {
        let advisory = [crit(true, false)];
        let d = decide(
            [judged(ScenarioStatus::Passed, &advisory)],
            RunFacts::default(),
        );
        assert_eq!(d.verdict, Verdict::NoGo);
        assert_eq!(d.reasons, [NO_CRITERIA]);
        // A dry run measures nothing by design: its plan passing is its go.
        let dry = RunFacts {
            dry_run: true,
            ..RunFacts::default()
        };
        let d = decide([judged(ScenarioStatus::Passed, &advisory)], dry);
        assert_eq!(d.verdict, Verdict::Go);
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
            aborted: true,
            ..RunFacts::default()
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
    fn figures_read_well() {
        assert_eq!(format_figure(3.0), "3");
        assert_eq!(format_figure(0.12345), "0.123");
        assert_eq!(format_figure(2.5), "2.5");
        assert_eq!(format_figure(f64::NAN), "n/a");
    }

    #[test]
    fn failed_table_lines_up_figure_threshold_and_location() {
        let a = Criterion::new(
            "claim_bound_s[ceph-hdd]",
            f64::NAN,
            Comparison::AtMost,
            30.0,
            "s",
        )
        .with_source("profile storage.claim_bind_s");
        let b = Criterion::new(
            "pool_size[nvme-pool]",
            1.0,
            Comparison::Equal,
            2.0,
            "replicas",
        );
        let t = failed_table([
            FailedCriterion {
                criterion: &a,
                location: "features/p1.feature:12".into(),
            },
            FailedCriterion {
                criterion: &b,
                location: "features/p1.feature:20".into(),
            },
        ]);
        assert_eq!(
            t,
            [
                "failed criteria (2):",
                "  criterion                figure      threshold                               where",
                "  claim_bound_s[ceph-hdd]  n/a s       <= 30 s (profile storage.claim_bind_s)  features/p1.feature:12",
                "  pool_size[nvme-pool]     1 replicas  == 2 replicas                           features/p1.feature:20",
            ]
        );
        assert!(failed_table([]).is_empty());
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
