//! What the workload controllers ([`super::replicaset`], [`super::deployment`],
//! [`super::statefulset`], [`super::daemonset`], [`super::job`]) share, each piece
//! following its upstream counterpart in kube-controller-manager:
//!
//! - [`claim`], after `ControllerRefManager.ClaimObject` — adopt orphans that match the
//!   selector, release owned objects that no longer match, ignore objects another
//!   controller owns. Simplified: no fresh re-read of the owner before adopting
//!   (upstream's `canAdopt` recheck), as the twin's controllers read the store itself.
//! - [`pod_from_template`], after `controller.GetPodFromTemplate` (labels, annotations
//!   and finalizers of the template, a controller owner reference).
//! - [`deletion_order`], after `controller.ActivePodsWithRanks` (which pods go first on
//!   scale down). Simplified: no logarithmic bucketing of ready/creation times
//!   (LogarithmicScaleDown) and no random tie-break by UID.
//! - [`is_available`], after `podutil.IsPodAvailable` with `minReadySeconds`.
//! - [`scaled_value`], after `intstr.GetScaledValueFromIntOrPercent`.
//! - [`template_hash`], after `controller.ComputeHash` / `history.HashControllerRevision`:
//!   FNV-32a, encoded with `rand.SafeEncodeString`. Simplified: the hashed bytes are
//!   canonical JSON (sorted keys) rather than Go's spew dump of the struct, so the
//!   values differ from a real cluster's but are just as stable.
//! - [`sync_revisions`], after the ControllerRevision history of StatefulSets and
//!   DaemonSets (`getStatefulSetRevisions`/`constructHistory`): an equal revision is
//!   reused (and renumbered on roll back), a new one is created otherwise, and
//!   unused ones beyond `revisionHistoryLimit` are deleted.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::ctx::obj;
use crate::ctx::Ctx;
use crate::selector::LabelSelector;

/// The label Deployments add to their ReplicaSets and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label StatefulSets and DaemonSets put on pods and ControllerRevisions.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// Upstream's generateName/SafeEncodeString alphabet: consonants and digits.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five characters as upstream's generateName, fixed by the seed, the prefix and
/// how many names this prefix had: controllers run concurrently, so drawing from one
/// shared RNG would make names depend on scheduling; this keeps a seeded run's names
/// reproducible.
pub fn random_suffix(ctx: &Ctx, prefix: &str) -> String {
    let n = {
        let mut counters = ctx.names.lock().unwrap_or_else(|e| e.into_inner());
        let c = counters.entry(prefix.to_string()).or_insert(0);
        *c += 1;
        *c
    };
    ctx.name_suffix(&format!("{prefix}#{n}"))
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An integer field (missing or not a number = `default`).
pub fn int_at(o: &Value, pointer: &str, default: i64) -> i64 {
    o.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// A count as upstream serialises an `omitempty` int32: absent when zero.
pub fn omit0(n: i64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(n)
    }
}

/// The object's `spec.selector` as a label selector (a malformed or missing one
/// selects nothing, as upstream treats a selector it cannot convert).
pub fn selector_of(o: &Value) -> LabelSelector {
    o.pointer("/spec/selector")
        .map(|s| {
            LabelSelector::from_label_selector_json(s).unwrap_or_else(|_| LabelSelector::nothing())
        })
        .unwrap_or_else(LabelSelector::nothing)
}

/// A controller owner reference to `owner` (`metav1.NewControllerRef`).
pub fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": obj::name(owner),
        "uid": obj::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn owner_refs(o: &Value) -> Vec<Value> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether `o` has an owner reference (controller or not) to `uid`.
pub fn has_owner(o: &Value, uid: &str) -> bool {
    owner_refs(o).iter().any(|r| r["uid"] == uid)
}

/// Upstream's ClaimObject over `candidates` (objects of (group, plural) in the
/// owner's namespace): returns the objects `owner` controls after adopting
/// matching orphans and releasing owned objects that no longer match.
#[allow(clippy::too_many_arguments)] // the owner's identity and the claimed kind
pub fn claim(
    ctx: &Ctx,
    group: &str,
    plural: &str,
    owner: &Value,
    owner_api_version: &str,
    owner_kind: &str,
    selector: &LabelSelector,
    candidates: &[Value],
) -> Vec<Value> {
    let owner_uid = obj::uid(owner);
    let owner_deleting = obj::is_terminating(owner);
    let mut kept = Vec::new();
    for o in candidates {
        let ns = obj::namespace(o);
        let name = obj::name(o);
        match obj::controller_of(o) {
            Some((_, _, uid)) if uid == owner_uid => {
                if selector.matches_object(o) {
                    kept.push(o.clone());
                } else if !owner_deleting {
                    // Release: drop our owner reference.
                    let refs: Vec<Value> = owner_refs(o)
                        .into_iter()
                        .filter(|r| r["uid"] != owner_uid)
                        .collect();
                    let refs = if refs.is_empty() {
                        Value::Null
                    } else {
                        Value::Array(refs)
                    };
                    let _ = ctx.client.patch(
                        group,
                        plural,
                        Some(ns),
                        name,
                        json!({"metadata": {"ownerReferences": refs}}),
                    );
                }
            }
            Some(_) => {}
            None => {
                if owner_deleting || obj::is_terminating(o) || !selector.matches_object(o) {
                    continue;
                }
                let mut refs = owner_refs(o);
                refs.retain(|r| r["uid"] != owner_uid);
                refs.push(controller_ref(owner, owner_api_version, owner_kind));
                if let Ok(adopted) = ctx.client.patch(
                    group,
                    plural,
                    Some(ns),
                    name,
                    json!({"metadata": {"ownerReferences": refs}}),
                ) {
                    kept.push(adopted);
                }
            }
        }
    }
    kept
}

/// A pod from a pod template (`GetPodFromTemplate`): the template's labels,
/// annotations, finalizers and spec, owned by `owner_ref`. `generate_name` is
/// recorded as upstream's controllers set it (the name itself is chosen by the
/// caller).
pub fn pod_from_template(
    template: &Value,
    namespace: &str,
    name: &str,
    generate_name: Option<&str>,
    owner_ref: Value,
) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if let Some(g) = generate_name {
        meta.insert("generateName".into(), json!(g));
    }
    meta.insert("namespace".into(), json!(namespace));
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{k}")) {
            if !v.is_null() {
                meta.insert(k.into(), v.clone());
            }
        }
    }
    meta.insert("ownerReferences".into(), json!([owner_ref]));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// Creates a pod named `<prefix><5 random chars>` (retrying on a name clash).
