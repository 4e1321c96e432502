//! What the harness is waiting for, while it waits: steady state, recovery, a backup or
//! restore, workloads getting Ready.
//!
//! Every wait goes through [`Wait`]. In a terminal it is one indicatif line (spinner,
//! what is awaited, elapsed against the deadline, the live rate / p99 / error rate of
//! the running load, the latest status); elsewhere (no TTY, `CI=true`) it is a plain
//! log line through tracing (target `stormdrill::progress`, so `--log-format json`
//! makes it JSON) at the start, every [`LOG_EVERY`] and at the end; `--quiet` shows
//! nothing. The live figures come from whichever load registered a [`live_source`].

use std::{
    fmt::Write as _,
    io::{self, IsTerminal as _, Write as _},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The tracing target of progress lines.
pub const TARGET: &str = "stormdrill::progress";
/// How often a plain log line repeats while a wait goes on.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// A live figure older than this is not shown (the load stopped or stalled).
const LIVE_MAX_AGE: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An indicatif line on stderr, redrawn in place.
    Bar,
    /// Plain log lines (tracing, target [`TARGET`]).
    Lines,
    /// Nothing.
    Quiet,
}

/// The mode for a terminal or not, in CI or not: CI logs are files, where a redrawn
/// line is noise.
pub fn mode_for(stderr_is_tty: bool, ci: bool, quiet: bool) -> Mode {
    if quiet {
        Mode::Quiet
    } else if stderr_is_tty && !ci {
        Mode::Bar
    } else {
        Mode::Lines
    }
}

/// `CI` set to anything but empty, `0` or `false` (GitHub, GitLab and most runners set
/// `CI=true`).
pub fn ci_from_env(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

static MODE: AtomicU8 = AtomicU8::new(1);
/// Progress lines carry their figures as fields (JSON logs).
static JSON: AtomicBool = AtomicBool::new(false);

fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Bar => 0,
        Mode::Lines => 1,
        Mode::Quiet => 2,
    }
}

/// Decides the mode from stderr and `$CI`; call once at start (library callers that
/// do not get plain lines, which never garble anything).
pub fn init(quiet: bool) -> Mode {
    let m = mode_for(
        io::stderr().is_terminal(),
        ci_from_env(std::env::var("CI").ok().as_deref()),
        quiet,
    );
    set_mode(m);
    m
}

pub fn set_mode(m: Mode) {
    MODE.store(mode_code(m), Ordering::Relaxed);
}

pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        0 => Mode::Bar,
        2 => Mode::Quiet,
        _ => Mode::Lines,
    }
}

/// Sets up tracing on stderr (text or JSON lines) and the progress mode. Log lines
/// step around the progress line. Default filter: warnings, plus progress lines
/// (info) unless `quiet`; `RUST_LOG` overrides it.
pub fn init_output(format: crate::cli::LogFormat, quiet: bool) -> Mode {
    use tracing_subscriber::EnvFilter;
    let mode = init(quiet);
    // kube's client logs every failed request at ERROR; we report those errors
    // ourselves, once.
    let default = if quiet {
        "error,kube_client::client::builder=off,kube_client::client=off"
    } else {
        "warn,stormdrill::progress=info,kube_client::client::builder=off,kube_client::client=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(StderrAroundBar);
    JSON.store(format == crate::cli::LogFormat::Json, Ordering::Relaxed);
    // A second init (tests, library callers) keeps the first subscriber.
    let _ = match format {
        crate::cli::LogFormat::Text => builder.try_init(),
        crate::cli::LogFormat::Json => builder.json().try_init(),
    };
    mode
}

/// The running load's latest closed window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Live {
    pub rate: f64,
    pub p99_ms: f64,
    pub error_pct: f64,
}

impl Live {
    /// `50.0 req/s, p99 12.3 ms, 0.00 % errors`.
    pub fn describe(&self) -> String {
        let errors = if self.error_pct.is_finite() {
            format!("{:.2} %", self.error_pct)
        } else {
            "- %".to_owned()
        };
        format!(
            "{:.1} req/s, p99 {:.1} ms, {errors} errors",
            self.rate, self.p99_ms
        )
    }
}

type LiveFn = Box<dyn Fn() -> Option<Live> + Send + Sync>;

static LIVE: Mutex<Option<(u64, LiveFn)>> = Mutex::new(None);
static LIVE_IDS: AtomicU64 = AtomicU64::new(1);

