//! `pods/portforward` on the embedded API server, for unmodified kubectl.
//!
//! Contract: `GET` or `POST /api/v1/namespaces/{ns}/pods/{name}/portforward` is served
//! in both forms client-go's port-forward dialer tries, in its order:
//! - a WebSocket upgrade offering `SPDY/3.1+portforward.k8s.io` (kubectl ≥ 1.31,
//!   KEP-4006): the SPDY/3.1 session travels inside binary messages, as
//!   kube-apiserver's `TunnelingHandler` (k8s.io/apiserver/pkg/util/proxy/streamtunnel.go)
//!   serves it, and the 101 names that subprotocol. Offered protocols without the
//!   `SPDY/3.1+` prefix and `.k8s.io` suffix are ignored; none left: 400 "unable to
//!   upgrade: no tunneling spdy protocols provided"; no `portforward.k8s.io` among
//!   them: 403. A failed WebSocket upgrade makes kubectl fall back to:
//! - a SPDY/3.1 upgrade (`X-Stream-Protocol-Version: portforward.k8s.io`), answered as
//!   the kubelet answers it ([`crate::kubelet_api::portforward::handle`]).
//!
//! Both run the kubelet API's port-forward session ([`kubelet_api::portforward::serve`])
//! against the twin's simulated kubelets ([`TwinKubelet`]), so each forwarded
//! connection reaches what the pod's containers serve ([`crate::simnet`]).
//!
//! Errors before the upgrade, as kube-apiserver gives them: no such pod 404; no node
//! assigned 400; a powered-off node 500 "error dialing backend: ... no route to
//! host"; a pod not Running 500. Per forwarded connection, on the session's error
//! stream: "error forwarding port P to pod NAME, uid : dial tcp IP:P: connect:
//! connection refused" when nothing listens there (kubectl then closes the session
//! and exits with "lost connection to pod"). Sessions end when the client closes the
//! connection.

use std::sync::{Arc, OnceLock};

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::controlplane::real::network::TwinKubelet;
use crate::error::ApiError;
use crate::kubelet_api::{self, portforward::PROTOCOL, Kubelet, KubeletApiError};
use crate::server::{Body, Server};

/// What KEP-4006 puts before a SPDY protocol to tunnel it in a WebSocket.
pub const TUNNELING_PREFIX: &str = "SPDY/3.1+";
/// Bytes read from the SPDY side per WebSocket message.
const CHUNK: usize = 32 << 10;

/// A stop signal that never fires: the embedded server's sessions end with their
/// connection (the kubelet API's take the twin's stop signal instead).
fn never_stopped() -> watch::Receiver<bool> {
    static NEVER: OnceLock<watch::Sender<bool>> = OnceLock::new();
    NEVER.get_or_init(|| watch::channel(false).0).subscribe()
}

fn api_error(e: KubeletApiError) -> ApiError {
    ApiError::new(e.code(), e.reason(), e.to_string())
}

/// The SPDY protocols a WebSocket request asks to tunnel, prefix removed.
pub fn tunneled_protocols(offered: &[String]) -> Vec<String> {
    offered
        .iter()
        .filter_map(|p| p.strip_prefix(TUNNELING_PREFIX))
        .filter(|p| p.ends_with(".k8s.io"))
        .map(String::from)
        .collect()
}

