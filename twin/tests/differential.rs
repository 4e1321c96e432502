//! Differential fidelity: the same request sequences sent to the embedded API server
//! and to a real kube-apiserver (`--control-plane real`), comparing status codes,
//! Status reasons and the resulting objects (uids, timestamps, resourceVersions and
//! managedFields ignored).
//!
//! Every divergence must be one of [`KNOWN`], each with the reason it is accepted
//! (also the README's table "where the embedded twin differs from Kubernetes"): a new
//! divergence fails the test, and so does a listed one that went away (update the
//! list). `cargo test -p stormdrill-twin --test differential -- --nocapture` prints
//! the comparison. Needs the binaries of scripts/k8s-setup.sh (SKIPPED without them,
//! except under CI or `STORMDRILL_REQUIRE_K8S=1`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stormdrill_twin::controlplane::real::binaries_for_test;
use stormdrill_twin::controlplane::ControlPlaneKind;
use stormdrill_twin::{Twin, TwinOptions};

/// Divergences accepted, by case name, with why (measured 2026-12-07: 20 of 36 cases
/// at first; 13 from `metadata.generation` on every kind and a merge patch that was a
/// JSON array, a delete's Success Status and an apply's 201 were then fixed in the twin:
/// 5 left).
const KNOWN: &[(&str, &str)] = &[
    (
        "owner",
        "the embedded server keeps an empty data map that kube-apiserver drops",
    ),
    (
        "deployment",
        "the created object differs in its defaulted fields (pod template defaults; `-- --nocapture` prints both)",
    ),
    (
        "pdb",
        "kube-apiserver returns a zeroed status on create; the embedded server none until its disruption controller writes one",
    ),
    (
        "crd",
        "kube-apiserver defaults spec.conversion.strategy None",
    ),
    (
        "a custom object against its schema",
        "the embedded server checks CRD schemas' types and required fields but not value constraints such as minimum",
    ),
];

struct Server {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Server {
    fn of(twin: &Twin) -> Server {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let cert = Certificate::from_pem(twin.ca_pem().as_bytes()).expect("ca");
        let agent = ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&[cert]))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Server {
            base: twin.url(),
            token: twin.token().to_string(),
            agent,
        }
    }

    /// (status code, body as JSON or a string).
    fn call(&self, method: &str, path: &str, ctype: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let text = body.map(Value::to_string).unwrap_or_default();
        let resp = match method {
            "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            "DELETE" => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .force_send_body()
                .content_type("application/json")
                .send(if text.is_empty() {
                    "{}".to_string()
                } else {
                    text
                }),
            "POST" => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type(ctype)
                .send(text),
            "PUT" => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .content_type(ctype)
                .send(text),
            _ => self
                .agent
                .patch(&url)
                .header("Authorization", &auth)
                .content_type(ctype)
                .send(text),
        };
        match resp {
            Ok(mut r) => {
                let code = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    code,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }
}

/// The object without what legitimately differs between two servers.
fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "managedFields",
            "selfLink",
            "deletionTimestamp",
            "continue",
        ] {
            m.remove(k);
        }
        if let Some(owners) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) {
            for o in owners {
                if let Some(o) = o.as_object_mut() {
                    o.remove("uid");
                }
            }
        }
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        let names: Vec<Value> = items
            .iter()
            .map(|i| i.pointer("/metadata/name").cloned().unwrap_or(Value::Null))
            .collect();
        *items = names;
    }
    v
}

/// What is compared of an answer: the code, a Status's reason, or the object.
fn essence(code: u16, body: &Value, compare_body: bool) -> Value {
    if body["kind"] == "Status" {
        return json!({"code": code, "reason": body["reason"], "status": body["status"]});
    }
    if compare_body {
        json!({"code": code, "object": normalize(body)})
    } else {
        json!({"code": code})
    }
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    ctype: &'static str,
    body: Option<Value>,
    /// Compare the returned object too (else only the code and Status reason).
    compare_body: bool,
    /// Wait before sending (for controllers to act on both servers).
    wait: Duration,
}

fn case(name: &'static str, method: &'static str, path: &str, body: Option<Value>) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        // A PATCH without another type is a JSON merge patch.
        ctype: if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        },
        body,
        compare_body: true,
        wait: Duration::ZERO,
    }
}

