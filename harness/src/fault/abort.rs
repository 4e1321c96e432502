//! Abort conditions: the run stops injecting, reverts what it injected and exits 3.
//!
//! - Ceph HEALTH_ERR: every CephCluster's `status.ceph.health` is watched from the
//!   first injection on, and checked again before each one.
//! - Error rate: [`error_rate_breached`] judges the load's closed windows (the
//!   profile's `abort.error_rate_pct` and `abort.windows`): the fault steps check it
//!   before each injection, and the drill on every window that closes from the
//!   fault's t0 until the degraded period ends or the scenario's last fault is
//!   reverted (`Drill::watch_error_rate`): with nothing injected there is nothing for
//!   an abort to stop, and a system that does not come back fails its recovery
//!   criterion instead.
//!
//! Whatever triggers it, the run waits on [`Abort::triggered`] beside the features
//! and the signals (run.rs), then sweeps the journal.

use std::sync::Arc;

use futures::StreamExt as _;
use kube::{
    api::{Api, DynamicObject, ListParams},
    core::GroupVersionKind,
    discovery::ApiResource,
    runtime::watcher,
    Client, ResourceExt,
};
use tokio::sync::watch;

use crate::measure::window::WindowSummary;

/// The run's abort switch; clones share it. The first reason wins.
#[derive(Clone, Debug)]
pub struct Abort {
    tx: Arc<watch::Sender<Option<String>>>,
}

impl Default for Abort {
    fn default() -> Self {
        Abort {
            tx: Arc::new(watch::channel(None).0),
        }
    }
}

impl Abort {
    pub fn trigger(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.tx.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            // Said of aborts and of guard refusals alike, which both stop the run.
            tracing::warn!(%reason, "stopping the run");
            *r = Some(reason);
            true
        });
    }

    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Resolves with the reason once triggered.
    pub async fn triggered(&self) -> String {
        let mut rx = self.tx.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            // The sender lives as long as self.
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

fn ceph_clusters() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ceph.rook.io", "v1", "CephCluster"),
        "cephclusters",
    )
}

/// `Ceph reports HEALTH_ERR (CephCluster rook-ceph/rook-ceph)` when it does.
pub fn health_err_reason(obj: &DynamicObject) -> Option<String> {
    let health = obj.data.pointer("/status/ceph/health")?.as_str()?;
    (health == "HEALTH_ERR").then(|| {
        format!(
            "Ceph reports HEALTH_ERR (CephCluster {}/{})",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        )
    })
}

/// Checks every CephCluster now; the reason to abort, if any. No Rook, no reason.
pub async fn check_ceph(client: &Client) -> Option<String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ceph_clusters());
    let list = api.list(&ListParams::default()).await.ok()?;
    list.items.iter().find_map(health_err_reason)
}

/// Watches CephClusters and triggers `abort` on HEALTH_ERR; returns at once when the
/// API serves no CephCluster kind.
pub async fn watch_ceph(client: Client, abort: Abort) {
    let api: Api<DynamicObject> = Api::all_with(client, &ceph_clusters());
    if api.list(&ListParams::default().limit(1)).await.is_err() {
        return;
    }
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = events.next().await {
        let objs: Vec<DynamicObject> = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "CephCluster watch");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Some(reason) = objs.iter().find_map(health_err_reason) {
            abort.trigger(reason);
            return;
        }
    }
}

/// The error-rate abort condition: the last `windows` closed windows all had an error
/// rate above `threshold_pct` (windows without completed requests do not count as
/// good: a dead API completes nothing).
pub fn error_rate_breached(
    closed: &[WindowSummary],
    threshold_pct: f64,
    windows: usize,
) -> Option<String> {
    if windows == 0 || closed.len() < windows {
        return None;
    }
    let last = &closed[closed.len() - windows..];
    let bad = |w: &WindowSummary| w.counts.completed() == 0 || w.error_rate_pct() > threshold_pct;
    last.iter().all(bad).then(|| {
        format!("the API error rate was above {threshold_pct}% for {windows} consecutive windows")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::window::{Class, Counts};

    fn window(index: u64, ok: u64, errors: u64) -> WindowSummary {
        let mut counts = Counts::default();
        for _ in 0..ok {
            counts.add(Class::Ok);
        }
        for _ in 0..errors {
            counts.add(Class::Http(500));
        }
        WindowSummary {
            index,
            start_s: index as f64,
            len_s: 1.0,
            wall: chrono::Utc::now(),
            phase: "during".into(),
            sent: ok + errors,
            counts,
            p50_us: 0,
            p90_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            lag_p99_us: 0,
        }
    }

    #[test]
    fn error_rate_aborts_after_n_bad_windows_in_a_row() {
        let ws = [
            window(0, 10, 0),
            window(1, 5, 5),
            window(2, 0, 0),
            window(3, 1, 9),
        ];
        assert!(error_rate_breached(&ws, 10.0, 3).is_some());
        assert!(error_rate_breached(&ws, 10.0, 4).is_none());
        assert!(error_rate_breached(&ws[..2], 10.0, 3).is_none());
        assert!(error_rate_breached(&ws, 60.0, 1).is_some());
        assert!(error_rate_breached(&ws, 95.0, 1).is_none());
    }

    #[test]
    fn health_err_is_a_reason() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "ceph.rook.io/v1", "kind": "CephCluster",
            "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
            "status": {"phase": "Ready", "ceph": {"health": "HEALTH_ERR"}}
        }))
        .unwrap();
        assert_eq!(
            health_err_reason(&obj).unwrap(),
            "Ceph reports HEALTH_ERR (CephCluster rook-ceph/rook-ceph)"
        );
        let mut ok = obj.clone();
        ok.data["status"]["ceph"]["health"] = "HEALTH_WARN".into();
        assert_eq!(health_err_reason(&ok), None);
    }

    #[tokio::test]
    async fn the_first_reason_wins() {
        let a = Abort::default();
        assert_eq!(a.reason(), None);
        let b = a.clone();
        b.trigger("one");
        a.trigger("two");
        assert_eq!(a.triggered().await, "one");
    }
}
