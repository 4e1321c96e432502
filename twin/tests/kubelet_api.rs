//! The kubelet API (`stormdrill_twin::kubelet_api`) served over TLS on 127.0.0.1 and
//! driven by a minimal SPDY/3.1 client written here, playing the part of
//! kube-apiserver: exec with stdin and FIN, exec with a non-zero exit, protocol
//! negotiation, logs with follow, port-forward echo and errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use stormdrill_twin::kubelet_api::spdy::{Decoder, Encoder, Frame};
use stormdrill_twin::kubelet_api::{
    serve, AsyncReadWrite, ExecCall, ExecResult, Kubelet, KubeletApiError, LogQuery,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

// ----- a fake node --------------------------------------------------------------------

#[derive(Default)]
struct FakeKubelet {
    calls: std::sync::Mutex<Vec<ExecCall>>,
}

impl Kubelet for FakeKubelet {
    fn exec(&self, call: ExecCall) -> BoxFuture<'static, Result<ExecResult, KubeletApiError>> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call.clone());
        }
        async move {
            let cmd: Vec<&str> = call.command.iter().map(String::as_str).collect();
            Ok(match cmd.as_slice() {
                ["cat"] => ExecResult {
                    stdout: call.stdin.unwrap_or_default(),
                    ..Default::default()
                },
                ["sh", "-c", "exit 3"] => ExecResult {
                    stdout: b"partial\n".to_vec(),
                    stderr: b"boom\n".to_vec(),
                    exit_code: 3,
                },
                ["big"] => ExecResult {
                    stdout: (0..200_000u32).map(|i| (i % 251) as u8).collect(),
                    ..Default::default()
                },
                ["missing-binary"] => {
                    return Err(KubeletApiError::Internal(
                        "exec: \"missing-binary\": executable file not found in $PATH".into(),
                    ))
                }
                other => ExecResult {
                    stdout: format!("{}\n", other.join(" ")).into_bytes(),
                    ..Default::default()
                },
            })
        }
        .boxed()
    }

    fn logs(
        &self,
        q: LogQuery,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, KubeletApiError>> {
        async move {
            if q.container != "app" {
                return Err(KubeletApiError::BadRequest(format!(
                    "container {} is not valid for pod {}",
                    q.container, q.pod
                )));
            }
            let lines = vec![
                Bytes::from_static(b"line 1\n"),
                Bytes::from_static(b"line 2\n"),
            ];
            if !q.follow {
                return Ok(futures::stream::iter(lines).boxed());
            }
            // Following: the old lines, then new ones over time, then the pod goes away.
            let later = futures::stream::unfold(3u32, |n| async move {
                if n > 5 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Bytes::from(format!("line {n}\n")), n + 1))
            });
            Ok(futures::stream::iter(lines).chain(later).boxed())
        }
        .boxed()
    }

    fn port_forward(
        &self,
        _namespace: &str,
        _pod: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, KubeletApiError>> {
        async move {
            if port != 7777 {
                return Err(KubeletApiError::Internal(format!(
                    "dial tcp4 127.0.0.1:{port}: connect: connection refused"
                )));
            }
            // An echo server on the far end of an in-memory pipe.
            let (near, far) = tokio::io::duplex(64 << 10);
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(far);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
            Ok(Box::new(near) as Box<dyn AsyncReadWrite>)
        }
        .boxed()
    }

    fn reads_stdin(&self, call: &ExecCall) -> bool {
        call.command.first().map(String::as_str) == Some("cat")
    }

    fn lookup(
        &self,
        _namespace: &str,
        pod: &str,
        _container: Option<&str>,
    ) -> Result<(), KubeletApiError> {
        if pod == "missing" {
            return Err(KubeletApiError::NotFound(format!("pod {pod:?} not found")));
        }
        Ok(())
    }
}

// ----- TLS both ways --------------------------------------------------------------------

struct Node {
    addr: std::net::SocketAddr,
    connector: tokio_rustls::TlsConnector,
    kubelet: Arc<FakeKubelet>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start() -> Node {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // As client-go's SPDY round-tripper: HTTP/1.1 only.
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kubelet = Arc::new(FakeKubelet::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(listener, Arc::new(server), kubelet.clone(), stopped));
    Node {
        addr,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        kubelet,
        _stop: stop,
    }
}

impl Node {
    async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }

