//! One `stormdrill run`: validate input, reach the target, run the features, judge,
//! write the report.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::{
    cli::RunArgs,
    diag,
    load::ApiEndpoint,
    preflight::{self, Checked, PreflightError},
    probe::k8s::ApiCatalog,
    report::{self, ReportError, RunDir, Summary},
    runner::{self, Collector, RunnerError, RunnerStats},
    signal,
    target::{self, TargetError, TargetSpec},
    verdict::{self, Judged, RunFacts, ScenarioStatus, Verdict},
    world::{self, RunContext},
};

/// Why the harness could not run at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Features(#[from] RunnerError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    TargetConfig(#[from] crate::target::power::TargetConfigError),
}

/// A finished (or aborted) run.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: RunDir,
    pub verdict: Verdict,
    pub summary: Summary,
    /// `--pushgateway`: where the metrics went, or why they did not.
    pub pushed: Option<Result<String, String>>,
}

impl Outcome {
    /// What the terminal shows after cucumber's own output: why not go, then where
    /// the report is.
    pub fn closing_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for s in &self.summary.scenarios {
            if let (ScenarioStatus::Failed | ScenarioStatus::Skipped, Some(m)) =
                (s.status, &s.message)
            {
                lines.push(format!("{}:{} {}: {m}", s.feature, s.line, s.name));
            }
        }
        if self.verdict != Verdict::Go {
            // Failed criteria go in the closing table instead.
            lines.extend(
                self.summary
                    .reasons
                    .iter()
                    .filter(|r| !r.starts_with(verdict::CRITERION_REASON))
                    .map(|r| format!("- {r}")),
            );
        }
        let failed = verdict::failed_table(self.summary.scenarios.iter().flat_map(|s| {
            s.criteria
                .iter()
                .filter(|c| c.gating && !c.pass)
                .map(|c| verdict::FailedCriterion {
                    criterion: c,
                    location: format!("{}:{}", s.feature, s.line),
                })
        }));
        if failed.is_empty() {
            // "all N criteria passed", as summary.md says it.
            lines.extend(report::markdown::closing_criteria(&self.summary));
        }
        lines.extend(failed);
        match &self.pushed {
            Some(Ok(url)) => lines.push(format!("metrics pushed to {url}")),
            // A failed push never changes the verdict; it is said, not hidden.
            Some(Err(e)) => lines.push(format!("warning: metrics not pushed: {e}")),
            None => {}
        }
        // Last, so the report's path is the final thing on screen.
        lines.push(self.run_dir.terminal_line(self.verdict));
        lines
    }
}

