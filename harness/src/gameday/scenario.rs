//! A game-day scenario file (`scenarios/*.yaml`): the load to run, the steps (faults,
//! waits, reverts, recovery), the criteria and the abort conditions. Same conventions
//! as the DR drill's file (`scenarios/velero-dr.yaml`, [`crate::dr::scenario`]):
//! every key but the steps has a default, unknown keys are refused with file:line.
//! A file without `steps` is a DR drill and runs as one ([`Loaded::Dr`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dr::scenario::{self as dr_scenario, DrScenario, ScenarioError};

#[derive(Debug, thiserror::Error)]
pub enum GamedayScenarioError {
    #[error(transparent)]
    File(#[from] ScenarioError),
    #[error("invalid game-day scenario {path}:{line}:{column}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("invalid game-day scenario {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A game day of faults under load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GameDay {
    pub name: String,
    pub description: String,
    pub load: LoadSpec,
    pub steps: Vec<Step>,
    pub criteria: CriteriaSpec,
    pub abort: AbortSpec,
}

impl Default for GameDay {
    fn default() -> Self {
        GameDay {
            name: "gameday".into(),
            description: String::new(),
            load: LoadSpec::default(),
            steps: Vec::new(),
            criteria: CriteriaSpec::default(),
            abort: AbortSpec::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadSpec {
    /// Requests per second on the API; 0: no load (and no latency figures).
    pub rate: f64,
    /// Wait for a steady state before the first step.
    pub steady_first: bool,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            rate: 50.0,
            steady_first: true,
        }
    }
}

/// Limits judged when the degraded period ends; none set: nothing judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriteriaSpec {
    pub p99_during_ms: Option<f64>,
    pub error_rate_during_pct: Option<f64>,
}

/// When the game day stops by itself (besides Ctrl-C and a "no").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbortSpec {
    /// Abort when this many consecutive windows had an error rate above
    /// `error_rate_pct` (checked before each fault and while waiting).
    pub error_rate_pct: Option<f64>,
    pub windows: usize,
    /// Abort on Ceph HEALTH_ERR (the fault session watches it from the first fault).
    pub ceph_health_err: bool,
}

impl Default for AbortSpec {
    fn default() -> Self {
        AbortSpec {
            error_rate_pct: Some(50.0),
            windows: 10,
            ceph_health_err: true,
        }
    }
}

/// One step. Fault steps are destructive: the operator confirms each one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Kill `count` (or `percent` %) pods of a Deployment/StatefulSet, or matching a
    /// label selector.
    PodKill {
        #[serde(default)]
        deployment: Option<String>,
        #[serde(default)]
        statefulset: Option<String>,
        #[serde(default)]
        selector: Option<String>,
        namespace: String,
        #[serde(default)]
        count: Option<usize>,
        #[serde(default)]
        percent: Option<f64>,
        #[serde(default)]
        immediately: bool,
    },
    /// Scale a Deployment or StatefulSet to 0; the revert scales it back.
    WorkloadOutage {
        #[serde(default)]
        deployment: Option<String>,
        #[serde(default)]
        statefulset: Option<String>,
        namespace: String,
    },
    /// Scale OSD `osd`'s Deployment to 0; refused while a pool has size 1.
    OsdDown { osd: u32 },
    /// Cordon and evict a node's pods; the revert uncordons it.
    NodeDrain {
        node: String,
        #[serde(default = "default_drain_s")]
        timeout_s: f64,
    },
    /// Power a node off through the target's provider; refused for the last Ready one.
    NodePowerOff { node: String },
    /// A NetworkPolicy denying ingress to the selected pods; the revert deletes it.
    NetworkIsolation { selector: String, namespace: String },
    /// Revert every fault injected so far (newest first).
    Revert,
    /// Wait this long (at most 600 s), watching.
    Wait { seconds: f64 },
    /// Wait until the system has recovered (needs a load); judged: `rto_s <= within_s`.
    Recover { within_s: f64 },
}

fn default_drain_s() -> f64 {
    120.0
}

/// The longest `wait` step: waits watch a live system, they do not sleep through it.
pub const MAX_WAIT_S: f64 = 600.0;

impl Step {
    /// Faults change the cluster; the operator confirms each.
    pub fn destructive(&self) -> bool {
        !matches!(
            self,
            Step::Revert | Step::Wait { .. } | Step::Recover { .. }
        )
    }

