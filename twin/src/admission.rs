//! Admission: what a real API server's admission chain does to an object on create
//! and on update (of the main resource, not `status`), after defaulting and before
//! it is stored. Every write goes through it, the twin's own controllers' too (a
//! ReplicaSet's pods are denied by Gatekeeper as in a real cluster). Plugins, in
//! upstream's order (mutating first, then validating webhooks):
//!
//! - `DefaultTolerationSeconds` (upstream admission plugin): pods get NoExecute
//!   tolerations for `node.kubernetes.io/not-ready` and `.../unreachable` with
//!   `tolerationSeconds` = [`Timing::default_toleration`], unless they already
//!   tolerate those taints.
//! - `DefaultStorageClass` (upstream admission plugin, on create only): a PVC
//!   without `storageClassName` gets the default StorageClass (annotation
//!   `storageclass.kubernetes.io/is-default-class: "true"`; the newest when several).
//!   PVCs created before a default class existed are handled by the volume
//!   controller (upstream's retroactive default StorageClass assignment).
//! - Gatekeeper's validating webhook `validation.gatekeeper.sh`, natively for the
//!   gatekeeper-library `K8sDisallowedTags` template (the twin runs no Rego): the
//!   library's rules and messages, Gatekeeper's constraint matching (`spec.match`)
//!   and enforcement actions, and its denial as the API server reports it (403
//!   Forbidden, `admission webhook "validation.gatekeeper.sh" denied the request:
//!   [<constraint>] <msg>`, one line per violation). As the library's Rego, only the
//!   reviewed object's own `spec.containers`/`initContainers`/`ephemeralContainers`
//!   are checked: a Deployment's template is not, its pods are when the ReplicaSet
//!   creates them.
//!
//! [`gatekeeper`] is Gatekeeper's template controller: each ConstraintTemplate gets
//! its constraint CRD `<lowercase kind>.constraints.gatekeeper.sh`.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::Api;
use crate::ctx::{obj, Ctx};
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::selector::LabelSelector;

/// The operation being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// What an admission plugin is told about a write.
pub struct Request<'a> {
    pub info: &'a ResourceInfo,
    pub operation: Operation,
    /// The stored object (updates only).
    pub old: Option<&'a Value>,
    list: &'a dyn Fn(&str, &str) -> Vec<Arc<Value>>,
}

impl<'a> Request<'a> {
    pub fn new(
        info: &'a ResourceInfo,
        operation: Operation,
        old: Option<&'a Value>,
        list: &'a dyn Fn(&str, &str) -> Vec<Arc<Value>>,
    ) -> Request<'a> {
        Request {
            info,
            operation,
            old,
            list,
        }
    }

    /// Every stored object of a kind (group, plural). Plugins read the store through
    /// this, never through the [`Api`]: an update admits while holding the store.
    pub fn list(&self, group: &str, plural: &str) -> Vec<Arc<Value>> {
        (self.list)(group, plural)
    }
}

