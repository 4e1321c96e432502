//! `stormdrill gameday SCENARIO`: a scenario file run for people in the loop.
//!
//! It prints the plan (load, each step with its targets and revert, the criteria, the
//! abort conditions), then runs the steps on a live system: the load and the health
//! lanes start first, every destructive step is shown resolved to its objects and
//! waits for a "y" (unless `--yes`), health changes are printed as they happen, and
//! waits show the progress line. Ctrl-C (or SIGTERM, a "no", an abort condition) stops
//! at once: everything the journal holds is reverted and the exit code is 3. Every
//! action and observation goes to `reports/<run>/timeline.md`, beside the usual
//! summary.json, report.html (with the lanes), summary.md and metrics.prom.
//!
//! The faults, journal and reverts are the runs' own ([`crate::fault`]); the load,
//! steady state and recovery are the steps' ([`crate::steps::load`]) on a World made
//! for the game day.

pub mod scenario;
pub mod timeline;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use tokio::sync::mpsc;

use self::{
    scenario::{GameDay, GamedayScenarioError, Loaded, Step},
    timeline::{Kind, Timeline},
};
use crate::{
    cli::{GamedayArgs, RunArgs},
    config::{ConfigError, Profile},
    diag,
    dr::{DrillEnv, VeleroDrill},
    fault::{
        abort::{self, Abort},
        drain::NodeDrain,
        network::Isolate,
        pod_kill::PodKill,
        power::PowerOff,
        resolve::{self, Amount},
        scale::{ScaleToZero, WorkloadKind},
        Fault, FaultKind, FaultRun,
    },
    measure::{drill::DegradedCheck, touched::Touched},
    probe::k8s::ApiCatalog,
    progress,
    report::{self, ReportError, RunDir, ScenarioRecord, Summary},
    signal, stack, steps,
    target::{self, TargetError, TargetKind, TargetSpec},
    verdict::{self, Comparison, Criterion, Judged, RunFacts, ScenarioStatus, Verdict},
    world::{RunContext, World},
};

/// Why the game day could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum GamedayError {
    #[error(transparent)]
    Scenario(#[from] GamedayScenarioError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Profile(#[from] ConfigError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    TargetConfig(#[from] crate::target::power::TargetConfigError),
    #[error("cannot deploy the stack on the twin")]
    Stack(#[source] stack::StackError),
}

/// How a game day ended.
#[derive(Debug)]
pub struct GamedayOutcome {
    pub run_dir: RunDir,
    pub verdict: Verdict,
    pub summary: Summary,
    pub timeline: Option<PathBuf>,
}

impl GamedayOutcome {
    /// The closing lines: why not go, the criteria, where the files are.
    pub fn closing_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.verdict != Verdict::Go {
            lines.extend(self.summary.reasons.iter().map(|r| format!("- {r}")));
        }
        lines.extend(report::markdown::closing_criteria(&self.summary));
        if let Some(t) = &self.timeline {
            lines.push(format!("timeline: {}", t.display()));
        }
        lines.push(format!(
            "report: {}/{} ({}, {}, {}) verdict: {}",
            self.run_dir.path().display(),
            report::html::HTML_FILE,
            report::markdown::MARKDOWN_FILE,
            report::SUMMARY_FILE,
            report::prom::METRICS_FILE,
            self.verdict
        ));
        lines
    }
}

/// Why the steps stopped before their end.
#[derive(Debug)]
enum Stop {
    /// Ctrl-C, a "no", an abort condition: revert and exit 3.
    Aborted(String),
    /// A step failed (refused fault, missed recovery): revert, verdict no-go.
    Failed(String),
}

/// Where answers come from: stdin lines, read on a thread of their own so that a
/// pending question never blocks Ctrl-C.
struct Operator {
    yes: bool,
    lines: Option<mpsc::UnboundedReceiver<String>>,
}

impl Operator {
    fn new(yes: bool) -> Operator {
        let lines = (!yes).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                let stdin = std::io::stdin();
                let mut line = String::new();
                // EOF (nobody at the keyboard) closes the channel: that means "no".
                while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if tx.send(std::mem::take(&mut line)).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Operator { yes, lines }
    }

