//! Measurement: windows and phases of load results, the timeline, health observers,
//! steady state and recovery, and the drill that ties them to a scenario.

pub mod drill;
pub mod health;
pub mod observe;
pub mod steady;
pub mod timeline;
pub mod touched;
pub mod window;
