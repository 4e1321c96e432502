//! `stormdrill bench`: the load generator's own figures (DESIGN.md §8), measured on this
//! machine against a local server, never against anything but 127.0.0.1.
//!
//! (a) Maximum throughput (closed loop) and CPU time per request, beside `wrk` against
//!     the same local nginx in the same run, with ratios. nginx and the generator are
//!     pinned to different cores when there are two; absent tools are skipped with a note.
//! (b) Achieved against target rate in open loop at 1k, 5k and 10k req/s.
//! (c) Detection lag, twin ground truth -> observers ([`super::bench_lag`]).
//! (d) Wall time of the feature suite on the twin ([`super::bench_suite`]).
//! (e) Memory of a 10-minute run at 1k req/s ([`super::bench_memory`]).
//!
//! Runs (a), (b), (e) against the local server, then (c) and (d) on their own twins.
//! A part that cannot run is listed as skipped with the reason; the others still run.

use std::{
    io::{self, Read as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    bench_lag::{self, LagOptions, LagReport},
    bench_memory::{self, MemoryFigure},
    bench_suite::{self, SuiteFigure, SuiteOptions},
    generator::LoadReport,
    LoadConfig, LoadError, LoadRun, Mix,
};
use crate::{diag, target::ControlPlaneMode};

pub const NGINX: &str = "/usr/sbin/nginx";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot prepare the bench's scratch folder")]
    Scratch(#[source] io::Error),
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} did not listen on {addr} within 5 s")]
    NotListening { what: String, addr: SocketAddr },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the bench thread failed")]
    Thread,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Closed-loop (and wrk) run length.
    pub duration: Duration,
    pub connections: usize,
    /// Open-loop target rates.
    pub rates: Vec<f64>,
    pub rate_duration: Duration,
    pub nginx: PathBuf,
    /// (c); None: skipped.
    pub lag: Option<LagOptions>,
    /// (d); None: skipped.
    pub suite: Option<SuiteOptions>,
    /// (e): its length; None: skipped.
    pub memory_duration: Option<Duration>,
    pub memory_rate: f64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            duration: Duration::from_secs(5),
            connections: 32,
            rates: vec![1000.0, 5000.0, 10000.0],
            rate_duration: Duration::from_secs(3),
            nginx: PathBuf::from(NGINX),
            lag: Some(LagOptions {
                events: 50,
                stack: PathBuf::from("fixtures/stack"),
                ceph_interval: crate::measure::observe::CEPH_INTERVAL,
                seed: 1,
                control_planes: vec![ControlPlaneMode::Embedded],
            }),
            suite: Some(SuiteOptions {
                features: PathBuf::from("features"),
                stack: PathBuf::from("fixtures/stack"),
                report_dir: PathBuf::from("reports"),
                seed: 1,
            }),
            memory_duration: Some(Duration::from_secs(600)),
            memory_rate: 1000.0,
        }
    }
}

