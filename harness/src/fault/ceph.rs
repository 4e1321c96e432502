//! Ceph through the Rook toolbox: `ceph ...` run by pod exec (kube's `AttachedProcess`
//! over WebSocket) in the `rook-ceph-tools` pod. Faults: OSD out (revert: in) and the
//! noout flag (revert: unset); both record the prior state, so an OSD that was out
//! already, or a flag set already, is left as it was. Also the readings the runner's
//! preconditions need: pool sizes and the CephCluster's health.

use std::time::Duration;

use futures::{future::BoxFuture, FutureExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    api::{Api, DynamicObject, ListParams},
    core::GroupVersionKind,
    discovery::ApiResource,
    Client, ResourceExt,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::measure::touched::Touched;

use super::{Fault, FaultCtx, FaultError, FaultKind, Plan, Revert, Reverted};

/// The toolbox Deployment's pod label (Rook's `deploy/examples/toolbox.yaml`).
pub const TOOLBOX_SELECTOR: &str = "app=rook-ceph-tools";
/// One `ceph` command's bound: the real CLI can hang while the mons are unreachable.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a revert waits for a toolbox to answer (one whose node died is
/// rescheduled after the node's eviction timeout).
const PATIENCE: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum CephError {
    #[error("no Running and Ready toolbox pod (label {TOOLBOX_SELECTOR}) to run `ceph` in")]
    NoToolbox,
    #[error("listing the toolbox pods failed")]
    List(#[source] kube::Error),
    #[error(transparent)]
    Exec(#[from] crate::probe::exec::ExecError),
    #[error("`{command}` failed (exit code {code}): {stderr}")]
    Failed {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("`{command}` printed something other than the expected JSON")]
    Json {
        command: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A toolbox pod to exec in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolbox {
    pub namespace: String,
    pub pod: String,
}

fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && pod.metadata.deletion_timestamp.is_none()
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl Toolbox {
    /// The first Running and Ready toolbox pod, in any namespace, on a Ready node (a
    /// pod on a node that just died still looks Ready for a while, but exec fails).
    pub async fn find(client: &Client) -> Result<Toolbox, CephError> {
        let pods = Api::<Pod>::all(client.clone())
            .list(&ListParams::default().labels(TOOLBOX_SELECTOR))
            .await
            .map_err(CephError::List)?;
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(CephError::List)?;
        let node_ready = |pod: &Pod| {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            nodes.items.iter().any(|n| {
                Some(n.name_any().as_str()) == node
                    && n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
        };
        let mut ready: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| running_and_ready(p) && node_ready(p))
            .collect();
        ready.sort_by_key(|p| p.name_any());
        let pod = ready.first().ok_or(CephError::NoToolbox)?;
        Ok(Toolbox {
            namespace: pod.namespace().unwrap_or_default(),
            pod: pod.name_any(),
        })
    }

    /// Runs `ceph ARGS` and returns its stdout; a non-zero exit is an error with stderr.
    pub async fn ceph(&self, client: &Client, args: &[&str]) -> Result<String, CephError> {
        let mut argv = vec!["ceph"];
        argv.extend_from_slice(args);
        let command = argv.join(" ");
        // The same exec path as every probe (crate::probe::exec), with a toolbox timeout.
        let out = crate::probe::exec::run(
            client,
            &self.namespace,
            &self.pod,
            None,
            &argv,
            EXEC_TIMEOUT,
        )
        .await?;
        if out.exit_code != 0 {
            return Err(CephError::Failed {
                command,
                code: out.exit_code,
                stderr: out.stderr.trim().to_owned(),
            });
        }
        Ok(out.stdout)
    }

    /// Finds a toolbox and runs `ceph ARGS`, retrying for up to `patience` while no
    /// toolbox answers (its node died and it is being rescheduled); a command that ran
    /// and failed is not retried.
    pub async fn run_patiently(
        client: &Client,
        args: &[&str],
        patience: Duration,
    ) -> Result<String, CephError> {
        let started = std::time::Instant::now();
        loop {
            let result = match Toolbox::find(client).await {
                Ok(t) => t.ceph(client, args).await,
                Err(e) => Err(e),
            };
            match result {
                Err(CephError::Failed { .. } | CephError::Json { .. }) => return result,
                Err(_) if started.elapsed() < patience => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    /// [`Toolbox::run_patiently`] with `-f json`, parsed.
    pub async fn json_patiently(
        client: &Client,
        args: &[&str],
        patience: Duration,
    ) -> Result<Value, CephError> {
        let mut argv = args.to_vec();
        argv.extend(["-f", "json"]);
        let text = Self::run_patiently(client, &argv, patience).await?;
        serde_json::from_str(text.trim()).map_err(|source| CephError::Json {
            command: format!("ceph {}", argv.join(" ")),
            source,
        })
    }

    /// `ceph ARGS -f json`, parsed.
    pub async fn ceph_json(&self, client: &Client, args: &[&str]) -> Result<Value, CephError> {
        let mut argv = args.to_vec();
        argv.extend(["-f", "json"]);
        let text = self.ceph(client, &argv).await?;
        serde_json::from_str(text.trim()).map_err(|source| CephError::Json {
            command: format!("ceph {}", argv.join(" ")),
            source,
        })
    }
}

/// Whether `osd.ID` is in, from `ceph osd tree -f json` (out OSDs have reweight 0);
/// None when it does not exist.
pub fn osd_is_in(tree: &Value, id: u32) -> Option<bool> {
    tree["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "osd" && n["id"].as_u64() == Some(u64::from(id)))
        .map(|n| n["reweight"].as_f64().unwrap_or(0.0) > 0.0)
}

/// Whether an OSD map flag (e.g. `noout`) is set, from `ceph status -f json`: Ceph
/// warns `OSDMAP_FLAGS` "noout flag(s) set" while it is.
pub fn flag_is_set(status: &Value, flag: &str) -> bool {
    status["health"]["checks"]["OSDMAP_FLAGS"]["summary"]["message"]
        .as_str()
        .and_then(|m| m.strip_suffix(" flag(s) set"))
        .is_some_and(|flags| flags.split(',').any(|f| f.trim() == flag))
}

/// Pools of size 1, from `ceph osd pool ls detail -f json`: (name, size).
pub fn pools_of_size_one(detail: &Value) -> Vec<(String, i64)> {
    detail
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let size = p["size"].as_i64()?;
            (size <= 1).then(|| (p["pool_name"].as_str().unwrap_or("?").to_owned(), size))
        })
        .collect()
}

/// Pools of size 1 among CephBlockPool objects (`spec.replicated.size`).
pub fn block_pools_of_size_one(pools: &[Value]) -> Vec<(String, i64)> {
    pools
        .iter()
        .filter_map(|p| {
            let size = p.pointer("/spec/replicated/size")?.as_i64()?;
            (size <= 1).then(|| {
                let name = p.pointer("/metadata/name").and_then(Value::as_str);
                (name.unwrap_or("?").to_owned(), size)
            })
        })
        .collect()
}

fn rook(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("ceph.rook.io", "v1", kind), plural)
}

/// Every CephBlockPool, as JSON; None when Rook's CRDs are not served.
pub async fn list_block_pools(client: &Client) -> Option<Vec<Value>> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &rook("CephBlockPool", "cephblockpools"));
    let list = api.list(&ListParams::default()).await.ok()?;
    Some(
        list.items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect(),
    )
}

/// `status.ceph.health` of every CephCluster: (namespace/name, health). Empty when
/// there is none or Rook's CRDs are not served.
pub async fn cluster_health(client: &Client) -> Vec<(String, String)> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &rook("CephCluster", "cephclusters"));
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter_map(|o| {
            let health = o.data.pointer("/status/ceph/health")?.as_str()?.to_owned();
            Some((
                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                health,
            ))
        })
        .collect()
}

/// `ceph osd out ID`; reverted by `ceph osd in ID` unless it was out already.
#[derive(Clone, Debug)]
pub struct OsdOut {
    pub id: u32,
    pub toolbox: Toolbox,
}

impl Fault for OsdOut {
    fn kind(&self) -> FaultKind {
        FaultKind::OsdOut
    }

    fn namespaces(&self) -> Vec<String> {
        vec![self.toolbox.namespace.clone()]
    }

    fn touches(&self) -> Vec<Touched> {
        vec![Touched::Osd(self.id)]
    }

    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            let tree = self
                .toolbox
                .ceph_json(&ctx.client, &["osd", "tree"])
                .await?;
            let revert = match osd_is_in(&tree, self.id) {
                None => {
                    return Err(FaultError::NotFound {
                        what: format!("osd.{}", self.id),
                    })
                }
                Some(true) => Revert::OsdIn(OsdIn {
                    id: self.id,
                    namespace: self.toolbox.namespace.clone(),
                }),
                Some(false) => Revert::Nothing {
                    reason: format!("osd.{} was out already", self.id),
                },
            };
            Ok(Plan {
                kind: FaultKind::OsdOut,
                action: format!(
                    "run `ceph osd out {}` in {}/{}",
                    self.id, self.toolbox.namespace, self.toolbox.pod
                ),
                objects: vec![format!("Ceph osd.{}", self.id)],
                revert,
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
            let id = self.id.to_string();
            self.toolbox.ceph(&ctx.client, &["osd", "out", &id]).await?;
            Ok(plan.revert.clone())
        }
        .boxed()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsdIn {
    pub id: u32,
    /// The Rook namespace (the toolbox's), for the record; any toolbox will do.
    pub namespace: String,
}

impl OsdIn {
    pub fn describe(&self) -> String {
        format!("run `ceph osd in {}` in the toolbox", self.id)
    }

    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        let tree = Toolbox::json_patiently(&ctx.client, &["osd", "tree"], PATIENCE).await?;
        match osd_is_in(&tree, self.id) {
            None => Ok(Reverted::Gone),
            Some(true) => Ok(Reverted::AlreadyRestored),
            Some(false) => {
                let id = self.id.to_string();
                Toolbox::run_patiently(&ctx.client, &["osd", "in", &id], PATIENCE).await?;
                Ok(Reverted::Restored)
            }
        }
    }
}

/// `ceph osd set FLAG` (noout); reverted by `unset` unless it was set already.
#[derive(Clone, Debug)]
pub struct SetFlag {
    pub flag: String,
    pub toolbox: Toolbox,
}

impl Fault for SetFlag {
    fn kind(&self) -> FaultKind {
        FaultKind::Noout
    }

    fn namespaces(&self) -> Vec<String> {
        vec![self.toolbox.namespace.clone()]
    }

    fn touches(&self) -> Vec<Touched> {
        // A flag changes how Ceph reacts to other faults; Ceph's own health is
        // already part of steady state.
        Vec::new()
    }

    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>> {
        async move {
            let status = self.toolbox.ceph_json(&ctx.client, &["status"]).await?;
            let revert = if flag_is_set(&status, &self.flag) {
                Revert::Nothing {
                    reason: format!("{} was set already", self.flag),
                }
            } else {
                Revert::UnsetFlag(UnsetFlag {
                    flag: self.flag.clone(),
                    namespace: self.toolbox.namespace.clone(),
                })
            };
            Ok(Plan {
                kind: FaultKind::Noout,
                action: format!(
                    "run `ceph osd set {}` in {}/{}",
                    self.flag, self.toolbox.namespace, self.toolbox.pod
                ),
                objects: vec![format!("Ceph OSD map flag {}", self.flag)],
                revert,
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
            self.toolbox
                .ceph(&ctx.client, &["osd", "set", &self.flag])
                .await?;
            Ok(plan.revert.clone())
        }
        .boxed()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsetFlag {
    pub flag: String,
    pub namespace: String,
}

impl UnsetFlag {
    pub fn describe(&self) -> String {
        format!("run `ceph osd unset {}` in the toolbox", self.flag)
    }

    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        let status = Toolbox::json_patiently(&ctx.client, &["status"], PATIENCE).await?;
        if !flag_is_set(&status, &self.flag) {
            return Ok(Reverted::AlreadyRestored);
        }
        Toolbox::run_patiently(&ctx.client, &["osd", "unset", &self.flag], PATIENCE).await?;
        Ok(Reverted::Restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn osd_in_out_from_the_tree() {
        let tree = json!({"nodes": [
            {"id": -1, "type": "root", "name": "default"},
            {"id": 0, "type": "osd", "name": "osd.0", "reweight": 1, "status": "up"},
            {"id": 1, "type": "osd", "name": "osd.1", "reweight": 0, "status": "up"},
        ]});
        assert_eq!(osd_is_in(&tree, 0), Some(true));
        assert_eq!(osd_is_in(&tree, 1), Some(false));
        assert_eq!(osd_is_in(&tree, 7), None);
    }

    #[test]
    fn flags_from_the_health_checks() {
        let s = json!({"health": {"status": "HEALTH_WARN", "checks": {"OSDMAP_FLAGS":
            {"severity": "HEALTH_WARN", "summary": {"message": "noout,norebalance flag(s) set", "count": 16}}}}});
        assert!(flag_is_set(&s, "noout"));
        assert!(flag_is_set(&s, "norebalance"));
        assert!(!flag_is_set(&s, "noin"));
        assert!(!flag_is_set(
            &json!({"health": {"status": "HEALTH_OK", "checks": {}}}),
            "noout"
        ));
    }

    #[test]
    fn pools_of_size_one_are_found_in_both_sources() {
        let detail = json!([
            {"pool_name": ".mgr", "size": 3},
            {"pool_name": "nvme-pool", "size": 1},
        ]);
        assert_eq!(pools_of_size_one(&detail), [("nvme-pool".to_owned(), 1)]);
        let crs = [
            json!({"metadata": {"name": "hdd-pool"}, "spec": {"replicated": {"size": 3}}}),
            json!({"metadata": {"name": "tmp"}, "spec": {"replicated": {"size": 1}}}),
        ];
        assert_eq!(block_pools_of_size_one(&crs), [("tmp".to_owned(), 1)]);
    }

    #[test]
    fn exit_codes_from_the_exec_status() {
        let s: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status =
            serde_json::from_value(json!({"status": "Failure", "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "22"}]}}))
            .unwrap();
        assert_eq!(crate::probe::exec::exit_code(&s), 22);
        let ok = serde_json::from_value(json!({"status": "Success"})).unwrap();
        assert_eq!(crate::probe::exec::exit_code(&ok), 0);
    }
}
