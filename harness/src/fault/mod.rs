//! Faults: what a chaos step does to the cluster and how it is put back (DESIGN §4).
//!
//! A [`Fault`] is a concrete action on named objects: the runner ([`resolve`],
//! [`session`]) has already turned selectors, counts and percentages into names and
//! checked preconditions. `plan` reads what `apply` will change and returns the
//! [`Revert`] record, which the session writes ahead into the run's journal before
//! `apply` runs. Reverts are idempotent: a target that no longer exists counts as
//! reverted, so a revert may run twice (scenario end, then the end-of-run sweep, then
//! `stormdrill recover`) without harm.
//!
//! Adding a fault: one file with the fault (implementing [`Fault`]) and, when it
//! needs a new kind of undo, its revert struct; then a variant in [`FaultKind`] and
//! [`Revert`] here, and its step in `steps/faults.rs`.

use crate::measure::touched::Touched;
use std::{path::Path, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::{
    cli::RunArgs,
    target::{
        power::{NodePower, PowerError, TargetConfig},
        Connected, TargetKind,
    },
};

pub mod abort;
pub mod ceph;
pub mod drain;
pub mod guard;
pub mod journal;
pub mod network;
pub mod plan;
pub mod pod_kill;
pub mod power;
pub mod recover;
pub mod resolve;
pub mod scale;
pub mod session;

pub use session::{FaultRun, FaultRunOptions, Injected, ScenarioFaults};

/// The faults of a run on `connected`: the twin is open to every fault; a cluster
/// needs `--allow-destructive` and its own opt-in ([`guard`]).
pub fn for_run(
    connected: &Connected,
    config: &TargetConfig,
    args: &RunArgs,
    seed: u64,
    run_dir: &Path,
    run_id: &str,
) -> FaultRun {
    let policy = match connected.kind() {
        // A kind cluster is local and throw-away (`stormdrill up` made it).
        TargetKind::Twin | TargetKind::Kind => guard::Policy::Open,
        TargetKind::Cluster => guard::Policy::OptIn {
            allow_destructive: args.allow_destructive,
        },
    };
    FaultRun::new(FaultRunOptions {
        client: connected.client().clone(),
        power: connected.node_power(config),
        policy,
        dry_run: args.dry_run,
        seed,
        run_dir: Some(run_dir.to_owned()),
        header: journal::RunHeader {
            run_id: run_id.to_owned(),
            target: connected.name().to_owned(),
            server: connected.server().to_owned(),
        },
    })
}

/// Fault kinds, as the opt-in ConfigMap, plans and the journal name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    PodKill,
    WorkloadOutage,
    NodeDrain,
    NodePower,
    OsdDown,
    OsdOut,
    Noout,
    NetworkIsolation,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::PodKill,
        FaultKind::WorkloadOutage,
        FaultKind::NodeDrain,
        FaultKind::NodePower,
        FaultKind::OsdDown,
        FaultKind::OsdOut,
        FaultKind::Noout,
        FaultKind::NetworkIsolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::PodKill => "pod-kill",
            FaultKind::WorkloadOutage => "workload-outage",
            FaultKind::NodeDrain => "node-drain",
            FaultKind::NodePower => "node-power",
            FaultKind::OsdDown => "osd-down",
            FaultKind::OsdOut => "osd-out",
            FaultKind::Noout => "noout",
            FaultKind::NetworkIsolation => "network-isolation",
        }
    }

    pub fn parse(word: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What faults act through.
#[derive(Clone)]
pub struct FaultCtx {
    pub client: Client,
    pub power: Arc<dyn NodePower>,
}

/// What `apply` will do, resolved to objects, and how it will be undone.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub kind: FaultKind,
    /// e.g. `scale StatefulSet openalex/postgresql from 1 to 0 replicas`.
    pub action: String,
    /// The objects it changes, e.g. `StatefulSet openalex/postgresql`.
    pub objects: Vec<String>,
    pub revert: Revert,
}

/// A fault on named objects. Futures are boxed so the session can hold any fault
/// as `&dyn Fault`.
pub trait Fault: Send + Sync {
    fn kind(&self) -> FaultKind;
    /// Namespaces whose objects it changes, for the allow list; node-level faults
    /// (drain, power) return none and are allowed by kind.
    fn namespaces(&self) -> Vec<String>;
    /// Reads the state `apply` will change and returns the plan with its revert;
    /// changes nothing (this is all `--dry-run` does).
    fn plan<'a>(&'a self, ctx: &'a FaultCtx) -> BoxFuture<'a, Result<Plan, FaultError>>;
    /// What must be healthy again before the system counts as recovered from it,
    /// watched from before the fault (see [`crate::measure::touched`]).
    fn touches(&self) -> Vec<Touched>;
    /// Injects the fault and returns the revert record: the planned one (already in
    /// the journal), or a refined one that supersedes it.
    fn apply<'a>(
        &'a self,
        ctx: &'a FaultCtx,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Revert, FaultError>>;
}

