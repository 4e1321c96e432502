//! The HTTPS front of the twin: authentication, URL routing and content
//! negotiation, translating Kubernetes REST calls into [`crate::api::Api`] calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::api::{
    Api, DeleteOptions, ListOptions, PatchOptions, Propagation, Subresource, WatchOptions,
};
use crate::discovery;
use crate::error::ApiError;
use crate::patch::PatchType;
use crate::resources::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};

pub type Body = BoxBody<Bytes, Infallible>;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub struct Server {
    pub api: Arc<Api>,
    pub token: String,
    pub address: String,
    /// The simulated cluster behind the API (nodes, containers, endpoints).
    pub ctx: crate::ctx::Ctx,
    /// Tokens other than the admin's, authorized by RBAC ([`crate::rbac`]).
    pub users: Vec<crate::rbac::StaticToken>,
    /// Attributes of every resource request, for tests.
    pub audit: Arc<crate::rbac::Audit>,
    /// The real kube-apiserver's URL when the twin runs on one: then this server
    /// serves only the provider endpoint, not a second (mirrored) Kubernetes API.
    pub real_api: Option<String>,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// A parsed resource URL.
#[derive(Debug, Default, PartialEq)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

/// Parses `/api/v1/...` and `/apis/G/V/...` resource paths; `None` for anything else.
fn parse_target(path: &str, namespaced: impl Fn(&str, &str, &str) -> bool) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let mut t = Target {
        group,
        version,
        legacy_watch,
        ..Default::default()
    };
    match rest {
        [] => return None,
        [plural] => t.plural = plural.to_string(),
        ["namespaces", ns, plural, tail @ ..] if namespaced(&t.group, &t.version, plural) => {
            t.namespace = Some(ns.to_string());
            t.plural = plural.to_string();
            match tail {
                [] => {}
                [name] => t.name = Some(name.to_string()),
                [name, sub @ ..] => {
                    t.name = Some(name.to_string());
                    t.sub = Some(sub.join("/"));
                }
            }
        }
        [plural, name] => {
            t.plural = plural.to_string();
            t.name = Some(name.to_string());
        }
        [plural, name, sub @ ..] => {
            t.plural = plural.to_string();
            t.name = Some(name.to_string());
            t.sub = Some(sub.join("/"));
        }
    }
    Some(t)
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A request body as JSON: JSON, YAML, or Kubernetes protobuf (client-go's typed
/// clients), decoded into the JSON a JSON client would have sent.
pub(crate) fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if content_type.contains("yaml") {
        serde_yaml::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else if crate::protobuf::is_protobuf(content_type) {
        crate::protobuf::decode(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf: {e}")))
    } else if content_type.contains("protobuf") || content_type.contains("cbor") {
        Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type})"
        )))
    } else {
        serde_json::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }
}

fn selectors(
    q: &HashMap<String, String>,
) -> Result<(Option<LabelSelector>, Option<FieldSelector>), ApiError> {
    let label = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let field = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?,
        ),
        None => None,
    };
    Ok((label, field))
}

/// An extra table column: its title and how to compute a cell.
type Column = (&'static str, fn(&Value) -> String);

fn age(ts: Option<&str>) -> String {
    let Some(ts) = ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Server-side printing for `kubectl get`: a meta.k8s.io Table with the columns
/// kubectl users expect for the common kinds, Name and Age for the rest.
fn to_table(info: &ResourceInfo, list: &Value, include_object: &str) -> Value {
    let extra: Vec<Column> = match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => vec![("Status", |o| {
            o.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })],
        ("", "nodes") => vec![("Status", |o| {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"] == "True")
                .unwrap_or(false);
            let mut s = if ready {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            };
            if o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                s.push_str(",SchedulingDisabled");
            }
            s
        })],
        ("", "pods") => vec![
            ("Ready", |o| {
                let cs = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let total = o
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map(|a| a.len())
                    .unwrap_or(0);
                format!(
                    "{}/{}",
                    cs.iter().filter(|c| c["ready"] == true).count(),
                    total
                )
            }),
            ("Status", |o| {
                if o.pointer("/metadata/deletionTimestamp").is_some() {
                    return "Terminating".into();
                }
                o.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            }),
            ("Restarts", |o| {
                o.pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                            .sum::<i64>()
                    })
                    .unwrap_or(0)
                    .to_string()
            }),
        ],
        ("apps", "deployments") => vec![("Ready", |o| {
            format!(
                "{}/{}",
                o.pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            )
        })],
        ("apps", "statefulsets") => vec![("Ready", |o| {
            format!(
                "{}/{}",
                o.pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            )
        })],
        ("", "services") => vec![
            ("Type", |o| {
                o.pointer("/spec/type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            }),
            ("Cluster-IP", |o| {
                o.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            }),
        ],
        ("", "persistentvolumeclaims") => vec![("Status", |o| {
            o.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })],
        _ => vec![],
    };
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for (name, _) in &extra {
        columns.push(json!({"name": name, "type": "string", "format": "", "description": name, "priority": 0}));
    }
    columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}));
    let rows: Vec<Value> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|o| {
                    let mut cells = vec![o["metadata"]["name"].clone()];
                    for (_, f) in &extra {
                        cells.push(json!(f(o)));
                    }
                    cells.push(json!(age(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str))));
                    let object = match include_object {
                        "None" => Value::Null,
                        "Object" => o.clone(),
                        _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
                    };
                    json!({"cells": cells, "object": object})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list["metadata"],
        "columnDefinitions": columns,
        "rows": rows,
    })
}

