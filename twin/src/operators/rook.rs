//! The Rook operator, simulated: it turns the CephCluster's storage spec into what
//! Rook creates — `rook-ceph-mon-<a..c>`, `rook-ceph-mgr-a` (with Service
//! `rook-ceph-mgr`, metrics on 9283) and one `rook-ceph-osd-<id>` Deployment per
//! device (labels `app=rook-ceph-osd`, `ceph-osd-id=<id>`, pinned to its node) —
//! plus the pools of CephBlockPools and the RGW of a CephObjectStore, and it keeps
//! the Ceph cluster (through [`crate::stack::ceph::backend::CephBackend`]: the
//! simulated model, or a real local cluster with `--ceph real`) in step with
//! those pods: an OSD process runs while its pod runs on a live node (a deleted or
//! scaled-down pod stops it at once; a node that loses power makes its OSDs
//! unreachable, noticed after the heartbeat grace). CephCluster
//! `status.ceph.health`/`details` follow Ceph; `status.phase` stays Ready, as Rook
//! reports it. The toolbox answers `ceph ...` through pod exec, the mgr serves its
//! Prometheus metrics, and the RBD CSI provisioner refuses volumes on a pool that
//! is missing or inactive.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::{operator_running, set_status};
use crate::api::now_rfc3339;
use crate::ctx::{obj, reconcile_loop, Ctx};
use crate::sim::ExecOutput;
use crate::stack::ceph::backend::{
    default_min_size, CephBackendKind, OsdSpec, OsdWant, PoolPhase, PoolSpec,
};
use crate::stack::ceph::DeviceClass;

const GROUP: &str = "ceph.rook.io";
pub const CEPH_IMAGE_PREFIX: &str = "quay.io/ceph/ceph";
pub const RBD_PROVISIONER: &str = "rook-ceph.rbd.csi.ceph.com";

fn model_now(ctx: &Ctx) -> Duration {
    ctx.started.elapsed()
}

/// Registers the toolbox, the mgr metrics endpoint and the RBD provisioner backend;
/// each goes to the Ceph backend (simulated model or real cluster).
pub fn install(ctx: &Ctx) {
    let c = ctx.clone();
    ctx.sim.register_exec(CEPH_IMAGE_PREFIX, move |req| {
        let argv = &req.command;
        // The simulated mons are the pods; a real cluster's mon runs outside Kubernetes.
        if c.ceph_backend.kind() == CephBackendKind::Simulated
            && argv.first().map(String::as_str) == Some("ceph")
            && !quorum(&c)
        {
            // The real CLI hangs on monclient hunting; the twin answers at once.
            return ExecOutput::fail(1, "monclient(hunting): authenticate timed out after 300\n[errno 110] RADOS timed out (error connecting to the cluster)\n");
        }
        c.ceph_backend
            .exec(argv, req.stdin.as_deref(), model_now(&c))
    });
    let c = ctx.clone();
    ctx.sim.register_http(CEPH_IMAGE_PREFIX, 9283, move |req| {
        c.ceph_backend.metrics(req, model_now(&c))
    });
    let c = ctx.clone();
    ctx.provisioners.register(
        RBD_PROVISIONER,
        Arc::new(move |class: &Value, _pvc: &Value| -> Result<(), String> {
            let pool = class
                .pointer("/parameters/pool")
                .and_then(Value::as_str)
                .unwrap_or("");
            c.ceph_backend.provision_check(pool, model_now(&c))
        }),
    );
}

/// At least two of the three mons Ready.
fn quorum(ctx: &Ctx) -> bool {
    let sel = crate::selector::LabelSelector::parse("app=rook-ceph-mon").expect("static selector");
    let pods = ctx.client.list("", "pods", Some("rook-ceph"), Some(&sel));
    let ready = pods
        .iter()
        .filter(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
        .count();
    let total = ctx
        .client
        .list("apps", "deployments", Some("rook-ceph"), Some(&sel))
        .len()
        .max(1);
    ready * 2 > total
}

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    install(&ctx);
    let mut last_health = String::new();
    reconcile_loop(
        ctx,
        &[
            (GROUP, "cephclusters"),
            (GROUP, "cephblockpools"),
            (GROUP, "cephobjectstores"),
            ("", "pods"),
            ("apps", "deployments"),
            ("", "nodes"),
        ],
        stop,
        move |ctx| {
            if !operator_running(ctx, "rook-ceph", "rook-ceph-operator") {
                return;
            }
            for cluster in ctx.client.list(GROUP, "cephclusters", None, None) {
                reconcile_cluster(ctx, &cluster, &mut last_health);
            }
        },
    )
    .await
}

