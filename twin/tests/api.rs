//! kube-rs against the twin, for each API feature the harness relies on.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    PropagationPolicy, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use kube::{Client, Config};
use serde_json::json;
use stormdrill_twin::{Twin, TwinOptions};

async fn twin_with(opts: TwinOptions) -> (Twin, Client) {
    let twin = Twin::start(opts).await.expect("twin starts");
    let kc =
        kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    let client = Client::try_from(config).expect("client");
    (twin, client)
}

async fn twin() -> (Twin, Client) {
    twin_with(TwinOptions::default()).await
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .unwrap()
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn version_and_discovery() {
    let (_twin, client) = twin().await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            found.push((ar.group.clone(), ar.plural.clone(), caps.scope.clone()));
        }
    }
    assert!(found.iter().any(|(g, p, _)| g.is_empty() && p == "pods"));
    assert!(found
        .iter()
        .any(|(g, p, _)| g == "apps" && p == "deployments"));
    assert!(found
        .iter()
        .any(|(g, p, _)| g == "apiextensions.k8s.io" && p == "customresourcedefinitions"));
}

#[tokio::test]
async fn rejects_requests_without_the_token() {
    let (twin, _client) = twin().await;
    let kc = twin.kubeconfig_yaml().replace(twin.token(), "wrong-token");
    let kc = kube::config::Kubeconfig::from_yaml(&kc).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let bad = Client::try_from(config).unwrap();
    let err = Api::<Namespace>::all(bad)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 401);
            assert_eq!(s.reason, "Unauthorized");
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn boots_with_ready_nodes_and_system_namespaces() {
    let (_twin, client) = twin().await;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        ["dirqual1", "dirqual2", "dirqual3", "twin-control-plane"]
    );
    let ns = Api::<Namespace>::all(client)
        .get("kube-system")
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
}

#[tokio::test]
async fn crud_with_kubernetes_errors() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();

    let dup = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup:?}"
    );

    let mut updated = created.clone();
    updated.data = Some([("k".to_string(), "w".to_string())].into());
    let after = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    let rv2: u64 = after
        .metadata
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion must increase");

    // Replaying the stale object is a conflict.
    let stale = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{stale:?}"
    );

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let gone = api.get("a").await.unwrap_err();
    assert!(
        matches!(gone, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{gone:?}"
    );
}

#[tokio::test]
async fn malformed_builtin_objects_are_invalid() {
    let (_twin, client) = twin().await;
    let pods: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods"),
    );
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": "oops"}
    }))
    .unwrap();
    let err = pods.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.reason == "Invalid"),
        "{err:?}"
    );
    assert!(
        pods.get_opt("p").await.unwrap().is_none(),
        "an invalid object must not be stored"
    );

    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let mut d = deployment("web");
    d.spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
    let err = deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
}