    /// Sends a request and reads the response head; the rest stays in the buffer.
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, TlsStream<TcpStream>, BytesMut) {
        let mut io = self.connect().await;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        io.write_all(req.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), io.read_buf(&mut buf))
                .await
                .expect("response head in time")
                .unwrap();
            assert!(n > 0, "connection closed before the response head");
        };
        let head = String::from_utf8(buf.split_to(end + 4).to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, io, buf)
    }

    async fn spdy(&self, path: &str, protocols: &[&str]) -> (Vec<(String, String)>, Client) {
        let mut h = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
        for p in protocols {
            // client-go adds one header line per protocol.
            h.push(("X-Stream-Protocol-Version", p));
        }
        let (status, headers, io, buf) = self.request("POST", path, &h).await;
        assert_eq!(status, 101, "{headers:?}");
        assert_eq!(header(&headers, "upgrade"), Some("SPDY/3.1"));
        assert_eq!(header(&headers, "connection"), Some("Upgrade"));
        (
            headers,
            Client {
                io,
                enc: Encoder::new().unwrap(),
                dec: Decoder::new(),
                buf,
            },
        )
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ----- a minimal SPDY client -----------------------------------------------------------

struct Client {
    io: TlsStream<TcpStream>,
    enc: Encoder,
    dec: Decoder,
    buf: BytesMut,
}

impl Client {
    async fn send(&mut self, f: Frame) {
        let mut b = BytesMut::new();
        self.enc.encode(&f, &mut b).unwrap();
        self.io.write_all(&b).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                .await
                .expect("a frame within 10 s")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// SYN_STREAM with the headers as client-go sets them (lowercased on the wire).
    async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await;
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// Reads frames until every stream in `until` has ended (FIN or RST), collecting
    /// data per stream and recording replies, resets and pings.
    async fn collect(&mut self, until: &[u32]) -> Transcript {
        let mut t = Transcript::default();
        while !until.iter().all(|id| t.ended(*id)) {
            match self.recv().await {
                None => break,
                Some(Frame::Data {
                    stream_id,
                    fin,
                    data,
                }) => {
                    t.data
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if fin {
                        t.fins.push(stream_id);
                    }
                }
                Some(Frame::SynReply { stream_id, .. }) => t.replies.push(stream_id),
                Some(Frame::RstStream { stream_id, status }) => t.resets.push((stream_id, status)),
                Some(Frame::Ping { id }) => t.pings.push(id),
                Some(Frame::GoAway { .. }) => t.goaway = true,
                Some(_) => {}
            }
        }
        t
    }
}

#[derive(Default, Debug)]
struct Transcript {
    data: HashMap<u32, Vec<u8>>,
    fins: Vec<u32>,
    replies: Vec<u32>,
    resets: Vec<(u32, u32)>,
    pings: Vec<u32>,
    goaway: bool,
}

impl Transcript {
    fn ended(&self, id: u32) -> bool {
        self.fins.contains(&id) || self.resets.iter().any(|(s, _)| *s == id)
    }
    fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map(Vec::as_slice).unwrap_or(&[])).into_owned()
    }
    fn json(&self, id: u32) -> serde_json::Value {
        serde_json::from_slice(self.data.get(&id).map(Vec::as_slice).unwrap_or(b"null")).unwrap()
    }
}

const ALL_EXEC_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

// ----- exec -----------------------------------------------------------------------------

