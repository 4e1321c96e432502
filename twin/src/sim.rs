//! Simulated containers: what a command run in a container (exec) answers, what an
//! HTTP port of a pod serves (reached through the service proxy), and what
//! containers logged. The stack registers handlers per container image.
//!
//! Exec: every container answers a small busybox-like set of commands natively
//! (`true`, `false`, `echo`, `hostname`, `cat /etc/hostname`, `cat` of stdin, `env`,
//! `sleep N` (capped at [`SLEEP_CAP`]), `nslookup`, `getent hosts`, `curl`/`wget` of
//! Services and pods (their registered HTTP handlers), `grep`, `head`/`tail` (lines
//! or `-c` bytes), `wc -l`, `exit N`, and over the container's in-memory files
//! ([`crate::simfs`]) `tar`, `ls`, `cat FILE`, `test`/`[`, `mkdir`, `rm`), and
//! `sh -c SCRIPT` runs a small shell over them (`;`, `&&`,
//! `||`, `|`, quotes, `$VAR`, `2>&1`, `>/dev/null`). Every other command goes to the
//! handler registered for the container's image ([`Sim::register_exec`]); without
//! one it fails as a shell does: exit 127, `sh: CMD: not found`. Handlers are
//! synchronous: callers run [`Sim::exec`] on a blocking thread.
//!
//! Name resolution follows CoreDNS with the kubelet's resolv.conf (search
//! `<ns>.svc.cluster.local svc.cluster.local cluster.local`, ndots 5): Services by
//! `<svc>.<ns>.svc.cluster.local` (headless ones to their Ready pods' IPs), pods of a
//! headless Service by `<hostname>.<subdomain>.<ns>.svc.cluster.local`, and
//! `<a-b-c-d>.<ns>.pod.cluster.local`. It works only while a Ready kube-dns pod runs
//! on a powered-on node, as queries need a live CoreDNS.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::ctx::{obj, Ctx};
use crate::simfs;

/// Log lines kept per container (oldest dropped first).
const LOG_CAP: usize = 10_000;
/// The longest `sleep` a simulated container performs.
pub const SLEEP_CAP: Duration = Duration::from_secs(5);
/// Cluster domain of the twin's DNS.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// One command run in a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    /// The pod's UID: a new pod of the same name has new files ([`crate::simfs`]).
    pub pod_uid: String,
    pub container: String,
    pub image: String,
    /// argv; for `sh -c` scripts, each simple command of the script.
    pub command: Vec<String>,
    /// What the client sent on stdin (None: stdin was not attached).
    pub stdin: Option<Vec<u8>>,
    /// The container's environment (PATH, HOSTNAME, KUBERNETES_SERVICE_*, spec env).
    pub env: Vec<(String, String)>,
}

impl ExecRequest {
    /// An environment variable of the container.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        env_lookup(&self.env, name)
    }
}

/// A variable of an environment list (the last definition wins, as in the kubelet).
pub fn env_lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a command printed and how it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl ExecOutput {
    /// Exit 0 with this stdout.
    pub fn ok(stdout: impl Into<Vec<u8>>) -> ExecOutput {
        ExecOutput {
            stdout: stdout.into(),
            ..Default::default()
        }
    }

    /// A non-zero exit with this stderr.
    pub fn fail(exit_code: i32, stderr: impl Into<Vec<u8>>) -> ExecOutput {
        ExecOutput {
            stderr: stderr.into(),
            exit_code,
            ..Default::default()
        }
    }

    /// What a shell answers for a command it cannot find (exit 127).
    pub fn not_found(cmd: &str) -> ExecOutput {
        ExecOutput::fail(127, format!("sh: {cmd}: not found\n"))
    }
}

pub type ExecHandler = Arc<dyn Fn(&ExecRequest) -> ExecOutput + Send + Sync>;

/// An HTTP request to a pod's port (through the service proxy).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    /// Path with the query, e.g. `/healthz?verbose=1` (at least `/`).
    pub path: String,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub namespace: String,
    pub pod: String,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, body: &Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
}

pub type HttpHandler = Arc<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

/// One log line of a container.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Increasing across all containers (for following).
    pub seq: u64,
    pub time: chrono::DateTime<chrono::Utc>,
    pub line: String,
}

impl LogLine {
    /// RFC 3339 with nanoseconds, as the kubelet prints with `timestamps=true`.
    pub fn timestamp(&self) -> String {
        self.time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }
}

#[derive(Default)]
struct ContainerLog {
    current: VecDeque<LogLine>,
    previous: Vec<LogLine>,
    restarts: u64,
}

type LogKey = (String, String, String);

pub struct Sim {
    logs: Mutex<HashMap<LogKey, ContainerLog>>,
    seq: AtomicU64,
    log_changes: watch::Sender<u64>,
    exec_handlers: RwLock<Vec<(String, ExecHandler)>>,
    http_handlers: RwLock<Vec<(String, u16, HttpHandler)>>,
    /// The containers' files (`tar`, `ls`, `cat FILE`, ...).
    pub files: crate::simfs::FsStore,
}

impl Default for Sim {
    fn default() -> Self {
        Sim {
            logs: Mutex::default(),
            seq: AtomicU64::new(0),
            log_changes: watch::channel(0).0,
            exec_handlers: RwLock::default(),
            http_handlers: RwLock::default(),
            files: crate::simfs::FsStore::default(),
        }
    }
}

fn key(namespace: &str, pod: &str, container: &str) -> LogKey {
    (
        namespace.to_string(),
        pod.to_string(),
        container.to_string(),
    )
}

/// An image reference without registry defaults: `docker.io/library/postgres:16`
/// and `postgres:16` both become `postgres:16`.
fn normalize_image(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let image = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    image.strip_prefix("library/").unwrap_or(image).to_string()
}

