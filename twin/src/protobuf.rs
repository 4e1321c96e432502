//! Kubernetes protobuf request bodies (`Content-Type: application/vnd.kubernetes.protobuf`),
//! decoded into the JSON the server would have received from a JSON client, so the
//! rest of the server handles both alike. client-go's typed clients (kubectl create
//! secret/configmap/deployment/..., auth can-i) send these.
//!
//! Contract of [`decode`]: the body is the 4-byte magic `k8s\x00` followed by a
//! `runtime.Unknown` (typeMeta {apiVersion, kind}, raw, contentEncoding, contentType);
//! `raw` is the message of that kind. The result is a JSON object with `apiVersion`
//! and `kind` from the envelope plus the object's fields written as Go's
//! `encoding/json` writes the same Go struct: JSON names, `omitempty`, `json:",inline"`
//! structs merged into their parent, pointer scalars kept when zero (`replicas: 0`),
//! `Time` as RFC 3339 (`null` when zero), `MicroTime` with microseconds, `Duration` as
//! a Go duration string, `Quantity` as its string, `IntOrString` as a number or a
//! string, `bytes` as base64 (Secret `data`), `RawExtension`/apiextensions `JSON` as
//! the embedded JSON, and the apiextensions `JSONSchemaPropsOr*` unions.
//!
//! It is driven by data, not per-kind code: `protobuf/k8s.binpb` is a FileDescriptorSet
//! compiled from Kubernetes' own generated.proto files, and `protobuf/k8s-json.tsv` holds
//! what .proto files cannot say (JSON names where they differ, omitempty/pointer,
//! inline), read from the Go struct tags; both come from
//! `scripts/k8s-protobuf/gen.sh` (Kubernetes 1.37.2 types).
//!
//! Differences from encoding/json, none of which the server can tell apart: a nil
//! slice, map or pointer is omitted even where Go writes `null` (protobuf cannot
//! tell nil from empty either); fields unknown to the descriptors (a newer client)
//! are dropped. Any malformed body is a [`ProtobufError`] (the server answers 400),
//! never a panic; prost bounds the nesting depth.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, MapKey, ReflectMessage, Value as Pb,
};
use serde_json::{Map, Value};

/// The first bytes of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const DESCRIPTORS: &[u8] = include_bytes!("protobuf/k8s.binpb");
const JSON_FACTS: &str = include_str!("protobuf/k8s-json.tsv");

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const APIEXT_V1: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1";
const APIEXT_V1BETA1: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1beta1";

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix k8s\\x00")]
    Magic,
    #[error("malformed runtime.Unknown envelope: {0}")]
    Envelope(prost::DecodeError),
    #[error("the envelope names no kind (typeMeta.kind is empty)")]
    NoKind,
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("no protobuf message is known for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("malformed {message}: {source}")]
    Message {
        message: String,
        source: prost::DecodeError,
    },
    #[error("invalid {message}: {detail}")]
    Value { message: String, detail: String },
    #[error("the embedded Kubernetes descriptors do not load: {0}")]
    Descriptors(String),
}

/// How one field is written in JSON, where it differs from the default (JSON name
/// = proto name, omitempty).
#[derive(Clone, Debug, Default, PartialEq)]
struct Facts {
    /// None: `json:",inline"`, the message's fields go into the parent object.
    json: Option<String>,
    /// A zero scalar is still written (a pointer, or no omitempty).
    keep_zero: bool,
    /// `json:"-"`.
    skip: bool,
}

struct Schema {
    pool: DescriptorPool,
    /// (apiVersion, kind) -> message full name.
    kinds: HashMap<(String, String), String>,
    /// (message full name, field number) -> facts.
    fields: HashMap<(String, u32), Facts>,
}

/// The kinds and field facts of k8s-json.tsv.
type Tables = (
    HashMap<(String, String), String>,
    HashMap<(String, u32), Facts>,
);

