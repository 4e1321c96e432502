//! The documented stack on the twin, seen as a client sees a cluster: the
//! observability endpoints and Harbor through the API server's service proxy (kube-rs),
//! the API data plane over HTTPS, and each defect of the twin changing what it should.
//! Every wait is bounded; the only traffic goes to 127.0.0.1.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::BodyExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{Pod, Secret, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{Api, AttachParams, DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    Client,
};
use serde_json::{json, Value};
use stormdrill_twin::{Twin, TwinOptions};

fn stack_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stack")
}

async fn start(defects: &[&str]) -> (Twin, Client) {
    let twin = Twin::start(TwinOptions {
        seed: 7,
        defects: defects.iter().map(|d| d.to_string()).collect(),
        ..TwinOptions::default()
    })
    .await
    .unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    // kube retries 503s for minutes; every wait here has its own deadline.
    cfg.default_retry = false;
    let client = Client::try_from(cfg).unwrap();
    (twin, client)
}

/// Applies the stack's manifests in order (no readiness wait: each test waits for
/// what it looks at).
async fn apply_stack(client: &Client) {
    let manifests = stormdrill::stack::load_dir(&stack_dir()).unwrap();
    stormdrill::stack::apply(client, &manifests, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
}

/// GET through the API server; (status, body).
async fn get(client: &Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path)
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.send(req))
        .await
        .expect("answer within 30 s")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get_json(client: &Client, path: &str) -> Value {
    let (status, body) = get(client, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn svc(ns: &str, name_port: &str, rest: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services/{name_port}/proxy{rest}")
}

fn enc(q: &str) -> String {
    url_encode(q)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` until it returns Some, at most `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn dynamic(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn object(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<Value> {
    dynamic(client, group, version, kind, Some(ns))
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

fn condition<'a>(o: &'a Value, kind: &str) -> Option<(&'a str, &'a str)> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or(""),
            )
        })
}

async fn deployment_ready(client: &Client, ns: &str, name: &str, want: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    until(
        &format!("{ns}/{name} with {want} ready replicas"),
        Duration::from_secs(60),
        || async {
            let d = api.get_opt(name).await.ok()??;
            let st = d.status?;
            (st.ready_replicas == Some(want) && st.replicas == Some(want)).then_some(())
        },
    )
    .await
}

async fn targets(client: &Client) -> Vec<Value> {
    let t = get_json(
        client,
        &svc("monitoring", "prometheus-k8s:9090", "/api/v1/targets"),
    )
    .await;
    assert_eq!(t["status"], "success");
    assert_eq!(t["data"]["droppedTargets"], json!([]));
    t["data"]["activeTargets"].as_array().unwrap().clone()
}

const POOLS: [&str; 5] = [
    "serviceMonitor/monitoring/kube-state-metrics/0",
    "serviceMonitor/monitoring/node-exporter/0",
    "serviceMonitor/openalex/elasticsearch-exporter/0",
    "serviceMonitor/openalex/postgres-exporter/0",
    "serviceMonitor/rook-ceph/rook-ceph-mgr/0",
];

/// Waits until every ServiceMonitor has targets and returns them.
async fn all_pools(client: &Client) -> Vec<Value> {
    until(
        "a target in each scrape pool",
        Duration::from_secs(60),
        || async {
            let ts = targets(client).await;
            POOLS
                .iter()
                .all(|p| ts.iter().any(|t| t["scrapePool"] == *p))
                .then_some(ts)
        },
    )
    .await
}

async fn prom_query(client: &Client, port: &str, query: &str, time: Option<i64>) -> (u16, Value) {
    let t = time.map(|t| format!("&time={t}")).unwrap_or_default();
    let (status, body) = get(
        client,
        &svc(
            "monitoring",
            port,
            &format!("/api/v1/query?query={}{t}", enc(query)),
        ),
    )
    .await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}")),
    )
}

async fn loki_streams(client: &Client, query: &str) -> Vec<Value> {
    let v = get_json(
        client,
        &svc(
            "monitoring",
            "loki:3100",
            &format!("/loki/api/v1/query_range?query={}&limit=1000", enc(query)),
        ),
    )
    .await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    v["data"]["result"].as_array().unwrap().clone()
}

