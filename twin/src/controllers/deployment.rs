//! The Deployment controller, following kube-controller-manager's
//! `deployment.DeploymentController.syncDeployment`:
//!
//! - claims the ReplicaSets of its namespace matching its selector; the new
//!   ReplicaSet is the oldest whose template equals the Deployment's ignoring the
//!   `pod-template-hash` label (`FindNewReplicaSet`/`EqualIgnoreHash`); one is
//!   created as `<deployment>-<hash>` when a rollout needs it, with the hash label
//!   added to its selector, template and labels, the Deployment's annotations
//!   copied, and `deployment.kubernetes.io/{revision,desired-replicas,max-replicas}`
//!   set as upstream (a name clash with a foreign ReplicaSet bumps
//!   `status.collisionCount`).
//! - a paused Deployment or a scaling event (an active ReplicaSet's
//!   desired-replicas annotation differs from `spec.replicas`) only scales:
//!   the one active ReplicaSet, or proportionally to each ReplicaSet's share
//!   (`getReplicaSetFraction` with the max-replicas annotation), leftovers to the
//!   largest.
//! - RollingUpdate: `reconcileNewReplicaSet` (scale up within `maxSurge`) then
//!   `reconcileOldReplicaSets` (scale down unhealthy old replicas first, then old
//!   replicas while keeping `replicas - maxUnavailable` available); `maxSurge` and
//!   `maxUnavailable` are ints or percentages (surge rounded up, unavailable down,
//!   both zero means unavailable 1), default 25%.
//! - Recreate: scale every old ReplicaSet to 0, wait until no old pod is running
//!   (Terminating pods count, as upstream), then create/scale the new one.
//! - the revision annotation of the Deployment follows its new ReplicaSet; a roll
//!   back to an old template renumbers that ReplicaSet to the next revision;
//!   ReplicaSets beyond `revisionHistoryLimit` that are scaled to zero are deleted.
//! - status: `replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
//!   `unavailableReplicas`, `observedGeneration` from the ReplicaSets' statuses;
//!   conditions `Available` (MinimumReplicasAvailable/Unavailable) and
//!   `Progressing` (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//!   NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused/Resumed)
//!   with upstream's reasons, messages and lastUpdateTime/lastTransitionTime rules,
//!   which is what `kubectl rollout status` reads.
//!
//! Simplified: no `revision-history` annotation, no `ReplicaFailure` condition,
//! no `terminatingReplicas`, no Events, no deprecated `spec.rollbackTo`.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::workloads::{self as w, int_at, omit0, POD_TEMPLATE_HASH};
use crate::ctx::obj;
use crate::ctx::Ctx;

const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations upstream never copies from a Deployment to its ReplicaSets.
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED,
    MAX,
    "deprecated.deployment.rollback.to",
];

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(
        ctx,
        &[
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("", "pods"),
        ],
        stop,
        reconcile,
    )
    .await
}

fn reconcile(ctx: &Ctx) {
    let deployments = ctx.client.list("apps", "deployments", None, None);
    if deployments.is_empty() {
        return;
    }
    let rss = w::by_namespace(ctx.client.list("apps", "replicasets", None, None));
    let pods = w::by_namespace(ctx.client.list("", "pods", None, None));
    for d in deployments {
        let ns = obj::namespace(&d).to_string();
        let ns_rss = rss.get(&ns).cloned().unwrap_or_default();
        let ns_pods = pods.get(&ns).cloned().unwrap_or_default();
        sync_deployment(ctx, d, ns_rss, ns_pods);
    }
}

fn replicas(o: &Value) -> i64 {
    int_at(o, "/spec/replicas", 1)
}

fn status_int(o: &Value, field: &str) -> i64 {
    int_at(o, &format!("/status/{field}"), 0)
}

fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn revision_of(rs: &Value) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn by_creation(a: &Value, b: &Value) -> Ordering {
    let t = |o: &Value| obj::str_at(o, "/metadata/creationTimestamp").and_then(w::parse_time);
    t(a).cmp(&t(b)).then_with(|| obj::name(a).cmp(obj::name(b)))
}

