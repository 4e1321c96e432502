//! The ReplicaSet controller, following kube-controller-manager's
//! `replicaset.ReplicaSetController.syncReplicaSet`:
//!
//! - the pods it counts are the active pods (not Succeeded/Failed, not being
//!   deleted) of its namespace that it claims (adopting orphans matching its
//!   selector, releasing owned pods that stopped matching, ignoring pods another
//!   controller owns). A Terminating pod is not counted, so a pod stuck Terminating
//!   on a dead node gets a replacement elsewhere, as upstream.
//! - `manageReplicas`: creates the missing pods from `spec.template`, named
//!   `<rs>-<5 random chars>` (upstream's generateName) with a controller owner
//!   reference, at most 500 per pass (burstReplicas); deletes the surplus in
//!   `ActivePodsWithRanks` order (unscheduled, pending, not ready, crowded nodes,
//!   shortest ready, most restarts, newest first).
//! - status: `replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//!   `availableReplicas` (Ready for `minReadySeconds`), `observedGeneration`.
//!
//! Simplified: no expectations (the controller reads the store itself, so it
//! never acts on a stale cache), no slow-start batching, no `ReplicaFailure`
//! condition, no Events; the node rank uses the ReplicaSet's own pods rather than
//! every pod of the sibling ReplicaSets of its Deployment; pods of a ReplicaSet
//! being deleted are left to the garbage collector.

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::workloads::{self as w, int_at, omit0};
use crate::ctx::obj;
use crate::ctx::Ctx;
use crate::selector::LabelSelector;

/// Upstream's burstReplicas: the most pods created or deleted in one pass.
const BURST: usize = 500;

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(
        ctx,
        &[("apps", "replicasets"), ("", "pods")],
        stop,
        reconcile,
    )
    .await
}

fn reconcile(ctx: &Ctx) {
    let sets = ctx.client.list("apps", "replicasets", None, None);
    if sets.is_empty() {
        return;
    }
    let pods = w::by_namespace(ctx.client.list("", "pods", None, None));
    for rs in &sets {
        let ns_pods = pods
            .get(obj::namespace(rs))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        sync(ctx, rs, ns_pods);
    }
}

fn sync(ctx: &Ctx, rs: &Value, ns_pods: &[Value]) {
    let selector = w::selector_of(rs);
    let active: Vec<Value> = ns_pods
        .iter()
        .filter(|p| w::is_pod_active(p))
        .cloned()
        .collect();
    let mut owned = w::claim(
        ctx,
        "",
        "pods",
        rs,
        "apps/v1",
        "ReplicaSet",
        &selector,
        &active,
    );
    if !obj::is_terminating(rs) {
        manage_replicas(ctx, rs, &mut owned);
    }
    update_status(ctx, rs, &owned);
}

fn manage_replicas(ctx: &Ctx, rs: &Value, owned: &mut Vec<Value>) {
    let want = int_at(rs, "/spec/replicas", 1).max(0) as usize;
    let ns = obj::namespace(rs);
    let name = obj::name(rs);
    if owned.len() < want {
        let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let prefix = format!("{name}-");
        let owner = w::controller_ref(rs, "apps/v1", "ReplicaSet");
        for _ in 0..(want - owned.len()).min(BURST) {
            let pod = w::pod_from_template(&template, ns, "", Some(&prefix), owner.clone());
            match w::create_generated_pod(ctx, pod, &prefix) {
                Some(p) => owned.push(p),
                // Upstream's slow start: stop at the first failure.
                None => break,
            }
        }
    } else if owned.len() > want {
        let mut victims = owned.clone();
        w::sort_for_deletion(&mut victims, owned);
        let surplus = (owned.len() - want).min(BURST);
        for p in victims.iter().take(surplus) {
            let pname = obj::name(p);
            if ctx.client.delete("", "pods", Some(ns), pname, None).is_ok() {
                owned.retain(|o| obj::name(o) != pname);
            }
        }
    }
}

/// Upstream's `calculateStatus` over the pods the ReplicaSet controls.
pub fn calculate_status(
    rs: &Value,
    pods: &[Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Map<String, Value> {
    let template_labels: LabelSelector = rs
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            LabelSelector::from_label_selector_json(&json!({ "matchLabels": labels }))
                .unwrap_or_else(|_| LabelSelector::nothing())
        })
        .unwrap_or_default();
    let min_ready = int_at(rs, "/spec/minReadySeconds", 0);
    let fully_labeled = pods
        .iter()
        .filter(|p| template_labels.matches_object(p))
        .count();
    let ready = pods.iter().filter(|p| obj::is_pod_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| w::is_available(p, min_ready, now))
        .count();
    let mut s = Map::new();
    s.insert("replicas".into(), json!(pods.len()));
    s.insert("fullyLabeledReplicas".into(), omit0(fully_labeled as i64));
    s.insert("readyReplicas".into(), omit0(ready as i64));
    s.insert("availableReplicas".into(), omit0(available as i64));
    s.insert(
        "observedGeneration".into(),
        omit0(int_at(rs, "/metadata/generation", 0)),
    );
    s
}

fn update_status(ctx: &Ctx, rs: &Value, owned: &[Value]) {
    let status = calculate_status(rs, owned, w::now());
    w::update_status(ctx, "apps", "replicasets", rs, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let rs = json!({
            "metadata": {"name": "r", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 10,
                     "template": {"metadata": {"labels": {"app": "a", "tier": "web"}}}},
        });
        let old = "2020-01-01T00:00:00Z";
        let fresh = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let pods = vec![
            json!({"metadata": {"labels": {"app": "a", "tier": "web"}},
                   "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": old}]}}),
            json!({"metadata": {"labels": {"app": "a"}},
                   "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": fresh}]}}),
            json!({"metadata": {"labels": {"app": "a", "tier": "web"}}, "status": {}}),
        ];
        let s = calculate_status(&rs, &pods, chrono::Utc::now());
        assert_eq!(s["replicas"], 3);
        assert_eq!(s["fullyLabeledReplicas"], 2);
        assert_eq!(s["readyReplicas"], 2);
        assert_eq!(s["availableReplicas"], 1);
        assert_eq!(s["observedGeneration"], 3);
        let none = calculate_status(&rs, &[], chrono::Utc::now());
        assert_eq!(none["replicas"], 0);
        assert_eq!(none["readyReplicas"], Value::Null);
    }
}