impl Server {
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        // The admin is in system:masters: RBAC allows it everything.
        let requester = if token == self.token {
            crate::rbac::StaticToken::admin(token)
        } else {
            match self.users.iter().find(|u| u.token == token) {
                Some(u) => u.clone(),
                None => return Ok(error_response(&ApiError::unauthorized())),
            }
        };
        // `kubectl --as`: from here on the request acts as the impersonated user.
        let user = match crate::rbac::impersonate(&self.ctx.client, &requester, req.headers()) {
            Ok(u) => u,
            Err(e) => return Ok(error_response(&e)),
        };
        if let Some(attrs) = self.attributes(&req) {
            self.audit.record(&attrs);
            if !crate::rbac::basic_user_request(&attrs)
                && !crate::rbac::allowed(&self.ctx.client, &user, &attrs)
            {
                return Ok(error_response(&attrs.forbidden(&user.user)));
            }
        }
        let resp = match self.route(req, &user).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        Ok(resp)
    }

    /// RBAC attributes of a resource request; None for discovery and other
    /// non-resource paths, and the provider endpoints.
    fn attributes(&self, req: &Request<Incoming>) -> Option<crate::rbac::Attributes> {
        let path = req.uri().path();
        if path.starts_with("/twin/") {
            return None;
        }
        let reg = self.api.registry();
        let t = parse_target(path, |g, v, plural| {
            reg.get(g, v, plural).is_some_and(|i| i.namespaced)
        })?;
        let q = query_map(req.uri().query());
        let watch = t.legacy_watch || q.get("watch").is_some_and(|w| w == "true" || w == "1");
        Some(crate::rbac::Attributes::of(
            req.method(),
            &t.group,
            &t.plural,
            t.sub.as_deref(),
            t.namespace.as_deref(),
            t.name.as_deref(),
            watch,
        ))
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        user: &crate::rbac::StaticToken,
    ) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_string();
        if let Some(real) = &self.real_api {
            if !path.starts_with("/twin/v1/") {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("this twin runs on a real kube-apiserver: use {real} for the Kubernetes API (this address serves /twin/v1/ only)"),
                ));
            }
        }
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let wants_aggregated =
            accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2");
        let reg = self.api.registry();
        match (req.method(), path.trim_end_matches('/')) {
            (&Method::GET, "/version") => {
                return Ok(json_response(200, &discovery::version_info()))
            }
            (&Method::GET, "/healthz" | "/livez" | "/readyz") => {
                return Ok(Response::builder()
                    .status(200)
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(full("ok"))
                    .expect("valid"))
            }
            (&Method::GET, "/api") => {
                if wants_aggregated {
                    return Ok(aggregated(&discovery::aggregated_discovery(&reg, true)));
                }
                return Ok(json_response(
                    200,
                    &discovery::core_api_versions(&self.address),
                ));
            }
            (&Method::GET, "/apis") => {
                if wants_aggregated {
                    return Ok(aggregated(&discovery::aggregated_discovery(&reg, false)));
                }
                return Ok(json_response(200, &discovery::api_group_list(&reg)));
            }
            (&Method::GET, "/api/v1") => {
                return discovery::resource_list(&reg, "", "v1")
                    .map(|v| json_response(200, &v))
                    .ok_or_else(not_found_path)
            }
            _ => {}
        }
        if req.method() == Method::GET {
            if path.trim_end_matches('/') == "/openapi/v3" {
                return Ok(json_response(200, &discovery::openapi_v3_root(&reg)));
            }
            if let Some(gv) = path.strip_prefix("/openapi/v3/") {
                return discovery::openapi_v3_group_version(&reg, gv)
                    .map(|v| json_response(200, &v))
                    .ok_or_else(not_found_path);
            }
        }
        if path.starts_with("/twin/v1/") {
            return crate::provider::handle(self, req).await;
        }
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if req.method() == Method::GET {
            match segs.as_slice() {
                ["apis", g] => {
                    return discovery::api_group(&reg, g)
                        .map(|v| json_response(200, &v))
                        .ok_or_else(not_found_path)
                }
                ["apis", g, v] => {
                    return discovery::resource_list(&reg, g, v)
                        .map(|v| json_response(200, &v))
                        .ok_or_else(not_found_path)
                }
                _ => {}
            }
        }
        let target = parse_target(&path, |g, v, plural| {
            reg.get(g, v, plural).is_some_and(|i| i.namespaced)
        })
        .ok_or_else(not_found_path)?;
        let info = self
            .api
            .resolve(&target.group, &target.version, &target.plural)?;
        let q = query_map(req.uri().query());
        // Streaming subresources take the whole request (upgrades, proxied bodies).
        if let (Some(name), Some(sub)) = (target.name.as_deref(), target.sub.as_deref()) {
            let ns = target.namespace.as_deref().unwrap_or("");
            match (info.group.as_str(), info.plural.as_str(), sub) {
                ("", "pods", "exec" | "attach") => {
                    return crate::exec::handle_exec(self, req, ns, name, &q).await
                }
                ("", "pods", "log") => return crate::exec::handle_logs(self, ns, name, &q).await,
                ("", "pods", "portforward") => {
                    return crate::forward::handle(self, req, ns, name).await
                }
                ("", "services", s) if s == "proxy" || s.starts_with("proxy/") => {
                    let rest = s.strip_prefix("proxy").unwrap_or("");
                    return crate::proxy::handle(self, req, ns, name, rest).await;
                }
                ("", "pods", s) if s == "proxy" || s.starts_with("proxy/") => {
                    let rest = s.strip_prefix("proxy").unwrap_or("");
                    return crate::proxy::handle_pod(self, req, ns, name, rest).await;
                }
                ("", "pods", "eviction") => {
                    return crate::eviction::handle(self, req, ns, name).await
                }
                _ => {}
            }
        }
        if crate::reviews::is_review(&info) {
            return self.review(req, user, &info, &target).await;
        }
        let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
        let method = req.method().clone();
        let (content_type, bytes) = read_body(req).await?;
        let ns = target.namespace.as_deref();
        let version = target.version.as_str();
        let present = |v: Value| Api::present(&info, version, &v);
        let is_watch =
            target.legacy_watch || q.get("watch").is_some_and(|w| w == "true" || w == "1");

        match (&method, target.name.as_deref(), target.sub.as_deref()) {
            (&Method::GET, None, None) if is_watch => {
                let (label, field) = selectors(&q)?;
                let opts = WatchOptions {
                    label_selector: label,
                    field_selector: field,
                    resource_version: q.get("resourceVersion").cloned(),
                    allow_bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
                    send_initial_events: q.get("sendInitialEvents").is_some_and(|b| b == "true"),
                    timeout: q
                        .get("timeoutSeconds")
                        .and_then(|t| t.parse::<u64>().ok())
                        .map(Duration::from_secs),
                };
                let rx = self.api.watch(&info, version, ns, opts);
                Ok(watch_response(rx))
            }
            (&Method::GET, Some(name), None) if is_watch => {
                // Legacy single-object watch: /watch/.../NAME.
                let mut q2 = q.clone();
                q2.insert("fieldSelector".into(), format!("metadata.name={name}"));
                let (label, field) = selectors(&q2)?;
                let opts = WatchOptions {
                    label_selector: label,
                    field_selector: field,
                    resource_version: q.get("resourceVersion").cloned(),
                    allow_bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
                    send_initial_events: false,
                    timeout: q
                        .get("timeoutSeconds")
                        .and_then(|t| t.parse::<u64>().ok())
                        .map(Duration::from_secs),
                };
                Ok(watch_response(self.api.watch(&info, version, ns, opts)))
            }
            (&Method::GET, None, None) => {
                let (label, field) = selectors(&q)?;
                let opts = ListOptions {
                    label_selector: label,
                    field_selector: field,
                    limit: q.get("limit").and_then(|l| l.parse().ok()),
                    continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
                };
                let mut list = self.api.list(&info, ns, &opts)?;
                list["apiVersion"] = json!(if info.group.is_empty() {
                    version.to_string()
                } else {
                    format!("{}/{version}", info.group)
                });
                if let Some(items) = list["items"].as_array_mut() {
                    for it in items.iter_mut() {
                        *it = present(it.clone());
                    }
                }
                if accept.contains("as=Table") {
                    let include = q
                        .get("includeObject")
                        .map(String::as_str)
                        .unwrap_or("Metadata");
                    return Ok(table_response(&to_table(&info, &list, include)));
                }
                Ok(json_response(200, &list))
            }
            (&Method::POST, None, None) => {
                let body = parse_body(&bytes, &content_type)?;
                let created = self.api.create(&info, ns, body, dry_run)?;
                Ok(json_response(201, &present(created)))
            }
            (&Method::DELETE, None, None) => {
                let (label, field) = selectors(&q)?;
                let opts = ListOptions {
                    label_selector: label,
                    field_selector: field,
                    ..Default::default()
                };
                let del = delete_options(&q, &bytes, &content_type)?;
                let out = self.api.delete_collection(&info, ns, &opts, &del)?;
                Ok(json_response(200, &out))
            }
            (&Method::GET, Some(name), None) => {
                let obj = self.api.get(&info, ns, name)?;
                if accept.contains("as=Table") {
                    let list = json!({"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "items": [present(obj)]});
                    let include = q
                        .get("includeObject")
                        .map(String::as_str)
                        .unwrap_or("Metadata");
                    return Ok(table_response(&to_table(&info, &list, include)));
                }
                Ok(json_response(200, &present(obj)))
            }
            (&Method::GET, Some(name), Some("status")) if info.status_subresource => {
                Ok(json_response(200, &present(self.api.get(&info, ns, name)?)))
            }
            (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
                let sub = if sub.is_some() && info.status_subresource {
                    Subresource::Status
                } else if sub.is_some() {
                    return Err(not_found_path());
                } else {
                    Subresource::Main
                };
                let body = parse_body(&bytes, &content_type)?;
                Ok(json_response(
                    200,
                    &present(self.api.update(&info, ns, name, body, sub, dry_run)?),
                ))
            }
            (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
                let sub = if sub.is_some() && info.status_subresource {
                    Subresource::Status
                } else if sub.is_some() {
                    return Err(not_found_path());
                } else {
                    Subresource::Main
                };
                let ptype = PatchType::from_content_type(&content_type).ok_or_else(|| ApiError::unsupported_media(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})")))?;
                let body = parse_body(&bytes, &content_type)?;
                let opts = PatchOptions {
                    dry_run,
                    field_manager: q.get("fieldManager").cloned(),
                    force: q.get("force").is_some_and(|f| f == "true"),
                };
                // An apply that creates answers 201 Created, as upstream.
                let creates = ptype == PatchType::Apply
                    && sub == Subresource::Main
                    && self.api.get(&info, ns, name).is_err();
                let out = self.api.patch(&info, ns, name, ptype, &body, sub, &opts)?;
                Ok(json_response(
                    if creates { 201 } else { 200 },
                    &present(out),
                ))
            }
            (&Method::DELETE, Some(name), None) => {
                let del = delete_options(&q, &bytes, &content_type)?;
                let out = self.api.delete(&info, ns, name, &del)?;
                // Still there (finalizers, a graceful pod): the object, as upstream.
                let pending = out.pointer("/metadata/deletionTimestamp").is_some();
                if pending || info.returns_deleted_object() {
                    Ok(json_response(200, &present(out)))
                } else {
                    Ok(json_response(200, &deleted_status(&info, &out)))
                }
            }
            (&Method::GET, Some(name), Some("scale")) => {
                Ok(json_response(200, &self.api.get_scale(&info, ns, name)?))
            }
            (&Method::PUT, Some(name), Some("scale")) => {
                let body = parse_body(&bytes, &content_type)?;
                Ok(json_response(
                    200,
                    &self.api.set_scale(&info, ns, name, &body, dry_run)?,
                ))
            }
            (&Method::PATCH, Some(name), Some("scale")) => {
                let mut scale = self.api.get_scale(&info, ns, name)?;
                let body = parse_body(&bytes, &content_type)?;
                match PatchType::from_content_type(&content_type) {
                    Some(PatchType::Json) => crate::patch::json_patch(&mut scale, &body)
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
                    Some(_) => crate::patch::merge_patch(&mut scale, &body),
                    None => {
                        return Err(ApiError::unsupported_media(format!(
                            "unsupported patch type {content_type}"
                        )))
                    }
                }
                if let Some(m) = scale["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                Ok(json_response(
                    200,
                    &self.api.set_scale(&info, ns, name, &scale, dry_run)?,
                ))
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ))),
        }
    }
}

