//! The phase-2 metric checks against a real Prometheus (Debian's package, started here
//! on 127.0.0.1) that scrapes the twin's own exporters through the twin's API server,
//! as a Prometheus outside a cluster does: each pod target at
//! `/api/v1/namespaces/NS/pods/POD:PORT/proxy/metrics`, with the kubeconfig's token and
//! CA. Its scrape jobs are those prometheus-operator generates from the stack's
//! ServiceMonitors (role endpoints: every address of the selected Services' Endpoints on
//! the named port, scrape pool `serviceMonitor/NS/NAME/I`, `job` the Service's name),
//! listed here through the API and written as static_configs: Debian builds Prometheus
//! without `kubernetes_sd_configs` (its NEWS for 1.5.0+ds-1), so the real server cannot
//! discover them itself. Scrapes run every 2 s instead of the ServiceMonitors' 15-30 s.
//!
//! The real server then stands behind the Prometheus pod (the handler of its image's
//! port 9090), so the harness reaches it as it reaches any Prometheus, Service
//! monitoring/prometheus-k8s through the service proxy, and the feature's scenario
//! "metrics are collected" runs as `stormdrill run --target cluster` runs it. Once on
//! the stack as documented (every target up, 15 d of retention), once with the defect
//! `prometheus-target-down` (the postgres exporter's target down with the real
//! Prometheus's own error). The twin's simulated Prometheus must agree with the real
//! one target by target. Skips, saying so, without the package (`scripts/ceph-setup.sh`
//! installs it; CI fails there when it cannot).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
mod common;

use common::{run_harness, start_prometheus, twin_client, until};
use stormdrill::cli::RunArgs;
use stormdrill::probe::prom::{self, Target};
use stormdrill::target::TargetKind;
use stormdrill::verdict::{ScenarioStatus, Verdict};
use stormdrill_twin::sim::{HttpRequest, HttpResponse};
use stormdrill_twin::stack::ceph::real::http_get;
use stormdrill_twin::{Twin, TwinOptions};

