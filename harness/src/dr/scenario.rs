//! A drill's parameters as a reusable YAML scenario (`scenarios/velero-dr.yaml`):
//! which namespaces are backed up, lost and restored, where and how often markers
//! are written, how the API is checked, and how long each phase may take.
//!
//! Every key has a default (the documented stack's), so a scenario file only says
//! what differs; unknown keys are refused with file:line, so a typo cannot silently
//! fall back to a default.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("drill scenario {given} not found (looked in {})", list_paths(.tried))]
    NotFound { given: PathBuf, tried: Vec<PathBuf> },
    #[error("cannot read drill scenario {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid drill scenario {path}:{line}:{column}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("invalid drill scenario {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Velero disaster-recovery drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrScenario {
    /// Names the report folder (`dr-<name>`) and the drill's objects.
    pub name: String,
    pub description: String,
    /// Where Velero runs (its Backups, Restores, Schedules, BackupStorageLocations).
    pub velero_namespace: String,
    pub backup: BackupSpec,
    pub disaster: DisasterSpec,
    pub restore: RestoreSpec,
    pub markers: MarkerSpec,
    pub api: ApiSpec,
    pub verify: VerifySpec,
    pub deadlines: DeadlineSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSpec {
    /// Take the backup from this Schedule's template, as `velero backup create
    /// --from-schedule` does; else a Backup of `namespaces`.
    pub from_schedule: Option<String>,
    pub namespaces: Vec<String>,
    pub storage_location: String,
    /// Go duration, as Velero writes it.
    pub ttl: String,
    pub snapshot_volumes: bool,
    pub default_volumes_to_fs_backup: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisasterSpec {
    /// Namespaces deleted; each must be in the backup.
    pub namespaces: Vec<String>,
    /// Also delete the PersistentVolumes their claims were bound to, if they remain
    /// (reclaim policy Retain), so the restore cannot rebind the old data.
    pub delete_volumes: bool,
    /// Markers keep being written this long after the backup completed, so that the
    /// drill shows writes after the backup are not restored.
    pub wait_after_backup_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreSpec {
    /// Restored namespaces; empty: the disaster's.
    pub namespaces: Vec<String>,
    pub restore_volumes: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarkerSpec {
    /// The database pod markers are written through (`psql` in its container).
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub user: String,
    pub database: String,
    pub table: String,
    pub interval_s: f64,
    /// Bounds: the writer stops by itself after this many markers or this long.
    pub max_count: u64,
    pub max_duration_s: f64,
    /// One `psql` call's bound.
    pub exec_timeout_s: f64,
    /// Also write a ConfigMap per marker in `namespace` (API-level fallback).
    pub configmaps: bool,
    /// The backup waits for this many markers, so that some must come back.
    pub min_before_backup: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSpec {
    /// The load balancer Service whose `status.loadBalancer.ingress[0]` is the address.
    pub service_namespace: String,
    pub service: String,
    /// Host header and TLS server name.
    pub host: String,
    /// Secret whose `ca.crt` signs the API's certificate (none: the system's roots).
    pub ca_secret_namespace: String,
    pub ca_secret: String,
    /// A work that must come back: GET `/works/<work>` answers 200 with its id.
    pub work: String,
    pub request_timeout_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySpec {
    /// `SELECT count(*) FROM works` after the restore.
    pub works_count: u64,
}

/// How long each phase may take before the drill gives up (bounds on waiting; the
/// criteria are judged separately, from the steps or the acceptance profile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineSpec {
    /// The BackupStorageLocation must be Available within this.
    pub precheck_s: f64,
    /// The first marker must be written within this.
    pub first_marker_s: f64,
    pub backup_s: f64,
    /// The namespaces must be gone within this after their deletion.
    pub disaster_s: f64,
    pub restore_s: f64,
    /// Workloads Ready and the API serving correct data, from the disaster.
    pub recovery_s: f64,
}

impl Default for DrScenario {
    fn default() -> Self {
        DrScenario {
            name: "velero-dr".into(),
            description: String::new(),
            velero_namespace: "velero".into(),
            backup: BackupSpec::default(),
            disaster: DisasterSpec::default(),
            restore: RestoreSpec::default(),
            markers: MarkerSpec::default(),
            api: ApiSpec::default(),
            verify: VerifySpec::default(),
            deadlines: DeadlineSpec::default(),
        }
    }
}

impl Default for BackupSpec {
    fn default() -> Self {
        BackupSpec {
            from_schedule: None,
            namespaces: vec!["openalex".into()],
            storage_location: "default".into(),
            ttl: "24h0m0s".into(),
            snapshot_volumes: true,
            default_volumes_to_fs_backup: true,
        }
    }
}

impl Default for DisasterSpec {
    fn default() -> Self {
        DisasterSpec {
            namespaces: vec!["openalex".into()],
            delete_volumes: true,
            wait_after_backup_s: 3.0,
        }
    }
}

impl Default for RestoreSpec {
    fn default() -> Self {
        RestoreSpec {
            namespaces: Vec::new(),
            restore_volumes: true,
        }
    }
}

impl Default for MarkerSpec {
    fn default() -> Self {
        MarkerSpec {
            namespace: "openalex".into(),
            pod: "postgresql-0".into(),
            container: "postgresql".into(),
            user: "openalex".into(),
            database: "openalex".into(),
            table: "stormdrill_markers".into(),
            interval_s: 1.0,
            max_count: 7200,
            max_duration_s: 7200.0,
            exec_timeout_s: 10.0,
            configmaps: true,
            min_before_backup: 3,
        }
    }
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec {
            service_namespace: "projectcontour".into(),
            service: "envoy".into(),
            host: "api.openalex.univ-lehavre.fr".into(),
            ca_secret_namespace: "openalex".into(),
            ca_secret: "openalex-api-tls".into(),
            work: "W2741809807".into(),
            request_timeout_s: 5.0,
        }
    }
}

impl Default for VerifySpec {
    fn default() -> Self {
        VerifySpec { works_count: 50 }
    }
}

impl Default for DeadlineSpec {
    fn default() -> Self {
        DeadlineSpec {
            precheck_s: 60.0,
            first_marker_s: 60.0,
            backup_s: 1800.0,
            disaster_s: 600.0,
            restore_s: 1800.0,
            recovery_s: 1800.0,
        }
    }
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() { s.max(0.0) } else { 0.0 })
}

/// A Kubernetes object name or label value part: lowercase letters, digits, `-`.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A SQL identifier the drill can write unquoted.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl DrScenario {
    pub fn parse(path: &Path, text: &str) -> Result<DrScenario, ScenarioError> {
        let scenario: DrScenario = serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            ScenarioError::Parse {
                path: path.to_owned(),
                line,
                column,
                source,
            }
        })?;
        scenario
            .validate()
            .map_err(|reason| ScenarioError::Invalid {
                path: path.to_owned(),
                reason,
            })?;
        Ok(scenario)
    }

    pub fn load(path: &Path) -> Result<DrScenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The namespaces restored: `restore.namespaces`, else the disaster's.
    pub fn restore_namespaces(&self) -> &[String] {
        if self.restore.namespaces.is_empty() {
            &self.disaster.namespaces
        } else {
            &self.restore.namespaces
        }
    }

    /// What makes a drill meaningless or unsafe, in one sentence.
    pub fn validate(&self) -> Result<(), String> {
        if !is_dns_label(&self.name) {
            return Err(format!(
                "name {:?} must be lowercase letters, digits and `-` (at most 40)",
                self.name
            ));
        }
        if self.backup.from_schedule.is_none() && self.backup.namespaces.is_empty() {
            return Err("backup.namespaces is empty and no backup.from_schedule is given".into());
        }
        if self.disaster.namespaces.is_empty() {
            return Err("disaster.namespaces is empty: the drill has nothing to lose".into());
        }
        // With a schedule the namespaces are only known from the cluster; the disaster
        // step checks them against the Backup itself.
        if self.backup.from_schedule.is_none() {
            if let Some(ns) = self
                .disaster
                .namespaces
                .iter()
                .find(|ns| !self.backup.namespaces.contains(ns))
            {
                return Err(format!(
                    "disaster namespace {ns} is not in backup.namespaces: it could not be restored"
                ));
            }
        }
        if !self.disaster.namespaces.contains(&self.markers.namespace) {
            return Err(format!(
                "markers.namespace {} is not lost in the disaster, so markers cannot measure the RPO",
                self.markers.namespace
            ));
        }
        if !(self.markers.interval_s > 0.0 && self.markers.interval_s.is_finite()) {
            return Err("markers.interval_s must be a positive number of seconds".into());
        }
        if self.markers.max_count == 0 || self.markers.min_before_backup > self.markers.max_count {
            return Err(
                "markers.max_count must be at least 1 and at least markers.min_before_backup"
                    .into(),
            );
        }
        if !is_identifier(&self.markers.table) {
            return Err(format!(
                "markers.table {:?} must be a lowercase SQL identifier",
                self.markers.table
            ));
        }
        let d = &self.deadlines;
        for (key, v) in [
            ("precheck_s", d.precheck_s),
            ("first_marker_s", d.first_marker_s),
            ("backup_s", d.backup_s),
            ("disaster_s", d.disaster_s),
            ("restore_s", d.restore_s),
            ("recovery_s", d.recovery_s),
            ("markers.max_duration_s", self.markers.max_duration_s),
            ("markers.exec_timeout_s", self.markers.exec_timeout_s),
            ("api.request_timeout_s", self.api.request_timeout_s),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!("{key} must be a positive number of seconds"));
            }
        }
        if !(self.disaster.wait_after_backup_s >= 0.0
            && self.disaster.wait_after_backup_s.is_finite())
        {
            return Err("disaster.wait_after_backup_s must be zero or more seconds".into());
        }
        Ok(())
    }
}

