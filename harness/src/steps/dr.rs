//! Disaster-recovery steps: thin glue over [`crate::dr`]. A drill's parameters come
//! from `Given the drill scenario "scenarios/velero-dr.yaml"` (else the built-in
//! defaults, the same file's); each `When` runs one phase; `Then` steps judge.
//!
//! Measurements: `backup_s`, `restore_s`, `rto_s`, `rpo_s`, `markers_lost_before_backup`
//! and the drill's other figures (`drill.json` in `reports/<run>/dr-<name>/`).
//! Limits are written inline (`30 minutes`) or named from the acceptance profile
//! (`the profile's dr.restore_s`, see [`super::checks`]). Profile key
//! `dr.schedule_backup_wait_s` (60): how long the schedule check waits for a backup
//! still in progress.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chrono::Utc;
use cucumber::{gherkin::Step, given, then, when};

use super::{
    checks::{self, CheckError, Unit},
    limit::{Limit, LongDurationLimit, StepDuration},
};
use crate::{
    diag,
    dr::{
        drill::{DrillEnv, DrillError, VeleroDrill},
        scenario::{self, DrScenario, ScenarioError},
        schedule::{self, Expected},
        velero::{self, Poll, ScheduleFacts, Status, VeleroError},
    },
    verdict::{Comparison, Criterion},
    world::World,
};

const SCHEDULE_BACKUP_WAIT_S: f64 = 60.0;