#[tokio::test]
async fn exec_with_stdin_until_fin() {
    let node = start().await;
    let (headers, mut c) = node
        .spdy(
            "/exec/default/web-0/app?command=cat&input=1&output=1&error=1",
            &ALL_EXEC_PROTOCOLS,
        )
        .await;
    // v4 whatever the client's order, and always said.
    assert_eq!(
        header(&headers, "x-stream-protocol-version"),
        Some("v4.channel.k8s.io")
    );
    // client-go's order: error, stdin, stdout, stderr.
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdin")]).await;
    c.open(5, &[("streamType", "stdout")]).await;
    c.open(7, &[("streamType", "stderr")]).await;
    c.send(Frame::Ping { id: 1 }).await;
    // stdin in pieces, then the half-close (what kubectl cp relies on), with a
    // pause longer than nothing but shorter than the idle limit.
    c.data(3, b"hello ", false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.data(3, b"world", false).await;
    c.data(3, b"", true).await;
    let t = c.collect(&[1, 5, 7]).await;
    assert_eq!(t.replies, vec![1, 3, 5, 7]);
    assert!(t.pings.contains(&1), "{t:?}");
    assert_eq!(t.text(5), "hello world");
    assert_eq!(t.text(7), "");
    assert_eq!(
        t.json(1),
        serde_json::json!({"metadata": {}, "status": "Success"})
    );
    // Input is stopped with a reset, as the kubelet's finish() does.
    assert!(t.resets.contains(&(3, 5)), "{t:?}");
    assert!(t.fins.contains(&1) && t.fins.contains(&5) && t.fins.contains(&7));
    // The server waits for us to close rather than dropping the connection.
    assert!(!t.goaway);
    let calls = node.kubelet.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0],
        ExecCall {
            namespace: "default".into(),
            pod: "web-0".into(),
            container: "app".into(),
            command: vec!["cat".into()],
            stdin: Some(b"hello world".to_vec()),
            tty: false,
        }
    );
    // Once we close, the server ends the session too.
    c.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: 0,
    })
    .await;
    let _ = c.io.shutdown().await;
    // (It sends no GOAWAY of its own after ours, as spdystream's Close; the
    // connection just ends, within the read timeout of `recv`.)
    let _ = c.collect(&[u32::MAX]).await;
}

#[tokio::test]
async fn exec_nonzero_exit_and_uid_route() {
    let node = start().await;
    let (headers, mut c) = node
        .spdy(
            "/exec/default/web-0/0c8e3b4c-uid/app?command=sh&command=-c&command=exit%203&output=1&error=1",
            &["v4.channel.k8s.io"],
        )
        .await;
    assert_eq!(
        header(&headers, "x-stream-protocol-version"),
        Some("v4.channel.k8s.io")
    );
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdout")]).await;
    c.open(5, &[("streamType", "stderr")]).await;
    let t = c.collect(&[1, 3, 5]).await;
    assert_eq!(t.text(3), "partial\n");
    assert_eq!(t.text(5), "boom\n");
    let status = t.json(1);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "3"})
    );
    // The status is exactly what the twin's own API server sends.
    let cmd: Vec<String> = vec!["sh".into(), "-c".into(), "exit 3".into()];
    assert_eq!(status, stormdrill_twin::exec::exit_status(&cmd, 3));
}

