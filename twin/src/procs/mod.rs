//! The kubelet's process runtime: containers whose image is in the runtime's table
//! run the real program as a local process instead of a simulation.
//!
//! **Table.** Each [`Program`] names an image repository (any tag, registry defaults
//! ignored, as [`crate::sim`] matches images) and says how to prepare, start, probe
//! and stop its process. The twin enables entries by option (`--postgres real`
//! enables [`postgres::Postgres`]); with an empty table the runtime does nothing.
//!
//! **A container's process.** Once the kubelet reports the container running, the
//! runtime starts its program on 127.0.0.1 (one free port per pod and container,
//! which [`crate::simnet`] dials for the container's ports), with the container's
//! environment and args from the pod spec, its volumes real directories under the
//! runtime's scratch folder (a PersistentVolume's directory per PV uid, holding
//! `lost+found` as a freshly formatted volume does; other volumes per pod), each
//! env value naming a path under a mount rewritten to the host directory. Every
//! process runs as the program's unprivileged user (databases refuse root), in a
//! process group of its own (its tree is signalled: servers put children in sessions of
//! their own); stdout/stderr become the container's log.
//!
//! **Lifecycle, following the pod.** Ready only once the program's probe passes.
//! Terminating pod: the program's stop signal, SIGKILL after the grace period (the
//! kubelet deletes the pod only when the process is gone). A new restartCount
//! (crash, reboot) kills the old process (SIGKILL) and starts a new one. Its node
//! powered off or booting: SIGSTOP to its process tree (sockets stay open and silent);
//! back: SIGCONT. A process that exits on its own is a crashed container (the
//! kubelet restarts it after its back-off). A pod that vanished: SIGKILL. A new
//! process waits until no older process of this runtime uses its directories.
//!
//! **Exec** into such a container runs the real command ([`Runtime::exec`]), as the
//! program's user, with the container's environment plus what the program adds
//! (e.g. where its socket is), bounded by [`EXEC_TIMEOUT`].
//!
//! **Cleanup.** Each process is spawned by a thread that lives until it is reaped,
//! with `PR_SET_PDEATHSIG` (SIGKILL): it dies with the twin however the twin ends.
//! [`Runtime::shutdown`] (also on drop) SIGKILLs every process tree by PID, waits for the
//! reaping and removes the scratch folder; folders of dead twins are removed at start.

pub mod postgres;

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ctx::{obj, Crashes, Ctx};
use crate::sim::{ExecOutput, ExecRequest, Sim};

/// A command run in a container by exec (the harness has its own, shorter, deadlines).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a process's thread checks it (exit, probe, grace period).
const TICK: Duration = Duration::from_millis(50);
/// How often a process's tree is listed (to end its orphans with it).
const TREE_REFRESH: Duration = Duration::from_millis(500);
/// How long shutdown waits for the reaping threads after SIGKILL.
const REAP_WAIT: Duration = Duration::from_secs(5);
const SCRATCH_PREFIX: &str = "stormdrill-procs-";

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("{what} needs {missing}: run scripts/setup.sh (installs {packages} from Debian)")]
    Missing {
        what: String,
        missing: String,
        packages: String,
    },
    #[error("there is no user {user} to run {what} as: run scripts/setup.sh (the {packages} package creates it)")]
    NoUser {
        user: String,
        what: String,
        packages: String,
    },
    #[error("cannot create or prepare {}", path.display())]
    Dir {
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
    #[error("{0}")]
    Refused(String),
}

type Result<T> = std::result::Result<T, ProcError>;

/// What the runtime knows when it starts one container's process.
#[derive(Clone, Debug)]
pub struct Launch {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    /// The container's environment, paths under mounts rewritten to host directories.
    pub env: Vec<(String, String)>,
    /// The container spec's `command` and `args`.
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// (mountPath, host directory), longest mountPath first.
    pub mounts: Vec<(String, PathBuf)>,
    /// A directory of this process only (sockets, pid files, an ephemeral data dir).
    pub run_dir: PathBuf,
    /// Where the process listens: 127.0.0.1 and this port.
    pub port: u16,
    /// The user the process runs as.
    pub user: User,
}

impl Launch {
    pub fn env_var(&self, name: &str) -> Option<&str> {
        crate::sim::env_lookup(&self.env, name)
    }

    /// The host directory of a path inside the container, when a volume holds it.
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        host_path_in(&self.mounts, container_path)
    }
}

