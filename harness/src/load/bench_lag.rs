//! `stormdrill bench` part (c): detection lag, from the twin's ground truth
//! (`/twin/v1/events`: when the twin itself changed a pod, a node or Ceph) to the
//! moment the harness's observers ([`crate::measure::observe`]) reported it.
//!
//! An embedded twin (fast timing) with the documented stack; then, one event at a
//! time so every change has one cause:
//! - pod Ready: a `fastapi` pod is deleted (grace 0); its replacement's Ready, as the
//!   pods-Ready watch reports it (the pod leaves the observer's not-Ready list);
//! - node NotReady / Ready: a node is powered off through the twin's provider
//!   endpoint, then on again, as the nodes-Ready watch reports it;
//! - Ceph HEALTH_WARN / HEALTH_OK: an OSD Deployment is scaled to 0, then back to 1,
//!   as the `ceph status` poll and the CephCluster watch report it.
//!
//! On the real control plane (`--control-plane real`) the stack does not run yet, so
//! the pods are those of a Deployment of 3 (`bench/bench-web`) and Ceph is not
//! measured; a node's NotReady is the real node-lifecycle controller's write, which
//! the twin records when its own watch of the API server delivers it (the earliest
//! it can know), so that lag is the harness's watch against the twin's.
//!
//! Both clocks are this process's wall clock (the twin runs in-process), so a lag is
//! a difference of two `Utc::now()` readings. A poll may read Ceph's new state before
//! the twin's Rook operator records it (every 100 ms in the fast profile), so its lag
//! can be slightly negative; a watch cannot.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    api::{Api, DeleteParams, ListParams, Patch, PatchParams},
    Client, ResourceExt as _,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    diag,
    measure::observe::{self, HealthSample, Observer},
    target::{
        self,
        power::{NodePower as _, TwinPower},
        ControlPlaneMode, TimingProfile,
    },
};

/// One wait for a change (ground truth or observer); a cycle that misses it counts
/// as missed and the bench moves on.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Ceph may take to be clean again before the next OSD cycle.
const CEPH_SETTLE: Duration = Duration::from_secs(90);
/// The whole part's bound: missed events end it early rather than let it hang.
const PART_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The DESIGN goal for watch-based signals (§8).
pub const GOAL_P99_MS: f64 = 50.0;

