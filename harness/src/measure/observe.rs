//! Observers: health of the system as timestamped samples, from Kubernetes watches
//! (kube-runtime `watcher`), never from polling the API.
//!
//! An [`Observer`] sends a [`HealthSample`] whenever its judgement (healthy, detail)
//! changes. [`ObserverSet`] runs several and keeps, per observer, only the healthy /
//! unhealthy transitions and the latest sample, so a long run stays small.
//! Ceph has no watch: [`CephObserver`] polls `ceph status -f json` through the toolbox
//! pod at an interval (default 1 s) and judges health and PG cleanliness.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, StreamExt as _};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Node, Pod},
};
use kube::{
    api::{DynamicObject, ListParams},
    core::GroupVersionKind,
    discovery::ApiResource,
    runtime::{watcher, WatchStreamExt as _},
    Api, Client, Resource, ResourceExt as _,
};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::steady::HealthTrack;
use crate::{
    fault::ceph::Toolbox,
    probe::{
        ceph::{self, CephProbeError, CephStatus, OsdState},
        k8s,
    },
};

/// How many unhealthy objects a sample's detail names.
const DETAIL_LIMIT: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("observer {name}: watch failed")]
    Watch {
        name: String,
        #[source]
        source: watcher::Error,
    },
}

/// One observation of health.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSample {
    pub observer: Arc<str>,
    pub at: Instant,
    pub wall: DateTime<Utc>,
    pub healthy: bool,
    /// e.g. `2/3 Ready; not Ready: api-7f9 (Pending)`.
    pub detail: String,
}

impl HealthSample {
    pub fn now(observer: Arc<str>, healthy: bool, detail: String) -> Self {
        HealthSample {
            observer,
            at: Instant::now(),
            wall: Utc::now(),
            healthy,
            detail,
        }
    }
}

pub type HealthTx = mpsc::UnboundedSender<HealthSample>;

/// A source of health samples. `run` sends a sample whenever its judgement changes and
/// returns when `tx` is closed (or fails); it is aborted when its set stops.
pub trait Observer: Send + 'static {
    /// Unique within a set, e.g. `pods-ready[api/app=api]`.
    fn name(&self) -> String;
    fn run(self: Box<Self>, tx: HealthTx) -> BoxFuture<'static, Result<(), ObserveError>>;
}

/// Health of one watched object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectHealth {
    Healthy,
    Unhealthy(String),
    /// Not counted (a Succeeded pod is done, not broken).
    Ignored,
}

/// Watches objects of kind `K` and judges each one; healthy when at least one object
/// counts and all counted objects are healthy (nothing to watch usually means a wrong
/// selector or namespace, not health).
pub struct WatchObserver<K> {
    name: String,
    api: Api<K>,
    config: watcher::Config,
    judge: fn(&K) -> ObjectHealth,
    /// Word in the detail, e.g. `Ready`, `available`.
    word: &'static str,
}

impl<K> WatchObserver<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(
        name: impl Into<String>,
        api: Api<K>,
        config: watcher::Config,
        judge: fn(&K) -> ObjectHealth,
        word: &'static str,
    ) -> Self {
        WatchObserver {
            name: name.into(),
            api,
            config,
            judge,
            word,
        }
    }
}

/// Pods matching `selector` (label selector, may be empty) in `namespace` are Ready.
pub fn pods_ready(client: &Client, namespace: &str, selector: &str) -> WatchObserver<Pod> {
    let name = if selector.is_empty() {
        format!("pods-ready[{namespace}]")
    } else {
        format!("pods-ready[{namespace}/{selector}]")
    };
    WatchObserver::new(
        name,
        Api::namespaced(client.clone(), namespace),
        watcher::Config::default().labels(selector),
        pod_health,
        "Ready",
    )
}

/// Every node is Ready.
pub fn nodes_ready(client: &Client) -> WatchObserver<Node> {
    WatchObserver::new(
        "nodes-ready",
        Api::all(client.clone()),
        watcher::Config::default(),
        node_health,
        "Ready",
    )
}

/// One node is Ready.
pub fn node_ready(client: &Client, node: &str) -> WatchObserver<Node> {
    WatchObserver::new(
        format!("node-ready[{node}]"),
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={node}")),
        node_health,
        "Ready",
    )
}

/// The Deployment has all its replicas available on its current generation.
pub fn deployment_available(
    client: &Client,
    namespace: &str,
    name: &str,
) -> WatchObserver<Deployment> {
    WatchObserver::new(
        format!("deployment-available[{namespace}/{name}]"),
        Api::namespaced(client.clone(), namespace),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        deployment_health,
        "available",
    )
}

