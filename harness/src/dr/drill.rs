//! The Velero disaster-recovery drill, phase by phase (each a step):
//!
//! 1. **backup**: pre-checks (the BackupStorageLocation is Available, a marker was
//!    written, the API serves the sample work), then a Backup of the scenario's
//!    namespaces (or from its Schedule) waited for until Completed; PartiallyFailed or
//!    Failed fails the drill with Velero's status.
//! 2. **disaster**: only with a Completed Backup holding every namespace it deletes,
//!    and only on a target that allows it ([`disaster_allowed`]). Markers keep being
//!    written `wait_after_backup_s`, then stop; the disaster is journaled (write-ahead,
//!    in the fault journal's format, `dr-<name>/journal.jsonl`: its revert is the
//!    restore itself), then the namespaces are deleted, and the volumes their claims
//!    held if they remain.
//! 3. **restore**: a Restore of the backup, waited for until Completed.
//! 4. **recover**: the workloads that existed before the disaster Ready again, the API
//!    serving the sample work again (RTO), then the data checked: the sample's works,
//!    markers written before the backup present, those written after it absent (RPO).
//!
//! Everything is recorded with its time; `drill.json` and `markers.csv` go to
//! `reports/<run>/dr-<name>/`, and on failure what an operator needs besides
//! ([`VeleroDrill::dump`]): the Backup, Restore and location as Velero left them, the
//! namespaces' events and the end of the Velero server's log.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Event, Namespace, PersistentVolume, PersistentVolumeClaim, Pod},
};
use kube::{
    api::{Api, DeleteParams, ListParams, LogParams},
    Client,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    api::{self, ApiCheckError, ApiProbe, ApiTarget},
    markers::{self, MarkerConfig, MarkerCounts, MarkerError, MarkerWrite, MarkerWriter},
    psql::{Psql, PsqlError},
    scenario::{secs, DrScenario},
    velero::{self, Poll, Status, VeleroError},
};
use crate::fault::guard::{self, AllowList};

