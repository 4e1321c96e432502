//! Authorization for tokens other than the admin's, as kube-apiserver's RBAC
//! authorizer decides it: a request's attributes (verb, API group, resource and
//! subresource, namespace, name) against the Roles and ClusterRoles bound to the user,
//! its groups or its ServiceAccount. Tokens are static (`TwinOptions::users`, like
//! kube-apiserver's `--token-auth-file`); the admin token keeps `system:masters`.
//!
//! Impersonation (`Impersonate-User`, `Impersonate-Group`, as `kubectl --as`/`--as-group`
//! send them) follows kube-apiserver's filter: the requester needs the `impersonate`
//! verb on `users`, `groups` or `serviceaccounts` (the admin has it), and the request is
//! then authorized as the impersonated user ([`impersonate`]).
//!
//! Simplifications: no ClusterRole aggregation; discovery and other non-resource URLs
//! are open to every authenticated user (kube's `system:discovery` binding); so are
//! the self reviews (`auth can-i`, `auth whoami`: kube's `system:basic-user` binding);
//! impersonated UIDs and extras are authorized but not kept; the provider endpoints
//! `/twin/v1/...` stand for the infrastructure outside Kubernetes (docker, IPMI) and
//! are not subject to RBAC.
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

/// The group whose members every authorizer allows everything (kube's privileged group).
pub const MASTERS: &str = "system:masters";
const AUTHENTICATED: &str = "system:authenticated";

impl StaticToken {
    /// The admin token's identity: `system:masters`, as in the real control plane's
    /// token file.
    pub fn admin(token: &str) -> StaticToken {
        StaticToken {
            token: token.to_owned(),
            user: "stormdrill-admin".to_owned(),
            groups: vec![MASTERS.to_owned(), AUTHENTICATED.to_owned()],
        }
    }

    /// Whether this user is in `system:masters` (allowed everything, RBAC or not).
    pub fn privileged(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

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

/// kube's `describeSubject`, for decision reasons.
fn describe_subject(s: &Value, binding_ns: &str) -> String {
    let kind = s["kind"].as_str().unwrap_or("");
    let name = s["name"].as_str().unwrap_or("");
    match kind {
        "ServiceAccount" => {
            let ns = s["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            format!("{kind} \"{name}/{ns}\"")
        }
        _ => format!("{kind} \"{name}\""),
    }
}

/// Calls `visit(source, rule)` for every rule bound to `who` cluster-wide and in
/// `namespace`, in kube's order (ClusterRoleBindings, then RoleBindings); `source`
/// describes the binding as kube's RBAC reasons do. Stops when `visit` says false.
fn visit_rules(
    client: &Client,
    who: &StaticToken,
    namespace: Option<&str>,
    mut visit: impl FnMut(&str, &Value) -> bool,
) {
    let subject_of = |binding: &Value, ns: Option<&str>| {
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| subject_matches(s, who, ns))
            .cloned()
    };
    for b in client.list(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        None,
        None,
    ) {
        let Some(subject) = subject_of(&b, None) else {
            continue;
        };
        let source = format!(
            "ClusterRoleBinding \"{}\" of {} \"{}\" to {}",
            b["metadata"]["name"].as_str().unwrap_or(""),
            b["roleRef"]["kind"].as_str().unwrap_or(""),
            b["roleRef"]["name"].as_str().unwrap_or(""),
            describe_subject(&subject, "")
        );
        for r in role_rules(client, &b["roleRef"], None) {
            if !visit(&source, &r) {
                return;
            }
        }
    }
    let Some(ns) = namespace.filter(|n| !n.is_empty()) else {
        return;
    };
    for b in client.list("rbac.authorization.k8s.io", "rolebindings", Some(ns), None) {
        let Some(subject) = subject_of(&b, Some(ns)) else {
            continue;
        };
        let source = format!(
            "RoleBinding \"{}/{ns}\" of {} \"{}\" to {}",
            b["metadata"]["name"].as_str().unwrap_or(""),
            b["roleRef"]["kind"].as_str().unwrap_or(""),
            b["roleRef"]["name"].as_str().unwrap_or(""),
            describe_subject(&subject, ns)
        );
        for r in role_rules(client, &b["roleRef"], Some(ns)) {
            if !visit(&source, &r) {
                return;
            }
        }
    }
}

/// An authorization decision and kube's reason for it (`RBAC: allowed by ...`; empty
/// for `system:masters` and for a denial, as kube's authorizers give it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// What the twin decides for `who` doing `a`.
pub fn decide(client: &Client, who: &StaticToken, a: &Attributes) -> Decision {
    if who.privileged() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut reason = None;
    visit_rules(client, who, a.namespace.as_deref(), |source, rule| {
        if rule_allows(rule, a) {
            reason = Some(format!("RBAC: allowed by {source}"));
            return false;
        }
        true
    });
    Decision {
        allowed: reason.is_some(),
        reason: reason.unwrap_or_default(),
    }
}

/// Whether the bindings in the store let `who` do `a`.
pub fn allowed(client: &Client, who: &StaticToken, a: &Attributes) -> bool {
    decide(client, who, a).allowed
}

/// Requests every authenticated user may make, as kube's `system:basic-user`
/// ClusterRole grants them: the self reviews.
pub fn basic_user_request(a: &Attributes) -> bool {
    a.verb == "create"
        && matches!(
            (a.group.as_str(), a.resource.as_str()),
            (
                "authorization.k8s.io",
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            ) | ("authentication.k8s.io", "selfsubjectreviews")
        )
}

/// The rules `who` has in `namespace` (a SelfSubjectRulesReview's status): resource
/// rules and non-resource rules, as kube's RBAC rule resolver lists them, plus what
/// the twin grants everyone (the self reviews, every non-resource URL).
pub fn rules_for(client: &Client, who: &StaticToken, namespace: &str) -> (Vec<Value>, Vec<Value>) {
    use serde_json::json;
    if who.privileged() {
        return (
            vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
            vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
        );
    }
    let mut resource = vec![
        json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
        json!({"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]}),
    ];
    let mut non_resource = vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})];
    visit_rules(client, who, Some(namespace), |_, rule| {
        let has = |f: &str| rule[f].as_array().is_some_and(|a| !a.is_empty());
        if has("resources") {
            let mut r = json!({"verbs": rule["verbs"], "apiGroups": rule["apiGroups"], "resources": rule["resources"]});
            if has("resourceNames") {
                r["resourceNames"] = rule["resourceNames"].clone();
            }
            resource.push(r);
        }
        if has("nonResourceURLs") {
            non_resource
                .push(json!({"verbs": rule["verbs"], "nonResourceURLs": rule["nonResourceURLs"]}));
        }
        true
    });
    (resource, non_resource)
}

