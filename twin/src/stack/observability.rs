//! The stack's observability services, simulated behind their pods' ports (reached
//! through the service proxy like any pod's HTTP port, [`crate::sim`]), plus the
//! exporters Prometheus scrapes and the application log lines Loki collects.
//!
//! **Exporters** (`/metrics`, text exposition 0.0.4): kube-state-metrics (`:8080`;
//! `kube_pod_info`, `kube_pod_status_phase`, `kube_pod_status_ready`,
//! `kube_pod_container_status_ready`, `kube_pod_container_status_restarts_total`,
//! `kube_node_status_condition`, `kube_node_spec_unschedulable`,
//! `kube_deployment_spec_replicas`, `kube_deployment_status_replicas[_available|
//! _unavailable]`, `kube_statefulset_replicas`, `kube_statefulset_status_replicas_ready`,
//! `kube_daemonset_status_desired_number_scheduled`, `kube_daemonset_status_number_ready`,
//! `kube_persistentvolumeclaim_status_phase`,
//! `kube_poddisruptionbudget_status_current_healthy`/`_desired_healthy`, from the API
//! objects), node-exporter (`:9100`; `node_uname_info`, `node_boot_time_seconds`,
//! `node_load1`), postgres-exporter (`:9187`; `pg_up` follows the pod's postgres
//! container, `pg_static`), elasticsearch-exporter (`:9114`;
//! `elasticsearch_cluster_health_up`, `..._number_of_nodes`, `..._status{color}`), and
//! the Ceph mgr (`:9283`, the Rook operator's). An exporter started with
//! `--web.listen-address` on another port than the one it declares refuses
//! connections on the declared one.
//!
//! **Prometheus** (`quay.io/prometheus/prometheus`, `:9090`). Targets come from the
//! ServiceMonitors the Prometheus object selects (`serviceMonitorSelector`,
//! `serviceMonitorNamespaceSelector`: null selects none/own namespace, `{}` all), as
//! prometheus-operator's generated config discovers them: role endpoints, each
//! address (ready or not) of the selected Services' Endpoints on the endpoint's
//! port, scrape pool `serviceMonitor/<ns>/<name>/<i>`, target labels `job` (the
//! Service name, or its `jobLabel` label), `instance`, `namespace`, `service`, `pod`,
//! `container`, `endpoint`; scraped labels that clash are renamed `exported_<name>`
//! unless `honorLabels`. Targets are scraped when asked (no TSDB): a target is up
//! when its pod's node is powered, its container runs and listens on the port and
//! answers 200; otherwise down with the error Prometheus would give (`connect:
//! connection refused`, `context deadline exceeded`, `server returned HTTP status
//! ...`). Endpoints: `/api/v1/targets` (`state`, `scrapePool`), `/api/v1/query`
//! (`query`, `time`; GET or form POST), `/api/v1/query_range` (`start`, `end`, `step`;
//! at most 11,000 points), `/api/v1/labels`, `/api/v1/label/<name>/values`,
//! `/api/v1/status/runtimeinfo` (`storageRetention`), `/api/v1/status/flags` (the
//! pod's `--flag=value` arguments over Prometheus's defaults),
//! `/api/v1/status/buildinfo`, `/-/healthy`, `/-/ready`. Queries: the subset of
//! [`super::promql`], over every target's `up` and scraped samples; a time older
//! than the retention (`--storage.tsdb.retention.time`, default 15d) has no data.
//!
//! **Thanos query** (`quay.io/thanos/thanos`, `:10902`): `/api/v1/query` and
//! `/api/v1/query_range` as Prometheus's, answering for the last two years (the
//! bucket's retention, [`THANOS_HISTORY`]); older times have no data. `/-/healthy`,
//! `/-/ready`.
//!
//! **Loki** (`grafana/loki`, `:3100`): Promtail ships the container log lines
//! ([`crate::sim::Sim`] logs) of pods on nodes where a Promtail pod is Ready and
//! its `-client.url` (default: the `loki` Service of Promtail's namespace) names a
//! Service with a ready endpoint; lines that cannot be shipped wait, as in
//! Promtail's positions file, so they arrive when it can push again. Loki keeps
//! them (up to [`LOKI_STREAM_CAP`] per stream and [`LOKI_MAX_STREAMS`] streams;
//! deleted pods' lines stay) with the labels `namespace`, `pod`, `container`,
//! `node_name`, `app`, `job`, `stream`, `filename`; Promtail pushes at most once a
//! second, and a query first ships what is pending. Endpoints: `/loki/api/v1/query_range` (`query` of
//! [`super::promql::parse_log_query`], `limit` (100; at most 5000), `start`/`end`
//! (ns, seconds or RFC 3339; default the last hour), `since`, `direction`),
//! `/loki/api/v1/labels`, `/loki/api/v1/label/<name>/values`,
//! `/loki/api/v1/status/buildinfo`, `/ready`, and `/config` (the running config
//! as YAML: `limits_config.retention_period` from the `loki-config` ConfigMap's
//! `retention_period`, 30 d in the stack; entries older than it are not returned).
//!
//! **Grafana** (`grafana/grafana`, `:3000`): dashboards are the JSON documents
//! (`*.json` keys) of ConfigMaps labelled `grafana_dashboard: "1"` in Grafana's
//! namespace, as the dashboard sidecar provisions them (ids in creation order).
//! `/api/search` (`query`, `tag`, `type`, `dashboardUIDs`, `limit`; sorted by
//! title), `/api/dashboards/uid/<uid>`, `/api/health`.
//!
//! **Application logs**: every [`APP_LOG_INTERVAL`] each running container of the
//! stack's namespaces (labelled `app.kubernetes.io/part-of: openalex-platform`) logs
//! one line in its program's format (uvicorn, PostgreSQL, Prometheus, ...), so
//! recent lines exist for every namespace; containers keep at most the simulation's
//! per-container cap.
//!
//! **Simplifications**: no authentication; no TSDB (a query at any time within the
//! history answers with the current scrape, as if the stack had always been as it
//! is now); `lastScrape` is the time of that on-demand scrape; recording and
//! alerting rules are not modelled.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::promql::{self, format_value, Labels, QueryError, Series};
use crate::ctx::{obj, Ctx};
use crate::selector::LabelSelector;
use crate::sim::{HttpRequest, HttpResponse, Sim};

pub const PROMETHEUS_IMAGE: &str = "quay.io/prometheus/prometheus";
pub const THANOS_IMAGE: &str = "quay.io/thanos/thanos";
pub const LOKI_IMAGE: &str = "grafana/loki";
pub const GRAFANA_IMAGE: &str = "grafana/grafana";
const KSM_IMAGE: &str = "registry.k8s.io/kube-state-metrics/kube-state-metrics";
const NODE_EXPORTER_IMAGE: &str = "quay.io/prometheus/node-exporter";
const PG_EXPORTER_IMAGE: &str = "quay.io/prometheuscommunity/postgres-exporter";
const ES_EXPORTER_IMAGE: &str = "quay.io/prometheuscommunity/elasticsearch-exporter";

/// How far back Thanos answers (the bucket's retention): two years.
pub const THANOS_HISTORY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// Log entries Loki keeps per stream (oldest dropped first).
pub const LOKI_STREAM_CAP: usize = 5_000;
/// Streams Loki keeps (those whose newest entry is oldest go first), so pod churn
/// over a long run stays bounded.
pub const LOKI_MAX_STREAMS: usize = 5_000;
/// How often the stack's containers log an application line.
pub const APP_LOG_INTERVAL: Duration = Duration::from_secs(15);
/// Prometheus refuses range queries with more points per series.
const MAX_POINTS: f64 = 11_000.0;
const LOKI_MAX_ENTRIES: usize = 5_000;
const PLATFORM_LABEL: &str = "app.kubernetes.io/part-of";
const PLATFORM: &str = "openalex-platform";

/// The simulation's context without a strong reference to the [`Sim`] that holds
/// the handlers (which would never be freed).
#[derive(Clone)]
struct WeakCtx {
    sim: Weak<Sim>,
    base: Ctx,
}

impl WeakCtx {
    fn new(ctx: &Ctx) -> WeakCtx {
        WeakCtx {
            sim: Arc::downgrade(&ctx.sim),
            base: Ctx {
                sim: Arc::new(Sim::default()),
                ..ctx.clone()
            },
        }
    }

    fn get(&self) -> Option<Ctx> {
        self.sim.upgrade().map(|sim| Ctx {
            sim,
            ..self.base.clone()
        })
    }
}

fn register(
    ctx: &Ctx,
    image: &str,
    port: u16,
    f: fn(&Ctx, &HttpRequest, &Shared) -> HttpResponse,
    shared: &Arc<Shared>,
) {
    let weak = WeakCtx::new(ctx);
    let shared = shared.clone();
    ctx.sim
        .register_http(image, port, move |req| match weak.get() {
            Some(ctx) => f(&ctx, req, &shared),
            None => HttpResponse::text(503, "the twin is stopping"),
        });
}

/// State shared by the handlers and the background tasks.
#[derive(Default)]
struct Shared {
    loki: Mutex<LokiStore>,
}

