//! Authorization for tokens other than the admin's, as kube-apiserver's RBAC
//! authorizer decides it: a request's attributes (verb, API group, resource and
//! subresource, namespace, name) against the Roles and ClusterRoles bound to the user,
//! its groups or its ServiceAccount. Tokens are static (`TwinOptions::users`, like
//! kube-apiserver's `--token-auth-file`); the admin token keeps `system:masters`.
//!
//! Simplifications: no ClusterRole aggregation; discovery and other non-resource URLs
//! are open to every authenticated user (kube's `system:discovery` binding); the
//! provider endpoints `/twin/v1/...` stand for the infrastructure outside Kubernetes
//! (docker, IPMI) and are not subject to RBAC.
//!
//! Every resource request's attributes are also recorded ([`Audit`]), so a test can list
//! exactly what a client used.

use std::collections::BTreeSet;
use std::sync::Mutex;

use hyper::Method;
use serde_json::Value;

use crate::client::Client;
use crate::error::ApiError;

/// A bearer token and who it authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticToken {
    pub token: String,
    /// e.g. `system:serviceaccount:stormdrill:stormdrill`.
    pub user: String,
    pub groups: Vec<String>,
}

impl StaticToken {
    /// The token of ServiceAccount `namespace/name`, with the groups kube gives it.
    pub fn service_account(token: &str, namespace: &str, name: &str) -> StaticToken {
        StaticToken {
            token: token.to_owned(),
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }
}

/// What RBAC decides on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    /// `pods`, or `pods/exec` with a subresource.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// A request's attributes, as kube-apiserver derives them.
    pub fn of(
        method: &Method,
        group: &str,
        plural: &str,
        sub: Option<&str>,
        namespace: Option<&str>,
        name: Option<&str>,
        watch: bool,
    ) -> Attributes {
        // `proxy/rest/of/path` authorizes as `proxy`.
        let sub = sub.map(|s| s.split('/').next().unwrap_or(s));
        let verb = match (method, name, sub) {
            // Exec and attach upgrade a GET; kube authorizes them as create.
            (_, _, Some("exec" | "attach" | "portforward")) => "create",
            (&Method::GET | &Method::HEAD, _, _) if watch => "watch",
            (&Method::GET | &Method::HEAD, None, _) => "list",
            (&Method::GET | &Method::HEAD, Some(_), _) => "get",
            (&Method::POST, _, _) => "create",
            (&Method::PUT, _, _) => "update",
            (&Method::PATCH, _, _) => "patch",
            (&Method::DELETE, None, _) => "deletecollection",
            (&Method::DELETE, Some(_), _) => "delete",
            _ => "unknown",
        };
        Attributes {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: match sub {
                Some(s) => format!("{plural}/{s}"),
                None => plural.to_owned(),
            },
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        }
    }

    /// The 403 message kube-apiserver gives.
    pub fn forbidden(&self, user: &str) -> ApiError {
        let (base, _) = self
            .resource
            .split_once('/')
            .unwrap_or((self.resource.as_str(), ""));
        let object = match (&self.name, self.group.is_empty()) {
            (Some(n), true) => format!("{base} \"{n}\""),
            (Some(n), false) => format!("{base}.{} \"{n}\"", self.group),
            (None, true) => base.to_owned(),
            (None, false) => format!("{base}.{}", self.group),
        };
        let scope = match &self.namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_owned(),
        };
        ApiError::forbidden(format!(
            "{object} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\"{scope}",
            self.verb, self.resource, self.group
        ))
    }
}

/// Every resource request's attributes (without names), as seen.
#[derive(Debug, Default)]
pub struct Audit(Mutex<BTreeSet<(String, String, String, bool)>>);

