//! The twin's simulated world as a client of another API server (the real
//! kube-apiserver of `--control-plane real`), the way kwok's controllers are.
//!
//! Contract: writes (create, merge patch, status patch, delete) go to that server
//! over HTTPS and their answer is mirrored at once (read your writes); reads come
//! from the local mirror, an [`Api`] store that one reflector thread per resource
//! keeps current by list + watch (relist on 410 Gone or a broken watch), as
//! client-go's informers do. Objects are mirrored verbatim, keeping the server's
//! resourceVersion, so a watch event that is not newer than what is mirrored is
//! dropped. The twin's controllers see the mirror's changes through
//! [`crate::client::Client::changes`], unchanged.
//!
//! The calls are blocking (ureq): the controllers call the client from their
//! reconcile passes, which are synchronous; each call is one loopback round trip.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::Api;
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::store::ObjKey;

/// Resources the world never reads: high churn and nobody's input.
const NOT_MIRRORED: [(&str, &str); 4] = [
    ("", "events"),
    ("events.k8s.io", "events"),
    ("coordination.k8s.io", "leases"),
    ("", "componentstatuses"),
];

/// How much of a list or object body we accept.
const BODY_LIMIT: u64 = 512 << 20;

pub struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
    watch_agent: ureq::Agent,
    api: Arc<Api>,
    /// Where node transitions made by the real controllers are recorded.
    truth: Option<Arc<crate::truth::Truth>>,
    /// The newest resourceVersion mirrored per object, and whether it was deleted.
    seen: Mutex<HashMap<ObjKey, (u64, bool)>>,
    /// Resources with a reflector thread.
    reflecting: Mutex<HashSet<(String, String)>>,
}

/// An HTTPS agent trusting `ca_pem` (None: no verification, for the controller
/// manager's and scheduler's self-signed health endpoints). HTTP statuses are answers,
/// not errors: callers turn them into the API's errors.
pub(crate) fn agent(ca_pem: Option<&str>, timeout: Option<Duration>) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    match ca_pem {
        Some(pem) => {
            if let Ok(cert) = Certificate::from_pem(pem.as_bytes()) {
                tls = tls.root_certs(RootCerts::new_with_certs(&[cert]));
            }
        }
        None => tls = tls.disable_verification(true),
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(timeout)
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn rv_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Maps a remote Status reason onto the twin's (static) reasons.
fn reason(r: &str) -> &'static str {
    match r {
        "NotFound" => "NotFound",
        "AlreadyExists" => "AlreadyExists",
        "Conflict" => "Conflict",
        "Invalid" => "Invalid",
        "Forbidden" => "Forbidden",
        "Unauthorized" => "Unauthorized",
        "BadRequest" => "BadRequest",
        "MethodNotAllowed" => "MethodNotAllowed",
        "Gone" => "Gone",
        "Expired" => "Expired",
        "TooManyRequests" => "TooManyRequests",
        "ServiceUnavailable" => "ServiceUnavailable",
        "Timeout" => "Timeout",
        "NotAcceptable" => "NotAcceptable",
        "UnsupportedMediaType" => "UnsupportedMediaType",
        "RequestEntityTooLarge" => "RequestEntityTooLarge",
        _ => "InternalError",
    }
}

fn status_error(code: u16, body: &str) -> ApiError {
    match serde_json::from_str::<Value>(body) {
        Ok(s) if s["kind"] == "Status" => ApiError {
            code,
            reason: reason(s["reason"].as_str().unwrap_or("")),
            message: s["message"].as_str().unwrap_or(body).to_string(),
            details: s.get("details").cloned(),
        },
        _ => ApiError::new(code, reason(""), body.to_string()),
    }
}

fn transport(e: ureq::Error) -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!("the API server did not answer: {e}"),
    )
}

impl Remote {
    /// A client of the API server at `base` (`https://127.0.0.1:PORT`), mirroring into `api`.
    pub fn new(base: &str, ca_pem: &str, token: &str, api: Arc<Api>) -> Remote {
        Remote::with_truth(base, ca_pem, token, api, None)
    }

    /// As [`Remote::new`]; with `truth`, a node whose Ready condition leaves `True`
    /// (the real node-lifecycle controller's write: the twin's own kubelets only ever
    /// post `True`) is recorded there as `NotReady` the moment its watch event arrives,
    /// the earliest the twin can know of it.
    pub fn with_truth(
        base: &str,
        ca_pem: &str,
        token: &str,
        api: Arc<Api>,
        truth: Option<Arc<crate::truth::Truth>>,
    ) -> Remote {
        Remote {
            truth,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: agent(Some(ca_pem), Some(Duration::from_secs(30))),
            watch_agent: agent(Some(ca_pem), None),
            api,
            seen: Mutex::new(HashMap::new()),
            reflecting: Mutex::new(HashSet::new()),
        }
    }

