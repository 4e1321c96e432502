//! The real Ceph backend (`--ceph real`): a Ceph cluster of local processes from the
//! Debian packages (pacific 16.2), bootstrapped in a scratch folder on 127.0.0.1 after
//! the recipe in `ceph-lab.md`: one mon, one mgr with the prometheus module (free
//! ports), one BlueStore-on-sparse-file OSD per device of the CephCluster spec, placed
//! in CRUSH under its Kubernetes node (`host=dirqual1`...) with its device class, and
//! the stack's pools with some data written by `rados bench`.
//!
//! Threads: a *supervisor* owns every daemon (it spawns them, so `PR_SET_PDEATHSIG`
//! kills them if the twin's process dies without cleaning up), bootstraps, and
//! converges OSD processes to what their pods say; a *poller* runs `ceph status`
//! (and `pg dump` while PGs are not all clean) about once a second, the cache every
//! other method answers from. Signals to an OSD go out at once from the caller.
//! [`RealCeph::shutdown`] (also on drop) SIGKILLs every daemon by PID, reaps it and
//! removes the scratch folder.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::backend::{
    CephBackend, CephBackendKind, ClusterView, OsdSpec, OsdWant, PoolIo, PoolPhase, PoolSpec,
};
use crate::procs::{describe, die_with_parent, error_chain, Output};
use crate::sim::{ExecOutput, HttpRequest, HttpResponse};

/// What `scripts/ceph-setup.sh` installs.
pub const PACKAGES: &str =
    "ceph-mon ceph-mgr ceph-osd ceph-common ceph-mgr-modules-core prometheus";
/// The binaries the backend runs (prometheus is only for the tests' server).
pub const BINARIES: &[&str] = &[
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "ceph",
    "ceph-authtool",
    "monmaptool",
    "rados",
];

/// CLI calls that normally take well under a second; a hung monitor must not hang us.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// A toolbox `ceph` command (the harness has its own, usually shorter, deadline).
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
const MKFS_TIMEOUT: Duration = Duration::from_secs(180);
const MON_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const OSDS_UP_PATIENCE: Duration = Duration::from_secs(90);
/// A SIGTERMed OSD that has not gone after this gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// Seconds of `rados bench` writes per block pool at bootstrap (~1-2k 64 KiB objects).
const SEED_BENCH_SECS: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum RealCephError {
    #[error("--ceph real needs {missing} on PATH: run scripts/ceph-setup.sh (installs {PACKAGES} from Debian with apt-get --no-install-recommends; needs root or sudo)")]
    Missing { missing: String },
    #[error("cannot create the scratch folder {}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot pick a free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed (exit {code}): {stderr}")]
    Failed {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("{command} did not finish within {} s", timeout.as_secs())]
    Timeout { command: String, timeout: Duration },
    #[error("unexpected output of {command}: {output}")]
    Output { command: String, output: String },
    /// The scratch folder goes with the failed cluster, so the log's end is kept here.
    #[error("the Ceph monitor did not answer within {} s; ceph-mon said: {tail}", timeout.as_secs())]
    MonTimeout { timeout: Duration, tail: String },
    #[error("the Ceph bootstrap thread stopped before the monitor was up")]
    Gone,
    #[error("the real Ceph cluster did not start: {0}")]
    Bootstrap(String),
}

type Result<T> = std::result::Result<T, RealCephError>;

/// The binaries of [`BINARIES`] missing from PATH (and /usr/sbin, /usr/bin).
pub fn missing_binaries() -> Vec<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    missing_in(&dirs)
}

fn missing_in(dirs: &[PathBuf]) -> Vec<&'static str> {
    BINARIES
        .iter()
        .copied()
        .filter(|b| !dirs.iter().any(|d| d.join(b).is_file()))
        .collect()
}

/// Fails with the setup script's message when a binary is missing.
pub fn check_installed() -> Result<()> {
    installed_in(missing_binaries())
}

fn installed_in(missing: Vec<&str>) -> Result<()> {
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RealCephError::Missing {
            missing: missing.join(", "),
        })
    }
}

/// Where and how to run the cluster.
#[derive(Clone, Debug, Default)]
pub struct RealCephOptions {
    /// Parent of the scratch folder [default: the system's temp dir].
    pub scratch_parent: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Starting,
    MonUp,
    OsdsCreated,
    PoolsPossible,
    Failed,
}

/// One daemon the supervisor started.
#[derive(Debug)]
struct Proc {
    pid: u32,
    /// SIGSTOPped (its node lost power).
    frozen: bool,
    /// We signalled it to end: its exit is not a crash.
    ending: Option<(i32, Instant)>,
}

#[derive(Debug)]
struct PoolState {
    spec: PoolSpec,
    /// What was applied to Ceph (None: not created yet).
    applied: Option<PoolSpec>,
    seed: bool,
    seeded: bool,
    error: Option<String>,
}

#[derive(Default, Debug)]
struct Cached {
    status: Option<Value>,
    /// pool name -> id
    pool_ids: BTreeMap<String, u64>,
    /// (pool id, state) of every PG, refreshed while some PG is not active+clean.
    pgs: Vec<(u64, String)>,
}

#[derive(Debug)]
struct State {
    stop: bool,
    phase: Phase,
    error: Option<String>,
    osd_specs: Option<Vec<OsdSpec>>,
    want: BTreeMap<i32, OsdWant>,
    /// The container each running OSD belongs to (see `CephBackend::set_osd`).
    incarnation: BTreeMap<i32, String>,
    /// OSDs that crashed: restarted only when their container restarts.
    hold: std::collections::BTreeSet<i32>,
    procs: BTreeMap<String, Proc>,
    crashed: Vec<i32>,
    pools: BTreeMap<String, PoolState>,
    admin: VecDeque<Vec<String>>,
    cache: Cached,
    timeline: Vec<(Duration, String)>,
}

impl State {
    /// Nothing started yet: the bootstrap thread fills it in.
    fn starting() -> State {
        State {
            stop: false,
            phase: Phase::Starting,
            error: None,
            osd_specs: None,
            want: BTreeMap::new(),
            incarnation: BTreeMap::new(),
            hold: Default::default(),
            procs: BTreeMap::new(),
            crashed: Vec::new(),
            pools: BTreeMap::new(),
            admin: VecDeque::new(),
            cache: Cached::default(),
            timeline: Vec::new(),
        }
    }
}

struct Inner {
    dir: PathBuf,
    conf: PathBuf,
    mon_addr: String,
    exporter_port: u16,
    started: Instant,
    version: String,
    /// Raised by shutdown, read by the threads' commands (see `HALT`).
    halt: Arc<AtomicBool>,
    st: Mutex<State>,
    wake: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, what: &str) {
        let t = self.started.elapsed();
        tracing::info!(target: "stormdrill_twin::ceph", "real ceph: {what} after {:.1} s", t.as_secs_f64());
        self.lock().timeline.push((t, what.to_string()));
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("log").join(format!("{name}.out"))
    }
}

