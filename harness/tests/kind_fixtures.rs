//! What `stormdrill up --target kind` installs, checked against the upstream charts and
//! sources at the pinned versions (each check names the upstream file it stands for):
//! chart order against the CRDs each chart's values render, Helm values against the
//! chart defaults that would break a fresh cluster, the kind overlay as real kustomize
//! builds it, the kind config, and the nightly workflow. No cluster, no network.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use stormdrill::target::kind::plan;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn values(file: &str) -> Value {
    yaml(&fixtures().join("kind/values").join(file))
}

/// `kubectl kustomize DIR` (kustomize v5.5 in kubectl 1.32), every object.
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl on PATH (scripts/setup.sh checks it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, ns: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str().unwrap_or("") == ns
        })
        .unwrap_or_else(|| panic!("no {kind} {ns}/{name}"))
}

fn has(objects: &[Value], kind: &str, ns: &str, name: &str) -> bool {
    objects.iter().any(|o| {
        o["kind"] == kind
            && o["metadata"]["name"] == name
            && o["metadata"]["namespace"].as_str().unwrap_or("") == ns
    })
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)
}

/// Which chart of up.yaml brings the prometheus-operator CRDs, and which charts'
/// values make them render objects of those kinds: the first must come earlier.
#[test]
fn charts_install_after_the_crds_their_values_render() {
    let up = plan::UpConfig::load(&fixtures().join("kind/up.yaml")).unwrap();
    let order: Vec<&str> = up.charts.iter().map(|c| c.release.as_str()).collect();
    let at = |r: &str| order.iter().position(|x| *x == r).unwrap();
    // kube-prometheus-stack 65.1.1 ships the CRDs (charts/crds/crds/, Helm installs them
    // before its templates). cert-manager v1.15.3's templates/servicemonitor.yaml renders
    // a ServiceMonitor whenever prometheus.enabled and prometheus.servicemonitor.enabled,
    // with no .Capabilities check.
    let cm = values("cert-manager.yaml");
    if cm["prometheus"]["enabled"] != false && cm["prometheus"]["servicemonitor"]["enabled"] == true
    {
        assert!(
            at("kube-prometheus-stack") < at("cert-manager"),
            "{order:?}"
        );
    }
    // rook-ceph v1.15.5's templates/servicemonitor.yaml needs monitoring.enabled and
    // csi.serviceMonitor.enabled: neither may be on while Rook comes first.
    let rook = values("rook-ceph.yaml");
    if at("rook-ceph") < at("kube-prometheus-stack") {
        assert_ne!(rook["csi"]["serviceMonitor"]["enabled"], true);
    }
    // velero 7.2.1 templates/servicemonitor.yaml and podmonitor.yaml: metrics.serviceMonitor.
    let velero = values("velero.yaml");
    assert_ne!(velero["metrics"]["serviceMonitor"]["enabled"], true);
    // loki-stack 2.10.2: loki.serviceMonitor off by default; promtail likewise.
    let loki = values("loki-stack.yaml");
    assert_ne!(loki["loki"]["serviceMonitor"]["enabled"], true);
    assert_ne!(loki["promtail"]["serviceMonitor"]["enabled"], true);
}

/// Bitnami contour 19.5.13 ships Contour's CRDs as templates (templates/crds/): a
/// custom resource of theirs in the same release (extraDeploy) fails on a fresh cluster.
#[test]
fn contour_values_deploy_only_built_in_kinds_and_the_guides_ratelimit_image() {
    let v = values("contour.yaml");
    let extra = v["extraDeploy"].as_array().unwrap();
    for o in extra {
        let api = o["apiVersion"].as_str().unwrap();
        assert!(api == "v1" || api == "apps/v1", "{}: {api}", o["kind"]);
    }
    // Contour v1.30.2 examples/ratelimit/02-ratelimit.yaml and
    // site/content/docs/1.30/guides/global-rate-limiting.md deploy this tag.
    let text = serde_json::to_string(extra).unwrap();
    assert!(
        text.contains("docker.io/envoyproxy/ratelimit:19f2079f"),
        "{text}"
    );
    // The ExtensionService the rate limit configuration names is in the overlay.
    let ext = v["configInline"]["rateLimitService"]["extensionService"]
        .as_str()
        .unwrap();
    let (ns, name) = ext.split_once('/').unwrap();
    let overlay = kustomize(&fixtures().join("kind/stack"));
    let svc = find(&overlay, "ExtensionService", ns, name);
    assert_eq!(svc["spec"]["services"][0]["name"], name);
    // The chart's own images are replaced (versioned Bitnami tags left docker.io).
    assert_eq!(v["global"]["security"]["allowInsecureImages"], true);
    assert_eq!(v["contour"]["image"]["registry"], "ghcr.io");
    assert_eq!(v["envoy"]["image"]["repository"], "envoyproxy/envoy");
}

