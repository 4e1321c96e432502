//! Kubelet (being written).
use tokio::sync::watch;

use super::Ctx;

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    super::reconcile_loop(ctx, &[("", "pods")], stop, |_| {}).await
}