    /// `pod-kill`, `wait`, ...
    pub fn action(&self) -> &'static str {
        match self {
            Step::PodKill { .. } => "pod-kill",
            Step::WorkloadOutage { .. } => "workload-outage",
            Step::OsdDown { .. } => "osd-down",
            Step::NodeDrain { .. } => "node-drain",
            Step::NodePowerOff { .. } => "node-power-off",
            Step::NetworkIsolation { .. } => "network-isolation",
            Step::Revert => "revert",
            Step::Wait { .. } => "wait",
            Step::Recover { .. } => "recover",
        }
    }

    /// What it does, in words, e.g. `kill 1 pod(s) of deployment openalex/fastapi`.
    pub fn describe(&self) -> String {
        let workload = |d: &Option<String>, s: &Option<String>, ns: &str| match (d, s) {
            (Some(d), _) => format!("deployment {ns}/{d}"),
            (None, Some(s)) => format!("statefulset {ns}/{s}"),
            (None, None) => format!("? in {ns}"),
        };
        match self {
            Step::PodKill {
                deployment,
                statefulset,
                selector,
                namespace,
                count,
                percent,
                immediately,
            } => {
                let amount = match (count, percent) {
                    (_, Some(p)) => format!("{p}% of the"),
                    (Some(c), None) => c.to_string(),
                    (None, None) => "1".into(),
                };
                let of = match selector {
                    Some(sel) => format!("pods matching {sel} in {namespace}"),
                    None => format!("pod(s) of {}", workload(deployment, statefulset, namespace)),
                };
                format!(
                    "kill {amount} {of}{}",
                    if *immediately {
                        " immediately (grace 0)"
                    } else {
                        ""
                    }
                )
            }
            Step::WorkloadOutage {
                deployment,
                statefulset,
                namespace,
            } => format!(
                "scale {} to 0 replicas",
                workload(deployment, statefulset, namespace)
            ),
            Step::OsdDown { osd } => {
                format!("take OSD {osd} down (scale rook-ceph-osd-{osd} to 0)")
            }
            Step::NodeDrain { node, timeout_s } => {
                format!("drain node {node} (cordon, evict; blocked evictions reported after {timeout_s} s)")
            }
            Step::NodePowerOff { node } => format!("power node {node} off"),
            Step::NetworkIsolation {
                selector,
                namespace,
            } => format!("isolate pods {selector} in {namespace} from the network"),
            Step::Revert => "revert every fault injected so far".into(),
            Step::Wait { seconds } => format!("watch for {seconds} s"),
            Step::Recover { within_s } => {
                format!("wait for recovery (a steady state that holds), at most {within_s} s")
            }
        }
    }

    /// How it is undone, as the plan says it before anything runs.
    pub fn revert_text(&self) -> &'static str {
        match self {
            Step::PodKill { .. } => "nothing to undo: the controller replaces the pods",
            Step::WorkloadOutage { .. } | Step::OsdDown { .. } => {
                "scale back to the replicas recorded before"
            }
            Step::NodeDrain { .. } => "uncordon the node",
            Step::NodePowerOff { .. } => "power the node back on",
            Step::NetworkIsolation { .. } => "delete the NetworkPolicy",
            Step::Revert | Step::Wait { .. } | Step::Recover { .. } => "",
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Step::PodKill {
                deployment,
                statefulset,
                selector,
                count,
                percent,
                ..
            } => {
                let targets = [
                    deployment.is_some(),
                    statefulset.is_some(),
                    selector.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if targets != 1 {
                    return Err(
                        "pod-kill: name exactly one of deployment, statefulset or selector".into(),
                    );
                }
                if count.is_some() && percent.is_some() {
                    return Err("pod-kill: count or percent, not both".into());
                }
                if count == &Some(0) || percent.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
                    return Err("pod-kill: count at least 1, percent in (0, 100]".into());
                }
            }
            Step::WorkloadOutage {
                deployment,
                statefulset,
                ..
            } if deployment.is_some() == statefulset.is_some() => {
                return Err(
                    "workload-outage: name exactly one of deployment or statefulset".into(),
                );
            }
            Step::NodeDrain { timeout_s, .. } if timeout_s.is_nan() || *timeout_s <= 0.0 => {
                return Err("node-drain: timeout_s must be positive".into())
            }
            Step::Wait { seconds } if !(*seconds >= 0.0 && *seconds <= MAX_WAIT_S) => {
                return Err(format!("wait: seconds must be in [0, {MAX_WAIT_S}]"))
            }
            Step::Recover { within_s } if !(*within_s > 0.0 && within_s.is_finite()) => {
                return Err("recover: within_s must be a positive number of seconds".into())
            }
            _ => {}
        }
        Ok(())
    }
}

