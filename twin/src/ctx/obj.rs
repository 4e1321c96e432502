//! Small read and write helpers on Kubernetes objects as JSON (`serde_json::Value`):
//! metadata (name, namespace, uid), conditions, owner references, readiness.
//!
//! Contract: pure functions on values, no I/O and no state; a missing field reads
//! as empty (`""`, `None`, false) rather than an error. Shared by every layer of the
//! twin (the embedded controllers, the simulated world, operators, data plane).

use serde_json::Value;

pub fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn namespace(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Which run of a pod's containers this is: its uid and its containers' restarts
/// (`UID/RESTARTS`); a new pod or a restarted container gives another value.
pub fn incarnation(pod: &Value) -> String {
    let restarts: i64 = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
        .unwrap_or(0);
    format!("{}/{restarts}", uid(pod))
}

pub fn str_at<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer).and_then(Value::as_str)
}

pub fn is_terminating(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

/// The status of condition `kind` ("True"/"False"/"Unknown"), if present.
pub fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?
        .get("status")?
        .as_str()
}

pub fn is_pod_ready(p: &Value) -> bool {
    condition(p, "Ready") == Some("True")
}

pub fn is_node_ready(n: &Value) -> bool {
    condition(n, "Ready") == Some("True")
}

/// The controller owner reference (kind, name, uid), if any.
pub fn controller_of(o: &Value) -> Option<(&str, &str, &str)> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
                r["uid"].as_str().unwrap_or(""),
            )
        })
}

/// Sets condition `kind` in a conditions array, keeping lastTransitionTime
/// unless the status changes (as upstream controllers do).
pub fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    if let Some(c) = conditions.iter_mut().find(|c| c["type"] == kind) {
        if c["status"] != status {
            c["lastTransitionTime"] = Value::String(now.to_string());
        }
        c["status"] = Value::String(status.to_string());
        c["reason"] = Value::String(reason.to_string());
        c["message"] = Value::String(message.to_string());
    } else {
        conditions.push(serde_json::json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": now,
        }));
    }
}
