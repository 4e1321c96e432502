//! Load and recovery steps: API load at a rate, steady state, figures while degraded,
//! recovery time. Thin glue over [`crate::measure::drill`].
//!
//! Thresholds come from the step, inline (`60 seconds`, `1%`, `2000 ms`) or named from
//! the acceptance profile (`the profile's chaos.osd.recovery_s`); tuning comes from the acceptance profile when given:
//! `load.timeout_s` (10), `load.max_duration_s` (3600), `load.window_ms` (1000),
//! `steady.windows` (5), `steady.p99_ms` (500), `steady.error_rate_pct` (1),
//! `steady.timeout_s` (120), `steady.no_progress_s` (60), `steady.ceph_interval_s` (1),
//! `recovery.no_progress_s` (300),
//! and `load.mix`: a request-mix YAML file (relative to the profile) instead of the
//! built-in OpenAlex mix.

use std::time::Duration;

use cucumber::{given, then};

use crate::{
    diag,
    load::{mix::Mix, LoadConfig, LoadError},
    measure::{
        drill::{DegradedCheck, Drill, DrillError, WaitFailed},
        health, observe,
        steady::{Deadlines, Slo, SteadyRule},
        touched,
        window::Figures,
    },
    steps::{
        checks::{self, CheckError, Unit},
        limit::{DurationLimit, MsLimit, PercentLimit},
    },
    verdict::{Comparison, Criterion},
    world::World,
};

