//! Workload outage and OSD down: scale a Deployment or StatefulSet to 0 through its
//! scale subresource; the revert scales it back to the replicas it had.

use futures::{future::BoxFuture, FutureExt as _};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::measure::touched::Touched;

use super::{is_not_found, Fault, FaultCtx, FaultError, FaultKind, Plan, Revert, Reverted};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }

    /// `deployment`, `statefulset` as features write them (any case).
    pub fn parse(word: &str) -> Option<WorkloadKind> {
        match word.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" => Some(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" => Some(WorkloadKind::StatefulSet),
            _ => None,
        }
    }
}

/// A Deployment or StatefulSet by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

impl Workload {
    /// `spec.replicas` through the scale subresource; None when the object is gone.
    pub async fn replicas(&self, client: &kube::Client) -> Result<Option<i32>, FaultError> {
        let what = format!("reading the scale of {self}");
        let scale = match self.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(client.clone(), &self.namespace)
                    .get_scale(&self.name)
                    .await
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(client.clone(), &self.namespace)
                    .get_scale(&self.name)
                    .await
            }
        };
        match scale {
            Ok(s) => Ok(Some(s.spec.and_then(|s| s.replicas).unwrap_or(0))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(FaultError::Api { what, source: e }),
        }
    }

    /// Sets `spec.replicas`; false when the object is gone.
    pub async fn scale(&self, client: &kube::Client, replicas: i32) -> Result<bool, FaultError> {
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        let pp = PatchParams::default();
        let r = match self.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(client.clone(), &self.namespace)
                    .patch_scale(&self.name, &pp, &patch)
                    .await
                    .map(drop)
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(client.clone(), &self.namespace)
                    .patch_scale(&self.name, &pp, &patch)
                    .await
                    .map(drop)
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(FaultError::Api {
                what: format!("scaling {self} to {replicas}"),
                source: e,
            }),
        }
    }
}

/// Scale a workload to 0 (workload outage; OSD down with kind `osd-down`).
#[derive(Clone, Debug)]
pub struct ScaleToZero {
    pub kind: FaultKind,
    pub workload: Workload,
}

impl Fault for ScaleToZero {
    fn kind(&self) -> FaultKind {
        self.kind
    }

    fn namespaces(&self) -> Vec<String> {
        vec![self.workload.namespace.clone()]
    }

    fn touches(&self) -> Vec<Touched> {
        vec![Touched::Workload(self.workload.clone())]
    }

    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            let replicas =
                self.workload
                    .replicas(&ctx.client)
                    .await?
                    .ok_or_else(|| FaultError::NotFound {
                        what: self.workload.to_string(),
                    })?;
            Ok(Plan {
                kind: self.kind,
                action: format!("scale {} from {replicas} to 0 replicas", self.workload),
                objects: vec![self.workload.to_string()],
                revert: Revert::ScaleBack(ScaleBack {
                    workload: self.workload.clone(),
                    replicas,
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
            if !self.workload.scale(&ctx.client, 0).await? {
                return Err(FaultError::NotFound {
                    what: self.workload.to_string(),
                });
            }
            Ok(plan.revert.clone())
        }
        .boxed()
    }
}

/// Scale a workload back to its recorded replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleBack {
    pub workload: Workload,
    pub replicas: i32,
}

impl ScaleBack {
    pub fn describe(&self) -> String {
        format!("scale {} back to {} replicas", self.workload, self.replicas)
    }

    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        match self.workload.replicas(&ctx.client).await? {
            None => Ok(Reverted::Gone),
            Some(n) if n == self.replicas => Ok(Reverted::AlreadyRestored),
            Some(_) => Ok(if self.workload.scale(&ctx.client, self.replicas).await? {
                Reverted::Restored
            } else {
                Reverted::Gone
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_kinds_parse_as_features_write_them() {
        assert_eq!(
            WorkloadKind::parse("deployment"),
            Some(WorkloadKind::Deployment)
        );
        assert_eq!(
            WorkloadKind::parse("StatefulSet"),
            Some(WorkloadKind::StatefulSet)
        );
        assert_eq!(WorkloadKind::parse("daemonset"), None);
        let w = Workload {
            kind: WorkloadKind::Deployment,
            namespace: "openalex".into(),
            name: "fastapi".into(),
        };
        assert_eq!(w.to_string(), "Deployment openalex/fastapi");
    }
}
