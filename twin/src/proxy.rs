//! The service proxy, `/api/v1/namespaces/NS/services/[scheme:]NAME[:PORT]/proxy/PATH`,
//! following the API server's service REST ResourceLocation: pick the Service port
//! (by name or number; the first when none is given), then a random Ready address of
//! the Service's Endpoints for that port (Endpoints when the object exists, else
//! EndpointSlices labelled with the service name, else the Ready pods the selector
//! picks), and forward the request to what the pod's container serves on that port
//! ([`crate::sim::Sim::register_http`]). Errors are upstream's: 503
//! `no endpoints available for service "NAME"`, 503 `error trying to reach service:
//! ...` when nothing listens there or the pod's node is powered off.
//!
//! The pod proxy, `/api/v1/namespaces/NS/pods/[scheme:]NAME[:PORT]/proxy/PATH`, as
//! upstream's pod ResourceLocation: that pod's IP on PORT (a number; none: its first
//! declared container port), Ready or not (how Prometheus scrapes pods through the
//! API server), with the same dial errors.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, Response};
use serde_json::Value;

use crate::ctx::{obj, Ctx};
use crate::error::ApiError;
use crate::server::{Body, Server};
use crate::sim::{HttpHandler, HttpRequest};

/// The largest request body forwarded.
const BODY_CAP: usize = 16 << 20;

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", msg)
}

/// `[scheme:]name[:port]` as upstream's `net.SplitSchemeNamePort`.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [a, b] if *a == "http" || *a == "https" => (*a, *b, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] if *scheme == "http" || *scheme == "https" || scheme.is_empty() => {
            (*scheme, *name, *port)
        }
        _ => return None,
    };
    (!name.is_empty()).then_some((scheme, name, port))
}

/// A Ready address backing a Service port.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub ip: String,
    pub port: u16,
    /// The pod behind the address, when known.
    pub pod: Option<String>,
}

/// The Ready backends of `port_spec` (a port name or number; "" = the first port)
/// of Service `ns/name`, and the Service port's name.
pub fn backends(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    port_spec: &str,
) -> Result<Vec<Backend>, ApiError> {
    let svc = ctx
        .client
        .get("", "services", Some(ns), name)
        .ok_or_else(|| ApiError::not_found("", "services", name))?;
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let svc_port = ports
        .iter()
        .find(|p| {
            port_spec.is_empty()
                || p["name"].as_str() == Some(port_spec)
                || p["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(port_spec)
        })
        .cloned()
        .ok_or_else(|| {
            unavailable(format!(
                "no service port \"{port_spec}\" found for service \"{name}\""
            ))
        })?;
    let port_name = svc_port["name"].as_str().unwrap_or("");
    let port_of = |p: &Value| p["port"].as_u64().and_then(|n| u16::try_from(n).ok());

    if let Some(eps) = ctx.client.get("", "endpoints", Some(ns), name) {
        let mut out = Vec::new();
        for ss in eps["subsets"].as_array().into_iter().flatten() {
            let Some(port) = ss["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str().unwrap_or("") == port_name)
                .and_then(port_of)
            else {
                continue;
            };
            for a in ss["addresses"].as_array().into_iter().flatten() {
                out.push(Backend {
                    ip: a["ip"].as_str().unwrap_or("").to_string(),
                    port,
                    pod: (a.pointer("/targetRef/kind") == Some(&Value::from("Pod")))
                        .then(|| a.pointer("/targetRef/name").and_then(Value::as_str))
                        .flatten()
                        .map(String::from),
                });
            }
        }
        return Ok(out);
    }

    let slices: Vec<Value> = ctx
        .client
        .list("discovery.k8s.io", "endpointslices", Some(ns), None)
        .into_iter()
        .filter(|s| {
            s.pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(name)
        })
        .collect();
    if !slices.is_empty() {
        let mut out = Vec::new();
        for s in &slices {
            let Some(port) = s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str().unwrap_or("") == port_name)
                .and_then(port_of)
            else {
                continue;
            };
            for e in s["endpoints"].as_array().into_iter().flatten() {
                if e.pointer("/conditions/ready") == Some(&Value::Bool(false)) {
                    continue;
                }
                for ip in e["addresses"].as_array().into_iter().flatten() {
                    out.push(Backend {
                        ip: ip.as_str().unwrap_or("").to_string(),
                        port,
                        pod: (e.pointer("/targetRef/kind") == Some(&Value::from("Pod")))
                            .then(|| e.pointer("/targetRef/name").and_then(Value::as_str))
                            .flatten()
                            .map(String::from),
                    });
                }
            }
        }
        return Ok(out);
    }

    // No endpoints object (yet): the Ready pods the selector picks, as the
    // endpoints controller would list them.
    let target = svc_port.get("targetPort").cloned().unwrap_or(Value::Null);
    Ok(crate::sim::service_pods(ctx, &svc)
        .into_iter()
        .filter(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
        .filter_map(|p| {
            let port = match &target {
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                Value::String(s) => s.parse::<u16>().ok().or_else(|| {
                    p.pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                        .find(|cp| cp["name"] == s.as_str())
                        .and_then(|cp| cp["containerPort"].as_u64())
                        .and_then(|n| u16::try_from(n).ok())
                }),
                _ => port_of(&svc_port),
            }?;
            Some(Backend {
                ip: obj::str_at(&p, "/status/podIP").unwrap_or("").to_string(),
                port,
                pod: Some(obj::name(&p).to_string()),
            })
        })
        .collect())
}

/// Picks a backend of the Service port at random (as upstream) and finds what its
/// pod serves there: the pod's name and the handler.
pub fn route(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    port_spec: &str,
) -> Result<(String, HttpHandler), ApiError> {
    let all = backends(ctx, ns, name, port_spec)?;
    if all.is_empty() {
        return Err(unavailable(format!(
            "no endpoints available for service \"{name}\""
        )));
    }
    let b = all[ctx.with_rng(|r| rand::Rng::random_range(r, 0..all.len()))].clone();
    let pods = ctx.client.list("", "pods", Some(ns), None);
    let pod = pods.iter().find(|p| match &b.pod {
        Some(n) => obj::name(p) == n,
        None => !b.ip.is_empty() && obj::str_at(p, "/status/podIP") == Some(b.ip.as_str()),
    });
    let Some(pod) = pod else {
        return Err(unavailable(format!(
            "error trying to reach service: dial tcp {}:{}: connect: no route to host",
            b.ip, b.port
        )));
    };
    Ok((obj::name(pod).to_string(), dial(ctx, pod, b.port)?))
}

/// What a connection to `port` of `pod` reaches: no route when its node is off,
/// refused when it does not run or no container serves that port.
fn dial(ctx: &Ctx, pod: &Value, port: u16) -> Result<HttpHandler, ApiError> {
    crate::simnet::handler_for(ctx, pod, port)
        .map_err(|e| unavailable(format!("error trying to reach service: {e}")))
}

/// The pod proxy's target, as upstream's pod ResourceLocation: the pod's IP on the
/// given port (a number; none: its first declared container port), Ready or not.
pub fn route_pod(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    port_spec: &str,
) -> Result<(String, HttpHandler), ApiError> {
    let pod = ctx
        .client
        .get("", "pods", Some(ns), name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let ip = obj::str_at(&pod, "/status/podIP").unwrap_or("");
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::bad_request("address not allowed"));
    }
    let port = if port_spec.is_empty() {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_u64))
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(80)
    } else {
        port_spec.parse().map_err(|_| {
            unavailable(format!(
                "error trying to reach service: dial tcp: address {ip}:{port_spec}: unknown port"
            ))
        })?
    };
    Ok((name.to_string(), dial(ctx, &pod, port)?))
}