fn owner(o: &Value, kind: &str) -> Value {
    json!([{"apiVersion": "ceph.rook.io/v1", "kind": kind, "name": obj::name(o), "uid": obj::uid(o), "controller": true, "blockOwnerDeletion": true}])
}

#[allow(clippy::too_many_arguments)] // one call site per daemon kind; a struct would only rename them
fn ensure_deployment(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    labels: Value,
    node: Option<&str>,
    port: Option<(&str, u16)>,
    owners: &Value,
    image: &str,
) {
    if ctx
        .client
        .get("apps", "deployments", Some(ns), name)
        .is_some()
    {
        return;
    }
    let mut pod_spec = json!({"containers": [{"name": labels["app"].as_str().unwrap_or("ceph").trim_start_matches("rook-ceph-"), "image": image}]});
    if let Some(n) = node {
        pod_spec["nodeSelector"] = json!({"kubernetes.io/hostname": n});
    }
    if let Some((pname, p)) = port {
        pod_spec["containers"][0]["ports"] = json!([{"name": pname, "containerPort": p}]);
    }
    let _ = ctx.client.create(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owners},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }));
}

#[allow(clippy::too_many_arguments)]
fn ensure_service(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    selector: Value,
    port_name: &str,
    port: u16,
    target: u16,
    owners: &Value,
) {
    if ctx.client.get("", "services", Some(ns), name).is_some() {
        return;
    }
    let _ = ctx.client.create(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": selector, "ownerReferences": owners},
        "spec": {"selector": selector, "ports": [{"name": port_name, "port": port, "targetPort": target}]},
    }));
}

fn device_class(dev: &Value) -> DeviceClass {
    dev.pointer("/config/deviceClass")
        .and_then(Value::as_str)
        .and_then(DeviceClass::parse)
        .unwrap_or(if dev["name"].as_str().unwrap_or("").starts_with("nvme") {
            DeviceClass::Nvme
        } else {
            DeviceClass::Hdd
        })
}