/// Registers the observability services and exporters, and starts Loki's ingestion
/// and the application log lines; the tasks end when `stop` turns true.
pub fn start(ctx: &Ctx, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let shared = Arc::new(Shared::default());
    register(ctx, PROMETHEUS_IMAGE, 9090, prometheus, &shared);
    register(ctx, THANOS_IMAGE, 10902, thanos, &shared);
    register(ctx, LOKI_IMAGE, 3100, loki, &shared);
    register(ctx, GRAFANA_IMAGE, 3000, grafana, &shared);
    register(
        ctx,
        KSM_IMAGE,
        8080,
        |c, r, _| exporter(c, r, 8080, kube_state_metrics),
        &shared,
    );
    register(
        ctx,
        NODE_EXPORTER_IMAGE,
        9100,
        |c, r, _| exporter(c, r, 9100, node_exporter),
        &shared,
    );
    register(
        ctx,
        PG_EXPORTER_IMAGE,
        9187,
        |c, r, _| exporter(c, r, 9187, postgres_exporter),
        &shared,
    );
    register(
        ctx,
        ES_EXPORTER_IMAGE,
        9114,
        |c, r, _| exporter(c, r, 9114, elasticsearch_exporter),
        &shared,
    );
    vec![
        tokio::spawn(ingest_loop(ctx.clone(), shared, stop.clone())),
        tokio::spawn(app_logs(ctx.clone(), stop)),
    ]
}

// ----- small helpers ----------------------------------------------------------------

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn path_of(req: &HttpRequest) -> &str {
    req.path.split('?').next().unwrap_or("/")
}

/// Query parameters, and for a form POST the body's too (as Go's `FormValue`).
fn params(req: &HttpRequest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = req
        .path
        .split_once('?')
        .map(|(_, q)| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if req.method == "POST"
        && req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        out.extend(url::form_urlencoded::parse(&req.body).into_owned());
    }
    out
}

fn param<'a>(ps: &'a [(String, String)], k: &str) -> Option<&'a str> {
    ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn pod_of(ctx: &Ctx, req: &HttpRequest) -> Option<Value> {
    ctx.client.get("", "pods", Some(&req.namespace), &req.pod)
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn container_by_port(pod: &Value, port: u16) -> Option<&Value> {
    containers(pod).find(|c| {
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["containerPort"].as_u64() == Some(u64::from(port)))
    })
}

/// `--name=value` (or `-name=value`, or `--name value`) among a container's args.
fn flag(container: &Value, name: &str) -> Option<String> {
    let args: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|k| {
            container[*k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
        })
        .collect();
    let mut last = None;
    for (i, a) in args.iter().enumerate() {
        let bare = a.trim_start_matches('-');
        if !a.starts_with('-') {
            continue;
        }
        if let Some(v) = bare.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            last = Some(v.to_string());
        } else if bare == name {
            last = args.get(i + 1).map(|v| v.to_string());
        }
    }
    last
}

fn container_running(pod: &Value, name: &str) -> bool {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c.pointer("/state/running").is_some())
}

/// Whether the container accepts connections on `port`: it runs and does not listen
/// elsewhere (`--web.listen-address`, the exporters' and Prometheus's flag).
fn listens(pod: &Value, container: &Value, port: u16) -> bool {
    let name = container["name"].as_str().unwrap_or("");
    if !container_running(pod, name) {
        return false;
    }
    match flag(container, "web.listen-address") {
        Some(addr) => addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) == Some(port),
        None => true,
    }
}

fn refused(pod: &Value, port: u16) -> String {
    format!(
        "dial tcp {}:{port}: connect: connection refused",
        obj::str_at(pod, "/status/podIP").unwrap_or("")
    )
}

fn image_version(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => image[i + 1..].trim_start_matches('v').to_string(),
        _ => "unknown".into(),
    }
}

fn stable_hash(parts: &[&str]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

// ----- exporters --------------------------------------------------------------------

struct Exposition(String);

impl Exposition {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        if labels.is_empty() {
            self.0.push_str(&format!("{name} {}\n", format_value(v)));
        } else {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
                .collect();
            self.0
                .push_str(&format!("{name}{{{}}} {}\n", l.join(","), format_value(v)));
        }
    }
}

/// Serves an exporter's `/metrics` from `body`, unless the container does not listen
/// on `port` (then what the service proxy reports for a refused connection).
fn exporter(
    ctx: &Ctx,
    req: &HttpRequest,
    port: u16,
    body: fn(&Ctx, &Value) -> String,
) -> HttpResponse {
    let Some(pod) = pod_of(ctx, req) else {
        return HttpResponse::text(503, "error trying to reach service: no route to host");
    };
    if !container_by_port(&pod, port).is_some_and(|c| listens(&pod, c, port)) {
        return HttpResponse::text(
            503,
            format!("error trying to reach service: {}", refused(&pod, port)),
        );
    }
    if path_of(req) != "/metrics" {
        return HttpResponse::text(404, "404 page not found\n");
    }
    let mut r = HttpResponse::text(200, body(ctx, &pod));
    r.headers = vec![(
        "content-type".into(),
        "text/plain; version=0.0.4; charset=utf-8".into(),
    )];
    r
}

fn tristate(s: Option<&str>) -> &'static str {
    match s {
        Some("True") => "true",
        Some("False") => "false",
        _ => "unknown",
    }
}

fn kube_state_metrics(ctx: &Ctx, _pod: &Value) -> String {
    let c = &ctx.client;
    let mut o = Exposition(String::new());
    let int = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0) as f64;
    let pods = c.list("", "pods", None, None);
    o.head("kube_pod_info", "Information about pod.", "gauge");
    for p in &pods {
        let (kind, owner) = obj::controller_of(p)
            .map(|(k, n, _)| (k.to_string(), n.to_string()))
            .unwrap_or_default();
        o.sample(
            "kube_pod_info",
            &[
                ("namespace", obj::namespace(p)),
                ("pod", obj::name(p)),
                ("uid", obj::uid(p)),
                ("host_ip", obj::str_at(p, "/status/hostIP").unwrap_or("")),
                ("pod_ip", obj::str_at(p, "/status/podIP").unwrap_or("")),
                ("node", obj::str_at(p, "/spec/nodeName").unwrap_or("")),
                ("created_by_kind", &kind),
                ("created_by_name", &owner),
                (
                    "priority_class",
                    obj::str_at(p, "/spec/priorityClassName").unwrap_or(""),
                ),
                (
                    "host_network",
                    if p.pointer("/spec/hostNetwork") == Some(&Value::Bool(true)) {
                        "true"
                    } else {
                        "false"
                    },
                ),
            ],
            1.0,
        );
    }
    o.head("kube_pod_status_phase", "The pods current phase.", "gauge");
    for p in &pods {
        let phase = obj::str_at(p, "/status/phase").unwrap_or("Pending");
        for ph in ["Pending", "Succeeded", "Failed", "Unknown", "Running"] {
            o.sample(
                "kube_pod_status_phase",
                &[
                    ("namespace", obj::namespace(p)),
                    ("pod", obj::name(p)),
                    ("uid", obj::uid(p)),
                    ("phase", ph),
                ],
                f64::from(u8::from(phase == ph)),
            );
        }
    }
    o.head(
        "kube_pod_status_ready",
        "Describes whether the pod is ready to serve requests.",
        "gauge",
    );
    for p in &pods {
        let st = tristate(obj::condition(p, "Ready"));
        for cond in ["true", "false", "unknown"] {
            o.sample(
                "kube_pod_status_ready",
                &[
                    ("namespace", obj::namespace(p)),
                    ("pod", obj::name(p)),
                    ("uid", obj::uid(p)),
                    ("condition", cond),
                ],
                f64::from(u8::from(st == cond)),
            );
        }
    }
    o.head(
        "kube_pod_container_status_ready",
        "Describes whether the containers readiness check succeeded.",
        "gauge",
    );
    for p in &pods {
        for cs in p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ready = cs["ready"] == true;
            o.sample(
                "kube_pod_container_status_ready",
                &[
                    ("namespace", obj::namespace(p)),
                    ("pod", obj::name(p)),
                    ("uid", obj::uid(p)),
                    ("container", cs["name"].as_str().unwrap_or("")),
                ],
                f64::from(u8::from(ready)),
            );
        }
    }
    o.head(
        "kube_pod_container_status_restarts_total",
        "The number of container restarts per container.",
        "counter",
    );
    for p in &pods {
        for cs in p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            o.sample(
                "kube_pod_container_status_restarts_total",
                &[
                    ("namespace", obj::namespace(p)),
                    ("pod", obj::name(p)),
                    ("uid", obj::uid(p)),
                    ("container", cs["name"].as_str().unwrap_or("")),
                ],
                int(cs, "/restartCount"),
            );
        }
    }
    let nodes = c.list("", "nodes", None, None);
    o.head(
        "kube_node_status_condition",
        "The condition of a cluster node.",
        "gauge",
    );
    for n in &nodes {
        for cond in n
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let st = tristate(cond["status"].as_str());
            for s in ["true", "false", "unknown"] {
                o.sample(
                    "kube_node_status_condition",
                    &[
                        ("node", obj::name(n)),
                        ("condition", cond["type"].as_str().unwrap_or("")),
                        ("status", s),
                    ],
                    f64::from(u8::from(st == s)),
                );
            }
        }
    }
    o.head(
        "kube_node_spec_unschedulable",
        "Whether a node can schedule new pods.",
        "gauge",
    );
    for n in &nodes {
        o.sample(
            "kube_node_spec_unschedulable",
            &[("node", obj::name(n))],
            f64::from(u8::from(
                n.pointer("/spec/unschedulable") == Some(&Value::Bool(true)),
            )),
        );
    }
    let deployments = c.list("apps", "deployments", None, None);
    for (metric, help, ptr) in [
        (
            "kube_deployment_spec_replicas",
            "Number of desired pods for a deployment.",
            "/spec/replicas",
        ),
        (
            "kube_deployment_status_replicas",
            "The number of replicas per deployment.",
            "/status/replicas",
        ),
        (
            "kube_deployment_status_replicas_available",
            "The number of available replicas per deployment.",
            "/status/availableReplicas",
        ),
        (
            "kube_deployment_status_replicas_unavailable",
            "The number of unavailable replicas per deployment.",
            "/status/unavailableReplicas",
        ),
    ] {
        o.head(metric, help, "gauge");
        for d in &deployments {
            o.sample(
                metric,
                &[
                    ("namespace", obj::namespace(d)),
                    ("deployment", obj::name(d)),
                ],
                int(d, ptr),
            );
        }
    }
    let statefulsets = c.list("apps", "statefulsets", None, None);
    for (metric, help, ptr) in [
        (
            "kube_statefulset_replicas",
            "Number of desired pods for a StatefulSet.",
            "/spec/replicas",
        ),
        (
            "kube_statefulset_status_replicas_ready",
            "The number of ready replicas per StatefulSet.",
            "/status/readyReplicas",
        ),
    ] {
        o.head(metric, help, "gauge");
        for s in &statefulsets {
            o.sample(
                metric,
                &[
                    ("namespace", obj::namespace(s)),
                    ("statefulset", obj::name(s)),
                ],
                int(s, ptr),
            );
        }
    }
    let daemonsets = c.list("apps", "daemonsets", None, None);
    for (metric, help, ptr) in [
        ("kube_daemonset_status_desired_number_scheduled", "The number of nodes that should be running the daemon pod.", "/status/desiredNumberScheduled"),
        ("kube_daemonset_status_number_ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", "/status/numberReady"),
    ] {
        o.head(metric, help, "gauge");
        for d in &daemonsets {
            o.sample(metric, &[("namespace", obj::namespace(d)), ("daemonset", obj::name(d))], int(d, ptr));
        }
    }
    o.head(
        "kube_persistentvolumeclaim_status_phase",
        "The phase the persistent volume claim is currently in.",
        "gauge",
    );
    for p in c.list("", "persistentvolumeclaims", None, None) {
        let phase = obj::str_at(&p, "/status/phase").unwrap_or("Pending");
        for ph in ["Lost", "Bound", "Pending"] {
            o.sample(
                "kube_persistentvolumeclaim_status_phase",
                &[
                    ("namespace", obj::namespace(&p)),
                    ("persistentvolumeclaim", obj::name(&p)),
                    ("phase", ph),
                ],
                f64::from(u8::from(phase == ph)),
            );
        }
    }
    let pdbs = c.list("policy", "poddisruptionbudgets", None, None);
    for (metric, help, ptr) in [
        (
            "kube_poddisruptionbudget_status_current_healthy",
            "Current number of healthy pods",
            "/status/currentHealthy",
        ),
        (
            "kube_poddisruptionbudget_status_desired_healthy",
            "Minimum desired number of healthy pods",
            "/status/desiredHealthy",
        ),
    ] {
        o.head(metric, help, "gauge");
        for p in &pdbs {
            o.sample(
                metric,
                &[
                    ("namespace", obj::namespace(p)),
                    ("poddisruptionbudget", obj::name(p)),
                ],
                int(p, ptr),
            );
        }
    }
    o.0
}

