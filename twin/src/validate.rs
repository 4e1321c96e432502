//! Object validation before create/update, producing the `details.causes` of a
//! Kubernetes `422 Invalid` Status.
//!
//! Built-in kinds are deserialized into their k8s-openapi type (a type mismatch
//! becomes a `FieldValueTypeInvalid` cause), then checked with a subset of the
//! upstream validation rules (names, labels, pod specs, workload selectors, services,
//! claims, RBAC, webhooks ...). Messages follow upstream's `field.Error` wording.
//!
//! Custom resources (`builtin == false`) only get the metadata checks: the twin does
//! **not** validate them against the CRD's `openAPIV3Schema` (nor prune or default).
//!
//! Defaulting is the caller's job (e.g. `generateName` must be resolved into
//! `metadata.name` before validating), as is checking `metadata.namespace` against
//! the resource scope.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events, networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::resources::{self, ResourceInfo};

/// One entry of a Status' `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cause {
    /// Field path such as `spec.containers[0].image`; "" when unknown.
    pub field: String,
    /// The error body, e.g. `Required value` or `Invalid value: "x": ...`.
    pub message: String,
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueNotFound`, `FieldValueForbidden`,
    /// `FieldValueTooLong`, `FieldValueTypeInvalid`.
    pub reason: String,
}

impl Cause {
    pub fn new(field: impl Into<String>, reason: &str, message: impl Into<String>) -> Cause {
        Cause {
            field: field.into(),
            message: message.into(),
            reason: reason.to_string(),
        }
    }

    /// The cause as JSON (`{reason, message, field}`, `field` omitted when empty).
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "reason": self.reason, "message": self.message });
        if !self.field.is_empty() {
            v["field"] = json!(self.field);
        }
        v
    }

    /// `field: message`, as in a Status message.
    pub fn describe(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// The full `422 Invalid` Status for `causes`, e.g. message
/// `Deployment.apps "web" is invalid: spec.selector: Required value`.
pub fn invalid_status(info: &ResourceInfo, name: &str, causes: &[Cause]) -> Value {
    let errs: Vec<String> = causes.iter().map(Cause::describe).collect();
    let joined = if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    };
    let mut details = json!({
        "name": name,
        "kind": info.kind,
        "causes": causes.iter().map(Cause::to_json).collect::<Vec<_>>(),
    });
    if !info.group.is_empty() {
        details["group"] = json!(info.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{} {:?} is invalid: {}", info.qualified_kind(), name, joined),
        "reason": "Invalid",
        "details": details,
        "code": 422,
    })
}

const REQUIRED: &str = "FieldValueRequired";
const INVALID: &str = "FieldValueInvalid";
const NOT_SUPPORTED: &str = "FieldValueNotSupported";
const DUPLICATE: &str = "FieldValueDuplicate";
const NOT_FOUND: &str = "FieldValueNotFound";
const FORBIDDEN: &str = "FieldValueForbidden";
const TOO_LONG: &str = "FieldValueTooLong";
const TYPE_INVALID: &str = "FieldValueTypeInvalid";

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Accumulates causes.
#[derive(Default)]
struct Errs(Vec<Cause>);

impl Errs {
    fn push(&mut self, field: impl Into<String>, reason: &str, message: impl Into<String>) {
        self.0.push(Cause::new(field, reason, message));
    }
    fn required(&mut self, field: impl Into<String>, detail: &str) {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push(field, REQUIRED, msg);
    }
    fn invalid(&mut self, field: impl Into<String>, value: impl ShowValue, detail: &str) {
        self.push(
            field,
            INVALID,
            format!("Invalid value: {}: {detail}", value.show()),
        );
    }
    fn not_supported(&mut self, field: impl Into<String>, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.push(
            field,
            NOT_SUPPORTED,
            format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        );
    }
    fn duplicate(&mut self, field: impl Into<String>, value: &str) {
        self.push(field, DUPLICATE, format!("Duplicate value: {value:?}"));
    }
    fn not_found(&mut self, field: impl Into<String>, value: &str) {
        self.push(field, NOT_FOUND, format!("Not found: {value:?}"));
    }
    fn forbidden(&mut self, field: impl Into<String>, detail: &str) {
        self.push(field, FORBIDDEN, format!("Forbidden: {detail}"));
    }
    /// `value` must be one of `supported` (when non-empty).
    fn one_of(&mut self, field: impl Into<String>, value: Option<&str>, supported: &[&str]) {
        if let Some(v) = value {
            if !supported.contains(&v) {
                self.not_supported(field, v, supported);
            }
        }
    }
}

/// How a value is shown in `Invalid value: ...` (strings quoted, like Go's %q).
trait ShowValue {
    fn show(&self) -> String;
}
impl ShowValue for &str {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}
impl ShowValue for &String {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}
impl ShowValue for i64 {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl ShowValue for i32 {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl ShowValue for &Value {
    fn show(&self) -> String {
        match self {
            Value::String(s) => format!("{s:?}"),
            v => v.to_string(),
        }
    }
}

/// Validates `obj` as a `info` object. See the module documentation for what is
/// (and is not) checked.
pub fn validate(info: &ResourceInfo, obj: &Value) -> Result<(), Vec<Cause>> {
    let mut e = Errs::default();
    if !obj.is_object() {
        e.push(
            "",
            TYPE_INVALID,
            format!("Invalid value: {}: must be an object", type_name(obj)),
        );
        return Err(e.0);
    }
    let type_ok = check_type_meta(info, obj, &mut e);
    check_metadata(info, obj, &mut e);
    if info.builtin && type_ok {
        check_typed(info, obj, &mut e);
    }
    if e.0.is_empty() {
        Ok(())
    } else {
        Err(e.0)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `apiVersion` and `kind`, when present, must name this resource.
fn check_type_meta(info: &ResourceInfo, obj: &Value, e: &mut Errs) -> bool {
    let mut ok = true;
    match obj.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if *k == info.kind => {}
        Some(k) => {
            e.invalid("kind", k, &format!("must be {}", info.kind));
            ok = false;
        }
    }
    match obj.get("apiVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(av)) if info.versions.iter().any(|v| info.group_version(v) == *av) => {}
        Some(av) => {
            let expected: Vec<String> = info
                .versions
                .iter()
                .map(|v| info.group_version(v))
                .collect();
            e.invalid(
                "apiVersion",
                av,
                &format!("must be one of {}", expected.join(", ")),
            );
            ok = false;
        }
    }
    ok
}

/// The metadata rules shared by every kind.
fn check_metadata(info: &ResourceInfo, obj: &Value, e: &mut Errs) {
    let meta = match obj.get("metadata") {
        None | Some(Value::Null) => {
            e.required("metadata.name", "name or generateName is required");
            return;
        }
        Some(m @ Value::Object(_)) => m,
        Some(m) => {
            e.push(
                "metadata",
                TYPE_INVALID,
                format!("Invalid value: {}: must be an object", type_name(m)),
            );
            return;
        }
    };
    match meta.get("name") {
        None | Some(Value::Null) => e.required("metadata.name", "name or generateName is required"),
        Some(Value::String(n)) if n.is_empty() => {
            e.required("metadata.name", "name or generateName is required")
        }
        Some(Value::String(n)) => check_object_name(info, n, e),
        Some(n) => e.invalid("metadata.name", n, "must be a string"),
    }
    if info.namespaced {
        if let Some(ns) = meta.get("namespace").and_then(Value::as_str) {
            if !ns.is_empty() && !resources::is_dns1123_label(ns) {
                e.invalid("metadata.namespace", ns, LABEL_MSG);
            }
        }
    }
    if let Some(labels) = meta.get("labels") {
        check_labels(labels, "metadata.labels", e);
    }
    if let Some(ann) = meta.get("annotations") {
        match ann.as_object() {
            Some(map) => {
                let mut total = 0usize;
                for (k, v) in map {
                    check_qualified_name(k, "metadata.annotations", e);
                    total += k.len() + v.as_str().map_or(0, str::len);
                }
                if total > 256 * 1024 {
                    e.push(
                        "metadata.annotations",
                        TOO_LONG,
                        "Too long: may not be more than 262144 bytes",
                    );
                }
            }
            None if ann.is_null() => {}
            None => e.push(
                "metadata.annotations",
                TYPE_INVALID,
                "Invalid value: must be a map of strings",
            ),
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        for (i, r) in refs.iter().enumerate() {
            for key in ["apiVersion", "kind", "name", "uid"] {
                if r.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
                {
                    e.required(format!("metadata.ownerReferences[{i}].{key}"), "");
                }
            }
        }
    }
}

/// The name rule of each kind (`ValidateObjectMeta`'s `nameFn`).
fn check_object_name(info: &ResourceInfo, name: &str, e: &mut Errs) {
    let field = "metadata.name";
    match (info.group.as_str(), info.kind.as_str(), info.builtin) {
        ("", "Namespace", true) => check_label_name(name, field, e),
        ("", "Service", true) => {
            if name.len() > 63 {
                e.invalid(field, name, "must be no more than 63 characters");
            } else if !resources::is_dns1035_label(name) {
                e.invalid(field, name, DNS1035_MSG);
            }
        }
        ("rbac.authorization.k8s.io", _, true) => check_path_segment(name, field, e),
        _ => check_subdomain(name, field, e),
    }
}

fn check_subdomain(name: &str, field: &str, e: &mut Errs) {
    if name.len() > 253 {
        e.invalid(field, name, "must be no more than 253 characters");
    } else if !resources::is_dns1123_subdomain(name) {
        e.invalid(field, name, SUBDOMAIN_MSG);
    }
}

fn check_label_name(name: &str, field: &str, e: &mut Errs) {
    if name.len() > 63 {
        e.invalid(field, name, "must be no more than 63 characters");
    } else if !resources::is_dns1123_label(name) {
        e.invalid(field, name, LABEL_MSG);
    }
}

/// RBAC object names: any path segment (`system:controller:foo` is fine).
fn check_path_segment(name: &str, field: &str, e: &mut Errs) {
    if name == "." || name == ".." {
        e.invalid(field, name, &format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            e.invalid(field, name, &format!("may not contain '{bad}'"));
        }
    }
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Label and annotation keys: `[prefix/]name`.
fn check_qualified_name(key: &str, field: &str, e: &mut Errs) {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            e.invalid(field, key, "prefix part must be non-empty");
        } else if !resources::is_dns1123_subdomain(p) {
            e.invalid(field, key, &format!("prefix part {SUBDOMAIN_MSG}"));
        }
    }
    if name.is_empty() {
        e.invalid(field, key, "name part must be non-empty");
    } else if name.len() > 63 {
        e.invalid(field, key, "name part must be no more than 63 characters");
    } else if !is_name_part(name) || name.contains('/') {
        e.invalid(field, key, NAME_PART_MSG);
    }
}

fn check_labels(labels: &Value, field: &str, e: &mut Errs) {
    let Some(map) = labels.as_object() else {
        if !labels.is_null() {
            e.push(
                field,
                TYPE_INVALID,
                "Invalid value: must be a map of strings",
            );
        }
        return;
    };
    for (k, v) in map {
        check_qualified_name(k, field, e);
        match v {
            Value::String(s) if s.is_empty() => {}
            Value::String(s) if s.len() > 63 => {
                e.invalid(field, s, "must be no more than 63 characters")
            }
            Value::String(s) if !is_name_part(s) => e.invalid(field, s, LABEL_VALUE_MSG),
            Value::String(_) => {}
            other => e.invalid(field, other, "label values must be strings"),
        }
    }
}

fn check_label_map(labels: Option<&BTreeMap<String, String>>, field: &str, e: &mut Errs) {
    if let Some(l) = labels {
        check_labels(&json!(l), field, e);
    }
}

/// Deserializes into the k8s-openapi type; a failure becomes a type cause.
fn de<'a, T: Deserialize<'a>>(obj: &'a Value, e: &mut Errs) -> Option<T> {
    match T::deserialize(obj) {
        Ok(t) => Some(t),
        Err(err) => {
            let msg = err.to_string();
            e.push(guess_error_field(obj, &msg), TYPE_INVALID, msg);
            None
        }
    }
}

/// Finds where a serde error happened when its message names the offending scalar
/// (`invalid type: string "oops", expected a sequence`) and that scalar occurs exactly
/// once in the object; "" otherwise.
fn guess_error_field(obj: &Value, msg: &str) -> String {
    let Some(target) = unexpected_value(msg) else {
        return String::new();
    };
    let mut hits = Vec::new();
    find_leaf(obj, &target, String::new(), &mut hits);
    if hits.len() == 1 {
        hits.pop().unwrap_or_default()
    } else {
        String::new()
    }
}

fn unexpected_value(msg: &str) -> Option<Value> {
    let rest = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))?;
    if let Some(r) = rest.strip_prefix("string \"") {
        let end = r.rfind("\", expected")?;
        return Some(Value::String(r[..end].to_string()));
    }
    let tick = |p: &str| -> Option<&str> {
        let r = rest.strip_prefix(p)?;
        Some(&r[..r.find('`')?])
    };
    if let Some(n) = tick("integer `") {
        return serde_json::from_str(n).ok();
    }
    if let Some(n) = tick("floating point `") {
        return serde_json::from_str(n).ok();
    }
    if let Some(b) = tick("boolean `") {
        return serde_json::from_str(b).ok();
    }
    None
}

