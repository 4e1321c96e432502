//! The DaemonSet controller, following kube-controller-manager's
//! `daemon.DaemonSetsController.syncDaemonSet`:
//!
//! - a node should run the daemon pod when its labels match the template's
//!   `nodeSelector`/required node affinity and its NoSchedule/NoExecute taints are
//!   tolerated by the template's tolerations plus the ones upstream adds to every
//!   daemon pod (`AddOrUpdateDaemonPodTolerations`: not-ready and unreachable
//!   NoExecute; disk-, memory-, pid-pressure and unschedulable NoSchedule;
//!   network-unavailable with hostNetwork), whether the node is Ready or not
//!   (`NodeShouldRunDaemonPod`). A pod keeps running on a node that gained an
//!   untolerated NoSchedule taint; an untolerated NoExecute taint removes it.
//! - `manage`: creates the missing pod (`<ds>-<5 random chars>`), deletes pods of
//!   nodes that should not run one, Failed/Succeeded pods (with a per-node
//!   exponential back-off) and duplicates (the oldest stays); a node whose only
//!   daemon pod is Terminating gets no new one until it is gone.
//! - rolling update (only in a pass where `manage` changed nothing, as upstream
//!   waits for its expectations) by ControllerRevision hash (`controller-revision-hash` label,
//!   `pod-template-generation` label): without surge, old pods are deleted while at
//!   most `maxUnavailable` (int or percent of the desired count, rounded up,
//!   default 1) are unavailable, unavailable old pods first; with `maxSurge` the new
//!   pod starts next to the old one, which goes once the new one is available.
//!   OnDelete replaces only pods deleted by someone else.
//! - status: `desiredNumberScheduled`, `currentNumberScheduled`,
//!   `numberMisscheduled`, `numberReady`, `numberAvailable`, `numberUnavailable`,
//!   `updatedNumberScheduled`, `observedGeneration`.
//!
//! Simplified: the pod is bound by setting `spec.nodeName` at creation (upstream
//! sets only a required node affinity on `metadata.name` and lets the scheduler
//! bind; the twin sets both). Resource fit is not checked (the twin's scheduler
//! does not model resources either). No Events, no `deprecated.daemonset.template.generation`
//! annotation (the template generation label is the DaemonSet's generation).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::scheduler;
use super::workloads::{self as w, int_at, omit0, CONTROLLER_REVISION_HASH};
use crate::ctx::obj;
use crate::ctx::Ctx;

const TEMPLATE_GENERATION: &str = "pod-template-generation";

/// Failed-pod back-off per (DaemonSet uid, node): (delay, not before).
type Backoff = HashMap<(String, String), (Duration, Instant)>;

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    crate::ctx::reconcile_loop(
        ctx,
        &[
            ("apps", "daemonsets"),
            ("", "pods"),
            ("", "nodes"),
            ("apps", "controllerrevisions"),
        ],
        stop,
        move |ctx| reconcile(ctx, &mut backoff),
    )
    .await
}

fn reconcile(ctx: &Ctx, backoff: &mut Backoff) {
    let sets = ctx.client.list("apps", "daemonsets", None, None);
    if sets.is_empty() {
        return;
    }
    let mut nodes = ctx.client.list("", "nodes", None, None);
    nodes.sort_by(|a, b| obj::name(a).cmp(obj::name(b)));
    let pods = w::by_namespace(ctx.client.list("", "pods", None, None));
    let revs = w::by_namespace(ctx.client.list("apps", "controllerrevisions", None, None));
    let empty = Vec::new();
    for ds in &sets {
        let ns = obj::namespace(ds);
        sync(
            ctx,
            ds,
            &nodes,
            pods.get(ns).unwrap_or(&empty),
            revs.get(ns).unwrap_or(&empty),
            backoff,
        );
    }
}