/// The StatefulSet has all its replicas ready on its current generation.
pub fn statefulset_available(
    client: &Client,
    namespace: &str,
    name: &str,
) -> WatchObserver<StatefulSet> {
    WatchObserver::new(
        format!("statefulset-available[{namespace}/{name}]"),
        Api::namespaced(client.clone(), namespace),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        statefulset_health,
        "available",
    )
}

fn from_readiness(r: &k8s::Readiness) -> ObjectHealth {
    if r.total == 0 {
        ObjectHealth::Ignored
    } else if r.ready == r.total {
        ObjectHealth::Healthy
    } else {
        ObjectHealth::Unhealthy(
            r.not_ready
                .first()
                .map_or_else(String::new, |n| n.why.clone()),
        )
    }
}

pub fn pod_health(pod: &Pod) -> ObjectHealth {
    // Same rules as the readiness steps, one object at a time.
    from_readiness(&k8s::pod_readiness(std::slice::from_ref(pod)))
}

pub fn node_health(node: &Node) -> ObjectHealth {
    from_readiness(&k8s::node_readiness(std::slice::from_ref(node)))
}

fn replicas_health(
    desired: i32,
    ready: i32,
    generation: Option<i64>,
    observed: Option<i64>,
) -> ObjectHealth {
    if observed < generation {
        return ObjectHealth::Unhealthy(format!(
            "generation {} not yet observed",
            generation.unwrap_or_default()
        ));
    }
    if ready >= desired {
        ObjectHealth::Healthy
    } else {
        ObjectHealth::Unhealthy(format!("{ready}/{desired} replicas"))
    }
}

pub fn deployment_health(d: &Deployment) -> ObjectHealth {
    let desired = d.spec.replicas.unwrap_or(1);
    let status = d.status.as_ref();
    replicas_health(
        desired,
        status.and_then(|s| s.available_replicas).unwrap_or(0),
        d.metadata.generation,
        status.and_then(|s| s.observed_generation),
    )
}

pub fn statefulset_health(s: &StatefulSet) -> ObjectHealth {
    let desired = s.spec.replicas.unwrap_or(1);
    let status = s.status.as_ref();
    replicas_health(
        desired,
        status.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.metadata.generation,
        status.and_then(|s| s.observed_generation),
    )
}

/// Objects' health, updated one event at a time: a watch over 30,000 pods must not
/// re-judge them all on every event.
#[derive(Debug, Default)]
pub struct HealthState {
    counted: usize,
    unhealthy: BTreeMap<String, String>,
    /// Key -> counted, for objects seen.
    seen: HashMap<String, bool>,
}

impl HealthState {
    pub fn apply(&mut self, key: String, health: ObjectHealth) {
        self.delete(&key);
        match health {
            ObjectHealth::Ignored => {
                self.seen.insert(key, false);
            }
            ObjectHealth::Healthy => {
                self.counted += 1;
                self.seen.insert(key, true);
            }
            ObjectHealth::Unhealthy(why) => {
                self.counted += 1;
                self.unhealthy.insert(key.clone(), why);
                self.seen.insert(key, true);
            }
        }
    }

    pub fn delete(&mut self, key: &str) {
        if self.seen.remove(key) == Some(true) {
            self.counted -= 1;
            self.unhealthy.remove(key);
        }
    }

    pub fn healthy(&self) -> bool {
        self.counted > 0 && self.unhealthy.is_empty()
    }

    /// `3/3 Ready`, `1/3 Ready; not Ready: a (Pending), b (Ready=False)`, `none found`.
    pub fn detail(&self, word: &str) -> String {
        if self.counted == 0 {
            return "none found".to_owned();
        }
        let good = self.counted - self.unhealthy.len();
        let mut s = format!("{good}/{} {word}", self.counted);
        if !self.unhealthy.is_empty() {
            let listed: Vec<String> = self
                .unhealthy
                .iter()
                .take(DETAIL_LIMIT)
                .map(|(k, why)| {
                    if why.is_empty() {
                        k.clone()
                    } else {
                        format!("{k} ({why})")
                    }
                })
                .collect();
            s.push_str(&format!("; not {word}: {}", listed.join(", ")));
            if self.unhealthy.len() > DETAIL_LIMIT {
                s.push_str(&format!(
                    ", and {} more",
                    self.unhealthy.len() - DETAIL_LIMIT
                ));
            }
        }
        s
    }
}

