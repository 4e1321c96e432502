//! fixtures/rbac/stormdrill.yaml on a twin that enforces RBAC for tokens other than its
//! admin's (twin/src/rbac.rs): the harness's least-privilege role runs the features to
//! go, and the read-only role is refused a destructive step with Kubernetes' own
//! "forbidden" message. The features run as `stormdrill run --target cluster` does,
//! through a kubeconfig holding the ServiceAccount's token. This is the suite's run on
//! the embedded control plane (`tests/features.rs` runs it on the real one).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

mod common;

use common::run_harness;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    api::{Api, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};
use stormdrill::{
    cli::RunArgs,
    target::TargetKind,
    verdict::{ScenarioStatus, Verdict},
};
use stormdrill_twin::{rbac::StaticToken, Twin, TwinOptions};

const HARNESS_TOKEN: &str = "harness-token-0123456789";
const READONLY_TOKEN: &str = "readonly-token-0123456789";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn twin() -> Twin {
    Twin::start(TwinOptions {
        seed: 3,
        users: vec![
            StaticToken::service_account(HARNESS_TOKEN, "stormdrill", "stormdrill"),
            StaticToken::service_account(READONLY_TOKEN, "stormdrill", "stormdrill-readonly"),
        ],
        ..TwinOptions::default()
    })
    .await
    .unwrap()
}

async fn admin(twin: &Twin) -> Client {
    let kc = Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    Client::try_from(cfg).unwrap()
}

