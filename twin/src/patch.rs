//! The PATCH types the API server accepts, applied to a stored object.
//!
//! * [`merge_patch`]: JSON merge patch (RFC 7386), `application/merge-patch+json`.
//! * [`json_patch`]: JSON patch (RFC 6902), `application/json-patch+json`.
//! * [`strategic_merge_patch`]: Kubernetes strategic merge patch,
//!   `application/strategic-merge-patch+json`.
//! * [`apply_patch`] + [`record_managed_fields`]: a simplified server-side
//!   apply, `application/apply-patch+yaml`.
//!
//! Strategic merge patch is only defined for built-in types: upstream answers
//! 415 UnsupportedMediaType to a strategic merge patch on a custom resource, and
//! CRD objects are merged with merge-patch semantics everywhere else (their
//! lists are atomic). The server should therefore call [`merge_patch`] for
//! custom resources and keep [`strategic_merge_patch`] for built-ins. Here the
//! lists that merge by key are recognised by their field name (see
//! [`list_strategy`]), not by a per-type schema, so any other list is replaced
//! as a whole, as for CRDs.
//!
//! Objects are plain `serde_json::Value`s throughout.

use serde_json::{Map, Value};

/// The `Content-Type` of a PATCH request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386)
    Merge,
    /// `application/json-patch+json` (RFC 6902)
    Json,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchType {
    /// Maps a request `Content-Type` (parameters such as `; charset=utf-8` are
    /// ignored, the media type is case-insensitive) to a patch type.
    /// `application/apply-patch+cbor` and anything else give `None` (the server
    /// answers 415 UnsupportedMediaType).
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. On error the target is left unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document has the wrong shape (e.g. not an object / array).
    #[error("invalid patch document: {0}")]
    InvalidDocument(String),
    /// A JSON patch that does not deserialize into RFC 6902 operations.
    #[error("invalid JSON patch document: {0}")]
    InvalidJsonPatch(#[source] serde_json::Error),
    /// A JSON patch `test` operation did not match.
    #[error(
        "JSON patch operation {operation} (test) failed at path '{path}': value did not match"
    )]
    TestFailed {
        operation: usize,
        path: String,
        #[source]
        source: json_patch::PatchError,
    },
    /// A JSON patch operation's `path` (or `from`) does not exist or is invalid.
    #[error("JSON patch operation {operation} ({op}) failed: path '{path}' not found or invalid")]
    PathNotFound {
        operation: usize,
        op: String,
        path: String,
        #[source]
        source: json_patch::PatchError,
    },
    /// Any other JSON patch failure (e.g. moving a value inside itself).
    #[error("JSON patch operation {operation} failed at path '{path}'")]
    JsonPatch {
        operation: usize,
        path: String,
        #[source]
        source: json_patch::PatchError,
    },
    /// A `$patch` directive other than `replace` / `delete` (or `merge` on a list).
    #[error("unknown patch type: {directive} in {context}")]
    UnknownDirective { directive: String, context: String },
    /// An element of a list merged by key lacks the merge key.
    #[error("map: {element} does not contain declared merge key: {key}")]
    MissingMergeKey { key: String, element: String },
    /// A malformed `$retainKeys` directive, or a patch field not listed in it.
    #[error("invalid patch format of $retainKeys: {0}")]
    RetainKeys(String),
}

// ---------------------------------------------------------------------------
// Merge patch and JSON patch
// ---------------------------------------------------------------------------

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes a key,
/// anything else (including arrays) replaces. A non-object patch replaces the
/// whole target (the server rejects such patches before calling this).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch. `patch` must be a JSON array of operations. The patch
/// is atomic: on any error (failing `test`, missing path, ...) the target is
/// left unchanged.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_array() {
        return Err(PatchError::InvalidDocument(
            "a JSON patch must be a JSON array of operations".to_string(),
        ));
    }
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(PatchError::InvalidJsonPatch)?;
    json_patch::patch(target, &ops).map_err(|e| {
        let operation = e.operation;
        let path = e.path.to_string();
        match e.kind {
            json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed {
                operation,
                path,
                source: e,
            },
            json_patch::PatchErrorKind::InvalidPointer
            | json_patch::PatchErrorKind::InvalidFromPointer => PatchError::PathNotFound {
                operation,
                op: patch[operation]["op"].as_str().unwrap_or("?").to_string(),
                path,
                source: e,
            },
            _ => PatchError::JsonPatch {
                operation,
                path,
                source: e,
            },
        }
    })
}

// ---------------------------------------------------------------------------
// List strategies shared by strategic merge patch and apply
// ---------------------------------------------------------------------------

/// How a list is combined with a patch for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// A list of maps merged element-wise by this key (`patchStrategy:"merge"`
    /// with a `patchMergeKey`).
    MergeByKey(&'static str),
    /// A list of primitives merged as a set (`metadata.finalizers`).
    PrimitiveSet,
    /// Replaced as a whole (no patch strategy, as for every CRD list).
    Atomic,
}