/// A real local Ceph cluster behind the twin.
pub struct RealCeph {
    inner: Arc<Inner>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl RealCeph {
    /// Checks the binaries, writes the configuration and starts the monitor; returns
    /// once it answers (the mgr, OSDs and pools follow in the background).
    pub fn start(opts: RealCephOptions) -> Result<RealCeph> {
        check_installed()?;
        let parent = opts.scratch_parent.unwrap_or_else(std::env::temp_dir);
        clean_stale_scratch(&parent);
        let dir = scratch_dir(&parent)?;
        let ports = free_ports(3)?;
        let mon_addr = format!("[v2:127.0.0.1:{},v1:127.0.0.1:{}]", ports[0], ports[1]);
        let version = run(&cmd("ceph", &["--version"]), None, CLI_TIMEOUT)
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .nth(2)
                    .map(|v| format!("{v}-0"))
            })
            .unwrap_or_else(|| "unknown".into());
        let inner = Arc::new(Inner {
            conf: dir.join("ceph.conf"),
            dir,
            mon_addr,
            exporter_port: ports[2],
            started: Instant::now(),
            version,
            halt: Arc::new(AtomicBool::new(false)),
            st: Mutex::new(State::starting()),
            wake: Condvar::new(),
        });
        let me = RealCeph {
            inner: inner.clone(),
            threads: Mutex::new(Vec::new()),
        };
        let i = inner.clone();
        me.push_thread(
            std::thread::Builder::new()
                .name("ceph-supervisor".into())
                .spawn(move || supervise(i)),
        );
        // Wait for the monitor (or the bootstrap's error): fail fast, not at first use.
        {
            let mut st = inner.lock();
            let deadline = Instant::now() + MON_TIMEOUT + CLI_TIMEOUT;
            while st.phase == Phase::Starting && Instant::now() < deadline {
                st = inner
                    .wake
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if st.phase != Phase::MonUp {
                let err = st.error.clone();
                drop(st);
                me.shutdown_now();
                return Err(err.map_or(RealCephError::Gone, RealCephError::Bootstrap));
            }
        }
        let i = inner.clone();
        me.push_thread(
            std::thread::Builder::new()
                .name("ceph-poller".into())
                .spawn(move || poll(i)),
        );
        Ok(me)
    }

    fn push_thread(&self, t: std::io::Result<std::thread::JoinHandle<()>>) {
        match t {
            Ok(t) => self
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t),
            Err(e) => {
                let mut st = self.inner.lock();
                st.phase = Phase::Failed;
                st.error = Some(format!("cannot start a thread: {e}"));
            }
        }
    }

    /// The scratch folder (ceph.conf, logs, OSD data).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `CEPH_CONF` for running the `ceph` CLI against this cluster.
    pub fn conf(&self) -> &Path {
        &self.inner.conf
    }

    /// The mgr's Prometheus exporter, `127.0.0.1:PORT`.
    pub fn exporter_addr(&self) -> String {
        format!("127.0.0.1:{}", self.inner.exporter_port)
    }

    /// Bootstrap failure, if any (the twin keeps serving; toolbox commands show it).
    pub fn error(&self) -> Option<String> {
        self.inner.lock().error.clone()
    }

    fn shutdown_now(&self) {
        {
            let mut st = self.inner.lock();
            st.stop = true;
        }
        self.inner.halt.store(true, Ordering::Relaxed);
        self.inner.wake.notify_all();
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        // The supervisor kills and reaps its children; anything left (it panicked) by PID.
        let left: Vec<u32> = self.inner.lock().procs.values().map(|p| p.pid).collect();
        for pid in left {
            signal(pid, libc::SIGKILL);
        }
        self.inner.lock().procs.clear();
        if self.inner.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.inner.dir) {
                tracing::warn!("cannot remove {}: {e}", self.inner.dir.display());
            }
        }
    }
}

impl Drop for RealCeph {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

impl CephBackend for RealCeph {
    fn kind(&self) -> CephBackendKind {
        CephBackendKind::Real
    }

    fn ensure_cluster(&self, osds: &[OsdSpec], _now: Duration) {
        let mut st = self.inner.lock();
        if st.osd_specs.is_none() {
            st.osd_specs = Some(osds.to_vec());
            drop(st);
            self.inner.wake.notify_all();
        }
    }

    fn ensure_block_pool(&self, spec: &PoolSpec, _now: Duration) -> PoolPhase {
        self.want_pool(spec, true)
    }

    fn ensure_object_pool(&self, spec: &PoolSpec, _now: Duration) {
        // Created once; later spec changes are the object store's business.
        let mut st = self.inner.lock();
        if !st.pools.contains_key(&spec.name) {
            st.pools.insert(
                spec.name.clone(),
                PoolState {
                    spec: spec.clone(),
                    applied: None,
                    seed: false,
                    seeded: false,
                    error: None,
                },
            );
            drop(st);
            self.inner.wake.notify_all();
        }
    }

    fn set_osd(&self, id: i32, want: OsdWant, incarnation: &str, _now: Duration) -> bool {
        let mut st = self.inner.lock();
        let same = st.want.get(&id) == Some(&want);
        let was_running = st.want.get(&id) == Some(&OsdWant::Running);
        if want == OsdWant::Running {
            let prev = st
                .incarnation
                .insert(id, incarnation.to_string())
                .unwrap_or_default();
            if prev != incarnation {
                st.hold.remove(&id);
            }
            if same && prev != incarnation && !prev.is_empty() {
                // A new container while we never saw the old one stop: it was killed.
                stop_osd(&mut st, id, OsdWant::Stopped { graceful: false });
                drop(st);
                self.inner.wake.notify_all();
                return true;
            }
        }
        if same {
            return false;
        }
        st.want.insert(id, want);
        if want != OsdWant::Running {
            st.hold.remove(&id);
        }
        // Stops go out now; starts need the supervisor (it owns the children).
        stop_osd(&mut st, id, want);
        drop(st);
        self.inner.wake.notify_all();
        was_running != (want == OsdWant::Running)
    }

    fn take_crashed_osds(&self) -> Vec<i32> {
        std::mem::take(&mut self.inner.lock().crashed)
    }

    fn exec(&self, argv: &[String], stdin: Option<&[u8]>, _now: Duration) -> ExecOutput {
        let Some(prog) = argv.first().map(String::as_str) else {
            return ExecOutput::not_found("");
        };
        if prog != "ceph" && prog != "rados" {
            return ExecOutput::not_found(prog);
        }
        if let Some(e) = self.error() {
            return ExecOutput::fail(
                1,
                format!("stormdrill-twin: the real Ceph cluster failed to bootstrap: {e}\n"),
            );
        }
        let mut c = Command::new(prog);
        c.args(&argv[1..]).env("CEPH_CONF", &self.inner.conf);
        match run(&c, stdin, EXEC_TIMEOUT) {
            Ok(o) => ExecOutput {
                stdout: o.stdout,
                stderr: o.stderr,
                exit_code: o.code,
            },
            Err(e) => ExecOutput::fail(124, format!("stormdrill-twin: {e}\n")),
        }
    }

    fn metrics(&self, req: &HttpRequest, _now: Duration) -> HttpResponse {
        match http_get(self.inner.exporter_port, &req.path) {
            Ok(r) => r,
            Err(e) => HttpResponse::text(
                503,
                format!(
                    "ceph-mgr prometheus exporter at {} not reachable: {e}",
                    self.exporter_addr()
                ),
            ),
        }
    }

