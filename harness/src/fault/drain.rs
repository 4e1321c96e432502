//! Node drain, as `kubectl drain --ignore-daemonsets` does it: cordon, then evict every
//! pod through the Eviction API so PodDisruptionBudgets are honoured, retrying blocked
//! evictions until a timeout. A drain still blocked then fails naming each blocked pod
//! and its budget (it never hangs). The revert uncordons the node, unless it was
//! cordoned before the drain.

use std::time::{Duration, Instant};

use futures::{future::BoxFuture, FutureExt as _, StreamExt as _};
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{Api, EvictParams, ListParams},
    ResourceExt,
};
use serde::{Deserialize, Serialize};

use crate::measure::touched::Touched;

use super::{
    is_not_found, status_code, Blocked, Fault, FaultCtx, FaultError, FaultKind, Plan, Revert,
    Reverted,
};

/// Pause between rounds of blocked evictions (kubectl waits 5 s; faster here, the
/// budget usually frees up as soon as a replacement pod is Ready).
const RETRY: Duration = Duration::from_millis(500);
/// Bound of one eviction request, so a server that never answers cannot hang a drain.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Evictions in flight at once.
const EVICTIONS_AT_ONCE: usize = 8;

#[derive(Clone, Debug)]
pub struct NodeDrain {
    pub node: String,
    /// How long blocked evictions are retried.
    pub timeout: Duration,
}

