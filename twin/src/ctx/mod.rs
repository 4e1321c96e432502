//! The context every part of the twin shares, at the bottom of its layers: the
//! in-process client, timing, seed and random source, ground truth, the machines'
//! power state and crash requests, and handles on the simulated world's state
//! (processes, volume data, Ceph, defects).
//!
//! Contract: nothing here runs by itself or acts on the cluster; it is the state
//! and the small helpers ([`obj`], [`reconcile_loop`], [`provisioners`]) that the
//! embedded control plane (`crate::controllers`), the simulated world
//! (`crate::world`), the operators, the stack's services and the data plane all
//! build on. Modules import it from here, never from `controllers`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::rngs::StdRng;

use crate::client::Client;
use crate::timing::Timing;
use crate::truth::Truth;

pub mod obj;
pub mod provisioners;
mod reconcile;

pub use reconcile::reconcile_loop;

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

/// What every controller, operator and simulated part of the world shares.
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
    pub provisioners: Arc<provisioners::Provisioners>,
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

    /// Whether a node's kubelet runs: the machine is powered on and has booted
    /// (`timing.node_boot` after it was powered on).
    pub fn kubelet_running(&self, node: &str) -> bool {
        if !self.power.is_on(node) {
            return false;
        }
        match self.power.since(node) {
            Some(t) => t.elapsed() >= self.timing.node_boot,
            None => true,
        }
    }

    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
