//! PodDisruptionBudget status, following upstream's disruption controller
//! (kube-controller-manager `disruption`): for each PDB, the pods its selector picks
//! in its namespace (policy/v1: `{}` selects every pod, a missing selector none);
//! `currentHealthy` = those Ready and not terminating (and not listed in
//! `disruptedPods` by a recent eviction); `desiredHealthy` from `minAvailable` (an
//! integer, with `expectedPods` = the selected pod count; or a percentage of the
//! expected pods, rounded up) or `maxUnavailable` (expected pods minus the integer or
//! the rounded-up percentage); `expectedPods` = the sum of the owning controllers'
//! `spec.replicas` (a ReplicaSet owned by a Deployment counts as the Deployment,
//! other controllers through their scale subresource);
//! `disruptionsAllowed = max(0, currentHealthy - desiredHealthy)`,
//! `observedGeneration` and the `DisruptionAllowed` condition (SufficientPods /
//! InsufficientPods). `disruptedPods` entries expire once the pod is terminating or
//! after 2 minutes (upstream's DeletionTimeout).
//!
//! Simplification: a selected pod without a controller, or whose controller has no
//! scale, counts as one expected pod (upstream ignores unmanaged pods, or fails the
//! sync with `SyncFailed`).
//!
//! [`compute`] is shared with the eviction subresource (`eviction.rs`), which
//! evaluates a budget live.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::client::Client;
use crate::ctx::{obj, Ctx};
use crate::selector::LabelSelector;

/// How long an eviction's entry in `disruptedPods` holds (upstream DeletionTimeout).
const DELETION_TIMEOUT_SECS: i64 = 120;

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(
        ctx,
        &[
            ("policy", "poddisruptionbudgets"),
            ("", "pods"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
        ],
        stop,
        reconcile,
    )
    .await
}

/// A budget evaluated against the current pods.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub current_healthy: i64,
    pub desired_healthy: i64,
    pub expected_pods: i64,
    pub disruptions_allowed: i64,
    /// `disruptedPods` with expired entries dropped.
    pub disrupted_pods: Map<String, Value>,
}

/// The pods a PDB's selector picks in its namespace (as the disruption controller).
pub fn selected<'a>(pdb: &Value, pods: &'a [Value]) -> Vec<&'a Value> {
    let sel = pdb
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(Value::Null);
    let Ok(sel) = LabelSelector::from_label_selector_json(&sel) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| obj::namespace(p) == obj::namespace(pdb) && sel.matches_object(p))
        .collect()
}

/// Upstream's GetScaledValueFromIntOrPercent with rounding up.
fn scaled(v: &Value, total: i64) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let pct: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    Some((pct * total + 99) / 100)
}

