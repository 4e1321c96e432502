//! The simulated world under Kubernetes: the nodes' kubelets (pods' lifecycle and
//! their containers), the kubelets' heartbeats and the CSI provisioners with the
//! PV binder ([`volumes`]).
//!
//! Contract: runs against any API server — the embedded one or a real control
//! plane — through the same [`crate::client::Client`]; it builds on the shared
//! context ([`crate::ctx`]) and never on the embedded control plane
//! ([`crate::controllers`]), which runs only when the twin is the control plane.

use tokio::sync::watch;

use crate::ctx::Ctx;

pub mod heartbeat;
pub mod kubelet;
pub mod volumes;

/// Starts the simulated world; it stops when `stop` turns true. On the embedded
/// control plane the heartbeats run in the node lifecycle controller's pass
/// ([`crate::controllers::spawn_all`]); on a real one on a thread of their own.
pub fn spawn_all(ctx: Ctx, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut out = vec![
        tokio::spawn(kubelet::run(ctx.clone(), stop.clone())),
        tokio::spawn(volumes::run(ctx.clone(), stop.clone())),
    ];
    if ctx.control_plane.embedded() {
        return out;
    }
    // As the kubelet renews its Lease from a goroutine of its own: the real node
    // lifecycle controller marks a node NotReady after `node_monitor_grace` (1 s in
    // fast timing), so heartbeats must not queue behind the world's blocking writes.
    let thread = std::thread::Builder::new()
        .name("twin-heartbeat".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(heartbeat::run(ctx, stop)),
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
    out
}
