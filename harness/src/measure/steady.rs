//! Steady state and recovery, as pure functions over a timeline and health tracks
//! (DESIGN.md §3). Times are seconds since the load started.
//!
//! - A window is *good* when it meets the SLO and every observer is healthy through it.
//! - *Steady state*: K consecutive good windows (default 5).
//! - After a fault at t0: *detection* is the first unhealthy signal at or after t0 (an
//!   observer turning unhealthy, or a window breaching the SLO, seen when it closes);
//!   *recovery* is the start
//!   of the first steady state that holds until the end of observation; RTO = that - t0.

use std::fmt;

use serde::Serialize;

use super::window::WindowSummary;

/// Per-window limits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Slo {
    pub p99_ms: f64,
    /// Percent of completed requests.
    pub error_rate_pct: f64,
}

impl Default for Slo {
    /// DESIGN.md §3's example: p99 <= 500 ms, error rate <= 1 %.
    fn default() -> Self {
        Slo {
            p99_ms: 500.0,
            error_rate_pct: 1.0,
        }
    }
}

/// What makes a steady state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SteadyRule {
    pub slo: Slo,
    /// K: consecutive good windows.
    pub windows: usize,
}

impl Default for SteadyRule {
    fn default() -> Self {
        SteadyRule {
            slo: Slo::default(),
            windows: 5,
        }
    }
}

/// One observer's health over time: its transitions, in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthTrack {
    pub name: String,
    /// (t_s, healthy); the state holds until the next entry.
    pub samples: Vec<(f64, bool)>,
}

impl HealthTrack {
    pub fn new(name: impl Into<String>, samples: Vec<(f64, bool)>) -> Self {
        HealthTrack {
            name: name.into(),
            samples,
        }
    }

    /// State at `t`; an observer that has not reported yet is not known healthy.
    pub fn healthy_at(&self, t: f64) -> bool {
        self.samples
            .iter()
            .rev()
            .find(|s| s.0 <= t)
            .is_some_and(|s| s.1)
    }

    /// Healthy at `from` and no unhealthy report before `to`.
    pub fn healthy_throughout(&self, from: f64, to: f64) -> bool {
        self.healthy_at(from) && !self.samples.iter().any(|s| s.0 > from && s.0 < to && !s.1)
    }

    /// The first unhealthy report at or after `t0`; `t0` itself when it was already
    /// unhealthy then.
    pub fn first_unhealthy_from(&self, t0: f64) -> Option<f64> {
        if self.samples.iter().any(|s| s.0 <= t0) && !self.healthy_at(t0) {
            return Some(t0);
        }
        self.samples.iter().find(|s| s.0 >= t0 && !s.1).map(|s| s.0)
    }

    /// When it became healthy for good after `t0` (t0 itself if it never stopped being
    /// healthy), judged at `until`; None while it is not healthy at `until`.
    pub fn recovered_from(&self, t0: f64, until: f64) -> Option<f64> {
        if !self.healthy_at(until) {
            return None;
        }
        let last_up = self
            .samples
            .iter()
            .rev()
            .filter(|s| s.0 <= until)
            .take_while(|s| s.1)
            .last()
            .map_or(t0, |s| s.0);
        let went_down = self
            .samples
            .iter()
            .any(|s| s.0 >= t0 && s.0 <= until && !s.1)
            || !self.healthy_at(t0);
        Some(if went_down { last_up.max(t0) } else { t0 })
    }
}

/// The window meets the SLO; a window where nothing completed does not.
pub fn meets_slo(w: &WindowSummary, slo: &Slo) -> bool {
    w.counts.completed() > 0 && w.p99_ms() <= slo.p99_ms && w.error_rate_pct() <= slo.error_rate_pct
}

/// Meets the SLO with every observer healthy through the window.
pub fn window_good(w: &WindowSummary, rule: &SteadyRule, tracks: &[HealthTrack]) -> bool {
    meets_slo(w, &rule.slo)
        && tracks
            .iter()
            .all(|t| t.healthy_throughout(w.start_s, w.end_s()))
}

