//! The harness's Ceph and Prometheus probes against real servers: a real Ceph cluster
//! under the twin (`--ceph real`) and a real Prometheus (Debian's package) that the
//! test starts on 127.0.0.1, scraping the cluster's mgr exporter every 2 s and reached,
//! like every Prometheus the harness queries, through the API server's service proxy.
//! Skips, saying so, without the packages (`scripts/ceph-setup.sh`; CI installs them).

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::{start_prometheus, twin_client, until, Prometheus};
use serde_json::{json, Value};
use stormdrill::probe::{ceph, prom, svc::ServiceRef};
use stormdrill_twin::stack::ceph::backend::CephBackendKind;
use stormdrill_twin::stack::ceph::real::{http_get, missing_binaries};
use stormdrill_twin::{Twin, TwinOptions};

const IMAGE: &str = "stormdrill.test/prometheus:v2.42.0";
const STACK: &str = include_str!("../../fixtures/stack/10-rook-ceph.yaml");

fn start_ceph_prometheus(exporter: &str) -> Prometheus {
    start_prometheus(
        &format!(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nscrape_configs:\n  - job_name: ceph\n    honor_labels: true\n    static_configs:\n      - targets: ['{exporter}']\n"
        ),
        tempfile::tempdir().unwrap(),
        &[],
    )
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn healthy(s: &ceph::CephStatus) -> bool {
    s.health == "HEALTH_OK" && s.num_pgs > 0 && s.pgs_active_clean() == s.num_pgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_probes_against_real_ceph_and_prometheus() {
    let mut missing = missing_binaries();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("prometheus");
    }
    if !missing.is_empty() {
        println!(
            "SKIPPED harness_probes_against_real_ceph_and_prometheus: {} not installed (run scripts/ceph-setup.sh)",
            missing.join(", ")
        );
        return;
    }
    let twin = Twin::start(TwinOptions {
        ceph: CephBackendKind::Real,
        seed: 4,
        ..TwinOptions::default()
    })
    .await
    .expect("twin with real Ceph");
    for doc in serde_yaml::Deserializer::from_str(STACK) {
        let obj: Value = serde::Deserialize::deserialize(doc).unwrap();
        if obj.is_object() {
            twin.ctx().client.create(obj).unwrap();
        }
    }
    let exporter = twin
        .ctx()
        .ceph_backend
        .exporter_addr()
        .expect("real exporter");
    let server = start_ceph_prometheus(&exporter);
    // Prometheus, as a pod behind a Service: the harness reaches it through the proxy.
    let port = server.port;
    twin.ctx().sim.register_http(IMAGE, 9090, move |req| {
        http_get(port, &req.path).unwrap_or_else(|e| {
            stormdrill_twin::sim::HttpResponse::text(502, format!("prometheus: {e}"))
        })
    });
    let labels = json!({"app": "prometheus-real"});
    for obj in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "prometheus-real", "namespace": "monitoring", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "prometheus", "image": IMAGE, "ports": [{"name": "web", "containerPort": 9090}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "prometheus-real", "namespace": "monitoring"},
            "spec": {"selector": labels, "ports": [{"name": "web", "port": 9090, "targetPort": 9090}]}}),
    ] {
        let _ = twin.ctx().client.create(obj);
    }
    let client = twin_client(&twin).await;
    let p = ServiceRef::new("monitoring", "prometheus-real", 9090);

    // The harness's Ceph probe, on real `ceph` output through the toolbox.
    let status = until("real Ceph healthy", Duration::from_secs(240), || async {
        let s = ceph::status(&client).await.ok()?;
        let pools = ceph::pools(&client).await.ok()?;
        (healthy(&s) && s.osds_up == 6 && pools.iter().any(|p| p.name == "hdd-pool"))
            .then_some((s, pools))
    })
    .await;
    let nvme = status.1.iter().find(|p| p.name == "nvme-pool").unwrap();
    assert_eq!((nvme.size, nvme.min_size), (2, 1));

    // Instant query: one health series, six OSD series.
    let health = until(
        "Prometheus has scraped the mgr",
        Duration::from_secs(60),
        || async {
            prom::query(&client, &p, "ceph_health_status", None)
                .await
                .ok()
                .filter(|s| !s.is_empty())
        },
    )
    .await;
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].samples[0].1, 0.0, "{health:?}");
    assert_eq!(health[0].labels["job"], "ceph");
    let up = prom::query(&client, &p, "ceph_osd_up", None).await.unwrap();
    assert_eq!(up.len(), 6, "{up:?}");
    assert_eq!(
        prom::instant_series(&client, &p, "ceph_osd_up == 1", now() as i64)
            .await
            .unwrap(),
        6
    );
    // A query that matches nothing is an empty result, not an error.
    assert!(
        prom::query(&client, &p, "ceph_osd_up{ceph_daemon=\"osd.99\"}", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        prom::instant_series(&client, &p, "no_such_metric_anywhere", now() as i64)
            .await
            .unwrap(),
        0
    );
    // A malformed query: Prometheus's own error, not a truncated body.
    let err = prom::query(&client, &p, "ceph_health_status{", None)
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(&err, prom::PromError::Query { status: 400, error_type, .. } if error_type == "bad_data"),
        "{err:?}"
    );
    assert!(shown.contains("parse error"), "{shown}");
    let err = prom::instant_series(&client, &p, "rate(ceph_osd_up[", now() as i64)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("parse error"), "{err}");

    // The lag: an OSD stops; the CLI says HEALTH_WARN first, Prometheus a scrape later.
    let t0 = Instant::now();
    let start = now();
    let d: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), "rook-ceph");
    let scale = |n: i32| {
        let d = d.clone();
        async move {
            d.patch(
                "rook-ceph-osd-1",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .unwrap();
        }
    };
    scale(0).await;
    let (mut cli_at, mut prom_at) = (None, None);
    while (cli_at.is_none() || prom_at.is_none()) && t0.elapsed() < Duration::from_secs(90) {
        if cli_at.is_none() {
            if let Ok(s) = ceph::status(&client).await {
                if s.health != "HEALTH_OK" {
                    cli_at = Some(t0.elapsed().as_secs_f64());
                }
            }
        }
        if prom_at.is_none() {
            if let Ok(s) = prom::query(&client, &p, "ceph_health_status", None).await {
                if s.first().is_some_and(|s| s.samples[0].1 >= 1.0) {
                    prom_at = Some(t0.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cli_at, prom_at) = (
        cli_at.expect("CLI saw the warning"),
        prom_at.expect("Prometheus saw it"),
    );
    // Range query over the drill: 0 before, 1 after, one point every 2 s. Its steps
    // fall on start - 10 + 2k, so wait past the next step for the warning to be on one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let range = prom::query_range(&client, &p, "ceph_health_status", start - 10.0, now(), 2.0)
        .await
        .unwrap();
    let values: Vec<f64> = range[0].samples.iter().map(|s| s.1).collect();
    assert!(values.len() >= 5, "{values:?}");
    assert_eq!(values.first(), Some(&0.0), "{values:?}");
    // The last step can fall up to 2 s before `now`, i.e. before the sample Prometheus
    // answered the instant query with: the warning must show, not necessarily last.
    assert!(values.contains(&1.0), "{values:?}");
    let down = prom::query(&client, &p, "ceph_osd_up{ceph_daemon=\"osd.1\"}", None)
        .await
        .unwrap();
    scale(1).await;
    until("recovered", Duration::from_secs(240), || async {
        healthy(&ceph::status(&client).await.ok()?).then_some(())
    })
    .await;
    println!(
        "OSD down: `ceph status` (toolbox) HEALTH_WARN after {cli_at:.1} s, Prometheus ceph_health_status=1 after {prom_at:.1} s (lag {:.1} s; scrape 2 s)",
        prom_at - cli_at
    );
    assert_eq!(down.first().map(|s| s.samples[0].1), Some(0.0), "{down:?}");
    // Prometheus follows the CLI: never ahead of it by more than one poll.
    assert!(prom_at + 1.0 >= cli_at, "cli {cli_at} prom {prom_at}");

    let prom_pid = server.child.id();
    let ceph_pids = twin.ctx().ceph_backend.pids();
    drop(server);
    twin.shutdown().await;
    for pid in ceph_pids.iter().map(|(_, p)| *p).chain([prom_pid]) {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
}
