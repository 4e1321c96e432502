//! The simulated pods' TCP ports as in-memory connections, for both control planes:
//! the real kube-apiserver's pod/service proxies and port-forward through the twin's
//! kubelets ([`crate::controlplane::real::network`]), and the embedded API server's
//! port-forward ([`crate::forward`]).
//!
//! Contract: [`connect`] (or [`handler_for`] then [`serve_http`]) refuses, with the
//! message a dialer prints, a pod whose node is powered off or unassigned ("no route
//! to host"), a pod that is not Running or a port no container serves ("connection
//! refused"). Otherwise it returns one end of a duplex stream whose other end is an
//! HTTP/1.1 server (keep-alive, request bodies up to [`BODY_CAP`]) answering with the
//! handler the container's image registered ([`crate::sim::Sim::register_http`]),
//! until the client closes its end. A port a real process serves ([`crate::procs`])
//! is instead bridged, byte for byte, to that process on 127.0.0.1.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::ctx::{obj, Ctx};
use crate::sim::{HttpHandler, HttpRequest};

/// The largest request body a pod's port takes (as the service proxy).
pub const BODY_CAP: usize = 16 << 20;

/// Ok when `pod` runs; else why nothing in it can be reached (no sandbox to enter).
pub fn running(pod: &Value) -> Result<(), String> {
    match obj::str_at(pod, "/status/phase").unwrap_or("Pending") {
        "Running" => Ok(()),
        phase => Err(format!(
            "pod {}/{} is not running (phase {phase}): it has no network namespace to forward to",
            obj::namespace(pod),
            obj::name(pod)
        )),
    }
}

/// A connection to `port` of `pod` (see the module docs for the refusals).
pub fn connect(ctx: &Ctx, pod: &Value, port: u16) -> Result<tokio::io::DuplexStream, String> {
    if let Some(addr) = ctx.procs.addr(pod, port) {
        return connect_process(ctx, pod, port, addr);
    }
    let handler = handler_for(ctx, pod, port)?;
    Ok(serve_http(
        handler,
        obj::namespace(pod).to_string(),
        obj::name(pod).to_string(),
    ))
}

/// A connection to a real process serving the pod's `port` ([`crate::procs`]):
/// its bytes go to 127.0.0.1 at the process's own port, whatever the protocol.
fn connect_process(
    ctx: &Ctx,
    pod: &Value,
    port: u16,
    addr: std::net::SocketAddr,
) -> Result<tokio::io::DuplexStream, String> {
    let ip = obj::str_at(pod, "/status/podIP").unwrap_or("");
    let node = obj::str_at(pod, "/spec/nodeName").unwrap_or("");
    if node.is_empty() || !ctx.power.is_on(node) {
        return Err(format!("dial tcp {ip}:{port}: connect: no route to host"));
    }
    let refused = |_| format!("dial tcp {ip}:{port}: connect: connection refused");
    let tcp = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .map_err(refused)?;
    tcp.set_nonblocking(true).map_err(refused)?;
    let mut tcp = tokio::net::TcpStream::from_std(tcp).map_err(refused)?;
    let (client, mut server) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut server, &mut tcp).await;
    });
    Ok(client)
}

/// What the pod's containers serve on `port`, if its node is up and it runs; else
/// what a dialer would say.
pub fn handler_for(ctx: &Ctx, pod: &Value, port: u16) -> Result<HttpHandler, String> {
    let ip = obj::str_at(pod, "/status/podIP").unwrap_or("");
    let node = obj::str_at(pod, "/spec/nodeName").unwrap_or("");
    if node.is_empty() || !ctx.power.is_on(node) {
        return Err(format!("dial tcp {ip}:{port}: connect: no route to host"));
    }
    // A pod that has not started or has finished has no process on any port.
    if running(pod).is_err() {
        return Err(format!("dial tcp {ip}:{port}: connect: connection refused"));
    }
    ctx.sim
        .pod_http_handler(pod, port)
        .ok_or_else(|| format!("dial tcp {ip}:{port}: connect: connection refused"))
}

/// One end of an in-memory connection whose other end an HTTP/1.1 server answers
/// with `handler` (the simulated container's port).
pub fn serve_http(handler: HttpHandler, ns: String, pod: String) -> tokio::io::DuplexStream {
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