/// Good windows at the end of the timeline, counted back to the last bad one.
pub fn trailing_good(
    windows: &[WindowSummary],
    rule: &SteadyRule,
    tracks: &[HealthTrack],
) -> usize {
    windows
        .iter()
        .rev()
        .take_while(|w| window_good(w, rule, tracks))
        .count()
}

/// Start of the steady state the timeline ends in, if it ends in one.
pub fn steady_since(
    windows: &[WindowSummary],
    rule: &SteadyRule,
    tracks: &[HealthTrack],
) -> Option<f64> {
    let n = trailing_good(windows, rule, tracks);
    (n >= rule.windows.max(1)).then(|| windows[windows.len() - n].start_s)
}

/// The first sign of a fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub at_s: f64,
    /// `observer NAME`, or `SLO breach (p99 X ms, errors Y %)`.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentRecovery {
    pub name: String,
    pub went_unhealthy: bool,
    /// Seconds after t0 until it was healthy for good; None while still unhealthy.
    pub recovered_after_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    pub t0_s: f64,
    pub detection: Option<Detection>,
    /// Start of the final steady state; None when the timeline does not end in one.
    pub recovered_at_s: Option<f64>,
    /// recovered_at - t0, never negative.
    pub rto_s: Option<f64>,
    /// Good windows at the end (progress towards K).
    pub good_tail: usize,
    pub components: Vec<ComponentRecovery>,
}

impl Recovery {
    /// Something watched turned unhealthy or a window breached after t0. Without it the
    /// RTO is 0 by construction: "no impact observed", not a measured recovery.
    pub fn impact_observed(&self) -> bool {
        self.detection.is_some()
    }

    pub fn detection_after_s(&self) -> Option<f64> {
        self.detection
            .as_ref()
            .map(|d| (d.at_s - self.t0_s).max(0.0))
    }
}

/// Recovery from a fault at `t0_s`, observed until `until_s` (the windows given are
/// those closed by then).
pub fn analyse(
    windows: &[WindowSummary],
    tracks: &[HealthTrack],
    rule: &SteadyRule,
    t0_s: f64,
    until_s: f64,
) -> Recovery {
    let after: Vec<&WindowSummary> = windows.iter().filter(|w| w.end_s() > t0_s).collect();

    let from_observers = tracks.iter().filter_map(|t| {
        t.first_unhealthy_from(t0_s)
            .map(|at| (at, format!("observer {}", t.name)))
    });
    // A breach is observed when its window closes: the window's start would report
    // detection at t0 for any fault whose window breaches, however late the effect.
    let from_slo = after.iter().find(|w| !meets_slo(w, &rule.slo)).map(|w| {
        (
            w.end_s(),
            format!(
                "SLO breach (p99 {} ms, errors {} %)",
                round3(w.p99_ms()),
                round3(w.error_rate_pct())
            ),
        )
    });
    let detection = from_observers
        .chain(from_slo)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(at_s, source)| Detection { at_s, source });

    let good_tail = after
        .iter()
        .rev()
        .take_while(|w| window_good(w, rule, tracks))
        .count();
    // Health reports can run ahead of the windows (a window closes once its requests
    // end, seconds late under load): a dip after the last closed window is not
    // covered by any window, and the steady state must hold through it too.
    let last_end = after.last().map_or(t0_s, |w| w.end_s());
    let healthy_since_windows = tracks
        .iter()
        .all(|t| t.healthy_throughout(last_end.min(until_s), until_s) && t.healthy_at(until_s));
    let recovered_at_s = (good_tail >= rule.windows.max(1) && healthy_since_windows)
        .then(|| after[after.len() - good_tail].start_s);

    let components = tracks
        .iter()
        .map(|t| ComponentRecovery {
            name: t.name.clone(),
            went_unhealthy: t.first_unhealthy_from(t0_s).is_some_and(|at| at <= until_s),
            recovered_after_s: t
                .recovered_from(t0_s, until_s)
                .map(|at| (at - t0_s).max(0.0)),
        })
        .collect();

    Recovery {
        t0_s,
        detection,
        recovered_at_s,
        rto_s: recovered_at_s.map(|r| (r - t0_s).max(0.0)),
        good_tail,
        components,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Two deadlines for a wait: an absolute one, and one that resets whenever a progress
/// signal moves (pods becoming Ready one by one keep a slow recovery alive; nothing
/// moving for too long ends it early).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deadlines {
    pub absolute_s: f64,
    pub no_progress_s: Option<f64>,
}