impl<K> Observer for WatchObserver<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, tx: HealthTx) -> BoxFuture<'static, Result<(), ObserveError>> {
        Box::pin(async move {
            let name: Arc<str> = Arc::from(self.name.as_str());
            let stream = watcher(self.api, self.config).default_backoff();
            futures::pin_mut!(stream);
            let mut state = HealthState::default();
            // The (re)list in progress: swapped in whole at InitDone, like a reflector.
            let mut listing: Option<HealthState> = None;
            let mut last: Option<(bool, String)> = None;
            let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => {
                        listing = Some(HealthState::default());
                        continue;
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        if let Some(l) = listing.as_mut() {
                            l.apply(key(&o), (self.judge)(&o));
                        }
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        state = listing.take().unwrap_or_default();
                    }
                    Ok(watcher::Event::Apply(o)) => state.apply(key(&o), (self.judge)(&o)),
                    Ok(watcher::Event::Delete(o)) => state.delete(&key(&o)),
                    Err(e) => {
                        // The backoff retries; health is unknown, not changed.
                        tracing::debug!(observer = %name, error = %e, "watch error");
                        continue;
                    }
                }
                let now = (state.healthy(), state.detail(self.word));
                if last.as_ref() != Some(&now) {
                    let sample = HealthSample::now(name.clone(), now.0, now.1.clone());
                    if tx.send(sample).is_err() {
                        return Ok(());
                    }
                    last = Some(now);
                }
            }
            Ok(())
        })
    }
}

/// How often the Ceph observer asks by default (DESIGN: Ceph has no watch; 1 s).
pub const CEPH_INTERVAL: Duration = Duration::from_secs(1);
/// One poll's bound, finding the toolbox included: a hung `ceph` is a finding
/// (unhealthy, "did not answer"), not a stalled observer.
const CEPH_POLL_TIMEOUT: Duration = Duration::from_secs(10);

fn ceph_clusters() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ceph.rook.io", "v1", "CephCluster"),
        "cephclusters",
    )
}

/// Whether the cluster runs Ceph (a CephCluster exists): then Ceph's health is part
/// of steady state. A cluster without Rook's CRD has none.
pub async fn has_ceph(client: &Client) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ceph_clusters());
    api.list(&ListParams::default().limit(1))
        .await
        .is_ok_and(|l| !l.items.is_empty())
}

/// Every CephCluster's `status.ceph.health` is HEALTH_OK, from a watch. Rook refreshes
/// it on its own schedule (about once a minute on a real cluster), so steady state
/// uses [`ceph_health`]; this one is the watch-based view of the same signal.
pub fn cephcluster_health(client: &Client) -> WatchObserver<DynamicObject> {
    WatchObserver::new(
        "cephcluster-health",
        Api::all_with(client.clone(), &ceph_clusters()),
        watcher::Config::default(),
        cephcluster_judge,
        "HEALTH_OK",
    )
}

pub fn cephcluster_judge(o: &DynamicObject) -> ObjectHealth {
    match o
        .data
        .pointer("/status/ceph/health")
        .and_then(|h| h.as_str())
    {
        Some("HEALTH_OK") => ObjectHealth::Healthy,
        Some(other) => ObjectHealth::Unhealthy(other.to_owned()),
        // `status.phase` is not a health signal (DESIGN §1); no health yet is not OK.
        None => ObjectHealth::Unhealthy("no status.ceph.health".to_owned()),
    }
}

/// Where [`CephObserver`] gets `ceph status` from: the toolbox pod, or a script in tests.
pub trait CephSource: Send + 'static {
    fn status(&mut self) -> BoxFuture<'_, Result<CephStatus, CephProbeError>>;
}

/// `ceph status -f json` in the toolbox pod (pod exec, `probe::exec`), parsed by
/// [`CephStatus::parse`]. The pod is looked up again only after a failure: two list
/// calls a second would be most of the observer's cost.
pub struct ToolboxSource {
    client: Client,
    toolbox: Option<Toolbox>,
}

impl ToolboxSource {
    pub fn new(client: &Client) -> Self {
        ToolboxSource {
            client: client.clone(),
            toolbox: None,
        }
    }

