//! The create-only review kinds, answered by the twin's authorizer ([`crate::rbac`])
//! and never stored, as kube-apiserver's registries for them do:
//!
//! - authorization.k8s.io/v1 `SelfSubjectAccessReview` (`kubectl auth can-i`),
//!   `SubjectAccessReview`, `LocalSubjectAccessReview`: the request object back with
//!   `status: {allowed, reason}`;
//! - authorization.k8s.io/v1 `SelfSubjectRulesReview` (`kubectl auth can-i --list`):
//!   the rules the user has in `spec.namespace`;
//! - authentication.k8s.io/v1 `SelfSubjectReview` (`kubectl auth whoami`): the user.
//!
//! "Self" is the user the request acts as, after impersonation (`kubectl --as`).
//! Non-resource URLs are open to every authenticated user in the twin, so a review of
//! one is allowed.

use serde_json::{json, Value};

use crate::client::Client;
use crate::error::ApiError;
use crate::rbac::{self, Attributes, StaticToken};
use crate::resources::ResourceInfo;

const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTHENTICATION: &str = "authentication.k8s.io";

/// Whether `info` is one of the review kinds this module answers.
pub fn is_review(info: &ResourceInfo) -> bool {
    matches!(
        (info.group.as_str(), info.plural.as_str()),
        (
            AUTHORIZATION,
            "selfsubjectaccessreviews"
                | "subjectaccessreviews"
                | "localsubjectaccessreviews"
                | "selfsubjectrulesreviews"
        ) | (AUTHENTICATION, "selfsubjectreviews")
    )
}

fn invalid(info: &ResourceInfo, field: &str, value: &Value, why: &str) -> ApiError {
    let value = match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    };
    ApiError::invalid(
        &info.group,
        &info.kind,
        "",
        vec![
            json!({"reason": "FieldValueInvalid", "message": format!("Invalid value: {value}: {why}"), "field": field}),
        ],
    )
}

/// The attributes a `spec.resourceAttributes` asks about (kube's ResourceAttributesFrom).
fn resource_attributes(ra: &Value) -> Attributes {
    let s = |k: &str| ra[k].as_str().unwrap_or("").to_string();
    let (resource, sub) = (s("resource"), s("subresource"));
    let non_empty = |v: String| (!v.is_empty()).then_some(v);
    Attributes {
        verb: s("verb"),
        group: s("group"),
        resource: if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        },
        namespace: non_empty(s("namespace")),
        name: non_empty(s("name")),
    }
}