pub async fn handle(
    s: &Server,
    mut req: Request<Incoming>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let ctx = &s.ctx;
    let pod = ctx
        .client
        .get("", "pods", Some(ns), name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    crate::exec::dial_kubelet(ctx, &pod, name)?;
    crate::simnet::running(&pod).map_err(ApiError::internal)?;
    let kubelet: Arc<dyn Kubelet> = Arc::new(TwinKubelet { ctx: ctx.clone() });
    let is_ws = kubelet_api::server::header_list(&req, "upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("websocket"));
    if !is_ws {
        let resp = kubelet_api::portforward::handle(
            req,
            ns.to_string(),
            name.to_string(),
            kubelet,
            never_stopped(),
        )
        .await
        .map_err(api_error)?;
        // The kubelet API's bodies are not Sync; every one of them is small.
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Ok(Response::from_parts(parts, Full::new(bytes).boxed()));
    }

    let offered = kubelet_api::server::header_list(&req, "sec-websocket-protocol");
    let protocols = tunneled_protocols(&offered);
    if protocols.is_empty() {
        return Err(ApiError::bad_request(
            "unable to upgrade: no tunneling spdy protocols provided",
        ));
    }
    if !protocols.iter().any(|p| p == PROTOCOL) {
        return Err(ApiError::forbidden(format!(
            "unable to upgrade: unable to negotiate protocol: client supports {protocols:?}, server accepts [\"{PROTOCOL}\"]"
        )));
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(String::from)
        .ok_or_else(|| ApiError::bad_request("WebSocket upgrade without Sec-WebSocket-Key"))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (ns, name) = (ns.to_string(), name.to_string());
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let io = tunnel(ws);
        kubelet_api::portforward::serve(io, ns, name, kubelet, never_stopped()).await;
    });
    Ok(crate::exec::websocket_accept(
        &key,
        &format!("{TUNNELING_PREFIX}{PROTOCOL}"),
    ))
}

/// A byte stream carried by a WebSocket's binary messages, as client-go's
/// `TunnelingConnection` makes one: messages are read back to back (their
/// boundaries mean nothing), each write becomes one message. The returned end reads
/// EOF when the peer closes (or breaks) the WebSocket or sends a text message;
/// shutting down its write side sends a normal closure.
pub fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(2 * CHUNK);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(ours);
        let inbound = async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Binary(b)) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    // Pings are answered by tungstenite; a text message is a
                    // protocol error for the tunnel (client-go: "invalid message type").
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                    Ok(Message::Text(_) | Message::Close(_)) | Err(_) => break,
                }
            }
            let _ = wr.shutdown().await;
        };
        let outbound = async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })))
                .await;
        };
        futures::join!(inbound, outbound);
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_prefixed_kubernetes_protocols_are_tunneled() {
        let offered = [
            "SPDY/3.1+portforward.k8s.io",
            "v5.channel.k8s.io",
            "SPDY/3.1+other.example.com",
            "SPDY/3.1+v4.channel.k8s.io",
        ]
        .map(String::from);
        assert_eq!(
            tunneled_protocols(&offered),
            vec!["portforward.k8s.io", "v4.channel.k8s.io"]
        );
        assert!(tunneled_protocols(&["portforward.k8s.io".to_string()]).is_empty());
    }

    async fn pair() -> (
        tokio::io::DuplexStream,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (tunnel(server), client)
    }

    /// Bytes written on either side come out on the other, whatever the message
    /// boundaries; our shutdown is a normal closure.
    #[tokio::test]
    async fn tunnel_carries_bytes_both_ways() {
        let (mut io, mut client) = pair().await;
        client.send(Message::binary(b"hel".to_vec())).await.unwrap();
        client.send(Message::binary(b"lo".to_vec())).await.unwrap();
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        io.write_all(b"back").await.unwrap();
        match client.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"back"),
            other => panic!("{other:?}"),
        }
        io.shutdown().await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a close within 5 s");
        match next {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
    }

    /// The peer's close, or a text message, is the end of the byte stream.
    #[tokio::test]
    async fn peer_close_or_text_is_eof() {
        for end in [Message::Close(None), Message::text("not binary")] {
            let (mut io, mut client) = pair().await;
            client.send(Message::binary(b"x".to_vec())).await.unwrap();
            client.send(end).await.unwrap();
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest))
                .await
                .expect("EOF within 5 s")
                .unwrap();
            assert_eq!(rest, b"x");
        }
    }
}
