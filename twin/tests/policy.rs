//! Endpoints, volumes, disruption budgets, eviction and admission (DefaultToleration
//! Seconds, DefaultStorageClass, Gatekeeper) through kube-rs. Pods are bare pods:
//! the scheduler binds them and the kubelet makes them Ready with a podIP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Endpoints, Event, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::{json, Value};
use stormdrill_twin::{Twin, TwinOptions};

async fn twin() -> (Twin, Client) {
    let twin = Twin::start(TwinOptions::default())
        .await
        .expect("twin starts");
    let kc =
        kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).expect("kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    // kube-rs retries 429 (a blocked eviction) for minutes by default.
    config.default_retry = false;
    (twin, Client::try_from(config).expect("client"))
}

/// Polls `f` until it yields a value; panics after 20 s.
async fn wait<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

fn pod(name: &str, labels: Value, image: &str) -> Pod {
    from(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": image,
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn ready_ip(pods: &Api<Pod>, name: &str) -> String {
    wait(&format!("pod {name} Ready"), || async {
        let p = pods.get(name).await.ok()?;
        let st = p.status?;
        let ready = st
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            st.pod_ip
        } else {
            None
        }
    })
    .await
}

#[tokio::test]
async fn endpoints_and_slices_follow_ready_pods() {
    let (_twin, client) = twin().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(
            &pp,
            &from(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "labels": {"tier": "front"}},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            })),
        )
        .await
        .unwrap();
    for n in ["web-a", "web-b"] {
        pods.create(&pp, &pod(n, json!({"app": "web"}), "nginx:1.27"))
            .await
            .unwrap();
    }
    // A pod whose readiness waits for a backend that does not exist: never Ready.
    let mut stuck = pod("web-stuck", json!({"app": "web"}), "nginx:1.27");
    stuck.metadata.annotations = Some(
        [(
            "twin.stormdrill.io/ready-requires".to_string(),
            "default/app=missing".to_string(),
        )]
        .into(),
    );
    pods.create(&pp, &stuck).await.unwrap();
    let mut ips = vec![
        ready_ip(&pods, "web-a").await,
        ready_ip(&pods, "web-b").await,
    ];
    ips.sort();
    let stuck_ip = wait("web-stuck's podIP", || async {
        pods.get("web-stuck").await.ok()?.status?.pod_ip
    })
    .await;

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let subset = wait("Endpoints with both ready pods", || async {
        let e = eps.get("web").await.ok()?;
        let s = e.subsets?.into_iter().next()?;
        let ready: Vec<String> = s.addresses.clone()?.into_iter().map(|a| a.ip).collect();
        let not_ready = s.not_ready_addresses.clone().unwrap_or_default();
        (ready == ips && not_ready.len() == 1).then_some(s)
    })
    .await;
    assert_eq!(subset.not_ready_addresses.unwrap()[0].ip, stuck_ip);
    let a = &subset.addresses.as_ref().unwrap()[0];
    let target = a.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert!(a.node_name.is_some());
    let ports = subset.ports.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, 8080, "the named targetPort is resolved");
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    let e = eps.get("web").await.unwrap();
    let labels = e.metadata.labels.unwrap();
    assert_eq!(labels["endpointslice.kubernetes.io/skip-mirror"], "true");
    assert_eq!(labels["tier"], "front");

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = wait("an EndpointSlice with three endpoints", || async {
        let l = slices.list(&lp).await.ok()?;
        let s = l.items.into_iter().next()?;
        (s.endpoints.as_ref()?.len() == 3).then_some(s)
    })
    .await;
    assert!(slice.metadata.name.unwrap().starts_with("web-"));
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.metadata.labels.unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let ready: Vec<bool> = slice
        .endpoints
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.conditions.as_ref().unwrap().ready.unwrap())
        .collect();
    assert_eq!(ready.iter().filter(|r| **r).count(), 2);
    assert_eq!(slice.ports.unwrap()[0].port, Some(8080));

    // A deleted (Terminating) pod leaves the Endpoints at once.
    pods.delete("web-a", &DeleteParams::default())
        .await
        .unwrap();
    wait("Endpoints without web-a", || async {
        let e = eps.get("web").await.ok()?;
        let s = e.subsets?.into_iter().next()?;
        (s.addresses?.len() == 1).then_some(())
    })
    .await;

    // The Endpoints go with the Service.
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait("the Endpoints deleted", || async {
        eps.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
}

fn storage_class(name: &str, provisioner: &str, extra: Value) -> StorageClass {
    let mut sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": provisioner,
    });
    if let (Some(m), Some(e)) = (sc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    from(sc)
}

fn pvc(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    from(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name}, "spec": spec,
    }))
}