fn host_path_in(mounts: &[(String, PathBuf)], p: &str) -> Option<PathBuf> {
    mounts.iter().find_map(|(m, host)| {
        let m = m.trim_end_matches('/');
        let rest = p.strip_prefix(m)?;
        if rest.is_empty() {
            Some(host.clone())
        } else {
            rest.strip_prefix('/').map(|r| host.join(r))
        }
    })
}

/// An unprivileged account from /etc/passwd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Looks `name` up in /etc/passwd.
    pub fn lookup(name: &str) -> Option<User> {
        let text = std::fs::read_to_string("/etc/passwd").ok()?;
        parse_passwd(&text, name)
    }

    /// Makes `dir` (and missing parents) owned by this user, mode `mode`.
    pub fn own_dir(&self, dir: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let err = |source| ProcError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid)).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(err)
    }

    /// Writes a file owned by this user, readable by it alone.
    pub fn own_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| ProcError::Dir {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(err)
    }

    /// A command run as this user (only when the twin runs as root; else as itself).
    pub fn command(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(prog);
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // std drops the supplementary groups too when it leaves root.
            c.uid(self.uid).gid(self.gid);
        }
        c
    }
}

fn parse_passwd(text: &str, name: &str) -> Option<User> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| {
            Some(User {
                name: name.to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })?
    })
}

/// One entry of the table: how a program runs behind its image.
pub trait Program: Send + Sync {
    /// The image repository it serves, e.g. `postgres` (any tag).
    fn repository(&self) -> &str;
    /// The account its processes run as.
    fn user(&self) -> &User;
    /// What ends it gracefully (the image's STOPSIGNAL).
    fn stop_signal(&self) -> i32 {
        libc::SIGTERM
    }
    /// Prepares the directories (e.g. initdb) and returns the command to run, and
    /// whether this start initialised fresh data. Blocking.
    fn prepare(&self, launch: &Launch) -> Result<(Command, bool)>;
    /// Whether the process serves (it is Ready). Blocking, short.
    fn probe(&self, launch: &Launch) -> bool {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], launch.port)),
            Duration::from_secs(1),
        )
        .is_ok()
    }
    /// Runs once the first probe passed (e.g. the image's init scripts on fresh
    /// data). Blocking. An error kills the process (a crashed container).
    fn after_ready(&self, _launch: &Launch, _fresh: bool) -> Result<()> {
        Ok(())
    }
    /// Variables exec adds to the container's environment (sockets, ports, PATH).
    fn exec_env(&self, _launch: &Launch) -> Vec<(String, String)> {
        Vec::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Preparing,
    Running,
    Exited,
}

struct Proc {
    namespace: String,
    pod: String,
    container: String,
    /// The container's restartCount it was started for.
    generation: i64,
    launch: Arc<Launch>,
    program: Arc<dyn Program>,
    /// Set while the process is spawned and not reaped (signals go by it).
    pid: Option<u32>,
    /// The process tree last seen (a leader that dies leaves them to init).
    members: Vec<Member>,
    phase: Phase,
    ready: bool,
    frozen: bool,
    /// We asked it to end: (signal, when, grace before SIGKILL). Its exit is no crash.
    ending: Option<(i32, Instant, Duration)>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn alive(&self) -> bool {
        self.phase != Phase::Exited
    }

    /// Signals the process group (only while unreaped: the PID cannot be reused).
    /// Signals the process and every descendant (servers such as PostgreSQL put
    /// each child in a session of its own, so the process group is not enough).
    fn signal(&mut self, sig: i32) {
        if let Some(pid) = self.pid {
            // Children first: a stopped parent must not see them vanish mid-freeze.
            let tree = tree(pid);
            signal_members(tree.iter().filter(|m| m.pid != pid), sig);
            // SAFETY: kill(2) has no memory effects; the leader is our unreaped child
            // (reaping happens under the same lock), so the id is still ours.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
            self.members = tree;
        }
    }

    fn end(&mut self, sig: i32, grace: Duration) {
        let stronger = self
            .ending
            .is_none_or(|(s, _, _)| s != libc::SIGKILL && sig == libc::SIGKILL);
        if stronger {
            self.ending = Some((sig, Instant::now(), grace));
            self.signal(sig);
            if sig != libc::SIGKILL {
                // A stopped process only sees its stop signal once continued.
                self.signal(libc::SIGCONT);
                self.frozen = false;
            }
        }
    }
}