#[tokio::test]
async fn exec_tty_merges_stderr_and_accepts_resize() {
    let node = start().await;
    let (_, mut c) = node
        .spdy(
            "/exec/default/web-0/app?command=sh&command=-c&command=exit%203&output=1&error=1&tty=1",
            &ALL_EXEC_PROTOCOLS,
        )
        .await;
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdout")]).await;
    c.open(5, &[("streamType", "resize")]).await;
    c.data(5, br#"{"Width":80,"Height":24}"#, false).await;
    let t = c.collect(&[1, 3]).await;
    assert_eq!(t.text(3), "partial\nboom\n");
    assert_eq!(t.json(1)["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn exec_large_output_and_command_errors() {
    let node = start().await;
    let (_, mut c) = node
        .spdy(
            "/exec/default/web-0/app?command=big&output=1",
            &ALL_EXEC_PROTOCOLS,
        )
        .await;
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdout")]).await;
    // A stream the query did not ask for is accepted and half-closed, not reset.
    c.open(5, &[("streamType", "stderr")]).await;
    let t = c.collect(&[1, 3, 5]).await;
    let want: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(t.data.get(&3), Some(&want));
    assert!(t.replies.contains(&5) && t.fins.contains(&5), "{t:?}");
    assert!(t.resets.is_empty(), "{t:?}");

    let (_, mut c) = node
        .spdy(
            "/exec/default/web-0/app?command=missing-binary&output=1&error=1",
            &ALL_EXEC_PROTOCOLS,
        )
        .await;
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdout")]).await;
    c.open(5, &[("streamType", "stderr")]).await;
    let t = c.collect(&[1, 3, 5]).await;
    let status = t.json(1);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "InternalError");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("executable file not found"),
        "{status}"
    );
}

#[tokio::test]
async fn exec_v3_client_gets_text_errors() {
    let node = start().await;
    let (headers, mut c) = node
        .spdy(
            "/exec/default/web-0/app?command=sh&command=-c&command=exit%203&output=1",
            &["v3.channel.k8s.io", "v2.channel.k8s.io"],
        )
        .await;
    assert_eq!(
        header(&headers, "x-stream-protocol-version"),
        Some("v3.channel.k8s.io")
    );
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdout")]).await;
    let t = c.collect(&[1, 3]).await;
    assert!(t.text(1).contains("exit code 3"), "{t:?}");
}

#[tokio::test]
async fn attach_runs_like_exec() {
    let node = start().await;
    let (_, mut c) = node
        .spdy(
            "/attach/default/web-0/app?input=1&output=1",
            &ALL_EXEC_PROTOCOLS,
        )
        .await;
    c.open(1, &[("streamType", "error")]).await;
    c.open(3, &[("streamType", "stdin")]).await;
    c.open(5, &[("streamType", "stdout")]).await;
    c.data(3, b"typed\n", true).await;
    let t = c.collect(&[1, 5]).await;
    assert_eq!(t.text(5), "typed\n");
    assert_eq!(t.json(1)["status"], "Success");
}

#[tokio::test]
async fn refusals_before_the_upgrade() {
    let node = start().await;
    let spdy = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
    // Only v5 (WebSocket-only) or v1 offered: 403 naming what is accepted.
    let mut h = spdy.to_vec();
    h.push(("X-Stream-Protocol-Version", "v5.channel.k8s.io"));
    let (status, headers, _, _) = node
        .request("POST", "/exec/default/web-0/app?command=ls&output=1", &h)
        .await;
    assert_eq!(status, 403);
    let accepted: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "x-accepted-stream-protocol-versions")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        accepted,
        vec![
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io"
        ]
    );
    // No protocol header at all: 400.
    let (status, _, _, _) = node
        .request("POST", "/exec/default/web-0/app?command=ls&output=1", &spdy)
        .await;
    assert_eq!(status, 400);
    // No stream asked for: 400.
    let mut h = spdy.to_vec();
    h.push(("X-Stream-Protocol-Version", "v4.channel.k8s.io"));
    let (status, _, _, _) = node
        .request("POST", "/exec/default/web-0/app?command=ls", &h)
        .await;
    assert_eq!(status, 400);
    // A missing pod: 404 with a JSON Status, before any upgrade.
    let (status, headers, mut io, mut buf) = node
        .request("POST", "/exec/default/missing/app?command=ls&output=1", &h)
        .await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let len: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    while buf.len() < len {
        io.read_buf(&mut buf).await.unwrap();
    }
    let body: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["code"], 404);
    // A WebSocket upgrade is refused clearly.
    let ws = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ];
    let (status, _, _, _) = node
        .request("GET", "/exec/default/web-0/app?command=ls&output=1", &ws)
        .await;
    assert_eq!(status, 400);
    // Port-forward wants its own protocol.
    let (status, _, _, _) = node.request("POST", "/portForward/default/web-0", &h).await;
    assert_eq!(status, 403);
}

// ----- plain HTTP routes ----------------------------------------------------------------

/// Reads a chunked body to its end, returning the chunks as they arrived.
async fn read_chunked(io: &mut TlsStream<TcpStream>, buf: &mut BytesMut) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), io.read_buf(buf))
                .await
                .expect("chunk in time")
                .unwrap();
            assert!(n > 0, "EOF inside a chunked body");
        };
        let size_line = String::from_utf8(buf.split_to(line_end + 2).to_vec()).unwrap();
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap(), 16).unwrap();
        while buf.len() < size + 2 {
            let n = io.read_buf(buf).await.unwrap();
            assert!(n > 0, "EOF inside a chunk");
        }
        let data = buf.split_to(size + 2);
        if size == 0 {
            return chunks;
        }
        chunks.push(data[..size].to_vec());
    }
}

