//! `exec` and `attach` sessions over SPDY/3.1 (remote command protocols
//! `v4.channel.k8s.io`, and v3/v2 for clients offering nothing newer).
//!
//! Contract, as k8s.io/cri-streaming/pkg/streaming/remotecommand (httpstream.go,
//! exec.go; k8s.io/kubelet/pkg/cri/streaming/remotecommand before 1.37) serves it
//! and k8s.io/client-go/tools/remotecommand (v2.go..v4.go) drives it:
//! - before the upgrade: `input`/`output`/`error`/`tty` flags (`1`), at least one of
//!   the three streams (else 400), `tty` drops `error`; protocol from
//!   `X-Stream-Protocol-Version`, preferring v4 whatever the client's order (v5 is
//!   WebSocket-only and never chosen over SPDY); the chosen one is always echoed in
//!   the 101, or 403 with `X-Accepted-Stream-Protocol-Versions`.
//! - after it: the client opens one stream per channel, told apart by the
//!   `streamType` header (`error`, `stdin`, `stdout`, `stderr`, `resize` when tty on
//!   v3+); each gets a SYN_REPLY; the session waits (30 s) for all it expects.
//! - stdin is read until the client half-closes it (DATA with FIN, which client-go
//!   sends when its stdin ends: `kubectl cp` relies on it), or [`STDIN_IDLE`] of
//!   silence after some data, or [`STDIN_WAIT`] with none, at most [`STDIN_CAP`]
//!   bytes; then the command runs through [`Kubelet::exec`] / [`Kubelet::attach`].
//! - the end, as `connectionContext.finish`: stdin and resize are reset, the status
//!   goes on the error stream (v4: the JSON `metav1.Status` of
//!   [`crate::exec::exit_status`]; v2/v3: the failure message, nothing on success),
//!   stdout, stderr and error are half-closed, and the session waits (bounded by
//!   [`FINISH_WAIT`]) for the client to close the connection before GOAWAY.
//!
//! Resize events (JSON TerminalSize) are accepted and dropped.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::watch;

use super::conn::{Recv, Session, Stream};
use super::server::{self, Body};
use super::{spdy, truthy, ExecCall, ExecResult, Kubelet, KubeletApiError};

pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
/// The protocols served, in the order they are preferred.
pub const PROTOCOLS: [&str; 3] = [V4, V3, V2];

/// How long the client has to open all the streams it asked for.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for the first stdin byte.
pub const STDIN_WAIT: Duration = Duration::from_secs(30);
/// Silence on stdin after some data that ends it when the client never half-closes.
pub const STDIN_IDLE: Duration = Duration::from_secs(2);
/// The most stdin an exec takes.
pub const STDIN_CAP: usize = 16 << 20;
/// How long the session waits, after the status, for the client to close.
pub const FINISH_WAIT: Duration = Duration::from_secs(30);
/// How long the final GOAWAY and half-close wait for the client.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Which container an exec/attach goes to.
#[derive(Clone, Debug)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub attach: bool,
}

/// The streams a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Parses `input`, `output`, `error`, `tty` (remotecommand.NewOptions).
pub fn options(query: &[(String, String)]) -> Result<Options, KubeletApiError> {
    let flag = |k: &str| query.iter().any(|(n, v)| n == k && truthy(v));
    let tty = flag("tty");
    let o = Options {
        stdin: flag("input"),
        stdout: flag("output"),
        // "Access to exec with tty and stderr is not supported, bypassing stderr".
        stderr: flag("error") && !tty,
        tty,
    };
    if !o.stdin && !o.stdout && !o.stderr {
        return Err(KubeletApiError::BadRequest(
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        ));
    }
    Ok(o)
}

/// Answers an `/exec` or `/attach` request: errors, or a 101 and a session task.
pub async fn handle(
    mut req: Request<Incoming>,
    target: Target,
    kubelet: Arc<dyn Kubelet>,
    stop: watch::Receiver<bool>,
) -> Result<Response<Body>, KubeletApiError> {
    let query = server::query_pairs(&req);
    let opts = options(&query)?;
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if !target.attach && command.is_empty() {
        return Err(KubeletApiError::BadRequest(
            "you must specify at least one command for the container".into(),
        ));
    }
    kubelet.lookup(&target.namespace, &target.pod, Some(&target.container))?;
    let protocol = match server::negotiate(&req, &PROTOCOLS) {
        Ok(p) => p,
        Err(resp) => return Ok(*resp),
    };
    server::check_spdy_upgrade(&req)?;
    let call = ExecCall {
        namespace: target.namespace,
        pod: target.pod,
        container: target.container,
        command,
        stdin: None,
        tty: opts.tty,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let attach = target.attach;
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (session, incoming) = Session::start(TokioIo::new(upgraded));
        run(
            session, incoming, opts, protocol, call, attach, kubelet, stop,
        )
        .await;
    });
    Ok(server::switching_protocols(protocol))
}

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
    /// Streams of a type the request did not ask for (or a second of a type).
    extra: Vec<Stream>,
}