const API_NS: &str = "openalex";
const API_SELECTOR: &str = "app=fastapi";
const CEPH_NS: &str = "rook-ceph";
const OSD_SELECTOR: &str = "app=rook-ceph-osd";

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("cannot prepare the scratch folder")]
    Scratch(#[source] std::io::Error),
    #[error("cannot start a runtime for the twin")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the twin")]
    Twin(#[source] Box<target::TargetError>),
    #[error("cannot deploy the stack from {}", dir.display())]
    Stack {
        dir: PathBuf,
        #[source]
        source: Box<crate::stack::StackError>,
    },
    #[error("the stack was not ready: {0}")]
    NotReady(String),
    #[error("{what} failed")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the twin's ground truth (/twin/v1/events) is unreadable")]
    Truth(#[source] serde_json::Error),
    #[error("{what}")]
    Power {
        what: String,
        #[source]
        source: Box<target::power::PowerError>,
    },
    #[error("nothing to act on: {0}")]
    Nothing(String),
}

#[derive(Clone, Debug)]
pub struct LagOptions {
    /// Events per kind.
    pub events: usize,
    /// The stack's manifests.
    pub stack: PathBuf,
    /// The Ceph observer's poll interval.
    pub ceph_interval: Duration,
    pub seed: u64,
    /// (c) is measured on each, in turn.
    pub control_planes: Vec<ControlPlaneMode>,
}

/// Lags of one kind of event as one observer saw them.
#[derive(Clone, Debug, Serialize)]
pub struct LagFigure {
    /// e.g. `pod Ready`.
    pub event: String,
    pub observer: String,
    /// Watch-based (the DESIGN goal applies) or polled.
    pub watch: bool,
    pub measured: usize,
    pub wanted: usize,
    /// Events the twin recorded but the observer did not report within the timeout.
    pub missed: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LagReport {
    /// `embedded` or `real`.
    pub control_plane: String,
    pub timing: String,
    pub figures: Vec<LagFigure>,
    pub elapsed_s: f64,
    pub notes: Vec<String>,
}

impl LagReport {
    /// Whether every watch-based signal met the goal (None: nothing measured).
    pub fn watch_goal_met(&self) -> Option<bool> {
        let watched: Vec<f64> = self
            .figures
            .iter()
            .filter(|f| f.watch)
            .filter_map(|f| f.p99_ms)
            .collect();
        (!watched.is_empty()).then(|| watched.iter().all(|p| *p < GOAL_P99_MS))
    }
}

/// Nearest-rank percentile of sorted values (with 50 events, p99 is the largest).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// Collects one kind's lags.
struct Series {
    event: &'static str,
    observer: String,
    watch: bool,
    lags_ms: Vec<f64>,
    missed: usize,
}

impl Series {
    fn new(event: &'static str, observer: String, watch: bool) -> Self {
        Series {
            event,
            observer,
            watch,
            lags_ms: Vec::new(),
            missed: 0,
        }
    }

    fn add(&mut self, truth: &TruthEvent, seen: Option<&HealthSample>) {
        match seen {
            Some(s) => self.lags_ms.push(lag_ms(truth.wall, s.wall)),
            None => self.missed += 1,
        }
    }

    fn figure(mut self, wanted: usize) -> LagFigure {
        self.lags_ms.sort_by(f64::total_cmp);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        LagFigure {
            event: self.event.to_owned(),
            observer: self.observer,
            watch: self.watch,
            measured: self.lags_ms.len(),
            wanted,
            missed: self.missed,
            p50_ms: percentile(&self.lags_ms, 0.50).map(round),
            p99_ms: percentile(&self.lags_ms, 0.99).map(round),
            max_ms: self.lags_ms.last().copied().map(round),
        }
    }
}

fn lag_ms(truth: DateTime<Utc>, seen: DateTime<Utc>) -> f64 {
    (seen - truth)
        .num_microseconds()
        .map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// One ground-truth event, as `/twin/v1/events` serves it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TruthEvent {
    pub seq: u64,
    pub wall: DateTime<Utc>,
    pub kind: String,
    pub object: String,
    pub state: String,
}

/// Reads the twin's ground truth incrementally (`?since=`). The bench polls it every
/// 20 ms; that only delays when the bench learns of an event, not its timestamp.
struct Truth {
    client: Client,
    since: u64,
    pending: Vec<TruthEvent>,
}

impl Truth {
    async fn fetch(&mut self) -> Result<(), LagError> {
        let req = http::Request::get(format!("/twin/v1/events?since={}", self.since))
            .body(Vec::new())
            .expect("a static request is valid");
        let text = self
            .client
            .request_text(req)
            .await
            .map_err(|source| LagError::Api {
                what: "reading /twin/v1/events".into(),
                source,
            })?;
        let events: Vec<TruthEvent> = serde_json::from_str(&text).map_err(LagError::Truth)?;
        if let Some(last) = events.last() {
            self.since = last.seq;
        }
        self.pending.extend(events);
        Ok(())
    }

    /// Forgets what happened so far: the next wait sees only later events.
    async fn mark(&mut self) -> Result<(), LagError> {
        self.fetch().await?;
        self.pending.clear();
        Ok(())
    }

    /// The first event since the last mark (or match) that `pred` accepts; the events
    /// before it are dropped.
    async fn wait(
        &mut self,
        pred: impl Fn(&TruthEvent) -> bool,
    ) -> Result<Option<TruthEvent>, LagError> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(i) = self.pending.iter().position(&pred) {
                let e = self.pending[i].clone();
                self.pending.drain(..=i);
                return Ok(Some(e));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.fetch().await?;
        }
    }
}

/// An observer running on its own channel, with every sample it sent.
struct Watched {
    name: String,
    rx: mpsc::UnboundedReceiver<HealthSample>,
    seen: Vec<HealthSample>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watched {
    fn start(observer: Box<dyn Observer>) -> Self {
        let name = observer.name();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            if let Err(e) = observer.run(tx).await {
                tracing::warn!(error = %diag::one_line(&e), "bench observer stopped");
            }
        });
        Watched {
            name,
            rx,
            seen: Vec::new(),
            task,
        }
    }

    fn drain(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.seen.push(s);
        }
    }

    /// Index of the next sample to come.
    fn mark(&mut self) -> usize {
        self.drain();
        self.seen.len()
    }

    /// The first sample at index `from` or later that `pred` accepts, with its index.
    async fn wait(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&HealthSample) -> bool,
    ) -> Option<(usize, HealthSample)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut i = from;
        loop {
            self.drain();
            while i < self.seen.len() {
                if pred(&self.seen[i]) {
                    return Some((i, self.seen[i].clone()));
                }
                i += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(s)) => self.seen.push(s),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits until the latest sample is healthy.
    async fn settle(&mut self, timeout: Duration) -> bool {
        self.drain();
        if self.seen.last().is_some_and(|s| s.healthy) {
            return true;
        }
        let from = self.seen.len();
        self.wait(from, timeout, |s| s.healthy).await.is_some()
    }
}

