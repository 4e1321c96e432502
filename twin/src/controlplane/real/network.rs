//! The simulated nodes and pods on the network a real kube-apiserver reaches through
//! its egress proxy ([`super::egress`]): each node's kubelet API (exec, attach, logs,
//! port-forward — [`crate::kubelet_api`]) at `InternalIP:10250`, and each pod's ports
//! (the service and pod proxies) at `podIP:PORT`, answered by the simulated
//! containers of [`crate::sim`] through [`crate::simnet`] (which the embedded API
//! server's port-forward uses too).
//!
//! Contract: a powered-off node's kubelet and pods do not answer ("no route to
//! host"), as in [`crate::proxy`]; a port nothing simulated serves, or of a pod not
//! Running, is refused. The
//! kubelet API server listens on one loopback port for every node: the egress proxy
//! decides which node a connection was meant for.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

use super::egress::{Router, Stream};
use crate::ctx::{obj, Ctx};
use crate::kubelet_api::{
    AsyncReadWrite, ExecCall, ExecResult, Kubelet, KubeletApiError, LogQuery,
};

/// The port every simulated kubelet serves on (the kubelet's default).
pub const KUBELET_PORT: u16 = 10250;

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
            let conn =
                crate::simnet::connect(&ctx, &p, port).map_err(KubeletApiError::Unavailable)?;
            Ok(Box::new(conn) as Box<dyn AsyncReadWrite>)
        })
    }

    fn lookup(&self, ns: &str, name: &str, container: Option<&str>) -> Result<(), KubeletApiError> {
        let p = pod(&self.ctx, ns, name)?;
        if container.is_none() {
            // Port-forward: the kubelet finds no running sandbox to enter.
            crate::simnet::running(&p).map_err(KubeletApiError::Internal)?;
        }
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
                let s = crate::simnet::connect(&ctx, &p, port)?;
                return Ok(Box::new(s) as Box<dyn Stream>);
            }
            Err(format!("dial tcp {host}:{port}: connect: no route to host (no simulated node or pod has this address)"))
        })
    }
}
