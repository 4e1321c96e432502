//! The eviction subresource `POST .../pods/NAME/eviction` (policy/v1 or v1beta1
//! `Eviction`, optional `deleteOptions`), following upstream's EvictionREST
//! (`pkg/registry/core/pod/storage/eviction.go`):
//!
//! - A pod that is terminating, Pending, Succeeded or Failed is deleted without
//!   looking at budgets (upstream's canIgnorePDB).
//! - The budgets are the PDBs of the pod's namespace whose non-empty selector
//!   matches it; more than one answers 500 `This pod has more than one
//!   PodDisruptionBudget, which the eviction subresource does not support.`
//! - A pod that is not Ready is evicted without spending the budget when its PDB has
//!   `unhealthyPodEvictionPolicy: AlwaysAllow`, or (IfHealthyBudget, the default)
//!   when `currentHealthy >= desiredHealthy > 0`.
//! - Otherwise, with no disruption allowed, 429 TooManyRequests `Cannot evict pod
//!   as it would violate the pod's disruption budget.` with the cause
//!   `DisruptionBudget` `The disruption budget NAME needs D healthy pods and has C
//!   currently`; else the PDB's `disruptionsAllowed` is decremented and the pod
//!   listed in `disruptedPods`, as upstream.
//! - The pod gets the `DisruptionTarget` condition (reason EvictionByEvictionAPI)
//!   and is deleted with the given options (grace period, preconditions, dryRun);
//!   the answer is 201 with a `Status` of `Success`.
//!
//! Difference: upstream reads the budget from the PDB's status and answers 429
//! while `status.observedGeneration` lags; the twin evaluates the budget live with
//! the disruption controller's own computation ([`crate::controllers::pdb::compute`]),
//! so a fresh or just-changed PDB is never "still being processed". Evictions are
//! serialized (upstream relies on the PDB's resourceVersion for that).

use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};
use serde_json::{json, Value};

use crate::api::{now_rfc3339, DeleteOptions};
use crate::client::Client;
use crate::controllers::pdb;
use crate::ctx::obj;
use crate::error::ApiError;
use crate::selector::LabelSelector;
use crate::server::{Body, Server};

/// One eviction at a time, so two cannot both spend the last allowed disruption.
static EVICTIONS: Mutex<()> = Mutex::new(());

fn respond(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default())).boxed())
        .expect("valid response")
}

fn status(code: u16, state: &str, message: Option<&str>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": state, "code": code});
    if let Some(m) = message {
        s["message"] = json!(m);
    }
    s
}

/// The DeleteOptions of an Eviction body, plus `?dryRun=All`.
fn delete_options(body: &Value, query_dry_run: bool) -> DeleteOptions {
    let d = &body["deleteOptions"];
    DeleteOptions {
        grace_period_seconds: d["gracePeriodSeconds"].as_i64(),
        propagation: None,
        precondition_uid: d
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_rv: d
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: query_dry_run
            || d["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All")),
    }
}

pub async fn handle(
    s: &Server,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} pods/eviction)",
            req.method()
        )));
    }
    let query_dry_run = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "dryRun" && v == "All")
        })
        .unwrap_or(false);
    let (content_type, bytes) = crate::server::read_body(req).await?;
    // A client-go typed client may send the Eviction as protobuf (kubectl drain's
    // sends JSON).
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        crate::server::parse_body(&bytes, &content_type)?
    };
    if let Some(kind) = body["kind"].as_str().filter(|k| !k.is_empty()) {
        if kind != "Eviction" {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the subresource eviction (kind Eviction)"
            )));
        }
    }
    if let Some(n) = obj::str_at(&body, "/metadata/name").filter(|n| !n.is_empty()) {
        if n != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
    }
    if let Some(n) = obj::str_at(&body, "/metadata/namespace").filter(|n| !n.is_empty()) {
        if n != ns {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({n}) does not match the namespace sent on the request ({ns})"
            )));
        }
    }
    let opts = delete_options(&body, query_dry_run);
    let client = Client::new(s.api.clone());
    let _serial = EVICTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let pod = client
        .get("", "pods", Some(ns), name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let phase = obj::str_at(&pod, "/status/phase").unwrap_or("");
    let ignore_pdb =
        obj::is_terminating(&pod) || matches!(phase, "Pending" | "Succeeded" | "Failed");
    if !ignore_pdb {
        let pdbs: Vec<Value> = client
            .list("policy", "poddisruptionbudgets", Some(ns), None)
            .into_iter()
            .filter(|b| {
                b.pointer("/spec/selector")
                    .and_then(|s| LabelSelector::from_label_selector_json(s).ok())
                    .is_some_and(|sel| !sel.is_empty() && sel.matches_object(&pod))
            })
            .collect();
        if pdbs.len() > 1 {
            return Ok(respond(
                500,
                &status(
                    500,
                    "Failure",
                    Some("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."),
                ),
            ));
        }
        if let Some(budget_obj) = pdbs.first() {
            let pods = client.list("", "pods", Some(ns), None);
            let now = chrono::Utc::now();
            let b = pdb::compute(&client, budget_obj, &pods, now);
            let unhealthy_ok = !obj::is_pod_ready(&pod)
                && (obj::str_at(budget_obj, "/spec/unhealthyPodEvictionPolicy")
                    == Some("AlwaysAllow")
                    || (b.current_healthy >= b.desired_healthy && b.desired_healthy > 0));
            if !unhealthy_ok {
                if b.disruptions_allowed <= 0 {
                    return Err(ApiError {
                        details: Some(json!({"causes": [{
                            "reason": "DisruptionBudget",
                            "message": format!(
                                "The disruption budget {} needs {} healthy pods and has {} currently",
                                obj::name(budget_obj), b.desired_healthy, b.current_healthy
                            ),
                        }]})),
                        ..ApiError::new(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        )
                    });
                }
                if !opts.dry_run {
                    let mut spent = b.clone();
                    spent.disruptions_allowed -= 1;
                    spent
                        .disrupted_pods
                        .insert(name.to_string(), json!(now_rfc3339()));
                    let want = pdb::status(budget_obj, &spent, &now_rfc3339());
                    client.patch_status(
                        "policy",
                        "poddisruptionbudgets",
                        Some(ns),
                        obj::name(budget_obj),
                        pdb::merge_patch_for(budget_obj, want),
                    )?;
                }
            }
        }
    }
    if !opts.dry_run {
        let mut conds = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !conds.iter().any(|c| c["type"] == "DisruptionTarget") {
            obj::set_condition(
                &mut conds,
                "DisruptionTarget",
                "True",
                "EvictionByEvictionAPI",
                "Eviction API: evicting",
                &now_rfc3339(),
            );
            let _ = client.patch_status("", "pods", Some(ns), name, json!({"conditions": conds}));
        }
    }
    let info = client.info("", "pods")?;
    s.api.delete(&info, Some(ns), name, &opts)?;
    Ok(respond(201, &status(201, "Success", None)))
}
