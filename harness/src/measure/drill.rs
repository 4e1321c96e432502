//! A drill: the load and observers of one scenario, the fault's t0, and the checks that
//! can only be judged once the degraded period is over.
//!
//! Phases: `before` from the start, `during` from the fault's t0, `after` once recovery
//! is confirmed (the windows confirming it still count as `during`).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{
    observe::ObserverSet,
    steady::{self, DeadlineClock, Deadlines, Missed, Recovery, SteadyRule},
    window::{Figures, WindowSummary},
};
use crate::{
    fault::abort::{self, Abort},
    load::{LoadConfig, LoadError, LoadReport, LoadRun},
    verdict::{Comparison, Criterion},
};

pub const PHASE_DURING: &str = "during";
pub const PHASE_AFTER: &str = "after";

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("no fault was started in this scenario, so there is no t0 to recover from")]
    NoFault,
    #[error("the load ended (its duration or request bound was reached) before {what}")]
    LoadEnded { what: &'static str },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A figure of the degraded period, judged against a threshold when that period ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DegradedCheck {
    /// p99 latency below this many ms.
    P99Below(f64),
    /// Error rate below this percentage.
    ErrorRateBelow(f64),
}

impl DegradedCheck {
    /// The criterion, from the `during` phase's figures (NaN, a failure, when no request
    /// completed while degraded).
    pub fn judge(&self, during: Option<&Figures>) -> Criterion {
        let completed = during.is_some_and(|f| f.counts.completed() > 0);
        let (name, figure, threshold, unit) = match *self {
            DegradedCheck::P99Below(t) => (
                "p99_during_ms",
                during.filter(|_| completed).map_or(f64::NAN, |f| f.p99_ms),
                t,
                "ms",
            ),
            DegradedCheck::ErrorRateBelow(t) => (
                "error_rate_during_pct",
                during.map_or(f64::NAN, |f| f.error_rate_pct),
                t,
                "%",
            ),
        };
        Criterion::new(name, figure, Comparison::Below, threshold, unit)
    }
}

fn with_source(c: Criterion, source: Option<String>) -> Criterion {
    match source {
        Some(s) => c.with_source(s),
        None => c,
    }
}

/// How a wait ended without reaching its goal.
#[derive(Debug)]
pub struct WaitFailed {
    pub missed: Missed,
    /// Where things stood, e.g. `2/5 good windows; last window p99 812 ms, errors 0 %;
    /// observers: nodes-ready 2/3 Ready`.
    pub status: String,
    /// Good windows at the end.
    pub good: usize,
}

/// Steady state reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Steady {
    /// Start of the K good windows, seconds since the load started.
    pub since_s: f64,
    pub waited_s: f64,
    /// Worst p99 over those windows.
    pub p99_ms: f64,
}

/// The outcome of waiting for recovery.
#[derive(Debug)]
pub struct RecoveryWait {
    pub recovery: Recovery,
    /// Set when a deadline passed before recovery.
    pub failed: Option<WaitFailed>,
    /// Degraded checks judged now that the degraded period is over.
    pub judged: Vec<Criterion>,
}

pub struct Drill {
    load: LoadRun,
    observers: ObserverSet,
    pub rule: SteadyRule,
    /// Seconds since the load started; set by the fault steps.
    t0_s: Option<f64>,
    t0_wall: Option<DateTime<Utc>>,
    /// Checks of the degraded period, with the profile key of their threshold.
    pending: Vec<(DegradedCheck, Option<String>)>,
    /// Publishes the load's latest window to the progress line while the drill lives.
    _live: crate::progress::LiveGuard,
    /// The error-rate abort condition, checked as windows close during the fault.
    error_watch: Option<AbortOnDrop>,
}

/// A task that must not outlive its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The error-rate abort condition (profile `abort.error_rate_pct`, `abort.windows`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorRateAbort {
    pub threshold_pct: f64,
    /// Consecutive windows above the threshold.
    pub windows: usize,
}