/// No values file may leave an image on Bitnami's docker.io repositories, whose
/// versioned tags were removed in 2025; velero 7.2.1's upgradeCRDs hook defaults to
/// docker.io/bitnami/kubectl:<cluster minor> (values.yaml `kubectl.image`).
#[test]
fn no_chart_pulls_a_removed_bitnami_image() {
    let velero = values("velero.yaml");
    let kubectl_overridden = velero["kubectl"]["image"]["repository"]
        .as_str()
        .is_some_and(|r| !r.contains("bitnami"));
    assert!(
        velero["upgradeCRDs"] == false || kubectl_overridden,
        "velero's upgradeCRDs hook pulls docker.io/bitnami/kubectl"
    );
    assert_ne!(velero["cleanUpCRDs"], true);
    for e in std::fs::read_dir(fixtures().join("kind/values")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(!line.contains("bitnami/"), "{}: {line}", p.display());
        }
    }
}

/// Charts installed before the stack cannot use the stack's StorageClasses (they exist
/// only after the stack is applied, after every chart): loki-stack 2.10.2's loki
/// subchart (2.16.0, values.yaml `persistence.storageClassName`) would wait forever.
#[test]
fn charts_use_only_storage_classes_that_exist_when_they_install() {
    let stack = kustomize(&fixtures().join("kind/stack"));
    let loki = values("loki-stack.yaml");
    let class = loki["loki"]["persistence"]["storageClassName"]
        .as_str()
        .unwrap();
    assert!(!has(&stack, "StorageClass", "", class), "{class}");
    // kind v0.25.0 pkg/build/nodeimage/const_storage.go: `standard`, rancher.io/local-path.
    assert_eq!(class, "standard");
    assert_eq!(
        values("grafana.yaml")["persistence"]["enabled"],
        false,
        "grafana would need a class too"
    );
}

/// kube-state-metrics 5.25.1 templates/service.yaml names its port `http` (fixed);
/// prometheus-node-exporter 4.39.0 takes `service.portName`. The stack's
/// ServiceMonitors must ask for those names, and on kind the chart copies replace the
/// stack's own (so both must agree).
#[test]
fn service_monitors_name_the_ports_the_charts_create() {
    let stack = kustomize(&fixtures().join("stack"));
    let ksm = find(&stack, "ServiceMonitor", "monitoring", "kube-state-metrics");
    assert_eq!(ksm["spec"]["endpoints"][0]["port"], "http");
    let svc = find(&stack, "Service", "monitoring", "kube-state-metrics");
    assert_eq!(svc["spec"]["ports"][0]["name"], "http");
    let ne = find(&stack, "ServiceMonitor", "monitoring", "node-exporter");
    let kps = values("kube-prometheus-stack.yaml");
    assert_eq!(
        ne["spec"]["endpoints"][0]["port"],
        kps["prometheus-node-exporter"]["service"]["portName"]
    );
    assert_eq!(
        kps["kube-state-metrics"]["fullnameOverride"],
        "kube-state-metrics"
    );
    // On kind the overlay drops the stack's copies, the charts' take their place.
    let kind = kustomize(&fixtures().join("kind/stack"));
    assert!(!has(&kind, "Service", "monitoring", "kube-state-metrics"));
    assert!(has(
        &kind,
        "ServiceMonitor",
        "monitoring",
        "kube-state-metrics"
    ));
}

