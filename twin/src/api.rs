//! API semantics on top of the store: create, get, list, update, patch, delete,
//! watch, subresources, finalizers, garbage collection and namespace deletion, as
//! the Kubernetes API server implements them. The HTTP layer (`server.rs`) only
//! translates requests into these calls; the twin's own controllers use them too.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::patch::{self, PatchType};
use crate::resources::{Registry, ResourceInfo};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{meta_str, Change, EventType, ObjKey, ResKey, Store, Txn};
use crate::validate;

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Propagation {
    Orphan,
    #[default]
    Background,
    Foreground,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub resource_version: Option<String>,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
pub struct PatchOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
}

/// The twin's API: registry + store + the rules that connect them.
pub struct Api {
    store: Store,
    registry: RwLock<Registry>,
    rng: Mutex<StdRng>,
    next_cluster_ip: Mutex<u32>,
    bookmark_interval: Duration,
    /// Admission plugins (`admission.rs`), in the order they run.
    admission: RwLock<Vec<crate::admission::Hook>>,
}

fn res_key(info: &ResourceInfo) -> ResKey {
    ResKey::new(&info.group, &info.plural)
}

fn obj_key(info: &ResourceInfo, ns: Option<&str>, name: &str) -> ObjKey {
    ObjKey {
        res: res_key(info),
        namespace: if info.namespaced {
            ns.unwrap_or("").to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

/// Everything but metadata and status: a change there bumps `metadata.generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

fn without_rv(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn ensure_object(v: &mut Value, field: &str) -> Result<(), ApiError> {
    if v.get(field).is_none() || v[field].is_null() {
        v[field] = Value::Object(Map::new());
    }
    if !v[field].is_object() {
        return Err(ApiError::bad_request(format!("{field} must be an object")));
    }
    Ok(())
}

/// Parses an integer-or-percent replica count the way Deployments do not need here:
/// only the label selector string of a scale's status.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or_default();
            let vals: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// Sets `obj` at a two-level JSON pointer unless a value is already there.
fn set_default(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_none() {
        let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
        if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
            obj[a][b] = value;
        }
    }
}

fn get_path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in dotted.trim_start_matches('.').split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn set_path(obj: &mut Value, dotted: &str, value: Value) {
    let parts: Vec<&str> = dotted.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*part] = value;
            return;
        }
        if !cur.get(*part).is_some_and(Value::is_object) {
            cur[*part] = Value::Object(Map::new());
        }
        cur = &mut cur[*part];
    }
}

impl Api {
    pub fn new(seed: u64, history: usize, bookmark_interval: Duration) -> Arc<Api> {
        Arc::new(Api {
            store: Store::new(history),
            registry: RwLock::new(Registry::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            next_cluster_ip: Mutex::new(1),
            bookmark_interval,
            admission: RwLock::new(Vec::new()),
        })
    }

    pub fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The resource served at group/version/plural, or 404 as the real server answers.
    pub fn resolve(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<ResourceInfo, ApiError> {
        let reg = self.registry.read().unwrap_or_else(|e| e.into_inner());
        reg.get(group, version, plural).cloned().ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
    }

    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Option<ResourceInfo> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let reg = self.registry.read().unwrap_or_else(|e| e.into_inner());
        reg.by_kind(group, kind).cloned()
    }

    /// Every change the store makes (for the twin's controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.store.subscribe()
    }

    /// Creates keeping the given status: controllers create objects with status set
    /// (e.g. a PVC already Pending), where a client's status would be dropped.
    pub fn create_as_controller(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.create_inner(info, ns, obj, false, true)
    }

