//! `port-forward` sessions over SPDY/3.1 (`portforward.k8s.io`).
//!
//! Contract, as k8s.io/cri-streaming/pkg/streaming/portforward/httpstream.go serves
//! it (k8s.io/kubelet/pkg/cri/streaming/portforward before 1.37) and
//! k8s.io/client-go/tools/portforward drives it through the apiserver:
//! - the upgrade needs `X-Stream-Protocol-Version: portforward.k8s.io` (400 when
//!   missing, 403 with `X-Accepted-Stream-Protocol-Versions` when another).
//! - every forwarded connection is a pair of streams with headers `streamType`
//!   (`error` or `data`), `port` (1..=65535) and `requestID`; a stream with a bad
//!   header is reset (RST_STREAM, never replied), as `httpStreamReceived` rejects
//!   it. Without `requestID` (old clients) the pair key is the error stream's id,
//!   or the data stream's id - 2. A pair incomplete after 30 s gets "timed out
//!   waiting for streams" on its error stream.
//! - a complete pair asks [`Kubelet::port_forward`] for a connection; on failure
//!   the error stream carries "error forwarding port P to pod POD, uid : ERR", the
//!   error stream is half-closed and the data stream reset. Otherwise bytes are
//!   copied both ways: the client's FIN on data half-closes the pod connection's
//!   write side, the pod's EOF half-closes data and error (the client then ends
//!   that forwarded connection); the client's RST ends everything at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::conn::{Recv, Session, Stream};
use super::server::{self, Body};
use super::{spdy, Kubelet, KubeletApiError};

pub const PROTOCOL: &str = "portforward.k8s.io";
/// How long a pair may wait for its second stream.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_LINGER: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 32 << 10;

/// Answers a `/portForward` request: errors, or a 101 and a session task.
pub async fn handle(
    mut req: Request<Incoming>,
    namespace: String,
    pod: String,
    kubelet: Arc<dyn Kubelet>,
    stop: watch::Receiver<bool>,
) -> Result<Response<Body>, KubeletApiError> {
    kubelet.lookup(&namespace, &pod, None)?;
    let protocol = match server::negotiate(&req, &[PROTOCOL]) {
        Ok(p) => p,
        Err(resp) => return Ok(*resp),
    };
    server::check_spdy_upgrade(&req)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        serve(TokioIo::new(upgraded), namespace, pod, kubelet, stop).await;
    });
    Ok(server::switching_protocols(protocol))
}

/// Runs a port-forward session on `io`, the raw bytes after the upgrade (a SPDY
/// upgrade, or SPDY tunnelled in WebSocket messages as the twin's embedded API
/// server serves it), until the client closes it or `stop`.
pub async fn serve<T>(
    io: T,
    namespace: String,
    pod: String,
    kubelet: Arc<dyn Kubelet>,
    stop: watch::Receiver<bool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (session, incoming) = Session::start(io);
    run(session, incoming, namespace, pod, kubelet, stop).await;
}

/// Why a stream is refused, or its (port, type) when valid.
pub fn check_stream(headers: &spdy::Headers) -> Result<(u16, bool), String> {
    let port = spdy::header(headers, "port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    match spdy::header(headers, "streamtype") {
        None | Some("") => Err("\"streamType\" header is required".into()),
        Some("data") => Ok((port, true)),
        Some("error") => Ok((port, false)),
        Some(other) => Err(format!("invalid stream type {other:?}")),
    }
}

/// The pair key of a stream (`requestID`, or derived from the id for old clients).
fn request_id(stream: &Stream, is_data: bool) -> String {
    match stream.header("requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if is_data => stream.id.saturating_sub(2).to_string(),
        _ => stream.id.to_string(),
    }
}

struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
    created: tokio::time::Instant,
}

