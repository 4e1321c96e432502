//! The StatefulSet controller, following kube-controller-manager's
//! `statefulset.defaultStatefulSetControl.UpdateStatefulSet`:
//!
//! - pods are `<sts>-<ordinal>` (ordinals from `spec.ordinals.start`, default 0)
//!   with labels `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`
//!   and `controller-revision-hash` (the revision's name), `spec.hostname` = the
//!   pod name and `spec.subdomain` = `spec.serviceName`; only pods named after the
//!   set are claimed (`isMemberOf`).
//! - `volumeClaimTemplates`: one PVC per ordinal and template, named
//!   `<template>-<sts>-<ordinal>` with the template's labels plus the selector's
//!   matchLabels, created before the pod and kept when the pod goes or the set
//!   scales down (sticky identity: a recreated pod mounts the same claims; claims
//!   are not owned by the pod). The pod's volume of the template's name points at
//!   the claim. `persistentVolumeClaimRetentionPolicy` whenDeleted=Delete makes
//!   new claims owned by the set; whenScaled=Delete makes a condemned pod own its
//!   claims before it is deleted, as upstream.
//! - OrderedReady: ordinal N is created only when 0..N-1 are Running and Ready
//!   (and available for `minReadySeconds`); scale down deletes the highest ordinal
//!   first, one at a time, each only once the others are healthy. Parallel: all at
//!   once. A Terminating pod is never replaced until it is gone (at most one pod
//!   per identity), which is what keeps a StatefulSet pod on a lost node down. A
//!   Failed or Succeeded pod is deleted and recreated on a later pass.
//! - revisions: ControllerRevisions `<sts>-<hash>` of the pod template
//!   (see [`super::workloads::sync_revisions`]); RollingUpdate deletes, from the
//!   highest ordinal down to `partition`, one pod not at the update revision at a
//!   time and waits for it to come back healthy; pods below the partition are
//!   (re)created from the current revision's template; OnDelete only updates
//!   pods that are deleted by someone else; `revisionHistoryLimit` prunes history.
//! - status: `replicas`, `readyReplicas`, `currentReplicas`, `updatedReplicas`,
//!   `availableReplicas`, `observedGeneration`, `currentRevision`,
//!   `updateRevision`, `collisionCount`; when every pod is updated and ready the
//!   update revision becomes the current one (`completeRollingUpdate`).
//!
//! Simplified: no `maxUnavailable` rolling updates (MaxUnavailableStatefulSet
//! gate), no Events, no claim-template changes to existing claims, and the claim
//! retention owner references are set when a claim is created or a pod condemned,
//! not reconciled when the policy changes later.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::workloads::{self as w, int_at, omit0, CONTROLLER_REVISION_HASH};
use crate::ctx::obj;
use crate::ctx::Ctx;

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(
        ctx,
        &[
            ("apps", "statefulsets"),
            ("", "pods"),
            ("", "persistentvolumeclaims"),
            ("apps", "controllerrevisions"),
        ],
        stop,
        reconcile,
    )
    .await
}

fn reconcile(ctx: &Ctx) {
    let sets = ctx.client.list("apps", "statefulsets", None, None);
    if sets.is_empty() {
        return;
    }
    let pods = w::by_namespace(ctx.client.list("", "pods", None, None));
    let pvcs = w::by_namespace(ctx.client.list("", "persistentvolumeclaims", None, None));
    let revs = w::by_namespace(ctx.client.list("apps", "controllerrevisions", None, None));
    let empty = Vec::new();
    for set in &sets {
        let ns = obj::namespace(set);
        sync(
            ctx,
            set,
            pods.get(ns).unwrap_or(&empty),
            pvcs.get(ns).unwrap_or(&empty),
            revs.get(ns).unwrap_or(&empty),
        );
    }
}

/// The ordinal of a pod named `<parent>-<ordinal>` (`getParentNameAndOrdinal`).
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i64)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

fn is_running_and_ready(p: &Value) -> bool {
    w::phase(p) == "Running" && obj::is_pod_ready(p)
}

