//! The workload controllers (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job)
//! through kube-rs, with the twin's scheduler and kubelets doing the rest.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, Config};
use serde_json::json;
use stormdrill_twin::{Twin, TwinOptions};

const WORKERS: [&str; 3] = ["dirqual1", "dirqual2", "dirqual3"];

async fn twin() -> (Twin, Client) {
    let twin = Twin::start(TwinOptions::default())
        .await
        .expect("twin starts");
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (twin, Client::try_from(config).unwrap())
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let step = tokio::time::timeout(Duration::from_secs(secs), f())
            .await
            .unwrap_or_else(|_| panic!("a poll for {what} hung"));
        if let Some(v) = step {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

async fn pods_of(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

/// Pods matching `selector` that are not being deleted.
async fn live_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods_of(pods, selector)
        .await
        .into_iter()
        .filter(|p| !terminating(p))
        .collect()
}

/// Exactly `n` live pods, all Ready.
async fn ready_pods(pods: &Api<Pod>, selector: &str, n: usize, secs: u64) -> Vec<Pod> {
    eventually(secs, &format!("{n} Ready pods of {selector}"), || async {
        let live = live_pods(pods, selector).await;
        (live.len() == n && live.iter().all(ready)).then_some(live)
    })
    .await
}

/// The objects' resourceVersions stay put for a while: the controllers do not
/// rewrite what has not changed.
async fn settled<K>(api: &Api<K>, names: &[&str])
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let rvs = |api: &Api<K>| {
        let api = api.clone();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        async move {
            let mut out = Vec::new();
            for n in &names {
                out.push(api.get(n).await.unwrap().meta().resource_version.clone());
            }
            out
        }
    };
    let before = rvs(api).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(before, rvs(api).await, "{names:?} keep being rewritten");
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    }))
    .unwrap()
}

/// What `kubectl rollout status deployment/NAME` checks (DeploymentStatusViewer).
fn rollout_done(d: &Deployment) -> bool {
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    if d.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0) {
        return false;
    }
    let progressing = st.conditions.as_ref().and_then(|cs| {
        cs.iter()
            .find(|c| c.type_.as_deref() == Some("Progressing"))
    });
    assert!(
        progressing.is_none_or(|c| c.reason.as_deref() != Some("ProgressDeadlineExceeded")),
        "deployment exceeded its progress deadline: {st:?}"
    );
    let want = d.spec.replicas.unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    updated >= want
        && st.replicas.unwrap_or(0) <= updated
        && st.available_replicas.unwrap_or(0) >= updated
}

fn condition<'a>(
    d: &'a Deployment,
    kind: &str,
) -> Option<&'a k8s_openapi::api::apps::v1::DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(kind))
}

#[tokio::test]
async fn deployment_spreads_replaces_and_scales() {
    let t0 = Instant::now();
    let (_twin, client) = twin().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1.27"))
        .await
        .unwrap();

    let live = ready_pods(&pods, "app=web", 3, 20).await;
    let nodes: BTreeSet<String> = live.iter().map(node_of).collect();
    assert_eq!(
        nodes,
        WORKERS.iter().map(|s| s.to_string()).collect(),
        "one replica per worker, none on the tainted control plane"
    );
    let rs_list = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs_list.len(), 1);
    let rs = &rs_list[0];
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", Some(true), Some(true))
    );
    assert_eq!(
        rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    for p in &live {
        let n = name(p);
        let suffix = n.strip_prefix(&format!("web-{hash}-")).unwrap_or("");
        assert_eq!(suffix.len(), 5, "pod name {n}");
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].kind,
            "ReplicaSet"
        );
    }
    let d = eventually(10, "deployment status", || async {
        let d = deployments.get("web").await.ok()?;
        let st = d.status.as_ref()?;
        (st.ready_replicas == Some(3) && st.available_replicas == Some(3)).then_some(d)
    })
    .await;
    assert_eq!(
        condition(&d, "Available").and_then(|c| c.status.as_deref()),
        Some("True")
    );
    assert!(rollout_done(&d));
    eprintln!("3 Ready replicas after {:?}", t0.elapsed());

    // A deleted pod is replaced under another name.
    let victim = name(&live[1]);
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let t1 = Instant::now();
    let after = eventually(20, "a Ready replacement", || async {
        let live = live_pods(&pods, "app=web").await;
        (live.len() == 3 && live.iter().all(ready) && live.iter().all(|p| name(p) != victim))
            .then_some(live)
    })
    .await;
    assert!(after.iter().all(|p| name(p) != victim));
    eprintln!("replacement Ready after {:?}", t1.elapsed());

    // Scale through the scale subresource.
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    ready_pods(&pods, "app=web", 5, 20).await;
    eventually(10, "status at 5", || async {
        let d = deployments.get("web").await.ok()?;
        (d.status.as_ref()?.available_replicas == Some(5) && rollout_done(&d)).then_some(())
    })
    .await;
    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually(20, "one pod left", || async {
        let all = pods_of(&pods, "app=web").await;
        (all.len() == 1 && ready(&all[0])).then_some(())
    })
    .await;
    eventually(10, "status at 1", || async {
        let d = deployments.get("web").await.ok()?;
        let st = d.status.as_ref()?;
        (st.replicas == Some(1) && st.available_replicas == Some(1)).then_some(())
    })
    .await;
    // Still one ReplicaSet: scaling is no rollout.
    let rs_list = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs_list.len(), 1);
    settled(&deployments, &["web"]).await;
    settled(&rss, &[rs_list[0].metadata.name.as_deref().unwrap()]).await;
    eprintln!("deployment test took {:?}", t0.elapsed());
}

