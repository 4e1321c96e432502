//! Step definitions (thin glue over probes), their catalog for `stormdrill steps`, and
//! the "closest known step" hint for unknown steps.

pub mod cluster;

use std::sync::LazyLock;

use cucumber::{
    codegen::{inventory, Regex, StepConstructor as _, WorldInventory},
    gherkin::{self, StepType},
};

use crate::{diag, probe::k8s::ProbeError, similar, world::World};

/// Why a step failed; the Display is what cucumber shows under the step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{}", diag::one_line(.0))]
    Probe(#[from] ProbeError),
    #[error("expected {expected}, but {seen}")]
    Unmet { expected: String, seen: String },
}

/// One step as documented by `stormdrill steps`.
#[derive(Clone, Copy, Debug)]
pub struct StepDoc {
    /// Keywords the step is registered under.
    pub keywords: &'static [&'static str],
    /// The step's text with placeholders.
    pub pattern: &'static str,
    /// A concrete use, without its keyword.
    pub example: &'static str,
    pub summary: &'static str,
}

const GIVEN: &[&str] = &["Given"];
const GIVEN_THEN: &[&str] = &["Given", "Then"];

/// Every step definition; a unit test keeps it in step with the registered steps.
pub const CATALOG: &[StepDoc] = &[
    StepDoc {
        keywords: GIVEN,
        pattern: "the cluster is reachable",
        example: "the cluster is reachable",
        summary: "GET /version answers; measures api_latency_ms",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "every node is Ready",
        example: "every node is Ready",
        summary: "every node's Ready condition is True; criterion nodes_ready",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "every pod in namespace {string} is Ready",
        example: "every pod in namespace \"kube-system\" is Ready",
        summary: "every pod not Succeeded is Ready; criterion pods_ready[NAMESPACE]",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "the {kind} {string} exists in namespace {string}",
        example: "the service \"kube-dns\" exists in namespace \"kube-system\"",
        summary: "a namespaced object exists; kind singular or plural, any case, \
                  optionally KIND.GROUP",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "the [cluster-scoped] {kind} {string} exists",
        example: "the namespace \"kube-system\" exists",
        summary: "a cluster-scoped object exists (namespace, node, storageclass, ...)",
    },
];

/// The regexes cucumber registered for the World, by step type.
fn registered() -> &'static [(StepType, Regex)] {
    static REGISTERED: LazyLock<Vec<(StepType, Regex)>> = LazyLock::new(|| {
        let mut out = Vec::new();
        for s in inventory::iter::<<World as WorldInventory>::Given> {
            out.push((StepType::Given, (s.inner().1)()));
        }
        for s in inventory::iter::<<World as WorldInventory>::When> {
            out.push((StepType::When, (s.inner().1)()));
        }
        for s in inventory::iter::<<World as WorldInventory>::Then> {
            out.push((StepType::Then, (s.inner().1)()));
        }
        out
    });
    &REGISTERED
}

fn is_known(ty: StepType, text: &str) -> bool {
    registered()
        .iter()
        .any(|(t, re)| *t == ty && re.is_match(text))
}

fn keyword(ty: StepType) -> &'static str {
    match ty {
        StepType::Given => "Given",
        StepType::When => "When",
        StepType::Then => "Then",
    }
}

/// For a scenario cucumber skipped: the first step no definition matches, and the
/// closest known step, e.g. ``unknown step `Then every nodes are Ready`; closest known
/// step: `Then every node is Ready` ``.
pub fn unknown_step_hint(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> Option<String> {
    let background = feature
        .background
        .iter()
        .chain(rule.and_then(|r| r.background.as_ref()))
        .flat_map(|b| &b.steps);
    let step = background
        .chain(&scenario.steps)
        .find(|s| !is_known(s.ty, &s.value))?;
    let mut hint = format!("unknown step `{} {}`", keyword(step.ty), step.value);
    let examples = CATALOG.iter().map(|d| d.example);
    if let Some(best) = similar::nearest(&step.value, examples) {
        let doc = CATALOG.iter().find(|d| d.example == best)?;
        let kw = if doc.keywords.contains(&keyword(step.ty)) {
            keyword(step.ty)
        } else {
            doc.keywords[0]
        };
        hint.push_str(&format!("; closest known step: `{kw} {best}`"));
    }
    Some(hint)
}

/// Text of `stormdrill steps`.
pub fn describe_catalog() -> String {
    let mut out = String::new();
    for d in CATALOG {
        out.push_str(&format!(
            "{} {}\n    {}\n    e.g. {} {}\n",
            d.keywords.join("|"),
            d.pattern,
            d.summary,
            // Checks read best as Then; Given-only steps keep Given.
            d.keywords.last().unwrap_or(&"Given"),
            d.example
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_type(kw: &str) -> StepType {
        match kw {
            "Given" => StepType::Given,
            "When" => StepType::When,
            "Then" => StepType::Then,
            other => panic!("unknown keyword {other}"),
        }
    }

    #[test]
    fn every_example_matches_exactly_one_definition_per_keyword() {
        for d in CATALOG {
            for kw in d.keywords {
                let ty = step_type(kw);
                let n = registered()
                    .iter()
                    .filter(|(t, re)| *t == ty && re.is_match(d.example))
                    .count();
                assert_eq!(n, 1, "`{kw} {}` matches {n} definitions", d.example);
            }
        }
        assert!(is_known(
            StepType::Then,
            "the cluster-scoped namespace \"x\" exists"
        ));
        assert!(is_known(
            StepType::Then,
            "the Deployments \"x\" exists in namespace \"y\""
        ));
    }

    #[test]
    fn every_definition_is_documented() {
        for (ty, re) in registered() {
            let documented = CATALOG
                .iter()
                .any(|d| d.keywords.contains(&keyword(*ty)) && re.is_match(d.example));
            assert!(
                documented,
                "{} {} has no catalog entry",
                keyword(*ty),
                re.as_str()
            );
        }
    }

    #[test]
    fn unknown_steps_get_the_closest_known_one() {
        let feature = gherkin::Feature::parse(
            "Feature: f\n  Scenario: s\n    Given the cluster is reachable\n    \
             Then every nodes are Ready\n",
            gherkin::GherkinEnv::default(),
        )
        .unwrap();
        let hint = unknown_step_hint(&feature, None, &feature.scenarios[0]).unwrap();
        assert_eq!(
            hint,
            "unknown step `Then every nodes are Ready`; closest known step: \
             `Then every node is Ready`"
        );
    }
}
