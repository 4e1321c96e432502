//! The stack's operators, simulated: each reconciles the same custom resources the
//! real operator does and writes the status the real one writes, so a client reading
//! them cannot tell the twin from a cluster. Their controller Deployments are created
//! at boot from `assets/operators.yaml`, as Helm would install them; an operator only
//! acts while its own Deployment has a Ready pod (scale it to 0 and it stops, as on a
//! real cluster).

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::now_rfc3339;
use crate::ctx::{obj, reconcile_loop, Ctx};

pub mod certmanager;
pub mod rook;
pub mod velero;

pub const ASSETS: &str = include_str!("../../assets/operators.yaml");

/// Whether the operator's Deployment `ns/name` has a Ready replica.
pub fn operator_running(ctx: &Ctx, ns: &str, name: &str) -> bool {
    ctx.client
        .get("apps", "deployments", Some(ns), name)
        .is_some_and(|d| {
            d.pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0
        })
}

/// Writes `status` only when it differs from the current one (keeps watches quiet).
pub fn set_status(ctx: &Ctx, group: &str, plural: &str, o: &Value, status: Value) {
    let mut merged = o.get("status").cloned().unwrap_or(json!({}));
    crate::patch::merge_patch(&mut merged, &status);
    if o.get("status") != Some(&merged) {
        let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
        let _ = ctx
            .client
            .patch_status(group, plural, ns, obj::name(o), status);
    }
}

/// A Ready condition, keeping lastTransitionTime when the status does not change.
pub fn ready_condition(o: &Value, kind: &str, status: bool, reason: &str, message: &str) -> Value {
    let mut conds = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let st = if status { "True" } else { "False" };
    obj::set_condition(&mut conds, kind, st, reason, message, &now_rfc3339());
    for c in conds.iter_mut() {
        if c.get("observedGeneration").is_some() || kind == "Ready" {
            c["observedGeneration"] = o
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
        }
    }
    Value::Array(conds)
}

pub fn spawn_all(ctx: Ctx, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let store = std::sync::Arc::new(velero::ObjectStore::default());
    vec![
        tokio::spawn(certmanager::run(ctx.clone(), stop.clone())),
        tokio::spawn(rook::run(ctx.clone(), stop.clone())),
        // Gatekeeper's template controller; its webhook is admission.rs.
        tokio::spawn(crate::admission::gatekeeper(ctx.clone(), stop.clone())),
        tokio::spawn(velero::run(ctx.clone(), store, stop.clone())),
        tokio::spawn(reconcile_loop(
            ctx.clone(),
            &[
                ("kustomize.toolkit.fluxcd.io", "kustomizations"),
                ("apps", "deployments"),
            ],
            stop.clone(),
            flux,
        )),
        tokio::spawn(reconcile_loop(
            ctx.clone(),
            &[
                ("monitoring.coreos.com", "prometheuses"),
                ("apps", "deployments"),
                ("apps", "statefulsets"),
            ],
            stop.clone(),
            prometheus_operator,
        )),
        tokio::spawn(reconcile_loop(
            ctx.clone(),
            &[
                ("projectcontour.io", "httpproxies"),
                ("", "services"),
                ("apps", "deployments"),
            ],
            stop.clone(),
            contour,
        )),
    ]
}

/// Flux kustomize-controller: a Kustomization whose dependencies are Ready gets
/// `Ready=True, ReconciliationSucceeded` with the applied revision; a suspended one
/// is left as it is (as Flux does).
fn flux(ctx: &Ctx) {
    if !operator_running(ctx, "flux-system", "kustomize-controller") {
        return;
    }
    let all = ctx
        .client
        .list("kustomize.toolkit.fluxcd.io", "kustomizations", None, None);
    for k in &all {
        if k.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
            continue;
        }
        let blocked: Vec<String> = k
            .pointer("/spec/dependsOn")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .filter_map(|d| d["name"].as_str())
                    .filter(|name| {
                        !all.iter().any(|o| {
                            obj::name(o) == *name
                                && obj::namespace(o) == obj::namespace(k)
                                && obj::condition(o, "Ready") == Some("True")
                        })
                    })
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let revision = "main@sha1:5d8e3f1c2b4a69788e2f0d1c3b5a7e9f1d3c5b7a";
        let status = if blocked.is_empty() {
            json!({
                "conditions": ready_condition(k, "Ready", true, "ReconciliationSucceeded", &format!("Applied revision: {revision}")),
                "lastAppliedRevision": revision,
                "lastAttemptedRevision": revision,
                "observedGeneration": k.pointer("/metadata/generation"),
            })
        } else {
            json!({
                "conditions": ready_condition(k, "Ready", false, "DependencyNotReady", &format!("dependency '{}/{}' is not ready", obj::namespace(k), blocked[0])),
                "observedGeneration": k.pointer("/metadata/generation"),
            })
        };
        set_status(
            ctx,
            "kustomize.toolkit.fluxcd.io",
            "kustomizations",
            k,
            status,
        );
    }
}