    /// `ceph ARGS -f json` in the toolbox, found again only after a failure.
    async fn json(&mut self, args: &[&str]) -> Result<serde_json::Value, CephProbeError> {
        let toolbox = match self.toolbox.take() {
            Some(t) => t,
            None => Toolbox::find(&self.client).await?,
        };
        let v = toolbox.ceph_json(&self.client, args).await?;
        self.toolbox = Some(toolbox);
        Ok(v)
    }
}

impl CephSource for ToolboxSource {
    fn status(&mut self) -> BoxFuture<'_, Result<CephStatus, CephProbeError>> {
        Box::pin(async move { CephStatus::parse(&self.json(&["status"]).await?) })
    }
}

/// Ceph is healthy: HEALTH_OK and every PG active+clean, polled (Ceph has no watch).
pub struct CephObserver<S> {
    name: String,
    interval: Duration,
    source: S,
}

/// Ceph through the cluster's toolbox every `interval`.
pub fn ceph_health(client: &Client, interval: Duration) -> CephObserver<ToolboxSource> {
    CephObserver::new(ToolboxSource::new(client), interval)
}

impl<S: CephSource> CephObserver<S> {
    pub fn new(source: S, interval: Duration) -> Self {
        CephObserver {
            name: "ceph-health".to_owned(),
            // A zero interval would spin on the toolbox.
            interval: interval.max(Duration::from_millis(10)),
            source,
        }
    }
}

/// (healthy, detail) of one `ceph status`: healthy only with HEALTH_OK and every PG
/// active+clean; a status that could not be read or parsed (an absent PG list among
/// them) is unhealthy, never clean. The detail starts with the health word, e.g.
/// `HEALTH_WARN, 0/17 PGs active+clean; OSD_DOWN: 1 osds down; ...`.
pub fn ceph_judgement(status: &Result<CephStatus, CephProbeError>) -> (bool, String) {
    let s = match status {
        Ok(s) => s,
        Err(e) => {
            return (
                false,
                format!("ceph status unreadable: {}", crate::diag::one_line(e)),
            )
        }
    };
    let (clean, total) = (s.pgs_active_clean(), s.pgs_total());
    // No PG at all is no evidence of clean data.
    let healthy = s.health == "HEALTH_OK" && total > 0 && clean == total;
    let mut detail = format!("{}, {clean}/{total} PGs active+clean", s.health);
    if !s.checks.is_empty() {
        detail.push_str(&format!("; {}", s.describe_checks()));
    }
    if clean < total {
        detail.push_str(&format!("; {}", s.describe_unclean()));
    }
    (healthy, detail)
}

impl<S: CephSource> Observer for CephObserver<S> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, tx: HealthTx) -> BoxFuture<'static, Result<(), ObserveError>> {
        let this = *self;
        poll_until_closed(
            this.name,
            this.interval,
            tx,
            "ceph status",
            CephPoll(this.source),
        )
    }
}

/// One question an observer without a watch asks at every tick.
trait Poll: Send + 'static {
    /// (healthy, detail).
    fn judge(&mut self) -> BoxFuture<'_, (bool, String)>;
}

struct CephPoll<S>(S);

impl<S: CephSource> Poll for CephPoll<S> {
    fn judge(&mut self) -> BoxFuture<'_, (bool, String)> {
        Box::pin(async move { ceph_judgement(&self.0.status().await) })
    }
}

/// Reports `poll`'s (healthy, detail) every `interval` while it changes, until `tx`
/// closes: the loop of observers without a watch (Ceph answers only when asked).
/// `what` names the question in the timeout's detail.
fn poll_until_closed(
    name: String,
    interval: Duration,
    tx: HealthTx,
    what: &'static str,
    mut poll: impl Poll,
) -> BoxFuture<'static, Result<(), ObserveError>> {
    Box::pin(async move {
        let name: Arc<str> = Arc::from(name.as_str());
        let mut tick = tokio::time::interval(interval);
        // A slow answer delays the next poll instead of firing a burst after it.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<(bool, String)> = None;
        loop {
            tick.tick().await;
            let now = match tokio::time::timeout(CEPH_POLL_TIMEOUT, poll.judge()).await {
                Ok(judged) => judged,
                Err(_) => (
                    false,
                    format!(
                        "{what} did not answer within {} s",
                        CEPH_POLL_TIMEOUT.as_secs()
                    ),
                ),
            };
            if last.as_ref() != Some(&now) {
                let sample = HealthSample::now(name.clone(), now.0, now.1.clone());
                if tx.send(sample).is_err() {
                    return Ok(());
                }
                last = Some(now);
            }
        }
    })
}

