//! API errors, answered as Kubernetes `Status` objects with the code and reason a
//! real API server uses, so clients (kube-rs, kubectl) react to them as usual.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    json!({"name": name, "group": group, "kind": kind})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn resource_label(group: &str, plural: &str) -> String {
        if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        }
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError {
            details: Some(details(group, plural, name)),
            ..ApiError::new(
                404,
                "NotFound",
                format!(
                    "{} \"{name}\" not found",
                    Self::resource_label(group, plural)
                ),
            )
        }
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError {
            details: Some(details(group, plural, name)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!(
                    "{} \"{name}\" already exists",
                    Self::resource_label(group, plural)
                ),
            )
        }
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(group, plural, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    Self::resource_label(group, plural)
                ),
            )
        }
    }

    /// 422 Invalid with the field causes, as `kubectl apply` prints them.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Value>) -> ApiError {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                let field = c["field"].as_str().unwrap_or("");
                let msg = c["message"].as_str().unwrap_or("");
                if field.is_empty() {
                    msg.to_string()
                } else {
                    format!("{field}: {msg}")
                }
            })
            .collect();
        let mut d = details(group, kind, name);
        d["causes"] = Value::Array(causes);
        ApiError {
            details: Some(d),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {}", summary.join(", ")),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// The `Status` object a real API server returns for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}