/// Whether an observer's detail lists `key` among its unhealthy objects
/// (`2/3 Ready; not Ready: ns/a (Pending), ns/b`).
pub fn lists(detail: &str, key: &str) -> bool {
    let Some((_, listed)) = detail.split_once("; not ") else {
        return false;
    };
    let Some((_, listed)) = listed.split_once(": ") else {
        return false;
    };
    let with_why = format!("{key} (");
    listed
        .split(", ")
        .any(|entry| entry == key || entry.starts_with(&with_why))
}

/// Measures detection lag on an embedded twin; blocking, bounded by [`PART_TIMEOUT`].
///
/// The twin gets a runtime of its own, as an API server is a process of its own: the
/// lag then counts the twin serving the watch event and the harness receiving and
/// judging it, not the harness's tasks queueing behind the twin's controllers.
pub fn measure(opts: &LagOptions, control_plane: ControlPlaneMode) -> Result<LagReport, LagError> {
    let runtime = |workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("bench-lag")
            .enable_all()
            .build()
            .map_err(LagError::Runtime)
    };
    let (twin_rt, harness_rt) = (runtime(2)?, runtime(2)?);
    let dir = std::env::temp_dir().join(format!("stormdrill-bench-lag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(LagError::Scratch)?;
    let twin = twin_rt.block_on(target::serve_twin_with(
        0,
        opts.seed,
        TimingProfile::Fast,
        &[],
        target::TwinBackends {
            control_plane,
            ..Default::default()
        },
        &dir.join("kubeconfig"),
    ));
    let twin = match twin {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(LagError::Twin(Box::new(e)));
        }
    };
    let result = harness_rt.block_on(async {
        let client = twin
            .client()
            .await
            .map_err(|e| LagError::Twin(Box::new(e)))?;
        let provider = twin
            .provider_client()
            .await
            .map_err(|e| LagError::Twin(Box::new(e)))?;
        let on = on_twin(client, provider, opts, control_plane);
        match tokio::time::timeout(PART_TIMEOUT, on).await {
            Ok(r) => r,
            Err(_) => Err(LagError::Nothing(format!(
                "the part took longer than {} min",
                PART_TIMEOUT.as_secs() / 60
            ))),
        }
    });
    // The observers and their client go first, then the twin they talk to.
    drop(harness_rt);
    twin_rt.block_on(twin.stop());
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn on_twin(
    client: Client,
    provider: Client,
    opts: &LagOptions,
    control_plane: ControlPlaneMode,
) -> Result<LagReport, LagError> {
    let started = Instant::now();
    let mut report = LagReport {
        control_plane: control_plane.as_str().into(),
        timing: "fast".into(),
        ..LagReport::default()
    };
    let mut truth = Truth {
        client: provider.clone(),
        since: 0,
        pending: Vec::new(),
    };
    let n = opts.events;
    if control_plane == ControlPlaneMode::Real {
        bench_deployment(&client).await?;
        report.notes.push(format!(
            "a Deployment of 3 Ready in {:.1} s; events one at a time, {n} per kind; \
             Ceph not measured (the stack does not run on the real control plane yet)",
            started.elapsed().as_secs_f64(),
        ));
        report
            .figures
            .push(pods(&client, &mut truth, n, BENCH_PODS).await?.figure(n));
    } else {
        deploy_stack(&client, opts).await?;
        report.notes.push(format!(
            "stack deployed in {:.1} s; events one at a time, {n} per kind",
            started.elapsed().as_secs_f64(),
        ));
        report
            .figures
            .push(pods(&client, &mut truth, n, API_PODS).await?.figure(n));
        let (warn, ok) = ceph(&client, &mut truth, n, opts.ceph_interval).await?;
        report
            .figures
            .extend(warn.into_iter().chain(ok).map(|s| s.figure(n)));
    }
    let (down, up) = nodes(&client, &provider, &mut truth, n).await?;
    report.figures.push(down.figure(n));
    report.figures.push(up.figure(n));
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Which pods the pod-Ready events come from.
struct PodSet {
    namespace: &'static str,
    selector: &'static str,
    /// Every pod's name starts with it (its Deployment's name and a dash).
    prefix: &'static str,
}

const API_PODS: PodSet = PodSet {
    namespace: API_NS,
    selector: API_SELECTOR,
    prefix: "fastapi-",
};
const BENCH_PODS: PodSet = PodSet {
    namespace: "bench",
    selector: "app=bench-web",
    prefix: "bench-web-",
};

/// The Deployment [`BENCH_PODS`] come from, created and waited for Ready.
async fn bench_deployment(client: &Client) -> Result<(), LagError> {
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let pp = PatchParams::apply("stormdrill-bench").force();
    ns.patch(
        BENCH_PODS.namespace,
        &pp,
        &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": BENCH_PODS.namespace},
        })),
    )
    .await
    .map_err(api_err("creating namespace bench"))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), BENCH_PODS.namespace);
    deployments
        .patch(
            "bench-web",
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "bench-web"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "bench-web"}},
                    "template": {
                        "metadata": {"labels": {"app": "bench-web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                    },
                },
            })),
        )
        .await
        .map_err(api_err("creating deployment bench/bench-web"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = deployments
            .get("bench-web")
            .await
            .map_err(api_err("reading deployment bench/bench-web"))?;
        let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready == 3 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LagError::NotReady(format!(
                "deployment bench/bench-web: {ready}/3 Ready after 120 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deploy_stack(client: &Client, opts: &LagOptions) -> Result<(), LagError> {
    let deployed = crate::stack::deploy(client, &opts.stack, Duration::from_secs(120), |_| {})
        .await
        .map_err(|source| LagError::Stack {
            dir: opts.stack.clone(),
            source: Box::new(source),
        })?;
    if !deployed.not_ready.is_empty() {
        let list: Vec<String> = deployed
            .not_ready
            .iter()
            .map(|n| format!("{}: {}", n.object, n.reason))
            .collect();
        return Err(LagError::NotReady(list.join("; ")));
    }
    Ok(())
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> LagError {
    let what = what.into();
    move |source| LagError::Api { what, source }
}

async fn pods(
    client: &Client,
    truth: &mut Truth,
    n: usize,
    set: PodSet,
) -> Result<Series, LagError> {
    let PodSet {
        namespace,
        selector,
        prefix,
    } = set;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut watched = Watched::start(Box::new(observe::pods_ready(client, namespace, selector)));
    let mut series = Series::new("pod Ready", watched.name.clone(), true);
    let prefix = format!("{namespace}/{prefix}");
    for i in 0..n {
        if !watched.settle(EVENT_TIMEOUT).await {
            series.missed += 1;
            continue;
        }
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api_err("listing the API pods"))?;
        let mut names: Vec<String> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        names.sort();
        let Some(victim) = names.get(i % names.len().max(1)).cloned() else {
            return Err(LagError::Nothing(format!(
                "no pod {selector} in {namespace}"
            )));
        };
        truth.mark().await?;
        let from = watched.mark();
        api.delete(&victim, &DeleteParams::default().grace_period(0))
            .await
            .map_err(api_err(format!("deleting pod {victim}")))?;
        let gone = format!("{namespace}/{victim}");
        let Some(ready) = truth
            .wait(|e| {
                e.kind == "pod"
                    && e.state == "Ready"
                    && e.object.starts_with(&prefix)
                    && e.object != gone
            })
            .await?
        else {
            series.missed += 1;
            continue;
        };
        // Seen Ready: the new pod was on the not-Ready list, then is not.
        let key = ready.object.clone();
        let listed = watched
            .wait(from, EVENT_TIMEOUT, |s| lists(&s.detail, &key))
            .await;
        let seen = match listed {
            Some((at, _)) => watched
                .wait(at + 1, EVENT_TIMEOUT, |s| {
                    !lists(&s.detail, &key) && s.detail != "none found"
                })
                .await
                .map(|(_, s)| s),
            None => None,
        };
        series.add(&ready, seen.as_ref());
    }
    Ok(series)
}

async fn ceph(
    client: &Client,
    truth: &mut Truth,
    n: usize,
    interval: Duration,
) -> Result<([Series; 2], [Series; 2]), LagError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), CEPH_NS);
    let mut osds: Vec<String> = api
        .list(&ListParams::default().labels(OSD_SELECTOR))
        .await
        .map_err(api_err("listing the OSD Deployments"))?
        .items
        .iter()
        .map(|d| d.name_any())
        .collect();
    osds.sort();
    if osds.is_empty() {
        return Err(LagError::Nothing(format!(
            "no Deployment {OSD_SELECTOR} in {CEPH_NS}"
        )));
    }
    let mut poll = Watched::start(Box::new(observe::ceph_health(client, interval)));
    let mut watch = Watched::start(Box::new(observe::cephcluster_health(client)));
    let poll_name = format!("{} (every {} ms)", poll.name, interval.as_millis());
    let mut warn = [
        Series::new("Ceph HEALTH_WARN", poll_name.clone(), false),
        Series::new("Ceph HEALTH_WARN", watch.name.clone(), true),
    ];
    let mut ok = [
        Series::new("Ceph HEALTH_OK", poll_name, false),
        Series::new("Ceph HEALTH_OK", watch.name.clone(), true),
    ];
    let health = |word: &'static str| move |s: &HealthSample| s.detail.starts_with(word);
    let cc_warn = |s: &HealthSample| !s.healthy && s.detail.contains("(HEALTH_WARN)");
    let cc_ok = |s: &HealthSample| s.healthy;
    for i in 0..n {
        // Clean (HEALTH_OK and every PG active+clean) before each cycle.
        if !(poll.settle(CEPH_SETTLE).await && watch.settle(EVENT_TIMEOUT).await) {
            for s in warn.iter_mut().chain(ok.iter_mut()) {
                s.missed += 1;
            }
            continue;
        }
        let osd = &osds[i % osds.len()];
        truth.mark().await?;
        let (pf, wf) = (poll.mark(), watch.mark());
        scale(&api, osd, 0).await?;
        let down = truth
            .wait(|e| e.kind == "ceph" && e.state == "HEALTH_WARN")
            .await?;
        let seen_poll = poll.wait(pf, EVENT_TIMEOUT, health("HEALTH_WARN")).await;
        let seen_watch = watch.wait(wf, EVENT_TIMEOUT, cc_warn).await;
        if let Some(t) = &down {
            warn[0].add(t, seen_poll.as_ref().map(|x| &x.1));
            warn[1].add(t, seen_watch.as_ref().map(|x| &x.1));
        } else {
            warn[0].missed += 1;
            warn[1].missed += 1;
        }
        let (pf, wf) = (poll.mark(), watch.mark());
        scale(&api, osd, 1).await?;
        let up = truth
            .wait(|e| e.kind == "ceph" && e.state == "HEALTH_OK")
            .await?;
        let seen_poll = poll.wait(pf, CEPH_SETTLE, health("HEALTH_OK")).await;
        let seen_watch = watch.wait(wf, CEPH_SETTLE, cc_ok).await;
        if let Some(t) = &up {
            ok[0].add(t, seen_poll.as_ref().map(|x| &x.1));
            ok[1].add(t, seen_watch.as_ref().map(|x| &x.1));
        } else {
            ok[0].missed += 1;
            ok[1].missed += 1;
        }
    }
    Ok((warn, ok))
}