/// kube-prometheus-stack 65.1.1 creates Prometheus's ServiceAccount and ClusterRole only
/// with prometheus.enabled (templates/prometheus/serviceaccount.yaml, clusterrole.yaml),
/// which is off: on kind the overlay gives the stack's Prometheus its own (applied by
/// `up` as kind's admin). The base stack holds no cluster-scoped RBAC: the harness's
/// least-privilege role applies it and may not write any (fixtures/rbac/stormdrill.yaml).
#[test]
fn the_stacks_prometheus_may_discover_its_targets() {
    assert_eq!(
        values("kube-prometheus-stack.yaml")["prometheus"]["enabled"],
        false
    );
    let base = kustomize(&fixtures().join("stack"));
    for o in &base {
        assert!(
            o["apiVersion"]
                .as_str()
                .is_none_or(|v| !v.starts_with("rbac.authorization.k8s.io/")),
            "RBAC in the base stack: {} {}",
            o["kind"],
            o["metadata"]["name"]
        );
    }
    let stack = kustomize(&fixtures().join("kind/stack"));
    let prom = find(&stack, "Prometheus", "monitoring", "k8s");
    let sa = prom["spec"]["serviceAccountName"].as_str().unwrap();
    assert!(has(&stack, "ServiceAccount", "monitoring", sa));
    let binding = stack
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRoleBinding"
                && o["subjects"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["kind"] == "ServiceAccount"
                            && s["name"] == sa
                            && s["namespace"] == "monitoring"
                    })
                })
        })
        .expect("a ClusterRoleBinding for Prometheus's ServiceAccount");
    let role = find(
        &stack,
        "ClusterRole",
        "",
        binding["roleRef"]["name"].as_str().unwrap(),
    );
    // Role endpoints discovery (what ServiceMonitors generate) lists these.
    for resource in ["services", "endpoints", "pods"] {
        assert!(
            role["rules"].as_array().unwrap().iter().any(|r| {
                r["apiGroups"][0] == ""
                    && r["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x == resource)
                    && r["verbs"].as_array().unwrap().iter().any(|v| v == "list")
                    && r["verbs"].as_array().unwrap().iter().any(|v| v == "watch")
            }),
            "{resource}"
        );
    }
}

/// Rook v1.15.5 pkg/operator/ceph/cluster/mgr/mgr.go (EnableServiceMonitor) writes
/// ServiceMonitor rook-ceph-mgr when the CephCluster has spec.monitoring.enabled: the
/// stack writes one of that name too, so exactly one of them may.
#[test]
fn the_mgr_service_monitor_has_one_writer() {
    for dir in ["stack", "kind/stack"] {
        let objects = kustomize(&fixtures().join(dir));
        let cluster = find(&objects, "CephCluster", "rook-ceph", "rook-ceph");
        let operator_writes = cluster["spec"]["monitoring"]["enabled"] == true;
        let stack_writes = has(&objects, "ServiceMonitor", "rook-ceph", "rook-ceph-mgr");
        assert!(operator_writes != stack_writes, "{dir}");
        // The mgr's metrics Service (Rook: port http-metrics, 9283) is still scraped.
        assert!(stack_writes);
    }
}

/// postgres:16 (docker-library's docker-entrypoint.sh, initdb) refuses a non-empty data
/// directory, and a fresh ext4 volume holds lost+found; elasticsearch 8 runs as uid
/// 1000, so its volume needs that group.
#[test]
fn database_volumes_are_usable_by_their_images() {
    let stack = kustomize(&fixtures().join("stack"));
    let pg = find(&stack, "StatefulSet", "openalex", "postgresql");
    let c = container(pg, "postgresql");
    let pgdata = env(c, "PGDATA").expect("PGDATA")["value"].as_str().unwrap();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "data")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap();
    assert!(
        pgdata.starts_with(&format!("{mount}/")) && pgdata.len() > mount.len() + 1,
        "PGDATA {pgdata} must be a folder under the volume {mount}"
    );
    let es = find(&stack, "StatefulSet", "openalex", "elasticsearch");
    assert_eq!(
        es["spec"]["template"]["spec"]["securityContext"]["fsGroup"],
        1000
    );
}

