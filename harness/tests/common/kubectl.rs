//! Unmodified kubectl against `stormdrill twin serve` (the embedded API server), as
//! the kubectl test files use it. kubectl must be on PATH (scripts/setup.sh).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Served {
    pub child: Child,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .args(["twin", "serve", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("stormdrill twin serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "twin serve wrote no kubeconfig within 30 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("twin serve exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Drain stdout so the server never blocks on a full pipe.
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
    // The file appears before it is complete only if written non-atomically; wait for content.
    while std::fs::read_to_string(&kubeconfig)
        .map(|s| !s.contains("current-context"))
        .unwrap_or(true)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Served {
        child,
        kubeconfig,
        _dir: dir,
    }
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    kubectl_bin(Path::new("kubectl"), kubeconfig, args)
}

/// [`kubectl`] with another kubectl binary (e.g. a newer release).
pub fn kubectl_bin(bin: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} runs (is it installed? see scripts/setup.sh): {e}",
                bin.display()
            )
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = kubectl(kubeconfig, args);
    assert!(
        success,
        "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}