fn is_rolling(d: &Value) -> bool {
    obj::str_at(d, "/spec/strategy/type") != Some("Recreate")
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) for `spec.replicas`.
pub fn fenceposts(d: &Value) -> (i64, i64) {
    let desired = replicas(d);
    let field = |f: &str| {
        d.pointer(&format!("/spec/strategy/rollingUpdate/{f}"))
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!("25%"))
    };
    let surge = w::scaled_value(Some(&field("maxSurge")), desired, true, 0).max(0);
    let unavailable = w::scaled_value(Some(&field("maxUnavailable")), desired, false, 0).max(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

pub fn max_surge(d: &Value) -> i64 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Value) -> i64 {
    let r = replicas(d);
    if !is_rolling(d) || r == 0 {
        return 0;
    }
    fenceposts(d).1.min(r)
}

/// A template without the pod-template-hash label, for EqualIgnoreHash.
fn without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

/// `EqualIgnoreHash`, with nil and empty fields alike as after a round trip
/// through Go structs (what `kubectl rollout undo` sends back).
fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    w::normalized(&without_hash(a)) == w::normalized(&without_hash(b))
}

/// `NewDeploymentCondition`.
fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now,
    })
}

fn get_condition<'a>(conds: &'a [Value], kind: &str) -> Option<&'a Value> {
    conds.iter().find(|c| c["type"] == kind)
}

/// `SetDeploymentCondition`: no change when status and reason are the same;
/// lastTransitionTime kept when only the reason changes.
fn set_condition(conds: &mut Vec<Value>, mut cond: Value) {
    if let Some(cur) = get_condition(conds, cond["type"].as_str().unwrap_or("")) {
        if cur["status"] == cond["status"] && cur["reason"] == cond["reason"] {
            return;
        }
        if cur["status"] == cond["status"] {
            cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
    }
    conds.retain(|c| c["type"] != cond["type"]);
    conds.push(cond);
}

fn remove_condition(conds: &mut Vec<Value>, kind: &str) {
    conds.retain(|c| c["type"] != kind);
}

/// The figures of a Deployment's status computed from its ReplicaSets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub replicas: i64,
    pub updated: i64,
    pub ready: i64,
    pub available: i64,
    pub unavailable: i64,
}

fn figures_of_status(d: &Value) -> Figures {
    Figures {
        replicas: status_int(d, "replicas"),
        updated: status_int(d, "updatedReplicas"),
        ready: status_int(d, "readyReplicas"),
        available: status_int(d, "availableReplicas"),
        unavailable: status_int(d, "unavailableReplicas"),
    }
}

/// `calculateStatus`'s counts.
pub fn figures(all: &[&Value], new_rs: Option<&Value>) -> Figures {
    let sum = |f: &dyn Fn(&Value) -> i64| all.iter().map(|rs| f(rs)).sum::<i64>();
    let available = sum(&|rs| status_int(rs, "availableReplicas"));
    let total = sum(&|rs| replicas(rs));
    Figures {
        replicas: sum(&|rs| status_int(rs, "replicas")),
        updated: new_rs.map(|rs| status_int(rs, "replicas")).unwrap_or(0),
        ready: sum(&|rs| status_int(rs, "readyReplicas")),
        available,
        unavailable: (total - available).max(0),
    }
}

/// `DeploymentComplete`.
pub fn is_complete(d: &Value, f: &Figures) -> bool {
    let r = replicas(d);
    f.updated == r && f.replicas == r && f.available == r
}

/// `DeploymentProgressing`.
pub fn is_progressing(old: &Figures, new: &Figures) -> bool {
    new.updated > old.updated
        || (new.replicas - new.updated) < (old.replicas - old.updated)
        || new.ready > old.ready
        || new.available > old.available
}

fn has_progress_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s != i64::from(i32::MAX))
}

/// One pass over one Deployment.
struct Sync<'a> {
    ctx: &'a Ctx,
    /// As stored (for status comparison).
    stored: Value,
    d: Value,
    /// Status conditions as this pass changes them.
    conds: Vec<Value>,
    rss: Vec<Value>,
    pods: Vec<Value>,
    now: DateTime<Utc>,
    now_str: String,
}

