//! `stormdrill bench` part (d): wall time of the whole feature suite on an embedded twin
//! (fast timing), through the library's run entry point exactly as `stormdrill run`
//! does it. Cucumber's console output goes to a log file for the duration, so the
//! bench's own table (or JSON) stays clean on stdout.

use std::{
    fs::File,
    io::Write as _,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    cli::RunArgs,
    diag,
    target::{TargetKind, TimingProfile},
    verdict::ScenarioStatus,
};

/// The DESIGN goal (§8): the suite on the twin (fast) under 60 s.
pub const GOAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("no features at {} (run the bench from the repository root, or pass --features)", .0.display())]
    NoFeatures(PathBuf),
    #[error("cannot write the suite's console log {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the harness could not run the suite")]
    Run(#[source] crate::RunError),
    #[error("cannot start a runtime for the suite")]
    Runtime(#[source] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    pub features: PathBuf,
    pub stack: PathBuf,
    /// Where the run's report folder goes, as `stormdrill run --report-dir`.
    pub report_dir: PathBuf,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SuiteFigure {
    pub wall_s: f64,
    pub goal_s: f64,
    pub verdict: String,
    pub scenarios: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Why the verdict is not go, as the run reports it.
    pub reasons: Vec<String>,
    /// The run's report folder; cucumber's console output is its `console.log`.
    pub report: PathBuf,
}

/// Runs the suite on a fresh runtime (the run future is not `Send`); blocking.
pub fn run(opts: &SuiteOptions) -> Result<SuiteFigure, SuiteError> {
    if !opts.features.exists() {
        return Err(SuiteError::NoFeatures(opts.features.clone()));
    }
    let run_id = format!(
        "bench-suite-{}",
        crate::report::new_run_id(chrono::Utc::now())
    );
    let folder = opts.report_dir.join(&run_id);
    let args = RunArgs {
        features: vec![opts.features.clone()],
        stack: opts.stack.clone(),
        target: TargetKind::Twin,
        timing: TimingProfile::Fast,
        report_dir: opts.report_dir.clone(),
        run_id: Some(run_id),
        seed: Some(opts.seed),
        ..RunArgs::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SuiteError::Runtime)?;
    let log = folder.join("console.log");
    std::fs::create_dir_all(&folder).map_err(|source| SuiteError::Log {
        path: log.clone(),
        source,
    })?;
    let quiet = StdoutTo::file(&log)?;
    let started = Instant::now();
    let outcome = runtime.block_on(crate::run(args));
    let wall = started.elapsed();
    drop(quiet);
    let outcome = outcome.map_err(SuiteError::Run)?;
    let s = &outcome.summary;
    let count = |st: ScenarioStatus| s.scenarios.iter().filter(|x| x.status == st).count();
    Ok(SuiteFigure {
        wall_s: (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        goal_s: GOAL.as_secs_f64(),
        verdict: outcome.verdict.to_string(),
        scenarios: s.scenarios.len(),
        failed: count(ScenarioStatus::Failed),
        skipped: count(ScenarioStatus::Skipped),
        reasons: s.reasons.clone(),
        report: folder,
    })
}

/// Points this process's stdout (fd 1) at a file until dropped. Cucumber writes its
/// console report to stdout and has no quiet mode of its own.
struct StdoutTo {
    saved: Option<libc::c_int>,
}

impl StdoutTo {
    fn file(path: &Path) -> Result<Self, SuiteError> {
        let file = File::create(path).map_err(|source| SuiteError::Log {
            path: path.to_owned(),
            source,
        })?;
        let _ = std::io::stdout().flush();
        // SAFETY: dup/dup2 on our own descriptors; `file` stays open until dup2 copied it.
        let saved = unsafe {
            let saved = libc::dup(1);
            if saved >= 0 && libc::dup2(file.as_raw_fd(), 1) < 0 {
                libc::close(saved);
                -1
            } else {
                saved
            }
        };
        if saved < 0 {
            tracing::debug!(
                error = %diag::one_line(&std::io::Error::last_os_error()),
                "stdout not redirected"
            );
        }
        Ok(StdoutTo {
            saved: (saved >= 0).then_some(saved),
        })
    }
}

impl Drop for StdoutTo {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        if let Some(saved) = self.saved.take() {
            // SAFETY: restores the descriptor saved in `file`, then closes the copy.
            unsafe {
                libc::dup2(saved, 1);
                libc::close(saved);
            }
        }
    }
}