/// The strategy for the list in field `field`, from the k8s.io/api
/// `patchMergeKey` tags, keyed by the field name wherever it appears in the
/// object:
///
/// | field | strategy |
/// |---|---|
/// | `containers`, `initContainers`, `ephemeralContainers`, `volumes`, `env`, `imagePullSecrets`, `resourceClaims` | by `name` |
/// | `volumeMounts` | by `mountPath` |
/// | `volumeDevices` | by `devicePath` |
/// | `conditions` | by `type` |
/// | `ownerReferences` | by `uid` |
/// | `hostAliases` | by `ip` |
/// | `topologySpreadConstraints` | by `topologyKey` |
/// | `ports` | by `containerPort` when the elements carry it (container ports), else by `port` when they carry that (Service ports); otherwise atomic (e.g. NetworkPolicy ports) |
/// | `finalizers` | set of primitives |
/// | anything else (including `tolerations`) | atomic |
///
/// `elements` are the list elements to look at when the key depends on them
/// (`ports`): the patch's elements first, then the original's if the patch has
/// none other than directive markers.
pub fn list_strategy(field: &str, patch: &[Value], original: &[Value]) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "finalizers" => ListStrategy::PrimitiveSet,
        "ports" => {
            let pick = |list: &[Value]| -> Vec<Map<String, Value>> {
                list.iter()
                    .filter_map(Value::as_object)
                    .filter(|m| !(m.len() == 1 && m.contains_key(DIRECTIVE)))
                    .cloned()
                    .collect()
            };
            let mut sample = pick(patch);
            if sample.is_empty() {
                sample = pick(original);
            }
            if sample.is_empty() {
                ListStrategy::Atomic
            } else if sample.iter().all(|m| m.contains_key("containerPort")) {
                ListStrategy::MergeByKey("containerPort")
            } else if sample.iter().all(|m| m.contains_key("port")) {
                ListStrategy::MergeByKey("port")
            } else {
                ListStrategy::Atomic
            }
        }
        _ => ListStrategy::Atomic,
    }
}

// ---------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Kubernetes strategic merge patch (`k8s.io/apimachinery/pkg/util/strategicpatch`).
///
/// Like [`merge_patch`] (maps merge recursively, `null` deletes, scalars and
/// atomic lists are replaced), except:
///
/// * lists with a merge key (see [`list_strategy`]) merge element-wise: a patch
///   element replaces-by-merging the original element with the same key value,
///   new keys are appended; an empty patch list changes nothing;
/// * `metadata.finalizers` merges as a set of primitives (union, deduplicated);
/// * `$patch: replace` in a map replaces the map with the patch's contents;
///   `$patch: delete` in a map makes it empty (`{}`, as upstream);
/// * a list element `{"$patch": "replace"}` replaces the list by the patch's
///   other elements; `{<key>: v, "$patch": "delete"}` removes the element(s)
///   whose merge key is `v`;
/// * `$retainKeys: [..]` removes the map's keys not listed (and rejects patch
///   keys not listed);
/// * `$deleteFromPrimitiveList/<field>: [..]` removes those values from the
///   primitive list `<field>` (processed after the ordinary keys);
/// * `$setElementOrder/<field>: [..]` reorders `<field>` after merging: the
///   elements named in the directive (by merge key, or by value for primitive
///   lists) are permuted into the directive's order within the positions they
///   occupy, elements not named keep their positions. This approximates
///   upstream's order normalisation; the directive itself is dropped.
///
/// Directives never end up in the stored object, and `null`s in a patch for a
/// field the object lacks are dropped. The patch must be a JSON object; a
/// non-object target is treated as `{}`. On error the target is unchanged.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Some(patch) = patch.as_object() else {
        return Err(PatchError::InvalidDocument(
            "a strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let original = target.as_object().cloned().unwrap_or_default();
    *target = Value::Object(smp_map(original, patch)?);
    Ok(())
}

fn smp_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.remove(DIRECTIVE);
                smp_map(Map::new(), &rest)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::UnknownDirective {
                directive: directive.to_string(),
                context: format!("map: {}", Value::Object(patch.clone())),
            }),
        };
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        apply_retain_keys(&mut original, patch, retain)?;
    }

    for (k, pv) in patch {
        if k == RETAIN_KEYS
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        match original.get_mut(k) {
            Some(slot) => {
                let ov = slot.take();
                *slot = smp_value(k, Some(ov), pv)?;
            }
            None => {
                let v = smp_value(k, None, pv)?;
                original.insert(k.clone(), v);
            }
        }
    }

    for (k, pv) in patch {
        let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
            continue;
        };
        let Some(remove) = pv.as_array() else {
            return Err(PatchError::InvalidDocument(format!(
                "{k} must be a list, found {pv}"
            )));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|v| !remove.contains(v));
        }
    }

    for (k, pv) in patch {
        let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let Some(order) = pv.as_array() else {
            return Err(PatchError::InvalidDocument(format!(
                "{k} must be a list, found {pv}"
            )));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            let key = match list_strategy(field, order, list) {
                ListStrategy::MergeByKey(key) => Some(key),
                ListStrategy::PrimitiveSet | ListStrategy::Atomic => None,
            };
            reorder(list, order, key);
        }
    }

    Ok(original)
}

