//! stormdrill: chaos and disaster-recovery test harness. See DESIGN.md.
//!
//! The binary is thin: [`run`] runs features against a target and returns the
//! [`Outcome`] with its verdict; [`target`] is the only module that knows the twin.

pub mod cli;
pub mod config;
pub mod diag;
pub mod dr;
pub mod fault;
pub mod gameday;
pub mod load;
pub mod measure;
pub mod preflight;
pub mod probe;
pub mod progress;
pub mod report;
pub mod runner;
pub mod signal;
pub mod similar;
pub mod stack;
pub mod steps;
pub mod tags;
pub mod target;
pub mod up;
pub mod verdict;
pub mod world;

mod run;

pub use run::{run, Outcome, RunError, CONTROL_PLANE_LOGS};