async fn bound(pvcs: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    wait(&format!("PVC {name} Bound"), || async {
        let c = pvcs.get(name).await.ok()?;
        (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(c)
    })
    .await
}

#[tokio::test]
async fn pvcs_get_provisioned_volumes() {
    let (_twin, client) = twin().await;
    let pp = PostParams::default();
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .create(
            &pp,
            &storage_class(
                "fast",
                "csi.example.com",
                json!({"parameters": {"pool": "ssd"}}),
            ),
        )
        .await
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let created = pvcs.create(&pp, &pvc("data", Some("fast"))).await.unwrap();
    let uid = created.metadata.uid.unwrap();
    let claim = bound(&pvcs, "data").await;
    let pv_name = format!("pvc-{uid}");
    assert_eq!(
        claim.spec.as_ref().unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    let st = claim.status.unwrap();
    assert_eq!(st.capacity.unwrap()["storage"].0, "1Gi");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get(&pv_name).await.unwrap();
    let spec = pv.spec.unwrap();
    assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    assert_eq!(
        spec.access_modes.unwrap(),
        vec!["ReadWriteOnce".to_string()]
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    let csi = spec.csi.unwrap();
    assert_eq!(csi.driver, "csi.example.com");
    assert_eq!(csi.volume_attributes.unwrap()["pool"], "ssd");
    assert_eq!(spec.claim_ref.unwrap().name.as_deref(), Some("data"));
    assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));

    // Reclaim policy Delete: the PV goes with its claim.
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    wait("the PV deleted", || async {
        pvs.get_opt(&pv_name).await.ok()?.is_none().then_some(())
    })
    .await;

    // DefaultStorageClass admission fills in the default class.
    classes
        .create(
            &pp,
            &from(json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path", "reclaimPolicy": "Retain",
            })),
        )
        .await
        .unwrap();
    let c = pvcs.create(&pp, &pvc("plain", None)).await.unwrap();
    assert_eq!(
        c.spec.unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    let claim = bound(&pvcs, "plain").await;
    let pv_name = claim.spec.unwrap().volume_name.unwrap();
    pvcs.delete("plain", &DeleteParams::default())
        .await
        .unwrap();
    wait("the Retain PV Released", || async {
        let pv = pvs.get(&pv_name).await.ok()?;
        (pv.status?.phase.as_deref() == Some("Released")).then_some(())
    })
    .await;

    // WaitForFirstConsumer: Pending until a pod using the claim is scheduled.
    classes
        .create(
            &pp,
            &storage_class(
                "local",
                "csi.example.com",
                json!({"volumeBindingMode": "WaitForFirstConsumer"}),
            ),
        )
        .await
        .unwrap();
    pvcs.create(&pp, &pvc("late", Some("local"))).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait("the WaitForFirstConsumer event", || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("WaitForFirstConsumer"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = pvcs.get("late").await.unwrap();
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Pending"));
    let mut user = pod("user", json!({}), "nginx:1.27");
    user.spec.as_mut().unwrap().volumes = Some(vec![from(
        json!({"name": "d", "persistentVolumeClaim": {"claimName": "late"}}),
    )]);
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&pp, &user)
        .await
        .unwrap();
    let claim = bound(&pvcs, "late").await;
    assert!(claim
        .metadata
        .annotations
        .unwrap()
        .contains_key("volume.kubernetes.io/selected-node"));
}

#[tokio::test]
async fn a_refusing_backend_keeps_the_claim_pending() {
    let (twin, client) = twin().await;
    let provisioner = "block.csi.vendor.example";
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    twin.ctx().provisioners.register(
        provisioner,
        Arc::new(move |_: &Value, _: &Value| {
            if h.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err("rpc error: code = Internal desc = Ceph cluster is HEALTH_ERR".to_string())
            }
        }),
    );
    let pp = PostParams::default();
    Api::<StorageClass>::all(client.clone())
        .create(&pp, &storage_class("ceph-block", provisioner, json!({})))
        .await
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.create(&pp, &pvc("db", Some("ceph-block")))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev = wait("a ProvisioningFailed event", || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        l.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("ProvisioningFailed")
                && e.involved_object.name.as_deref() == Some("db")
        })
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.involved_object.kind.as_deref(),
        Some("PersistentVolumeClaim")
    );
    assert_eq!(
        ev.message.as_deref(),
        Some("failed to provision volume with StorageClass \"ceph-block\": rpc error: code = Internal desc = Ceph cluster is HEALTH_ERR")
    );
    let c = pvcs.get("db").await.unwrap();
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(c.spec.unwrap().volume_name.is_none());
    // Once the backend recovers, the retry provisions.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    bound(&pvcs, "db").await;
}