/// `services/[scheme:]NAME[:PORT]/proxy/PATH`.
pub async fn handle(
    s: &Server,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    rest: &str,
) -> Result<Response<Body>, ApiError> {
    let (_scheme, svc, port) = split_scheme_name_port(name)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request {name:?}")))?;
    let (pod, handler) = route(&s.ctx, ns, svc, port)?;
    forward(req, ns, pod, handler, rest).await
}

/// `pods/[scheme:]NAME[:PORT]/proxy/PATH`.
pub async fn handle_pod(
    s: &Server,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    rest: &str,
) -> Result<Response<Body>, ApiError> {
    let (_scheme, pod, port) = split_scheme_name_port(name)
        .ok_or_else(|| ApiError::bad_request(format!("invalid pod request {name:?}")))?;
    let (pod, handler) = route_pod(&s.ctx, ns, pod, port)?;
    forward(req, ns, pod, handler, rest).await
}

/// Sends the request to the pod's handler and its answer back.
async fn forward(
    req: Request<Incoming>,
    ns: &str,
    pod: String,
    handler: HttpHandler,
    rest: &str,
) -> Result<Response<Body>, ApiError> {
    let mut path = if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    };
    if let Some(q) = req.uri().query() {
        path.push('?');
        path.push_str(q);
    }
    let method = req.method().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| *k != header::AUTHORIZATION)
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = Limited::new(req.into_body(), BODY_CAP)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes()
        .to_vec();
    let hreq = HttpRequest {
        method,
        path,
        headers,
        body,
        namespace: ns.to_string(),
        pod,
    };
    let resp = tokio::task::spawn_blocking(move || handler(&hreq))
        .await
        .map_err(|e| {
            ApiError::new(
                502,
                "InternalError",
                format!("the pod's handler failed: {e}"),
            )
        })?;
    let mut b = Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(Bytes::from(resp.body)).boxed())
        .map_err(|e| {
            ApiError::new(
                502,
                "InternalError",
                format!("the pod sent an invalid response: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_name_port() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(
            split_scheme_name_port("https:web:metrics"),
            Some(("https", "web", "metrics"))
        );
        assert_eq!(
            split_scheme_name_port("http:web"),
            Some(("http", "web", ""))
        );
        assert_eq!(split_scheme_name_port(":web:"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }
}