pub fn create_generated_pod(ctx: &Ctx, mut pod: Value, prefix: &str) -> Option<Value> {
    for _ in 0..5 {
        let name = format!("{prefix}{}", random_suffix(ctx, prefix));
        pod["metadata"]["name"] = json!(name);
        match ctx.client.create(pod.clone()) {
            Ok(p) => return Some(p),
            Err(e) if e.code == 409 => continue,
            Err(e) => {
                tracing::debug!(prefix, error = %e, "cannot create pod");
                return None;
            }
        }
    }
    None
}

pub fn phase(p: &Value) -> &str {
    obj::str_at(p, "/status/phase").unwrap_or("")
}

/// Not finished and not being deleted (`controller.IsPodActive`).
pub fn is_pod_active(p: &Value) -> bool {
    !matches!(phase(p), "Succeeded" | "Failed") && !obj::is_terminating(p)
}

/// Since when the pod is Ready (its Ready condition's lastTransitionTime).
pub fn ready_since(p: &Value) -> Option<DateTime<Utc>> {
    let c = p
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    parse_time(c["lastTransitionTime"].as_str()?)
}

/// `podutil.IsPodAvailable`: Ready for at least `min_ready_seconds`.
pub fn is_available(p: &Value, min_ready_seconds: i64, now: DateTime<Utc>) -> bool {
    if !obj::is_pod_ready(p) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(p).is_some_and(|t| t + chrono::Duration::seconds(min_ready_seconds) < now)
}