/// (pod uid, container name)
type Key = (String, String);

#[derive(Default)]
struct State {
    procs: HashMap<Key, Proc>,
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    crashes: Arc<Crashes>,
    sim: Weak<Sim>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, ns: &str, pod: &str, container: &str, line: &str) {
        if let Some(sim) = self.sim.upgrade() {
            sim.log(ns, pod, container, line);
        }
    }
}

/// The process runtime of the twin's kubelets (see the module docs).
pub struct Runtime {
    table: Vec<Arc<dyn Program>>,
    scratch: PathBuf,
    shared: Arc<Shared>,
}

impl Runtime {
    /// A runtime for `table`, its folders under `scratch_parent` (the system's temp
    /// dir by default). Creates nothing while the table is empty.
    pub fn new(
        table: Vec<Arc<dyn Program>>,
        scratch_parent: Option<&Path>,
        crashes: Arc<Crashes>,
        sim: Weak<Sim>,
    ) -> Result<Runtime> {
        let parent = scratch_parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let scratch = if table.is_empty() {
            PathBuf::new()
        } else {
            clean_stale_scratch(&parent, SCRATCH_PREFIX);
            let d = scratch_dir(&parent, SCRATCH_PREFIX)?;
            // Programs' users must reach their directories below it.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).map_err(
                |source| ProcError::Dir {
                    path: d.clone(),
                    source,
                },
            )?;
            d
        };
        Ok(Runtime {
            table,
            scratch,
            shared: Arc::new(Shared {
                state: Mutex::default(),
                crashes,
                sim,
            }),
        })
    }

    /// A runtime with no programs (every pod simulated).
    pub fn empty(crashes: Arc<Crashes>) -> Runtime {
        Runtime {
            table: Vec::new(),
            scratch: PathBuf::new(),
            shared: Arc::new(Shared {
                state: Mutex::default(),
                crashes,
                sim: Weak::new(),
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The runtime's scratch folder (volumes/, pods/).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// The program for an image, when the table has one.
    pub fn program_for(&self, image: &str) -> Option<Arc<dyn Program>> {
        self.table
            .iter()
            .find(|p| image_repository(image) == p.repository())
            .cloned()
    }

    /// The host directory of a PersistentVolume (created, with `lost+found`, on first use).
    pub fn volume_dir(&self, pv: &str, pv_uid: &str) -> Result<PathBuf> {
        let d = self
            .scratch
            .join("volumes")
            .join(format!("{pv}-{}", short(pv_uid)));
        if !d.exists() {
            let lf = d.join("lost+found");
            std::fs::create_dir_all(&lf).map_err(|source| ProcError::Dir {
                path: lf.clone(),
                source,
            })?;
        }
        Ok(d)
    }

    /// PIDs of live processes: (namespace/pod/container, pid).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.shared
            .lock()
            .procs
            .values()
            .filter_map(|p| {
                p.pid
                    .map(|pid| (format!("{}/{}/{}", p.namespace, p.pod, p.container), pid))
            })
            .collect()
    }

    /// The PID of a pod's container process, while it runs.
    pub fn pid(&self, namespace: &str, pod: &str, container: &str) -> Option<u32> {
        self.shared
            .lock()
            .procs
            .values()
            .find(|p| {
                p.namespace == namespace && p.pod == pod && p.container == container && p.alive()
            })
            .and_then(|p| p.pid)
    }

    /// Whether a process of the pod has not yet been reaped (the kubelet waits for it).
    pub fn alive(&self, pod_uid: &str) -> bool {
        self.shared
            .lock()
            .procs
            .iter()
            .any(|((u, _), p)| u == pod_uid && p.alive())
    }

    /// Whether the pod's processes serve (None: the runtime runs none of its containers).
    pub fn ready(&self, pod: &Value) -> Option<bool> {
        let uid = obj::uid(pod);
        let st = self.shared.lock();
        let mine: Vec<&Proc> = managed(self, pod)
            .filter_map(|(c, _)| st.procs.get(&(uid.to_string(), c)))
            .collect();
        let wanted = managed(self, pod).count();
        if wanted == 0 {
            return None;
        }
        Some(mine.len() == wanted && mine.iter().all(|p| p.ready && !p.frozen && p.alive()))
    }

    /// Where the process serving `port` of the pod listens, when one runs.
    pub fn addr(&self, pod: &Value, port: u16) -> Option<std::net::SocketAddr> {
        let uid = obj::uid(pod);
        let st = self.shared.lock();
        managed(self, pod).find_map(|(c, spec)| {
            let serves = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["containerPort"].as_u64() == Some(u64::from(port)));
            let p = st.procs.get(&(uid.to_string(), c))?;
            (serves && p.phase == Phase::Running)
                .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], p.launch.port)))
        })
    }

    /// Runs `req` for real when the runtime owns the container; None otherwise.
    /// Blocking (up to [`EXEC_TIMEOUT`]).
    pub fn exec(&self, req: &ExecRequest) -> Option<ExecOutput> {
        self.program_for(&req.image)?;
        let found = {
            let st = self.shared.lock();
            st.procs
                .get(&(req.pod_uid.clone(), req.container.clone()))
                .filter(|p| p.alive())
                .map(|p| (p.launch.clone(), p.program.clone()))
        };
        let Some((launch, program)) = found else {
            return Some(ExecOutput::fail(
                1,
                format!(
                    "error: unable to upgrade connection: container not found (\"{}\")\n",
                    req.container
                ),
            ));
        };
        let Some(prog) = req.command.first() else {
            return Some(ExecOutput::fail(
                1,
                "error: you must specify at least one command for the container\n",
            ));
        };
        let mut env: Vec<(String, String)> = req
            .env
            .iter()
            .map(|(k, v)| (k.clone(), rewrite_path(&launch.mounts, v)))
            .collect();
        env.extend(program.exec_env(&launch));
        let mut c = program.user().command(prog);
        c.args(&req.command[1..])
            .env_clear()
            .envs(env)
            .current_dir(&launch.run_dir);
        Some(match run(c, req.stdin.as_deref(), EXEC_TIMEOUT) {
            Ok(o) => ExecOutput {
                stdout: o.stdout,
                stderr: o.stderr,
                exit_code: o.code,
            },
            Err(ProcError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ExecOutput::fail(
                    127,
                    format!("exec: \"{prog}\": executable file not found in $PATH\n"),
                )
            }
            Err(e) => ExecOutput::fail(126, format!("{}\n", error_chain(&e))),
        })
    }

    /// Converges the processes to the pods (the kubelet's pass; see the module docs).
    pub fn reconcile(&self, ctx: &Ctx) {
        if self.table.is_empty() || self.shared.lock().stopped {
            return;
        }
        let pods = ctx.client.list("", "pods", None, None);
        let mut seen: std::collections::HashSet<Key> = std::collections::HashSet::new();
        for pod in &pods {
            let uid = obj::uid(pod).to_string();
            for (container, spec) in managed(self, pod).collect::<Vec<_>>() {
                let key = (uid.clone(), container.clone());
                seen.insert(key.clone());
                self.converge(ctx, pod, &key, &spec);
            }
        }
        let mut st = self.shared.lock();
        // Pods gone however they went (force deletion too): their processes end now.
        for (key, p) in st.procs.iter_mut() {
            if !seen.contains(key) && p.alive() {
                p.end(libc::SIGKILL, Duration::ZERO);
            }
        }
        check_grace(&mut st);
        // An exited process of a live pod stays known: its generation says whether
        // the kubelet restarted the container since.
        st.procs.retain(|k, p| p.alive() || seen.contains(k));
        for p in st.procs.values_mut().filter(|p| !p.alive()) {
            // Its thread has returned or is returning: detach it.
            p.thread = None;
        }
    }

    fn converge(&self, ctx: &Ctx, pod: &Value, key: &Key, spec: &Value) {
        let node = obj::str_at(pod, "/spec/nodeName").unwrap_or("");
        let node_up = !node.is_empty() && ctx.kubelet_running(node);
        let status = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["name"] == key.1.as_str()));
        let generation = status.and_then(|s| s["restartCount"].as_i64()).unwrap_or(0);
        let running = status.is_some_and(|s| s.pointer("/state/running").is_some());
        let grace = Duration::from_secs(
            pod.pointer("/metadata/deletionGracePeriodSeconds")
                .or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds"))
                .and_then(Value::as_u64)
                .unwrap_or(30),
        );
        let mut st = self.shared.lock();
        if let Some(p) = st.procs.get_mut(key) {
            if p.alive() {
                if !node_up {
                    // Power lost: frozen, not killed; clients see silence, not resets.
                    // Nothing else happens to it until the node is back (no kubelet).
                    if !p.frozen && p.ending.is_none() {
                        p.signal(libc::SIGSTOP);
                        p.frozen = true;
                        ctx.truth.record("process", &proc_name(p), "Frozen");
                    }
                    return;
                }
                if p.frozen {
                    p.signal(libc::SIGCONT);
                    p.frozen = false;
                    ctx.truth.record("process", &proc_name(p), "Resumed");
                }
                if obj::is_terminating(pod) {
                    p.end(p.program.stop_signal(), grace);
                } else if p.generation < generation {
                    // The container restarted (crash, reboot): its process is gone.
                    p.end(libc::SIGKILL, Duration::ZERO);
                }
                return;
            }
            if p.generation >= generation && !obj::is_terminating(pod) {
                // Exited in this generation: the kubelet's restart brings the next one.
                return;
            }
        }
        if !running || !node_up || obj::is_terminating(pod) {
            return;
        }
        let Some(program) = self.program_for(spec["image"].as_str().unwrap_or("")) else {
            return;
        };
        let launch = match self.launch(ctx, pod, &key.1, spec, program.user(), generation) {
            Ok(l) => l,
            Err(e) => {
                drop(st);
                self.shared.log(
                    obj::namespace(pod),
                    obj::name(pod),
                    &key.1,
                    &format!(
                        "twin: cannot run the container's process: {}",
                        error_chain(&e)
                    ),
                );
                return;
            }
        };
        // The previous pod of a StatefulSet may still be shutting down on this volume.
        let busy = st.procs.iter().any(|(k, p)| {
            k != key
                && p.alive()
                && p.launch
                    .mounts
                    .iter()
                    .any(|(_, d)| launch.mounts.iter().any(|(_, e)| e == d))
        });
        if busy {
            return;
        }
        let launch = Arc::new(launch);
        let mut proc = Proc {
            namespace: obj::namespace(pod).to_string(),
            pod: obj::name(pod).to_string(),
            container: key.1.clone(),
            generation,
            launch: launch.clone(),
            program: program.clone(),
            pid: None,
            members: Vec::new(),
            phase: Phase::Preparing,
            ready: false,
            frozen: false,
            ending: None,
            started: Instant::now(),
            thread: None,
        };
        ctx.truth.record("process", &proc_name(&proc), "Starting");
        let shared = self.shared.clone();
        let k = key.clone();
        let t = std::thread::Builder::new()
            .name(format!("proc-{}", key.1))
            .spawn(move || supervise(shared, k, program, launch));
        match t {
            Ok(t) => {
                proc.thread = Some(t);
                st.procs.insert(key.clone(), proc);
            }
            Err(e) => tracing::error!("cannot start a process thread: {e}"),
        }
    }

    fn launch(
        &self,
        ctx: &Ctx,
        pod: &Value,
        container: &str,
        spec: &Value,
        user: &User,
        generation: i64,
    ) -> Result<Launch> {
        let uid = obj::uid(pod);
        let pod_dir = self.scratch.join("pods").join(short(uid));
        let mut mounts = Vec::new();
        for m in spec["volumeMounts"].as_array().into_iter().flatten() {
            let (Some(name), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
                continue;
            };
            let dir = match crate::voldata::pod_volume_pv(ctx, pod, name) {
                Some(pv) => {
                    let pv_uid = ctx
                        .client
                        .get("", "persistentvolumes", None, &pv)
                        .map(|o| obj::uid(&o).to_string())
                        .unwrap_or_default();
                    self.volume_dir(&pv, &pv_uid)?
                }
                None => {
                    let d = pod_dir.join("volumes").join(name);
                    std::fs::create_dir_all(&d).map_err(|source| ProcError::Dir {
                        path: d.clone(),
                        source,
                    })?;
                    d
                }
            };
            let sub = m["subPath"].as_str().unwrap_or("");
            mounts.push((
                path.to_string(),
                if sub.is_empty() { dir } else { dir.join(sub) },
            ));
        }
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        // Short: a Unix socket's path must stay under 108 bytes.
        let run_dir = pod_dir.join(format!("r{generation}"));
        user.own_dir(&run_dir, 0o700)?;
        let req = crate::exec::exec_request(ctx, pod, container, Vec::new());
        let env = req
            .env
            .into_iter()
            .map(|(k, v)| {
                let v = rewrite_path(&mounts, &v);
                (k, v)
            })
            .collect();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        };
        Ok(Launch {
            namespace: obj::namespace(pod).to_string(),
            pod: obj::name(pod).to_string(),
            container: container.to_string(),
            image: spec["image"].as_str().unwrap_or("").to_string(),
            env,
            command: strings(&spec["command"]),
            args: strings(&spec["args"]),
            mounts,
            run_dir,
            port: free_port()?,
            user: user.clone(),
        })
    }

    /// SIGKILLs every process, waits (bounded) for their reaping, removes the
    /// scratch folder. Idempotent.
    pub fn shutdown(&self) {
        let threads: Vec<std::thread::JoinHandle<()>> = {
            let mut st = self.shared.lock();
            st.stopped = true;
            for p in st.procs.values_mut() {
                if p.alive() {
                    p.end(libc::SIGKILL, Duration::ZERO);
                }
            }
            st.procs
                .values_mut()
                .filter_map(|p| p.thread.take())
                .collect()
        };
        let members: Vec<Member> = self
            .shared
            .lock()
            .procs
            .values()
            .flat_map(|p| p.members.clone())
            .collect();
        let deadline = Instant::now() + REAP_WAIT;
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        // Orphans are reaped by init: wait (bounded) until none is left.
        signal_members(members.iter(), libc::SIGKILL);
        while members.iter().any(Member::exists) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !self.scratch.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn proc_name(p: &Proc) -> String {
    format!("{}/{}/{}", p.namespace, p.pod, p.container)
}

/// SIGKILL to processes whose stop signal's grace period ran out.
fn check_grace(st: &mut State) {
    for p in st.procs.values_mut() {
        if let Some((sig, at, grace)) = p.ending {
            if sig != libc::SIGKILL && p.alive() && at.elapsed() >= grace {
                p.end(libc::SIGKILL, Duration::ZERO);
            }
        }
    }
}

/// The containers of `pod` the runtime runs: (name, spec).
fn managed<'a>(rt: &'a Runtime, pod: &'a Value) -> impl Iterator<Item = (String, Value)> + 'a {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| rt.program_for(c["image"].as_str().unwrap_or("")).is_some())
        .map(|c| (c["name"].as_str().unwrap_or("").to_string(), c.clone()))
}

