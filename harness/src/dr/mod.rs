//! Disaster-recovery drills with Velero (DESIGN §3: RTO, RPO, markers; §4: the
//! disaster fault). The steps (`steps/dr.rs`) are thin: each calls one phase of
//! [`drill::VeleroDrill`], whose parameters come from a YAML scenario
//! ([`scenario::DrScenario`], `scenarios/velero-dr.yaml`).

pub mod api;
pub mod drill;
pub mod markers;
pub mod psql;
pub mod scenario;
pub mod schedule;
pub mod velero;

pub use drill::{DrillEnv, DrillError, VeleroDrill};
pub use scenario::{DrScenario, ScenarioError};