/// Finds a scenario path as a feature names it: absolute; else relative to the
/// working directory or one of its parents (tests run in `harness/`, the CLI in the
/// repository), else to the parents of `base` (the run's stack folder).
pub fn resolve(given: &Path, base: Option<&Path>) -> Result<PathBuf, ScenarioError> {
    if given.is_absolute() {
        return Ok(given.to_owned());
    }
    let mut tried = Vec::new();
    let cwd = std::env::current_dir().ok();
    let roots = cwd
        .iter()
        .flat_map(|c| c.ancestors())
        .chain(base.into_iter().flat_map(Path::ancestors));
    for root in roots {
        let candidate = root.join(given);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if !tried.contains(&candidate) {
            tried.push(candidate);
        }
    }
    Err(ScenarioError::NotFound {
        given: given.to_owned(),
        tried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenario_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/velero-dr.yaml");
        let s = DrScenario::load(&path).unwrap();
        let expected = DrScenario {
            description: s.description.clone(),
            ..DrScenario::default()
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn partial_files_keep_defaults_and_typos_are_refused() {
        let p = Path::new("s.yaml");
        let s = DrScenario::parse(p, "name: quick\nmarkers:\n  interval_s: 0.2\n").unwrap();
        assert_eq!(s.markers.interval_s, 0.2);
        assert_eq!(s.markers.pod, "postgresql-0");
        assert_eq!(s.restore_namespaces(), ["openalex"]);
        let e = DrScenario::parse(p, "name: x\nmarkers:\n  intervall_s: 1\n").unwrap_err();
        assert!(matches!(e, ScenarioError::Parse { line: 3, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("invalid drill scenario s.yaml:3:"),
            "{e}"
        );
    }

    #[test]
    fn unsafe_or_meaningless_drills_are_refused() {
        let p = Path::new("s.yaml");
        let e = DrScenario::parse(p, "disaster:\n  namespaces: [openalex, monitoring]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("disaster namespace monitoring is not in backup.namespaces"),
            "{e}"
        );
        let e = DrScenario::parse(p, "markers:\n  namespace: monitoring\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot measure the RPO"), "{e}");
        let e = DrScenario::parse(p, "name: Bad_Name\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lowercase"), "{e}");
        let e = DrScenario::parse(p, "markers:\n  table: \"x; drop\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SQL identifier"), "{e}");
        let e = DrScenario::parse(p, "deadlines:\n  restore_s: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("restore_s must be a positive"), "{e}");
        // From a schedule, the namespaces are checked against the Backup itself.
        let s = DrScenario::parse(
            p,
            "backup:\n  from_schedule: daily-openalex\n  namespaces: []\n",
        )
        .unwrap();
        assert_eq!(s.backup.from_schedule.as_deref(), Some("daily-openalex"));
    }

    #[test]
    fn paths_resolve_from_parents_of_the_working_directory() {
        let found = resolve(Path::new("scenarios/velero-dr.yaml"), None).unwrap();
        assert!(found.ends_with("scenarios/velero-dr.yaml"));
        let e = resolve(Path::new("scenarios/nope.yaml"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("drill scenario scenarios/nope.yaml not found"),
            "{e}"
        );
    }
}