fn find_leaf(v: &Value, target: &Value, path: String, hits: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                find_leaf(c, target, p, hits);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                find_leaf(c, target, format!("{path}[{i}]"), hits);
            }
        }
        leaf => {
            let same = match (leaf, target) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                (a, b) => a == b,
            };
            if same {
                hits.push(path);
            }
        }
    }
}

/// Deserialize into the k8s-openapi type of `(group, version, kind)` and run that
/// kind's checks.
fn check_typed(info: &ResourceInfo, obj: &Value, e: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match (
        info.group.as_str(),
        info.version.as_str(),
        info.kind.as_str(),
    ) {
        ("", "v1", "Namespace") => {
            de::<core::Namespace>(obj, e);
        }
        ("", "v1", "Node") => {
            de::<core::Node>(obj, e);
        }
        ("", "v1", "Pod") => {
            if let Some(p) = de::<core::Pod>(obj, e) {
                check_pod_spec(&p.spec.unwrap_or_default(), "spec", e);
            }
        }
        ("", "v1", "Service") => {
            if let Some(s) = de::<core::Service>(obj, e) {
                check_service(&s.spec.unwrap_or_default(), e);
            }
        }
        ("", "v1", "Endpoints") => {
            de::<core::Endpoints>(obj, e);
        }
        ("", "v1", "ConfigMap") => {
            if let Some(cm) = de::<core::ConfigMap>(obj, e) {
                let mut keys = HashSet::new();
                for k in cm.data.iter().flat_map(|d| d.keys()) {
                    check_config_key(k, "data", e);
                    keys.insert(k.clone());
                }
                for k in cm.binary_data.iter().flat_map(|d| d.keys()) {
                    check_config_key(k, "binaryData", e);
                    if keys.contains(k) {
                        e.invalid("data", k.as_str(), "duplicate of key present in binaryData");
                    }
                }
            }
        }
        ("", "v1", "Secret") => {
            if let Some(s) = de::<core::Secret>(obj, e) {
                check_secret(&s, e);
            }
        }
        ("", "v1", "Event") => {
            de::<core::Event>(obj, e);
        }
        ("", "v1", "ServiceAccount") => {
            de::<core::ServiceAccount>(obj, e);
        }
        ("", "v1", "PersistentVolumeClaim") => {
            if let Some(pvc) = de::<core::PersistentVolumeClaim>(obj, e) {
                check_pvc(&pvc.spec.unwrap_or_default(), e);
            }
        }
        ("", "v1", "PersistentVolume") => {
            if let Some(pv) = de::<core::PersistentVolume>(obj, e) {
                check_pv(&pv.spec.unwrap_or_default(), e);
            }
        }
        ("", "v1", "LimitRange") => {
            de::<core::LimitRange>(obj, e);
        }
        ("", "v1", "ResourceQuota") => {
            de::<core::ResourceQuota>(obj, e);
        }
        ("apps", "v1", "Deployment") => {
            if let Some(d) = de::<apps::Deployment>(obj, e) {
                let s = d.spec;
                check_replicas(s.replicas, e);
                check_workload(spec, &s.selector, &s.template, "deployment", e);
                if let Some(t) = s.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
                    e.one_of(
                        "spec.strategy.type",
                        Some(t),
                        &["Recreate", "RollingUpdate"],
                    );
                }
            }
        }
        ("apps", "v1", "ReplicaSet") => {
            if let Some(rs) = de::<apps::ReplicaSet>(obj, e) {
                let s = rs.spec;
                check_replicas(s.replicas, e);
                check_workload(
                    spec,
                    &s.selector,
                    &s.template.unwrap_or_default(),
                    "replicaset",
                    e,
                );
            }
        }
        ("apps", "v1", "StatefulSet") => {
            if let Some(sts) = de::<apps::StatefulSet>(obj, e) {
                let s = sts.spec;
                check_replicas(s.replicas, e);
                check_workload(spec, &s.selector, &s.template, "statefulset", e);
                e.one_of(
                    "spec.podManagementPolicy",
                    s.pod_management_policy.as_deref(),
                    &["OrderedReady", "Parallel"],
                );
                if let Some(t) = s.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) {
                    e.one_of(
                        "spec.updateStrategy.type",
                        Some(t),
                        &["RollingUpdate", "OnDelete"],
                    );
                }
            }
        }
        ("apps", "v1", "DaemonSet") => {
            if let Some(ds) = de::<apps::DaemonSet>(obj, e) {
                let s = ds.spec;
                check_workload(spec, &s.selector, &s.template, "daemonset", e);
                if let Some(t) = s.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) {
                    e.one_of(
                        "spec.updateStrategy.type",
                        Some(t),
                        &["RollingUpdate", "OnDelete"],
                    );
                }
            }
        }
        ("apps", "v1", "ControllerRevision") => {
            de::<apps::ControllerRevision>(obj, e);
        }
        ("batch", "v1", "Job") => {
            if let Some(j) = de::<batch::Job>(obj, e) {
                check_job_spec(&j.spec.unwrap_or_default(), "spec", e);
            }
        }
        ("batch", "v1", "CronJob") => {
            if let Some(cj) = de::<batch::CronJob>(obj, e) {
                let s = cj.spec;
                if s.schedule.trim().is_empty() {
                    e.required("spec.schedule", "");
                }
                e.one_of(
                    "spec.concurrencyPolicy",
                    s.concurrency_policy.as_deref(),
                    &["Allow", "Forbid", "Replace"],
                );
                check_job_spec(
                    &s.job_template.spec.unwrap_or_default(),
                    "spec.jobTemplate.spec",
                    e,
                );
            }
        }
        ("policy", "v1", "PodDisruptionBudget") => {
            if let Some(pdb) = de::<policy::PodDisruptionBudget>(obj, e) {
                let s = pdb.spec.unwrap_or_default();
                if s.min_available.is_some() && s.max_unavailable.is_some() {
                    e.invalid(
                        "spec",
                        spec,
                        "minAvailable and maxUnavailable cannot be both set",
                    );
                }
                for (f, v) in [
                    ("spec.minAvailable", &s.min_available),
                    ("spec.maxUnavailable", &s.max_unavailable),
                ] {
                    check_int_or_percent(v.as_ref(), f, e);
                }
            }
        }
        ("storage.k8s.io", "v1", "StorageClass") => {
            if let Some(sc) = de::<storage::StorageClass>(obj, e) {
                if sc.provisioner.is_empty() {
                    e.required("provisioner", "");
                }
                e.one_of(
                    "reclaimPolicy",
                    sc.reclaim_policy.as_deref(),
                    &["Delete", "Retain"],
                );
                e.one_of(
                    "volumeBindingMode",
                    sc.volume_binding_mode.as_deref(),
                    &["Immediate", "WaitForFirstConsumer"],
                );
            }
        }
        ("networking.k8s.io", "v1", "NetworkPolicy") => {
            if let Some(np) = de::<networking::NetworkPolicy>(obj, e) {
                let s = np.spec.unwrap_or_default();
                for (i, t) in s.policy_types.iter().flatten().enumerate() {
                    e.one_of(
                        format!("spec.policyTypes[{i}]"),
                        Some(t),
                        &["Ingress", "Egress"],
                    );
                }
            }
        }
        ("networking.k8s.io", "v1", "Ingress") => {
            if let Some(ing) = de::<networking::Ingress>(obj, e) {
                check_ingress(&ing.spec.unwrap_or_default(), spec, e);
            }
        }
        ("networking.k8s.io", "v1", "IngressClass") => {
            de::<networking::IngressClass>(obj, e);
        }
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            let typed = de::<apiextensions::CustomResourceDefinition>(obj, e);
            if typed.is_some() {
                for (field, reason, message) in resources::crd_field_errors(obj) {
                    e.push(field, reason, message);
                }
            }
        }
        ("rbac.authorization.k8s.io", "v1", "Role") => {
            if let Some(r) = de::<rbac::Role>(obj, e) {
                check_policy_rules(r.rules.as_deref().unwrap_or_default(), true, e);
            }
        }
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => {
            if let Some(r) = de::<rbac::ClusterRole>(obj, e) {
                check_policy_rules(r.rules.as_deref().unwrap_or_default(), false, e);
            }
        }
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => {
            if let Some(rb) = de::<rbac::RoleBinding>(obj, e) {
                check_binding(
                    &rb.role_ref,
                    rb.subjects.as_deref().unwrap_or_default(),
                    true,
                    e,
                );
            }
        }
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            if let Some(rb) = de::<rbac::ClusterRoleBinding>(obj, e) {
                check_binding(
                    &rb.role_ref,
                    rb.subjects.as_deref().unwrap_or_default(),
                    false,
                    e,
                );
            }
        }
        ("coordination.k8s.io", "v1", "Lease") => {
            if let Some(l) = de::<coordination::Lease>(obj, e) {
                if let Some(d) = l.spec.and_then(|s| s.lease_duration_seconds) {
                    if d <= 0 {
                        e.invalid("spec.leaseDurationSeconds", d, "must be greater than 0");
                    }
                }
            }
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            if let Some(s) = de::<discovery::EndpointSlice>(obj, e) {
                if s.address_type.is_empty() {
                    e.required("addressType", "");
                } else {
                    e.one_of(
                        "addressType",
                        Some(&s.address_type),
                        &["IPv4", "IPv6", "FQDN"],
                    );
                }
            }
        }
        ("events.k8s.io", "v1", "Event") => {
            de::<events::Event>(obj, e);
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => {
            if let Some(c) = de::<admissionregistration::ValidatingWebhookConfiguration>(obj, e) {
                let hooks: Vec<_> = c
                    .webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| {
                        (
                            w.name,
                            w.client_config,
                            w.side_effects,
                            w.admission_review_versions,
                        )
                    })
                    .collect();
                check_webhooks(&hooks, e);
            }
        }
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => {
            if let Some(c) = de::<admissionregistration::MutatingWebhookConfiguration>(obj, e) {
                let hooks: Vec<_> = c
                    .webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| {
                        (
                            w.name,
                            w.client_config,
                            w.side_effects,
                            w.admission_review_versions,
                        )
                    })
                    .collect();
                check_webhooks(&hooks, e);
            }
        }
        ("scheduling.k8s.io", "v1", "PriorityClass") => {
            if let Some(pc) = de::<scheduling::PriorityClass>(obj, e) {
                let name = pc.metadata.name.unwrap_or_default();
                if pc.value.unwrap_or_default() > 1_000_000_000 && !name.starts_with("system-") {
                    e.forbidden(
                        "value",
                        "maximum allowed value of a user defined priority is 1000000000",
                    );
                }
                e.one_of(
                    "preemptionPolicy",
                    pc.preemption_policy.as_deref(),
                    &["PreemptLowerPriority", "Never"],
                );
            }
        }
        // A built-in kind without a typed mapping: metadata checks only.
        _ => {}
    }
}