    /// Asks `question`; true for `y`/`yes`.
    async fn confirm(&mut self, question: &str, timeline: &Timeline) -> bool {
        timeline.record(Kind::Operator, format!("asked: {question}"));
        if self.yes {
            progress::println(&format!("{question} yes (--yes)"));
            timeline.record(Kind::Operator, "answered yes (--yes)");
            return true;
        }
        progress::println(&format!("{question} [y/N] "));
        let answer = match self.lines.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        };
        let yes = answer
            .as_deref()
            .map(|a| a.trim().to_ascii_lowercase())
            .is_some_and(|a| a == "y" || a == "yes");
        timeline.record(
            Kind::Operator,
            match &answer {
                Some(a) => format!("answered {:?}", a.trim()),
                None => "no answer (end of input): taken as no".to_owned(),
            },
        );
        yes
    }
}

/// The plan, as printed before anything runs.
pub fn plan_text(path: &Path, loaded: &Loaded, target: &str, yes: bool) -> String {
    let mut s = String::new();
    let confirm = if yes {
        "not asked (--yes)"
    } else {
        "asked before each destructive step (answer y to go on; anything else aborts)"
    };
    match loaded {
        Loaded::GameDay(g) => {
            s.push_str(&format!(
                "game day {} ({}) on {target}\n",
                g.name,
                path.display()
            ));
            if !g.description.is_empty() {
                s.push_str(&format!("  {}\n", g.description.trim()));
            }
            if g.load.rate > 0.0 {
                s.push_str(&format!(
                    "load: {} req/s on the API{}\n",
                    g.load.rate,
                    if g.load.steady_first {
                        ", steady state first"
                    } else {
                        ""
                    }
                ));
            } else {
                s.push_str("load: none\n");
            }
            s.push_str("steps:\n");
            for (i, st) in g.steps.iter().enumerate() {
                s.push_str(&format!(
                    "  {}. {}{}: {}\n",
                    i + 1,
                    st.action(),
                    if st.destructive() {
                        " [destructive]"
                    } else {
                        ""
                    },
                    st.describe()
                ));
                if st.destructive() {
                    s.push_str(&format!("     revert: {}\n", st.revert_text()));
                }
            }
            s.push_str("criteria:\n");
            let mut any = false;
            if let Some(p) = g.criteria.p99_during_ms {
                s.push_str(&format!("  p99 while degraded < {p} ms\n"));
                any = true;
            }
            if let Some(e) = g.criteria.error_rate_during_pct {
                s.push_str(&format!("  error rate while degraded < {e} %\n"));
                any = true;
            }
            for st in &g.steps {
                if let Step::Recover { within_s } = st {
                    s.push_str(&format!("  recovery (RTO) <= {within_s} s\n"));
                    any = true;
                }
            }
            if g.load.rate > 0.0 && g.load.steady_first {
                s.push_str("  a steady state before the first fault\n");
                any = true;
            }
            if !any {
                s.push_str("  none\n");
            }
            s.push_str("abort (reverts everything, exit code 3):\n  Ctrl-C or SIGTERM\n");
            if let Some(pct) = g.abort.error_rate_pct {
                s.push_str(&format!(
                    "  error rate above {pct} % for {} consecutive windows (checked before each \
                     fault and while watching)\n",
                    g.abort.windows
                ));
            }
            if g.abort.ceph_health_err {
                s.push_str("  Ceph HEALTH_ERR (watched from the first fault)\n");
            }
        }
        Loaded::Dr(d) => {
            s.push_str(&format!(
                "game day: Velero disaster-recovery drill {} ({}) on {target}\n",
                d.name,
                path.display()
            ));
            s.push_str(&format!(
                "steps:\n  1. backup: markers into {}/{}, then a Velero Backup of {}\n  \
                 2. disaster [destructive]: delete namespace(s) {}\n     revert: the restore \
                 itself (step 3); an abort after this step leaves the namespaces to restore\n  \
                 3. restore: a Velero Restore of the drill's Backup\n  4. recover: workloads \
                 Ready, the API serving /works/{}, markers checked (RTO, RPO)\n",
                d.markers.namespace,
                d.markers.pod,
                d.backup.namespaces.join(", "),
                d.disaster.namespaces.join(", "),
                d.api.work
            ));
            s.push_str("abort: Ctrl-C or SIGTERM (exit code 3)\n");
        }
    }
    s.push_str(&format!("confirmation: {confirm}\n"));
    s
}