/// The fault kind the disaster is journaled and allowed as.
pub const DISASTER: &str = "disaster";

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("pre-check failed: {0}; the drill stopped before any backup or deletion")]
    Precheck(String),
    #[error(transparent)]
    Markers(#[from] MarkerError),
    #[error(transparent)]
    Velero(#[from] VeleroError),
    #[error("Backup {name} ended {status}")]
    BackupFailed { name: String, status: String },
    #[error("Restore {name} ended {status}")]
    RestoreFailed { name: String, status: String },
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Order(String),
    #[error("{what} failed")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} within {}s", .waited.as_secs_f64())]
    Timeout { what: String, waited: Duration },
    #[error(transparent)]
    Psql(#[from] PsqlError),
    #[error(transparent)]
    Api(#[from] ApiCheckError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run is aborting ({0}): the disaster is not started")]
    Aborting(String),
    /// A dry run printed what this phase would do, and did nothing.
    #[error("dry run: planned only")]
    DryRun,
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DrillError {
    let what = what.into();
    move |source| DrillError::Kube { what, source }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// What the drill needs from the run.
#[derive(Clone)]
pub struct DrillEnv {
    pub client: Client,
    /// The run's id (its report folder's name).
    pub run_id: String,
    /// `twin` or `cluster`: the twin allows the disaster, a cluster must opt in.
    pub target: String,
    /// The run's report folder; the drill writes `dr-<name>/` in it.
    pub run_dir: Option<PathBuf>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupRecord {
    pub name: String,
    pub from_schedule: Option<String>,
    /// The Backup's includedNamespaces.
    pub namespaces: Vec<String>,
    pub asked: DateTime<Utc>,
    /// When the harness saw it end.
    pub seen_done: DateTime<Utc>,
    pub status: Status,
}

impl BackupRecord {
    pub fn duration_s(&self) -> f64 {
        markers::secs_between(self.asked, self.seen_done)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DisasterRecord {
    pub namespaces: Vec<String>,
    pub asked: DateTime<Utc>,
    /// The disaster's time: the API server acknowledged the first deletion.
    pub at: DateTime<Utc>,
    /// Every namespace (and volume) gone.
    pub gone_at: DateTime<Utc>,
    pub volumes_deleted: Vec<String>,
    /// What must be Ready again.
    pub workloads: Vec<Workload>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreRecord {
    pub name: String,
    pub asked: DateTime<Utc>,
    pub seen_done: DateTime<Utc>,
    pub status: Status,
}

impl RestoreRecord {
    pub fn duration_s(&self) -> f64 {
        markers::secs_between(self.asked, self.seen_done)
    }
}

/// The drill's figures.
#[derive(Clone, Debug, Serialize)]
pub struct DrResult {
    /// The API serves correct data again, from the disaster.
    pub rto_s: f64,
    /// The disaster minus the newest surviving marker; None when none survived.
    pub rpo_s: Option<f64>,
    /// `postgresql`, or `configmaps` when the database could not be read.
    pub rpo_source: String,
    pub rpo_configmaps_s: Option<f64>,
    /// Bounds the RPO must fall in: from the disaster back to the backup's observed
    /// completion (min) and to the last marker committed before it was created (max).
    pub rpo_min_s: f64,
    pub rpo_max_s: Option<f64>,
    pub backup_to_disaster_s: f64,
    pub workloads_ready_s: f64,
    pub markers: MarkerCounts,
    pub configmap_markers_surviving: Option<u64>,
    pub works_count: Option<u64>,
    pub api_back_at: DateTime<Utc>,
}

/// One Velero disaster-recovery drill.
pub struct VeleroDrill {
    env: DrillEnv,
    pub scenario: DrScenario,
    /// Where `drill.json`, `markers.csv` and failure dumps go.
    dir: Option<PathBuf>,
    markers: Option<MarkerWriter>,
    /// Every marker write, once the writer stopped.
    marker_writes: Vec<MarkerWrite>,
    marker_config: Option<MarkerConfig>,
    api: Option<ApiTarget>,
    pub backup: Option<BackupRecord>,
    pub disaster: Option<DisasterRecord>,
    pub restore: Option<RestoreRecord>,
    pub result: Option<DrResult>,
    /// The drill's own timeline: (time, what happened).
    timeline: Vec<(DateTime<Utc>, String)>,
    journal_seq: Option<u64>,
}

impl std::fmt::Debug for VeleroDrill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VeleroDrill")
            .field("scenario", &self.scenario.name)
            .field("backup", &self.backup.as_ref().map(|b| &b.name))
            .field("disaster", &self.disaster.as_ref().map(|d| &d.namespaces))
            .field("restore", &self.restore.as_ref().map(|r| &r.name))
            .finish_non_exhaustive()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl VeleroDrill {
    pub fn new(env: DrillEnv, scenario: DrScenario) -> VeleroDrill {
        let dir = env
            .run_dir
            .as_ref()
            .map(|d| d.join(format!("dr-{}", scenario.name)));
        VeleroDrill {
            env,
            scenario,
            dir,
            markers: None,
            marker_writes: Vec::new(),
            marker_config: None,
            api: None,
            backup: None,
            disaster: None,
            restore: None,
            result: None,
            timeline: Vec::new(),
            journal_seq: None,
        }
    }

    /// The drill's report folder (`reports/<run>/dr-<name>/`).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn client(&self) -> &Client {
        &self.env.client
    }

    fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!(drill = %self.scenario.name, "{what}");
        self.timeline.push((Utc::now(), what));
    }

    fn velero_ns(&self) -> &str {
        &self.scenario.velero_namespace
    }

    /// Markers of this drill: `<run>-<scenario>`.
    pub fn marker_run_id(&self) -> String {
        format!("{}-{}", self.env.run_id, self.scenario.name)
    }

    fn marker_config(&self, interval: Option<Duration>) -> MarkerConfig {
        let m = &self.scenario.markers;
        MarkerConfig {
            psql: Psql {
                client: self.client().clone(),
                namespace: m.namespace.clone(),
                pod: m.pod.clone(),
                container: m.container.clone(),
                user: m.user.clone(),
                database: m.database.clone(),
                timeout: secs(m.exec_timeout_s),
            },
            table: m.table.clone(),
            run_id: self.marker_run_id(),
            interval: interval.unwrap_or(secs(m.interval_s)),
            max_count: m.max_count,
            max_duration: secs(m.max_duration_s),
            configmaps: m.configmaps,
        }
    }

    pub fn markers_running(&self) -> bool {
        self.markers.is_some()
    }

    /// Starts the marker writer (at most once) and waits for its first marker.
    pub async fn start_markers(&mut self, interval: Option<Duration>) -> Result<(), DrillError> {
        if self.env.dry_run {
            println!(
                "dry-run: would write a marker row into {}.{} every {:.1}s (and ConfigMaps in {})",
                self.scenario.markers.database,
                self.scenario.markers.table,
                interval.map_or(self.scenario.markers.interval_s, |d| d.as_secs_f64()),
                self.scenario.markers.namespace
            );
            return Ok(());
        }
        if self.markers.is_some() || self.disaster.is_some() {
            return Err(DrillError::Order(
                "markers are already being written in this drill".into(),
            ));
        }
        let cfg = self.marker_config(interval);
        self.note(format!(
            "markers: every {:.1}s into {}/{} ({}.{}), run id {}",
            cfg.interval.as_secs_f64(),
            cfg.psql.namespace,
            cfg.psql.pod,
            cfg.psql.database,
            cfg.table,
            cfg.run_id
        ));
        self.marker_config = Some(cfg.clone());
        let writer = MarkerWriter::start(cfg).await;
        let first = writer
            .wait_committed(1, secs(self.scenario.deadlines.first_marker_s))
            .await;
        self.markers = Some(writer);
        first.map_err(|e| DrillError::Precheck(crate::diag::one_line(&e)))?;
        self.note("first marker written");
        Ok(())
    }

    /// The BackupStorageLocation a backup will use.
    fn location_name(&self, spec: &Value) -> String {
        spec.get("storageLocation")
            .and_then(Value::as_str)
            .unwrap_or(&self.scenario.backup.storage_location)
            .to_owned()
    }

    async fn wait_location_available(&mut self, name: &str) -> Result<(), DrillError> {
        let ns = self.velero_ns().to_owned();
        let within = secs(self.scenario.deadlines.precheck_s);
        let started = Instant::now();
        let mut poll = Poll::new();
        let shown = crate::progress::Wait::start(
            format!("BackupStorageLocation {ns}/{name} to be Available"),
            Some(within),
        );
        loop {
            let (phase, message) = match velero::location_status(self.client(), &ns, name).await {
                Ok(s) => s,
                Err(VeleroError::NotFound(what)) => {
                    return Err(DrillError::Precheck(format!(
                        "{what} not found: Velero has nowhere to store a backup"
                    )))
                }
                Err(e) => (format!("unreadable ({})", crate::diag::one_line(&e)), None),
            };
            shown.status(format!("phase {phase}"));
            if phase == "Available" {
                self.note(format!("BackupStorageLocation {ns}/{name} is Available"));
                return Ok(());
            }
            if started.elapsed() >= within {
                return Err(DrillError::Precheck(format!(
                    "BackupStorageLocation {ns}/{name} is {phase}{} (waited {}s for Available): \
                     no backup can be taken",
                    message
                        .map(|m| format!(": {}", one_line_text(&m)))
                        .unwrap_or_default(),
                    within.as_secs_f64()
                )));
            }
            poll.sleep().await;
        }
    }

    /// The API serves the sample work (waiting up to the pre-check deadline), so that
    /// its return after the disaster can be timed.
    async fn check_api_before(&mut self) -> Result<(), DrillError> {
        let spec = self.scenario.api.clone();
        let within = secs(self.scenario.deadlines.precheck_s);
        let started = Instant::now();
        let mut poll = Poll::new();
        let mut last;
        let shown = crate::progress::Wait::start(
            format!("the API to serve /works/{}", spec.work),
            Some(within),
        );
        loop {
            match api::discover(self.client(), &spec).await {
                Ok(target) => {
                    let probe = ApiProbe::new(target.clone(), secs(spec.request_timeout_s))?;
                    match probe.check_work(&spec.work).await {
                        Ok(()) => {
                            self.note(format!(
                                "the API serves /works/{} at {} ({})",
                                spec.work, target.addr, spec.host
                            ));
                            self.api = Some(target);
                            return Ok(());
                        }
                        Err(e) => last = e,
                    }
                }
                Err(e) => last = crate::diag::one_line(&e),
            }
            shown.status(last.clone());
            if started.elapsed() >= within {
                return Err(DrillError::Precheck(format!(
                    "the API does not serve /works/{} before the disaster ({last}), so its \
                     recovery could not be timed",
                    spec.work
                )));
            }
            poll.sleep().await;
        }
    }

    /// Pre-checks, then a Backup waited for until it ends; Completed or an error.
    pub async fn backup(&mut self) -> Result<&BackupRecord, DrillError> {
        if self.backup.is_some() {
            return Err(DrillError::Order(
                "this drill already took its backup".into(),
            ));
        }
        let ns = self.velero_ns().to_owned();
        let now = Utc::now();
        let (name, spec, labels, from_schedule) = match &self.scenario.backup.from_schedule {
            Some(schedule) => {
                let s = velero::get_schedule(self.client(), &ns, schedule)
                    .await?
                    .ok_or_else(|| {
                        DrillError::Precheck(format!(
                            "Schedule {ns}/{schedule} not found, so no backup can be taken from it"
                        ))
                    })?;
                let (name, spec, labels) = velero::from_schedule(&s, now);
                (name, spec, labels, Some(schedule.clone()))
            }
            None => {
                let b = &self.scenario.backup;
                let spec = velero::backup_spec(
                    &b.namespaces,
                    &b.storage_location,
                    &b.ttl,
                    b.snapshot_volumes,
                    b.default_volumes_to_fs_backup,
                );
                let name = format!(
                    "stormdrill-{}-{}",
                    self.scenario.name,
                    now.format("%Y%m%d%H%M%S")
                );
                (
                    name,
                    spec,
                    json!({"app.kubernetes.io/managed-by": "stormdrill"}),
                    None,
                )
            }
        };
        let namespaces: Vec<String> = spec["includedNamespaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if self.env.dry_run {
            println!(
                "dry-run: would check BackupStorageLocation {ns}/{}, then create Backup {ns}/{name} \
                 of {} and wait for it to complete",
                self.location_name(&spec),
                namespaces.join(", ")
            );
            return Err(DrillError::DryRun);
        }
        // Pre-checks: nothing is created before they pass.
        let location = self.location_name(&spec);
        self.wait_location_available(&location).await?;
        if self.markers.is_none() {
            self.start_markers(None).await?;
        }
        if let Some(w) = &self.markers {
            let n = self.scenario.markers.min_before_backup.max(1);
            let within = secs(self.scenario.deadlines.first_marker_s)
                + w.config().interval * u32::try_from(n).unwrap_or(u32::MAX);
            w.wait_committed(n, within)
                .await
                .map_err(|e| DrillError::Precheck(crate::diag::one_line(&e)))?;
        }
        self.check_api_before().await?;

        let backups = velero::backups(self.client(), &ns);
        let asked = Utc::now();
        velero::create(&backups, "Backup", &ns, &name, labels, spec).await?;
        self.note(format!(
            "Backup {ns}/{name} created ({})",
            namespaces.join(", ")
        ));
        let (obj, seen_done) = velero::wait_terminal(
            &backups,
            &format!("Backup {ns}/{name}"),
            &name,
            secs(self.scenario.deadlines.backup_s),
        )
        .await?;
        let status = Status::of(&obj);
        self.note(format!("Backup {ns}/{name}: {}", status.describe()));
        let ok = status.phase == "Completed";
        let describe = status.describe();
        self.backup = Some(BackupRecord {
            name: name.clone(),
            from_schedule,
            namespaces,
            asked,
            seen_done,
            status,
        });
        if !ok {
            return Err(DrillError::BackupFailed {
                name: format!("{ns}/{name}"),
                status: describe,
            });
        }
        Ok(self.backup.as_ref().expect("just set"))
    }

    async fn workloads(&self, namespaces: &[String]) -> Result<Vec<Workload>, DrillError> {
        let mut out = Vec::new();
        for ns in namespaces {
            let deps: Api<Deployment> = Api::namespaced(self.client().clone(), ns);
            for d in deps
                .list(&ListParams::default())
                .await
                .map_err(kube_err(format!("listing Deployments in {ns}")))?
            {
                out.push(Workload {
                    kind: "Deployment".into(),
                    namespace: ns.clone(),
                    name: d.metadata.name.unwrap_or_default(),
                });
            }
            let sts: Api<StatefulSet> = Api::namespaced(self.client().clone(), ns);
            for s in sts
                .list(&ListParams::default())
                .await
                .map_err(kube_err(format!("listing StatefulSets in {ns}")))?
            {
                out.push(Workload {
                    kind: "StatefulSet".into(),
                    namespace: ns.clone(),
                    name: s.metadata.name.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    async fn bound_volumes(&self, namespaces: &[String]) -> Result<Vec<String>, DrillError> {
        let mut out = Vec::new();
        for ns in namespaces {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client().clone(), ns);
            for c in pvcs
                .list(&ListParams::default())
                .await
                .map_err(kube_err(format!("listing PersistentVolumeClaims in {ns}")))?
            {
                if let Some(v) = c.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// The disaster: see the module doc for what it requires. `aborting`: the run's
    /// abort reason, if any (no disaster is started then).
    pub async fn disaster(
        &mut self,
        aborting: Option<String>,
    ) -> Result<&DisasterRecord, DrillError> {
        if self.disaster.is_some() {
            return Err(DrillError::Order(
                "this drill's disaster already happened".into(),
            ));
        }
        let namespaces = self.scenario.disaster.namespaces.clone();
        let ns = self.velero_ns().to_owned();
        if let Some(reason) = aborting {
            return Err(DrillError::Aborting(reason));
        }
        let allow = if self.env.target == "twin" {
            None
        } else {
            Some(
                AllowList::load(self.client())
                    .await
                    .map_err(|e| DrillError::Refused(crate::diag::one_line(&e)))?,
            )
        };
        disaster_allowed(&self.env.target, allow.as_ref(), &namespaces)
            .map_err(DrillError::Refused)?;
        if self.env.dry_run {
            // The guard above is what the real run would say; nothing else is read.
            println!(
                "dry-run: disaster: would delete namespace(s) {} (and the volumes their claims \
                 leave) once the drill's Backup is Completed; revert: the restore itself",
                namespaces.join(", ")
            );
            return Err(DrillError::DryRun);
        }
        let Some(backup) = self.backup.clone() else {
            return Err(DrillError::Refused(format!(
                "deleting {} needs a Completed Velero backup of it first (step `When a Velero \
                 backup of the drill's namespaces completes`)",
                namespaces.join(", ")
            )));
        };
        // The backup as the cluster has it now, not as we saw it.
        let now = velero::get(
            &velero::backups(self.client(), &ns),
            &format!("Backup {ns}/{}", backup.name),
            &backup.name,
        )
        .await
        .map(|b| Status::of(&b));
        match now {
            Ok(s) if s.phase == "Completed" => {}
            Ok(s) => {
                return Err(DrillError::Refused(format!(
                    "Backup {ns}/{} is {}, not Completed: no disaster without a good backup",
                    backup.name, s.phase
                )))
            }
            Err(e) => {
                return Err(DrillError::Refused(format!(
                    "the drill's Backup cannot be confirmed Completed ({}): no disaster without \
                     a good backup",
                    crate::diag::one_line(&e)
                )))
            }
        }
        if let Some(missing) = namespaces
            .iter()
            .find(|n| !backup.namespaces.iter().any(|b| b == *n || b == "*"))
        {
            return Err(DrillError::Refused(format!(
                "Backup {ns}/{} does not include namespace {missing} (it holds {}): it could not \
                 be restored",
                backup.name,
                backup.namespaces.join(", ")
            )));
        }

        // Markers keep going a while after the backup, then stop with the write in
        // flight: nothing is written by the drill after the disaster.
        let hold = secs(self.scenario.disaster.wait_after_backup_s);
        let since = (Utc::now() - backup.seen_done).to_std().unwrap_or_default();
        if hold > since {
            tokio::time::sleep(hold - since).await;
        }
        let workloads = self.workloads(&namespaces).await?;
        let volumes = if self.scenario.disaster.delete_volumes {
            self.bound_volumes(&namespaces).await?
        } else {
            Vec::new()
        };
        let action = format!(
            "delete namespace(s) {}{} (Backup {ns}/{} Completed)",
            namespaces.join(", "),
            if volumes.is_empty() {
                String::new()
            } else {
                format!(
                    ", then whichever of its claims' PersistentVolume(s) remain: {}",
                    volumes.join(", ")
                )
            },
            backup.name
        );
        if self.api.is_none() {
            self.api = api::discover(self.client(), &self.scenario.api).await.ok();
        }
        if let Some(w) = self.markers.take() {
            self.marker_writes = w.stop().await;
            self.note(format!(
                "markers stopped after {} writes",
                self.marker_writes.len()
            ));
        }
        self.journal_apply(&action, &backup.name)?;

        let nss: Api<Namespace> = Api::all(self.client().clone());
        let asked = Utc::now();
        let mut at = None;
        for n in &namespaces {
            match nss.delete(n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("deleting namespace {n}"))(e)),
            }
            at.get_or_insert_with(Utc::now);
        }
        let at = at.unwrap_or(asked);
        self.note(format!("disaster: {action}"));
        let within = secs(self.scenario.deadlines.disaster_s);
        let started = Instant::now();
        let mut poll = Poll::new();
        let shown = crate::progress::Wait::start(
            format!("namespace(s) {} to be gone", namespaces.join(", ")),
            Some(within),
        );
        loop {
            let mut left = Vec::new();
            for n in &namespaces {
                if nss.get_opt(n).await.map(|o| o.is_some()).unwrap_or(true) {
                    left.push(n.clone());
                }
            }
            if left.is_empty() {
                break;
            }
            shown.status(format!("still there: {}", left.join(", ")));
            if started.elapsed() >= within {
                return Err(DrillError::Timeout {
                    what: format!(
                        "namespace(s) {} still exist (Terminating?)",
                        left.join(", ")
                    ),
                    waited: within,
                });
            }
            poll.sleep().await;
        }
        // Volumes a Retain policy kept would give the restore the old data back.
        let pvs: Api<PersistentVolume> = Api::all(self.client().clone());
        let mut deleted = Vec::new();
        for v in &volumes {
            match pvs.delete(v, &DeleteParams::default()).await {
                Ok(_) => deleted.push(v.clone()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("deleting PersistentVolume {v}"))(e)),
            }
        }
        let mut poll = Poll::new();
        loop {
            let mut left = Vec::new();
            for v in &volumes {
                if pvs.get_opt(v).await.map(|o| o.is_some()).unwrap_or(true) {
                    left.push(v.clone());
                }
            }
            if left.is_empty() {
                break;
            }
            if started.elapsed() >= within {
                return Err(DrillError::Timeout {
                    what: format!("PersistentVolume(s) {} still exist", left.join(", ")),
                    waited: within,
                });
            }
            poll.sleep().await;
        }
        let gone_at = Utc::now();
        shown.finish("gone");
        self.note(format!(
            "namespace(s) {} gone{}",
            namespaces.join(", "),
            if deleted.is_empty() {
                String::new()
            } else {
                format!(", retained volume(s) {} deleted", deleted.join(", "))
            }
        ));
        self.disaster = Some(DisasterRecord {
            namespaces,
            asked,
            at,
            gone_at,
            volumes_deleted: deleted,
            workloads,
        });
        Ok(self.disaster.as_ref().expect("just set"))
    }

    /// A Restore of the drill's backup, waited for until it ends.
    pub async fn restore(&mut self) -> Result<&RestoreRecord, DrillError> {
        if self.env.dry_run {
            println!(
                "dry-run: would create a Velero Restore of the drill's Backup into {}",
                self.scenario.restore_namespaces().join(", ")
            );
            return Err(DrillError::DryRun);
        }
        let Some(backup) = self.backup.clone() else {
            return Err(DrillError::Order(
                "there is no backup to restore: take one first (`When a Velero backup of the \
                 drill's namespaces completes`)"
                    .into(),
            ));
        };
        if self.restore.is_some() {
            return Err(DrillError::Order(
                "this drill already restored its backup".into(),
            ));
        }
        let ns = self.velero_ns().to_owned();
        let name = format!("{}-{}", backup.name, Utc::now().format("%Y%m%d%H%M%S"));
        let spec = json!({
            "backupName": backup.name,
            "includedNamespaces": self.scenario.restore_namespaces(),
            "restorePVs": self.scenario.restore.restore_volumes,
        });
        let restores = velero::restores(self.client(), &ns);
        let asked = Utc::now();
        velero::create(
            &restores,
            "Restore",
            &ns,
            &name,
            json!({"app.kubernetes.io/managed-by": "stormdrill"}),
            spec,
        )
        .await?;
        self.note(format!(
            "Restore {ns}/{name} created from Backup {}",
            backup.name
        ));
        let (obj, seen_done) = velero::wait_terminal(
            &restores,
            &format!("Restore {ns}/{name}"),
            &name,
            secs(self.scenario.deadlines.restore_s),
        )
        .await?;
        let status = Status::of(&obj);
        self.note(format!("Restore {ns}/{name}: {}", status.describe()));
        let ok = status.phase == "Completed";
        let describe = status.describe();
        self.restore = Some(RestoreRecord {
            name: name.clone(),
            asked,
            seen_done,
            status,
        });
        if !ok {
            return Err(DrillError::RestoreFailed {
                name: format!("{ns}/{name}"),
                status: describe,
            });
        }
        self.journal_done(&format!("restore {ns}/{name}"))?;
        Ok(self.restore.as_ref().expect("just set"))
    }

    async fn workload_ready(&self, w: &Workload) -> Result<bool, kube::Error> {
        let value = match w.kind.as_str() {
            "Deployment" => Api::<Deployment>::namespaced(self.client().clone(), &w.namespace)
                .get_opt(&w.name)
                .await?
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
            _ => Api::<StatefulSet>::namespaced(self.client().clone(), &w.namespace)
                .get_opt(&w.name)
                .await?
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
        };
        Ok(value.is_some_and(|v| {
            let want = v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = v
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            ready >= want
        }))
    }

    /// Waits for the workloads and the API (bounded by `within` from the disaster,
    /// else the scenario's recovery deadline), then checks the data and computes the
    /// figures.
    pub async fn recover(&mut self, within: Option<Duration>) -> Result<&DrResult, DrillError> {
        let (Some(backup), Some(disaster)) = (self.backup.clone(), self.disaster.clone()) else {
            return Err(DrillError::Order(
                "nothing to recover from: the drill needs its backup and its disaster first".into(),
            ));
        };
        if self.restore.is_none() {
            return Err(DrillError::Order(
                "the backup was not restored yet (step `When the drill's backup is restored`)"
                    .into(),
            ));
        }
        let bound = within.unwrap_or(secs(self.scenario.deadlines.recovery_s));
        let deadline = disaster.at + chrono::Duration::from_std(bound).unwrap_or_default();
        let past = |what: &str| DrillError::Timeout {
            what: format!("{what} {}s after the disaster", bound.as_secs_f64()),
            waited: bound,
        };

        // Workloads first: a pod Ready is the earliest the API can answer.
        let mut poll = Poll::new();
        let mut pending = disaster.workloads.clone();
        let shown = crate::progress::Wait::start(
            "the workloads to be Ready again, then the API to serve correct data",
            Some(bound),
        );
        loop {
            let mut still = Vec::new();
            for w in pending {
                if !self.workload_ready(&w).await.unwrap_or(false) {
                    still.push(w);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            shown.status(format!(
                "{} of {} workloads not Ready",
                pending.len(),
                disaster.workloads.len()
            ));
            if Utc::now() >= deadline {
                let names: Vec<String> = pending
                    .iter()
                    .map(|w| format!("{} {}/{}", w.kind, w.namespace, w.name))
                    .collect();
                return Err(past(&format!("not Ready: {}", names.join(", "))));
            }
            poll.sleep().await;
        }
        let workloads_ready_at = Utc::now();
        self.note("workloads Ready again");

        let spec = self.scenario.api.clone();
        let target = match self.api.clone() {
            Some(t) => t,
            None => api::discover(self.client(), &spec).await?,
        };
        let probe = ApiProbe::new(target, secs(spec.request_timeout_s))?;
        let mut poll = Poll::new();
        let api_back_at = loop {
            let last = match probe.check_work(&spec.work).await {
                Ok(()) => break Utc::now(),
                Err(e) => e,
            };
            shown.status(format!("workloads Ready; API: {last}"));
            if Utc::now() >= deadline {
                return Err(past(&format!(
                    "the API does not serve /works/{} correctly ({last})",
                    spec.work
                )));
            }
            poll.sleep().await;
        };
        shown.finish("the API serves correct data");
        self.note(format!("the API serves /works/{} again", spec.work));

        // The data.
        let cfg = self
            .marker_config
            .clone()
            .unwrap_or_else(|| self.marker_config(None));
        let works_count = cfg
            .psql
            .run("SELECT count(*) FROM works")
            .await?
            .trim()
            .parse::<u64>()
            .ok();
        let db = markers::read_back(&cfg).await;
        let cms = if cfg.configmaps {
            markers::read_back_configmaps(&cfg).await.ok()
        } else {
            None
        };
        let (surviving, rpo_source) = match (&db, &cms) {
            (Ok(rows), _) => (rows.clone(), "postgresql"),
            (Err(_), Some(cms)) => (cms.clone(), "configmaps"),
            (Err(e), None) => {
                return Err(DrillError::Precheck(format!(
                    "the markers cannot be read back: {}",
                    crate::diag::one_line(e)
                )))
            }
        };
        let seqs: BTreeSet<u64> = surviving.keys().copied().collect();
        let counts = markers::classify(&self.marker_writes, &seqs, backup.asked, backup.seen_done);
        let rpo_max_s = self
            .marker_writes
            .iter()
            .filter(|w| w.db_ok() && w.acked_at < backup.asked)
            .map(|w| w.written_at)
            .max()
            .map(|t| markers::secs_between(t, disaster.at));
        let result = DrResult {
            rto_s: markers::secs_between(disaster.at, api_back_at),
            rpo_s: markers::rpo_s(disaster.at, &surviving),
            rpo_source: rpo_source.to_owned(),
            rpo_configmaps_s: cms.as_ref().and_then(|c| markers::rpo_s(disaster.at, c)),
            rpo_min_s: markers::secs_between(backup.seen_done, disaster.at),
            rpo_max_s,
            backup_to_disaster_s: markers::secs_between(backup.asked, disaster.at),
            workloads_ready_s: markers::secs_between(disaster.at, workloads_ready_at),
            markers: counts,
            configmap_markers_surviving: cms.as_ref().map(|c| c.len() as u64),
            works_count,
            api_back_at,
        };
        self.note(format!(
            "recovered: RTO {:.1}s, RPO {}",
            result.rto_s,
            result
                .rpo_s
                .map_or("unknown (no marker survived)".to_owned(), |r| format!(
                    "{r:.1}s"
                ))
        ));
        markers::cleanup_configmaps(&cfg).await;
        self.result = Some(result);
        Ok(self.result.as_ref().expect("just set"))
    }

    // --- records ------------------------------------------------------------------

    fn ensure_dir(&self) -> Result<Option<PathBuf>, DrillError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|source| DrillError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Some(dir.clone()))
    }

    fn journal_line(&self, line: &Value) -> Result<(), DrillError> {
        let Some(dir) = self.ensure_dir()? else {
            return Ok(());
        };
        let path = dir.join(crate::fault::journal::JOURNAL_FILE);
        let err = |source| DrillError::Write {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        let mut text = serde_json::to_string(line).expect("journal lines serialise");
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// The disaster's write-ahead record, in the fault journal's line format.
    fn journal_apply(&mut self, action: &str, backup: &str) -> Result<(), DrillError> {
        let seq = 1;
        self.journal_line(&json!({
            "op": "run", "at": Utc::now(), "run_id": self.env.run_id,
            "target": self.env.target, "server": "",
        }))?;
        self.journal_line(&json!({
            "op": "apply", "seq": seq, "at": Utc::now(), "fault": DISASTER, "action": action,
            "revert": {"action": "nothing", "reason": format!(
                "the restore itself: a Velero Restore of Backup {}/{backup}", self.velero_ns())},
        }))?;
        self.journal_seq = Some(seq);
        Ok(())
    }

    fn journal_done(&mut self, by: &str) -> Result<(), DrillError> {
        let Some(seq) = self.journal_seq.take() else {
            return Ok(());
        };
        self.journal_line(&json!({
            "op": "done", "seq": seq, "at": Utc::now(), "outcome": "restored", "by": by,
        }))
    }

    fn all_marker_writes(&self) -> Vec<MarkerWrite> {
        match &self.markers {
            Some(w) => w.writes(),
            None => self.marker_writes.clone(),
        }
    }

    /// `drill.json` (parameters, records, figures, timeline) and `markers.csv`.
    pub fn write_report(&self) -> Result<Option<PathBuf>, DrillError> {
        let Some(dir) = self.ensure_dir()? else {
            return Ok(None);
        };
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .map(|(t, what)| json!({"at": rfc3339(*t), "what": what}))
            .collect();
        let doc = json!({
            "scenario": self.scenario,
            "marker_run_id": self.marker_run_id(),
            "backup": self.backup,
            "disaster": self.disaster,
            "restore": self.restore,
            "result": self.result,
            "timeline": timeline,
        });
        write(
            &dir.join("drill.json"),
            &serde_json::to_string_pretty(&doc).unwrap_or_default(),
        )?;
        let mut csv = String::from("seq,written_at,acked_at,db,configmap\n");
        for w in self.all_marker_writes() {
            let cell = |e: &Option<String>| match e {
                None => "ok".to_owned(),
                Some(e) => format!("\"{}\"", e.replace('"', "'")),
            };
            csv.push_str(&format!(
                "{},{},{},{},{}\n",
                w.seq,
                rfc3339(w.written_at),
                rfc3339(w.acked_at),
                cell(&w.db_error),
                w.configmap_error.as_ref().map_or("-".to_owned(), cell)
            ));
        }
        write(&dir.join("markers.csv"), &csv)?;
        Ok(Some(dir))
    }

    /// The drill is over (a phase failed): stops the markers and deletes their
    /// ConfigMaps; the rows stay in the database, with the run id, for the record.
    pub async fn abandon(&mut self) {
        if let Some(w) = self.markers.take() {
            self.marker_writes = w.stop().await;
        }
        if let Some(cfg) = &self.marker_config {
            markers::cleanup_configmaps(cfg).await;
        }
    }

    /// After a failure: the report plus what an operator needs to see why.
    pub async fn dump(&self, failure: &str) -> Option<PathBuf> {
        let dir = match self.write_report() {
            Ok(Some(d)) => d,
            _ => return None,
        };
        let mut text = format!("{failure}\n\ntimeline:\n");
        for (t, what) in &self.timeline {
            text.push_str(&format!("  {} {what}\n", rfc3339(*t)));
        }
        let _ = write(&dir.join("failure.txt"), &text);
        let ns = self.velero_ns().to_owned();
        let objects = [
            (
                "backup.json",
                velero::backups(self.client(), &ns),
                self.backup.as_ref().map(|b| b.name.clone()),
            ),
            (
                "restore.json",
                velero::restores(self.client(), &ns),
                self.restore.as_ref().map(|r| r.name.clone()),
            ),
            (
                "backupstoragelocation.json",
                velero::locations(self.client(), &ns),
                Some(self.scenario.backup.storage_location.clone()),
            ),
        ];
        for (file, api, name) in objects {
            let Some(name) = name else { continue };
            let body = match api.get_opt(&name).await {
                Ok(Some(o)) => serde_json::to_string_pretty(&o).unwrap_or_default(),
                Ok(None) => format!("{name}: not found\n"),
                Err(e) => format!("{name}: {}\n", crate::diag::one_line(&e)),
            };
            let _ = write(&dir.join(file), &body);
        }
        let mut namespaces = self.scenario.disaster.namespaces.clone();
        namespaces.push(ns.clone());
        let _ = write(&dir.join("events.txt"), &self.events(&namespaces).await);
        let _ = write(&dir.join("velero.log"), &self.velero_log(&ns, 200).await);
        Some(dir)
    }

    /// The namespaces' events, oldest first, one per line.
    async fn events(&self, namespaces: &[String]) -> String {
        let mut lines = Vec::new();
        for ns in namespaces {
            let api: Api<Event> = Api::namespaced(self.client().clone(), ns);
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for e in list {
                        let t = e
                            .last_timestamp
                            .as_ref()
                            .map(|t| t.0.to_string())
                            .or(e.event_time.as_ref().map(|t| t.0.to_string()))
                            .unwrap_or_default();
                        let obj = &e.involved_object;
                        lines.push(format!(
                            "{t} {ns} {} {} {}/{}: {}",
                            e.type_.unwrap_or_default(),
                            e.reason.unwrap_or_default(),
                            obj.kind.clone().unwrap_or_default(),
                            obj.name.clone().unwrap_or_default(),
                            e.message.unwrap_or_default().trim()
                        ));
                    }
                }
                Err(e) => lines.push(format!(
                    "{ns}: events unreadable: {}",
                    crate::diag::one_line(&e)
                )),
            }
        }
        lines.sort();
        lines.join("\n") + "\n"
    }

    /// The last `tail` lines of the Velero server's log.
    async fn velero_log(&self, ns: &str, tail: i64) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client().clone(), ns);
        let list = match pods
            .list(&ListParams::default().labels("deploy=velero"))
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                return format!(
                    "listing the Velero pods failed: {}\n",
                    crate::diag::one_line(&e)
                )
            }
        };
        if list.is_empty() {
            return format!("no Velero pod (label deploy=velero) in namespace {ns}\n");
        }
        let mut out = String::new();
        for p in list {
            let name = p.metadata.name.unwrap_or_default();
            let lp = LogParams {
                container: Some("velero".into()),
                tail_lines: Some(tail),
                ..LogParams::default()
            };
            out.push_str(&format!(
                "==> pod {ns}/{name} (container velero, last {tail} lines)\n"
            ));
            match pods.logs(&name, &lp).await {
                Ok(text) => out.push_str(&text),
                Err(e) => {
                    out.push_str(&format!("logs unreadable: {}\n", crate::diag::one_line(&e)))
                }
            }
        }
        out
    }
}

fn write(path: &Path, text: &str) -> Result<(), DrillError> {
    std::fs::write(path, text).map_err(|source| DrillError::Write {
        path: path.to_owned(),
        source,
    })
}

fn one_line_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The guard for the disaster: the twin is a throwaway cluster; a real cluster must
/// have opted in with ConfigMap kube-system/stormdrill-allow naming the fault
/// `disaster` (a `*` is not enough for deleting namespaces) and every namespace.
pub fn disaster_allowed(
    target: &str,
    allow: Option<&Option<AllowList>>,
    namespaces: &[String],
) -> Result<(), String> {
    if target == "twin" {
        return Ok(());
    }
    let how = format!(
        "kubectl -n {} create configmap {} --from-literal=namespaces={} \
         --from-literal=faults={DISASTER}",
        guard::CONFIGMAP_NAMESPACE,
        guard::CONFIGMAP,
        namespaces.join(",")
    );
    let Some(Some(allow)) = allow else {
        return Err(format!(
            "the cluster has not opted in to destructive faults: a disaster drill deletes \
             namespace(s) {}; to allow it: `{how}`",
            namespaces.join(", ")
        ));
    };
    if !allow.unknown_faults.iter().any(|f| f == DISASTER) {
        return Err(format!(
            "ConfigMap {}/{} does not name the fault `{DISASTER}` (deleting namespaces is \
             never implied, not even by `*`); to allow it: `{how}`",
            guard::CONFIGMAP_NAMESPACE,
            guard::CONFIGMAP
        ));
    }
    if let Some(allowed) = &allow.namespaces {
        if let Some(ns) = namespaces.iter().find(|n| !allowed.contains(n)) {
            return Err(format!(
                "namespace {ns} is not in the allow list of ConfigMap {}/{} (namespaces: {})",
                guard::CONFIGMAP_NAMESPACE,
                guard::CONFIGMAP,
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn allow(ns: &str, faults: &str) -> Option<AllowList> {
        let data: BTreeMap<String, String> = [
            ("namespaces".to_owned(), ns.to_owned()),
            ("faults".to_owned(), faults.to_owned()),
        ]
        .into();
        Some(AllowList::from_data(&data))
    }

    #[test]
    fn the_disaster_needs_the_clusters_explicit_opt_in() {
        let ns = ["openalex".to_owned()];
        assert!(disaster_allowed("twin", None, &ns).is_ok());
        let e = disaster_allowed("cluster", Some(&None), &ns).unwrap_err();
        assert!(
            e.contains("has not opted in") && e.contains("--from-literal=faults=disaster"),
            "{e}"
        );
        let e = disaster_allowed("cluster", Some(&allow("*", "*")), &ns).unwrap_err();
        assert!(e.contains("does not name the fault `disaster`"), "{e}");
        let e = disaster_allowed(
            "cluster",
            Some(&allow("rook-ceph", "pod-kill, disaster")),
            &ns,
        )
        .unwrap_err();
        assert!(
            e.starts_with("namespace openalex is not in the allow list"),
            "{e}"
        );
        assert!(disaster_allowed("cluster", Some(&allow("openalex", "disaster")), &ns).is_ok());
        assert!(disaster_allowed("cluster", Some(&allow("*", "disaster")), &ns).is_ok());
    }
}