/// Elasticsearch with several replicas forms one cluster only with discovery settings
/// naming the others; `discovery.type: single-node` makes each pod its own cluster.
#[test]
fn elasticsearch_forms_one_cluster_on_every_target() {
    for dir in ["stack", "kind/stack"] {
        let objects = kustomize(&fixtures().join(dir));
        let es = find(&objects, "StatefulSet", "openalex", "elasticsearch");
        let replicas = es["spec"]["replicas"].as_i64().unwrap();
        let c = container(es, "elasticsearch");
        if replicas > 1 {
            assert!(env(c, "discovery.type").is_none(), "{dir}");
            let seeds = env(c, "discovery.seed_hosts").unwrap()["value"]
                .as_str()
                .unwrap();
            let svc = find(&objects, "Service", "openalex", seeds);
            assert_eq!(svc["spec"]["clusterIP"], "None", "{dir}");
            assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
            let masters = env(c, "cluster.initial_master_nodes").unwrap()["value"]
                .as_str()
                .unwrap();
            let expected: Vec<String> = (0..replicas)
                .map(|i| format!("elasticsearch-{i}"))
                .collect();
            assert_eq!(masters, expected.join(","), "{dir}");
            assert_eq!(
                env(c, "node.name").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
                "metadata.name"
            );
        }
    }
}

/// Every volume of the stack on kind comes from a Rook class the node can mount: not
/// RBD (a kind node's /dev never gets /dev/rbdN), and each CephFS class names a
/// filesystem and data pool of the overlay (Rook names data pools `<fs>-<name>`).
#[test]
fn kind_volumes_come_from_cephfs_on_the_stacks_class_names() {
    let stack = kustomize(&fixtures().join("stack"));
    let kind = kustomize(&fixtures().join("kind/stack"));
    for class in ["ceph-nvme", "ceph-hdd"] {
        // The stack's RBD classes carry Rook's CSI secrets (deploy/examples/csi/rbd/).
        let rbd = find(&stack, "StorageClass", "", class);
        assert_eq!(rbd["provisioner"], "rook-ceph.rbd.csi.ceph.com");
        assert_eq!(
            rbd["parameters"]["csi.storage.k8s.io/provisioner-secret-name"],
            "rook-csi-rbd-provisioner"
        );
        assert_eq!(
            rbd["parameters"]["csi.storage.k8s.io/node-stage-secret-name"],
            "rook-csi-rbd-node"
        );
        let sc = find(&kind, "StorageClass", "", class);
        assert_eq!(
            sc["provisioner"], "rook-ceph.cephfs.csi.ceph.com",
            "{class}"
        );
        let p = &sc["parameters"];
        assert!(p.get("imageFeatures").is_none() && p.get("csi.storage.k8s.io/fstype").is_none());
        assert_eq!(
            p["csi.storage.k8s.io/node-stage-secret-name"],
            "rook-csi-cephfs-node"
        );
        assert_eq!(
            p["csi.storage.k8s.io/provisioner-secret-name"],
            "rook-csi-cephfs-provisioner"
        );
        assert_eq!(p["clusterID"], "rook-ceph");
        let fs_name = p["fsName"].as_str().unwrap();
        let fs = find(&kind, "CephFilesystem", "rook-ceph", fs_name);
        let pools: Vec<String> = fs["spec"]["dataPools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{fs_name}-{}", d["name"].as_str().unwrap()))
            .collect();
        assert!(
            pools.iter().any(|x| p["pool"] == x.as_str()),
            "{class}: {pools:?}"
        );
        // The same device class as the stack's pool of that name.
        let class_dev = class.trim_start_matches("ceph-");
        let pool = fs["spec"]["dataPools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| p["pool"] == format!("{fs_name}-{}", d["name"].as_str().unwrap()).as_str())
            .unwrap();
        assert_eq!(pool["deviceClass"], class_dev);
    }
    // Rook's chart deploys the CephFS driver the classes need.
    assert_eq!(values("rook-ceph.yaml")["csi"]["enableCephfsDriver"], true);
    // Every PVC template of the stack uses one of these classes.
    for o in &kind {
        for t in o["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let c = t["spec"]["storageClassName"].as_str().unwrap();
            assert!(c == "ceph-nvme" || c == "ceph-hdd", "{c}");
        }
    }
}