/// Runs in one process are serialised: the World's context is process-global.
static RUN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the features of `args` against its target. The future is not `Send`
/// (cucumber runs scenarios on the calling task).
pub async fn run(args: RunArgs) -> Result<Outcome, RunError> {
    let _serial = RUN_LOCK.lock().await;
    let started = Utc::now();

    // Bad input is reported before anything is started or written.
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| report::new_run_id(started));
    let run_dir = RunDir::new(&args.report_dir, &run_id)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let spec = TargetSpec {
        kind: args.target,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        seed,
        timing: args.timing,
        defects: args.defects.clone(),
        name: args.name.clone(),
        ceph: args.ceph,
        control_plane: args.control_plane,
        postgres: args.postgres,
    };
    spec.validate()?;
    let target_config = match &args.target_config {
        Some(path) => crate::target::power::TargetConfig::load(path)?,
        None => Default::default(),
    };
    // Every feature, step, profile key and scenario file, before any target exists.
    // The twin defaults to fixtures/acceptance/twin.yaml (when run from the repository).
    let Checked {
        features, profile, ..
    } = preflight::check(
        &args.features,
        args.profile.as_deref(),
        args.target,
        args.tags.as_ref(),
    )?;
    run_dir.create()?;

    let mut summary = Summary {
        schema: report::SCHEMA.to_owned(),
        run_id,
        target: args.target.as_str().to_owned(),
        started,
        finished: started,
        verdict: Verdict::Error,
        reasons: Vec::new(),
        seed,
        error: None,
        profile: profile.as_ref().map(report::profile_name),
        harness: Some(report::harness_description()),
        scenarios: Vec::new(),
    };

    let connected = match target::connect(&spec).await {
        Ok(c) => c,
        Err(e) => return Err(record_error(&run_dir, summary, e.into())),
    };
    if !args.quiet {
        println!(
            "target: {} {} ({}), seed {seed}, run {}",
            connected.name(),
            connected.server(),
            connected.version(),
            summary.run_id
        );
    }

    let faults = Arc::new(crate::fault::for_run(
        &connected,
        &target_config,
        &args,
        seed,
        run_dir.path(),
        &summary.run_id,
    ));
    let guard = world::install(Arc::new(RunContext {
        client: connected.client().clone(),
        target: connected.name().to_owned(),
        seed,
        profile,
        catalog: ApiCatalog::default(),
        api: match args.api_url.clone() {
            Some(url) => Some(ApiEndpoint {
                url,
                ca: args.api_ca.clone(),
                source_addr: args.api_source_addr,
                ..Default::default()
            }),
            // kind publishes Envoy through a port mapping, not a load balancer.
            None => connected.api_endpoint().await.map(|ep| ApiEndpoint {
                source_addr: args.api_source_addr,
                ..ep
            }),
        },
        run_dir: Some(run_dir.path().to_owned()),
        stack_dir: match args.target {
            crate::target::TargetKind::Kind => crate::up::stack_for_run(
                args.name.as_deref(),
                &args.stack,
                &crate::up::default_state_dir(),
            ),
            _ => args.stack.clone(),
        },
        faults: faults.clone(),
    }));
    let collector = Collector::default();
    let result = tokio::select! {
        r = runner::run_features(&features, args.tags.clone(), &run_dir, collector.clone(), args.quiet) => Some(r),
        () = signal::shutdown_signal() => None,
        reason = faults.abort().triggered() => {
            println!("aborting: {reason}");
            None
        }
        _ = faults.refused().triggered() => {
            // The reason follows in the closing lines.
            println!("stopping: a destructive fault was refused; the rest of the run is skipped");
            None
        }
    };
    let refused = faults.refused().reason();
    // Before anything else, put back what is still injected: a signal or an abort drops
    // the scenario mid-step, so the journal, not the World, knows what that is.
    faults
        .sweep(if result.is_some() { "run-end" } else { "abort" })
        .await;
    drop(guard);
    // The control plane's logs go before the target does; a go verdict drops them below.
    let logs_dir = run_dir.path().join(CONTROL_PLANE_LOGS);
    let kept_logs = match connected.keep_logs(&logs_dir) {
        Ok(files) => !files.is_empty(),
        Err(e) => {
            tracing::warn!(error = %e, dir = %logs_dir.display(), "cannot keep the control plane's logs");
            false
        }
    };
    connected.close().await;

    let (stats, aborted) = match result {
        Some(Ok(stats)) => (stats, false),
        Some(Err(e)) => return Err(record_error(&run_dir, summary, e.into())),
        None if refused.is_some() => (RunnerStats::default(), false),
        None => {
            if faults.abort().reason().is_none() {
                println!("aborted by signal");
            }
            (RunnerStats::default(), true)
        }
    };
    summary.scenarios = collector.snapshot();
    // Scenarios finish in any order when run concurrently; reports read in file order.
    summary
        .scenarios
        .sort_by(|a, b| (&a.feature, a.line).cmp(&(&b.feature, b.line)));
    let decision = verdict::decide(
        summary.scenarios.iter().map(|s| Judged {
            name: &s.name,
            status: s.status,
            criteria: &s.criteria,
        }),
        RunFacts {
            parsing_errors: stats.parsing_errors,
            hook_errors: stats.hook_errors,
            aborted,
            dry_run: args.dry_run,
        },
    );
    summary.verdict = decision.verdict;
    summary.reasons = decision.reasons;
    if let Some(reason) = refused {
        // The faults the features asked for were not allowed: nothing was judged.
        summary.verdict = Verdict::Error;
        summary.reasons.insert(
            0,
            format!("a destructive fault was refused, the rest of the run was skipped: {reason}"),
        );
    }
    if kept_logs {
        if summary.verdict == Verdict::Go {
            let _ = std::fs::remove_dir_all(&logs_dir);
        } else {
            summary.reasons.push(format!(
                "the control plane's logs are in {}",
                logs_dir.display()
            ));
        }
    }
    summary.reasons.extend(faults.abort().reason());
    summary.finished = now_after(started);
    run_dir.write_summary(&summary)?;
    report::html::write_readable(&run_dir, &summary);
    let pushed = match &args.pushgateway {
        Some(url) => Some(
            report::prom::push(url, &summary)
                .await
                .map(|u| u.to_string())
                .map_err(|e| diag::one_line(&e)),
        ),
        None => None,
    };
    Ok(Outcome {
        run_dir,
        verdict: summary.verdict,
        summary,
        pushed,
    })
}

/// The folder of a run's report that keeps the real control plane's logs when the
/// verdict is not go.
pub const CONTROL_PLANE_LOGS: &str = "control-plane-logs";

/// Leaves a summary with verdict error behind, so CI trends see failed runs too;
/// a failure to write it must not hide the original error.
fn record_error(run_dir: &RunDir, mut summary: Summary, err: RunError) -> RunError {
    summary.finished = now_after(summary.started);
    summary.verdict = Verdict::Error;
    summary.error = Some(diag::one_line(&err));
    if let Err(e) = run_dir.write_summary(&summary) {
        tracing::debug!(error = %diag::one_line(&e), "cannot record the error summary");
    }
    report::html::write_readable(run_dir, &summary);
    err
}

fn now_after(started: DateTime<Utc>) -> DateTime<Utc> {
    Utc::now().max(started)
}
