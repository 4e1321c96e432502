//! Fault steps: name targets, let [`crate::fault::resolve`] turn them into objects and
//! check preconditions, inject through the run's [`FaultRun`] (guard, journal, dry
//! run), and tell the scenario's drill the fault's t0. "Comes back" steps revert the
//! scenario's matching fault now; the runner's after hook reverts the rest.
//!
//! Scenarios that act (any `When` step) or are tagged `@serial`, `@chaos` or
//! `@destructive` run one at a time ([`scenario_type`]): two scenarios injecting
//! faults at once would judge each other's damage.
//!
//! Profile keys: `faults.drain_timeout_s` (120), `abort.error_rate_pct` and
//! `abort.windows` (the error-rate abort condition; off unless both are set).

use std::time::Duration;

use cucumber::{gherkin, then, when};

use super::limit::StepDuration;
use crate::{
    diag,
    fault::{
        abort,
        ceph::{SetFlag, Toolbox},
        drain::NodeDrain,
        network::Isolate,
        pod_kill::PodKill,
        power::PowerOff,
        resolve::{self, Amount},
        scale::{ScaleToZero, Workload, WorkloadKind},
        session::RevertReport,
        Fault, FaultError, FaultKind, Revert,
    },
    measure::{drill::ErrorRateAbort, touched::Touched},
    world::{FaultChange, World},
};

/// The longest "the harness waits" step: waits are for game days and kill tests, not
/// for sleeping through a suite.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
const DRAIN_TIMEOUT_S: f64 = 120.0;

#[derive(Debug, thiserror::Error)]
pub enum FaultStepError {
    #[error("{}", diag::one_line(.0))]
    Fault(#[from] FaultError),
    #[error("no {0} is injected in this scenario, so there is nothing to bring back")]
    NothingActive(String),
    #[error("reverting failed: {0}")]
    Revert(String),
    #[error("`{0}` is not deployment or statefulset")]
    WorkloadKind(String),
    #[error("waits are bounded to {} s; asked for {asked} s", MAX_WAIT.as_secs())]
    TooLong { asked: u64 },
}

fn profile_number(world: &World, key: &str) -> Option<f64> {
    world.context().profile.as_ref().and_then(|p| p.number(key))
}

/// Injects `fault`: the error-rate abort check first, then the run's guard, journal
/// and apply; t0 goes to the drill, which then checks the error-rate abort on every
/// window until the degraded period ends or the scenario's faults are all reverted.
async fn inject(world: &mut World, fault: &dyn Fault) -> Result<(), FaultStepError> {
    let faults = world.context().faults.clone();
    let abort_rule = profile_number(world, "abort.error_rate_pct")
        .zip(profile_number(world, "abort.windows"))
        .map(|(pct, n)| ErrorRateAbort {
            threshold_pct: pct,
            windows: n.max(1.0) as usize,
        });
    if let (Some(rule), Some(drill)) = (abort_rule, world.drill.as_ref()) {
        let breached = drill
            .load()
            .with_windows(|w| abort::error_rate_breached(w, rule.threshold_pct, rule.windows));
        if let Some(reason) = breached {
            faults.abort().trigger(reason.clone());
            return Err(FaultError::Aborting(reason).into());
        }
    }
    super::load::watch_touched(world, fault);
    let injected = faults.inject(&mut world.faults, fault).await?;
    if injected.seq.is_some() {
        let ack = injected.acknowledged - injected.asked;
        world.measure("fault_ack_ms", (ack.as_secs_f64() * 1e6).round() / 1000.0);
        if let Some(drill) = world.drill.as_mut() {
            drill.fault_started(injected.acknowledged);
            if let Some(rule) = abort_rule {
                drill.watch_error_rate(rule, faults.abort().clone());
            }
        }
        world.last_fault_change = Some(FaultChange {
            at: injected.acknowledged,
            what: "injected",
        });
    }
    Ok(())
}

/// Reverts the scenario's faults that `pred` selects; fails when there is none, or
/// when a revert failed (it stays in the journal for the run's end and `recover`).
async fn bring_back(
    world: &mut World,
    what: &str,
    pred: impl Fn(&Revert) -> bool,
) -> Result<(), FaultStepError> {
    let faults = world.context().faults.clone();
    if faults.dry_run() {
        println!("dry-run: would revert the {what}");
        return Ok(());
    }
    let reports = faults.revert_where(&mut world.faults, pred, "step").await;
    if reports.is_empty() {
        return Err(FaultStepError::NothingActive(what.to_owned()));
    }
    world.last_fault_change = Some(FaultChange {
        at: std::time::Instant::now(),
        what: "reverted",
    });
    if world.faults.active().is_empty() {
        if let Some(drill) = world.drill.as_mut() {
            drill.stop_watching_error_rate();
        }
    }
    mark_reverted(world);
    failures(&reports)
}

/// The report's "reverted" marker: when, on the load's time axis, a step reverted.
fn mark_reverted(world: &mut World) {
    if let Some(t) = world.drill.as_ref().map(|d| d.load().now_s()) {
        world.measure("reverted_at_s", (t * 1000.0).round() / 1000.0);
    }
}

fn failures(reports: &[RevertReport]) -> Result<(), FaultStepError> {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.outcome.is_err())
        .map(ToString::to_string)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(FaultStepError::Revert(failed.join("; ")))
    }
}

