//! `pods/exec` over WebSockets (the Kubernetes channel protocols
//! `v5.channel.k8s.io` and `v4.channel.k8s.io`, as kube-rs and kubectl ≥ 1.31 speak
//! them; SPDY is not served) and `pods/log`, answered by the simulated containers
//! of [`crate::sim`].
//!
//! Channel protocol: every binary message starts with a channel byte: 0 stdin,
//! 1 stdout, 2 stderr, 3 error (a JSON `metav1.Status`: `Success`, or `Failure`
//! with reason `NonZeroExitCode` and an `ExitCode` cause), 4 resize; v5 adds
//! 255 (close a channel: `[255, 0]` is the client's end of stdin). As upstream, the
//! server first sends an empty message on the lowest output channel, then the
//! command's output, the status, and closes the connection.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::ctx::{obj, Ctx};
use crate::error::ApiError;
use crate::server::{Body, Server};
use crate::sim::{ExecOutput, ExecRequest};

/// The channel protocols served, newest first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// The most stdin an exec takes.
const STDIN_CAP: usize = 16 << 20;
/// How long an exec waits for the client to close stdin.
const STDIN_WAIT: Duration = Duration::from_secs(30);
/// v4 cannot signal the end of stdin: it ends after this much silence.
const V4_STDIN_IDLE: Duration = Duration::from_millis(500);
const FRAME: usize = 32 << 10;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

/// The names of a pod's containers (`spec.containers` then, with `init`, init ones).
fn container_names(pod: &Value, init: bool) -> Vec<String> {
    let mut ptrs = vec!["/spec/containers"];
    if init {
        ptrs.push("/spec/initContainers");
    }
    ptrs.iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

fn container_spec<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|c| c["name"] == name)
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|c| c["name"] == name)
}

/// The address the API server would dial for the pod's kubelet.
fn node_address(ctx: &Ctx, node: &str) -> String {
    ctx.client
        .get("", "nodes", None, node)
        .and_then(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|x| x["type"] == "InternalIP")
                        .and_then(|x| x["address"].as_str().map(String::from))
                })
        })
        .unwrap_or_else(|| node.to_string())
}

/// Resolves a container's environment as the kubelet would (the subset the twin
/// models: literal values, fieldRef, configMap/secret key refs, envFrom).
fn container_env(ctx: &Ctx, pod: &Value, container: &Value) -> Vec<(String, String)> {
    let ns = obj::namespace(pod);
    let hostname = obj::str_at(pod, "/spec/hostname").unwrap_or(obj::name(pod));
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), hostname.to_string()),
        ("HOME".into(), "/root".into()),
    ];
    if let Some(ip) = ctx
        .client
        .get("", "services", Some("default"), "kubernetes")
        .and_then(|s| obj::str_at(&s, "/spec/clusterIP").map(String::from))
    {
        env.push(("KUBERNETES_SERVICE_HOST".into(), ip.clone()));
        env.push(("KUBERNETES_SERVICE_PORT".into(), "443".into()));
        env.push(("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into()));
        env.push(("KUBERNETES_PORT".into(), format!("tcp://{ip}:443")));
    }
    let data_of = |plural: &str, name: &str| -> Option<serde_json::Map<String, Value>> {
        let o = ctx.client.get("", plural, Some(ns), name)?;
        let mut data = o["data"].as_object().cloned().unwrap_or_default();
        if plural == "secrets" {
            use base64::Engine;
            for v in data.values_mut() {
                let decoded = v
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                *v = Value::String(decoded);
            }
            if let Some(sd) = o["stringData"].as_object() {
                data.extend(sd.clone());
            }
        }
        Some(data)
    };
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        let src = if let Some(n) = from.pointer("/configMapRef/name").and_then(Value::as_str) {
            data_of("configmaps", n)
        } else if let Some(n) = from.pointer("/secretRef/name").and_then(Value::as_str) {
            data_of("secrets", n)
        } else {
            None
        };
        for (k, v) in src.unwrap_or_default() {
            env.push((format!("{prefix}{k}"), v.as_str().unwrap_or("").to_string()));
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let value = if let Some(v) = e["value"].as_str() {
            Some(v.to_string())
        } else if let Some(path) = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            match path {
                "metadata.name" => Some(obj::name(pod).to_string()),
                "metadata.namespace" => Some(ns.to_string()),
                "metadata.uid" => Some(obj::uid(pod).to_string()),
                "spec.nodeName" => obj::str_at(pod, "/spec/nodeName").map(String::from),
                "spec.serviceAccountName" => Some(
                    obj::str_at(pod, "/spec/serviceAccountName")
                        .unwrap_or("default")
                        .to_string(),
                ),
                "status.podIP" => obj::str_at(pod, "/status/podIP").map(String::from),
                "status.hostIP" => obj::str_at(pod, "/status/hostIP").map(String::from),
                p => p
                    .strip_prefix("metadata.labels['")
                    .map(|k| ("/metadata/labels/", k))
                    .or_else(|| {
                        p.strip_prefix("metadata.annotations['")
                            .map(|k| ("/metadata/annotations/", k))
                    })
                    .and_then(|(base, k)| {
                        let k = k
                            .trim_end_matches("']")
                            .replace('~', "~0")
                            .replace('/', "~1");
                        obj::str_at(pod, &format!("{base}{k}")).map(String::from)
                    }),
            }
        } else {
            let (plural, sel) = match (
                e.pointer("/valueFrom/configMapKeyRef"),
                e.pointer("/valueFrom/secretKeyRef"),
            ) {
                (Some(s), _) => ("configmaps", s),
                (_, Some(s)) => ("secrets", s),
                _ => continue,
            };
            sel["name"]
                .as_str()
                .and_then(|n| data_of(plural, n))
                .and_then(|d| d.get(sel["key"].as_str().unwrap_or("")).cloned())
                .and_then(|v| v.as_str().map(String::from))
        };
        env.push((name.to_string(), value.unwrap_or_default()));
    }
    env
}