/// The repository part of a normalized image (without `:tag`).
fn repository(image: &str) -> &str {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// How well `prefix` matches `image` (its length), or None. A prefix matches the
/// image repository on a path boundary (`postgres` matches `postgres:16` and
/// `docker.io/library/postgres`, not `postgres-exporter`), any repository under it
/// when it ends with `/`, and the tag too when it has one (`postgres:16`).
fn image_match(prefix: &str, image: &str) -> Option<usize> {
    let prefix = normalize_image(prefix);
    let image = normalize_image(image);
    let repo = repository(&image);
    let has_tag = repository(&prefix) != prefix;
    let hit = if has_tag {
        image.starts_with(&prefix)
    } else if prefix.ends_with('/') {
        repo.starts_with(&prefix)
    } else {
        repo == prefix || (repo.starts_with(&prefix) && repo[prefix.len()..].starts_with('/'))
    };
    hit.then_some(prefix.len())
}

impl Sim {
    // ----- handlers -------------------------------------------------------------

    /// Registers the exec handler for containers whose image matches `image_prefix`
    /// (the longest matching prefix wins; registering a prefix again replaces it).
    /// It gets every command that is not a built-in (see the module docs).
    pub fn register_exec(
        &self,
        image_prefix: &str,
        handler: impl Fn(&ExecRequest) -> ExecOutput + Send + Sync + 'static,
    ) {
        let mut hs = self
            .exec_handlers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        hs.retain(|(p, _)| p != image_prefix);
        hs.push((image_prefix.to_string(), Arc::new(handler)));
    }

    /// Registers what containers whose image matches `image_prefix` serve over HTTP
    /// on container port `port`.
    pub fn register_http(
        &self,
        image_prefix: &str,
        port: u16,
        handler: impl Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
    ) {
        let mut hs = self
            .http_handlers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        hs.retain(|(p, n, _)| !(p == image_prefix && *n == port));
        hs.push((image_prefix.to_string(), port, Arc::new(handler)));
    }

    pub fn exec_handler(&self, image: &str) -> Option<ExecHandler> {
        let hs = self.exec_handlers.read().unwrap_or_else(|e| e.into_inner());
        hs.iter()
            .filter_map(|(p, h)| image_match(p, image).map(|n| (n, h)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, h)| h.clone())
    }

    /// What any of `pod`'s containers serves on `port`.
    pub fn pod_http_handler(&self, pod: &Value, port: u16) -> Option<HttpHandler> {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|c| self.http_handler(c["image"].as_str().unwrap_or(""), port))
    }

    pub fn http_handler(&self, image: &str, port: u16) -> Option<HttpHandler> {
        let hs = self.http_handlers.read().unwrap_or_else(|e| e.into_inner());
        hs.iter()
            .filter(|(_, n, _)| *n == port)
            .filter_map(|(p, _, h)| image_match(p, image).map(|n| (n, h)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, h)| h.clone())
    }

    // ----- exec -----------------------------------------------------------------

    /// Runs `req.command` in the simulated container. Blocking (handlers, `sleep`):
    /// call it from `spawn_blocking`.
    pub fn exec(&self, ctx: &Ctx, req: &ExecRequest) -> ExecOutput {
        // A container the process runtime runs executes real commands.
        if let Some(out) = ctx.procs.exec(req) {
            return out;
        }
        let mut shell = Shell {
            sim: self,
            ctx,
            req,
            vars: req.env.iter().cloned().collect(),
            status: 0,
            depth: 0,
        };
        shell.run_argv(&req.command, req.stdin.clone())
    }

    // ----- logs -----------------------------------------------------------------

    /// Appends a log line (timestamped now) for a container.
    pub fn log(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        {
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let c = logs.entry(key(namespace, pod, container)).or_default();
            for l in line.lines() {
                c.current.push_back(LogLine {
                    seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
                    time: chrono::Utc::now(),
                    line: l.to_string(),
                });
            }
            while c.current.len() > LOG_CAP {
                c.current.pop_front();
            }
        }
        self.log_changes.send_modify(|g| *g += 1);
    }

    /// A container's log lines as (RFC 3339 timestamp, line).
    pub fn logs(&self, namespace: &str, pod: &str, container: &str) -> Vec<(String, String)> {
        self.log_lines(namespace, pod, container, false)
            .into_iter()
            .map(|l| (l.timestamp(), l.line))
            .collect()
    }

    /// The current (or, with `previous`, the last terminated) instance's log lines.
    pub fn log_lines(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Vec<LogLine> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.get(&key(namespace, pod, container))
            .map(|c| {
                if previous {
                    c.previous.clone()
                } else {
                    c.current.iter().cloned().collect()
                }
            })
            .unwrap_or_default()
    }

    /// Current lines after sequence number `after`, and the container's restart
    /// count (a follower stops when it changes).
    pub fn log_lines_after(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        after: u64,
    ) -> (Vec<LogLine>, u64) {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.get(&key(namespace, pod, container))
            .map(|c| {
                (
                    c.current
                        .iter()
                        .filter(|l| l.seq > after)
                        .cloned()
                        .collect(),
                    c.restarts,
                )
            })
            .unwrap_or_default()
    }

    /// The container restarted (the kubelet calls this): its current log becomes
    /// the `previous=true` log and a new one starts; its files are gone (a new
    /// writable layer).
    pub fn restart_container(&self, namespace: &str, pod: &str, container: &str) {
        self.files.reset_container(namespace, pod, container);
        {
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let c = logs.entry(key(namespace, pod, container)).or_default();
            c.previous = std::mem::take(&mut c.current).into();
            c.restarts += 1;
        }
        self.log_changes.send_modify(|g| *g += 1);
    }

    /// Changes whenever any container logs or restarts.
    pub fn log_changes(&self) -> watch::Receiver<u64> {
        self.log_changes.subscribe()
    }

    /// Forgets a pod's logs and files (the pod object is gone).
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        self.files.forget_pod(namespace, pod);
        {
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            logs.retain(|(ns, p, _), _| !(ns == namespace && p == pod));
        }
        self.log_changes.send_modify(|g| *g += 1);
    }
}