/// An admission plugin: mutates `obj`, or rejects the write with the error to return.
pub type Hook = Arc<dyn Fn(&Request<'_>, &mut Value) -> Result<(), ApiError> + Send + Sync>;

/// Installs the twin's admission plugins on `api` (mutating first, as upstream).
pub fn install(api: &Api, ctx: &Ctx) {
    let seconds = ctx.timing.default_toleration.as_secs() as i64;
    api.add_admission(Arc::new(move |req, o| {
        default_toleration_seconds(req, o, seconds);
        Ok(())
    }));
    api.add_admission(Arc::new(|req, o| {
        default_storage_class(req, o);
        Ok(())
    }));
    api.add_admission(Arc::new(gatekeeper_webhook));
}

fn is(req: &Request<'_>, group: &str, plural: &str) -> bool {
    req.info.group == group && req.info.plural == plural
}

/// Upstream's DefaultTolerationSeconds plugin.
fn default_toleration_seconds(req: &Request<'_>, pod: &mut Value, seconds: i64) {
    if !is(req, "", "pods") || !pod.is_object() {
        return;
    }
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // A toleration with an empty key and effect (operator Exists) tolerates both.
    let tolerates = |key: &str| {
        tolerations.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let e = t["effect"].as_str().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut added = Vec::new();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(key) {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
    if added.is_empty() {
        return;
    }
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    let mut all = tolerations;
    all.extend(added);
    pod["spec"]["tolerations"] = Value::Array(all);
}

/// The default StorageClass: annotated `is-default-class: "true"` (or the beta
/// annotation); the most recently created one when there are several (as upstream
/// since 1.26), ties broken by name.
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    classes
        .into_iter()
        .filter(|c| {
            [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|a| {
                c.pointer("/metadata/annotations")
                    .and_then(|m| m.get(*a))
                    .and_then(Value::as_str)
                    == Some("true")
            })
        })
        .max_by(|a, b| {
            let ts = |c: &Value| {
                obj::str_at(c, "/metadata/creationTimestamp")
                    .unwrap_or("")
                    .to_string()
            };
            (ts(a), obj::name(b).to_string()).cmp(&(ts(b), obj::name(a).to_string()))
        })
        .map(|c| obj::name(c).to_string())
}

/// Upstream's DefaultStorageClass plugin (create only).
fn default_storage_class(req: &Request<'_>, pvc: &mut Value) {
    if !is(req, "", "persistentvolumeclaims") || req.operation != Operation::Create {
        return;
    }
    if !pvc
        .pointer("/spec/storageClassName")
        .is_none_or(Value::is_null)
    {
        return;
    }
    let classes = req.list("storage.k8s.io", "storageclasses");
    if let Some(name) = default_class(classes.iter().map(|c| &**c)) {
        if pvc["spec"].is_object() {
            pvc["spec"]["storageClassName"] = json!(name);
        }
    }
}

const CONSTRAINTS: &str = "constraints.gatekeeper.sh";
const WEBHOOK: &str = "validation.gatekeeper.sh";

/// Gatekeeper's wildcard for namespaces and names: `prefix*`, `*suffix` or exact.
fn glob(pattern: &str, s: &str) -> bool {
    if let Some(p) = pattern.strip_suffix('*') {
        s.starts_with(p)
    } else if let Some(p) = pattern.strip_prefix('*') {
        s.ends_with(p)
    } else {
        pattern == s
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn selector_matches(sel: &Value, labels_of: &Value) -> bool {
    if sel.is_null() {
        return true;
    }
    LabelSelector::from_label_selector_json(sel).is_ok_and(|s| s.matches_object(labels_of))
}

/// Gatekeeper's `spec.match` (kinds, scope, namespaces, excludedNamespaces,
/// labelSelector, namespaceSelector, name). Namespace criteria do not apply to
/// cluster-scoped objects other than Namespaces, as in Gatekeeper.
fn constraint_matches(
    m: &Value,
    info: &ResourceInfo,
    o: &Value,
    namespace: Option<&Value>,
) -> bool {
    if let Some(kinds) = m.get("kinds").and_then(Value::as_array) {
        let ok = kinds.is_empty()
            || kinds.iter().any(|k| {
                let groups = strings(&k["apiGroups"]);
                let names = strings(&k["kinds"]);
                (groups.contains(&"*") || groups.contains(&info.group.as_str()))
                    && (names.contains(&"*") || names.contains(&info.kind.as_str()))
            });
        if !ok {
            return false;
        }
    }
    match m.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" if info.namespaced => return false,
        "Namespaced" if !info.namespaced => return false,
        _ => {}
    }
    let is_ns = info.group.is_empty() && info.plural == "namespaces";
    let ns_name = if is_ns {
        Some(obj::name(o))
    } else if info.namespaced {
        Some(obj::namespace(o))
    } else {
        None
    };
    if let Some(ns) = ns_name {
        let included = strings(&m["namespaces"]);
        if !included.is_empty() && !included.iter().any(|p| glob(p, ns)) {
            return false;
        }
        if strings(&m["excludedNamespaces"])
            .iter()
            .any(|p| glob(p, ns))
        {
            return false;
        }
        let ns_obj = if is_ns { Some(o) } else { namespace };
        if let Some(sel) = m.get("namespaceSelector").filter(|s| !s.is_null()) {
            if !ns_obj.is_some_and(|n| selector_matches(sel, n)) {
                return false;
            }
        }
    }
    if let Some(sel) = m.get("labelSelector") {
        if !selector_matches(sel, o) {
            return false;
        }
    }
    if let Some(name) = m.get("name").and_then(Value::as_str) {
        if !glob(name, obj::name(o)) {
            return false;
        }
    }
    true
}

/// The gatekeeper-library `k8sdisallowedtags` rules (template version 1.0.2), one
/// message per violation, sorted as OPA sorts the violation set.
pub fn disallowed_tags_violations(params: &Value, o: &Value) -> Vec<String> {
    let tags = strings(&params["tags"]);
    let exempt = strings(&params["exemptImages"]);
    let shown = format!(
        "[{}]",
        tags.iter()
            .map(|t| Value::String(t.to_string()).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut out = Vec::new();
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for c in o
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c["name"].as_str().unwrap_or("");
            let image = c["image"].as_str().unwrap_or("");
            let is_exempt = exempt.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => *e == image,
            });
            if is_exempt {
                continue;
            }
            if tags.iter().any(|t| image.ends_with(&format!(":{t}"))) {
                out.push(format!(
                    "container <{name}> uses a disallowed tag <{image}>; disallowed tags are {shown}"
                ));
            }
            if !image.rsplit('/').next().unwrap_or("").contains(':') {
                out.push(format!(
                    "container <{name}> didn't specify an image tag <{image}>"
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The only difference is `spec.nodeName`: the twin's scheduler binds with a patch
/// where upstream's uses `pods/binding`, which Gatekeeper does not review.
fn is_binding(req: &Request<'_>, new: &Value) -> bool {
    let Some(old) = req.old else { return false };
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(s) = v.get_mut("spec").and_then(Value::as_object_mut) {
            s.remove("nodeName");
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["resourceVersion", "managedFields", "generation"] {
                m.remove(f);
            }
        }
        v
    };
    is(req, "", "pods") && strip(old) == strip(new)
}

/// Gatekeeper's validating webhook for `K8sDisallowedTags` constraints, as the
/// embedded API server's admission hook.
fn gatekeeper_webhook(req: &Request<'_>, o: &mut Value) -> Result<(), ApiError> {
    let denied = gatekeeper_denials(req, o);
    if denied.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "admission webhook \"{WEBHOOK}\" denied the request: {}",
        denied.join("\n")
    )))
}

/// The `[constraint] message` lines of the `deny` constraints `o` violates (`warn`
/// and `dryrun` ones are logged). Empty: admitted.
fn gatekeeper_denials(req: &Request<'_>, o: &Value) -> Vec<String> {
    if req.info.group == CONSTRAINTS
        || req.info.group.ends_with(".gatekeeper.sh")
        || req.info.group == "apiextensions.k8s.io"
    {
        return Vec::new();
    }
    let constraints = req.list(CONSTRAINTS, "k8sdisallowedtags");
    if constraints.is_empty() || is_binding(req, o) {
        return Vec::new();
    }
    let namespace = if req.info.namespaced {
        let ns = obj::namespace(o).to_string();
        req.list("", "namespaces")
            .into_iter()
            .find(|n| obj::name(n) == ns)
    } else {
        None
    };
    // The webhook's namespaceSelector excludes namespaces labelled to be ignored.
    if namespace
        .as_deref()
        .and_then(|n| n.pointer("/metadata/labels/admission.gatekeeper.sh~1ignore"))
        .is_some()
    {
        return Vec::new();
    }
    let mut constraints: Vec<&Arc<Value>> = constraints.iter().collect();
    constraints.sort_by(|a, b| obj::name(a).cmp(obj::name(b)));
    let mut denied = Vec::new();
    for c in constraints {
        let m = c.pointer("/spec/match").cloned().unwrap_or(Value::Null);
        if !constraint_matches(&m, req.info, o, namespace.as_deref()) {
            continue;
        }
        let params = c.pointer("/spec/parameters").cloned().unwrap_or(json!({}));
        let action = obj::str_at(c, "/spec/enforcementAction").unwrap_or("deny");
        for msg in disallowed_tags_violations(&params, o) {
            let line = format!("[{}] {msg}", obj::name(c));
            match action {
                "deny" => denied.push(line),
                "warn" => tracing::warn!(target: "gatekeeper", "{line}"),
                _ => tracing::info!(target: "gatekeeper", "{action}: {line}"),
            }
        }
    }
    denied
}

/// Where a real kube-apiserver sends Gatekeeper's admission reviews ([`serve_webhook`]).
pub const WEBHOOK_PATH: &str = "/twin/v1/admission/gatekeeper";
/// Where it sends the objects the twin's defects rewrite ([`crate::defects::review`]).
pub const DEFECTS_PATH: &str = "/twin/v1/admission/defects";

/// Gatekeeper's ValidatingWebhookConfiguration for a real kube-apiserver, calling
/// the twin at `base` (https://127.0.0.1:PORT) and trusting `ca_pem`. As the chart
/// (gatekeeper 3.x `gatekeeper-validating-webhook-configuration`): every resource
/// on CREATE and UPDATE, namespaces labelled `admission.gatekeeper.sh/ignore`
/// excluded, `failurePolicy: Ignore` (a dead twin must not block the cluster) and a
/// 3 s timeout. A URL, not a Service: the apiserver dials it directly (its
/// egress selector configures only the `cluster` network).
pub fn webhook_configuration(base: &str, ca_pem: &str) -> Value {
    let mut hook = webhook(WEBHOOK, &format!("{base}{WEBHOOK_PATH}"), ca_pem, "Ignore");
    hook["namespaceSelector"] = json!({"matchExpressions": [
        {"key": "admission.gatekeeper.sh/ignore", "operator": "DoesNotExist"},
    ]});
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "gatekeeper-validating-webhook-configuration",
                     "labels": {"gatekeeper.sh/system": "yes"}},
        "webhooks": [hook],
    })
}