/// Merges one patch value into the original value of field `field` (`None`
/// when the original lacks the field).
fn smp_value(field: &str, original: Option<Value>, patch: &Value) -> Result<Value, PatchError> {
    Ok(match (original, patch) {
        (Some(Value::Object(o)), Value::Object(p)) => Value::Object(smp_map(o, p)?),
        (_, Value::Object(p)) => Value::Object(smp_map(Map::new(), p)?),
        (Some(Value::Array(o)), Value::Array(p)) => Value::Array(smp_list(field, o, p)?),
        (_, Value::Array(p)) => Value::Array(smp_list(field, Vec::new(), p)?),
        (_, scalar) => scalar.clone(),
    })
}

fn is_directive_element(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE))
}

fn smp_list(
    field: &str,
    mut original: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    match list_strategy(field, patch, &original) {
        ListStrategy::Atomic => {
            // Directive elements make no sense in an atomic list; drop them.
            patch
                .iter()
                .filter(|v| !is_directive_element(v))
                .map(|v| smp_value("", None, v))
                .collect()
        }
        ListStrategy::PrimitiveSet => {
            if patch
                .iter()
                .any(|v| v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"))
            {
                original.clear();
            }
            for v in patch.iter().filter(|v| !is_directive_element(v)) {
                original.push(v.clone());
            }
            Ok(dedup(original))
        }
        ListStrategy::MergeByKey(key) => {
            let list_value = || Value::Array(patch.to_vec()).to_string();
            let mut replace = false;
            let mut elements = Vec::new();
            for el in patch {
                let Some(m) = el.as_object() else {
                    return Err(PatchError::InvalidDocument(format!(
                        "list {field} is merged by key {key:?} but has a non-object element {el} in {}",
                        list_value()
                    )));
                };
                let missing_key = || PatchError::MissingMergeKey {
                    key: key.to_string(),
                    element: el.to_string(),
                };
                match m.get(DIRECTIVE) {
                    None => {
                        if !m.contains_key(key) {
                            return Err(missing_key());
                        }
                        elements.push(m);
                    }
                    Some(d) => match d.as_str() {
                        Some("delete") => {
                            let value = m.get(key).ok_or_else(missing_key)?;
                            original.retain(|o| o.get(key) != Some(value));
                        }
                        Some("replace") => replace = true,
                        Some("merge") => {
                            return Err(PatchError::InvalidDocument(format!(
                                "merging lists cannot yet be specified in the patch ({field})"
                            )))
                        }
                        _ => {
                            return Err(PatchError::UnknownDirective {
                                directive: d.to_string(),
                                context: format!("list {field}: {}", list_value()),
                            })
                        }
                    },
                }
            }
            if replace {
                original.clear();
            }
            for m in elements {
                let value = &m[key];
                match original.iter().position(|o| o.get(key) == Some(value)) {
                    Some(i) => {
                        let merged = match original[i].take() {
                            Value::Object(om) => smp_map(om, m)?,
                            _ => smp_map(Map::new(), m)?,
                        };
                        original[i] = Value::Object(merged);
                    }
                    None => original.push(Value::Object(smp_map(Map::new(), m)?)),
                }
            }
            Ok(original)
        }
    }
}

fn dedup(list: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(list.len());
    for v in list {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Permutes the elements named in `order` (by `key`, or by value when `key`
/// is `None`) into that order within the positions they occupy.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let id = |v: &Value| -> Option<Value> {
        match key {
            Some(k) => v.get(k).cloned(),
            None => Some(v.clone()),
        }
    };
    let wanted: Vec<Value> = order.iter().filter_map(id).collect();
    let rank = |v: &Value| id(v).and_then(|i| wanted.iter().position(|w| *w == i));
    let slots: Vec<usize> = (0..list.len())
        .filter(|&i| rank(&list[i]).is_some())
        .collect();
    let mut named: Vec<Value> = slots.iter().map(|&i| list[i].take()).collect();
    named.sort_by_key(|v| rank(v).unwrap_or(usize::MAX));
    for (slot, v) in slots.into_iter().zip(named) {
        list[slot] = v;
    }
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), PatchError> {
    let Some(retain) = retain.as_array() else {
        return Err(PatchError::RetainKeys(format!(
            "expected a list of keys, found {retain}"
        )));
    };
    let keep: Vec<&str> = retain
        .iter()
        .map(|v| {
            v.as_str().ok_or_else(|| {
                PatchError::RetainKeys(format!("expected a list of keys, found element {v}"))
            })
        })
        .collect::<Result<_, _>>()?;
    for (k, v) in patch {
        if v.is_null()
            || k == RETAIN_KEYS
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(PatchError::RetainKeys(format!(
                "the patch sets {k:?}, which is not in $retainKeys {keep:?}"
            )));
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

// ---------------------------------------------------------------------------
// Server-side apply (simplified)
// ---------------------------------------------------------------------------

/// Simplified server-side apply: deep-merges the applied configuration into the
/// live object.
///
/// * maps merge recursively;
/// * lists with a merge key (see [`list_strategy`]) merge element-wise by that
///   key (a single key, where upstream's list-map keys are sometimes composite,
///   e.g. `containerPort`+`protocol`); if an element on either side lacks the
///   key the list is replaced;
/// * `finalizers` is a set (union);
/// * other lists and scalars are replaced;
/// * `null` in the applied configuration is ignored (treated as "not set").
///
/// Simplification: there is no managedFields ownership tracking, so fields a
/// manager stopped applying are *not* removed, and there are no conflicts
/// between managers (every apply behaves like `force=true`). The applied
/// `metadata.managedFields` is ignored. `$patch`-style directives have no
/// meaning here and are copied like any other key.
pub fn apply_patch(target: &mut Value, applied: &Value) {
    let mut applied = applied.clone();
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    apply_value(target, &applied, "");
}

fn apply_value(live: &mut Value, applied: &Value, field: &str) {
    match applied {
        Value::Object(am) => {
            if !live.is_object() {
                *live = Value::Object(Map::new());
            }
            let Value::Object(lm) = live else {
                return;
            };
            for (k, v) in am {
                if v.is_null() {
                    continue;
                }
                match lm.get_mut(k) {
                    Some(slot) => apply_value(slot, v, k),
                    None => {
                        let mut fresh = Value::Null;
                        apply_value(&mut fresh, v, k);
                        lm.insert(k.clone(), fresh);
                    }
                }
            }
        }
        Value::Array(aa) => {
            let live_list: Vec<Value> = match live.take() {
                Value::Array(l) => l,
                _ => Vec::new(),
            };
            *live = Value::Array(apply_list(field, live_list, aa));
        }
        scalar => *live = scalar.clone(),
    }
}

fn apply_list(field: &str, mut live: Vec<Value>, applied: &[Value]) -> Vec<Value> {
    let fresh = |v: &Value, field: &str| {
        let mut out = Value::Null;
        apply_value(&mut out, v, field);
        out
    };
    match list_strategy(field, applied, &live) {
        ListStrategy::MergeByKey(key)
            if applied
                .iter()
                .chain(live.iter())
                .all(|v| v.get(key).is_some()) =>
        {
            for el in applied {
                let value = &el[key];
                match live.iter().position(|o| o.get(key) == Some(value)) {
                    Some(i) => apply_value(&mut live[i], el, ""),
                    None => live.push(fresh(el, "")),
                }
            }
            live
        }
        ListStrategy::PrimitiveSet => {
            live.extend(applied.iter().filter(|v| !v.is_null()).cloned());
            dedup(live)
        }
        _ => applied
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| fresh(v, ""))
            .collect(),
    }
}

/// Metadata fields upstream strips before computing managed fields.
const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "selfLink",
    "managedFields",
];

/// A simplified `FieldsV1` set for `value` (the top level of an object):
/// `{"f:<key>": ...}` for map keys (recursively), `{"k:{\"<key>\":<v>}": {".": {}, ...}}`
/// for elements of lists merged by key, `{".": {}, "v:<json>": {}}` for set
/// lists, and `{}` for scalars and atomic lists.
///
/// Simplifications: `"."` markers are only emitted for list elements and set
/// lists (upstream also marks some maps, depending on the Go type); list
/// elements are identified by a single merge key. As upstream, `apiVersion`,
/// `kind` and the metadata fields upstream strips (name, namespace, uid,
/// resourceVersion, generation, creationTimestamp, selfLink, managedFields)
/// are left out.
pub fn fields_v1(value: &Value) -> Value {
    let Value::Object(map) = value else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for (k, v) in map {
        if v.is_null() || k == "apiVersion" || k == "kind" {
            continue;
        }
        let entry = if k == "metadata" {
            let mut meta = v.clone();
            if let Value::Object(m) = &mut meta {
                m.retain(|mk, _| !STRIPPED_METADATA.contains(&mk.as_str()));
                if m.is_empty() {
                    continue;
                }
            }
            fields_of(&meta, k)
        } else {
            fields_of(v, k)
        };
        out.insert(format!("f:{k}"), entry);
    }
    Value::Object(out)
}

fn fields_of(v: &Value, field: &str) -> Value {
    let mut out = Map::new();
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if !child.is_null() {
                    out.insert(format!("f:{k}"), fields_of(child, k));
                }
            }
        }
        Value::Array(list) => match list_strategy(field, list, &[]) {
            ListStrategy::MergeByKey(key) if list.iter().all(|e| e.get(key).is_some()) => {
                for el in list {
                    let mut id = Map::new();
                    id.insert(key.to_string(), el[key].clone());
                    let mut item = match fields_of(el, "") {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    item.insert(".".to_string(), Value::Object(Map::new()));
                    out.insert(format!("k:{}", Value::Object(id)), Value::Object(item));
                }
            }
            ListStrategy::PrimitiveSet => {
                out.insert(".".to_string(), Value::Object(Map::new()));
                for el in list {
                    out.insert(format!("v:{el}"), Value::Object(Map::new()));
                }
            }
            _ => {}
        },
        _ => {}
    }
    Value::Object(out)
}

