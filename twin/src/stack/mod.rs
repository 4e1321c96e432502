//! Pure models of the documented stack's components (no Kubernetes, no I/O, no async),
//! driven by the twin's simulated operators and answering the tools' commands.

pub mod ceph;
pub mod harbor;
pub mod observability;
pub mod postgres;
pub mod promql;