/// prometheus-operator: a Prometheus becomes StatefulSet `prometheus-<name>` (label
/// app.kubernetes.io/name=prometheus), and reports Available once its pods are Ready.
fn prometheus_operator(ctx: &Ctx) {
    if !operator_running(ctx, "monitoring", "prometheus-operator") {
        return;
    }
    for p in ctx
        .client
        .list("monitoring.coreos.com", "prometheuses", None, None)
    {
        let (ns, name) = (obj::namespace(&p).to_string(), obj::name(&p).to_string());
        let sts_name = format!("prometheus-{name}");
        let replicas = p
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let labels = json!({"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": name, "operator.prometheus.io/name": name});
        if ctx
            .client
            .get("apps", "statefulsets", Some(&ns), &sts_name)
            .is_none()
        {
            let _ = ctx.client.create(json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": sts_name, "namespace": ns, "labels": labels,
                             "ownerReferences": [{"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "name": name, "uid": obj::uid(&p), "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"replicas": replicas, "serviceName": "prometheus-operated", "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                             {"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.54.1",
                              "args": [format!("--storage.tsdb.retention.time={}", p.pointer("/spec/retention").and_then(Value::as_str).unwrap_or("24h"))],
                              "ports": [{"name": "web", "containerPort": 9090}]}]}}}
            }));
        }
        let ready = ctx
            .client
            .get("apps", "statefulsets", Some(&ns), &sts_name)
            .and_then(|s| s.pointer("/status/readyReplicas").and_then(Value::as_i64))
            .unwrap_or(0);
        let ok = ready >= replicas;
        // Both conditions are computed on one copy so neither overwrites the other.
        let mut with_avail = p.clone();
        with_avail["status"]["conditions"] =
            ready_condition(&p, "Available", ok, if ok { "" } else { "NoPodReady" }, "");
        let status = json!({
            "availableReplicas": ready, "replicas": replicas, "updatedReplicas": ready,
            "unavailableReplicas": (replicas - ready).max(0), "paused": false,
            "conditions": ready_condition(&with_avail, "Reconciled", true, "", ""),
        });
        set_status(ctx, "monitoring.coreos.com", "prometheuses", &p, status);
    }
}

/// Contour: an HTTPProxy whose route services exist is `valid`; otherwise `invalid`
/// with Contour's message. The load balancer address is Envoy's Service.
fn contour(ctx: &Ctx) {
    if !operator_running(ctx, "projectcontour", "contour") {
        return;
    }
    for hp in ctx
        .client
        .list("projectcontour.io", "httpproxies", None, None)
    {
        let ns = obj::namespace(&hp).to_string();
        let mut missing = Vec::new();
        for route in hp
            .pointer("/spec/routes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            for svc in route["services"].as_array().cloned().unwrap_or_default() {
                let name = svc["name"].as_str().unwrap_or("");
                let port = svc["port"].as_i64().unwrap_or(0);
                let has_port = ctx
                    .client
                    .get("", "services", Some(&ns), name)
                    .is_some_and(|s| {
                        s.pointer("/spec/ports")
                            .and_then(Value::as_array)
                            .is_some_and(|ps| ps.iter().any(|p| p["port"].as_i64() == Some(port)))
                    });
                if !has_port {
                    missing.push(format!("Service [{name}:{port}] is invalid or missing"));
                }
            }
        }
        let (current, description) = if missing.is_empty() {
            ("valid", "Valid HTTPProxy".to_string())
        } else {
            ("invalid", missing.join("; "))
        };
        let valid = current == "valid";
        let status = json!({
            "currentStatus": current,
            "description": description,
            "loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]},
            "conditions": ready_condition(&hp, "Valid", valid, if valid { "Valid" } else { "RouteError" }, &description),
        });
        set_status(ctx, "projectcontour.io", "httpproxies", &hp, status);
    }
}
