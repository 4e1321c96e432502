//! Network isolation: a NetworkPolicy selecting the pods, with policy type Ingress and
//! no rules, denies them all ingress (on CNIs that enforce policies). The revert
//! deletes it; only policies stormdrill created (by label) are ever deleted.

use std::collections::BTreeMap;

use futures::{future::BoxFuture, FutureExt as _};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    api::{Api, DeleteParams, PostParams},
    ResourceExt,
};
use serde::{Deserialize, Serialize};

use crate::measure::touched::Touched;

use super::{
    is_not_found, status_code, Fault, FaultCtx, FaultError, FaultKind, Plan, Revert, Reverted,
};

pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "stormdrill");
const PREFIX: &str = "stormdrill-isolate-";

#[derive(Clone, Debug)]
pub struct Isolate {
    pub namespace: String,
    /// matchLabels of the pods to isolate.
    pub labels: BTreeMap<String, String>,
}

/// `stormdrill-isolate-app-postgresql`: stable for a selector, so the revert and a
/// re-run find it, and a valid object name (63 characters at most).
pub fn policy_name(labels: &BTreeMap<String, String>) -> String {
    let mut slug = String::new();
    for (k, v) in labels {
        let key = k.rsplit('/').next().unwrap_or(k);
        for part in [key, v.as_str()] {
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.extend(part.chars().map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            }));
        }
    }
    let mut name = format!("{PREFIX}{slug}");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_ours(p: &NetworkPolicy) -> bool {
    p.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
}

impl Isolate {
    fn name(&self) -> String {
        policy_name(&self.labels)
    }

    fn policy(&self) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": self.name(),
                "namespace": self.namespace,
                "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            },
            "spec": {
                "podSelector": { "matchLabels": self.labels },
                "policyTypes": ["Ingress"],
                "ingress": [],
            },
        }))
        .expect("a NetworkPolicy built from valid parts")
    }
}

impl Fault for Isolate {
    fn kind(&self) -> FaultKind {
        FaultKind::NetworkIsolation
    }

    fn namespaces(&self) -> Vec<String> {
        vec![self.namespace.clone()]
    }

    fn touches(&self) -> Vec<Touched> {
        vec![Touched::Pods {
            namespace: self.namespace.clone(),
            selector: super::resolve::selector_string(&self.labels),
        }]
    }

    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            let name = self.name();
            let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &self.namespace);
            match api.get(&name).await {
                Ok(p) if !is_ours(&p) => {
                    return Err(FaultError::Refused(format!(
                        "NetworkPolicy {}/{name} exists and was not created by stormdrill",
                        self.namespace
                    )))
                }
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(FaultError::Api {
                        what: format!("reading NetworkPolicy {}/{name}", self.namespace),
                        source: e,
                    })
                }
            }
            Ok(Plan {
                kind: FaultKind::NetworkIsolation,
                action: format!(
                    "create NetworkPolicy {}/{name} denying all ingress to pods {}",
                    self.namespace,
                    selector_text(&self.labels)
                ),
                objects: vec![format!("NetworkPolicy {}/{name}", self.namespace)],
                revert: Revert::DeletePolicy(DeletePolicy {
                    namespace: self.namespace.clone(),
                    name,
                }),
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a FaultCtx,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Revert, FaultError>> {
        async move {
            let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &self.namespace);
            match api.create(&PostParams::default(), &self.policy()).await {
                Ok(_) => Ok(plan.revert.clone()),
                // Left by an earlier run that was not reverted (plan checked it is ours).
                Err(e) if status_code(&e) == Some(409) => Ok(plan.revert.clone()),
                Err(e) => Err(FaultError::Api {
                    what: format!("creating NetworkPolicy {}/{}", self.namespace, self.name()),
                    source: e,
                }),
            }
        }
        .boxed()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePolicy {
    pub namespace: String,
    pub name: String,
}

impl DeletePolicy {
    pub fn describe(&self) -> String {
        format!("delete NetworkPolicy {}/{}", self.namespace, self.name)
    }

    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &self.namespace);
        let what = format!("NetworkPolicy {}/{}", self.namespace, self.name);
        match api.get(&self.name).await {
            Ok(p) if !is_ours(&p) => {
                return Err(FaultError::Refused(format!(
                    "{what} was not created by stormdrill: left alone"
                )))
            }
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Reverted::AlreadyRestored),
            Err(e) => {
                return Err(FaultError::Api {
                    what: format!("reading {what}"),
                    source: e,
                })
            }
        }
        match api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => Ok(Reverted::Restored),
            Err(e) if is_not_found(&e) => Ok(Reverted::AlreadyRestored),
            Err(e) => Err(FaultError::Api {
                what: format!("deleting {what}"),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_are_stable_and_valid() {
        let labels: BTreeMap<String, String> = [
            (
                "app.kubernetes.io/name".to_owned(),
                "PostgreSQL_15".to_owned(),
            ),
            ("app".to_owned(), "db".to_owned()),
        ]
        .into();
        assert_eq!(
            policy_name(&labels),
            "stormdrill-isolate-app-db-name-postgresql-15"
        );
        let long: BTreeMap<String, String> = [("app".to_owned(), "x".repeat(80))].into();
        let name = policy_name(&long);
        assert!(name.len() <= 63 && !name.ends_with('-'), "{name}");
    }

    #[test]
    fn the_policy_denies_ingress_to_the_selected_pods() {
        let iso = Isolate {
            namespace: "openalex".into(),
            labels: [("app".to_owned(), "postgresql".to_owned())].into(),
        };
        let p = serde_json::to_value(iso.policy()).unwrap();
        assert_eq!(p["metadata"]["name"], "stormdrill-isolate-app-postgresql");
        assert_eq!(p["spec"]["podSelector"]["matchLabels"]["app"], "postgresql");
        assert_eq!(p["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
        assert!(is_ours(&iso.policy()));
    }
}
