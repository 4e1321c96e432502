//! The kind target without Docker: every manifest under fixtures/ accepted by the twin
//! with `dryRun=All`, the kustomize overlays built as `kubectl kustomize` builds them,
//! the commands `stormdrill up --target kind` and `stormdrill down` run (recorded, not
//! run) while the stack really goes to an embedded twin standing in for the cluster, and
//! the message when the tools are missing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use kube::{
    api::{Api, DynamicObject, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::{ApiResource, GroupVersionKind},
    Client, Config,
};
use serde_json::{json, Value};
use stormdrill::{
    stack::{self, kustomize, ApplyOptions, Manifest},
    target::kind::{plan, runner::Recorder},
    up,
};
use stormdrill_twin::{Twin, TwinOptions};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

async fn twin() -> (Twin, Client) {
    let twin = Twin::start(TwinOptions {
        seed: 9,
        ..TwinOptions::default()
    })
    .await
    .unwrap();
    let kc = Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    let client = Client::try_from(cfg).unwrap();
    (twin, client)
}

/// CRDs the Helm charts install on kind and the twin does not ship (it has no upstream
/// copy of them): permissive schemas, so only the objects' envelopes (names, scope,
/// apiVersion) are checked for these kinds.
async fn register_chart_crds(client: &Client) {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    for (group, kind, plural, version) in [
        (
            "objectbucket.io",
            "ObjectBucketClaim",
            "objectbucketclaims",
            "v1alpha1",
        ),
        (
            "source.toolkit.fluxcd.io",
            "GitRepository",
            "gitrepositories",
            "v1",
        ),
        (
            "projectcontour.io",
            "ExtensionService",
            "extensionservices",
            "v1alpha1",
        ),
        ("ceph.rook.io", "CephFilesystem", "cephfilesystems", "v1"),
    ] {
        let crd: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [{"name": version, "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        }))
        .unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
}

/// Applies `manifests` with `dryRun=All`, after really applying what a dry run of
/// the rest depends on: namespaces, and ConstraintTemplates (Gatekeeper derives the
/// constraint kinds from them).
async fn dry_run(client: &Client, manifests: &[Manifest]) {
    let prerequisites: Vec<Manifest> = manifests
        .iter()
        .filter(|m| matches!(m.kind(), "Namespace" | "ConstraintTemplate"))
        .cloned()
        .collect();
    stack::apply(client, &prerequisites, Duration::from_secs(30), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{}", stormdrill::diag::one_line(&e)));
    let report = stack::apply_with(
        client,
        manifests,
        ApplyOptions {
            kind_wait: Duration::from_secs(30),
            dry_run: true,
        },
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{}", stormdrill::diag::one_line(&e)));
    assert_eq!(report.applied.len(), manifests.len());
}

fn load_file(path: &Path) -> Vec<Manifest> {
    stack::parse(path, &std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The Kubernetes objects among the Helm values' `extraDeploy` (Contour's rate limit
/// service): validated like the manifests.
fn extra_deploy(path: &Path) -> Vec<Manifest> {
    let v: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["extraDeploy"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, object)| Manifest {
            path: path.to_owned(),
            index,
            object: object.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_under_fixtures_is_accepted_with_dry_run() {
    // Every YAML file under fixtures/ is in exactly one of these groups, so a new file
    // cannot escape validation.
    let root = fixtures();
    let mut files = Vec::new();
    let mut stack_dirs = vec![root.join("stack"), root.join("kind/stack")];
    walk(&root, &mut files);
    let mut seen_as = BTreeMap::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let group = if rel.starts_with("upstream/") {
            "upstream reference data (the twin installs the CRDs at start)"
        } else if rel.starts_with("acceptance/") {
            "acceptance profile"
        } else if rel.starts_with("kind/values/") {
            "helm values"
        } else if rel == "kind/cluster.yaml" || rel == "kind/up.yaml" {
            "kind configuration"
        } else if rel.starts_with("stack/") || rel.starts_with("kind/stack/") {
            "stack or overlay"
        } else if rel.starts_with("kind/gitops/") || rel.starts_with("rbac/") {
            "manifest"
        } else {
            panic!("{rel}: not classified: say how this test validates it");
        };
        seen_as.insert(rel, group);
    }
    assert!(seen_as.contains_key("rbac/stormdrill.yaml"));

    // Configuration files parse into what reads them.
    let up = plan::UpConfig::load(&root.join("kind/up.yaml")).unwrap();
    plan::render_cluster(&root.join("kind/cluster.yaml"), "t", Path::new("/tmp/x")).unwrap();
    for (rel, group) in &seen_as {
        let path = root.join(rel);
        match *group {
            "helm values" => {
                let v: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{rel}: {e}"));
                assert!(v.is_object(), "{rel}");
                assert!(
                    up.charts
                        .iter()
                        .any(|c| Path::new("kind").join(&c.values) == Path::new(rel)),
                    "{rel}: no chart of up.yaml uses it"
                );
            }
            "acceptance profile" => {
                stormdrill::config::Profile::load(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
            }
            _ => {}
        }
    }

    let (twin, client) = twin().await;
    register_chart_crds(&client).await;
    // The stack, the kind overlay (with what `up` adds for a cluster).
    for dir in stack_dirs.drain(..) {
        let mut manifests = stack::load_dir(&dir).unwrap();
        if dir.ends_with("kind/stack") {
            let w = plan::Worker {
                node: "t-worker".into(),
                label: "dirqual1".into(),
                host_dir: "/x".into(),
                osd_dir: plan::Worker::osd_dir_for("t", "dirqual1"),
            };
            let patch =
                plan::ceph_nodes_patch(&[(w, vec!["/dev/loop1".into(), "/dev/loop2".into()])]);
            kustomize::apply_patch(&mut manifests, &patch).unwrap();
            manifests.push(Manifest {
                path: dir.join("generated"),
                index: 0,
                object: plan::git_repository("https://example.invalid/repo.git", "main"),
            });
        }
        dry_run(&client, &manifests).await;
    }
    // The plain manifests and the Kubernetes objects in Helm values.
    let mut rest = load_file(&root.join("rbac/stormdrill.yaml"));
    for sub in ["infrastructure", "apps"] {
        rest.extend(stack::load_dir(&root.join("kind/gitops").join(sub)).unwrap());
    }
    let extra = extra_deploy(&root.join("kind/values/contour.yaml"));
    // Built-in kinds only: the chart's own CRDs are templates of the same release, so
    // Helm would refuse an object of theirs (the ExtensionService is in the overlay).
    assert!(!extra.is_empty());
    for m in &extra {
        let api = m.object["apiVersion"].as_str().unwrap_or("");
        assert!(api == "v1" || api == "apps/v1", "{}: {api}", m.kind());
    }
    rest.extend(extra);
    dry_run(&client, &rest).await;

    // A malformed object is refused: the dry run checks something.
    let mut bad = load_file(&root.join("rbac/stormdrill.yaml"));
    bad.retain(|m| m.kind() == "ClusterRoleBinding");
    bad[0].object["roleRef"]["kind"] = json!("Deployment");
    let e = stack::apply_with(
        &client,
        &bad,
        ApplyOptions {
            kind_wait: Duration::from_secs(5),
            dry_run: true,
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(stormdrill::diag::one_line(&e).contains("roleRef"), "{e}");
    twin.shutdown().await;
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Objects by identity, as JSON.
fn by_id(ms: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    ms.into_iter()
        .map(|o| {
            let id = format!(
                "{} {} {}/{}",
                o["apiVersion"].as_str().unwrap_or(""),
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            (id, o)
        })
        .collect()
}

#[test]
fn overlays_build_as_kubectl_kustomize_builds_them() {
    for dir in [fixtures().join("stack"), fixtures().join("kind/stack")] {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .expect("kubectl on PATH (scripts/setup.sh checks it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = by_id(
            serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
                .map(|d| serde::Deserialize::deserialize(d).unwrap()),
        );
        let ours = by_id(stack::load_dir(&dir).unwrap().into_iter().map(|m| m.object));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{}",
            dir.display()
        );
        for (id, o) in &ours {
            assert_eq!(o, &theirs[id], "{}: {id}", dir.display());
        }
    }
    // The base kustomization lists every manifest of the folder, in name order.
    let dir = fixtures().join("stack");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != kustomize::FILE)
        .collect();
    files.sort();
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join(kustomize::FILE)).unwrap()).unwrap();
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, files);
}

async fn fastapi_image(api: &Api<k8s_openapi::api::apps::v1::Deployment>) -> Option<String> {
    let d = api.get("fastapi").await.unwrap();
    let v = serde_json::to_value(d).unwrap();
    v.pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn recorder(twin: &Twin, clusters: &str) -> Recorder {
    Recorder::default()
        .answer("kind get clusters", clusters, true)
        .answer("kind get kubeconfig", &twin.kubeconfig_yaml(), true)
        .answer("osd-nvme.img", "/dev/loop10\n", true)
        .answer("osd-hdd.img", "/dev/loop11\n", true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_run_the_planned_commands_and_converge() {
    let (twin, client) = twin().await;
    register_chart_crds(&client).await;
    let state = tempfile::tempdir().unwrap();
    let opts = up::UpOptions {
        name: "t".into(),
        kind_dir: fixtures().join("kind"),
        fixtures: fixtures(),
        state_dir: state.path().to_owned(),
        api_image: None,
        gitops_url: Some("https://example.invalid/stormdrill.git".into()),
        gitops_branch: "main".into(),
        osd_size_gb: 1,
        registry_mirror: Some("https://mirror.gcr.io".into()),
        max_wait: Some(Duration::from_secs(2)),
    };
    let said = std::sync::Mutex::new(Vec::new());
    let say = |l: &str| said.lock().unwrap().push(l.to_owned());
    let rec = Arc::new(recorder(&twin, "other\n"));
    let report = up::up(&opts, rec.clone(), &say).await.unwrap();
    assert!(report.created);
    let cluster_dir = state.path().join("t");
    let kc = cluster_dir.join("kubeconfig");
    let lines = rec.lines();
    let head: Vec<&str> = lines.iter().take(4).map(String::as_str).collect();
    assert_eq!(
        head,
        [
            "docker info --format {{.ServerVersion}}".to_owned(),
            "kind get clusters".to_owned(),
            format!(
                "kind create cluster --name t --config {} --wait 300s",
                cluster_dir.join("cluster.yaml").display()
            ),
            "kind get kubeconfig --name t".to_owned(),
        ]
    );
    // Docker Hub's mirror in every node, before anything pulls (charts, the API's build).
    let mirrors: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("/etc/containerd/certs.d/docker.io/hosts.toml"))
        .collect();
    assert_eq!(mirrors, [4, 5, 6, 7], "{lines:#?}");
    for (i, node) in mirrors
        .iter()
        .zip(["t-control-plane", "t-worker", "t-worker2", "t-worker3"])
    {
        assert!(
            lines[*i].starts_with(&format!("docker exec {node} sh -c")),
            "{}",
            lines[*i]
        );
        assert!(
            lines[*i].contains(r#"[host."https://mirror.gcr.io"]"#),
            "{}",
            lines[*i]
        );
    }
    let rendered: Value =
        serde_yaml::from_str(&std::fs::read_to_string(cluster_dir.join("cluster.yaml")).unwrap())
            .unwrap();
    assert!(rendered["containerdConfigPatches"][0]
        .as_str()
        .unwrap()
        .contains(r#"config_path = "/etc/containerd/certs.d""#));
    let attaches: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("docker exec") && l.contains("losetup"))
        .collect();
    assert_eq!(attaches.len(), 6);
    assert!(attaches[0].starts_with("docker exec t-worker sh -c set -eu"));
    assert!(attaches[5].starts_with("docker exec t-worker3 sh -c"));
    let fixtures_s = fixtures().display().to_string();
    assert!(lines.contains(&format!(
        "docker build --provenance=false --sbom=false --tag stormdrill/openalex-api:0.1.0 --file {fixtures_s}/api/Dockerfile {fixtures_s}"
    )));
    assert!(
        lines.contains(&"kind load docker-image stormdrill/openalex-api:0.1.0 --name t".to_owned())
    );
    let helm: Vec<&String> = lines.iter().filter(|l| l.starts_with("helm ")).collect();
    let releases: Vec<&str> = helm.iter().map(|l| l.split(' ').nth(3).unwrap()).collect();
    assert_eq!(
        releases,
        [
            "rook-ceph",
            "kube-prometheus-stack",
            "cert-manager",
            "loki",
            "grafana",
            "contour",
            "gatekeeper",
            "flux2",
            "velero"
        ]
    );
    assert!(
        helm[0].ends_with(&format!(
            "--kubeconfig {} --wait --timeout 600s",
            kc.display()
        )),
        "{}",
        helm[0]
    );
    // The OSD files exist, sparse, where the rendered config mounts them.
    let osd = cluster_dir.join("dirqual2/osd-hdd.img");
    assert_eq!(std::fs::metadata(&osd).unwrap().len(), 1 << 30);
    let rendered = std::fs::read_to_string(cluster_dir.join("cluster.yaml")).unwrap();
    assert!(rendered.contains(&cluster_dir.join("dirqual2").display().to_string()));

    // The stack went to the cluster through the generated overlay.
    let ceph = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "rook-ceph",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("ceph.rook.io", "v1", "CephCluster")),
    )
    .get("rook-ceph")
    .await
    .unwrap();
    let nodes = &ceph.data["spec"]["storage"]["nodes"];
    assert_eq!(nodes[1]["name"], "t-worker2");
    assert_eq!(
        nodes[1]["devices"][1],
        json!({"name": "loop11", "config": {"deviceClass": "hdd"}})
    );
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "openalex");
    let image = fastapi_image(&api).await;
    assert_eq!(image.as_deref(), Some("stormdrill/openalex-api:0.1.0"));
    let issuer = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "openalex",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        )),
    )
    .get("openalex-api-tls")
    .await
    .unwrap();
    assert_eq!(issuer.data["spec"]["issuerRef"]["name"], "kind-ca");
    assert!(report.stack.join("gitrepository.yaml").is_file());
    // The generated overlay names fixtures/kind/stack relatively, and real kustomize
    // builds it to what stormdrill applied.
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(report.stack.join(kustomize::FILE)).unwrap())
            .unwrap();
    for r in k["resources"].as_array().unwrap() {
        assert!(!Path::new(r.as_str().unwrap()).is_absolute(), "{r}");
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&report.stack)
        .output()
        .expect("kubectl on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = by_id(
        serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
            .map(|d| serde::Deserialize::deserialize(d).unwrap()),
    );
    let ours = by_id(
        stack::load_dir(&report.stack)
            .unwrap()
            .into_iter()
            .map(|m| m.object),
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (id, o) in &ours {
        assert_eq!(o, &theirs[id], "{id}");
    }
    assert!(said
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("ready: ") || l.starts_with("not ready at its")));

    // Again, on the existing cluster, with the user's image: no create, no build.
    let rec = Arc::new(recorder(&twin, "t\n"));
    let mut again = opts.clone();
    again.api_image = Some("ghcr.io/me/api:2.0".into());
    again.registry_mirror = None;
    let report = up::up(&again, rec.clone(), &|_| {}).await.unwrap();
    assert!(!report.created);
    let lines = rec.lines();
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("kind create") || l.starts_with("docker build")));
    assert!(
        !lines.iter().any(|l| l.contains("hosts.toml")),
        "no mirror asked for"
    );
    let image = fastapi_image(&api).await;
    assert_eq!(image.as_deref(), Some("ghcr.io/me/api:2.0"));
    // A kind run applies the same generated overlay.
    assert_eq!(
        up::stack_for_run(Some("t"), Path::new("fixtures/stack"), state.path()),
        report.stack
    );

    // Down: devices detached in every worker, then the cluster, then the state.
    let rec = Arc::new(recorder(&twin, "t\n"));
    let down = up::DownOptions {
        name: "t".into(),
        kind_dir: fixtures().join("kind"),
        state_dir: state.path().to_owned(),
    };
    let removed = up::down(&down, rec.clone(), &|_| {}).await.unwrap();
    let lines = rec.lines();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[1].starts_with(
        "docker exec t-worker sh -c for f in /var/lib/stormdrill/osd/t/dirqual1/osd-nvme.img"
    ));
    assert_eq!(lines[4], "kind delete cluster --name t");
    assert!(!cluster_dir.exists());
    assert_eq!(removed.len(), 2);
    // Nothing left: down says so and runs only the listing.
    let rec = Arc::new(recorder(&twin, "\n"));
    assert!(up::down(&down, rec.clone(), &|_| {})
        .await
        .unwrap()
        .is_empty());
    assert_eq!(rec.lines(), ["kind get clusters"]);
    twin.shutdown().await;
}

#[test]
fn missing_tools_are_named_before_anything_runs() {
    let state = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let features = fixtures().join("../features").display().to_string();
    // The pre-flight resolves the profile first; from this scratch folder there is no default.
    let profile = fixtures()
        .join("acceptance/kind.yaml")
        .display()
        .to_string();
    for (args, names) in [
        (
            vec!["up", "--target", "kind"],
            "kind, kubectl, helm, docker not found on PATH",
        ),
        (vec!["down"], "kind, docker not found on PATH"),
        (
            vec!["run", &features, "--target", "kind", "--profile", &profile],
            "kind, docker not found on PATH",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stormdrill"))
            .args(&args)
            .env("PATH", "")
            .env("STORMDRILL_KIND_STATE_DIR", state.path())
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(stderr.contains("https://kind.sigs.k8s.io"), "{stderr}");
    }
    // Nothing was created.
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}