fn is_running_and_available(p: &Value, min_ready: i64, now: chrono::DateTime<chrono::Utc>) -> bool {
    w::phase(p) == "Running" && w::is_available(p, min_ready, now)
}

fn is_healthy(p: &Value) -> bool {
    is_running_and_ready(p) && !obj::is_terminating(p)
}

fn pod_revision(p: &Value) -> &str {
    obj::str_at(p, &format!("/metadata/labels/{CONTROLLER_REVISION_HASH}")).unwrap_or("")
}

/// The claim name of template `tmpl` for ordinal `ord`.
pub fn claim_name(tmpl: &Value, set: &str, ord: i64) -> String {
    format!("{}-{set}-{ord}", obj::name(tmpl))
}

fn claim_templates(set: &Value) -> Vec<Value> {
    set.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The pod of ordinal `ord` from `template` (`newStatefulSetPod` with its identity
/// and storage).
pub fn new_pod(set: &Value, template: &Value, ord: i64, revision: &str) -> Value {
    let set_name = obj::name(set);
    let name = format!("{set_name}-{ord}");
    let mut pod = w::pod_from_template(
        template,
        obj::namespace(set),
        &name,
        None,
        w::controller_ref(set, "apps/v1", "StatefulSet"),
    );
    if !pod["metadata"]["labels"].is_object() {
        pod["metadata"]["labels"] = json!({});
    }
    let labels = &mut pod["metadata"]["labels"];
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ord.to_string());
    labels[CONTROLLER_REVISION_HASH] = json!(revision);
    pod["spec"]["hostname"] = json!(name);
    if let Some(svc) = obj::str_at(set, "/spec/serviceName").filter(|s| !s.is_empty()) {
        pod["spec"]["subdomain"] = json!(svc);
    }
    let templates = claim_templates(set);
    if !templates.is_empty() {
        let mut volumes: Vec<Value> = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in &templates {
            let vol = json!({
                "name": obj::name(t),
                "persistentVolumeClaim": {"claimName": claim_name(t, set_name, ord)},
            });
            match volumes.iter_mut().find(|v| v["name"] == obj::name(t)) {
                Some(v) => *v = vol,
                None => volumes.push(vol),
            }
        }
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    pod
}

/// The claims of ordinal `ord` (`getPersistentVolumeClaims`).
pub fn new_claims(set: &Value, ord: i64) -> Vec<Value> {
    let set_name = obj::name(set);
    let match_labels = set
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let owned_by_set = obj::str_at(
        set,
        "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
    ) == Some("Delete");
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut labels = t
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in &match_labels {
                labels.insert(k.clone(), v.clone());
            }
            let mut meta = json!({
                "name": claim_name(t, set_name, ord),
                "namespace": obj::namespace(set),
                "labels": labels,
            });
            if let Some(a) = t.pointer("/metadata/annotations").filter(|a| a.is_object()) {
                meta["annotations"] = a.clone();
            }
            if owned_by_set {
                meta["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": set_name, "uid": obj::uid(set),
                }]);
            }
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta,
                "spec": t.get("spec").cloned().unwrap_or(json!({})),
            })
        })
        .collect()
}

enum Slot {
    Pod(Value),
    /// Created in this pass (not yet observed Running).
    Created,
    Missing,
}

#[derive(Default)]
struct Counts {
    replicas: i64,
    ready: i64,
    available: i64,
    current: i64,
    updated: i64,
}

struct SetSync<'a> {
    ctx: &'a Ctx,
    set: &'a Value,
    pvcs: HashMap<String, Value>,
    now: chrono::DateTime<chrono::Utc>,
}

