//! Helpers shared by the integration tests that start real servers or run the harness
//! in-process. Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stormdrill::cli::RunArgs;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus (Debian's package) on 127.0.0.1, killed by PID and its folder
/// removed on drop.
pub struct Prometheus {
    pub child: Child,
    pub port: u16,
    pub started: Instant,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus with `config` (YAML) in `dir`, on a free port; `extra` flags are
/// appended (e.g. `--storage.tsdb.retention.time=15d`). Its log is `dir/prometheus.log`.
pub fn start_prometheus(config: &str, dir: tempfile::TempDir, extra: &[String]) -> Prometheus {
    let port = free_port();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        port,
        started: Instant::now(),
        _dir: dir,
    }
}

/// Polls `f` every 250 ms until it gives a value; fails the test after `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the features on a thread with a large stack, as the `stormdrill` binary's main
/// thread has (cucumber's step futures are deep).
pub fn run_harness(args: RunArgs) -> stormdrill::Outcome {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(stormdrill::run(args))
                .expect("the harness runs")
        })
        .unwrap()
        .join()
        .unwrap()
}

/// A kube client for an in-process twin, without kube's retries (they retry 503s for
/// minutes; every wait in these tests has its own deadline).
pub async fn twin_client(twin: &stormdrill_twin::Twin) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}
pub mod kubectl;
pub mod streams;