impl BenchOptions {
    pub fn from_args(a: &crate::cli::BenchArgs) -> Self {
        let d = BenchOptions::default();
        BenchOptions {
            duration: Duration::from_secs(a.duration),
            connections: a.connections,
            rates: a.rates.iter().map(|&r| f64::from(r)).collect(),
            rate_duration: Duration::from_secs(a.rate_duration),
            lag: (!a.skip_lag).then(|| LagOptions {
                events: a.lag_events as usize,
                stack: a.stack.clone(),
                ceph_interval: Duration::from_millis(a.ceph_interval_ms),
                seed: 1,
                control_planes: a.control_plane.clone(),
            }),
            suite: (!a.skip_suite).then(|| SuiteOptions {
                features: a.features.clone(),
                stack: a.stack.clone(),
                report_dir: a.report_dir.clone(),
                seed: 1,
            }),
            memory_duration: (!a.skip_memory).then(|| Duration::from_secs(a.memory_duration)),
            ..d
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub tool: String,
    pub requests: u64,
    pub req_per_s: f64,
    /// User + system CPU time per request, microseconds.
    pub cpu_us_per_req: f64,
    pub p99_ms: Option<f64>,
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RateRun {
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// achieved / target, percent.
    pub achieved_pct: f64,
    pub sent: u64,
    pub errors: u64,
    pub p99_ms: f64,
    pub lag_p99_ms: f64,
    pub cpu_us_per_req: f64,
}

/// A part that did not run, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub part: String,
    pub why: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    pub cores: usize,
    /// `/proc/loadavg`'s 1, 5 and 15 minute figures at the start and at the end: other
    /// processes on the machine share the cores the figures depend on.
    pub load_average_start: Option<String>,
    pub load_average_end: Option<String>,
    /// e.g. `generator cpu 0, server cpu 1`; None when not pinned.
    pub pinning: Option<String>,
    /// What (a) and (b) ran against.
    pub server: String,
    pub connections: usize,
    pub duration_s: f64,
    pub throughput: Vec<Throughput>,
    /// stormdrill / wrk, when both ran.
    pub throughput_ratio: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub rates: Vec<RateRun>,
    /// (c)
    /// One per control plane asked for (`--control-plane`).
    pub detection_lag: Vec<LagReport>,
    /// (d)
    pub suite: Option<SuiteFigure>,
    /// (e)
    pub memory: Option<MemoryFigure>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

impl BenchReport {
    fn skip(&mut self, part: &str, why: impl Into<String>) {
        self.skipped.push(Skipped {
            part: part.to_owned(),
            why: why.into(),
        });
    }
}

const PART_C: &str = "(c) detection lag";
const PART_D: &str = "(d) feature-suite wall time";
const PART_E: &str = "(e) memory of a long run";

/// Runs the bench; blocking (own threads and runtime, so the generator can be pinned).
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = which("taskset");
    let pin = cores >= 2;
    let mut report = BenchReport {
        cores,
        load_average_start: load_average(),
        connections: opts.connections,
        duration_s: opts.duration.as_secs_f64(),
        ..BenchReport::default()
    };
    let scratch = tempdir().map_err(BenchError::Scratch)?;

    // The server: nginx when installed, else a minimal built-in one (rates only).
    let server_cpu = pin.then_some(1);
    let (addr, server): (SocketAddr, Box<dyn std::any::Any>) = if opts.nginx.exists() {
        let nginx = Nginx::start(&opts.nginx, &scratch.0, taskset.as_deref(), server_cpu)?;
        report.server = format!(
            "nginx ({}, 1 worker) on {}",
            opts.nginx.display(),
            nginx.addr
        );
        (nginx.addr, Box::new(nginx))
    } else {
        report.notes.push(format!(
            "{} not found: (a) skipped (apt-get install nginx-light wrk); (b) ran against a \
                 minimal built-in HTTP server",
            opts.nginx.display()
        ));
        let s = OkServer::start(server_cpu)?;
        report.server = format!("built-in HTTP server on {}", s.addr);
        (s.addr, Box::new(s))
    };
    report.pinning = pin.then(|| {
        if taskset.is_some() || !opts.nginx.exists() {
            "generator cpu 0, server cpu 1".to_owned()
        } else {
            "generator cpu 0; server not pinned (taskset not found)".to_owned()
        }
    });
    let target: http::Uri = format!("http://{addr}/")
        .parse()
        .expect("a socket address URL");

    if opts.nginx.exists() {
        let ours = on_pinned_thread(pin.then_some(0), {
            let target = target.clone();
            let opts = opts.clone();
            move || closed_loop(target, &opts)
        })??;
        report.throughput.push(ours);
        match which("wrk") {
            Some(wrk) => {
                let theirs = run_wrk(&wrk, taskset.as_deref(), pin.then_some(0), addr, opts)?;
                let (o, t) = (&report.throughput[0], &theirs);
                if t.req_per_s > 0.0 {
                    report.throughput_ratio = Some(o.req_per_s / t.req_per_s);
                }
                if t.cpu_us_per_req > 0.0 {
                    report.cpu_ratio = Some(o.cpu_us_per_req / t.cpu_us_per_req);
                }
                report.throughput.push(theirs);
            }
            None => report
                .notes
                .push("wrk not found: no comparison (apt-get install wrk)".into()),
        }
    }

    for &rate in &opts.rates {
        let run = on_pinned_thread(pin.then_some(0), {
            let target = target.clone();
            let d = opts.rate_duration;
            move || open_loop(target, rate, d)
        })??;
        report.rates.push(run);
    }

    match opts.memory_duration {
        Some(d) => {
            let dir = scratch.0.join("memory");
            let got = std::fs::create_dir_all(&dir)
                .map_err(BenchError::Scratch)
                .and_then(|()| {
                    let (target, rate) = (target.clone(), opts.memory_rate);
                    on_pinned_thread(pin.then_some(0), move || {
                        bench_memory::run(target, rate, d, dir)
                    })
                });
            match got {
                Ok(Ok(m)) => report.memory = Some(m),
                Ok(Err(e)) => report.skip(PART_E, diag::one_line(&e)),
                Err(e) => report.skip(PART_E, diag::one_line(&e)),
            }
        }
        None => report.skip(PART_E, "--skip-memory"),
    }
    // The local server's part is over; the twins below need the cores.
    drop(server);

    match &opts.lag {
        Some(lag) => {
            for mode in lag.control_planes.clone() {
                let lag = lag.clone();
                let got = on_pinned_thread(None, move || bench_lag::measure(&lag, mode));
                let why = match got {
                    Ok(Ok(r)) => {
                        report.detection_lag.push(r);
                        continue;
                    }
                    Ok(Err(e)) => diag::one_line(&e),
                    Err(e) => diag::one_line(&e),
                };
                report.skip(PART_C, format!("{} control plane: {why}", mode.as_str()));
            }
        }
        None => report.skip(PART_C, "--skip-lag"),
    }

    match &opts.suite {
        Some(suite) => {
            let suite = suite.clone();
            match on_pinned_thread(None, move || bench_suite::run(&suite)) {
                Ok(Ok(f)) => report.suite = Some(f),
                Ok(Err(e)) => report.skip(PART_D, diag::one_line(&e)),
                Err(e) => report.skip(PART_D, diag::one_line(&e)),
            }
        }
        None => report.skip(PART_D, "--skip-suite"),
    }
    report.load_average_end = load_average();
    Ok(report)
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let three: Vec<&str> = text.split_whitespace().take(3).collect();
    (three.len() == 3).then(|| three.join(" "))
}

/// Runs `f` on a new thread with a current-thread runtime, pinned to `cpu` if given:
/// the generator then uses one core, as wrk -t1 does.
fn on_pinned_thread<T: Send + 'static>(
    cpu: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BenchError> {
    std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_current_thread(cpu);
        }
        f()
    })
    .join()
    .map_err(|_| BenchError::Thread)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