/// The twin's defects as a MutatingWebhookConfiguration: on a real kube-apiserver
/// the objects a defect misconfigures are rewritten by this webhook, where the
/// embedded API server rewrites them in its own admission chain. `Fail`: a defect
/// that silently did not apply would make a negative run pass.
pub fn defects_webhook_configuration(base: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "stormdrill-twin-defects"},
        "webhooks": [webhook("defects.twin.stormdrill.io", &format!("{base}{DEFECTS_PATH}"), ca_pem, "Fail")],
    })
}

/// One webhook of a configuration: every resource (not subresources) on CREATE and
/// UPDATE, at `url`.
fn webhook(name: &str, url: &str, ca_pem: &str, failure_policy: &str) -> Value {
    use base64::Engine as _;
    json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": {
            "url": url,
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        },
        "failurePolicy": failure_policy,
        "matchPolicy": "Exact",
        "rules": [{"apiGroups": ["*"], "apiVersions": ["*"],
                   "operations": ["CREATE", "UPDATE"], "resources": ["*"]}],
        "sideEffects": "None",
        "timeoutSeconds": 3,
    })
}

/// Serves the twin's webhooks for a real kube-apiserver on `listener` until `stop`:
/// Gatekeeper's, and the defects' when any is on.
/// Without credentials, as the apiserver calls any webhook that has no admission
/// kubeconfig; the answer only says whether an object is admitted.
pub async fn serve_webhook(
    ctx: Ctx,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: watch::Receiver<bool>,
) {
    use crate::kubelet_api::server::{json_response, serve_with, text};
    use http_body_util::BodyExt;
    serve_with(listener, tls, stop, move |req, _| {
        let ctx = ctx.clone();
        async move {
            let path = req.uri().path().to_string();
            if req.method() != hyper::Method::POST || (path != WEBHOOK_PATH && path != DEFECTS_PATH)
            {
                return text(404, "not one of the twin's webhooks");
            }
            let body = match http_body_util::Limited::new(req.into_body(), 8 << 20)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return text(400, &format!("cannot read the AdmissionReview: {e}")),
            };
            match serde_json::from_slice::<Value>(&body) {
                Ok(r) if path == DEFECTS_PATH => {
                    json_response(200, &crate::defects::review(&ctx.defects, &r))
                }
                Ok(r) => json_response(200, &review(&ctx, &r)),
                Err(e) => text(400, &format!("not an AdmissionReview: {e}")),
            }
        }
    })
    .await
}

