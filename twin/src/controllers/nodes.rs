//! Node lifecycle on the embedded control plane, following upstream's pieces (the
//! kubelets' heartbeats they judge are the simulated world's, [`crate::world::heartbeat`],
//! run in the same pass so a lease is renewed before it is judged):
//! - kube-controller-manager's node lifecycle controller: a node whose Lease is
//!   older than `node_monitor_grace` gets `Ready=Unknown` (reason NodeStatusUnknown,
//!   "Kubelet stopped posting node status."), the `node.kubernetes.io/unreachable`
//!   NoSchedule and NoExecute taints, and its pods are marked not Ready
//!   (MarkPodsNotReady); the taints go when the kubelet posts Ready again; a
//!   cordoned node (`spec.unschedulable`) gets the `node.kubernetes.io/unschedulable`
//!   NoSchedule taint (TaintNodesByCondition);
//! - the taint-based eviction manager: a pod on a node with a NoExecute taint it
//!   does not tolerate is deleted at once; one that tolerates it for
//!   `tolerationSeconds` is deleted when that time has passed since the taint's
//!   `timeAdded`. The deletion is graceful, so with the node down the pod stays
//!   Terminating (nobody confirms it) — a ReplicaSet replaces it elsewhere, a
//!   StatefulSet does not (at most one pod per identity);
//! - and the pod garbage collector: pods bound to a node object that no longer
//!   exists are force-deleted.

use serde_json::{json, Value};
use tokio::sync::watch;

use super::scheduler::tolerates;
use crate::api::now_rfc3339;
use crate::ctx::obj;
use crate::ctx::{reconcile_loop, Ctx};
use crate::world::heartbeat::Heartbeats;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    let mut heartbeats = Heartbeats::default();
    reconcile_loop(ctx, &[("", "nodes"), ("", "pods")], stop, move |ctx| {
        heartbeats.beat(ctx);
        // kube-controller-manager's part: the real one does it on a real control plane.
        if ctx.control_plane.embedded() {
            lifecycle(ctx);
            evictions(ctx);
            pod_gc(ctx);
        }
    })
    .await
}

fn taints(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn lease_age(ctx: &Ctx, node: &str) -> Option<chrono::Duration> {
    let lease = ctx.client.get(
        "coordination.k8s.io",
        "leases",
        Some("kube-node-lease"),
        node,
    )?;
    let renew = obj::str_at(&lease, "/spec/renewTime")?;
    let t = chrono::DateTime::parse_from_rfc3339(renew).ok()?;
    Some(chrono::Utc::now() - t.with_timezone(&chrono::Utc))
}

/// Node lifecycle controller: Unknown + unreachable taints after the grace period.
fn lifecycle(ctx: &Ctx) {
    let grace = chrono::Duration::from_std(ctx.timing.node_monitor_grace).unwrap_or_default();
    for node in ctx.client.list("", "nodes", None, None) {
        let name = obj::name(&node).to_string();
        let mut want: Vec<Value> = taints(&node)
            .into_iter()
            .filter(|t| t["key"] != UNREACHABLE && t["key"] != UNSCHEDULABLE)
            .collect();
        let existing = taints(&node);
        let keep_time = |key: &str, effect: &str| {
            existing
                .iter()
                .find(|t| t["key"] == key && t["effect"] == effect)
                .and_then(|t| t.get("timeAdded").cloned())
                .unwrap_or_else(|| json!(now_rfc3339()))
        };
        // A node that never had a Lease (just registered) is given the grace period too.
        let stale = lease_age(ctx, &name).is_some_and(|age| age > grace);
        let ready = obj::is_node_ready(&node);
        if stale && ready {
            let now = now_rfc3339();
            let mut conds = node
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
                obj::set_condition(
                    &mut conds,
                    kind,
                    "Unknown",
                    "NodeStatusUnknown",
                    "Kubelet stopped posting node status.",
                    &now,
                );
            }
            if ctx
                .client
                .patch_status("", "nodes", None, &name, json!({"conditions": conds}))
                .is_ok()
            {
                ctx.truth.record("node", &name, "NotReady");
                mark_pods_not_ready(ctx, &name);
            }
        }
        let unknown = stale || obj::condition(&node, "Ready") == Some("Unknown");
        if unknown && (!ready || stale) {
            want.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": keep_time(UNREACHABLE, "NoSchedule")}));
            want.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": keep_time(UNREACHABLE, "NoExecute")}));
        }
        if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
            want.push(json!({"key": UNSCHEDULABLE, "effect": "NoSchedule", "timeAdded": keep_time(UNSCHEDULABLE, "NoSchedule")}));
        }
        if want != existing {
            let taints = if want.is_empty() {
                Value::Null
            } else {
                Value::Array(want)
            };
            let _ = ctx.client.patch(
                "",
                "nodes",
                None,
                &name,
                json!({"spec": {"taints": taints}}),
            );
        }
    }
}