    fn cluster_view(&self, _now: Duration) -> Option<ClusterView> {
        let st = self.inner.lock();
        st.cache
            .status
            .as_ref()
            .map(|s| ClusterView::from_status(s, &self.inner.version))
    }

    fn provision_check(&self, pool: &str, _now: Duration) -> std::result::Result<(), String> {
        let st = self.inner.lock();
        if st.cache.status.is_none() {
            return Err(
                "rpc error: code = Internal desc = failed to connect to the Ceph cluster".into(),
            );
        }
        if !st.cache.pool_ids.contains_key(pool) {
            return Err(format!("rpc error: code = NotFound desc = pool not found: pool ({pool}) not found in Ceph cluster"));
        }
        if pool_inactive(&st.cache, pool) {
            return Err(format!("rpc error: code = DeadlineExceeded desc = context deadline exceeded (pool {pool} has inactive placement groups)"));
        }
        Ok(())
    }

    fn pool_io(&self, pool: &str) -> Option<PoolIo> {
        let st = self.inner.lock();
        let status = st.cache.status.as_ref()?;
        let paused = status
            .pointer("/health/checks/OSDMAP_FLAGS/summary/message")
            .and_then(Value::as_str)
            .is_some_and(|m| m.contains("pauserd") || m.contains("pausewr"));
        Some(PoolIo {
            blocked: paused || pool_inactive(&st.cache, pool),
            degraded: status
                .pointer("/pgmap/degraded_objects")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                > 0,
        })
    }

    fn set_flag(&self, flag: &str, _now: Duration) -> bool {
        self.admin(&["osd", "set", flag]);
        true
    }

    fn slow_recovery(&self, _factor: f64) -> bool {
        // Back to Ceph's own HDD throttle (the backend turns it off at bootstrap): the
        // lab measured recovery at 257 s instead of ~20 s with it.
        self.admin(&["config", "set", "osd", "osd_recovery_sleep_hdd", "0.1"]);
        self.admin(&["config", "set", "osd", "osd_recovery_max_active_hdd", "3"]);
        self.admin(&["config", "set", "osd", "osd_max_backfills", "1"]);
        true
    }

    fn shutdown(&self) {
        self.shutdown_now();
    }

    fn pids(&self) -> Vec<(String, u32)> {
        self.inner
            .lock()
            .procs
            .iter()
            .map(|(n, p)| (n.clone(), p.pid))
            .collect()
    }

    fn timeline(&self) -> Vec<(Duration, String)> {
        self.inner.lock().timeline.clone()
    }

    fn exporter_addr(&self) -> Option<String> {
        Some(RealCeph::exporter_addr(self))
    }
}

impl RealCeph {
    fn want_pool(&self, spec: &PoolSpec, seed: bool) -> PoolPhase {
        let mut st = self.inner.lock();
        let p = st
            .pools
            .entry(spec.name.clone())
            .or_insert_with(|| PoolState {
                spec: spec.clone(),
                applied: None,
                seed,
                seeded: false,
                error: None,
            });
        let changed = p.spec != *spec;
        p.spec = spec.clone();
        let phase = match (&p.error, &p.applied) {
            (Some(e), _) => PoolPhase::Failure(e.clone()),
            (None, Some(a)) if a == spec => PoolPhase::Ready,
            _ => PoolPhase::Progressing,
        };
        drop(st);
        if changed {
            self.inner.wake.notify_all();
        }
        phase
    }