fn sync_deployment(ctx: &Ctx, d: Value, ns_rss: Vec<Value>, ns_pods: Vec<Value>) {
    let selector = w::selector_of(&d);
    if selector.is_empty() {
        // Upstream refuses to act on a selector that selects everything.
        let mut s = Map::new();
        s.insert(
            "observedGeneration".into(),
            omit0(int_at(&d, "/metadata/generation", 0)),
        );
        w::update_status(ctx, "apps", "deployments", &d, s);
        return;
    }
    let rss = w::claim(
        ctx,
        "apps",
        "replicasets",
        &d,
        "apps/v1",
        "Deployment",
        &selector,
        &ns_rss,
    );
    let pods = ns_pods
        .into_iter()
        .filter(|p| selector.matches_object(p))
        .collect();
    let conds = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = w::now();
    let mut s = Sync {
        ctx,
        stored: d.clone(),
        d,
        conds,
        rss,
        pods,
        now,
        now_str: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    if obj::is_terminating(&s.d) {
        let new_rs = s.sync_revision(false);
        s.write_status(new_rs, false);
        return;
    }
    s.check_paused_conditions();
    if s.paused() {
        s.sync_scale();
        return;
    }
    if s.is_scaling_event() {
        s.sync_scale();
        return;
    }
    if is_rolling(&s.d) {
        s.rollout_rolling();
    } else {
        s.rollout_recreate();
    }
}

impl Sync<'_> {
    fn ns(&self) -> String {
        obj::namespace(&self.d).to_string()
    }

    fn name(&self) -> String {
        obj::name(&self.d).to_string()
    }

    fn paused(&self) -> bool {
        self.d.pointer("/spec/paused") == Some(&Value::Bool(true))
    }

    fn find_new(&self) -> Option<usize> {
        let template = self.d.pointer("/spec/template").unwrap_or(&Value::Null);
        let mut idx: Vec<usize> = (0..self.rss.len()).collect();
        idx.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        idx.into_iter().find(|i| {
            equal_ignore_hash(
                self.rss[*i]
                    .pointer("/spec/template")
                    .unwrap_or(&Value::Null),
                template,
            )
        })
    }

    fn olds(&self, new_rs: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != new_rs).collect()
    }

    fn replace_rs(&mut self, i: usize, rs: Value) {
        self.rss[i] = rs;
    }

    /// The annotations of `rs` after copying the Deployment's
    /// (`copyDeploymentAnnotationsToReplicaSet`) and raising its revision.
    fn new_rs_annotations(&self, rs: &Value, new_revision: i64) -> Map<String, Value> {
        let mut ann = rs
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(da) = self
            .d
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            for (k, v) in da {
                if SKIP_COPY.contains(&k.as_str()) {
                    continue;
                }
                ann.insert(k.clone(), v.clone());
            }
        }
        if revision_of(rs) < new_revision {
            ann.insert(REVISION.into(), json!(new_revision.to_string()));
        }
        ann
    }

    /// `getAllReplicaSetsAndSyncRevision`: the index of the new ReplicaSet,
    /// created when `create` and absent.
    fn sync_revision(&mut self, create: bool) -> Option<usize> {
        let existing = self.find_new();
        let max_old = self
            .olds(existing)
            .iter()
            .map(|i| revision_of(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let ns = self.ns();
        let min_ready = int_at(&self.d, "/spec/minReadySeconds", 0);
        if let Some(i) = existing {
            let rs = self.rss[i].clone();
            let ann = self.new_rs_annotations(&rs, new_revision);
            let cur_ann = rs
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let rs_min_ready = int_at(&rs, "/spec/minReadySeconds", 0);
            if ann != cur_ann || rs_min_ready != min_ready {
                if let Ok(updated) = self.ctx.client.patch(
                    "apps",
                    "replicasets",
                    Some(&ns),
                    obj::name(&rs),
                    json!({"metadata": {"annotations": ann}, "spec": {"minReadySeconds": min_ready}}),
                ) {
                    self.replace_rs(i, updated);
                }
            }
            let rev = annotation(&self.rss[i], REVISION).unwrap_or("").to_string();
            self.set_deployment_revision(&rev);
            if has_progress_deadline(&self.d) && get_condition(&self.conds, "Progressing").is_none()
            {
                let msg = format!("Found new replica set \"{}\"", obj::name(&rs));
                let c = condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    &msg,
                    &self.now_str,
                );
                set_condition(&mut self.conds, c);
            }
            return Some(i);
        }
        if !create {
            return None;
        }
        let collision = int_at(&self.d, "/status/collisionCount", 0);
        let template = self
            .d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let hash = w::template_hash(&template, (collision > 0).then_some(collision));
        let mut rs_template = template.clone();
        if !rs_template["metadata"].is_object() {
            rs_template["metadata"] = json!({});
        }
        if !rs_template["metadata"]["labels"].is_object() {
            rs_template["metadata"]["labels"] = json!({});
        }
        rs_template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut selector = self
            .d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(json!({}));
        if !selector["matchLabels"].is_object() {
            selector["matchLabels"] = json!({});
        }
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
        let rs_name = format!("{}-{hash}", self.name());
        let mut ann = self.new_rs_annotations(&json!({}), new_revision);
        let desired = replicas(&self.d);
        ann.insert(DESIRED.into(), json!(desired.to_string()));
        ann.insert(
            MAX.into(),
            json!((desired + max_surge(&self.d)).to_string()),
        );
        // NewRSNewReplicas with the new ReplicaSet at 0.
        let all: Vec<&Value> = self.rss.iter().collect();
        let count = self.new_rs_new_replicas(&all, 0);
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": rs_template["metadata"]["labels"].clone(),
                "annotations": ann,
                "ownerReferences": [w::controller_ref(&self.d, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": count,
                "minReadySeconds": min_ready,
                "selector": selector,
                "template": rs_template,
            },
        });
        match self.ctx.client.create(rs) {
            Ok(created) => {
                let rev = annotation(&created, REVISION).unwrap_or("").to_string();
                self.rss.push(created);
                self.set_deployment_revision(&rev);
                if has_progress_deadline(&self.d) {
                    let msg = format!("Created new replica set \"{rs_name}\"");
                    let c = condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        &msg,
                        &self.now_str,
                    );
                    set_condition(&mut self.conds, c);
                }
                Some(self.rss.len() - 1)
            }
            Err(e) if e.code == 409 => {
                let existing = self
                    .ctx
                    .client
                    .get("apps", "replicasets", Some(&ns), &rs_name);
                let ours = existing.as_ref().is_some_and(|ex| {
                    obj::controller_of(ex).is_some_and(|(_, _, u)| u == obj::uid(&self.d))
                        && equal_ignore_hash(
                            ex.pointer("/spec/template").unwrap_or(&Value::Null),
                            &template,
                        )
                });
                if ours {
                    self.rss.push(existing.unwrap_or_default());
                    return Some(self.rss.len() - 1);
                }
                // A hash collision: retry with another hash on the next pass.
                let _ = self.ctx.client.patch_status(
                    "apps",
                    "deployments",
                    Some(&ns),
                    &self.name(),
                    json!({"collisionCount": collision + 1}),
                );
                None
            }
            Err(e) => {
                tracing::debug!(deployment = %self.name(), error = %e, "cannot create ReplicaSet");
                None
            }
        }
    }

    fn set_deployment_revision(&mut self, rev: &str) {
        if rev.is_empty() || annotation(&self.d, REVISION) == Some(rev) {
            return;
        }
        if let Ok(updated) = self.ctx.client.patch(
            "apps",
            "deployments",
            Some(&self.ns()),
            &self.name(),
            json!({"metadata": {"annotations": {REVISION: rev}}}),
        ) {
            self.d["metadata"] = updated["metadata"].clone();
        }
    }

    /// `NewRSNewReplicas`.
    fn new_rs_new_replicas(&self, all: &[&Value], new_rs_replicas: i64) -> i64 {
        let desired = replicas(&self.d);
        if !is_rolling(&self.d) {
            return desired;
        }
        let current: i64 = all.iter().map(|rs| replicas(rs)).sum();
        let max_total = desired + max_surge(&self.d);
        if current >= max_total {
            return new_rs_replicas;
        }
        let up = (max_total - current).min(desired - new_rs_replicas);
        new_rs_replicas + up.max(0)
    }

    /// `scaleReplicaSetAndRecordEvent`: no-op when already at `n`.
    fn scale(&mut self, i: usize, n: i64) -> bool {
        let rs = &self.rss[i];
        if replicas(rs) == n {
            return false;
        }
        let desired = replicas(&self.d);
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED: desired.to_string(),
                MAX: (desired + max_surge(&self.d)).to_string(),
            }},
            "spec": {"replicas": n},
        });
        match self.ctx.client.patch(
            "apps",
            "replicasets",
            Some(obj::namespace(rs)),
            obj::name(rs),
            patch,
        ) {
            Ok(updated) => {
                self.replace_rs(i, updated);
                true
            }
            Err(_) => false,
        }
    }

    fn check_paused_conditions(&mut self) {
        if !has_progress_deadline(&self.d) {
            return;
        }
        let reason = get_condition(&self.conds, "Progressing")
            .and_then(|c| c["reason"].as_str())
            .map(String::from);
        let paused = self.paused();
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            let c = condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &self.now_str,
            );
            set_condition(&mut self.conds, c);
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            let c = condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                &self.now_str,
            );
            set_condition(&mut self.conds, c);
        }
    }

    fn is_scaling_event(&mut self) -> bool {
        let new_rs = self.sync_revision(false);
        let desired = replicas(&self.d);
        let mut all = self.olds(new_rs);
        all.extend(new_rs);
        all.iter().any(|i| {
            let rs = &self.rss[*i];
            replicas(rs) > 0
                && annotation(rs, DESIRED)
                    .and_then(|a| a.parse::<i64>().ok())
                    .is_some_and(|a| a != desired)
        })
    }

    /// `sync`: scale only (paused or a scaling event).
    fn sync_scale(&mut self) {
        let new_rs = self.sync_revision(false);
        self.scale_all(new_rs);
        if self.paused() {
            self.cleanup(new_rs);
        }
        self.write_status(new_rs, false);
    }

    /// `scale`: the active (or latest) ReplicaSet to `spec.replicas`, or
    /// proportionally when several are active.
    fn scale_all(&mut self, new_rs: Option<usize>) {
        let desired = replicas(&self.d);
        let mut olds = self.olds(new_rs);
        olds.sort_by(|a, b| by_creation(&self.rss[*b], &self.rss[*a]));
        let mut all = olds.clone();
        all.extend(new_rs);
        let active: Vec<usize> = all
            .iter()
            .copied()
            .filter(|i| replicas(&self.rss[*i]) > 0)
            .collect();
        let single = match active.len() {
            0 => new_rs.or(olds.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = single {
            self.scale(i, desired);
            return;
        }
        if let Some(n) = new_rs {
            let rs = &self.rss[n];
            let saturated = replicas(rs) == desired
                && annotation(rs, DESIRED).and_then(|a| a.parse::<i64>().ok()) == Some(desired)
                && status_int(rs, "availableReplicas") == desired;
            if saturated {
                let active_olds: Vec<usize> = olds
                    .iter()
                    .copied()
                    .filter(|i| replicas(&self.rss[*i]) > 0)
                    .collect();
                for i in active_olds {
                    self.scale(i, 0);
                }
                return;
            }
        }
        if !is_rolling(&self.d) {
            return;
        }
        let total: i64 = active.iter().map(|i| replicas(&self.rss[*i])).sum();
        let allowed = if desired > 0 {
            desired + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        let mut order = active.clone();
        let rss = &self.rss;
        order.sort_by(|a, b| {
            let (ra, rb) = (&rss[*a], &rss[*b]);
            let size = replicas(rb).cmp(&replicas(ra));
            if to_add > 0 {
                size.then_with(|| by_creation(rb, ra))
            } else {
                size.then_with(|| by_creation(ra, rb))
            }
        });
        let mut added = 0;
        let mut sizes: Vec<(usize, i64)> = Vec::new();
        for i in &order {
            let rs = &self.rss[*i];
            let size = if to_add != 0 {
                let p = proportion(rs, &self.d, to_add, added);
                added += p;
                replicas(rs) + p
            } else {
                replicas(rs)
            };
            sizes.push((*i, size));
        }
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (i, size) in sizes {
            self.scale(i, size);
        }
    }

    fn rollout_rolling(&mut self) {
        let Some(new_rs) = self.sync_revision(true) else {
            self.write_status(None, true);
            return;
        };
        if self.reconcile_new(new_rs) {
            self.write_status(Some(new_rs), true);
            return;
        }
        if self.reconcile_olds(new_rs) {
            self.write_status(Some(new_rs), true);
            return;
        }
        let all: Vec<&Value> = self.rss.iter().collect();
        let f = figures(&all, Some(&self.rss[new_rs]));
        if is_complete(&self.d, &f) {
            self.cleanup(Some(new_rs));
        }
        self.write_status(Some(new_rs), true);
    }

    /// `reconcileNewReplicaSet`.
    fn reconcile_new(&mut self, new_rs: usize) -> bool {
        let desired = replicas(&self.d);
        let cur = replicas(&self.rss[new_rs]);
        if cur == desired {
            return false;
        }
        if cur > desired {
            return self.scale(new_rs, desired);
        }
        let all: Vec<&Value> = self.rss.iter().collect();
        let n = self.new_rs_new_replicas(&all, cur);
        self.scale(new_rs, n)
    }

    /// `reconcileOldReplicaSets`.
    fn reconcile_olds(&mut self, new_rs: usize) -> bool {
        let olds = self.olds(Some(new_rs));
        let old_count: i64 = olds.iter().map(|i| replicas(&self.rss[*i])).sum();
        if old_count == 0 {
            return false;
        }
        let all_count: i64 = self.rss.iter().map(replicas).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let nrs = &self.rss[new_rs];
        let new_unavailable = replicas(nrs) - status_int(nrs, "availableReplicas");
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // cleanupUnhealthyReplicas: old replicas that are not available go first.
        let mut olds_sorted = olds.clone();
        olds_sorted.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        let mut cleaned = 0;
        for i in &olds_sorted {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rss[*i];
            let (r, avail) = (replicas(rs), status_int(rs, "availableReplicas"));
            if r == 0 || avail >= r {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(r - avail);
            if self.scale(*i, r - down) {
                cleaned += down;
            }
        }
        // scaleDownOldReplicaSetsForRollingUpdate.
        let available: i64 = self
            .rss
            .iter()
            .map(|rs| status_int(rs, "availableReplicas"))
            .sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in &olds_sorted {
                if scaled >= total {
                    break;
                }
                let r = replicas(&self.rss[*i]);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                if self.scale(*i, r - down) {
                    scaled += down;
                }
            }
        }
        cleaned + scaled > 0
    }

    fn rollout_recreate(&mut self) {
        let mut new_rs = self.sync_revision(false);
        let olds = self.olds(new_rs);
        let mut scaled_down = false;
        for i in olds.iter().copied() {
            if replicas(&self.rss[i]) > 0 && self.scale(i, 0) {
                scaled_down = true;
            }
        }
        if scaled_down {
            self.write_status(new_rs, true);
            return;
        }
        if self.old_pods_running(new_rs) {
            self.write_status(new_rs, true);
            return;
        }
        if new_rs.is_none() {
            new_rs = self.sync_revision(true);
        }
        if let Some(n) = new_rs {
            let desired = replicas(&self.d);
            self.scale(n, desired);
            let all: Vec<&Value> = self.rss.iter().collect();
            let f = figures(&all, Some(&self.rss[n]));
            if is_complete(&self.d, &f) {
                self.cleanup(Some(n));
            }
        }
        self.write_status(new_rs, true);
    }

    /// `oldPodsRunning`: old ReplicaSets still report pods, or a pod of an old
    /// ReplicaSet has not finished (Terminating pods included).
    fn old_pods_running(&self, new_rs: Option<usize>) -> bool {
        let olds = self.olds(new_rs);
        if olds
            .iter()
            .any(|i| status_int(&self.rss[*i], "replicas") > 0)
        {
            return true;
        }
        let old_uids: Vec<&str> = olds.iter().map(|i| obj::uid(&self.rss[*i])).collect();
        self.pods.iter().any(|p| {
            obj::controller_of(p)
                .is_some_and(|(k, _, u)| k == "ReplicaSet" && old_uids.contains(&u))
                && !matches!(w::phase(p), "Succeeded" | "Failed")
        })
    }

    /// `cleanupDeployment`: old ReplicaSets beyond revisionHistoryLimit.
    fn cleanup(&mut self, new_rs: Option<usize>) {
        let Some(limit) = self
            .d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
        else {
            return;
        };
        let mut olds: Vec<usize> = self
            .olds(new_rs)
            .into_iter()
            .filter(|i| !obj::is_terminating(&self.rss[*i]))
            .collect();
        let diff = olds.len() as i64 - limit;
        if diff <= 0 {
            return;
        }
        olds.sort_by(|a, b| {
            revision_of(&self.rss[*a])
                .cmp(&revision_of(&self.rss[*b]))
                .then_with(|| by_creation(&self.rss[*a], &self.rss[*b]))
        });
        for i in olds.into_iter().take(diff as usize) {
            let rs = &self.rss[i];
            if status_int(rs, "replicas") != 0
                || replicas(rs) != 0
                || int_at(rs, "/metadata/generation", 0) > status_int(rs, "observedGeneration")
            {
                continue;
            }
            let _ = self.ctx.client.delete(
                "apps",
                "replicasets",
                Some(obj::namespace(rs)),
                obj::name(rs),
                None,
            );
        }
    }

    /// `calculateStatus`, plus the Progressing logic of `syncRolloutStatus`
    /// when `rollout`; writes when anything changed.
    fn write_status(&mut self, new_rs: Option<usize>, rollout: bool) {
        let all: Vec<&Value> = self.rss.iter().collect();
        let new_ref = new_rs.map(|i| &self.rss[i]);
        let f = figures(&all, new_ref);
        let desired = replicas(&self.d);
        let mut conds = self.conds.clone();
        if f.available >= desired - max_unavailable(&self.d) {
            let c = condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &self.now_str,
            );
            set_condition(&mut conds, c);
        } else {
            let c = condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &self.now_str,
            );
            set_condition(&mut conds, c);
        }
        if rollout {
            if !has_progress_deadline(&self.d) {
                remove_condition(&mut conds, "Progressing");
            }
            let current = get_condition(&self.conds, "Progressing").cloned();
            let complete_already = f.replicas == f.updated
                && current
                    .as_ref()
                    .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
            if has_progress_deadline(&self.d) && !complete_already {
                let rs_name = new_ref.map(obj::name).unwrap_or("");
                if is_complete(&self.d, &f) {
                    let msg = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
                    let c = condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &msg,
                        &self.now_str,
                    );
                    set_condition(&mut conds, c);
                } else if is_progressing(&figures_of_status(&self.stored), &f) {
                    let msg = if new_ref.is_some() {
                        format!("ReplicaSet \"{rs_name}\" is progressing.")
                    } else {
                        format!("Deployment \"{}\" is progressing.", self.name())
                    };
                    let mut c = condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &msg,
                        &self.now_str,
                    );
                    if let Some(cur) = get_condition(&conds, "Progressing") {
                        if cur["status"] == "True" {
                            c["lastTransitionTime"] = cur["lastTransitionTime"].clone();
                        }
                    }
                    remove_condition(&mut conds, "Progressing");
                    conds.push(c);
                } else if self.timed_out(&conds) {
                    let msg = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
                    let c = condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &msg,
                        &self.now_str,
                    );
                    set_condition(&mut conds, c);
                }
            }
        }
        let mut s = Map::new();
        s.insert(
            "observedGeneration".into(),
            omit0(int_at(&self.d, "/metadata/generation", 0)),
        );
        s.insert("replicas".into(), omit0(f.replicas));
        s.insert("updatedReplicas".into(), omit0(f.updated));
        s.insert("readyReplicas".into(), omit0(f.ready));
        s.insert("availableReplicas".into(), omit0(f.available));
        s.insert("unavailableReplicas".into(), omit0(f.unavailable));
        s.insert(
            "conditions".into(),
            if conds.is_empty() {
                Value::Null
            } else {
                Value::Array(conds.clone())
            },
        );
        self.conds = conds;
        w::update_status(self.ctx, "apps", "deployments", &self.stored, s);
    }

    /// `DeploymentTimedOut`.
    fn timed_out(&self, conds: &[Value]) -> bool {
        let Some(c) = get_condition(conds, "Progressing") else {
            return false;
        };
        if c["reason"] == "NewReplicaSetAvailable" {
            return false;
        }
        if c["reason"] == "ProgressDeadlineExceeded" {
            return true;
        }
        let deadline = int_at(&self.d, "/spec/progressDeadlineSeconds", 600);
        c["lastUpdateTime"]
            .as_str()
            .and_then(w::parse_time)
            .is_some_and(|from| from + chrono::Duration::seconds(deadline) < self.now)
    }
}