    /// Adds an admission plugin: it runs on every create and every update of the
    /// main resource, after defaulting and before validation.
    pub fn add_admission(&self, hook: crate::admission::Hook) {
        self.admission
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    fn admit(&self, req: &crate::admission::Request<'_>, obj: &mut Value) -> Result<(), ApiError> {
        let hooks = self
            .admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        hooks.iter().try_for_each(|hook| hook(req, obj))
    }

    pub fn current_rv(&self) -> u64 {
        self.store.lock().current_rv()
    }

    fn uid(&self) -> String {
        let bytes: [u8; 16] = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn random_suffix(&self) -> String {
        // Upstream's generateName alphabet: consonants and digits, no vowels.
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        (0..5)
            .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
            .collect()
    }

    /// Sets apiVersion/kind to the version the client asked for (no conversion is
    /// needed between the versions the twin serves, as with CRD conversion `None`).
    pub fn present(info: &ResourceInfo, version: &str, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = Value::String(if info.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", info.group)
        });
        o["kind"] = Value::String(info.kind.clone());
        o
    }

    fn check_namespace(
        &self,
        txn: &Txn<'_>,
        info: &ResourceInfo,
        ns: &str,
    ) -> Result<(), ApiError> {
        if !info.namespaced {
            return Ok(());
        }
        let key = ObjKey {
            res: ResKey::new("", "namespaces"),
            namespace: String::new(),
            name: ns.to_string(),
        };
        match txn.get(&key) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    info.plural,
                    "",
                )))
            }
            Some(_) => Ok(()),
        }
    }

    fn validate(&self, info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        validate::validate(info, obj).map_err(|causes| {
            ApiError::invalid(
                &info.group,
                &info.kind,
                &name,
                causes
                    .into_iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect(),
            )
        })?;
        Ok(())
    }

    /// Defaults a real API server applies at admission, where clients rely on them.
    fn apply_defaults(&self, info: &ResourceInfo, obj: &mut Value) {
        match (info.group.as_str(), info.plural.as_str()) {
            ("", "namespaces") => {
                let name = meta_str(obj, "name").unwrap_or("").to_string();
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = Value::String(name);
                set_default(obj, "/spec/finalizers", json!(["kubernetes"]));
                set_default(obj, "/status/phase", json!("Active"));
            }
            ("", "services") => {
                set_default(obj, "/spec/type", json!("ClusterIP"));
                set_default(obj, "/spec/sessionAffinity", json!("None"));
                if obj.pointer("/spec/clusterIP").is_none() && obj["spec"]["type"] != "ExternalName"
                {
                    let mut next = self
                        .next_cluster_ip
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    *next += 1;
                    let ip = format!("10.96.{}.{}", (*next / 250) % 250, *next % 250 + 1);
                    obj["spec"]["clusterIP"] = json!(ip);
                    obj["spec"]["clusterIPs"] = json!([ip]);
                }
                if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                        if p.get("targetPort").is_none() {
                            p["targetPort"] = p["port"].clone();
                        }
                    }
                }
            }
            ("", "pods") => {
                for (k, v) in [
                    ("restartPolicy", json!("Always")),
                    ("dnsPolicy", json!("ClusterFirst")),
                    ("terminationGracePeriodSeconds", json!(30)),
                    ("schedulerName", json!("default-scheduler")),
                ] {
                    if obj["spec"].get(k).is_none() {
                        obj["spec"][k] = v;
                    }
                }
                set_default(obj, "/status/phase", json!("Pending"));
                set_default(obj, "/status/qosClass", json!("BestEffort"));
            }
            ("", "persistentvolumeclaims") => {
                set_default(obj, "/spec/volumeMode", json!("Filesystem"));
                set_default(obj, "/status/phase", json!("Pending"));
            }
            ("", "persistentvolumes") => {
                set_default(obj, "/status/phase", json!("Available"));
            }
            ("", "secrets") if obj["type"].as_str().is_none_or(str::is_empty) => {
                obj["type"] = json!("Opaque");
            }
            ("apps", "deployments") => {
                set_default(obj, "/spec/replicas", json!(1));
                // As upstream's SetDefaults_Deployment: field by field, so the
                // `strategy: {}` that kubectl create deployment sends gets them too.
                if !obj["spec"]["strategy"].is_object() {
                    obj["spec"]["strategy"] = json!({});
                }
                let strategy = &mut obj["spec"]["strategy"];
                if strategy["type"].as_str().is_none_or(str::is_empty) {
                    strategy["type"] = json!("RollingUpdate");
                }
                if strategy["type"] == "RollingUpdate" {
                    if !strategy["rollingUpdate"].is_object() {
                        strategy["rollingUpdate"] = json!({});
                    }
                    for k in ["maxUnavailable", "maxSurge"] {
                        if strategy["rollingUpdate"].get(k).is_none_or(Value::is_null) {
                            strategy["rollingUpdate"][k] = json!("25%");
                        }
                    }
                }
                for (k, v) in [
                    ("revisionHistoryLimit", 10),
                    ("progressDeadlineSeconds", 600),
                ] {
                    if obj["spec"].get(k).is_none() {
                        obj["spec"][k] = json!(v);
                    }
                }
            }
            ("apps", "statefulsets") => {
                set_default(obj, "/spec/replicas", json!(1));
                set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
                set_default(
                    obj,
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
            }
            ("apps", "daemonsets") => {
                set_default(
                    obj,
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
                set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            }
            ("apps", "replicasets") => {
                set_default(obj, "/spec/replicas", json!(1));
            }
            ("batch", "jobs") => {
                for (k, v) in [("parallelism", 1), ("completions", 1), ("backoffLimit", 6)] {
                    if obj["spec"].get(k).is_none() {
                        obj["spec"][k] = json!(v);
                    }
                }
            }
            _ => {}
        }
    }

    /// Creates an object in `ns` (ignored for cluster-scoped kinds).
    pub fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.create_inner(info, ns, obj, dry_run, false)
    }

    /// Creates with the given status kept: for the twin's own objects. Clients'
    /// creates drop the status of kinds with a status subresource, as upstream.
    fn create_inner(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        if info.status_subresource && !keep_status {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
            if kind != info.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind of the object ({kind}) does not match the resource {} (kind {})",
                    info.plural, info.kind
                )));
            }
        }
        ensure_object(&mut obj, "metadata")?;
        let ns = if info.namespaced {
            let url_ns = ns.unwrap_or("default");
            match meta_str(&obj, "namespace") {
                Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({url_ns})"
                    )))
                }
                _ => {}
            }
            obj["metadata"]["namespace"] = json!(url_ns);
            Some(url_ns.to_string())
        } else {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            None
        };
        if meta_str(&obj, "name").unwrap_or("").is_empty() {
            match meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", self.random_suffix());
                    obj["metadata"]["name"] = json!(name);
                }
                _ => {
                    return Err(ApiError::invalid(
                        &info.group,
                        &info.kind,
                        "",
                        vec![
                            json!({"reason": "FieldValueRequired", "message": "name or generateName is required", "field": "metadata.name"}),
                        ],
                    ))
                }
            }
        }
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        obj["apiVersion"] = json!(info.api_version());
        obj["kind"] = json!(info.kind);
        for k in ["spec", "status"] {
            if obj.get(k).is_some_and(Value::is_null) {
                if let Some(m) = obj.as_object_mut() {
                    m.remove(k);
                }
            }
        }
        if matches!(
            info.plural.as_str(),
            "namespaces"
                | "pods"
                | "services"
                | "deployments"
                | "statefulsets"
                | "replicasets"
                | "persistentvolumeclaims"
                | "jobs"
        ) {
            ensure_object(&mut obj, "spec")?;
        }
        self.apply_defaults(info, &mut obj);
        let list = |g: &str, p: &str| self.store.lock().list(&ResKey::new(g, p), None);
        let req =
            crate::admission::Request::new(info, crate::admission::Operation::Create, None, &list);
        self.admit(&req, &mut obj)?;
        self.validate(info, &obj)?;
        {
            let m = obj["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("resourceVersion");
            m.insert("uid".into(), json!(self.uid()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if info.tracks_generation() {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        let is_crd =
            info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions";
        if is_crd {
            obj["status"] = crate::resources::crd_status(&obj, &now_rfc3339());
        }
        let key = obj_key(info, ns.as_deref(), &name);
        let mut txn = self.store.lock();
        if let Some(ns) = &ns {
            self.check_namespace(&txn, info, ns)?;
        }
        if txn.get(&key).is_some() {
            return Err(ApiError::already_exists(&info.group, &info.plural, &name));
        }
        if dry_run {
            return Ok(obj);
        }
        if is_crd {
            let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
            reg.add_crd(&obj).map_err(|e| {
                ApiError::invalid(&info.group, &info.kind, &name, vec![json!({"reason": "FieldValueInvalid", "message": e.to_string(), "field": "spec"})])
            })?;
        }
        Ok((*txn.put(&key, obj)).clone())
    }

    pub fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let txn = self.store.lock();
        txn.get(&obj_key(info, ns, name))
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// A list object (`<Kind>List`) with resourceVersion and pagination metadata.
    pub fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        let txn = self.store.lock();
        let rv = txn.current_rv();
        let start_after = match &opts.continue_token {
            Some(tok) => Some(decode_continue(tok)?),
            None => None,
        };
        let ns = if info.namespaced { ns } else { None };
        let all = txn.list(&res_key(info), ns);
        drop(txn);
        let mut items: Vec<Value> = Vec::new();
        let mut remaining = 0usize;
        let mut next: Option<(String, String)> = None;
        for obj in all {
            let pos = (
                meta_str(&obj, "namespace").unwrap_or("").to_string(),
                meta_str(&obj, "name").unwrap_or("").to_string(),
            );
            if let Some(after) = &start_after {
                if pos <= *after {
                    continue;
                }
            }
            if !matches(&obj, &opts.label_selector, &opts.field_selector) {
                continue;
            }
            if let Some(limit) = opts.limit.filter(|l| *l > 0) {
                if items.len() >= limit {
                    remaining += 1;
                    continue;
                }
                if items.len() + 1 == limit {
                    next = Some(pos.clone());
                }
            }
            items.push((*obj).clone());
        }
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if remaining > 0 {
            if let Some(pos) = next {
                meta["continue"] = json!(encode_continue(rv, &pos));
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": meta,
            "items": items,
        }))
    }

    /// PUT: replaces an object (or its status).
    pub fn update(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        sub: Subresource,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = obj_key(info, ns, name);
        let mut txn = self.store.lock();
        let old = txn
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        self.commit_update(&mut txn, info, &key, &old, obj, sub, dry_run, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &self,
        txn: &mut Txn<'_>,
        info: &ResourceInfo,
        key: &ObjKey,
        old: &Value,
        mut new: Value,
        sub: Subresource,
        dry_run: bool,
        check_rv: bool,
    ) -> Result<Value, ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        ensure_object(&mut new, "metadata")?;
        if let Some(body_name) = meta_str(&new, "name") {
            if body_name != key.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({})",
                    key.name
                )));
            }
        }
        if check_rv {
            if let Some(rv) = meta_str(&new, "resourceVersion").filter(|s| !s.is_empty()) {
                if Some(rv) != meta_str(old, "resourceVersion") {
                    return Err(ApiError::conflict(
                        &info.group,
                        &info.plural,
                        &key.name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
            }
        }
        let mut new = match sub {
            Subresource::Status => {
                let mut o = old.clone();
                o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                o
            }
            Subresource::Main => {
                if info.status_subresource {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                new
            }
        };
        {
            let m = new["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            m.insert("name".into(), json!(key.name));
            if info.namespaced {
                m.insert("namespace".into(), json!(key.namespace));
            } else {
                m.remove("namespace");
            }
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old.pointer(&format!("/metadata/{f}")) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
        }
        new["apiVersion"] = json!(info.api_version());
        new["kind"] = json!(info.kind);
        if new.get("status").is_some_and(Value::is_null) {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
        if sub == Subresource::Main {
            let list = |g: &str, p: &str| txn.list(&ResKey::new(g, p), None);
            let req = crate::admission::Request::new(
                info,
                crate::admission::Operation::Update,
                Some(old),
                &list,
            );
            self.admit(&req, &mut new)?;
        }
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if spec_part(old) != spec_part(&new) {
            generation + 1
        } else {
            generation
        };
        if info.tracks_generation() {
            new["metadata"]["generation"] = json!(generation);
        } else if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("generation");
        }
        self.validate(info, &new)?;
        if without_rv(&new) == without_rv(old) {
            // A no-op write keeps the resourceVersion, as upstream.
            return Ok(old.clone());
        }
        if dry_run {
            return Ok(new);
        }
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new).is_empty()
            && !finalizers(old).is_empty()
        {
            let gone = txn.put(key, new);
            self.finish_delete(txn, info, key, &gone);
            return Ok((*gone).clone());
        }
        Ok((*txn.put(key, new)).clone())
    }

    /// PATCH, of every type; server-side apply creates the object when absent.
    #[allow(clippy::too_many_arguments)] // mirrors the REST call's parts one to one
    pub fn patch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        body: &Value,
        sub: Subresource,
        opts: &PatchOptions,
    ) -> Result<Value, ApiError> {
        let key = obj_key(info, ns, name);
        let mut txn = self.store.lock();
        let Some(old) = txn.get(&key) else {
            if ptype == PatchType::Apply && sub == Subresource::Main {
                drop(txn);
                let mut obj = body.clone();
                ensure_object(&mut obj, "metadata")?;
                obj["metadata"]["name"] = json!(name);
                if let Some(manager) = &opts.field_manager {
                    let applied = obj.clone();
                    patch::record_managed_fields_for(
                        &mut obj,
                        &applied,
                        manager,
                        "Apply",
                        &info.api_version(),
                        &now_rfc3339(),
                    );
                }
                return self.create(info, ns, obj, opts.dry_run);
            }
            return Err(ApiError::not_found(&info.group, &info.plural, name));
        };
        let mut new = (*old).clone();
        // A merge patch that is not an object would replace the whole object (RFC 7386);
        // kube-apiserver then fails to decode the result: 400, as here.
        if matches!(ptype, PatchType::Merge | PatchType::StrategicMerge) && !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_type(body)
            )));
        }
        match ptype {
            PatchType::Merge => patch::merge_patch(&mut new, body),
            PatchType::Json => patch::json_patch(&mut new, body)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
            PatchType::StrategicMerge => {
                if !info.builtin {
                    return Err(ApiError::unsupported_media(
                        "strategic merge patch is not supported for custom resources: use a merge patch or server-side apply",
                    ));
                }
                patch::strategic_merge_patch(&mut new, body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            PatchType::Apply => {
                let Some(manager) = &opts.field_manager else {
                    return Err(ApiError::bad_request(
                        "PATCH with apply requires fieldManager",
                    ));
                };
                patch::apply_patch(&mut new, body);
                patch::record_managed_fields_for(
                    &mut new,
                    body,
                    manager,
                    "Apply",
                    &info.api_version(),
                    &now_rfc3339(),
                );
            }
        }
        // A resourceVersion in the patch body is a precondition; otherwise none.
        let body_rv = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if let Some(rv) = body_rv {
            if Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(&info.group, &info.plural, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        self.commit_update(&mut txn, info, &key, &old, new, sub, opts.dry_run, false)
    }

    /// DELETE. Returns the deleted object, or the object marked for deletion when
    /// finalizers hold it.
    pub fn delete(
        self: &Arc<Self>,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = obj_key(info, ns, name);
        let mut txn = self.store.lock();
        let obj = txn
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        if let Some(uid) = &opts.precondition_uid {
            if meta_str(&obj, "uid") != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    &info.group,
                    &info.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            if meta_str(&obj, "resourceVersion") != Some(rv.as_str()) {
                return Err(ApiError::conflict(&info.group, &info.plural, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        if opts.dry_run {
            return Ok((*obj).clone());
        }
        let result = self.delete_locked(
            &mut txn,
            info,
            &key,
            &obj,
            opts.propagation.unwrap_or_default(),
            opts.grace_period_seconds,
        );
        drop(txn);
        if info.group.is_empty() && info.plural == "namespaces" {
            let api = self.clone();
            let ns_name = name.to_string();
            tokio::spawn(async move { api.finalize_namespace(ns_name).await });
        }
        Ok(result)
    }

    fn delete_locked(
        &self,
        txn: &mut Txn<'_>,
        info: &ResourceInfo,
        key: &ObjKey,
        obj: &Arc<Value>,
        propagation: Propagation,
        grace: Option<i64>,
    ) -> Value {
        let is_namespace = info.group.is_empty() && info.plural == "namespaces";
        let mut fins = finalizers(obj);
        if propagation == Propagation::Foreground && !fins.iter().any(|f| f == "foregroundDeletion")
        {
            fins.push("foregroundDeletion".into());
        }
        if info.group.is_empty() && info.plural == "pods" && fins.is_empty() {
            // Graceful pod deletion, as upstream: a pod bound to a node only gets a
            // deletionTimestamp; its kubelet removes the object once the containers
            // stopped (never, while the node is down). Grace 0 (force) removes at once.
            let bound = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let finished = matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            let grace = grace.unwrap_or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            if bound && !finished && grace > 0 {
                let current = obj
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if current.is_some_and(|c| c <= grace) {
                    return (**obj).clone();
                }
                let mut marked = (**obj).clone();
                if current.is_none() {
                    marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                }
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                return (*txn.put(key, marked)).clone();
            }
        }
        if is_namespace || !fins.is_empty() {
            if obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers(obj) == fins {
                return (**obj).clone();
            }
            let mut marked = (**obj).clone();
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace.unwrap_or(0));
            marked["metadata"]["finalizers"] = json!(fins);
            if fins.is_empty() {
                if let Some(m) = marked["metadata"].as_object_mut() {
                    m.remove("finalizers");
                }
            }
            if is_namespace {
                marked["status"]["phase"] = json!("Terminating");
            }
            let marked = txn.put(key, marked);
            if propagation == Propagation::Foreground {
                // Foreground: dependents go first (synchronously here), then the
                // owner's foregroundDeletion finalizer is removed.
                if let Some(uid) = meta_str(&marked, "uid") {
                    for dep in txn.dependents_of(uid) {
                        if let Some(dobj) = txn.get(&dep) {
                            if let Some(dinfo) = self.info_for(&dep) {
                                self.delete_locked(
                                    txn,
                                    &dinfo,
                                    &dep,
                                    &dobj,
                                    Propagation::Foreground,
                                    None,
                                );
                            }
                        }
                    }
                }
                let mut after = (*marked).clone();
                let rest: Vec<String> = finalizers(&after)
                    .into_iter()
                    .filter(|f| f != "foregroundDeletion")
                    .collect();
                if rest.is_empty() {
                    if let Some(m) = after["metadata"].as_object_mut() {
                        m.remove("finalizers");
                    }
                    let put = txn.put(key, after);
                    self.finish_delete(txn, info, key, &put);
                    return (*put).clone();
                }
                after["metadata"]["finalizers"] = json!(rest);
                return (*txn.put(key, after)).clone();
            }
            return (*marked).clone();
        }
        if propagation == Propagation::Orphan {
            if let Some(uid) = meta_str(obj, "uid") {
                for dep in txn.dependents_of(uid) {
                    self.drop_owner_ref(txn, &dep, uid);
                }
            }
        }
        self.finish_delete(txn, info, key, obj);
        txn.get(key)
            .map(|o| (*o).clone())
            .unwrap_or_else(|| (**obj).clone())
    }

    /// Removes the object and lets the garbage collector act on its dependents:
    /// those with no other live owner are deleted (background propagation),
    /// the others lose the dangling owner reference.
    fn finish_delete(&self, txn: &mut Txn<'_>, info: &ResourceInfo, key: &ObjKey, obj: &Value) {
        txn.remove(key);
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            let group = obj
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = obj
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            txn.remove_all(&ResKey::new(group, plural));
            self.registry
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_crd(group, plural);
        }
        let Some(uid) = meta_str(obj, "uid") else {
            return;
        };
        for dep in txn.dependents_of(uid) {
            let Some(dobj) = txn.get(&dep) else { continue };
            let other_live_owner = dobj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter().any(|r| {
                        r["uid"]
                            .as_str()
                            .is_some_and(|u| u != uid && txn.uid_exists(u))
                    })
                })
                .unwrap_or(false);
            if other_live_owner {
                self.drop_owner_ref(txn, &dep, uid);
            } else if let Some(dinfo) = self.info_for(&dep) {
                self.delete_locked(txn, &dinfo, &dep, &dobj, Propagation::Background, None);
            }
        }
    }

    fn drop_owner_ref(&self, txn: &mut Txn<'_>, dep: &ObjKey, uid: &str) {
        if let Some(dobj) = txn.get(dep) {
            let mut d = (*dobj).clone();
            if let Some(refs) = d
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r["uid"].as_str() != Some(uid));
                if refs.is_empty() {
                    if let Some(m) = d["metadata"].as_object_mut() {
                        m.remove("ownerReferences");
                    }
                }
            }
            txn.put(dep, d);
        }
    }

    fn info_for(&self, key: &ObjKey) -> Option<ResourceInfo> {
        let reg = self.registry.read().unwrap_or_else(|e| e.into_inner());
        reg.find(&key.res.group, &key.res.plural).cloned()
    }

    /// The namespace controller: deletes everything in a Terminating namespace,
    /// waits for finalizers held by others, then removes the namespace.
    async fn finalize_namespace(self: Arc<Self>, name: String) {
        loop {
            let remaining = {
                let mut txn = self.store.lock();
                let keys = txn.keys_in_namespace(&name);
                for k in &keys {
                    if let (Some(obj), Some(info)) = (txn.get(k), self.info_for(k)) {
                        if obj.pointer("/metadata/deletionTimestamp").is_none() {
                            self.delete_locked(
                                &mut txn,
                                &info,
                                k,
                                &obj,
                                Propagation::Background,
                                None,
                            );
                        }
                    }
                }
                let left = txn.keys_in_namespace(&name).len();
                if left == 0 {
                    let nkey = ObjKey {
                        res: ResKey::new("", "namespaces"),
                        namespace: String::new(),
                        name: name.clone(),
                    };
                    if txn.get(&nkey).is_some() {
                        txn.remove(&nkey);
                    }
                }
                left
            };
            if remaining == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// DELETE on a collection.
    pub fn delete_collection(
        self: &Arc<Self>,
        info: &ResourceInfo,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let items = self.list(info, ns, list)?;
        let mut deleted = Vec::new();
        for item in items["items"].as_array().cloned().unwrap_or_default() {
            let name = meta_str(&item, "name").unwrap_or_default().to_string();
            let ins = meta_str(&item, "namespace").map(String::from);
            match self.delete(info, ins.as_deref(), &name, opts) {
                Ok(o) => deleted.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(
            json!({"kind": info.list_kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": self.current_rv().to_string()}, "items": deleted}),
        )
    }

    /// GET .../scale: an autoscaling/v1 Scale.
    pub fn get_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let scale = info.scale.clone().ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
        let obj = self.get(info, ns, name)?;
        let selector = match &scale.label_selector_path {
            Some(p) => match get_path(&obj, p) {
                Some(Value::String(s)) => s.clone(),
                Some(sel @ Value::Object(_)) => selector_string(sel),
                _ => obj
                    .pointer("/spec/selector")
                    .map(selector_string)
                    .unwrap_or_default(),
            },
            None => String::new(),
        };
        let mut meta = json!({
            "name": name,
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        });
        if let Some(ns) = obj.pointer("/metadata/namespace") {
            meta["namespace"] = ns.clone();
        }
        Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": meta,
            "spec": {"replicas": get_path(&obj, &scale.spec_replicas_path).cloned().unwrap_or(json!(0))},
            "status": {"replicas": get_path(&obj, &scale.status_replicas_path).cloned().unwrap_or(json!(0)), "selector": selector},
        }))
    }

    /// PUT/PATCH .../scale with the resulting Scale object.
    pub fn set_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        scale_obj: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let scale = info.scale.clone().ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
        let replicas = scale_obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::invalid("autoscaling", "Scale", name, vec![json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.replicas"})]))?;
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![
                    json!({"reason": "FieldValueInvalid", "message": "must be greater than or equal to 0", "field": "spec.replicas"}),
                ],
            ));
        }
        let key = obj_key(info, ns, name);
        let mut txn = self.store.lock();
        let old = txn
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        if let Some(rv) = scale_obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            if Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(&info.group, &info.plural, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let mut new = (*old).clone();
        set_path(&mut new, &scale.spec_replicas_path, json!(replicas));
        self.commit_update(
            &mut txn,
            info,
            &key,
            &old,
            new,
            Subresource::Main,
            dry_run,
            false,
        )?;
        drop(txn);
        if dry_run {
            let mut s = self.get_scale(info, ns, name)?;
            s["spec"]["replicas"] = json!(replicas);
            return Ok(s);
        }
        self.get_scale(info, ns, name)
    }

    /// Starts a watch. Events arrive on the receiver as ready-to-send JSON values;
    /// the stream ends at the timeout, or with an ERROR event (410 Expired) when the
    /// requested resourceVersion is older than the retained history.
    pub fn watch(
        self: &Arc<Self>,
        info: &ResourceInfo,
        version: &str,
        ns: Option<&str>,
        opts: WatchOptions,
    ) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel::<Value>(1024);
        let res = res_key(info);
        let ns = if info.namespaced {
            ns.map(String::from)
        } else {
            None
        };
        let txn = self.store.lock();
        let live = txn.subscribe();
        let current = txn.current_rv();
        let requested = opts
            .resource_version
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "0");
        let mut initial: Vec<Value> = Vec::new();
        let mut backlog: Vec<Arc<Change>> = Vec::new();
        let mut error: Option<Value> = None;
        match requested {
            None => {
                // No (or "0") resourceVersion: synthetic ADDED events for the current state.
                for obj in txn.list(&res, ns.as_deref()) {
                    if matches(&obj, &opts.label_selector, &opts.field_selector) {
                        initial.push(
                            json!({"type": "ADDED", "object": Api::present(info, version, &obj)}),
                        );
                    }
                }
            }
            Some(rv) => match rv.parse::<u64>() {
                Err(_) => {
                    error = Some(
                        ApiError::bad_request(format!("invalid resource version: {rv}"))
                            .to_status(),
                    );
                }
                Ok(rv) => match txn.changes_since(rv) {
                    Ok(changes) => {
                        if opts.send_initial_events {
                            for obj in txn.list(&res, ns.as_deref()) {
                                if matches(&obj, &opts.label_selector, &opts.field_selector) {
                                    initial.push(json!({"type": "ADDED", "object": Api::present(info, version, &obj)}));
                                }
                            }
                        } else {
                            backlog = changes;
                        }
                    }
                    Err(oldest) => {
                        error = Some(
                            ApiError::expired(format!("too old resource version: {rv} ({oldest})"))
                                .to_status(),
                        );
                    }
                },
            },
        }
        drop(txn);
        let info = info.clone();
        let version = version.to_string();
        let bookmark_every = self.bookmark_interval;
        let api = self.clone();
        tokio::spawn(async move {
            if let Some(status) = error {
                let _ = tx.send(json!({"type": "ERROR", "object": status})).await;
                return;
            }
            for ev in initial {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            if opts.send_initial_events && opts.allow_bookmarks {
                let bm = bookmark(&info, &version, current, true);
                if tx.send(bm).await.is_err() {
                    return;
                }
            }
            let mut last = current;
            for c in backlog {
                if let Some(ev) = to_event(&info, &version, &res, ns.as_deref(), &opts, &c) {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                last = last.max(c.rv);
            }
            let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
            let mut live = live;
            let mut ticker = tokio::time::interval(bookmark_every);
            ticker.tick().await;
            loop {
                let sleep_until = deadline.unwrap_or_else(|| {
                    tokio::time::Instant::now() + Duration::from_secs(3600 * 24)
                });
                tokio::select! {
                    _ = tokio::time::sleep_until(sleep_until) => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if opts.allow_bookmarks => {
                        let rv = api.current_rv();
                        if tx.send(bookmark(&info, &version, rv, false)).await.is_err() { return; }
                    }
                    msg = live.recv() => match msg {
                        Ok(c) => {
                            if c.rv <= last { continue; }
                            last = c.rv;
                            if let Some(ev) = to_event(&info, &version, &res, ns.as_deref(), &opts, &c) {
                                if tx.send(ev).await.is_err() { return; }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let st = ApiError::expired("the watch fell behind the event history; relist").to_status();
                            let _ = tx.send(json!({"type": "ERROR", "object": st})).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        rx
    }

    /// Writes used by the twin itself (bootstrap, controllers): create or replace.
    /// Mirrors an object another API server served (the real control plane): stored
    /// as is, without defaulting, admission or validation; a CRD also registers its
    /// kind so the twin's controllers can name it.
    pub fn mirror_put(&self, info: &ResourceInfo, obj: Value) {
        let ns = meta_str(&obj, "namespace").map(String::from);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = reg.add_crd(&obj) {
                tracing::warn!("mirrored CRD {name} not registered: {e}");
            }
        }
        let key = obj_key(info, ns.as_deref(), &name);
        self.store.lock().put_verbatim(&key, obj);
    }

    /// Forgets a mirrored object (the other API server deleted it).
    pub fn mirror_remove(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) {
        let key = obj_key(info, ns, name);
        self.store.lock().remove(&key);
    }

    /// The (namespace, name) of every mirrored object of a resource.
    pub fn mirror_keys(&self, info: &ResourceInfo) -> Vec<(String, String)> {
        let res = ResKey::new(&info.group, &info.plural);
        self.store
            .lock()
            .list(&res, None)
            .iter()
            .map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or_default().to_string(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub fn install(&self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = obj["kind"].as_str().unwrap_or("").to_string();
        let info = self.resolve_kind(&api_version, &kind).ok_or_else(|| {
            ApiError::bad_request(format!("no resource for {api_version} {kind}"))
        })?;
        let ns = meta_str(&obj, "namespace").map(String::from);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        match self.get(&info, ns.as_deref(), &name) {
            Ok(_) => {
                let status = obj.get("status").cloned();
                let out =
                    self.update(&info, ns.as_deref(), &name, obj, Subresource::Main, false)?;
                match status {
                    Some(st) if info.status_subresource => self.update(
                        &info,
                        ns.as_deref(),
                        &name,
                        json!({"status": st}),
                        Subresource::Status,
                        false,
                    ),
                    _ => Ok(out),
                }
            }
            Err(e) if e.code == 404 => self.create_inner(&info, ns.as_deref(), obj, false, true),
            Err(e) => Err(e),
        }
    }
}

fn bookmark(info: &ResourceInfo, version: &str, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let api_version = if info.group.is_empty() {
        version.to_string()
    } else {
        format!("{}/{version}", info.group)
    };
    json!({"type": "BOOKMARK", "object": {"kind": info.kind, "apiVersion": api_version, "metadata": meta}})
}

fn matches(obj: &Value, label: &Option<LabelSelector>, field: &Option<FieldSelector>) -> bool {
    label.as_ref().is_none_or(|l| l.matches_object(obj))
        && field.as_ref().is_none_or(|f| f.matches(obj))
}

/// Turns a store change into the event a watcher with these selectors sees: an
/// object entering the selection is ADDED, one leaving it is DELETED (as upstream's
/// watch cache does).
fn to_event(
    info: &ResourceInfo,
    version: &str,
    res: &ResKey,
    ns: Option<&str>,
    opts: &WatchOptions,
    c: &Change,
) -> Option<Value> {
    if &c.key.res != res {
        return None;
    }
    if let Some(ns) = ns {
        if c.key.namespace != ns {
            return None;
        }
    }
    let now = matches(&c.object, &opts.label_selector, &opts.field_selector);
    let before = c
        .previous
        .as_ref()
        .is_some_and(|p| matches(p, &opts.label_selector, &opts.field_selector));
    let kind = match (c.kind, before, now) {
        (EventType::Added, _, true) => EventType::Added,
        (EventType::Deleted, true, _) => EventType::Deleted,
        (EventType::Modified, true, true) => EventType::Modified,
        (EventType::Modified, false, true) => EventType::Added,
        (EventType::Modified, true, false) => EventType::Deleted,
        _ => return None,
    };
    Some(json!({"type": kind.as_str(), "object": Api::present(info, version, &c.object)}))
}

fn encode_continue(rv: u64, pos: &(String, String)) -> String {
    use base64::Engine;
    let raw = json!({"rv": rv, "ns": pos.0, "name": pos.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(tok: &str) -> Result<(String, String), ApiError> {
    use base64::Engine;
    let bad = || ApiError::bad_request(format!("continue key is not valid: {tok}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["ns"].as_str().ok_or_else(bad)?.to_string(),
        v["name"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

/// A JSON value's type as Go's encoding/json names it in its errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