/// Answers a real kube-apiserver's `AdmissionReview` (admission.k8s.io/v1) for
/// Gatekeeper's webhook: the same judgement as the embedded hook, reading the
/// constraints and namespaces from the twin's mirror. A request the twin cannot
/// place (an unknown resource, no object) is allowed, as Gatekeeper allows what no
/// constraint matches.
pub fn review(ctx: &Ctx, review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let operation = match request["operation"].as_str() {
        Some("CREATE") => Some(Operation::Create),
        Some("UPDATE") => Some(Operation::Update),
        _ => None,
    };
    let group = request.pointer("/resource/group").and_then(Value::as_str);
    let plural = request
        .pointer("/resource/resource")
        .and_then(Value::as_str);
    let info = group
        .zip(plural)
        .and_then(|(g, p)| ctx.client.info(g, p).ok());
    let list = |g: &str, p: &str| -> Vec<Arc<Value>> {
        ctx.client
            .list(g, p, None, None)
            .into_iter()
            .map(Arc::new)
            .collect()
    };
    let old = request.get("oldObject").filter(|o| o.is_object());
    let denied = match (info, operation, request.get("object")) {
        (Some(info), Some(op), Some(o)) if o.is_object() => {
            gatekeeper_denials(&Request::new(&info, op, old, &list), o)
        }
        _ => Vec::new(),
    };
    let response = if denied.is_empty() {
        json!({"uid": uid, "allowed": true})
    } else {
        json!({"uid": uid, "allowed": false,
               "status": {"code": 403, "reason": "Forbidden", "message": denied.join("\n")}})
    };
    review_answer(response)
}

