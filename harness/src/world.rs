//! The cucumber World and the run context it is built from.
//!
//! Cucumber constructs a World per scenario by itself, with no arguments, so the
//! runner publishes the run's context in a process-global slot before running and
//! clears it afterwards.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use kube::Client;

use crate::{
    config::Profile, load::ApiEndpoint, measure::drill::Drill, probe::k8s::ApiCatalog,
    verdict::Criterion,
};

/// What every scenario of a run shares.
pub struct RunContext {
    pub client: Client,
    /// Target name for reports (`twin`, `cluster`).
    pub target: String,
    pub seed: u64,
    pub profile: Option<Profile>,
    pub catalog: ApiCatalog,
    /// Where the API under test answers, for load steps; None: no load possible.
    pub api: Option<ApiEndpoint>,
    /// The run's report folder (timeline.csv goes there).
    pub run_dir: Option<PathBuf>,
    /// The stack's manifests, for "Given the documented stack is deployed".
    pub stack_dir: PathBuf,
    /// Fault injection: guard, journal, power provider, abort switch.
    pub faults: Arc<crate::fault::FaultRun>,
}

impl std::fmt::Debug for RunContext {
    // kube::Client is not Debug; the rest identifies the run well enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("target", &self.target)
            .field("seed", &self.seed)
            .field("profile", &self.profile.as_ref().map(|p| &p.path))
            .finish_non_exhaustive()
    }
}

static CONTEXT: RwLock<Option<Arc<RunContext>>> = RwLock::new(None);

/// Publishes `ctx` for the Worlds of this run; cleared when the guard drops.
pub fn install(ctx: Arc<RunContext>) -> ContextGuard {
    *CONTEXT.write().unwrap_or_else(|e| e.into_inner()) = Some(ctx);
    ContextGuard(())
}

pub fn current() -> Option<Arc<RunContext>> {
    CONTEXT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[must_use = "the context is cleared when the guard drops"]
pub struct ContextGuard(());

impl Drop for ContextGuard {
    fn drop(&mut self) {
        *CONTEXT.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("no run context: scenarios must be run through stormdrill's runner")]
    NoRunContext,
}

/// Per-scenario state.
#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
pub struct World {
    ctx: Arc<RunContext>,
    /// Named figures the scenario measured (e.g. `api_latency_ms`).
    pub measurements: BTreeMap<String, f64>,
    /// Criteria the scenario judged, with figure and threshold.
    pub criteria: Vec<Criterion>,
    /// The scenario's load and observers, stopped by the runner's after hook.
    pub drill: Option<Drill>,
    /// Faults injected and not reverted yet; the runner's after hook reverts them.
    pub faults: crate::fault::ScenarioFaults,
    /// The scenario's Velero disaster-recovery drill (`steps/dr.rs`).
    pub dr: Option<crate::dr::VeleroDrill>,
    /// Component health over the load's time axis (`health.csv`), for the report's
    /// lanes; started with the load, stopped with it.
    pub health: Option<crate::measure::health::HealthRecorder>,
    /// The load's timeline file name (`timeline-2.csv`), so the report can tell which
    /// scenario drew which chart.
    pub timeline_file: Option<String>,
    /// The latest fault change of the scenario (acknowledged injection or finished
    /// revert): what "Ceph reports ... within D" measures from.
    pub last_fault_change: Option<FaultChange>,
}

/// When and what (`injected` / `reverted`).
#[derive(Clone, Copy, Debug)]
pub struct FaultChange {
    pub at: std::time::Instant,
    pub what: &'static str,
}

impl World {
    pub fn new() -> Result<Self, WorldError> {
        Ok(Self::with_context(
            current().ok_or(WorldError::NoRunContext)?,
        ))
    }

    pub fn with_context(ctx: Arc<RunContext>) -> Self {
        World {
            ctx,
            measurements: BTreeMap::new(),
            criteria: Vec::new(),
            drill: None,
            faults: crate::fault::ScenarioFaults::default(),
            dr: None,
            health: None,
            timeline_file: None,
            last_fault_change: None,
        }
    }

    pub fn context(&self) -> &RunContext {
        &self.ctx
    }

    pub fn client(&self) -> &Client {
        &self.ctx.client
    }

    pub fn measure(&mut self, name: impl Into<String>, value: f64) {
        self.measurements.insert(name.into(), value);
    }

    /// Records a criterion and returns whether it passed.
    pub fn judge(&mut self, criterion: Criterion) -> bool {
        let pass = criterion.pass;
        self.criteria.push(criterion);
        pass
    }
}
