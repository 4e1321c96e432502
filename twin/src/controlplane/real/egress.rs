//! The cluster network as the real kube-apiserver sees it: its egress selector sends
//! every connection to a node (the kubelet API: exec, logs, port-forward) or to a pod
//! or service (the proxy subresources) as an HTTP `CONNECT host:port` over a Unix
//! socket to this proxy, the way k3s's "pod" egress mode and konnectivity do
//! (k8s.io/apiserver/pkg/server/egressselector, `proxyProtocol: HTTPConnect`).
//!
//! Contract: the simulated nodes and pods live at the embedded twin's addresses
//! (172.18.0.x, 10.244.x.y), where nothing listens on this machine; the apiserver
//! never dials them itself. A [`Router`] answers for the addresses the twin
//! simulates; anything else gets `503` naming the address, and no connection leaves
//! the process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::watch;

/// A byte stream to a simulated endpoint.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connects `host:port` inside the simulated cluster, or says why not.
pub trait Router: Send + Sync + 'static {
    fn connect(&self, host: &str, port: u16)
        -> BoxFuture<'static, Result<Box<dyn Stream>, String>>;
}

/// Routes nothing: every CONNECT is refused with its reason.
pub struct NoRoutes;

impl Router for NoRoutes {
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn Stream>, String>> {
        let msg = format!("nothing simulated listens at {host}:{port}");
        Box::pin(async move { Err(msg) })
    }
}

/// The EgressSelectorConfiguration file for kube-apiserver's `--egress-selector-config-file`.
pub fn config(socket: &Path) -> String {
    format!(
        "apiVersion: apiserver.k8s.io/v1beta1\nkind: EgressSelectorConfiguration\negressSelections:\n- name: cluster\n  connection:\n    proxyProtocol: HTTPConnect\n    transport:\n      uds:\n        udsName: {}\n",
        socket.display()
    )
}

/// Parses `CONNECT host:port HTTP/1.1` (the request line of the head).
pub fn parse_connect(head: &str) -> Option<(String, u16)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    if parts.next()? != "CONNECT" {
        return None;
    }
    let target = parts.next()?;
    let (host, port) = target.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// Serves the proxy on `socket` until `stop`.
pub fn serve(
    socket: PathBuf,
    router: Arc<dyn Router>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    Ok(tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = stop.changed() => return,
            };
            let Ok((mut conn, _)) = conn else { continue };
            let router = router.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                // The head is small; a client that sends more than 16 kB of it is broken.
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let Some((host, port)) = parse_connect(&text) else {
                    let _ = conn
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                };
                match router.connect(&host, port).await {
                    Ok(mut upstream) => {
                        if conn
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        // Bytes after the head belong to the tunnel.
                        let end = head
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(head.len(), |p| p + 4);
                        if end < head.len() && upstream.write_all(&head[end..]).await.is_err() {
                            return;
                        }
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                    Err(why) => {
                        tracing::debug!(target: "stormdrill_twin::controlplane", "egress CONNECT {host}:{port} refused: {why}");
                        let body = format!("{why}\n");
                        let _ = conn
                            .write_all(
                                format!(
                                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                    }
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(
            parse_connect("CONNECT 172.18.0.3:10250 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("172.18.0.3".into(), 10250))
        );
        assert_eq!(
            parse_connect("CONNECT [fd00::1]:80 HTTP/1.1\r\n\r\n"),
            Some(("fd00::1".into(), 80))
        );
        assert_eq!(parse_connect("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_connect("CONNECT nohost HTTP/1.1\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn refused_targets_are_named_and_nothing_is_dialled() {
        let dir = std::env::temp_dir().join(format!("stormdrill-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("egress.sock");
        let (_tx, rx) = watch::channel(false);
        let _task = serve(sock.clone(), Arc::new(NoRoutes), rx).unwrap();
        let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
        c.write_all(b"CONNECT 10.244.1.5:9090 HTTP/1.1\r\nHost: 10.244.1.5:9090\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.contains("10.244.1.5:9090"), "{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