async fn run(
    session: Session,
    mut incoming: mpsc::Receiver<Stream>,
    namespace: String,
    pod: String,
    kubelet: Arc<dyn Kubelet>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut forwards = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = incoming.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = tick.tick() => {
                expire(&mut pairs).await;
                continue;
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            _ = server::stopped(&mut stop) => {
                session.close(CLOSE_LINGER).await;
                return;
            }
        };
        let (port, is_data) = match check_stream(&stream.headers) {
            Ok(v) => v,
            Err(why) => {
                tracing::debug!("kubelet_api portForward: stream rejected: {why}");
                let _ = stream.sender.reset(spdy::RST_CANCEL).await;
                continue;
            }
        };
        if stream.sender.reply().await.is_err() {
            break;
        }
        let id = request_id(&stream, is_data);
        let pair = pairs.entry(id.clone()).or_insert_with(|| Pair {
            data: None,
            error: None,
            created: tokio::time::Instant::now(),
        });
        let slot = if is_data {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let what = if is_data { "data" } else { "error" };
            let msg =
                format!("error processing stream for request {id}: {what} stream already assigned");
            if let Some(e) = pair.error.as_ref() {
                let _ = e.sender.send(msg.as_bytes()).await;
            }
            let _ = stream.sender.reset(spdy::RST_PROTOCOL_ERROR).await;
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                data: Some(data),
                error: Some(error),
                ..
            }) = pairs.remove(&id)
            {
                let fwd = forward(
                    kubelet.clone(),
                    namespace.clone(),
                    pod.clone(),
                    port,
                    data,
                    error,
                );
                forwards.spawn(fwd);
            }
        }
    }
    // No new streams (GOAWAY or connection end): forwards run until the client
    // closes the connection.
    tokio::select! {
        _ = session.peer_closed() => {}
        _ = server::stopped(&mut stop) => {}
        _ = async { while forwards.join_next().await.is_some() {} } => {}
    }
    session.close(CLOSE_LINGER).await;
}

/// Reports and drops pairs still missing a stream after the creation timeout.
async fn expire(pairs: &mut HashMap<String, Pair>) {
    let now = tokio::time::Instant::now();
    let stale: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| now.duration_since(p.created) >= STREAM_CREATION_TIMEOUT)
        .map(|(k, _)| k.clone())
        .collect();
    for id in stale {
        if let Some(p) = pairs.remove(&id) {
            if let Some(e) = p.error {
                let msg = format!("(request={id}) timed out waiting for streams");
                let _ = e.sender.send(msg.as_bytes()).await;
                let _ = e.sender.fin().await;
            }
            if let Some(d) = p.data {
                let _ = d.sender.reset(spdy::RST_CANCEL).await;
            }
        }
    }
}

enum UpEnd {
    /// The client half-closed: the pod's write side was shut down.
    Fin,
    /// Writing to the pod failed: it stopped reading.
    PodClosed,
    /// The client reset the stream or the connection went away.
    Aborted,
}

async fn forward(
    kubelet: Arc<dyn Kubelet>,
    namespace: String,
    pod: String,
    port: u16,
    data: Stream,
    mut error: Stream,
) {
    // The client half-closes the error stream at once; it only reads it.
    error.reader.discard();
    let conn = match kubelet.port_forward(&namespace, &pod, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}, uid : {e}");
            let _ = error.sender.send(msg.as_bytes()).await;
            let _ = error.sender.fin().await;
            let _ = data.sender.reset(spdy::RST_CANCEL).await;
            return;
        }
    };
    let Stream {
        reader: mut from_client,
        sender: to_client,
        ..
    } = data;
    let (mut pod_rd, mut pod_wr) = tokio::io::split(conn);
    let up = async {
        loop {
            match from_client.recv().await {
                Recv::Data(b) => {
                    if pod_wr.write_all(&b).await.is_err() || pod_wr.flush().await.is_err() {
                        return UpEnd::PodClosed;
                    }
                }
                Recv::Fin => {
                    let _ = pod_wr.shutdown().await;
                    return UpEnd::Fin;
                }
                Recv::Reset(_) | Recv::Gone => return UpEnd::Aborted,
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    if to_client.send(&buf[..n]).await.is_err() {
                        return false;
                    }
                }
            }
        }
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    let connection_ok = loop {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                UpEnd::Fin | UpEnd::PodClosed => up_done = true,
                UpEnd::Aborted => break false,
            },
            ok = &mut down => break ok,
        }
    };
    if connection_ok {
        let _ = to_client.fin().await;
        let _ = error.sender.fin().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> spdy::Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn stream_headers_are_checked_as_upstream() {
        assert_eq!(
            check_stream(&h(&[("streamtype", "data"), ("port", "8080")])),
            Ok((8080, true))
        );
        assert_eq!(
            check_stream(&h(&[("streamtype", "error"), ("port", "1")])),
            Ok((1, false))
        );
        assert!(check_stream(&h(&[("streamtype", "data")])).is_err());
        assert!(check_stream(&h(&[("streamtype", "data"), ("port", "0")])).is_err());
        assert!(check_stream(&h(&[("streamtype", "data"), ("port", "70000")])).is_err());
        assert!(check_stream(&h(&[("streamtype", "stdin"), ("port", "80")])).is_err());
        assert!(check_stream(&h(&[("port", "80")])).is_err());
    }
}