fn reconcile_cluster(ctx: &Ctx, cluster: &Value, last_health: &mut String) {
    let ns = obj::namespace(cluster).to_string();
    let image = cluster
        .pointer("/spec/cephVersion/image")
        .and_then(Value::as_str)
        .unwrap_or("quay.io/ceph/ceph:v18.2.4")
        .to_string();
    let owners = owner(cluster, "CephCluster");
    let now = model_now(ctx);
    // The devices of the spec, in order: OSD ids are assigned as Rook's prepare jobs do.
    let mut devices: Vec<(String, DeviceClass)> = Vec::new();
    for node in cluster
        .pointer("/spec/storage/nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let host = node["name"].as_str().unwrap_or("").to_string();
        for dev in node["devices"].as_array().cloned().unwrap_or_default() {
            devices.push((host.clone(), device_class(&dev)));
        }
    }
    let mons: Vec<String> = ["a", "b", "c"]
        .iter()
        .take(
            cluster
                .pointer("/spec/mon/count")
                .and_then(Value::as_u64)
                .unwrap_or(3) as usize,
        )
        .map(|s| s.to_string())
        .collect();
    let hosts: Vec<String> = {
        let mut h: Vec<String> = devices.iter().map(|(h, _)| h.clone()).collect();
        h.dedup();
        h
    };
    let specs: Vec<OsdSpec> = devices
        .iter()
        .enumerate()
        .map(|(id, (host, class))| OsdSpec {
            id: id as i32,
            host: host.clone(),
            class: *class,
        })
        .collect();
    ctx.ceph_backend.ensure_cluster(&specs, now);
    for (i, mon) in mons.iter().enumerate() {
        let node = hosts.get(i % hosts.len().max(1)).map(String::as_str);
        ensure_deployment(
            ctx,
            &ns,
            &format!("rook-ceph-mon-{mon}"),
            json!({"app": "rook-ceph-mon", "ceph_daemon_id": mon, "mon": mon, "rook_cluster": ns}),
            node,
            Some(("tcp-msgr2", 3300)),
            &owners,
            &image,
        );
    }
    ensure_deployment(
        ctx,
        &ns,
        "rook-ceph-mgr-a",
        json!({"app": "rook-ceph-mgr", "ceph_daemon_id": "a", "mgr": "a", "rook_cluster": ns}),
        None,
        Some(("http-metrics", 9283)),
        &owners,
        &image,
    );
    ensure_service(
        ctx,
        &ns,
        "rook-ceph-mgr",
        json!({"app": "rook-ceph-mgr", "rook_cluster": ns}),
        "http-metrics",
        9283,
        9283,
        &owners,
    );
    for (id, (host, class)) in devices.iter().enumerate() {
        ensure_deployment(
            ctx,
            &ns,
            &format!("rook-ceph-osd-{id}"),
            json!({"app": "rook-ceph-osd", "ceph-osd-id": id.to_string(), "osd": id.to_string(), "topology-location-host": host, "device-class": class.as_str(), "rook_cluster": ns}),
            Some(host),
            None,
            &owners,
            &image,
        );
    }

    pools(ctx, &ns, now);
    object_stores(ctx, &ns, &image, now);
    sync_osds(ctx, &ns, devices.len(), now);

    // Status, from Ceph's own view; written when the health picture changes.
    let Some(view) = ctx.ceph_backend.cluster_view(now) else {
        return;
    };
    let (health, details, fsid, version) = (view.health, view.checks, view.fsid, view.version);
    let mut capacity = view.capacity;
    capacity["lastUpdated"] = json!(now_rfc3339());
    // A real cluster's first status comes before its OSDs: rewrite once capacity shows.
    let no_capacity = capacity["bytesTotal"].as_u64() == Some(0);
    let picture = format!(
        "{health} {} {no_capacity}",
        serde_json::to_string(&details).unwrap_or_default()
    );
    if *last_health != picture || cluster.pointer("/status/ceph/health").is_none() {
        if last_health.split(' ').next() != Some(health.as_str()) {
            ctx.truth
                .record("ceph", &format!("{ns}/{}", obj::name(cluster)), &health);
        }
        *last_health = picture;
        let mut ceph = json!({"health": health, "lastChecked": now_rfc3339(), "capacity": capacity, "fsid": fsid});
        if !details.is_empty() {
            ceph["details"] = json!(details);
        }
        let _ = ctx.client.patch_status(GROUP, "cephclusters", Some(&ns), obj::name(cluster), json!({
            "phase": "Ready", "state": "Created", "message": "Cluster created successfully",
            "ceph": ceph,
            "conditions": super::ready_condition(cluster, "Ready", true, "ClusterCreated", "Cluster created successfully"),
            "version": {"image": image, "version": version},
        }));
        // Remove `details` when Ceph is healthy again (a merge patch cannot drop it).
        if details.is_empty() && cluster.pointer("/status/ceph/details").is_some() {
            let _ = ctx.client.patch_status(
                GROUP,
                "cephclusters",
                Some(&ns),
                obj::name(cluster),
                json!({"ceph": {"details": null}}),
            );
        }
    }
}

fn pools(ctx: &Ctx, ns: &str, now: Duration) {
    for pool in ctx.client.list(GROUP, "cephblockpools", Some(ns), None) {
        let name = obj::name(&pool).to_string();
        let size = pool
            .pointer("/spec/replicated/size")
            .and_then(Value::as_u64)
            .unwrap_or(3) as u32;
        let spec = PoolSpec {
            name: name.clone(),
            size,
            min_size: default_min_size(size),
            pg_num: 32,
            class: pool
                .pointer("/spec/deviceClass")
                .and_then(Value::as_str)
                .and_then(DeviceClass::parse),
            application: "rbd".into(),
        };
        let status = match ctx.ceph_backend.ensure_block_pool(&spec, now) {
            PoolPhase::Ready => {
                json!({"phase": "Ready", "info": {"rbdMirrorBootstrapPeerSecretName": format!("pool-peer-token-{name}")}})
            }
            PoolPhase::Progressing => json!({"phase": "Progressing"}),
            PoolPhase::Failure(e) => json!({"phase": "Failure", "info": {"error": e}}),
        };
        set_status(ctx, GROUP, "cephblockpools", &pool, status);
    }
}