#[tokio::test]
async fn rolling_update_honours_surge_and_completes_like_kubectl_expects() {
    let t0 = Instant::now();
    let (_twin, client) = twin().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("api", 3, "nginx:1.27"))
        .await
        .unwrap();
    ready_pods(&pods, "app=api", 3, 20).await;
    eventually(10, "first rollout done", || async {
        deployments.get("api").await.ok().filter(rollout_done)
    })
    .await;

    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.28"}]}}}})),
        )
        .await
        .unwrap();
    let t1 = Instant::now();
    // 25% of 3: maxSurge 1 (rounded up), maxUnavailable 0 (rounded down).
    let max_live = Cell::new(0);
    let min_ready = Cell::new(usize::MAX);
    let d = eventually(30, "rollout complete", || async {
        let live = live_pods(&pods, "app=api").await;
        max_live.set(max_live.get().max(live.len()));
        min_ready.set(
            min_ready
                .get()
                .min(live.iter().filter(|p| ready(p)).count()),
        );
        deployments.get("api").await.ok().filter(rollout_done)
    })
    .await;
    let (max_live, min_ready) = (max_live.get(), min_ready.get());
    eprintln!("rolling update complete after {:?}", t1.elapsed());
    assert!(
        max_live <= 4,
        "maxSurge 1 over 3 replicas, saw {max_live} pods"
    );
    assert!(
        min_ready >= 3,
        "maxUnavailable 0, saw only {min_ready} Ready pods"
    );
    let progressing = condition(&d, "Progressing").expect("Progressing condition");
    assert_eq!(progressing.status.as_deref(), Some("True"));
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert!(progressing
        .message
        .as_deref()
        .unwrap()
        .ends_with("has successfully progressed."));
    assert_eq!(
        condition(&d, "Available").and_then(|c| c.status.as_deref()),
        Some("True")
    );
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let st = d.status.as_ref().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.available_replicas,
            st.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), None)
    );

    let live = eventually(20, "only new pods left", || async {
        let all = pods_of(&pods, "app=api").await;
        (all.len() == 3 && all.iter().all(|p| image_of(p) == "nginx:1.28" && ready(p)))
            .then_some(all)
    })
    .await;
    let hashes: BTreeSet<String> = live
        .iter()
        .map(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone())
        .collect();
    assert_eq!(hashes.len(), 1);
    let mut rs_list = rss.list(&ListParams::default()).await.unwrap().items;
    rs_list.sort_by_key(|rs| {
        rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()
    });
    assert_eq!(rs_list.len(), 2, "the old ReplicaSet is kept for history");
    assert_eq!(rs_list[0].spec.replicas, Some(0));
    assert_eq!(rs_list[1].spec.replicas, Some(3));

    // Rolling back to the first template reuses its ReplicaSet as revision 3.
    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})),
        )
        .await
        .unwrap();
    let d = eventually(30, "roll back complete", || async {
        let d = deployments.get("api").await.ok()?;
        let back = d
            .metadata
            .annotations
            .as_ref()?
            .get("deployment.kubernetes.io/revision")?
            == "3";
        (back && rollout_done(&d)).then_some(d)
    })
    .await;
    assert_eq!(
        condition(&d, "Progressing").and_then(|c| c.reason.as_deref()),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        rss.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    eprintln!("rolling update test took {:?}", t0.elapsed());
}

