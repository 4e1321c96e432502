//! The opt-in guard for destructive faults.
//!
//! The twin and kind are throwaway clusters: every fault is allowed. A `cluster`
//! target must have opted in twice: the operator passes `--allow-destructive`, and
//! the cluster itself holds ConfigMap `stormdrill-allow` in `kube-system` listing the
//! namespaces and fault kinds it accepts (comma or whitespace separated, `*` for all):
//!
//! ```yaml
//! apiVersion: v1
//! kind: ConfigMap
//! metadata: {name: stormdrill-allow, namespace: kube-system}
//! data:
//!   namespaces: "openalex, rook-ceph"
//!   faults: "pod-kill, workload-outage, osd-down, node-drain"
//! ```
//!
//! Namespaced faults are checked against `namespaces`; node-level faults (drain,
//! power) by kind only. The ConfigMap is read at every injection, so deleting it
//! stops the next fault of a running game day.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{api::Api, Client};

use super::{is_not_found, FaultError, FaultKind};

pub const CONFIGMAP: &str = "stormdrill-allow";
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";

/// How to opt a cluster in, for refusal messages.
pub fn how_to_opt_in(kind: FaultKind, namespaces: &[String]) -> String {
    let ns = if namespaces.is_empty() {
        "openalex".to_owned()
    } else {
        namespaces.join(",")
    };
    format!(
        "kubectl -n {CONFIGMAP_NAMESPACE} create configmap {CONFIGMAP} \
         --from-literal=namespaces={ns} --from-literal=faults={kind}"
    )
}

/// Whether the target needs the opt-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Twin and kind: everything is allowed.
    Open,
    /// A real cluster: `--allow-destructive` and the ConfigMap are both required.
    OptIn { allow_destructive: bool },
}

/// The cluster's allow list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// None: all (`*`).
    pub namespaces: Option<Vec<String>>,
    pub faults: Option<Vec<FaultKind>>,
    /// Words in `faults` that name no fault kind, reported rather than ignored.
    pub unknown_faults: Vec<String>,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

impl AllowList {
    pub fn from_data(data: &BTreeMap<String, String>) -> AllowList {
        let mut list = AllowList::default();
        let ns = words(data.get("namespaces").map_or("", String::as_str));
        list.namespaces = if ns.iter().any(|w| w == "*") {
            None
        } else {
            Some(ns)
        };
        let faults = words(data.get("faults").map_or("", String::as_str));
        if faults.iter().any(|w| w == "*") {
            list.faults = None;
        } else {
            let mut kinds = Vec::new();
            for w in faults {
                match FaultKind::parse(&w) {
                    Some(k) => kinds.push(k),
                    None => list.unknown_faults.push(w),
                }
            }
            list.faults = Some(kinds);
        }
        list
    }

    /// Reads the ConfigMap; None when the cluster has not opted in.
    pub async fn load(client: &Client) -> Result<Option<AllowList>, FaultError> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
        match api.get(CONFIGMAP).await {
            Ok(cm) => Ok(Some(AllowList::from_data(&cm.data.unwrap_or_default()))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(FaultError::Api {
                what: format!("reading ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP}"),
                source: e,
            }),
        }
    }
}