fn workload_kind(word: &str) -> Result<WorkloadKind, FaultStepError> {
    WorkloadKind::parse(word).ok_or_else(|| FaultStepError::WorkloadKind(word.to_owned()))
}

/// An optional capture: cucumber passes the empty string when it did not match.
fn optional(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// `1` / `50%` as written before "pod(s) of ...".
fn amount(n: usize, percent: &str) -> Amount {
    if !percent.is_empty() {
        Amount::Percent(n as f64)
    } else {
        Amount::Count(n)
    }
}

// --- OSDs ---------------------------------------------------------------------------

#[when(regex = r"^OSD (\d+) goes down$")]
async fn osd_goes_down(world: &mut World, id: u32) -> Result<(), FaultStepError> {
    let client = world.client().clone();
    let workload = resolve::osd_deployment(&client, id).await?;
    resolve::refuse_pool_size_one(&client, &format!("OSD {id} down")).await?;
    let fault = ScaleToZero {
        kind: FaultKind::OsdDown,
        workload,
    };
    inject(world, &fault).await
}

#[when(regex = r"^the pod of OSD (\d+) is deleted$")]
async fn osd_pod_deleted(world: &mut World, id: u32) -> Result<(), FaultStepError> {
    let client = world.client().clone();
    let deployment = resolve::osd_deployment(&client, id).await?;
    resolve::refuse_pool_size_one(&client, &format!("OSD {id} down")).await?;
    let pods =
        resolve::live_pods(&client, &deployment.namespace, &resolve::osd_selector(id)).await?;
    let fault = PodKill {
        kind: FaultKind::OsdDown,
        namespace: deployment.namespace.clone(),
        pods,
        grace_seconds: None,
        owner: Touched::Workload(deployment),
    };
    inject(world, &fault).await
}

#[when(regex = r"^OSD (\d+) comes back$")]
async fn osd_comes_back(world: &mut World, id: u32) -> Result<(), FaultStepError> {
    let name = format!("rook-ceph-osd-{id}");
    bring_back(
        world,
        &format!("outage of OSD {id}"),
        |r| matches!(r, Revert::ScaleBack(s) if s.workload.name == name),
    )
    .await
}

#[when(regex = r"^OSD (\d+) is marked out$")]
async fn osd_marked_out(world: &mut World, id: u32) -> Result<(), FaultStepError> {
    let client = world.client().clone();
    let toolbox = Toolbox::find(&client).await.map_err(FaultError::from)?;
    resolve::refuse_pool_size_one(&client, &format!("OSD {id} out")).await?;
    inject(world, &crate::fault::ceph::OsdOut { id, toolbox }).await
}

#[when(regex = r"^OSD (\d+) is marked in$")]
async fn osd_marked_in(world: &mut World, id: u32) -> Result<(), FaultStepError> {
    bring_back(
        world,
        &format!("`ceph osd out {id}`"),
        |r| matches!(r, Revert::OsdIn(o) if o.id == id),
    )
    .await
}

#[when(regex = r"^the noout flag is set$")]
async fn noout_set(world: &mut World) -> Result<(), FaultStepError> {
    let toolbox = Toolbox::find(world.client())
        .await
        .map_err(FaultError::from)?;
    let fault = SetFlag {
        flag: "noout".to_owned(),
        toolbox,
    };
    inject(world, &fault).await
}

#[when(regex = r"^the noout flag is unset$")]
async fn noout_unset(world: &mut World) -> Result<(), FaultStepError> {
    bring_back(
        world,
        "noout flag",
        |r| matches!(r, Revert::UnsetFlag(f) if f.flag == "noout"),
    )
    .await
}

// --- nodes --------------------------------------------------------------------------

#[when(regex = r#"^node "([^"]+)" loses power$"#)]
async fn node_loses_power(world: &mut World, node: String) -> Result<(), FaultStepError> {
    resolve::refuse_last_ready_node(world.client(), &node).await?;
    inject(world, &PowerOff { node }).await
}

#[when(regex = r#"^the node of pod "([^"]+)" in namespace "([^"]+)" loses power$"#)]
async fn pods_node_loses_power(
    world: &mut World,
    pod: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    let node = resolve::node_of_pod(world.client(), &namespace, &pod).await?;
    resolve::refuse_last_ready_node(world.client(), &node).await?;
    inject(world, &PowerOff { node }).await
}

#[when(regex = r#"^a worker without pod "([^"]+)" in namespace "([^"]+)" loses power$"#)]
async fn other_worker_loses_power(
    world: &mut World,
    pod: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    let mut rng = world.context().faults.rng();
    let node = resolve::worker_without_pod(world.client(), &namespace, &pod, &mut rng).await?;
    resolve::refuse_last_ready_node(world.client(), &node).await?;
    inject(world, &PowerOff { node }).await
}

#[when(regex = r"^the node that lost power regains power$")]
async fn powered_off_node_regains_power(world: &mut World) -> Result<(), FaultStepError> {
    bring_back(world, "power loss of a node", |r| {
        matches!(r, Revert::PowerOn(_))
    })
    .await
}

#[when(regex = r#"^node "([^"]+)" regains power$"#)]
async fn node_regains_power(world: &mut World, node: String) -> Result<(), FaultStepError> {
    bring_back(
        world,
        &format!("power loss of node {node}"),
        |r| matches!(r, Revert::PowerOn(p) if p.node == node),
    )
    .await
}

#[when(regex = r#"^node "([^"]+)" is drained$"#)]
async fn node_drained(world: &mut World, node: String) -> Result<(), FaultStepError> {
    let secs = profile_number(world, "faults.drain_timeout_s").unwrap_or(DRAIN_TIMEOUT_S);
    let timeout = Duration::from_secs_f64(secs.max(1.0));
    inject(world, &NodeDrain { node, timeout }).await
}

#[when(
    regex = r#"^node "([^"]+)" is drained within (\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?))$"#
)]
async fn node_drained_within(
    world: &mut World,
    node: String,
    within: StepDuration,
) -> Result<(), FaultStepError> {
    inject(
        world,
        &NodeDrain {
            node,
            timeout: within.0,
        },
    )
    .await
}