/// One OSD is up and in (`ceph osd tree`, polled): Ceph can be HEALTH_OK again with
/// an OSD still out, its data moved elsewhere, so a fault on an OSD is over only when
/// that OSD is back.
pub struct OsdObserver {
    source: ToolboxSource,
    id: u32,
    interval: Duration,
}

/// OSD `id` up and in, asked every `interval`.
pub fn osd_up_in(client: &Client, id: u32, interval: Duration) -> OsdObserver {
    OsdObserver {
        source: ToolboxSource::new(client),
        id,
        interval: interval.max(Duration::from_millis(10)),
    }
}

/// (healthy, detail) of OSD `id` in a parsed `ceph osd tree`.
pub fn osd_judgement(tree: &Result<Vec<OsdState>, CephProbeError>, id: u32) -> (bool, String) {
    match tree {
        Err(e) => (
            false,
            format!("ceph osd tree unreadable: {}", crate::diag::one_line(e)),
        ),
        Ok(osds) => match osds.iter().find(|o| o.id == i64::from(id)) {
            None => (false, format!("osd.{id} not in the OSD tree")),
            Some(o) => (
                o.up && o.in_,
                format!(
                    "osd.{id} {} and {}",
                    if o.up { "up" } else { "down" },
                    if o.in_ { "in" } else { "out" }
                ),
            ),
        },
    }
}

impl Observer for OsdObserver {
    fn name(&self) -> String {
        format!("osd-up-in[{}]", self.id)
    }

    fn run(self: Box<Self>, tx: HealthTx) -> BoxFuture<'static, Result<(), ObserveError>> {
        let (name, interval) = (self.name(), self.interval);
        poll_until_closed(name, interval, tx, "ceph osd tree", *self)
    }
}

impl Poll for OsdObserver {
    fn judge(&mut self) -> BoxFuture<'_, (bool, String)> {
        Box::pin(async move {
            let tree = self.source.json(&["osd", "tree"]).await;
            osd_judgement(&tree.and_then(|v| ceph::parse_osd_tree(&v)), self.id)
        })
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// (at, healthy) when health flipped (the first sample included).
    transitions: Vec<(Instant, bool)>,
    latest: Option<HealthSample>,
}

#[derive(Debug, Default)]
struct HealthLog {
    observers: BTreeMap<Arc<str>, Entry>,
}

impl HealthLog {
    fn push(&mut self, s: HealthSample) {
        let e = self.observers.entry(s.observer.clone()).or_default();
        if e.transitions.last().is_none_or(|t| t.1 != s.healthy) {
            e.transitions.push((s.at, s.healthy));
        }
        e.latest = Some(s);
    }
}

/// Latest state of one observer.
#[derive(Clone, Debug, PartialEq)]
pub struct ObserverStatus {
    pub name: String,
    /// None until the observer's first sample.
    pub healthy: Option<bool>,
    pub detail: String,
}

/// Running observers and what they reported.
pub struct ObserverSet {
    log: Arc<Mutex<HealthLog>>,
    tx: HealthTx,
    changes: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ObserverSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverSet")
            .field("observers", &self.names())
            .finish_non_exhaustive()
    }
}

impl Default for ObserverSet {
    fn default() -> Self {
        Self::new()
    }
}

impl ObserverSet {
    /// Needs a Tokio runtime: it spawns the task that collects samples.
    pub fn new() -> Self {
        let log = Arc::new(Mutex::new(HealthLog::default()));
        let (tx, mut rx) = mpsc::unbounded_channel::<HealthSample>();
        let (changes_tx, changes) = watch::channel(0u64);
        let collector = {
            let log = log.clone();
            tokio::spawn(async move {
                while let Some(s) = rx.recv().await {
                    lock(&log).push(s);
                    changes_tx.send_modify(|n| *n += 1);
                }
            })
        };
        ObserverSet {
            log,
            tx,
            changes,
            tasks: vec![collector],
        }
    }