#[tokio::test]
async fn logs_follow_streams_until_the_pod_goes() {
    let node = start().await;
    let started = std::time::Instant::now();
    let (status, headers, mut io, mut buf) = node
        .request(
            "GET",
            "/containerLogs/default/web-0/app?follow=true&timestamps=false",
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    let chunks = read_chunked(&mut io, &mut buf).await;
    let text: String = chunks.iter().map(|c| String::from_utf8_lossy(c)).collect();
    assert_eq!(text, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    // New lines arrived as separate, flushed chunks, over time.
    assert!(chunks.len() >= 4, "{chunks:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // limitBytes cuts the stream; a bad container is a plain-text 400.
    let (status, _, mut io, mut buf) = node
        .request("GET", "/containerLogs/default/web-0/app?limitBytes=9", &[])
        .await;
    assert_eq!(status, 200);
    let text: Vec<u8> = read_chunked(&mut io, &mut buf).await.concat();
    assert_eq!(text, b"line 1\nli");
    let (status, headers, _, _) = node
        .request("GET", "/containerLogs/default/web-0/sidecar", &[])
        .await;
    assert_eq!(status, 400);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/plain"));
    let (status, _, _, _) = node
        .request("GET", "/containerLogs/default/web-0/app?tailLines=-2", &[])
        .await;
    assert_eq!(status, 422);
    let (status, _, _, _) = node
        .request("GET", "/containerLogs/default/missing/app", &[])
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn healthz_pods_and_unknown_paths() {
    let node = start().await;
    let (status, _, mut io, mut buf) = node.request("GET", "/healthz", &[]).await;
    assert_eq!(status, 200);
    while buf.len() < 2 {
        io.read_buf(&mut buf).await.unwrap();
    }
    assert_eq!(&buf[..2], b"ok");
    let (status, headers, mut io, mut buf) = node.request("GET", "/pods", &[]).await;
    assert_eq!(status, 200);
    let len: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    while buf.len() < len {
        io.read_buf(&mut buf).await.unwrap();
    }
    let list: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"], serde_json::json!([]));
    let (status, _, _, _) = node.request("GET", "/stats/summary", &[]).await;
    assert_eq!(status, 404);
    let (status, _, _, _) = node.request("DELETE", "/pods", &[]).await;
    assert_eq!(status, 405);
}

// ----- port-forward ---------------------------------------------------------------------

#[tokio::test]
async fn port_forward_echo_and_errors() {
    let node = start().await;
    let (headers, mut c) = node
        .spdy("/portForward/default/web-0", &["portforward.k8s.io"])
        .await;
    assert_eq!(
        header(&headers, "x-stream-protocol-version"),
        Some("portforward.k8s.io")
    );
    // As client-go's portforward: error stream first (closed at once), then data.
    c.open(
        1,
        &[
            ("streamType", "error"),
            ("port", "7777"),
            ("requestID", "0"),
        ],
    )
    .await;
    c.data(1, b"", true).await;
    c.open(
        3,
        &[("streamType", "data"), ("port", "7777"), ("requestID", "0")],
    )
    .await;
    c.data(3, b"ping over spdy", false).await;
    let mut echoed = Vec::new();
    let mut replies = Vec::new();
    while echoed.len() < 14 {
        match c.recv().await {
            Some(Frame::Data {
                stream_id: 3, data, ..
            }) => echoed.extend_from_slice(&data),
            Some(Frame::SynReply { stream_id, .. }) => replies.push(stream_id),
            Some(Frame::Ping { .. }) | Some(Frame::Data { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(replies, vec![1, 3]);
    assert_eq!(echoed, b"ping over spdy");
    // Our half-close reaches the pod; its EOF comes back as FIN on data and error.
    c.data(3, b"", true).await;
    let t = c.collect(&[1, 3]).await;
    assert!(t.fins.contains(&3) && t.fins.contains(&1), "{t:?}");
    assert_eq!(t.text(1), "");

    // A second forwarded connection on the same session, to a closed port.
    c.open(
        5,
        &[
            ("streamType", "error"),
            ("port", "9999"),
            ("requestID", "1"),
        ],
    )
    .await;
    c.open(
        7,
        &[("streamType", "data"), ("port", "9999"), ("requestID", "1")],
    )
    .await;
    let t = c.collect(&[5, 7]).await;
    assert!(
        t.text(5)
            .starts_with("error forwarding port 9999 to pod web-0"),
        "{t:?}"
    );
    assert!(t.text(5).contains("connection refused"));
    assert!(t.resets.iter().any(|(id, _)| *id == 7), "{t:?}");

    // A stream without a port is reset without a reply.
    c.open(9, &[("streamType", "data")]).await;
    let t = c.collect(&[9]).await;
    assert!(t.replies.is_empty(), "{t:?}");

    // Old clients without requestID: pairs by stream id (error n, data n+2).
    c.open(11, &[("streamType", "error"), ("port", "7777")])
        .await;
    c.open(13, &[("streamType", "data"), ("port", "7777")])
        .await;
    c.data(13, b"old", true).await;
    let t = c.collect(&[11, 13]).await;
    assert_eq!(t.text(13), "old");
}

// ----- the real client: client-go's remotecommand and portforward --------------------

/// Runs twin/tests/spdy-client (Go, client-go v0.37.2: the code kube-apiserver uses
/// towards a kubelet) against the server. Ignored by default: it needs Go and the
/// client-go modules (`go build` takes minutes when they are not compiled yet).
/// Run with `cargo test -p stormdrill-twin --test kubelet_api -- --ignored`;
/// `SPDY_CLIENT=/path/to/binary` skips the build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn go_client_interop() {
    let bin = match std::env::var("SPDY_CLIENT") {
        Ok(b) => std::path::PathBuf::from(b),
        Err(_) => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spdy-client");
            let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spdy-client");
            let status = tokio::process::Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(".")
                .current_dir(&dir)
                .env("GOFLAGS", "-mod=mod")
                .status()
                .await
                .expect("go on PATH");
            assert!(status.success(), "go build of tests/spdy-client failed");
            out
        }
    };
    let node = start().await;
    let base = format!("https://localhost:{}", node.addr.port());
    let run = |args: Vec<String>| {
        let bin = bin.clone();
        async move {
            let out = tokio::process::Command::new(&bin)
                .args(&args)
                .output()
                .await
                .expect("run spdy-client");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
                panic!(
                    "{args:?}: {e}: stdout {text:?} stderr {:?}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            v
        }
    };
    let s = |x: &str| x.to_string();
    // exec with stdin: client-go half-closes stdin at EOF; output and exit 0.
    let v = run(vec![
        s("exec"),
        base.clone(),
        s("/exec/default/web-0/app?command=cat&input=1&output=1&error=1"),
        s("hello from client-go\n"),
    ])
    .await;
    assert_eq!(v["stdout"], "hello from client-go\n", "{v}");
    assert_eq!(v["exit"], 0, "{v}");
    // A non-zero exit code arrives as client-go's ExitError.
    let v = run(vec![
        s("exec"),
        base.clone(),
        s("/exec/default/web-0/app?command=sh&command=-c&command=exit%203&output=1&error=1"),
    ])
    .await;
    assert_eq!(v["exit"], 3, "{v}");
    assert_eq!(v["stdout"], "partial\n");
    assert_eq!(v["stderr"], "boom\n");
    // Large output in many frames.
    let v = run(vec![
        s("exec"),
        base.clone(),
        s("/exec/default/web-0/app?command=big&output=1"),
    ])
    .await;
    assert_eq!(v["exit"], 0, "{v}");
    assert_eq!(v["stdout_len"], 200_000, "{}", v["error"]);
    // A missing pod: the JSON Status becomes the error text.
    let v = run(vec![
        s("exec"),
        base.clone(),
        s("/exec/default/missing/app?command=ls&output=1"),
    ])
    .await;
    assert!(
        v["error"].as_str().unwrap_or("").contains("not found"),
        "{v}"
    );
    // port-forward: bytes there and back, half-close honoured.
    let v = run(vec![
        s("portforward"),
        base.clone(),
        s("/portForward/default/web-0"),
        s("7777"),
        s("ping through client-go"),
    ])
    .await;
    assert_eq!(v["echo"], "ping through client-go", "{v}");
}
