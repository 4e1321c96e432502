//! The simulated nodes and pods on the network a real kube-apiserver reaches through
//! its egress proxy ([`super::egress`]): each node's kubelet API (exec, attach, logs,
//! port-forward — [`crate::kubelet_api`]) at `InternalIP:10250`, and each pod's ports
//! (the service and pod proxies) at `podIP:PORT`, answered by the simulated
//! containers of [`crate::sim`].
//!
//! Contract: a powered-off node's kubelet and pods do not answer ("no route to
//! host"), as in [`crate::proxy`]; a port nothing simulated serves is refused. The
//! kubelet API server listens on one loopback port for every node: the egress proxy
//! decides which node a connection was meant for.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::egress::{Router, Stream};
use crate::controllers::{obj, Ctx};
use crate::kubelet_api::{
    AsyncReadWrite, ExecCall, ExecResult, Kubelet, KubeletApiError, LogQuery,
};
use crate::sim::{HttpHandler, HttpRequest};

/// The port every simulated kubelet serves on (the kubelet's default).
pub const KUBELET_PORT: u16 = 10250;

/// The largest request body a pod's port takes (as the service proxy).
const BODY_CAP: usize = 16 << 20;

/// The twin's kubelets, behind one [`crate::kubelet_api::serve`].
pub struct TwinKubelet {
    pub ctx: Ctx,
}

fn pod(ctx: &Ctx, ns: &str, name: &str) -> Result<Value, KubeletApiError> {
    ctx.client
        .get("", "pods", Some(ns), name)
        .ok_or_else(|| KubeletApiError::NotFound(format!("pod {ns}/{name} not found")))
}

impl Kubelet for TwinKubelet {
    fn exec(&self, call: ExecCall) -> BoxFuture<'static, Result<ExecResult, KubeletApiError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let p = pod(&ctx, &call.namespace, &call.pod)?;
            let mut req = crate::exec::exec_request(&ctx, &p, &call.container, call.command);
            req.stdin = call.stdin;
            // The simulated shell blocks (handlers, `sleep`).
            let out = tokio::task::spawn_blocking(move || ctx.sim.exec(&ctx, &req))
                .await
                .map_err(|e| KubeletApiError::Internal(format!("exec failed: {e}")))?;
            Ok(ExecResult {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.exit_code,
            })
        })
    }

    fn logs(
        &self,
        q: LogQuery,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, KubeletApiError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            pod(&ctx, &q.namespace, &q.pod)?;
            let fmt = move |l: &crate::sim::LogLine| {
                if q.timestamps {
                    format!("{} {}\n", l.timestamp(), l.line)
                } else {
                    format!("{}\n", l.line)
                }
            };
            let mut lines = ctx
                .sim
                .log_lines(&q.namespace, &q.pod, &q.container, q.previous);
            if let Some(s) = q.since_seconds.filter(|s| *s > 0) {
                let since = chrono::Utc::now() - chrono::Duration::seconds(s);
                lines.retain(|l| l.time >= since);
            }
            if let Some(n) = q.tail_lines.filter(|n| *n >= 0) {
                let drop = lines.len().saturating_sub(n as usize);
                lines.drain(..drop);
            }
            let first: String = lines.iter().map(&fmt).collect();
            let head = futures::stream::iter([Bytes::from(first)]);
            if !q.follow || q.previous {
                return Ok(head.boxed());
            }
            // Following: new lines until the container restarts or the pod goes.
            let (_, restarts) = ctx
                .sim
                .log_lines_after(&q.namespace, &q.pod, &q.container, 0);
            let last_seq = lines.last().map_or(0, |l| l.seq);
            let changes = ctx.sim.log_changes();
            let state = (
                ctx,
                q.namespace,
                q.pod,
                q.container,
                last_seq,
                restarts,
                changes,
            );
            let tail = futures::stream::unfold(state, move |mut st| {
                let fmt = fmt;
                async move {
                    loop {
                        let (ctx, ns, name, c, after, restarts, changes) = &mut st;
                        let (new, now_restarts) = ctx.sim.log_lines_after(ns, name, c, *after);
                        if now_restarts != *restarts
                            || ctx.client.get("", "pods", Some(ns), name).is_none()
                        {
                            return None;
                        }
                        if let Some(l) = new.last() {
                            *after = l.seq;
                            let text: String = new.iter().map(&fmt).collect();
                            return Some((Bytes::from(text), st));
                        }
                        // Bounded wait so a gone pod is noticed without a log change.
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            changes.changed(),
                        )
                        .await;
                    }
                }
            });
            Ok(head.chain(tail).boxed())
        })
    }

    fn port_forward(
        &self,
        namespace: &str,
        pod_name: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, KubeletApiError>> {
        let ctx = self.ctx.clone();
        let (ns, name) = (namespace.to_string(), pod_name.to_string());
        Box::pin(async move {
            let p = pod(&ctx, &ns, &name)?;
            let handler = handler_for(&ctx, &p, port).map_err(KubeletApiError::Unavailable)?;
            Ok(Box::new(serve_http(handler, ns, name)) as Box<dyn AsyncReadWrite>)
        })
    }

    fn lookup(&self, ns: &str, name: &str, container: Option<&str>) -> Result<(), KubeletApiError> {
        let p = pod(&self.ctx, ns, name)?;
        if let Some(c) = container {
            let known = ["containers", "initContainers"].iter().any(|k| {
                p["spec"][k]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|x| x["name"] == c))
            });
            if !known {
                return Err(KubeletApiError::NotFound(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
        }
        Ok(())
    }

    fn reads_stdin(&self, call: &ExecCall) -> bool {
        crate::sim::reads_stdin(&call.command)
    }
}

/// What the pod's containers serve on `port`, if its node is up.
fn handler_for(ctx: &Ctx, pod: &Value, port: u16) -> Result<HttpHandler, String> {
    let ip = obj::str_at(pod, "/status/podIP").unwrap_or("");
    let node = obj::str_at(pod, "/spec/nodeName").unwrap_or("");
    if node.is_empty() || !ctx.power.is_on(node) {
        return Err(format!("dial tcp {ip}:{port}: connect: no route to host"));
    }
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|c| {
            ctx.sim
                .http_handler(c["image"].as_str().unwrap_or(""), port)
        })
        .ok_or_else(|| format!("dial tcp {ip}:{port}: connect: connection refused"))
}