/// The `AdmissionReview` (admission.k8s.io/v1) a webhook answers with `response`.
pub fn review_answer(response: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The constraint CRD Gatekeeper creates for a ConstraintTemplate.
pub fn constraint_crd(template: &Value) -> Option<Value> {
    let kind = obj::str_at(template, "/spec/crd/spec/names/kind").filter(|k| !k.is_empty())?;
    let plural = kind.to_lowercase();
    let parameters = template
        .pointer("/spec/crd/spec/validation/openAPIV3Schema")
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let schema = json!({"openAPIV3Schema": {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "enforcementAction": {"type": "string"},
                "scopedEnforcementActions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "match": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "parameters": parameters,
            }},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    }});
    let version = |name: &str, storage: bool| json!({"name": name, "served": true, "storage": storage, "schema": schema, "subresources": {"status": {}}});
    let mut names = json!({
        "kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": plural,
        "categories": ["constraint", "constraints"],
    });
    if let Some(short) = template.pointer("/spec/crd/spec/names/shortNames") {
        names["shortNames"] = short.clone();
    }
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{CONSTRAINTS}"),
            "labels": {"gatekeeper.sh/constraint": "yes"},
            "ownerReferences": [{
                "apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate",
                "name": obj::name(template), "uid": obj::uid(template),
            }],
        },
        "spec": {
            "group": CONSTRAINTS,
            "names": names,
            "scope": "Cluster",
            "versions": [version("v1beta1", true), version("v1alpha1", false)],
        },
    }))
}