/// `GetProportion` with `getReplicaSetFraction`.
fn proportion(rs: &Value, d: &Value, to_add: i64, added: i64) -> i64 {
    let r = replicas(rs);
    if r == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = {
        let desired = replicas(d);
        if desired == 0 {
            -r
        } else {
            let max_now = desired + max_surge(d);
            let before = annotation(rs, MAX)
                .and_then(|a| a.parse::<i64>().ok())
                .filter(|m| *m > 0)
                .unwrap_or_else(|| status_int(d, "replicas"));
            if before == 0 {
                0
            } else {
                ((r * max_now) as f64 / before as f64).round() as i64 - r
            }
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(replicas: i64, strategy: Value) -> Value {
        json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": replicas, "strategy": strategy}})
    }

    #[test]
    fn fenceposts_resolve_ints_and_percentages() {
        let d = dep(3, json!({"type": "RollingUpdate"}));
        assert_eq!(fenceposts(&d), (1, 0));
        assert_eq!(max_surge(&d), 1);
        assert_eq!(max_unavailable(&d), 0);
        let d = dep(
            10,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "30%"}}),
        );
        assert_eq!(fenceposts(&d), (0, 3));
        let d = dep(
            4,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
        );
        assert_eq!(fenceposts(&d), (0, 1));
        let d = dep(
            2,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 5}}),
        );
        assert_eq!(max_unavailable(&d), 2);
        let d = dep(3, json!({"type": "Recreate"}));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn complete_and_progressing_as_upstream() {
        let d = dep(3, json!({"type": "RollingUpdate"}));
        let done = Figures {
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
            unavailable: 0,
        };
        assert!(is_complete(&d, &done));
        let mid = Figures {
            replicas: 4,
            updated: 1,
            ready: 3,
            available: 3,
            unavailable: 1,
        };
        assert!(!is_complete(&d, &mid));
        let later = Figures {
            replicas: 3,
            updated: 1,
            ..mid
        };
        assert!(is_progressing(&mid, &later), "old replicas went down");
        assert!(!is_progressing(&mid, &mid));
    }

    #[test]
    fn status_figures_come_from_replicasets() {
        let new_rs = json!({"spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 1}});
        let old_rs = json!({"spec": {"replicas": 2}, "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}});
        let f = figures(&[&old_rs, &new_rs], Some(&new_rs));
        assert_eq!(
            f,
            Figures {
                replicas: 5,
                updated: 2,
                ready: 5,
                available: 4,
                unavailable: 0
            }
        );
    }

    #[test]
    fn conditions_keep_transition_time_unless_status_changes() {
        let mut conds = vec![condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "m",
            "t0",
        )];
        set_condition(
            &mut conds,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "m",
                "t1",
            ),
        );
        assert_eq!(
            conds[0]["lastUpdateTime"], "t0",
            "same status and reason: untouched"
        );
        set_condition(
            &mut conds,
            condition("Available", "True", "MinimumReplicasAvailable", "m", "t2"),
        );
        assert_eq!(conds[0]["lastTransitionTime"], "t2");
        set_condition(
            &mut conds,
            condition("Available", "True", "Other", "m", "t3"),
        );
        assert_eq!(conds[0]["lastTransitionTime"], "t2");
        assert_eq!(conds[0]["lastUpdateTime"], "t3");
    }

    #[test]
    fn proportional_scaling_uses_the_max_replicas_annotation() {
        let d = dep(
            20,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
        );
        let rs = json!({"metadata": {"annotations": {MAX: "10"}}, "spec": {"replicas": 4}});
        // 4 of a previous maximum of 10 -> 8 of 20: adds 4.
        assert_eq!(proportion(&rs, &d, 10, 0), 4);
        assert_eq!(
            proportion(&rs, &d, 10, 8),
            2,
            "capped by what is left to add"
        );
        let empty = json!({"spec": {"replicas": 0}});
        assert_eq!(proportion(&empty, &d, 10, 0), 0);
    }

    #[test]
    fn templates_compare_ignoring_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "x", POD_TEMPLATE_HASH: "abc"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let b = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let c = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i:2"}]}});
        assert!(equal_ignore_hash(&a, &b));
        assert!(!equal_ignore_hash(&a, &c));
        let round_trip = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i:1", "resources": {}}]}});
        assert!(equal_ignore_hash(&a, &round_trip));
    }
}
