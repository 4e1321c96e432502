//! The runner's half of a fault: from what a step names (a workload, a selector, a
//! count or percentage, an OSD id) to concrete objects, picked with the run's seeded
//! RNG; and the preconditions that refuse dangerous faults before anything changes.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Node, Pod},
};
use kube::{
    api::{Api, ListParams},
    Client, ResourceExt,
};
use rand::{rngs::StdRng, seq::IndexedRandom as _};

use super::{
    ceph::{self, Toolbox},
    scale::{Workload, WorkloadKind},
    FaultError,
};

/// How many of the matching pods a step kills.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Count(usize),
    Percent(f64),
}

impl Amount {
    /// Of `n` candidates: a percentage rounds up (so `10%` of 3 pods is 1, never 0).
    pub fn of(self, n: usize) -> usize {
        match self {
            Amount::Count(c) => c,
            Amount::Percent(p) => ((n as f64 * p / 100.0).ceil() as usize).min(n),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(c) => write!(f, "{c}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `app=postgresql,tier=db` as matchLabels (equality only: what a NetworkPolicy's
/// matchLabels and a Deployment's selector share).
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, FaultError> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once("==")
            .or_else(|| part.split_once('='))
            .filter(|(k, _)| !k.trim().is_empty() && !k.contains('!'))
            .ok_or_else(|| {
                FaultError::Refused(format!(
                    "label selector {text:?}: only key=value terms are supported, e.g. \
                     \"app=postgresql,tier=db\""
                ))
            })?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if out.is_empty() {
        return Err(FaultError::Refused(format!(
            "label selector {text:?} selects every pod; name at least one label"
        )));
    }
    Ok(out)
}

pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `k` of `names`, chosen with `rng` from the names in sorted order, so a seed picks
/// the same pods whatever order the API listed them in.
pub fn choose(mut names: Vec<String>, k: usize, rng: &mut StdRng) -> Vec<String> {
    names.sort();
    let mut picked: Vec<String> = names.choose_multiple(rng, k).cloned().collect();
    picked.sort();
    picked
}

/// A Deployment or StatefulSet by name; without a namespace, the only one of that
/// name in any namespace.
pub async fn find_workload(
    client: &Client,
    kind: WorkloadKind,
    name: &str,
    namespace: Option<&str>,
) -> Result<Workload, FaultError> {
    if let Some(ns) = namespace {
        return Ok(Workload {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
        });
    }
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    let what = format!("looking for {} {name}", kind.as_str());
    let namespaces: Vec<String> = match kind {
        WorkloadKind::Deployment => Api::<Deployment>::all(client.clone())
            .list(&lp)
            .await
            .map_err(FaultError::api(what))?
            .items
            .iter()
            .map(|o| o.namespace().unwrap_or_default())
            .collect(),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::all(client.clone())
            .list(&lp)
            .await
            .map_err(FaultError::api(what))?
            .items
            .iter()
            .map(|o| o.namespace().unwrap_or_default())
            .collect(),
    };
    match namespaces.as_slice() {
        [ns] => Ok(Workload {
            kind,
            namespace: ns.clone(),
            name: name.to_owned(),
        }),
        [] => Err(FaultError::NotFound {
            what: format!("{} {name} (in any namespace)", kind.as_str()),
        }),
        many => Err(FaultError::Refused(format!(
            "{} {name} exists in several namespaces ({}): name one with `in namespace \"...\"`",
            kind.as_str(),
            many.join(", ")
        ))),
    }
}

/// The label selector of a workload's pods (its `spec.selector.matchLabels`).
pub async fn workload_selector(client: &Client, w: &Workload) -> Result<String, FaultError> {
    let what = format!("reading {w}");
    let selector = match w.kind {
        WorkloadKind::Deployment => {
            match Api::<Deployment>::namespaced(client.clone(), &w.namespace)
                .get_opt(&w.name)
                .await
                .map_err(FaultError::api(what))?
            {
                Some(d) => Some(d.spec.selector),
                None => None,
            }
        }
        WorkloadKind::StatefulSet => {
            match Api::<StatefulSet>::namespaced(client.clone(), &w.namespace)
                .get_opt(&w.name)
                .await
                .map_err(FaultError::api(what))?
            {
                Some(s) => Some(s.spec.selector),
                None => None,
            }
        }
    }
    .ok_or_else(|| FaultError::NotFound {
        what: w.to_string(),
    })?;
    let labels = selector.match_labels.unwrap_or_default();
    if labels.is_empty() {
        return Err(FaultError::Refused(format!(
            "{w} selects its pods with expressions only; name them with a label selector"
        )));
    }
    Ok(selector_string(&labels))
}

/// Names of the pods matching `selector` in `namespace` that are not terminating.
pub async fn live_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<String>, FaultError> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(FaultError::api(format!(
            "listing pods {selector} in {namespace}"
        )))?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect())
}

/// `amount` of the live pods matching `selector`, picked with `rng`.
pub async fn pick_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
    amount: Amount,
    rng: &mut StdRng,
) -> Result<Vec<String>, FaultError> {
    let live = live_pods(client, namespace, selector).await?;
    let k = amount.of(live.len());
    if live.is_empty() || k == 0 {
        return Err(FaultError::NotFound {
            what: format!("running pods {selector} in namespace {namespace}"),
        });
    }
    if k > live.len() {
        return Err(FaultError::Refused(format!(
            "{amount} pods asked for, but only {} pods {selector} run in namespace {namespace}",
            live.len()
        )));
    }
    Ok(choose(live, k, rng))
}

/// The label of an OSD's pods and Deployment (Rook's names).
pub fn osd_selector(id: u32) -> String {
    format!("app=rook-ceph-osd,ceph-osd-id={id}")
}