/// What the steps share.
struct Exec<'a> {
    faults: Arc<FaultRun>,
    timeline: &'a Timeline,
    operator: &'a mut Operator,
    /// Prints health changes while the load runs.
    printer: Option<tokio::task::JoinHandle<()>>,
}

fn aborted_by_error_rate(g: &GameDay, world: &World) -> Option<String> {
    let pct = g.abort.error_rate_pct?;
    let drill = world.drill.as_ref()?;
    let windows = drill.load().windows();
    abort::error_rate_breached(&windows, pct, g.abort.windows.max(1))
}

fn note(timeline: &Timeline, kind: Kind, what: String) {
    let e = timeline.record(kind, what);
    if timeline.is_silent() {
        return;
    }
    progress::println(&format!(
        "[{}] {}: {}",
        e.at.format("%H:%M:%S%.3f"),
        e.kind.as_str(),
        e.what
    ));
}

fn workload(
    deployment: &Option<String>,
    statefulset: &Option<String>,
) -> Option<(WorkloadKind, String)> {
    match (deployment, statefulset) {
        (Some(d), _) => Some((WorkloadKind::Deployment, d.clone())),
        (None, Some(s)) => Some((WorkloadKind::StatefulSet, s.clone())),
        (None, None) => None,
    }
}

/// The step's fault, resolved to objects (the seeded RNG picks pods).
async fn build_fault(
    step: &Step,
    world: &World,
    faults: &FaultRun,
) -> Result<Box<dyn Fault>, String> {
    let client = world.client();
    let e = |e: crate::fault::FaultError| diag::one_line(&e);
    Ok(match step {
        Step::PodKill {
            deployment,
            statefulset,
            selector,
            namespace,
            count,
            percent,
            immediately,
        } => {
            let (selector, owner) = match (selector, workload(deployment, statefulset)) {
                (Some(sel), _) => {
                    let sel = resolve::selector_string(&resolve::parse_selector(sel).map_err(e)?);
                    let owner = Touched::Pods {
                        namespace: namespace.clone(),
                        selector: sel.clone(),
                    };
                    (sel, owner)
                }
                (None, Some((kind, name))) => {
                    let w = resolve::find_workload(client, kind, &name, Some(namespace))
                        .await
                        .map_err(e)?;
                    let sel = resolve::workload_selector(client, &w).await.map_err(e)?;
                    (sel, Touched::Workload(w))
                }
                (None, None) => return Err("pod-kill names no pods".into()),
            };
            let amount = match (count, percent) {
                (_, Some(p)) => Amount::Percent(*p),
                (c, None) => Amount::Count(c.unwrap_or(1)),
            };
            let mut rng = faults.rng();
            let pods = resolve::pick_pods(client, namespace, &selector, amount, &mut rng)
                .await
                .map_err(e)?;
            Box::new(PodKill {
                kind: FaultKind::PodKill,
                namespace: namespace.clone(),
                pods,
                grace_seconds: immediately.then_some(0),
                owner,
            })
        }
        Step::WorkloadOutage {
            deployment,
            statefulset,
            namespace,
        } => {
            let (kind, name) =
                workload(deployment, statefulset).ok_or("workload-outage names no workload")?;
            let workload = resolve::find_workload(client, kind, &name, Some(namespace))
                .await
                .map_err(e)?;
            Box::new(ScaleToZero {
                kind: FaultKind::WorkloadOutage,
                workload,
            })
        }
        Step::OsdDown { osd } => {
            let workload = resolve::osd_deployment(client, *osd).await.map_err(e)?;
            resolve::refuse_pool_size_one(client, &format!("OSD {osd} down"))
                .await
                .map_err(e)?;
            Box::new(ScaleToZero {
                kind: FaultKind::OsdDown,
                workload,
            })
        }
        Step::NodeDrain { node, timeout_s } => Box::new(NodeDrain {
            node: node.clone(),
            timeout: Duration::from_secs_f64(*timeout_s),
        }),
        Step::NodePowerOff { node } => {
            resolve::refuse_last_ready_node(client, node)
                .await
                .map_err(e)?;
            Box::new(PowerOff { node: node.clone() })
        }
        Step::NetworkIsolation {
            selector,
            namespace,
        } => Box::new(Isolate {
            namespace: namespace.clone(),
            labels: resolve::parse_selector(selector).map_err(e)?,
        }),
        Step::Revert | Step::Wait { .. } | Step::Recover { .. } => return Err("not a fault".into()),
    })
}