fn check_replicas(replicas: Option<i32>, e: &mut Errs) {
    if let Some(r) = replicas {
        if r < 0 {
            e.invalid("spec.replicas", r, "must be greater than or equal to 0");
        }
    }
}

/// Selector/template rules of Deployment, ReplicaSet, StatefulSet and DaemonSet.
fn check_workload(
    raw_spec: &Value,
    selector: &LabelSelector,
    template: &core::PodTemplateSpec,
    what: &str,
    e: &mut Errs,
) {
    let raw_selector = raw_spec.get("selector").unwrap_or(&Value::Null);
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if raw_selector.is_null() {
        e.required("spec.selector", "");
    } else if selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
    {
        e.invalid(
            "spec.selector",
            raw_selector,
            &format!("empty selector is invalid for {what}"),
        );
    } else {
        let valid = check_label_selector(selector, "spec.selector", e);
        if valid && !selector_matches(selector, &labels) {
            e.invalid(
                "spec.template.metadata.labels",
                &json!(labels),
                "selector does not match template labels",
            );
        }
    }
    check_label_map(
        template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
        "spec.template.metadata.labels",
        e,
    );
    let mut pod = template.spec.clone().unwrap_or_default();
    // A StatefulSet's containers mount its volumeClaimTemplates by name; upstream
    // validates the template with those claims counted as volumes.
    for claim in raw_spec
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = claim.pointer("/metadata/name").and_then(Value::as_str) {
            pod.volumes.get_or_insert_with(Vec::new).push(core::Volume {
                name: name.to_string(),
                ..Default::default()
            });
        }
    }
    check_pod_spec(&pod, "spec.template.spec", e);
    if let Some(rp) = pod.restart_policy.as_deref() {
        if rp != "Always" {
            e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
        }
    }
}