impl std::fmt::Debug for Drill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drill")
            .field("load", &self.load)
            .field("observers", &self.observers)
            .field("t0_s", &self.t0_s)
            .finish_non_exhaustive()
    }
}

impl Drill {
    /// Starts the load; observers are added with [`Drill::observers_mut`].
    pub async fn start(cfg: LoadConfig, rule: SteadyRule) -> Result<Drill, LoadError> {
        let load = LoadRun::start(cfg).await?;
        let windows = load.windows_handle();
        let live = crate::progress::live_source(move || {
            let w = windows.last()?;
            let age = (Utc::now() - w.wall).to_std().unwrap_or_default();
            let live = crate::progress::Live {
                rate: w.sent as f64 / w.len_s.max(1e-3),
                p99_ms: w.p99_ms(),
                error_pct: w.error_rate_pct(),
            };
            crate::progress::fresh(age.saturating_sub(Duration::from_secs_f64(w.len_s)), live)
        });
        Ok(Drill {
            load,
            observers: ObserverSet::new(),
            rule,
            t0_s: None,
            t0_wall: None,
            pending: Vec::new(),
            _live: live,
            error_watch: None,
        })
    }

    pub fn load(&self) -> &LoadRun {
        &self.load
    }

    pub fn observers(&self) -> &ObserverSet {
        &self.observers
    }

    pub fn observers_mut(&mut self) -> &mut ObserverSet {
        &mut self.observers
    }

    /// The fault took effect at `t0` (when the API server acknowledged it): requests
    /// from then on count as `during`. Returns t0 in seconds since the load started.
    pub fn fault_started(&mut self, t0: Instant) -> f64 {
        let t = self.load.mark_phase_at(t0, PHASE_DURING);
        self.t0_s = Some(t);
        let ago = chrono::Duration::from_std(t0.elapsed()).unwrap_or_default();
        self.t0_wall = Some(Utc::now() - ago);
        t
    }

    /// Checks `rule` on every window that closes from now until the degraded period
    /// ends (recovery confirmed, or the drill's end), and triggers `abort` when it is
    /// breached: a fault that takes the API down must stop the run while it happens,
    /// not at the next injection.
    pub fn watch_error_rate(&mut self, rule: ErrorRateAbort, abort: Abort) {
        let windows = self.load.windows_handle();
        let mut closed = self.load.subscribe();
        // A cloned receiver still holds every window closed before now as unseen:
        // judge from the next window on, not at once on what was already there.
        closed.borrow_and_update();
        self.error_watch = Some(AbortOnDrop(tokio::spawn(async move {
            // Ends with the load: its aggregator drops the sender.
            while closed.changed().await.is_ok() {
                let breached = windows.with_windows(|w| {
                    abort::error_rate_breached(w, rule.threshold_pct, rule.windows.max(1))
                });
                if let Some(reason) = breached {
                    abort.trigger(reason);
                    return;
                }
            }
        })));
    }

    /// Stops the error-rate watch: the abort stops a fault's blast radius, and once
    /// the scenario's faults are all reverted there is nothing left to stop; whether
    /// the system comes back is the recovery criterion's to judge.
    pub fn stop_watching_error_rate(&mut self) {
        self.error_watch = None;
    }

    /// Whether the error-rate abort condition is being watched.
    pub fn watching_error_rate(&self) -> bool {
        self.error_watch
            .as_ref()
            .is_some_and(|w| !w.0.is_finished())
    }

    pub fn t0_s(&self) -> Option<f64> {
        self.t0_s
    }

    pub fn t0_wall(&self) -> Option<DateTime<Utc>> {
        self.t0_wall
    }

    /// Registers a check of the degraded period; judged at once if that period is over.
    pub fn check_degraded(&mut self, check: DegradedCheck) -> Option<Criterion> {
        self.check_degraded_from(check, None)
    }

