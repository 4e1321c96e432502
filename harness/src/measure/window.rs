//! Windows of load results: per window an HDR histogram of latency, counts by class and
//! scheduler lag; per phase (before / during / after a fault) one merged histogram.
//!
//! Memory stays bounded on long runs: only the few windows still waiting for responses
//! hold histograms; a closed window keeps a small [`WindowSummary`] and its histogram is
//! recycled. Times are microseconds since the load's start, so this module is pure and
//! driven by tests and the generator alike.

use std::{collections::VecDeque, sync::Arc};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies above this are recorded as this (saturated): one hour, in microseconds.
pub const MAX_RECORDABLE_US: u64 = 3_600_000_000;
/// 3 significant figures, as DESIGN.md §3 asks.
const SIGFIG: u8 = 3;

/// The phase a load starts in, before any fault.
pub const PHASE_BEFORE: &str = "before";

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 2xx or 3xx.
    Ok,
    /// Any other status code (429 is counted apart from other 4xx).
    Http(u16),
    /// No full response within the per-request timeout.
    Timeout,
    /// Connect refused or reset, TLS failure, broken connection.
    Connect,
}

impl Class {
    pub fn from_status(code: u16) -> Self {
        if (200..400).contains(&code) {
            Class::Ok
        } else {
            Class::Http(code)
        }
    }
}

/// Counts of requests by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: u64,
    /// 4xx other than 429.
    pub err_4xx: u64,
    pub err_429: u64,
    /// 5xx, and any other non-2xx/3xx code.
    pub err_5xx: u64,
    pub timeouts: u64,
    pub conn_errors: u64,
}

impl Counts {
    pub fn add(&mut self, class: Class) {
        match class {
            Class::Ok => self.ok += 1,
            Class::Http(429) => self.err_429 += 1,
            Class::Http(400..=499) => self.err_4xx += 1,
            Class::Http(_) => self.err_5xx += 1,
            Class::Timeout => self.timeouts += 1,
            Class::Connect => self.conn_errors += 1,
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.err_4xx += other.err_4xx;
        self.err_429 += other.err_429;
        self.err_5xx += other.err_5xx;
        self.timeouts += other.timeouts;
        self.conn_errors += other.conn_errors;
    }

    /// Requests that ended, one way or another.
    pub fn completed(&self) -> u64 {
        self.ok + self.errors()
    }

    /// Everything that is not ok: an HTTP error, a timeout or a connection error. These
    /// are the requests a user lost.
    pub fn errors(&self) -> u64 {
        self.err_4xx + self.err_429 + self.err_5xx + self.timeouts + self.conn_errors
    }

    /// Errors per completed request, in percent; NaN when nothing completed, so an
    /// empty window never counts as meeting an SLO.
    pub fn error_rate_pct(&self) -> f64 {
        match self.completed() {
            0 => f64::NAN,
            n => self.errors() as f64 * 100.0 / n as f64,
        }
    }
}

/// One finished request. `start_us` is the *intended* send time in open loop (the
/// actual one in closed loop), so latency includes any time the request waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub start_us: u64,
    pub latency_us: u64,
    /// Actual send minus intended send.
    pub lag_us: u64,
    pub class: Class,
}

/// What the timeline keeps of a closed window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowSummary {
    pub index: u64,
    /// Seconds since the load started.
    pub start_s: f64,
    pub len_s: f64,
    pub wall: DateTime<Utc>,
    #[serde(serialize_with = "serialize_str")]
    pub phase: Arc<str>,
    pub sent: u64,
    pub counts: Counts,
    /// Latency percentiles in microseconds; 0 when nothing was recorded.
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub lag_p99_us: u64,
}

impl WindowSummary {
    pub fn end_s(&self) -> f64 {
        self.start_s + self.len_s
    }

    pub fn p99_ms(&self) -> f64 {
        us_to_ms(self.p99_us)
    }

    pub fn error_rate_pct(&self) -> f64 {
        self.counts.error_rate_pct()
    }
}