#[when(regex = r#"^node "([^"]+)" is uncordoned$"#)]
async fn node_uncordoned(world: &mut World, node: String) -> Result<(), FaultStepError> {
    bring_back(
        world,
        &format!("drain of node {node}"),
        |r| matches!(r, Revert::Uncordon(u) if u.node == node),
    )
    .await
}

// --- pods and workloads -------------------------------------------------------------

#[when(
    regex = r#"^(\d+)(%)? (?:pods?|of the pods) of (deployment|statefulset) "([^"]+)"(?: in namespace "([^"]+)")? (?:is|are) killed( immediately)?$"#
)]
async fn workload_pods_killed(
    world: &mut World,
    n: usize,
    percent: String,
    kind: String,
    name: String,
    namespace: String,
    immediately: String,
) -> Result<(), FaultStepError> {
    let client = world.client().clone();
    let w =
        resolve::find_workload(&client, workload_kind(&kind)?, &name, optional(&namespace)).await?;
    let selector = resolve::workload_selector(&client, &w).await?;
    let namespace = w.namespace.clone();
    let how = (amount(n, &percent), !immediately.is_empty());
    kill(world, &namespace, &selector, how, Touched::Workload(w)).await
}

#[when(
    regex = r#"^(\d+)(%)? (?:pods?|of the pods) matching "([^"]+)" in namespace "([^"]+)" (?:is|are) killed( immediately)?$"#
)]
async fn selected_pods_killed(
    world: &mut World,
    n: usize,
    percent: String,
    selector: String,
    namespace: String,
    immediately: String,
) -> Result<(), FaultStepError> {
    let labels = resolve::parse_selector(&selector)?;
    let selector = resolve::selector_string(&labels);
    let owner = Touched::Pods {
        namespace: namespace.clone(),
        selector: selector.clone(),
    };
    let how = (amount(n, &percent), !immediately.is_empty());
    kill(world, &namespace, &selector, how, owner).await
}