    /// [`Self::check_degraded`] whose threshold came from `source` (e.g. `profile
    /// chaos.osd.p99_during_ms`), carried into the criterion.
    pub fn check_degraded_from(
        &mut self,
        check: DegradedCheck,
        source: Option<String>,
    ) -> Option<Criterion> {
        if self.t0_s.is_some() && self.load.current_phase() != PHASE_DURING {
            let c = check.judge(self.load.phase_figures(PHASE_DURING).as_ref());
            return Some(with_source(c, source));
        }
        self.pending.push((check, source));
        None
    }

    /// Ends the degraded period (if one is running) and judges the pending checks.
    pub fn end_degraded(&mut self) -> Vec<Criterion> {
        self.error_watch = None;
        if self.load.current_phase() == PHASE_DURING {
            self.load.mark_phase(PHASE_AFTER);
        }
        let during = self.load.phase_figures(PHASE_DURING);
        self.pending
            .drain(..)
            .map(|(c, source)| with_source(c.judge(during.as_ref()), source))
            .collect()
    }

    pub fn during_figures(&self) -> Option<Figures> {
        self.load.phase_figures(PHASE_DURING)
    }

    /// Waits until the timeline ends in a steady state; the inner error is a deadline
    /// that passed first.
    pub async fn wait_steady(
        &self,
        deadlines: Deadlines,
    ) -> Result<Result<Steady, WaitFailed>, DrillError> {
        let start = self.load.now_s();
        let rule = self.rule;
        let k = rule.windows.max(1);
        let what = format!("steady state ({k} good windows)");
        let got = self
            .wait(&what, deadlines, |windows, tracks| {
                let good = steady::trailing_good(windows, &rule, tracks);
                let done = (good >= k).then(|| {
                    let run = &windows[windows.len() - good..];
                    Steady {
                        since_s: run[0].start_s,
                        waited_s: 0.0,
                        p99_ms: run.iter().map(WindowSummary::p99_ms).fold(0.0, f64::max),
                    }
                });
                (done, good.min(k))
            })
            .await?;
        Ok(got.map(|mut s| {
            s.waited_s = self.load.now_s() - start;
            s
        }))
    }

    /// Waits until the system has recovered from the fault (a steady state that holds),
    /// for at most `within` after t0 plus the K windows that confirm it, or until
    /// nothing moved for the no-progress deadline. Ends the degraded period when done.
    pub async fn wait_recovered(
        &mut self,
        within: Duration,
        no_progress: Option<Duration>,
    ) -> Result<RecoveryWait, DrillError> {
        let t0 = self.t0_s.ok_or(DrillError::NoFault)?;
        let rule = self.rule;
        let window_s = self
            .load
            .with_windows(|w| w.first().map_or(1.0, |w| w.len_s));
        let confirm_s = rule.windows.max(1) as f64 * window_s + 2.0;
        let k = rule.windows.max(1);
        loop {
            let now = self.load.now_s();
            let deadlines = Deadlines {
                absolute_s: (t0 + within.as_secs_f64() - now).max(0.0) + confirm_s,
                no_progress_s: no_progress.map(|d| d.as_secs_f64()),
            };
            let load = &self.load;
            let outcome = self
                .wait(
                    "recovery (a steady state that holds)",
                    deadlines,
                    |windows, tracks| {
                        // Health now, as the final judgement below sees it: a
                        // report newer than the last window counts.
                        let until = load.now_s().max(t0);
                        let r = steady::analyse(windows, tracks, &rule, t0, until);
                        let good = r.good_tail;
                        (r.recovered_at_s.is_some().then_some(()), good.min(k))
                    },
                )
                .await?;
            let until = self.load.now_s();
            let tracks = self.observers.tracks(self.load.origin());
            let recovery = self
                .load
                .with_windows(|w| steady::analyse(w, &tracks, &rule, t0, until));
            // An observer's report can arrive after the windows that looked like
            // recovery (a watch event late on a loaded machine): judged again with
            // it, recovery is not there yet, so the wait goes on.
            if recovery.recovered_at_s.is_none() && outcome.is_ok() {
                continue;
            }
            let judged = self.end_degraded();
            return Ok(RecoveryWait {
                recovery,
                failed: outcome.err(),
                judged,
            });
        }
    }