/// On kind the CephCluster must be able to reach HEALTH_OK: the checks a laptop trips by
/// itself are muted (Ceph Reef: mon_data_avail_warn 30 %, mgr/crash/warn_recent_interval
/// two weeks), and the ACME issuer uses Let's Encrypt's staging server.
#[test]
fn kind_overlay_quiets_what_a_laptop_trips_and_spares_acme_limits() {
    let kind = kustomize(&fixtures().join("kind/stack"));
    let cluster = find(&kind, "CephCluster", "rook-ceph", "rook-ceph");
    let conf = &cluster["spec"]["cephConfig"];
    assert_eq!(conf["global"]["mon_data_avail_warn"], "10");
    assert_eq!(conf["mgr"]["mgr/crash/warn_recent_interval"], "0");
    let acme = find(&kind, "ClusterIssuer", "", "letsencrypt-prod");
    assert_eq!(
        acme["spec"]["acme"]["server"],
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    );
    let prod = find(
        &kustomize(&fixtures().join("stack")),
        "ClusterIssuer",
        "",
        "letsencrypt-prod",
    )
    .clone();
    assert_eq!(
        prod["spec"]["acme"]["server"],
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    // The API's certificate never waits on ACME on kind.
    let cert = find(&kind, "Certificate", "openalex", "openalex-api-tls");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "kind-ca");
}

/// kind v0.25.0 pkg/apis/config/v1alpha4/types.go: an unset hostPort makes kind pick a
/// free one; the harness reads it with `docker port`. Each worker's OSD folder has its
/// own in-node path (loop devices are global to the host kernel).
#[test]
fn kind_config_picks_free_host_ports_and_separates_osd_paths() {
    let config = yaml(&fixtures().join("kind/cluster.yaml"));
    for n in config["nodes"].as_array().unwrap() {
        for m in n["extraPortMappings"].as_array().into_iter().flatten() {
            assert!(m.get("hostPort").is_none_or(|p| p == 0), "{m}");
        }
    }
    let (rendered, workers) =
        plan::render_cluster(&fixtures().join("kind/cluster.yaml"), "a", Path::new("/s")).unwrap();
    let (_, others) =
        plan::render_cluster(&fixtures().join("kind/cluster.yaml"), "b", Path::new("/s")).unwrap();
    let mut paths: Vec<&str> = workers
        .iter()
        .chain(&others)
        .map(|w| w.osd_dir.as_str())
        .collect();
    let n = paths.len();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n, "{paths:?}");
    let mounts: Vec<&str> = rendered["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["extraMounts"][0]["containerPath"].as_str())
        .collect();
    assert_eq!(
        mounts,
        [
            "/var/lib/stormdrill/osd/a/dirqual1",
            "/var/lib/stormdrill/osd/a/dirqual2",
            "/var/lib/stormdrill/osd/a/dirqual3"
        ]
    );
    for w in &workers {
        assert!(plan::attach_device(w, "osd-hdd.img").argv[5].contains(&w.osd_dir));
    }
}

/// The nightly job keeps its evidence when `up` fails: the reports folder exists before
/// anything writes to it, and `up`'s output is kept with the step still failing.
#[test]
fn nightly_workflow_keeps_the_evidence_of_a_failed_up() {
    let wf = yaml(&fixtures().join("../.github/workflows/nightly.yml"));
    let steps = wf["jobs"]["kind"]["steps"].as_array().unwrap();
    let pos = |needle: &str| {
        steps
            .iter()
            .position(|s| s["run"].as_str().is_some_and(|r| r.contains(needle)))
            .unwrap_or_else(|| panic!("no step runs {needle:?}"))
    };
    let mkdir = pos("mkdir -p reports");
    let up = pos("stormdrill up --target kind");
    assert!(mkdir < up);
    let up_step = &steps[up];
    let run = up_step["run"].as_str().unwrap();
    assert!(
        run.contains("set -o pipefail") && run.contains("| tee reports/up.log"),
        "{run}"
    );
    assert_eq!(up_step["shell"], "bash");
    // Docker Hub's anonymous limit is per address, and runners share theirs.
    let mirror = up_step["env"]["STORMDRILL_REGISTRY_MIRROR"]
        .as_str()
        .unwrap();
    assert!(plan::check_mirror(mirror).is_ok(), "{mirror}");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .unwrap();
    assert_eq!(upload["if"], "always()");
    assert_eq!(upload["with"]["path"], "reports/");
    let state = &steps[pos("get events -A")];
    assert!(state["run"].as_str().unwrap().contains("mkdir -p reports"));
}