async fn kill(
    world: &mut World,
    namespace: &str,
    selector: &str,
    (amount, immediately): (Amount, bool),
    owner: Touched,
) -> Result<(), FaultStepError> {
    let mut rng = world.context().faults.rng();
    let pods = resolve::pick_pods(world.client(), namespace, selector, amount, &mut rng).await?;
    let fault = PodKill {
        kind: FaultKind::PodKill,
        namespace: namespace.to_owned(),
        pods,
        grace_seconds: immediately.then_some(0),
        owner,
    };
    inject(world, &fault).await
}

#[when(regex = r#"^the database "([^"]+)"(?: in namespace "([^"]+)")? is unavailable$"#)]
async fn database_unavailable(
    world: &mut World,
    name: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    outage(
        world,
        WorkloadKind::StatefulSet,
        &name,
        optional(&namespace),
    )
    .await
}

#[when(
    regex = r#"^the (deployment|statefulset) "([^"]+)"(?: in namespace "([^"]+)")? is unavailable$"#
)]
async fn workload_unavailable(
    world: &mut World,
    kind: String,
    name: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    outage(world, workload_kind(&kind)?, &name, optional(&namespace)).await
}

async fn outage(
    world: &mut World,
    kind: WorkloadKind,
    name: &str,
    namespace: Option<&str>,
) -> Result<(), FaultStepError> {
    let workload = resolve::find_workload(world.client(), kind, name, namespace).await?;
    let fault = ScaleToZero {
        kind: FaultKind::WorkloadOutage,
        workload,
    };
    inject(world, &fault).await
}

#[when(
    regex = r#"^the (database|deployment|statefulset) "([^"]+)"(?: in namespace "([^"]+)")? is available again$"#
)]
async fn workload_available_again(
    world: &mut World,
    kind: String,
    name: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    let kind = if kind == "database" {
        WorkloadKind::StatefulSet
    } else {
        workload_kind(&kind)?
    };
    let matches = |w: &Workload| {
        w.kind == kind && w.name == name && (namespace.is_empty() || w.namespace == namespace)
    };
    bring_back(
        world,
        &format!("outage of {} {name}", kind.as_str()),
        |r| matches!(r, Revert::ScaleBack(s) if matches(&s.workload)),
    )
    .await
}

// --- network ------------------------------------------------------------------------

#[when(regex = r#"^the pods of "([^"]+)" in namespace "([^"]+)" are isolated from the network$"#)]
async fn pods_isolated(
    world: &mut World,
    selector: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    let labels = resolve::parse_selector(&selector)?;
    inject(world, &Isolate { namespace, labels }).await
}

