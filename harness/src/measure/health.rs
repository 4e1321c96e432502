//! The health timeline of a scenario: what the cluster's components looked like over
//! the same time axis as the load's timeline, for the report's lanes under each
//! latency chart and the game day's live view.
//!
//! Lanes: `pods <namespace>` (Ready / the pods counted at the start, so pods a fault
//! deleted count as missing), `nodes Ready`, `Ceph health` (HEALTH_OK / WARN / ERR)
//! and `PGs active+clean` (ratio). Pods and nodes come from watches (the observers'
//! judgements, [`super::observe`]); Ceph from `ceph status -f json` in the toolbox at
//! most every [`CEPH_POLL`] (less often when `ceph` is slow), as Ceph has no watch. A
//! sample is recorded only when a lane changes, streamed to `health.csv` beside
//! `timeline.csv` (`health-2.csv` beside `timeline-2.csv`), and capped at
//! [`MAX_ROWS`] rows, so a long run stays small.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    runtime::{watcher, WatchStreamExt as _},
    Api, Client, Resource, ResourceExt as _,
};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};

use super::observe::{self, secs_since, ObjectHealth};

pub const HEALTH_FILE: &str = "health.csv";
pub const HEADER: &str = "t_s,wall_time,lane,state,value,detail";
/// Rows per scenario; past it, changes are counted but not written.
pub const MAX_ROWS: usize = 20_000;
/// How often Ceph is asked (`ceph status` through the toolbox pod).
pub const CEPH_POLL: Duration = Duration::from_secs(2);
/// How often after a failed `ceph status` (no toolbox, no Ceph).
const CEPH_RETRY: Duration = Duration::from_secs(10);
/// The lane names of the Ceph lanes.
pub const LANE_CEPH: &str = "Ceph health";
pub const LANE_PGS: &str = "PGs active+clean";
pub const LANE_NODES: &str = "nodes Ready";

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot write health timeline {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("health timeline line {line}: {what}")]
    Parse { line: usize, what: String },
}

/// A lane's state, as the report colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneState {
    Ok,
    Warn,
    Bad,
    Unknown,
}

