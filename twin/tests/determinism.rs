//! The same seed gives the same cluster history: generated names, placement, and
//! each object's sequence of state changes in the ground truth.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Config};
use serde_json::json;
use stormdrill_twin::{Twin, TwinOptions};

async fn run(seed: u64) -> (Vec<(String, String)>, BTreeMap<String, Vec<String>>) {
    let twin = Twin::start(TwinOptions {
        seed,
        ..Default::default()
    })
    .await
    .unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let client = Client::try_from(
        Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let template = |app: &str| json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}});
    deploys
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web")}})).unwrap())
        .await
        .unwrap();
    sts.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}})).unwrap())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    let placed = loop {
        let list = pods.list(&ListParams::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready == 5 {
            let mut v: Vec<(String, String)> = list
                .items
                .iter()
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap(),
                        p.spec.as_ref().unwrap().node_name.clone().unwrap(),
                    )
                })
                .collect();
            v.sort();
            break v;
        }
        assert!(Instant::now() < deadline, "pods not Ready in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut per_object: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let req = http::Request::get("/twin/v1/events?since=0")
        .body(Vec::new())
        .unwrap();
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    for e in events {
        let object = e["object"].as_str().unwrap_or("").to_string();
        if object.starts_with("default/") {
            per_object
                .entry(object)
                .or_default()
                .push(e["state"].as_str().unwrap_or("").to_string());
        }
    }
    twin.shutdown().await;
    (placed, per_object)
}

#[tokio::test]
async fn same_seed_same_history() {
    let (a_pods, a_events) = run(42).await;
    let (b_pods, b_events) = run(42).await;
    assert_eq!(a_pods, b_pods, "names and placement");
    assert_eq!(a_events, b_events, "per-object ground truth");
    let (c_pods, _) = run(7).await;
    assert_ne!(a_pods, c_pods, "another seed gives other generated names");
}
