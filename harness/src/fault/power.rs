//! Node power off through the target's provider ([`crate::target::power`]); the revert
//! powers the node back on. The runner refuses to power off the last Ready node.

use futures::{future::BoxFuture, FutureExt as _};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde::{Deserialize, Serialize};

use crate::measure::touched::Touched;

use super::{is_not_found, Fault, FaultCtx, FaultError, FaultKind, Plan, Revert, Reverted};
use crate::target::power::PowerError;

#[derive(Clone, Debug)]
pub struct PowerOff {
    pub node: String,
}

async fn node_exists(ctx: &FaultCtx, node: &str) -> Result<bool, FaultError> {
    match Api::<Node>::all(ctx.client.clone()).get(node).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(FaultError::Api {
            what: format!("reading node {node}"),
            source: e,
        }),
    }
}

impl Fault for PowerOff {
    fn kind(&self) -> FaultKind {
        FaultKind::NodePower
    }

    fn namespaces(&self) -> Vec<String> {
        Vec::new()
    }

    fn touches(&self) -> Vec<Touched> {
        vec![Touched::Node(self.node.clone())]
    }

    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            ctx.power.check()?;
            if !node_exists(ctx, &self.node).await? {
                return Err(FaultError::NotFound {
                    what: format!("node {}", self.node),
                });
            }
            Ok(Plan {
                kind: FaultKind::NodePower,
                action: format!(
                    "power off node {} through {}",
                    self.node,
                    ctx.power.describe()
                ),
                objects: vec![format!("Node {}", self.node)],
                revert: Revert::PowerOn(PowerOn {
                    node: self.node.clone(),
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
            ctx.power.set_power(&self.node, false).await?;
            Ok(plan.revert.clone())
        }
        .boxed()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerOn {
    pub node: String,
}

impl PowerOn {
    pub fn describe(&self) -> String {
        format!("power node {} back on", self.node)
    }

    /// Providers do not say whether power changed, so a node that is on already
    /// reports `Restored` too.
    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        match ctx.power.set_power(&self.node, true).await {
            Ok(()) => Ok(Reverted::Restored),
            Err(PowerError::NoSuchNode { .. }) => Ok(Reverted::Gone),
            Err(e) => Err(e.into()),
        }
    }
}
