//! Cluster-level steps: reachability, node and pod readiness, object existence.

use cucumber::{given, then};

use super::StepError;
use crate::{
    probe::k8s,
    verdict::{Comparison, Criterion},
    world::World,
};

/// How many not-Ready objects a failure message names.
const LIST_LIMIT: usize = 10;

#[given(regex = r"^the cluster is reachable$")]
async fn cluster_is_reachable(world: &mut World) -> Result<(), StepError> {
    let latency = k8s::api_latency(world.client()).await?;
    // Microsecond resolution is all a single round trip can claim.
    let ms = (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    world.measure("api_latency_ms", ms);
    Ok(())
}

#[given(regex = r"^every node is Ready$")]
#[then(regex = r"^every node is Ready$")]
async fn every_node_is_ready(world: &mut World) -> Result<(), StepError> {
    let nodes = k8s::list_nodes(world.client()).await?;
    let r = k8s::node_readiness(&nodes);
    judge_readiness(world, "nodes_ready", "nodes", &r, "every node to be Ready")
}

#[given(regex = r#"^every pod in namespace "([^"]*)" is Ready$"#)]
#[then(regex = r#"^every pod in namespace "([^"]*)" is Ready$"#)]
async fn every_pod_is_ready(world: &mut World, namespace: String) -> Result<(), StepError> {
    let pods = k8s::list_pods(world.client(), &namespace).await?;
    let r = k8s::pod_readiness(&pods);
    judge_readiness(
        world,
        &format!("pods_ready[{namespace}]"),
        "pods",
        &r,
        &format!("every pod in namespace {namespace:?} to be Ready"),
    )
}

/// Records `ready >= total` as a criterion and fails the step with the culprits.
fn judge_readiness(
    world: &mut World,
    name: &str,
    unit: &str,
    r: &k8s::Readiness,
    expected: &str,
) -> Result<(), StepError> {
    // No objects at all is a failure, not a vacuous pass: it usually means a wrong
    // namespace or an empty cluster.
    let threshold = r.total.max(1) as f64;
    let pass = world.judge(Criterion::new(
        name,
        r.ready as f64,
        Comparison::AtLeast,
        threshold,
        unit,
    ));
    if pass {
        return Ok(());
    }
    let seen = if r.total == 0 {
        format!("there are none ({} ignored as Succeeded)", r.ignored)
    } else {
        format!(
            "{} of {} {unit} are not Ready: {}",
            r.total - r.ready,
            r.total,
            r.list_not_ready(LIST_LIMIT)
        )
    };
    Err(StepError::Unmet {
        expected: expected.to_owned(),
        seen,
    })
}

#[given(regex = r#"^the (\S+) "([^"]*)" exists in namespace "([^"]*)"$"#)]
#[then(regex = r#"^the (\S+) "([^"]*)" exists in namespace "([^"]*)"$"#)]
async fn namespaced_object_exists(
    world: &mut World,
    kind: String,
    name: String,
    namespace: String,
) -> Result<(), StepError> {
    object_exists(world, &kind, &name, Some(&namespace)).await
}

#[given(regex = r#"^the (?:cluster-scoped )?(\S+) "([^"]*)" exists$"#)]
#[then(regex = r#"^the (?:cluster-scoped )?(\S+) "([^"]*)" exists$"#)]
async fn cluster_object_exists(
    world: &mut World,
    kind: String,
    name: String,
) -> Result<(), StepError> {
    object_exists(world, &kind, &name, None).await
}

async fn object_exists(
    world: &mut World,
    word: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<(), StepError> {
    let client = world.client().clone();
    let kind = world.context().catalog.resolve(&client, word).await?;
    kind.require_scope(word, namespace.is_some())
        .map_err(k8s::ProbeError::from)?;
    if k8s::get_object(&client, &kind, namespace, name)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let place = namespace.map_or_else(String::new, |ns| format!(" in namespace {ns:?}"));
    Err(StepError::Unmet {
        expected: format!("{word} {name:?}{place} to exist"),
        seen: format!("the API server has no such {}", kind.describe()),
    })
}