/// Upstream's MarkPodsNotReady: the controller, not the (dead) kubelet, flips Ready.
fn mark_pods_not_ready(ctx: &Ctx, node: &str) {
    let now = now_rfc3339();
    for pod in ctx.client.list("", "pods", None, None) {
        if obj::str_at(&pod, "/spec/nodeName") != Some(node) || !obj::is_pod_ready(&pod) {
            continue;
        }
        let mut conds = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        obj::set_condition(&mut conds, "Ready", "False", "NodeNotReady", "", &now);
        if ctx
            .client
            .patch_status(
                "",
                "pods",
                Some(obj::namespace(&pod)),
                obj::name(&pod),
                json!({"conditions": conds}),
            )
            .is_ok()
        {
            ctx.truth.record(
                "pod",
                &format!("{}/{}", obj::namespace(&pod), obj::name(&pod)),
                "NotReady",
            );
        }
    }
}

/// Seconds a pod may stay on a node with this NoExecute taint (None: forever).
fn toleration_seconds(pod: &Value, taint: &Value) -> Option<Option<i64>> {
    let tols: Vec<Value> = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matching: Vec<&Value> = tols
        .iter()
        .filter(|t| tolerates(std::slice::from_ref(t), taint))
        .collect();
    if matching.is_empty() {
        return None;
    }
    // The shortest bounded toleration wins; any unbounded one tolerates forever.
    if matching
        .iter()
        .any(|t| t.get("tolerationSeconds").is_none_or(Value::is_null))
    {
        return Some(None);
    }
    Some(
        matching
            .iter()
            .filter_map(|t| t["tolerationSeconds"].as_i64())
            .min(),
    )
}

/// Taint-based eviction of pods from NoExecute-tainted nodes.
fn evictions(ctx: &Ctx) {
    let nodes = ctx.client.list("", "nodes", None, None);
    let now = chrono::Utc::now();
    for node in &nodes {
        let noexec: Vec<Value> = taints(node)
            .into_iter()
            .filter(|t| t["effect"] == "NoExecute")
            .collect();
        if noexec.is_empty() {
            continue;
        }
        for pod in ctx.client.list("", "pods", None, None) {
            if obj::str_at(&pod, "/spec/nodeName") != Some(obj::name(node))
                || obj::is_terminating(&pod)
            {
                continue;
            }
            let evict = noexec
                .iter()
                .any(|taint| match toleration_seconds(&pod, taint) {
                    None => true,
                    Some(None) => false,
                    Some(Some(secs)) => {
                        let added = taint["timeAdded"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .unwrap_or(now);
                        now - added >= chrono::Duration::seconds(secs)
                    }
                });
            if evict {
                let key = format!("{}/{}", obj::namespace(&pod), obj::name(&pod));
                if ctx
                    .client
                    .delete(
                        "",
                        "pods",
                        Some(obj::namespace(&pod)),
                        obj::name(&pod),
                        None,
                    )
                    .is_ok()
                {
                    ctx.truth.record("pod", &key, "Evicted");
                }
            }
        }
    }
}

/// Pod GC: force-delete pods bound to nodes that no longer exist.
fn pod_gc(ctx: &Ctx) {
    let nodes: std::collections::HashSet<String> = ctx
        .client
        .list("", "nodes", None, None)
        .iter()
        .map(|n| obj::name(n).to_string())
        .collect();
    for pod in ctx.client.list("", "pods", None, None) {
        let Some(node) = obj::str_at(&pod, "/spec/nodeName").filter(|n| !n.is_empty()) else {
            continue;
        };
        if !nodes.contains(node) {
            let _ = ctx.client.delete(
                "",
                "pods",
                Some(obj::namespace(&pod)),
                obj::name(&pod),
                Some(0),
            );
        }
    }
}
