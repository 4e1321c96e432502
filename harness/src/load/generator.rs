//! The load generator.
//!
//! - Open loop: request i is due at `i / rate` after the start, whatever happened to the
//!   others; its latency is measured from that *intended* time, so a stalled server
//!   cannot hide its stall by slowing the client down (coordinated omission). How late
//!   the scheduler actually sent it is recorded apart, as lag.
//! - Closed loop: N connections, each sending its next request when the previous one
//!   answered: the maximum throughput, and latency from the actual send.
//!
//! Both stop by themselves: at the duration or at the request bound, whichever first;
//! requests still in flight then end within the per-request timeout.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Request, Uri};
use http_body_util::Empty;
use rand::{rngs::StdRng, SeedableRng as _};
use serde::Serialize;
use tokio::{
    sync::{mpsc, watch, Semaphore},
    task::JoinHandle,
};

use super::{
    client::{self, ClientOptions, HttpClient},
    mix::Mix,
    LoadError,
};
use crate::measure::{
    timeline::TimelineWriter,
    window::{Figures, Recorder, Sample, WindowSummary},
};

/// Open loop at a constant arrival rate, or closed loop over N connections.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Open { rate: f64 },
    Closed { connections: usize },
}

/// Upper bounds that keep a mistake from becoming a flood or a hang.
const MAX_RATE: f64 = 1_000_000.0;
const MAX_CONNECTIONS: usize = 10_000;
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// A closed loop's default request bound.
const CLOSED_MAX_REQUESTS: u64 = 100_000_000;

/// What to send, how fast, for how long.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Base URL; the mix's paths are appended to its path.
    pub target: Uri,
    pub mode: Mode,
    pub duration: Duration,
    /// At most this many requests (in open loop also at most rate x duration).
    pub max_requests: Option<u64>,
    /// Per request, from the actual send until the whole body is read.
    pub timeout: Duration,
    pub window: Duration,
    pub mix: Mix,
    /// Seed of the mix draws.
    pub seed: u64,
    pub client: ClientOptions,
    /// Requests in flight at most; past it the scheduler waits (and records the lag).
    pub max_in_flight: usize,
    /// Folder to stream `timeline.csv` into.
    pub timeline_dir: Option<PathBuf>,
}

impl LoadConfig {
    /// Open loop at `rate` req/s for 60 s, the built-in mix, 10 s timeout, 1 s windows.
    pub fn open(target: Uri, rate: f64) -> Self {
        LoadConfig {
            target,
            mode: Mode::Open { rate },
            duration: Duration::from_secs(60),
            max_requests: None,
            timeout: Duration::from_secs(10),
            window: Duration::from_secs(1),
            mix: Mix::builtin(),
            seed: 0,
            client: ClientOptions::default(),
            max_in_flight: 20_000,
            timeline_dir: None,
        }
    }

    /// Closed loop over `connections` connections for 5 s.
    pub fn closed(target: Uri, connections: usize) -> Self {
        LoadConfig {
            mode: Mode::Closed { connections },
            duration: Duration::from_secs(5),
            ..Self::open(target, 1.0)
        }
    }

    /// The request bound in force.
    pub fn request_bound(&self) -> u64 {
        let derived = match self.mode {
            Mode::Open { rate } => (rate * self.duration.as_secs_f64()).ceil() as u64,
            Mode::Closed { .. } => CLOSED_MAX_REQUESTS,
        };
        self.max_requests.map_or(derived, |m| m.min(derived))
    }

    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |why: String| Err(LoadError::Invalid(why));
        match self.target.scheme_str() {
            Some("http" | "https") if self.target.authority().is_some() => {}
            _ => return bad(format!("target {} is not an http(s) URL", self.target)),
        }
        match self.mode {
            Mode::Open { rate } if !(rate > 0.0 && rate <= MAX_RATE) => {
                return bad(format!("rate {rate} req/s is not in (0, {MAX_RATE}]"))
            }
            Mode::Closed { connections } if !(1..=MAX_CONNECTIONS).contains(&connections) => {
                return bad(format!(
                    "{connections} connections is not in 1..={MAX_CONNECTIONS}"
                ))
            }
            _ => {}
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!("duration {:?} is not in (0, 24 h]", self.duration));
        }
        if self.timeout.is_zero() {
            return bad("the per-request timeout is 0".into());
        }
        if self.window < Duration::from_millis(10) {
            return bad(format!("window {:?} is under 10 ms", self.window));
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight is 0".into());
        }
        Ok(())
    }
}