/// postgres_exporter v0.15.0 (cmd/postgres_exporter/datasource.go, getDataSources)
/// connects only where DATA_SOURCE_NAME or DATA_SOURCE_URI says; with neither it has no
/// target, serves its own metrics, and pg_up never appears. The credentials are the
/// database's own, from its Secret.
#[test]
fn postgres_exporter_connects_to_its_database_with_the_databases_secret() {
    let stack = kustomize(&fixtures().join("stack"));
    let pg = find(&stack, "StatefulSet", "openalex", "postgresql");
    let db = container(pg, "postgresql");
    let secret_name = db["envFrom"][0]["secretRef"]["name"].as_str().unwrap();
    let secret = find(&stack, "Secret", "openalex", secret_name);
    let exporter = container(pg, "exporter");
    assert!(env(exporter, "DATA_SOURCE_NAME").is_none());
    let uri = env(exporter, "DATA_SOURCE_URI").expect("DATA_SOURCE_URI")["value"]
        .as_str()
        .unwrap();
    // Same pod: localhost, the container's port, the database the Secret creates.
    let port = db["ports"][0]["containerPort"].as_i64().unwrap();
    let dbname = secret["stringData"]["POSTGRES_DB"].as_str().unwrap();
    assert_eq!(uri, format!("localhost:{port}/{dbname}?sslmode=disable"));
    for (var, key) in [
        ("DATA_SOURCE_USER", "POSTGRES_USER"),
        ("DATA_SOURCE_PASS", "POSTGRES_PASSWORD"),
    ] {
        let r =
            &env(exporter, var).unwrap_or_else(|| panic!("no {var}"))["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret_name, "{var}");
        assert_eq!(r["key"], key, "{var}");
        assert!(
            secret["stringData"].get(key).is_some(),
            "{secret_name} has no {key}"
        );
    }
}

fn redis(objects: &[Value]) -> (&Value, &Value) {
    let sts = find(objects, "StatefulSet", "openalex", "redis");
    (sts, container(sts, "redis"))
}

/// The seed's phase 3 asks for a Redis *Cluster*: cluster mode on, a headless Service
/// giving each pod a stable name before it is ready (what the StatefulSet's serviceName
/// needs), the creation naming every pod, at least three masters (redis-cli
/// --cluster create refuses fewer), and Ready meaning the cluster works (Bitnami's
/// redis-cluster chart: headless Service, cluster creation once every node answers).
#[test]
fn redis_forms_one_cluster_of_every_pod() {
    for dir in ["stack", "kind/stack"] {
        let objects = kustomize(&fixtures().join(dir));
        let (sts, c) = redis(&objects);
        let service = sts["spec"]["serviceName"].as_str().unwrap();
        let svc = find(&objects, "Service", "openalex", service);
        assert_eq!(svc["spec"]["clusterIP"], "None", "{dir}");
        assert_eq!(svc["spec"]["publishNotReadyAddresses"], true, "{dir}");
        assert_eq!(
            svc["spec"]["selector"],
            sts["spec"]["selector"]["matchLabels"]
        );
        let replicas = sts["spec"]["replicas"].as_i64().unwrap();
        let nodes: Vec<String> = (0..replicas)
            .map(|i| format!("redis-{i}.{service}"))
            .collect();
        assert_eq!(
            env(c, "REDIS_NODES").unwrap()["value"],
            nodes.join(" "),
            "{dir}"
        );
        let per_master: i64 = env(c, "REDIS_CLUSTER_REPLICAS").unwrap()["value"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            replicas / (per_master + 1) >= 3,
            "{dir}: fewer than 3 masters"
        );
        let script = c["command"][2].as_str().unwrap();
        assert!(script.contains("--cluster-enabled yes"), "{dir}");
        assert!(script.contains("--cluster-config-file"), "{dir}");
        // Both ports a cluster node needs, in the pod and in the Service.
        for port in [6379, 16379] {
            assert!(c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["containerPort"] == port));
            assert!(svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"] == port));
        }
        let ready = c["readinessProbe"]["exec"]["command"][2].as_str().unwrap();
        assert!(ready.contains("cluster_state:ok"), "{dir}: {ready}");
    }
}

/// Runs the Redis container's script as the pod would, with stand-ins for redis-cli,
/// getent, sleep and the image's entrypoint (no Redis here): `nodes` are the nodes'
/// `cluster_known_nodes`, `None` for a node that does not answer. Returns what
/// `redis-cli --cluster create` was given (empty: not called) and the script's output.
fn run_redis_script(
    pod: &str,
    nodes: &[Option<u32>],
    conf: Option<&str>,
) -> (String, String, String) {
    let objects = kustomize(&fixtures().join("stack"));
    let (_, c) = redis(&objects);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let names: Vec<String> = env(c, "REDIS_NODES").unwrap()["value"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), nodes.len());
    for (i, (name, known)) in names.iter().zip(nodes).enumerate() {
        std::fs::write(d.join(format!("ip-{name}")), format!("10.0.0.{}", i + 1)).unwrap();
        if let Some(k) = known {
            std::fs::write(d.join(format!("known-{name}")), k.to_string()).unwrap();
        }
    }
    let stub = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\nS={}\n{body}\n", d.display())).unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    };
    stub(
        "redis-cli",
        r#"if [ "$1" = --cluster ]; then shift 2; echo "$*" > "$S/created"; exit 0; fi
h=$2; shift 2
[ -f "$S/known-$h" ] || { echo "Could not connect" >&2; exit 1; }
case "$*" in
  ping) echo PONG ;;
  "cluster info") printf 'cluster_state:fail\r\ncluster_known_nodes:%s\r\n' "$(cat "$S/known-$h")" ;;
