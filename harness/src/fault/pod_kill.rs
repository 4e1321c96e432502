//! Pod kill: delete named pods (the runner picked them), optionally with grace 0.
//! Nothing to revert: their controllers replace them.

use futures::{future::BoxFuture, FutureExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use crate::measure::touched::Touched;

use super::{is_not_found, Fault, FaultCtx, FaultError, FaultKind, Plan, Revert};

#[derive(Clone, Debug)]
pub struct PodKill {
    /// `pod-kill`, or `osd-down` when the pod is an OSD's.
    pub kind: FaultKind,
    pub namespace: String,
    pub pods: Vec<String>,
    /// `Some(0)`: killed at once, as a crash; None: the pods' own grace period.
    pub grace_seconds: Option<u32>,
    /// What replaces the pods: the workload they belong to, or the pods of the
    /// selector they were picked from.
    pub owner: Touched,
}

impl PodKill {
    fn objects(&self) -> Vec<String> {
        self.pods
            .iter()
            .map(|p| format!("Pod {}/{p}", self.namespace))
            .collect()
    }
}

impl Fault for PodKill {
    fn kind(&self) -> FaultKind {
        self.kind
    }

    fn namespaces(&self) -> Vec<String> {
        vec![self.namespace.clone()]
    }

    fn touches(&self) -> Vec<Touched> {
        vec![self.owner.clone()]
    }

    fn plan<'a>(&'a self, _: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            let grace = match self.grace_seconds {
                Some(0) => " immediately (grace 0)".to_owned(),
                Some(g) => format!(" with grace {g}s"),
                None => String::new(),
            };
            Ok(Plan {
                kind: self.kind,
                action: format!(
                    "delete {} pod(s) in {}{grace}: {}",
                    self.pods.len(),
                    self.namespace,
                    self.pods.join(", ")
                ),
                objects: self.objects(),
                revert: Revert::Nothing {
                    reason: "their controllers replace killed pods".to_owned(),
                },
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
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &self.namespace);
            let dp = DeleteParams {
                grace_period_seconds: self.grace_seconds,
                ..DeleteParams::default()
            };
            for pod in &self.pods {
                match api.delete(pod, &dp).await {
                    Ok(_) => {}
                    // Gone already: killed is what we wanted.
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(FaultError::Api {
                            what: format!("deleting pod {}/{pod}", self.namespace),
                            source: e,
                        })
                    }
                }
            }
            Ok(plan.revert.clone())
        }
        .boxed()
    }
}
