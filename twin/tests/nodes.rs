//! The simulated kubelets and node lifecycle, through kube-rs and the provider
//! endpoint only: pods start and get Ready, crash and restart, and a node that
//! loses power goes NotReady, is tainted, and its pods are evicted.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Config};
use serde_json::json;
use stormdrill_twin::{Twin, TwinOptions};

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

/// POST /twin/v1/... through the same authenticated client.
async fn provider(client: &Client, path: &str, body: serde_json::Value) -> serde_json::Value {
    let req = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let text = client
        .request_text(req)
        .await
        .expect("provider call succeeds");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

async fn events(client: &Client) -> Vec<serde_json::Value> {
    let req = http::Request::get("/twin/v1/events?since=0")
        .body(Vec::new())
        .unwrap();
    serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap()
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, node_selector: &str, toleration_secs: i64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node_selector},
            "containers": [{"name": "app", "image": "nginx:1.27"}],
            "tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": toleration_secs},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": toleration_secs}
            ]
        }
    }))
    .unwrap()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_ready(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn pods_start_crash_and_restart() {
    let (_twin, client) = twin().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", "dirqual1", 300))
        .await
        .unwrap();
    let p = eventually(10, "pod web Ready", || async {
        pods.get("web").await.ok().filter(ready)
    })
    .await;
    let status = p.status.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("dirqual1"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.is_some_and(|ip| ip.starts_with("10.244.")));

    provider(&client, "/twin/v1/pods/default/web/crash", json!({})).await;
    let p = eventually(10, "restarted and Ready again", || async {
        pods.get("web").await.ok().filter(|p| {
            ready(p)
                && p.status
                    .as_ref()
                    .unwrap()
                    .container_statuses
                    .as_ref()
                    .unwrap()[0]
                    .restart_count
                    == 1
        })
    })
    .await;
    assert!(p.status.unwrap().container_statuses.unwrap()[0]
        .last_state
        .is_some());

    // Graceful deletion: Terminating, then gone once the kubelet stopped it.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(10, "pod removed", || async {
        pods.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn leases_are_renewed_by_running_kubelets() {
    let (_twin, client) = twin().await;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let first = eventually(5, "lease of dirqual2", || async {
        leases.get_opt("dirqual2").await.unwrap()
    })
    .await;
    let t0 = first.spec.unwrap().renew_time.unwrap();
    let later = eventually(5, "a renewal", || async {
        let l = leases.get("dirqual2").await.ok()?;
        let t = l.spec?.renew_time?;
        (t.0 > t0.0).then_some(t)
    })
    .await;
    assert!(later.0 > t0.0);
}

#[tokio::test]
async fn node_power_loss_cycle() {
    let (_twin, client) = twin().await;
    let started = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    pods.create(&PostParams::default(), &pod("victim", "dirqual2", 1))
        .await
        .unwrap();
    eventually(10, "victim Ready", || async {
        pods.get("victim").await.ok().filter(ready)
    })
    .await;

    let out = provider(
        &client,
        "/twin/v1/nodes/dirqual2/power",
        json!({"state": "off"}),
    )
    .await;
    assert_eq!(out["changed"], true, "{out}");
    let off_at = Instant::now();
    let n = eventually(15, "dirqual2 NotReady", || async {
        nodes
            .get("dirqual2")
            .await
            .ok()
            .filter(|n| node_ready(n).as_deref() == Some("Unknown"))
    })
    .await;
    let not_ready_after = off_at.elapsed();
    let taints = n.spec.unwrap().taints.unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"),
        "{taints:?}"
    );
    let p = pods.get("victim").await.unwrap();
    assert!(
        !ready(&p),
        "the node lifecycle controller marks pods of a lost node not Ready"
    );

    // Tolerated for 1 s, then evicted; with the node down it stays Terminating.
    let p = eventually(15, "victim Terminating", || async {
        pods.get("victim")
            .await
            .ok()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pods.get_opt("victim").await.unwrap().is_some(),
        "nobody confirms the deletion of a pod on a dead node"
    );
    assert!(p.metadata.deletion_timestamp.is_some());

    provider(
        &client,
        "/twin/v1/nodes/dirqual2/power",
        json!({"state": "on"}),
    )
    .await;
    eventually(15, "dirqual2 Ready again", || async {
        nodes.get("dirqual2").await.ok().filter(|n| {
            node_ready(n).as_deref() == Some("True")
                && !n
                    .spec
                    .as_ref()
                    .unwrap()
                    .taints
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/unreachable"))
        })
    })
    .await;
    eventually(15, "the evicted pod finally removed", || async {
        pods.get_opt("victim")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let cycle = started.elapsed();
    eprintln!("fast-profile node-loss cycle: NotReady {not_ready_after:?} after power off; full cycle {cycle:?}");

    let truth = events(&client).await;
    let seq: Vec<String> = truth
        .iter()
        .filter(|e| e["object"] == "dirqual2" || e["object"] == "default/victim")
        .map(|e| {
            format!(
                "{} {}",
                e["object"].as_str().unwrap(),
                e["state"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "dirqual2 PoweredOff",
        "dirqual2 NotReady",
        "default/victim Evicted",
        "dirqual2 PoweredOn",
        "dirqual2 Ready",
        "default/victim Deleted",
    ] {
        assert!(
            seq.iter().any(|s| s == expected),
            "ground truth lacks {expected}: {seq:?}"
        );
    }
}

#[tokio::test]
async fn unknown_node_power_is_not_found() {
    let (_twin, client) = twin().await;
    let req = http::Request::post("/twin/v1/nodes/nope/power")
        .header("Content-Type", "application/json")
        .body(br#"{"state":"off"}"#.to_vec())
        .unwrap();
    let err = client.request_text(req).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
