//! What replaces Kubernetes itself: the embedded API server and controllers (the
//! default), or a real control plane (`--control-plane real`: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler as processes, [`real`]).
//!
//! The simulated world — nodes and their kubelets, the operators, storage, the data
//! plane — runs against either through [`crate::client::Client`]. With the real
//! control plane the twin's own scheduler, workload, garbage-collection, namespace,
//! endpoints, disruption and node-lifecycle controllers stay off: the real ones act.

pub mod real;

/// Which control plane the twin's world joins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ControlPlaneKind {
    /// The twin's own API server and controllers.
    #[default]
    Embedded,
    /// Real kube-apiserver, etcd, controller manager and scheduler (built by
    /// scripts/k8s-setup.sh).
    Real,
}

impl ControlPlaneKind {
    /// True when the twin's own Kubernetes controllers must run.
    pub fn embedded(self) -> bool {
        self == ControlPlaneKind::Embedded
    }
}