/// The tolerations upstream adds to every daemon pod.
pub fn with_daemon_tolerations(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let mut tols: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut add = |key: &str, effect: &str| {
        if !tols
            .iter()
            .any(|t| t["key"] == key && t["effect"] == effect)
        {
            tols.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if spec["hostNetwork"] == true {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
    spec["tolerations"] = Value::Array(tols);
    spec
}

/// (should run, should continue running) for a daemon pod with `spec` on `node`.
pub fn node_should_run(spec: &Value, node: &Value) -> (bool, bool) {
    if let Some(n) = spec["nodeName"].as_str().filter(|n| !n.is_empty()) {
        if n != obj::name(node) {
            return (false, false);
        }
    }
    let pod = json!({"spec": with_daemon_tolerations(spec)});
    // Readiness and cordoning do not matter to DaemonSets (their pods tolerate
    // the matching taints): judge the node as if it were Ready and schedulable.
    let mut n = node.clone();
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    if let Some(spec) = n.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("unschedulable");
    }
    let should_run = scheduler::unfit_reason(&pod, &n).is_none();
    if let Some(taints) = n.pointer_mut("/spec/taints").and_then(Value::as_array_mut) {
        taints.retain(|t| t["effect"] != "NoSchedule");
    }
    let should_continue = scheduler::unfit_reason(&pod, &n).is_none();
    (should_run, should_continue)
}

fn by_creation(a: &Value, b: &Value) -> std::cmp::Ordering {
    let t = |o: &Value| obj::str_at(o, "/metadata/creationTimestamp").and_then(w::parse_time);
    t(a).cmp(&t(b)).then_with(|| obj::name(a).cmp(obj::name(b)))
}

fn is_updated(p: &Value, hash: &str) -> bool {
    !hash.is_empty()
        && obj::str_at(p, &format!("/metadata/labels/{CONTROLLER_REVISION_HASH}")) == Some(hash)
}

/// `findUpdatedPodsOnNode`: (new, old), or None with more than one of either.
fn updated_and_old<'a>(
    pods: &'a [Value],
    hash: &str,
) -> Option<(Option<&'a Value>, Option<&'a Value>)> {
    let (mut new, mut old) = (None, None);
    for p in pods.iter().filter(|p| !obj::is_terminating(p)) {
        let slot = if is_updated(p, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p);
    }
    Some((new, old))
}

struct DsSync<'a> {
    ctx: &'a Ctx,
    ds: &'a Value,
    hash: String,
    now: chrono::DateTime<chrono::Utc>,
    min_ready: i64,
    /// Whether this pass created or deleted a pod (upstream's unsatisfied
    /// expectations: the rolling update waits for the next pass).
    changed: std::cell::Cell<bool>,
}

impl DsSync<'_> {
    fn create_on(&self, node: &str) {
        self.changed.set(true);
        let name = obj::name(self.ds);
        let mut template = self
            .ds
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        template["spec"] = with_daemon_tolerations(&template["spec"]);
        if !template["metadata"].is_object() {
            template["metadata"] = json!({});
        }
        if !template["metadata"]["labels"].is_object() {
            template["metadata"]["labels"] = json!({});
        }
        template["metadata"]["labels"][CONTROLLER_REVISION_HASH] = json!(self.hash);
        template["metadata"]["labels"][TEMPLATE_GENERATION] =
            json!(int_at(self.ds, "/metadata/generation", 1).to_string());
        let prefix = format!("{name}-");
        let mut pod = w::pod_from_template(
            &template,
            obj::namespace(self.ds),
            "",
            Some(&prefix),
            w::controller_ref(self.ds, "apps/v1", "DaemonSet"),
        );
        // ReplaceDaemonSetPodNodeNameNodeAffinity, and bound at once.
        if !pod["spec"]["affinity"].is_object() {
            pod["spec"]["affinity"] = json!({});
        }
        if !pod["spec"]["affinity"]["nodeAffinity"].is_object() {
            pod["spec"]["affinity"]["nodeAffinity"] = json!({});
        }
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}],
        });
        pod["spec"]["nodeName"] = json!(node);
        w::create_generated_pod(self.ctx, pod, &prefix);
    }

    fn delete(&self, p: &Value) {
        self.changed.set(true);
        let _ = self
            .ctx
            .client
            .delete("", "pods", Some(obj::namespace(p)), obj::name(p), None);
    }

    fn available(&self, p: &Value) -> bool {
        w::is_available(p, self.min_ready, self.now)
    }
}