/// A value naming a path under a mount, as the host sees it; other values unchanged.
fn rewrite_path(mounts: &[(String, PathBuf)], v: &str) -> String {
    if !v.starts_with('/') {
        return v.to_string();
    }
    host_path_in(mounts, v).map_or_else(|| v.to_string(), |p| p.display().to_string())
}

/// The thread that owns one process: prepares, spawns, forwards its output to the
/// container log, probes it, reaps it, and reports a crash.
fn supervise(shared: Arc<Shared>, key: Key, program: Arc<dyn Program>, launch: Arc<Launch>) {
    let (ns, pod, container) = (
        launch.namespace.clone(),
        launch.pod.clone(),
        launch.container.clone(),
    );
    let log = |line: &str| shared.log(&ns, &pod, &container, line);
    let fail = |e: &ProcError| {
        log(&format!("twin: {}", error_chain(e)));
        let mut st = shared.lock();
        let expected = st.stopped;
        if let Some(p) = st.procs.get_mut(&key) {
            let expected = expected || p.ending.is_some();
            p.phase = Phase::Exited;
            p.pid = None;
            if !expected {
                shared.crashes.request(&ns, &pod);
            }
        }
    };
    let t0 = Instant::now();
    let (mut cmd, fresh) = match program.prepare(&launch) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut cmd);
    let mut child = {
        let mut st = shared.lock();
        let cancelled = st.stopped || st.procs.get(&key).is_none_or(|p| p.ending.is_some());
        if cancelled {
            if let Some(p) = st.procs.get_mut(&key) {
                p.phase = Phase::Exited;
            }
            return;
        }
        match cmd.spawn() {
            Ok(c) => {
                if let Some(p) = st.procs.get_mut(&key) {
                    p.pid = Some(c.id());
                    p.phase = Phase::Running;
                }
                c
            }
            Err(source) => {
                drop(st);
                return fail(&ProcError::Spawn {
                    command: describe(&cmd),
                    source,
                });
            }
        }
    };
    tracing::info!(target: "stormdrill_twin::procs", "{ns}/{pod}/{container}: pid {} started ({:.2} s to prepare)", child.id(), t0.elapsed().as_secs_f64());
    let mut forwarders = Vec::new();
    for r in [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let sh = shared.clone();
        let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
        forwarders.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                sh.log(&ns, &pod, &container, &line);
            }
        }));
    }
    let mut ready = false;
    let mut refreshed = Instant::now();
    loop {
        {
            let mut st = shared.lock();
            let stopped = st.stopped;
            if let Ok(Some(status)) = child.try_wait() {
                // As when a container's PID 1 ends: the rest of it dies too.
                if let Some(p) = st.procs.get(&key) {
                    signal_members(p.members.iter(), libc::SIGKILL);
                }
                let p = st.procs.get_mut(&key);
                let expected = stopped || p.as_ref().is_some_and(|p| p.ending.is_some());
                if let Some(p) = p {
                    p.phase = Phase::Exited;
                    p.pid = None;
                    p.ready = false;
                }
                drop(st);
                if !expected {
                    log(&format!("twin: the process exited on its own ({status})"));
                    shared.crashes.request(&ns, &pod);
                }
                break;
            }
            check_grace(&mut st);
            if refreshed.elapsed() >= TREE_REFRESH {
                refreshed = Instant::now();
                if let Some(p) = st.procs.get_mut(&key) {
                    p.members = tree(child.id());
                }
            }
            let frozen = st
                .procs
                .get(&key)
                .is_some_and(|p| p.frozen || p.ending.is_some());
            if ready || frozen {
                drop(st);
                std::thread::sleep(TICK);
                continue;
            }
        }
        if program.probe(&launch) {
            let res = program.after_ready(&launch, fresh);
            let mut st = shared.lock();
            if let Some(p) = st.procs.get_mut(&key) {
                match res {
                    Ok(()) => {
                        ready = true;
                        p.ready = true;
                        tracing::info!(target: "stormdrill_twin::procs", "{ns}/{pod}/{container}: ready {:.2} s after the start", p.started.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        // Killed without `ending`: the reaping above reports the crash.
                        p.signal(libc::SIGKILL);
                        drop(st);
                        log(&format!("twin: {}", error_chain(&e)));
                    }
                }
            }
        } else {
            std::thread::sleep(TICK);
        }
    }
    // Backends that outlived their parent hold the pipes: do not wait for them.
    drop(forwarders);
}