/// From the senders to the aggregator.
enum Event {
    Dispatched(u64),
    Done(Sample),
    /// No more dispatches.
    Finished {
        last_dispatch_us: Option<u64>,
    },
}

type Tx = mpsc::UnboundedSender<Event>;

struct State {
    recorder: Recorder,
    windows: Vec<WindowSummary>,
    sending_done_us: Option<u64>,
}

/// What a finished load measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub started: DateTime<Utc>,
    /// Seconds from the start until the last request ended.
    pub elapsed_s: f64,
    /// Requests sent per second of sending.
    pub achieved_rate: f64,
    pub totals: Figures,
    pub phases: Vec<(String, Figures)>,
    pub windows: Vec<WindowSummary>,
    pub timeline: Option<PathBuf>,
    /// Answers that came after their window was force-closed (in totals, not windows).
    pub late_samples: u64,
}

/// Prepared once, shared by every request.
struct Job {
    client: HttpClient,
    /// For the closed loop's own connections.
    connector: client::Connector,
    /// `scheme://authority`, where those connect.
    origin_uri: Uri,
    /// The Host header of their requests.
    host: http::HeaderValue,
    /// `scheme://authority` plus the base path without its trailing `/`.
    prefix: String,
    /// The base path without its trailing `/` (origin-form requests).
    base_path: String,
    mix: Mix,
    timeout: Duration,
    origin: Instant,
}

impl Job {
    fn request(&self, method: &Method, path: &str) -> Request<Empty<Bytes>> {
        let uri = format!("{}{path}", self.prefix);
        Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(http::header::USER_AGENT, "stormdrill")
            .body(Empty::new())
            .expect("mix paths are validated")
    }

    /// As [`Self::request`] in origin form (`/path`) with a Host header, for a
    /// connection of one's own.
    fn origin_request(&self, method: &Method, path: &str) -> Request<Empty<Bytes>> {
        Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base_path))
            .header(http::header::HOST, self.host.clone())
            .header(http::header::USER_AGENT, "stormdrill")
            .body(Empty::new())
            .expect("mix paths are validated")
    }

    fn since_origin_us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_micros() as u64
    }
}

/// A running load. Dropping it stops the sending; [`LoadRun::finish`] also waits for
/// the last answers and returns the report.
pub struct LoadRun {
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    closed: watch::Receiver<u64>,
    sender: Option<JoinHandle<()>>,
    aggregator: Option<JoinHandle<Result<(), LoadError>>>,
    origin: Instant,
    started: DateTime<Utc>,
    mode: Mode,
    timeline: Option<PathBuf>,
}

impl std::fmt::Debug for LoadRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadRun")
            .field("mode", &self.mode)
            .field("started", &self.started)
            .field("timeline", &self.timeline)
            .finish_non_exhaustive()
    }
}