impl Server {
    /// The create-only review kinds (`kubectl auth can-i`, `auth whoami`), answered by
    /// the authorizer rather than stored.
    async fn review(
        &self,
        req: Request<Incoming>,
        user: &crate::rbac::StaticToken,
        info: &ResourceInfo,
        target: &Target,
    ) -> Result<Response<Body>, ApiError> {
        if req.method() != Method::POST || target.name.is_some() || target.sub.is_some() {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} {})",
                req.method(),
                req.uri().path()
            )));
        }
        let (content_type, bytes) = read_body(req).await?;
        let body = parse_body(&bytes, &content_type)?;
        let out = crate::reviews::create(
            &self.ctx.client,
            user,
            info,
            target.namespace.as_deref(),
            body,
        )?;
        Ok(json_response(
            201,
            &Api::present(info, &target.version, &out),
        ))
    }
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn aggregated(v: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, AGGREGATED)
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("valid response")
}

fn table_response(v: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(
            header::CONTENT_TYPE,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("valid response")
}

fn delete_options(
    q: &HashMap<String, String>,
    body: &[u8],
    content_type: &str,
) -> Result<DeleteOptions, ApiError> {
    // Typed clients send DeleteOptions as protobuf; a delete has no Content-Type
    // of its own to go by otherwise, so JSON is the default.
    let b: Value = if crate::protobuf::is_protobuf(content_type) {
        parse_body(body, content_type)?
    } else if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let propagation = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| {
            b.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .or_else(
            || match b.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some("Orphan".into()),
                _ => None,
            },
        );
    let propagation = match propagation.as_deref() {
        None => None,
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other} is not one of Orphan, Background, Foreground"
            )))
        }
    };
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All")
        || b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period_seconds: q
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse().ok())
            .or_else(|| b.get("gracePeriodSeconds").and_then(Value::as_i64)),
        propagation,
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run,
    })
}