fn closed_loop(target: http::Uri, opts: &BenchOptions) -> Result<Throughput, BenchError> {
    let mut cfg = LoadConfig::closed(target, opts.connections);
    cfg.duration = opts.duration;
    cfg.mix = Mix::single("/").expect("a valid path");
    let (report, cpu) =
        measure_cpu(|| runtime().block_on(async { LoadRun::start(cfg).await?.wait().await }));
    let report = report?;
    let done = report.totals.counts.completed();
    Ok(Throughput {
        tool: "stormdrill".into(),
        requests: done,
        req_per_s: report.achieved_rate,
        cpu_us_per_req: per_request_us(cpu, done),
        p99_ms: Some(report.totals.p99_ms),
        errors: report.totals.requests_lost,
    })
}

fn open_loop(target: http::Uri, rate: f64, duration: Duration) -> Result<RateRun, BenchError> {
    let mut cfg = LoadConfig::open(target, rate);
    cfg.duration = duration;
    cfg.mix = Mix::single("/").expect("a valid path");
    let (report, cpu): (Result<LoadReport, LoadError>, Duration) =
        measure_cpu(|| runtime().block_on(async { LoadRun::start(cfg).await?.wait().await }));
    let report = report?;
    let t = &report.totals;
    Ok(RateRun {
        target_rate: rate,
        achieved_rate: report.achieved_rate,
        achieved_pct: report.achieved_rate * 100.0 / rate,
        sent: t.sent,
        errors: t.requests_lost,
        p99_ms: t.p99_ms,
        lag_p99_ms: t.lag_p99_ms,
        cpu_us_per_req: per_request_us(cpu, t.counts.completed()),
    })
}