/// `rook-ceph-osd-<id>`, found by its labels in any namespace.
pub async fn osd_deployment(client: &Client, id: u32) -> Result<Workload, FaultError> {
    let list = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default().labels(&osd_selector(id)))
        .await
        .map_err(FaultError::api(format!(
            "looking for the Deployment of OSD {id}"
        )))?;
    let d = list.items.first().ok_or_else(|| FaultError::NotFound {
        what: format!("Deployment of OSD {id} (labels {})", osd_selector(id)),
    })?;
    Ok(Workload {
        kind: WorkloadKind::Deployment,
        namespace: d.namespace().unwrap_or_default(),
        name: d.name_any(),
    })
}

/// Refuses OSD faults while any pool has size 1: its data lives on one OSD only and
/// would become unavailable. Pool sizes come from Ceph itself (`ceph osd pool ls detail`
/// in the toolbox), else from the CephBlockPool objects; knowing neither refuses too.
pub async fn refuse_pool_size_one(client: &Client, what: &str) -> Result<(), FaultError> {
    let from_ceph = match Toolbox::find(client).await {
        Ok(t) => t
            .ceph_json(client, &["osd", "pool", "ls", "detail"])
            .await
            .map(|d| ceph::pools_of_size_one(&d))
            .ok(),
        Err(_) => None,
    };
    let small = match from_ceph {
        Some(s) => s,
        None => match ceph::list_block_pools(client).await {
            Some(pools) => ceph::block_pools_of_size_one(&pools),
            None => {
                return Err(FaultError::Refused(format!(
                    "{what}: cannot read the pool sizes (no toolbox answered `ceph osd pool ls \
                     detail` and no CephBlockPool objects are served), so cannot rule out a \
                     pool of size 1"
                )))
            }
        },
    };
    match small.first() {
        None => Ok(()),
        Some((pool, size)) => Err(FaultError::Refused(format!(
            "{what}: pool {pool} has size {size}, so its data lives on a single OSD and \
             would become unavailable"
        ))),
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Refuses to power off the last Ready node (nothing would be left to run anything,
/// including what reverts the fault's effects).
pub async fn refuse_last_ready_node(client: &Client, node: &str) -> Result<(), FaultError> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(FaultError::api("listing nodes"))?;
    if !nodes.items.iter().any(|n| n.name_any() == node) {
        return Err(FaultError::NotFound {
            what: format!("node {node}"),
        });
    }
    let others = nodes
        .items
        .iter()
        .filter(|n| n.name_any() != node && is_ready(n))
        .count();
    if others == 0 {
        return Err(FaultError::Refused(format!(
            "node {node} is the last Ready node: powering it off would leave nothing running"
        )));
    }
    Ok(())
}

/// The node `pod` is scheduled on.
pub async fn node_of_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
) -> Result<String, FaultError> {
    let p = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(pod)
        .await
        .map_err(FaultError::api(format!("reading pod {namespace}/{pod}")))?
        .ok_or_else(|| FaultError::NotFound {
            what: format!("pod {namespace}/{pod}"),
        })?;
    p.spec.and_then(|s| s.node_name).ok_or_else(|| {
        FaultError::Refused(format!(
            "pod {namespace}/{pod} is not scheduled on a node yet"
        ))
    })
}

/// A Ready worker (no control-plane role) that does not run `pod`, chosen with `rng`
/// from the names in sorted order: the runner picks the target, reproducibly by seed.
pub async fn worker_without_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    rng: &mut StdRng,
) -> Result<String, FaultError> {
    let avoid = node_of_pod(client, namespace, pod).await?;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(FaultError::api("listing nodes"))?;
    let candidates: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| is_ready(n) && !is_control_plane(n) && n.name_any() != avoid)
        .map(ResourceExt::name_any)
        .collect();
    choose(candidates, 1, rng).pop().ok_or_else(|| {
        FaultError::Refused(format!(
            "no Ready worker other than {avoid} (which runs {namespace}/{pod})"
        ))
    })
}

fn is_control_plane(n: &Node) -> bool {
    n.labels()
        .contains_key("node-role.kubernetes.io/control-plane")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn amounts_of_candidates() {
        assert_eq!(Amount::Count(2).of(3), 2);
        assert_eq!(Amount::Percent(50.0).of(3), 2);
        assert_eq!(Amount::Percent(10.0).of(3), 1);
        assert_eq!(Amount::Percent(100.0).of(3), 3);
        assert_eq!(Amount::Percent(0.0).of(3), 0);
        assert_eq!(Amount::Percent(150.0).of(3), 3);
    }

    #[test]
    fn selectors_parse_to_match_labels() {
        let s = parse_selector("app=postgresql, tier==db").unwrap();
        assert_eq!(selector_string(&s), "app=postgresql,tier=db");
        assert!(parse_selector("app!=x").is_err());
        assert!(parse_selector("app in (a,b)").is_err());
        assert!(parse_selector("").is_err());
    }

    #[test]
    fn the_seed_picks_the_same_pods_whatever_the_listing_order() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let a = choose(
            names(&["p1", "p2", "p3", "p4"]),
            2,
            &mut StdRng::seed_from_u64(7),
        );
        let b = choose(
            names(&["p4", "p2", "p3", "p1"]),
            2,
            &mut StdRng::seed_from_u64(7),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn last_ready_node_is_judged_on_ready_conditions() {
        let n: Node = serde_yaml::from_str(
            "metadata: {name: a}\nstatus: {conditions: [{type: Ready, status: 'True'}]}",
        )
        .unwrap();
        assert!(is_ready(&n));
        let n: Node = serde_yaml::from_str(
            "metadata: {name: a}\nstatus: {conditions: [{type: Ready, status: Unknown}]}",
        )
        .unwrap();
        assert!(!is_ready(&n));
    }
}