fn serialize_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Figures of a set of requests (a phase, or a whole load).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    pub sent: u64,
    pub counts: Counts,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub lag_p99_ms: f64,
    /// Percent; NaN when nothing completed.
    pub error_rate_pct: f64,
    /// Errors, timeouts and connection errors: requests a user did not get an answer to.
    pub requests_lost: u64,
}

/// A latency histogram and a lag histogram; creating one costs ~200 KB, so windows
/// recycle them.
struct Hists {
    latency: Histogram<u64>,
    lag: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        let h = || {
            Histogram::new_with_bounds(1, MAX_RECORDABLE_US, SIGFIG)
                .expect("static histogram bounds are valid")
        };
        Hists {
            latency: h(),
            lag: h(),
        }
    }

    fn record(&mut self, s: &Sample) {
        // A connection error has no meaningful latency (a refused connect takes 0.1 ms);
        // counting it would flatter the percentiles. Its count is in the error rate.
        if s.class != Class::Connect {
            self.latency.saturating_record(s.latency_us.max(1));
        }
        self.lag.saturating_record(s.lag_us.max(1));
    }

    fn reset(&mut self) {
        self.latency.reset();
        self.lag.reset();
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

struct OpenWindow {
    hists: Hists,
    counts: Counts,
    sent: u64,
    /// Dispatched but not yet finished.
    outstanding: u64,
}

struct PhaseStats {
    name: Arc<str>,
    hists: Hists,
    counts: Counts,
    sent: u64,
}

impl PhaseStats {
    fn figures(&self) -> Figures {
        figures(&self.hists, self.counts, self.sent)
    }
}

fn figures(h: &Hists, counts: Counts, sent: u64) -> Figures {
    Figures {
        sent,
        counts,
        p50_ms: us_to_ms(quantile(&h.latency, 0.5)),
        p90_ms: us_to_ms(quantile(&h.latency, 0.9)),
        p99_ms: us_to_ms(quantile(&h.latency, 0.99)),
        p999_ms: us_to_ms(quantile(&h.latency, 0.999)),
        max_ms: us_to_ms(if h.latency.is_empty() {
            0
        } else {
            h.latency.max()
        }),
        lag_p99_ms: us_to_ms(quantile(&h.lag, 0.99)),
        error_rate_pct: counts.error_rate_pct(),
        requests_lost: counts.errors(),
    }
}

/// Aggregates dispatches and samples into windows and phases.
///
/// A window closes once no more requests can be dispatched into it (a later window has
/// a dispatch, or the load finished) and every request dispatched into it has finished;
/// or, as a safety net, `force_after_us` past its end. So a closed window accounts for
/// every request it sent, and a stalled server keeps its windows open until the stalled
/// requests answer or time out: the stall lands in the windows where it happened.
pub struct Recorder {
    window_us: u64,
    force_after_us: u64,
    origin_wall: DateTime<Utc>,
    /// Index of `open[0]`.
    first_open: u64,
    open: VecDeque<OpenWindow>,
    spare: Vec<Hists>,
    /// Highest window with a dispatch.
    dispatched_max: Option<u64>,
    finished: bool,
    /// (from_us, phase index), sorted by time.
    marks: Vec<(u64, usize)>,
    phases: Vec<PhaseStats>,
    /// Whole-load totals.
    all: PhaseStats,
    /// Samples whose window had already been force-closed (counted in phases only).
    pub late_samples: u64,
}

impl Recorder {
    /// `window_us` > 0; windows are force-closed `force_after_us` after their end.
    pub fn new(window_us: u64, force_after_us: u64, origin_wall: DateTime<Utc>) -> Self {
        let before: Arc<str> = Arc::from(PHASE_BEFORE);
        Recorder {
            window_us: window_us.max(1),
            force_after_us,
            origin_wall,
            first_open: 0,
            open: VecDeque::new(),
            spare: Vec::new(),
            dispatched_max: None,
            finished: false,
            marks: vec![(0, 0)],
            phases: vec![PhaseStats {
                name: before.clone(),
                hists: Hists::new(),
                counts: Counts::default(),
                sent: 0,
            }],
            all: PhaseStats {
                name: Arc::from("all"),
                hists: Hists::new(),
                counts: Counts::default(),
                sent: 0,
            },
            late_samples: 0,
        }
    }

    pub fn window_us(&self) -> u64 {
        self.window_us
    }

    /// From `at_us` on, requests count towards phase `name` (phases of the same name
    /// share one histogram). Marks are expected in time order; an earlier one is moved
    /// to the latest mark's time.
    pub fn mark_phase(&mut self, at_us: u64, name: &str) {
        let idx = match self.phases.iter().position(|p| &*p.name == name) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseStats {
                    name: Arc::from(name),
                    hists: Hists::new(),
                    counts: Counts::default(),
                    sent: 0,
                });
                self.phases.len() - 1
            }
        };
        let last = self.marks.last().map_or(0, |m| m.0);
        self.marks.push((at_us.max(last), idx));
    }

    pub fn current_phase(&self) -> &str {
        let idx = self.marks.last().map_or(0, |m| m.1);
        &self.phases[idx].name
    }

    fn phase_index(&self, at_us: u64) -> usize {
        // Marks are few (a handful per scenario): a reverse scan beats a binary search.
        self.marks
            .iter()
            .rev()
            .find(|m| m.0 <= at_us)
            .map_or(0, |m| m.1)
    }

    fn window_of(&self, at_us: u64) -> u64 {
        at_us / self.window_us
    }

    /// The open window `index`, opening it and any gap before it.
    fn window_mut(&mut self, index: u64) -> Option<&mut OpenWindow> {
        if index < self.first_open {
            return None;
        }
        let offset = (index - self.first_open) as usize;
        while self.open.len() <= offset {
            let hists = self.spare.pop().unwrap_or_else(Hists::new);
            self.open.push_back(OpenWindow {
                hists,
                counts: Counts::default(),
                sent: 0,
                outstanding: 0,
            });
        }
        self.open.get_mut(offset)
    }

    /// A request is being sent with (intended) start `start_us`.
    pub fn dispatched(&mut self, start_us: u64) {
        let index = self.window_of(start_us);
        let phase = self.phase_index(start_us);
        self.phases[phase].sent += 1;
        self.all.sent += 1;
        self.dispatched_max = Some(self.dispatched_max.map_or(index, |m| m.max(index)));
        if let Some(w) = self.window_mut(index) {
            w.sent += 1;
            w.outstanding += 1;
        }
    }

    /// A request finished.
    pub fn record(&mut self, s: &Sample) {
        let phase = self.phase_index(s.start_us);
        let p = &mut self.phases[phase];
        p.hists.record(s);
        p.counts.add(s.class);
        self.all.hists.record(s);
        self.all.counts.add(s.class);
        let index = self.window_of(s.start_us);
        match self.window_mut(index) {
            Some(w) => {
                w.hists.record(s);
                w.counts.add(s.class);
                w.outstanding = w.outstanding.saturating_sub(1);
            }
            None => self.late_samples += 1,
        }
    }

    /// No more dispatches will come: windows close as soon as their requests finish.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Closes, in order, every window that can close at `now_us`.
    pub fn close_ready(&mut self, now_us: u64) -> Vec<WindowSummary> {
        let mut out = Vec::new();
        while let Some(w) = self.open.front() {
            let index = self.first_open;
            let end = (index + 1) * self.window_us;
            let forced = now_us >= end.saturating_add(self.force_after_us);
            let sealed = self.dispatched_max.is_some_and(|m| m > index)
                || (self.finished && self.dispatched_max.is_none_or(|m| m >= index))
                || forced;
            // Time alone never seals a window (except when forced): a scheduler running
            // late still dispatches into it. At rates under one request per window,
            // windows close in bursts when the next request goes out.
            if !(forced || (sealed && w.outstanding == 0)) {
                break;
            }
            let w = self.open.pop_front().expect("front exists");
            out.push(self.summarise(index, &w));
            let mut hists = w.hists;
            hists.reset();
            self.spare.push(hists);
            self.first_open += 1;
        }
        // A few spares cover the open windows of a stall; more would only hold memory.
        self.spare.truncate(4);
        out
    }

    /// Closes everything still open (end of load, after the last request).
    pub fn close_all(&mut self) -> Vec<WindowSummary> {
        self.finished = true;
        self.close_ready(u64::MAX)
    }

    /// Windows still open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    fn summarise(&self, index: u64, w: &OpenWindow) -> WindowSummary {
        let start_us = index * self.window_us;
        let h = &w.hists;
        WindowSummary {
            index,
            start_s: start_us as f64 / 1e6,
            len_s: self.window_us as f64 / 1e6,
            wall: self.origin_wall + chrono::Duration::microseconds(start_us as i64),
            phase: self.phases[self.phase_index(start_us)].name.clone(),
            sent: w.sent,
            counts: w.counts,
            p50_us: quantile(&h.latency, 0.5),
            p90_us: quantile(&h.latency, 0.9),
            p99_us: quantile(&h.latency, 0.99),
            p999_us: quantile(&h.latency, 0.999),
            max_us: if h.latency.is_empty() {
                0
            } else {
                h.latency.max()
            },
            lag_p99_us: quantile(&h.lag, 0.99),
        }
    }

    /// Figures of a phase, from its merged histogram; None for a phase never marked.
    pub fn phase_figures(&self, name: &str) -> Option<Figures> {
        self.phases
            .iter()
            .find(|p| &*p.name == name)
            .map(PhaseStats::figures)
    }

    /// Every phase's figures, in the order they were first marked.
    pub fn all_phase_figures(&self) -> Vec<(String, Figures)> {
        self.phases
            .iter()
            .map(|p| (p.name.to_string(), p.figures()))
            .collect()
    }

    /// Figures of the whole load.
    pub fn totals(&self) -> Figures {
        self.all.figures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn rec() -> Recorder {
        Recorder::new(S, 10 * S, DateTime::UNIX_EPOCH)
    }

    fn sample(start_us: u64, latency_ms: u64, class: Class) -> Sample {
        Sample {
            start_us,
            latency_us: latency_ms * 1000,
            lag_us: 0,
            class,
        }
    }

    fn send(r: &mut Recorder, s: Sample) {
        r.dispatched(s.start_us);
        r.record(&s);
    }

    #[test]
    fn classes_and_counts() {
        let mut c = Counts::default();
        for code in [200, 204, 301, 404, 429, 500, 503] {
            c.add(Class::from_status(code));
        }
        c.add(Class::Timeout);
        c.add(Class::Connect);
        assert_eq!(
            c,
            Counts {
                ok: 3,
                err_4xx: 1,
                err_429: 1,
                err_5xx: 2,
                timeouts: 1,
                conn_errors: 1
            }
        );
        assert_eq!(c.completed(), 9);
        assert_eq!(c.errors(), 6);
        assert!((c.error_rate_pct() - 600.0 / 9.0).abs() < 1e-9);
        assert!(Counts::default().error_rate_pct().is_nan());
    }

    #[test]
    fn percentiles_of_a_known_window() {
        let mut r = rec();
        // 1..=1000 ms, one each: p50 = 500 ms, p99 = 990 ms, max = 1000 ms (3 sig figs).
        for ms in 1..=1000u64 {
            send(&mut r, sample(ms * 100, ms, Class::Ok));
        }
        // A dispatch in the next window seals window 0.
        r.dispatched(S + 1);
        let closed = r.close_ready(S);
        assert_eq!(closed.len(), 1);
        let w = &closed[0];
        assert_eq!((w.index, w.sent, w.counts.ok), (0, 1000, 1000));
        let near = |got: u64, want_ms: u64| {
            let want = want_ms * 1000;
            assert!(got.abs_diff(want) <= want / 500, "{got} vs {want}");
        };
        near(w.p50_us, 500);
        near(w.p90_us, 900);
        near(w.p99_us, 990);
        near(w.p999_us, 999);
        near(w.max_us, 1000);
        assert_eq!(w.start_s, 0.0);
        assert_eq!(w.end_s(), 1.0);
        assert_eq!(&*w.phase, "before");
    }

    #[test]
    fn windows_wait_for_outstanding_requests_then_close_in_order() {
        let mut r = rec();
        r.dispatched(100); // window 0, stalls
        send(&mut r, sample(S + 100, 5, Class::Ok)); // window 1
        r.dispatched(2 * S + 100); // window 2: seals 0 and 1
        assert!(r.close_ready(3 * S).is_empty(), "window 0 still waits");
        r.record(&sample(100, 2500, Class::Ok));
        let closed = r.close_ready(3 * S);
        assert_eq!(
            closed.iter().map(|w| w.index).collect::<Vec<_>>(),
            [0, 1],
            "window 2 has a request in flight"
        );
        assert!(closed[0].p99_us >= 2_490_000);
        assert_eq!(closed[1].counts.ok, 1);
        assert_eq!(r.open_windows(), 1);
    }

    #[test]
    fn stuck_windows_are_forced_closed_and_late_samples_counted() {
        let mut r = rec();
        r.dispatched(100);
        assert!(r.close_ready(10 * S).is_empty());
        let closed = r.close_ready(11 * S);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].sent, closed[0].counts.completed()), (1, 0));
        r.record(&sample(100, 11_000, Class::Timeout));
        assert_eq!(r.late_samples, 1);
        assert_eq!(r.totals().counts.timeouts, 1);
    }

    #[test]
    fn gaps_become_empty_windows_and_finish_drains() {
        let mut r = rec();
        send(&mut r, sample(100, 1, Class::Ok));
        send(&mut r, sample(3 * S + 100, 1, Class::Ok));
        r.finish();
        let closed = r.close_ready(3 * S + 200);
        assert_eq!(
            closed.iter().map(|w| w.sent).collect::<Vec<_>>(),
            [1, 0, 0, 1]
        );
        assert_eq!(closed[1].p99_us, 0);
        assert!(closed[1].error_rate_pct().is_nan());
        assert_eq!(r.open_windows(), 0);
    }

    #[test]
    fn phases_merge_by_name_and_by_start_time() {
        let mut r = rec();
        send(&mut r, sample(100, 10, Class::Ok));
        r.mark_phase(2 * S, "during");
        send(&mut r, sample(2 * S, 900, Class::Http(503)));
        send(&mut r, sample(2 * S + 1, 800, Class::Timeout));
        r.mark_phase(4 * S, "after");
        send(&mut r, sample(4 * S, 20, Class::Ok));
        r.mark_phase(6 * S, "during");
        send(&mut r, sample(6 * S, 700, Class::Connect));
        assert_eq!(r.current_phase(), "during");

        let during = r.phase_figures("during").unwrap();
        assert_eq!(during.sent, 3);
        assert_eq!(during.requests_lost, 3);
        assert_eq!(during.error_rate_pct, 100.0);
        // The connection error carries no latency.
        assert!((during.max_ms - 900.0).abs() < 1.0, "{}", during.max_ms);
        assert!((during.p50_ms - 800.0).abs() < 1.0, "{}", during.p50_ms);
        let before = r.phase_figures("before").unwrap();
        assert_eq!((before.sent, before.counts.ok), (1, 1));
        assert!(r.phase_figures("nope").is_none());
        let names: Vec<String> = r.all_phase_figures().into_iter().map(|p| p.0).collect();
        assert_eq!(names, ["before", "during", "after"]);
        assert_eq!(r.totals().sent, 5);

        let closed = r.close_all();
        let phases: Vec<&str> = closed.iter().map(|w| &*w.phase).collect();
        assert_eq!(
            phases,
            ["before", "before", "during", "during", "after", "after", "during"]
        );
    }

    #[test]
    fn lag_is_recorded_apart_from_latency() {
        let mut r = rec();
        send(
            &mut r,
            Sample {
                start_us: 0,
                latency_us: 40_000,
                lag_us: 30_000,
                class: Class::Ok,
            },
        );
        let w = &r.close_all()[0];
        assert!(w.lag_p99_us.abs_diff(30_000) < 50);
        assert!(w.p99_us.abs_diff(40_000) < 50);
    }
}