    fn admin(&self, args: &[&str]) {
        self.inner
            .lock()
            .admin
            .push_back(args.iter().map(|s| s.to_string()).collect());
        self.inner.wake.notify_all();
    }
}

/// Some PG of the pool is not active (or stale): its I/O blocks. Unknown pools block.
fn pool_inactive(cache: &Cached, pool: &str) -> bool {
    let Some(id) = cache.pool_ids.get(pool) else {
        return true;
    };
    if all_active_clean(cache.status.as_ref()) {
        return false;
    }
    cache
        .pgs
        .iter()
        .any(|(p, s)| p == id && (!s.split('+').any(|w| w == "active") || s.contains("stale")))
}

/// `ceph status`: every PG active+clean (so the PG list need not be read).
fn all_active_clean(status: Option<&Value>) -> bool {
    let Some(s) = status else { return false };
    let by_state = s
        .pointer("/pgmap/pgs_by_state")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    by_state
        .iter()
        .all(|x| x["state_name"].as_str() == Some("active+clean"))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects; the pid is a child we have not reaped yet
    // (the supervisor removes it from `procs` when it reaps), so it cannot be reused.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Sends the stop a pod's state asks for to a running OSD.
fn stop_osd(st: &mut State, id: i32, want: OsdWant) {
    let Some(p) = st.procs.get_mut(&format!("osd.{id}")) else {
        return;
    };
    match want {
        OsdWant::Running => {}
        OsdWant::Unreachable => {
            // Frozen, not killed: sockets stay open and silent, so Ceph notices only
            // through missed heartbeats, as when a node loses power.
            if !p.frozen && p.ending.is_none() {
                signal(p.pid, libc::SIGSTOP);
                p.frozen = true;
            }
        }
        OsdWant::Stopped { graceful } => {
            let sig = if graceful && !p.frozen {
                libc::SIGTERM
            } else {
                libc::SIGKILL
            };
            if p.ending
                .is_none_or(|(s, _)| s != libc::SIGKILL && sig == libc::SIGKILL)
            {
                signal(p.pid, sig);
                p.ending = Some((sig, Instant::now()));
            }
        }
    }
}

// ----- the supervisor ---------------------------------------------------------------

fn supervise(inner: Arc<Inner>) {
    set_halt(&inner.halt);
    let mut kids: BTreeMap<String, Child> = BTreeMap::new();
    let res = bootstrap_mon(&inner, &mut kids);
    {
        let mut st = inner.lock();
        match &res {
            Ok(()) => st.phase = Phase::MonUp,
            Err(e) => {
                st.phase = Phase::Failed;
                st.error = Some(error_chain(e));
            }
        }
    }
    inner.wake.notify_all();
    if res.is_ok() {
        inner.mark("mon up");
        let mut osds_up_marked = false;
        let mut osds_created_at: Option<Instant> = None;
        loop {
            if inner.lock().stop {
                break;
            }
            reap(&inner, &mut kids);
            let (phase, specs, want_pools) = {
                let st = inner.lock();
                (
                    st.phase,
                    st.osd_specs.clone(),
                    st.pools
                        .values()
                        .any(|p| p.applied.as_ref() != Some(&p.spec)),
                )
            };
            if phase == Phase::MonUp {
                if let Some(specs) = specs {
                    match create_osds(&inner, &specs) {
                        Ok(()) => {
                            inner.lock().phase = Phase::OsdsCreated;
                            osds_created_at = Some(Instant::now());
                            inner.mark("osds created (mkfs)");
                        }
                        Err(e) => fail(&inner, &e),
                    }
                }
            }
            converge_osds(&inner, &mut kids);
            // Device-class rules need the OSDs booted; do not wait forever for an OSD
            // whose pod never runs.
            let waited_long = osds_created_at.is_some_and(|t| t.elapsed() > OSDS_UP_PATIENCE);
            if phase == Phase::OsdsCreated && (osds_all_up(&inner) || waited_long) {
                inner.lock().phase = Phase::PoolsPossible;
                if !osds_up_marked {
                    osds_up_marked = true;
                    inner.mark(if waited_long {
                        "not all osds up; creating pools anyway"
                    } else {
                        "all osds up"
                    });
                }
            }
            if phase == Phase::PoolsPossible && want_pools {
                apply_pools(&inner);
            }
            run_admin(&inner);
            let st = inner.lock();
            if !st.stop {
                let _ = inner
                    .wake
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }
    // Teardown: SIGKILL by PID (the data is thrown away), then reap each child.
    let t0 = Instant::now();
    for (_, c) in kids.iter_mut() {
        let _ = c.kill();
    }
    for (_, mut c) in std::mem::take(&mut kids) {
        let _ = c.wait();
    }
    inner.lock().procs.clear();
    tracing::info!(target: "stormdrill_twin::ceph", "real ceph: daemons stopped in {:.2} s", t0.elapsed().as_secs_f64());
}

fn fail(inner: &Inner, e: &RealCephError) {
    let msg = error_chain(e);
    tracing::error!(target: "stormdrill_twin::ceph", "real ceph bootstrap failed: {msg}");
    let mut st = inner.lock();
    st.phase = Phase::Failed;
    st.error = Some(msg);
}

fn conf_text(inner: &Inner, osds: &[OsdSpec]) -> String {
    let d = inner.dir.display();
    let fsid = inner.dir.join("fsid");
    let fsid = std::fs::read_to_string(fsid).unwrap_or_default();
    // Single-host tweaks from the recipe; everything else is Ceph's default.
    let mut s = format!(
        "[global]
fsid = {fsid}
mon initial members = a
mon host = {mon}
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
# avoids AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED
auth allow insecure global id reclaim = false
keyring = {d}/keyring
run dir = {d}/run
osd pool default pg autoscale mode = off
mon allow pool delete = true
# the build machines' shared disks are fuller than Ceph's 30 % warning
mon data avail warn = 2
mon data avail crit = 1
mgr initial modules = prometheus
# a drill waits for a dead OSD to be marked out: 10 s as the twin's fast model, not
# Ceph's 600 s (the kind and production profiles keep 600 s)
mon osd down out interval = 10
# daemons only: concurrent CLI calls would fight over one client socket
[mon]
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
mon data = {d}/mon.$id
[mgr]
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
mgr data = {d}/mgr.$id
keyring = {d}/mgr.$id/keyring
[osd]
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
osd data = {d}/osd.$id
keyring = {d}/osd.$id/keyring
osd objectstore = bluestore
osd memory target = 1073741824
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mount = false
# files on a virtual disk report rotational=1: without this, recovery sleeps 0.1 s per op
osd recovery sleep hdd = 0
osd recovery max active hdd = 10
osd max backfills = 4
",
        fsid = fsid.trim(),
        mon = inner.mon_addr,
    );
    for o in osds {
        s.push_str(&format!(
            "[osd.{}]\ncrush location = root=default host={}\n",
            o.id, o.host
        ));
    }
    s
}

fn write_conf(inner: &Inner, osds: &[OsdSpec]) -> Result<()> {
    let tmp = inner.dir.join("ceph.conf.tmp");
    let io = |source| RealCephError::Scratch {
        path: inner.conf.clone(),
        source,
    };
    std::fs::write(&tmp, conf_text(inner, osds)).map_err(io)?;
    std::fs::rename(&tmp, &inner.conf).map_err(io)
}

fn bootstrap_mon(inner: &Inner, kids: &mut BTreeMap<String, Child>) -> Result<()> {
    let d = &inner.dir;
    let path = |p: &str| d.join(p).display().to_string();
    for sub in ["run", "log", "mon.a", "mgr.x"] {
        std::fs::create_dir_all(d.join(sub)).map_err(|source| RealCephError::Scratch {
            path: d.join(sub),
            source,
        })?;
    }
    let fsid = uuid::Uuid::new_v4().to_string();
    std::fs::write(d.join("fsid"), &fsid).map_err(|source| RealCephError::Scratch {
        path: d.join("fsid"),
        source,
    })?;
    write_conf(inner, &[])?;
    let conf = inner.conf.display().to_string();
    let (monk, adm) = (path("mon.keyring"), path("keyring"));
    ok(&cmd(
        "ceph-authtool",
        &[
            "--create-keyring",
            &monk,
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ],
    ))?;
    ok(&cmd(
        "ceph-authtool",
        &[
            "--create-keyring",
            &adm,
            "--gen-key",
            "-n",
            "client.admin",
            "--cap",
            "mon",
            "allow *",
            "--cap",
            "osd",
            "allow *",
            "--cap",
            "mds",
            "allow *",
            "--cap",
            "mgr",
            "allow *",
        ],
    ))?;
    ok(&cmd("ceph-authtool", &[&monk, "--import-keyring", &adm]))?;
    let monmap = path("monmap");
    ok(&cmd(
        "monmaptool",
        &[
            "--create",
            "--addv",
            "a",
            &inner.mon_addr,
            "--fsid",
            &fsid,
            &monmap,
        ],
    ))?;
    ok(&cmd(
        "ceph-mon",
        &[
            "-c",
            &conf,
            "--mkfs",
            "-i",
            "a",
            "--monmap",
            &monmap,
            "--keyring",
            &monk,
        ],
    ))?;
    spawn_daemon(
        inner,
        kids,
        "mon.a",
        "ceph-mon",
        &["-f", "-c", &conf, "-i", "a"],
    )?;
    let deadline = Instant::now() + MON_TIMEOUT;
    loop {
        if inner.lock().stop {
            return Err(RealCephError::Gone);
        }
        let probe = ceph(inner, &["status", "--connect-timeout", "5", "-f", "json"]);
        if probe.is_ok() {
            break;
        }
        if Instant::now() > deadline
            || kids
                .get_mut("mon.a")
                .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        {
            let out = std::fs::read_to_string(inner.log("mon.a")).unwrap_or_default();
            let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
            return Err(RealCephError::MonTimeout {
                timeout: MON_TIMEOUT,
                tail: lines[lines.len().saturating_sub(5)..].join(" | "),
            });
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // The exporter on our own port, on 127.0.0.1 only; --force: no mgr has run yet.
    let port = inner.exporter_port.to_string();
    parallel(vec![
        ceph_cmd(
            inner,
            &[
                "config",
                "set",
                "mgr",
                "mgr/prometheus/server_addr",
                "127.0.0.1",
                "--force",
            ],
        ),
        ceph_cmd(
            inner,
            &[
                "config",
                "set",
                "mgr",
                "mgr/prometheus/server_port",
                &port,
                "--force",
            ],
        ),
        ceph_cmd(
            inner,
            &[
                "config",
                "set",
                "mgr",
                "mgr/prometheus/scrape_interval",
                "2",
                "--force",
            ],
        ),
        ceph_cmd(
            inner,
            &[
                "auth",
                "get-or-create",
                "mgr.x",
                "mon",
                "allow profile mgr",
                "osd",
                "allow *",
                "mds",
                "allow *",
                "-o",
                &path("mgr.x/keyring"),
            ],
        ),
    ])?;
    spawn_daemon(
        inner,
        kids,
        "mgr.x",
        "ceph-mgr",
        &["-f", "-c", &conf, "-i", "x"],
    )?;
    Ok(())
}

fn create_osds(inner: &Inner, specs: &[OsdSpec]) -> Result<()> {
    write_conf(inner, specs)?;
    let conf = inner.conf.display().to_string();
    // Register every OSD (ids as Rook assigns them: spec order), then mkfs in parallel.
    let mut news = Vec::new();
    let mut keys = Vec::new();
    for o in specs {
        let uuid = uuid::Uuid::new_v4().to_string();
        let key = String::from_utf8_lossy(&ok(&cmd("ceph-authtool", &["--gen-print-key"]))?.stdout)
            .trim()
            .to_string();
        keys.push((o.id, uuid.clone(), key.clone()));
        let mut c = ceph_cmd(inner, &["osd", "new", &uuid, &o.id.to_string(), "-i", "-"]);
        c.stdin(Stdio::piped());
        news.push((c, json!({"cephx_secret": key}).to_string()));
    }
    let outs = parallel_with_stdin(news)?;
    for ((id, _, _), out) in keys.iter().zip(outs) {
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got != id.to_string() {
            return Err(RealCephError::Output {
                command: format!("ceph osd new (osd.{id})"),
                output: got,
            });
        }
    }
    let mut mkfs = Vec::new();
    for (id, uuid, key) in &keys {
        let data = inner.dir.join(format!("osd.{id}"));
        std::fs::create_dir_all(&data).map_err(|source| RealCephError::Scratch {
            path: data.clone(),
            source,
        })?;
        let kr = data.join("keyring").display().to_string();
        ok(&cmd(
            "ceph-authtool",
            &[
                "--create-keyring",
                &kr,
                "--name",
                &format!("osd.{id}"),
                "--add-key",
                key,
            ],
        ))?;
        mkfs.push(cmd(
            "ceph-osd",
            &[
                "-c",
                &conf,
                "-i",
                &id.to_string(),
                "--mkfs",
                "--osd-uuid",
                uuid,
            ],
        ));
    }
    parallel_timeout(mkfs, MKFS_TIMEOUT)?;
    for o in specs {
        // BlueStore keeps this meta key as a file; the OSD registers the class on boot.
        let f = inner.dir.join(format!("osd.{}/crush_device_class", o.id));
        std::fs::write(&f, format!("{}\n", o.class)).map_err(|source| RealCephError::Scratch {
            path: f.clone(),
            source,
        })?;
    }
    Ok(())
}

fn osds_all_up(inner: &Inner) -> bool {
    let st = inner.lock();
    let n = st.osd_specs.as_ref().map_or(0, Vec::len) as u64;
    st.cache
        .status
        .as_ref()
        .and_then(|s| s.pointer("/osdmap/num_up_osds").and_then(Value::as_u64))
        .is_some_and(|up| up >= n && n > 0)
}

/// Reaps exited children; an OSD that died while its pod runs has crashed.
fn reap(inner: &Inner, kids: &mut BTreeMap<String, Child>) {
    let mut gone = Vec::new();
    for (name, c) in kids.iter_mut() {
        if let Ok(Some(status)) = c.try_wait() {
            gone.push((name.clone(), status));
        }
    }
    let mut st = inner.lock();
    for (name, status) in gone {
        kids.remove(&name);
        let p = st.procs.remove(&name);
        let expected = p.as_ref().is_some_and(|p| p.ending.is_some());
        if !expected {
            tracing::warn!(target: "stormdrill_twin::ceph", "real ceph: {name} exited on its own ({status}); log {}", inner.log(&name).display());
            if let Some(id) = name
                .strip_prefix("osd.")
                .and_then(|i| i.parse::<i32>().ok())
            {
                if st.want.get(&id) == Some(&OsdWant::Running) {
                    st.crashed.push(id);
                    st.hold.insert(id);
                }
            }
        }
    }
}

/// Starts OSDs whose pod runs; re-sends stops (SIGKILL after a SIGTERM grace).
fn converge_osds(inner: &Inner, kids: &mut BTreeMap<String, Child>) {
    let conf = inner.conf.display().to_string();
    let mut to_start = Vec::new();
    {
        let mut st = inner.lock();
        if st.phase < Phase::OsdsCreated || st.phase == Phase::Failed {
            return;
        }
        let wants: Vec<(i32, OsdWant)> = st.want.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, want) in wants {
            let name = format!("osd.{id}");
            let held = st.hold.contains(&id);
            match (want, st.procs.get_mut(&name)) {
                (OsdWant::Running, None) if !held => to_start.push(id),
                (OsdWant::Running, Some(p)) if p.frozen && p.ending.is_none() => {
                    // Power is back: the node rebooted, so the process starts afresh.
                    signal(p.pid, libc::SIGKILL);
                    p.ending = Some((libc::SIGKILL, Instant::now()));
                }
                (OsdWant::Stopped { .. }, Some(p)) => {
                    if let Some((libc::SIGTERM, at)) = p.ending {
                        if at.elapsed() > TERM_GRACE {
                            signal(p.pid, libc::SIGKILL);
                            p.ending = Some((libc::SIGKILL, Instant::now()));
                        }
                    } else if p.ending.is_none() {
                        stop_osd(&mut st, id, want);
                    }
                }
                (OsdWant::Unreachable, Some(_)) => stop_osd(&mut st, id, want),
                _ => {}
            }
        }
    }
    for id in to_start {
        let name = format!("osd.{id}");
        if let Err(e) = spawn_daemon(
            inner,
            kids,
            &name,
            "ceph-osd",
            &["-f", "-c", &conf, "-i", &id.to_string()],
        ) {
            tracing::error!(target: "stormdrill_twin::ceph", "real ceph: cannot start {name}: {}", error_chain(&e));
        }
    }
}

fn apply_pools(inner: &Inner) {
    let todo: Vec<(String, PoolSpec, Option<PoolSpec>, bool)> = {
        let st = inner.lock();
        st.pools
            .iter()
            .filter(|(_, p)| p.applied.as_ref() != Some(&p.spec) && p.error.is_none())
            .map(|(n, p)| {
                (
                    n.clone(),
                    p.spec.clone(),
                    p.applied.clone(),
                    p.seed && !p.seeded,
                )
            })
            .collect()
    };
    let mut any_created = false;
    let mut to_seed = Vec::new();
    // Every pool first, then the data: the pools peer while the others are created.
    for (name, spec, applied, seed) in todo {
        let res = apply_pool(inner, &spec, applied.as_ref());
        any_created |= applied.is_none() && res.is_ok();
        if seed && applied.is_none() && res.is_ok() {
            to_seed.push(name.clone());
        }
        let mut st = inner.lock();
        if let Some(p) = st.pools.get_mut(&name) {
            match res {
                Ok(()) => p.applied = Some(spec.clone()),
                Err(e) => p.error = Some(error_chain(&e)),
            }
        }
    }
    if any_created {
        inner.mark("pools created");
    }
    // Data to recover when an OSD comes back (`rados bench` waits for active PGs).
    let benches: Vec<(String, Command)> = to_seed
        .into_iter()
        .map(|name| {
            let c = cmd_conf(
                inner,
                "rados",
                &[
                    "-p",
                    &name,
                    "bench",
                    SEED_BENCH_SECS,
                    "write",
                    "-b",
                    "65536",
                    "-t",
                    "4",
                    "--no-cleanup",
                ],
            );
            (name, c)
        })
        .collect();
    let running: Vec<(String, Command, Result<Child>)> = benches
        .into_iter()
        .map(|(n, c)| {
            let ch = spawn(&c, false);
            (n, c, ch)
        })
        .collect();
    for (name, c, ch) in running {
        match ch.and_then(|ch| finish(&c, ch, Duration::from_secs(120))) {
            Ok(o) if o.code == 0 => {
                if let Some(p) = inner.lock().pools.get_mut(&name) {
                    p.seeded = true;
                }
                inner.mark(&format!("{name}: data written"));
            }
            Ok(o) => {
                tracing::warn!(target: "stormdrill_twin::ceph", "rados bench on {name}: exit {}: {}", o.code, String::from_utf8_lossy(&o.stderr))
            }
            Err(e) => {
                tracing::warn!(target: "stormdrill_twin::ceph", "rados bench on {name}: {}", error_chain(&e))
            }
        }
    }
}

fn apply_pool(inner: &Inner, spec: &PoolSpec, applied: Option<&PoolSpec>) -> Result<()> {
    let name = spec.name.as_str();
    let size = spec.size.to_string();
    let min_size = spec.min_size.to_string();
    match applied {
        None => {
            let rule = match spec.class {
                Some(class) => {
                    let rule = format!("{class}-rule");
                    // Rook's deviceClass + failureDomain host, as a CRUSH rule.
                    let r = run(
                        &ceph_cmd(
                            inner,
                            &[
                                "osd",
                                "crush",
                                "rule",
                                "create-replicated",
                                &rule,
                                "default",
                                "host",
                                class.as_str(),
                            ],
                        ),
                        None,
                        CLI_TIMEOUT,
                    )?;
                    if r.code != 0 && r.code != 17 {
                        return Err(failed("ceph osd crush rule create-replicated", &r));
                    }
                    rule
                }
                None => "replicated_rule".into(),
            };
            let pg = spec.pg_num.to_string();
            ok(&ceph_cmd(
                inner,
                &[
                    "osd",
                    "pool",
                    "create",
                    name,
                    &pg,
                    &pg,
                    "replicated",
                    &rule,
                    "--size",
                    &size,
                ],
            ))?;
            parallel(vec![
                ceph_cmd(inner, &["osd", "pool", "set", name, "min_size", &min_size]),
                ceph_cmd(
                    inner,
                    &[
                        "osd",
                        "pool",
                        "application",
                        "enable",
                        name,
                        &spec.application,
                    ],
                ),
            ])?;
        }
        Some(a) => {
            if a.size != spec.size {
                ok(&ceph_cmd(
                    inner,
                    &["osd", "pool", "set", name, "size", &size],
                ))?;
            }
            if a.min_size != spec.min_size || a.size != spec.size {
                ok(&ceph_cmd(
                    inner,
                    &["osd", "pool", "set", name, "min_size", &min_size],
                ))?;
            }
        }
    }
    Ok(())
}

fn run_admin(inner: &Inner) {
    loop {
        let Some(args) = ({
            let mut st = inner.lock();
            if st.phase < Phase::MonUp || st.phase == Phase::Failed {
                return;
            }
            st.admin.pop_front()
        }) else {
            return;
        };
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = ok(&ceph_cmd(inner, &refs)) {
            tracing::warn!(target: "stormdrill_twin::ceph", "real ceph: {}", error_chain(&e));
        }
    }
}

// ----- the poller -------------------------------------------------------------------

fn poll(inner: Arc<Inner>) {
    set_halt(&inner.halt);
    let mut healthy_marked = false;
    let mut reader = Reader::default();
    loop {
        let t = Instant::now();
        if inner.lock().stop {
            return;
        }
        if let Ok(v) = reader.json(&inner, &["status"]) {
            let num_pools = v
                .pointer("/pgmap/num_pools")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            let clean = all_active_clean(Some(&v));
            let known = inner.lock().cache.pool_ids.len();
            let pool_ids = if num_pools != known {
                reader
                    .json(&inner, &["osd", "pool", "ls", "detail"])
                    .ok()
                    .map(|d| {
                        d.as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|p| {
                                        Some((
                                            p["pool_name"].as_str()?.to_string(),
                                            p["pool"].as_u64()?,
                                        ))
                                    })
                                    .collect::<BTreeMap<_, _>>()
                            })
                            .unwrap_or_default()
                    })
            } else {
                None
            };
            let pgs = if clean {
                Some(Vec::new())
            } else {
                reader
                    .json(&inner, &["pg", "dump", "pgs_brief"])
                    .ok()
                    .map(|d| parse_pgs(&d))
            };
            let ok_now = clean
                && v.pointer("/health/status").and_then(Value::as_str) == Some("HEALTH_OK")
                && num_pools > 1;
            {
                let mut st = inner.lock();
                if let Some(ids) = pool_ids {
                    st.cache.pool_ids = ids;
                }
                if let Some(pgs) = pgs {
                    st.cache.pgs = pgs;
                }
                st.cache.status = Some(v);
            }
            // The supervisor waits for "all OSDs up" from this cache.
            inner.wake.notify_all();
            let seeded = {
                let st = inner.lock();
                !st.pools.is_empty() && st.pools.values().all(|p| !p.seed || p.seeded)
            };
            if ok_now && seeded && !healthy_marked {
                healthy_marked = true;
                inner.mark("HEALTH_OK, all PGs active+clean");
            }
        }
        let st = inner.lock();
        if st.stop {
            return;
        }
        let left = POLL_INTERVAL.saturating_sub(t.elapsed());
        let _ = inner
            .wake
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// A long-lived librados client (Python's `rados` module, which the `ceph` CLI itself
/// uses) for the poller: a `ceph` process per poll costs ~0.2 s of CPU, this a few ms.
/// One JSON command per line in, one `{ret, out, err}` line out.
const MONCLIENT_PY: &str = r#"
import json, sys, rados
c = rados.Rados(conffile=sys.argv[1])
c.connect(timeout=10)
for line in sys.stdin:
    cmd = json.loads(line)
    to_mgr = cmd.pop("_mgr", False)
    run = c.mgr_command if to_mgr else c.mon_command
    ret, out, err = run(json.dumps(cmd), b"", timeout=10)
    sys.stdout.write(json.dumps({"ret": ret, "out": out.decode("utf-8", "replace"), "err": err}) + "\n")
    sys.stdout.flush()
"#;

/// The poller's way to read Ceph: the librados helper, or the `ceph` CLI while the
/// helper cannot run (e.g. no `rados` module for /usr/bin/python3).
#[derive(Default)]
struct Reader {
    helper: Option<MonClient>,
    failed_at: Option<Instant>,
}

struct MonClient {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for MonClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reader {
    fn json(&mut self, inner: &Inner, args: &[&str]) -> Result<Value> {
        // Retry the helper a while after it failed; the CLI meanwhile.
        if self.helper.is_none()
            && self
                .failed_at
                .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
        {
            match MonClient::start(inner) {
                Ok(h) => self.helper = Some(h),
                Err(e) => {
                    tracing::debug!(target: "stormdrill_twin::ceph", "librados helper: {}", error_chain(&e));
                    self.failed_at = Some(Instant::now());
                }
            }
        }
        if let Some(h) = self.helper.as_mut() {
            match h.call(args) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::debug!(target: "stormdrill_twin::ceph", "librados helper: {}", error_chain(&e));
                    self.helper = None;
                    self.failed_at = Some(Instant::now());
                }
            }
        }
        ceph_json(inner, args)
    }
}

impl MonClient {
    fn start(inner: &Inner) -> Result<MonClient> {
        let mut c = Command::new("/usr/bin/python3");
        c.arg("-c").arg(MONCLIENT_PY).arg(&inner.conf);
        let log = inner.log("monclient");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| RealCephError::Scratch { path: log, source })?;
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        die_with_parent(&mut c);
        let mut child = c.spawn().map_err(|source| RealCephError::Spawn {
            command: "python3 (librados helper)".into(),
            source,
        })?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RealCephError::Gone);
            }
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(MonClient {
            child,
            stdin,
            lines,
        })
    }