/// The steps of a game day, in order, until the end or a stop.
async fn execute(g: &GameDay, world: &mut World, x: &mut Exec<'_>) -> Result<(), Stop> {
    if g.load.rate > 0.0 {
        steps::load::start_load(world, g.load.rate)
            .await
            .map_err(|e| Stop::Failed(format!("starting the load: {}", diag::one_line(&e))))?;
        note(
            x.timeline,
            Kind::Action,
            format!("load started: {} req/s on the API", g.load.rate),
        );
        if let Some(h) = world.health.as_ref() {
            x.printer = Some(tokio::spawn(print_observations(
                h.subscribe(),
                x.timeline.clone(),
            )));
        }
        if g.load.steady_first {
            steps::load::wait_steady(world)
                .await
                .map_err(|e| Stop::Failed(format!("no steady state: {}", diag::one_line(&e))))?;
            let wait = world.measurements.get("steady_wait_s").copied();
            note(
                x.timeline,
                Kind::Observation,
                format!(
                    "steady state reached{}",
                    wait.map(|w| format!(" after {w:.1} s")).unwrap_or_default()
                ),
            );
        }
    }
    let n = g.steps.len();
    for (i, step) in g.steps.iter().enumerate() {
        let label = format!("step {}/{n} {}", i + 1, step.action());
        match step {
            Step::Revert => {
                let reports = x.faults.revert_scenario(&mut world.faults).await;
                if let Some(t) = world.drill.as_ref().map(|d| d.load().now_s()) {
                    world.measure("reverted_at_s", (t * 1000.0).round() / 1000.0);
                }
                if reports.is_empty() {
                    note(
                        x.timeline,
                        Kind::Action,
                        format!("{label}: nothing to revert"),
                    );
                }
                for r in &reports {
                    note(x.timeline, Kind::Action, format!("{label}: reverted {r}"));
                }
                if let Some(failed) = reports.iter().find(|r| r.outcome.is_err()) {
                    return Err(Stop::Failed(format!("revert failed: {failed}")));
                }
            }
            Step::Wait { seconds } => {
                note(
                    x.timeline,
                    Kind::Action,
                    format!("{label}: watching {seconds} s"),
                );
                let total = Duration::from_secs_f64(*seconds);
                let shown = progress::Wait::start(format!("{label}: watching"), Some(total));
                let started = std::time::Instant::now();
                while started.elapsed() < total {
                    if let Some(reason) = aborted_by_error_rate(g, world) {
                        return Err(Stop::Aborted(reason));
                    }
                    let left = total.saturating_sub(started.elapsed());
                    tokio::time::sleep(left.min(Duration::from_secs(1))).await;
                }
                shown.finish("done");
            }
            Step::Recover { within_s } => {
                let within = Duration::from_secs_f64(*within_s);
                let r = steps::load::wait_recovered(world, within).await;
                let rto = world.measurements.get("rto_s").copied();
                match r {
                    Ok(()) => note(
                        x.timeline,
                        Kind::Observation,
                        match rto {
                            Some(r) => format!("{label}: recovered, RTO {r:.3} s"),
                            None => format!("{label}: no impact observed"),
                        },
                    ),
                    Err(e) => {
                        let msg = diag::one_line(&e);
                        note(x.timeline, Kind::Observation, format!("{label}: {msg}"));
                        return Err(Stop::Failed(msg));
                    }
                }
            }
            _ => {
                let fault = build_fault(step, world, &x.faults)
                    .await
                    .map_err(|e| Stop::Failed(format!("{label}: {e}")))?;
                let plan = fault
                    .plan(x.faults.ctx())
                    .await
                    .map_err(|e| Stop::Failed(format!("{label}: {}", diag::one_line(&e))))?;
                let question = format!(
                    "{label}: {} (revert: {}). Apply?",
                    plan.action,
                    plan.revert.describe()
                );
                if !x.operator.confirm(&question, x.timeline).await {
                    return Err(Stop::Aborted(format!(
                        "the operator did not confirm {label}"
                    )));
                }
                if let Some(reason) = aborted_by_error_rate(g, world) {
                    x.faults.abort().trigger(reason.clone());
                    return Err(Stop::Aborted(reason));
                }
                // The degraded period starts with the first fault: its checks are
                // registered then, so a game day stopped before any fault judges none.
                if world.drill.as_ref().is_some_and(|d| d.t0_s().is_none()) {
                    for check in [
                        g.criteria.p99_during_ms.map(DegradedCheck::P99Below),
                        g.criteria
                            .error_rate_during_pct
                            .map(DegradedCheck::ErrorRateBelow),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        steps::load::check_degraded(world, check)
                            .map_err(|e| Stop::Failed(diag::one_line(&e)))?;
                    }
                }
                steps::load::watch_touched(world, fault.as_ref());
                let injected = x
                    .faults
                    .inject(&mut world.faults, fault.as_ref())
                    .await
                    .map_err(|e| Stop::Failed(format!("{label}: {}", diag::one_line(&e))))?;
                let ack = injected.acknowledged - injected.asked;
                if let Some(drill) = world.drill.as_mut() {
                    let t0 = drill.fault_started(injected.acknowledged);
                    if !world.measurements.contains_key("t0_s") {
                        world.measure("t0_s", (t0 * 1000.0).round() / 1000.0);
                    }
                }
                world.measure("fault_ack_ms", (ack.as_secs_f64() * 1e6).round() / 1000.0);
                note(
                    x.timeline,
                    Kind::Action,
                    format!(
                        "{label}: applied: {} (acknowledged in {:.0} ms)",
                        plan.action,
                        ack.as_secs_f64() * 1000.0
                    ),
                );
            }
        }
    }
    Ok(())
}