fn per_request_us(cpu: Duration, requests: u64) -> f64 {
    if requests == 0 {
        f64::NAN
    } else {
        cpu.as_secs_f64() * 1e6 / requests as f64
    }
}

/// `f`'s result and the process's user + system CPU time while it ran.
fn measure_cpu<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let before = cpu_time(libc::RUSAGE_SELF);
    let out = f();
    (out, cpu_time(libc::RUSAGE_SELF).saturating_sub(before))
}

fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct we pass; all-zero is a valid rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn run_wrk(
    wrk: &Path,
    taskset: Option<&Path>,
    cpu: Option<usize>,
    addr: SocketAddr,
    opts: &BenchOptions,
) -> Result<Throughput, BenchError> {
    let mut cmd = pinned(wrk, taskset, cpu);
    cmd.args([
        "-t1".to_owned(),
        format!("-c{}", opts.connections),
        format!("-d{}s", opts.duration.as_secs().max(1)),
        format!("http://{addr}/"),
    ]);
    // wrk is the only child waited for here, so RUSAGE_CHILDREN's growth is its CPU.
    let before = cpu_time(libc::RUSAGE_CHILDREN);
    let out = cmd.output().map_err(|source| BenchError::Spawn {
        what: "wrk".into(),
        source,
    })?;
    let cpu = cpu_time(libc::RUSAGE_CHILDREN).saturating_sub(before);
    let text = String::from_utf8_lossy(&out.stdout);
    let (rps, requests, errors) = parse_wrk(&text);
    Ok(Throughput {
        tool: "wrk".into(),
        requests,
        req_per_s: rps,
        cpu_us_per_req: per_request_us(cpu, requests),
        p99_ms: None,
        errors,
    })
}

/// (Requests/sec, requests, errors) from wrk's report.
pub fn parse_wrk(text: &str) -> (f64, u64, u64) {
    let mut rps = 0.0;
    let mut requests = 0;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests = n.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (rps, requests, errors)
}

fn pinned(program: &Path, taskset: Option<&Path>, cpu: Option<usize>) -> Command {
    match (taskset, cpu) {
        (Some(ts), Some(cpu)) => {
            let mut c = Command::new(ts);
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        _ => Command::new(program),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> io::Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("stormdrill-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(Scratch(dir))
}

fn free_port() -> Result<SocketAddr, BenchError> {
    // Bound and released: a small race with other processes, acceptable for a bench.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|source| BenchError::Spawn {
            what: "a free port".into(),
            source,
        })
}

fn wait_listening(what: &str, addr: SocketAddr) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BenchError::NotListening {
        what: what.into(),
        addr,
    })
}

/// nginx with one worker answering 200 to every path, stopped on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(
        nginx: &Path,
        dir: &Path,
        taskset: Option<&Path>,
        cpu: Option<usize>,
    ) -> Result<Self, BenchError> {
        let addr = free_port()?;
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 10000000;\n  keepalive_timeout 60s;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen {addr};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(BenchError::Scratch)?;
        let mut cmd = pinned(nginx, taskset, cpu);
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
            what: "nginx".into(),
            source,
        })?;
        if let Err(e) = wait_listening("nginx", addr) {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            let _ = child.wait();
            if !err.trim().is_empty() {
                eprintln!("nginx: {}", err.trim());
            }
            return Err(e);
        }
        Ok(Nginx { child, addr })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of master and worker (SIGKILL would orphan the worker).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling our own child process by its pid.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal keep-alive HTTP/1.1 server answering `200 ok` to every request, on its