    /// Starts `observer`; until its first sample it counts as not healthy. A name
    /// already running is not started twice.
    pub fn spawn(&mut self, observer: Box<dyn Observer>) {
        let name: Arc<str> = Arc::from(observer.name());
        {
            let mut log = lock(&self.log);
            if log.observers.contains_key(&name) {
                return;
            }
            log.observers.insert(name.clone(), Entry::default());
        }
        let tx = self.tx.clone();
        self.tasks.push(tokio::spawn(async move {
            let failed = tx.clone();
            if let Err(e) = observer.run(tx).await {
                // An observer that died cannot vouch for health any more.
                let _ = failed.send(HealthSample::now(
                    name,
                    false,
                    format!("observer stopped: {}", crate::diag::one_line(&e)),
                ));
            }
        }));
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.log).observers.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        lock(&self.log)
            .observers
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Samples received so far: a progress signal for waits.
    pub fn changes(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Wakes on every sample.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub fn status(&self) -> Vec<ObserverStatus> {
        lock(&self.log)
            .observers
            .iter()
            .map(|(name, e)| ObserverStatus {
                name: name.to_string(),
                healthy: e.latest.as_ref().map(|s| s.healthy),
                detail: e
                    .latest
                    .as_ref()
                    .map_or_else(|| "no report yet".to_owned(), |s| s.detail.clone()),
            })
            .collect()
    }

    /// Health tracks in seconds since `origin` (negative before it).
    pub fn tracks(&self, origin: Instant) -> Vec<HealthTrack> {
        lock(&self.log)
            .observers
            .iter()
            .map(|(name, e)| HealthTrack {
                name: name.to_string(),
                samples: e
                    .transitions
                    .iter()
                    .map(|(at, h)| (secs_since(origin, *at), *h))
                    .collect(),
            })
            .collect()
    }

    /// Stops every observer.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for ObserverSet {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn secs_since(origin: Instant, at: Instant) -> f64 {
    match at.checked_duration_since(origin) {
        Some(d) => d.as_secs_f64(),
        None => -(origin - at).as_secs_f64(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn health_state_counts_incrementally() {
        let mut s = HealthState::default();
        assert!(!s.healthy());
        assert_eq!(s.detail("Ready"), "none found");
        s.apply("ns/a".into(), ObjectHealth::Healthy);
        s.apply("ns/b".into(), ObjectHealth::Unhealthy("Pending".into()));
        s.apply("ns/job".into(), ObjectHealth::Ignored);
        assert!(!s.healthy());
        assert_eq!(s.detail("Ready"), "1/2 Ready; not Ready: ns/b (Pending)");
        s.apply("ns/b".into(), ObjectHealth::Healthy);
        assert!(s.healthy());
        assert_eq!(s.detail("Ready"), "2/2 Ready");
        s.delete("ns/a");
        s.delete("ns/job");
        s.delete("ns/never-seen");
        assert_eq!(s.detail("Ready"), "1/1 Ready");
        for i in 0..8 {
            s.apply(format!("ns/p{i}"), ObjectHealth::Unhealthy(String::new()));
        }
        assert!(
            s.detail("Ready").ends_with("ns/p4, and 3 more"),
            "{}",
            s.detail("Ready")
        );
    }

    #[test]
    fn object_judgements() {
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: p}\nstatus:\n  phase: Running\n  conditions: [{type: Ready, status: \"False\", reason: ContainersNotReady}]\n",
        )
        .unwrap();
        assert_eq!(
            pod_health(&pod),
            ObjectHealth::Unhealthy("Running; Ready=False, ContainersNotReady".into())
        );
        let done: Pod =
            serde_yaml::from_str("metadata: {name: j}\nstatus: {phase: Succeeded}\n").unwrap();
        assert_eq!(pod_health(&done), ObjectHealth::Ignored);
        let d: Deployment = serde_yaml::from_str(
            "metadata: {name: api, generation: 3}\nspec: {replicas: 3, selector: {}, template: {}}\nstatus: {observedGeneration: 3, availableReplicas: 2}\n",
        )
        .unwrap();
        assert_eq!(
            deployment_health(&d),
            ObjectHealth::Unhealthy("2/3 replicas".into())
        );
        let s: StatefulSet = serde_yaml::from_str(
            "metadata: {name: pg, generation: 2}\nspec: {replicas: 1, selector: {}, template: {}, serviceName: pg}\nstatus: {replicas: 1, observedGeneration: 1, readyReplicas: 1}\n",
        )
        .unwrap();
        assert_eq!(
            statefulset_health(&s),
            ObjectHealth::Unhealthy("generation 2 not yet observed".into())
        );
    }

    // Trimmed from the real captures in fixtures/upstream/ceph/ (Ceph 16.2, a
    // three-OSD drill): healthy-status.json, degraded-status.json and
    // healthok-but-peering-status.json, with the keys the judgement reads.
    const HEALTHY: &str = r#"{"health": {"status": "HEALTH_OK", "checks": {}, "mutes": []},
        "osdmap": {"epoch": 19, "num_osds": 3, "num_up_osds": 3, "osd_up_since": 1795647400,
                   "num_in_osds": 3, "osd_in_since": 1795647392, "num_remapped_pgs": 0},
        "pgmap": {"pgs_by_state": [{"state_name": "active+clean", "count": 17}],
                  "num_pgs": 17, "num_pools": 2, "num_objects": 3061}}"#;
    const DEGRADED: &str = r#"{"health": {"status": "HEALTH_WARN", "checks": {
            "OSD_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1 osds down", "count": 1}, "muted": false},
            "PG_DEGRADED": {"severity": "HEALTH_WARN", "summary": {"message": "Degraded data redundancy: 5055/15165 objects degraded (33.333%), 16 pgs degraded", "count": 16}, "muted": false}},
            "mutes": []},
        "osdmap": {"epoch": 21, "num_osds": 3, "num_up_osds": 2, "osd_up_since": 1795647475,
                   "num_in_osds": 3, "osd_in_since": 1795647392, "num_remapped_pgs": 0},
        "pgmap": {"pgs_by_state": [{"state_name": "active+undersized+degraded", "count": 16},
                                   {"state_name": "active+undersized", "count": 1}],
                  "num_pgs": 17, "num_pools": 2, "num_objects": 5055, "degraded_objects": 5055}}"#;
    const HEALTHOK_PEERING: &str = r#"{"health": {"status": "HEALTH_OK", "checks": {}, "mutes": []},
        "osdmap": {"epoch": 30, "num_osds": 3, "num_up_osds": 3, "num_in_osds": 3, "num_remapped_pgs": 4},
        "pgmap": {"pgs_by_state": [{"state_name": "active+clean", "count": 9},
                                   {"state_name": "remapped+peering", "count": 4},
                                   {"state_name": "peering", "count": 4}],
                  "num_pgs": 17, "num_pools": 2, "inactive_pgs_ratio": 0.47058823704719543}}"#;

    fn status(json: &str) -> Result<CephStatus, CephProbeError> {
        CephStatus::parse(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn an_osd_is_healthy_only_up_and_in() {
        let osd = |id, up, in_| OsdState { id, up, in_ };
        let tree = Ok(vec![
            osd(0, true, true),
            osd(1, true, false),
            osd(2, false, true),
        ]);
        assert_eq!(osd_judgement(&tree, 0), (true, "osd.0 up and in".into()));
        assert_eq!(osd_judgement(&tree, 1), (false, "osd.1 up and out".into()));
        assert_eq!(osd_judgement(&tree, 2), (false, "osd.2 down and in".into()));
        assert_eq!(
            osd_judgement(&tree, 3),
            (false, "osd.3 not in the OSD tree".into())
        );
    }

    #[test]
    fn ceph_judgement_on_real_captures() {
        assert_eq!(
            ceph_judgement(&status(HEALTHY)),
            (true, "HEALTH_OK, 17/17 PGs active+clean".to_owned())
        );
        let (healthy, detail) = ceph_judgement(&status(DEGRADED));
        assert!(!healthy);
        assert_eq!(
            detail,
            "HEALTH_WARN, 0/17 PGs active+clean; OSD_DOWN: 1 osds down; PG_DEGRADED: \
             Degraded data redundancy: 5055/15165 objects degraded (33.333%), 16 pgs degraded; \
             active+undersized+degraded: 16, active+undersized: 1"
        );
        // Ceph says OK while 8 PGs still peer: not healthy (no I/O on those PGs).
        assert_eq!(
            ceph_judgement(&status(HEALTHOK_PEERING)),
            (
                false,
                "HEALTH_OK, 9/17 PGs active+clean; remapped+peering: 4, peering: 4".to_owned()
            )
        );
    }

    #[test]
    fn an_absent_pg_list_is_an_error_never_clean() {
        let mut v: serde_json::Value = serde_json::from_str(HEALTHY).unwrap();
        v["pgmap"].as_object_mut().unwrap().remove("pgs_by_state");
        let (healthy, detail) = ceph_judgement(&CephStatus::parse(&v));
        assert!(!healthy);
        assert_eq!(
            detail,
            "ceph status unreadable: `ceph status` output lacks pgmap.pgs_by_state"
        );
        // An empty list with no PG counted: no evidence of clean data either.
        v["pgmap"] = serde_json::json!({"pgs_by_state": [], "num_pgs": 0});
        assert_eq!(
            ceph_judgement(&CephStatus::parse(&v)),
            (false, "HEALTH_OK, 0/0 PGs active+clean".to_owned())
        );
    }

    /// Answers a script of `ceph status` outputs, then repeats the last one.
    struct ScriptedCeph(std::collections::VecDeque<&'static str>, Arc<Mutex<u32>>);

    impl CephSource for ScriptedCeph {
        fn status(&mut self) -> BoxFuture<'_, Result<CephStatus, CephProbeError>> {
            *self.1.lock().unwrap() += 1;
            let json = if self.0.len() > 1 {
                self.0.pop_front().unwrap()
            } else {
                self.0[0]
            };
            Box::pin(async move { status(json) })
        }
    }

    #[tokio::test]
    async fn the_ceph_observer_polls_and_reports_changes_only() {
        let polls = Arc::new(Mutex::new(0));
        let script = [HEALTHY, HEALTHY, DEGRADED, "{}", DEGRADED, HEALTHY];
        let observer = CephObserver::new(
            ScriptedCeph(script.into_iter().collect(), polls.clone()),
            Duration::from_millis(5),
        );
        assert_eq!(observer.name(), "ceph-health");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Box::new(observer).run(tx));
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a sample within 5 s")
                .unwrap();
            seen.push((s.healthy, s.detail.split(',').next().unwrap().to_owned()));
        }
        assert_eq!(
            seen,
            [
                (true, "HEALTH_OK".to_owned()),
                (false, "HEALTH_WARN".to_owned()),
                (
                    false,
                    "ceph status unreadable: `ceph status` output lacks health.status".to_owned()
                ),
                (false, "HEALTH_WARN".to_owned()),
                (true, "HEALTH_OK".to_owned()),
            ]
        );
        // It keeps polling; an unchanged judgement sends nothing.
        let before = *polls.lock().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(*polls.lock().unwrap() > before + 2);
        assert!(rx.try_recv().is_err());
        task.abort();
    }

    #[test]
    fn cephcluster_health_is_status_ceph_health() {
        let cc = |status: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "ceph.rook.io/v1", "kind": "CephCluster",
                "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
                "status": status,
            }))
            .unwrap()
        };
        assert_eq!(
            cephcluster_judge(&cc(
                serde_json::json!({"phase": "Ready", "ceph": {"health": "HEALTH_OK"}})
            )),
            ObjectHealth::Healthy
        );
        assert_eq!(
            cephcluster_judge(&cc(
                serde_json::json!({"phase": "Ready", "ceph": {"health": "HEALTH_WARN"}})
            )),
            ObjectHealth::Unhealthy("HEALTH_WARN".into())
        );
        // phase Ready alone says nothing about health.
        assert_eq!(
            cephcluster_judge(&cc(serde_json::json!({"phase": "Ready"}))),
            ObjectHealth::Unhealthy("no status.ceph.health".into())
        );
    }

    /// Reports a scripted series of health states, then idles.
    struct Scripted(&'static str, Vec<bool>);

    impl Observer for Scripted {
        fn name(&self) -> String {
            self.0.to_owned()
        }

        fn run(self: Box<Self>, tx: HealthTx) -> BoxFuture<'static, Result<(), ObserveError>> {
            Box::pin(async move {
                for h in self.1 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let _ = tx.send(HealthSample::now(Arc::from(self.0), h, format!("{h}")));
                }
                std::future::pending::<()>().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn the_set_keeps_transitions_only() {
        let origin = Instant::now();
        let mut set = ObserverSet::new();
        set.spawn(Box::new(Scripted(
            "a",
            vec![true, true, false, false, true],
        )));
        set.spawn(Box::new(Scripted("b", vec![])));
        set.spawn(Box::new(Scripted("a", vec![false])));
        let mut changes = set.subscribe();
        tokio::time::timeout(Duration::from_secs(5), changes.wait_for(|n| *n >= 5))
            .await
            .expect("samples arrive")
            .unwrap();
        let tracks = set.tracks(origin);
        assert_eq!(tracks.len(), 2);
        let a: Vec<bool> = tracks[0].samples.iter().map(|s| s.1).collect();
        assert_eq!(a, [true, false, true]);
        assert!(tracks[0].samples.windows(2).all(|w| w[0].0 <= w[1].0));
        let status = set.status();
        assert_eq!(status[0].healthy, Some(true));
        assert_eq!(status[1].healthy, None);
        assert_eq!(status[1].detail, "no report yet");
        set.stop();
    }
}