/// The user a request acts as: `requester`, or whom it impersonates with
/// `Impersonate-User`/`Impersonate-Group`/`Impersonate-Uid`/`Impersonate-Extra-*`
/// when `requester` may (kube-apiserver's impersonation filter: each impersonated
/// user, service account, group, uid and extra needs the `impersonate` verb; a
/// service account without groups gets its fixed groups; `system:authenticated` is
/// added when no group is given).
pub fn impersonate(
    client: &Client,
    requester: &StaticToken,
    headers: &hyper::HeaderMap,
) -> Result<StaticToken, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let user = values("impersonate-user")
        .into_iter()
        .find(|u| !u.is_empty());
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid");
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("impersonate-extra-")?;
            Some((key.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect();
    if user.is_none() && groups.is_empty() && uid.is_empty() && extras.is_empty() {
        return Ok(requester.clone());
    }
    let Some(user) = user else {
        // kube answers this with an internal error too.
        return Err(ApiError::internal(
            "requested impersonation of groups, a UID or extras without impersonating a user",
        ));
    };
    let check = |resource: &str, namespace: Option<&str>, name: &str| {
        let a = Attributes {
            verb: "impersonate".into(),
            group: if resource == "uids" || resource.starts_with("userextras") {
                "authentication.k8s.io".into()
            } else {
                String::new()
            },
            resource: resource.into(),
            namespace: namespace.map(str::to_owned),
            name: Some(name.to_owned()),
        };
        let d = decide(client, requester, &a);
        if d.allowed {
            Ok(())
        } else {
            Err(a.forbidden(&requester.user))
        }
    };
    let mut out_groups: Vec<String> = Vec::new();
    match user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
    {
        Some((ns, name)) => {
            check("serviceaccounts", Some(ns), name)?;
            if groups.is_empty() {
                out_groups = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check("users", None, &user)?,
    }
    for g in &groups {
        check("groups", None, g)?;
        out_groups.push(g.clone());
    }
    for u in &uid {
        check("uids", None, u)?;
    }
    for (k, v) in &extras {
        check(&format!("userextras/{k}"), None, v)?;
    }
    if user != "system:anonymous"
        && !out_groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == "system:unauthenticated")
    {
        out_groups.push(AUTHENTICATED.into());
    }
    Ok(StaticToken {
        token: String::new(),
        user,
        groups: out_groups,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A store with namespace `n`, a Role granting get/list pods there to
    /// ServiceAccount n/reader, and a ClusterRole letting user `alice` impersonate
    /// that service account only.
    pub(crate) fn client_with_rbac() -> Client {
        let api = crate::api::Api::new(1, 100, std::time::Duration::from_secs(60));
        let c = Client::new(api);
        for o in [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "pod-reader", "namespace": "n"},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "readers", "namespace": "n"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                   "subjects": [{"kind": "ServiceAccount", "name": "reader"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "act-as-reader"},
                   "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"],
                              "resourceNames": ["reader"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "alice-acts"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "act-as-reader"},
                   "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]}),
        ] {
            c.create(o).unwrap();
        }
        c
    }

    fn user(name: &str) -> StaticToken {
        StaticToken {
            token: "t".into(),
            user: name.into(),
            groups: vec!["system:authenticated".into()],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn decisions_carry_kube_reasons() {
        let c = client_with_rbac();
        let reader = StaticToken::service_account("t", "n", "reader");
        let get = Attributes::of(&Method::GET, "", "pods", None, Some("n"), Some("p"), false);
        assert_eq!(
            decide(&c, &reader, &get),
            Decision {
                allowed: true,
                reason: "RBAC: allowed by RoleBinding \"readers/n\" of Role \"pod-reader\" to ServiceAccount \"reader/n\"".into()
            }
        );
        let del = Attributes::of(
            &Method::DELETE,
            "",
            "pods",
            None,
            Some("n"),
            Some("p"),
            false,
        );
        assert_eq!(
            decide(&c, &reader, &del),
            Decision {
                allowed: false,
                reason: String::new()
            }
        );
        assert!(decide(&c, &StaticToken::admin("a"), &del).allowed);
        let (rules, non_resource) = rules_for(&c, &reader, "n");
        assert!(rules
            .iter()
            .any(|r| r["resources"] == json!(["pods"]) && r["verbs"] == json!(["get", "list"])));
        assert_eq!(
            non_resource,
            vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})]
        );
        let (elsewhere, _) = rules_for(&c, &reader, "default");
        assert!(!elsewhere.iter().any(|r| r["resources"] == json!(["pods"])));
    }

    #[test]
    fn impersonation_needs_the_impersonate_verb() {
        let c = client_with_rbac();
        let admin = StaticToken::admin("a");
        assert_eq!(impersonate(&c, &admin, &headers(&[])).unwrap(), admin);
        let sa = impersonate(
            &c,
            &admin,
            &headers(&[("Impersonate-User", "system:serviceaccount:n:reader")]),
        )
        .unwrap();
        assert_eq!(sa.user, "system:serviceaccount:n:reader");
        assert_eq!(
            sa.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:n",
                "system:authenticated"
            ]
        );
        let bob = impersonate(
            &c,
            &admin,
            &headers(&[
                ("Impersonate-User", "bob"),
                ("Impersonate-Group", "devs"),
                ("Impersonate-Group", "ops"),
            ]),
        )
        .unwrap();
        assert_eq!(bob.groups, ["devs", "ops", "system:authenticated"]);
        assert!(!bob.privileged());
        // alice may act as n/reader, not as anyone else, and not add groups.
        let alice = user("alice");
        let as_reader = impersonate(
            &c,
            &alice,
            &headers(&[("Impersonate-User", "system:serviceaccount:n:reader")]),
        )
        .unwrap();
        assert_eq!(as_reader.user, "system:serviceaccount:n:reader");
        let e = impersonate(&c, &alice, &headers(&[("Impersonate-User", "bob")])).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        let e = impersonate(
            &c,
            &alice,
            &headers(&[
                ("Impersonate-User", "system:serviceaccount:n:reader"),
                ("Impersonate-Group", "system:masters"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.code, 403, "{e}");
        let e = impersonate(&c, &admin, &headers(&[("Impersonate-Group", "devs")])).unwrap_err();
        assert_eq!(e.code, 500);
    }

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