impl LaneState {
    pub fn as_str(self) -> &'static str {
        match self {
            LaneState::Ok => "ok",
            LaneState::Warn => "warn",
            LaneState::Bad => "bad",
            LaneState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<LaneState> {
        [
            LaneState::Ok,
            LaneState::Warn,
            LaneState::Bad,
            LaneState::Unknown,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// One change of one lane.
#[derive(Clone, Debug, PartialEq)]
pub struct LaneSample {
    pub lane: String,
    /// Seconds since the load started (the timeline's t).
    pub t_s: f64,
    pub wall: DateTime<Utc>,
    pub state: LaneState,
    /// Ready ratio or PG clean ratio (0..=1); none for Ceph health.
    pub value: Option<f64>,
    /// e.g. `2/3 Ready; not Ready: openalex/fastapi-1 (Pending)`, `HEALTH_WARN: OSD_DOWN`.
    pub detail: String,
}

/// A CSV cell: quoted when it holds a comma or a quote.
fn cell(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.contains([',', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn csv_row(s: &LaneSample) -> String {
    format!(
        "{:.3},{},{},{},{},{}",
        s.t_s,
        s.wall.to_rfc3339_opts(SecondsFormat::Millis, true),
        cell(&s.lane),
        s.state.as_str(),
        s.value.map_or(String::new(), |v| format!("{v:.4}")),
        cell(&s.detail)
    )
}

/// Splits one CSV line, honouring `"..."` cells with `""` escapes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads a health CSV back (for the report).
pub fn parse_csv(text: &str) -> Result<Vec<LaneSample>, HealthError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        None => return Ok(Vec::new()),
        Some((_, h)) if h.trim() == HEADER => {}
        Some(_) => {
            return Err(HealthError::Parse {
                line: 1,
                what: format!("header is not `{HEADER}`"),
            })
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let bad = |what: &str| HealthError::Parse {
            line: n,
            what: what.to_owned(),
        };
        let f = split_csv(line);
        if f.len() != 6 {
            return Err(bad("expected 6 fields"));
        }
        out.push(LaneSample {
            t_s: f[0].parse().map_err(|_| bad("t_s is not a number"))?,
            wall: DateTime::parse_from_rfc3339(&f[1])
                .map_err(|_| bad("wall_time is not RFC 3339"))?
                .with_timezone(&Utc),
            lane: f[2].clone(),
            state: LaneState::parse(&f[3]).ok_or_else(|| bad("unknown state"))?,
            value: if f[4].is_empty() {
                None
            } else {
                Some(f[4].parse().map_err(|_| bad("value is not a number"))?)
            },
            detail: f[5].clone(),
        });
    }
    Ok(out)
}

/// `health.csv` for `timeline.csv`, `health-2.csv` for `timeline-2.csv`.
pub fn file_for_timeline(timeline_name: &str) -> String {
    match timeline_name.strip_prefix("timeline") {
        Some(rest) => format!("health{rest}"),
        None => HEALTH_FILE.to_owned(),
    }
}

/// Ready counts of watched objects, one event at a time.
#[derive(Debug, Default)]
struct ReadyCount {
    /// key -> (healthy, why not)
    objects: HashMap<String, (bool, String)>,
    /// How many counted at the first listing: pods deleted by a fault (a scale to 0,
    /// an eviction) are gone, not "not Ready", so the lane counts them as missing.
    baseline: Option<usize>,
}

impl ReadyCount {
    fn apply(&mut self, key: String, h: ObjectHealth) {
        match h {
            ObjectHealth::Ignored => {
                self.objects.remove(&key);
            }
            ObjectHealth::Healthy => {
                self.objects.insert(key, (true, String::new()));
            }
            ObjectHealth::Unhealthy(why) => {
                self.objects.insert(key, (false, why));
            }
        }
    }

    /// (state, ratio, detail) as a lane shows it.
    fn judge(&self, word: &str) -> (LaneState, Option<f64>, String) {
        let seen = self.objects.len();
        let total = seen.max(self.baseline.unwrap_or(0));
        if total == 0 {
            return (LaneState::Unknown, None, "none found".into());
        }
        let ready = self.objects.values().filter(|o| o.0).count();
        let mut detail = format!("{ready}/{total} {word}");
        if total > seen {
            detail.push_str(&format!("; {} fewer than at the start", total - seen));
        }
        let mut not: Vec<(&String, &String)> = self
            .objects
            .iter()
            .filter(|(_, o)| !o.0)
            .map(|(k, o)| (k, &o.1))
            .collect();
        not.sort();
        if !not.is_empty() {
            let names: Vec<String> = not
                .iter()
                .take(3)
                .map(|(k, why)| {
                    if why.is_empty() {
                        (*k).clone()
                    } else {
                        format!("{k} ({why})")
                    }
                })
                .collect();
            detail.push_str(&format!("; not {word}: {}", names.join(", ")));
            if not.len() > 3 {
                detail.push_str(&format!(", and {} more", not.len() - 3));
            }
        }
        let state = if ready == total {
            LaneState::Ok
        } else if ready == 0 {
            LaneState::Bad
        } else {
            LaneState::Warn
        };
        (state, Some(ready as f64 / total as f64), detail)
    }
}

/// Where lane tasks send their changes.
#[derive(Clone)]
struct Sink {
    tx: mpsc::UnboundedSender<LaneSample>,
    origin: Instant,
}

impl Sink {
    /// Sends a change; false once the recorder is gone.
    fn send(&self, lane: &str, state: LaneState, value: Option<f64>, detail: String) -> bool {
        self.tx
            .send(LaneSample {
                lane: lane.to_owned(),
                t_s: secs_since(self.origin, Instant::now()),
                wall: Utc::now(),
                state,
                value,
                detail,
            })
            .is_ok()
    }
}

async fn watch_lane<K>(
    lane: String,
    api: Api<K>,
    judge: fn(&K) -> ObjectHealth,
    word: &'static str,
    sink: Sink,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
    let mut state = ReadyCount::default();
    let mut listing: Option<ReadyCount> = None;
    let mut last = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => {
                listing = Some(ReadyCount::default());
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                if let Some(l) = listing.as_mut() {
                    l.apply(key(&o), judge(&o));
                }
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                let baseline = state.baseline;
                state = listing.take().unwrap_or_default();
                // A relist after a watch error keeps the first listing's count.
                state.baseline = baseline.or(Some(state.objects.len()));
            }
            Ok(watcher::Event::Apply(o)) => state.apply(key(&o), judge(&o)),
            Ok(watcher::Event::Delete(o)) => {
                state.objects.remove(&key(&o));
            }
            Err(e) => {
                tracing::debug!(%lane, error = %e, "health lane watch");
                continue;
            }
        }
        let now = state.judge(word);
        if last.as_ref() != Some(&now) {
            if !sink.send(&lane, now.0, now.1, now.2.clone()) {
                return;
            }
            last = Some(now);
        }
    }
}

/// The Ceph health lane's (state, detail) and the PG lane's (state, ratio, detail).
pub type CephLanes = ((LaneState, String), (LaneState, Option<f64>, String));

/// Both Ceph lanes from one `ceph status`.
pub fn ceph_lanes(status: &crate::probe::ceph::CephStatus) -> CephLanes {
    let health = match status.health.as_str() {
        "HEALTH_OK" => LaneState::Ok,
        "HEALTH_WARN" => LaneState::Warn,
        "HEALTH_ERR" => LaneState::Bad,
        _ => LaneState::Unknown,
    };
    let checks: Vec<&str> = status.checks.iter().map(|c| c.0.as_str()).collect();
    let health_detail = if checks.is_empty() {
        status.health.clone()
    } else {
        format!("{}: {}", status.health, checks.join(", "))
    };
    let total = status.pgs_total();
    let clean = status.pgs_active_clean();
    let pgs = if total == 0 {
        (LaneState::Unknown, None, "no PGs".to_owned())
    } else {
        let ratio = clean as f64 / total as f64;
        let state = if clean == total {
            LaneState::Ok
        } else {
            LaneState::Warn
        };
        (
            state,
            Some(ratio),
            format!("{clean}/{total} active+clean ({:.1} %)", ratio * 100.0),
        )
    };
    ((health, health_detail), pgs)
}

async fn poll_ceph(client: Client, sink: Sink) {
    let mut last: Option<CephLanes> = None;
    loop {
        let asked = Instant::now();
        let (now, pause) = match crate::probe::ceph::status(&client).await {
            // A slow `ceph` (a real one forks a Python CLI) is asked less often: the
            // lanes are a view and must not eat the machine the drill measures.
            Ok(s) => (ceph_lanes(&s), CEPH_POLL.max(asked.elapsed() * 4)),
            Err(e) => {
                let why = format!("ceph status failed: {}", crate::diag::one_line(&e));
                (
                    (
                        (LaneState::Unknown, why.clone()),
                        (LaneState::Unknown, None, why),
                    ),
                    CEPH_RETRY,
                )
            }
        };
        let prev = last.as_ref();
        if prev.map(|p| &p.0) != Some(&now.0)
            && !sink.send(LANE_CEPH, now.0 .0, None, now.0 .1.clone())
        {
            return;
        }
        if prev.map(|p| &p.1) != Some(&now.1)
            && !sink.send(LANE_PGS, now.1 .0, now.1 .1, now.1 .2.clone())
        {
            return;
        }
        last = Some(now);
        tokio::time::sleep(pause).await;
    }
}

/// Streams rows to the CSV, flushed per row, up to [`MAX_ROWS`].
struct CsvOut {
    path: PathBuf,
    out: BufWriter<File>,
}

impl CsvOut {
    fn create(path: &Path) -> Result<CsvOut, HealthError> {
        let err = |source| HealthError::Write {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(err)?;
        let mut c = CsvOut {
            path: path.to_owned(),
            out: BufWriter::new(file),
        };
        c.line(HEADER)?;
        Ok(c)
    }

    fn line(&mut self, text: &str) -> Result<(), HealthError> {
        writeln!(self.out, "{text}")
            .and_then(|()| self.out.flush())
            .map_err(|source| HealthError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// What to record and where.
#[derive(Clone, Debug, Default)]
pub struct HealthConfig {
    /// Namespaces with a `pods <ns>` lane each.
    pub pod_namespaces: Vec<String>,
    pub nodes: bool,
    pub ceph: bool,
    /// Where to write the CSV (none: memory only).
    pub file: Option<PathBuf>,
}

impl HealthConfig {
    /// The documented stack's lanes: the API's and Ceph's pods, nodes, Ceph.
    pub fn stack(file: Option<PathBuf>) -> HealthConfig {
        HealthConfig {
            pod_namespaces: vec!["openalex".into(), "rook-ceph".into()],
            nodes: true,
            ceph: true,
            file,
        }
    }
}

/// The documented stack's lanes for a load: `health.csv` paired with the load's
/// timeline file in `run_dir`. Returns the timeline's file name too.
pub fn for_load(
    client: &Client,
    load: &crate::load::LoadRun,
    run_dir: Option<&Path>,
) -> (Option<String>, HealthRecorder) {
    let timeline = load
        .timeline_path()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let file = run_dir
        .zip(timeline.as_deref())
        .map(|(d, t)| d.join(file_for_timeline(t)));
    let recorder = HealthRecorder::start(client, load.origin(), &HealthConfig::stack(file));
    (timeline, recorder)
}

#[derive(Debug, Default)]
struct Log {
    /// Latest sample per lane, in first-seen order.
    latest: Vec<LaneSample>,
    /// Worst sample per lane so far (first of the worst state), for checks over the
    /// whole scenario such as "Ceph never reported HEALTH_ERR".
    worst: Vec<LaneSample>,
    rows: usize,
    dropped: usize,
}

/// How bad a state is, for keeping the worst: unknown (no reading) ranks lowest.
fn severity(state: LaneState) -> u8 {
    match state {
        LaneState::Unknown => 0,
        LaneState::Ok => 1,
        LaneState::Warn => 2,
        LaneState::Bad => 3,
    }
}

/// Keeps `s` in `worst` when it is the lane's first sample or worse than what is kept.
fn keep_worst(worst: &mut Vec<LaneSample>, s: &LaneSample) {
    match worst.iter_mut().find(|x| x.lane == s.lane) {
        Some(x) if severity(s.state) > severity(x.state) => *x = s.clone(),
        Some(_) => {}
        None => worst.push(s.clone()),
    }
}

/// Records lanes until stopped (or dropped).
pub struct HealthRecorder {
    log: Arc<Mutex<Log>>,
    events: broadcast::Sender<LaneSample>,
    tasks: Vec<JoinHandle<()>>,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for HealthRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRecorder")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl HealthRecorder {
    /// Starts the lanes of `cfg`, with t = 0 at `origin` (the load's start). A file
    /// that cannot be created leaves the recorder in memory only (with a warning): the
    /// lanes are a view, never a reason to fail a scenario.
    pub fn start(client: &Client, origin: Instant, cfg: &HealthConfig) -> HealthRecorder {
        let mut csv = match cfg.file.as_deref().map(CsvOut::create).transpose() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %crate::diag::one_line(&e), "no health timeline");
                None
            }
        };
        let file = csv.as_ref().map(|c| c.path.clone());
        let (tx, mut rx) = mpsc::unbounded_channel::<LaneSample>();
        let (events, _) = broadcast::channel(256);
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Sink { tx, origin };
        let mut tasks = Vec::new();
        {
            let (log, events) = (log.clone(), events.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(s) = rx.recv().await {
                    let mut l = lock(&log);
                    if l.rows < MAX_ROWS {
                        if let Some(c) = csv.as_mut() {
                            if let Err(e) = c.line(&csv_row(&s)) {
                                tracing::warn!(error = %crate::diag::one_line(&e), "health timeline write failed");
                                csv = None;
                            }
                        }
                        l.rows += 1;
                    } else {
                        l.dropped += 1;
                    }
                    keep_worst(&mut l.worst, &s);
                    match l.latest.iter_mut().find(|x| x.lane == s.lane) {
                        Some(x) => *x = s.clone(),
                        None => l.latest.push(s.clone()),
                    }
                    drop(l);
                    // Nobody listening is fine.
                    let _ = events.send(s);
                }
            }));
        }
        for ns in &cfg.pod_namespaces {
            tasks.push(tokio::spawn(watch_lane::<Pod>(
                format!("pods {ns}"),
                Api::namespaced(client.clone(), ns),
                observe::pod_health,
                "Ready",
                sink.clone(),
            )));
        }
        if cfg.nodes {
            tasks.push(tokio::spawn(watch_lane::<Node>(
                LANE_NODES.to_owned(),
                Api::all(client.clone()),
                observe::node_health,
                "Ready",
                sink.clone(),
            )));
        }
        if cfg.ceph {
            tasks.push(tokio::spawn(poll_ceph(client.clone(), sink)));
        }
        HealthRecorder {
            log,
            events,
            tasks,
            file,
        }
    }

    /// The CSV being written, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The latest state of every lane seen so far.
    pub fn latest(&self) -> Vec<LaneSample> {
        lock(&self.log).latest.clone()
    }

    /// The worst state `lane` has been in since the recorder started (its first sample
    /// of that state); none if the lane was never read.
    pub fn worst(&self, lane: &str) -> Option<LaneSample> {
        lock(&self.log)
            .worst
            .iter()
            .find(|x| x.lane == lane)
            .cloned()
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LaneSample> {
        self.events.subscribe()
    }

    /// Rows written and changes not written (past [`MAX_ROWS`]).
    pub fn counts(&self) -> (usize, usize) {
        let l = lock(&self.log);
        (l.rows, l.dropped)
    }

    /// Stops every lane; what was written stays.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for HealthRecorder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One line of lanes for a live view: `pods openalex 2/3 Ready · nodes Ready 3/3 Ready
/// · Ceph health HEALTH_OK · PGs active+clean 100.0 %`.
pub fn summary_line(latest: &[LaneSample]) -> String {
    latest
        .iter()
        .map(|s| {
            let short = s.detail.split(';').next().unwrap_or_default();
            format!("{} {short}", s.lane)
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        t: f64,
        lane: &str,
        state: LaneState,
        value: Option<f64>,
        detail: &str,
    ) -> LaneSample {
        LaneSample {
            lane: lane.into(),
            t_s: t,
            wall: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.250Z")
                .unwrap()
                .with_timezone(&Utc),
            state,
            value,
            detail: detail.into(),
        }
    }

    #[test]
    fn the_worst_state_of_a_lane_is_kept() {
        let mut worst = Vec::new();
        for x in [
            sample(0.0, LANE_CEPH, LaneState::Unknown, None, "no reading"),
            sample(1.0, LANE_CEPH, LaneState::Ok, None, "HEALTH_OK"),
            sample(
                2.0,
                LANE_CEPH,
                LaneState::Warn,
                None,
                "HEALTH_WARN: OSD_DOWN",
            ),
            sample(
                3.0,
                LANE_CEPH,
                LaneState::Bad,
                None,
                "HEALTH_ERR: PG_AVAILABILITY",
            ),
            sample(4.0, LANE_CEPH, LaneState::Ok, None, "HEALTH_OK"),
            sample(5.0, LANE_CEPH, LaneState::Bad, None, "HEALTH_ERR: later"),
            sample(1.0, LANE_NODES, LaneState::Ok, Some(1.0), "4/4 Ready"),
        ] {
            keep_worst(&mut worst, &x);
        }
        let ceph = worst.iter().find(|x| x.lane == LANE_CEPH).unwrap();
        assert_eq!((ceph.t_s, ceph.state), (3.0, LaneState::Bad));
        let nodes = worst.iter().find(|x| x.lane == LANE_NODES).unwrap();
        assert_eq!(nodes.state, LaneState::Ok);
    }

    #[test]
    fn rows_round_trip_with_commas_and_quotes() {
        let s = vec![
            sample(
                0.5,
                "pods openalex",
                LaneState::Warn,
                Some(2.0 / 3.0),
                "2/3 Ready; not Ready: a (Ready=False, \"x\")",
            ),
            sample(1.0, LANE_CEPH, LaneState::Ok, None, "HEALTH_OK"),
        ];
        let mut text = format!("{HEADER}\n");
        for x in &s {
            text.push_str(&csv_row(x));
            text.push('\n');
        }
        assert!(text.contains("0.500,2026-01-02T03:04:05.250Z,pods openalex,warn,0.6667,"));
        let back = parse_csv(&text).unwrap();
        assert_eq!(back[1], s[1]);
        assert_eq!(back[0].detail, s[0].detail);
        assert_eq!(back[0].value, Some(0.6667));
        let e = parse_csv(&format!("{HEADER}\n1,x,l,ok,,d\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "health timeline line 2: wall_time is not RFC 3339"
        );
        assert!(parse_csv("t_s,foo\n").is_err());
    }

    #[test]
    fn ready_counts_judge_ok_warn_bad() {
        let mut c = ReadyCount::default();
        assert_eq!(c.judge("Ready").0, LaneState::Unknown);
        c.apply("ns/a".into(), ObjectHealth::Healthy);
        c.apply("ns/b".into(), ObjectHealth::Unhealthy("Pending".into()));
        c.apply("ns/job".into(), ObjectHealth::Ignored);
        let (state, value, detail) = c.judge("Ready");
        assert_eq!(state, LaneState::Warn);
        assert_eq!(value, Some(0.5));
        assert_eq!(detail, "1/2 Ready; not Ready: ns/b (Pending)");
        c.apply("ns/a".into(), ObjectHealth::Unhealthy(String::new()));
        assert_eq!(c.judge("Ready").0, LaneState::Bad);
        c.apply("ns/a".into(), ObjectHealth::Healthy);
        c.apply("ns/b".into(), ObjectHealth::Healthy);
        assert_eq!(
            c.judge("Ready"),
            (LaneState::Ok, Some(1.0), "2/2 Ready".into())
        );
        // Scaled away: gone pods count as missing against the first listing.
        c.baseline = Some(2);
        c.objects.remove("ns/b");
        assert_eq!(
            c.judge("Ready"),
            (
                LaneState::Warn,
                Some(0.5),
                "1/2 Ready; 1 fewer than at the start".into()
            )
        );
        c.objects.remove("ns/a");
        assert_eq!(c.judge("Ready").0, LaneState::Bad);
    }

    #[test]
    fn ceph_status_gives_health_and_pg_ratio() {
        let status = crate::probe::ceph::CephStatus {
            health: "HEALTH_WARN".into(),
            checks: vec![("OSD_DOWN".into(), "1 osds down".into())],
            mutes: vec![],
            osds: 6,
            osds_up: 5,
            osds_in: 6,
            num_pgs: 64,
            pgs_by_state: vec![
                ("active+clean".into(), 48),
                ("active+undersized+degraded".into(), 16),
            ],
        };
        let (health, pgs) = ceph_lanes(&status);
        assert_eq!(health, (LaneState::Warn, "HEALTH_WARN: OSD_DOWN".into()));
        assert_eq!(pgs.0, LaneState::Warn);
        assert_eq!(pgs.1, Some(0.75));
        assert_eq!(pgs.2, "48/64 active+clean (75.0 %)");
    }

    #[test]
    fn file_names_pair_with_timelines() {
        assert_eq!(file_for_timeline("timeline.csv"), "health.csv");
        assert_eq!(file_for_timeline("timeline-2.csv"), "health-2.csv");
        let latest = vec![
            sample(
                0.0,
                "pods openalex",
                LaneState::Warn,
                Some(0.5),
                "1/2 Ready; not Ready: x",
            ),
            sample(0.0, LANE_CEPH, LaneState::Ok, None, "HEALTH_OK"),
        ];
        assert_eq!(
            summary_line(&latest),
            "pods openalex 1/2 Ready · Ceph health HEALTH_OK"
        );
    }
}
