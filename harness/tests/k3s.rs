//! A real Kubernetes (k3s in Docker, testcontainers): the harness's least-privilege role
//! (fixtures/rbac/stormdrill.yaml) and a minimal part of the stack (the API Deployment
//! with its PDB, on nginx), then the pod-kill scenario run as `stormdrill run --target
//! cluster` runs it, with the ServiceAccount's token. Needs Docker and network to pull
//! rancher/k3s and nginx:
//!
//!     cargo test -p stormdrill --features k3s --test k3s -- --ignored

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
use kube::{
    api::{Api, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};
use stormdrill::{cli::RunArgs, target::TargetKind, verdict::Verdict};
use testcontainers_modules::{
    k3s::{K3s, KUBE_SECURE_PORT},
    testcontainers::{runners::AsyncRunner, ImageExt},
};

const MINIMAL_STACK: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: openalex}
---
apiVersion: v1
kind: Namespace
metadata: {name: rook-ceph}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: fastapi, namespace: openalex, labels: {app: fastapi}}
spec:
  replicas: 3
  selector: {matchLabels: {app: fastapi}}
  template:
    metadata: {labels: {app: fastapi}}
    spec:
      containers:
        - name: fastapi
          image: nginx:1.27
          ports: [{name: http, containerPort: 80}]
          readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: fastapi, namespace: openalex}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: fastapi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: stormdrill-allow, namespace: kube-system}
data: {namespaces: openalex, faults: pod-kill}
"#;

const FEATURE: &str = r#"Feature: pod kill on k3s
  Scenario: a killed API pod is replaced
    Given the cluster is reachable
    And deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 180 seconds
    When 1 pod of deployment "fastapi" in namespace "openalex" is killed
    Then deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 120 seconds
"#;

async fn client(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker"]
async fn pod_kill_on_k3s_with_the_least_privilege_role() {
    let conf = tempfile::tempdir().unwrap();
    let k3s = K3s::default()
        .with_conf_mount(conf.path())
        .with_privileged(true)
        .with_userns_mode("host")
        .start()
        .await
        .expect("k3s starts (is Docker running?)");
    let port = k3s.get_host_port_ipv4(KUBE_SECURE_PORT).await.unwrap();
    let admin_yaml = k3s
        .image()
        .read_kube_config()
        .unwrap()
        .replace("127.0.0.1:6443", &format!("127.0.0.1:{port}"));
    let admin = client(&admin_yaml).await;

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stack =
        stormdrill::stack::parse(&manifest.join("k3s-minimal.yaml"), MINIMAL_STACK).unwrap();
    stormdrill::stack::apply(&admin, &stack, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let rbac_path = manifest.join("../fixtures/rbac/stormdrill.yaml");
    let rbac = stormdrill::stack::parse(&rbac_path, &std::fs::read_to_string(&rbac_path).unwrap())
        .unwrap();
    stormdrill::stack::apply(&admin, &rbac, Duration::from_secs(60), |_| {})
        .await
        .unwrap();

    // The ServiceAccount's token, and a kubeconfig holding it instead of the admin's.
    let sa: Api<ServiceAccount> = Api::namespaced(admin.clone(), "stormdrill");
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .unwrap();
    let token = sa
        .create_token_request("stormdrill", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&admin_yaml).unwrap();
    kc["users"][0]["user"] = serde_yaml::to_value(serde_json::json!({"token": token})).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&kc).unwrap()).unwrap();
    let feature = dir.path().join("pod-kill.feature");
    std::fs::write(&feature, FEATURE).unwrap();

    let args = RunArgs {
        features: vec![feature],
        target: TargetKind::Cluster,
        kubeconfig: Some(kubeconfig),
        allow_destructive: true,
        report_dir: dir.path().join("reports"),
        seed: Some(1),
        ..RunArgs::default()
    };
    // cucumber's step futures are deep: a large stack, as the binary's main thread has.
    let outcome = tokio::task::spawn_blocking(move || {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(stormdrill::run(args))
                    .expect("the harness runs")
            })
            .unwrap()
            .join()
            .unwrap()
    })
    .await
    .unwrap();
    for line in outcome.closing_lines() {
        println!("{line}");
    }
    assert_eq!(
        outcome.verdict,
        Verdict::Go,
        "{:?}",
        outcome.summary.reasons
    );
}