fn sync(
    ctx: &Ctx,
    ds: &Value,
    nodes: &[Value],
    ns_pods: &[Value],
    ns_revs: &[Value],
    backoff: &mut Backoff,
) {
    let selector = w::selector_of(ds);
    if selector.is_empty() {
        return;
    }
    let pods = w::claim(
        ctx,
        "",
        "pods",
        ds,
        "apps/v1",
        "DaemonSet",
        &selector,
        ns_pods,
    );
    let Some(history) = w::sync_revisions(ctx, ds, "apps/v1", "DaemonSet", ns_revs) else {
        return;
    };
    let s = DsSync {
        ctx,
        ds,
        hash: history.update_hash.clone(),
        now: w::now(),
        min_ready: int_at(ds, "/spec/minReadySeconds", 0),
        changed: std::cell::Cell::new(false),
    };
    let spec = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(json!({}));
    let mut on_node: HashMap<String, Vec<Value>> = HashMap::new();
    for p in &pods {
        if let Some(n) = obj::str_at(p, "/spec/nodeName").filter(|n| !n.is_empty()) {
            on_node.entry(n.to_string()).or_default().push(p.clone());
        }
    }
    for v in on_node.values_mut() {
        v.sort_by(by_creation);
    }
    let judged: Vec<(&Value, bool, bool)> = nodes
        .iter()
        .map(|n| {
            let (run, cont) = node_should_run(&spec, n);
            (n, run, cont)
        })
        .collect();
    let desired = judged.iter().filter(|(_, run, _)| *run).count() as i64;
    let strategy = obj::str_at(ds, "/spec/updateStrategy/type").unwrap_or("RollingUpdate");
    let max_surge = if strategy == "RollingUpdate" {
        w::scaled_value(
            ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge"),
            desired,
            true,
            0,
        )
        .max(0)
    } else {
        0
    };
    let mut max_unavailable = w::scaled_value(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        desired,
        true,
        1,
    )
    .max(0);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }

    if !obj::is_terminating(ds) {
        // manage: podsShouldBeOnNode for every node.
        let empty = Vec::new();
        let ds_uid = obj::uid(ds).to_string();
        for (node, run, cont) in &judged {
            let node_name = obj::name(node);
            let here = on_node.get(node_name).unwrap_or(&empty);
            if *run && here.is_empty() {
                s.create_on(node_name);
            } else if *cont {
                let mut running = Vec::new();
                for p in here.iter().filter(|p| !obj::is_terminating(p)) {
                    match w::phase(p) {
                        "Failed" => {
                            let key = (ds_uid.clone(), node_name.to_string());
                            let now = Instant::now();
                            if backoff.get(&key).is_some_and(|(_, until)| now < *until) {
                                continue;
                            }
                            let delay = backoff
                                .get(&key)
                                .map(|(d, _)| (*d * 2).min(Duration::from_secs(900)))
                                .unwrap_or(ctx.timing.restart_backoff);
                            backoff.insert(key, (delay, now + delay));
                            s.delete(p);
                        }
                        "Succeeded" => s.delete(p),
                        _ => running.push(p),
                    }
                }
                if running.len() > 1 {
                    if max_surge == 0 {
                        for p in &running[1..] {
                            s.delete(p);
                        }
                    } else {
                        // Surge: keep the oldest new pod, and the oldest old pod
                        // only while the new one is not yet available.
                        let (mut newest, mut oldest_old) = (None, None);
                        for p in &running {
                            let slot = if is_updated(p, &s.hash) {
                                &mut newest
                            } else {
                                &mut oldest_old
                            };
                            if slot.is_none() {
                                *slot = Some(*p);
                            } else {
                                s.delete(p);
                            }
                        }
                        if let (Some(n), Some(o)) = (newest, oldest_old) {
                            if !obj::is_pod_ready(o) || s.available(n) {
                                s.delete(o);
                            }
                        }
                    }
                }
            } else {
                for p in here.iter().filter(|p| !obj::is_terminating(p)) {
                    s.delete(p);
                }
            }
        }
        if strategy == "RollingUpdate" && !s.changed.get() {
            rolling_update(&s, &judged, &on_node, max_surge, max_unavailable);
        }
    }

    // Status (updateDaemonSetStatus).
    let (mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0);
    for (node, run, _) in &judged {
        let here = on_node.get(obj::name(node));
        let scheduled = here.is_some_and(|v| !v.is_empty());
        if *run {
            let Some(p) = here.and_then(|v| v.first()) else {
                continue;
            };
            current += 1;
            if obj::is_pod_ready(p) {
                ready += 1;
                if s.available(p) {
                    available += 1;
                }
            }
            if is_updated(p, &s.hash) {
                updated += 1;
            }
        } else if scheduled {
            misscheduled += 1;
        }
    }
    let mut st = Map::new();
    st.insert("desiredNumberScheduled".into(), json!(desired));
    st.insert("currentNumberScheduled".into(), json!(current));
    st.insert("numberMisscheduled".into(), json!(misscheduled));
    st.insert("numberReady".into(), json!(ready));
    st.insert("numberAvailable".into(), omit0(available));
    st.insert(
        "numberUnavailable".into(),
        omit0((desired - available).max(0)),
    );
    st.insert("updatedNumberScheduled".into(), omit0(updated));
    st.insert(
        "observedGeneration".into(),
        omit0(int_at(ds, "/metadata/generation", 0)),
    );
    w::update_status(ctx, "apps", "daemonsets", ds, st);

    let mut live: Vec<&str> = vec![obj::name(&history.update)];
    let rev_of_hash: HashMap<&str, &str> = history
        .revisions
        .iter()
        .filter_map(|r| {
            obj::str_at(r, &format!("/metadata/labels/{CONTROLLER_REVISION_HASH}"))
                .map(|h| (h, obj::name(r)))
        })
        .collect();
    for p in &pods {
        if let Some(h) = obj::str_at(p, &format!("/metadata/labels/{CONTROLLER_REVISION_HASH}")) {
            if let Some(r) = rev_of_hash.get(h) {
                live.push(r);
            }
        }
    }
    w::truncate_history(
        ctx,
        &history,
        &live,
        int_at(ds, "/spec/revisionHistoryLimit", 10),
    );
}