// ----- name resolution -----------------------------------------------------------

/// Why a name did not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// No such name (after trying the search domains).
    NxDomain,
    /// No live CoreDNS answered.
    NoServer,
}

fn pod_ready_on_live_node(ctx: &Ctx, pod: &Value) -> bool {
    obj::is_pod_ready(pod)
        && !obj::is_terminating(pod)
        && obj::str_at(pod, "/spec/nodeName").is_some_and(|n| ctx.power.is_on(n))
}

fn selector_matches(selector: &serde_json::Map<String, Value>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pods a Service's selector picks, in its namespace.
pub fn service_pods(ctx: &Ctx, svc: &Value) -> Vec<Value> {
    let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
        return Vec::new();
    };
    ctx.client
        .list("", "pods", Some(obj::namespace(svc)), None)
        .into_iter()
        .filter(|p| selector_matches(sel, p))
        .collect()
}

/// The cluster DNS server's address, when a live CoreDNS serves it.
pub fn dns_server(ctx: &Ctx) -> Result<String, DnsError> {
    let svc = ctx
        .client
        .get("", "services", Some("kube-system"), "kube-dns")
        .ok_or(DnsError::NoServer)?;
    let live = service_pods(ctx, &svc)
        .iter()
        .any(|p| pod_ready_on_live_node(ctx, p));
    if !live {
        return Err(DnsError::NoServer);
    }
    Ok(obj::str_at(&svc, "/spec/clusterIP")
        .unwrap_or("10.96.0.10")
        .to_string())
}

/// Answers for one fully qualified name (without the trailing dot).
fn lookup_fqdn(ctx: &Ctx, fqdn: &str) -> Vec<String> {
    if fqdn == "localhost" {
        return vec!["127.0.0.1".into()];
    }
    if fqdn.parse::<std::net::IpAddr>().is_ok() {
        return vec![fqdn.to_string()];
    }
    let Some(rest) = fqdn.strip_suffix(&format!(".{CLUSTER_DOMAIN}")) else {
        return Vec::new();
    };
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        [svc, ns, "svc"] => {
            let Some(s) = ctx.client.get("", "services", Some(ns), svc) else {
                return Vec::new();
            };
            match obj::str_at(&s, "/spec/clusterIP") {
                Some("None") => service_pods(ctx, &s)
                    .iter()
                    .filter(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
                    .filter_map(|p| obj::str_at(p, "/status/podIP").map(String::from))
                    .collect(),
                Some(ip) if !ip.is_empty() => vec![ip.to_string()],
                _ => Vec::new(),
            }
        }
        [host, sub, ns, "svc"] => ctx
            .client
            .list("", "pods", Some(ns), None)
            .iter()
            .filter(|p| {
                obj::str_at(p, "/spec/hostname") == Some(host)
                    && obj::str_at(p, "/spec/subdomain") == Some(sub)
                    && !obj::is_terminating(p)
            })
            .filter_map(|p| obj::str_at(p, "/status/podIP").map(String::from))
            .collect(),
        [ip, _ns, "pod"] => {
            let dotted = ip.replace('-', ".");
            if dotted.parse::<std::net::Ipv4Addr>().is_ok() {
                vec![dotted]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// Resolves `name` from a pod in `namespace` as its resolver does (search list,
/// ndots 5). Returns the name that answered and its addresses.
pub fn resolve(ctx: &Ctx, namespace: &str, name: &str) -> Result<(String, Vec<String>), DnsError> {
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.parse::<std::net::IpAddr>().is_ok() {
        return Ok((name.clone(), lookup_fqdn(ctx, &name)));
    }
    dns_server(ctx)?;
    let candidates: Vec<String> = if let Some(abs) = name.strip_suffix('.') {
        vec![abs.to_string()]
    } else {
        let search = [
            format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}"),
            format!("{name}.svc.{CLUSTER_DOMAIN}"),
            format!("{name}.{CLUSTER_DOMAIN}"),
        ];
        if name.matches('.').count() >= 5 {
            std::iter::once(name.clone()).chain(search).collect()
        } else {
            search
                .into_iter()
                .chain(std::iter::once(name.clone()))
                .collect()
        }
    };
    for c in candidates {
        let ips = lookup_fqdn(ctx, &c);
        if !ips.is_empty() {
            return Ok((c, ips));
        }
    }
    Err(DnsError::NxDomain)
}

// ----- the shell ------------------------------------------------------------------

/// A piece of a shell word: literal text or a variable to expand.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Var(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(Vec<Piece>, bool),
    And,
    Or,
    Seq,
    Pipe,
}

fn tokenize(script: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut lit = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    fn flush(lit: &mut String, pieces: &mut Vec<Piece>) {
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(lit)));
        }
    }
    let end_word = |tokens: &mut Vec<Token>,
                    lit: &mut String,
                    pieces: &mut Vec<Piece>,
                    in_word: &mut bool,
                    quoted: &mut bool| {
        if *in_word {
            flush(lit, pieces);
            tokens.push(Token::Word(std::mem::take(pieces), *quoted));
        }
        *in_word = false;
        *quoted = false;
    };
    // Reads `$NAME`, `${NAME}` or `$?` at chars[i] == '$'; returns the next index.
    let var = |i: usize, lit: &mut String, pieces: &mut Vec<Piece>| -> usize {
        let mut j = i + 1;
        if chars.get(j) == Some(&'{') {
            let start = j + 1;
            while j < chars.len() && chars[j] != '}' {
                j += 1;
            }
            flush(lit, pieces);
            pieces.push(Piece::Var(
                chars[start..j.min(chars.len())].iter().collect(),
            ));
            return j + 1;
        }
        if chars.get(j) == Some(&'?') {
            flush(lit, pieces);
            pieces.push(Piece::Var("?".into()));
            return j + 1;
        }
        let start = j;
        while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        if j == start {
            lit.push('$');
        } else {
            flush(lit, pieces);
            pieces.push(Piece::Var(chars[start..j].iter().collect()));
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                end_word(
                    &mut tokens,
                    &mut lit,
                    &mut pieces,
                    &mut in_word,
                    &mut quoted,
                );
                i += 1;
            }
            '\n' | ';' => {
                end_word(
                    &mut tokens,
                    &mut lit,
                    &mut pieces,
                    &mut in_word,
                    &mut quoted,
                );
                tokens.push(Token::Seq);
                i += 1;
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                end_word(
                    &mut tokens,
                    &mut lit,
                    &mut pieces,
                    &mut in_word,
                    &mut quoted,
                );
                tokens.push(Token::And);
                i += 2;
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                end_word(
                    &mut tokens,
                    &mut lit,
                    &mut pieces,
                    &mut in_word,
                    &mut quoted,
                );
                tokens.push(Token::Or);
                i += 2;
            }
            '|' => {
                end_word(
                    &mut tokens,
                    &mut lit,
                    &mut pieces,
                    &mut in_word,
                    &mut quoted,
                );
                tokens.push(Token::Pipe);
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\'' => {
                in_word = true;
                quoted = true;
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|&c| c == '\'') else {
                    return Err("Syntax error: Unterminated quoted string".into());
                };
                lit.extend(&chars[start..start + len]);
                i = start + len + 1;
            }
            '"' => {
                in_word = true;
                quoted = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("Syntax error: Unterminated quoted string".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            lit.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => i = var(i, &mut lit, &mut pieces),
                        Some(&c) => {
                            lit.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(&n) = chars.get(i + 1) {
                    if n != '\n' {
                        lit.push(n);
                    }
                }
                i += 2;
            }
            '$' => {
                in_word = true;
                i = var(i, &mut lit, &mut pieces);
            }
            c => {
                in_word = true;
                lit.push(c);
                i += 1;
            }
        }
    }
    end_word(
        &mut tokens,
        &mut lit,
        &mut pieces,
        &mut in_word,
        &mut quoted,
    );
    Ok(tokens)
}