fn max_restarts(p: &Value) -> i64 {
    p.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn phase_ordinal(p: &Value) -> u8 {
    match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// Upstream's ActivePodsWithRanks order: `Less` means "delete `a` before `b`".
/// `rank` is the number of related pods on the same node (more = deleted first).
pub fn deletion_order(a: &Value, b: &Value, rank: &dyn Fn(&Value) -> usize) -> Ordering {
    let assigned = |p: &Value| obj::str_at(p, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    // 1. Unassigned < assigned.
    let o = assigned(a).cmp(&assigned(b));
    if o != Ordering::Equal {
        return o;
    }
    // 2. Pending < Unknown < Running.
    let o = phase_ordinal(a).cmp(&phase_ordinal(b));
    if o != Ordering::Equal {
        return o;
    }
    // 3. Not ready < ready.
    let o = obj::is_pod_ready(a).cmp(&obj::is_pod_ready(b));
    if o != Ordering::Equal {
        return o;
    }
    // 4. More colocated related pods first.
    let o = rank(b).cmp(&rank(a));
    if o != Ordering::Equal {
        return o;
    }
    // 5. Ready for a shorter time first.
    if obj::is_pod_ready(a) && obj::is_pod_ready(b) {
        let o = ready_since(b).cmp(&ready_since(a));
        if o != Ordering::Equal {
            return o;
        }
    }
    // 6. More restarts first.
    let o = max_restarts(b).cmp(&max_restarts(a));
    if o != Ordering::Equal {
        return o;
    }
    // 7. Newer first.
    let created = |p: &Value| obj::str_at(p, "/metadata/creationTimestamp").and_then(parse_time);
    created(b)
        .cmp(&created(a))
        .then_with(|| obj::name(a).cmp(obj::name(b)))
}

/// Sorts `pods` in deletion order, ranking by related pods per node.
pub fn sort_for_deletion(pods: &mut [Value], related: &[Value]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in related {
        if let Some(n) = obj::str_at(p, "/spec/nodeName").filter(|n| !n.is_empty()) {
            *per_node.entry(n.to_string()).or_default() += 1;
        }
    }
    let rank = |p: &Value| {
        obj::str_at(p, "/spec/nodeName")
            .and_then(|n| per_node.get(n).copied())
            .unwrap_or(0)
    };
    pods.sort_by(|a, b| deletion_order(a, b, &rank));
}

/// `intstr.GetScaledValueFromIntOrPercent`: an int, or a percentage of `total`
/// rounded up or down; `default` when absent or malformed.
pub fn scaled_value(v: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => match s.strip_suffix('%') {
            Some(pct) => match pct.trim().parse::<i64>() {
                Ok(pct) => {
                    let x = pct * total;
                    if round_up {
                        (x + 99).div_euclid(100)
                    } else {
                        x.div_euclid(100)
                    }
                }
                Err(_) => default,
            },
            None => s.trim().parse().unwrap_or(default),
        },
        _ => default,
    }
}

/// 32-bit FNV-1a.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `rand.SafeEncodeString`: maps each byte onto the alphanumeric alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// JSON with object keys sorted, whatever the map's insertion order.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// `v` without nulls, empty objects and empty arrays (recursively): what a
/// round trip through Go structs makes equal (`apiequality.Semantic.DeepEqual`
/// treats nil and empty alike, and clients such as kubectl send
/// `creationTimestamp: null` or `resources: {}` in templates).
pub fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), normalized(x)))
                .filter(|(_, x)| !is_empty_value(x))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A stable hash of `v` (and the collision count, as upstream adds it), encoded