const POD_ID: &str = "gatekeeper-controller-manager-0";

/// Gatekeeper's template controller: creates each ConstraintTemplate's constraint
/// CRD and reports `status.created`; marks `K8sDisallowedTags` constraints enforced.
pub async fn gatekeeper(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(
        ctx,
        &[
            ("templates.gatekeeper.sh", "constrainttemplates"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            (CONSTRAINTS, "k8sdisallowedtags"),
        ],
        stop,
        reconcile_gatekeeper,
    )
    .await
}

fn reconcile_gatekeeper(ctx: &Ctx) {
    let c = &ctx.client;
    for t in c.list("templates.gatekeeper.sh", "constrainttemplates", None, None) {
        if obj::is_terminating(&t) {
            continue;
        }
        let Some(crd) = constraint_crd(&t) else {
            continue;
        };
        let crd_name = obj::name(&crd).to_string();
        let exists = c
            .get(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                None,
                &crd_name,
            )
            .is_some();
        let created = exists || c.create(crd).is_ok();
        let generation = t
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        let status = json!({
            "created": created,
            "byPod": [{"id": POD_ID, "observedGeneration": generation,
                       "operations": ["audit", "mutation-status", "status", "webhook"],
                       "templateUID": obj::uid(&t)}],
        });
        if t.get("status") != Some(&status) {
            let _ = c.patch_status(
                "templates.gatekeeper.sh",
                "constrainttemplates",
                None,
                obj::name(&t),
                status,
            );
        }
    }
    for k in c.list(CONSTRAINTS, "k8sdisallowedtags", None, None) {
        let generation = k
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        let by_pod = json!([{"id": POD_ID, "enforced": true, "observedGeneration": generation,
                             "operations": ["audit", "mutation-status", "status", "webhook"],
                             "constraintUID": obj::uid(&k)}]);
        if k.pointer("/status/byPod") != Some(&by_pod) {
            let _ = c.patch_status(
                CONSTRAINTS,
                "k8sdisallowedtags",
                None,
                obj::name(&k),
                json!({"byPod": by_pod}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_messages() {
        let params = json!({"tags": ["latest"], "exemptImages": ["openpolicyagent/opa-exp:latest", "ghcr.io/x/*"]});
        let pod = |image: &str| json!({"spec": {"containers": [{"name": "c", "image": image}]}});
        assert_eq!(
            disallowed_tags_violations(&params, &pod("nginx:latest")),
            ["container <c> uses a disallowed tag <nginx:latest>; disallowed tags are [\"latest\"]"]
        );
        assert_eq!(
            disallowed_tags_violations(&params, &pod("registry:5000/nginx")),
            ["container <c> didn't specify an image tag <registry:5000/nginx>"]
        );
        assert!(disallowed_tags_violations(&params, &pod("nginx:1.27")).is_empty());
        assert!(disallowed_tags_violations(&params, &pod("nginx@sha256:abc")).is_empty());
        assert!(
            disallowed_tags_violations(&params, &pod("openpolicyagent/opa-exp:latest")).is_empty()
        );
        assert!(disallowed_tags_violations(&params, &pod("ghcr.io/x/y")).is_empty());
        let two = json!({"tags": ["latest", "dev"]});
        assert_eq!(
            disallowed_tags_violations(&two, &pod("a:dev")),
            ["container <c> uses a disallowed tag <a:dev>; disallowed tags are [\"latest\", \"dev\"]"]
        );
    }

    #[test]
    fn globs_and_defaults() {
        assert!(glob("kube-*", "kube-system"));
        assert!(glob("*-prod", "web-prod"));
        assert!(!glob("default", "defaults"));
        let classes = [
            json!({"metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
            json!({"metadata": {"name": "b", "creationTimestamp": "2024-02-01T00:00:00Z", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
            json!({"metadata": {"name": "c", "creationTimestamp": "2025-01-01T00:00:00Z"}}),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("b"));
    }
}