#[derive(Debug, thiserror::Error)]
pub enum DrStepError {
    #[error("{}{}", diag::one_line(.source), dump_note(.dump))]
    Drill {
        #[source]
        source: Box<DrillError>,
        /// The drill's report folder, with the failure dump.
        dump: Option<PathBuf>,
    },
    #[error("{}", diag::one_line(.0))]
    Scenario(#[from] ScenarioError),
    #[error("{}", diag::one_line(.0))]
    Velero(#[from] VeleroError),
    #[error("{}", diag::one_line(.0))]
    Check(Box<CheckError>),
    #[error("{0}")]
    Order(String),
    #[error("invalid table: {0}")]
    Table(String),
    #[error("expected {expected}, but {seen}")]
    Unmet { expected: String, seen: String },
}

impl From<CheckError> for DrStepError {
    fn from(e: CheckError) -> Self {
        DrStepError::Check(Box::new(e))
    }
}

fn dump_note(dump: &Option<PathBuf>) -> String {
    dump.as_ref()
        .map(|d| format!(" (details in {})", d.display()))
        .unwrap_or_default()
}

fn env(world: &World) -> DrillEnv {
    let ctx = world.context();
    DrillEnv {
        client: ctx.client.clone(),
        run_id: ctx
            .run_dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| Utc::now().format("%Y%m%dT%H%M%SZ").to_string()),
        target: ctx.target.clone(),
        run_dir: ctx.run_dir.clone(),
        dry_run: ctx.faults.dry_run(),
    }
}

/// The scenario's drill, taken out of the World for the step (put back with
/// [`put`]); a new one with the default scenario when none was named.
fn take(world: &mut World) -> VeleroDrill {
    world
        .dr
        .take()
        .unwrap_or_else(|| VeleroDrill::new(env(world), DrScenario::default()))
}

fn put(world: &mut World, drill: VeleroDrill) {
    world.dr = Some(drill);
}

fn dry_run(world: &World) -> bool {
    world.context().faults.dry_run()
}

/// A failed phase ends the drill: the dump, the markers stopped, the step's error.
async fn failed(drill: &mut VeleroDrill, e: DrillError) -> DrStepError {
    let dump = drill.dump(&diag::one_line(&e)).await;
    drill.abandon().await;
    DrStepError::Drill {
        source: Box::new(e),
        dump,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[given(regex = r#"^the drill scenario "([^"]+)"$"#)]
async fn drill_scenario(world: &mut World, path: String) -> Result<(), DrStepError> {
    if world
        .dr
        .as_ref()
        .is_some_and(|d| d.markers_running() || d.backup.is_some())
    {
        return Err(DrStepError::Order(
            "the drill has started already: name its scenario first".into(),
        ));
    }
    let stack_dir = world.context().stack_dir.clone();
    let resolved = scenario::resolve(Path::new(&path), Some(&stack_dir))?;
    let s = DrScenario::load(&resolved)?;
    world.dr = Some(VeleroDrill::new(env(world), s));
    Ok(())
}

#[given(
    regex = r"^markers are being written(?: every (\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)))?$"
)]
async fn markers_written(world: &mut World, every: String) -> Result<(), DrStepError> {
    let interval = if every.is_empty() {
        None
    } else {
        Some(
            every
                .parse::<StepDuration>()
                .map_err(DrStepError::Order)?
                .0
                .max(Duration::from_millis(10)),
        )
    };
    let mut drill = take(world);
    let r = drill.start_markers(interval).await;
    let r = match r {
        Ok(()) => Ok(()),
        Err(e) => Err(failed(&mut drill, e).await),
    };
    put(world, drill);
    r
}

#[when(regex = r"^a Velero backup of the drill's namespaces completes$")]
async fn backup_completes(world: &mut World) -> Result<(), DrStepError> {
    let mut drill = take(world);
    let r = match drill.backup().await {
        Ok(b) => {
            let b = b.clone();
            world.measure("backup_s", round3(b.duration_s()));
            world.measure("backup_items", b.status.items_done.unwrap_or(0) as f64);
            world.measure("backup_warnings", b.status.warnings as f64);
            Ok(())
        }
        Err(DrillError::DryRun) => Ok(()),
        Err(e) => Err(failed(&mut drill, e).await),
    };
    put(world, drill);
    r
}

#[when(regex = r"^the drill's namespaces are deleted$")]
async fn namespaces_deleted(world: &mut World) -> Result<(), DrStepError> {
    let aborting = world.context().faults.abort().reason();
    let mut drill = take(world);
    let r = match drill.disaster(aborting).await {
        Ok(d) => {
            let gone = crate::dr::markers::secs_between(d.at, d.gone_at);
            world.measure("disaster_s", round3(gone));
            Ok(())
        }
        Err(DrillError::DryRun) => Ok(()),
        Err(e) => Err(failed(&mut drill, e).await),
    };
    put(world, drill);
    r
}

#[when(regex = r"^the drill's backup is restored$")]
async fn backup_restored(world: &mut World) -> Result<(), DrStepError> {
    let mut drill = take(world);
    let r = drill.restore().await.cloned();
    // A restore that ended badly is measured too.
    if let Some(rr) = &drill.restore {
        world.measure("restore_s", round3(rr.duration_s()));
        world.measure("restore_items", rr.status.items_done.unwrap_or(0) as f64);
        world.measure("restore_warnings", rr.status.warnings as f64);
        world.measure("restore_errors", rr.status.errors as f64);
    }
    let r = match r {
        Ok(_) | Err(DrillError::DryRun) => Ok(()),
        Err(e) => Err(failed(&mut drill, e).await),
    };
    put(world, drill);
    r
}

#[then(
    regex = r"^the API serves correct data again(?: within (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)))?$"
)]
async fn api_serves_again(world: &mut World, within: String) -> Result<(), DrStepError> {
    if dry_run(world) {
        println!("dry-run: would wait for the workloads and the API, then check the data");
        return Ok(());
    }
    let within = if within.is_empty() {
        None
    } else {
        let l = checks::limit(world, &within, Unit::Seconds)?;
        Some(Duration::from_secs_f64(l.value.max(0.0)))
    };
    let mut drill = take(world);
    let r = match drill.recover(within).await {
        Ok(res) => {
            let res = res.clone();
            let m = &res.markers;
            world.measure("rto_s", round3(res.rto_s));
            if let Some(rpo) = res.rpo_s {
                world.measure("rpo_s", round3(rpo));
            }
            if let Some(rpo) = res.rpo_configmaps_s {
                world.measure("rpo_configmaps_s", round3(rpo));
            }
            world.measure("rpo_min_s", round3(res.rpo_min_s));
            if let Some(max) = res.rpo_max_s {
                world.measure("rpo_max_s", round3(max));
            }
            world.measure("backup_to_disaster_s", round3(res.backup_to_disaster_s));
            world.measure("workloads_ready_s", round3(res.workloads_ready_s));
            world.measure("markers_lost_before_backup", m.lost_before_backup as f64);
            world.measure("markers_before_backup", m.before_backup as f64);
            world.measure("markers_during_backup", m.during_backup as f64);
            world.measure("markers_after_backup", m.after_backup as f64);
            world.measure(
                "markers_after_backup_present",
                m.present_after_backup as f64,
            );
            world.measure("markers_failed", m.failed as f64);
            world.measure("markers_surviving", m.surviving as f64);
            if let Some(n) = res.works_count {
                world.measure("works_count", n as f64);
            }
            // Data written after the backup coming back means the disaster did not
            // really destroy it: the drill would prove nothing.
            world.judge(Criterion::new(
                "markers_after_backup_present",
                m.present_after_backup as f64,
                Comparison::AtMost,
                0.0,
                "markers",
            ));
            if m.present_after_backup > 0 {
                Err(DrStepError::Unmet {
                    expected: "no marker written after the backup to come back".into(),
                    seen: format!(
                        "{} of {} did: the restored data is not the backup's",
                        m.present_after_backup, m.after_backup
                    ),
                })
            } else {
                Ok(())
            }
        }
        Err(e) => Err(failed(&mut drill, e).await),
    };
    if let Err(e) = drill.write_report() {
        tracing::warn!("drill report: {}", diag::one_line(&e));
    }
    put(world, drill);
    r
}

/// The drill's figure for a criterion, or why there is none.
fn figure(world: &World, what: &str) -> Result<f64, DrStepError> {
    let drill = world.dr.as_ref();
    let none = |phase: &str| {
        DrStepError::Order(format!(
            "no {what} was measured: the drill's {phase} has not run"
        ))
    };
    match what {
        "backup_s" => drill
            .and_then(|d| d.backup.as_ref())
            .map(|b| b.duration_s())
            .ok_or_else(|| none("backup")),
        "restore_s" => drill
            .and_then(|d| d.restore.as_ref())
            .map(|r| r.duration_s())
            .ok_or_else(|| none("restore")),
        "rto_s" => drill
            .and_then(|d| d.result.as_ref())
            .map(|r| r.rto_s)
            .ok_or_else(|| none("recovery check (`Then the API serves correct data again`)")),
        "rpo_s" => {
            let res = drill
                .and_then(|d| d.result.as_ref())
                .ok_or_else(|| none("recovery check (`Then the API serves correct data again`)"))?;
            // No marker survived: the data since the first marker is lost; a
            // criterion cannot pass on that.
            Ok(res.rpo_s.unwrap_or(f64::INFINITY))
        }
        "markers_lost_before_backup" => drill
            .and_then(|d| d.result.as_ref())
            .map(|r| r.markers.lost_before_backup as f64)
            .ok_or_else(|| none("recovery check (`Then the API serves correct data again`)")),
        other => Err(DrStepError::Order(format!("unknown figure {other}"))),
    }
}

fn at_most(world: &mut World, name: &str, limit: &Limit, unit: Unit) -> Result<(), DrStepError> {
    let fig = figure(world, name)?;
    let l = checks::threshold_of(world, limit, unit)?;
    let shown = unit.symbol();
    if checks::judge(world, name, round3(fig), Comparison::AtMost, &l, shown) {
        Ok(())
    } else {
        Err(DrStepError::Unmet {
            expected: format!("{name} <= {} {shown}", l.value),
            seen: if fig.is_finite() {
                format!("it was {} {shown}", round3(fig))
            } else {
                "no marker survived the restore".to_owned()
            },
        })
    }
}

#[then(expr = "the backup completes within {long-limit}")]
async fn backup_within(world: &mut World, limit: LongDurationLimit) -> Result<(), DrStepError> {
    if dry_run(world) {
        return Ok(());
    }
    at_most(world, "backup_s", &limit.0, Unit::Seconds)
}

#[then(expr = "the restore completes within {long-limit}")]
async fn restore_within(world: &mut World, limit: LongDurationLimit) -> Result<(), DrStepError> {
    if dry_run(world) {
        return Ok(());
    }
    at_most(world, "restore_s", &limit.0, Unit::Seconds)
}

#[then(expr = "(the )RTO is at most {long-limit}")]
async fn rto_at_most(world: &mut World, limit: LongDurationLimit) -> Result<(), DrStepError> {
    if dry_run(world) {
        return Ok(());
    }
    at_most(world, "rto_s", &limit.0, Unit::Seconds)
}

#[then(expr = "(the )RPO is at most {long-limit}")]
async fn rpo_at_most(world: &mut World, limit: LongDurationLimit) -> Result<(), DrStepError> {
    if dry_run(world) {
        return Ok(());
    }
    at_most(world, "rpo_s", &limit.0, Unit::Seconds)
}

#[then(regex = r"^no data written before the backup is lost$")]
async fn nothing_lost(world: &mut World) -> Result<(), DrStepError> {
    if dry_run(world) {
        return Ok(());
    }
    let lost = at_most(
        world,
        "markers_lost_before_backup",
        &Limit::Value(0.0),
        Unit::Count,
    );
    let expected = world
        .dr
        .as_ref()
        .map_or(0, |d| d.scenario.verify.works_count);
    let works = world
        .dr
        .as_ref()
        .and_then(|d| d.result.as_ref())
        .and_then(|r| r.works_count);
    let c = Criterion::new(
        "works_count",
        works.map_or(f64::NAN, |n| n as f64),
        Comparison::Equal,
        expected as f64,
        "rows",
    );
    let works_ok = world.judge(c);
    lost?;
    if works_ok {
        Ok(())
    } else {
        Err(DrStepError::Unmet {
            expected: format!("the {expected} works of the sample back"),
            seen: works.map_or("they could not be counted".to_owned(), |n| {
                format!("{n} are")
            }),
        })
    }
}

// --- the schedule ---------------------------------------------------------------------

#[then(regex = r#"^the Velero schedule "([^"]+)" is configured as:$"#)]
async fn schedule_configured(
    world: &mut World,
    step: &Step,
    name: String,
) -> Result<(), DrStepError> {
    let rows =
        step.table.as_ref().map(|t| t.rows.clone()).ok_or_else(|| {
            DrStepError::Table("this step needs a `| key | value |` table".into())
        })?;
    let expected = Expected::from_rows(&rows).map_err(DrStepError::Table)?;
    let ns = world.dr.as_ref().map_or_else(
        || "velero".to_owned(),
        |d| d.scenario.velero_namespace.clone(),
    );
    let Some(s) = velero::get_schedule(world.client(), &ns, &name).await? else {
        world.judge(Criterion::new(
            "velero_schedule_exists",
            0.0,
            Comparison::Equal,
            1.0,
            "bool",
        ));
        return Err(DrStepError::Unmet {
            expected: format!("Velero Schedule {ns}/{name}"),
            seen: "it does not exist: no scheduled backups are taken".into(),
        });
    };
    world.judge(Criterion::new(
        "velero_schedule_exists",
        1.0,
        Comparison::Equal,
        1.0,
        "bool",
    ));
    let (criteria, why) = schedule::judge(&ScheduleFacts::of(&s), &expected);
    for c in criteria {
        world.judge(c);
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(DrStepError::Unmet {
            expected: format!("Velero Schedule {ns}/{name} as documented"),
            seen: why.join("; "),
        })
    }
}

#[then(
    regex = r#"^the newest backup of the Velero schedule "([^"]+)" is Completed and at most (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)) old$"#
)]
async fn schedule_backup_recent(
    world: &mut World,
    name: String,
    max_age: LongDurationLimit,
) -> Result<(), DrStepError> {
    let max_age = checks::threshold_of(world, &max_age.0, Unit::Hours)?;
    let ns = world.dr.as_ref().map_or_else(
        || "velero".to_owned(),
        |d| d.scenario.velero_namespace.clone(),
    );
    let wait = world
        .context()
        .profile
        .as_ref()
        .and_then(|p| p.number("dr.schedule_backup_wait_s"))
        .unwrap_or(SCHEDULE_BACKUP_WAIT_S);
    let client = world.client().clone();
    // A backup in progress (or the schedule's first, not started yet) is waited for.
    let started = Instant::now();
    let mut poll = Poll::new();
    let newest = loop {
        let newest = velero::newest_scheduled_backup(&client, &ns, &name).await?;
        let done = newest.as_ref().is_some_and(|b| Status::of(b).is_terminal());
        if done || started.elapsed().as_secs_f64() >= wait {
            break newest;
        }
        poll.sleep().await;
    };
    let Some(b) = newest else {
        world.judge(Criterion::new(
            "velero_schedule_backup_completed",
            0.0,
            Comparison::Equal,
            1.0,
            "bool",
        ));
        return Err(DrStepError::Unmet {
            expected: format!("a Backup of Velero Schedule {ns}/{name}"),
            seen: format!("there is none (waited {wait}s)"),
        });
    };
    let status = Status::of(&b);
    let backup = b["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let completed = status.phase == "Completed";
    world.judge(Criterion::new(
        "velero_schedule_backup_completed",
        if completed { 1.0 } else { 0.0 },
        Comparison::Equal,
        1.0,
        "bool",
    ));
    let limit_h = max_age.value;
    let age_h = schedule::backup_age_h(&b, Utc::now());
    let fresh = checks::judge(
        world,
        "velero_schedule_backup_age_h",
        age_h.map_or(f64::NAN, round3),
        Comparison::AtMost,
        &max_age,
        "h",
    );
    if !completed {
        return Err(DrStepError::Unmet {
            expected: format!("the newest Backup of Schedule {ns}/{name} to be Completed"),
            seen: format!("Backup {ns}/{backup} is {}", status.describe()),
        });
    }
    if !fresh {
        return Err(DrStepError::Unmet {
            expected: format!("Backup {ns}/{backup} to be at most {limit_h:.1} h old"),
            seen: age_h.map_or("it has no timestamps".to_owned(), |a| {
                format!("it is {a:.1} h old")
            }),
        });
    }
    Ok(())
}
