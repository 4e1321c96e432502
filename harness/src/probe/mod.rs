//! Probes: read-only observations of a target. One file per system observed.

pub mod api;
pub mod k8s;
