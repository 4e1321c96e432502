//! Stack steps: deploy the documented stack (the run's `--stack` folder, default
//! `fixtures/stack`) and wait for a workload's Ready replicas (watch based).
//!
//! Profile key: `stack.deploy_timeout_s` (300).

use std::time::Duration;

use cucumber::{given, then};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{api::Api, runtime::wait::await_condition, Client};

use super::limit::StepDuration;
use crate::{
    diag,
    fault::scale::WorkloadKind,
    stack::{self, StackError},
    verdict::{Comparison, Criterion},
    world::World,
};

const DEPLOY_TIMEOUT_S: f64 = 300.0;
/// How many not-ready objects a failure names.
const LIST_LIMIT: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StackStepError {
    #[error("{}", diag::one_line(.0))]
    Stack(#[from] StackError),
    #[error(
        "the stack was applied but {count} object(s) are not ready after {waited_s:.0}s: {list}"
    )]
    NotReady {
        count: usize,
        waited_s: f64,
        list: String,
    },
    #[error("`{0}` is not deployment or statefulset")]
    WorkloadKind(String),
    #[error("expected {expected}, but {seen}")]
    Unmet { expected: String, seen: String },
}

#[given(regex = r"^the documented stack is deployed$")]
async fn stack_is_deployed(world: &mut World) -> Result<(), StackStepError> {
    let secs = world
        .context()
        .profile
        .as_ref()
        .and_then(|p| p.number("stack.deploy_timeout_s"))
        .unwrap_or(DEPLOY_TIMEOUT_S);
    let dir = world.context().stack_dir.clone();
    if world.context().faults.dry_run() {
        // A dry run changes nothing, the stack included: check the manifests only.
        let manifests = stack::load_dir(&dir)?;
        println!(
            "dry-run: would apply {} objects from {} and wait for their readiness",
            manifests.len(),
            dir.display()
        );
        return Ok(());
    }
    // Scenarios running at once share one deployment (see stack::deploy_shared).
    let shown = crate::progress::Wait::start(
        format!("the stack ({}) to be deployed and ready", dir.display()),
        Some(Duration::from_secs_f64(secs.max(1.0))),
    );
    let report = stack::deploy_shared(
        world.client(),
        &dir,
        Duration::from_secs_f64(secs.max(1.0)),
        |line| {
            shown.status(line);
            tracing::debug!("stack: {line}")
        },
    )
    .await?;
    shown.finish(&format!("{} not ready", report.not_ready.len()));
    world.measure(
        "stack_deploy_s",
        (report.apply_time + report.ready_time)
            .as_secs_f64()
            .round(),
    );
    if report.not_ready.is_empty() {
        return Ok(());
    }
    let mut list: Vec<String> = report
        .not_ready
        .iter()
        .take(LIST_LIMIT)
        .map(|n| format!("{} ({})", n.object, n.reason))
        .collect();
    if report.not_ready.len() > LIST_LIMIT {
        list.push(format!("and {} more", report.not_ready.len() - LIST_LIMIT));
    }
    Err(StackStepError::NotReady {
        count: report.not_ready.len(),
        waited_s: (report.apply_time + report.ready_time).as_secs_f64(),
        list: list.join(", "),
    })
}

/// `status.readyReplicas` of a workload; None when it does not exist.
fn ready_replicas(obj: Option<&serde_json::Value>) -> Option<i32> {
    obj.map(|o| o["status"]["readyReplicas"].as_i64().unwrap_or(0) as i32)
}

/// Waits (watching) until the workload has at least `n` Ready replicas; the count seen
/// last, None if the workload never existed.
pub async fn wait_ready_replicas(
    client: &Client,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    n: i32,
    within: Duration,
) -> (bool, Option<i32>) {
    let last = std::sync::Arc::new(std::sync::Mutex::new(None));
    let shown = crate::progress::Wait::start(
        format!(
            "{} {namespace}/{name} to have {n} Ready replicas",
            kind.as_str()
        ),
        Some(within),
    );
    macro_rules! wait {
        ($k:ty) => {{
            let api: Api<$k> = Api::namespaced(client.clone(), namespace);
            let seen = last.clone();
            let cond = move |o: Option<&$k>| {
                let v = o.and_then(|o| serde_json::to_value(o).ok());
                let r = ready_replicas(v.as_ref());
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = r;
                r.is_some_and(|r| r >= n)
            };
            matches!(
                tokio::time::timeout(within, await_condition(api, name, cond)).await,
                Ok(Ok(_))
            )
        }};
    }
    let ok = match kind {
        WorkloadKind::Deployment => wait!(Deployment),
        WorkloadKind::StatefulSet => wait!(StatefulSet),
    };
    let seen = *last.lock().unwrap_or_else(|e| e.into_inner());
    shown.finish(&match (ok, seen) {
        (true, _) => "reached".to_owned(),
        (false, Some(r)) => format!("deadline passed with {r} Ready"),
        (false, None) => "deadline passed; it does not exist".to_owned(),
    });
    (ok, seen)
}

#[given(
    regex = r#"^(deployment|statefulset) "([^"]+)" in namespace "([^"]+)" has (\d+) Ready replicas? within (\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?))$"#
)]
#[then(
    regex = r#"^(deployment|statefulset) "([^"]+)" in namespace "([^"]+)" has (\d+) Ready replicas? within (\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?))$"#
)]
async fn has_ready_replicas(
    world: &mut World,
    kind: String,
    name: String,
    namespace: String,
    n: i32,
    within: StepDuration,
) -> Result<(), StackStepError> {
    let wk =
        WorkloadKind::parse(&kind).ok_or_else(|| StackStepError::WorkloadKind(kind.clone()))?;
    let started = std::time::Instant::now();
    let (ok, seen) = wait_ready_replicas(world.client(), wk, &namespace, &name, n, within.0).await;
    let pass = world.judge(Criterion::new(
        format!("ready_replicas[{namespace}/{name}]"),
        f64::from(seen.unwrap_or(0)),
        Comparison::AtLeast,
        f64::from(n),
        "replicas",
    ));
    if ok && pass {
        world.measure(
            format!("ready_wait_s[{namespace}/{name}]"),
            (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        );
        return Ok(());
    }
    let what = format!("{} {namespace}/{name}", wk.as_str());
    Err(StackStepError::Unmet {
        expected: format!("{what} to have {n} Ready replicas within {:?}", within.0),
        seen: match seen {
            Some(r) => format!("it had {r} after {:.1}s", started.elapsed().as_secs_f64()),
            None => "it does not exist".to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_replicas_default_to_zero() {
        let v = serde_json::json!({"status": {"readyReplicas": 2}});
        assert_eq!(ready_replicas(Some(&v)), Some(2));
        let v = serde_json::json!({"status": {}});
        assert_eq!(ready_replicas(Some(&v)), Some(0));
        assert_eq!(ready_replicas(None), None);
    }
}