/// A DR drill as a game day: backup, disaster (confirmed), restore, recovery.
async fn execute_dr(
    world: &mut World,
    drill: &mut VeleroDrill,
    x: &mut Exec<'_>,
) -> Result<(), Stop> {
    let failed = |what: &str, e: crate::dr::DrillError| {
        Stop::Failed(format!("{what}: {}", diag::one_line(&e)))
    };
    drill.backup().await.map_err(|e| failed("backup", e))?;
    if let Some(b) = &drill.backup {
        note(
            x.timeline,
            Kind::Observation,
            format!("Backup {} completed in {:.1} s", b.name, b.duration_s()),
        );
        world.measure("backup_s", (b.duration_s() * 1000.0).round() / 1000.0);
    }
    let question = format!(
        "step 2/4 disaster: delete namespace(s) {} (revert: the restore, step 3). Apply?",
        drill.scenario.disaster.namespaces.join(", ")
    );
    if !x.operator.confirm(&question, x.timeline).await {
        return Err(Stop::Aborted(
            "the operator did not confirm the disaster".into(),
        ));
    }
    drill
        .disaster(x.faults.abort().reason())
        .await
        .map_err(|e| failed("disaster", e))?;
    note(
        x.timeline,
        Kind::Action,
        "disaster: namespaces deleted".into(),
    );
    drill.restore().await.map_err(|e| failed("restore", e))?;
    note(x.timeline, Kind::Action, "restore completed".into());
    let r = drill
        .recover(None)
        .await
        .map_err(|e| failed("recovery", e))?
        .clone();
    world.measure("rto_s", (r.rto_s * 1000.0).round() / 1000.0);
    if let Some(rpo) = r.rpo_s {
        world.measure("rpo_s", (rpo * 1000.0).round() / 1000.0);
    }
    // Limits from the acceptance profile (dr.*), as the DR feature judges them.
    let limit = |key: &str| world.context().profile.as_ref().and_then(|p| p.number(key));
    let mut judged = Vec::new();
    if let Some(t) = limit("dr.rto_s") {
        judged.push(
            Criterion::new("rto_s", r.rto_s, Comparison::AtMost, t, "s")
                .with_source("profile dr.rto_s"),
        );
    }
    if let Some(t) = limit("dr.rpo_s") {
        let mut c = Criterion::new(
            "rpo_s",
            r.rpo_s.unwrap_or(f64::NAN),
            Comparison::AtMost,
            t,
            "s",
        )
        .with_source("profile dr.rpo_s");
        // No surviving marker: the RPO is unknown, which is not within any limit.
        c.pass = c.pass && r.rpo_s.is_some();
        judged.push(c);
    }
    judged.push(Criterion::new(
        "markers_lost_before_backup",
        r.markers.lost_before_backup as f64,
        Comparison::AtMost,
        limit("dr.markers_lost_before_backup").unwrap_or(0.0),
        "markers",
    ));
    for c in judged {
        world.judge(c);
    }
    note(
        x.timeline,
        Kind::Observation,
        format!(
            "recovered: RTO {:.1} s, RPO {}",
            r.rto_s,
            r.rpo_s.map_or("unknown".into(), |v| format!("{v:.1} s"))
        ),
    );
    Ok(())
}