/// Whether the fault may run; the refusal says how to allow it.
pub fn check(
    policy: Policy,
    allow: Option<&AllowList>,
    kind: FaultKind,
    namespaces: &[String],
    dry_run: bool,
) -> Result<(), String> {
    let Policy::OptIn { allow_destructive } = policy else {
        return Ok(());
    };
    // A dry run changes nothing, so it previews without the flag; the cluster's own
    // opt-in is still checked, so the plan shows what the real run would refuse.
    if !allow_destructive && !dry_run {
        return Err(format!(
            "fault {kind} is destructive and the target is a real cluster: pass \
             --allow-destructive (the cluster must also opt in with ConfigMap \
             {CONFIGMAP_NAMESPACE}/{CONFIGMAP}: {})",
            how_to_opt_in(kind, namespaces)
        ));
    }
    let Some(allow) = allow else {
        return Err(format!(
            "the cluster has not opted in to destructive faults: create ConfigMap \
             {CONFIGMAP} in namespace {CONFIGMAP_NAMESPACE} listing the allowed namespaces \
             and fault kinds, e.g. `{}`",
            how_to_opt_in(kind, namespaces)
        ));
    };
    if let Some(faults) = &allow.faults {
        if !faults.contains(&kind) {
            return Err(format!(
                "fault {kind} is not allowed by ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP} \
                 (faults: {}); add it to its `faults` key",
                list_or_none(faults.iter().map(|k| k.as_str().to_owned()))
            ));
        }
    }
    if let Some(allowed) = &allow.namespaces {
        for ns in namespaces {
            if !allowed.contains(ns) {
                return Err(format!(
                    "namespace {ns} is not in the allow list of ConfigMap \
                     {CONFIGMAP_NAMESPACE}/{CONFIGMAP} (namespaces: {}); add it to its \
                     `namespaces` key",
                    list_or_none(allowed.iter().cloned())
                ));
            }
        }
    }
    Ok(())
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(ns: &str, faults: &str) -> BTreeMap<String, String> {
        [
            ("namespaces".to_owned(), ns.to_owned()),
            ("faults".to_owned(), faults.to_owned()),
        ]
        .into()
    }

    const OPT_IN: Policy = Policy::OptIn {
        allow_destructive: true,
    };

    #[test]
    fn the_twin_allows_everything() {
        assert!(check(Policy::Open, None, FaultKind::NodePower, &[], false).is_ok());
    }

    #[test]
    fn a_cluster_needs_the_flag_and_the_configmap() {
        let ns = ["openalex".to_owned()];
        let e = check(
            Policy::OptIn {
                allow_destructive: false,
            },
            None,
            FaultKind::PodKill,
            &ns,
            false,
        )
        .unwrap_err();
        assert!(e.contains("--allow-destructive"), "{e}");
        let e = check(OPT_IN, None, FaultKind::PodKill, &ns, false).unwrap_err();
        assert!(
            e.contains("create ConfigMap stormdrill-allow in namespace kube-system")
                && e.contains(
                    "kubectl -n kube-system create configmap stormdrill-allow \
                     --from-literal=namespaces=openalex --from-literal=faults=pod-kill"
                ),
            "{e}"
        );
        // A dry run previews without the flag, but not without the cluster's opt-in.
        let no_flag = Policy::OptIn {
            allow_destructive: false,
        };
        assert!(check(no_flag, None, FaultKind::PodKill, &ns, true).is_err());
        let all = AllowList::from_data(&data("*", "*"));
        assert!(check(no_flag, Some(&all), FaultKind::PodKill, &ns, true).is_ok());
    }

    #[test]
    fn the_allow_list_limits_namespaces_and_kinds() {
        let allow = AllowList::from_data(&data("openalex, rook-ceph", "pod-kill osd-down,bogus"));
        assert_eq!(allow.unknown_faults, ["bogus"]);
        let ok = |kind, ns: &str| check(OPT_IN, Some(&allow), kind, &[ns.to_owned()], false);
        assert!(ok(FaultKind::PodKill, "openalex").is_ok());
        assert!(ok(FaultKind::OsdDown, "rook-ceph").is_ok());
        let e = ok(FaultKind::PodKill, "monitoring").unwrap_err();
        assert!(
            e.starts_with("namespace monitoring is not in the allow list"),
            "{e}"
        );
        let e = ok(FaultKind::WorkloadOutage, "openalex").unwrap_err();
        assert!(e.starts_with("fault workload-outage is not allowed"), "{e}");
        // Node-level faults are checked by kind only.
        let nodes = AllowList::from_data(&data("", "node-drain"));
        assert!(check(OPT_IN, Some(&nodes), FaultKind::NodeDrain, &[], false).is_ok());
    }
}