/// Which deadline passed, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Missed {
    Absolute { waited_s: f64 },
    NoProgress { stalled_s: f64, waited_s: f64 },
}

impl Missed {
    pub fn waited_s(&self) -> f64 {
        match *self {
            Missed::Absolute { waited_s } | Missed::NoProgress { waited_s, .. } => waited_s,
        }
    }
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Missed::Absolute { waited_s } => write!(f, "gave up after {waited_s:.1} s"),
            Missed::NoProgress {
                stalled_s,
                waited_s,
            } => write!(
                f,
                "gave up after {waited_s:.1} s: nothing moved for {stalled_s:.1} s"
            ),
        }
    }
}

/// The clock of one wait.
#[derive(Clone, Copy, Debug)]
pub struct DeadlineClock {
    start_s: f64,
    last_progress_s: f64,
    deadlines: Deadlines,
}

impl DeadlineClock {
    pub fn new(start_s: f64, deadlines: Deadlines) -> Self {
        DeadlineClock {
            start_s,
            last_progress_s: start_s,
            deadlines,
        }
    }

    /// A progress signal moved at `now_s`.
    pub fn progressed(&mut self, now_s: f64) {
        self.last_progress_s = self.last_progress_s.max(now_s);
    }

    pub fn check(&self, now_s: f64) -> Result<(), Missed> {
        let waited_s = now_s - self.start_s;
        if waited_s >= self.deadlines.absolute_s {
            return Err(Missed::Absolute { waited_s });
        }
        let stalled_s = now_s - self.last_progress_s;
        match self.deadlines.no_progress_s {
            Some(limit) if stalled_s >= limit => Err(Missed::NoProgress {
                stalled_s,
                waited_s,
            }),
            _ => Ok(()),
        }
    }