    /// `/api/v1[/namespaces/NS]/PLURAL` or `/apis/G/V[...]`.
    fn collection(info: &ResourceInfo, ns: Option<&str>) -> String {
        let root = if info.group.is_empty() {
            format!("/api/{}", info.version)
        } else {
            format!("/apis/{}/{}", info.group, info.version)
        };
        match ns {
            Some(ns) if info.namespaced && !ns.is_empty() => {
                format!("{root}/namespaces/{ns}/{}", info.plural)
            }
            _ => format!("{root}/{}", info.plural),
        }
    }

    fn object(info: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
        format!("{}/{name}", Self::collection(info, ns))
    }

    /// One request; a 429 with Retry-After (the apiserver's priority and fairness, or
    /// "storage is (re)initializing" right after a CRD is created) is retried a few
    /// times as client-go's default retry does, the rest is the caller's to handle.
    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut tries = 0;
        loop {
            match self.send_once(method, path, content_type, body) {
                Err(e) if e.code == 429 && tries < 10 => {
                    tries += 1;
                    let secs = e
                        .details
                        .as_ref()
                        .and_then(|d| d["retryAfterSeconds"].as_u64())
                        .unwrap_or(1)
                        .min(1);
                    std::thread::sleep(Duration::from_millis(200 * secs.max(1)));
                }
                other => return other,
            }
        }
    }

    fn send_once(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let bearer = format!("Bearer {}", self.token);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &bearer).call(),
            ("DELETE", Some(b)) => self
                .agent
                .delete(&url)
                .header("Authorization", &bearer)
                .force_send_body()
                .content_type(content_type)
                .send(b.to_string()),
            ("DELETE", None) => self
                .agent
                .delete(&url)
                .header("Authorization", &bearer)
                .call(),
            ("POST", b) => self
                .agent
                .post(&url)
                .header("Authorization", &bearer)
                .content_type(content_type)
                .send(b.map(Value::to_string).unwrap_or_default()),
            ("PUT", b) => self
                .agent
                .put(&url)
                .header("Authorization", &bearer)
                .content_type(content_type)
                .send(b.map(Value::to_string).unwrap_or_default()),
            (_, b) => self
                .agent
                .patch(&url)
                .header("Authorization", &bearer)
                .content_type(content_type)
                .send(b.map(Value::to_string).unwrap_or_default()),
        };
        let mut resp = resp.map_err(transport)?;
        let code = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(transport)?;
        if (200..300).contains(&code) {
            serde_json::from_str(&text).map_err(|e| {
                ApiError::new(
                    500,
                    "InternalError",
                    format!("unreadable answer from {path}: {e}"),
                )
            })
        } else {
            Err(status_error(code, &text))
        }
    }

    /// Mirrors `obj` unless the mirror already holds a newer version of it.
    pub fn mirror(&self, info: &ResourceInfo, obj: &Value) {
        let rv = rv_of(obj);
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = ObjKey {
            res: crate::store::ResKey::new(&info.group, &info.plural),
            namespace: ns.unwrap_or("").to_string(),
            name: name.to_string(),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((known, _)) = seen.get(&key) {
                if rv != 0 && rv <= *known {
                    return;
                }
            }
            seen.insert(key, (rv, false));
        }
        if let Some(truth) = &self.truth {
            if info.group.is_empty() && info.plural == "nodes" {
                let was = self.api.get(info, None, name).ok();
                if was.as_ref().is_some_and(crate::ctx::obj::is_node_ready)
                    && !crate::ctx::obj::is_node_ready(obj)
                {
                    truth.record("node", name, "NotReady");
                }
            }
        }
        let mut o = obj.clone();
        // Lists give items without kind/apiVersion; the twin's code reads them.
        o["kind"] = json!(info.kind);
        o["apiVersion"] = json!(info.api_version());
        self.api.mirror_put(info, o);
    }

    fn unmirror(&self, info: &ResourceInfo, ns: Option<&str>, name: &str, rv: u64) {
        let key = ObjKey {
            res: crate::store::ResKey::new(&info.group, &info.plural),
            namespace: ns.unwrap_or("").to_string(),
            name: name.to_string(),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((known, _)) = seen.get(&key) {
                if rv != 0 && rv < *known {
                    return;
                }
            }
            let known = seen.get(&key).map_or(0, |(k, _)| *k);
            seen.insert(key, (rv.max(known), true));
        }
        self.api.mirror_remove(info, ns, name);
    }

    /// POST; a status the object carries is then written to its status subresource,
    /// as the twin's own controllers create objects with status set.
    pub fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let status = obj.get("status").cloned();
        let created = self.send(
            "POST",
            &Self::collection(info, ns),
            "application/json",
            Some(&obj),
        )?;
        self.mirror(info, &created);
        match status {
            Some(st) if info.status_subresource && !st.is_null() && st != json!({}) => {
                let name = created
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.patch(info, ns, &name, &json!({ "status": st }), true)
            }
            _ => Ok(created),
        }
    }

    /// A JSON merge patch of the object or of its status subresource.
    pub fn patch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let mut path = Self::object(info, ns, name);
        if status {
            path.push_str("/status");
        }
        let out = self.send("PATCH", &path, "application/merge-patch+json", Some(patch))?;
        self.mirror(info, &out);
        Ok(out)
    }

    /// DELETE with a grace period; the answer is the object (still terminating) or
    /// a Status (gone).
    pub fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        let mut opts = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = grace {
            opts["gracePeriodSeconds"] = json!(g);
        }
        let out = self.send(
            "DELETE",
            &Self::object(info, ns, name),
            "application/json",
            Some(&opts),
        )?;
        if out["kind"] == "Status" {
            self.unmirror(info, ns, name, 0);
        } else {
            self.mirror(info, &out);
        }
        Ok(out)
    }

    /// A GET straight from the server (not the mirror).
    pub fn get_fresh(&self, path: &str) -> Result<Value, ApiError> {
        self.send("GET", path, "application/json", None)
    }

    /// Lists a resource and replaces the mirror's view of it; the list's resourceVersion.
    fn relist(&self, info: &ResourceInfo) -> Result<String, ApiError> {
        let list = self.send(
            "GET",
            &Self::collection(info, None),
            "application/json",
            None,
        )?;
        let mut present = HashSet::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let ns = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            self.mirror(info, item);
            present.insert((ns, name));
        }
        for (ns, name) in self.api.mirror_keys(info) {
            if !present.contains(&(ns.clone(), name.clone())) {
                let ns = (!ns.is_empty()).then_some(ns);
                self.unmirror(info, ns.as_deref(), &name, 0);
            }
        }
        Ok(list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string())
    }

    /// Watches from `rv` until the stream ends; Err(true) on 410 Gone (relist).
    fn watch_once(
        &self,
        info: &ResourceInfo,
        rv: &mut String,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), bool> {
        let url = format!(
            "{}{}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=300",
            self.base,
            Self::collection(info, None)
        );
        let resp = self
            .watch_agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        let Ok(resp) = resp else { return Err(false) };
        if resp.status().as_u16() == 410 {
            return Err(true);
        }
        if resp.status().as_u16() != 200 {
            return Err(false);
        }
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            if *stop.borrow() {
                return Ok(());
            }
            let Ok(line) = line else { return Err(false) };
            let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let obj = &ev["object"];
            match ev["type"].as_str().unwrap_or("") {
                "ADDED" | "MODIFIED" => {
                    self.mirror(info, obj);
                    *rv = rv_of(obj).to_string();
                }
                "DELETED" => {
                    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
                    let name = obj
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    self.unmirror(info, ns, name, rv_of(obj));
                    *rv = rv_of(obj).to_string();
                }
                "BOOKMARK" => *rv = rv_of(obj).to_string(),
                "ERROR" => return Err(obj["code"].as_u64() == Some(410)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Lists every mirrored resource once (so the mirror is complete when this
    /// returns), then keeps each current from a thread of its own until `stop`;
    /// a CRD created later gets its reflector when its definition is mirrored.
    pub fn start_reflectors(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Result<(), ApiError> {
        // The definitions first: mirroring them registers their kinds.
        let crds = self
            .api
            .registry()
            .find("apiextensions.k8s.io", "customresourcedefinitions")
            .cloned();
        if let Some(crds) = &crds {
            self.relist(crds)?;
        }
        let reg = self.api.registry();
        let infos: Vec<ResourceInfo> = reg
            .all()
            .filter(|i| {
                !NOT_MIRRORED
                    .iter()
                    .any(|(g, p)| *g == i.group && *p == i.plural)
                    && i.verbs.iter().any(|v| v == "watch")
            })
            .cloned()
            .collect();
        let mut changes = self.api.subscribe();
        for info in infos {
            let rv = match self.relist(&info) {
                Ok(rv) => rv,
                // Not served yet (a CRD just created, its storage still starting):
                // its reflector retries.
                Err(e) if matches!(e.code, 404 | 429 | 503) => String::new(),
                Err(e) => return Err(e),
            };
            self.reflect(info, rv, stop.clone());
        }
        // Kinds of CRDs created from now on.
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("mirror-crds".into())
            .spawn(move || loop {
                if *stop.borrow() {
                    return;
                }
                // Polled, not blocking_recv: this thread holds the store that feeds the
                // channel, so the channel never closes and a blocked receive would
                // outlive the twin.
                let msg = match changes.try_recv() {
                    Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Ok(c) => Ok(c),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n))
                    }
                    Err(tokio::sync::broadcast::error::TryRecvError::Closed) => {
                        Err(tokio::sync::broadcast::error::RecvError::Closed)
                    }
                };
                match msg {
                    Ok(c) if c.key.res.plural == "customresourcedefinitions" => {
                        let group = c.object.pointer("/spec/group").and_then(Value::as_str);
                        let plural = c
                            .object
                            .pointer("/spec/names/plural")
                            .and_then(Value::as_str);
                        let info = match (group, plural) {
                            (Some(g), Some(p)) => me.api.registry().find(g, p).cloned(),
                            _ => None,
                        };
                        if let Some(info) = info {
                            me.reflect(info, String::new(), stop.clone());
                        }
                    }
                    Ok(_) => {}
                    // Changes were missed: every custom kind gets its reflector (once).
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let reg = me.api.registry();
                        for info in reg.all().filter(|i| !i.builtin).cloned() {
                            me.reflect(info, String::new(), stop.clone());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            });
        Ok(())
    }

    /// Keeps one resource mirrored from a thread of its own (once per resource);
    /// an empty `rv` lists first.
    fn reflect(self: &Arc<Self>, info: ResourceInfo, mut rv: String, stop: watch::Receiver<bool>) {
        {
            let mut on = self.reflecting.lock().unwrap_or_else(|e| e.into_inner());
            if !on.insert((info.group.clone(), info.plural.clone())) {
                return;
            }
        }
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name(format!("mirror-{}", info.plural))
            .spawn(move || loop {
                if *stop.borrow() {
                    return;
                }
                if rv.is_empty() {
                    match me.relist(&info) {
                        Ok(r) => rv = r,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(300));
                            continue;
                        }
                    }
                }
                if let Err(gone) = me.watch_once(&info, &mut rv, &stop) {
                    if !gone {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    rv.clear();
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_status_becomes_the_same_api_error() {
        let e = status_error(
            409,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"a\" already exists","reason":"AlreadyExists","details":{"name":"a","kind":"pods"},"code":409}"#,
        );
        assert_eq!(e.code, 409);
        assert_eq!(e.reason, "AlreadyExists");
        assert_eq!(e.message, "pods \"a\" already exists");
        assert_eq!(status_error(502, "bad gateway").reason, "InternalError");
    }

    #[test]
    fn paths_follow_the_api_layout() {
        let api = Api::new(0, 100, Duration::from_secs(5));
        let reg = api.registry();
        let pods = reg.find("", "pods").expect("pods").clone();
        let deps = reg
            .find("apps", "deployments")
            .expect("deployments")
            .clone();
        let nodes = reg.find("", "nodes").expect("nodes").clone();
        assert_eq!(
            Remote::collection(&pods, Some("a")),
            "/api/v1/namespaces/a/pods"
        );
        assert_eq!(Remote::collection(&pods, None), "/api/v1/pods");
        assert_eq!(
            Remote::object(&deps, Some("b"), "d"),
            "/apis/apps/v1/namespaces/b/deployments/d"
        );
        assert_eq!(Remote::object(&nodes, Some("x"), "n"), "/api/v1/nodes/n");
    }

    #[test]
    fn older_events_do_not_overwrite_newer_writes() {
        let api = Api::new(0, 100, Duration::from_secs(5));
        let r = Remote::new("https://127.0.0.1:1", "", "t", api.clone());
        let info = api.registry().find("", "configmaps").expect("cm").clone();
        let obj = |rv: &str, v: &str| json!({"metadata": {"name": "c", "namespace": "default", "resourceVersion": rv}, "data": {"v": v}});
        r.mirror(&info, &obj("10", "new"));
        r.mirror(&info, &obj("9", "old"));
        let got = api.get(&info, Some("default"), "c").expect("mirrored");
        assert_eq!(got["data"]["v"], "new");
        assert_eq!(got["metadata"]["resourceVersion"], "10");
        r.unmirror(&info, Some("default"), "c", 11);
        assert!(api.get(&info, Some("default"), "c").is_err());
        r.mirror(&info, &obj("10", "stale"));
        assert!(
            api.get(&info, Some("default"), "c").is_err(),
            "a stale event resurrected it"
        );
    }
}
