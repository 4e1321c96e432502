//! Discovery documents, shaped as a Kubernetes 1.37 kube-apiserver returns them:
//! `/version`, `/api`, `/apis`, `/apis/GROUP`, `/api/v1` and `/apis/GROUP/VERSION`,
//! and the aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`)
//! served on `/api` and `/apis` when the client asks for it in `Accept`
//! (see [`accepts_aggregated`]; answer with Content-Type
//! [`AGGREGATED_DISCOVERY_CONTENT_TYPE`] and `Vary: Accept`).
//!
//! Built-in resources advertise their status/scale subresources plus a fixed set of
//! extra subresources ([`subresources`]); custom resources advertise what the storage
//! version of their CRD declares.

use serde_json::{json, Value};

use crate::resources::{compare_versions, storage_version_hash, Registry, ResourceInfo};

/// Content-Type of an aggregated discovery response (and what clients put in Accept).
pub const AGGREGATED_DISCOVERY_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for the v2 aggregated discovery document
/// (kubectl >= 1.30 sends
/// `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`).
/// v2beta1 alone is not honoured (removed from the API server in 1.33), nor is
/// protobuf.
pub fn accepts_aggregated(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if !media.eq_ignore_ascii_case("application/json") {
            return false;
        }
        let (mut g, mut v, mut r#as, mut q_zero) = (false, false, false, false);
        for p in parts {
            let Some((k, val)) = p.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "g" => g = val == "apidiscovery.k8s.io",
                "v" => v = val == "v2",
                "as" => r#as = val == "APIGroupDiscoveryList",
                "q" => q_zero = val.parse::<f32>().is_ok_and(|q| q == 0.0),
                _ => {}
            }
        }
        g && v && r#as && !q_zero
    })
}

/// `/version`.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": "v1.37.0-stormdrill-twin",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-08-01T00:00:00Z",
        "goVersion": "go1.26.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api` (non-aggregated): the core group's versions.
pub fn core_api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            { "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }
        ],
    })
}

/// A subresource as discovery lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// e.g. `status`, `scale`, `exec`.
    pub name: String,
    pub kind: String,
    /// Group and version of `kind` when it is not the parent's ("" otherwise).
    pub group: String,
    pub version: String,
    pub verbs: Vec<String>,
}

fn sub(name: &str, kind: &str, gv: (&str, &str), verbs: &[&str]) -> Subresource {
    Subresource {
        name: name.into(),
        kind: kind.into(),
        group: gv.0.into(),
        version: gv.1.into(),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    }
}