    /// Seconds until the nearer deadline, from `now_s`.
    pub fn remaining_s(&self, now_s: f64) -> f64 {
        let abs = self.start_s + self.deadlines.absolute_s - now_s;
        let np = self
            .deadlines
            .no_progress_s
            .map_or(f64::INFINITY, |l| self.last_progress_s + l - now_s);
        abs.min(np).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::DateTime;

    use super::*;
    use crate::measure::window::Counts;

    /// A synthetic 1 s window: p99 in ms and errors out of 100 requests.
    fn w(i: u64, p99_ms: u64, errors: u64) -> WindowSummary {
        WindowSummary {
            index: i,
            start_s: i as f64,
            len_s: 1.0,
            wall: DateTime::UNIX_EPOCH,
            phase: Arc::from("x"),
            sent: 100,
            counts: Counts {
                ok: 100 - errors,
                err_5xx: errors,
                ..Counts::default()
            },
            p50_us: p99_ms * 500,
            p90_us: p99_ms * 900,
            p99_us: p99_ms * 1000,
            p999_us: p99_ms * 1000,
            max_us: p99_ms * 1000,
            lag_p99_us: 0,
        }
    }

    /// A recorded timeline: 10 s fine, fault at t0 = 10 s, 8 s of slow and failing
    /// windows, fine again from 18 s to 30 s.
    fn recorded() -> Vec<WindowSummary> {
        (0..30)
            .map(|i| match i {
                10..=13 => w(i, 2500, 40),
                14..=17 => w(i, 800, 0),
                _ => w(i, 40, 0),
            })
            .collect()
    }

    #[test]
    fn slo_and_empty_windows() {
        let slo = Slo::default();
        assert!(meets_slo(&w(0, 500, 1), &slo));
        assert!(!meets_slo(&w(0, 501, 0), &slo));
        assert!(!meets_slo(&w(0, 10, 2), &slo));
        let mut empty = w(0, 0, 0);
        empty.counts = Counts::default();
        assert!(!meets_slo(&empty, &slo), "nothing completed is not good");
    }

    #[test]
    fn steady_state_needs_k_consecutive_good_windows() {
        let rule = SteadyRule::default();
        let t = recorded();
        assert_eq!(steady_since(&t[..5], &rule, &[]), Some(0.0));
        assert_eq!(steady_since(&t[..4], &rule, &[]), None);
        assert_eq!(steady_since(&t[..12], &rule, &[]), None);
        assert_eq!(trailing_good(&t[..21], &rule, &[]), 3);
        assert_eq!(steady_since(&t[..23], &rule, &[]), Some(18.0));
    }

    #[test]
    fn an_unhealthy_observer_spoils_its_windows() {
        let rule = SteadyRule::default();
        let t = recorded();
        let pods = HealthTrack::new("pods", vec![(0.0, true), (3.5, false), (4.2, true)]);
        assert!(!window_good(&t[3], &rule, std::slice::from_ref(&pods)));
        assert!(!window_good(&t[4], &rule, std::slice::from_ref(&pods)));
        assert!(window_good(&t[5], &rule, std::slice::from_ref(&pods)));
        assert_eq!(steady_since(&t[..10], &rule, &[pods]), Some(5.0));
        let silent = HealthTrack::new("silent", vec![]);
        assert_eq!(steady_since(&t[..10], &rule, &[silent]), None);
    }

    #[test]
    fn recovery_from_a_recorded_timeline() {
        let rule = SteadyRule::default();
        let t = recorded();
        let pods = HealthTrack::new(
            "pods-ready[api]",
            vec![(0.0, true), (10.4, false), (16.2, true)],
        );
        let r = analyse(&t, &[pods], &rule, 10.0, 30.0);
        // The observer (10.4) sees the fault before the breaching window closes (11.0).
        assert_eq!(r.detection.as_ref().unwrap().at_s, 10.4);
        assert_eq!(
            r.detection.as_ref().unwrap().source,
            "observer pods-ready[api]"
        );
        let slo_only = analyse(&t, &[], &rule, 10.0, 30.0);
        let d = slo_only.detection.unwrap();
        assert_eq!(
            (d.at_s, d.source.as_str()),
            (11.0, "SLO breach (p99 2500 ms, errors 40 %)")
        );
        assert_eq!(r.recovered_at_s, Some(18.0));
        assert_eq!(r.rto_s, Some(8.0));
        assert!(r.impact_observed());
        assert_eq!(r.good_tail, 12);
        let c = &r.components[0];
        assert!(c.went_unhealthy);
        assert!((c.recovered_after_s.unwrap() - 6.2).abs() < 1e-9);
    }

    #[test]
    fn observer_detection_can_come_first_and_mid_window() {
        let rule = SteadyRule::default();
        let t: Vec<_> = (0..20)
            .map(|i| w(i, if i == 12 { 900 } else { 30 }, 0))
            .collect();
        let nodes = HealthTrack::new("nodes", vec![(0.0, true), (10.3, false), (11.0, true)]);
        let r = analyse(&t, &[nodes], &rule, 10.0, 20.0);
        let d = r.detection.unwrap();
        assert_eq!((d.at_s, d.source.as_str()), (10.3, "observer nodes"));
        assert_eq!(r.recovered_at_s, Some(13.0));
    }

    #[test]
    fn no_recovery_until_k_good_windows_and_healthy_at_the_end() {
        let rule = SteadyRule::default();
        let t = recorded();
        let r = analyse(&t[..21], &[], &rule, 10.0, 21.0);
        assert_eq!((r.recovered_at_s, r.good_tail), (None, 3));
        // Windows look fine, but the observer is down at the end of observation.
        let pods = HealthTrack::new("pods", vec![(0.0, true), (29.5, false)]);
        let r = analyse(&t, std::slice::from_ref(&pods), &rule, 10.0, 29.9);
        assert_eq!(r.recovered_at_s, None);
        assert_eq!(r.components[0].recovered_after_s, None);
    }

    #[test]
    fn a_dip_after_the_last_closed_window_is_not_recovery() {
        let rule = SteadyRule::default();
        let t: Vec<_> = (0..20).map(|i| w(i, 30, 0)).collect();
        // Windows end at 20 s; the workload was down from 20.5 s to 21.5 s.
        let pods = HealthTrack::new("pods", vec![(0.0, true), (20.5, false), (21.5, true)]);
        let r = analyse(&t, std::slice::from_ref(&pods), &rule, 10.0, 22.0);
        assert_eq!((r.recovered_at_s, r.rto_s), (None, None));
        assert!(r.impact_observed());
        // Once windows cover the dip, recovery is the first steady state after it.
        let t: Vec<_> = (0..30).map(|i| w(i, 30, 0)).collect();
        let r = analyse(&t, &[pods], &rule, 10.0, 30.0);
        assert_eq!(r.recovered_at_s, Some(22.0));
    }

    #[test]
    fn a_fault_without_effect_recovers_at_once() {
        let rule = SteadyRule::default();
        let t: Vec<_> = (0..20).map(|i| w(i, 30, 0)).collect();
        let pods = HealthTrack::new("pods", vec![(0.0, true)]);
        let r = analyse(&t, &[pods], &rule, 10.5, 20.0);
        assert_eq!(r.detection, None);
        assert_eq!(r.rto_s, Some(0.0));
        assert!(!r.impact_observed());
        assert_eq!(r.components[0].recovered_after_s, Some(0.0));
        assert!(!r.components[0].went_unhealthy);
    }

    #[test]
    fn health_track_queries() {
        let t = HealthTrack::new("x", vec![(1.0, true), (5.0, false), (7.0, true)]);
        assert!(!t.healthy_at(0.5));
        assert!(t.healthy_at(1.0));
        assert!(!t.healthy_at(6.0));
        assert!(t.healthy_throughout(1.0, 5.0));
        assert!(!t.healthy_throughout(1.0, 5.5));
        assert_eq!(t.first_unhealthy_from(2.0), Some(5.0));
        assert_eq!(t.first_unhealthy_from(6.0), Some(6.0));
        assert_eq!(t.first_unhealthy_from(8.0), None);
        assert_eq!(t.recovered_from(2.0, 8.0), Some(7.0));
        assert_eq!(t.recovered_from(2.0, 6.0), None);
    }

    #[test]
    fn deadlines_absolute_and_no_progress() {
        let mut c = DeadlineClock::new(
            100.0,
            Deadlines {
                absolute_s: 60.0,
                no_progress_s: Some(10.0),
            },
        );
        assert!(c.check(105.0).is_ok());
        assert_eq!(
            c.check(110.0),
            Err(Missed::NoProgress {
                stalled_s: 10.0,
                waited_s: 10.0
            })
        );
        c.progressed(108.0);
        assert!(c.check(115.0).is_ok());
        assert_eq!(c.remaining_s(115.0), 3.0);
        for t in (110..160).step_by(5) {
            c.progressed(t as f64);
        }
        let missed = c.check(160.0).unwrap_err();
        assert_eq!(missed, Missed::Absolute { waited_s: 60.0 });
        assert_eq!(missed.to_string(), "gave up after 60.0 s");
        let none = DeadlineClock::new(
            0.0,
            Deadlines {
                absolute_s: 5.0,
                no_progress_s: None,
            },
        );
        assert!(none.check(4.9).is_ok());
        assert_eq!(none.remaining_s(1.0), 4.0);
    }
}