/// The RBAC manifests and the cluster's opt-in, applied by the admin (as a cluster
/// owner would), and the stack deployed (as `stormdrill up` would).
async fn prepare(twin: &Twin, with_stack: bool) -> Client {
    let client = admin(twin).await;
    let namespaces = manifest().join("../fixtures/stack/00-namespaces.yaml");
    let namespaces =
        stormdrill::stack::parse(&namespaces, &std::fs::read_to_string(&namespaces).unwrap())
            .unwrap();
    stormdrill::stack::apply(&client, &namespaces, Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    let rbac = stormdrill::stack::parse(
        &manifest().join("../fixtures/rbac/stormdrill.yaml"),
        &std::fs::read_to_string(manifest().join("../fixtures/rbac/stormdrill.yaml")).unwrap(),
    )
    .unwrap();
    stormdrill::stack::apply(&client, &rbac, Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    let allow: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "stormdrill-allow", "namespace": "kube-system"},
        "data": {"namespaces": "*", "faults": "pod-kill workload-outage node-drain node-power osd-down osd-out noout network-isolation disaster"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &allow)
        .await
        .unwrap();
    if with_stack {
        let r = stormdrill::stack::deploy(
            &client,
            &manifest().join("../fixtures/stack"),
            Duration::from_secs(120),
            |_| {},
        )
        .await
        .unwrap();
        assert!(r.not_ready.is_empty(), "{:?}", r.not_ready);
    }
    client
}

fn kubeconfig(twin: &Twin, token: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{token}.kubeconfig"));
    std::fs::write(&path, twin.kubeconfig_yaml_with_token(token)).unwrap();
    path
}

/// Node power through the twin's provider endpoint, as a cluster's power commands
/// would call IPMI (the endpoint is outside RBAC, like the hardware).
fn target_config(twin: &Twin, dir: &Path) -> PathBuf {
    let path = dir.join("target.yaml");
    let call = |state: &str| {
        format!(
            "curl -fsSk -X POST -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\\\"state\\\":\\\"{state}\\\"}}' {}/twin/v1/nodes/{{node}}/power",
            twin.token(),
            twin.url()
        )
    };
    std::fs::write(
        &path,
        format!(
            "power:\n  off: \"{}\"\n  on: \"{}\"\n",
            call("off"),
            call("on")
        ),
    )
    .unwrap();
    path
}

fn args(features: Vec<PathBuf>, kubeconfig: PathBuf, reports: &Path) -> RunArgs {
    RunArgs {
        features,
        target: TargetKind::Cluster,
        kubeconfig: Some(kubeconfig),
        allow_destructive: true,
        stack: manifest().join("../fixtures/stack"),
        profile: Some(manifest().join("../fixtures/acceptance/twin.yaml")),
        report_dir: reports.to_owned(),
        seed: Some(4),
        ..RunArgs::default()
    }
}

/// Every feature, as the nightly and game days run them.
fn features() -> Vec<PathBuf> {
    vec![manifest().join("../features")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_role_runs_every_feature() {
    let twin = twin().await;
    prepare(&twin, false).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&twin, HARNESS_TOKEN, dir.path());
    let mut a = args(features(), kc, dir.path());
    a.target_config = Some(target_config(&twin, dir.path()));
    let outcome = tokio::task::spawn_blocking(move || run_harness(a))
        .await
        .unwrap();
    for line in outcome.closing_lines() {
        println!("{line}");
    }
    // What the role decides: no step of any feature was refused. (Whether each
    // scenario then passes on a loaded 2-core machine is the features test's business.)
    let refused: Vec<String> = outcome
        .summary
        .scenarios
        .iter()
        .filter_map(|s| s.message.as_deref())
        .filter(|m| m.contains("forbidden") || m.contains("Forbidden"))
        .map(str::to_owned)
        .collect();
    assert!(refused.is_empty(), "refused by RBAC: {refused:#?}");
    // And it did the destructive work, not just reads: the pod kill passed.
    let killed = outcome
        .summary
        .scenarios
        .iter()
        .find(|s| s.name == "a killed API pod is replaced")
        .expect("chaos-pod ran");
    assert_eq!(
        killed.status,
        ScenarioStatus::Passed,
        "{:?}",
        killed.message
    );
    assert!(outcome.summary.scenarios.len() > 20);
    twin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_role_is_refused_a_pod_kill() {
    let twin = twin().await;
    prepare(&twin, true).await;
    let dir = tempfile::tempdir().unwrap();
    let feature = dir.path().join("kill.feature");
    std::fs::write(
        &feature,
        "Feature: kill with a read-only role\n  Scenario: a pod is killed\n    Given the cluster is reachable\n    When 1 pod of deployment \"fastapi\" in namespace \"openalex\" is killed\n",
    )
    .unwrap();
    let kc = kubeconfig(&twin, READONLY_TOKEN, dir.path());
    let a = args(vec![feature], kc, dir.path());
    let outcome = tokio::task::spawn_blocking(move || run_harness(a))
        .await
        .unwrap();
    let lines = outcome.closing_lines().join("\n");
    println!("{lines}");
    assert_ne!(outcome.verdict, Verdict::Go);
    let s = &outcome.summary.scenarios[0];
    assert_eq!(s.status, ScenarioStatus::Failed);
    let message = s.message.clone().unwrap_or_default();
    assert!(
        message.contains("forbidden")
            && message.contains(
                "User \"system:serviceaccount:stormdrill:stormdrill-readonly\" cannot delete resource \"pods\""
            ),
        "{message}"
    );
    twin.shutdown().await;
}

/// Prints every (group, resource, verb) the features use, run as the admin: the
/// source of fixtures/rbac/stormdrill.yaml's rules. `cargo test --test rbac -- --ignored
/// --nocapture audit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints the API calls the features make, to maintain the role"]
async fn audit_of_the_features() {
    let twin = twin().await;
    prepare(&twin, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.kubeconfig");
    std::fs::write(&path, twin.kubeconfig_yaml()).unwrap();
    let mut a = args(features(), path, dir.path());
    a.target_config = Some(target_config(&twin, dir.path()));
    let outcome = tokio::task::spawn_blocking(move || run_harness(a))
        .await
        .unwrap();
    println!("verdict {:?}", outcome.verdict);
    for (group, resource, verb, namespaced) in twin.audit() {
        println!(
            "AUDIT {group:?} {resource} {verb} {}",
            if namespaced { "ns" } else { "cluster" }
        );
    }
    twin.shutdown().await;
}