fn node_exporter(ctx: &Ctx, pod: &Value) -> String {
    let node = obj::str_at(pod, "/spec/nodeName").unwrap_or("");
    let mut o = Exposition(String::new());
    o.head(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        "gauge",
    );
    o.sample(
        "node_uname_info",
        &[
            ("domainname", "(none)"),
            ("machine", "x86_64"),
            ("nodename", node),
            ("release", "6.1.0-25-amd64"),
            ("sysname", "Linux"),
            (
                "version",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.106-3 (2024-08-26)",
            ),
        ],
        1.0,
    );
    let boot = ctx
        .power
        .since(node)
        .map(|t| now() - chrono::Duration::from_std(t.elapsed()).unwrap_or_default())
        .unwrap_or_else(|| {
            now()
                - chrono::Duration::from_std(ctx.started.elapsed()).unwrap_or_default()
                - chrono::Duration::days(12)
        });
    o.head(
        "node_boot_time_seconds",
        "Node boot time, in unixtime.",
        "gauge",
    );
    o.sample("node_boot_time_seconds", &[], boot.timestamp() as f64);
    o.head("node_load1", "1m load average.", "gauge");
    o.sample(
        "node_load1",
        &[],
        0.2 + (stable_hash(&[node, "load1"]) % 130) as f64 / 100.0,
    );
    o.0
}

fn postgres_exporter(ctx: &Ctx, pod: &Value) -> String {
    let db = containers(pod).find(|c| {
        c["image"]
            .as_str()
            .is_some_and(|i| !i.contains("exporter") && i.contains("postgres"))
    });
    let node_on = obj::str_at(pod, "/spec/nodeName").is_some_and(|n| ctx.power.is_on(n));
    let up =
        node_on && db.is_some_and(|c| container_running(pod, c["name"].as_str().unwrap_or("")));
    let mut o = Exposition(String::new());
    o.head("pg_up", "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).", "gauge");
    o.sample("pg_up", &[], f64::from(u8::from(up)));
    if up {
        let v = db
            .map(|c| image_version(c["image"].as_str().unwrap_or("")))
            .unwrap_or_default();
        o.head(
            "pg_static",
            "Version string as reported by postgres",
            "untyped",
        );
        o.sample("pg_static", &[("server", "localhost:5432"), ("short_version", &format!("{v}.0")), ("version", &format!("PostgreSQL {v} (Debian {v}-1.pgdg120+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit"))], 1.0);
    }
    o.head("postgres_exporter_build_info", "A metric with a constant '1' value labeled by version, revision, branch, goversion from which postgres_exporter was built, and the goos and goarch for the build.", "gauge");
    o.sample(
        "postgres_exporter_build_info",
        &[
            ("branch", "HEAD"),
            ("goarch", "amd64"),
            ("goos", "linux"),
            ("goversion", "go1.21.3"),
            ("revision", "68c176b8833b7580bf847cecf60f8e0ad5923f9a"),
            ("tags", "netgo static_build"),
            ("version", "0.15.0"),
        ],
        1.0,
    );
    o.0
}

