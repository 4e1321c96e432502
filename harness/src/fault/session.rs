//! Injecting and reverting: the order that keeps every fault undoable.
//!
//! [`FaultRun::inject`]: abort check -> guard -> plan (resolves and reads prior state)
//! -> dry run stops here and prints the plan -> revert record appended to the journal
//! and fsync'd -> recorded in the scenario -> apply. A fault whose apply fails halfway
//! (a drain that cordoned, then got blocked) stays recorded, so it is reverted too.
//!
//! Reverts run newest first: at scenario end (the runner's after hook, which cucumber
//! also runs after a failed or panicking step), at run end and on Ctrl-C/SIGTERM/abort
//! from the journal itself ([`FaultRun::revert_pending`]), and in a later process by
//! `stormdrill recover` ([`recover`]).

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use kube::Client;
use rand::{rngs::StdRng, SeedableRng as _};

use super::{
    abort::{self, Abort},
    guard::{self, AllowList, Policy},
    journal::{Contents, Journal, JournalError, RunHeader, JOURNAL_FILE},
    plan, Fault, FaultCtx, FaultError, FaultKind, Plan, Revert, Reverted,
};
use crate::{diag, target::power::NodePower};

/// One revert's bound; Ceph commands and API calls have their own, shorter ones.
const REVERT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct FaultRunOptions {
    pub client: Client,
    pub power: Arc<dyn NodePower>,
    pub policy: Policy,
    pub dry_run: bool,
    pub seed: u64,
    /// The run's report folder: journal.jsonl and plan.txt go there. Without one,
    /// faults are refused (a fault must be journalled before it is applied).
    pub run_dir: Option<PathBuf>,
    pub header: RunHeader,
}

/// The faults of one run: shared by its scenarios.
pub struct FaultRun {
    ctx: FaultCtx,
    policy: Policy,
    dry_run: bool,
    seed: u64,
    run_dir: Option<PathBuf>,
    journal: Option<Journal>,
    abort: Abort,
    /// The guard's first refusal, until the scenario that met it has been recorded.
    refusal: Mutex<Option<String>>,
    /// Triggered once that scenario is recorded: the run stops, verdict error.
    refused: Abort,
    picks: AtomicU64,
    monitor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for FaultRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultRun")
            .field("policy", &self.policy)
            .field("dry_run", &self.dry_run)
            .field("journal", &self.journal.as_ref().map(Journal::path))
            .finish_non_exhaustive()
    }
}

impl Drop for FaultRun {
    fn drop(&mut self) {
        if let Some(h) = self
            .monitor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

/// A fault this scenario injected and has not reverted yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Active {
    pub seq: u64,
    pub kind: FaultKind,
    pub revert: Revert,
}

/// The World's part: what the scenario injected, for its after hook.
#[derive(Debug, Default)]
pub struct ScenarioFaults {
    active: Vec<Active>,
}

impl ScenarioFaults {
    pub fn active(&self) -> &[Active] {
        &self.active
    }
}

/// A fault as injected (or, in a dry run, planned).
#[derive(Debug)]
pub struct Injected {
    pub plan: Plan,
    /// Journal seq; None in a dry run.
    pub seq: Option<u64>,
    /// When apply was called.
    pub asked: Instant,
    /// When the API server (or provider) acknowledged it: the fault's t0.
    pub acknowledged: Instant,
}

/// One revert, for reports.
#[derive(Clone, Debug)]
pub struct RevertReport {
    pub seq: u64,
    pub kind: FaultKind,
    pub what: String,
    pub outcome: Result<Reverted, String>,
    pub elapsed: Duration,
}

impl std::fmt::Display for RevertReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(r) => write!(
                f,
                "#{} {}: {} ({}, {:.0} ms)",
                self.seq,
                self.kind,
                self.what,
                r.as_str(),
                self.elapsed.as_secs_f64() * 1000.0
            ),
            Err(e) => write!(f, "#{} {}: {} FAILED: {e}", self.seq, self.kind, self.what),
        }
    }
}

/// Runs one revert within [`REVERT_TIMEOUT`] and marks it done when it succeeded.
async fn revert_one(
    ctx: &FaultCtx,
    journal: Option<&Journal>,
    seq: u64,
    kind: FaultKind,
    revert: &Revert,
    by: &str,
) -> RevertReport {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(REVERT_TIMEOUT, revert.run(ctx)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(diag::one_line(&e)),
        Err(_) => Err(format!(
            "did not finish within {}s",
            REVERT_TIMEOUT.as_secs()
        )),
    };
    let mut outcome = outcome;
    if let (Ok(r), Some(j)) = (&outcome, journal) {
        if let Err(e) = j.mark_done(seq, *r, by) {
            outcome = Err(format!("reverted, but {}", diag::one_line(&e)));
        }
    }
    RevertReport {
        seq,
        kind,
        what: revert.describe(),
        outcome,
        elapsed: started.elapsed(),
    }
}