/// Validates a label selector's expressions; false when it is malformed.
fn check_label_selector(sel: &LabelSelector, field: &str, e: &mut Errs) -> bool {
    let before = e.0.len();
    check_label_map(
        sel.match_labels.as_ref(),
        &format!("{field}.matchLabels"),
        e,
    );
    for (i, r) in sel.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        if r.key.is_empty() {
            e.required(format!("{f}.key"), "");
        } else {
            check_qualified_name(&r.key, &format!("{f}.key"), e);
        }
        let n = r.values.as_ref().map_or(0, Vec::len);
        match r.operator.as_str() {
            "In" | "NotIn" if n == 0 => e.required(
                format!("{f}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if n > 0 => e.forbidden(
                format!("{f}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => e.not_supported(
                format!("{f}.operator"),
                op,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            ),
        }
    }
    e.0.len() == before
}

/// Whether `labels` satisfy the selector.
fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        let have = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

fn check_job_spec(s: &batch::JobSpec, path: &str, e: &mut Errs) {
    for (f, v) in [
        ("parallelism", s.parallelism),
        ("completions", s.completions),
        ("backoffLimit", s.backoff_limit),
    ] {
        if let Some(n) = v {
            if n < 0 {
                e.invalid(
                    format!("{path}.{f}"),
                    n,
                    "must be greater than or equal to 0",
                );
            }
        }
    }
    let template = &s.template;
    if let Some(sel) = &s.selector {
        if s.manual_selector == Some(true) {
            let labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            if check_label_selector(sel, &format!("{path}.selector"), e)
                && !selector_matches(sel, &labels)
            {
                e.invalid(
                    format!("{path}.template.metadata.labels"),
                    &json!(labels),
                    "selector does not match template labels",
                );
            }
        }
    }
    check_label_map(
        template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
        &format!("{path}.template.metadata.labels"),
        e,
    );
    let pod = template.spec.clone().unwrap_or_default();
    check_pod_spec(&pod, &format!("{path}.template.spec"), e);
    // Upstream defaults an empty restartPolicy to Always, which Jobs reject.
    let rp = pod.restart_policy.as_deref().unwrap_or("Always");
    if rp != "OnFailure" && rp != "Never" {
        e.not_supported(
            format!("{path}.template.spec.restartPolicy"),
            rp,
            &["OnFailure", "Never"],
        );
    }
}

fn check_port_num(port: i32, field: String, e: &mut Errs) {
    if !(1..=65535).contains(&port) {
        e.invalid(field, port, "must be between 1 and 65535, inclusive");
    }
}

fn check_pod_spec(spec: &core::PodSpec, path: &str, e: &mut Errs) {
    // Volumes.
    let mut volumes = HashSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let f = format!("{path}.volumes[{i}].name");
        if v.name.is_empty() {
            e.required(f, "");
        } else if !resources::is_dns1123_label(&v.name) {
            e.invalid(f, &v.name, LABEL_MSG);
        } else if !volumes.insert(v.name.clone()) {
            e.duplicate(f, &v.name);
        }
    }
    // Containers.
    if spec.containers.is_empty() {
        e.required(format!("{path}.containers"), "");
    }
    let mut names = HashSet::new();
    let groups = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in groups {
        for (i, c) in containers.iter().enumerate() {
            let cp = format!("{path}.{list}[{i}]");
            if c.name.is_empty() {
                e.required(format!("{cp}.name"), "");
            } else if !resources::is_dns1123_label(&c.name) {
                e.invalid(format!("{cp}.name"), &c.name, LABEL_MSG);
            } else if !names.insert(c.name.clone()) {
                e.duplicate(format!("{cp}.name"), &c.name);
            }
            if c.image.as_deref().unwrap_or_default().trim().is_empty() {
                e.required(format!("{cp}.image"), "");
            }
            e.one_of(
                format!("{cp}.imagePullPolicy"),
                c.image_pull_policy.as_deref(),
                &["Always", "IfNotPresent", "Never"],
            );
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let pp = format!("{cp}.ports[{j}]");
                if p.container_port == 0 {
                    e.required(format!("{pp}.containerPort"), "");
                } else {
                    check_port_num(p.container_port, format!("{pp}.containerPort"), e);
                }
                if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
                    check_port_num(hp, format!("{pp}.hostPort"), e);
                }
                e.one_of(
                    format!("{pp}.protocol"),
                    p.protocol.as_deref(),
                    &["TCP", "UDP", "SCTP"],
                );
            }
            for (j, env) in c.env.iter().flatten().enumerate() {
                if env.name.is_empty() {
                    e.required(format!("{cp}.env[{j}].name"), "");
                }
            }
            for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
                let mp = format!("{cp}.volumeMounts[{j}]");
                if m.name.is_empty() {
                    e.required(format!("{mp}.name"), "");
                } else if !volumes.contains(&m.name) {
                    e.not_found(format!("{mp}.name"), &m.name);
                }
                if m.mount_path.is_empty() {
                    e.required(format!("{mp}.mountPath"), "");
                }
            }
        }
    }
    e.one_of(
        format!("{path}.restartPolicy"),
        spec.restart_policy.as_deref(),
        &["Always", "OnFailure", "Never"],
    );
    e.one_of(
        format!("{path}.dnsPolicy"),
        spec.dns_policy.as_deref(),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
}