impl LoadRun {
    /// Validates `cfg`, connects nothing yet, and starts sending.
    pub async fn start(cfg: LoadConfig) -> Result<LoadRun, LoadError> {
        cfg.validate()?;
        let connector = client::connector(&cfg.client, cfg.target.scheme_str() == Some("https"))?;
        let client = client::pooled(connector.clone());
        let timeline = cfg
            .timeline_dir
            .as_deref()
            .map(TimelineWriter::create_in)
            .transpose()?;
        let timeline_path = timeline.as_ref().map(|t| t.path().to_owned());

        let origin = Instant::now();
        let started = Utc::now();
        let window_us = cfg.window.as_micros() as u64;
        // A window whose requests have not all ended a timeout (plus slack) after its
        // end is closed anyway: something lost track of a request.
        let force_after_us = (cfg.timeout + Duration::from_secs(2)).as_micros() as u64;
        let state = Arc::new(Mutex::new(State {
            recorder: Recorder::new(window_us, force_after_us, started),
            windows: Vec::new(),
            sending_done_us: None,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let (closed_tx, closed) = watch::channel(0u64);

        let authority = cfg
            .target
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        let scheme = cfg.target.scheme_str().unwrap_or("http");
        let base_path = cfg.target.path().trim_end_matches('/').to_owned();
        let origin_uri: Uri = format!("{scheme}://{authority}")
            .parse()
            .map_err(|e| LoadError::Invalid(format!("target {}: {e}", cfg.target)))?;
        let host = http::HeaderValue::from_str(authority)
            .map_err(|e| LoadError::Invalid(format!("target {}: {e}", cfg.target)))?;
        let job = Arc::new(Job {
            client,
            connector,
            origin_uri,
            host,
            prefix: format!("{scheme}://{authority}{base_path}"),
            base_path,
            mix: cfg.mix.clone(),
            timeout: cfg.timeout,
            origin,
        });
        let aggregator = tokio::spawn(aggregate(
            rx,
            state.clone(),
            origin,
            timeline,
            closed_tx,
            cfg.window,
        ));
        let sender = match cfg.mode {
            Mode::Open { rate } => tokio::spawn(open_loop(job, cfg.clone(), rate, tx, stop_rx)),
            Mode::Closed { connections } => {
                tokio::spawn(closed_loop(job, cfg.clone(), connections, tx, stop_rx))
            }
        };
        Ok(LoadRun {
            state,
            stop,
            closed,
            sender: Some(sender),
            aggregator: Some(aggregator),
            origin,
            started,
            mode: cfg.mode,
            timeline: timeline_path,
        })
    }

    /// The instant the load started: t = 0 of its timeline.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    /// Seconds since the start.
    pub fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn timeline_path(&self) -> Option<&std::path::Path> {
        self.timeline.as_deref()
    }

    /// From now on requests count towards phase `name` (`before` at the start; steps use
    /// `during` from a fault's t0 and `after` once recovered). Returns the time, in
    /// seconds since the start.
    pub fn mark_phase(&self, name: &str) -> f64 {
        self.mark_phase_at(Instant::now(), name)
    }

    /// As [`Self::mark_phase`], at a given instant (e.g. the fault's acknowledged t0).
    pub fn mark_phase_at(&self, at: Instant, name: &str) -> f64 {
        let at_us = at.saturating_duration_since(self.origin).as_micros() as u64;
        lock(&self.state).recorder.mark_phase(at_us, name);
        at_us as f64 / 1e6
    }

    pub fn current_phase(&self) -> String {
        lock(&self.state).recorder.current_phase().to_owned()
    }

    /// Runs `f` over the windows closed so far (no copy).
    pub fn with_windows<R>(&self, f: impl FnOnce(&[WindowSummary]) -> R) -> R {
        f(&lock(&self.state).windows)
    }

    pub fn windows(&self) -> Vec<WindowSummary> {
        self.with_windows(<[WindowSummary]>::to_vec)
    }

    pub fn phase_figures(&self, name: &str) -> Option<Figures> {
        lock(&self.state).recorder.phase_figures(name)
    }

    /// A handle on the closed windows that outlives a borrow of the run, for live
    /// views (the progress line).
    pub fn windows_handle(&self) -> WindowsHandle {
        WindowsHandle(self.state.clone())
    }

    /// Counts closed windows; changes whenever windows close.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.closed.clone()
    }

    /// Sending has ended (duration or bound reached, or stopped).
    pub fn is_done_sending(&self) -> bool {
        self.sender.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops sending; requests in flight still end (within the timeout).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops sending, waits for the last answers and returns the report.
    pub async fn finish(mut self) -> Result<LoadReport, LoadError> {
        self.stop();
        self.join().await
    }

    /// Waits for the load to end by itself (duration or bound) and returns the report.
    pub async fn wait(mut self) -> Result<LoadReport, LoadError> {
        self.join().await
    }

    async fn join(&mut self) -> Result<LoadReport, LoadError> {
        if let Some(s) = self.sender.take() {
            s.await.map_err(LoadError::Join)?;
        }
        if let Some(a) = self.aggregator.take() {
            a.await.map_err(LoadError::Join)??;
        }
        let st = lock(&self.state);
        let totals = st.recorder.totals();
        let elapsed_s = self.origin.elapsed().as_secs_f64();
        let span_s = st.sending_done_us.map_or(elapsed_s, |us| us as f64 / 1e6);
        Ok(LoadReport {
            mode: self.mode,
            started: self.started,
            elapsed_s,
            achieved_rate: if span_s > 0.0 {
                totals.sent as f64 / span_s
            } else {
                0.0
            },
            totals,
            phases: st.recorder.all_phase_figures(),
            windows: st.windows.clone(),
            timeline: self.timeline.clone(),
            late_samples: st.recorder.late_samples,
        })
    }
}

/// See [`LoadRun::windows_handle`].
#[derive(Clone)]
pub struct WindowsHandle(Arc<Mutex<State>>);

impl WindowsHandle {
    /// The newest closed window.
    pub fn last(&self) -> Option<WindowSummary> {
        lock(&self.0).windows.last().cloned()
    }

    /// Runs `f` over the windows closed so far (no copy).
    pub fn with_windows<R>(&self, f: impl FnOnce(&[WindowSummary]) -> R) -> R {
        f(&lock(&self.0).windows)
    }
}

impl Drop for LoadRun {
    fn drop(&mut self) {
        // Unfinished: stop sending; in-flight requests end within their timeout and the
        // aggregator then ends with the channel.
        self.stop.send_replace(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn open_loop(
    job: Arc<Job>,
    cfg: LoadConfig,
    rate: f64,
    tx: Tx,
    mut stop: watch::Receiver<bool>,
) {
    let bound = cfg.request_bound();
    let duration_us = cfg.duration.as_micros() as u64;
    // A scheduler far behind (an overloaded machine) stops at this time too.
    let hard_end = job.origin + cfg.duration + cfg.timeout;
    let period_us = 1e6 / rate;
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight));
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut last_dispatch_us = None;
    for i in 0..bound {
        // Computed from i, not accumulated, so rounding never drifts.
        let intended_us = (i as f64 * period_us) as u64;
        if intended_us >= duration_us || *stop.borrow() {
            break;
        }
        let intended = job.origin + Duration::from_micros(intended_us);
        let now = Instant::now();
        if intended > now {
            tokio::select! {
                () = tokio::time::sleep_until(intended.into()) => {}
                _ = stop.changed() => break,
            }
        } else if now >= hard_end {
            break;
        }
        let permit = tokio::select! {
            p = in_flight.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let drawn = job.mix.draw(&mut rng);
        let req = job.request(drawn.method, &drawn.path);
        if tx.send(Event::Dispatched(intended_us)).is_err() {
            break;
        }
        // The actual time, not the intended one: a late scheduler shows as a lower
        // achieved rate.
        last_dispatch_us = Some(job.since_origin_us(Instant::now()));
        let job = job.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let sent = Instant::now();
            let class = client::exchange(&job.client, req, job.timeout).await;
            let _ = tx.send(Event::Done(Sample {
                start_us: intended_us,
                latency_us: job.since_origin_us(Instant::now()) - intended_us,
                lag_us: job.since_origin_us(sent).saturating_sub(intended_us),
                class,
            }));
        });
    }
    // Sending spans whole periods: n requests on time take n / rate seconds.
    let _ = tx.send(Event::Finished {
        last_dispatch_us: last_dispatch_us.map(|us| us + period_us as u64),
    });
}

async fn closed_loop(
    job: Arc<Job>,
    cfg: LoadConfig,
    connections: usize,
    tx: Tx,
    stop: watch::Receiver<bool>,
) {
    let bound = cfg.request_bound();
    let end = job.origin + cfg.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(connections);
    for w in 0..connections {
        let job = job.clone();
        let tx = tx.clone();
        let stop = stop.clone();
        let issued = issued.clone();
        let last = last.clone();
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ (w as u64).wrapping_mul(0x9e37_79b9));
        workers.push(tokio::spawn(async move {
            // A connection per worker, as wrk has: a shared pool costs a lock and its
            // bookkeeping on every request, which is most of a client's CPU per request.
            let mut conn = client::Dedicated::new(job.connector.clone(), job.origin_uri.clone());
            loop {
                let start = Instant::now();
                if start >= end || *stop.borrow() || issued.fetch_add(1, Ordering::Relaxed) >= bound
                {
                    break;
                }
                let drawn = job.mix.draw(&mut rng);
                let req = job.origin_request(drawn.method, &drawn.path);
                let start_us = job.since_origin_us(start);
                if tx.send(Event::Dispatched(start_us)).is_err() {
                    break;
                }
                let class = conn.exchange(req, job.timeout).await;
                let done_us = job.since_origin_us(Instant::now());
                last.fetch_max(done_us, Ordering::Relaxed);
                let _ = tx.send(Event::Done(Sample {
                    start_us,
                    latency_us: done_us - start_us,
                    lag_us: 0,
                    class,
                }));
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let last = last.load(Ordering::Relaxed);
    let _ = tx.send(Event::Finished {
        last_dispatch_us: (last > 0).then_some(last),
    });
}

async fn aggregate(
    mut rx: mpsc::UnboundedReceiver<Event>,
    state: Arc<Mutex<State>>,
    origin: Instant,
    mut timeline: Option<TimelineWriter>,
    closed_tx: watch::Sender<u64>,
    window: Duration,
) -> Result<(), LoadError> {
    let mut buf = Vec::with_capacity(4096);
    let mut tick = tokio::time::interval((window / 4).min(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut write_error = None;
    loop {
        let open = tokio::select! {
            n = rx.recv_many(&mut buf, 4096) => n > 0,
            _ = tick.tick() => true,
        };
        let now_us = origin.elapsed().as_micros() as u64;
        let closed = {
            let mut st = lock(&state);
            for ev in buf.drain(..) {
                match ev {
                    Event::Dispatched(us) => st.recorder.dispatched(us),
                    Event::Done(s) => st.recorder.record(&s),
                    Event::Finished { last_dispatch_us } => {
                        st.sending_done_us = Some(last_dispatch_us.unwrap_or(now_us));
                        st.recorder.finish();
                    }
                }
            }
            let closed = if open {
                st.recorder.close_ready(now_us)
            } else {
                st.recorder.close_all()
            };
            st.windows.extend(closed.iter().cloned());
            closed
        };
        if let Some(t) = timeline.as_mut() {
            for w in &closed {
                if let Err(e) = t.write(w) {
                    // Keep measuring; the error is reported when the load finishes.
                    tracing::warn!(error = %crate::diag::one_line(&e), "timeline write failed");
                    write_error = Some(e);
                    timeline = None;
                    break;
                }
            }
        }
        if !closed.is_empty() {
            closed_tx.send_modify(|n| *n += closed.len() as u64);
        }
        if !open {
            break;
        }
        // Let events gather: one wake-up per few hundred requests at high rates costs
        // far less than one per request, and 1 ms is nothing next to a window.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match write_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