async fn pdb_status(
    pdbs: &Api<PodDisruptionBudget>,
    name: &str,
    allowed: i32,
) -> k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus {
    wait(
        &format!("PDB {name} with {allowed} disruptions allowed"),
        || async {
            let p = pdbs.get(name).await.ok()?;
            let st = p.status?;
            (st.disruptions_allowed == Some(allowed)
                && st.observed_generation == p.metadata.generation)
                .then_some(st)
        },
    )
    .await
}

#[tokio::test]
async fn disruption_budgets_gate_evictions() {
    let (_twin, client) = twin().await;
    let pp = PostParams::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for n in ["db-0", "db-1", "db-2"] {
        pods.create(&pp, &pod(n, json!({"app": "db"}), "postgres:16"))
            .await
            .unwrap();
    }
    for n in ["db-0", "db-1", "db-2"] {
        ready_ip(&pods, n).await;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    pdbs.create(
        &pp,
        &from(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db"},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "db"}}},
        })),
    )
    .await
    .unwrap();
    let st = pdb_status(&pdbs, "db", 0).await;
    assert_eq!(
        (st.current_healthy, st.desired_healthy, st.expected_pods),
        (Some(3), Some(3), Some(3))
    );
    let cond = &st.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "False", "InsufficientPods")
    );

    // Blocked: 429 with upstream's message and cause.
    let err = api_error(
        pods.evict("db-0", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 429);
    assert_eq!(err.reason, "TooManyRequests");
    assert_eq!(
        err.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &err.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget db needs 3 healthy pods and has 3 currently"
    );

    // maxUnavailable (of 3 expected pods): a percentage rounds up.
    pdbs.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": null, "maxUnavailable": "34%"}})),
    )
    .await
    .unwrap();
    let st = pdb_status(&pdbs, "db", 2).await;
    assert_eq!(
        st.desired_healthy,
        Some(1),
        "34% of 3 rounds up to 2 unavailable"
    );
    pdbs.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"maxUnavailable": null, "minAvailable": 2}})),
    )
    .await
    .unwrap();
    // minAvailable 2 of 3: one eviction is allowed, then the next is blocked.
    let st = pdb_status(&pdbs, "db", 1).await;
    assert_eq!(st.desired_healthy, Some(2));
    // A dry run changes nothing.
    let dry = EvictParams {
        post_options: PostParams {
            dry_run: true,
            ..Default::default()
        },
        ..Default::default()
    };
    pods.evict("db-0", &dry).await.unwrap();
    assert!(pods
        .get("db-0")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());
    let ok = pods.evict("db-0", &EvictParams::default()).await.unwrap();
    assert_eq!(ok.code, 201);
    let evicted = pods.get_opt("db-0").await.unwrap();
    if let Some(p) = evicted {
        assert!(p.metadata.deletion_timestamp.is_some());
        let conds = p.status.unwrap().conditions.unwrap();
        assert!(conds.iter().any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("EvictionByEvictionAPI")));
    }
    let err = api_error(
        pods.evict("db-1", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 429);
    assert_eq!(
        err.details.unwrap().causes[0].message,
        "The disruption budget db needs 2 healthy pods and has 2 currently"
    );

    // Two budgets for one pod: 500, as upstream.
    pdbs.create(
        &pp,
        &from(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db-too"},
            "spec": {"maxUnavailable": 3, "selector": {"matchLabels": {"app": "db"}}},
        })),
    )
    .await
    .unwrap();
    let err = api_error(
        pods.evict("db-2", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    assert_eq!(
        err.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}

fn yaml_file(rel: &str) -> Value {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    // The first document (the CRD fixture also carries the Provider CRD).
    let doc = serde_yaml::Deserializer::from_str(&text)
        .next()
        .expect("a document");
    serde::Deserialize::deserialize(doc).expect("fixture parses")
}

fn dynamic(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural),
    )
}