#[tokio::test]
async fn patches_of_every_type() {
    let (_twin, client) = twin().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    let pp = PatchParams::default();

    let merged = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.unwrap()["tier"], "front");

    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]))
            .unwrap();
    let patched = api.patch("web", &pp, &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(patched.spec.replicas, Some(3));
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );

    // Strategic merge: a new container merges by name, the first one stays.
    let sm = api
        .patch(
            "web",
            &pp,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}}})),
        )
        .await
        .unwrap();
    let containers = sm.spec.template.spec.unwrap().containers;
    assert_eq!(
        containers.len(),
        2,
        "strategic merge keeps the existing container"
    );

    // Server-side apply: creates when absent, then merges.
    let applied: Api<ConfigMap> = Api::namespaced(client, "default");
    let ssa = PatchParams::apply("stormdrill-test");
    let c = applied
        .patch("applied", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["a"], "1");
    let c = applied
        .patch("applied", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "2"}})))
        .await
        .unwrap();
    let data = c.data.unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("1", "2"));
    assert!(c
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .any(|m| m.manager.as_deref() == Some("stormdrill-test")));

    // A JSON patch whose test fails changes nothing.
    let jp: json_patch::Patch = serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 99}, {"op": "replace", "path": "/spec/replicas", "value": 1}])).unwrap();
    assert!(api.patch("web", &pp, &Patch::<()>::Json(jp)).await.is_err());
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(3));
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (i, tier) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        api.create(
            &PostParams::default(),
            &cm(&format!("cm{i}"), json!({"tier": tier, "n": i.to_string()})),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=a"))
                .await
                .unwrap()
        ),
        ["cm0", "cm2", "cm4"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier!=a"))
                .await
                .unwrap()
        ),
        ["cm1", "cm3"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (b,c)"))
                .await
                .unwrap()
        ),
        ["cm1", "cm3"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (a,b),n"))
                .await
                .unwrap()
        ),
        ["cm3"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=cm3"))
                .await
                .unwrap()
        ),
        ["cm3"]
    );

    let pods: Api<Pod> = Api::all(client);
    let on_cp = pods
        .list(
            &ListParams::default().fields("spec.nodeName=twin-control-plane,status.phase=Running"),
        )
        .await
        .unwrap();
    assert!(on_cp.items.len() >= 4);
    assert!(on_cp
        .items
        .iter()
        .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("twin-control-plane")));

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 2);
        let cont = page.metadata.continue_.clone();
        seen.extend(names(page));
        match cont {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, ["cm0", "cm1", "cm2", "cm3", "cm4"]);
    let bad = api
        .list(&ListParams::default().labels("tier in (a"))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, kube::Error::Api(ref s) if s.code == 400),
        "{bad:?}"
    );
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let (_twin, client) = twin().await;
    // Status semantics on a kind no controller writes: a CRD with both subresources.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "widgets.test.stormdrill.io"},
            "spec": {"group": "test.stormdrill.io", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                                   "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.stormdrill.io", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.stormdrill.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}, "status": {"size": 9}})).unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "a client's status is dropped on create"
    );
    let st = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["size"], 2);
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "a status write does not bump generation"
    );
    // Writes to the main resource cannot change status.
    let main = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"size": 0}, "spec": {"size": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(main.data["status"]["size"], 2);
    assert_eq!(main.metadata.generation, Some(2));
    let scale = widgets.get_scale("w").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    widgets
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(widgets.get("w").await.unwrap().data["spec"]["size"], 5);

    let api: Api<Deployment> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(0));
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("w1", json!({})))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("w2", json!({})))
        .await
        .unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();

    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(c)) => seen.push(format!("ADDED {}", c.metadata.name.unwrap())),
            Some(WatchEvent::Deleted(c)) => {
                seen.push(format!("DELETED {}", c.metadata.name.unwrap()))
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert_eq!(seen, ["ADDED w2", "DELETED w1"]);
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_expired() {
    let (_twin, client) = twin_with(TwinOptions {
        history: 3,
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("old", json!({})))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 Expired error event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_bookmarks_and_selector_transitions() {
    let (_twin, client) = twin_with(TwinOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let wp = WatchParams::default()
        .labels("role=target")
        .timeout(5)
        .disable_bookmarks();
    let wp = WatchParams {
        bookmarks: true,
        ..wp
    };
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("x", json!({"role": "other"})))
        .await
        .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"role": "target"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"role": "gone"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    let mut bookmark = false;
    while kinds.len() < 2 || !bookmark {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(_)) => kinds.push("ADDED"),
            Some(WatchEvent::Deleted(_)) => kinds.push("DELETED"),
            Some(WatchEvent::Modified(_)) => kinds.push("MODIFIED"),
            Some(WatchEvent::Bookmark(b)) => {
                assert!(!b.metadata.resource_version.is_empty());
                bookmark = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Entering the selection is ADDED, leaving it is DELETED.
    assert_eq!(kinds, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn runtime_watcher_and_await_condition() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cond =
        kube::runtime::wait::await_condition(api.clone(), "late", |o: Option<&ConfigMap>| {
            o.and_then(|c| c.data.as_ref())
                .is_some_and(|d| d.get("ready").map(String::as_str) == Some("yes"))
        });
    let waiter =
        tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(10), cond).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.create(&PostParams::default(), &cm("late", json!({})))
        .await
        .unwrap();
    api.patch(
        "late",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ready": "yes"}})),
    )
    .await
    .unwrap();
    let got = waiter
        .await
        .unwrap()
        .expect("condition met before the timeout")
        .unwrap();
    assert!(got.is_some());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut c = cm("held", json!({}));
    c.metadata.finalizers = Some(vec!["stormdrill.io/test".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let still = api.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner_ref = |o: &ConfigMap| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}]);
    for policy in [
        PropagationPolicy::Background,
        PropagationPolicy::Foreground,
        PropagationPolicy::Orphan,
    ] {
        let owner = api
            .create(&PostParams::default(), &cm("owner", json!({})))
            .await
            .unwrap();
        let mut child = cm("child", json!({}));
        child.metadata.owner_references = Some(serde_json::from_value(owner_ref(&owner)).unwrap());
        api.create(&PostParams::default(), &child).await.unwrap();
        let dp = DeleteParams {
            propagation_policy: Some(policy.clone()),
            ..Default::default()
        };
        api.delete("owner", &dp).await.unwrap();
        assert!(
            api.get_opt("owner").await.unwrap().is_none(),
            "{policy:?}: owner gone"
        );
        let child = api.get_opt("child").await.unwrap();
        match policy {
            PropagationPolicy::Orphan => {
                let c = child.expect("orphaned child stays");
                assert!(c.metadata.owner_references.unwrap_or_default().is_empty());
                api.delete("child", &DeleteParams::default()).await.unwrap();
            }
            _ => assert!(child.is_none(), "{policy:?}: dependent collected"),
        }
    }
}

#[tokio::test]
async fn namespace_deletion_cascades() {
    let (_twin, client) = twin().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["stormdrill.io/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.create(&PostParams::default(), &cm("free", json!({})))
        .await
        .unwrap();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = cms
        .create(&PostParams::default(), &cm("late", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("free").await.unwrap().is_none());
    assert!(
        nss.get_opt("doomed").await.unwrap().is_some(),
        "the finalizer holds the namespace"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let uid = ns.metadata.uid.unwrap();
    let gone = kube::runtime::wait::await_condition(
        nss.clone(),
        "doomed",
        kube::runtime::conditions::is_deleted(&uid),
    );
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("namespace removed")
        .unwrap();
}

#[tokio::test]
async fn dry_run_touches_nothing() {
    let (_twin, client) = twin().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = api.create(&pp, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
    api.create(&PostParams::default(), &cm("real", json!({})))
        .await
        .unwrap();
    api.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get_opt("real").await.unwrap().is_some());
}

async fn crd_clone(
    crds: &Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut c = crds.get("cephclusters.ceph.rook.io").await.unwrap();
    c.metadata.resource_version = None;
    c.metadata.uid = None;
    c.status = None;
    c
}

#[tokio::test]
async fn custom_resources_are_served_once_their_crd_exists() {
    let (_twin, client) = twin().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    // The twin starts with the stack operators' upstream CRDs, Established.
    let crd = crds.get("cephclusters.ceph.rook.io").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap_or_default();
    assert!(conds
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));
    for name in [
        "backups.velero.io",
        "httpproxies.projectcontour.io",
        "certificates.cert-manager.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "constrainttemplates.templates.gatekeeper.sh",
        "servicemonitors.monitoring.coreos.com",
    ] {
        assert!(
            crds.get_opt(name).await.unwrap().is_some(),
            "{name} missing"
        );
    }
    // Re-creating one is a conflict, as on a real cluster.
    let again = crds
        .create(&PostParams::default(), &crd_clone(&crds).await)
        .await
        .unwrap_err();
    assert!(
        matches!(again, kube::Error::Api(ref s) if s.code == 409),
        "{again:?}"
    );
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ceph.rook.io", "v1", "CephCluster"),
        "cephclusters",
    );
    // rook-ceph exists from boot: the Rook operator's namespace, as Helm creates it.
    let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), "rook-ceph", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ceph.rook.io/v1", "kind": "CephCluster", "metadata": {"name": "rook-ceph"},
        "spec": {"cephVersion": {"image": "quay.io/ceph/ceph:v18.2.4"}, "dataDirHostPath": "/var/lib/rook"}
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &obj).await.unwrap();
    let st = clusters
        .patch_status(
            "rook-ceph",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ceph": {"health": "HEALTH_OK"}}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["ceph"]["health"], "HEALTH_OK");
    // Deleting the CRD removes its objects and its endpoint.
    crds.delete("cephclusters.ceph.rook.io", &DeleteParams::default())
        .await
        .unwrap();
    let err = clusters.get("rook-ceph").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