impl FaultRun {
    pub fn new(o: FaultRunOptions) -> FaultRun {
        let journal = o
            .run_dir
            .as_ref()
            .map(|d| Journal::new(d.join(JOURNAL_FILE), o.header.clone()));
        FaultRun {
            ctx: FaultCtx {
                client: o.client,
                power: o.power,
            },
            policy: o.policy,
            dry_run: o.dry_run,
            seed: o.seed,
            run_dir: o.run_dir,
            journal,
            abort: Abort::default(),
            refusal: Mutex::new(None),
            refused: Abort::default(),
            picks: AtomicU64::new(0),
            monitor: Mutex::new(None),
        }
    }

    pub fn ctx(&self) -> &FaultCtx {
        &self.ctx
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn abort(&self) -> &Abort {
        &self.abort
    }

    /// Triggered with the guard's refusal once the scenario that met it is recorded
    /// ([`Self::stop_if_refused`]): a run that may not inject its faults cannot judge
    /// them, so the rest of it is skipped and it could not run (exit 2).
    pub fn refused(&self) -> &Abort {
        &self.refused
    }

    /// Called when a scenario's record is written: stops the run after a refusal.
    pub fn stop_if_refused(&self) {
        let pending = self
            .refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(reason) = pending {
            self.refused.trigger(reason);
        }
    }

    pub fn journal_path(&self) -> Option<&Path> {
        self.journal.as_ref().map(Journal::path)
    }

    /// An RNG for one random choice: the run's seed and the choice's rank, so a run
    /// replayed with its seed picks the same targets (fault scenarios run serially).
    pub fn rng(&self) -> StdRng {
        let n = self.picks.fetch_add(1, Ordering::Relaxed);
        StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Guard, plan, journal, apply; see the module doc.
    pub async fn inject(
        &self,
        scenario: &mut ScenarioFaults,
        fault: &dyn Fault,
    ) -> Result<Injected, FaultError> {
        if let Some(reason) = self.abort.reason() {
            return Err(FaultError::Aborting(reason));
        }
        let kind = fault.kind();
        if let Policy::OptIn { .. } = self.policy {
            let allow = AllowList::load(&self.ctx.client).await?;
            if let Err(why) = guard::check(
                self.policy,
                allow.as_ref(),
                kind,
                &fault.namespaces(),
                self.dry_run,
            ) {
                let mut first = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() && self.refused.reason().is_none() {
                    *first = Some(why.clone());
                }
                return Err(FaultError::Refused(why));
            }
        }
        if !self.dry_run {
            if let Some(reason) = abort::check_ceph(&self.ctx.client).await {
                self.abort.trigger(reason.clone());
                return Err(FaultError::Aborting(reason));
            }
        }
        let plan = fault.plan(&self.ctx).await?;
        if self.dry_run {
            plan::publish(&plan, self.run_dir.as_deref());
            let now = Instant::now();
            return Ok(Injected {
                plan,
                seq: None,
                asked: now,
                acknowledged: now,
            });
        }
        let journal = self.journal.as_ref().ok_or_else(|| {
            FaultError::Refused(
                "faults need a run folder for their journal (write-ahead revert records)".into(),
            )
        })?;
        let seq = journal.append_apply(kind, &plan.action, &plan.revert)?;
        // Recorded before apply: a step that fails or panics halfway is still undone.
        scenario.active.push(Active {
            seq,
            kind,
            revert: plan.revert.clone(),
        });
        self.start_monitor();
        let asked = Instant::now();
        let revert = fault.apply(&self.ctx, &plan).await?;
        let acknowledged = Instant::now();
        if revert != plan.revert {
            journal.append_update(seq, &revert)?;
            if let Some(a) = scenario.active.iter_mut().find(|a| a.seq == seq) {
                a.revert = revert;
            }
        }
        Ok(Injected {
            plan,
            seq: Some(seq),
            asked,
            acknowledged,
        })
    }

    /// Watches Ceph's health from the first fault on.
    fn start_monitor(&self) {
        let mut m = self.monitor.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_none() {
            *m = Some(tokio::spawn(abort::watch_ceph(
                self.ctx.client.clone(),
                self.abort.clone(),
            )));
        }
    }

    /// Reverts the scenario's faults that `pred` selects, newest first; they leave the
    /// scenario whatever the outcome (a failed one stays pending in the journal).
    pub async fn revert_where(
        &self,
        scenario: &mut ScenarioFaults,
        pred: impl Fn(&Revert) -> bool,
        by: &str,
    ) -> Vec<RevertReport> {
        let (chosen, kept): (Vec<Active>, Vec<Active>) =
            scenario.active.drain(..).partition(|a| pred(&a.revert));
        scenario.active = kept;
        let mut reports = Vec::new();
        for a in chosen.iter().rev() {
            let r = revert_one(
                &self.ctx,
                self.journal.as_ref(),
                a.seq,
                a.kind,
                &a.revert,
                by,
            )
            .await;
            log_report(&r);
            reports.push(r);
        }
        reports
    }

    /// Scenario end: every fault the scenario injected.
    pub async fn revert_scenario(&self, scenario: &mut ScenarioFaults) -> Vec<RevertReport> {
        self.revert_where(scenario, |_| true, "scenario").await
    }

    /// Every revert the journal still holds (run end, signal, abort): what a
    /// scenario could not revert, or never got to because it was dropped.
    pub async fn revert_pending(&self, by: &str) -> Result<Vec<RevertReport>, JournalError> {
        let Some(journal) = &self.journal else {
            return Ok(Vec::new());
        };
        if !journal.started() {
            return Ok(Vec::new());
        }
        let contents = journal.contents()?;
        Ok(replay(&self.ctx, journal, &contents, by).await)
    }
}

fn log_report(r: &RevertReport) {
    match &r.outcome {
        Ok(_) => tracing::info!("reverted {r}"),
        Err(_) => tracing::warn!("revert {r}"),
    }
}

async fn replay(
    ctx: &FaultCtx,
    journal: &Journal,
    contents: &Contents,
    by: &str,
) -> Vec<RevertReport> {
    let mut reports = Vec::new();
    for e in contents.pending() {
        let r = revert_one(ctx, Some(journal), e.seq, e.fault, &e.revert, by).await;
        log_report(&r);
        reports.push(r);
    }
    reports
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "journal {path} was written against {journal_server}, but the kubeconfig points at \
         {server}: refusing to replay its reverts on another cluster"
    )]
    OtherCluster {
        path: PathBuf,
        journal_server: String,
        server: String,
    },
}