/// The jobs the scenario judges and their targets on the stack (node-exporter: one per
/// node; elasticsearch: one per replica).
const JOBS: &[(&str, usize)] = &[
    ("kube-state-metrics", 1),
    ("node-exporter", 4),
    ("rook-ceph-mgr", 1),
    ("postgresql", 1),
    ("elasticsearch", 3),
];
const SCENARIO: &str = "metrics are collected";
const DEFECT: &str = "prometheus-target-down";
const SCRAPE_INTERVAL: &str = "2s";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Processes whose parent is this test process (Prometheus while it runs).
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid ...`: comm may hold spaces, so split after ')'.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    Some(rest.split(' ').nth(1)? == me)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The scrape jobs prometheus-operator generates for the ServiceMonitors (all of them:
/// Prometheus `k8s` selects every ServiceMonitor of every namespace), each target
/// reached through the API server's pod proxy at `api` (host:port).
async fn scrape_configs(client: &Client, api: &str, token: &Path, ca: &Path) -> Vec<Value> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ));
    let mut monitors = Api::<DynamicObject>::all_with(client.clone(), &ar)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    monitors.sort_by_key(|m| (m.metadata.namespace.clone(), m.metadata.name.clone()));
    let mut out = Vec::new();
    for sm in &monitors {
        let sm_ns = sm.metadata.namespace.clone().unwrap_or_default();
        let sm_name = sm.metadata.name.clone().unwrap_or_default();
        let spec = &sm.data["spec"];
        let namespaces: Vec<String> =
            if spec.pointer("/namespaceSelector/any") == Some(&json!(true)) {
                Api::<Namespace>::all(client.clone())
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter_map(|n| n.metadata.name)
                    .collect()
            } else if let Some(names) = spec
                .pointer("/namespaceSelector/matchNames")
                .and_then(Value::as_array)
            {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            } else {
                vec![sm_ns.clone()]
            };
        assert!(
            spec.pointer("/selector/matchExpressions").is_none(),
            "ServiceMonitor {sm_ns}/{sm_name}: matchExpressions are not translated here"
        );
        let selector: Vec<String> = spec
            .pointer("/selector/matchLabels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        let job_label = spec["jobLabel"].as_str();
        let endpoints = spec["endpoints"].as_array().cloned().unwrap_or_default();
        for (i, ep) in endpoints.iter().enumerate() {
            let port_name = ep["port"]
                .as_str()
                .unwrap_or_else(|| panic!("{sm_ns}/{sm_name}: endpoint {i} names no port"));
            let path = ep["path"].as_str().unwrap_or("/metrics");
            let mut groups = Vec::new();
            for ns in &namespaces {
                let services = Api::<Service>::namespaced(client.clone(), ns)
                    .list(&ListParams::default().labels(&selector.join(",")))
                    .await
                    .unwrap();
                for svc in services {
                    let name = svc.metadata.name.clone().unwrap_or_default();
                    let job = job_label
                        .and_then(|l| svc.metadata.labels.as_ref()?.get(l).cloned())
                        .unwrap_or_else(|| name.clone());
                    let Some(eps) = Api::<Endpoints>::namespaced(client.clone(), ns)
                        .get_opt(&name)
                        .await
                        .unwrap()
                    else {
                        continue;
                    };
                    for subset in eps.subsets.unwrap_or_default() {
                        let Some(port) = subset
                            .ports
                            .iter()
                            .flatten()
                            .find(|p| p.name.as_deref() == Some(port_name))
                            .map(|p| p.port)
                        else {
                            continue;
                        };
                        // Ready or not, as role endpoints discovers them.
                        let addresses = subset.addresses.iter().flatten();
                        for a in addresses.chain(subset.not_ready_addresses.iter().flatten()) {
                            let Some(pod) = a
                                .target_ref
                                .as_ref()
                                .filter(|r| r.kind.as_deref() == Some("Pod"))
                                .and_then(|r| r.name.clone())
                            else {
                                continue;
                            };
                            groups.push(json!({"targets": [api], "labels": {
                                "job": job,
                                "instance": format!("{}:{port}", a.ip),
                                "namespace": ns,
                                "service": name,
                                "pod": pod,
                                "endpoint": port_name,
                                "__metrics_path__": format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}"),
                            }}));
                        }
                    }
                }
            }
            out.push(json!({
                "job_name": format!("serviceMonitor/{sm_ns}/{sm_name}/{i}"),
                "honor_labels": ep["honorLabels"] == true,
                "scheme": "https",
                "authorization": {"credentials_file": token},
                "tls_config": {"ca_file": ca},
                "static_configs": groups,
            }));
        }
    }
    out
}

/// The phase-2 feature cut to its Background and the scenario "metrics are collected".
fn scenario_feature(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(manifest().join("../features/phase2-observability.feature"))
        .unwrap();
    let head = text
        .find("\n  Scenario:")
        .expect("the feature has scenarios");
    let start = text
        .find(&format!("\n  Scenario: {SCENARIO}\n"))
        .unwrap_or_else(|| panic!("no scenario {SCENARIO:?} in phase2-observability.feature"));
    let end = text[start + 1..]
        .find("\n  Scenario:")
        .map_or(text.len(), |e| start + 1 + e);
    let path = dir.join("phase2-metrics.feature");
    std::fs::write(&path, format!("{}{}\n", &text[..head], &text[start..end])).unwrap();
    path
}

/// (job, instance, up) of the scenario's jobs, to compare two Prometheus servers.
fn health(targets: &[Target]) -> BTreeSet<(String, String, bool)> {
    targets
        .iter()
        .filter(|t| JOBS.iter().any(|(j, _)| *j == t.job))
        .map(|t| (t.job.clone(), t.instance.clone(), t.up))
        .collect()
}

/// Every job of the scenario has its targets, all up but `down`'s, which are all down
/// with an error (a target not scraped yet is neither).
fn settled(targets: &[Target], down: Option<&str>) -> bool {
    JOBS.iter().all(|(job, n)| {
        let h = prom::job_health(targets, job);
        h.total == *n
            && if down == Some(*job) {
                h.up == 0 && h.down.iter().all(|(_, e)| !e.is_empty())
            } else {
                h.up == *n
            }
    })
}

struct Figures {
    /// Seconds from Prometheus's start until it answered through the service proxy.
    answered_s: f64,
    /// Seconds from Prometheus's start until it reported the expected target health
    /// (its scrape manager applies new target sets every 5 s, then a scrape each).
    settled_s: f64,
    /// The postgresql target's lastError, real and simulated (the defect run).
    last_error: Option<(String, String)>,
    run_s: f64,
}

async fn drill(version: &str, broken: bool) -> Figures {
    let twin = Twin::start(TwinOptions {
        seed: 8,
        defects: if broken {
            vec![DEFECT.to_string()]
        } else {
            Vec::new()
        },
        ..TwinOptions::default()
    })
    .await
    .unwrap();
    let client = twin_client(&twin).await;
    let deployed = stormdrill::stack::deploy(
        &client,
        &manifest().join("../fixtures/stack"),
        Duration::from_secs(60),
        |_| {},
    )
    .await
    .unwrap();
    assert!(deployed.not_ready.is_empty(), "{:?}", deployed.not_ready);

    // The pod behind Service monitoring/prometheus-k8s, as prometheus-operator runs it.
    let svc: Service = Api::namespaced(client.clone(), "monitoring")
        .get("prometheus-k8s")
        .await
        .unwrap();
    let selector: Vec<String> = svc
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "monitoring");
    let pod = until("the Prometheus pod", Duration::from_secs(30), || async {
        pods.list(&ListParams::default().labels(&selector.join(",")))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let pod_name = pod.metadata.name.clone().unwrap();
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let image = container.image.clone().unwrap();
    // The retention the operator gave the pod (from Prometheus k8s's spec.retention).
    let retention = container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--storage.tsdb.retention.time="))
        .expect("the operator sets the retention")
        .to_string();
    assert_eq!(retention, "15d");

    let dir = tempfile::tempdir().unwrap();
    let (token, ca) = (dir.path().join("token"), dir.path().join("ca.pem"));
    std::fs::write(&token, twin.token()).unwrap();
    std::fs::write(&ca, twin.ca_pem()).unwrap();
    let api = twin.addr().to_string();
    let jobs = scrape_configs(&client, &api, &token, &ca).await;
    let config = json!({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": jobs,
    });
    let server = start_prometheus(
        &serde_yaml::to_string(&config).unwrap(),
        dir,
        &[format!("--storage.tsdb.retention.time={retention}")],
    );
    let prom_pid = server.child.id();

    // The real server behind the Prometheus pod's port; the simulated one kept aside.
    let simulated = twin.ctx().sim.http_handler(&image, 9090).unwrap();
    let port = server.port;
    twin.ctx().sim.register_http(&image, 9090, move |req| {
        if req.method != "GET" {
            return HttpResponse::text(405, "GET only");
        }
        http_get(port, &req.path)
            .unwrap_or_else(|e| HttpResponse::text(502, format!("prometheus: {e}")))
    });
    let p = prom::prometheus();
    let build = until(
        "the real Prometheus answers",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let p = p.clone();
            async move {
                stormdrill::probe::svc::get_json(&client, &p, "/api/v1/status/buildinfo")
                    .await
                    .ok()
            }
        },
    )
    .await;
    let answered_s = server.started.elapsed().as_secs_f64();
    // The installed server's version (the simulated one reports its image's tag).
    assert_eq!(build["data"]["version"].as_str(), Some(version), "{build}");

    let down = broken.then_some("postgresql");
    let mut seen = None;
    let targets = loop {
        match prom::targets(&client, &p).await {
            Ok(t) if settled(&t, down) => break t,
            Ok(t) => seen = Some(t),
            Err(e) => println!("targets: {e}"),
        }
        assert!(
            server.started.elapsed() < Duration::from_secs(30),
            "the real Prometheus's targets, 30 s after its start: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settled_s = server.started.elapsed().as_secs_f64();
    for t in targets.iter().filter(|t| !t.up) {
        println!(
            "real Prometheus: {} {} down: {}",
            t.job, t.instance, t.last_error
        );
    }

    // The simulated Prometheus sees the same targets, up or down alike.
    let req = HttpRequest {
        method: "GET".into(),
        path: "/api/v1/targets?state=active".into(),
        headers: Vec::new(),
        body: Vec::new(),
        namespace: "monitoring".into(),
        pod: pod_name.clone(),
    };
    let sim = tokio::task::spawn_blocking(move || simulated(&req))
        .await
        .unwrap();
    let sim: Value = serde_json::from_slice(&sim.body).unwrap();
    let sim = prom::parse_targets(&sim).unwrap();
    assert_eq!(health(&targets), health(&sim));
    let last_error = broken.then(|| {
        let error = |t: &[Target]| {
            prom::job_health(t, "postgresql")
                .down
                .first()
                .map(|d| d.1.clone())
                .unwrap_or_default()
        };
        (error(&targets), error(&sim))
    });
    if let Some((real, _)) = &last_error {
        // Through the API server's pod proxy, a refused connection is its 503.
        assert_eq!(real, "server returned HTTP status 503 Service Unavailable");
    }

    // Samples in the real TSDB: `up` per job, and the exporters' own series.
    let up = until("up in the TSDB", Duration::from_secs(20), || async {
        let s = prom::query(&client, &p, "sum by (job) (up)", None)
            .await
            .ok()?;
        (s.len() >= JOBS.len()).then_some(s)
    })
    .await;
    for (job, n) in JOBS {
        let value = up
            .iter()
            .find(|s| s.labels.get("job").map(String::as_str) == Some(*job))
            .map(|s| s.samples[0].1);
        let want = if down == Some(*job) { 0.0 } else { *n as f64 };
        assert_eq!(value, Some(want), "up of {job}: {up:?}");
    }
    let nodes = prom::query(&client, &p, "node_uname_info", None)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 4, "{nodes:?}");

    // The scenario, as `stormdrill run --target cluster` runs it.
    let reports = tempfile::tempdir().unwrap();
    let kubeconfig = reports.path().join("twin.kubeconfig");
    std::fs::write(&kubeconfig, twin.kubeconfig_yaml()).unwrap();
    let args = RunArgs {
        features: vec![scenario_feature(reports.path())],
        target: TargetKind::Cluster,
        kubeconfig: Some(kubeconfig),
        stack: manifest().join("../fixtures/stack"),
        profile: Some(manifest().join("../fixtures/acceptance/twin.yaml")),
        report_dir: reports.path().to_owned(),
        seed: Some(8),
        quiet: true,
        ..RunArgs::default()
    };
    let t = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || run_harness(args))
        .await
        .unwrap();
    let run_s = t.elapsed().as_secs_f64();
    for line in outcome.closing_lines() {
        println!("{line}");
    }
    let s = outcome
        .summary
        .scenarios
        .iter()
        .find(|s| s.name == SCENARIO)
        .expect("the scenario ran");
    let criterion = |name: &str| s.criteria.iter().find(|c| c.name == name);
    for (job, n) in JOBS {
        let c = criterion(&format!("prometheus_targets_up[{job}]"))
            .unwrap_or_else(|| panic!("{job} judged: {:?}", s.criteria));
        let up = if down == Some(*job) { 0 } else { *n };
        assert_eq!(
            (c.figure, c.threshold, c.pass),
            (up as f64, *n as f64, up == *n),
            "{c:?}"
        );
    }
    // After the failed step, cucumber skips the retention step: ask the probe instead.
    let retention_d = match criterion("prometheus_retention_d") {
        Some(c) => {
            assert!(c.pass && c.threshold == 15.0, "{c:?}");
            c.figure
        }
        None => {
            assert!(broken, "retention judged: {:?}", s.criteria);
            prom::retention_s(&client, &p).await.unwrap() / 86_400.0
        }
    };
    assert_eq!(retention_d, 15.0);
    if broken {
        assert_eq!(s.status, ScenarioStatus::Failed);
        assert_eq!(outcome.verdict, Verdict::NoGo);
        let message = s.message.clone().unwrap_or_default();
        let (real, _) = last_error.as_ref().unwrap();
        assert!(
            message.contains("job postgresql: 1 of 1 down") && message.contains(real.as_str()),
            "{message}"
        );
    } else {
        assert_eq!(s.status, ScenarioStatus::Passed, "{:?}", s.message);
        assert_eq!(
            outcome.verdict,
            Verdict::Go,
            "{:?}",
            outcome.summary.reasons
        );
    }
    // It was the real server that answered, before and after the run.
    let after = stormdrill::probe::svc::get_json(&client, &p, "/api/v1/status/buildinfo")
        .await
        .unwrap();
    assert_eq!(after["data"]["version"], build["data"]["version"]);

    drop(server);
    twin.shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{prom_pid}")).exists(),
        "Prometheus (pid {prom_pid}) survived"
    );
    Figures {
        answered_s,
        settled_s,
        last_error,
        run_s,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase2_metrics_against_a_real_prometheus_scraping_the_twin() {
    // `prometheus, version 2.42.0+ds (branch: ...)`
    let version = Command::new("prometheus")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let v = out.split("version ").nth(1)?.split_whitespace().next()?;
            Some(v.to_owned())
        });
    let Some(version) = version else {
        println!(
            "SKIPPED phase2_metrics_against_a_real_prometheus_scraping_the_twin: prometheus not installed (run scripts/ceph-setup.sh)"
        );
        return;
    };
    let t = Instant::now();
    let ok = drill(&version, false).await;
    let broken = drill(&version, true).await;
    let (real, sim) = broken.last_error.unwrap();
    println!(
        "real Prometheus {version} (scrape every {SCRAPE_INTERVAL}, through the API server's pod proxy): \
         answering {:.1} s after its start, all {} targets up after {:.1} s; with {DEFECT}, \
         answering after {:.1} s, the postgresql target down after {:.1} s, lastError {real:?} \
         (simulated Prometheus: {sim:?}); scenario runs {:.1} s / {:.1} s; total {:.1} s",
        ok.answered_s,
        JOBS.iter().map(|(_, n)| n).sum::<usize>(),
        ok.settled_s,
        broken.answered_s,
        broken.settled_s,
        ok.run_s,
        broken.run_s,
        t.elapsed().as_secs_f64()
    );
    assert!(children().is_empty(), "left running: {:?}", children());
}
