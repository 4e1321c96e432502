//! A pure model of a Ceph cluster (Reef, as Rook runs it): monitors and a manager, hosts
//! with OSDs, the OSD map (up/down, in/out, flags, epochs), pools with CRUSH-like placement
//! (host failure domain, device classes), placement groups with their states, data and
//! degraded/misplaced object counts, peering, recovery and backfill over time, health
//! checks, the `ceph` CLI's JSON and plain outputs and the mgr prometheus exposition.
//!
//! No I/O, no async, no wall clock: time is a [`Duration`](std::time::Duration) since the
//! model's origin, passed in by the caller ([`CephModel::advance`]). Everything is
//! deterministic for a given seed and sequence of calls.
//!
//! How it is meant to be driven (by the twin's simulated Rook operator):
//! - [`CephModel::documented_stack`] builds the documented cluster (see its doc);
//! - [`CephModel::set_osd_running`] follows the `rook-ceph-osd-<id>` pod (process running
//!   or not); the monitor marks a stopped OSD down after a short grace, a started one up
//!   after it boots;
//! - [`run_ceph_command`] answers `ceph ...` executed in the toolbox pod;
//! - [`CephModel::prometheus_metrics`] serves the mgr's `:9283/metrics`.
//!
//! Reference for the shapes: `fixtures/upstream/ceph/` (real Ceph 16.2 captures of a drill)
//! and `/work/shared/ceph-lab.md`; behaviour follows Ceph's documentation and sources
//! (`OSDMonitor`, `OSDMap::check_health`, `PGMap::get_health_checks`, `pg_state_string`,
//! `PGMapDigest::print_summary`), cited where it matters.

pub mod backend;
mod cli;
mod crush;
mod health;
mod metrics;
mod model;
mod output;
mod pgstate;
pub mod real;
mod text;

#[cfg(test)]
mod tests;

pub use cli::run_ceph_command;
pub use health::{HealthCheck, HealthStatus};
pub use model::{CephError, CephModel, CephParams, DeviceClass, Osd, PgId, PgSummary, Pool};
pub use pgstate::pg_state_string;

/// The version string the model's daemons report (the image in fixtures/stack/10-rook-ceph.yaml).
pub const CEPH_VERSION: &str =
    "ceph version 18.2.4 (e7ad5345525c7aa95470c26863873b581076945d) reef (stable)";