    /// The same command the CLI would send for `ceph ARGS -f json`.
    fn call(&mut self, args: &[&str]) -> Result<Value> {
        let what = format!("ceph {} (librados)", args.join(" "));
        let cmd = match args {
            ["status"] => json!({"prefix": "status", "format": "json"}),
            ["osd", "pool", "ls", "detail"] => {
                json!({"prefix": "osd pool ls", "detail": "detail", "format": "json"})
            }
            ["pg", "dump", "pgs_brief"] => {
                json!({"prefix": "pg dump", "dumpcontents": ["pgs_brief"], "format": "json", "_mgr": true})
            }
            _ => {
                return Err(RealCephError::Output {
                    command: what,
                    output: "not a poller command".into(),
                })
            }
        };
        writeln!(self.stdin, "{cmd}").map_err(|source| RealCephError::Spawn {
            command: what.clone(),
            source,
        })?;
        let t = Instant::now();
        let line = loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => break l,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if t.elapsed() < CLI_TIMEOUT && !halted() => {}
                Err(_) => {
                    return Err(RealCephError::Timeout {
                        command: what,
                        timeout: CLI_TIMEOUT,
                    })
                }
            }
        };
        let reply: Value = serde_json::from_str(&line).map_err(|e| RealCephError::Output {
            command: what.clone(),
            output: e.to_string(),
        })?;
        if reply["ret"].as_i64() != Some(0) {
            return Err(RealCephError::Failed {
                command: what,
                code: reply["ret"].as_i64().unwrap_or(-1) as i32,
                stderr: reply["err"].as_str().unwrap_or("").to_string(),
            });
        }
        serde_json::from_str(reply["out"].as_str().unwrap_or("")).map_err(|e| {
            RealCephError::Output {
                command: what,
                output: e.to_string(),
            }
        })
    }
}

