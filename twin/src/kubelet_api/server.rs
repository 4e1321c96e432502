//! The kubelet's HTTPS listener: TLS, HTTP/1.1 and h2 (ALPN as the given config
//! offers), upgrades, and routing.
//!
//! Contract: [`serve`] accepts connections until `stop` turns true (or its sender
//! is dropped), terminates TLS with the caller's `rustls::ServerConfig` (the
//! apiserver's client certificate is whatever that config asks for; nothing here
//! checks it), and routes as k8s.io/kubernetes/pkg/kubelet/server/server.go
//! (`InstallDebuggingHandlers`, `InstallSystemLogHandler` are not served): `/exec`,
//! `/attach`, `/portForward` (GET or POST, with or without the pod UID segment),
//! `/containerLogs` (GET), `/healthz`, `/pods`. Any other path is a 404 Status.
//! Upgraded sessions end with `stop` too.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{exec, logs, portforward, Kubelet, KubeletApiError};

/// Every response body of this server.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the kubelet API on `listener` until `stop` is true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    kubelet: Arc<dyn Kubelet>,
    stop: watch::Receiver<bool>,
) {
    serve_with(listener, tls, stop, move |req, stop| {
        handle(req, kubelet.clone(), stop)
    })
    .await
}

/// The HTTPS accept loop of [`serve`], for any handler (the twin's Gatekeeper
/// webhook uses it too): TLS with a handshake deadline, HTTP/1.1 or h2 with
/// upgrades, every connection ended by `stop`.
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Request<Incoming>, watch::Receiver<bool>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        if *stop.borrow() {
            return;
        }
        let accepted = tokio::select! {
            c = listener.accept() => c,
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        let Ok((tcp, _peer)) = accepted else {
            // EMFILE and friends: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handle = handle.clone();
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc_stop = conn_stop.clone();
            let svc = hyper::service::service_fn(move |req| {
                let fut = handle(req, svc_stop.clone());
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = stopped(&mut conn_stop) => {}
            }
        });
    }
}

/// Resolves when `stop` is (or becomes) true, or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Routes one request (also usable without TLS, e.g. in tests).
pub async fn handle(
    req: Request<Incoming>,
    kubelet: Arc<dyn Kubelet>,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let stream_method = method == Method::GET || method == Method::POST;
    let read_method = method == Method::GET || method == Method::HEAD;
    let result = match seg.as_slice() {
        ["healthz"] | ["healthz", ""] if read_method => Ok(text(200, "ok")),
        ["pods"] | ["pods", ""] if read_method => Ok(json_response(
            200,
            &serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
        )),
        [kind @ ("exec" | "attach"), ns, pod, rest @ ..]
            if stream_method && (rest.len() == 1 || rest.len() == 2) =>
        {
            let container = rest[rest.len() - 1];
            let target = exec::Target {
                namespace: ns.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
                attach: *kind == "attach",
            };
            exec::handle(req, target, kubelet, stop).await
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _] if stream_method => {
            portforward::handle(req, ns.to_string(), pod.to_string(), kubelet, stop).await
        }
        ["containerLogs", ns, pod, container] if read_method => {
            // Plain-text errors, as the kubelet writes them (see the module docs).
            let query = query_pairs(&req);
            return logs::handle(&query, ns, pod, container, kubelet)
                .await
                .unwrap_or_else(|e| text(e.code(), &e.to_string()));
        }
        ["exec" | "attach" | "portForward" | "containerLogs" | "healthz" | "pods", ..] => {
            let known = matches!(
                seg.as_slice(),
                ["exec" | "attach", _, _, _]
                    | ["exec" | "attach", _, _, _, _]
                    | ["portForward", _, _]
                    | ["portForward", _, _, _]
                    | ["containerLogs", _, _, _]
                    | ["healthz"]
                    | ["pods"]
            );
            if known {
                Ok(method_not_allowed(&method))
            } else {
                Err(KubeletApiError::NotFound(format!(
                    "the server could not find the requested resource ({path})"
                )))
            }
        }
        _ => Err(KubeletApiError::NotFound(format!(
            "the server could not find the requested resource ({path})"
        ))),
    };
    result.unwrap_or_else(|e| status_response(&e))
}

pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

fn build(status: u16, content_type: &str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub(crate) fn text(status: u16, body: &str) -> Response<Body> {
    build(status, "text/plain; charset=utf-8", full(body.to_string()))
}

pub(crate) fn json_response(status: u16, v: &serde_json::Value) -> Response<Body> {
    build(
        status,
        "application/json",
        full(serde_json::to_vec(v).unwrap_or_default()),
    )
}

/// A JSON `metav1.Status` with the error's code.
pub(crate) fn status_response(e: &KubeletApiError) -> Response<Body> {
    json_response(e.code(), &e.status())
}

fn method_not_allowed(method: &Method) -> Response<Body> {
    let e = KubeletApiError::BadRequest(format!("method {method} is not allowed here"));
    let mut v = e.status();
    v["code"] = 405.into();
    v["reason"] = "MethodNotAllowed".into();
    json_response(405, &v)
}

/// Values of a header, comma-separated lists split and trimmed (as
/// httpstream.Handshake reads X-Stream-Protocol-Version).
pub(crate) fn header_list(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Checks the SPDY upgrade headers (`Connection: Upgrade`, `Upgrade: SPDY/3.1`), as
/// spdy.responseUpgrader.UpgradeResponse does; a WebSocket upgrade gets a clear 400.
pub(crate) fn check_spdy_upgrade(req: &Request<Incoming>) -> Result<(), KubeletApiError> {
    let has = |name: header::HeaderName, want: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(want))
    };
    if has(header::UPGRADE, "websocket") {
        return Err(KubeletApiError::BadRequest(
            "unable to upgrade: this node serves streaming over SPDY/3.1 only (it does not declare ExtendWebSocketsToKubelet)".into(),
        ));
    }
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "spdy/3.1") {
        return Err(KubeletApiError::BadRequest(
            "unable to upgrade: missing upgrade headers in request (want Connection: Upgrade and Upgrade: SPDY/3.1)".into(),
        ));
    }
    Ok(())
}

/// Picks a protocol from `X-Stream-Protocol-Version`: the first of `ours` (our
/// preference order) that the client offers. Missing header: 400. None fits: 403
/// with `X-Accepted-Stream-Protocol-Versions`, as httpstream.Handshake answers.
pub(crate) fn negotiate(
    req: &Request<Incoming>,
    ours: &[&'static str],
) -> Result<&'static str, Box<Response<Body>>> {
    let offered = header_list(req, "x-stream-protocol-version");
    if offered.is_empty() {
        return Err(Box::new(status_response(&KubeletApiError::BadRequest(
            "unable to upgrade: header X-Stream-Protocol-Version does not exist in request".into(),
        ))));
    }
    if let Some(p) = ours.iter().find(|p| offered.iter().any(|o| o == *p)) {
        return Ok(p);
    }
    let e = KubeletApiError::Forbidden(format!(
        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {ours:?}"
    ));
    let mut resp = status_response(&e);
    for p in ours {
        resp.headers_mut().append(
            "x-accepted-stream-protocol-versions",
            header::HeaderValue::from_static(p),
        );
    }
    Err(Box::new(resp))
}

/// The `101 Switching Protocols` answer to a SPDY upgrade.
pub(crate) fn switching_protocols(protocol: &'static str) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(
        "x-stream-protocol-version",
        header::HeaderValue::from_static(protocol),
    );
    resp
}

/// Query parameters in order (repeated keys kept, e.g. `command`).
pub(crate) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