    /// Polls nothing: wakes when a window closes or an observer reports, and evaluates
    /// `check` over the windows and health tracks, which returns (done, progress).
    async fn wait<T>(
        &self,
        what: &str,
        deadlines: Deadlines,
        mut check: impl FnMut(&[WindowSummary], &[steady::HealthTrack]) -> (Option<T>, usize),
    ) -> Result<Result<T, WaitFailed>, DrillError> {
        let mut closed = self.load.subscribe();
        let mut changes = self.observers.subscribe();
        let origin = self.load.origin();
        let mut clock = DeadlineClock::new(self.load.now_s(), deadlines);
        let mut last_progress = 0usize;
        let mut observing = true;
        let mut seen_changes = self.observers.changes();
        let shown = crate::progress::Wait::start(
            what,
            Some(Duration::from_secs_f64(deadlines.absolute_s.max(0.0))),
        );
        loop {
            closed.borrow_and_update();
            changes.borrow_and_update();
            let tracks = self.observers.tracks(origin);
            let (done, progress) = self.load.with_windows(|w| check(w, &tracks));
            if let Some(t) = done {
                shown.finish("reached");
                return Ok(Ok(t));
            }
            shown.status(self.live_status(progress));
            let now = self.load.now_s();
            let moved = self.observers.changes();
            // Progress: one more good window, or any observer reporting a change.
            if progress > last_progress || moved != seen_changes {
                clock.progressed(now);
            }
            last_progress = progress;
            seen_changes = moved;
            if let Err(missed) = clock.check(now) {
                shown.finish(&missed.to_string());
                return Ok(Err(WaitFailed {
                    missed,
                    status: self.status(progress),
                    good: progress,
                }));
            }
            let sleep = Duration::from_secs_f64(clock.remaining_s(now).clamp(0.01, 3600.0));
            tokio::select! {
                r = closed.changed() => {
                    // The aggregator is gone: no window will ever close again.
                    if r.is_err() {
                        return Err(DrillError::LoadEnded { what: "the wait was over" });
                    }
                }
                r = changes.changed(), if observing => observing = r.is_ok(),
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Where a wait stands, for the progress line: good windows and the observers
    /// that are not healthy (the load's figures are on the line already).
    fn live_status(&self, good: usize) -> String {
        let mut s = format!("{good}/{} good windows", self.rule.windows);
        for o in self.observers.status() {
            if o.healthy != Some(true) {
                s.push_str(&format!("; {} {}", o.name, o.detail));
            }
        }
        s
    }

    /// One line on where things stand, for failure messages.
    pub fn status(&self, good: usize) -> String {
        let mut s = format!("{good}/{} good windows", self.rule.windows);
        self.load.with_windows(|w| {
            if let Some(last) = w.last() {
                s.push_str(&format!(
                    "; last window p99 {:.1} ms, errors {:.2} % of {}",
                    last.p99_ms(),
                    last.error_rate_pct(),
                    last.counts.completed()
                ));
            } else {
                s.push_str("; no window closed yet");
            }
        });
        let observers: Vec<String> = self
            .observers
            .status()
            .into_iter()
            .map(|o| format!("{} {}", o.name, o.detail))
            .collect();
        if !observers.is_empty() {
            s.push_str(&format!("; observers: {}", observers.join(", ")));
        }
        s
    }

    /// Stops the load and observers; judges what is pending.
    pub async fn finish(mut self) -> (Result<LoadReport, LoadError>, Vec<Criterion>) {
        self.error_watch = None;
        let judged = if self.pending.is_empty() {
            Vec::new()
        } else {
            self.end_degraded()
        };
        self.observers.stop();
        (self.load.finish().await, judged)
    }
}