fn object_stores(ctx: &Ctx, ns: &str, image: &str, now: Duration) {
    for store in ctx.client.list(GROUP, "cephobjectstores", Some(ns), None) {
        let name = obj::name(&store).to_string();
        let owners = owner(&store, "CephObjectStore");
        let port = store
            .pointer("/spec/gateway/port")
            .and_then(Value::as_u64)
            .unwrap_or(80) as u16;
        let labels = json!({"app": "rook-ceph-rgw", "rgw": name, "rook_cluster": ns, "rook_object_store": name});
        ensure_deployment(
            ctx,
            ns,
            &format!("rook-ceph-rgw-{name}-a"),
            labels.clone(),
            None,
            Some(("http", 8080)),
            &owners,
            image,
        );
        ensure_service(
            ctx,
            ns,
            &format!("rook-ceph-rgw-{name}"),
            labels.clone(),
            "http",
            port,
            8080,
            &owners,
        );
        let size = store
            .pointer("/spec/dataPool/replicated/size")
            .and_then(Value::as_u64)
            .unwrap_or(3) as u32;
        ctx.ceph_backend.ensure_object_pool(
            &PoolSpec {
                name: format!("{name}.rgw.buckets.data"),
                size,
                min_size: default_min_size(size),
                pg_num: 8,
                class: store
                    .pointer("/spec/dataPool/deviceClass")
                    .and_then(Value::as_str)
                    .and_then(DeviceClass::parse),
                application: "rgw".into(),
            },
            now,
        );
        let sel = crate::selector::LabelSelector::parse(&format!("app=rook-ceph-rgw,rgw={name}"))
            .expect("valid selector");
        let ready = ctx
            .client
            .list("", "pods", Some(ns), Some(&sel))
            .iter()
            .any(|p| obj::is_pod_ready(p) && !obj::is_terminating(p));
        let status = if ready {
            json!({"phase": "Ready", "info": {"endpoint": format!("http://rook-ceph-rgw-{name}.{ns}.svc:{port}")}})
        } else {
            json!({"phase": "Progressing"})
        };
        set_status(ctx, GROUP, "cephobjectstores", &store, status);
    }
}

/// Whether each OSD's process runs: its pod is Running (containers started, not
/// terminating) on a node whose kubelet runs.
fn sync_osds(ctx: &Ctx, ns: &str, count: usize, now: Duration) {
    let sel = crate::selector::LabelSelector::parse("app=rook-ceph-osd").expect("static selector");
    let pods = ctx.client.list("", "pods", Some(ns), Some(&sel));
    // A process that died on its own is a crashed container: the kubelet restarts it.
    for id in ctx.ceph_backend.take_crashed_osds() {
        let id_s = id.to_string();
        if let Some(p) = pods.iter().find(|p| {
            p.pointer("/metadata/labels/ceph-osd-id")
                .and_then(Value::as_str)
                == Some(id_s.as_str())
                && !obj::is_terminating(p)
        }) {
            ctx.crashes.request(ns, obj::name(p));
        }
    }
    for id in 0..count as i32 {
        let id_s = id.to_string();
        let pod = pods.iter().find(|p| {
            p.pointer("/metadata/labels/ceph-osd-id")
                .and_then(Value::as_str)
                == Some(id_s.as_str())
                && !obj::is_terminating(p)
                && obj::str_at(p, "/status/phase") == Some("Running")
        });
        let node = pod
            .and_then(|p| obj::str_at(p, "/spec/nodeName"))
            .map(String::from);
        let node_alive = node.as_deref().is_some_and(|n| ctx.kubelet_running(n));
        let started = pod.is_some_and(|p| {
            p.pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().all(|c| c.pointer("/state/running").is_some()))
        });
        let running = started && node_alive;
        // A pod on a node that went dark: Ceph only notices through missed heartbeats.
        let on_dead_node = pod.is_some() && !node_alive;
        let want = if running {
            OsdWant::Running
        } else if on_dead_node {
            OsdWant::Unreachable
        } else {
            // Scaled to 0 is a clean stop (SIGTERM); a deleted or killed pod is SIGKILL.
            let scaled_down = ctx
                .client
                .get(
                    "apps",
                    "deployments",
                    Some(ns),
                    &format!("rook-ceph-osd-{id}"),
                )
                .and_then(|d| d.pointer("/spec/replicas").and_then(Value::as_i64))
                == Some(0);
            OsdWant::Stopped {
                graceful: scaled_down,
            }
        };
        let incarnation = pod.map_or(String::new(), obj::incarnation);
        if ctx.ceph_backend.set_osd(id, want, &incarnation, now) {
            ctx.truth.record(
                "ceph-osd",
                &format!("osd.{id}"),
                if running {
                    "ProcessStarted"
                } else {
                    "ProcessStopped"
                },
            );
        }
    }
}