/// Sets or updates the `metadata.managedFields` entry of `manager` +
/// `operation` (`"Apply"` or `"Update"`) to
/// `{manager, operation, apiVersion, time, fieldsType: "FieldsV1", fieldsV1}`.
///
/// Simplification: `fieldsV1` is computed from `obj` itself (see
/// [`fields_v1`]), i.e. the entry claims every field the object has; use
/// [`record_managed_fields_for`] to record the fields of the applied
/// configuration instead. Other managers' entries are not touched (no
/// ownership transfer).
pub fn record_managed_fields(
    obj: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    time_rfc3339: &str,
) {
    let fields = fields_v1(obj);
    set_managed_fields_entry(obj, manager, operation, api_version, time_rfc3339, fields);
}

/// Like [`record_managed_fields`], with `fieldsV1` computed from `set_by`
/// (typically the applied configuration of a server-side apply, or the patch).
pub fn record_managed_fields_for(
    obj: &mut Value,
    set_by: &Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    time_rfc3339: &str,
) {
    let fields = fields_v1(set_by);
    set_managed_fields_entry(obj, manager, operation, api_version, time_rfc3339, fields);
}

fn set_managed_fields_entry(
    obj: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    time_rfc3339: &str,
    fields: Value,
) {
    let entry = serde_json::json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": time_rfc3339,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(root) = obj else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(meta) = meta else {
        return;
    };
    let managed = meta
        .entry("managedFields")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !managed.is_array() {
        *managed = Value::Array(Vec::new());
    }
    let Value::Array(entries) = managed else {
        return;
    };
    match entries.iter_mut().find(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some(operation)
    }) {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(target: Value, patch: Value) -> Value {
        let mut t = target;
        strategic_merge_patch(&mut t, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"));
        t
    }

    fn smp_err(target: Value, patch: Value) -> PatchError {
        let mut t = target.clone();
        let e = strategic_merge_patch(&mut t, &patch).unwrap_err();
        assert_eq!(t, target, "a failed patch must leave the target unchanged");
        e
    }

    fn two_container_pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}},
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "name": "http"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "proxy:1"}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            }
        })
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type(" Application/Apply-Patch+YAML ;charset=utf-8"),
            Some(PatchType::Apply)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+cbor"),
            None
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(PatchType::from_content_type(""), None);
        for t in [
            PatchType::Merge,
            PatchType::Json,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn merge_patch_null_removes_label() {
        let mut pod = two_container_pod();
        merge_patch(
            &mut pod,
            &json!({"metadata": {"labels": {"tier": null, "new": "x"}}}),
        );
        assert_eq!(pod["metadata"]["labels"], json!({"app": "web", "new": "x"}));
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let mut pod = two_container_pod();
        merge_patch(
            &mut pod,
            &json!({"spec": {"containers": [{"name": "only", "image": "x"}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let mut v = json!({"a": 1});
        merge_patch(&mut v, &json!({"b": {"c": null, "d": 2}}));
        assert_eq!(v, json!({"a": 1, "b": {"d": 2}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut pod = two_container_pod();
        json_patch(
            &mut pod,
            &json!([
                {"op": "test", "path": "/metadata/name", "value": "p"},
                {"op": "replace", "path": "/spec/containers/1/image", "value": "proxy:2"},
                {"op": "add", "path": "/metadata/labels/new", "value": "x"},
                {"op": "remove", "path": "/metadata/labels/tier"},
                {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
                {"op": "move", "from": "/metadata/labels/copy", "path": "/metadata/labels/moved"},
                {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "k2"}}
            ]),
        )
        .unwrap();
        assert_eq!(pod["spec"]["containers"][1]["image"], "proxy:2");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", "new": "x", "moved": "web"})
        );
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn json_patch_test_failure_is_an_error_and_atomic() {
        let original = two_container_pod();
        let mut pod = original.clone();
        let err = json_patch(
            &mut pod,
            &json!([
                {"op": "add", "path": "/metadata/labels/x", "value": "y"},
                {"op": "test", "path": "/metadata/name", "value": "other"}
            ]),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::TestFailed { operation: 1, ref path, .. } if path == "/metadata/name"),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.to_string().contains("test"));
        assert_eq!(pod, original);
    }

    #[test]
    fn json_patch_missing_path() {
        let mut pod = two_container_pod();
        let err = json_patch(
            &mut pod,
            &json!([{"op": "remove", "path": "/metadata/annotations/x"}]),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::PathNotFound { operation: 0, ref op, .. } if op == "remove"),
            "{err:?}"
        );
        assert!(err.to_string().contains("/metadata/annotations/x"));
        let err = json_patch(
            &mut pod,
            &json!([{"op": "replace", "path": "/spec/containers/5/image", "value": "x"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::PathNotFound { .. }), "{err:?}");
        let err = json_patch(
            &mut pod,
            &json!([{"op": "move", "from": "/nope", "path": "/x"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::PathNotFound { .. }), "{err:?}");
    }

    #[test]
    fn json_patch_invalid_documents() {
        let mut pod = two_container_pod();
        assert!(matches!(
            json_patch(&mut pod, &json!({"op": "add"})).unwrap_err(),
            PatchError::InvalidDocument(_)
        ));
        let err = json_patch(&mut pod, &json!([{"op": "frobnicate", "path": "/x"}])).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)), "{err:?}");
        let err = json_patch(&mut pod, &json!([{"op": "add", "path": "/x"}])).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)), "{err:?}");
        json_patch(&mut pod, &json!([])).unwrap();
        assert_eq!(pod, two_container_pod());
    }

    #[test]
    fn smp_changes_one_container_image_keeps_the_other() {
        let pod = smp(
            two_container_pod(),
            json!({"spec": {"containers": [{"name": "app", "image": "app:2"}]}}),
        );
        let cs = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["name"], "app");
        assert_eq!(cs[0]["image"], "app:2");
        // Other fields of the patched container survive.
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["ports"][0]["containerPort"], 80);
        assert_eq!(cs[1], json!({"name": "sidecar", "image": "proxy:1"}));
    }

    #[test]
    fn smp_adds_container_and_merges_nested_lists() {
        let pod = smp(
            two_container_pod(),
            json!({"spec": {"containers": [
                {"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                 "ports": [{"containerPort": 443, "name": "https"}]},
                {"name": "new", "image": "new:1"}
            ]}}),
        );
        let cs = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[2], json!({"name": "new", "image": "new:1"}));
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            cs[0]["ports"],
            json!([{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}])
        );
    }

    #[test]
    fn smp_patch_delete_removes_container() {
        let pod = smp(
            two_container_pod(),
            json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
        );
        let cs = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["name"], "app");
        // Deleting something that is not there is fine.
        let pod = smp(
            pod,
            json!({"spec": {"containers": [{"name": "ghost", "$patch": "delete"}]}}),
        );
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn smp_delete_without_merge_key_is_an_error() {
        let err = smp_err(
            two_container_pod(),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        );
        assert!(
            matches!(err, PatchError::MissingMergeKey { ref key, .. } if key == "name"),
            "{err:?}"
        );
        let err = smp_err(
            two_container_pod(),
            json!({"spec": {"containers": [{"image": "x"}]}}),
        );
        assert!(err
            .to_string()
            .contains("does not contain declared merge key: name"));
    }

    #[test]
    fn smp_list_replace_directive() {
        let pod = smp(
            two_container_pod(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "solo:1"}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "solo", "image": "solo:1"}])
        );
    }

    #[test]
    fn smp_map_replace_directive() {
        let pod = smp(
            two_container_pod(),
            json!({"metadata": {"labels": {"$patch": "replace", "only": "me"}}}),
        );
        assert_eq!(pod["metadata"]["labels"], json!({"only": "me"}));
        assert_eq!(pod["metadata"]["name"], "p");
    }

    #[test]
    fn smp_map_delete_directive() {
        let pod = smp(
            two_container_pod(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        );
        assert_eq!(pod["metadata"]["labels"], json!({}));
        // On the whole object.
        let obj = smp(json!({"a": 1}), json!({"$patch": "delete"}));
        assert_eq!(obj, json!({}));
        let obj = smp(
            json!({"a": 1, "b": 2}),
            json!({"$patch": "replace", "c": 3}),
        );
        assert_eq!(obj, json!({"c": 3}));
    }

    #[test]
    fn smp_unknown_directive() {
        let err = smp_err(
            two_container_pod(),
            json!({"metadata": {"labels": {"$patch": "explode"}}}),
        );
        assert!(
            matches!(err, PatchError::UnknownDirective { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("explode"));
        let err = smp_err(
            two_container_pod(),
            json!({"spec": {"containers": [{"name": "app", "$patch": "bogus"}]}}),
        );
        assert!(
            matches!(err, PatchError::UnknownDirective { .. }),
            "{err:?}"
        );
        let err = smp_err(
            two_container_pod(),
            json!({"spec": {"containers": [{"name": "app", "$patch": "merge"}]}}),
        );
        assert!(err
            .to_string()
            .contains("merging lists cannot yet be specified"));
    }

    #[test]
    fn smp_null_removes_and_maps_merge() {
        let pod = smp(
            two_container_pod(),
            json!({"metadata": {"labels": {"tier": null, "new": "x"}, "annotations": {"a": "b", "gone": null}}}),
        );
        assert_eq!(pod["metadata"]["labels"], json!({"app": "web", "new": "x"}));
        // Nulls for fields the object lacks are dropped, not stored.
        assert_eq!(pod["metadata"]["annotations"], json!({"a": "b"}));
        let pod = smp(pod, json!({"spec": {"tolerations": null}}));
        assert!(pod["spec"].get("tolerations").is_none());
    }

    #[test]
    fn smp_atomic_lists_are_replaced() {
        let pod = smp(
            two_container_pod(),
            json!({"spec": {"tolerations": [{"key": "other", "operator": "Equal", "value": "v"}],
                            "containers": [{"name": "app", "args": ["b"], "command": ["sh"]}]}}),
        );
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([{"key": "other", "operator": "Equal", "value": "v"}])
        );
        assert_eq!(pod["spec"]["containers"][0]["args"], json!(["b"]));
        // A CRD-ish unknown list of maps is atomic.
        let obj = smp(
            json!({"spec": {"items": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"items": [{"name": "c"}]}}),
        );
        assert_eq!(obj["spec"]["items"], json!([{"name": "c"}]));
    }

    #[test]
    fn smp_service_ports_merge_by_port() {
        let svc = json!({
            "kind": "Service",
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
            ]}
        });
        let svc = smp(
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 8081, "name": "admin"}]}}),
        );
        assert_eq!(
            svc["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
                {"name": "admin", "port": 8081}
            ])
        );
        let svc = smp(
            svc,
            json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}]}}),
        );
        assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(
            list_strategy("ports", &[json!({"port": 80})], &[]),
            ListStrategy::MergeByKey("port")
        );
        assert_eq!(
            list_strategy("ports", &[json!({"containerPort": 80})], &[]),
            ListStrategy::MergeByKey("containerPort")
        );
        assert_eq!(
            list_strategy("ports", &[json!({"protocol": "TCP"})], &[]),
            ListStrategy::Atomic
        );
        assert_eq!(
            list_strategy(
                "ports",
                &[json!({"$patch": "replace"})],
                &[json!({"port": 1})]
            ),
            ListStrategy::MergeByKey("port")
        );
    }

    #[test]
    fn smp_other_merge_keys() {
        let obj = json!({
            "metadata": {"ownerReferences": [{"uid": "u1", "name": "a"}, {"uid": "u2", "name": "b"}]},
            "spec": {
                "volumes": [{"name": "v1", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "s1"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
                "resourceClaims": [{"name": "gpu"}],
                "initContainers": [{"name": "init", "image": "i:1",
                    "volumeMounts": [{"mountPath": "/a", "name": "v1"}],
                    "volumeDevices": [{"devicePath": "/dev/x", "name": "v1"}]}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]}
        });
        let out = smp(
            obj,
            json!({
                "metadata": {"ownerReferences": [{"uid": "u2", "name": "b2"}]},
                "spec": {
                    "volumes": [{"name": "v2", "emptyDir": {}}],
                    "imagePullSecrets": [{"name": "s2"}],
                    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                    "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                    "resourceClaims": [{"name": "fpga"}],
                    "initContainers": [{"name": "init",
                        "volumeMounts": [{"mountPath": "/a", "readOnly": true}, {"mountPath": "/b", "name": "v2"}],
                        "volumeDevices": [{"devicePath": "/dev/y", "name": "v2"}]}],
                    "ephemeralContainers": [{"name": "debug", "image": "alpine"}]
                },
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "u1", "name": "a"}, {"uid": "u2", "name": "b2"}])
        );
        assert_eq!(out["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["spec"]["imagePullSecrets"],
            json!([{"name": "s1"}, {"name": "s2"}])
        );
        assert_eq!(
            out["spec"]["hostAliases"],
            json!([{"ip": "10.0.0.1", "hostnames": ["b"]}])
        );
        assert_eq!(
            out["spec"]["topologySpreadConstraints"],
            json!([{"topologyKey": "zone", "maxSkew": 2}])
        );
        assert_eq!(
            out["spec"]["resourceClaims"],
            json!([{"name": "gpu"}, {"name": "fpga"}])
        );
        let init = &out["spec"]["initContainers"][0];
        assert_eq!(init["image"], "i:1");
        assert_eq!(
            init["volumeMounts"],
            json!([{"mountPath": "/a", "name": "v1", "readOnly": true}, {"mountPath": "/b", "name": "v2"}])
        );
        assert_eq!(init["volumeDevices"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["spec"]["ephemeralContainers"],
            json!([{"name": "debug", "image": "alpine"}])
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}])
        );
    }

    #[test]
    fn smp_finalizers_are_a_set() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(obj.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        // An empty list changes nothing (use null or merge patch to clear).
        let out = smp(obj.clone(), json!({"metadata": {"finalizers": []}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let out = smp(obj, json!({"metadata": {"finalizers": null}}));
        assert!(out["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn smp_delete_from_primitive_list() {
        let obj = json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}});
        let out = smp(
            obj,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c", "d"]));
        // Missing list: nothing happens, and the directive is not stored.
        let out = smp(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        );
        assert_eq!(out, json!({"metadata": {}}));
        let err = smp_err(
            json!({}),
            json!({"$deleteFromPrimitiveList/finalizers": "x"}),
        );
        assert!(matches!(err, PatchError::InvalidDocument(_)));
    }

    #[test]
    fn smp_set_element_order() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}
        ]}});
        let out = smp(
            pod.clone(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "a2"}]
            }}),
        );
        let names: Vec<_> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("c"), json!("a"), json!("b")]);
        assert_eq!(out["spec"]["containers"][1]["image"], "a2");
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
        // Elements not named keep their slots; named ones are permuted among theirs.
        let out = smp(
            pod,
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}),
        );
        let names: Vec<_> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("c"), json!("b"), json!("a")]);
        // Primitive lists by value.
        let out = smp(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c", "a"]));
    }

    #[test]
    fn smp_retain_keys() {
        let obj = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(
            obj.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // A patch key missing from $retainKeys is rejected.
        let err = smp_err(
            obj.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        );
        assert!(matches!(err, PatchError::RetainKeys(_)), "{err:?}");
        let err = smp_err(obj, json!({"spec": {"strategy": {"$retainKeys": "type"}}}));
        assert!(matches!(err, PatchError::RetainKeys(_)), "{err:?}");
    }

    #[test]
    fn smp_directives_are_not_stored_for_new_fields() {
        let out = smp(
            json!({"spec": {}}),
            json!({"spec": {
                "containers": [{"name": "a", "image": "a", "env": [{"name": "X", "value": null}]},
                               {"name": "gone", "$patch": "delete"}],
                "tolerations": [{"$patch": "replace"}, {"key": "k"}],
                "affinity": {"$patch": "replace", "nodeAffinity": {"x": 1, "y": null}}
            }}),
        );
        assert_eq!(
            out,
            json!({"spec": {
                "containers": [{"name": "a", "image": "a", "env": [{"name": "X"}]}],
                "tolerations": [{"key": "k"}],
                "affinity": {"nodeAffinity": {"x": 1}}
            }})
        );
    }

    #[test]
    fn smp_type_changes_and_bad_documents() {
        let out = smp(
            json!({"a": [1], "b": {"x": 1}, "c": "s"}),
            json!({"a": {"y": 1}, "b": [2], "c": {"z": 1}}),
        );
        assert_eq!(out, json!({"a": {"y": 1}, "b": [2], "c": {"z": 1}}));
        let err = smp_err(json!({}), json!([1]));
        assert!(matches!(err, PatchError::InvalidDocument(_)));
        let err = smp_err(
            json!({"spec": {"containers": []}}),
            json!({"spec": {"containers": ["x"]}}),
        );
        assert!(matches!(err, PatchError::InvalidDocument(_)));
        // A non-object target is treated as {}.
        let out = smp(Value::Null, json!({"a": 1}));
        assert_eq!(out, json!({"a": 1}));
    }

    #[test]
    fn apply_adds_label_without_dropping_others() {
        let mut pod = two_container_pod();
        apply_patch(
            &mut pod,
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"applied": "yes"}}}),
        );
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", "tier": "front", "applied": "yes"})
        );
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn apply_merges_keyed_lists_and_replaces_others() {
        let mut pod = two_container_pod();
        apply_patch(
            &mut pod,
            &json!({"spec": {
                "containers": [{"name": "sidecar", "image": "proxy:2"}, {"name": "extra", "image": "e:1", "gone": null}],
                "tolerations": [{"key": "only"}]
            }}),
        );
        let cs = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0]["image"], "app:1");
        assert_eq!(cs[1], json!({"name": "sidecar", "image": "proxy:2"}));
        assert_eq!(cs[2], json!({"name": "extra", "image": "e:1"}));
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "only"}]));
    }

    #[test]
    fn apply_does_not_remove_fields_and_ignores_nulls() {
        let mut obj = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]}, "spec": {"replicas": 3}});
        apply_patch(
            &mut obj,
            &json!({"metadata": {"labels": {"a": null, "b": "2"}, "finalizers": ["y"],
                                  "managedFields": [{"manager": "evil"}]},
                    "spec": {"replicas": 5}}),
        );
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]}, "spec": {"replicas": 5}})
        );
        // Service ports merge by port; lists without keys on every element are replaced.
        let mut svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}});
        apply_patch(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443}])
        );
        let mut obj = json!({"spec": {"containers": [{"image": "nameless"}]}});
        apply_patch(&mut obj, &json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(obj["spec"]["containers"], json!([{"name": "a"}]));
    }

    #[test]
    fn managed_fields_are_recorded_and_updated() {
        let mut pod = two_container_pod();
        pod["metadata"]["uid"] = json!("u");
        record_managed_fields(&mut pod, "kubectl", "Update", "v1", "2024-01-01T00:00:00Z");
        let mf = pod["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1);
        let e = &mf[0];
        assert_eq!(e["manager"], "kubectl");
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["apiVersion"], "v1");
        assert_eq!(e["time"], "2024-01-01T00:00:00Z");
        assert_eq!(e["fieldsType"], "FieldsV1");
        let f = &e["fieldsV1"];
        assert!(f.get("f:apiVersion").is_none());
        assert!(f["f:metadata"].get("f:name").is_none());
        assert!(f["f:metadata"].get("f:uid").is_none());
        assert_eq!(
            f["f:metadata"]["f:labels"],
            json!({"f:app": {}, "f:tier": {}})
        );
        let app = &f["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(app["."], json!({}));
        assert_eq!(app["f:image"], json!({}));
        assert!(app["f:ports"].get("k:{\"containerPort\":80}").is_some());
        assert_eq!(f["f:spec"]["f:tolerations"], json!({}));

        // Same manager + operation: updated in place; another operation: a new entry.
        record_managed_fields_for(
            &mut pod,
            &json!({"metadata": {"labels": {"x": "y"}, "finalizers": ["f"]}}),
            "kubectl",
            "Update",
            "v1",
            "2024-01-02T00:00:00Z",
        );
        record_managed_fields_for(
            &mut pod,
            &json!({"spec": {}}),
            "kubectl",
            "Apply",
            "v1",
            "2024-01-03T00:00:00Z",
        );
        let mf = pod["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[0]["time"], "2024-01-02T00:00:00Z");
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:x": {}}, "f:finalizers": {".": {}, "v:\"f\"": {}}}})
        );
        assert_eq!(mf[1]["operation"], "Apply");
        assert_eq!(mf[1]["fieldsV1"], json!({"f:spec": {}}));
    }

    #[test]
    fn managed_fields_on_bare_objects() {
        let mut obj = json!({"kind": "ConfigMap"});
        record_managed_fields(&mut obj, "m", "Apply", "v1", "t");
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "m");
        assert_eq!(obj["metadata"]["managedFields"][0]["fieldsV1"], json!({}));
        let mut obj = json!({"metadata": {"managedFields": "garbage"}});
        record_managed_fields(&mut obj, "m", "Apply", "v1", "t");
        assert_eq!(
            obj["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }
}