#[when(regex = r#"^the pods of "([^"]+)" in namespace "([^"]+)" are reconnected to the network$"#)]
async fn pods_reconnected(
    world: &mut World,
    selector: String,
    namespace: String,
) -> Result<(), FaultStepError> {
    let name = crate::fault::network::policy_name(&resolve::parse_selector(&selector)?);
    bring_back(
        world,
        &format!("isolation of {selector}"),
        |r| matches!(r, Revert::DeletePolicy(p) if p.name == name && p.namespace == namespace),
    )
    .await
}

// --- control ------------------------------------------------------------------------

#[when(regex = r"^the injected faults are reverted$")]
async fn faults_reverted(world: &mut World) -> Result<(), FaultStepError> {
    let faults = world.context().faults.clone();
    let reports = faults.revert_scenario(&mut world.faults).await;
    if !reports.is_empty() {
        world.last_fault_change = Some(FaultChange {
            at: std::time::Instant::now(),
            what: "reverted",
        });
        mark_reverted(world);
    }
    failures(&reports)
}

#[when(regex = r"^the harness waits (\d+) seconds?$")]
#[then(regex = r"^the harness waits (\d+) seconds?$")]
async fn harness_waits(_world: &mut World, secs: u64) -> Result<(), FaultStepError> {
    if secs > MAX_WAIT.as_secs() {
        return Err(FaultStepError::TooLong { asked: secs });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

/// The runner's after hook (cucumber runs it after failed and panicking steps too):
/// reverts what the scenario injected, newest first. Never fails; a revert that fails
/// stays in the journal for the run's end sweep and `stormdrill recover`.
pub async fn finish(world: &mut World) {
    if world.faults.active().is_empty() {
        return;
    }
    let faults = world.context().faults.clone();
    let started = std::time::Instant::now();
    let reports = faults.revert_scenario(&mut world.faults).await;
    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
    world.measure("faults_reverted", (reports.len() - failed) as f64);
    world.measure(
        "revert_ms",
        (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
    );
    if failed > 0 {
        world.measure("faults_not_reverted", failed as f64);
    }
}

/// Tags that make a scenario run alone.
pub const SERIAL_TAGS: [&str; 3] = ["serial", "chaos", "destructive"];

/// Serial for scenarios that act on the cluster (any `When` step, background
/// included) or carry a [`SERIAL_TAGS`] tag; concurrent otherwise.
pub fn scenario_type(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> cucumber::runner::basic::ScenarioType {
    use cucumber::runner::basic::ScenarioType;
    let tagged = feature
        .tags
        .iter()
        .chain(rule.iter().flat_map(|r| &r.tags))
        .chain(&scenario.tags)
        .any(|t| SERIAL_TAGS.contains(&t.as_str()));
    let acts = feature
        .background
        .iter()
        .chain(rule.and_then(|r| r.background.as_ref()))
        .flat_map(|b| &b.steps)
        .chain(&scenario.steps)
        .any(|s| s.ty == gherkin::StepType::When);
    if tagged || acts {
        ScenarioType::Serial
    } else {
        ScenarioType::Concurrent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cucumber::runner::basic::ScenarioType;

    fn types(text: &str) -> Vec<ScenarioType> {
        let f = gherkin::Feature::parse(text, gherkin::GherkinEnv::default()).unwrap();
        f.scenarios
            .iter()
            .map(|s| scenario_type(&f, None, s))
            .collect()
    }

    #[test]
    fn acting_or_tagged_scenarios_run_alone() {
        let t = types(
            "Feature: f\n  Scenario: look\n    Given the cluster is reachable\n\n  \
             Scenario: act\n    Given the cluster is reachable\n    When OSD 1 goes down\n\n  \
             @chaos\n  Scenario: tagged\n    Given the cluster is reachable\n",
        );
        assert_eq!(
            t,
            [
                ScenarioType::Concurrent,
                ScenarioType::Serial,
                ScenarioType::Serial
            ]
        );
        let t = types("@destructive\nFeature: f\n  Scenario: s\n    Given x\n");
        assert_eq!(t, [ScenarioType::Serial]);
    }
}
