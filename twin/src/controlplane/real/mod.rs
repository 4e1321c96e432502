//! A real Kubernetes control plane as supervised child processes on 127.0.0.1:
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from the
//! official Go modules by `scripts/k8s-setup.sh`.
//!
//! Contract: [`RealControlPlane::start`] blocks until every component answers its
//! health endpoint (etcd `/health`, the apiserver `/readyz`, the others `/healthz`),
//! started in that order, or fails naming the component and the tail of its log.
//! The processes belong to one supervisor thread: they get `PR_SET_PDEATHSIG`
//! (SIGKILL when that thread — so the twin's process — dies, however it dies) and
//! are stopped by PID (SIGTERM, then SIGKILL after a grace) by
//! [`RealControlPlane::shutdown`] or on drop. Logs are kept in the scratch folder
//! until then; [`RealControlPlane::copy_logs`] saves them (a failed run's report).
//!
//! Flags follow kwokctl's binary runtime, envtest's control plane and
//! hack/local-up-cluster.sh; the timing profile sets the node-lifecycle flags
//! (`--node-monitor-grace-period`, `--node-monitor-period`, the default not-ready and
//! unreachable toleration seconds) so that `fast` stays fast.

pub mod egress;
pub mod network;
pub mod pki;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::rbac::StaticToken;
use crate::timing::Timing;

/// The release `scripts/k8s-setup.sh` builds (its defaults; a test keeps them equal).
pub const K8S_VERSION: &str = "v1.37.2";
pub const ETCD_VERSION: &str = "v3.6.16";
/// The Service ClusterIP range (kubeadm's default; CoreDNS's 10.96.0.10 is in it).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

#[derive(Debug, thiserror::Error)]
pub enum RealControlPlaneError {
    #[error(
        "the real control plane's binaries are not built ({missing} missing in {dir}): run scripts/k8s-setup.sh (or set STORMDRILL_K8S_BIN)"
    )]
    NotBuilt { dir: PathBuf, missing: String },
    #[error("cannot use the scratch path {path}: {source}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the control plane's certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("cannot start {component}: {source}")]
    Spawn {
        component: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{component} exited before it was ready; the end of its log ({log}):\n{tail}")]
    Exited {
        component: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{component} was not ready after {waited:?}; the end of its log ({log}):\n{tail}")]
    NotReady {
        component: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("no free port on 127.0.0.1: {0}")]
    Port(#[source] std::io::Error),
    #[error("the control plane's supervisor thread ended before it was ready")]
    Gone,
}

type Result<T> = std::result::Result<T, RealControlPlaneError>;

/// How to start the real control plane.
#[derive(Clone, Debug)]
pub struct RealControlPlaneOptions {
    /// Where the binaries are [default: `$STORMDRILL_K8S_BIN`, else setup's cache].
    pub bin_dir: Option<PathBuf>,
    /// Where the scratch folder goes [default: the system's temp dir].
    pub scratch_parent: Option<PathBuf>,
    /// Sets the node-lifecycle flags.
    pub timing: Timing,
    /// Authenticates as `system:masters` (the kubeconfig's and the twin's token).
    pub admin_token: String,
    /// Further static tokens (RBAC users).
    pub users: Vec<StaticToken>,
}

/// The folder `scripts/k8s-setup.sh` builds into by default.
pub fn default_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STORMDRILL_K8S_BIN") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("STORMDRILL_K8S_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/stormdrill/k8s")
        });
    cache.join(format!("{K8S_VERSION}-etcd-{ETCD_VERSION}/bin"))
}

const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];

/// For tests that need the real control plane: its binaries' folder; None (after
/// printing `SKIPPED: why`) where they are not built; a panic where they must be
/// (`CI=true` or `STORMDRILL_REQUIRE_K8S=1`), so CI never passes such a test silently.
pub fn binaries_for_test() -> Option<PathBuf> {
    match find_binaries(None) {
        Ok(dir) => Some(dir),
        Err(e) => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("STORMDRILL_REQUIRE_K8S").is_ok_and(|v| v == "1");
            assert!(!required, "the real control plane is required here: {e}");
            println!("SKIPPED: {e}");
            None
        }
    }
}