/// What `stormdrill recover` did.
#[derive(Debug)]
pub struct Recovered {
    pub journal: PathBuf,
    pub header: Option<RunHeader>,
    /// Entries already marked done.
    pub already_done: usize,
    pub reports: Vec<RevertReport>,
    /// Set when nothing could be done, and why.
    pub note: Option<String>,
}

impl Recovered {
    pub fn all_reverted(&self) -> bool {
        self.reports.iter().all(|r| r.outcome.is_ok())
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("journal: {}", self.journal.display())];
        if let Some(h) = &self.header {
            out.push(format!("run {} on {} ({})", h.run_id, h.target, h.server));
        }
        if let Some(note) = &self.note {
            out.push(note.clone());
        }
        out.extend(self.reports.iter().map(|r| match r.outcome {
            Ok(_) => format!("reverted {r}"),
            Err(_) => format!("not reverted {r}"),
        }));
        let failed = self.reports.iter().filter(|r| r.outcome.is_err()).count();
        out.push(format!(
            "{} reverted, {failed} failed, {} were already done",
            self.reports.len() - failed,
            self.already_done
        ));
        out
    }
}

/// Replays every revert of `path` not marked done, newest first, marking each done.
/// `server` is the API server the client talks to: a journal written against
/// another one is refused, so a stale journal cannot touch the wrong cluster.
pub async fn recover(path: &Path, ctx: &FaultCtx, server: &str) -> Result<Recovered, RecoverError> {
    let (journal, contents) = Journal::reopen(path)?;
    let already_done = contents.entries.iter().filter(|e| e.done).count();
    let mut out = Recovered {
        journal: path.to_owned(),
        header: contents.header.clone(),
        already_done,
        reports: Vec::new(),
        note: None,
    };
    if contents.pending().is_empty() {
        out.note = Some("nothing to recover".to_owned());
        return Ok(out);
    }
    if let Some(h) = &contents.header {
        if h.target == "twin" {
            out.note = Some(
                "this run used the embedded twin, which ended with its process: nothing is \
                 left to recover"
                    .to_owned(),
            );
            return Ok(out);
        }
        let norm = |s: &str| s.trim_end_matches('/').to_owned();
        if !h.server.is_empty() && norm(&h.server) != norm(server) {
            return Err(RecoverError::OtherCluster {
                path: path.to_owned(),
                journal_server: h.server.clone(),
                server: server.to_owned(),
            });
        }
    }
    out.reports = replay(ctx, &journal, &contents, "recover").await;
    Ok(out)
}

impl FaultRun {
    /// Run end, signal or abort: reverts what the journal still holds and prints what
    /// it did and how long it took (the time the cluster stayed faulted after the run).
    pub async fn sweep(&self, by: &str) -> Vec<RevertReport> {
        let started = Instant::now();
        match self.revert_pending(by).await {
            Ok(reports) => {
                if !reports.is_empty() {
                    for r in &reports {
                        match r.outcome {
                            Ok(_) => println!("reverted {r}"),
                            Err(_) => println!("not reverted {r}"),
                        }
                    }
                    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
                    println!(
                        "{} fault(s) left injected were reverted in {:.0} ms{}",
                        reports.len() - failed,
                        started.elapsed().as_secs_f64() * 1000.0,
                        if failed > 0 {
                            format!(
                                "; {failed} failed: run `stormdrill recover {}`",
                                self.journal_path()
                                    .map_or(String::new(), |p| p.display().to_string())
                            )
                        } else {
                            String::new()
                        }
                    );
                }
                reports
            }
            Err(e) => {
                println!(
                    "cannot read the fault journal to revert what is left: {}",
                    diag::one_line(&e)
                );
                Vec::new()
            }
        }
    }
}
