//! What a fault touched, watched until it is healthy again. The steady state a chaos
//! scenario's RTO is measured to includes it (DESIGN.md §3): the API's SLO windows can
//! look fine while a killed pod's replacement is still starting, and an RTO measured
//! to them alone reads 0 s for a real recovery. Feature steps and game days both watch
//! through [`watch`], so the same fault gives the same RTO on either path.

use std::time::Duration;

use kube::Client;

use super::observe::{self, Observer, ObserverSet};
use crate::fault::scale::{Workload, WorkloadKind};

/// An object a fault changes, whose health is part of recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Back to all its replicas available (a killed pod's replacement Ready included).
    Workload(Workload),
    /// Pods matching a label selector all Ready (a kill by selector, no workload named).
    Pods { namespace: String, selector: String },
    /// The node Ready.
    Node(String),
    /// The OSD up and in.
    Osd(u32),
}

impl Touched {
    /// The observer that judges it; `ceph_interval` paces the OSD's poll (Ceph has no
    /// watch).
    pub fn observer(&self, client: &Client, ceph_interval: Duration) -> Box<dyn Observer> {
        match self {
            Touched::Workload(w) => match w.kind {
                WorkloadKind::Deployment => {
                    Box::new(observe::deployment_available(client, &w.namespace, &w.name))
                }
                WorkloadKind::StatefulSet => Box::new(observe::statefulset_available(
                    client,
                    &w.namespace,
                    &w.name,
                )),
            },
            Touched::Pods {
                namespace,
                selector,
            } => Box::new(observe::pods_ready(client, namespace, selector)),
            Touched::Node(node) => Box::new(observe::node_ready(client, node)),
            Touched::Osd(id) => Box::new(observe::osd_up_in(client, *id, ceph_interval)),
        }
    }
}

/// Starts an observer for each of `touched` that `set` does not run yet. Called before
/// the fault is applied, so the observer's first report is the healthy baseline and
/// the fault's effect is a transition after t0.
pub fn watch(set: &mut ObserverSet, client: &Client, touched: &[Touched], ceph_interval: Duration) {
    for t in touched {
        set.spawn(t.observer(client, ceph_interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_target_has_its_own_observer_name() {
        // A client that is never used: names are known before anything is watched.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let w = |kind| Workload {
            kind,
            namespace: "openalex".into(),
            name: "fastapi".into(),
        };
        let names: Vec<String> = [
            Touched::Workload(w(WorkloadKind::Deployment)),
            Touched::Workload(w(WorkloadKind::StatefulSet)),
            Touched::Pods {
                namespace: "openalex".into(),
                selector: "app=api".into(),
            },
            Touched::Node("worker-1".into()),
            Touched::Osd(2),
        ]
        .iter()
        .map(|t| t.observer(&client, Duration::from_secs(1)).name())
        .collect();
        assert_eq!(
            names,
            [
                "deployment-available[openalex/fastapi]",
                "statefulset-available[openalex/fastapi]",
                "pods-ready[openalex/app=api]",
                "node-ready[worker-1]",
                "osd-up-in[2]",
            ]
        );
    }
}