/// The folder holding every binary, or what is missing.
pub fn find_binaries(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_bin_dir);
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(RealControlPlaneError::NotBuilt {
            dir,
            missing: missing.join(", "),
        })
    }
}

/// A free port on 127.0.0.1 (released at once; the component binds it right after).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(RealControlPlaneError::Port)?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(RealControlPlaneError::Port)
}

/// One component's command line.
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Health URL and whether it is HTTPS with our CA (else plain or self-signed).
    pub health: String,
}

/// Ports of the components.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// Go duration text (`1500ms`).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Every component's command line, in start order (a pure function: tested alone).
pub fn specs(
    bin: &Path,
    dir: &Path,
    p: &pki::Pki,
    ports: Ports,
    timing: &Timing,
) -> Vec<ComponentSpec> {
    let s = |x: &Path| x.display().to_string();
    let etcd_client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let etcd_peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let apiserver = format!("https://127.0.0.1:{}", ports.apiserver);
    // The node lifecycle controller checks leases every period; a grace of 1 s (fast)
    // needs a period well under it.
    let monitor_period = (timing.node_monitor_grace / 4).max(Duration::from_millis(200));
    vec![
        ComponentSpec {
            name: "etcd",
            program: bin.join("etcd"),
            args: vec![
                "--name=stormdrill".into(),
                format!("--data-dir={}", s(&dir.join("etcd"))),
                format!("--listen-client-urls={etcd_client}"),
                format!("--advertise-client-urls={etcd_client}"),
                format!("--listen-peer-urls={etcd_peer}"),
                format!("--initial-advertise-peer-urls={etcd_peer}"),
                format!("--initial-cluster=stormdrill={etcd_peer}"),
                // A scratch cluster: durability across machine crashes buys nothing.
                "--unsafe-no-fsync=true".into(),
                "--quota-backend-bytes=8589934592".into(),
                "--log-level=warn".into(),
            ],
            health: format!("{etcd_client}/health"),
        },
        ComponentSpec {
            name: "kube-apiserver",
            program: bin.join("kube-apiserver"),
            args: vec![
                format!("--etcd-servers={etcd_client}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.apiserver),
                format!("--tls-cert-file={}", s(&p.apiserver_crt)),
                format!("--tls-private-key-file={}", s(&p.apiserver_key)),
                format!("--client-ca-file={}", s(&p.ca_crt)),
                format!("--token-auth-file={}", s(&p.tokens)),
                format!("--service-account-key-file={}", s(&p.sa_pub)),
                format!("--service-account-signing-key-file={}", s(&p.sa_key)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--authorization-mode=Node,RBAC".into(),
                "--allow-privileged=true".into(),
                // The apiserver reaches the twin's kubelets (exec, logs, port-forward) at
                // their InternalIP with this client certificate.
                format!("--kubelet-client-certificate={}", s(&p.admin_crt)),
                format!("--kubelet-client-key={}", s(&p.admin_key)),
                // Nodes, pods and services are reached through the twin's proxy
                // (egress.rs), never dialled: nothing listens at their addresses here.
                format!(
                    "--egress-selector-config-file={}",
                    s(&dir.join("egress.yaml"))
                ),
                // Its only job is the `kubernetes` Service's endpoints, which must not
                // be a loopback address (envtest turns it off too).
                "--endpoint-reconciler-type=none".into(),
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!(
                    "--default-not-ready-toleration-seconds={}",
                    secs(timing.default_toleration)
                ),
                format!(
                    "--default-unreachable-toleration-seconds={}",
                    secs(timing.default_toleration)
                ),
                // One watch cache per resource is plenty for a test cluster.
                "--profiling=false".into(),
                "--v=1".into(),
            ],
            health: format!("{apiserver}/readyz"),
        },
        ComponentSpec {
            name: "kube-controller-manager",
            program: bin.join("kube-controller-manager"),
            args: vec![
                format!("--kubeconfig={}", s(&dir.join("admin.kubeconfig"))),
                format!(
                    "--authentication-kubeconfig={}",
                    s(&dir.join("admin.kubeconfig"))
                ),
                format!(
                    "--authorization-kubeconfig={}",
                    s(&dir.join("admin.kubeconfig"))
                ),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.controller_manager),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", s(&p.sa_key)),
                format!("--root-ca-file={}", s(&p.ca_crt)),
                format!("--cluster-signing-cert-file={}", s(&p.ca_crt)),
                format!("--cluster-signing-key-file={}", s(&p.ca_key)),
                format!(
                    "--node-monitor-grace-period={}",
                    go_duration(timing.node_monitor_grace)
                ),
                format!("--node-monitor-period={}", go_duration(monitor_period)),
                // A node's first heartbeat comes within its boot time.
                format!(
                    "--node-startup-grace-period={}",
                    go_duration(timing.node_monitor_grace + timing.node_boot)
                ),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
            health: format!("https://127.0.0.1:{}/healthz", ports.controller_manager),
        },
        ComponentSpec {
            name: "kube-scheduler",
            program: bin.join("kube-scheduler"),
            args: vec![
                format!("--kubeconfig={}", s(&dir.join("admin.kubeconfig"))),
                format!(
                    "--authentication-kubeconfig={}",
                    s(&dir.join("admin.kubeconfig"))
                ),
                format!(
                    "--authorization-kubeconfig={}",
                    s(&dir.join("admin.kubeconfig"))
                ),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.scheduler),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
            health: format!("https://127.0.0.1:{}/healthz", ports.scheduler),
        },
    ]
}

/// A running component.
#[derive(Clone, Debug)]
pub struct Running {
    pub name: String,
    pub pid: u32,
}

/// The real control plane. Dropping it stops the processes.
pub struct RealControlPlane {
    url: String,
    ca_pem: String,
    scratch: PathBuf,
    logs: PathBuf,
    egress: PathBuf,
    procs: Vec<Running>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Components that exited while the control plane was meant to run.
    died: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for RealControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealControlPlane")
            .field("url", &self.url)
            .field("procs", &self.procs)
            .finish()
    }
}

fn http_agent(ca_pem: Option<&str>) -> ureq::Agent {
    crate::client::remote::agent(ca_pem, Some(Duration::from_secs(3)))
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SIGKILL the child when the thread that spawned it dies (see `spawn`'s caller).
fn die_with_parent(c: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn stop_children(kids: &mut [(String, Child)]) {
    // Reverse start order: the scheduler and controller manager before the apiserver,
    // etcd last.
    for (_, child) in kids.iter_mut().rev() {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (_, child) in kids.iter_mut().rev() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl RealControlPlane {
    /// Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler and
    /// waits until each is healthy. Blocks (seconds): call it off async workers.
    pub fn start(opts: RealControlPlaneOptions) -> Result<RealControlPlane> {
        // Ports are found free and released before the components bind them, so
        // another process can take one in between: seen with two control planes
        // starting at once (kube-controller-manager: "address already in use").
        // Such a start is retried with new ports.
        const ATTEMPTS: usize = 3;
        for _ in 1..ATTEMPTS {
            match Self::start_once(&opts) {
                Err(RealControlPlaneError::Exited { tail, .. })
                    if tail.contains("address already in use") => {}
                started => return started,
            }
        }
        Self::start_once(&opts)
    }

    fn start_once(opts: &RealControlPlaneOptions) -> Result<RealControlPlane> {
        let bin = find_binaries(opts.bin_dir.as_deref())?;
        let parent = opts
            .scratch_parent
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        // Two control planes in one process (tests run in parallel threads) must
        // not share a folder: the clock alone collided in CI.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let scratch = parent.join(format!(
            "stormdrill-cp-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            chrono::Utc::now().format("%H%M%S%3f")
        ));
        let logs = scratch.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| RealControlPlaneError::Scratch {
            path: logs.clone(),
            source,
        })?;
        let p = pki::generate(&scratch, &opts.admin_token, &opts.users)?;
        let ports = Ports {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
            controller_manager: free_port()?,
            scheduler: free_port()?,
        };
        let url = format!("https://127.0.0.1:{}", ports.apiserver);
        let kubeconfig = scratch.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, pki::kubeconfig(&p, &url)).map_err(|source| {
            RealControlPlaneError::Scratch {
                path: kubeconfig.clone(),
                source,
            }
        })?;
        let egress = scratch.join("egress.sock");
        let egress_yaml = scratch.join("egress.yaml");
        std::fs::write(&egress_yaml, egress::config(&egress)).map_err(|source| {
            RealControlPlaneError::Scratch {
                path: egress_yaml.clone(),
                source,
            }
        })?;
        let specs = specs(&bin, &scratch, &p, ports, &opts.timing);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Vec<Running>>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let died = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let logs = logs.clone();
            let ca_pem = p.ca_pem.clone();
            let token = opts.admin_token.clone();
            let died = died.clone();
            std::thread::Builder::new()
                .name("real-control-plane".into())
                .spawn(move || supervise(specs, logs, ca_pem, token, ready_tx, stop_rx, died))
                .map_err(|source| RealControlPlaneError::Spawn {
                    component: "the supervisor thread".into(),
                    source,
                })?
        };
        let procs = match ready_rx.recv() {
            Ok(Ok(procs)) => procs,
            Ok(Err(e)) => {
                let _ = thread.join();
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(RealControlPlaneError::Gone);
            }
        };
        Ok(RealControlPlane {
            url,
            ca_pem: p.ca_pem,
            scratch,
            logs,
            egress,
            procs,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
            died,
        })
    }

    /// `https://127.0.0.1:PORT` of kube-apiserver.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the apiserver's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The Unix socket the apiserver's egress selector sends cluster traffic to
    /// (nobody listens until the twin serves [`egress::serve`] on it).
    pub fn egress_socket(&self) -> &Path {
        &self.egress
    }

    /// The components and their PIDs, in start order.
    pub fn processes(&self) -> &[Running] {
        &self.procs
    }

    /// Where the components' logs are (until shutdown).
    pub fn log_dir(&self) -> &Path {
        &self.logs
    }

    /// Components that exited on their own since the start.
    pub fn died(&self) -> Vec<String> {
        self.died.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Copies every component's log into `dest` (e.g. a failed run's report folder).
    pub fn copy_logs(&self, dest: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dest)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.logs)? {
            let entry = entry?;
            let to = dest.join(entry.file_name());
            std::fs::copy(entry.path(), &to)?;
            out.push(to);
        }
        Ok(out)
    }

    /// Stops every process by PID (SIGTERM, SIGKILL after 5 s) and removes the
    /// scratch folder. Idempotent.
    pub fn shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