/// The expected pod count from the pods' controllers' replicas.
fn expected_scale(client: &Client, pods: &[&Value]) -> i64 {
    let mut seen: HashSet<String> = HashSet::new();
    let mut total = 0;
    for pod in pods {
        let Some((kind, name, uid)) = obj::controller_of(pod) else {
            total += 1;
            continue;
        };
        let ns = obj::namespace(pod);
        let api_version = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r["uid"] == uid))
            .and_then(|r| r["apiVersion"].as_str())
            .unwrap_or("");
        // A ReplicaSet of a Deployment: the Deployment's scale counts.
        let mut target = (api_version.to_string(), kind.to_string(), name.to_string());
        let mut key = uid.to_string();
        if kind == "ReplicaSet" {
            if let Some(rs) = client.get("apps", "replicasets", Some(ns), name) {
                if let Some(("Deployment", dname, duid)) = obj::controller_of(&rs) {
                    target = ("apps/v1".into(), "Deployment".into(), dname.to_string());
                    key = duid.to_string();
                }
            }
        }
        if seen.contains(&key) {
            continue;
        }
        let replicas = client
            .api
            .resolve_kind(&target.0, &target.1)
            .filter(|info| info.scale.is_some())
            .and_then(|info| client.api.get_scale(&info, Some(ns), &target.2).ok())
            .and_then(|s| s.pointer("/spec/replicas").and_then(Value::as_i64));
        match replicas {
            Some(r) => {
                seen.insert(key);
                total += r;
            }
            None => total += 1,
        }
    }
    total
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Evaluates a PDB against `pods` (all pods; the PDB's own are picked here).
pub fn compute(client: &Client, pdb: &Value, pods: &[Value], now: DateTime<Utc>) -> Budget {
    let pods = selected(pdb, pods);
    let spec = &pdb["spec"];
    let (expected, desired) = match (spec.get("maxUnavailable"), spec.get("minAvailable")) {
        (Some(max), _) if !max.is_null() => {
            let expected = expected_scale(client, &pods);
            let max = scaled(max, expected).unwrap_or(0);
            (expected, (expected - max).max(0))
        }
        (_, Some(min)) if min.is_i64() => (pods.len() as i64, min.as_i64().unwrap_or(0)),
        (_, Some(min)) if min.is_string() => {
            let expected = expected_scale(client, &pods);
            (expected, scaled(min, expected).unwrap_or(0))
        }
        _ => (0, 0),
    };
    let mut disrupted = Map::new();
    if let Some(d) = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    {
        for (name, ts) in d {
            let live = pods
                .iter()
                .any(|p| obj::name(p) == name && !obj::is_terminating(p));
            let fresh =
                parse_time(ts).is_some_and(|t| (now - t).num_seconds() < DELETION_TIMEOUT_SECS);
            if live && fresh {
                disrupted.insert(name.clone(), ts.clone());
            }
        }
    }
    let current = pods
        .iter()
        .filter(|p| {
            !obj::is_terminating(p) && !disrupted.contains_key(obj::name(p)) && obj::is_pod_ready(p)
        })
        .count() as i64;
    Budget {
        current_healthy: current,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: (current - desired).max(0),
        disrupted_pods: disrupted,
    }
}

/// The status the disruption controller writes for a budget.
pub fn status(pdb: &Value, b: &Budget, now: &str) -> Value {
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut conditions = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (st, reason) = if b.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    obj::set_condition(&mut conditions, "DisruptionAllowed", st, reason, "", now);
    for c in conditions.iter_mut() {
        if c["type"] == "DisruptionAllowed" {
            c["observedGeneration"] = json!(generation);
        }
    }
    let mut s = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": b.disruptions_allowed,
        "currentHealthy": b.current_healthy,
        "desiredHealthy": b.desired_healthy,
        "expectedPods": b.expected_pods,
        "conditions": conditions,
    });
    if !b.disrupted_pods.is_empty() {
        s["disruptedPods"] = Value::Object(b.disrupted_pods.clone());
    }
    s
}

fn reconcile(ctx: &Ctx) {
    let c = &ctx.client;
    let pdbs = c.list("policy", "poddisruptionbudgets", None, None);
    if pdbs.is_empty() {
        return;
    }
    let pods = c.list("", "pods", None, None);
    let now = Utc::now();
    let now_s = crate::api::now_rfc3339();
    for pdb in &pdbs {
        if obj::is_terminating(pdb) {
            continue;
        }
        let b = compute(c, pdb, &pods, now);
        let want = status(pdb, &b, &now_s);
        if pdb.get("status") == Some(&want) {
            continue;
        }
        let _ = c.patch_status(
            "policy",
            "poddisruptionbudgets",
            Some(obj::namespace(pdb)),
            obj::name(pdb),
            merge_patch_for(pdb, want),
        );
    }
}

/// A merge patch turning the stored status into `want`: expired `disruptedPods`
/// entries are removed explicitly (a merge patch keeps keys it does not name).
pub fn merge_patch_for(pdb: &Value, mut want: Value) -> Value {
    if let Some(old) = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    {
        let mut d = want
            .get("disruptedPods")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if d.is_empty() {
            want["disruptedPods"] = Value::Null;
        } else {
            for k in old.keys() {
                if !d.contains_key(k) {
                    d.insert(k.clone(), Value::Null);
                }
            }
            want["disruptedPods"] = Value::Object(d);
        }
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&json!("50%"), 3), Some(2));
        assert_eq!(scaled(&json!("34%"), 3), Some(2));
        assert_eq!(scaled(&json!("100%"), 3), Some(3));
        assert_eq!(scaled(&json!(2), 3), Some(2));
        assert_eq!(scaled(&json!("x"), 3), None);
    }
}