fn parse_facts(tsv: &str) -> Result<Tables, String> {
    let mut kinds = HashMap::new();
    let mut fields = HashMap::new();
    for (i, line) in tsv.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["kind", api_version, kind, message] => {
                kinds.insert(
                    (api_version.to_string(), kind.to_string()),
                    message.to_string(),
                );
            }
            ["field", message, number, json, flags] => {
                let number: u32 = number
                    .parse()
                    .map_err(|_| format!("k8s-json.tsv line {}: bad field number", i + 1))?;
                let flags: Vec<&str> = flags.split(',').collect();
                let inline = flags.contains(&"inline");
                fields.insert(
                    (message.to_string(), number),
                    Facts {
                        json: (!inline).then(|| json.to_string()),
                        keep_zero: flags.contains(&"keepzero"),
                        skip: flags.contains(&"skip"),
                    },
                );
            }
            _ => return Err(format!("k8s-json.tsv line {}: unexpected {line:?}", i + 1)),
        }
    }
    Ok((kinds, fields))
}

fn schema() -> Result<&'static Schema, ProtobufError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let (kinds, fields) = parse_facts(JSON_FACTS)?;
            let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
            Ok(Schema {
                pool,
                kinds,
                fields,
            })
        })
        .as_ref()
        .map_err(|e| ProtobufError::Descriptors(e.clone()))
}

