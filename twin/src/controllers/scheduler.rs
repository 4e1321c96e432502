//! The scheduler, following kube-scheduler's default filters and a spreading score:
//! a pod without `spec.nodeName` goes to a Ready node that is schedulable
//! (NodeUnschedulable), whose labels match its `nodeSelector` (NodeAffinity; only
//! `nodeSelector` and required node affinity on hostname are modelled) and whose
//! NoSchedule/NoExecute taints it tolerates (TaintToleration). Among those, the node
//! with the fewest pods of the same owner, then the fewest pods, wins (as the
//! default PodTopologySpread/SelectorSpread scoring spreads replicas). A pod that
//! fits nowhere gets `PodScheduled=False, reason Unschedulable` with upstream's
//! message shape.

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::now_rfc3339;
use crate::ctx::obj;
use crate::ctx::Ctx;

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(ctx, &[("", "pods"), ("", "nodes")], stop, reconcile).await
}

/// Whether `tolerations` tolerate `taint` (upstream's Toleration.ToleratesTaint).
pub fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key = t["key"].as_str().unwrap_or("");
        let op = t["operator"].as_str().unwrap_or("Equal");
        let key_ok = key.is_empty() && op == "Exists" || Some(key) == taint["key"].as_str();
        let value_ok = op == "Exists"
            || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        effect_ok && key_ok && value_ok
    })
}

fn tolerations(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Why `node` cannot take `pod`, or None when it can.
pub fn unfit_reason(pod: &Value, node: &Value) -> Option<&'static str> {
    if !obj::is_node_ready(node) {
        return Some("node(s) were not ready");
    }
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        return Some("node(s) were unschedulable");
    }
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        let labels = node.pointer("/metadata/labels").and_then(Value::as_object);
        let ok = sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !ok {
            return Some("node(s) didn't match Pod's node affinity/selector");
        }
    }
    if let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    {
        let labels = node.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
        let term_ok = |term: &Value| {
            let exprs = term["matchExpressions"].as_array().cloned().unwrap_or_default();
            let fields = term["matchFields"].as_array().cloned().unwrap_or_default();
            exprs.iter().all(|e| {
                let val = labels.get(e["key"].as_str().unwrap_or("")).and_then(Value::as_str);
                let vals: Vec<&str> = e["values"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                match e["operator"].as_str().unwrap_or("") {
                    "In" => val.is_some_and(|v| vals.contains(&v)),
                    "NotIn" => val.is_none_or(|v| !vals.contains(&v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            }) && fields.iter().all(|f| {
                let vals: Vec<&str> = f["values"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                f["key"] == "metadata.name" && f["operator"] == "In" && vals.contains(&obj::name(node))
            })
        };
        if !terms.is_empty() && !terms.iter().any(term_ok) {
            return Some("node(s) didn't match Pod's node affinity/selector");
        }
    }
    let tol = tolerations(pod);
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for taint in &taints {
        let effect = taint["effect"].as_str().unwrap_or("");
        if (effect == "NoSchedule" || effect == "NoExecute") && !tolerates(&tol, taint) {
            return Some("node(s) had untolerated taint");
        }
    }
    None
}

fn reconcile(ctx: &Ctx) {
    let pods = ctx.client.list("", "pods", None, None);
    let nodes = ctx.client.list("", "nodes", None, None);
    let mut load: std::collections::HashMap<String, (usize, Vec<String>)> =
        std::collections::HashMap::new();
    for p in &pods {
        if let Some(n) = obj::str_at(p, "/spec/nodeName") {
            let e = load.entry(n.to_string()).or_default();
            e.0 += 1;
            if let Some((_, _, uid)) = obj::controller_of(p) {
                e.1.push(uid.to_string());
            }
        }
    }
    for pod in pods.iter().filter(|p| {
        obj::str_at(p, "/spec/nodeName").is_none_or(str::is_empty) && !obj::is_terminating(p)
    }) {
        let owner = obj::controller_of(pod).map(|(_, _, u)| u.to_string());
        let mut reasons: std::collections::BTreeMap<&str, usize> =
            std::collections::BTreeMap::new();
        let mut best: Option<(usize, usize, String)> = None;
        for node in &nodes {
            match unfit_reason(pod, node) {
                Some(r) => *reasons.entry(r).or_default() += 1,
                None => {
                    let name = obj::name(node).to_string();
                    let (total, owners) = load.get(&name).cloned().unwrap_or_default();
                    let same = owner
                        .as_ref()
                        .map(|o| owners.iter().filter(|u| *u == o).count())
                        .unwrap_or(0);
                    let cand = (same, total, name);
                    if best.as_ref().is_none_or(|b| cand < *b) {
                        best = Some(cand);
                    }
                }
            }
        }
        let (ns, name) = (obj::namespace(pod).to_string(), obj::name(pod).to_string());
        let now = now_rfc3339();
        match best {
            Some((_, _, node)) => {
                if ctx
                    .client
                    .patch(
                        "",
                        "pods",
                        Some(&ns),
                        &name,
                        json!({"spec": {"nodeName": node}}),
                    )
                    .is_ok()
                {
                    let mut conds = pod
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    obj::set_condition(&mut conds, "PodScheduled", "True", "", "", &now);
                    let _ = ctx.client.patch_status(
                        "",
                        "pods",
                        Some(&ns),
                        &name,
                        json!({"conditions": conds}),
                    );
                    let e = load.entry(node.clone()).or_default();
                    e.0 += 1;
                    if let Some(o) = &owner {
                        e.1.push(o.clone());
                    }
                }
            }
            None => {
                let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                let msg = format!(
                    "0/{} nodes are available: {}.",
                    nodes.len(),
                    detail.join(", ")
                );
                let mut conds = pod
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let already = conds
                    .iter()
                    .any(|c| c["type"] == "PodScheduled" && c["message"] == msg.as_str());
                if !already {
                    obj::set_condition(
                        &mut conds,
                        "PodScheduled",
                        "False",
                        "Unschedulable",
                        &msg,
                        &now,
                    );
                    let _ = ctx.client.patch_status(
                        "",
                        "pods",
                        Some(&ns),
                        &name,
                        json!({"conditions": conds}),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn taints_selectors_and_readiness_filter_nodes() {
        let node = yaml("metadata: {name: n1, labels: {disk: nvme}}\nspec:\n  taints: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]\nstatus:\n  conditions: [{type: Ready, status: 'True'}]\n");
        let pod = yaml("spec: {containers: [{name: c, image: x:1}]}");
        assert_eq!(
            unfit_reason(&pod, &node),
            Some("node(s) had untolerated taint")
        );
        let tolerant = yaml("spec:\n  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]\n  nodeSelector: {disk: nvme}\n");
        assert_eq!(unfit_reason(&tolerant, &node), None);
        let picky =
            yaml("spec:\n  tolerations: [{operator: Exists}]\n  nodeSelector: {disk: hdd}\n");
        assert_eq!(
            unfit_reason(&picky, &node),
            Some("node(s) didn't match Pod's node affinity/selector")
        );
        let down =
            yaml("metadata: {name: n2}\nstatus:\n  conditions: [{type: Ready, status: Unknown}]\n");
        assert_eq!(unfit_reason(&pod, &down), Some("node(s) were not ready"));
    }
}