const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The subresources of a resource, sorted by name: `status` and `scale` as the
/// resource declares them, plus for built-ins pods/{eviction,exec,log,portforward,proxy},
/// services/proxy, nodes/proxy and namespaces/finalize.
pub fn subresources(info: &ResourceInfo) -> Vec<Subresource> {
    let mut out = Vec::new();
    if info.status_subresource {
        out.push(sub("status", &info.kind, ("", ""), STATUS_VERBS));
    }
    if info.scale.is_some() {
        out.push(sub("scale", "Scale", ("autoscaling", "v1"), STATUS_VERBS));
    }
    if info.builtin && info.group.is_empty() {
        match info.plural.as_str() {
            "pods" => {
                out.push(sub("eviction", "Eviction", ("policy", "v1"), &["create"]));
                out.push(sub("exec", "PodExecOptions", ("", ""), &["create", "get"]));
                out.push(sub("log", "Pod", ("", ""), &["get"]));
                out.push(sub(
                    "portforward",
                    "PodPortForwardOptions",
                    ("", ""),
                    &["create", "get"],
                ));
                out.push(sub("proxy", "PodProxyOptions", ("", ""), PROXY_VERBS));
            }
            "services" => out.push(sub("proxy", "ServiceProxyOptions", ("", ""), PROXY_VERBS)),
            "nodes" => out.push(sub("proxy", "NodeProxyOptions", ("", ""), PROXY_VERBS)),
            "namespaces" => out.push(sub("finalize", "Namespace", ("", ""), &["update"])),
            _ => {}
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The `storageVersionHash` discovery reports for a resource (hash of the storage
/// group/version/kind; events.k8s.io Events are stored as core v1 Events).
pub fn resource_storage_version_hash(info: &ResourceInfo) -> String {
    if info.builtin && info.group == "events.k8s.io" && info.kind == "Event" {
        return storage_version_hash("", "v1", "Event");
    }
    storage_version_hash(&info.group, &info.version, &info.kind)
}

/// Non-core groups in the order the API server lists them: built-in groups by
/// upstream priority, then the CRD groups alphabetically.
fn group_names(reg: &Registry) -> Vec<String> {
    const PRIORITY: &[&str] = &[
        "apps",
        "events.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "batch",
        "networking.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
    ];
    let mut groups: Vec<String> = Vec::new();
    for r in reg.all() {
        if !r.group.is_empty() && !r.versions.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group.clone());
        }
    }
    let rank = |g: &str| {
        PRIORITY
            .iter()
            .position(|p| *p == g)
            .unwrap_or(PRIORITY.len())
    };
    groups.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    groups
}

/// The served versions of a group, preferred first (the highest-priority storage
/// version among its resources), then by Kubernetes version priority.
fn group_versions(reg: &Registry, group: &str) -> Vec<String> {
    let resources: Vec<&ResourceInfo> = reg.all().filter(|r| r.group == group).collect();
    let mut versions: Vec<String> = Vec::new();
    for r in &resources {
        for v in &r.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    versions.sort_by(|a, b| compare_versions(a, b));
    let mut storage: Vec<&str> = resources
        .iter()
        .filter(|r| r.serves(&r.version))
        .map(|r| r.version.as_str())
        .collect();
    storage.sort_by(|a, b| compare_versions(a, b));
    if let Some(pref) = storage.first() {
        if let Some(i) = versions.iter().position(|v| v == pref) {
            let v = versions.remove(i);
            versions.insert(0, v);
        }
    }
    versions
}

fn gv_for_discovery(group: &str, version: &str) -> Value {
    json!({ "groupVersion": format!("{group}/{version}"), "version": version })
}

fn api_group_json(reg: &Registry, group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let versions = group_versions(reg, group);
    let preferred = versions.first()?;
    Some(json!({
        "name": group,
        "versions": versions.iter().map(|v| gv_for_discovery(group, v)).collect::<Vec<_>>(),
        "preferredVersion": gv_for_discovery(group, preferred),
    }))
}

/// `/apis` (non-aggregated).
pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = group_names(reg)
        .iter()
        .filter_map(|g| api_group_json(reg, g))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/GROUP`; None for unknown groups and for the core group.
pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let mut g = api_group_json(reg, group)?;
    let obj = g.as_object_mut()?;
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), json!("APIGroup"));
    out.insert("apiVersion".into(), json!("v1"));
    out.append(obj);
    Some(Value::Object(out))
}

fn resources_in<'a>(reg: &'a Registry, group: &str, version: &str) -> Vec<&'a ResourceInfo> {
    let mut rs: Vec<&ResourceInfo> = reg
        .all()
        .filter(|r| r.group == group && r.serves(version))
        .collect();
    rs.sort_by(|a, b| a.plural.cmp(&b.plural));
    rs
}

/// `/api/v1` and `/apis/GROUP/VERSION`: an `APIResourceList`; None when nothing is
/// served at that group/version.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs = resources_in(reg, group, version);
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rs {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        // The reviews are never stored: kube lists no storage version for them.
        if r.has_verb("get") {
            main["storageVersionHash"] = json!(resource_storage_version_hash(r));
        }
        resources.push(main);
        for s in subresources(r) {
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
            });
            if !s.group.is_empty() || !s.version.is_empty() {
                e["group"] = json!(s.group);
                e["version"] = json!(s.version);
            }
            e["kind"] = json!(s.kind);
            e["verbs"] = json!(s.verbs);
            resources.push(e);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `responseKind`: built-ins leave group/version empty (same as the parent, as the
/// kube-apiserver does); custom resources name theirs (as the
/// apiextensions-apiserver does).
fn response_kind(
    r: &ResourceInfo,
    version: &str,
    group: &str,
    gv_version: &str,
    kind: &str,
) -> Value {
    if !group.is_empty() || !gv_version.is_empty() {
        json!({ "group": group, "version": gv_version, "kind": kind })
    } else if r.builtin {
        json!({ "group": "", "version": "", "kind": kind })
    } else {
        json!({ "group": r.group, "version": version, "kind": kind })
    }
}

fn aggregated_resource(r: &ResourceInfo, version: &str) -> Value {
    let mut out = json!({
        "resource": r.plural,
        "responseKind": response_kind(r, version, "", "", &r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        out["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        out["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = subresources(r)
        .into_iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": response_kind(r, version, &s.group, &s.version, &s.kind),
                "verbs": s.verbs,
            })
        })
        .collect();
    if !subs.is_empty() {
        out["subresources"] = json!(subs);
    }
    out
}

fn aggregated_group(reg: &Registry, group: &str) -> Value {
    let versions = if group.is_empty() {
        vec!["v1".to_string()]
    } else {
        group_versions(reg, group)
    };
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources_in(reg, group, v)
                .into_iter()
                .map(|r| aggregated_resource(r, v))
                .collect();
            json!({ "version": v, "resources": resources, "freshness": "Current" })
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({ "creationTimestamp": null })
    } else {
        json!({ "name": group, "creationTimestamp": null })
    };
    json!({ "metadata": metadata, "versions": versions })
}

/// The aggregated discovery document (`apidiscovery.k8s.io/v2`
/// `APIGroupDiscoveryList`): for `/api` when `core`, for `/apis` otherwise.
pub fn aggregated_discovery(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(reg, "")]
    } else {
        group_names(reg)
            .iter()
            .map(|g| aggregated_group(reg, g))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// The served group versions as OpenAPI v3 discovery paths (`api/v1`, `apis/apps/v1`).
fn openapi_paths(reg: &Registry) -> Vec<(String, String, String)> {
    let mut gvs: Vec<(String, String, String)> = Vec::new();
    for info in reg.all() {
        for v in &info.versions {
            let path = if info.group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{}/{v}", info.group)
            };
            if !gvs.iter().any(|(p, _, _)| *p == path) {
                gvs.push((path, info.group.clone(), v.clone()));
            }
        }
    }
    gvs.sort();
    gvs
}

/// `/openapi/v3`: the index of per-group-version documents.
pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (path, _, _) in openapi_paths(reg) {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", reg.all().count())}),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<group-version path>`: a minimal OpenAPI document. It declares, for
/// each kind, the item path with a PATCH operation tagged with its GVK and the
/// `fieldValidation` query parameter: kubectl reads exactly that to decide that the
/// server validates (`--validate=strict`) instead of downloading schemas. Schemas
/// themselves are not published (kubectl then falls back to its compiled-in types).
pub fn openapi_v3_group_version(reg: &Registry, gv_path: &str) -> Option<Value> {
    let (_, group, version) = openapi_paths(reg)
        .into_iter()
        .find(|(p, _, _)| p == gv_path.trim_matches('/'))?;
    let mut paths = serde_json::Map::new();
    // Create-only kinds (the reviews) have no item path upstream either.
    for info in reg
        .all()
        .filter(|i| i.group == group && i.versions.contains(&version) && i.has_verb("patch"))
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if info.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", info.plural)
        } else {
            format!("{prefix}/{}/{{name}}", info.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": info.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}}
        ]);
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", info.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK"}}
            })
        };
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0-stormdrill-twin"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Cluster",
                "names": {"plural": "widgets", "kind": "Widget", "categories": ["all"]},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {
                         "specReplicasPath": ".spec.replicas",
                         "statusReplicasPath": ".status.replicas"}}}
                ]
            }
        })
    }

    fn find<'a>(list: &'a Value, key: &str, name: &str) -> Option<&'a Value> {
        list.as_array()?.iter().find(|r| r[key] == name)
    }

    #[test]
    fn apps_v1_resource_list() {
        let reg = Registry::new();
        let list = resource_list(&reg, "apps", "v1").unwrap();
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["groupVersion"], "apps/v1");
        let res = &list["resources"];
        let deploy = find(res, "name", "deployments").unwrap();
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        assert_eq!(deploy["singularName"], "deployment");
        assert_eq!(deploy["namespaced"], true);
        assert_eq!(deploy["storageVersionHash"], "8aSe+NMegvE=");
        let scale = find(res, "name", "deployments/scale").unwrap();
        assert_eq!(
            scale,
            &json!({"name": "deployments/scale", "singularName": "", "namespaced": true,
                    "group": "autoscaling", "version": "v1", "kind": "Scale",
                    "verbs": ["get", "patch", "update"]})
        );
        assert!(find(res, "name", "deployments/status").is_some());
        assert!(find(res, "name", "daemonsets/scale").is_none());
        let names: Vec<&str> = res
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(resource_list(&reg, "apps", "v2").is_none());
        assert!(resource_list(&reg, "nope.io", "v1").is_none());
    }

    #[test]
    fn core_v1_resource_list() {
        let reg = Registry::new();
        let list = resource_list(&reg, "", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let res = &list["resources"];
        let pods = find(res, "name", "pods").unwrap();
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        assert_eq!(
            find(res, "name", "pods/exec").unwrap()["kind"],
            "PodExecOptions"
        );
        assert_eq!(
            find(res, "name", "pods/exec").unwrap()["verbs"],
            json!(["create", "get"])
        );
        assert_eq!(find(res, "name", "pods/log").unwrap()["kind"], "Pod");
        let ev = find(res, "name", "pods/eviction").unwrap();
        assert_eq!(
            (&ev["group"], &ev["version"], &ev["kind"]),
            (&json!("policy"), &json!("v1"), &json!("Eviction"))
        );
        assert_eq!(
            find(res, "name", "pods/status").unwrap()["verbs"],
            json!(["get", "patch", "update"])
        );
        assert_eq!(
            find(res, "name", "services/proxy").unwrap()["verbs"],
            json!(["create", "delete", "get", "patch", "update"])
        );
        assert_eq!(
            find(res, "name", "nodes/proxy").unwrap()["kind"],
            "NodeProxyOptions"
        );
        assert_eq!(
            find(res, "name", "namespaces/finalize").unwrap()["verbs"],
            json!(["update"])
        );
        let ns = find(res, "name", "namespaces").unwrap();
        assert_eq!(ns["namespaced"], false);
        assert!(find(res, "name", "secrets")
            .unwrap()
            .get("shortNames")
            .is_none());
        assert_eq!(
            core_api_versions("127.0.0.1:6443")["serverAddressByClientCIDRs"][0]["serverAddress"],
            "127.0.0.1:6443"
        );
        assert_eq!(version_info()["minor"], "37");
    }

    #[test]
    fn groups_include_crds() {
        let mut reg = Registry::new();
        let list = api_group_list(&reg);
        assert_eq!(list["kind"], "APIGroupList");
        assert!(find(&list["groups"], "name", "example.com").is_none());
        assert!(find(&list["groups"], "name", "").is_none());
        let apps = find(&list["groups"], "name", "apps").unwrap();
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );

        reg.add_crd(&widget_crd()).unwrap();
        let list = api_group_list(&reg);
        let g = find(&list["groups"], "name", "example.com").expect("CRD group");
        assert_eq!(
            g["versions"],
            json!([{"groupVersion": "example.com/v1", "version": "v1"},
                   {"groupVersion": "example.com/v1alpha1", "version": "v1alpha1"}])
        );
        assert_eq!(g["preferredVersion"]["version"], "v1");
        let groups = list["groups"].as_array().unwrap();
        assert_eq!(groups.last().unwrap()["name"], "example.com");

        let one = api_group(&reg, "example.com").unwrap();
        assert_eq!(one["kind"], "APIGroup");
        assert_eq!(one["name"], "example.com");
        assert!(api_group(&reg, "").is_none());
        assert!(api_group(&reg, "nope.io").is_none());

        let rl = resource_list(&reg, "example.com", "v1alpha1").unwrap();
        let w = find(&rl["resources"], "name", "widgets").unwrap();
        assert_eq!(w["verbs"], json!(crate::resources::CRD_VERBS));
        assert_eq!(w["singularName"], "widget");
        assert_eq!(
            w["storageVersionHash"],
            json!(storage_version_hash("example.com", "v1", "Widget"))
        );
        assert!(find(&rl["resources"], "name", "widgets/scale").is_some());

        reg.remove_crd("example.com", "widgets");
        assert!(find(&api_group_list(&reg)["groups"], "name", "example.com").is_none());
    }

    #[test]
    fn aggregated_documents() {
        let mut reg = Registry::new();
        reg.add_crd(&widget_crd()).unwrap();
        let core = aggregated_discovery(&reg, true);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = find(&v1["resources"], "resource", "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "", "kind": "Pod"})
        );
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let ev = find(&pods["subresources"], "subresource", "eviction").unwrap();
        assert_eq!(
            ev["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
        assert_eq!(ev["verbs"], json!(["create"]));
        let nodes = find(&v1["resources"], "resource", "nodes").unwrap();
        assert_eq!(nodes["scope"], "Cluster");

        let apis = aggregated_discovery(&reg, false);
        let items = &apis["items"];
        assert!(items
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["metadata"]["name"] != ""));
        let apps = items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = find(&apps["versions"][0]["resources"], "resource", "deployments").unwrap();
        let scale = find(&deploy["subresources"], "subresource", "scale").unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        let ex = items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "example.com")
            .unwrap();
        assert_eq!(ex["versions"][0]["version"], "v1");
        assert_eq!(ex["versions"][1]["version"], "v1alpha1");
        let w = &ex["versions"][1]["resources"][0];
        assert_eq!(w["scope"], "Cluster");
        assert_eq!(
            w["responseKind"],
            json!({"group": "example.com", "version": "v1alpha1", "kind": "Widget"})
        );
        let st = find(&w["subresources"], "subresource", "status").unwrap();
        assert_eq!(st["responseKind"]["kind"], "Widget");
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(accepts_aggregated(AGGREGATED_DISCOVERY_CONTENT_TYPE));
        assert!(!accepts_aggregated("application/json"));
        assert!(!accepts_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
        assert!(!accepts_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0"
        ));
    }
}