/// Whether a Content-Type names Kubernetes protobuf (parameters aside).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Decodes a Kubernetes protobuf body into the JSON object a JSON client would send.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::Magic)?;
    let schema = schema()?;
    let envelope = schema.message("k8s.io.apimachinery.pkg.runtime.Unknown")?;
    let env = DynamicMessage::decode(envelope, rest).map_err(ProtobufError::Envelope)?;
    let type_meta = match env.get_field_by_number(1).as_deref() {
        Some(Pb::Message(m)) => m.clone(),
        _ => return Err(ProtobufError::NoKind),
    };
    let api_version = string_field(&type_meta, 1);
    let kind = string_field(&type_meta, 2);
    if kind.is_empty() {
        return Err(ProtobufError::NoKind);
    }
    let encoding = string_field(&env, 3);
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let raw = match env.get_field_by_number(2).as_deref() {
        Some(Pb::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let desc = schema.message_for(&api_version, &kind)?;
    let name = desc.full_name().to_string();
    let msg = DynamicMessage::decode(desc, raw).map_err(|source| ProtobufError::Message {
        message: name,
        source,
    })?;
    let mut out = Map::new();
    if !api_version.is_empty() {
        out.insert("apiVersion".into(), Value::String(api_version));
    }
    out.insert("kind".into(), Value::String(kind));
    schema.object_into(&msg, &mut out)?;
    Ok(Value::Object(out))
}

fn string_field(m: &DynamicMessage, number: u32) -> String {
    match m.get_field_by_number(number).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn int_field(m: &DynamicMessage, number: u32) -> i64 {
    match m.get_field_by_number(number).as_deref() {
        Some(Pb::I64(v)) => *v,
        Some(Pb::I32(v)) => i64::from(*v),
        _ => 0,
    }
}

fn is_zero(v: &Pb) -> bool {
    match v {
        Pb::Bool(b) => !b,
        Pb::I32(n) | Pb::EnumNumber(n) => *n == 0,
        Pb::I64(n) => *n == 0,
        Pb::U32(n) => *n == 0,
        Pb::U64(n) => *n == 0,
        Pb::F32(n) => *n == 0.0,
        Pb::F64(n) => *n == 0.0,
        Pb::String(s) => s.is_empty(),
        Pb::Bytes(b) => b.is_empty(),
        Pb::List(l) => l.is_empty(),
        Pb::Map(m) => m.is_empty(),
        Pb::Message(_) => false,
    }
}

fn is_scalar(v: &Pb) -> bool {
    !matches!(v, Pb::List(_) | Pb::Map(_) | Pb::Message(_) | Pb::Bytes(_))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let frac = |v: u64, digits: u32| -> String {
        // v in units of 10^-digits, printed without trailing zeros.
        let unit = 10u64.pow(digits);
        let (int, rest) = (v / unit, v % unit);
        if rest == 0 {
            return int.to_string();
        }
        let s = format!("{rest:0width$}", width = digits as usize);
        format!("{int}.{}", s.trim_end_matches('0'))
    };
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", frac(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", frac(u, 6))
    } else {
        let secs_total = u / 1_000_000_000;
        let sub = u % 1_000_000_000;
        let (h, m, s) = (secs_total / 3600, (secs_total / 60) % 60, secs_total % 60);
        let secs = frac(s * 1_000_000_000 + sub, 9);
        match (h, m) {
            (0, 0) => format!("{secs}s"),
            (0, m) => format!("{m}m{secs}s"),
            (h, m) => format!("{h}h{m}m{secs}s"),
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

impl Schema {
    fn message(&self, name: &str) -> Result<prost_reflect::MessageDescriptor, ProtobufError> {
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| ProtobufError::Descriptors(format!("no message {name}")))
    }

    /// The message of a kind; the meta kinds (DeleteOptions, ...) that every group
    /// version registers live in meta/v1.
    fn message_for(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<prost_reflect::MessageDescriptor, ProtobufError> {
        let name = self
            .kinds
            .get(&(api_version.to_string(), kind.to_string()))
            .cloned()
            .unwrap_or_else(|| format!("{META}.{kind}"));
        self.pool
            .get_message_by_name(&name)
            .ok_or_else(|| ProtobufError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })
    }

    fn facts(&self, message: &str, field: &FieldDescriptor) -> Facts {
        self.fields
            .get(&(message.to_string(), field.number()))
            .cloned()
            .unwrap_or_else(|| Facts {
                json: Some(field.name().to_string()),
                ..Facts::default()
            })
    }

    /// Writes the fields of `msg` into `out` (an inline struct writes into its parent's).
    fn object_into(
        &self,
        msg: &DynamicMessage,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        let desc = msg.descriptor();
        let name = desc.full_name();
        for field in desc.fields() {
            if !msg.has_field(&field) {
                continue;
            }
            let facts = self.facts(name, &field);
            if facts.skip {
                continue;
            }
            let value = msg.get_field(&field);
            let Some(key) = facts.json else {
                if let Pb::Message(inner) = value.as_ref() {
                    self.object_into(inner, out)?;
                }
                continue;
            };
            // omitempty: a zero scalar is left out unless Go writes it (a pointer, or
            // no omitempty); empty lists and maps are left out like nil ones.
            if is_zero(&value) && !(facts.keep_zero && is_scalar(&value)) {
                continue;
            }
            out.insert(key, self.value(&value)?);
        }
        Ok(())
    }

    fn value(&self, v: &Pb) -> Result<Value, ProtobufError> {
        Ok(match v {
            Pb::Bool(b) => Value::Bool(*b),
            Pb::I32(n) | Pb::EnumNumber(n) => Value::from(*n),
            Pb::I64(n) => Value::from(*n),
            Pb::U32(n) => Value::from(*n),
            Pb::U64(n) => Value::from(*n),
            Pb::F32(n) => float(f64::from(*n))?,
            Pb::F64(n) => float(*n)?,
            Pb::String(s) => Value::String(s.clone()),
            Pb::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Pb::List(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.value(i))
                    .collect::<Result<_, _>>()?,
            ),
            Pb::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    let key = match k {
                        MapKey::String(s) => s.clone(),
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                    };
                    m.insert(key, self.value(v)?);
                }
                Value::Object(m)
            }
            Pb::Message(m) => self.message_value(m)?,
        })
    }

    /// A message as JSON: the types with their own JSON form, else an object.
    fn message_value(&self, m: &DynamicMessage) -> Result<Value, ProtobufError> {
        let full = m.descriptor().full_name().to_string();
        let (pkg, short) = full.rsplit_once('.').unwrap_or(("", full.as_str()));
        let bad = |detail: String| ProtobufError::Value {
            message: full.clone(),
            detail,
        };
        match (pkg, short) {
            (META, "Time" | "MicroTime") => {
                // A zero time is an empty message (Go's Time.Marshal); JSON says null.
                if !m.has_field_by_number(1) && !m.has_field_by_number(2) {
                    return Ok(Value::Null);
                }
                let secs = int_field(m, 1);
                let nanos = if short == "MicroTime" {
                    u32::try_from(int_field(m, 2)).map_err(|_| bad("nanos out of range".into()))?
                } else {
                    0
                };
                let t = chrono::DateTime::from_timestamp(secs, nanos)
                    .ok_or_else(|| bad(format!("{secs} seconds is out of range")))?;
                let format = if short == "MicroTime" {
                    chrono::SecondsFormat::Micros
                } else {
                    chrono::SecondsFormat::Secs
                };
                Ok(Value::String(t.to_rfc3339_opts(format, true)))
            }
            (META, "Duration") => Ok(Value::String(go_duration(int_field(m, 1)))),
            ("k8s.io.apimachinery.pkg.api.resource", "Quantity" | "QuantityValue") => {
                Ok(Value::String(string_field(m, 1)))
            }
            ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => {
                // type 1 is String, 0 (or absent) Int.
                if int_field(m, 1) == 1 {
                    Ok(Value::String(string_field(m, 3)))
                } else {
                    Ok(Value::from(int_field(m, 2)))
                }
            }
            ("k8s.io.apimachinery.pkg.runtime", "RawExtension")
            | (META, "FieldsV1")
            | (APIEXT_V1 | APIEXT_V1BETA1, "JSON") => {
                let raw = match m.get_field_by_number(1).as_deref() {
                    Some(Pb::Bytes(b)) => b.clone(),
                    _ => Default::default(),
                };
                self.embedded(&raw).map_err(|e| match e {
                    ProtobufError::Value { detail, .. } => bad(detail),
                    other => other,
                })
            }
            (APIEXT_V1 | APIEXT_V1BETA1, "JSONSchemaPropsOrArray") => {
                match (
                    m.get_field_by_number(2).as_deref(),
                    m.get_field_by_number(1).as_deref(),
                ) {
                    (Some(list @ Pb::List(l)), _) if !l.is_empty() => self.value(list),
                    (_, Some(schema @ Pb::Message(_))) if m.has_field_by_number(1) => {
                        self.value(schema)
                    }
                    _ => Ok(Value::Null),
                }
            }
            (APIEXT_V1 | APIEXT_V1BETA1, "JSONSchemaPropsOrBool") => {
                if m.has_field_by_number(2) {
                    if let Some(schema) = m.get_field_by_number(2) {
                        return self.value(&schema);
                    }
                }
                Ok(Value::Bool(matches!(
                    m.get_field_by_number(1).as_deref(),
                    Some(Pb::Bool(true))
                )))
            }
            (APIEXT_V1 | APIEXT_V1BETA1, "JSONSchemaPropsOrStringArray") => {
                match (
                    m.get_field_by_number(2).as_deref(),
                    m.get_field_by_number(1).as_deref(),
                ) {
                    (Some(list @ Pb::List(l)), _) if !l.is_empty() => self.value(list),
                    (_, Some(schema @ Pb::Message(_))) if m.has_field_by_number(1) => {
                        self.value(schema)
                    }
                    _ => Ok(Value::Null),
                }
            }
            _ => {
                let mut out = Map::new();
                self.object_into(m, &mut out)?;
                Ok(Value::Object(out))
            }
        }
    }

    /// Embedded raw bytes (RawExtension, FieldsV1, apiextensions JSON): JSON as is,
    /// or an embedded protobuf object; empty is null.
    fn embedded(&self, raw: &[u8]) -> Result<Value, ProtobufError> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        if raw.starts_with(MAGIC) {
            return decode(raw);
        }
        serde_json::from_slice(raw).map_err(|e| ProtobufError::Value {
            message: "embedded object".into(),
            detail: format!("neither JSON nor Kubernetes protobuf: {e}"),
        })
    }
}