/// How a fault is undone; serialised into the journal, so it names everything it
/// needs and nothing of the process that wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Revert {
    /// Nothing to undo: e.g. killed pods, which their controllers replace.
    Nothing {
        reason: String,
    },
    ScaleBack(scale::ScaleBack),
    Uncordon(drain::Uncordon),
    PowerOn(power::PowerOn),
    OsdIn(ceph::OsdIn),
    UnsetFlag(ceph::UnsetFlag),
    DeletePolicy(network::DeletePolicy),
}

/// What running a revert found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reverted {
    /// The prior state was restored.
    Restored,
    /// It was already in the prior state (reverted before, or by someone else).
    AlreadyRestored,
    /// The target no longer exists.
    Gone,
    /// There was nothing to undo.
    Nothing,
}

impl Reverted {
    pub fn as_str(self) -> &'static str {
        match self {
            Reverted::Restored => "restored",
            Reverted::AlreadyRestored => "already restored",
            Reverted::Gone => "target gone",
            Reverted::Nothing => "nothing to undo",
        }
    }
}

impl Revert {
    /// e.g. `scale StatefulSet openalex/postgresql back to 1 replicas`.
    pub fn describe(&self) -> String {
        match self {
            Revert::Nothing { reason } => format!("nothing to undo ({reason})"),
            Revert::ScaleBack(r) => r.describe(),
            Revert::Uncordon(r) => r.describe(),
            Revert::PowerOn(r) => r.describe(),
            Revert::OsdIn(r) => r.describe(),
            Revert::UnsetFlag(r) => r.describe(),
            Revert::DeletePolicy(r) => r.describe(),
        }
    }

    /// Puts the prior state back; running it again is harmless.
    pub async fn run(&self, ctx: &FaultCtx) -> Result<Reverted, FaultError> {
        match self {
            Revert::Nothing { .. } => Ok(Reverted::Nothing),
            Revert::ScaleBack(r) => r.run(ctx).await,
            Revert::Uncordon(r) => r.run(ctx).await,
            Revert::PowerOn(r) => r.run(ctx).await,
            Revert::OsdIn(r) => r.run(ctx).await,
            Revert::UnsetFlag(r) => r.run(ctx).await,
            Revert::DeletePolicy(r) => r.run(ctx).await,
        }
    }
}

/// A node pod that an eviction could not remove, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// `namespace/name`.
    pub pod: String,
    /// `namespace/name` of the PodDisruptionBudget, when one is the reason.
    pub pdb: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pdb {
            Some(pdb) => write!(
                f,
                "pod {} (PodDisruptionBudget {pdb}: {})",
                self.pod, self.message
            ),
            None => write!(f, "pod {} ({})", self.pod, self.message),
        }
    }
}

fn list_blocked(blocked: &[Blocked]) -> String {
    blocked
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{what} failed")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} not found")]
    NotFound { what: String },
    /// A precondition or the guard said no; nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Power(#[from] PowerError),
    #[error(transparent)]
    Ceph(#[from] ceph::CephError),
    #[error(
        "drain of node {node} blocked after {:.1}s: {}; the node stays cordoned until the \
         scenario's faults are reverted",
        .waited.as_secs_f64(),
        list_blocked(.blocked)
    )]
    DrainBlocked {
        node: String,
        waited: Duration,
        blocked: Vec<Blocked>,
    },
    #[error("cannot write the fault journal")]
    Journal(#[from] journal::JournalError),
    #[error("the run is aborting ({0}): no more faults are injected")]
    Aborting(String),
}

impl FaultError {
    /// `what failed` with the API error as its source.
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> FaultError {
        let what = what.into();
        move |source| FaultError::Api { what, source }
    }
}

/// The HTTP status of an API error (404, 409, 429, ...).
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::from(k.as_str())
            );
        }
        assert_eq!(FaultKind::parse("pod-kil"), None);
    }

    #[test]
    fn reverts_serialise_with_their_action() {
        let r = Revert::ScaleBack(scale::ScaleBack {
            workload: scale::Workload {
                kind: scale::WorkloadKind::StatefulSet,
                namespace: "openalex".into(),
                name: "postgresql".into(),
            },
            replicas: 1,
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["action"], "scale-back");
        assert_eq!(v["workload"]["kind"], "StatefulSet");
        assert_eq!(v["replicas"], 1);
        let back: Revert = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            r.describe(),
            "scale StatefulSet openalex/postgresql back to 1 replicas"
        );
    }

    #[test]
    fn blocked_drains_name_pod_and_budget() {
        let e = FaultError::DrainBlocked {
            node: "dirqual3".into(),
            waited: Duration::from_secs(5),
            blocked: vec![Blocked {
                pod: "openalex/postgresql-0".into(),
                pdb: Some("openalex/postgresql".into()),
                message: "needs 1 healthy pods and has 1 currently".into(),
            }],
        };
        assert_eq!(
            e.to_string(),
            "drain of node dirqual3 blocked after 5.0s: pod openalex/postgresql-0 \
             (PodDisruptionBudget openalex/postgresql: needs 1 healthy pods and has 1 \
             currently); the node stays cordoned until the scenario's faults are reverted"
        );
    }
}