fn elasticsearch_exporter(ctx: &Ctx, pod: &Value) -> String {
    let ns = obj::namespace(pod);
    let app = obj::str_at(pod, "/metadata/labels/app").unwrap_or("elasticsearch");
    let sel = LabelSelector::parse(&format!("app={app}")).ok();
    let peers = ctx.client.list("", "pods", Some(ns), sel.as_ref());
    let ready = peers
        .iter()
        .filter(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
        .count();
    let want = ctx
        .client
        .get("apps", "statefulsets", Some(ns), app)
        .and_then(|s| s.pointer("/spec/replicas").and_then(Value::as_u64))
        .unwrap_or(peers.len() as u64) as usize;
    let color = if ready == 0 {
        "red"
    } else if ready >= want {
        "green"
    } else {
        "yellow"
    };
    let mut o = Exposition(String::new());
    o.head(
        "elasticsearch_cluster_health_up",
        "Was the last scrape of the Elasticsearch cluster health endpoint successful.",
        "gauge",
    );
    o.sample(
        "elasticsearch_cluster_health_up",
        &[],
        f64::from(u8::from(ready > 0)),
    );
    o.head(
        "elasticsearch_cluster_health_number_of_nodes",
        "Number of nodes in the cluster.",
        "gauge",
    );
    o.sample(
        "elasticsearch_cluster_health_number_of_nodes",
        &[("cluster", app)],
        ready as f64,
    );
    o.head(
        "elasticsearch_cluster_health_status",
        "Whether all primary and replica shards are allocated.",
        "gauge",
    );
    for c in ["green", "yellow", "red"] {
        o.sample(
            "elasticsearch_cluster_health_status",
            &[("cluster", app), ("color", c)],
            f64::from(u8::from(c == color)),
        );
    }
    o.0
}

// ----- Prometheus: discovery and scraping ----------------------------------------------

/// One scrape target, as Prometheus's target manager holds it.
#[derive(Clone, Debug)]
struct Target {
    pool: String,
    labels: Labels,
    discovered: Labels,
    url: String,
    interval: String,
    timeout: String,
    honor_labels: bool,
    namespace: String,
    pod: Option<String>,
    port: u16,
    path: String,
}

/// What scraping a target gave.
struct Scraped {
    target: Target,
    when: DateTime<Utc>,
    duration: f64,
    result: Result<Vec<Series>, String>,
}

fn selector_matches(sel: Option<&Value>, o: &Value) -> bool {
    match sel {
        None | Some(Value::Null) => false,
        Some(s) => LabelSelector::from_label_selector_json(s).is_ok_and(|s| s.matches_object(o)),
    }
}

/// The ServiceMonitors the Prometheus object of `ns` selects (sorted by namespace, name).
fn service_monitors(ctx: &Ctx, prom_ns: &str) -> Vec<Value> {
    let c = &ctx.client;
    let proms = c.list("monitoring.coreos.com", "prometheuses", Some(prom_ns), None);
    let namespaces = c.list("", "namespaces", None, None);
    let mut out: Vec<Value> = Vec::new();
    for sm in c.list("monitoring.coreos.com", "servicemonitors", None, None) {
        let chosen = proms.iter().any(|p| {
            let ns_ok = match p.pointer("/spec/serviceMonitorNamespaceSelector") {
                None | Some(Value::Null) => obj::namespace(&sm) == obj::namespace(p),
                Some(sel) => namespaces
                    .iter()
                    .any(|n| obj::name(n) == obj::namespace(&sm) && selector_matches(Some(sel), n)),
            };
            ns_ok && selector_matches(p.pointer("/spec/serviceMonitorSelector"), &sm)
        });
        if chosen {
            out.push(sm);
        }
    }
    out.sort_by(|a, b| (obj::namespace(a), obj::name(a)).cmp(&(obj::namespace(b), obj::name(b))));
    out
}

/// The targets of the ServiceMonitors, as prometheus-operator's generated scrape
/// configs discover them (role endpoints).
fn discover(ctx: &Ctx, prom_ns: &str) -> Vec<Target> {
    let c = &ctx.client;
    let mut out = Vec::new();
    for sm in service_monitors(ctx, prom_ns) {
        let sm_ns = obj::namespace(&sm).to_string();
        let namespaces: Vec<String> =
            if sm.pointer("/spec/namespaceSelector/any") == Some(&Value::Bool(true)) {
                c.list("", "namespaces", None, None)
                    .iter()
                    .map(|n| obj::name(n).to_string())
                    .collect()
            } else if let Some(names) = sm
                .pointer("/spec/namespaceSelector/matchNames")
                .and_then(Value::as_array)
            {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            } else {
                vec![sm_ns.clone()]
            };
        let job_label = sm.pointer("/spec/jobLabel").and_then(Value::as_str);
        let sel = sm.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        for (i, ep) in sm
            .pointer("/spec/endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let pool = format!("serviceMonitor/{sm_ns}/{}/{i}", obj::name(&sm));
            let interval = ep["interval"].as_str().unwrap_or("30s").to_string();
            let timeout = ep["scrapeTimeout"].as_str().unwrap_or("10s").to_string();
            let path = ep["path"].as_str().unwrap_or("/metrics").to_string();
            let scheme = ep["scheme"].as_str().unwrap_or("http").to_string();
            let port_name = ep["port"].as_str();
            let target_port = ep.get("targetPort").filter(|v| !v.is_null());
            for ns in &namespaces {
                for svc in c.list("", "services", Some(ns), None) {
                    if !selector_matches(Some(&sel), &svc) {
                        continue;
                    }
                    let Some(eps) = c.get("", "endpoints", Some(ns), obj::name(&svc)) else {
                        continue;
                    };
                    for subset in eps["subsets"].as_array().into_iter().flatten() {
                        for p in subset["ports"].as_array().into_iter().flatten() {
                            let number = p["port"]
                                .as_u64()
                                .and_then(|n| u16::try_from(n).ok())
                                .unwrap_or(0);
                            let ok = match (port_name, target_port) {
                                (Some(name), _) => p["name"].as_str() == Some(name),
                                (None, Some(Value::Number(n))) => {
                                    n.as_u64() == Some(u64::from(number))
                                }
                                (None, Some(Value::String(s))) => {
                                    s.parse::<u16>().ok() == Some(number)
                                }
                                _ => true,
                            };
                            if !ok {
                                continue;
                            }
                            for (ready, key) in [(true, "addresses"), (false, "notReadyAddresses")]
                            {
                                for a in subset[key].as_array().into_iter().flatten() {
                                    let ip = a["ip"].as_str().unwrap_or("");
                                    let pod = (a.pointer("/targetRef/kind") == Some(&json!("Pod")))
                                        .then(|| {
                                            a.pointer("/targetRef/name").and_then(Value::as_str)
                                        })
                                        .flatten();
                                    let address = format!("{ip}:{number}");
                                    let job = job_label
                                        .and_then(|l| {
                                            svc.pointer(&format!(
                                                "/metadata/labels/{}",
                                                l.replace('~', "~0").replace('/', "~1")
                                            ))
                                        })
                                        .and_then(Value::as_str)
                                        .unwrap_or(obj::name(&svc));
                                    let mut labels = Labels::new();
                                    labels.insert("job".into(), job.into());
                                    labels.insert("instance".into(), address.clone());
                                    labels.insert("namespace".into(), ns.clone());
                                    labels.insert("service".into(), obj::name(&svc).into());
                                    if let Some(pn) = p["name"].as_str().filter(|s| !s.is_empty()) {
                                        labels.insert("endpoint".into(), pn.into());
                                    }
                                    let pod_obj = pod.and_then(|n| c.get("", "pods", Some(ns), n));
                                    if let Some(pn) = pod {
                                        labels.insert("pod".into(), pn.into());
                                    }
                                    if let Some(cn) = pod_obj
                                        .as_ref()
                                        .and_then(|po| container_by_port(po, number))
                                        .and_then(|c| c["name"].as_str())
                                    {
                                        labels.insert("container".into(), cn.into());
                                    }
                                    let mut discovered = Labels::new();
                                    discovered.insert("__address__".into(), address.clone());
                                    discovered
                                        .insert("__meta_kubernetes_namespace".into(), ns.clone());
                                    discovered.insert(
                                        "__meta_kubernetes_service_name".into(),
                                        obj::name(&svc).into(),
                                    );
                                    discovered.insert(
                                        "__meta_kubernetes_endpoint_ready".into(),
                                        ready.to_string(),
                                    );
                                    discovered.insert(
                                        "__meta_kubernetes_endpoint_port_name".into(),
                                        p["name"].as_str().unwrap_or("").into(),
                                    );
                                    discovered.insert(
                                        "__meta_kubernetes_endpoint_address_target_kind".into(),
                                        a.pointer("/targetRef/kind")
                                            .and_then(Value::as_str)
                                            .unwrap_or("")
                                            .into(),
                                    );
                                    discovered.insert(
                                        "__meta_kubernetes_endpoint_address_target_name".into(),
                                        a.pointer("/targetRef/name")
                                            .and_then(Value::as_str)
                                            .unwrap_or("")
                                            .into(),
                                    );
                                    if let Some(pn) = pod {
                                        discovered
                                            .insert("__meta_kubernetes_pod_name".into(), pn.into());
                                    }
                                    discovered.insert("__metrics_path__".into(), path.clone());
                                    discovered.insert("__scheme__".into(), scheme.clone());
                                    discovered
                                        .insert("__scrape_interval__".into(), interval.clone());
                                    discovered.insert("__scrape_timeout__".into(), timeout.clone());
                                    discovered.insert("job".into(), pool.clone());
                                    out.push(Target {
                                        pool: pool.clone(),
                                        labels,
                                        discovered,
                                        url: format!("{scheme}://{address}{path}"),
                                        interval: interval.clone(),
                                        timeout: timeout.clone(),
                                        honor_labels: ep["honorLabels"] == true,
                                        namespace: ns.clone(),
                                        pod: pod.map(String::from),
                                        port: number,
                                        path: path.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn scrape(ctx: &Ctx, t: &Target) -> Result<Vec<Series>, String> {
    let get = format!("Get \"{}\"", t.url);
    let pod = t
        .pod
        .as_deref()
        .and_then(|p| ctx.client.get("", "pods", Some(&t.namespace), p));
    let Some(pod) = pod else {
        return Err(format!("{get}: context deadline exceeded"));
    };
    let node = obj::str_at(&pod, "/spec/nodeName").unwrap_or("");
    if node.is_empty() || !ctx.power.is_on(node) {
        return Err(format!("{get}: context deadline exceeded"));
    }
    let Some(container) = container_by_port(&pod, t.port).filter(|c| listens(&pod, c, t.port))
    else {
        return Err(format!("{get}: {}", refused(&pod, t.port)));
    };
    let Some(handler) = ctx
        .sim
        .http_handler(container["image"].as_str().unwrap_or(""), t.port)
    else {
        return Err(format!("{get}: {}", refused(&pod, t.port)));
    };
    let resp = handler(&HttpRequest {
        method: "GET".into(),
        path: t.path.clone(),
        headers: vec![("accept".into(), "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1".into())],
        body: Vec::new(),
        namespace: t.namespace.clone(),
        pod: obj::name(&pod).to_string(),
    });
    if resp.status != 200 {
        let reason = match resp.status {
            404 => "Not Found",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        return Err(
            format!("server returned HTTP status {} {reason}", resp.status)
                .trim_end()
                .to_string(),
        );
    }
    Ok(promql::parse_exposition(&String::from_utf8_lossy(
        &resp.body,
    )))
}

fn scrape_all(ctx: &Ctx, prom_ns: &str) -> Vec<Scraped> {
    discover(ctx, prom_ns)
        .into_iter()
        .map(|target| {
            let when = now();
            let result = scrape(ctx, &target);
            let duration = 0.002 + (stable_hash(&[&target.url, "duration"]) % 40) as f64 / 1000.0;
            Scraped {
                target,
                when,
                duration,
                result,
            }
        })
        .collect()
}

/// Every series Prometheus holds now: `up` per target and the scraped samples with
/// the target's labels attached.
fn series(scraped: &[Scraped]) -> Vec<Series> {
    let mut out = Vec::new();
    for s in scraped {
        let mut up = s.target.labels.clone();
        up.insert("__name__".into(), "up".into());
        out.push(Series {
            labels: up,
            value: f64::from(u8::from(s.result.is_ok())),
        });
        for sample in s.result.iter().flatten() {
            let mut labels = sample.labels.clone();
            for (k, v) in &s.target.labels {
                match labels.get(k).cloned() {
                    Some(_) if s.target.honor_labels => {}
                    Some(theirs) => {
                        labels.insert(format!("exported_{k}"), theirs);
                        labels.insert(k.clone(), v.clone());
                    }
                    None => {
                        labels.insert(k.clone(), v.clone());
                    }
                }
            }
            labels.retain(|_, v| !v.is_empty());
            out.push(Series {
                labels,
                value: sample.value,
            });
        }
    }
    out
}

// ----- Prometheus/Thanos HTTP API -----------------------------------------------------

fn prom_ok(data: Value) -> HttpResponse {
    HttpResponse::json(200, &json!({"status": "success", "data": data}))
}

fn prom_err(status: u16, kind: &str, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"status": "error", "errorType": kind, "error": msg.into()}),
    )
}

/// Prometheus's timestamp parameter: unix seconds (float) or RFC 3339.
fn parse_time(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| secs(t.with_timezone(&Utc)))
}

fn time_param(
    ps: &[(String, String)],
    name: &str,
    default: Option<f64>,
) -> Result<f64, HttpResponse> {
    match param(ps, name) {
        None | Some("") => default.ok_or_else(|| {
            prom_err(
                400,
                "bad_data",
                format!("invalid parameter \"{name}\": cannot parse \"\" to a valid timestamp"),
            )
        }),
        Some(v) => parse_time(v).ok_or_else(|| {
            prom_err(
                400,
                "bad_data",
                format!("invalid parameter \"{name}\": cannot parse \"{v}\" to a valid timestamp"),
            )
        }),
    }
}

fn metric_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// A sample time as Prometheus prints it: seconds, at most three decimals, no `.0`.
fn time_json(t: f64) -> Value {
    let ms = (t * 1000.0).round();
    if ms % 1000.0 == 0.0 {
        json!((ms / 1000.0) as i64)
    } else {
        json!(ms / 1000.0)
    }
}

/// How much history a query API has, and where its samples come from.
struct History {
    /// Data older than this many seconds before now is gone.
    keep: f64,
}

fn parse_query(ps: &[(String, String)]) -> Result<promql::Expr, HttpResponse> {
    promql::parse(param(ps, "query").unwrap_or("")).map_err(|e| {
        let msg = match &e {
            QueryError::Unsupported(_) => e.to_string(),
            _ => format!("invalid parameter \"query\": {e}"),
        };
        prom_err(400, "bad_data", msg)
    })
}

fn instant_query(ctx: &Ctx, prom_ns: &str, ps: &[(String, String)], h: &History) -> HttpResponse {
    let expr = match parse_query(ps) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let t = match time_param(ps, "time", Some(secs(now()))) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let samples = if t < secs(now()) - h.keep {
        Vec::new()
    } else {
        series(&scrape_all(ctx, prom_ns))
    };
    match expr.eval(&samples) {
        promql::Value::Scalar(v) => {
            prom_ok(json!({"resultType": "scalar", "result": [time_json(t), format_value(v)]}))
        }
        promql::Value::Vector(v) => prom_ok(json!({
            "resultType": "vector",
            "result": v.iter().map(|s| json!({"metric": metric_json(&s.labels), "value": [time_json(t), format_value(s.value)]})).collect::<Vec<_>>(),
        })),
    }
}

fn range_query(ctx: &Ctx, prom_ns: &str, ps: &[(String, String)], h: &History) -> HttpResponse {
    let expr = match parse_query(ps) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let (start, end) = match (time_param(ps, "start", None), time_param(ps, "end", None)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if end < start {
        return prom_err(
            400,
            "bad_data",
            "end timestamp must not be before start time",
        );
    }
    let step = match param(ps, "step")
        .map(|s| s.parse::<f64>().ok().or_else(|| promql::parse_duration(s)))
    {
        Some(Some(s)) => s,
        Some(None) | None => {
            return prom_err(
                400,
                "bad_data",
                format!(
                    "invalid parameter \"step\": cannot parse \"{}\" to a valid duration",
                    param(ps, "step").unwrap_or("")
                ),
            )
        }
    };
    if step <= 0.0 {
        return prom_err(400, "bad_data", "zero or negative query resolution step widths are not accepted. Try a positive integer");
    }
    if (end - start) / step > MAX_POINTS {
        return prom_err(400, "bad_data", "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
    }
    let oldest = secs(now()) - h.keep;
    let steps: Vec<f64> = (0..=((end - start) / step).floor() as u64)
        .map(|i| start + i as f64 * step)
        .filter(|t| *t >= oldest)
        .collect();
    let samples = if steps.is_empty() {
        Vec::new()
    } else {
        series(&scrape_all(ctx, prom_ns))
    };
    let result: Vec<Value> = match expr.eval(&samples) {
        promql::Value::Scalar(v) => vec![json!({"metric": {}, "values": steps.iter().map(|t| json!([time_json(*t), format_value(v)])).collect::<Vec<_>>()})],
        promql::Value::Vector(v) => v
            .iter()
            .filter(|_| !steps.is_empty())
            .map(|s| json!({"metric": metric_json(&s.labels), "values": steps.iter().map(|t| json!([time_json(*t), format_value(s.value)])).collect::<Vec<_>>()}))
            .collect(),
    };
    prom_ok(json!({"resultType": "matrix", "result": result}))
}

/// Prometheus's defaults for the flags the operator's pods usually set.
const PROMETHEUS_FLAGS: &[(&str, &str)] = &[
    (
        "config.file",
        "/etc/prometheus/config_out/prometheus.env.yaml",
    ),
    ("storage.tsdb.path", "/prometheus"),
    ("storage.tsdb.retention.time", "15d"),
    ("storage.tsdb.retention.size", "0B"),
    ("web.listen-address", "0.0.0.0:9090"),
    ("web.enable-lifecycle", "false"),
    ("web.route-prefix", "/"),
    ("query.max-samples", "50000000"),
    ("query.timeout", "2m"),
    ("log.level", "info"),
];

fn prometheus_flags(pod: Option<&Value>) -> BTreeMap<String, String> {
    let mut flags: BTreeMap<String, String> = PROMETHEUS_FLAGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(c) = pod.and_then(|p| container_by_port(p, 9090)) {
        for a in c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some((k, v)) = a.trim_start_matches('-').split_once('=') {
                flags.insert(k.to_string(), v.to_string());
            } else if a.starts_with('-') {
                flags.insert(a.trim_start_matches('-').to_string(), "true".into());
            }
        }
    }
    flags
}

fn targets_json(scraped: &[Scraped], ps: &[(String, String)]) -> Value {
    let state = param(ps, "state").unwrap_or("any");
    let pool = param(ps, "scrapePool");
    let active: Vec<Value> = scraped
        .iter()
        .filter(|s| pool.is_none_or(|p| p == s.target.pool))
        .map(|s| {
            let t = &s.target;
            json!({
                "discoveredLabels": metric_json(&t.discovered),
                "labels": metric_json(&t.labels),
                "scrapePool": t.pool,
                "scrapeUrl": t.url,
                "globalUrl": t.url,
                "lastError": s.result.as_ref().err().cloned().unwrap_or_default(),
                "lastScrape": rfc3339(s.when),
                "lastScrapeDuration": s.duration,
                "health": if s.result.is_ok() { "up" } else { "down" },
                "scrapeInterval": t.interval,
                "scrapeTimeout": t.timeout,
            })
        })
        .collect();
    let active = if state == "dropped" {
        Vec::new()
    } else {
        active
    };
    json!({"activeTargets": active, "droppedTargets": []})
}

fn prometheus(ctx: &Ctx, req: &HttpRequest, _shared: &Shared) -> HttpResponse {
    let pod = pod_of(ctx, req);
    let flags = prometheus_flags(pod.as_ref());
    let retention = flags
        .get("storage.tsdb.retention.time")
        .cloned()
        .unwrap_or_else(|| "15d".into());
    let history = History {
        keep: promql::parse_duration(&retention)
            .filter(|d| *d > 0.0)
            .unwrap_or(15.0 * 86_400.0),
    };
    let ns = req.namespace.clone();
    let ps = params(req);
    let path = path_of(req);
    match path {
        "/api/v1/query" => instant_query(ctx, &ns, &ps, &history),
        "/api/v1/query_range" => range_query(ctx, &ns, &ps, &history),
        "/api/v1/targets" => prom_ok(targets_json(&scrape_all(ctx, &ns), &ps)),
        "/api/v1/labels" => {
            let names: BTreeSet<String> = series(&scrape_all(ctx, &ns))
                .into_iter()
                .flat_map(|s| s.labels.into_keys())
                .collect();
            prom_ok(json!(names))
        }
        "/api/v1/status/flags" => prom_ok(json!(flags)),
        "/api/v1/status/runtimeinfo" => {
            let started = pod
                .as_ref()
                .and_then(|p| obj::str_at(p, "/status/startTime"))
                .map(String::from)
                .unwrap_or_else(|| rfc3339(now()));
            prom_ok(json!({
                "startTime": started, "CWD": "/prometheus", "reloadConfigSuccess": true, "lastConfigTime": started,
                "corruptionCount": 0, "goroutineCount": 180, "GOMAXPROCS": 2, "GOMEMLIMIT": i64::MAX, "GOGC": "", "GODEBUG": "",
                "storageRetention": retention,
            }))
        }
        "/api/v1/status/buildinfo" => {
            let version = pod
                .as_ref()
                .and_then(|p| container_by_port(p, 9090))
                .map(|c| image_version(c["image"].as_str().unwrap_or("")))
                .unwrap_or_default();
            prom_ok(
                json!({"version": version, "revision": "", "branch": "HEAD", "buildUser": "root@stormdrill-twin", "buildDate": "", "goVersion": "go1.22.6"}),
            )
        }
        "/-/healthy" => HttpResponse::text(200, "Prometheus Server is Healthy.\n"),
        "/-/ready" => HttpResponse::text(200, "Prometheus Server is Ready.\n"),
        p => {
            if let Some(name) = p
                .strip_prefix("/api/v1/label/")
                .and_then(|r| r.strip_suffix("/values"))
            {
                let values: BTreeSet<String> = series(&scrape_all(ctx, &ns))
                    .into_iter()
                    .filter_map(|s| s.labels.get(name).cloned())
                    .collect();
                return prom_ok(json!(values));
            }
            if p.starts_with("/api/v1/") {
                return prom_err(
                    404,
                    "not_found",
                    format!("unsupported by the stormdrill twin's Prometheus: {p}"),
                );
            }
            HttpResponse::text(404, "404 page not found\n")
        }
    }
}

/// The namespace of the Prometheus Thanos queries (its sidecar/store): the
/// `prometheus-operated`/`prometheus-k8s` pods', else Thanos's own.
fn prometheus_namespace(ctx: &Ctx, fallback: &str) -> String {
    ctx.client
        .list("monitoring.coreos.com", "prometheuses", None, None)
        .first()
        .map(|p| obj::namespace(p).to_string())
        .unwrap_or_else(|| fallback.to_string())
}

fn thanos(ctx: &Ctx, req: &HttpRequest, _shared: &Shared) -> HttpResponse {
    let ns = prometheus_namespace(ctx, &req.namespace);
    let ps = params(req);
    let history = History {
        keep: THANOS_HISTORY.as_secs_f64(),
    };
    match path_of(req) {
        "/api/v1/query" => instant_query(ctx, &ns, &ps, &history),
        "/api/v1/query_range" => range_query(ctx, &ns, &ps, &history),
        "/-/healthy" => HttpResponse::text(200, "OK"),
        "/-/ready" => HttpResponse::text(200, "OK"),
        p if p.starts_with("/api/v1/") => prom_err(
            404,
            "not_found",
            format!("unsupported by the stormdrill twin's Thanos: {p}"),
        ),
        _ => HttpResponse::text(404, "404 page not found\n"),
    }
}

// ----- Loki ---------------------------------------------------------------------------

struct LokiStream {
    labels: Labels,
    /// (unix ns, line), oldest first.
    entries: VecDeque<(i64, String)>,
    last_seq: u64,
    /// The container's restarts when last shipped (its previous log then needs a look).
    restarts: u64,
}

#[derive(Default)]
struct LokiStore {
    streams: HashMap<(String, String, String), LokiStream>,
}

/// Where a Promtail pod pushes: (namespace, Service) of its `-client.url`.
fn promtail_target(pod: &Value) -> (String, String) {
    let ns = obj::namespace(pod).to_string();
    let url = containers(pod).find_map(|c| flag(c, "client.url"));
    let Some(url) = url else {
        return (ns, "loki".into());
    };
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(&url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    let mut parts = host.split('.');
    let svc = parts.next().unwrap_or("").to_string();
    (parts.next().map(String::from).unwrap_or(ns), svc)
}

fn has_ready_endpoint(ctx: &Ctx, ns: &str, svc: &str) -> bool {
    ctx.client
        .get("", "endpoints", Some(ns), svc)
        .and_then(|e| e["subsets"].as_array().cloned())
        .is_some_and(|ss| {
            ss.iter()
                .any(|s| s["addresses"].as_array().is_some_and(|a| !a.is_empty()))
        })
}

/// Nodes whose Promtail can push to Loki now.
fn shipping_nodes(ctx: &Ctx) -> BTreeSet<String> {
    let sel = LabelSelector::parse("app.kubernetes.io/name=promtail").expect("static selector");
    let mut out = BTreeSet::new();
    let mut reachable: HashMap<(String, String), bool> = HashMap::new();
    for p in ctx.client.list("", "pods", None, Some(&sel)) {
        if !obj::is_pod_ready(&p) || obj::is_terminating(&p) {
            continue;
        }
        let Some(node) = obj::str_at(&p, "/spec/nodeName").filter(|n| ctx.power.is_on(n)) else {
            continue;
        };
        let target = promtail_target(&p);
        let ok = *reachable
            .entry(target.clone())
            .or_insert_with(|| has_ready_endpoint(ctx, &target.0, &target.1));
        if ok {
            out.insert(node.to_string());
        }
    }
    out
}

fn stream_labels(pod: &Value, container: &str) -> Labels {
    let ns = obj::namespace(pod);
    let name = obj::name(pod);
    let app = obj::str_at(pod, "/metadata/labels/app.kubernetes.io~1name")
        .or_else(|| obj::str_at(pod, "/metadata/labels/app"))
        .unwrap_or("");
    let mut l = Labels::new();
    l.insert("namespace".into(), ns.into());
    l.insert("pod".into(), name.into());
    l.insert("container".into(), container.into());
    l.insert(
        "node_name".into(),
        obj::str_at(pod, "/spec/nodeName").unwrap_or("").into(),
    );
    if !app.is_empty() {
        l.insert("app".into(), app.into());
    }
    l.insert(
        "job".into(),
        format!("{ns}/{}", if app.is_empty() { container } else { app }),
    );
    l.insert("stream".into(), "stdout".into());
    l.insert(
        "filename".into(),
        format!(
            "/var/log/pods/{ns}_{name}_{}/{container}/0.log",
            obj::uid(pod)
        ),
    );
    l
}

/// Promtail's work: ships the new lines of containers on nodes it can push from.
fn ingest(ctx: &Ctx, shared: &Shared) {
    let nodes = shipping_nodes(ctx);
    if nodes.is_empty() {
        return;
    }
    let pods = ctx.client.list("", "pods", None, None);
    let mut store = shared.loki.lock().unwrap_or_else(|e| e.into_inner());
    for pod in &pods {
        if !obj::str_at(pod, "/spec/nodeName").is_some_and(|n| nodes.contains(n)) {
            continue;
        }
        let (ns, name) = (obj::namespace(pod).to_string(), obj::name(pod).to_string());
        let names: Vec<String> = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| {
                pod.pointer(&format!("/spec/{k}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        for c in names {
            let key = (ns.clone(), name.clone(), c.clone());
            let (last, shipped_restarts) = store
                .streams
                .get(&key)
                .map(|s| (s.last_seq, s.restarts))
                .unwrap_or((0, 0));
            // Only the lines after the last shipped one are copied out of the log.
            let (mut lines, restarts) = ctx.sim.log_lines_after(&ns, &name, &c, last);
            if restarts != shipped_restarts {
                let mut previous = ctx.sim.log_lines(&ns, &name, &c, true);
                previous.retain(|l| l.seq > last);
                previous.append(&mut lines);
                lines = previous;
            }
            if lines.is_empty() {
                if let Some(s) = store.streams.get_mut(&key) {
                    s.restarts = restarts;
                }
                continue;
            }
            lines.sort_by_key(|l| l.seq);
            let stream = store.streams.entry(key).or_insert_with(|| LokiStream {
                labels: stream_labels(pod, &c),
                entries: VecDeque::new(),
                last_seq: 0,
                restarts: 0,
            });
            stream.labels = stream_labels(pod, &c);
            stream.restarts = restarts;
            for l in lines {
                stream.last_seq = stream.last_seq.max(l.seq);
                stream
                    .entries
                    .push_back((l.time.timestamp_nanos_opt().unwrap_or(0), l.line));
            }
            while stream.entries.len() > LOKI_STREAM_CAP {
                stream.entries.pop_front();
            }
        }
    }
    if store.streams.len() > LOKI_MAX_STREAMS {
        let mut by_age: Vec<(i64, (String, String, String))> = store
            .streams
            .iter()
            .map(|(k, s)| (s.entries.back().map(|e| e.0).unwrap_or(0), k.clone()))
            .collect();
        by_age.sort();
        let excess = store.streams.len() - LOKI_MAX_STREAMS;
        for (_, k) in by_age.into_iter().take(excess) {
            store.streams.remove(&k);
        }
    }
}

async fn ingest_loop(ctx: Ctx, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut changes = ctx.sim.log_changes();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
            r = changes.changed() => if r.is_err() { return },
        }
        if *stop.borrow() {
            return;
        }
        let (c, s) = (ctx.clone(), shared.clone());
        let _ = tokio::task::spawn_blocking(move || ingest(&c, &s)).await;
        // Promtail batches (`batchwait` 1 s): at most one push a second; queries
        // ship what is pending themselves, so they never wait for it.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Loki's timestamps: integer nanoseconds (or seconds when small), float seconds,
/// or RFC 3339.
fn loki_time(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(if n.abs() > 100_000_000_000_000 {
            n
        } else {
            n.saturating_mul(1_000_000_000)
        });
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some((f * 1e9) as i64);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

fn loki_config(ctx: &Ctx, ns: &str) -> (String, Option<f64>) {
    let cm = ctx.client.get("", "configmaps", Some(ns), "loki-config");
    let data = |k: &str| {
        cm.as_ref()
            .and_then(|c| c.pointer(&format!("/data/{k}")))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let retention = data("retention_period").unwrap_or_else(|| "0s".into());
    let store = data("object_store").unwrap_or_default();
    let keep = promql::parse_duration(&retention).filter(|d| *d > 0.0);
    let yaml = format!(
        "target: all\nauth_enabled: false\nserver:\n  http_listen_port: 3100\n  grpc_listen_port: 9095\ncommon:\n  path_prefix: /var/loki\n  replication_factor: 1\nschema_config:\n  configs:\n  - from: \"2024-01-01\"\n    store: tsdb\n    object_store: s3\n    schema: v13\n    index:\n      prefix: index_\n      period: 24h\nstorage_config:\n  aws:\n    s3: {store}\n    s3forcepathstyle: true\nlimits_config:\n  retention_period: {retention}\n  max_entries_limit_per_query: {LOKI_MAX_ENTRIES}\n  max_query_lookback: 0s\ncompactor:\n  working_directory: /var/loki/compactor\n  retention_enabled: {}\n  delete_request_store: s3\n",
        keep.is_some()
    );
    (yaml, keep)
}

fn loki_err(status: u16, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::text(status, msg.into() + "\n")
}

fn logql_error(e: &QueryError) -> HttpResponse {
    match e {
        QueryError::Parse { col, msg } => loki_err(400, format!("parse error at line 1, col {col}: {msg}")),
        QueryError::Unsupported(what) => loki_err(400, format!("unsupported by the stormdrill twin's Loki: {what} (supported: stream selectors with line filters)")),
        QueryError::Invalid(msg) => loki_err(400, format!("parse error : {msg}")),
    }
}

fn loki_range(ctx: &Ctx, shared: &Shared, ns: &str, ps: &[(String, String)]) -> HttpResponse {
    let Some(query) = param(ps, "query") else {
        return loki_err(400, "parse error : syntax error: unexpected $end");
    };
    let q = match promql::parse_log_query(query) {
        Ok(q) => q,
        Err(e) => return logql_error(&e),
    };
    let limit = match param(ps, "limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return loki_err(
                400,
                format!("invalid limit: {}", param(ps, "limit").unwrap_or("")),
            )
        }
    };
    if limit > LOKI_MAX_ENTRIES {
        return loki_err(400, format!("max entries limit per query exceeded, limit > max_entries_limit ({limit} > {LOKI_MAX_ENTRIES})"));
    }
    let now_ns = now().timestamp_nanos_opt().unwrap_or(0);
    let end = match param(ps, "end").map(loki_time) {
        None => now_ns,
        Some(Some(t)) => t,
        Some(None) => {
            return loki_err(
                400,
                format!(
                    "cannot parse \"{}\" to a valid timestamp",
                    param(ps, "end").unwrap_or("")
                ),
            )
        }
    };
    let since = param(ps, "since")
        .and_then(promql::parse_duration)
        .unwrap_or(3600.0);
    let start = match param(ps, "start").map(loki_time) {
        None => end - (since * 1e9) as i64,
        Some(Some(t)) => t,
        Some(None) => {
            return loki_err(
                400,
                format!(
                    "cannot parse \"{}\" to a valid timestamp",
                    param(ps, "start").unwrap_or("")
                ),
            )
        }
    };
    if end < start {
        return loki_err(
            400,
            "end timestamp must not be before or equal to start time",
        );
    }
    let backward = param(ps, "direction").unwrap_or("backward") != "forward";
    let (_, keep) = loki_config(ctx, ns);
    let oldest = keep.map(|k| now_ns - (k * 1e9) as i64).unwrap_or(i64::MIN);
    ingest(ctx, shared);
    let store = shared.loki.lock().unwrap_or_else(|e| e.into_inner());
    // Every matching entry, then the `limit` first in the query's direction.
    let mut hits: Vec<(i64, usize, &str)> = Vec::new();
    let mut streams: Vec<&LokiStream> = store
        .streams
        .values()
        .filter(|s| q.selects(&s.labels))
        .collect();
    streams.sort_by(|a, b| a.labels.cmp(&b.labels));
    for (i, s) in streams.iter().enumerate() {
        for (t, line) in &s.entries {
            if *t >= start && *t < end && *t >= oldest && q.keeps(line) {
                hits.push((*t, i, line));
            }
        }
    }
    hits.sort_by_key(|(t, i, _)| (*t, *i));
    if backward {
        hits.reverse();
    }
    hits.truncate(limit);
    let mut per_stream: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    let mut bytes = 0usize;
    for (t, i, line) in &hits {
        bytes += line.len();
        per_stream
            .entry(*i)
            .or_default()
            .push(json!([t.to_string(), line]));
    }
    let result: Vec<Value> = per_stream
        .into_iter()
        .map(|(i, values)| json!({"stream": metric_json(&streams[i].labels), "values": values}))
        .collect();
    HttpResponse::json(
        200,
        &json!({"status": "success", "data": {"resultType": "streams", "result": result, "stats": {"summary": {
            "bytesProcessedPerSecond": bytes * 1000, "linesProcessedPerSecond": hits.len() * 1000,
            "totalBytesProcessed": bytes, "totalLinesProcessed": hits.len(), "execTime": 0.001, "queueTime": 0.0,
            "subqueries": 0, "totalEntriesReturned": hits.len(), "splits": 0, "shards": 0,
        }}}}),
    )
}

fn loki_labels(shared: &Shared, ps: &[(String, String)], name: Option<&str>) -> HttpResponse {
    let now_ns = now().timestamp_nanos_opt().unwrap_or(0);
    let end = param(ps, "end").and_then(loki_time).unwrap_or(now_ns);
    let start = param(ps, "start")
        .and_then(loki_time)
        .unwrap_or(end - 6 * 3600 * 1_000_000_000);
    let store = shared.loki.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = BTreeSet::new();
    for s in store.streams.values() {
        if !s.entries.iter().any(|(t, _)| *t >= start && *t < end) {
            continue;
        }
        match name {
            None => out.extend(s.labels.keys().cloned()),
            Some(n) => out.extend(s.labels.get(n).cloned()),
        }
    }
    HttpResponse::json(200, &json!({"status": "success", "data": out}))
}

fn loki(ctx: &Ctx, req: &HttpRequest, shared: &Shared) -> HttpResponse {
    let ps = params(req);
    let ns = req.namespace.clone();
    match path_of(req) {
        "/loki/api/v1/query_range" => loki_range(ctx, shared, &ns, &ps),
        "/loki/api/v1/query" => loki_err(400, "log queries are not supported as an instant query type, please change your query to a range query type"),
        "/loki/api/v1/labels" | "/loki/api/v1/label" => {
            ingest(ctx, shared);
            loki_labels(shared, &ps, None)
        }
        "/ready" => HttpResponse::text(200, "ready\n"),
        "/config" => {
            let mut r = HttpResponse::text(200, loki_config(ctx, &ns).0);
            r.headers = vec![("content-type".into(), "text/plain; charset=utf-8".into())];
            r
        }
        "/loki/api/v1/status/buildinfo" => {
            let version = pod_of(ctx, req).and_then(|p| container_by_port(&p, 3100).map(|c| image_version(c["image"].as_str().unwrap_or("")))).unwrap_or_default();
            HttpResponse::json(200, &json!({"version": version, "revision": "", "branch": "HEAD", "buildUser": "root@stormdrill-twin", "buildDate": "", "goVersion": "go1.22.6"}))
        }
        p => match p.strip_prefix("/loki/api/v1/label/").and_then(|r| r.strip_suffix("/values")) {
            Some(name) => {
                ingest(ctx, shared);
                loki_labels(shared, &ps, Some(name))
            }
            None => HttpResponse::text(404, "404 page not found\n"),
        },
    }
}

// ----- Grafana ------------------------------------------------------------------------

struct Dashboard {
    id: u64,
    uid: String,
    title: String,
    tags: Vec<String>,
    json: Value,
    file: String,
    created: String,
}

fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_string()
}

/// The dashboards Grafana's sidecar provisioned from labelled ConfigMaps.
fn dashboards(ctx: &Ctx, ns: &str) -> Vec<Dashboard> {
    let sel = LabelSelector::parse("grafana_dashboard=1").expect("static selector");
    let mut cms = ctx.client.list("", "configmaps", Some(ns), Some(&sel));
    cms.sort_by(|a, b| {
        (obj::str_at(a, "/metadata/creationTimestamp"), obj::name(a))
            .cmp(&(obj::str_at(b, "/metadata/creationTimestamp"), obj::name(b)))
    });
    let mut out: Vec<Dashboard> = Vec::new();
    for cm in &cms {
        let Some(data) = cm["data"].as_object() else {
            continue;
        };
        for (file, text) in data.iter().filter(|(k, _)| k.ends_with(".json")) {
            let Ok(json) = serde_json::from_str::<Value>(text.as_str().unwrap_or("")) else {
                continue;
            };
            let title = json["title"].as_str().unwrap_or("").to_string();
            if title.is_empty() {
                continue;
            }
            let uid = json["uid"].as_str().map(String::from).unwrap_or_else(|| {
                format!("{:x}", stable_hash(&[file]))
                    .chars()
                    .take(9)
                    .collect()
            });
            if out.iter().any(|d| d.uid == uid) {
                continue;
            }
            out.push(Dashboard {
                id: out.len() as u64 + 1,
                uid,
                title,
                tags: json["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
                json,
                file: file.clone(),
                created: obj::str_at(cm, "/metadata/creationTimestamp")
                    .unwrap_or("")
                    .to_string(),
            });
        }
    }
    out
}

fn grafana(ctx: &Ctx, req: &HttpRequest, _shared: &Shared) -> HttpResponse {
    let ps = params(req);
    let path = path_of(req);
    match path {
        "/api/health" => {
            let version = pod_of(ctx, req)
                .and_then(|p| {
                    container_by_port(&p, 3000)
                        .map(|c| image_version(c["image"].as_str().unwrap_or("")))
                })
                .unwrap_or_default();
            HttpResponse::json(
                200,
                &json!({"commit": "83b9528bce85f7ea6bd1a0f8b7e5df3a2a6bd25a", "database": "ok", "version": version}),
            )
        }
        "/api/search" => {
            if param(&ps, "type").is_some_and(|t| t != "dash-db") {
                return HttpResponse::json(200, &json!([]));
            }
            let query = param(&ps, "query").unwrap_or("").to_lowercase();
            let tags: Vec<&str> = ps
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.as_str())
                .collect();
            let uids: Vec<&str> = ps
                .iter()
                .filter(|(k, _)| k == "dashboardUIDs")
                .flat_map(|(_, v)| v.split(','))
                .collect();
            let limit = param(&ps, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(1000);
            let mut ds = dashboards(ctx, &req.namespace);
            ds.sort_by_key(|d| d.title.to_lowercase());
            let hits: Vec<Value> = ds
                .iter()
                .filter(|d| query.is_empty() || d.title.to_lowercase().contains(&query))
                .filter(|d| tags.iter().all(|t| d.tags.iter().any(|x| x == t)))
                .filter(|d| uids.is_empty() || uids.contains(&d.uid.as_str()))
                .take(limit)
                .map(|d| {
                    let s = slug(&d.title);
                    json!({"id": d.id, "uid": d.uid, "title": d.title, "uri": format!("db/{s}"), "url": format!("/d/{}/{s}", d.uid), "slug": "", "type": "dash-db", "tags": d.tags, "isStarred": false, "sortMeta": 0})
                })
                .collect();
            HttpResponse::json(200, &Value::Array(hits))
        }
        p => match p.strip_prefix("/api/dashboards/uid/") {
            Some(uid) => match dashboards(ctx, &req.namespace)
                .into_iter()
                .find(|d| d.uid == uid)
            {
                Some(d) => {
                    let s = slug(&d.title);
                    let mut dash = d.json.clone();
                    dash["id"] = json!(d.id);
                    dash["uid"] = json!(d.uid);
                    dash["version"] = json!(1);
                    HttpResponse::json(
                        200,
                        &json!({"dashboard": dash, "meta": {
                            "type": "db", "canSave": false, "canEdit": false, "canAdmin": false, "canStar": false, "canDelete": false,
                            "slug": s, "url": format!("/d/{}/{s}", d.uid), "expires": "0001-01-01T00:00:00Z", "created": d.created, "updated": d.created,
                            "updatedBy": "Anonymous", "createdBy": "Anonymous", "version": 1, "hasAcl": false, "isFolder": false,
                            "folderId": 0, "folderUid": "", "folderTitle": "General", "folderUrl": "", "provisioned": true,
                            "provisionedExternalId": d.file,
                        }}),
                    )
                }
                None => HttpResponse::json(404, &json!({"message": "Dashboard not found"})),
            },
            None => HttpResponse::json(404, &json!({"message": "Not found"})),
        },
    }
}

// ----- application log lines ------------------------------------------------------------

fn app_line(image: &str, pod: &Value, n: u64) -> String {
    let t = now();
    let iso = rfc3339(t);
    let name = obj::name(pod);
    let ip = obj::str_at(pod, "/status/hostIP").unwrap_or("10.0.0.1");
    let repo = image
        .split('@')
        .next()
        .unwrap_or(image)
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .split(':')
        .next()
        .unwrap_or("");
    match repo {
        "fastapi" => format!("INFO:     {ip}:{} - \"GET /health HTTP/1.1\" 200 OK", 40_000 + n % 20_000),
        "postgres" => format!("{} UTC [{}] LOG:  checkpoint complete: wrote {} buffers ({}.{}%); 0 WAL file(s) added, 0 removed, 0 recycled", t.format("%Y-%m-%d %H:%M:%S%.3f"), 60 + n % 5, 3 + n % 40, n % 2, n % 10),
        "prometheus" => format!("ts={iso} caller=head.go:1293 level=info component=tsdb msg=\"Head GC completed\" caller=truncateMemory duration=1.{}ms", n % 9),
        "loki" | "promtail" => format!("level=info ts={iso} caller=table_manager.go:136 index-store=tsdb-2024-01-01 msg=\"uploading tables\""),
        "grafana" => format!("logger=cleanup t={iso} level=info msg=\"Completed cleanup jobs\" duration={}.{}ms", 5 + n % 9, n % 10),
        "thanos" => format!("ts={iso} caller=endpointset.go:425 level=info component=endpointset msg=\"adding new sidecar\" address=prometheus-operated.monitoring.svc:10901"),
        "elasticsearch" => format!("{{\"@timestamp\":\"{iso}\", \"log.level\": \"INFO\", \"message\":\"low disk watermark [85%] no longer exceeded on [{name}]\", \"ecs.version\": \"1.2.0\",\"service.name\":\"ES_ECS\",\"event.dataset\":\"elasticsearch.server\",\"log.logger\":\"org.elasticsearch.cluster.routing.allocation.DiskThresholdMonitor\",\"elasticsearch.node.name\":\"{name}\",\"elasticsearch.cluster.name\":\"elasticsearch\"}}"),
        "redis" => format!("1:M {} * 100 changes in 300 seconds. Saving...", t.format("%d %b %Y %H:%M:%S%.3f")),
        "neo4j" => format!("{} INFO  Checkpoint triggered by \"Scheduled checkpoint for every 15 minutes threshold\" @ txId: {}", t.format("%Y-%m-%d %H:%M:%S%.3f%z"), 1000 + n),
        "influxdb" => format!("ts={iso} lvl=info msg=\"Retention policy deletion check (start)\" log_id=0pQ service=retention op_name=retention_delete_check"),
        "ceph" => format!("debug {} 7f3c2a7fe700  0 log_channel(cluster) log [DBG] : pgmap v{}: all PGs active+clean", t.format("%Y-%m-%dT%H:%M:%S%.3f+0000"), 1000 + n),
        "velero" => format!("time=\"{iso}\" level=info msg=\"Validating BackupStorageLocation\" backup-storage-location=velero/default controller=backup-storage-location logSource=\"pkg/controller/backup_storage_location_controller.go:141\""),
        "harbor-core" => format!("{iso} [INFO] [/server/middleware/log/log.go:56]: GET /api/v2.0/ping 200"),
        _ => format!("level=info ts={iso} msg=\"healthy\" component={repo}"),
    }
}

/// Logs one application line per running container of the stack's pods, every
/// [`APP_LOG_INTERVAL`] (the first after one interval).
async fn app_logs(ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let start = tokio::time::Instant::now() + APP_LOG_INTERVAL;
    let mut tick = tokio::time::interval_at(start, APP_LOG_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            return;
        }
        n += 1;
        let platform: BTreeSet<String> = ctx
            .client
            .list("", "namespaces", None, None)
            .iter()
            .filter(|ns| {
                obj::str_at(
                    ns,
                    &format!("/metadata/labels/{}", PLATFORM_LABEL.replace('/', "~1")),
                ) == Some(PLATFORM)
            })
            .map(|ns| obj::name(ns).to_string())
            .collect();
        for pod in ctx.client.list("", "pods", None, None) {
            if !platform.contains(obj::namespace(&pod)) || obj::is_terminating(&pod) {
                continue;
            }
            if !obj::str_at(&pod, "/spec/nodeName").is_some_and(|node| ctx.power.is_on(node)) {
                continue;
            }
            for c in containers(&pod) {
                let name = c["name"].as_str().unwrap_or("");
                if container_running(&pod, name) {
                    ctx.sim.log(
                        obj::namespace(&pod),
                        obj::name(&pod),
                        name,
                        &app_line(c["image"].as_str().unwrap_or(""), &pod, n),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_times() {
        let c = json!({"args": ["--web.listen-address=:9188", "-client.url=http://x.y.svc/push", "--log.level", "debug"]});
        assert_eq!(flag(&c, "web.listen-address").as_deref(), Some(":9188"));
        assert_eq!(
            flag(&c, "client.url").as_deref(),
            Some("http://x.y.svc/push")
        );
        assert_eq!(flag(&c, "log.level").as_deref(), Some("debug"));
        assert_eq!(loki_time("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(
            loki_time("1700000000000000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(loki_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_time("2024-01-01T00:00:00Z"), Some(1_704_067_200.0));
        assert_eq!(slug("Node Exporter Full"), "node-exporter-full");
        assert_eq!(image_version("grafana/grafana:10.4.8"), "10.4.8");
        let pod = json!({"metadata": {"namespace": "monitoring"}, "spec": {"containers": [{"args": ["-client.url=http://loki-gateway.monitoring.svc.cluster.local/loki/api/v1/push"]}]}});
        assert_eq!(
            promtail_target(&pod),
            ("monitoring".to_string(), "loki-gateway".to_string())
        );
    }
}
