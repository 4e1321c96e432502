//! What replaces Kubernetes itself: the embedded control plane's controllers, each
//! following one upstream component (named in each module) — the scheduler,
//! kube-controller-manager's workload, endpoints, disruption and node lifecycle
//! controllers. They act on the store through the in-process [`Client`], react to
//! every change of the kinds they watch and resync periodically for time-based
//! transitions (delays from [`Timing`]).
//!
//! Contract: they run only when the twin is the control plane
//! (`ControlPlaneKind::Embedded`); on a real control plane the real ones do this
//! work. They build on the shared context ([`crate::ctx`]) and may use the
//! simulated world ([`crate::world`]); nothing below them imports from here.
//!
//! [`Client`]: crate::client::Client
//! [`Timing`]: crate::timing::Timing

use tokio::sync::watch;

use crate::ctx::Ctx;

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod job;
pub mod nodes;
pub mod pdb;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;
pub mod workloads;

/// Starts every controller of the embedded control plane (none on a real one);
/// they stop when `stop` turns true.
pub fn spawn_all(ctx: Ctx, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    if !ctx.control_plane.embedded() {
        return Vec::new();
    }
    vec![
        // The node lifecycle controller, with the kubelets' heartbeats in its pass.
        tokio::spawn(nodes::run(ctx.clone(), stop.clone())),
        tokio::spawn(scheduler::run(ctx.clone(), stop.clone())),
        tokio::spawn(endpoints::run(ctx.clone(), stop.clone())),
        tokio::spawn(pdb::run(ctx.clone(), stop.clone())),
        tokio::spawn(replicaset::run(ctx.clone(), stop.clone())),
        tokio::spawn(deployment::run(ctx.clone(), stop.clone())),
        tokio::spawn(statefulset::run(ctx.clone(), stop.clone())),
        tokio::spawn(daemonset::run(ctx.clone(), stop.clone())),
        tokio::spawn(job::run(ctx.clone(), stop.clone())),
    ]
}