/// own thread; for the rate runs when nginx is absent.
struct OkServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OkServer {
    fn start(cpu: Option<usize>) -> Result<Self, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Spawn {
            what: "the built-in server".into(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| BenchError::Spawn {
            what: "the built-in server".into(),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| BenchError::Spawn {
                what: "the built-in server".into(),
                source,
            })?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu);
            }
            runtime().block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        conn = listener.accept() => {
                            if let Ok((stream, _)) = conn {
                                tokio::spawn(serve_ok(stream));
                            }
                        }
                    }
                }
            });
        });
        wait_listening("the built-in server", addr)?;
        Ok(OkServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for OkServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_ok(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry = 0usize;
    loop {
        let n = match stream.read(&mut buf[carry..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = &buf[..carry + n];
        // Requests without bodies: one response per blank line ending a header block.
        let mut answered = 0;
        let mut last_end = 0;
        let mut i = 0;
        while i + 4 <= data.len() {
            if &data[i..i + 4] == b"\r\n\r\n" {
                answered += 1;
                last_end = i + 4;
                i += 4;
            } else {
                i += 1;
            }
        }
        let rest = data.len() - last_end;
        buf.copy_within(last_end..last_end + rest, 0);
        carry = rest.min(buf.len() / 2);
        for _ in 0..answered {
            if stream.write_all(RESPONSE).await.is_err() {
                return;
            }
        }
    }
}

/// The human-readable table.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(format!(
        "stormdrill bench: {} cores; {}; server: {}",
        r.cores,
        r.pinning.as_deref().unwrap_or("not pinned (one core)"),
        r.server
    ));
    line(format!(
        "load average (1/5/15 min) at start {}, at end {}",
        r.load_average_start.as_deref().unwrap_or("unknown"),
        r.load_average_end.as_deref().unwrap_or("unknown")
    ));
    line(format!(
        "(a) max throughput, closed loop, {} connections, {:.0} s",
        r.connections, r.duration_s
    ));
    if r.throughput.is_empty() {
        line("    skipped (see notes)".into());
    } else {
        line(format!(
            "    {:<12} {:>12} {:>12} {:>10} {:>8}",
            "tool", "req/s", "cpu us/req", "p99 ms", "errors"
        ));
        for t in &r.throughput {
            line(format!(
                "    {:<12} {:>12.0} {:>12.2} {:>10} {:>8}",
                t.tool,
                t.req_per_s,
                t.cpu_us_per_req,
                t.p99_ms
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")),
                t.errors
            ));
        }
        if let (Some(tr), Some(cr)) = (r.throughput_ratio, r.cpu_ratio) {
            line(format!(
                "    stormdrill / wrk: {tr:.2} x the throughput, {cr:.2} x the CPU per request"
            ));
        }
    }
    line("(b) open loop: achieved vs target rate".into());
    line(format!(
        "    {:>8} {:>10} {:>9} {:>8} {:>8} {:>11} {:>8} {:>11}",
        "target", "achieved", "achieved%", "sent", "errors", "lag p99 ms", "p99 ms", "cpu us/req"
    ));
    for x in &r.rates {
        line(format!(
            "    {:>8.0} {:>10.1} {:>9.2} {:>8} {:>8} {:>11.3} {:>8.3} {:>11.2}",
            x.target_rate,
            x.achieved_rate,
            x.achieved_pct,
            x.sent,
            x.errors,
            x.lag_p99_ms,
            x.p99_ms,
            x.cpu_us_per_req
        ));
    }
    for c in &r.detection_lag {
        render_lag(c, &mut line);
    }
    if let Some(d) = &r.suite {
        line(format!(
            "(d) feature suite on the twin (fast): {:.1} s wall time (goal < {:.0} s: {}); \
             verdict {}, {} scenarios, {} failed, {} skipped; report {}",
            d.wall_s,
            d.goal_s,
            if d.wall_s < d.goal_s {
                "met"
            } else {
                "NOT met"
            },
            d.verdict,
            d.scenarios,
            d.failed,
            d.skipped,
            d.report.display()
        ));
        for reason in &d.reasons {
            line(format!("    not go: {reason}"));
        }
    }
    if let Some(m) = &r.memory {
        render_memory(m, &mut line);
    }
    for k in &r.skipped {
        line(format!("{}: skipped: {}", k.part, k.why));
    }
    for n in &r.notes {
        line(format!("note: {n}"));
    }
    s
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn render_memory(m: &MemoryFigure, line: &mut impl FnMut(String)) {
    line(format!(
        "(e) memory, open loop at {:.0} req/s for {:.0} s ({} sent, {:.1} req/s achieved, {} lost, {} windows)",
        m.target_rate, m.duration_s, m.sent, m.achieved_rate, m.errors, m.windows
    ));
    line(format!(
        "    peak RSS {:.1} MiB (largest VmRSS sample, 1/s){}; {:.1} MiB before the run",
        mib(m.peak_rss_kb),
        m.hwm_kb
            .map_or_else(String::new, |h| format!(", VmHWM {:.1} MiB", mib(h))),
        mib(m.rss_before_kb)
    ));
    line(format!(
        "    after {:.0} s warm-up {:.1} MiB -> end {:.1} MiB: growth {:+} KiB, trend {:+.1} KiB/min over {} samples",
        m.warm_up_s,
        mib(m.rss_after_warm_up_kb),
        mib(m.rss_end_kb),
        m.growth_kb,
        m.slope_kb_per_min,
        m.samples
    ));
}

fn render_lag(c: &LagReport, line: &mut impl FnMut(String)) {
    let ms = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    line(format!(
        "(c) detection lag, twin ground truth -> harness observer ({} control plane, {} timing, {:.0} s)",
        c.control_plane, c.timing, c.elapsed_s
    ));
    line(format!(
        "    {:<17} {:<44} {:>7} {:>7} {:>8} {:>8} {:>8}",
        "event", "observer", "events", "missed", "p50 ms", "p99 ms", "max ms"
    ));
    for f in &c.figures {
        let kind = if f.watch { "watch" } else { "poll" };
        line(format!(
            "    {:<17} {:<44} {:>7} {:>7} {:>8} {:>8} {:>8}",
            f.event,
            format!("{} ({kind})", f.observer),
            format!("{}/{}", f.measured, f.wanted),
            f.missed,
            ms(f.p50_ms),
            ms(f.p99_ms),
            ms(f.max_ms)
        ));
    }
    if let Some(met) = c.watch_goal_met() {
        line(format!(
            "    watch-based p99 < {:.0} ms: {}",
            bench_lag::GOAL_P99_MS,
            if met { "met" } else { "NOT met" }
        ));
    }
    for n in &c.notes {
        line(format!("    {n}"));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn wrk_output_parses() {
        let text = "Running 5s test @ http://127.0.0.1:8080/\n  1 threads and 32 connections\n\
                    \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
                    \x20 612345 requests in 5.00s, 98.12MB read\n\
                    \x20 Socket errors: connect 0, read 2, write 0, timeout 3\n\
                    \x20 Non-2xx or 3xx responses: 4\n\
                    Requests/sec: 122468.99\nTransfer/sec:     19.62MB\n";
        assert_eq!(parse_wrk(text), (122468.99, 612345, 9));
    }

    #[test]
    fn the_built_in_server_answers_keep_alive_requests() {
        let s = OkServer::start(None).unwrap();
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while got.len() < 2 * 41 {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(String::from_utf8_lossy(&got).matches("200 OK").count(), 2);
    }
}