impl SetSync<'_> {
    /// Creates the missing claims of `ord`; false when one cannot be used yet.
    fn ensure_claims(&mut self, ord: i64) -> bool {
        let mut ok = true;
        for c in new_claims(self.set, ord) {
            let name = obj::name(&c).to_string();
            match self.pvcs.get(&name) {
                Some(existing) => {
                    if obj::is_terminating(existing) {
                        ok = false;
                    }
                }
                None => match self.ctx.client.create(c) {
                    Ok(created) => {
                        self.pvcs.insert(name, created);
                    }
                    Err(e) if e.code == 409 => {}
                    Err(e) => {
                        tracing::debug!(claim = %name, error = %e, "cannot create claim");
                        ok = false;
                    }
                },
            }
        }
        ok
    }

    fn create_pod(&mut self, pod: Value, ord: i64) -> Option<Value> {
        if !self.ensure_claims(ord) {
            return None;
        }
        match self.ctx.client.create(pod) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(set = %obj::name(self.set), ord, error = %e, "cannot create pod");
                None
            }
        }
    }

    fn delete_pod(&self, pod: &Value) -> bool {
        self.ctx
            .client
            .delete("", "pods", Some(obj::namespace(pod)), obj::name(pod), None)
            .is_ok()
    }

    /// whenScaled=Delete: the condemned pod owns its claims, so they go with it.
    fn hand_claims_to(&mut self, pod: &Value, ord: i64) {
        if obj::str_at(
            self.set,
            "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
        ) != Some("Delete")
        {
            return;
        }
        for t in claim_templates(self.set) {
            let name = claim_name(&t, obj::name(self.set), ord);
            let Some(claim) = self.pvcs.get(&name) else {
                continue;
            };
            if w::has_owner(claim, obj::uid(pod)) {
                continue;
            }
            let mut refs = claim
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            refs.push(json!({"apiVersion": "v1", "kind": "Pod", "name": obj::name(pod), "uid": obj::uid(pod)}));
            let _ = self.ctx.client.patch(
                "",
                "persistentvolumeclaims",
                Some(obj::namespace(claim)),
                &name,
                json!({"metadata": {"ownerReferences": refs}}),
            );
        }
    }

    /// Restores the identity labels of an existing pod (`identityMatches`).
    fn fix_identity(&self, pod: &Value, ord: i64) {
        let name = obj::name(pod);
        let labels = pod.pointer("/metadata/labels");
        let has =
            |k: &str, v: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v);
        let idx = ord.to_string();
        if has(POD_NAME_LABEL, name) && has(POD_INDEX_LABEL, &idx) {
            return;
        }
        let _ = self.ctx.client.patch(
            "",
            "pods",
            Some(obj::namespace(pod)),
            name,
            json!({"metadata": {"labels": {POD_NAME_LABEL: name, POD_INDEX_LABEL: idx}}}),
        );
    }
}