async fn scale(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), LagError> {
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_err(format!("scaling {CEPH_NS}/{name} to {replicas}")))?;
    Ok(())
}

async fn nodes(
    client: &Client,
    provider: &Client,
    truth: &mut Truth,
    n: usize,
) -> Result<(Series, Series), LagError> {
    let names: Vec<String> = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing the nodes"))?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    if names.is_empty() {
        return Err(LagError::Nothing("no node".into()));
    }
    let power = TwinPower::new(provider.clone());
    let mut watched = Watched::start(Box::new(observe::nodes_ready(client)));
    let mut down = Series::new("node NotReady", watched.name.clone(), true);
    let mut up = Series::new("node Ready", watched.name.clone(), true);
    for i in 0..n {
        if !watched.settle(EVENT_TIMEOUT).await {
            down.missed += 1;
            up.missed += 1;
            continue;
        }
        let node = &names[i % names.len()];
        let key = format!("/{node}");
        truth.mark().await?;
        let from = watched.mark();
        set_power(&power, node, false).await?;
        let off = truth
            .wait(|e| e.kind == "node" && &e.object == node && e.state == "NotReady")
            .await?;
        let listed = watched
            .wait(from, EVENT_TIMEOUT, |s| lists(&s.detail, &key))
            .await;
        match &off {
            Some(t) => down.add(t, listed.as_ref().map(|x| &x.1)),
            None => down.missed += 1,
        }
        // Always back on, whatever was missed.
        set_power(&power, node, true).await?;
        let on = truth
            .wait(|e| e.kind == "node" && &e.object == node && e.state == "Ready")
            .await?;
        let back = match &listed {
            Some((at, _)) => watched
                .wait(at + 1, EVENT_TIMEOUT, |s| !lists(&s.detail, &key))
                .await
                .map(|x| x.1),
            None => None,
        };
        match &on {
            Some(t) => up.add(t, back.as_ref()),
            None => up.missed += 1,
        }
    }
    Ok((down, up))
}