/// Registers where live figures come from (a running load); they stop when the guard
/// drops. The newest registration wins.
pub fn live_source(f: impl Fn() -> Option<Live> + Send + Sync + 'static) -> LiveGuard {
    let id = LIVE_IDS.fetch_add(1, Ordering::Relaxed);
    *lock(&LIVE) = Some((id, Box::new(f)));
    LiveGuard(id)
}

#[must_use = "the live source is removed when the guard drops"]
#[derive(Debug)]
pub struct LiveGuard(u64);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = lock(&LIVE);
        if live.as_ref().is_some_and(|(id, _)| *id == self.0) {
            *live = None;
        }
    }
}

/// The live figures now, if a load runs.
pub fn live() -> Option<Live> {
    lock(&LIVE).as_ref().and_then(|(_, f)| f())
}

/// Live figures from a window's age and figures; None when too old to be "live".
pub fn fresh(age: Duration, live: Live) -> Option<Live> {
    (age <= LIVE_MAX_AGE).then_some(live)
}

/// The bar on screen, so log lines and prints can step around it.
static ACTIVE: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);
static BAR_IDS: AtomicU64 = AtomicU64::new(1);

/// Runs `f` with the progress line (if any) taken off the screen, then redraws it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = lock(&ACTIVE).as_ref().map(|(_, b)| b.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// Prints a line on stdout above the progress line.
pub fn println(line: &str) {
    suspend(|| {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
}

/// A tracing writer for stderr that keeps the progress line intact.
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrAroundBar;

impl io::Write for StderrAroundBar {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        suspend(|| io::stderr().write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrAroundBar {
    type Writer = StderrAroundBar;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Stdout for cucumber's console output while progress lines may be on screen:
/// whole lines (and whatever is pending at a flush) are written with the progress
/// line taken off the screen, so the two never overwrite each other.
#[derive(Debug, Default)]
pub struct StdoutAroundBar {
    pending: Vec<u8>,
}

/// cucumber's wording for a step that returned an error (it runs steps under
/// catch_unwind); people read that as a crash of the harness.
const CUCUMBER_PANIC: &str = "Step panicked. Captured output: ";

/// `chunk` with cucumber's panic wording replaced by `Step failed: `.
fn reword(chunk: Vec<u8>) -> Vec<u8> {
    let needle = CUCUMBER_PANIC.as_bytes();
    if !chunk.windows(needle.len()).any(|w| w == needle) {
        return chunk;
    }
    String::from_utf8_lossy(&chunk)
        .replace(CUCUMBER_PANIC, "Step failed: ")
        .into_bytes()
}

impl StdoutAroundBar {
    fn emit(&mut self, upto: usize) -> io::Result<()> {
        let chunk = reword(self.pending.drain(..upto).collect());
        suspend(|| {
            let mut out = io::stdout().lock();
            out.write_all(&chunk)?;
            out.flush()
        })
    }
}

impl io::Write for StdoutAroundBar {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last_nl) = self.pending.iter().rposition(|b| *b == b'\n') {
            self.emit(last_nl + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let n = self.pending.len();
        self.emit(n)
    }
}

impl Drop for StdoutAroundBar {
    fn drop(&mut self) {
        let _ = io::Write::flush(self);
    }
}

/// `12 s of 60 s`, `1 min 05 s of 15 min`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// The plain line: `waiting for X: 12 s of 60 s; 50.0 req/s, p99 12.3 ms, 0.00 %
/// errors; 2/5 good windows`.
pub fn line(
    what: &str,
    elapsed: Duration,
    deadline: Option<Duration>,
    live: Option<Live>,
    status: &str,
) -> String {
    let mut s = format!("waiting for {what}: {}", clock(elapsed));
    if let Some(d) = deadline {
        let _ = write!(s, " of {}", clock(d));
    }
    if let Some(l) = live {
        let _ = write!(s, "; {}", l.describe());
    }
    if !status.is_empty() {
        let _ = write!(s, "; {status}");
    }
    s
}

/// A `[#####-----]` bar of elapsed against the deadline.
fn deadline_bar(elapsed: Duration, deadline: Duration, width: usize) -> String {
    let f = if deadline.is_zero() {
        1.0
    } else {
        (elapsed.as_secs_f64() / deadline.as_secs_f64()).clamp(0.0, 1.0)
    };
    let full = (f * width as f64).round() as usize;
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

struct Shared {
    what: String,
    deadline: Option<Duration>,
    started: Instant,
    status: Mutex<String>,
}

impl Shared {
    fn log(&self, event: &str) {
        let status = lock(&self.status).clone();
        let live = live();
        let text = line(
            &self.what,
            self.started.elapsed(),
            self.deadline,
            live,
            &status,
        );
        // Text logs carry the sentence only; JSON logs the fields too, for machines.
        if !JSON.load(Ordering::Relaxed) {
            tracing::info!(target: TARGET, "{text}");
            return;
        }
        tracing::info!(
            target: TARGET,
            event,
            what = %self.what,
            elapsed_s = (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            deadline_s = self.deadline.map(|d| d.as_secs_f64().round()),
            rate_rps = live.map(|l| (l.rate * 10.0).round() / 10.0),
            p99_ms = live.map(|l| (l.p99_ms * 10.0).round() / 10.0),
            errors_pct = live.map(|l| (l.error_pct * 100.0).round() / 100.0),
            status,
            "{text}"
        );
    }
}

/// One wait on screen or in the log; ends (and clears its line) when dropped.
pub struct Wait {
    shared: Arc<Shared>,
    bar: Option<(u64, ProgressBar)>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    ended: bool,
}

impl std::fmt::Debug for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wait")
            .field("what", &self.shared.what)
            .finish_non_exhaustive()
    }
}

impl Wait {
    /// Starts showing a wait for `what` (e.g. `steady state (5 good windows)`), with
    /// its deadline when it has one.
    pub fn start(what: impl Into<String>, deadline: Option<Duration>) -> Wait {
        let shared = Arc::new(Shared {
            what: what.into(),
            deadline,
            started: Instant::now(),
            status: Mutex::new(String::new()),
        });
        let mut wait = Wait {
            shared,
            bar: None,
            ticker: None,
            ended: false,
        };
        match mode() {
            Mode::Quiet => {}
            Mode::Bar => wait.bar = Some(wait.new_bar()),
            Mode::Lines => {
                wait.shared.log("start");
                // Waits that only await a watch never call `status`: a ticker keeps
                // the log alive. Without a runtime there is simply no repeat line.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let shared = wait.shared.clone();
                    wait.ticker = Some(rt.spawn(async move {
                        let mut tick = tokio::time::interval(LOG_EVERY);
                        tick.tick().await;
                        loop {
                            tick.tick().await;
                            shared.log("waiting");
                        }
                    }));
                }
            }
        }
        wait
    }

    fn new_bar(&self) -> (u64, ProgressBar) {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let deadline = self.shared.deadline;
        let template = if deadline.is_some() {
            "{spinner:.cyan} {prefix:.bold} {dbar} {clock} {live:.dim} {msg}"
        } else {
            "{spinner:.cyan} {prefix:.bold} {clock} {live:.dim} {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
            .with_key(
                "dbar",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    if let Some(d) = deadline {
                        let _ = write!(w, "{}", deadline_bar(s.elapsed(), d, 20));
                    }
                },
            )
            .with_key(
                "clock",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", clock(s.elapsed()));
                    if let Some(d) = deadline {
                        let _ = write!(w, " / {}", clock(d));
                    }
                },
            )
            .with_key("live", |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                if let Some(l) = live() {
                    let _ = write!(w, "│ {} │", l.describe());
                }
            });
        bar.set_style(style);
        bar.set_prefix(self.shared.what.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        let id = BAR_IDS.fetch_add(1, Ordering::Relaxed);
        *lock(&ACTIVE) = Some((id, bar.clone()));
        (id, bar)
    }

    /// The latest status, e.g. `2/5 good windows` or `phase InProgress`.
    pub fn status(&self, status: impl Into<String>) {
        let status = status.into();
        if let Some((_, b)) = &self.bar {
            b.set_message(status.clone());
        }
        *lock(&self.shared.status) = status;
    }

    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Ends the wait with its outcome, e.g. `reached after 6.1 s`.
    pub fn finish(mut self, outcome: &str) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some((id, b)) = self.bar.take() {
            b.finish_and_clear();
            let mut active = lock(&ACTIVE);
            if active.as_ref().is_some_and(|a| a.0 == id) {
                *active = None;
            }
        }
        if mode() == Mode::Lines && !JSON.load(Ordering::Relaxed) {
            tracing::info!(
                target: TARGET,
                "{}: {outcome} after {:.1} s",
                self.shared.what,
                self.elapsed().as_secs_f64()
            );
        } else if mode() == Mode::Lines {
            tracing::info!(
                target: TARGET,
                event = "end",
                what = %self.shared.what,
                elapsed_s = (self.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                outcome,
                "{}: {outcome} after {:.1} s",
                self.shared.what,
                self.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.end("ended");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serialises the tests that change the process-global mode.
#[cfg(test)]
pub(crate) static TEST_MODE: Mutex<()> = Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_are_not_called_panics() {
        let line = "  ✘  When 1 pod is killed\n     Step panicked. Captured output: refused: x\n";
        let out = String::from_utf8(reword(line.as_bytes().to_vec())).unwrap();
        assert_eq!(
            out,
            "  ✘  When 1 pod is killed\n     Step failed: refused: x\n"
        );
    }

    #[test]
    fn the_mode_follows_tty_ci_and_quiet() {
        assert_eq!(mode_for(true, false, false), Mode::Bar);
        assert_eq!(mode_for(false, false, false), Mode::Lines);
        assert_eq!(mode_for(true, true, false), Mode::Lines);
        assert_eq!(mode_for(true, false, true), Mode::Quiet);
        assert_eq!(mode_for(false, true, true), Mode::Quiet);
        assert!(ci_from_env(Some("true")));
        assert!(ci_from_env(Some("1")));
        assert!(!ci_from_env(Some("false")));
        assert!(!ci_from_env(Some("")));
        assert!(!ci_from_env(None));
    }

    #[test]
    fn lines_say_what_elapsed_deadline_live_and_status() {
        let live = Live {
            rate: 49.96,
            p99_ms: 12.34,
            error_pct: 0.0,
        };
        assert_eq!(
            line(
                "steady state (5 good windows)",
                Duration::from_millis(12_400),
                Some(Duration::from_secs(60)),
                Some(live),
                "2/5 good windows"
            ),
            "waiting for steady state (5 good windows): 12 s of 1 min 00 s; 50.0 req/s, \
             p99 12.3 ms, 0.00 % errors; 2/5 good windows"
        );
        assert_eq!(
            line("Backup velero/b1", Duration::from_secs(3), None, None, ""),
            "waiting for Backup velero/b1: 3 s"
        );
        assert_eq!(clock(Duration::from_secs(3725)), "1 h 02 min");
        assert_eq!(
            deadline_bar(Duration::from_secs(30), Duration::from_secs(60), 10),
            "█████░░░░░"
        );
        assert_eq!(
            deadline_bar(Duration::from_secs(90), Duration::from_secs(60), 4),
            "████"
        );
    }

    #[test]
    fn the_newest_live_source_wins_until_dropped() {
        let l = |r| Live {
            rate: r,
            p99_ms: 1.0,
            error_pct: 0.0,
        };
        let a = live_source(move || Some(l(1.0)));
        let b = live_source(move || Some(l(2.0)));
        assert_eq!(live().map(|x| x.rate), Some(2.0));
        drop(a);
        assert_eq!(live().map(|x| x.rate), Some(2.0), "an older guard keeps b");
        drop(b);
        assert_eq!(live(), None);
        assert!(fresh(Duration::from_secs(60), l(1.0)).is_none());
    }

    /// Collects what tracing writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn captured_json(mode: Mode, f: impl FnOnce()) -> Vec<serde_json::Value> {
        let _serial = lock(&TEST_MODE);
        let out = Captured::default();
        let sub = tracing_subscriber::fmt()
            .json()
            .with_writer(out.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        set_mode(mode);
        JSON.store(true, Ordering::Relaxed);
        tracing::subscriber::with_default(sub, f);
        JSON.store(false, Ordering::Relaxed);
        set_mode(Mode::Lines);
        let text = String::from_utf8(lock(&out.0).clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json lines"))
            .collect()
    }

    #[test]
    fn plain_mode_logs_start_and_end_as_json_events() {
        let events = captured_json(Mode::Lines, || {
            let w = Wait::start("Backup velero/b1", Some(Duration::from_secs(60)));
            w.status("phase InProgress");
            w.finish("Completed");
        });
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["target"], TARGET);
        assert_eq!(events[0]["fields"]["event"], "start");
        assert_eq!(events[0]["fields"]["deadline_s"], 60.0);
        assert_eq!(
            events[0]["fields"]["message"],
            "waiting for Backup velero/b1: 0 s of 1 min 00 s"
        );
        assert_eq!(events[1]["fields"]["event"], "end");
        assert_eq!(events[1]["fields"]["outcome"], "Completed");
        let quiet = captured_json(Mode::Quiet, || {
            let _w = Wait::start("x", None);
        });
        assert!(quiet.is_empty(), "{quiet:?}");
    }
}
