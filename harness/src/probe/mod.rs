//! Probes: read-only observations of a target. One file per system observed.

pub mod api;
pub mod ceph;
pub mod dns;
pub mod exec;
pub mod grafana;
pub mod harbor;
pub mod http;
pub mod k8s;
pub mod loki;
pub mod platform;
pub mod prom;
pub mod storage;
pub mod svc;