/// Runs scenario `name` (as `stormdrill gameday` finds it) inside a feature's
/// scenario: no questions (a feature is unattended), its faults in the World's
/// journal (the runner's after hook reverts what is left), its figures and criteria
/// the scenario's, and its timeline in `<run>/gameday-<name>.md`.
pub async fn run_in_world(world: &mut World, name: &str) -> Result<(), String> {
    let (path, loaded) = scenario::load(name).map_err(|e| diag::one_line(&e))?;
    let timeline = Timeline::silent();
    timeline.record(
        Kind::Operator,
        format!("run from a feature: {}", path.display()),
    );
    let mut operator = Operator::new(true);
    let mut x = Exec {
        faults: world.context().faults.clone(),
        timeline: &timeline,
        operator: &mut operator,
        printer: None,
    };
    let result = match &loaded {
        Loaded::GameDay(g) => execute(g, world, &mut x).await,
        Loaded::Dr(d) => {
            let ctx = world.context();
            let env = DrillEnv {
                client: ctx.client.clone(),
                run_id: ctx
                    .run_dir
                    .as_ref()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "gameday".into()),
                target: ctx.target.clone(),
                run_dir: ctx.run_dir.clone(),
                dry_run: ctx.faults.dry_run(),
            };
            let mut drill = VeleroDrill::new(env, (**d).clone());
            let r = execute_dr(world, &mut drill, &mut x).await;
            drill.abandon().await;
            r
        }
    };
    if let Some(p) = x.printer.take() {
        p.abort();
    }
    let title = match &loaded {
        Loaded::GameDay(g) => g.name.clone(),
        Loaded::Dr(d) => d.name.clone(),
    };
    if let Some(dir) = world.context().run_dir.clone() {
        let file = dir.join(format!("gameday-{title}.md"));
        if let Err(e) = std::fs::write(&file, timeline.render(&title)) {
            tracing::warn!(error = %e, "cannot write {}", file.display());
        }
    }
    match result {
        Ok(()) => Ok(()),
        Err(Stop::Aborted(r) | Stop::Failed(r)) => Err(r),
    }
}