/// Waits until every stream `opts` asks for is open (each answered by SYN_REPLY).
async fn accept_streams(
    incoming: &mut tokio::sync::mpsc::Receiver<Stream>,
    opts: Options,
    protocol: &str,
) -> Option<Streams> {
    let resize = opts.tty && protocol != V2;
    let expected =
        1 + opts.stdin as usize + opts.stdout as usize + opts.stderr as usize + resize as usize;
    let mut s = Streams::default();
    let mut got = 0;
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while got < expected {
        let stream = tokio::select! {
            s = incoming.recv() => s?,
            _ = &mut deadline => {
                tracing::debug!("kubelet_api exec: timed out waiting for client to create streams");
                return None;
            }
        };
        if stream.sender.reply().await.is_err() {
            return None;
        }
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        let slot = match kind.as_str() {
            "error" => Some(&mut s.error),
            "stdin" if opts.stdin => Some(&mut s.stdin),
            "stdout" if opts.stdout => Some(&mut s.stdout),
            "stderr" if opts.stderr => Some(&mut s.stderr),
            "resize" if resize => Some(&mut s.resize),
            _ => None,
        };
        match slot {
            Some(slot) if slot.is_none() => {
                *slot = Some(stream);
                got += 1;
            }
            _ => {
                // Replied to and kept, as upstream does, but not counted; it is
                // half-closed at the end so a client reading it sees EOF.
                tracing::debug!("kubelet_api exec: unexpected stream type {kind:?}");
                let mut stream = stream;
                stream.reader.discard();
                s.extra.push(stream);
            }
        }
    }
    Some(s)
}

enum StdinEnd {
    /// FIN, idle, cap or timeout: the command can run.
    Done,
    /// The connection went away.
    Gone,
}

async fn read_stdin(stream: &mut Stream, buf: &mut Vec<u8>) -> StdinEnd {
    let deadline = tokio::time::Instant::now() + STDIN_WAIT;
    loop {
        let wait = if buf.is_empty() {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            STDIN_IDLE
        };
        match tokio::time::timeout(wait, stream.reader.recv()).await {
            Err(_) => return StdinEnd::Done,
            Ok(Recv::Data(b)) => {
                let room = STDIN_CAP.saturating_sub(buf.len());
                buf.extend_from_slice(&b[..b.len().min(room)]);
                if buf.len() >= STDIN_CAP {
                    return StdinEnd::Done;
                }
            }
            Ok(Recv::Fin) | Ok(Recv::Reset(_)) => return StdinEnd::Done,
            Ok(Recv::Gone) => return StdinEnd::Gone,
        }
    }
}

/// The exit code as client-go parses it (`strconv.ParseUint(.., 10, 8)`).
fn wire_exit_code(code: i32) -> i32 {
    if (0..=255).contains(&code) {
        code
    } else {
        255
    }
}