fn check_service(s: &core::ServiceSpec, e: &mut Errs) {
    let ty = s.type_.as_deref().unwrap_or("ClusterIP");
    e.one_of(
        "spec.type",
        Some(ty),
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
    );
    let headless = s.cluster_ip.as_deref() == Some("None");
    let ports = s.ports.as_deref().unwrap_or_default();
    if ty == "ExternalName" {
        if s.external_name.as_deref().unwrap_or_default().is_empty() {
            e.required("spec.externalName", "");
        }
    } else if ports.is_empty() && !headless {
        e.required("spec.ports", "");
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let name = p.name.as_deref().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            e.required(format!("{f}.name"), "");
        } else if !name.is_empty() {
            if !resources::is_dns1123_label(name) {
                e.invalid(format!("{f}.name"), name, LABEL_MSG);
            } else if !names.insert(name.to_string()) {
                e.duplicate(format!("{f}.name"), name);
            }
        }
        if p.port == 0 {
            e.required(format!("{f}.port"), "");
        } else {
            check_port_num(p.port, format!("{f}.port"), e);
        }
        e.one_of(
            format!("{f}.protocol"),
            p.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
        );
        match &p.target_port {
            Some(IntOrString::Int(n)) if *n != 0 => {
                check_port_num(*n, format!("{f}.targetPort"), e)
            }
            Some(IntOrString::String(n)) if n.is_empty() || n.len() > 15 => e.invalid(
                format!("{f}.targetPort"),
                n.as_str(),
                "must contain 1 to 15 characters",
            ),
            _ => {}
        }
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            if ty == "ClusterIP" {
                e.forbidden(
                    format!("{f}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            } else {
                check_port_num(np, format!("{f}.nodePort"), e);
            }
        }
    }
    check_label_map(s.selector.as_ref(), "spec.selector", e);
    e.one_of(
        "spec.sessionAffinity",
        s.session_affinity.as_deref(),
        &["ClientIP", "None"],
    );
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn check_access_modes(modes: Option<&Vec<String>>, e: &mut Errs) {
    let modes = modes.map(Vec::as_slice).unwrap_or_default();
    if modes.is_empty() {
        e.required("spec.accessModes", "at least 1 access mode is required");
    }
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str()) {
            e.not_supported("spec.accessModes", m, ACCESS_MODES);
        }
    }
}

fn check_pvc(s: &core::PersistentVolumeClaimSpec, e: &mut Errs) {
    check_access_modes(s.access_modes.as_ref(), e);
    let storage = s
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    match storage {
        None => e.required("spec.resources[storage]", ""),
        Some(q) => check_positive_quantity(&q.0, "spec.resources[storage]", e),
    }
    e.one_of(
        "spec.volumeMode",
        s.volume_mode.as_deref(),
        &["Block", "Filesystem"],
    );
}