/// Runs a game day; the future is not `Send` (like [`crate::run`]).
pub async fn run(args: GamedayArgs) -> Result<GamedayOutcome, GamedayError> {
    // From the very start a Ctrl-C stops the game day instead of killing the process.
    let interrupted = Abort::default();
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            signal::shutdown_signal().await;
            interrupted.trigger("interrupted (Ctrl-C or SIGTERM)");
        });
    }
    let started = Utc::now();
    let (path, loaded) = scenario::load(&args.scenario)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| report::new_run_id(started));
    let run_dir = RunDir::new(&args.report_dir, &run_id)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let profile =
        crate::config::threshold::profile_path(args.profile.as_deref(), args.target, &cwd)
            .as_deref()
            .map(Profile::load)
            .transpose()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let spec = TargetSpec {
        kind: args.target,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        seed,
        timing: args.timing,
        ..Default::default()
    };
    spec.validate()?;
    let target_config = match &args.target_config {
        Some(p) => crate::target::power::TargetConfig::load(p)?,
        None => Default::default(),
    };
    run_dir.create()?;
    let timeline = Timeline::default();
    let plan = plan_text(&path, &loaded, args.target.as_str(), args.yes);
    print!("{plan}");
    timeline.record(
        Kind::Operator,
        format!("plan shown: {}", plan.lines().next().unwrap_or_default()),
    );
    let name = match &loaded {
        Loaded::GameDay(g) => g.name.clone(),
        Loaded::Dr(d) => d.name.clone(),
    };

    let connected = tokio::select! {
        c = target::connect(&spec) => c?,
        reason = interrupted.triggered() => {
            return Ok(finish_early(run_dir, &timeline, &name, &args, started, seed, profile.as_ref(), reason));
        }
    };
    note(
        &timeline,
        Kind::Observation,
        format!(
            "connected to {} {} ({})",
            connected.name(),
            connected.server(),
            connected.version()
        ),
    );
    if connected.kind() == TargetKind::Twin {
        // The twin starts bare; a game day is about the documented stack.
        let shown = progress::Wait::start(
            "the stack to be deployed on the twin",
            Some(Duration::from_secs(120)),
        );
        let deployed = tokio::select! {
            r = stack::deploy(connected.client(), &args.stack, Duration::from_secs(120), |l| shown.status(l)) => Some(r),
            _ = interrupted.triggered() => None,
        };
        drop(shown);
        match deployed {
            Some(r) => {
                let r = r.map_err(GamedayError::Stack)?;
                note(
                    &timeline,
                    Kind::Action,
                    format!(
                        "stack deployed on the twin: {} objects, {} not ready",
                        r.applied,
                        r.not_ready.len()
                    ),
                );
            }
            None => {
                connected.close().await;
                return Ok(finish_early(
                    run_dir,
                    &timeline,
                    &name,
                    &args,
                    started,
                    seed,
                    profile.as_ref(),
                    "interrupted (Ctrl-C or SIGTERM)".into(),
                ));
            }
        }
    }

    let run_args = RunArgs {
        allow_destructive: args.allow_destructive,
        ..Default::default()
    };
    let faults = Arc::new(crate::fault::for_run(
        &connected,
        &target_config,
        &run_args,
        seed,
        run_dir.path(),
        &run_id,
    ));
    let profile_label = profile.as_ref().map(report::profile_name);
    let ctx = Arc::new(RunContext {
        client: connected.client().clone(),
        target: connected.name().to_owned(),
        seed,
        profile,
        catalog: ApiCatalog::default(),
        api: connected.api_endpoint().await,
        run_dir: Some(run_dir.path().to_owned()),
        stack_dir: args.stack.clone(),
        faults: faults.clone(),
    });
    let mut world = World::with_context(ctx);
    let mut operator = Operator::new(args.yes);
    let mut dr = match &loaded {
        Loaded::Dr(d) => Some(VeleroDrill::new(
            DrillEnv {
                client: connected.client().clone(),
                run_id: run_id.clone(),
                target: connected.name().to_owned(),
                run_dir: Some(run_dir.path().to_owned()),
                dry_run: false,
            },
            (**d).clone(),
        )),
        Loaded::GameDay(_) => None,
    };

    let mut x = Exec {
        faults: faults.clone(),
        timeline: &timeline,
        operator: &mut operator,
        printer: None,
    };
    let stop = {
        let steps = async {
            match (&loaded, dr.as_mut()) {
                (Loaded::GameDay(g), _) => execute(g, &mut world, &mut x).await,
                (Loaded::Dr(_), Some(d)) => execute_dr(&mut world, d, &mut x).await,
                (Loaded::Dr(_), None) => Ok(()),
            }
        };
        tokio::select! {
            r = steps => r.err(),
            reason = interrupted.triggered() => Some(Stop::Aborted(reason)),
            reason = faults.abort().triggered() => Some(Stop::Aborted(reason)),
        }
    };

    // Put back what is injected, whatever happened: the journal knows it all.
    let aborted = matches!(stop, Some(Stop::Aborted(_)));
    match &stop {
        Some(Stop::Aborted(r)) => note(&timeline, Kind::Abort, format!("aborting: {r}")),
        Some(Stop::Failed(r)) => note(&timeline, Kind::Observation, format!("stopped: {r}")),
        None => {}
    }
    let reports = faults
        .sweep(if aborted { "abort" } else { "gameday-end" })
        .await;
    for r in &reports {
        timeline.record(Kind::Action, format!("reverted {r}"));
    }
    if let Some(d) = dr.as_mut() {
        if aborted && d.disaster.is_some() && d.restore.is_none() {
            note(
                &timeline,
                Kind::Abort,
                format!(
                    "the disaster happened and was not restored: restore Backup {} with Velero",
                    d.backup.as_ref().map_or("?", |b| b.name.as_str())
                ),
            );
        }
        d.abandon().await;
        if let Err(e) = d.write_report() {
            tracing::warn!(error = %diag::one_line(&e), "cannot write the drill's report");
        }
    }
    steps::load::finish(&mut world).await;
    if let Some(p) = x.printer.take() {
        p.abort();
    }
    note(&timeline, Kind::Observation, "game day over".into());
    connected.close().await;

    let status = match &stop {
        None => ScenarioStatus::Passed,
        Some(_) => ScenarioStatus::Failed,
    };
    let shown_path = path
        .strip_prefix(&cwd)
        .unwrap_or(&path)
        .display()
        .to_string();
    let record = ScenarioRecord {
        feature: shown_path,
        line: 1,
        name: name.clone(),
        tags: vec!["@gameday".into()],
        status,
        measurements: world.measurements.clone(),
        criteria: world.criteria.clone(),
        message: match &stop {
            Some(Stop::Aborted(r) | Stop::Failed(r)) => Some(r.clone()),
            None => None,
        },
        timeline: world.timeline_file.clone(),
        health: world
            .health
            .as_ref()
            .and_then(|h| h.file())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let decision = verdict::decide(
        [Judged {
            name: &record.name,
            status: record.status,
            criteria: &record.criteria,
        }],
        RunFacts {
            parsing_errors: 0,
            hook_errors: 0,
            aborted,
            ..RunFacts::default()
        },
    );
    let mut summary = Summary {
        schema: report::SCHEMA.to_owned(),
        run_id,
        target: connected_name(args.target),
        started,
        finished: Utc::now().max(started),
        verdict: decision.verdict,
        reasons: decision.reasons,
        seed,
        error: None,
        profile: profile_label,
        harness: Some(report::harness_description()),
        scenarios: vec![record],
    };
    if let Some(Stop::Aborted(r) | Stop::Failed(r)) = &stop {
        summary.reasons.push(r.clone());
    }
    // As in `stormdrill run`: a refused fault means the game day could not run.
    faults.stop_if_refused();
    if let Some(reason) = faults.refused().reason() {
        summary.verdict = Verdict::Error;
        summary
            .reasons
            .insert(0, format!("a destructive fault was refused: {reason}"));
    }
    run_dir.write_summary(&summary)?;
    report::html::write_readable(&run_dir, &summary);
    let timeline_path = match timeline.write(run_dir.path(), &name) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %diag::one_line(&e), "cannot write timeline.md");
            None
        }
    };
    Ok(GamedayOutcome {
        run_dir,
        verdict: summary.verdict,
        summary,
        timeline: timeline_path,
    })
}