fn sync(ctx: &Ctx, set: &Value, ns_pods: &[Value], ns_pvcs: &[Value], ns_revs: &[Value]) {
    let selector = w::selector_of(set);
    if selector.is_empty() {
        return;
    }
    let set_name = obj::name(set);
    let members: Vec<Value> = ns_pods
        .iter()
        .filter(|p| parent_and_ordinal(obj::name(p)).is_some_and(|(parent, _)| parent == set_name))
        .cloned()
        .collect();
    let pods = w::claim(
        ctx,
        "",
        "pods",
        set,
        "apps/v1",
        "StatefulSet",
        &selector,
        &members,
    );
    let Some(history) = w::sync_revisions(ctx, set, "apps/v1", "StatefulSet", ns_revs) else {
        return;
    };
    let update_rev = obj::name(&history.update).to_string();
    let status_current = obj::str_at(set, "/status/currentRevision").unwrap_or("");
    let current = history
        .revisions
        .iter()
        .find(|r| obj::name(r) == status_current)
        .cloned()
        .unwrap_or_else(|| history.update.clone());
    let current_rev = obj::name(&current).to_string();
    let update_template = set.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let current_template = w::revision_template(&current);

    let now = w::now();
    let min_ready = int_at(set, "/spec/minReadySeconds", 0);
    let start = int_at(set, "/spec/ordinals/start", 0).max(0);
    let count = int_at(set, "/spec/replicas", 1).max(0);
    let mut s = SetSync {
        ctx,
        set,
        pvcs: ns_pvcs
            .iter()
            .map(|c| (obj::name(c).to_string(), c.clone()))
            .collect(),
        now,
    };

    let mut c = Counts::default();
    let mut slots: Vec<Slot> = (0..count).map(|_| Slot::Missing).collect();
    let mut condemned: Vec<(i64, Value)> = Vec::new();
    for p in &pods {
        c.replicas += 1;
        if is_running_and_ready(p) {
            c.ready += 1;
            if is_running_and_available(p, min_ready, now) {
                c.available += 1;
            }
        }
        if !obj::is_terminating(p) {
            if pod_revision(p) == current_rev {
                c.current += 1;
            }
            if pod_revision(p) == update_rev {
                c.updated += 1;
            }
        }
        let Some((_, ord)) = parent_and_ordinal(obj::name(p)) else {
            continue;
        };
        if ord >= start && ord < start + count {
            slots[(ord - start) as usize] = Slot::Pod(p.clone());
        } else {
            condemned.push((ord, p.clone()));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let first_unhealthy: Option<String> = slots
        .iter()
        .filter_map(|sl| match sl {
            Slot::Pod(p) => Some(p),
            _ => None,
        })
        .chain(condemned.iter().rev().map(|(_, p)| p))
        .find(|p| !is_healthy(p))
        .map(|p| obj::name(p).to_string());

    let rolling =
        obj::str_at(set, "/spec/updateStrategy/type").unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = int_at(set, "/spec/updateStrategy/rollingUpdate/partition", 0);
    let monotonic = obj::str_at(set, "/spec/podManagementPolicy") != Some("Parallel");

    let blocked = if obj::is_terminating(set) {
        true
    } else {
        process_replicas(
            &mut s,
            &mut slots,
            &mut c,
            ProcessArgs {
                start,
                monotonic,
                rolling,
                partition,
                min_ready,
                current_rev: &current_rev,
                update_rev: &update_rev,
                current_template: &current_template,
                update_template: &update_template,
            },
        ) || process_condemned(
            &mut s,
            &condemned,
            monotonic,
            first_unhealthy.as_deref(),
            min_ready,
        )
    };
    if !blocked && rolling {
        // Rolling update: the highest ordinal not at the update revision first.
        for (i, sl) in slots.iter().enumerate().rev() {
            if (i as i64) < partition {
                break;
            }
            let p = match sl {
                Slot::Pod(p) => p,
                _ => break,
            };
            if pod_revision(p) != update_rev && !obj::is_terminating(p) {
                if s.delete_pod(p) {
                    c.current -= 1;
                }
                break;
            }
            if !is_healthy(p) {
                break;
            }
        }
    }

    // Status, with completeRollingUpdate.
    let (mut current_name, mut current_count) = (current_rev.clone(), c.current);
    if rolling && c.updated == c.replicas && c.ready == c.replicas {
        current_name = update_rev.clone();
        current_count = c.updated;
    }
    let mut st = Map::new();
    st.insert(
        "observedGeneration".into(),
        omit0(int_at(set, "/metadata/generation", 0)),
    );
    st.insert("replicas".into(), json!(c.replicas));
    st.insert("readyReplicas".into(), omit0(c.ready));
    st.insert("currentReplicas".into(), omit0(current_count));
    st.insert("updatedReplicas".into(), omit0(c.updated));
    st.insert("availableReplicas".into(), json!(c.available));
    st.insert("currentRevision".into(), json!(current_name));
    st.insert("updateRevision".into(), json!(update_rev));
    st.insert(
        "collisionCount".into(),
        json!(int_at(set, "/status/collisionCount", 0)),
    );
    w::update_status(ctx, "apps", "statefulsets", set, st);

    let mut live: Vec<&str> = pods.iter().map(pod_revision).collect();
    live.push(&current_name);
    live.push(&update_rev);
    w::truncate_history(
        ctx,
        &history,
        &live,
        int_at(set, "/spec/revisionHistoryLimit", 10),
    );
}

struct ProcessArgs<'a> {
    start: i64,
    monotonic: bool,
    rolling: bool,
    partition: i64,
    min_ready: i64,
    current_rev: &'a str,
    update_rev: &'a str,
    current_template: &'a Value,
    update_template: &'a Value,
}

/// `processReplica` over every ordinal; true when the pass must stop (monotonic).
fn process_replicas(
    s: &mut SetSync<'_>,
    slots: &mut [Slot],
    c: &mut Counts,
    a: ProcessArgs<'_>,
) -> bool {
    for (i, slot) in slots.iter_mut().enumerate() {
        let ord = a.start + i as i64;
        match slot {
            Slot::Missing => {
                let use_current = a.rolling && (i as i64) < a.partition;
                let (template, rev) = if use_current {
                    (a.current_template, a.current_rev)
                } else {
                    (a.update_template, a.update_rev)
                };
                let pod = new_pod(s.set, template, ord, rev);
                if s.create_pod(pod, ord).is_some() {
                    c.replicas += 1;
                    if rev == a.current_rev {
                        c.current += 1;
                    }
                    if rev == a.update_rev {
                        c.updated += 1;
                    }
                    *slot = Slot::Created;
                }
                if a.monotonic {
                    return true;
                }
            }
            Slot::Created => {}
            Slot::Pod(p) => {
                if matches!(w::phase(p), "Failed" | "Succeeded") {
                    if !obj::is_terminating(p) {
                        s.delete_pod(p);
                    }
                    if a.monotonic {
                        return true;
                    }
                    continue;
                }
                if w::phase(p) == "Pending" && !obj::is_terminating(p) {
                    s.ensure_claims(ord);
                }
                if obj::is_terminating(p) {
                    if a.monotonic {
                        return true;
                    }
                    continue;
                }
                if a.monotonic
                    && (!is_running_and_ready(p)
                        || !is_running_and_available(p, a.min_ready, s.now))
                {
                    return true;
                }
                s.fix_identity(p, ord);
            }
        }
    }
    // Burst mode goes on to scale down and update even when pods were created.
    false
}

/// `processCondemned`, highest ordinal first; true when the pass must stop.
fn process_condemned(
    s: &mut SetSync<'_>,
    condemned: &[(i64, Value)],
    monotonic: bool,
    first_unhealthy: Option<&str>,
    min_ready: i64,
) -> bool {
    for (ord, p) in condemned {
        if obj::is_terminating(p) {
            if monotonic {
                return true;
            }
            continue;
        }
        let is_first_unhealthy = first_unhealthy == Some(obj::name(p));
        if monotonic
            && !is_first_unhealthy
            && (!is_running_and_ready(p) || !is_running_and_available(p, min_ready, s.now))
        {
            return true;
        }
        s.hand_claims_to(p, *ord);
        s.delete_pod(p);
        if monotonic {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Value {
        json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceName": "db-headless",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}],
                                      "volumes": [{"name": "data", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "storage"}},
                                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            }
        })
    }

    #[test]
    fn ordinals_come_from_the_name() {
        assert_eq!(parent_and_ordinal("db-12"), Some(("db", 12)));
        assert_eq!(parent_and_ordinal("my-db-0"), Some(("my-db", 0)));
        assert_eq!(parent_and_ordinal("db-x"), None);
        assert_eq!(parent_and_ordinal("db"), None);
    }

    #[test]
    fn pods_get_identity_and_their_claims() {
        let s = set();
        let p = new_pod(&s, &s["spec"]["template"], 2, "db-abc");
        assert_eq!(p["metadata"]["name"], "db-2");
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "db-2");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(p["metadata"]["labels"][CONTROLLER_REVISION_HASH], "db-abc");
        assert_eq!(p["spec"]["hostname"], "db-2");
        assert_eq!(p["spec"]["subdomain"], "db-headless");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(
            vols.len(),
            1,
            "the template's volume is replaced by the claim"
        );
        assert_eq!(vols[0]["persistentVolumeClaim"]["claimName"], "data-db-2");
        let claims = new_claims(&s, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0]["metadata"]["name"], "data-db-2");
        assert_eq!(claims[0]["metadata"]["labels"]["app"], "db");
        assert_eq!(claims[0]["metadata"]["labels"]["tier"], "storage");
        assert!(claims[0]["metadata"].get("ownerReferences").is_none());
        let mut deleting = s.clone();
        deleting["spec"]["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Delete"});
        assert_eq!(
            new_claims(&deleting, 0)[0]["metadata"]["ownerReferences"][0]["uid"],
            "u1"
        );
    }
}