#[derive(Debug, thiserror::Error)]
pub enum LoadStepError {
    #[error(
        "the target has no API endpoint to send load to: no HTTPProxy with a Ready \
         load balancer was found; pass --api-url (and --api-ca for HTTPS)"
    )]
    NoEndpoint,
    #[error("cannot discover the API endpoint from the cluster")]
    Discover(#[source] crate::probe::api::ApiDiscoveryError),
    #[error(
        "no load is running: start one first with `Given the API receives 50 requests per second`"
    )]
    NoLoad,
    #[error("a load is already running in this scenario")]
    AlreadyRunning,
    #[error("cannot read the API's CA bundle {path}")]
    ReadCa {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", diag::one_line(.0))]
    Load(#[from] LoadError),
    #[error("{}", diag::one_line(.0))]
    Drill(#[from] DrillError),
    #[error("expected {expected}, but {seen}")]
    Unmet { expected: String, seen: String },
    #[error(transparent)]
    Limit(#[from] CheckError),
}

fn profile_number(world: &World, key: &str, default: f64) -> f64 {
    world
        .context()
        .profile
        .as_ref()
        .and_then(|p| p.number(key))
        .unwrap_or(default)
}

fn secs(world: &World, key: &str, default: f64) -> Duration {
    Duration::from_secs_f64(profile_number(world, key, default).max(0.0))
}

/// The steady-state rule from the profile, with DESIGN.md's defaults.
pub fn steady_rule(world: &World) -> SteadyRule {
    SteadyRule {
        slo: Slo {
            p99_ms: profile_number(world, "steady.p99_ms", 500.0),
            error_rate_pct: profile_number(world, "steady.error_rate_pct", 1.0),
        },
        windows: profile_number(world, "steady.windows", 5.0).max(1.0) as usize,
    }
}

/// The profile's `load.mix` file, if it names one.
fn profile_mix(world: &World) -> Result<Option<Mix>, LoadStepError> {
    let Some(profile) = world.context().profile.as_ref() else {
        return Ok(None);
    };
    let file = profile
        .values
        .get("load")
        .and_then(|l| l.get("mix"))
        .and_then(|m| m.as_str());
    let Some(file) = file else {
        return Ok(None);
    };
    let base = profile.path.parent().unwrap_or(std::path::Path::new("."));
    Ok(Some(Mix::load(&base.join(file)).map_err(LoadError::from)?))
}

fn drill(world: &mut World) -> Result<&mut Drill, LoadStepError> {
    world.drill.as_mut().ok_or(LoadStepError::NoLoad)
}

#[given(expr = "the API receives {int} requests per second")]
async fn api_receives(world: &mut World, rate: u32) -> Result<(), LoadStepError> {
    start_load(world, f64::from(rate)).await
}

/// Starts an open-loop load at `rate` req/s on the run's API endpoint, streaming
/// `timeline.csv` into the run folder. Bounded by `load.max_duration_s`.
pub async fn start_load(world: &mut World, rate: f64) -> Result<(), LoadStepError> {
    if world.drill.is_some() {
        return Err(LoadStepError::AlreadyRunning);
    }
    let api = match world.context().api.clone() {
        Some(api) => api,
        None => crate::probe::api::discover(world.client())
            .await
            .map_err(LoadStepError::Discover)?
            .ok_or(LoadStepError::NoEndpoint)?,
    };
    let mut cfg = LoadConfig::open(api.url.clone(), rate);
    cfg.duration = secs(world, "load.max_duration_s", 3600.0);
    cfg.timeout = secs(world, "load.timeout_s", 10.0);
    cfg.window = Duration::from_millis(profile_number(world, "load.window_ms", 1000.0) as u64);
    cfg.seed = world.context().seed;
    cfg.mix = profile_mix(world)?.unwrap_or_else(Mix::builtin);
    cfg.client.source_addr = api.source_addr;
    cfg.client.resolve = api.resolve.clone();
    cfg.client.ca_pem = api.ca_pem.clone();
    if let Some(path) = &api.ca {
        cfg.client.ca_pem = Some(std::fs::read(path).map_err(|source| LoadStepError::ReadCa {
            path: path.clone(),
            source,
        })?);
    }
    cfg.timeline_dir = world.context().run_dir.clone();
    let rule = steady_rule(world);
    let drill = Drill::start(cfg, rule).await?;
    let run_dir = world.context().run_dir.clone();
    let (timeline, health) = health::for_load(world.client(), drill.load(), run_dir.as_deref());
    (world.timeline_file, world.health) = (timeline, Some(health));
    world.drill = Some(drill);
    world.measure("load_rate_target", rate);
    Ok(())
}

#[given(expr = "the system is in steady state")]
async fn system_is_steady(world: &mut World) -> Result<(), LoadStepError> {
    wait_steady(world).await
}

/// Waits for K good windows with every observer healthy; starts the nodes-Ready observer
/// when none runs yet, and the Ceph observer (`ceph status` every
/// `steady.ceph_interval_s`, default 1) when the cluster has a CephCluster.
pub async fn wait_steady(world: &mut World) -> Result<(), LoadStepError> {
    let deadlines = Deadlines {
        absolute_s: secs(world, "steady.timeout_s", 120.0).as_secs_f64(),
        no_progress_s: Some(secs(world, "steady.no_progress_s", 60.0).as_secs_f64()),
    };
    let ceph_interval = ceph_interval(world);
    let client = world.client().clone();
    let drill = drill(world)?;
    // Spawning is idempotent by name, so observers of what a fault touched do not
    // keep the defaults out; the Ceph check is a list call, skipped when it is known.
    drill
        .observers_mut()
        .spawn(Box::new(observe::nodes_ready(&client)));
    if !drill.observers().names().iter().any(|n| n == "ceph-health")
        && observe::has_ceph(&client).await
    {
        drill
            .observers_mut()
            .spawn(Box::new(observe::ceph_health(&client, ceph_interval)));
    }
    let k = drill.rule.windows;
    let outcome = drill.wait_steady(deadlines).await?;
    let good = match &outcome {
        Ok(_) => k,
        Err(f) => f.good,
    };
    let pass = world.judge(Criterion::new(
        "steady_state_windows",
        good as f64,
        Comparison::AtLeast,
        k as f64,
        "windows",
    ));
    match outcome {
        Ok(s) => {
            world.measure("steady_wait_s", round3(s.waited_s));
            world.measure("steady_p99_ms", round3(s.p99_ms));
            debug_assert!(pass);
            Ok(())
        }
        Err(f) => Err(unmet(
            format!("{k} consecutive good windows (steady state)"),
            &f,
        )),
    }
}

/// Recovery includes what `fault` touches: its observers join the scenario's drill
/// (if a load runs) before the fault is applied, so they report the healthy baseline.
pub fn watch_touched(world: &mut World, fault: &dyn crate::fault::Fault) {
    let client = world.client().clone();
    let ceph_interval = ceph_interval(world);
    if let Some(drill) = world.drill.as_mut() {
        touched::watch(
            drill.observers_mut(),
            &client,
            &fault.touches(),
            ceph_interval,
        );
    }
}

/// How often observers without a watch ask Ceph: profile `steady.ceph_interval_s`.
pub fn ceph_interval(world: &World) -> Duration {
    secs(
        world,
        "steady.ceph_interval_s",
        observe::CEPH_INTERVAL.as_secs_f64(),
    )
}

fn unmet(expected: String, f: &WaitFailed) -> LoadStepError {
    LoadStepError::Unmet {
        expected,
        seen: format!("{}; {}", f.missed, f.status),
    }
}

#[then(expr = "while degraded the API p99 latency stays under {ms-limit}")]
async fn degraded_p99(world: &mut World, limit: MsLimit) -> Result<(), LoadStepError> {
    // Seconds, then ms: a profile key ending in `_ms` converts by its suffix.
    let l = checks::threshold_of(world, &limit.0, Unit::Seconds)?;
    let check = DegradedCheck::P99Below(l.value * 1000.0);
    check_degraded_from(world, check, l.source)
}

#[then(expr = "while degraded the API error rate stays under {percent-limit}")]
async fn degraded_errors(world: &mut World, limit: PercentLimit) -> Result<(), LoadStepError> {
    let l = checks::threshold_of(world, &limit.0, Unit::Count)?;
    check_degraded_from(world, DegradedCheck::ErrorRateBelow(l.value), l.source)
}

/// Registers the check; it is judged when the degraded period ends (recovery confirmed,
/// or the scenario's end), or now if it has ended already.
pub fn check_degraded(world: &mut World, check: DegradedCheck) -> Result<(), LoadStepError> {
    check_degraded_from(world, check, None)
}

/// [`check_degraded`] with the threshold's source (a profile key).
pub fn check_degraded_from(
    world: &mut World,
    check: DegradedCheck,
    source: Option<String>,
) -> Result<(), LoadStepError> {
    let drill = drill(world)?;
    let during = drill.during_figures();
    match drill.check_degraded_from(check, source) {
        Some(c) => record_judged(world, vec![c], during.as_ref()),
        None => Ok(()),
    }
}

/// Records judged degraded-period criteria and their figures; fails naming the ones
/// that failed.
fn record_judged(
    world: &mut World,
    judged: Vec<Criterion>,
    during: Option<&Figures>,
) -> Result<(), LoadStepError> {
    if judged.is_empty() {
        return Ok(());
    }
    if let Some(f) = during {
        world.measure("requests_during", f.sent as f64);
        world.measure("requests_lost_during", f.requests_lost as f64);
        if f.counts.completed() > 0 {
            world.measure("p50_during_ms", round3(f.p50_ms));
            world.measure("p99_during_ms", round3(f.p99_ms));
            world.measure("p999_during_ms", round3(f.p999_ms));
            world.measure("error_rate_during_pct", round3(f.error_rate_pct));
        }
    }
    let mut failed = Vec::new();
    for c in judged {
        if !c.pass {
            failed.push(format!(
                "{} was {} {} (threshold {} {} {})",
                c.name,
                round3(c.figure),
                c.unit,
                c.comparison.symbol(),
                c.threshold,
                c.unit
            ));
        }
        world.judge(c);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(LoadStepError::Unmet {
            expected: "the degraded period to stay within its limits".into(),
            seen: failed.join("; "),
        })
    }
}

#[then(expr = "the system recovers within {limit}")]
async fn system_recovers(world: &mut World, within: DurationLimit) -> Result<(), LoadStepError> {
    let l = checks::threshold_of(world, &within.0, Unit::Seconds)?;
    wait_recovered_from(world, Duration::from_secs_f64(l.value.max(0.0)), l.source).await
}

/// Waits for recovery from the fault's t0; records `rto_s` (criterion), `detection_s`,
/// per-component `recovery_s[NAME]`, then judges the degraded-period checks. When
/// nothing was seen to go wrong it records `impact_observed` 0 and no RTO.
pub async fn wait_recovered(world: &mut World, within: Duration) -> Result<(), LoadStepError> {
    wait_recovered_from(world, within, None).await
}

/// [`wait_recovered`] with the threshold's source (a profile key) for `rto_s`.
pub async fn wait_recovered_from(
    world: &mut World,
    within: Duration,
    source: Option<String>,
) -> Result<(), LoadStepError> {
    let no_progress = secs(world, "recovery.no_progress_s", 300.0);
    let drill = drill(world)?;
    let waited = drill.wait_recovered(within, Some(no_progress)).await?;
    let during = drill.during_figures();
    let now_s = drill.load().now_s();
    let r = &waited.recovery;
    world.measure("t0_s", round3(r.t0_s));
    if let Some(d) = r.detection_after_s() {
        world.measure("detection_s", round3(d));
    }
    for c in &r.components {
        if let Some(s) = c.recovered_after_s {
            world.measure(format!("recovery_s[{}]", c.name), round3(s));
        }
    }
    let threshold = within.as_secs_f64();
    let mut result = match (r.rto_s, &waited.failed) {
        // Nothing turned unhealthy and no window breached: an RTO of 0 s would claim
        // a recovery that was never observed, so none is reported.
        (Some(_), _) if !r.impact_observed() => {
            world.measure("impact_observed", 0.0);
            tracing::info!("no impact observed: nothing watched turned unhealthy after the fault");
            Ok(())
        }
        (Some(rto), _) => {
            world.measure("impact_observed", 1.0);
            world.measure("rto_s", round3(rto));
            let mut c = Criterion::new("rto_s", round3(rto), Comparison::AtMost, threshold, "s");
            if let Some(src) = &source {
                c = c.with_source(src.clone());
            }
            let pass = world.judge(c);
            if pass {
                Ok(())
            } else {
                Err(LoadStepError::Unmet {
                    expected: format!("recovery within {threshold} s"),
                    seen: format!("it took {} s", round3(rto)),
                })
            }
        }
        (None, failed) => {
            // Not recovered: the figure reached is the time since t0, a lower bound of
            // the RTO; it fails even when a no-progress deadline ended the wait early.
            let waited_s = round3(now_s - r.t0_s);
            world.measure("recovery_waited_s", waited_s);
            let mut c = Criterion::new("rto_s", waited_s, Comparison::AtMost, threshold, "s");
            if let Some(src) = &source {
                c = c.with_source(src.clone());
            }
            c.pass = false;
            world.judge(c);
            let seen = match failed {
                Some(f) => format!(
                    "not recovered {waited_s} s after t0: {}; {}",
                    f.missed, f.status
                ),
                None => format!("not recovered {waited_s} s after t0"),
            };
            Err(LoadStepError::Unmet {
                expected: format!("recovery within {threshold} s"),
                seen,
            })
        }
    };
    if let Err(e) = record_judged(world, waited.judged, during.as_ref()) {
        if result.is_ok() {
            result = Err(e);
        }
    }
    result
}

/// Scenario end (the runner's after hook): stops the load and observers, judges pending
/// degraded checks and records the load's totals. Never fails: its findings are
/// criteria and measurements.
pub async fn finish(world: &mut World) {
    if let Some(h) = world.health.as_mut() {
        h.stop();
    }
    let Some(drill) = world.drill.take() else {
        return;
    };
    let during = drill.during_figures();
    let (report, judged) = drill.finish().await;
    let _ = record_judged(world, judged, during.as_ref());
    match report {
        Ok(r) => {
            world.measure("requests_sent", r.totals.sent as f64);
            world.measure("requests_lost", r.totals.requests_lost as f64);
            world.measure("achieved_rate", round3(r.achieved_rate));
        }
        Err(e) => tracing::warn!(error = %diag::one_line(&e), "the load did not finish cleanly"),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