async fn set_power(power: &TwinPower, node: &str, on: bool) -> Result<(), LagError> {
    power
        .set_power(node, on)
        .await
        .map_err(|source| LagError::Power {
            what: format!("powering node {node} {}", if on { "on" } else { "off" }),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(25.0));
        assert_eq!(percentile(&v, 0.99), Some(50.0));
        assert_eq!(percentile(&v[..1], 0.99), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn observer_details_list_unhealthy_objects() {
        let d = "2/3 Ready; not Ready: openalex/fastapi-abc (Running; Ready=False, \
                 ContainersNotReady), openalex/fastapi-x";
        assert!(lists(d, "openalex/fastapi-abc"));
        assert!(lists(d, "openalex/fastapi-x"));
        assert!(!lists(d, "openalex/fastapi-ab"));
        assert!(!lists("3/3 Ready", "openalex/fastapi-abc"));
        assert!(lists(
            "2/3 Ready; not Ready: /dirqual1 (Ready=Unknown)",
            "/dirqual1"
        ));
        assert!(!lists("none found", "/dirqual1"));
    }

    #[test]
    fn ground_truth_parses_and_lags_subtract() {
        let events: Vec<TruthEvent> = serde_json::from_str(
            r#"[{"seq": 7, "mono_us": 1200, "wall": "2025-01-02T03:04:05.000100Z",
                 "kind": "pod", "object": "openalex/fastapi-1", "state": "Ready"}]"#,
        )
        .unwrap();
        assert_eq!(events[0].seq, 7);
        let seen: DateTime<Utc> = "2025-01-02T03:04:05.002600Z".parse().unwrap();
        assert_eq!(lag_ms(events[0].wall, seen), 2.5);
        let mut s = Series::new("pod Ready", "pods".into(), true);
        s.add(&events[0], None);
        let f = s.figure(50);
        assert_eq!((f.measured, f.missed, f.p99_ms), (0, 1, None));
    }
}
