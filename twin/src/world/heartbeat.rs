//! The kubelets' heartbeats: while a node is powered on and booted its kubelet
//! renews its Lease in `kube-node-lease` every `node_heartbeat` and posts
//! `Ready=True` (with the pressure conditions False), as upstream's kubelet does.
//!
//! Contract: part of the simulated world, so it runs against any API server. On the
//! embedded control plane the node lifecycle controller (`crate::controllers::nodes`)
//! calls [`Heartbeats::beat`] in its own pass; on a real one [`run`] loops on its own.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::now_rfc3339;
use crate::ctx::obj;
use crate::ctx::{reconcile_loop, Ctx};

/// Renews the Leases alone (the real control plane's lifecycle controller judges them).
pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    let mut heartbeats = Heartbeats::default();
    reconcile_loop(ctx, &[("", "nodes"), ("", "pods")], stop, move |ctx| {
        heartbeats.beat(ctx)
    })
    .await
}

fn micro_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// When each node's kubelet last renewed its Lease.
#[derive(Default)]
pub struct Heartbeats {
    last_renew: HashMap<String, std::time::Instant>,
}

impl Heartbeats {
    /// Each running kubelet renews its Lease and keeps its node Ready.
    pub fn beat(&mut self, ctx: &Ctx) {
        heartbeats(ctx, &mut self.last_renew)
    }
}

fn heartbeats(ctx: &Ctx, last_renew: &mut HashMap<String, std::time::Instant>) {
    for node in ctx.client.list("", "nodes", None, None) {
        let name = obj::name(&node).to_string();
        if !ctx.kubelet_running(&name) {
            continue;
        }
        let due = last_renew
            .get(&name)
            .is_none_or(|t| t.elapsed() >= ctx.timing.node_heartbeat);
        if due {
            let lease_ns = Some("kube-node-lease");
            let renew = json!({"spec": {"renewTime": micro_now()}});
            if ctx
                .client
                .patch("coordination.k8s.io", "leases", lease_ns, &name, renew)
                .is_err()
            {
                let _ = ctx.client.create(json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease",
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": obj::uid(&node)}]},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": ctx.timing.node_monitor_grace.as_secs().max(1), "renewTime": micro_now()},
                }));
            }
            last_renew.insert(name.clone(), std::time::Instant::now());
        }
        if !obj::is_node_ready(&node) {
            let now = now_rfc3339();
            let mut conds = node
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            obj::set_condition(
                &mut conds,
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                &now,
            );
            obj::set_condition(
                &mut conds,
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                &now,
            );
            obj::set_condition(
                &mut conds,
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                &now,
            );
            obj::set_condition(
                &mut conds,
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                &now,
            );
            for c in conds.iter_mut() {
                c["lastHeartbeatTime"] = json!(now);
            }
            if ctx
                .client
                .patch_status("", "nodes", None, &name, json!({"conditions": conds}))
                .is_ok()
            {
                ctx.truth.record("node", &name, "Ready");
            }
        }
    }
}