fn check_pv(s: &core::PersistentVolumeSpec, e: &mut Errs) {
    check_access_modes(s.access_modes.as_ref(), e);
    match s.capacity.as_ref() {
        None => e.required("spec.capacity", ""),
        Some(c) if c.is_empty() => e.required("spec.capacity", ""),
        Some(c) => {
            for (k, q) in c {
                if k != "storage" {
                    e.not_supported("spec.capacity", k, &["storage"]);
                } else {
                    check_positive_quantity(&q.0, "spec.capacity[storage]", e);
                }
            }
        }
    }
    let sources = [
        s.aws_elastic_block_store.is_some(),
        s.azure_disk.is_some(),
        s.azure_file.is_some(),
        s.cephfs.is_some(),
        s.cinder.is_some(),
        s.csi.is_some(),
        s.fc.is_some(),
        s.flex_volume.is_some(),
        s.flocker.is_some(),
        s.gce_persistent_disk.is_some(),
        s.glusterfs.is_some(),
        s.host_path.is_some(),
        s.iscsi.is_some(),
        s.local.is_some(),
        s.nfs.is_some(),
        s.photon_persistent_disk.is_some(),
        s.portworx_volume.is_some(),
        s.quobyte.is_some(),
        s.rbd.is_some(),
        s.scale_io.is_some(),
        s.storageos.is_some(),
        s.vsphere_volume.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources == 0 {
        e.required("spec", "must specify a volume type");
    } else if sources > 1 {
        e.forbidden("spec", "may not specify more than 1 volume type");
    }
    e.one_of(
        "spec.persistentVolumeReclaimPolicy",
        s.persistent_volume_reclaim_policy.as_deref(),
        &["Delete", "Recycle", "Retain"],
    );
}

/// Parses a Kubernetes quantity (`1Gi`, `500m`, `1e3`) into a number.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num.matches('.').count() > 1 || num[1..].contains(['+', '-']) {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp if exp.starts_with(['e', 'E']) => {
            let n: i32 = exp[1..].parse().ok()?;
            10f64.powi(n)
        }
        _ => return None,
    };
    Some(value * mult)
}

fn check_positive_quantity(q: &str, field: &str, e: &mut Errs) {
    match parse_quantity(q) {
        None => e.invalid(field, q, QUANTITY_MSG),
        Some(v) if v <= 0.0 => e.invalid(field, q, "must be greater than zero"),
        Some(_) => {}
    }
}

fn check_int_or_percent(v: Option<&IntOrString>, field: &str, e: &mut Errs) {
    match v {
        Some(IntOrString::Int(n)) if *n < 0 => {
            e.invalid(field, *n, "must be greater than or equal to 0")
        }
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(p)) if p <= 100 => {}
            Some(Ok(_)) => e.invalid(field, s.as_str(), "must not be greater than 100%"),
            _ => e.invalid(field, s.as_str(), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
        },
        _ => {}
    }
}

fn check_config_key(k: &str, map: &str, e: &mut Errs) {
    let f = format!("{map}[{k}]");
    if k.is_empty()
        || k.len() > 253
        || k == "."
        || k == ".."
        || !k
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        e.invalid(f, k, CONFIG_KEY_MSG);
    }
}

fn check_secret(s: &core::Secret, e: &mut Errs) {
    let mut keys: HashSet<&String> = HashSet::new();
    for k in s.data.iter().flat_map(|d| d.keys()) {
        check_config_key(k, "data", e);
        keys.insert(k);
    }
    for k in s.string_data.iter().flat_map(|d| d.keys()) {
        check_config_key(k, "stringData", e);
        keys.insert(k);
    }
    let need = |key: &str, e: &mut Errs| {
        if !keys.iter().any(|k| k.as_str() == key) {
            e.required(format!("data[{key}]"), "");
        }
    };
    match s.type_.as_deref().unwrap_or("Opaque") {
        "kubernetes.io/tls" => {
            need("tls.crt", e);
            need("tls.key", e);
        }
        "kubernetes.io/dockerconfigjson" => need(".dockerconfigjson", e),
        "kubernetes.io/dockercfg" => need(".dockercfg", e),
        "kubernetes.io/service-account-token" => {
            let has = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|n| !n.is_empty());
            if !has {
                e.required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                );
            }
        }
        _ => {}
    }
}

