//! The kubelet's streaming and log API, served to a real kube-apiserver.
//!
//! Contract: [`serve`] answers, over TLS, the requests kube-apiserver (1.36/1.37)
//! sends a node's kubelet when it proxies `kubectl exec`, `attach`, `cp`,
//! `port-forward` and `logs`, and hands the work to a [`Kubelet`] (the lead wires it
//! to the twin's simulated pods):
//!
//! | route | answer |
//! |---|---|
//! | `GET/POST /exec/{ns}/{pod}[/{uid}]/{container}?command=..&input=1&output=1&error=1&tty=0` | SPDY/3.1 upgrade, protocol `v4.channel.k8s.io` (v3/v2 if that is all that is offered), [`exec`] |
//! | `GET/POST /attach/{ns}/{pod}[/{uid}]/{container}?input=..&output=..` | the same session, run by [`Kubelet::attach`] |
//! | `GET/POST /portForward/{ns}/{pod}[/{uid}]` | SPDY/3.1 upgrade, `portforward.k8s.io`, [`portforward`] |
//! | `GET /containerLogs/{ns}/{pod}/{container}?follow=&previous=&timestamps=&tailLines=&sinceSeconds=&sinceTime=&limitBytes=` | raw log bytes, chunked and flushed, [`logs`] |
//! | `GET /healthz` | `ok` |
//! | `GET /pods` | an empty `PodList` |
//!
//! Upstream followed (read from the Go module cache, v0.37.2 / v1.37.2):
//! k8s.io/kubernetes/pkg/kubelet/server/server.go (routes and their errors),
//! k8s.io/cri-streaming/pkg/streaming/{remotecommand,portforward} (the kubelet/CRI
//! side of the sessions; k8s.io/kubelet/pkg/cri/streaming before 1.37),
//! k8s.io/streaming/pkg/httpstream{,/spdy} (handshake and SPDY connection;
//! k8s.io/apimachinery/pkg/util/httpstream before 1.37), moby/spdystream (frames),
//! and the client side the apiserver runs: k8s.io/client-go/tools/remotecommand and
//! tools/portforward.
//!
//! Errors before an upgrade are a JSON `metav1.Status` with the HTTP code of the
//! [`KubeletApiError`] (client-go's SPDY round-tripper decodes that body into a
//! `StatusError`, so kubectl prints its message); `/containerLogs` errors are plain
//! text as the kubelet writes them, because the apiserver's log streamer wraps the
//! body verbatim into its own error message. WebSocket upgrades to the kubelet
//! (`ExtendWebSocketsToKubelet`) are refused with 400: the node must not declare it.
//! The client certificate the apiserver presents is neither required nor checked
//! (that is the `rustls::ServerConfig`'s business; `with_no_client_auth` is fine).

pub mod conn;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod server;
pub mod spdy;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{json, Value};

pub use server::serve;

/// One `exec` (or `attach`) request, its stdin already collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCall {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Empty for `attach` unless [`Kubelet::attach`] fills it.
    pub command: Vec<String>,
    /// Everything the client sent on stdin until it half-closed it (or went quiet:
    /// see [`exec`]); `None` when no stdin stream was requested or
    /// [`Kubelet::reads_stdin`] said the command does not read it.
    pub stdin: Option<Vec<u8>>,
    pub tty: bool,
}

/// What a finished command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// 0..=255 as a process reports it; anything else is sent as 255 (client-go
    /// parses the exit code as an unsigned 8-bit number).
    pub exit_code: i32,
}

/// The query of `GET /containerLogs/{ns}/{pod}/{container}` (v1.PodLogOptions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// `tailLines` (or the legacy `tail`; `tail=all` means none). Never negative.
    pub tail_lines: Option<i64>,
    /// `sinceSeconds`, or `sinceTime` converted to seconds before now (at least 1).
    pub since_seconds: Option<i64>,
    /// `limitBytes` (at least 1); the server also cuts the stream there.
    pub limit_bytes: Option<i64>,
}

/// A bidirectional byte stream (a simulated or real process's port).
pub trait AsyncReadWrite: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// Why a request failed; maps to the HTTP code and `metav1.Status` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeletApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl KubeletApiError {
    pub fn code(&self) -> u16 {
        match self {
            KubeletApiError::NotFound(_) => 404,
            KubeletApiError::BadRequest(_) => 400,
            KubeletApiError::Forbidden(_) => 403,
            KubeletApiError::Invalid(_) => 422,
            KubeletApiError::Unavailable(_) => 503,
            KubeletApiError::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            KubeletApiError::NotFound(_) => "NotFound",
            KubeletApiError::BadRequest(_) => "BadRequest",
            KubeletApiError::Forbidden(_) => "Forbidden",
            KubeletApiError::Invalid(_) => "Invalid",
            KubeletApiError::Unavailable(_) => "ServiceUnavailable",
            KubeletApiError::Internal(_) => "InternalError",
        }
    }

    /// The `metav1.Status` for this error.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        })
    }
}

/// What the simulated node does behind the kubelet API.
pub trait Kubelet: Send + Sync + 'static {
    /// Runs a command to completion (stdin already collected: read until the client
    /// half-closes stdin, or a short idle time; see [`exec`]).
    fn exec(&self, call: ExecCall) -> BoxFuture<'static, Result<ExecResult, KubeletApiError>>;

    /// Log bytes; when following, a stream that ends when the pod/container goes away.
    fn logs(
        &self,
        q: LogQuery,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, KubeletApiError>>;

    /// A byte stream to the pod's port (simulated or real process).
    fn port_forward(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, KubeletApiError>>;

    /// `attach` to the container's main process. The default runs `cat` through
    /// [`Kubelet::exec`], as the twin's own API server answers attach: its
    /// containers print nothing new, and what the client types comes back.
    fn attach(
        &self,
        mut call: ExecCall,
    ) -> BoxFuture<'static, Result<ExecResult, KubeletApiError>> {
        call.command = vec!["cat".to_string()];
        self.exec(call)
    }

    /// Whether `call.command` reads stdin; when false the server does not wait for
    /// the client's stdin (e.g. `crate::sim::reads_stdin`). Not asked for attach,
    /// whose stdin is always collected. Default: true.
    fn reads_stdin(&self, call: &ExecCall) -> bool {
        let _ = call;
        true
    }

    /// Checked before a session is upgraded, so a missing pod or container is a
    /// 404 the client can show (`container` is None for port-forward). Default: Ok.
    fn lookup(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<(), KubeletApiError> {
        let _ = (namespace, pod, container);
        Ok(())
    }
}

/// `"1"`, `"true"` (any case) and `"t"` are true, as the kubelet's parsers accept.
pub(crate) fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "t")
}