/// An image's repository: no tag or digest, no `docker.io/library/` default.
pub(crate) fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let image = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    let image = image.strip_prefix("library/").unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

fn short(uid: &str) -> &str {
    &uid[..uid.len().min(8)]
}

// ----- process trees ------------------------------------------------------------------

/// A process, told apart from a later one reusing its PID by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    pid: u32,
    start: u64,
}

impl Member {
    fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|(_, start, state)| start == self.start && state != 'Z')
    }
}

/// (ppid, start time, state) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let f: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
        f.first()?.chars().next()?,
    ))
}

/// `root` and its descendants, as /proc lists them now.
fn tree(root: u32) -> Vec<Member> {
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(ppid, start, _)| (pid, ppid, start)))
        .collect();
    let mut out: Vec<Member> = all
        .iter()
        .filter(|(p, _, _)| *p == root)
        .map(|(pid, _, start)| Member {
            pid: *pid,
            start: *start,
        })
        .collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(
            all.iter()
                .filter(|(_, pp, _)| *pp == parent)
                .map(|(pid, _, start)| Member {
                    pid: *pid,
                    start: *start,
                }),
        );
        i += 1;
    }
    out
}

/// Signals the members still alive as recorded (a reused PID is left alone).
fn signal_members<'a>(members: impl Iterator<Item = &'a Member>, sig: i32) {
    for m in members {
        if m.exists() {
            // SAFETY: kill(2) has no memory effects; the start time matched just now.
            unsafe {
                libc::kill(m.pid as libc::pid_t, sig);
            }
        }
    }
}

