//! The twin's simulated control plane and nodes: controllers that act on the
//! store through the in-process [`Client`], each following one upstream component
//! (named in each module). They react to every change of the kinds they watch and
//! resync periodically for time-based transitions (delays from [`Timing`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::rngs::StdRng;
use tokio::sync::{broadcast, watch};

use crate::client::Client;
use crate::timing::Timing;
use crate::truth::Truth;

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod job;
pub mod kubelet;
pub mod nodes;
pub mod pdb;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;
pub mod volumes;
pub mod workloads;

/// Power state of the simulated machines (the provider endpoint flips it).
#[derive(Default)]
pub struct Power {
    /// node name -> (powered on, since)
    state: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Power {
    /// True unless the node was powered off (nodes start powered on).
    pub fn is_on(&self, node: &str) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .is_none_or(|(on, _)| *on)
    }

    /// When the node last changed power state (None: never since the twin started).
    pub fn since(&self, node: &str) -> Option<Instant> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .map(|(_, t)| *t)
    }

    /// Returns false when the node already was in that state.
    pub fn set(&self, node: &str, on: bool) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let was = st.get(node).is_none_or(|(o, _)| *o);
        if was == on && st.contains_key(node) {
            return false;
        }
        st.insert(node.to_string(), (on, Instant::now()));
        was != on
    }
}

/// Requests to crash a container (the twin's way to model a process dying).
#[derive(Default)]
pub struct Crashes {
    pending: Mutex<Vec<(String, String)>>,
}

impl Crashes {
    pub fn request(&self, namespace: &str, pod: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((namespace.to_string(), pod.to_string()));
    }

    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What every controller shares.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    /// The embedded control plane (the twin's own Kubernetes controllers run) or a
    /// real one (they stay off; only the simulated world acts).
    pub control_plane: crate::controlplane::ControlPlaneKind,
    pub timing: Timing,
    pub truth: Arc<Truth>,
    pub rng: Arc<Mutex<StdRng>>,
    pub power: Arc<Power>,
    pub crashes: Arc<Crashes>,
    pub sim: Arc<crate::sim::Sim>,
    /// The pods whose containers run real programs as local processes.
    pub procs: Arc<crate::procs::Runtime>,
    pub started: Instant,
    /// Storage backends that decide whether a provisioner can serve a claim.
    pub provisioners: Arc<crate::controllers::volumes::Provisioners>,
    /// What simulated programs wrote on PersistentVolumes.
    pub voldata: Arc<crate::voldata::VolumeData>,
    /// The Ceph cluster, once the Rook operator created it (None before).
    pub ceph: Arc<Mutex<Option<crate::stack::ceph::CephModel>>>,
    /// What the Rook operator, data plane and defects drive: the simulated model above
    /// or a real local Ceph cluster (`--ceph real`).
    pub ceph_backend: Arc<dyn crate::stack::ceph::backend::CephBackend>,
    /// The run's seed, for choices that must not depend on scheduling order.
    pub seed: u64,
    /// Generated names per prefix so far (see `workloads::random_suffix`).
    pub names: Arc<Mutex<HashMap<String, u64>>>,
    /// The misconfigurations the twin runs with (`crate::defects`).
    pub defects: Arc<crate::defects::Defects>,
}