fn connected_name(kind: TargetKind) -> String {
    kind.as_str().to_owned()
}

/// Prints each lane change and records it.
async fn print_observations(
    mut rx: tokio::sync::broadcast::Receiver<crate::measure::health::LaneSample>,
    timeline: Timeline,
) {
    loop {
        match rx.recv().await {
            Ok(s) => note(
                &timeline,
                Kind::Observation,
                format!("{}: {} ({:.1} s into the load)", s.lane, s.detail, s.t_s),
            ),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                timeline.record(
                    Kind::Observation,
                    format!("{n} health changes not shown (too many at once)"),
                );
            }
            Err(_) => return,
        }
    }
}

/// A game day stopped before it touched anything.
#[allow(clippy::too_many_arguments)]
fn finish_early(
    run_dir: RunDir,
    timeline: &Timeline,
    name: &str,
    args: &GamedayArgs,
    started: chrono::DateTime<Utc>,
    seed: u64,
    profile: Option<&Profile>,
    reason: String,
) -> GamedayOutcome {
    note(
        timeline,
        Kind::Abort,
        format!("aborting: {reason}; nothing was injected"),
    );
    let summary = Summary {
        schema: report::SCHEMA.to_owned(),
        run_id: run_dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        target: connected_name(args.target),
        started,
        finished: Utc::now().max(started),
        verdict: Verdict::Aborted,
        reasons: vec![reason],
        seed,
        error: None,
        profile: profile.map(report::profile_name),
        harness: Some(report::harness_description()),
        scenarios: Vec::new(),
    };
    if let Err(e) = run_dir.write_summary(&summary) {
        tracing::warn!(error = %diag::one_line(&e), "cannot write summary.json");
    }
    report::html::write_readable(&run_dir, &summary);
    let timeline_path = timeline.write(run_dir.path(), name).ok();
    GamedayOutcome {
        run_dir,
        verdict: Verdict::Aborted,
        summary,
        timeline: timeline_path,
    }
}