esac"#,
    );
    stub("getent", r#"echo "$(cat "$S/ip-$2")   $2""#);
    // Three rounds of waiting, then the loop ends as if the pod had stopped.
    stub(
        "sleep",
        r#"n=$(cat "$S/sleeps" 2>/dev/null || echo 0); echo $((n+1)) > "$S/sleeps"; [ "$n" -lt 3 ]"#,
    );
    stub("docker-entrypoint.sh", r#"echo "$*" > "$S/exec""#);
    let conf_path = d.join("nodes.conf");
    if let Some(text) = conf {
        std::fs::write(&conf_path, text).unwrap();
    }
    let script = c["command"][2]
        .as_str()
        .unwrap()
        .replace("/data/nodes.conf", &conf_path.display().to_string());
    let mut cmd = Command::new(c["command"][0].as_str().unwrap());
    cmd.arg(c["command"][1].as_str().unwrap())
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("POD_NAME", pod)
        .env("POD_IP", "10.9.9.9");
    for e in c["env"].as_array().unwrap() {
        if let Some(v) = e["value"].as_str() {
            cmd.env(e["name"].as_str().unwrap(), v);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
    let exec = read("exec");
    assert!(exec.starts_with("redis-server "), "{exec}");
    (
        read("created").trim().to_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&conf_path).unwrap_or_default(),
    )
}

#[test]
fn redis_cluster_is_created_once_by_pod_zero_when_every_node_is_empty() {
    // Every node up and alone: pod 0 creates the cluster over all three addresses.
    let (created, _, _) = run_redis_script("redis-0", &[Some(1), Some(1), Some(1)], None);
    assert_eq!(
        created,
        "10.0.0.1:6379 10.0.0.2:6379 10.0.0.3:6379 --cluster-replicas 0 --cluster-yes"
    );
    // Other pods never create it.
    let (created, _, _) = run_redis_script("redis-1", &[Some(1), Some(1), Some(1)], None);
    assert_eq!(created, "");
    // A node already in a cluster (pod 0 restarted): nothing is created again.
    let (created, out, _) = run_redis_script("redis-0", &[Some(3), Some(3), Some(3)], None);
    assert_eq!(created, "");
    assert!(out.contains("nothing to create"), "{out}");
    // A node that does not answer yet: pod 0 waits, and creates nothing meanwhile.
    let (created, _, _) = run_redis_script("redis-0", &[Some(1), None, Some(1)], None);
    assert_eq!(created, "");
}

/// A restarted pod has a new IP: its own line of nodes.conf takes it before Redis
/// starts, the other nodes' lines are left as they are.
#[test]
fn redis_pod_records_its_new_address_before_starting() {
    let conf = "aaa 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460\n\
                bbb 10.0.0.2:6379@16379 master - 0 0 2 connected 5461-10922\n";
    let (_, _, after) = run_redis_script("redis-2", &[Some(3), Some(3), Some(3)], Some(conf));
    assert_eq!(
        after,
        "aaa 10.9.9.9:6379@16379 myself,master - 0 0 1 connected 0-5460\n\
         bbb 10.0.0.2:6379@16379 master - 0 0 2 connected 5461-10922\n"
    );
}

/// What can be known about Ceph on kind without Docker: Rook accepts the loop devices
/// (rook-ceph chart v1.15.5 values.yaml `allowLoopDevices`, default false: its OSD
/// prepare skips loop devices), the OSDs land on the labelled workers only, and every
/// pool of the overlay can be placed: each device class it names is one the workers'
/// OSD files provide, and a pool with failure domain `host` needs as many workers as
/// replicas.
#[test]
fn kind_ceph_pools_fit_the_workers_loop_device_osds() {
    assert_eq!(values("rook-ceph.yaml")["allowLoopDevices"], true);
    let (_, workers) =
        plan::render_cluster(&fixtures().join("kind/cluster.yaml"), "k", Path::new("/s")).unwrap();
    let labels: Vec<&str> = workers.iter().map(|w| w.label.as_str()).collect();
    let kind = kustomize(&fixtures().join("kind/stack"));
    let cluster = find(&kind, "CephCluster", "rook-ceph", "rook-ceph");
    let storage = &cluster["spec"]["storage"];
    assert_eq!(storage["useAllNodes"], false);
    assert_eq!(storage["useAllDevices"], false);
    // Filled by `up` with what it attached (plan::ceph_nodes_patch).
    assert_eq!(storage["nodes"], serde_json::json!([]));
    let term = &cluster["spec"]["placement"]["all"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        ["matchExpressions"][0];
    assert_eq!(term["key"], plan::NODE_LABEL);
    assert_eq!(term["values"], serde_json::json!(labels));
    let classes: Vec<&str> = plan::OSD_DEVICES.iter().map(|(_, c)| *c).collect();
    let mut pools = Vec::new();
    for o in &kind {
        let spec = &o["spec"];
        match o["kind"].as_str().unwrap() {
            "CephBlockPool" => pools.push((o["metadata"]["name"].to_string(), spec)),
            "CephObjectStore" | "CephFilesystem" => {
                let name = o["metadata"]["name"].to_string();
                pools.push((format!("{name} metadata"), &spec["metadataPool"]));
                for p in spec["dataPools"].as_array().into_iter().flatten() {
                    pools.push((format!("{name} {}", p["name"]), p));
                }
                if spec["dataPool"].is_object() {
                    pools.push((format!("{name} data"), &spec["dataPool"]));
                }
            }
            _ => {}
        }
    }
    for expected in ["nvme-pool", "hdd-pool", "rgw", "openalex-fs"] {
        assert!(
            pools.iter().any(|(n, _)| n.contains(expected)),
            "no pool of {expected}"
        );
    }
    for (name, p) in pools {
        let class = p["deviceClass"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no deviceClass"));
        assert!(classes.contains(&class), "{name}: {class}");
        assert_eq!(p["failureDomain"], "host", "{name}");
        let size = p["replicated"]["size"].as_u64().unwrap() as usize;
        // One OSD of each class per worker.
        assert!(size <= workers.len(), "{name}: size {size}");
    }
}