async fn dashboards(client: &Client) -> Vec<String> {
    let v = get_json(client, &svc("monitoring", "grafana:80", "/api/search")).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["type"], "dash-db");
            assert!(
                d["uid"].is_string() && d["url"].as_str().unwrap().starts_with("/d/"),
                "{d}"
            );
            d["title"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The artifacts of an image in Harbor, with scan overviews.
async fn harbor_artifacts(client: &Client, image: &str) -> Vec<Value> {
    let path = image.split(':').next().unwrap();
    let mut segs: Vec<&str> = path.split('/').collect();
    if segs.len() > 1 && (segs[0].contains('.') || segs[0].contains(':')) {
        segs.remove(0);
    }
    if segs.len() == 1 {
        segs.insert(0, "library");
    }
    let (project, repo) = (segs[0], segs[1..].join("/").replace('/', "%252F"));
    let v = get_json(
        client,
        &svc("harbor", "harbor:80", &format!("/api/v2.0/projects/{project}/repositories/{repo}/artifacts?with_scan_overview=true")),
    )
    .await;
    v.as_array().unwrap().clone()
}

async fn openalex_images(client: &Client) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "openalex");
    let mut images: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|p| {
            p.spec
                .as_ref()
                .unwrap()
                .containers
                .iter()
                .filter_map(|c| c.image.clone())
        })
        .collect();
    images.sort();
    images.dedup();
    images
}