/// The request a command run in `container` of `pod` makes of the simulation
/// (environment resolved; stdin not yet read).
pub fn exec_request(ctx: &Ctx, pod: &Value, container: &str, command: Vec<String>) -> ExecRequest {
    let spec = container_spec(pod, container)
        .cloned()
        .unwrap_or(Value::Null);
    ExecRequest {
        namespace: obj::namespace(pod).to_string(),
        pod: obj::name(pod).to_string(),
        pod_uid: obj::uid(pod).to_string(),
        container: container.to_string(),
        image: spec["image"].as_str().unwrap_or("").to_string(),
        command,
        stdin: None,
        env: container_env(ctx, pod, &spec),
    }
}

/// Looks up the pod and checks the container can be reached as the API server and
/// kubelet would before streaming; returns the pod and the chosen container.
fn reachable_container(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    container: Option<&str>,
) -> Result<(Value, String), ApiError> {
    let pod = ctx
        .client
        .get("", "pods", Some(ns), name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => only_container(&pod, name)?,
    };
    if container_spec(&pod, &container).is_none() {
        return Err(bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    Ok((pod, container))
}

/// The container a request that names none means: the pod's only one. Several is a
/// 400 listing them, as kube-apiserver's pod strategy (`streamLocation`) answers
/// exec, attach and logs; picking one is the client's job (kubectl's
/// `default-container` annotation, or its first container).
fn only_container(pod: &Value, name: &str) -> Result<String, ApiError> {
    let names = container_names(pod, false);
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(bad_request(format!("pod {name} has no containers"))),
        many => {
            let init = container_names(pod, true).split_off(many.len());
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                many.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(bad_request(msg))
        }
    }
}

/// The API server's checks before it dials the pod's kubelet: a node assigned, and
/// powered on.
pub(crate) fn dial_kubelet(ctx: &Ctx, pod: &Value, name: &str) -> Result<String, ApiError> {
    let node = obj::str_at(pod, "/spec/nodeName").unwrap_or("");
    if node.is_empty() {
        return Err(bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    if !ctx.power.is_on(node) {
        return Err(ApiError::internal(format!(
            "error dialing backend: dial tcp {}:10250: connect: no route to host",
            node_address(ctx, node)
        )));
    }
    Ok(node.to_string())
}

struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn header_values(req: &Request<Incoming>, name: header::HeaderName) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub async fn handle_exec(
    s: &Server,
    mut req: Request<Incoming>,
    ns: &str,
    name: &str,
    _q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let ctx = &s.ctx;
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let streams = Streams {
        stdin: get("stdin").is_some_and(truthy),
        stdout: get("stdout").is_some_and(truthy),
        stderr: get("stderr").is_some_and(truthy),
        tty: get("tty").is_some_and(truthy),
    };
    let (pod, container) = reachable_container(ctx, ns, name, get("container"))?;
    let attach = req.uri().path().ends_with("/attach");
    if command.is_empty() && !attach {
        return Err(bad_request(
            "you must specify at least one command for the container",
        ));
    }
    if !(streams.stdin || streams.stdout || streams.stderr) {
        return Err(bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if let Some(phase @ ("Succeeded" | "Failed")) = obj::str_at(&pod, "/status/phase") {
        return Err(bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    dial_kubelet(ctx, &pod, name)?;
    let running =
        container_status(&pod, &container).is_some_and(|c| c.pointer("/state/running").is_some());
    if !running {
        return Err(bad_request(format!(
            "unable to upgrade connection: container not found (\"{container}\")"
        )));
    }

    // The WebSocket handshake.
    let is_ws = header_values(&req, header::UPGRADE)
        .iter()
        .any(|u| u.eq_ignore_ascii_case("websocket"));
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(String::from);
    let (true, Some(key)) = (is_ws, key) else {
        return Err(bad_request(
            "Upgrade request required: the twin serves exec over WebSockets only (v5.channel.k8s.io, v4.channel.k8s.io)",
        ));
    };
    let offered = header_values(&req, header::SEC_WEBSOCKET_PROTOCOL);
    let Some(protocol) = offered
        .iter()
        .find(|p| PROTOCOLS.contains(&p.as_str()))
        .cloned()
    else {
        return Err(bad_request(format!(
            "none of the offered WebSocket subprotocols {offered:?} is supported (supported: {PROTOCOLS:?})"
        )));
    };
    let mut er = exec_request(ctx, &pod, &container, command);
    if attach {
        // Attaching to the main process: the twin's containers print nothing new.
        er.command = vec!["cat".into()];
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let v5 = protocol.starts_with("v5.");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session(ws, ctx, er, streams, v5).await;
    });
    Ok(websocket_accept(&key, &protocol))
}

/// The `101 Switching Protocols` answer to a WebSocket upgrade with `key`, choosing
/// subprotocol `protocol`.
pub(crate) fn websocket_accept(key: &str, protocol: &str) -> Response<Body> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Full::new(Bytes::new()).boxed());
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = header::HeaderValue::from_str(protocol) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    resp
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

/// The error-channel Status for a finished command.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

enum Stdin {
    Done(Vec<u8>),
    /// The client closed the connection (its output can no longer be sent).
    Gone(Vec<u8>),
}

async fn read_stdin(ws: &mut Ws, v5: bool) -> Stdin {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + STDIN_WAIT;
    loop {
        let wait = if v5 || buf.is_empty() {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            V4_STDIN_IDLE
        };
        let msg = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Stdin::Done(buf),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Stdin::Gone(buf),
            Ok(Some(Ok(m))) => m,
        };
        if let Message::Binary(b) = msg {
            match b.first() {
                Some(&STDIN) => buf.extend_from_slice(&b[1..]),
                Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => return Stdin::Done(buf),
                _ => {}
            }
            if buf.len() >= STDIN_CAP {
                buf.truncate(STDIN_CAP);
                return Stdin::Done(buf);
            }
        }
    }
}

async fn run(ctx: &Ctx, er: ExecRequest) -> ExecOutput {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || ctx.sim.exec(&ctx, &er))
        .await
        .unwrap_or_else(|e| ExecOutput::fail(126, format!("exec failed: {e}\n")))
}

async fn session(mut ws: Ws, ctx: Ctx, mut er: ExecRequest, streams: Streams, v5: bool) {
    // Upstream tells the client the streams are ready with an empty message on the
    // lowest output channel.
    let first = if streams.stdout {
        STDOUT
    } else if streams.stderr {
        STDERR
    } else {
        ERROR
    };
    if ws.send(frame(first, &[])).await.is_err() {
        return;
    }
    if streams.stdin && crate::sim::reads_stdin(&er.command) {
        match read_stdin(&mut ws, v5).await {
            Stdin::Done(b) => er.stdin = Some(b),
            Stdin::Gone(b) => {
                // The process still runs to completion; nobody reads its output.
                er.stdin = Some(b);
                run(&ctx, er).await;
                return;
            }
        }
    }
    let command = er.command.clone();
    let job = run(&ctx, er);
    tokio::pin!(job);
    // Keep reading meanwhile: pings are answered, a closed client ends the session.
    let out = loop {
        tokio::select! {
            out = &mut job => break out,
            msg = ws.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    let mut messages = Vec::new();
    let (out_ch, err_ch) = (STDOUT, if streams.tty { STDOUT } else { STDERR });
    if streams.stdout {
        messages.extend(out.stdout.chunks(FRAME).map(|c| frame(out_ch, c)));
    }
    if streams.stderr || (streams.tty && streams.stdout) {
        messages.extend(out.stderr.chunks(FRAME).map(|c| frame(err_ch, c)));
    }
    let status = serde_json::to_vec(&exit_status(&command, out.exit_code)).unwrap_or_default();
    messages.push(frame(ERROR, &status));
    for m in messages {
        if ws.feed(m).await.is_err() {
            return;
        }
    }
    if ws.flush().await.is_err() {
        return;
    }
    // A normal closure (1000): client-go reads any other code as an error.
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    // Wait (bounded) for the client's close reply so the connection ends cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

// ----- logs -------------------------------------------------------------------------

struct LogOptions {
    timestamps: bool,
    tail: Option<usize>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    limit_bytes: Option<usize>,
}

fn format_line(l: &crate::sim::LogLine, timestamps: bool) -> String {
    if timestamps {
        format!("{} {}\n", l.timestamp(), l.line)
    } else {
        format!("{}\n", l.line)
    }
}

pub async fn handle_logs(
    s: &Server,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let ctx = &s.ctx;
    let pod = ctx
        .client
        .get("", "pods", Some(ns), name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.clone(),
        None => only_container(&pod, name)?,
    };
    if container_spec(&pod, &container).is_none() {
        return Err(bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let parse_num = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| bad_request(format!("invalid {k}: {v}")))
            })
            .transpose()
    };
    let since = match (parse_num("sinceSeconds")?, q.get("sinceTime")) {
        (Some(s), _) if s < 1 => {
            return Err(ApiError::invalid(
                "",
                "PodLogOptions",
                "",
                vec![
                    json!({"reason": "FieldValueInvalid", "field": "sinceSeconds", "message": "must be greater than 0"}),
                ],
            ))
        }
        (Some(s), _) => Some(chrono::Utc::now() - chrono::Duration::seconds(s)),
        (None, Some(t)) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| bad_request(format!("invalid sinceTime: {e}")))?
                .with_timezone(&chrono::Utc),
        ),
        (None, None) => None,
    };
    let opts = LogOptions {
        timestamps: q.get("timestamps").is_some_and(|v| truthy(v)),
        tail: parse_num("tailLines")?
            .filter(|n| *n >= 0)
            .map(|n| n as usize),
        since,
        limit_bytes: parse_num("limitBytes")?
            .filter(|n| *n > 0)
            .map(|n| n as usize),
    };
    let follow = q.get("follow").is_some_and(|v| truthy(v));
    let previous = q.get("previous").is_some_and(|v| truthy(v));

    if obj::str_at(&pod, "/spec/nodeName").unwrap_or("").is_empty() {
        // Upstream: no node, no location, an empty log.
        return Ok(text_response(Full::new(Bytes::new()).boxed()));
    }
    let node = obj::str_at(&pod, "/spec/nodeName").unwrap_or("");
    if !ctx.power.is_on(node) {
        return Err(ApiError::internal(format!(
            "Get \"https://{}:10250/containerLogs/{ns}/{name}/{container}\": dial tcp {}:10250: connect: no route to host",
            node_address(ctx, node),
            node_address(ctx, node)
        )));
    }
    let status = container_status(&pod, &container);
    if previous {
        let restarted = status.is_some_and(|c| c["restartCount"].as_i64().unwrap_or(0) > 0);
        if !restarted {
            return Err(bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
    } else {
        let waiting = status.map_or(Some("ContainerCreating"), |c| {
            if c.pointer("/state/waiting").is_some() && c.pointer("/lastState/terminated").is_none()
            {
                Some(
                    c.pointer("/state/waiting/reason")
                        .and_then(Value::as_str)
                        .unwrap_or("ContainerCreating"),
                )
            } else {
                None
            }
        });
        if let Some(reason) = waiting {
            return Err(bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
    }

    let mut lines = ctx.sim.log_lines(ns, name, &container, previous);
    if let Some(t) = opts.since {
        lines.retain(|l| l.time >= t);
    }
    if let Some(n) = opts.tail {
        let drop = lines.len().saturating_sub(n);
        lines.drain(..drop);
    }
    let mut text: String = lines
        .iter()
        .map(|l| format_line(l, opts.timestamps))
        .collect();
    let mut remaining = opts.limit_bytes;
    if let Some(limit) = remaining {
        if text.len() >= limit {
            text = String::from_utf8_lossy(&text.as_bytes()[..limit]).into_owned();
        }
        remaining = Some(limit - text.len());
    }
    if !follow || previous || remaining == Some(0) {
        return Ok(text_response(Full::new(Bytes::from(text)).boxed()));
    }

    // Following: the lines so far, then new ones until the container restarts, the
    // pod goes away or the client does.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let (so_far, restarts) = ctx.sim.log_lines_after(ns, name, &container, 0);
    let follower = Follower {
        ctx: ctx.clone(),
        ns: ns.to_string(),
        pod: name.to_string(),
        uid: obj::uid(&pod).to_string(),
        container,
        last: so_far.last().map(|l| l.seq).unwrap_or(0),
        restarts,
        timestamps: opts.timestamps,
        remaining,
    };
    if !text.is_empty() {
        let _ = tx.try_send(Bytes::from(text));
    }
    tokio::spawn(follower.run(tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(Frame::data(chunk)), rx))
    });
    Ok(text_response(BodyExt::boxed(StreamBody::new(stream))))
}

struct Follower {
    ctx: Ctx,
    ns: String,
    pod: String,
    uid: String,
    container: String,
    last: u64,
    restarts: u64,
    timestamps: bool,
    remaining: Option<usize>,
}

impl Follower {
    fn pod_alive(&self) -> bool {
        self.ctx
            .client
            .get("", "pods", Some(&self.ns), &self.pod)
            .is_some_and(|p| {
                obj::uid(&p) == self.uid
                    && !matches!(
                        obj::str_at(&p, "/status/phase"),
                        Some("Succeeded" | "Failed")
                    )
            })
    }

    async fn run(mut self, tx: tokio::sync::mpsc::Sender<Bytes>) {
        let mut changes = self.ctx.sim.log_changes();
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let (lines, restarts) =
                self.ctx
                    .sim
                    .log_lines_after(&self.ns, &self.pod, &self.container, self.last);
            if restarts != self.restarts {
                return;
            }
            if let Some(l) = lines.last() {
                self.last = l.seq;
                let mut text: String = lines
                    .iter()
                    .map(|l| format_line(l, self.timestamps))
                    .collect();
                if let Some(rem) = self.remaining {
                    if text.len() >= rem {
                        text = String::from_utf8_lossy(&text.as_bytes()[..rem]).into_owned();
                    }
                    self.remaining = Some(rem - text.len());
                }
                if tx.send(Bytes::from(text)).await.is_err() || self.remaining == Some(0) {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = tx.closed() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = check.tick() => if !self.pod_alive() { return },
            }
        }
    }
}

fn text_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .expect("valid response")
}