/// The bytes written on the error stream for an outcome, per protocol.
fn status_bytes(
    protocol: &str,
    command: &[String],
    outcome: &Result<ExecResult, KubeletApiError>,
) -> Vec<u8> {
    let status = match outcome {
        Ok(r) => crate::exec::exit_status(command, wire_exit_code(r.exit_code)),
        Err(e) => {
            let msg = format!("error executing command in container: {e}");
            let mut s = e.status();
            if let KubeletApiError::Internal(_) = e {
                s["message"] = format!("Internal error occurred: {msg}").into();
                s["details"] = json!({"causes": [{"message": msg}]});
            }
            s
        }
    };
    if protocol == V4 {
        return serde_json::to_vec(&status).unwrap_or_default();
    }
    // v2/v3 (v1WriteStatusFunc): the message of a failure, nothing on success.
    if status["status"] == "Success" {
        Vec::new()
    } else {
        status["message"]
            .as_str()
            .unwrap_or("command failed")
            .as_bytes()
            .to_vec()
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    session: Session,
    mut incoming: tokio::sync::mpsc::Receiver<Stream>,
    opts: Options,
    protocol: &'static str,
    mut call: ExecCall,
    attach: bool,
    kubelet: Arc<dyn Kubelet>,
    mut stop: watch::Receiver<bool>,
) {
    let streams = tokio::select! {
        s = accept_streams(&mut incoming, opts, protocol) => s,
        _ = server::stopped(&mut stop) => None,
    };
    let Some(mut s) = streams else {
        session.close(CLOSE_LINGER).await;
        return;
    };
    // Streams opened later (a client creating more than its query asked for) are
    // accepted and at once half-closed: nothing is read from or written to them.
    tokio::spawn(async move {
        while let Some(extra) = incoming.recv().await {
            let _ = extra.sender.reply().await;
            let _ = extra.sender.fin().await;
        }
    });
    if let Some(r) = s.resize.as_mut() {
        r.reader.discard();
    }
    if let Some(stdin) = s.stdin.as_mut() {
        // attach: the main process's stdin, always read (the command is not known).
        if attach || kubelet.reads_stdin(&call) {
            let mut buf = Vec::new();
            let end = tokio::select! {
                e = read_stdin(stdin, &mut buf) => e,
                _ = server::stopped(&mut stop) => StdinEnd::Gone,
            };
            call.stdin = Some(buf);
            if let StdinEnd::Gone = end {
                // As a real process would, the command still runs; nobody reads it.
                let job = if attach {
                    kubelet.attach(call)
                } else {
                    kubelet.exec(call)
                };
                tokio::spawn(job);
                return;
            }
        }
        stdin.reader.discard();
    }
    let command = call.command.clone();
    let job = tokio::spawn(if attach {
        kubelet.attach(call)
    } else {
        kubelet.exec(call)
    });
    let outcome = tokio::select! {
        r = job => r.unwrap_or_else(|e| Err(KubeletApiError::Internal(format!("exec task failed: {e}")))),
        // The client left: the task runs to completion on its own.
        _ = session.peer_closed() => return,
        _ = server::stopped(&mut stop) => return,
    };
    if let Ok(r) = &outcome {
        let (out, err) = (s.stdout.as_ref(), s.stderr.as_ref());
        if let Some(out) = out {
            let _ = out.sender.send(&r.stdout).await;
            if opts.tty {
                // A terminal has one output: stderr goes with stdout.
                let _ = out.sender.send(&r.stderr).await;
            }
        }
        if let Some(err) = err {
            let _ = err.sender.send(&r.stderr).await;
        }
    }
    // finish(): stop input, status, end output, wait for the client.
    for st in [s.stdin.as_ref(), s.resize.as_ref()].into_iter().flatten() {
        let _ = st.sender.reset(spdy::RST_CANCEL).await;
    }
    if let Some(e) = s.error.as_ref() {
        let bytes = status_bytes(protocol, &command, &outcome);
        let _ = e.sender.send(&bytes).await;
    }
    for st in [s.stdout.as_ref(), s.stderr.as_ref(), s.error.as_ref()]
        .into_iter()
        .flatten()
        .chain(s.extra.iter())
    {
        let _ = st.sender.fin().await;
    }
    tokio::select! {
        _ = tokio::time::timeout(FINISH_WAIT, session.peer_closed()) => {}
        _ = server::stopped(&mut stop) => {}
    }
    session.close(CLOSE_LINGER).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn options_as_remotecommand_new_options() {
        let o = options(&q(&[
            ("input", "1"),
            ("output", "1"),
            ("error", "1"),
            ("tty", "1"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        assert!(matches!(
            options(&q(&[("tty", "1")])),
            Err(KubeletApiError::BadRequest(_))
        ));
        assert!(options(&q(&[("error", "true")])).unwrap().stderr);
    }

    #[test]
    fn status_per_protocol() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let ok = Ok(ExecResult {
            exit_code: 0,
            ..Default::default()
        });
        let three = Ok(ExecResult {
            exit_code: 3,
            ..Default::default()
        });
        let v: serde_json::Value = serde_json::from_slice(&status_bytes(V4, &cmd, &ok)).unwrap();
        assert_eq!(v, json!({"metadata": {}, "status": "Success"}));
        let v: serde_json::Value = serde_json::from_slice(&status_bytes(V4, &cmd, &three)).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(
            v["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert!(status_bytes(V3, &cmd, &ok).is_empty());
        let msg = String::from_utf8(status_bytes(V3, &cmd, &three)).unwrap();
        assert!(msg.contains("exit code 3"), "{msg}");
        let big = Ok(ExecResult {
            exit_code: 300,
            ..Default::default()
        });
        let v: serde_json::Value = serde_json::from_slice(&status_bytes(V4, &cmd, &big)).unwrap();
        assert_eq!(v["details"]["causes"][0]["message"], "255");
        let nf: Result<ExecResult, _> = Err(KubeletApiError::NotFound(
            "container \"x\" not found".into(),
        ));
        let v: serde_json::Value = serde_json::from_slice(&status_bytes(V4, &cmd, &nf)).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NotFound");
    }
}