impl Ctx {
    /// A delay from `range` fixed by the seed and `key` alone (e.g. pod name and
    /// stage), so concurrent controllers cannot reorder random draws between runs.
    pub fn jitter(
        &self,
        range: (std::time::Duration, std::time::Duration),
        key: &str,
    ) -> std::time::Duration {
        use rand::SeedableRng;
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, key).hash(&mut h);
        let mut rng = StdRng::seed_from_u64(h.finish());
        Timing::jitter(range, &mut rng)
    }

    /// Five characters for a generated name, fixed by the seed and `key`
    /// (upstream's alphabet: consonants and digits).
    pub fn name_suffix(&self, key: &str) -> String {
        use rand::{Rng, SeedableRng};
        use std::hash::{Hash, Hasher};
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, key).hash(&mut h);
        let mut rng = StdRng::seed_from_u64(h.finish());
        (0..5)
            .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
            .collect()
    }

    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs `reconcile` after every batch of changes to the watched kinds (group,
/// plural; empty = every kind) and at least every `timing.resync`, until `stop`.
/// Reconcilers are level-triggered: they look at the whole current state, so a
/// missed or coalesced change is harmless.
pub async fn reconcile_loop<F>(
    ctx: Ctx,
    watched: &'static [(&'static str, &'static str)],
    mut stop: watch::Receiver<bool>,
    mut reconcile: F,
) where
    F: FnMut(&Ctx) + Send,
{
    let mut changes = ctx.client.changes();
    let mut ticker = tokio::time::interval(ctx.timing.resync);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
            msg = changes.recv() => match msg {
                Ok(c) => {
                    let relevant = |g: &str, p: &str| watched.is_empty() || watched.iter().any(|(wg, wp)| *wg == g && *wp == p);
                    if !relevant(&c.key.res.group, &c.key.res.plural) {
                        continue;
                    }
                    // Coalesce a burst of changes into one pass.
                    while let Ok(_c) = changes.try_recv() {}
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        if *stop.borrow() {
            return;
        }
        reconcile(&ctx);
    }
}

/// Starts every controller; they stop when `stop` turns true.
pub fn spawn_all(ctx: Ctx, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    // The simulated world: nodes' kubelets (and their heartbeats) and the CSI
    // provisioners run against any control plane.
    let mut out = vec![
        tokio::spawn(kubelet::run(ctx.clone(), stop.clone())),
        tokio::spawn(volumes::run(ctx.clone(), stop.clone())),
    ];
    if ctx.control_plane.embedded() {
        out.push(tokio::spawn(nodes::run(ctx.clone(), stop.clone())));
    } else {
        // As the kubelet renews its Lease from a goroutine of its own: the real node
        // lifecycle controller marks a node NotReady after `node_monitor_grace` (1 s in
        // fast timing), so heartbeats must not queue behind the world's blocking writes.
        let (ctx, stop) = (ctx.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("twin-heartbeat".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(nodes::run(ctx, stop)),
                    Err(e) => {
                        tracing::error!(error = %e, "no runtime for the kubelets' heartbeats")
                    }
                }
            });
        match thread {
            Ok(t) => out.push(tokio::task::spawn_blocking(move || {
                let _ = t.join();
            })),
            Err(e) => tracing::error!(error = %e, "no thread for the kubelets' heartbeats"),
        }
    }
    // Kubernetes itself: only when the twin is the control plane.
    if ctx.control_plane.embedded() {
        out.extend([
            tokio::spawn(scheduler::run(ctx.clone(), stop.clone())),
            tokio::spawn(endpoints::run(ctx.clone(), stop.clone())),
            tokio::spawn(pdb::run(ctx.clone(), stop.clone())),
            tokio::spawn(replicaset::run(ctx.clone(), stop.clone())),
            tokio::spawn(deployment::run(ctx.clone(), stop.clone())),
            tokio::spawn(statefulset::run(ctx.clone(), stop.clone())),
            tokio::spawn(daemonset::run(ctx.clone(), stop.clone())),
            tokio::spawn(job::run(ctx.clone(), stop.clone())),
        ]);
    }
    out
}

/// Small helpers on JSON objects shared by the controllers.
pub mod obj {
    use serde_json::Value;

    pub fn name(o: &Value) -> &str {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn namespace(o: &Value) -> &str {
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn uid(o: &Value) -> &str {
        o.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Which run of a pod's containers this is: its uid and its containers' restarts
    /// (`UID/RESTARTS`); a new pod or a restarted container gives another value.
    pub fn incarnation(pod: &Value) -> String {
        let restarts: i64 = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
            .unwrap_or(0);
        format!("{}/{restarts}", uid(pod))
    }

    pub fn str_at<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
        o.pointer(pointer).and_then(Value::as_str)
    }

    pub fn is_terminating(o: &Value) -> bool {
        o.pointer("/metadata/deletionTimestamp").is_some()
    }

    /// The status of condition `kind` ("True"/"False"/"Unknown"), if present.
    pub fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
        o.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)?
            .get("status")?
            .as_str()
    }

    pub fn is_pod_ready(p: &Value) -> bool {
        condition(p, "Ready") == Some("True")
    }

    pub fn is_node_ready(n: &Value) -> bool {
        condition(n, "Ready") == Some("True")
    }

    /// The controller owner reference (kind, name, uid), if any.
    pub fn controller_of(o: &Value) -> Option<(&str, &str, &str)> {
        o.pointer("/metadata/ownerReferences")?
            .as_array()?
            .iter()
            .find(|r| r["controller"] == true)
            .map(|r| {
                (
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or(""),
                    r["uid"].as_str().unwrap_or(""),
                )
            })
    }

    /// Sets condition `kind` in a conditions array, keeping lastTransitionTime
    /// unless the status changes (as upstream controllers do).
    pub fn set_condition(
        conditions: &mut Vec<Value>,
        kind: &str,
        status: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) {
        if let Some(c) = conditions.iter_mut().find(|c| c["type"] == kind) {
            if c["status"] != status {
                c["lastTransitionTime"] = Value::String(now.to_string());
            }
            c["status"] = Value::String(status.to_string());
            c["reason"] = Value::String(reason.to_string());
            c["message"] = Value::String(message.to_string());
        } else {
            conditions.push(serde_json::json!({
                "type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": now,
            }));
        }
    }
}