fn float(f: f64) -> Result<Value, ProtobufError> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| ProtobufError::Value {
            message: "number".into(),
            detail: format!("{f} has no JSON form"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use serde_json::json;

    /// A protobuf body as client-go writes it, from the object in proto3 JSON.
    fn body(api_version: &str, kind: &str, message: &str, object: Value) -> Vec<u8> {
        let s = schema().unwrap();
        let msg = DynamicMessage::deserialize(s.message(message).unwrap(), object).unwrap();
        let env = DynamicMessage::deserialize(
            s.message("k8s.io.apimachinery.pkg.runtime.Unknown")
                .unwrap(),
            json!({
                "typeMeta": {"apiVersion": api_version, "kind": kind},
                "raw": base64::engine::general_purpose::STANDARD.encode(msg.encode_to_vec()),
                "contentEncoding": "",
                "contentType": "",
            }),
        )
        .unwrap();
        [MAGIC.as_slice(), &env.encode_to_vec()].concat()
    }

    #[test]
    fn secret_bytes_are_base64_and_zero_values_follow_omitempty() {
        // As Go writes a Secret: every non-pointer field, even empty ones, and a
        // zero creationTimestamp as an empty message.
        let b = body(
            "v1",
            "Secret",
            "k8s.io.api.core.v1.Secret",
            json!({
                "metadata": {"name": "db", "generateName": "", "namespace": "", "generation": 0,
                             "creationTimestamp": {}, "labels": {"app": "db"}},
                "data": {"password": base64::engine::general_purpose::STANDARD.encode(b"s3cr\xffet")},
                "type": "Opaque",
            }),
        );
        let v = decode(&b).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "creationTimestamp": null, "labels": {"app": "db"}},
                "data": {"password": "czNjcv9ldA=="},
                "type": "Opaque",
            })
        );
    }

    #[test]
    fn deployment_pointers_inline_structs_and_special_types() {
        let b = body(
            "apps/v1",
            "Deployment",
            "k8s.io.api.apps.v1.Deployment",
            json!({
                "metadata": {"name": "web", "creationTimestamp": {"seconds": 1767225600}},
                "spec": {
                    "replicas": 0,
                    "paused": false,
                    "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                        "maxUnavailable": {"type": 1, "strVal": "25%"},
                        "maxSurge": {"type": 0, "intVal": 2}}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [{
                                "name": "web", "image": "nginx:1.27",
                                "resources": {"limits": {"memory": {"string": "64Mi"}}},
                                "livenessProbe": {"handler": {"httpGet": {"path": "/", "port": {"intVal": 80}}},
                                                  "periodSeconds": 0, "terminationGracePeriodSeconds": 0},
                                "ports": [{"containerPort": 0, "protocol": ""}],
                            }],
                            "volumes": [{"name": "cfg", "volumeSource": {"configMap": {
                                "localObjectReference": {"name": "settings"}}}}],
                            "automountServiceAccountToken": false,
                        },
                    },
                },
                "status": {},
            }),
        );
        let v = decode(&b).unwrap();
        assert_eq!(v["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
        // *int32 and *bool: zero is a value, not "unset".
        assert_eq!(v["spec"]["replicas"], 0);
        assert_eq!(
            v["spec"]["template"]["spec"]["automountServiceAccountToken"],
            false
        );
        // A non-pointer bool with omitempty is left out when false.
        assert!(v["spec"].get("paused").is_none(), "{v}");
        assert_eq!(
            v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            "25%"
        );
        assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 2);
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
        // Probe.handler and Volume.volumeSource are inline in JSON.
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], 80);
        assert!(c["livenessProbe"].get("handler").is_none());
        // periodSeconds is an int32 with omitempty, terminationGracePeriodSeconds an *int64.
        assert!(c["livenessProbe"].get("periodSeconds").is_none());
        assert_eq!(c["livenessProbe"]["terminationGracePeriodSeconds"], 0);
        // containerPort has no omitempty: Go writes 0; protocol has: left out.
        assert_eq!(c["ports"][0], json!({"containerPort": 0}));
        assert_eq!(
            v["spec"]["template"]["spec"]["volumes"][0],
            json!({"name": "cfg", "configMap": {"name": "settings"}})
        );
        assert_eq!(v["status"], json!({}));
    }

    #[test]
    fn times_durations_and_embedded_json() {
        let b = body(
            "v1",
            "Event",
            "k8s.io.api.core.v1.Event",
            json!({
                "metadata": {"name": "e"},
                "eventTime": {"seconds": 1767225600, "nanos": 123456000},
                "lastTimestamp": {"seconds": 0},
            }),
        );
        let v = decode(&b).unwrap();
        assert_eq!(v["eventTime"], "2026-01-01T00:00:00.123456Z");
        assert_eq!(v["lastTimestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(-2_000), "-2µs");
        // RawExtension: JSON bytes are embedded as JSON.
        let b = body(
            "apps/v1",
            "ControllerRevision",
            "k8s.io.api.apps.v1.ControllerRevision",
            json!({"metadata": {"name": "r"}, "revision": 3,
                   "data": {"raw": base64::engine::general_purpose::STANDARD.encode(br#"{"spec":{"x":1}}"#)}}),
        );
        let v = decode(&b).unwrap();
        assert_eq!(v["data"], json!({"spec": {"x": 1}}));
        assert_eq!(v["revision"], 3);
    }

    #[test]
    fn meta_kinds_fall_back_to_meta_v1() {
        let b = body(
            "v1",
            "DeleteOptions",
            "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            json!({"gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}),
        );
        let v = decode(&b).unwrap();
        assert_eq!(v["gracePeriodSeconds"], 0);
        assert_eq!(v["propagationPolicy"], "Foreground");
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(matches!(
            decode(b"{\"kind\":\"Secret\"}"),
            Err(ProtobufError::Magic)
        ));
        assert!(matches!(
            decode(b"k8s\0\x0a\xff"),
            Err(ProtobufError::Envelope(_))
        ));
        assert!(matches!(decode(b"k8s\0"), Err(ProtobufError::NoKind)));
        let unknown = body(
            "example.com/v1",
            "Widget",
            "k8s.io.api.core.v1.Secret",
            json!({}),
        );
        assert!(matches!(
            decode(&unknown),
            Err(ProtobufError::UnknownKind { .. })
        ));
        let good = body(
            "v1",
            "ConfigMap",
            "k8s.io.api.core.v1.ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"a": "b"}}),
        );
        assert!(decode(&good).is_ok());
        // Every truncation and a flipped byte anywhere: an error or a value, no panic.
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
            let mut bad = good.clone();
            bad[n] ^= 0xa5;
            let _ = decode(&bad);
        }
        // A raw message cut short inside a field is a Message error naming the type.
        let s = schema().unwrap();
        let cm = DynamicMessage::deserialize(
            s.message("k8s.io.api.core.v1.ConfigMap").unwrap(),
            json!({"metadata": {"name": "c"}}),
        )
        .unwrap()
        .encode_to_vec();
        let env = DynamicMessage::deserialize(
            s.message("k8s.io.apimachinery.pkg.runtime.Unknown")
                .unwrap(),
            json!({"typeMeta": {"apiVersion": "v1", "kind": "ConfigMap"},
                   "raw": base64::engine::general_purpose::STANDARD.encode(&cm[..cm.len() - 1])}),
        )
        .unwrap();
        let e = decode(&[MAGIC.as_slice(), &env.encode_to_vec()].concat()).unwrap_err();
        assert!(
            e.to_string().contains("k8s.io.api.core.v1.ConfigMap"),
            "{e}"
        );
        let gz = body("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap", json!({}));
        let mut env = DynamicMessage::decode(
            s.message("k8s.io.apimachinery.pkg.runtime.Unknown")
                .unwrap(),
            &gz[4..],
        )
        .unwrap();
        env.set_field_by_number(3, Pb::String("gzip".into()));
        assert!(matches!(
            decode(&[MAGIC.as_slice(), &env.encode_to_vec()].concat()),
            Err(ProtobufError::ContentEncoding(e)) if e == "gzip"
        ));
    }

    #[test]
    fn the_json_facts_match_the_descriptors() {
        let s = schema().unwrap();
        assert!(s.kinds.len() > 300 && s.fields.len() > 1000);
        for ((api_version, kind), message) in &s.kinds {
            assert!(
                s.pool.get_message_by_name(message).is_some(),
                "{api_version} {kind}: no message {message}"
            );
        }
        for (message, number) in s.fields.keys() {
            let m = s.pool.get_message_by_name(message);
            assert!(
                m.as_ref().is_some_and(|m| m.get_field(*number).is_some()),
                "{message} has no field {number}"
            );
        }
        assert_eq!(
            s.kinds
                .get(&("apps/v1".into(), "Deployment".into()))
                .map(String::as_str),
            Some("k8s.io.api.apps.v1.Deployment")
        );
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf(
            "application/vnd.kubernetes.protobuf; charset=utf-8"
        ));
        assert!(!is_protobuf("application/json"));
    }
}