fn cases() -> Vec<Case> {
    let ns = "/api/v1/namespaces/diff";
    let cm = |name: &str, data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "diff", "labels": {"app": "x"}}, "data": data});
    let mut v = vec![
        case(
            "create namespace",
            "POST",
            "/api/v1/namespaces",
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diff"}})),
        ),
        case(
            "create configmap",
            "POST",
            &format!("{ns}/configmaps"),
            Some(cm("a", json!({"k": "v"}))),
        ),
        case(
            "create it again",
            "POST",
            &format!("{ns}/configmaps"),
            Some(cm("a", json!({"k": "v"}))),
        ),
        case("get it", "GET", &format!("{ns}/configmaps/a"), None),
        case(
            "get a missing one",
            "GET",
            &format!("{ns}/configmaps/missing"),
            None,
        ),
        case(
            "merge patch",
            "PATCH",
            &format!("{ns}/configmaps/a"),
            Some(json!({"data": {"m": "1"}})),
        ),
        case(
            "create b",
            "POST",
            &format!("{ns}/configmaps"),
            Some(cm("b", json!({"k": "w"}))),
        ),
        case(
            "list by label",
            "GET",
            &format!("{ns}/configmaps?labelSelector=app%3Dx"),
            None,
        ),
        case(
            "list by field",
            "GET",
            &format!("{ns}/configmaps?fieldSelector=metadata.name%3Db"),
            None,
        ),
        case(
            "create in a missing namespace",
            "POST",
            "/api/v1/namespaces/nowhere/configmaps",
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})),
        ),
        case(
            "invalid name",
            "POST",
            &format!("{ns}/configmaps"),
            Some(cm("Bad_Name", json!({}))),
        ),
        case(
            "pod without containers",
            "POST",
            &format!("{ns}/pods"),
            Some(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}),
            ),
        ),
        case(
            "dry-run create",
            "POST",
            &format!("{ns}/configmaps?dryRun=All"),
            Some(cm("dry", json!({"k": "v"}))),
        ),
        case(
            "the dry-run object does not exist",
            "GET",
            &format!("{ns}/configmaps/dry"),
            None,
        ),
        case(
            "update with a stale resourceVersion",
            "PUT",
            &format!("{ns}/configmaps/a"),
            Some(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "diff", "resourceVersion": "1"}, "data": {}}),
            ),
        ),
        case(
            "finalized configmap",
            "POST",
            &format!("{ns}/configmaps"),
            Some(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fin", "namespace": "diff", "finalizers": ["example.com/hold"]}}),
            ),
        ),
        case(
            "delete the finalized one",
            "DELETE",
            &format!("{ns}/configmaps/fin"),
            None,
        ),
        case(
            "it is still there",
            "GET",
            &format!("{ns}/configmaps/fin"),
            None,
        ),
        case(
            "drop its finalizer",
            "PATCH",
            &format!("{ns}/configmaps/fin"),
            Some(json!({"metadata": {"finalizers": null}})),
        ),
        case(
            "now it is gone",
            "GET",
            &format!("{ns}/configmaps/fin"),
            None,
        ),
        case(
            "owner",
            "POST",
            &format!("{ns}/configmaps"),
            Some(cm("owner", json!({}))),
        ),
        case("delete a", "DELETE", &format!("{ns}/configmaps/a"), None),
        case("a is gone", "GET", &format!("{ns}/configmaps/a"), None),
        case(
            "bad json patch",
            "PATCH",
            &format!("{ns}/configmaps/b"),
            Some(json!([{"op": "replace", "path": "/data/nothing/deeper", "value": 1}])),
        ),
        case(
            "deployment",
            "POST",
            "/apis/apps/v1/namespaces/diff/deployments",
            Some(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "diff"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})),
        ),
        case(
            "deployment with a selector that does not match",
            "POST",
            "/apis/apps/v1/namespaces/diff/deployments",
            Some(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": "diff"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})),
        ),
        case(
            "pdb",
            "POST",
            "/apis/policy/v1/namespaces/diff/poddisruptionbudgets",
            Some(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "diff"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})),
        ),
        case(
            "crd",
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}}}}}}]}})),
        ),
    ];
    let mut ssa = case(
        "server-side apply",
        "PATCH",
        &format!("{ns}/configmaps/ssa?fieldManager=diff"),
        Some(cm("ssa", json!({"s": "1"}))),
    );
    ssa.ctype = "application/apply-patch+yaml";
    v.push(ssa);
    let mut json_patch = case(
        "json patch",
        "PATCH",
        &format!("{ns}/configmaps/b"),
        Some(json!([{"op": "add", "path": "/data/j", "value": "2"}])),
    );
    json_patch.ctype = "application/json-patch+json";
    v.push(json_patch);
    let mut smp = case(
        "strategic merge patch",
        "PATCH",
        &format!("{ns}/configmaps/b"),
        Some(json!({"data": {"s": "3"}})),
    );
    smp.ctype = "application/strategic-merge-patch+json";
    v.push(smp);
    let mut widget = case(
        "a custom object",
        "POST",
        "/apis/example.com/v1/namespaces/diff/widgets",
        Some(
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}}),
        ),
    );
    widget.wait = Duration::from_secs(2);
    v.push(widget);
    v.push(case("a custom object against its schema", "POST", "/apis/example.com/v1/namespaces/diff/widgets", Some(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w0"}, "spec": {"size": 0}}))));
    let mut evict = case("evict the PDB's only pod", "POST", "", None);
    evict.wait = Duration::from_secs(3);
    evict.compare_body = false;
    v.push(evict);
    let mut ns_del = case(
        "delete the namespace",
        "DELETE",
        "/api/v1/namespaces/diff",
        None,
    );
    ns_del.compare_body = false;
    v.push(ns_del);
    let mut limit = case(
        "list with a limit",
        "GET",
        "/api/v1/namespaces/kube-system/pods?limit=1",
        None,
    );
    limit.compare_body = false;
    v.push(limit);
    v
}

/// The pod of Deployment `web` (to evict it), named differently on each server.
fn web_pod(s: &Server) -> Option<String> {
    let (_, list) = s.call(
        "GET",
        "/api/v1/namespaces/diff/pods?labelSelector=app%3Dweb",
        "",
        None,
    );
    list["items"]
        .as_array()?
        .iter()
        .find(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .and_then(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_real_api_servers_answer_alike() {
    if binaries_for_test().is_none() {
        return;
    }
    let embedded = Twin::start(TwinOptions {
        seed: 5,
        ..TwinOptions::default()
    })
    .await
    .expect("embedded twin");
    let real = Twin::start(TwinOptions {
        seed: 5,
        control_plane: ControlPlaneKind::Real,
        ..TwinOptions::default()
    })
    .await
    .expect("twin on the real control plane");
    let (e, r) = (Server::of(&embedded), Server::of(&real));
    let mut divergences: Vec<(String, Value, Value)> = Vec::new();
    let cases = cases();
    let total = cases.len();
    for c in cases {
        if !c.wait.is_zero() {
            tokio::time::sleep(c.wait).await;
        }
        let run = |s: &Server| -> (u16, Value) {
            if c.name == "evict the PDB's only pod" {
                // Both servers have had time to run the pod; evict whichever it is.
                let deadline = Instant::now() + Duration::from_secs(20);
                let pod = loop {
                    if let Some(p) = web_pod(s) {
                        break p;
                    }
                    if Instant::now() > deadline {
                        return (0, json!("the Deployment's pod never got Ready"));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "diff"}});
                return s.call(
                    "POST",
                    &format!("/api/v1/namespaces/diff/pods/{pod}/eviction"),
                    "application/json",
                    Some(&body),
                );
            }
            s.call(c.method, &c.path, c.ctype, c.body.as_ref())
        };
        let (ec, eb) = tokio::task::block_in_place(|| run(&e));
        let (rc, rb) = tokio::task::block_in_place(|| run(&r));
        let (ee, re) = (
            essence(ec, &eb, c.compare_body),
            essence(rc, &rb, c.compare_body),
        );
        let same = ee == re;
        println!(
            "{} {:<45} embedded {ec} / real {rc}",
            if same { "  " } else { "!=" },
            c.name
        );
        if !same {
            divergences.push((c.name.to_string(), ee, re));
        }
    }
    println!("\n{} of {total} cases diverge:", divergences.len());
    for (name, ee, re) in &divergences {
        println!("- {name}\n    embedded: {ee}\n    real:     {re}");
    }
    let found: Vec<&str> = divergences.iter().map(|(n, _, _)| n.as_str()).collect();
    let known: Vec<&str> = KNOWN.iter().map(|(n, _)| *n).collect();
    let new: Vec<&&str> = found.iter().filter(|n| !known.contains(n)).collect();
    let gone: Vec<&&str> = known.iter().filter(|n| !found.contains(n)).collect();
    embedded.shutdown().await;
    real.shutdown().await;
    assert!(
        new.is_empty(),
        "divergences not in KNOWN (fix the twin or list them with a reason): {new:?}"
    );
    assert!(
        gone.is_empty(),
        "listed divergences that no longer occur (remove them from KNOWN): {gone:?}"
    );
}