fn check_ingress(s: &networking::IngressSpec, raw_spec: &Value, e: &mut Errs) {
    let rules = s.rules.as_deref().unwrap_or_default();
    if s.default_backend.is_none() && rules.is_empty() {
        e.invalid(
            "spec",
            raw_spec,
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(b) = &s.default_backend {
        check_ingress_backend(b, "spec.defaultBackend", e);
    }
    for (i, r) in rules.iter().enumerate() {
        if let Some(h) = r.host.as_deref() {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if !resources::is_dns1123_subdomain(bare) {
                e.invalid(format!("spec.rules[{i}].host"), h, SUBDOMAIN_MSG);
            }
        }
        let Some(http) = &r.http else { continue };
        if http.paths.is_empty() {
            e.required(format!("spec.rules[{i}].http.paths"), "");
        }
        for (j, p) in http.paths.iter().enumerate() {
            let f = format!("spec.rules[{i}].http.paths[{j}]");
            match p.path_type.as_str() {
                "" => e.required(format!("{f}.pathType"), "pathType must be specified"),
                "Exact" | "Prefix" => {
                    if !p.path.as_deref().unwrap_or_default().starts_with('/') {
                        e.invalid(
                            format!("{f}.path"),
                            p.path.as_deref().unwrap_or_default(),
                            "must be an absolute path",
                        );
                    }
                }
                "ImplementationSpecific" => {}
                other => e.not_supported(
                    format!("{f}.pathType"),
                    other,
                    &["Exact", "Prefix", "ImplementationSpecific"],
                ),
            }
            check_ingress_backend(&p.backend, &format!("{f}.backend"), e);
        }
    }
}

fn check_ingress_backend(b: &networking::IngressBackend, f: &str, e: &mut Errs) {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => e.invalid(f, "", "cannot set both service and resource backends"),
        (None, None) => e.invalid(f, "", "resource or service backend is required"),
        (Some(svc), None) => {
            if svc.name.is_empty() {
                e.required(format!("{f}.service.name"), "");
            }
            match &svc.port {
                Some(p) if p.name.is_some() && p.number.is_some() => e.invalid(
                    format!("{f}.service.port"),
                    "",
                    "cannot set both port name & port number",
                ),
                Some(p) if p.name.is_some() || p.number.is_some() => {
                    if let Some(n) = p.number {
                        check_port_num(n, format!("{f}.service.port.number"), e);
                    }
                }
                _ => e.invalid(
                    format!("{f}.service.port"),
                    "",
                    "port name or number is required",
                ),
            }
        }
        (None, Some(r)) => {
            if r.kind.is_empty() {
                e.required(format!("{f}.resource.kind"), "");
            }
            if r.name.is_empty() {
                e.required(format!("{f}.resource.name"), "");
            }
        }
    }
}

fn check_policy_rules(rules: &[rbac::PolicyRule], namespaced: bool, e: &mut Errs) {
    for (i, r) in rules.iter().enumerate() {
        let f = format!("rules[{i}]");
        if r.verbs.is_empty() {
            e.required(
                format!("{f}.verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = r.non_resource_urls.as_deref().unwrap_or_default();
        if !urls.is_empty() {
            if namespaced {
                e.invalid(
                    format!("{f}.nonResourceURLs"),
                    &json!(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if r.api_groups.as_ref().is_some_and(|g| !g.is_empty())
                || r.resources.as_ref().is_some_and(|g| !g.is_empty())
                || r.resource_names.as_ref().is_some_and(|g| !g.is_empty())
            {
                e.invalid(
                    format!("{f}.nonResourceURLs"),
                    &json!(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if r.api_groups.as_ref().is_none_or(Vec::is_empty) {
            e.required(
                format!("{f}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if r.resources.as_ref().is_none_or(Vec::is_empty) {
            e.required(
                format!("{f}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

fn check_binding(
    role_ref: &rbac::RoleRef,
    subjects: &[rbac::Subject],
    namespaced: bool,
    e: &mut Errs,
) {
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if role_ref.kind.is_empty() {
        e.required("roleRef.kind", "");
    } else {
        e.one_of("roleRef.kind", Some(&role_ref.kind), kinds);
    }
    let group = role_ref.api_group.as_deref().unwrap_or_default();
    if group != "rbac.authorization.k8s.io" {
        e.not_supported("roleRef.apiGroup", group, &["rbac.authorization.k8s.io"]);
    }
    if role_ref.name.is_empty() {
        e.required("roleRef.name", "");
    } else {
        check_path_segment(&role_ref.name, "roleRef.name", e);
    }
    for (i, s) in subjects.iter().enumerate() {
        let f = format!("subjects[{i}]");
        if s.name.is_empty() {
            e.required(format!("{f}.name"), "");
        }
        let sg = s.api_group.as_deref().unwrap_or_default();
        match s.kind.as_str() {
            "ServiceAccount" => {
                if !sg.is_empty() {
                    e.not_supported(format!("{f}.apiGroup"), sg, &[""]);
                }
                if !namespaced && s.namespace.as_deref().unwrap_or_default().is_empty() {
                    e.required(format!("{f}.namespace"), "");
                }
            }
            "User" | "Group" => {
                if sg != "rbac.authorization.k8s.io" {
                    e.not_supported(format!("{f}.apiGroup"), sg, &["rbac.authorization.k8s.io"]);
                }
            }
            other => e.not_supported(
                format!("{f}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

type Webhook = (
    String,
    admissionregistration::WebhookClientConfig,
    String,
    Vec<String>,
);

fn check_webhooks(hooks: &[Webhook], e: &mut Errs) {
    let mut names = HashSet::new();
    for (i, (name, cc, side_effects, versions)) in hooks.iter().enumerate() {
        let f = format!("webhooks[{i}]");
        if name.is_empty() {
            e.required(format!("{f}.name"), "");
        } else if !resources::is_dns1123_subdomain(name) {
            e.invalid(format!("{f}.name"), name, SUBDOMAIN_MSG);
        } else if name.split('.').count() < 3 {
            e.invalid(
                format!("{f}.name"),
                name,
                "should be a domain with at least three segments separated by dots",
            );
        } else if !names.insert(name.clone()) {
            e.duplicate(format!("{f}.name"), name);
        }
        match (&cc.url, &cc.service) {
            (Some(_), Some(_)) | (None, None) => e.required(
                format!("{f}.clientConfig"),
                "exactly one of url or service is required",
            ),
            (None, Some(svc)) => {
                if svc.name.is_empty() {
                    e.required(format!("{f}.clientConfig.service.name"), "");
                }
                if svc.namespace.is_empty() {
                    e.required(format!("{f}.clientConfig.service.namespace"), "");
                }
            }
            (Some(url), None) => {
                if !url.starts_with("https://") {
                    e.invalid(
                        format!("{f}.clientConfig.url"),
                        url,
                        "'https' is the only allowed URL scheme",
                    );
                }
            }
        }
        if side_effects.is_empty() {
            e.required(
                format!("{f}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            );
        } else {
            e.one_of(
                format!("{f}.sideEffects"),
                Some(side_effects),
                &["None", "NoneOnDryRun"],
            );
        }
        if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
            e.required(
                format!("{f}.admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    fn check(reg: &Registry, obj: &Value) -> Result<(), Vec<Cause>> {
        let av = obj["apiVersion"].as_str().unwrap();
        let kind = obj["kind"].as_str().unwrap();
        let info = reg.by_api_version_kind(av, kind).unwrap();
        validate(info, obj)
    }

    fn has(causes: &[Cause], field: &str, reason: &str) -> bool {
        causes
            .iter()
            .any(|c| c.field == field && c.reason == reason)
    }

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: default
  labels: {app: web, "app.kubernetes.io/name": web}
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports: [{containerPort: 80}]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#;

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: fe}}
    spec:
      containers: [{name: nginx, image: "nginx:1.27"}]
"#;

    #[test]
    fn valid_objects_pass() {
        let reg = Registry::new();
        for doc in [
            POD,
            DEPLOYMENT,
            r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: https, port: 443, targetPort: https}]
"#,
            r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
            r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: backup, image: busybox}]
"#,
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:stormdrill"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
"#,
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: rook-ceph}
"#,
            r#"
apiVersion: v1
kind: Secret
metadata: {name: tls}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
"#,
        ] {
            let obj = yaml(doc);
            assert_eq!(check(&reg, &obj), Ok(()), "{doc}");
        }
    }

    #[test]
    fn pod_without_containers() {
        let reg = Registry::new();
        let obj = yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n");
        let causes = check(&reg, &obj).unwrap_err();
        assert!(
            has(&causes, "spec.containers", "FieldValueRequired"),
            "{causes:?}"
        );
        let obj = yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n");
        assert!(has(
            &check(&reg, &obj).unwrap_err(),
            "spec.containers",
            "FieldValueRequired"
        ));
        let obj = yaml(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: ''}, {name: a, image: x, volumeMounts: [{name: nope, mountPath: /x}]}]}\n",
        );
        let causes = check(&reg, &obj).unwrap_err();
        assert!(has(
            &causes,
            "spec.containers[0].name",
            "FieldValueRequired"
        ));
        assert!(has(
            &causes,
            "spec.containers[0].image",
            "FieldValueRequired"
        ));
        assert!(has(
            &causes,
            "spec.containers[1].volumeMounts[0].name",
            "FieldValueNotFound"
        ));
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let reg = Registry::new();
        let mut obj = yaml(DEPLOYMENT);
        obj["spec"]["selector"]["matchLabels"]["app"] = json!("api");
        let causes = check(&reg, &obj).unwrap_err();
        let c = causes
            .iter()
            .find(|c| c.field == "spec.template.metadata.labels")
            .expect("selector cause");
        assert_eq!(c.reason, "FieldValueInvalid");
        assert!(
            c.message
                .contains("selector does not match template labels"),
            "{}",
            c.message
        );

        obj["spec"].as_object_mut().unwrap().remove("selector");
        let causes = check(&reg, &obj).unwrap_err();
        assert!(
            has(&causes, "spec.selector", "FieldValueRequired"),
            "{causes:?}"
        );

        obj["spec"]["selector"] = json!({});
        assert!(has(
            &check(&reg, &obj).unwrap_err(),
            "spec.selector",
            "FieldValueInvalid"
        ));

        let mut sts = yaml(DEPLOYMENT);
        sts["kind"] = json!("StatefulSet");
        sts["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]});
        let causes = check(&reg, &sts).unwrap_err();
        assert!(has(
            &causes,
            "spec.template.metadata.labels",
            "FieldValueInvalid"
        ));
        sts["spec"]["selector"]["matchExpressions"][0]["values"] = json!(["web", "db"]);
        assert_eq!(check(&reg, &sts), Ok(()));
    }

    #[test]
    fn type_errors_become_causes() {
        let reg = Registry::new();
        let obj =
            yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: oops}\n");
        let causes = check(&reg, &obj).unwrap_err();
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].reason, "FieldValueTypeInvalid");
        assert_eq!(causes[0].field, "spec.containers");
        assert!(
            causes[0].message.contains("invalid type: string \"oops\""),
            "{}",
            causes[0].message
        );

        let obj = yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: three}\n",
        );
        let causes = check(&reg, &obj).unwrap_err();
        assert_eq!(causes[0].field, "spec.replicas");
    }

    #[test]
    fn metadata_rules() {
        let reg = Registry::new();
        let mut obj = yaml(POD);
        obj["metadata"].as_object_mut().unwrap().remove("name");
        obj["metadata"]["generateName"] = json!("web-");
        let causes = check(&reg, &obj).unwrap_err();
        assert!(has(&causes, "metadata.name", "FieldValueRequired"));

        obj["metadata"]["name"] = json!("Web_0");
        obj["metadata"]["labels"] = json!({"bad key!": "x", "ok": "bad value!"});
        let causes = check(&reg, &obj).unwrap_err();
        assert!(has(&causes, "metadata.name", "FieldValueInvalid"));
        assert_eq!(
            causes
                .iter()
                .filter(|c| c.field == "metadata.labels")
                .count(),
            2,
            "{causes:?}"
        );

        let ns = yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n");
        assert!(has(
            &check(&reg, &ns).unwrap_err(),
            "metadata.name",
            "FieldValueInvalid"
        ));
        let svc = yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec: {ports: [{port: 80}]}\n",
        );
        assert!(has(
            &check(&reg, &svc).unwrap_err(),
            "metadata.name",
            "FieldValueInvalid"
        ));
        let wrong_kind = yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n");
        let info = reg.get("", "v1", "configmaps").unwrap();
        assert!(has(
            &validate(info, &wrong_kind).unwrap_err(),
            "kind",
            "FieldValueInvalid"
        ));
    }

    #[test]
    fn service_and_pvc_rules() {
        let reg = Registry::new();
        let svc = yaml("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: a, targetPort: 80}, {port: 70000}]}\n");
        let causes = check(&reg, &svc).unwrap_err();
        assert!(
            has(&causes, "spec.ports[0].port", "FieldValueRequired"),
            "{causes:?}"
        );
        assert!(has(&causes, "spec.ports[1].name", "FieldValueRequired"));
        assert!(has(&causes, "spec.ports[1].port", "FieldValueInvalid"));
        let headless =
            yaml("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None}\n");
        assert_eq!(check(&reg, &headless), Ok(()));

        let pvc =
            yaml("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {}\n");
        let causes = check(&reg, &pvc).unwrap_err();
        assert!(has(&causes, "spec.accessModes", "FieldValueRequired"));
        assert!(has(
            &causes,
            "spec.resources[storage]",
            "FieldValueRequired"
        ));
        let pvc = yaml("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: '0'}}}\n");
        assert!(has(
            &check(&reg, &pvc).unwrap_err(),
            "spec.resources[storage]",
            "FieldValueInvalid"
        ));
        assert_eq!(parse_quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("abc"), None);
    }

    #[test]
    fn job_restart_policy_and_rbac() {
        let reg = Registry::new();
        let job = yaml("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {containers: [{name: a, image: b}]}}}\n");
        let causes = check(&reg, &job).unwrap_err();
        assert!(has(
            &causes,
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported"
        ));
        let rb = yaml("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: x}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: sa}]\n");
        let causes = check(&reg, &rb).unwrap_err();
        assert!(has(&causes, "roleRef.kind", "FieldValueNotSupported"));
        assert!(has(&causes, "subjects[0].namespace", "FieldValueRequired"));
    }

    #[test]
    fn custom_resources_get_metadata_checks_only() {
        let mut reg = Registry::new();
        let crds = crate::resources::tests::fixture_crds();
        for (path, crd) in &crds {
            let info = reg
                .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                .unwrap();
            assert_eq!(validate(info, crd), Ok(()), "{}", path.display());
        }
        for (_, crd) in &crds {
            reg.add_crd(crd).unwrap();
        }
        let info = reg.get("ceph.rook.io", "v1", "cephclusters").unwrap();
        let cluster = yaml("apiVersion: ceph.rook.io/v1\nkind: CephCluster\nmetadata: {name: rook-ceph, namespace: rook-ceph}\nspec: {anything: [1, 2]}\n");
        assert_eq!(validate(info, &cluster), Ok(()));
        let bad = yaml("apiVersion: ceph.rook.io/v1\nkind: CephCluster\nmetadata: {name: Rook}\n");
        assert!(has(
            &validate(info, &bad).unwrap_err(),
            "metadata.name",
            "FieldValueInvalid"
        ));

        let mut crd = crds[0].1.clone();
        crd["metadata"]["name"] = json!("wrong.example.com");
        let crd_info = reg
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        assert!(has(
            &validate(crd_info, &crd).unwrap_err(),
            "metadata.name",
            "FieldValueInvalid"
        ));
    }

    #[test]
    fn invalid_status_shape() {
        let reg = Registry::new();
        let info = reg.by_kind("apps", "Deployment").unwrap();
        let causes = vec![Cause::new(
            "spec.selector",
            "FieldValueRequired",
            "Required value",
        )];
        let st = invalid_status(info, "web", &causes);
        assert_eq!(st["code"], 422);
        assert_eq!(st["reason"], "Invalid");
        assert_eq!(
            st["message"],
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
        assert_eq!(st["details"]["group"], "apps");
        assert_eq!(st["details"]["causes"][0]["field"], "spec.selector");
    }
}