/// `pg dump pgs_brief -f json`: pacific wraps the list in `pg_stats`.
fn parse_pgs(d: &Value) -> Vec<(u64, String)> {
    let list = d
        .get("pg_stats")
        .and_then(Value::as_array)
        .or_else(|| d.as_array())
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|pg| {
            let pool = pg["pgid"].as_str()?.split('.').next()?.parse().ok()?;
            Some((pool, pg["state"].as_str()?.to_string()))
        })
        .collect()
}

// ----- processes --------------------------------------------------------------------

fn cmd(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

fn cmd_conf(inner: &Inner, prog: &str, args: &[&str]) -> Command {
    let mut c = cmd(prog, args);
    c.env("CEPH_CONF", &inner.conf);
    c
}

fn ceph_cmd(inner: &Inner, args: &[&str]) -> Command {
    cmd_conf(inner, "ceph", args)
}

fn ceph(inner: &Inner, args: &[&str]) -> Result<Output> {
    ok(&ceph_cmd(inner, args))
}

fn ceph_json(inner: &Inner, args: &[&str]) -> Result<Value> {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    let o = ceph(inner, &a)?;
    serde_json::from_slice(&o.stdout).map_err(|e| RealCephError::Output {
        command: format!("ceph {}", a.join(" ")),
        output: e.to_string(),
    })
}

fn failed(command: &str, o: &Output) -> RealCephError {
    RealCephError::Failed {
        command: command.to_string(),
        code: o.code,
        stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
    }
}

/// Runs to completion within CLI_TIMEOUT; a non-zero exit is an error.
fn ok(c: &Command) -> Result<Output> {
    let o = run(c, None, CLI_TIMEOUT)?;
    if o.code != 0 {
        return Err(failed(&describe(c), &o));
    }
    Ok(o)
}

/// Runs a command (not a daemon) with a deadline, feeding `stdin`; kills it when late.
fn run(c: &Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let mut child = spawn(c, stdin.is_some())?;
    if let Some(input) = stdin {
        if let Some(mut w) = child.stdin.take() {
            let input = input.to_vec();
            // A writer thread: a large input must not deadlock against a full stdout pipe.
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
    }
    finish(c, child, timeout)
}

fn spawn(c: &Command, with_stdin: bool) -> Result<Child> {
    let mut cmd = Command::new(c.get_program());
    cmd.args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(if with_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    cmd.spawn().map_err(|source| RealCephError::Spawn {
        command: describe(c),
        source,
    })
}

/// [`crate::procs::finish`], ended early by teardown ([`halted`]).
fn finish(c: &Command, child: Child, timeout: Duration) -> Result<Output> {
    crate::procs::finish(child, timeout, &halted).map_err(|_| RealCephError::Timeout {
        command: describe(c),
        timeout,
    })
}

thread_local! {
    /// Set in the supervisor and poller threads: teardown ends their commands at once
    /// (a `ceph` call hunting for a killed monitor would otherwise wait its timeout).
    static HALT: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

fn halted() -> bool {
    HALT.with(|h| {
        h.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

fn set_halt(flag: &Arc<AtomicBool>) {
    HALT.with(|h| *h.borrow_mut() = Some(flag.clone()));
}

/// Runs the commands at once (they are independent); the first failure is returned.
fn parallel(cmds: Vec<Command>) -> Result<Vec<Output>> {
    parallel_with_stdin(cmds.into_iter().map(|c| (c, String::new())).collect())
}

fn parallel_timeout(cmds: Vec<Command>, timeout: Duration) -> Result<()> {
    let children: Vec<(Command, Result<Child>)> = cmds
        .into_iter()
        .map(|c| {
            let ch = spawn(&c, false);
            (c, ch)
        })
        .collect();
    let mut first_err = None;
    for (c, ch) in children {
        let r = ch.and_then(|ch| finish(&c, ch, timeout)).and_then(|o| {
            if o.code == 0 {
                Ok(())
            } else {
                Err(failed(&describe(&c), &o))
            }
        });
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn parallel_with_stdin(cmds: Vec<(Command, String)>) -> Result<Vec<Output>> {
    let mut children = Vec::new();
    for (c, input) in cmds {
        let with = !input.is_empty();
        let mut ch = spawn(&c, with);
        if let Ok(child) = ch.as_mut() {
            if let Some(mut w) = child.stdin.take() {
                let _ = w.write_all(input.as_bytes());
            }
        }
        children.push((c, ch));
    }
    let mut outs = Vec::new();
    let mut first_err = None;
    for (c, ch) in children {
        match ch.and_then(|ch| finish(&c, ch, CLI_TIMEOUT)) {
            Ok(o) if o.code == 0 => outs.push(o),
            Ok(o) => {
                first_err.get_or_insert(failed(&describe(&c), &o));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(outs), Err)
}

/// Starts a daemon in the foreground (so it is our child and its PID is the one we
/// hold), output to `log/<name>.out`, in its own process group (a terminal's Ctrl-C
/// reaches the twin, which then stops it), killed if the supervisor thread dies.
fn spawn_daemon(
    inner: &Inner,
    kids: &mut BTreeMap<String, Child>,
    name: &str,
    prog: &str,
    args: &[&str],
) -> Result<()> {
    let log = inner.log(name);
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| RealCephError::Scratch {
                path: log.clone(),
                source,
            })
    };
    let mut c = Command::new(prog);
    c.args(args)
        .env("CEPH_CONF", &inner.conf)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .process_group(0);
    die_with_parent(&mut c);
    let child = c.spawn().map_err(|source| RealCephError::Spawn {
        command: describe(&c),
        source,
    })?;
    let pid = child.id();
    kids.insert(name.to_string(), child);
    inner.lock().procs.insert(
        name.to_string(),
        Proc {
            pid,
            frozen: false,
            ending: None,
        },
    );
    tracing::debug!(target: "stormdrill_twin::ceph", "real ceph: started {name} pid {pid}");
    Ok(())
}

// ----- small helpers ----------------------------------------------------------------

fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Held together so the n ports differ; freed just before the daemons bind them.
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(RealCephError::Port))
        .collect::<Result<_>>()?;
    ls.iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(RealCephError::Port)
        })
        .collect()
}

const SCRATCH_PREFIX: &str = "stormdrill-ceph-";

/// `stormdrill-ceph-<pid>-<n>`: short (admin socket paths are limited to 107 bytes).
fn scratch_dir(parent: &Path) -> Result<PathBuf> {
    crate::procs::scratch_dir(parent, SCRATCH_PREFIX).map_err(|e| match e {
        crate::procs::ProcError::Dir { path, source } => RealCephError::Scratch { path, source },
        other => RealCephError::Scratch {
            path: parent.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Removes scratch folders of twins whose process is gone (their daemons died with
/// them, by PR_SET_PDEATHSIG, but the files stayed).
fn clean_stale_scratch(parent: &Path) {
    crate::procs::clean_stale_scratch(parent, SCRATCH_PREFIX);
}

/// A plain HTTP/1.0 GET (so no chunked body) to a local server, e.g. the exporter or
/// a test's Prometheus behind a service-proxy handler; 10 s deadline.
pub fn http_get(port: u16, path: &str) -> std::io::Result<HttpResponse> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let path = if path.is_empty() { "/" } else { path };
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgs_brief_of_pacific_and_later() {
        let d = json!({"pg_ready": true, "pg_stats": [
            {"pgid": "3.1a", "state": "active+clean"},
            {"pgid": "2.1b", "state": "stale+active+clean"},
            {"pgid": "2.3", "state": "peering"}]});
        assert_eq!(
            parse_pgs(&d),
            vec![
                (3, "active+clean".into()),
                (2, "stale+active+clean".into()),
                (2, "peering".into())
            ]
        );
        assert_eq!(
            parse_pgs(&json!([{"pgid": "1.0", "state": "active+clean"}])).len(),
            1
        );
    }

    #[test]
    fn inactive_or_stale_pgs_block_their_pool_only() {
        let status = json!({"pgmap": {"pgs_by_state": [{"state_name": "peering", "count": 1}, {"state_name": "active+clean", "count": 2}]}});
        let cache = Cached {
            status: Some(status),
            pool_ids: [("a".to_string(), 2), ("b".to_string(), 3)].into(),
            pgs: vec![
                (2, "peering".into()),
                (3, "active+undersized+degraded".into()),
            ],
        };
        assert!(pool_inactive(&cache, "a"));
        assert!(!pool_inactive(&cache, "b"));
        assert!(pool_inactive(&cache, "missing"));
        let stale = Cached {
            pgs: vec![(3, "stale+active+clean".into())],
            ..cache
        };
        assert!(pool_inactive(&stale, "b"));
    }

    #[test]
    fn clean_status_needs_no_pg_list() {
        let healthy: Value = serde_json::from_str(include_str!(
            "../../../../fixtures/upstream/ceph/healthy-status.json"
        ))
        .unwrap();
        assert!(all_active_clean(Some(&healthy)));
        let degraded: Value = serde_json::from_str(include_str!(
            "../../../../fixtures/upstream/ceph/degraded-status.json"
        ))
        .unwrap();
        assert!(!all_active_clean(Some(&degraded)));
        assert!(!all_active_clean(None));
    }

    #[test]
    fn missing_binaries_give_the_setup_scripts_hint() {
        let empty = std::env::temp_dir().join(format!("stormdrill-nobin-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let missing = missing_in(std::slice::from_ref(&empty));
        assert_eq!(missing, BINARIES);
        std::fs::write(empty.join("ceph"), "").unwrap();
        assert!(!missing_in(std::slice::from_ref(&empty)).contains(&"ceph"));
        std::fs::remove_dir_all(&empty).unwrap();
        let m = installed_in(vec!["ceph-mon", "ceph-osd"])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("scripts/ceph-setup.sh") && m.contains("ceph-mon, ceph-osd"),
            "{m}"
        );
    }

    #[test]
    fn conf_places_each_osd_under_its_node() {
        let inner = Inner {
            dir: PathBuf::from("/tmp/x"),
            conf: PathBuf::from("/tmp/x/ceph.conf"),
            mon_addr: "[v2:127.0.0.1:1,v1:127.0.0.1:2]".into(),
            exporter_port: 3,
            started: Instant::now(),
            version: String::new(),
            halt: Arc::new(AtomicBool::new(false)),
            st: Mutex::new(State::starting()),
            wake: Condvar::new(),
        };
        let c = conf_text(
            &inner,
            &[OsdSpec {
                id: 4,
                host: "dirqual3".into(),
                class: super::super::DeviceClass::Nvme,
            }],
        );
        assert!(
            c.contains("[osd.4]\ncrush location = root=default host=dirqual3\n"),
            "{c}"
        );
        assert!(c.contains("mon host = [v2:127.0.0.1:1,v1:127.0.0.1:2]"));
    }
}