async fn toolbox_ceph(client: &Client, args: &[&str]) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "rook-ceph");
    let pod = until("a running toolbox pod", Duration::from_secs(60), || async {
        let list = pods
            .list(&ListParams::default().labels("app=rook-ceph-tools"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let name = pod.metadata.name.unwrap();
    let mut cmd = vec!["ceph"];
    cmd.extend_from_slice(args);
    let mut proc = pods
        .exec(
            &name,
            cmd,
            &AttachParams::default().stdout(true).stderr(false),
        )
        .await
        .unwrap();
    let mut out = proc.stdout().unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text)
        .await
        .unwrap();
    proc.join().await.unwrap();
    text
}

async fn pool_size(client: &Client, pool: &str) -> i64 {
    until(
        &format!("Ceph pool {pool}"),
        Duration::from_secs(60),
        || async {
            let out = toolbox_ceph(client, &["osd", "pool", "ls", "detail", "-f", "json"]).await;
            let pools: Value = serde_json::from_str(&out).ok()?;
            pools.as_array()?.iter().find(|p| p["pool_name"] == pool)?["size"].as_i64()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_and_harbor_on_the_documented_stack() {
    let (twin, client) = start(&[]).await;
    let report = stormdrill::stack::deploy(&client, &stack_dir(), Duration::from_secs(120), |_| {})
        .await
        .unwrap();
    assert!(report.not_ready.is_empty(), "{:?}", report.not_ready);

    // Prometheus: a target per exporter address, all up.
    let ts = all_pools(&client).await;
    for t in &ts {
        assert_eq!(t["health"], "up", "{t}");
        assert_eq!(t["lastError"], "");
        assert!(
            t["scrapeUrl"].as_str().unwrap().starts_with("http://"),
            "{t}"
        );
        assert_eq!(t["discoveredLabels"]["job"], t["scrapePool"]);
        for l in [
            "job",
            "instance",
            "namespace",
            "service",
            "pod",
            "container",
            "endpoint",
        ] {
            assert!(t["labels"][l].is_string(), "{l} in {t}");
        }
        assert!(chrono::DateTime::parse_from_rfc3339(t["lastScrape"].as_str().unwrap()).is_ok());
    }
    let nodes = ts.iter().filter(|t| t["scrapePool"] == POOLS[1]).count();
    assert_eq!(nodes, 4, "node-exporter on every node");

    let (status, up) = prom_query(&client, "prometheus-k8s:9090", "up", None).await;
    assert_eq!(status, 200);
    assert_eq!(up["status"], "success");
    assert_eq!(up["data"]["resultType"], "vector");
    let result = up["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), ts.len());
    assert!(
        result
            .iter()
            .all(|s| s["value"][1] == "1" && s["metric"]["__name__"] == "up"),
        "{up}"
    );
    let (_, pg) = prom_query(
        &client,
        "prometheus-k8s:9090",
        "up{job=\"postgresql\"}",
        None,
    )
    .await;
    assert_eq!(pg["data"]["result"].as_array().unwrap().len(), 1, "{pg}");
    let (_, by_job) = prom_query(&client, "prometheus-k8s:9090", "sum by (job) (up)", None).await;
    assert_eq!(
        by_job["data"]["result"].as_array().unwrap().len(),
        5,
        "{by_job}"
    );
    let (_, health) = prom_query(&client, "prometheus-k8s:9090", "ceph_health_status", None).await;
    assert_eq!(health["data"]["result"][0]["value"][1], "0", "{health}");
    let (_, ready) = prom_query(
        &client,
        "prometheus-k8s:9090",
        "count(kube_pod_status_ready{namespace=\"openalex\",condition=\"true\"} == 1)",
        None,
    )
    .await;
    let openalex_pods = Api::<Pod>::namespaced(client.clone(), "openalex")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(
        ready["data"]["result"][0]["value"][1],
        openalex_pods.to_string(),
        "{ready}"
    );
    let (_, pg_up) = prom_query(&client, "prometheus-k8s:9090", "max(pg_up)", None).await;
    assert_eq!(pg_up["data"]["result"][0]["value"][1], "1", "{pg_up}");

    // Unsupported PromQL: Prometheus's error shape.
    for bad in ["rate(up[5m])", "up{"] {
        let (status, err) = prom_query(&client, "prometheus-k8s:9090", bad, None).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["status"], "error");
        assert_eq!(err["errorType"], "bad_data");
        assert!(err["error"].as_str().unwrap().len() > 10, "{err}");
    }

    // Retention: 15 d in Prometheus, 2 years in Thanos.
    let rt = get_json(
        &client,
        &svc(
            "monitoring",
            "prometheus-k8s:9090",
            "/api/v1/status/runtimeinfo",
        ),
    )
    .await;
    assert_eq!(rt["data"]["storageRetention"], "15d");
    let flags = get_json(
        &client,
        &svc("monitoring", "prometheus-k8s:9090", "/api/v1/status/flags"),
    )
    .await;
    assert_eq!(flags["data"]["storage.tsdb.retention.time"], "15d");
    let now = chrono::Utc::now().timestamp();
    let twenty_days_ago = now - 20 * 86_400;
    let (_, old) = prom_query(
        &client,
        "prometheus-k8s:9090",
        "count(up)",
        Some(twenty_days_ago),
    )
    .await;
    assert_eq!(
        old["data"]["result"],
        json!([]),
        "beyond Prometheus's retention"
    );
    let (status, thanos) = prom_query(
        &client,
        "thanos-query:10902",
        "count(up)",
        Some(twenty_days_ago),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        thanos["data"]["result"][0]["value"],
        json!([twenty_days_ago, ts.len().to_string()])
    );
    let (_, too_old) = prom_query(
        &client,
        "thanos-query:10902",
        "count(up)",
        Some(now - 3 * 365 * 86_400),
    )
    .await;
    assert_eq!(
        too_old["data"]["result"],
        json!([]),
        "beyond Thanos's two years"
    );

    // Loki: recent lines for every openalex pod (and some in every platform namespace).
    let streams = loki_streams(&client, "{namespace=\"openalex\"}").await;
    let pods: Vec<String> = Api::<Pod>::namespaced(client.clone(), "openalex")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    for p in &pods {
        assert!(
            streams
                .iter()
                .any(|s| s["stream"]["pod"] == p.as_str()
                    && !s["values"].as_array().unwrap().is_empty()),
            "no log lines for {p}"
        );
    }
    let v = &streams[0]["values"][0];
    assert!(
        v[0].as_str().unwrap().parse::<i64>().unwrap() > (now - 3600) * 1_000_000_000,
        "{v}"
    );
    for ns in ["monitoring", "rook-ceph", "velero", "harbor"] {
        assert!(
            !loki_streams(&client, &format!("{{namespace=\"{ns}\"}}"))
                .await
                .is_empty(),
            "no logs from {ns}"
        );
    }
    let filtered = loki_streams(
        &client,
        "{namespace=\"openalex\", container=\"postgresql\"} |= \"database system is ready\"",
    )
    .await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    let labels = get_json(
        &client,
        &svc("monitoring", "loki:3100", "/loki/api/v1/labels"),
    )
    .await;
    for l in ["namespace", "pod", "container"] {
        assert!(
            labels["data"].as_array().unwrap().contains(&json!(l)),
            "{labels}"
        );
    }
    let (status, ready) = get(&client, &svc("monitoring", "loki:3100", "/ready")).await;
    assert_eq!((status, ready.trim()), (200, "ready"));
    let (_, config) = get(&client, &svc("monitoring", "loki:3100", "/config")).await;
    assert!(config.contains("retention_period: 720h"), "{config}");

    // Grafana: the five documented dashboards.
    let titles = dashboards(&client).await;
    assert_eq!(
        titles,
        [
            "Ceph cluster",
            "Elasticsearch",
            "Kubernetes cluster",
            "Node Exporter Full",
            "PostgreSQL"
        ]
    );
    let health = get_json(&client, &svc("monitoring", "grafana:80", "/api/health")).await;
    assert_eq!(health["database"], "ok");

    // Harbor: a completed Trivy scan for every image the openalex namespace runs.
    let images = openalex_images(&client).await;
    assert!(
        images.contains(&"registry.local/openalex/fastapi:1.0.0".to_string()),
        "{images:?}"
    );
    for image in &images {
        let arts = harbor_artifacts(&client, image).await;
        let tag = image.rsplit(':').next().unwrap();
        let art = arts
            .iter()
            .find(|a| {
                a["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["name"] == tag)
            })
            .unwrap_or_else(|| panic!("{image} not in Harbor: {arts:?}"));
        let scan =
            &art["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"];
        assert_eq!(scan["scan_status"], "Success", "{image}: {art}");
        assert_eq!(scan["complete_percent"], 100);
        assert_eq!(scan["scanner"]["name"], "Trivy");
        assert_eq!(scan["summary"]["summary"]["Critical"], 0);
        assert!(scan["summary"]["total"].as_u64().unwrap() > 0);
    }
    let projects = get_json(&client, &svc("harbor", "harbor:80", "/api/v2.0/projects")).await;
    assert!(
        projects
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "openalex" && p["metadata"]["auto_scan"] == "true"),
        "{projects}"
    );
    twin.shutdown().await;
}

/// 150 HTTPS requests to the API from one client, as fast as 5 connections go (well
/// within a second on this data plane); the status of each.
fn burst(addr: SocketAddr, ca_pem: Vec<u8>, host: &str, n: usize) -> Vec<u16> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let threads: Vec<_> = (0..5)
        .map(|_| {
            let config = config.clone();
            let host = host.to_string();
            std::thread::spawn(move || {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).unwrap();
                let conn = rustls::ClientConnection::new(config, name).unwrap();
                let tcp = TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                let mut statuses = Vec::new();
                for _ in 0..n / 5 {
                    write!(
                        tls.get_mut(),
                        "GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n"
                    )
                    .unwrap();
                    tls.get_mut().flush().unwrap();
                    let mut line = String::new();
                    tls.read_line(&mut line).unwrap();
                    statuses.push(
                        line.split_whitespace()
                            .nth(1)
                            .unwrap()
                            .parse::<u16>()
                            .unwrap(),
                    );
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        tls.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    tls.read_exact(&mut body).unwrap();
                }
                statuses
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defects_on_running_workloads() {
    let (twin, client) = start(&[
        "api-single-replica",
        "no-rate-limit",
        "prometheus-target-down",
        "no-loki-logs",
        "missing-dashboard",
        "gatekeeper-absent",
        "unscanned-image",
        "db-no-pdb",
        "no-velero-schedule",
        "slow-osd-recovery",
        "nvme-pool-size-3",
    ])
    .await;
    apply_stack(&client).await;

    // api-single-replica: one fastapi replica, Ready.
    deployment_ready(&client, "openalex", "fastapi", 1).await;

    // no-rate-limit: 150 requests from one client in about a second, no 429.
    let host = "api.openalex.univ-lehavre.fr";
    let ca = until("the API's TLS secret", Duration::from_secs(60), || async {
        let s = Api::<Secret>::namespaced(client.clone(), "openalex")
            .get_opt("openalex-api-tls")
            .await
            .ok()??;
        Some(s.data?.get("ca.crt")?.0.clone())
    })
    .await;
    let addr = until(
        "the envoy load balancer address",
        Duration::from_secs(30),
        || async {
            let s = Api::<Service>::namespaced(client.clone(), "projectcontour")
                .get("envoy")
                .await
                .ok()?;
            let ing = s.status?.load_balancer?.ingress?.into_iter().next()?;
            let port = ing.ports?.first()?.port;
            Some(SocketAddr::new(
                ing.ip?.parse().ok()?,
                u16::try_from(port).ok()?,
            ))
        },
    )
    .await;
    // The database must be up for /health to answer 200.
    until("the API healthy", Duration::from_secs(60), || {
        let ca = ca.clone();
        async move {
            tokio::task::spawn_blocking(move || burst(addr, ca, host, 5))
                .await
                .ok()?
                .iter()
                .all(|s| *s == 200)
                .then_some(())
        }
    })
    .await;
    let started = Instant::now();
    let statuses = tokio::task::spawn_blocking(move || burst(addr, ca, host, 150))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(statuses.len(), 150);
    assert!(
        !statuses.contains(&429),
        "a 429 without a rate limit policy ({took:?}): {statuses:?}"
    );
    let proxy = object(
        &client,
        "projectcontour.io",
        "v1",
        "HTTPProxy",
        "openalex",
        "openalex-api",
    )
    .await
    .unwrap();
    assert!(proxy.pointer("/spec/routes/0/rateLimitPolicy").is_none());

    // prometheus-target-down: the postgres exporter's target is down, the others up.
    let ts = all_pools(&client).await;
    let pg: Vec<&Value> = ts.iter().filter(|t| t["scrapePool"] == POOLS[3]).collect();
    assert_eq!(pg.len(), 1);
    assert_eq!(pg[0]["health"], "down", "{}", pg[0]);
    assert!(
        pg[0]["lastError"]
            .as_str()
            .unwrap()
            .ends_with(":9187: connect: connection refused"),
        "{}",
        pg[0]
    );
    assert!(ts
        .iter()
        .filter(|t| t["scrapePool"] != POOLS[3])
        .all(|t| t["health"] == "up"));
    let (_, up) = prom_query(
        &client,
        "prometheus-k8s:9090",
        "up{job=\"postgresql\"} == 0",
        None,
    )
    .await;
    assert_eq!(up["data"]["result"].as_array().unwrap().len(), 1, "{up}");

    // no-loki-logs: Promtail runs everywhere, but Loki has no streams.
    until(
        "promtail on every node",
        Duration::from_secs(60),
        || async {
            let ds = Api::<DaemonSet>::namespaced(client.clone(), "monitoring")
                .get("promtail")
                .await
                .ok()?;
            let st = ds.status?;
            (st.desired_number_scheduled > 0 && st.number_ready == st.desired_number_scheduled)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        loki_streams(&client, "{namespace=~\".+\"}").await,
        Vec::<Value>::new()
    );

    // missing-dashboard: Grafana has four dashboards, not the Ceph one.
    let titles = dashboards(&client).await;
    assert_eq!(
        titles,
        [
            "Elasticsearch",
            "Kubernetes cluster",
            "Node Exporter Full",
            "PostgreSQL"
        ]
    );

    // gatekeeper-absent: a Pod with an untagged image is admitted (server-side dry run).
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "untagged", "namespace": "openalex"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "openalex");
    let admitted = pods
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &pod,
        )
        .await;
    assert!(admitted.is_ok(), "{admitted:?}");

    // unscanned-image: the fastapi image has no scan report; the others do.
    let fastapi = harbor_artifacts(&client, "registry.local/openalex/fastapi:1.0.0").await;
    assert_eq!(fastapi.len(), 1);
    assert!(fastapi[0].get("scan_overview").is_none(), "{}", fastapi[0]);
    assert!(harbor_artifacts(&client, "postgres:16.4").await[0]["scan_overview"].is_object());

    // db-no-pdb: the postgresql PDB is gone, the others stay.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "openalex");
    until(
        "the postgresql PDB dropped",
        Duration::from_secs(30),
        || async {
            pdbs.get_opt("postgresql")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(pdbs.get_opt("fastapi").await.unwrap().is_some());

    // no-velero-schedule: no Schedule, hence no scheduled Backup.
    let schedules = dynamic(&client, "velero.io", "v1", "Schedule", Some("velero"));
    until("no Velero schedule", Duration::from_secs(30), || async {
        schedules
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let backups = dynamic(&client, "velero.io", "v1", "Backup", Some("velero"))
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(backups.items.is_empty(), "{:?}", backups.items);

    // slow-osd-recovery: Ceph recovers at a fiftieth of the fast profile's rate.
    let fast = stormdrill_twin::stack::ceph::CephParams::fast().recovery_objects_per_sec;
    let rate = until("the Ceph cluster", Duration::from_secs(30), || async {
        twin.ctx()
            .ceph
            .lock()
            .unwrap()
            .as_ref()
            .map(|m| m.params.recovery_objects_per_sec)
    })
    .await;
    assert_eq!(rate, fast / stormdrill_twin::defects::SLOW_RECOVERY_FACTOR);

    // nvme-pool-size-3: Ceph keeps three copies in nvme-pool.
    assert_eq!(pool_size(&client, "nvme-pool").await, 3);
    twin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defects_seen_in_status() {
    let (twin, client) = start(&[
        "cert-not-ready",
        "flux-not-ready",
        "bsl-unavailable",
        "velero-ttl-wrong",
        "pool-size-1",
    ])
    .await;
    apply_stack(&client).await;

    // cert-not-ready: the ACME order fails, no certificate is issued.
    let cert = until(
        "the Certificate's failure",
        Duration::from_secs(60),
        || async {
            let c = object(
                &client,
                "cert-manager.io",
                "v1",
                "Certificate",
                "openalex",
                "openalex-api-tls",
            )
            .await?;
            (condition(&c, "Ready")?.0 == "False").then_some(c)
        },
    )
    .await;
    let (_, msg) = condition(&cert, "Ready").unwrap();
    assert!(
        msg.contains("urn:ietf:params:acme:error:unauthorized"),
        "{msg}"
    );
    assert!(Api::<Secret>::namespaced(client.clone(), "openalex")
        .get_opt("openalex-api-tls")
        .await
        .unwrap()
        .is_none());

    // flux-not-ready: apps is Ready=False (its dependency does not exist), infrastructure Ready.
    let apps = until(
        "Kustomization apps not ready",
        Duration::from_secs(60),
        || async {
            let k = object(
                &client,
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "Kustomization",
                "flux-system",
                "apps",
            )
            .await?;
            (condition(&k, "Ready")?.0 == "False").then_some(k)
        },
    )
    .await;
    assert!(
        condition(&apps, "Ready")
            .unwrap()
            .1
            .contains("apps-secrets"),
        "{apps}"
    );
    let infra = object(
        &client,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "flux-system",
        "infrastructure",
    )
    .await
    .unwrap();
    assert_eq!(condition(&infra, "Ready").map(|c| c.0), Some("True"));

    // bsl-unavailable: Velero cannot reach the object store.
    let bsl = until("the BSL's phase", Duration::from_secs(60), || async {
        let b = object(
            &client,
            "velero.io",
            "v1",
            "BackupStorageLocation",
            "velero",
            "default",
        )
        .await?;
        b.pointer("/status/phase")
            .and_then(Value::as_str)
            .map(String::from)
    })
    .await;
    assert_eq!(bsl, "Unavailable");

    // velero-ttl-wrong: backups of the schedule would be kept one day.
    let schedule = object(
        &client,
        "velero.io",
        "v1",
        "Schedule",
        "velero",
        "daily-openalex",
    )
    .await
    .unwrap();
    assert_eq!(schedule["spec"]["template"]["ttl"], "24h0m0s");

    // pool-size-1: a single copy of nvme-pool, and Ceph says so.
    assert_eq!(pool_size(&client, "nvme-pool").await, 1);
    twin.shutdown().await;
}

#[tokio::test]
async fn unknown_defects_are_refused_and_twin_only() {
    let e = Twin::start(TwinOptions {
        defects: vec!["no-such-defect".into()],
        ..TwinOptions::default()
    })
    .await
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(msg.contains("unknown defect \"no-such-defect\""), "{msg}");
    for (name, what) in stormdrill::target::twin_defects() {
        assert!(msg.contains(name), "{msg}");
        assert!(what.ends_with('.'), "{name}: {what}");
    }
    let spec = stormdrill::target::TargetSpec {
        kind: stormdrill::target::TargetKind::Cluster,
        defects: vec!["pool-size-1".into()],
        ..Default::default()
    };
    assert!(matches!(
        spec.validate(),
        Err(stormdrill::target::TargetError::DefectsNeedTwin)
    ));
    use clap::Parser as _;
    let cli = stormdrill::cli::Cli::try_parse_from([
        "stormdrill",
        "run",
        "--defect",
        "pool-size-1",
        "--defect",
        "no-rate-limit",
    ])
    .unwrap();
    let stormdrill::cli::Command::Run(args) = cli.command else {
        panic!("not run")
    };
    assert_eq!(args.defects, ["pool-size-1", "no-rate-limit"]);
    let cli = stormdrill::cli::Cli::try_parse_from(["stormdrill", "twin", "defects"]).unwrap();
    assert!(matches!(
        cli.command,
        stormdrill::cli::Command::Twin {
            command: stormdrill::cli::TwinCommand::Defects
        }
    ));
}