/// Exactly one of resourceAttributes and nonResourceAttributes (kube's validation).
fn check_spec(info: &ResourceInfo, spec: &Value) -> Result<(), ApiError> {
    let ra = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let nra = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (ra, nra) {
        (Some(_), Some(n)) => Err(invalid(
            info,
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            info,
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => Ok(()),
    }
}

/// The access review's status for `who`.
fn access_status(client: &Client, who: &StaticToken, spec: &Value) -> Value {
    let decision = match spec.get("resourceAttributes").filter(|v| !v.is_null()) {
        Some(ra) => rbac::decide(client, who, &resource_attributes(ra)),
        None => rbac::Decision {
            allowed: true,
            reason: String::new(),
        },
    };
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    status
}

fn with_status(mut body: Value, status: Value) -> Value {
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    if body["metadata"].get("creationTimestamp").is_none() {
        body["metadata"]["creationTimestamp"] = Value::Null;
    }
    body["status"] = status;
    body
}

/// Answers a POST of a review kind by `user` (namespace `ns` for the local review).
pub fn create(
    client: &Client,
    user: &StaticToken,
    info: &ResourceInfo,
    ns: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of a {} must be an object",
            info.kind
        )));
    }
    if let Some(kind) = body["kind"].as_str().filter(|k| !k.is_empty()) {
        if kind != info.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the resource ({})",
                info.kind
            )));
        }
    }
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    match (info.group.as_str(), info.plural.as_str()) {
        (AUTHORIZATION, "selfsubjectaccessreviews") => {
            check_spec(info, &spec)?;
            let status = access_status(client, user, &spec);
            Ok(with_status(body, status))
        }
        (AUTHORIZATION, "subjectaccessreviews" | "localsubjectaccessreviews") => {
            check_spec(info, &spec)?;
            let subject = spec["user"].as_str().unwrap_or("").to_string();
            let groups: Vec<String> = spec["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect();
            if subject.is_empty() && groups.is_empty() {
                return Err(invalid(
                    info,
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            if info.plural == "localsubjectaccessreviews" {
                if let Some(n) = spec.get("nonResourceAttributes").filter(|v| !v.is_null()) {
                    return Err(invalid(
                        info,
                        "spec.nonResourceAttributes",
                        n,
                        "disallowed on this kind of request",
                    ));
                }
                let ns = ns.unwrap_or("");
                if spec["resourceAttributes"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    != ns
                {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
            }
            // Unlike impersonation, a SubjectAccessReview's groups are taken as given.
            let who = StaticToken {
                token: String::new(),
                user: subject,
                groups,
            };
            let status = access_status(client, &who, &spec);
            Ok(with_status(body, status))
        }
        (AUTHORIZATION, "selfsubjectrulesreviews") => {
            let namespace = spec["namespace"].as_str().unwrap_or("");
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let (resource_rules, non_resource_rules) = rbac::rules_for(client, user, namespace);
            // kube answers a new object with the status only.
            Ok(json!({
                "apiVersion": body["apiVersion"],
                "kind": info.kind,
                "metadata": {"creationTimestamp": null},
                "spec": {},
                "status": {
                    "resourceRules": resource_rules,
                    "nonResourceRules": non_resource_rules,
                    "incomplete": false,
                },
            }))
        }
        (AUTHENTICATION, "selfsubjectreviews") => Ok(with_status(
            json!({"apiVersion": body["apiVersion"], "kind": info.kind, "metadata": body["metadata"]}),
            json!({"userInfo": {"username": user.user, "groups": user.groups}}),
        )),
        _ => Err(ApiError::method_not_allowed(format!(
            "{} cannot be created",
            info.plural
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn info(group: &str, plural: &str) -> ResourceInfo {
        Registry::new().get(group, "v1", plural).unwrap().clone()
    }

    #[test]
    fn access_reviews_answer_with_the_decision() {
        let c = crate::rbac::tests::client_with_rbac();
        let reader = StaticToken::service_account("t", "n", "reader");
        let ssar = info(AUTHORIZATION, "selfsubjectaccessreviews");
        let ask = |verb: &str, ns: &str| {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": ns}}})
        };
        let yes = create(&c, &reader, &ssar, None, ask("list", "n")).unwrap();
        assert_eq!(yes["status"]["allowed"], true);
        assert!(yes["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("RoleBinding \"readers/n\""));
        assert_eq!(yes["spec"]["resourceAttributes"]["verb"], "list");
        let no = create(&c, &reader, &ssar, None, ask("delete", "n")).unwrap();
        assert_eq!(no["status"], json!({"allowed": false}));
        let no = create(&c, &reader, &ssar, None, ask("list", "default")).unwrap();
        assert_eq!(no["status"]["allowed"], false);
        // Subresources are part of the resource RBAC matches.
        let exec = json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "subresource": "exec", "namespace": "n"}}});
        assert_eq!(
            create(&c, &reader, &ssar, None, exec).unwrap()["status"]["allowed"],
            false
        );
        let e = create(&c, &reader, &ssar, None, json!({"spec": {}})).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(
            e.message
                .contains("exactly one of nonResourceAttributes or resourceAttributes"),
            "{}",
            e.message
        );

        // SubjectAccessReview: about someone else, groups as given.
        let sar = info(AUTHORIZATION, "subjectaccessreviews");
        let about = json!({"spec": {"user": "system:serviceaccount:n:reader",
                                    "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "n"}}});
        let admin = StaticToken::admin("a");
        assert_eq!(
            create(&c, &admin, &sar, None, about).unwrap()["status"]["allowed"],
            true
        );
        let e = create(
            &c,
            &admin,
            &sar,
            None,
            json!({"spec": {"resourceAttributes": {"verb": "get"}}}),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        let lsar = info(AUTHORIZATION, "localsubjectaccessreviews");
        let wrong_ns = json!({"spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}}});
        assert_eq!(
            create(&c, &admin, &lsar, Some("n"), wrong_ns)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn rules_and_whoami() {
        let c = crate::rbac::tests::client_with_rbac();
        let reader = StaticToken::service_account("t", "n", "reader");
        let ssrr = info(AUTHORIZATION, "selfsubjectrulesreviews");
        let out = create(
            &c,
            &reader,
            &ssrr,
            None,
            json!({"apiVersion": "authorization.k8s.io/v1", "spec": {"namespace": "n"}}),
        )
        .unwrap();
        let rules = out["status"]["resourceRules"].as_array().unwrap();
        assert!(rules.iter().any(|r| r["resources"] == json!(["pods"])));
        assert_eq!(out["status"]["incomplete"], false);
        assert_eq!(
            create(&c, &reader, &ssrr, None, json!({"spec": {}}))
                .unwrap_err()
                .code,
            400
        );
        let ssr = info(AUTHENTICATION, "selfsubjectreviews");
        let me = create(
            &c,
            &reader,
            &ssr,
            None,
            json!({"apiVersion": "authentication.k8s.io/v1"}),
        )
        .unwrap();
        assert_eq!(
            me["status"]["userInfo"]["username"],
            "system:serviceaccount:n:reader"
        );
        assert_eq!(
            me["status"]["userInfo"]["groups"][1],
            "system:serviceaccounts:n"
        );
        let wrong = json!({"kind": "SelfSubjectAccessReview"});
        assert_eq!(
            create(&c, &reader, &ssr, None, wrong).unwrap_err().code,
            400
        );
    }
}