/// Pods a drain evicts: not DaemonSet pods (their controller ignores cordons and
/// would recreate them), not static/mirror pods, not finished or terminating ones.
pub fn evictable(pod: &Pod) -> bool {
    let daemon = pod
        .owner_references()
        .iter()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    let mirror = pod
        .annotations()
        .contains_key("kubernetes.io/config.mirror");
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    !(daemon || mirror || finished || pod.metadata.deletion_timestamp.is_some())
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

impl NodeDrain {
    async fn pods(&self, ctx: &FaultCtx) -> Result<Vec<Pod>, FaultError> {
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let pods = Api::<Pod>::all(ctx.client.clone())
            .list(&lp)
            .await
            .map_err(FaultError::api(format!(
                "listing the pods of node {}",
                self.node
            )))?;
        Ok(pods.items.into_iter().filter(evictable).collect())
    }

    /// The PDB that blocked `pod`: named by the eviction's cause, else the budget of
    /// its namespace whose selector matches it.
    async fn budget_of(&self, ctx: &FaultCtx, pod: &Pod, cause: Option<&str>) -> Option<String> {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(name) = cause.and_then(budget_name) {
            return Some(format!("{ns}/{name}"));
        }
        let pdbs = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .ok()?;
        let labels = pod.labels();
        pdbs.items
            .iter()
            .find(|pdb| {
                pdb.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|m| {
                        !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
            })
            .map(|pdb| format!("{ns}/{}", pdb.name_any()))
    }
}

/// `The disruption budget NAME needs ...` -> NAME.
pub fn budget_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("The disruption budget ")?
        .split_whitespace()
        .next()
}

/// The text worth showing from a blocked eviction: the budget cause, else the message.
fn eviction_message(e: &kube::Error) -> (String, Option<String>) {
    match e {
        kube::Error::Api(s) => {
            let cause = s
                .details
                .as_ref()
                .and_then(|d| d.causes.iter().find(|c| c.reason == "DisruptionBudget"))
                .map(|c| c.message.clone());
            let text = cause.clone().unwrap_or_else(|| s.message.clone());
            (text, cause)
        }
        other => (other.to_string(), None),
    }
}

impl Fault for NodeDrain {
    fn kind(&self) -> FaultKind {
        FaultKind::NodeDrain
    }

    fn namespaces(&self) -> Vec<String> {
        Vec::new()
    }

    fn touches(&self) -> Vec<Touched> {
        // A drained node stays Ready: what it affects is the pods it evicted,
        // whose workloads the SLO windows and steady-state observers cover.
        Vec::new()
    }

    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            let node = match Api::<Node>::all(ctx.client.clone()).get(&self.node).await {
                Ok(n) => n,
                Err(e) if is_not_found(&e) => {
                    return Err(FaultError::NotFound {
                        what: format!("node {}", self.node),
                    })
                }
                Err(e) => {
                    return Err(FaultError::Api {
                        what: format!("reading node {}", self.node),
                        source: e,
                    })
                }
            };
            let was_unschedulable = node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false);
            let pods: Vec<String> = self.pods(ctx).await?.iter().map(key).collect();
            let mut objects = vec![format!("Node {}", self.node)];
            objects.extend(pods.iter().map(|p| format!("Pod {p}")));
            Ok(Plan {
                kind: FaultKind::NodeDrain,
                action: format!(
                    "cordon node {} and evict its {} pod(s) (DaemonSet pods stay), waiting up \
                     to {}s for blocked evictions: {}",
                    self.node,
                    pods.len(),
                    self.timeout.as_secs(),
                    pods.join(", ")
                ),
                objects,
                revert: Revert::Uncordon(Uncordon {
                    node: self.node.clone(),
                    was_unschedulable,
                }),
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a FaultCtx,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Revert, FaultError>> {
        async move {
            let started = Instant::now();
            let deadline = started + self.timeout;
            Api::<Node>::all(ctx.client.clone())
                .cordon(&self.node)
                .await
                .map_err(FaultError::api(format!("cordoning node {}", self.node)))?;
            let pods = self.pods(ctx).await?;
            // Concurrently, as kubectl does: one slow or blocked pod must not hold up
            // the others, nor the drain past its deadline.
            let outcomes: Vec<Result<Option<Refused>, FaultError>> = futures::stream::iter(pods)
                .map(|pod| evict_until(ctx, pod, deadline))
                .buffer_unordered(EVICTIONS_AT_ONCE)
                .collect()
                .await;
            let mut blocked = Vec::new();
            for outcome in outcomes {
                if let Some(r) = outcome? {
                    blocked.push(Blocked {
                        pod: key(&r.pod),
                        pdb: self.budget_of(ctx, &r.pod, r.cause.as_deref()).await,
                        message: r.message,
                    });
                }
            }
            if blocked.is_empty() {
                return Ok(plan.revert.clone());
            }
            blocked.sort_by(|a, b| a.pod.cmp(&b.pod));
            Err(FaultError::DrainBlocked {
                node: self.node.clone(),
                waited: started.elapsed(),
                blocked,
            })
        }
        .boxed()
    }
}

/// A pod whose eviction was still refused at the deadline.
struct Refused {
    pod: Pod,
    /// The last refusal's text.
    message: String,
    /// Its `DisruptionBudget` cause, naming the budget.
    cause: Option<String>,
}

/// Evicts `pod`, retrying while a budget blocks it, until `deadline`. None when it
/// was evicted (or is gone).
async fn evict_until(
    ctx: &FaultCtx,
    pod: Pod,
    deadline: Instant,
) -> Result<Option<Refused>, FaultError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let bound = left.clamp(Duration::from_secs(1), REQUEST_TIMEOUT);
        let refusal =
            match tokio::time::timeout(bound, api.evict(&name, &EvictParams::default())).await {
                Ok(Ok(_)) => return Ok(None),
                Ok(Err(e)) if is_not_found(&e) => return Ok(None),
                // 429: a budget says no; 500: several budgets match (as upstream).
                Ok(Err(e)) if matches!(status_code(&e), Some(429 | 500)) => eviction_message(&e),
                Ok(Err(e)) => {
                    return Err(FaultError::Api {
                        what: format!("evicting pod {}", key(&pod)),
                        source: e,
                    })
                }
                Err(_) => (
                    format!(
                        "the eviction request got no answer within {}s",
                        bound.as_secs()
                    ),
                    None,
                ),
            };
        if Instant::now() + RETRY >= deadline {
            let (message, cause) = refusal;
            return Ok(Some(Refused {
                pod,
                message,
                cause,
            }));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Uncordon a drained node, unless it was cordoned before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uncordon {
    pub node: String,
    /// Cordoned before the drain: then it stays cordoned.
    pub was_unschedulable: bool,
}

impl Uncordon {
    pub fn describe(&self) -> String {
        if self.was_unschedulable {
            format!(
                "leave node {} cordoned (it was before the drain)",
                self.node
            )
        } else {
            format!("uncordon node {}", self.node)
        }
    }

    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        if self.was_unschedulable {
            return Ok(Reverted::Nothing);
        }
        let api = Api::<Node>::all(ctx.client.clone());
        let node = match api.get(&self.node).await {
            Ok(n) => n,
            Err(e) if is_not_found(&e) => return Ok(Reverted::Gone),
            Err(e) => {
                return Err(FaultError::Api {
                    what: format!("reading node {}", self.node),
                    source: e,
                })
            }
        };
        if !node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            return Ok(Reverted::AlreadyRestored);
        }
        match api.uncordon(&self.node).await {
            Ok(_) => Ok(Reverted::Restored),
            Err(e) if is_not_found(&e) => Ok(Reverted::Gone),
            Err(e) => Err(FaultError::Api {
                what: format!("uncordoning node {}", self.node),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn drains_skip_daemonset_mirror_and_finished_pods() {
        assert!(evictable(&pod(
            "metadata: {name: a, namespace: n, ownerReferences: [{apiVersion: apps/v1, kind: \
             ReplicaSet, name: r, uid: u, controller: true}]}\nstatus: {phase: Running}"
        )));
        assert!(!evictable(&pod(
            "metadata: {name: a, namespace: n, ownerReferences: [{apiVersion: apps/v1, kind: \
             DaemonSet, name: d, uid: u, controller: true}]}"
        )));
        assert!(!evictable(&pod(
            "metadata: {name: a, annotations: {kubernetes.io/config.mirror: x}}"
        )));
        assert!(!evictable(&pod(
            "metadata: {name: a}\nstatus: {phase: Succeeded}"
        )));
        assert!(!evictable(&pod(
            "metadata: {name: a, deletionTimestamp: '2026-01-01T00:00:00Z'}"
        )));
    }

    #[test]
    fn the_budget_is_named_from_the_eviction_cause() {
        assert_eq!(
            budget_name(
                "The disruption budget postgresql needs 1 healthy pods and has 1 currently"
            ),
            Some("postgresql")
        );
        assert_eq!(budget_name("Cannot evict pod"), None);
    }

    #[test]
    fn a_node_cordoned_before_stays_cordoned() {
        let u = Uncordon {
            node: "n".into(),
            was_unschedulable: true,
        };
        assert_eq!(
            u.describe(),
            "leave node n cordoned (it was before the drain)"
        );
    }
}