// ----- commands and processes (shared with `--ceph real`) ----------------------------

/// What a finished command printed and its exit code (128 + signal when killed).
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
}

pub(crate) fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().to_string();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Runs a command to completion with a deadline, feeding `stdin`; its group is
/// killed when late. Dies with the calling thread.
pub(crate) fn run(mut c: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    die_with_parent(&mut c);
    let mut child = c.spawn().map_err(|source| ProcError::Spawn {
        command: describe(&c),
        source,
    })?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A writer thread: a large input must not deadlock against a full stdout pipe.
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    finish(child, timeout, &|| false).map_err(|e| match e {
        Finish::Late => ProcError::Timeout {
            command: describe(&c),
            timeout,
        },
    })
}

/// Why [`finish`] gave up.
pub(crate) enum Finish {
    /// Past the deadline, or cancelled: the child was killed.
    Late,
}

/// Collects a spawned child's output until it exits, `timeout` passes or `cancel`
/// says so (then it is SIGKILLed with its group and reaped).
pub(crate) fn finish(
    mut child: Child,
    timeout: Duration,
    cancel: &dyn Fn() -> bool,
) -> std::result::Result<Output, Finish> {
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline && !cancel() => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                // SAFETY: the child is not reaped yet; a group of its own only when the
                // caller made one (else this fails harmlessly with ESRCH/EPERM).
                unsafe {
                    libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(Finish::Late);
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(Output {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    })
}

/// SIGKILL the child when the thread that spawned it dies (with the twin's process,
/// however it ends). Only for threads that outlive their children. Set after the
/// child's setuid (std runs this hook last), which would otherwise clear it.
pub(crate) fn die_with_parent(c: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A free port on 127.0.0.1 (freed just before the program binds it).
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(ProcError::Port)?;
    l.local_addr().map(|a| a.port()).map_err(ProcError::Port)
}

/// `<prefix><pid>-<n>` under `parent`: short (Unix socket paths are limited).
pub(crate) fn scratch_dir(parent: &Path, prefix: &str) -> Result<PathBuf> {
    for n in 0..1000 {
        let d = parent.join(format!("{prefix}{}-{n}", std::process::id()));
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(ProcError::Dir { path: d, source }),
        }
    }
    Err(ProcError::Dir {
        path: parent.to_path_buf(),
        source: std::io::Error::other("no free scratch folder name"),
    })
}