impl GameDay {
    pub fn parse(path: &Path, text: &str) -> Result<GameDay, GamedayScenarioError> {
        let g: GameDay = serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            GamedayScenarioError::Parse {
                path: path.to_owned(),
                line,
                column,
                source,
            }
        })?;
        g.validate()
            .map_err(|reason| GamedayScenarioError::Invalid {
                path: path.to_owned(),
                reason,
            })?;
        Ok(g)
    }

    /// What makes a game day meaningless, in one sentence.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("steps is empty: a game day needs at least one step".into());
        }
        if !(self.load.rate >= 0.0 && self.load.rate.is_finite()) {
            return Err("load.rate must be zero or more requests per second".into());
        }
        for (i, s) in self.steps.iter().enumerate() {
            s.validate().map_err(|e| format!("step {}: {e}", i + 1))?;
            if matches!(s, Step::Recover { .. }) && self.load.rate == 0.0 {
                return Err(format!(
                    "step {}: recover needs a load (load.rate > 0) to judge recovery by",
                    i + 1
                ));
            }
        }
        if self.abort.error_rate_pct.is_some() && self.abort.windows == 0 {
            return Err("abort.windows must be at least 1".into());
        }
        Ok(())
    }
}

/// A scenario file, as `stormdrill gameday` runs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Loaded {
    GameDay(Box<GameDay>),
    /// A Velero DR drill file: backup, disaster (confirmed), restore, recovery.
    Dr(Box<DrScenario>),
}

/// Finds `given` as a path, else `scenarios/<given>.yaml` (from the working directory
/// or a parent), and loads it.
pub fn load(given: &str) -> Result<(PathBuf, Loaded), GamedayScenarioError> {
    let as_path = Path::new(given);
    let path = if as_path.is_file() {
        as_path.to_owned()
    } else if given.contains('/') || given.ends_with(".yaml") || given.ends_with(".yml") {
        dr_scenario::resolve(as_path, None)?
    } else {
        dr_scenario::resolve(&Path::new("scenarios").join(format!("{given}.yaml")), None)?
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
        path: path.clone(),
        source,
    })?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|source| GamedayScenarioError::Parse {
            path: path.clone(),
            line: source.location().map_or(0, |l| l.line()),
            column: source.location().map_or(0, |l| l.column()),
            source,
        })?;
    let loaded = if value.get("steps").is_some() {
        Loaded::GameDay(Box::new(GameDay::parse(&path, &text)?))
    } else {
        Loaded::Dr(Box::new(DrScenario::parse(&path, &text)?))
    };
    Ok((path, loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                load(p.to_str().unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                seen += 1;
            }
        }
        assert!(seen >= 3, "scenarios/ has the building blocks");
        let (_, l) = load(dir.join("velero-dr.yaml").to_str().unwrap()).unwrap();
        assert!(matches!(l, Loaded::Dr(_)));
    }

    #[test]
    fn steps_parse_by_action_and_refuse_typos() {
        let p = Path::new("g.yaml");
        let g = GameDay::parse(
            p,
            "name: x\nsteps:\n  - action: pod-kill\n    deployment: fastapi\n    namespace: openalex\n  - action: recover\n    within_s: 30\n",
        )
        .unwrap();
        assert_eq!(g.steps.len(), 2);
        assert!(g.steps[0].destructive() && !g.steps[1].destructive());
        assert_eq!(
            g.steps[0].describe(),
            "kill 1 pod(s) of deployment openalex/fastapi"
        );
        assert_eq!(g.abort.error_rate_pct, Some(50.0));
        let e = GameDay::parse(
            p,
            "steps:\n  - action: pod-kill\n    deploymnt: x\n    namespace: y\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid game-day scenario g.yaml:"),
            "{e}"
        );
        let e = GameDay::parse(p, "steps:\n  - action: pod-kill\n    namespace: y\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of deployment"), "{e}");
        let e = GameDay::parse(
            p,
            "load: {rate: 0}\nsteps:\n  - action: recover\n    within_s: 5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("recover needs a load"), "{e}");
        let e = GameDay::parse(p, "steps:\n  - action: wait\n    seconds: 9000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("step 1: wait"), "{e}");
        assert!(GameDay::parse(p, "name: x\n").is_err(), "no steps");
    }

    #[test]
    fn names_resolve_under_scenarios() {
        let (path, l) = load("pod-kill").unwrap();
        assert!(path.ends_with("scenarios/pod-kill.yaml"));
        assert!(matches!(l, Loaded::GameDay(_)));
        let e = load("no-such-scenario").unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
    }
}