#[tokio::test]
async fn recreate_stops_old_pods_before_starting_new_ones() {
    let (_twin, client) = twin().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("batch", 2, "busybox:1.36");
    d.spec.strategy = Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    ready_pods(&pods, "app=batch", 2, 20).await;
    deployments
        .patch(
            "batch",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}})),
        )
        .await
        .unwrap();
    let mixed = Cell::new(false);
    eventually(30, "recreated", || async {
        let all = pods_of(&pods, "app=batch").await;
        let images: BTreeSet<String> = all.iter().map(image_of).collect();
        if images.len() > 1 {
            mixed.set(true);
        }
        let d = deployments.get("batch").await.ok()?;
        (rollout_done(&d) && all.len() == 2 && images.len() == 1 && images.contains("busybox:1.37"))
            .then_some(())
    })
    .await;
    assert!(
        !mixed.get(),
        "Recreate never runs old and new pods together"
    );
}

fn statefulset(name: &str, replicas: i32, class: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                         "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .unwrap()
}

fn claim_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == "data")?
        .persistent_volume_claim
        .as_ref()
        .map(|c| c.claim_name.clone())
}

#[tokio::test]
async fn statefulset_orders_pods_and_keeps_their_claims() {
    let t0 = Instant::now();
    let (_twin, client) = twin().await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "twin-local"},
                "provisioner": "twin.stormdrill.io/local",
                "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    sets.create(&PostParams::default(), &statefulset("db", 3, "twin-local"))
        .await
        .unwrap();

    // OrderedReady: db-N exists only once db-0..db-(N-1) are Ready.
    let live = eventually(30, "db-0..2 Ready in order", || async {
        let all = pods_of(&pods, "app=db").await;
        for p in &all {
            let ord: usize = name(p).strip_prefix("db-").unwrap().parse().unwrap();
            for pred in 0..ord {
                let pn = format!("db-{pred}");
                let ok = all.iter().any(|q| name(q) == pn && ready(q));
                assert!(ok, "{} exists before {pn} is Ready", name(p));
            }
        }
        (all.len() == 3 && all.iter().all(ready)).then_some(all)
    })
    .await;
    eprintln!("statefulset of 3 Ready after {:?}", t0.elapsed());
    for i in 0..3 {
        let p = live.iter().find(|p| name(p) == format!("db-{i}")).unwrap();
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels["statefulset.kubernetes.io/pod-name"],
            format!("db-{i}")
        );
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
        assert!(labels.contains_key("controller-revision-hash"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("db-{i}").as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        assert_eq!(claim_of(p), Some(format!("data-db-{i}")));
        let pvc = pvcs.get(&format!("data-db-{i}")).await.unwrap();
        assert!(
            pvc.metadata.owner_references.is_none(),
            "claims outlive pods"
        );
        assert_eq!(pvc.metadata.labels.as_ref().unwrap()["app"], "db");
    }
    eventually(20, "claims Bound by the provisioner", || async {
        let all = pvcs.list(&ListParams::default()).await.ok()?.items;
        (all.len() == 3
            && all
                .iter()
                .all(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")))
        .then_some(())
    })
    .await;
    let st = eventually(10, "statefulset status", || async {
        let s = sets.get("db").await.ok()?;
        let st = s.status?;
        (st.ready_replicas == Some(3) && st.available_replicas == Some(3)).then_some(st)
    })
    .await;
    assert_eq!(st.replicas, 3);
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_revision, st.update_revision);
    assert!(st.update_revision.as_deref().unwrap().starts_with("db-"));

    // A deleted pod comes back with the same name and claim.
    let uid_before = pvcs.get("data-db-1").await.unwrap().metadata.uid;
    let old_uid = live
        .iter()
        .find(|p| name(p) == "db-1")
        .unwrap()
        .metadata
        .uid
        .clone();
    pods.delete("db-1", &DeleteParams::default()).await.unwrap();
    let back = eventually(20, "db-1 recreated and Ready", || async {
        let p = pods.get_opt("db-1").await.ok()??;
        (p.metadata.uid != old_uid && ready(&p)).then_some(p)
    })
    .await;
    assert_eq!(claim_of(&back), Some("data-db-1".into()));
    assert_eq!(
        pvcs.get("data-db-1").await.unwrap().metadata.uid,
        uid_before
    );

    // Scale down from the highest ordinal; claims stay.
    sets.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let db1_before_db2 = Cell::new(false);
    eventually(30, "scaled down to db-0", || async {
        let names: BTreeSet<String> = pods_of(&pods, "app=db").await.iter().map(name).collect();
        if names.contains("db-2") && !names.contains("db-1") {
            db1_before_db2.set(true);
        }
        (names.len() == 1 && names.contains("db-0")).then_some(())
    })
    .await;
    assert!(!db1_before_db2.get(), "db-2 goes before db-1");
    assert_eq!(
        pvcs.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    settled(&sets, &["db"]).await;
    eprintln!("statefulset test took {:?}", t0.elapsed());
}

#[tokio::test]
async fn statefulset_rolls_pods_from_the_highest_ordinal() {
    let (_twin, client) = twin().await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut s = statefulset("kv", 3, "none");
    s.spec.volume_claim_templates = None;
    sets.create(&PostParams::default(), &s).await.unwrap();
    ready_pods(&pods, "app=kv", 3, 30).await;
    // The order comes from a watch, in the order the API server wrote the pods: a poll
    // under load can see two pods updated at once and cannot tell which came first.
    let rv = pods
        .list(&ListParams::default().labels("app=kv"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = pods
        .watch(&WatchParams::default().labels("app=kv"), &rv)
        .await
        .unwrap()
        .boxed();
    let order: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = order.clone();
    let recorder = tokio::spawn(async move {
        while let Some(Ok(ev)) = events.next().await {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                let mut o = seen.lock().unwrap();
                if image_of(&p) == "postgres:18" && !o.contains(&name(&p)) {
                    o.push(name(&p));
                }
            }
        }
    });
    sets.patch(
        "kv",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:18"}]}}}})),
    )
    .await
    .unwrap();
    let st = eventually(40, "rolling update complete", || async {
        let s = sets.get("kv").await.ok()?;
        let st = s.status?;
        let done = st.observed_generation >= s.metadata.generation
            && st.ready_replicas == Some(3)
            && st.updated_replicas == Some(3)
            && st.current_revision == st.update_revision;
        done.then_some(st)
    })
    .await;
    recorder.abort();
    assert_eq!(*order.lock().unwrap(), ["kv-2", "kv-1", "kv-0"]);
    assert_eq!(st.current_replicas, Some(3));
}

#[tokio::test]
async fn a_lost_node_replaces_deployment_pods_but_not_statefulset_pods() {
    let (twin, client) = twin().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1.27"))
        .await
        .unwrap();
    let mut s = statefulset("db", 3, "none");
    s.spec.volume_claim_templates = None;
    sets.create(&PostParams::default(), &s).await.unwrap();
    ready_pods(&pods, "app=web", 3, 20).await;
    let db = ready_pods(&pods, "app=db", 3, 30).await;
    // The node of db-1 is lost.
    let lost = node_of(db.iter().find(|p| name(p) == "db-1").unwrap());
    assert!(twin.ctx().power.set(&lost, false));
    let t0 = Instant::now();
    eventually(20, "db-1 Terminating", || async {
        pods.get("db-1").await.ok().filter(terminating)
    })
    .await;
    eprintln!("db-1 evicted {:?} after power off", t0.elapsed());
    let web = ready_pods(&pods, "app=web", 3, 20).await;
    assert!(
        web.iter().all(|p| node_of(p) != lost),
        "the web replica moved away from {lost}"
    );
    eprintln!("web replacement Ready {:?} after power off", t0.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db1 = pods.get("db-1").await.unwrap();
    assert!(
        terminating(&db1),
        "db-1 is not replaced while its old pod is Terminating"
    );
    assert_eq!(node_of(&db1), lost);
    let st = sets.get("db").await.unwrap().status.unwrap();
    assert_eq!(st.ready_replicas, Some(2));
}

fn daemonset(name: &str, tolerate_control_plane: bool) -> DaemonSet {
    let tolerations = if tolerate_control_plane {
        json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"tolerations": tolerations,
                                  "containers": [{"name": "agent", "image": "agent:1"}]}}
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn daemonsets_run_one_pod_per_eligible_node() {
    let t0 = Instant::now();
    let (_twin, client) = twin().await;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    dss.create(&PostParams::default(), &daemonset("agent", false))
        .await
        .unwrap();
    dss.create(&PostParams::default(), &daemonset("everywhere", true))
        .await
        .unwrap();
    let agents = ready_pods(&pods, "app=agent", 3, 20).await;
    let nodes: BTreeSet<String> = agents.iter().map(node_of).collect();
    assert_eq!(nodes, WORKERS.iter().map(|s| s.to_string()).collect());
    let all = ready_pods(&pods, "app=everywhere", 4, 20).await;
    let nodes: BTreeSet<String> = all.iter().map(node_of).collect();
    assert!(
        nodes.contains("twin-control-plane") && nodes.len() == 4,
        "{nodes:?}"
    );
    eprintln!("daemon pods Ready after {:?}", t0.elapsed());
    let st = eventually(10, "daemonset status", || async {
        let st = dss.get("agent").await.ok()?.status?;
        (st.number_ready == 3 && st.number_available == Some(3)).then_some(st)
    })
    .await;
    assert_eq!(
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_misscheduled
        ),
        (3, 3, 0)
    );
    assert_eq!(st.updated_number_scheduled, Some(3));

    // A rolling update replaces them one node at a time (maxUnavailable 1).
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    let min_ready = Cell::new(usize::MAX);
    eventually(30, "agents updated", || async {
        let live = live_pods(&pods, "app=agent").await;
        min_ready.set(
            min_ready
                .get()
                .min(live.iter().filter(|p| ready(p)).count()),
        );
        (live.len() == 3 && live.iter().all(|p| ready(p) && image_of(p) == "agent:2")).then_some(())
    })
    .await;
    let min_ready = min_ready.get();
    assert!(
        min_ready >= 2,
        "at most one node without a Ready agent, saw {min_ready}"
    );
    eventually(10, "daemonset status updated", || async {
        let st = dss.get("agent").await.ok()?.status?;
        (st.updated_number_scheduled == Some(3) && st.number_available == Some(3)).then_some(())
    })
    .await;
    settled(&dss, &["agent", "everywhere"]).await;
}

#[tokio::test]
async fn job_with_two_completions_completes() {
    let t0 = Instant::now();
    let (_twin, client) = twin().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "completions": 2,
            "parallelism": 1,
            "template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "m", "image": "migrate:1"}]}}
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let max_active = Cell::new(0);
    let done = eventually(30, "job Complete", || async {
        let active = pods_of(&pods, "job-name=migrate")
            .await
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
            .count();
        max_active.set(max_active.get().max(active));
        let j = jobs.get("migrate").await.ok()?;
        let complete = j
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        complete.then_some(j)
    })
    .await;
    let max_active = max_active.get();
    eprintln!("job complete after {:?}", t0.elapsed());
    assert!(
        max_active <= 1,
        "parallelism 1, saw {max_active} active pods"
    );
    let st = done.status.unwrap();
    assert_eq!(st.succeeded, Some(2));
    assert_eq!(st.active, None);
    assert!(st.start_time.is_some() && st.completion_time.is_some());
    let all = pods_of(&pods, "job-name=migrate").await;
    assert_eq!(all.len(), 2);
    settled(&jobs, &["migrate"]).await;
    for p in &all {
        assert_eq!(
            p.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded")
        );
        assert!(
            p.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty()),
            "tracking finalizer removed from {}",
            name(p)
        );
    }
}