/// One end of an in-memory connection whose other end an HTTP/1.1 server answers
/// with `handler` (the simulated container's port).
fn serve_http(handler: HttpHandler, ns: String, pod: String) -> tokio::io::DuplexStream {
    let (client, server) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let handler = handler.clone();
            let (ns, pod) = (ns.clone(), pod.clone());
            async move {
                let method = req.method().to_string();
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.to_string());
                let headers = req
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect();
                let body = Limited::new(req.into_body(), BODY_CAP)
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                let hreq = HttpRequest {
                    method,
                    path,
                    headers,
                    body,
                    namespace: ns,
                    pod,
                };
                let resp = tokio::task::spawn_blocking(move || handler(&hreq))
                    .await
                    .unwrap_or_else(|e| crate::sim::HttpResponse::text(500, e.to_string()));
                let mut b = hyper::Response::builder().status(resp.status);
                for (k, v) in &resp.headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                Ok::<_, std::convert::Infallible>(
                    b.body(Full::new(Bytes::from(resp.body)))
                        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()))),
                )
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), svc)
            .await;
    });
    client
}

/// The egress router: node addresses to the kubelet API, pod addresses to their ports.
pub struct TwinNetwork {
    pub ctx: Ctx,
    /// Where [`crate::kubelet_api::serve`] listens (loopback).
    pub kubelet_api: SocketAddr,
}

impl TwinNetwork {
    fn node_at(&self, ip: &str) -> Option<String> {
        self.ctx
            .client
            .list("", "nodes", None, None)
            .into_iter()
            .find(|n| {
                n.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|a| a["address"] == ip))
            })
            .map(|n| obj::name(&n).to_string())
    }

    fn pod_at(&self, ip: &str) -> Option<Value> {
        self.ctx
            .client
            .list("", "pods", None, None)
            .into_iter()
            .filter(|p| !obj::is_terminating(p))
            .filter(|p| p.pointer("/spec/hostNetwork").and_then(Value::as_bool) != Some(true))
            .find(|p| obj::str_at(p, "/status/podIP") == Some(ip))
    }
}

impl Router for TwinNetwork {
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn Stream>, String>> {
        let node = self.node_at(host);
        let pod = if node.is_none() {
            self.pod_at(host)
        } else {
            None
        };
        let ctx = self.ctx.clone();
        let kubelet = self.kubelet_api;
        let host = host.to_string();
        Box::pin(async move {
            if let Some(node) = node {
                if !ctx.power.is_on(&node) {
                    return Err(format!("dial tcp {host}:{port}: connect: no route to host"));
                }
                if port != KUBELET_PORT {
                    return Err(format!(
                        "dial tcp {host}:{port}: connect: connection refused"
                    ));
                }
                let s = tokio::net::TcpStream::connect(kubelet)
                    .await
                    .map_err(|e| format!("the kubelet API of {node}: {e}"))?;
                let _ = s.set_nodelay(true);
                return Ok(Box::new(s) as Box<dyn Stream>);
            }
            if let Some(p) = pod {
                let handler = handler_for(&ctx, &p, port)?;
                let s = serve_http(
                    handler,
                    obj::namespace(&p).to_string(),
                    obj::name(&p).to_string(),
                );
                return Ok(Box::new(s) as Box<dyn Stream>);
            }
            Err(format!("dial tcp {host}:{port}: connect: no route to host (no simulated node or pod has this address)"))
        })
    }
}