/// Removes scratch folders left by twins whose process is gone (killed with SIGKILL:
/// their processes died with them, by PR_SET_PDEATHSIG, but the files stayed).
pub(crate) fn clean_stale_scratch(parent: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_ids() {
        let text = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            parse_passwd(text, "postgres"),
            Some(User {
                name: "postgres".into(),
                uid: 101,
                gid: 104
            })
        );
        assert_eq!(parse_passwd(text, "nobody"), None);
    }

    #[test]
    fn paths_under_mounts_are_rewritten_longest_first() {
        let mounts = vec![
            (
                "/var/lib/postgresql/data".to_string(),
                PathBuf::from("/s/v1"),
            ),
            ("/var".to_string(), PathBuf::from("/s/v2")),
        ];
        assert_eq!(
            rewrite_path(&mounts, "/var/lib/postgresql/data/pgdata"),
            "/s/v1/pgdata"
        );
        assert_eq!(rewrite_path(&mounts, "/var/lib/postgresql/data"), "/s/v1");
        assert_eq!(rewrite_path(&mounts, "/var/x"), "/s/v2/x");
        // Not on a path boundary, or relative: unchanged.
        assert_eq!(rewrite_path(&mounts, "/variable"), "/variable");
        assert_eq!(rewrite_path(&mounts, "openalex"), "openalex");
    }

    #[test]
    fn image_repositories_ignore_tags_and_registry_defaults() {
        assert_eq!(image_repository("postgres:16.4"), "postgres");
        assert_eq!(
            image_repository("docker.io/library/postgres:15"),
            "postgres"
        );
        assert_eq!(
            image_repository("quay.io/prometheuscommunity/postgres-exporter:v0.15.0"),
            "quay.io/prometheuscommunity/postgres-exporter"
        );
        assert_eq!(
            image_repository("localhost:5000/postgres"),
            "localhost:5000/postgres"
        );
    }

    #[test]
    fn a_late_command_is_killed_and_reported() {
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 30"]);
        let t = Instant::now();
        let r = run(c, None, Duration::from_millis(200));
        assert!(matches!(r, Err(ProcError::Timeout { .. })));
        assert!(t.elapsed() < Duration::from_secs(5));
        let mut c = Command::new("sh");
        c.args(["-c", "cat; echo err >&2; exit 3"]);
        let o = run(c, Some(b"in"), Duration::from_secs(10)).expect("runs");
        assert_eq!(
            (o.stdout.as_slice(), o.stderr.as_slice(), o.code),
            (&b"in"[..], &b"err\n"[..], 3)
        );
    }
}