/// like upstream's pod-template-hash / controller-revision-hash values.
pub fn template_hash(v: &Value, collision_count: Option<i64>) -> String {
    let mut bytes = canonical_json(&normalized(v)).into_bytes();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Merge-patches the status fields of `o` that differ from `desired` (a Null
/// value means "absent", as upstream omits zero `omitempty` fields). Returns
/// whether it wrote.
pub fn update_status(
    ctx: &Ctx,
    group: &str,
    plural: &str,
    o: &Value,
    desired: Map<String, Value>,
) -> bool {
    let current = o.get("status").cloned().unwrap_or(json!({}));
    let mut patch = Map::new();
    for (k, v) in desired {
        let cur = current.get(&k).unwrap_or(&Value::Null);
        if *cur != v {
            patch.insert(k, v);
        }
    }
    if patch.is_empty() {
        return false;
    }
    let ns = obj::namespace(o);
    let ns = (!ns.is_empty()).then_some(ns);
    ctx.client
        .patch_status(group, plural, ns, obj::name(o), Value::Object(patch))
        .is_ok()
}

/// The revision number of a ControllerRevision.
pub fn revision_number(cr: &Value) -> i64 {
    int_at(cr, "/revision", 0)
}

/// The pod template a ControllerRevision recorded.
pub fn revision_template(cr: &Value) -> Value {
    let mut t = cr
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

/// The ControllerRevision data of a workload (upstream's `getPatch`).
pub fn revision_data(owner: &Value) -> Value {
    let mut t = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    t["$patch"] = json!("replace");
    json!({"spec": {"template": t}})
}

/// The ControllerRevision history of a StatefulSet/DaemonSet.
pub struct History {
    /// Every revision the owner controls, oldest revision number first.
    pub revisions: Vec<Value>,
    /// The revision matching the current template.
    pub update: Value,
    /// The hash part of the update revision's name.
    pub update_hash: String,
}

/// Finds or creates the revision of `owner`'s current template.
pub fn sync_revisions(
    ctx: &Ctx,
    owner: &Value,
    owner_api_version: &str,
    owner_kind: &str,
    all_revisions: &[Value],
) -> Option<History> {
    let ns = obj::namespace(owner);
    let selector = selector_of(owner);
    let candidates: Vec<Value> = all_revisions
        .iter()
        .filter(|r| obj::namespace(r) == ns)
        .cloned()
        .collect();
    let mut revisions = claim(
        ctx,
        "apps",
        "controllerrevisions",
        owner,
        owner_api_version,
        owner_kind,
        &selector,
        &candidates,
    );
    revisions.sort_by(|a, b| {
        revision_number(a)
            .cmp(&revision_number(b))
            .then_with(|| obj::name(a).cmp(obj::name(b)))
    });
    let data = revision_data(owner);
    let next = revisions.last().map(revision_number).unwrap_or(0) + 1;
    let data_n = normalized(&data);
    let equal: Vec<&Value> = revisions
        .iter()
        .filter(|r| normalized(&r["data"]) == data_n)
        .collect();
    let update = match (equal.last(), revisions.last()) {
        (Some(eq), Some(last)) if obj::name(eq) == obj::name(last) => (*eq).clone(),
        (Some(eq), _) => {
            // Roll back: the equal revision becomes the newest.
            ctx.client
                .patch(
                    "apps",
                    "controllerrevisions",
                    Some(ns),
                    obj::name(eq),
                    json!({"revision": next}),
                )
                .ok()?
        }
        (None, _) => {
            let mut collision = int_at(owner, "/status/collisionCount", 0);
            let mut created = None;
            for _ in 0..5 {
                let hash = template_hash(&data, (collision > 0).then_some(collision));
                let name = format!("{}-{hash}", obj::name(owner));
                let mut labels = owner
                    .pointer("/spec/template/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                labels[CONTROLLER_REVISION_HASH] = json!(hash);
                let cr = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ControllerRevision",
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [controller_ref(owner, owner_api_version, owner_kind)],
                    },
                    "data": data,
                    "revision": next,
                });
                match ctx.client.create(cr) {
                    Ok(c) => {
                        created = Some(c);
                        break;
                    }
                    Err(e) if e.code == 409 => {
                        let existing =
                            ctx.client
                                .get("apps", "controllerrevisions", Some(ns), &name);
                        match existing {
                            Some(ex)
                                if normalized(&ex["data"]) == data_n
                                    && obj::controller_of(&ex)
                                        .is_some_and(|(_, _, u)| u == obj::uid(owner)) =>
                            {
                                created = Some(ex);
                                break;
                            }
                            _ => collision += 1,
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot create ControllerRevision");
                        return None;
                    }
                }
            }
            if collision != int_at(owner, "/status/collisionCount", 0) {
                let _ = ctx.client.patch_status(
                    "apps",
                    owner_plural(owner_kind),
                    Some(ns),
                    obj::name(owner),
                    json!({"collisionCount": collision}),
                );
            }
            let c = created?;
            revisions.push(c.clone());
            c
        }
    };
    if let Some(r) = revisions
        .iter_mut()
        .find(|r| obj::name(r) == obj::name(&update))
    {
        *r = update.clone();
    }
    revisions.sort_by_key(revision_number);
    let update_hash = obj::str_at(
        &update,
        &format!("/metadata/labels/{CONTROLLER_REVISION_HASH}"),
    )
    .map(String::from)
    .unwrap_or_else(|| {
        obj::name(&update)
            .rsplit('-')
            .next()
            .unwrap_or("")
            .to_string()
    });
    Some(History {
        revisions,
        update,
        update_hash,
    })
}

fn owner_plural(kind: &str) -> &'static str {
    match kind {
        "StatefulSet" => "statefulsets",
        _ => "daemonsets",
    }
}

/// Deletes the oldest revisions not in `live` beyond `limit` (`truncateHistory`).
pub fn truncate_history(ctx: &Ctx, history: &History, live: &[&str], limit: i64) {
    let dead: Vec<&Value> = history
        .revisions
        .iter()
        .filter(|r| !live.contains(&obj::name(r)))
        .collect();
    let excess = dead.len() as i64 - limit.max(0);
    for r in dead.iter().take(excess.max(0) as usize) {
        let _ = ctx.client.delete(
            "apps",
            "controllerrevisions",
            Some(obj::namespace(r)),
            obj::name(r),
            None,
        );
    }
}

/// Groups objects by namespace.
pub fn by_namespace(objs: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for o in objs {
        m.entry(obj::namespace(&o).to_string()).or_default().push(o);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_rounds_as_upstream() {
        assert_eq!(scaled_value(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(scaled_value(Some(&json!("25%")), 3, false, 0), 0);
        assert_eq!(scaled_value(Some(&json!("50%")), 5, true, 0), 3);
        assert_eq!(scaled_value(Some(&json!("50%")), 5, false, 0), 2);
        assert_eq!(scaled_value(Some(&json!(2)), 5, false, 0), 2);
        assert_eq!(scaled_value(None, 5, false, 7), 7);
        assert_eq!(scaled_value(Some(&json!("100%")), 4, false, 0), 4);
    }

    #[test]
    fn hashes_are_stable_and_order_independent() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        let h = template_hash(&a, None);
        assert!(
            h.len() <= 10 && h.bytes().all(|c| ALPHANUMS.contains(&c)),
            "{h}"
        );
        // FNV-1a reference values.
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
    }

    #[test]
    fn normalization_ignores_nulls_and_empties() {
        let a = json!({"metadata": {"creationTimestamp": null, "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "resources": {}, "env": []}]}});
        let b =
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(normalized(&a), normalized(&b));
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(
            normalized(&a),
            normalized(&json!({"spec": {"containers": [{"name": "d"}]}}))
        );
    }

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Value {
        json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": created}]},
        })
    }

    #[test]
    fn scale_down_prefers_unassigned_pending_and_unready_pods() {
        let mut pods = vec![
            pod("ready-old", "n1", "Running", true, "2024-01-01T00:00:00Z"),
            pod("ready-new", "n2", "Running", true, "2024-01-01T00:00:10Z"),
            pod("unready", "n3", "Running", false, "2024-01-01T00:00:00Z"),
            pod("pending", "n3", "Pending", false, "2024-01-01T00:00:00Z"),
            pod("unassigned", "", "Pending", false, "2024-01-01T00:00:00Z"),
        ];
        let related = pods.clone();
        sort_for_deletion(&mut pods, &related);
        let names: Vec<&str> = pods.iter().map(obj::name).collect();
        assert_eq!(
            names,
            ["unassigned", "pending", "unready", "ready-new", "ready-old"]
        );
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let p = pod("p", "n", "Running", true, "2024-01-01T00:00:00Z");
        let t = parse_time("2024-01-01T00:00:05Z").unwrap();
        assert!(is_available(&p, 0, t));
        assert!(is_available(&p, 4, t));
        assert!(!is_available(&p, 5, t));
        assert!(!is_available(
            &pod("q", "n", "Running", false, "2024-01-01T00:00:00Z"),
            0,
            t
        ));
    }

    #[test]
    fn pods_copy_the_template_metadata() {
        let t = json!({"metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let p = pod_from_template(&t, "ns", "x-abcde", Some("x-"), json!({"uid": "u"}));
        assert_eq!(p["metadata"]["labels"]["app"], "x");
        assert_eq!(p["metadata"]["annotations"]["a"], "b");
        assert_eq!(p["metadata"]["generateName"], "x-");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u");
        assert_eq!(p["spec"]["containers"][0]["image"], "i");
    }
}