/// Splits a command line into words the way `sh` would (no expansion).
pub fn split_words(line: &str) -> Vec<String> {
    tokenize(line)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(pieces, _) => Some(
                pieces
                    .into_iter()
                    .map(|p| match p {
                        Piece::Lit(s) => s,
                        Piece::Var(v) => format!("${v}"),
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Commands that never read stdin (the exec session need not wait for it).
const IGNORE_STDIN: &[&str] = &[
    "true", "false", ":", "echo", "hostname", "env", "printenv", "sleep", "nslookup", "getent",
    "exit", "export", "set", "cd", "unset", "trap", "umask", "test", "[", "ls", "mkdir", "rm",
];

/// Whether running `command` may read stdin; an exec session waits for the
/// client's end of stdin only then. Conservative: image handlers may read it.
pub fn reads_stdin(command: &[String]) -> bool {
    let Some(first) = command.first() else {
        return false;
    };
    let base = first.rsplit('/').next().unwrap_or(first);
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    if matches!(base, "sh" | "bash" | "ash" | "dash") {
        return match args.as_slice() {
            ["-c" | "-ec" | "-ce" | "-e" | "-xc", script, ..] => script_reads_stdin(script),
            _ => true,
        };
    }
    if base == "cat" && !args.is_empty() && !args.contains(&"-") {
        return false;
    }
    if base == "tar" {
        // `tar x`/`tar t` of `-` read the archive (kubectl cp into a pod).
        return crate::simfs::parse_tar_args(&args).is_ok_and(|t| t.reads_stdin());
    }
    !IGNORE_STDIN.contains(&base)
}

fn script_reads_stdin(script: &str) -> bool {
    let Ok(tokens) = tokenize(script) else {
        return false;
    };
    let mut at_pipeline_start = true;
    let mut words: Vec<String> = Vec::new();
    let check = |words: &mut Vec<String>, first_in_pipeline: bool| -> bool {
        let argv: Vec<String> = words
            .drain(..)
            .skip_while(|w| w.contains('=') && !w.starts_with('='))
            .filter(|w| !w.contains('>'))
            .collect();
        first_in_pipeline && !argv.is_empty() && reads_stdin(&argv)
    };
    for t in tokens {
        match t {
            Token::Word(pieces, _) => {
                if pieces.iter().any(|p| matches!(p, Piece::Var(_))) && words.is_empty() {
                    return true;
                }
                words.push(
                    pieces
                        .iter()
                        .map(|p| match p {
                            Piece::Lit(s) => s.as_str(),
                            Piece::Var(_) => "",
                        })
                        .collect(),
                );
            }
            Token::Pipe => {
                if check(&mut words, at_pipeline_start) {
                    return true;
                }
                at_pipeline_start = false;
            }
            _ => {
                if check(&mut words, at_pipeline_start) {
                    return true;
                }
                at_pipeline_start = true;
            }
        }
    }
    check(&mut words, at_pipeline_start)
}

/// A pipeline of simple commands, each a list of (word, quoted).
type Pipeline = Vec<Vec<(Vec<Piece>, bool)>>;

struct Shell<'a> {
    sim: &'a Sim,
    ctx: &'a Ctx,
    req: &'a ExecRequest,
    vars: HashMap<String, String>,
    status: i32,
    depth: usize,
}

/// Where a command's output goes after its redirections.
#[derive(Default)]
struct Redirects {
    stdout_null: bool,
    stderr_null: bool,
    stderr_to_stdout: bool,
    stdout_to_stderr: bool,
}

enum Flow {
    Next,
    Exit(i32),
}

impl Shell<'_> {
    fn expand(&self, pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.clone(),
                Piece::Var(v) if v == "?" => self.status.to_string(),
                Piece::Var(v) => self.vars.get(v).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn run_script(&mut self, script: &str, stdin: Option<Vec<u8>>) -> ExecOutput {
        let tokens = match tokenize(script) {
            Ok(t) => t,
            Err(e) => return ExecOutput::fail(2, format!("sh: {e}\n")),
        };
        let mut out = ExecOutput::default();
        // Split into (pipeline, connector-before) items.
        let mut items: Vec<(Option<Token>, Pipeline)> = Vec::new();
        let mut connector: Option<Token> = None;
        let mut pipeline: Pipeline = vec![Vec::new()];
        for t in tokens {
            match t {
                Token::Word(p, q) => pipeline.last_mut().expect("non-empty").push((p, q)),
                Token::Pipe => pipeline.push(Vec::new()),
                sep => {
                    if pipeline.iter().any(|c| !c.is_empty()) {
                        items.push((
                            connector.take(),
                            std::mem::replace(&mut pipeline, vec![Vec::new()]),
                        ));
                    } else if sep != Token::Seq {
                        return ExecOutput::fail(2, "sh: syntax error: unexpected operator\n");
                    }
                    connector = Some(sep);
                }
            }
        }
        if pipeline.iter().any(|c| !c.is_empty()) {
            items.push((connector.take(), pipeline));
        }
        let mut stdin = stdin;
        for (conn, pipeline) in items {
            let skip = match conn {
                Some(Token::And) => self.status != 0,
                Some(Token::Or) => self.status == 0,
                _ => false,
            };
            if skip {
                continue;
            }
            let mut input = stdin.take();
            let n = pipeline.len();
            let mut last = ExecOutput::default();
            for (i, words) in pipeline.into_iter().enumerate() {
                let (r, flow) = self.run_simple(&words, input.take());
                out.stderr.extend_from_slice(&r.stderr);
                if let Flow::Exit(code) = flow {
                    out.stdout.extend_from_slice(&r.stdout);
                    out.exit_code = code;
                    return out;
                }
                if i + 1 < n {
                    input = Some(r.stdout.clone());
                } else {
                    out.stdout.extend_from_slice(&r.stdout);
                }
                last = r;
            }
            self.status = last.exit_code;
        }
        out.exit_code = self.status;
        out
    }

    /// Runs one simple command of a script: assignments, redirections, argv.
    fn run_simple(
        &mut self,
        words: &[(Vec<Piece>, bool)],
        stdin: Option<Vec<u8>>,
    ) -> (ExecOutput, Flow) {
        let mut redirects = Redirects::default();
        let mut argv = Vec::new();
        let mut assignments = Vec::new();
        for (pieces, quoted) in words {
            let w = self.expand(pieces);
            if !quoted {
                match w.as_str() {
                    "2>&1" => {
                        redirects.stderr_to_stdout = true;
                        continue;
                    }
                    ">&2" | "1>&2" => {
                        redirects.stdout_to_stderr = true;
                        continue;
                    }
                    ">/dev/null" | "1>/dev/null" => {
                        redirects.stdout_null = true;
                        continue;
                    }
                    "2>/dev/null" => {
                        redirects.stderr_null = true;
                        continue;
                    }
                    "&>/dev/null" => {
                        redirects.stdout_null = true;
                        redirects.stderr_null = true;
                        continue;
                    }
                    _ => {}
                }
                if argv.is_empty() {
                    if let Some((k, v)) = w.split_once('=') {
                        if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            assignments.push((k.to_string(), v.to_string()));
                            continue;
                        }
                    }
                }
                // Unquoted expansions split on whitespace.
                if pieces.iter().any(|p| matches!(p, Piece::Var(_))) {
                    argv.extend(w.split_whitespace().map(String::from));
                    continue;
                }
            }
            argv.push(w);
        }
        if argv.is_empty() {
            self.vars.extend(assignments);
            return (ExecOutput::default(), Flow::Next);
        }
        let flow_exit = argv[0] == "exit";
        let mut out = match argv[0].as_str() {
            "exit" => ExecOutput {
                exit_code: argv
                    .get(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(self.status),
                ..Default::default()
            },
            "export" => {
                for a in &argv[1..] {
                    if let Some((k, v)) = a.split_once('=') {
                        self.vars.insert(k.into(), v.into());
                    }
                }
                ExecOutput::default()
            }
            "set" | "cd" | "unset" | "trap" | "umask" => ExecOutput::default(),
            _ => {
                let saved = self.vars.clone();
                self.vars.extend(assignments);
                let r = self.run_argv(&argv, stdin);
                self.vars = saved;
                r
            }
        };
        if redirects.stderr_to_stdout {
            let e = std::mem::take(&mut out.stderr);
            out.stdout.extend(e);
        }
        if redirects.stdout_to_stderr {
            let o = std::mem::take(&mut out.stdout);
            out.stderr.extend(o);
        }
        if redirects.stdout_null {
            out.stdout.clear();
        }
        if redirects.stderr_null {
            out.stderr.clear();
        }
        let flow = if flow_exit {
            Flow::Exit(out.exit_code)
        } else {
            Flow::Next
        };
        (out, flow)
    }

    fn run_argv(&mut self, argv: &[String], stdin: Option<Vec<u8>>) -> ExecOutput {
        let Some(first) = argv.first() else {
            return ExecOutput::default();
        };
        let base = first.rsplit('/').next().unwrap_or(first).to_string();
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        if matches!(base.as_str(), "sh" | "bash" | "ash" | "dash") {
            if self.depth > 8 {
                return ExecOutput::fail(2, "sh: nesting too deep\n");
            }
            self.depth += 1;
            let r = match args.as_slice() {
                ["-c", script, ..] | ["-ec" | "-ce" | "-e" | "-xc", script, ..] => {
                    self.run_script(script, stdin)
                }
                [] | ["-s", ..] | ["-"] => {
                    let script = String::from_utf8_lossy(&stdin.unwrap_or_default()).into_owned();
                    self.run_script(&script, None)
                }
                [opt, ..] if opt.starts_with('-') => {
                    ExecOutput::fail(2, format!("{base}: {opt}: invalid option\n"))
                }
                [file, ..] => ExecOutput::fail(
                    127,
                    format!("{base}: can't open '{file}': No such file or directory\n"),
                ),
            };
            self.depth -= 1;
            return r;
        }
        if let Some(r) = self.builtin(&base, &args, stdin.as_deref()) {
            return r;
        }
        if let Some(h) = self.sim.exec_handler(&self.req.image) {
            let mut env: Vec<(String, String)> = self
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            env.sort();
            let sub = ExecRequest {
                command: argv.to_vec(),
                stdin,
                env,
                ..self.req.clone()
            };
            return h(&sub);
        }
        ExecOutput::not_found(first)
    }

    /// `curl URL` / `wget -qO- URL` against Services and pods: resolves the host
    /// (DNS), goes through the Service's endpoints as kube-proxy would and asks
    /// the registered HTTP handler. None when there is no http(s) URL.
    fn http_client(&mut self, cmd: &str, args: &[&str]) -> Option<ExecOutput> {
        let curl = cmd == "curl";
        let mut url = None;
        let mut method = None;
        let mut body = Vec::new();
        let mut headers = Vec::new();
        let (mut fail, mut quiet, mut write_code, mut discard, mut spider) =
            (false, false, false, false, false);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                u if u.starts_with("http://") || u.starts_with("https://") => url = Some(u),
                "-f" | "--fail" | "-sf" | "-fs" | "-fsS" | "-sSf" | "-sfS" => {
                    fail = true;
                    quiet |= a.contains('s');
                }
                "-s" | "-sS" | "--silent" | "-q" | "-qO-" => {
                    quiet = true;
                    if *a == "-qO-" {
                        discard = false;
                    }
                }
                "-O" | "-o" => discard = it.next().is_some_and(|f| *f == "/dev/null"),
                "-O-" | "-O-q" => {}
                "-w" => write_code = it.next().is_some_and(|f| f.contains("http_code")),
                "-X" | "--request" => method = it.next().map(|m| m.to_string()),
                "-d" | "--data" | "--data-raw" => {
                    body = it.next().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
                    method.get_or_insert_with(|| "POST".into());
                }
                "-H" | "--header" => {
                    if let Some((k, v)) = it.next().and_then(|h| h.split_once(':')) {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                "--spider" => spider = true,
                "-m" | "--max-time" | "-T" | "--connect-timeout" | "--retry" => {
                    it.next();
                }
                _ => {}
            }
        }
        let url = url?;
        let (scheme, rest) = url.split_once("://")?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()?),
            None => (hostport, if scheme == "https" { 443 } else { 80 }),
        };
        let fail_with = |curl_code: i32, curl_msg: String, wget_msg: String| {
            if curl {
                ExecOutput::fail(
                    curl_code,
                    if quiet && !args.iter().any(|a| a.contains('S')) {
                        String::new()
                    } else {
                        format!("curl: ({curl_code}) {curl_msg}\n")
                    },
                )
            } else {
                ExecOutput::fail(1, format!("wget: {wget_msg}\n"))
            }
        };
        let ip = match resolve(self.ctx, &self.req.namespace, host) {
            Ok((_, ips)) => ips.into_iter().next().unwrap_or_default(),
            Err(_) => {
                return Some(fail_with(
                    6,
                    format!("Could not resolve host: {host}"),
                    format!("bad address '{hostport}'"),
                ))
            }
        };
        let refused = || {
            fail_with(
                7,
                format!("Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server"),
                format!("can't connect to remote host ({ip}): Connection refused"),
            )
        };
        // A Service's clusterIP goes through its endpoints; a pod IP straight to the pod.
        let services = self.ctx.client.list("", "services", None, None);
        let target = if let Some(svc) = services
            .iter()
            .find(|s| obj::str_at(s, "/spec/clusterIP") == Some(ip.as_str()))
        {
            match crate::proxy::route(
                self.ctx,
                obj::namespace(svc),
                obj::name(svc),
                &port.to_string(),
            ) {
                Ok(t) => t,
                Err(_) => return Some(refused()),
            }
        } else {
            let pods = self.ctx.client.list("", "pods", None, None);
            let Some(pod) = pods.iter().find(|p| {
                obj::str_at(p, "/status/podIP") == Some(ip.as_str()) && !obj::is_terminating(p)
            }) else {
                return Some(refused());
            };
            let live = obj::str_at(pod, "/spec/nodeName").is_some_and(|n| self.ctx.power.is_on(n));
            match (live, self.sim.pod_http_handler(pod, port)) {
                (true, Some(h)) => (obj::name(pod).to_string(), h),
                _ => return Some(refused()),
            }
        };
        let (pod, handler) = target;
        headers.push(("host".into(), hostport.to_string()));
        let method = method.unwrap_or_else(|| if spider { "HEAD" } else { "GET" }.into());
        let resp = handler(&HttpRequest {
            method,
            path: path.to_string(),
            headers,
            body,
            namespace: self.req.namespace.clone(),
            pod,
        });
        if resp.status >= 400 && (fail || !curl) {
            return Some(fail_with(
                22,
                format!("The requested URL returned error: {}", resp.status),
                format!("server returned error: HTTP/1.1 {}", resp.status),
            ));
        }
        let mut stdout = if discard || spider {
            Vec::new()
        } else {
            resp.body
        };
        if write_code {
            stdout.extend_from_slice(resp.status.to_string().as_bytes());
        }
        Some(ExecOutput::ok(stdout))
    }

    /// Runs `f` on this container's files.
    fn files<R>(&self, f: impl FnOnce(&mut simfs::Fs) -> R) -> R {
        let r = self.req;
        self.sim
            .files
            .with(&r.namespace, &r.pod, &r.pod_uid, &r.container, f)
    }

    fn hostname(&self) -> String {
        self.vars
            .get("HOSTNAME")
            .cloned()
            .unwrap_or_else(|| self.req.pod.clone())
    }

    /// The built-in commands; None: not a built-in (the image's handler decides).
    fn builtin(&mut self, cmd: &str, args: &[&str], stdin: Option<&[u8]>) -> Option<ExecOutput> {
        let out = match cmd {
            "true" | ":" => ExecOutput::default(),
            "false" => ExecOutput::fail(1, ""),
            "echo" => {
                let (newline, words) = match args.first() {
                    Some(&"-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                let mut s = words.join(" ");
                if newline {
                    s.push('\n');
                }
                ExecOutput::ok(s)
            }
            "hostname" => ExecOutput::ok(format!("{}\n", self.hostname())),
            "cat" if args.is_empty() || args == ["-"] => {
                ExecOutput::ok(stdin.unwrap_or_default().to_vec())
            }
            "cat" if args == ["/etc/hostname"] => ExecOutput::ok(format!("{}\n", self.hostname())),
            "cat" if args.iter().all(|a| *a == "-" || !a.starts_with('-')) => {
                let missing = self.files(|fs| {
                    args.iter()
                        .any(|a| *a != "-" && fs.get(&simfs::absolute("/", a)).is_none())
                });
                // Files the container never got are the image's business (if it has a handler).
                if missing && self.sim.exec_handler(&self.req.image).is_some() {
                    return None;
                }
                self.files(|fs| simfs::cat(fs, args, stdin))
            }
            "tar" => self.files(|fs| simfs::tar(fs, args, stdin)),
            "ls" => self.files(|fs| simfs::ls(fs, args)),
            "test" | "[" => self.files(|fs| simfs::test(fs, args, cmd == "[")),
            "mkdir" => self.files(|fs| simfs::mkdir(fs, args)),
            "rm" => self.files(|fs| simfs::rm(fs, args)),
            "env" | "printenv" if args.is_empty() => {
                let mut vars: Vec<_> = self.vars.iter().collect();
                vars.sort();
                ExecOutput::ok(
                    vars.iter()
                        .map(|(k, v)| format!("{k}={v}\n"))
                        .collect::<String>(),
                )
            }
            "printenv" => match self.vars.get(args[0]) {
                Some(v) => ExecOutput::ok(format!("{v}\n")),
                None => ExecOutput::fail(1, ""),
            },
            "sleep" => {
                let secs: f64 = args
                    .first()
                    .map(|a| a.trim_end_matches('s'))
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(-1.0);
                if secs < 0.0 {
                    return Some(ExecOutput::fail(1, "sleep: invalid number\n"));
                }
                std::thread::sleep(Duration::from_secs_f64(secs).min(SLEEP_CAP));
                ExecOutput::default()
            }
            "nslookup" => {
                let Some(name) = args.iter().find(|a| !a.starts_with('-')) else {
                    return Some(ExecOutput::fail(1, "Usage: nslookup HOST\n"));
                };
                let server = dns_server(self.ctx);
                match (server, resolve(self.ctx, &self.req.namespace, name)) {
                    (Err(_), _) | (_, Err(DnsError::NoServer)) => ExecOutput {
                        stdout: b";; connection timed out; no servers could be reached\n\n".to_vec(),
                        exit_code: 1,
                        ..Default::default()
                    },
                    (Ok(server), Ok((fqdn, ips))) => {
                        let mut s = format!("Server:\t\t{server}\nAddress:\t{server}:53\n\n");
                        for ip in ips {
                            s.push_str(&format!("Name:\t{fqdn}\nAddress: {ip}\n"));
                        }
                        s.push('\n');
                        ExecOutput::ok(s)
                    }
                    (Ok(server), Err(DnsError::NxDomain)) => ExecOutput {
                        stdout: format!(
                            "Server:\t\t{server}\nAddress:\t{server}:53\n\n** server can't find {name}: NXDOMAIN\n\n"
                        )
                        .into_bytes(),
                        exit_code: 1,
                        ..Default::default()
                    },
                }
            }
            "getent" => match args {
                ["hosts" | "ahosts" | "ahostsv4", names @ ..] if !names.is_empty() => {
                    let mut s = String::new();
                    let mut missing = false;
                    for name in names {
                        match resolve(self.ctx, &self.req.namespace, name) {
                            Ok((fqdn, ips)) => {
                                for ip in ips {
                                    s.push_str(&format!("{ip:<15} {fqdn}\n"));
                                }
                            }
                            Err(_) => missing = true,
                        }
                    }
                    // getent: exit 2 when a key is not found.
                    ExecOutput {
                        stdout: s.into_bytes(),
                        exit_code: if missing { 2 } else { 0 },
                        ..Default::default()
                    }
                }
                _ => ExecOutput::fail(1, "Usage: getent hosts NAME...\n"),
            },
            "grep" => {
                let mut quiet = false;
                let mut invert = false;
                let mut ignore_case = false;
                let mut count = false;
                let mut pattern = None;
                for a in args {
                    match *a {
                        "-q" => quiet = true,
                        "-v" => invert = true,
                        "-i" => ignore_case = true,
                        "-c" => count = true,
                        "-F" | "-E" | "-s" => {}
                        p if pattern.is_none() => pattern = Some(p.to_string()),
                        _ => return None, // files: the image decides
                    }
                }
                let pattern = pattern?;
                let text = String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned();
                let pat = if ignore_case {
                    pattern.to_lowercase()
                } else {
                    pattern
                };
                let hits: Vec<&str> = text
                    .lines()
                    .filter(|l| {
                        let l = if ignore_case {
                            l.to_lowercase()
                        } else {
                            l.to_string()
                        };
                        l.contains(&pat) != invert
                    })
                    .collect();
                let code = if hits.is_empty() { 1 } else { 0 };
                let stdout = if quiet {
                    String::new()
                } else if count {
                    format!("{}\n", hits.len())
                } else {
                    hits.iter().map(|l| format!("{l}\n")).collect()
                };
                ExecOutput {
                    stdout: stdout.into_bytes(),
                    exit_code: code,
                    ..Default::default()
                }
            }
            "head" | "tail" => {
                let mut n = 10usize;
                let mut bytes = None;
                let mut it = args.iter();
                while let Some(a) = it.next() {
                    // `-c N` / `-c+N`: bytes, binary-safe (`tar cf - X | tail -c+N`, what
                    // `kubectl cp --retries` runs).
                    if *a == "-c" {
                        bytes = Some(it.next()?.to_string());
                        continue;
                    }
                    if let Some(v) = a.strip_prefix("-c") {
                        bytes = Some(v.to_string());
                        continue;
                    }
                    let v = match *a {
                        "-n" => *it.next()?,
                        a if a.starts_with("-n") => &a[2..],
                        a if a.starts_with('-') => &a[1..],
                        _ => return None, // files: the image decides
                    };
                    n = v.parse().ok()?;
                }
                if let Some(spec) = bytes {
                    let input = stdin.unwrap_or_default();
                    let (from_start, k) = match spec.strip_prefix('+') {
                        Some(k) => (true, k),
                        None => (false, spec.as_str()),
                    };
                    let k: usize = k.parse().ok()?;
                    let picked = match (cmd, from_start) {
                        ("tail", true) => &input[k.saturating_sub(1).min(input.len())..],
                        ("tail", false) => &input[input.len().saturating_sub(k)..],
                        _ => &input[..k.min(input.len())],
                    };
                    return Some(ExecOutput::ok(picked.to_vec()));
                }
                let text = String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                let pick = if cmd == "head" {
                    &lines[..n.min(lines.len())]
                } else {
                    &lines[lines.len().saturating_sub(n)..]
                };
                ExecOutput::ok(pick.iter().map(|l| format!("{l}\n")).collect::<String>())
            }
            "curl" | "wget" => return self.http_client(cmd, args),
            "wc" if args == ["-l"] => {
                let n = stdin
                    .unwrap_or_default()
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                ExecOutput::ok(format!("{n}\n"))
            }
            _ => return None,
        };
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_on_repository_boundaries() {
        assert!(image_match("postgres", "postgres:16").is_some());
        assert!(image_match("postgres", "docker.io/library/postgres:16.2").is_some());
        assert!(image_match("postgres", "postgres-exporter:1").is_none());
        assert!(image_match("quay.io/ceph/ceph", "quay.io/ceph/ceph:v18.2.4").is_some());
        assert!(image_match("quay.io/ceph/", "quay.io/ceph/ceph:v18").is_some());
        assert!(image_match("quay.io/ceph", "quay.io/ceph/ceph:v18").is_some());
        assert!(image_match("postgres:16", "postgres:16.2").is_some());
        assert!(image_match("postgres:16", "postgres:15").is_none());
        assert!(image_match("localhost:5000/app", "localhost:5000/app:1").is_some());
    }

    #[test]
    fn tokenizes_like_sh() {
        assert_eq!(
            split_words(r#"echo "a b" 'c $d' e\ f"#),
            vec!["echo", "a b", "c $d", "e f"]
        );
        let t = tokenize("a && b || c; d | e").unwrap();
        assert_eq!(
            t.iter()
                .filter(|t| !matches!(t, Token::Word(..)))
                .cloned()
                .collect::<Vec<_>>(),
            vec![Token::And, Token::Or, Token::Seq, Token::Pipe]
        );
        assert!(tokenize("echo 'open").is_err());
    }

    #[test]
    fn knows_which_commands_read_stdin() {
        let argv = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(!reads_stdin(&argv(&["echo", "hi"])));
        assert!(reads_stdin(&argv(&["cat"])));
        assert!(!reads_stdin(&argv(&["cat", "/etc/hostname"])));
        assert!(reads_stdin(&argv(&["psql", "-U", "app"])));
        assert!(!reads_stdin(&argv(&[
            "sh",
            "-c",
            "echo a | grep a; exit 3"
        ])));
        assert!(reads_stdin(&argv(&["sh", "-c", "cat; echo done"])));
        assert!(reads_stdin(&argv(&["sh", "-c", "X=1 grep a >/dev/null"])));
        assert!(reads_stdin(&argv(&["sh"])));
        // kubectl cp: into a pod, out of one, and its directory check.
        assert!(reads_stdin(&argv(&["tar", "-xmf", "-", "-C", "/tmp"])));
        assert!(reads_stdin(&argv(&["tar", "xmf", "-"])));
        assert!(!reads_stdin(&argv(&["tar", "cf", "-", "/tmp/x"])));
        assert!(!reads_stdin(&argv(&[
            "sh",
            "-c",
            "tar cf - '/tmp/x' | tail -c+1"
        ])));
        assert!(!reads_stdin(&argv(&["test", "-d", "/tmp/x"])));
        assert!(!reads_stdin(&argv(&["cat", "/tmp/x"])));
        assert!(reads_stdin(&argv(&["cat", "-"])));
    }
}
