//! The provider endpoint: what a hardware/cloud provider's API and a test's hands
//! do to the simulated cluster, outside the Kubernetes API (same bearer token).
//!
//! - `GET  /twin/v1/nodes` — every node's power state.
//! - `GET  /twin/v1/nodes/NAME/power` — `{"node", "state": "on"|"off"}`.
//! - `POST /twin/v1/nodes/NAME/power` with `{"state": "on"|"off"}` (or `?state=`)
//!   — `{"node", "state", "changed"}`; a change is recorded as ground truth
//!   (`node NAME PoweredOff|PoweredOn`).
//! - `POST /twin/v1/pods/NS/NAME/crash` — the pod's containers' processes die (the
//!   kubelet restarts them as its restart policy says).
//! - `GET  /twin/v1/events?since=SEQ` — ground-truth events after SEQ.
//! - `GET  /twin/v1/timing` — the timing profile and its delays (milliseconds).
//!
//! Errors are `Status` objects like the API's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};
use serde_json::{json, Value};

use crate::ctx::obj;
use crate::error::ApiError;
use crate::server::{Body, Server};

fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default())).boxed())
        .expect("valid response")
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn state(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

pub async fn handle(s: &Server, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let ctx = &s.ctx;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let body = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    let rest = path.strip_prefix("/twin/v1/").unwrap_or("");
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let wrong_method = || {
        ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        ))
    };
    match segs.as_slice() {
        ["nodes"] => {
            if method != Method::GET {
                return Err(wrong_method());
            }
            let nodes: Vec<Value> = ctx
                .client
                .list("", "nodes", None, None)
                .iter()
                .map(|n| json!({"node": obj::name(n), "state": state(ctx.power.is_on(obj::name(n)))}))
                .collect();
            Ok(json_response(200, &Value::Array(nodes)))
        }
        ["nodes", name, "power"] => {
            if ctx.client.get("", "nodes", None, name).is_none() {
                return Err(ApiError::not_found("", "nodes", name));
            }
            match method {
                Method::GET => Ok(json_response(
                    200,
                    &json!({"node": name, "state": state(ctx.power.is_on(name))}),
                )),
                Method::POST | Method::PUT => {
                    let from_body = if body.is_empty() {
                        None
                    } else {
                        let v: Value = serde_json::from_slice(&body).map_err(|e| {
                            ApiError::bad_request(format!("error decoding JSON: {e}"))
                        })?;
                        v["state"].as_str().map(String::from)
                    };
                    let wanted =
                        from_body
                            .or_else(|| q.get("state").cloned())
                            .ok_or_else(|| {
                                ApiError::bad_request("state is required: \"on\" or \"off\"")
                            })?;
                    let on = match wanted.to_ascii_lowercase().as_str() {
                        "on" => true,
                        "off" => false,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "state must be \"on\" or \"off\", not {other:?}"
                            )))
                        }
                    };
                    let changed = ctx.power.set(name, on);
                    if changed {
                        ctx.truth
                            .record("node", name, if on { "PoweredOn" } else { "PoweredOff" });
                    }
                    Ok(json_response(
                        200,
                        &json!({"node": name, "state": state(on), "changed": changed}),
                    ))
                }
                _ => Err(wrong_method()),
            }
        }
        ["pods", ns, name, "crash"] => {
            if method != Method::POST {
                return Err(wrong_method());
            }
            if ctx.client.get("", "pods", Some(ns), name).is_none() {
                return Err(ApiError::not_found("", "pods", name));
            }
            ctx.crashes.request(ns, name);
            Ok(json_response(
                202,
                &json!({"pod": format!("{ns}/{name}"), "crash": "requested"}),
            ))
        }
        ["events"] => {
            if method != Method::GET {
                return Err(wrong_method());
            }
            let since = match q.get("since").filter(|s| !s.is_empty()) {
                Some(s) => s
                    .parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid since: {s:?}")))?,
                None => 0,
            };
            Ok(json_response(200, &json!(ctx.truth.since(since))))
        }
        ["timing"] => {
            if method != Method::GET {
                return Err(wrong_method());
            }
            let t = &ctx.timing;
            Ok(json_response(
                200,
                &json!({
                    "name": t.name,
                    "delaysMs": {
                        "resync": ms(t.resync),
                        "containerStart": [ms(t.container_start.0), ms(t.container_start.1)],
                        "readiness": [ms(t.readiness.0), ms(t.readiness.1)],
                        "restartBackoff": ms(t.restart_backoff),
                        "termination": ms(t.termination),
                        "nodeHeartbeat": ms(t.node_heartbeat),
                        "nodeMonitorGrace": ms(t.node_monitor_grace),
                        "defaultToleration": ms(t.default_toleration),
                        "provision": ms(t.provision),
                        "nodeBoot": ms(t.node_boot),
                    }
                }),
            ))
        }
        _ => Err(not_found()),
    }
}