#[tokio::test]
async fn gatekeeper_denies_disallowed_tags() {
    let (_twin, client) = twin().await;
    let pp = PostParams::default();
    let crds = dynamic(
        &client,
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    let crd: DynamicObject = from(yaml_file(
        "fixtures/upstream/crds/gatekeeper/constrainttemplate-customresourcedefinition.yaml",
    ));
    match crds.create(&pp, &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("cannot create the ConstraintTemplate CRD: {e}"),
    }
    let templates = dynamic(
        &client,
        "templates.gatekeeper.sh",
        "v1",
        "ConstraintTemplate",
        "constrainttemplates",
    );
    let template: DynamicObject = from(yaml_file(
        "fixtures/upstream/crds/gatekeeper/library/disallowedtags/template.yaml",
    ));
    templates.create(&pp, &template).await.unwrap();
    // Gatekeeper makes the constraint CRD.
    wait("the constraint CRD", || async {
        crds.get_opt("k8sdisallowedtags.constraints.gatekeeper.sh")
            .await
            .ok()?
    })
    .await;
    wait("the template's status", || async {
        let t = templates.get("k8sdisallowedtags").await.ok()?;
        (t.data["status"]["created"] == true).then_some(())
    })
    .await;
    let constraints = dynamic(
        &client,
        "constraints.gatekeeper.sh",
        "v1beta1",
        "K8sDisallowedTags",
        "k8sdisallowedtags",
    );
    let constraint: DynamicObject = from(yaml_file(
        "fixtures/upstream/crds/gatekeeper/library/disallowedtags/constraint.yaml",
    ));
    constraints.create(&pp, &constraint).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let prefix = "admission webhook \"validation.gatekeeper.sh\" denied the request: [container-image-must-not-have-latest-tag] ";
    for (image, msg) in [
        ("nginx", "container <app> didn't specify an image tag <nginx>".to_string()),
        (
            "nginx:latest",
            "container <app> uses a disallowed tag <nginx:latest>; disallowed tags are [\"latest\"]"
                .to_string(),
        ),
    ] {
        for params in [&dry, &pp] {
            let err = api_error(
                pods.create(params, &pod("bad", json!({}), image))
                    .await
                    .unwrap_err(),
            );
            assert_eq!(err.code, 403, "{image}");
            assert_eq!(err.reason, "Forbidden");
            assert_eq!(err.message, format!("{prefix}{msg}"));
        }
    }
    pods.create(&dry, &pod("good", json!({}), "nginx:1.27"))
        .await
        .unwrap();
    pods.create(&pp, &pod("good", json!({}), "nginx:1.27"))
        .await
        .unwrap();
    // Exempt images, and namespaces the constraint does not match, are admitted.
    pods.create(
        &pp,
        &pod("opa", json!({}), "openpolicyagent/opa-exp:latest"),
    )
    .await
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "kube-public")
        .create(&pp, &pod("elsewhere", json!({}), "nginx:latest"))
        .await
        .unwrap();
    // An update that would introduce the tag is denied too.
    let err = api_error(
        pods.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [{"name": "app", "image": "nginx:latest"}]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    // dryrun enforcement admits.
    constraints
        .patch(
            "container-image-must-not-have-latest-tag",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enforcementAction": "dryrun"}})),
        )
        .await
        .unwrap();
    pods.create(&pp, &pod("now-ok", json!({}), "nginx:latest"))
        .await
        .unwrap();
}

#[tokio::test]
async fn pods_get_default_not_ready_and_unreachable_tolerations() {
    let (_twin, client) = twin().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let p = pods
        .create(&pp, &pod("plain", json!({}), "nginx:1.27"))
        .await
        .unwrap();
    let tol: Vec<Value> = p
        .spec
        .unwrap()
        .tolerations
        .unwrap()
        .into_iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    assert_eq!(
        tol,
        vec![
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}),
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}),
        ]
    );
    let mut own = pod("own", json!({}), "nginx:1.27");
    own.spec.as_mut().unwrap().tolerations = Some(vec![from(json!(
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
    ))]);
    let p = pods.create(&pp, &own).await.unwrap();
    let tol = p.spec.unwrap().tolerations.unwrap();
    assert_eq!(tol.len(), 2);
    assert_eq!(tol[0].toleration_seconds, Some(30));
    assert_eq!(
        tol[1].key.as_deref(),
        Some("node.kubernetes.io/unreachable")
    );
}

/// In a steady state the controllers write nothing (no status ping-pong).
#[tokio::test]
async fn controllers_settle() {
    let (twin, client) = twin().await;
    let pp = PostParams::default();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(
            &pp,
            &from(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"selector": {"app": "s"}, "ports": [{"port": 80}]},
            })),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&pp, &pod("s-0", json!({"app": "s"}), "nginx:1.27"))
        .await
        .unwrap();
    ready_ip(&pods, "s-0").await;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), "default")
        .create(
            &pp,
            &from(json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "s"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "s"}}},
            })),
        )
        .await
        .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&pp, &storage_class("sc", "csi.example.com", json!({})))
        .await
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.create(&pp, &pvc("c", Some("sc"))).await.unwrap();
    bound(&pvcs, "c").await;
    pdb_status(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), "default"),
        "s",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut changes = twin.api().subscribe();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mine = [
        "endpoints",
        "endpointslices",
        "persistentvolumeclaims",
        "persistentvolumes",
        "poddisruptionbudgets",
        "events",
    ];
    let mut writes = Vec::new();
    while let Ok(c) = changes.try_recv() {
        if mine.contains(&c.key.res.plural.as_str()) {
            writes.push(format!(
                "{} {}/{}",
                c.key.res.plural, c.key.namespace, c.key.name
            ));
        }
    }
    assert!(writes.is_empty(), "writes in a steady state: {writes:?}");
}