impl Audit {
    pub fn record(&self, a: &Attributes) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert((
            a.group.clone(),
            a.resource.clone(),
            a.verb.clone(),
            a.namespace.is_some(),
        ));
    }

    /// (group, resource, verb, namespaced), sorted.
    pub fn seen(&self) -> Vec<(String, String, String, bool)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let any = |field: &str, want: &str| strings(&rule[field]).any(|x| x == "*" || x == want);
    let resource_ok = strings(&rule["resources"]).any(|r| {
        r == "*" || r == a.resource || {
            // `*/scale` matches every resource's scale subresource.
            let (base, sub) = a.resource.split_once('/').unwrap_or((&a.resource, ""));
            r.strip_prefix("*/").is_some_and(|s| s == sub) || (r == base && sub.is_empty())
        }
    });
    let names = &rule["resourceNames"];
    let name_ok = match names.as_array() {
        None => true,
        Some(ns) if ns.is_empty() => true,
        Some(_) => a
            .name
            .as_deref()
            .is_some_and(|n| strings(names).any(|x| x == n)),
    };
    any("apiGroups", &a.group) && resource_ok && any("verbs", &a.verb) && name_ok
}

fn subject_matches(s: &Value, who: &StaticToken, binding_ns: Option<&str>) -> bool {
    let name = s["name"].as_str().unwrap_or("");
    match s["kind"].as_str().unwrap_or("") {
        "User" => who.user == name,
        "Group" => who.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = s["namespace"].as_str().or(binding_ns).unwrap_or("");
            who.user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn role_rules(client: &Client, role_ref: &Value, ns: Option<&str>) -> Vec<Value> {
    let name = role_ref["name"].as_str().unwrap_or("");
    let role = match role_ref["kind"].as_str() {
        Some("ClusterRole") => client.get("rbac.authorization.k8s.io", "clusterroles", None, name),
        Some("Role") => client.get("rbac.authorization.k8s.io", "roles", ns, name),
        _ => None,
    };
    role.and_then(|r| r["rules"].as_array().cloned())
        .unwrap_or_default()
}

/// Whether the bindings in the store let `who` do `a`.
pub fn allowed(client: &Client, who: &StaticToken, a: &Attributes) -> bool {
    let bound = |binding: &Value, ns: Option<&str>| {
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, who, ns))
    };
    let grants = |binding: &Value, ns: Option<&str>| {
        bound(binding, ns)
            && role_rules(client, &binding["roleRef"], ns)
                .iter()
                .any(|r| rule_allows(r, a))
    };
    if client
        .list(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
            None,
        )
        .iter()
        .any(|b| grants(b, None))
    {
        return true;
    }
    match &a.namespace {
        Some(ns) => client
            .list("rbac.authorization.k8s.io", "rolebindings", Some(ns), None)
            .iter()
            .any(|b| grants(b, Some(ns))),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_messages_follow_kube() {
        let a = Attributes::of(
            &Method::DELETE,
            "",
            "pods",
            None,
            Some("openalex"),
            Some("p-1"),
            false,
        );
        assert_eq!(a.verb, "delete");
        assert_eq!(
            a.forbidden("system:serviceaccount:stormdrill:stormdrill-readonly").message,
            "pods \"p-1\" is forbidden: User \"system:serviceaccount:stormdrill:stormdrill-readonly\" cannot delete resource \"pods\" in API group \"\" in the namespace \"openalex\""
        );
        let e = Attributes::of(
            &Method::GET,
            "",
            "pods",
            Some("exec"),
            Some("n"),
            Some("p"),
            false,
        );
        assert_eq!(
            (e.verb.as_str(), e.resource.as_str()),
            ("create", "pods/exec")
        );
        let p = Attributes::of(
            &Method::GET,
            "",
            "services",
            Some("proxy/api/v1/query"),
            Some("m"),
            Some("s:9090"),
            false,
        );
        assert_eq!(
            (p.verb.as_str(), p.resource.as_str()),
            ("get", "services/proxy")
        );
        let w = Attributes::of(&Method::GET, "apps", "deployments", None, None, None, true);
        assert_eq!(w.verb, "watch");
        let rule: Value = serde_json::json!({"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]});
        let s = Attributes::of(
            &Method::PATCH,
            "apps",
            "deployments",
            Some("scale"),
            Some("n"),
            Some("d"),
            false,
        );
        assert!(rule_allows(&rule, &s));
        let d = Attributes::of(
            &Method::PATCH,
            "apps",
            "deployments",
            None,
            Some("n"),
            Some("d"),
            false,
        );
        assert!(!rule_allows(&rule, &d));
    }
}