/// `rollingUpdate`, with and without surge.
fn rolling_update(
    s: &DsSync<'_>,
    judged: &[(&Value, bool, bool)],
    on_node: &HashMap<String, Vec<Value>>,
    max_surge: i64,
    max_unavailable: i64,
) {
    let empty = Vec::new();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now: Vec<&Value> = Vec::new();
        let mut candidates: Vec<&Value> = Vec::new();
        for (node, _, _) in judged {
            let here = on_node.get(obj::name(node)).unwrap_or(&empty);
            if here.is_empty() {
                continue;
            }
            let Some((new, old)) = updated_and_old(here, &s.hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !s.available(n) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !s.available(o) {
                        replace_now.push(o);
                    } else if unavailable < max_unavailable {
                        candidates.push(o);
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).max(0) as usize;
        for p in replace_now
            .into_iter()
            .chain(candidates.into_iter().take(remaining))
        {
            s.delete(p);
        }
        return;
    }
    let mut surging = 0;
    let mut allowed: Vec<&str> = Vec::new();
    let mut candidates: Vec<&str> = Vec::new();
    for (node, run, _) in judged {
        let name = obj::name(node);
        let here = on_node.get(name).unwrap_or(&empty);
        let Some((new, old)) = updated_and_old(here, &s.hash) else {
            surging += 1;
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(o)) => {
                if !s.available(o) {
                    if !*run {
                        s.delete(o);
                        continue;
                    }
                    allowed.push(name);
                } else {
                    candidates.push(name);
                }
            }
            (Some(n), Some(o)) => {
                if !s.available(n) {
                    surging += 1;
                    continue;
                }
                s.delete(o);
            }
        }
    }
    let remaining = ((max_surge - surging).max(0) as usize).min(candidates.len());
    for node in allowed
        .into_iter()
        .chain(candidates.into_iter().take(remaining))
    {
        s.create_on(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, taints: Value, ready: &str) -> Value {
        json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        })
    }

    #[test]
    fn eligibility_ignores_readiness_and_honours_taints() {
        let spec = json!({"containers": [{"name": "c", "image": "i"}]});
        let worker = node("w", json!([]), "Unknown");
        assert_eq!(
            node_should_run(&spec, &worker),
            (true, true),
            "not-ready nodes still run daemons"
        );
        let cp = node(
            "cp",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            "True",
        );
        assert_eq!(node_should_run(&spec, &cp), (false, true));
        let tolerant = json!({"containers": [], "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]});
        assert_eq!(node_should_run(&tolerant, &cp), (true, true));
        let evicting = node(
            "e",
            json!([{"key": "dedicated", "value": "x", "effect": "NoExecute"}]),
            "True",
        );
        assert_eq!(node_should_run(&spec, &evicting), (false, false));
        let unreachable = node(
            "u",
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
            "Unknown",
        );
        assert_eq!(node_should_run(&spec, &unreachable), (true, true));
        let mut cordoned = worker.clone();
        cordoned["spec"]["unschedulable"] = json!(true);
        assert_eq!(node_should_run(&spec, &cordoned), (true, true));
        let picky = json!({"containers": [], "nodeSelector": {"kubernetes.io/hostname": "other"}});
        assert_eq!(node_should_run(&picky, &worker), (false, false));
    }

    #[test]
    fn daemon_tolerations_are_added_once() {
        let spec = json!({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]});
        let t = with_daemon_tolerations(&spec);
        let tols = t["tolerations"].as_array().unwrap();
        assert_eq!(tols.len(), 6);
        assert_eq!(
            tols[0]["tolerationSeconds"], 5,
            "the user's toleration is kept"
        );
        let hn = with_daemon_tolerations(&json!({"hostNetwork": true}));
        assert_eq!(hn["tolerations"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn updated_and_old_pods_per_node() {
        let p = |name: &str, hash: &str| json!({"metadata": {"name": name, "labels": {CONTROLLER_REVISION_HASH: hash}}});
        let pods = vec![p("a", "new"), p("b", "old")];
        let (n, o) = updated_and_old(&pods, "new").unwrap();
        assert_eq!((obj::name(n.unwrap()), obj::name(o.unwrap())), ("a", "b"));
        assert!(updated_and_old(&[p("a", "old"), p("b", "old")], "new").is_none());
    }
}
