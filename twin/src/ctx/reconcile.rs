//! The loop every reconciler of the twin runs in: the embedded Kubernetes
//! controllers, the simulated world (kubelets, heartbeats, provisioners) and the
//! operators alike.
//!
//! Contract: `reconcile` sees the whole current state (level-triggered), runs after
//! every coalesced batch of changes to the kinds it watches and at least every
//! `timing.resync`, and never after `stop` turned true.

use tokio::sync::{broadcast, watch};

use super::Ctx;

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