impl Drop for RealControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The supervisor thread: starts each component in order and waits for its health,
/// reports, then watches the children until told to stop. It owns the children, so
/// their PR_SET_PDEATHSIG fires when it (or the process) ends.
fn supervise(
    specs: Vec<ComponentSpec>,
    logs: PathBuf,
    ca_pem: String,
    token: String,
    ready: mpsc::Sender<Result<Vec<Running>>>,
    stop: mpsc::Receiver<()>,
    died: Arc<Mutex<Vec<String>>>,
) {
    let mut kids: Vec<(String, Child)> = Vec::new();
    let trusted = http_agent(Some(&ca_pem));
    let self_signed = http_agent(None);
    for spec in &specs {
        let log = logs.join(format!("{}.log", spec.name));
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|source| RealControlPlaneError::Scratch {
                    path: log.clone(),
                    source,
                })
        };
        let files = open().and_then(|a| Ok((a, open()?)));
        let (out, err) = match files {
            Ok(f) => f,
            Err(e) => {
                stop_children(&mut kids);
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut c = Command::new(&spec.program);
        c.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // A terminal's Ctrl-C reaches the twin, which then stops them in order.
            .process_group(0);
        die_with_parent(&mut c);
        let mut child = match c.spawn() {
            Ok(child) => child,
            Err(source) => {
                stop_children(&mut kids);
                let _ = ready.send(Err(RealControlPlaneError::Spawn {
                    component: spec.name.to_string(),
                    source,
                }));
                return;
            }
        };
        tracing::debug!(target: "stormdrill_twin::controlplane", "started {} pid {}", spec.name, child.id());
        // The apiserver's first start installs its bootstrap RBAC and priority levels:
        // seconds on 2 cores, more under load.
        let waited = Duration::from_secs(90);
        let deadline = Instant::now() + waited;
        let agent = if spec.name == "kube-apiserver" || spec.name == "etcd" {
            &trusted
        } else {
            &self_signed
        };
        let mut exited = false;
        let healthy = loop {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break false;
            }
            let mut req = agent.get(&spec.health);
            if spec.name == "kube-apiserver" {
                req = req.header("Authorization", format!("Bearer {token}"));
            }
            if let Ok(mut resp) = req.call() {
                let body = resp.body_mut().read_to_string().unwrap_or_default();
                let ok = resp.status() == 200
                    && (spec.name != "etcd" || body.contains("\"health\":\"true\""));
                if ok {
                    break true;
                }
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        kids.push((spec.name.to_string(), child));
        if !healthy {
            stop_children(&mut kids);
            let tail = tail(&log, 20);
            let component = spec.name.to_string();
            let _ = ready.send(Err(if exited {
                RealControlPlaneError::Exited {
                    component,
                    tail,
                    log,
                }
            } else {
                RealControlPlaneError::NotReady {
                    component,
                    waited,
                    tail,
                    log,
                }
            }));
            return;
        }
    }
    let running = kids
        .iter()
        .map(|(name, c)| Running {
            name: name.clone(),
            pid: c.id(),
        })
        .collect();
    if ready.send(Ok(running)).is_err() {
        stop_children(&mut kids);
        return;
    }
    loop {
        match stop.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        for (name, child) in kids.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut d = died.lock().unwrap_or_else(|e| e.into_inner());
                let line = format!("{name} exited: {status}");
                if !d.contains(&line) {
                    tracing::error!(target: "stormdrill_twin::controlplane", "{line}");
                    d.push(line);
                }
            }
        }
    }
    stop_children(&mut kids);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_pki() -> pki::Pki {
        let p = |n: &str| PathBuf::from(format!("/s/pki/{n}"));
        pki::Pki {
            ca_crt: p("ca.crt"),
            ca_key: p("ca.key"),
            ca_pem: String::new(),
            apiserver_crt: p("apiserver.crt"),
            apiserver_key: p("apiserver.key"),
            admin_crt: p("admin.crt"),
            admin_key: p("admin.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
            tokens: p("tokens.csv"),
        }
    }

    const PORTS: Ports = Ports {
        etcd_client: 1,
        etcd_peer: 2,
        apiserver: 3,
        controller_manager: 4,
        scheduler: 5,
    };

    #[test]
    fn start_order_and_timing_flags() {
        let fast = specs(
            Path::new("/b"),
            Path::new("/s"),
            &fake_pki(),
            PORTS,
            &Timing::fast(),
        );
        let names: Vec<_> = fast.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler"
            ]
        );
        let kcm = &fast[2].args;
        assert!(
            kcm.contains(&"--node-monitor-grace-period=1000ms".to_string()),
            "{kcm:?}"
        );
        assert!(
            kcm.contains(&"--node-monitor-period=250ms".to_string()),
            "{kcm:?}"
        );
        let api = &fast[1].args;
        assert!(api.contains(&"--default-unreachable-toleration-seconds=2".to_string()));
        assert!(api.contains(&"--etcd-servers=http://127.0.0.1:1".to_string()));
        let real = specs(
            Path::new("/b"),
            Path::new("/s"),
            &fake_pki(),
            PORTS,
            &Timing::realistic(),
        );
        assert!(real[2]
            .args
            .contains(&"--node-monitor-grace-period=40000ms".to_string()));
        assert!(real[1]
            .args
            .contains(&"--default-not-ready-toleration-seconds=300".to_string()));
    }

    #[test]
    fn missing_binaries_name_setup() {
        let dir = std::env::temp_dir().join("stormdrill-no-k8s-here");
        let e = find_binaries(Some(&dir)).expect_err("nothing built there");
        let text = e.to_string();
        assert!(text.contains("scripts/k8s-setup.sh"), "{text}");
        assert!(text.contains("kube-apiserver"), "{text}");
    }

    #[test]
    fn versions_match_the_setup_script() {
        let script = include_str!("../../../../scripts/k8s-setup.sh");
        assert!(
            script.contains(&format!("STORMDRILL_K8S_VERSION:-{K8S_VERSION}}}")),
            "scripts/k8s-setup.sh builds another Kubernetes release than {K8S_VERSION}"
        );
        assert!(
            script.contains(&format!("STORMDRILL_ETCD_VERSION:-{ETCD_VERSION}}}")),
            "scripts/k8s-setup.sh builds another etcd release than {ETCD_VERSION}"
        );
    }
}