/// A chunked stream of newline-delimited watch events.
fn watch_response(rx: tokio::sync::mpsc::Receiver<Value>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

/// A request's Content-Type (JSON when absent, as upstream) and its whole body.
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<(String, Bytes), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    Ok((content_type, bytes))
}

/// The `Success` Status kube-apiserver answers for an object a DELETE removed at once
/// (its `details.kind` is the resource's plural, as upstream's store sets it).
fn deleted_status(info: &ResourceInfo, obj: &Value) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "group": info.group,
            "kind": info.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
    });
    // Go's omitempty: the core group is no field at all.
    if info.group.is_empty() {
        if let Some(d) = status["details"].as_object_mut() {
            d.remove("group");
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_check(_: &str, _: &str, plural: &str) -> bool {
        matches!(plural, "pods" | "deployments" | "configmaps")
    }

    #[test]
    fn parses_resource_paths() {
        let t = parse_target(
            "/api/v1/namespaces/kube-system/pods/coredns/status",
            ns_check,
        )
        .unwrap();
        assert_eq!(t.namespace.as_deref(), Some("kube-system"));
        assert_eq!(t.plural, "pods");
        assert_eq!(t.name.as_deref(), Some("coredns"));
        assert_eq!(t.sub.as_deref(), Some("status"));

        let t = parse_target("/api/v1/namespaces/default", ns_check).unwrap();
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref(), t.namespace),
            ("namespaces", Some("default"), None)
        );

        let t = parse_target("/api/v1/namespaces/default/status", ns_check).unwrap();
        assert_eq!(
            (t.name.as_deref(), t.sub.as_deref()),
            (Some("default"), Some("status"))
        );

        let t = parse_target("/apis/apps/v1/namespaces/x/deployments/api/scale", ns_check).unwrap();
        assert_eq!(
            (t.group.as_str(), t.sub.as_deref()),
            ("apps", Some("scale"))
        );

        let t = parse_target("/api/v1/watch/namespaces/x/pods", ns_check).unwrap();
        assert!(t.legacy_watch);
        assert_eq!(t.namespace.as_deref(), Some("x"));
        assert!(parse_target("/metrics", ns_check).is_none());
    }
}
