//! Velero's objects (velero.io/v1) as the drill reads and creates them: the
//! BackupStorageLocation, Backups (of namespaces or from a Schedule, as `velero
//! backup create --from-schedule` does), Restores and Schedules. Status parsing is
//! pure (unit tested); waiting polls with a growing interval and a deadline.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::{
    api::{Api, DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    Client,
};
use serde::Serialize;
use serde_json::{json, Value};

pub const SCHEDULE_LABEL: &str = "velero.io/schedule-name";

#[derive(Debug, thiserror::Error)]
pub enum VeleroError {
    #[error("{what} failed")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{what} did not reach {wanted} within {}s (last phase: {last})", .waited.as_secs_f64())]
    Timeout {
        what: String,
        wanted: String,
        last: String,
        waited: Duration,
    },
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> VeleroError {
    let what = what.into();
    move |source| VeleroError::Api { what, source }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A velero.io/v1 kind in `namespace`.
pub fn api(client: &Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("velero.io", "v1", kind), plural);
    Api::namespaced_with(client.clone(), namespace, &ar)
}

pub fn backups(client: &Client, ns: &str) -> Api<DynamicObject> {
    api(client, ns, "Backup", "backups")
}

pub fn restores(client: &Client, ns: &str) -> Api<DynamicObject> {
    api(client, ns, "Restore", "restores")
}

pub fn schedules(client: &Client, ns: &str) -> Api<DynamicObject> {
    api(client, ns, "Schedule", "schedules")
}

pub fn locations(client: &Client, ns: &str) -> Api<DynamicObject> {
    api(
        client,
        ns,
        "BackupStorageLocation",
        "backupstoragelocations",
    )
}

fn ts(v: &Value, ptr: &str) -> Option<DateTime<Utc>> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn int(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A Backup's or Restore's status, as `velero describe` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Status {
    pub phase: String,
    pub started: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub total_items: Option<i64>,
    /// itemsBackedUp or itemsRestored.
    pub items_done: Option<i64>,
    pub warnings: i64,
    pub errors: i64,
    pub failure_reason: Option<String>,
    pub validation_errors: Vec<String>,
}

impl Status {
    pub fn of(obj: &Value) -> Status {
        let s = obj.get("status").cloned().unwrap_or(Value::Null);
        Status {
            phase: s["phase"].as_str().unwrap_or("New").to_owned(),
            started: ts(&s, "/startTimestamp"),
            completed: ts(&s, "/completionTimestamp"),
            total_items: int(&s, "/progress/totalItems"),
            items_done: int(&s, "/progress/itemsBackedUp").or(int(&s, "/progress/itemsRestored")),
            warnings: int(&s, "/warnings").unwrap_or(0),
            errors: int(&s, "/errors").unwrap_or(0),
            failure_reason: s["failureReason"].as_str().map(String::from),
            validation_errors: strings(&s, "/validationErrors"),
        }
    }

    /// Velero's phases that end a Backup or Restore.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.phase.as_str(),
            "Completed" | "PartiallyFailed" | "Failed" | "FailedValidation"
        )
    }

    /// `phase PartiallyFailed, 1 error(s), 0 warning(s), failure reason: ...`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "phase {}, {} error(s), {} warning(s)",
            self.phase, self.errors, self.warnings
        );
        if let (Some(done), Some(total)) = (self.items_done, self.total_items) {
            s.push_str(&format!(", {done}/{total} items"));
        }
        if let Some(r) = &self.failure_reason {
            s.push_str(&format!(", failure reason: {r}"));
        }
        if !self.validation_errors.is_empty() {
            s.push_str(&format!(
                ", validation errors: {}",
                self.validation_errors.join("; ")
            ));
        }
        s
    }
}

/// The BackupStorageLocation's phase and message.
pub async fn location_status(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(String, Option<String>), VeleroError> {
    let what = format!("BackupStorageLocation {ns}/{name}");
    let bsl = locations(client, ns)
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading {what}")))?
        .ok_or_else(|| VeleroError::NotFound(what))?;
    let v = serde_json::to_value(&bsl).unwrap_or_default();
    Ok((
        v.pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_owned(),
        v.pointer("/status/message")
            .and_then(Value::as_str)
            .map(String::from),
    ))
}

/// A Backup's spec from the drill's parameters.
pub fn backup_spec(
    namespaces: &[String],
    location: &str,
    ttl: &str,
    snapshot_volumes: bool,
    fs_backup: bool,
) -> Value {
    json!({
        "includedNamespaces": namespaces,
        "storageLocation": location,
        "ttl": ttl,
        "snapshotVolumes": snapshot_volumes,
        "defaultVolumesToFsBackup": fs_backup,
    })
}

/// What `velero backup create --from-schedule NAME` creates: the Schedule's template
/// as spec, named `NAME-<yyyyMMddHHmmss>`, labelled with the schedule's name.
pub fn from_schedule(schedule: &Value, now: DateTime<Utc>) -> (String, Value, Value) {
    let name = schedule
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("schedule");
    let mut spec = schedule
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    if spec.get("storageLocation").is_none() {
        spec["storageLocation"] = json!("default");
    }
    let labels = json!({
        SCHEDULE_LABEL: name,
        "velero.io/storage-location": spec["storageLocation"],
    });
    (
        format!("{name}-{}", now.format("%Y%m%d%H%M%S")),
        spec,
        labels,
    )
}

pub async fn get_schedule(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<Value>, VeleroError> {
    let s = schedules(client, ns)
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading Schedule {ns}/{name}")))?;
    Ok(s.map(|s| serde_json::to_value(s).unwrap_or_default()))
}

/// Creates a Backup or Restore from its parts.
pub async fn create(
    api: &Api<DynamicObject>,
    kind: &str,
    ns: &str,
    name: &str,
    labels: Value,
    spec: Value,
) -> Result<(), VeleroError> {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    }))
    .expect("a valid object");
    api.create(&PostParams::default(), &obj)
        .await
        .map_err(api_err(format!("creating {kind} {ns}/{name}")))?;
    Ok(())
}

pub async fn get(api: &Api<DynamicObject>, what: &str, name: &str) -> Result<Value, VeleroError> {
    match api.get(name).await {
        Ok(o) => Ok(serde_json::to_value(o).unwrap_or_default()),
        Err(e) if is_not_found(&e) => Err(VeleroError::NotFound(what.to_owned())),
        Err(source) => Err(VeleroError::Api {
            what: format!("reading {what}"),
            source,
        }),
    }
}

/// Polls until the object's phase is terminal; returns it and when that was seen.
pub async fn wait_terminal(
    api: &Api<DynamicObject>,
    what: &str,
    name: &str,
    within: Duration,
) -> Result<(Value, DateTime<Utc>), VeleroError> {
    let started = Instant::now();
    let mut poll = Poll::new();
    let shown = crate::progress::Wait::start(format!("{what} to finish"), Some(within));
    loop {
        let last = match api.get_opt(name).await {
            Ok(Some(o)) => {
                let v = serde_json::to_value(o).unwrap_or_default();
                let st = Status::of(&v);
                if st.is_terminal() {
                    shown.finish(&st.phase);
                    return Ok((v, Utc::now()));
                }
                st.phase
            }
            Ok(None) => "not found".into(),
            // A failed poll is retried until the deadline: the API server may blink.
            Err(e) => format!("reading it failed: {}", crate::diag::one_line(&e)),
        };
        shown.status(format!("phase {last}"));
        if started.elapsed() >= within {
            return Err(VeleroError::Timeout {
                what: what.to_owned(),
                wanted: "a final phase".into(),
                last,
                waited: within,
            });
        }
        poll.sleep().await;
    }
}

/// The newest Backup labelled with `schedule` (by creation time).
pub async fn newest_scheduled_backup(
    client: &Client,
    ns: &str,
    schedule: &str,
) -> Result<Option<Value>, VeleroError> {
    let lp = ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}"));
    let list = backups(client, ns)
        .list(&lp)
        .await
        .map_err(api_err(format!(
            "listing the Backups of Schedule {ns}/{schedule}"
        )))?;
    Ok(list
        .items
        .into_iter()
        .map(|b| serde_json::to_value(b).unwrap_or_default())
        .max_by_key(|b| ts(b, "/metadata/creationTimestamp").or(ts(b, "/status/startTimestamp"))))
}

/// Poll intervals: 100 ms growing by half up to 2 s (the twin's phases take
/// fractions of a second, a real cluster's minutes).
pub struct Poll(Duration);

impl Poll {
    pub fn new() -> Poll {
        Poll(Duration::from_millis(100))
    }

    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 3 / 2).min(Duration::from_secs(2));
    }
}

impl Default for Poll {
    fn default() -> Self {
        Poll::new()
    }
}

/// The documented Schedule, as a phase-5 check compares it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleFacts {
    pub cron: Option<String>,
    pub namespaces: Vec<String>,
    pub snapshot_volumes: Option<bool>,
    pub ttl: Option<Duration>,
    pub paused: bool,
    pub phase: Option<String>,
}

impl ScheduleFacts {
    pub fn of(schedule: &Value) -> ScheduleFacts {
        ScheduleFacts {
            cron: schedule
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .map(String::from),
            namespaces: strings(schedule, "/spec/template/includedNamespaces"),
            snapshot_volumes: schedule
                .pointer("/spec/template/snapshotVolumes")
                .and_then(Value::as_bool),
            ttl: schedule
                .pointer("/spec/template/ttl")
                .and_then(Value::as_str)
                .and_then(parse_go_duration),
            paused: schedule.pointer("/spec/paused") == Some(&Value::Bool(true)),
            phase: schedule
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map(String::from),
        }
    }
}

/// Go durations as Velero writes them: `168h0m0s`, `720h`, `90m`, `1.5h`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let scale = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * scale;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_as_velero_describes_them() {
        let b = json!({"status": {
            "phase": "Completed", "startTimestamp": "2026-11-25T23:10:00Z",
            "completionTimestamp": "2026-11-25T23:10:04Z",
            "progress": {"totalItems": 40, "itemsBackedUp": 40}, "warnings": 1
        }});
        let s = Status::of(&b);
        assert!(s.is_terminal());
        assert_eq!(
            (s.items_done, s.total_items, s.warnings),
            (Some(40), Some(40), 1)
        );
        assert_eq!((s.completed.unwrap() - s.started.unwrap()).num_seconds(), 4);
        assert_eq!(
            s.describe(),
            "phase Completed, 0 error(s), 1 warning(s), 40/40 items"
        );
        let r = json!({"status": {"phase": "FailedValidation", "validationErrors": ["backup \"x\" is not Completed"]}});
        assert_eq!(
            Status::of(&r).describe(),
            "phase FailedValidation, 0 error(s), 0 warning(s), validation errors: backup \"x\" is not Completed"
        );
        let n = Status::of(&json!({"metadata": {}}));
        assert_eq!(n.phase, "New");
        assert!(!n.is_terminal());
    }

    #[test]
    fn backups_from_a_schedule_as_the_cli_makes_them() {
        let s = json!({"metadata": {"name": "daily-openalex"}, "spec": {"schedule": "0 2 * * *",
            "template": {"includedNamespaces": ["openalex", "rook-ceph"], "ttl": "168h0m0s", "snapshotVolumes": true}}});
        let now = DateTime::parse_from_rfc3339("2026-11-25T23:10:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let (name, spec, labels) = from_schedule(&s, now);
        assert_eq!(name, "daily-openalex-20261125231005");
        assert_eq!(spec["storageLocation"], "default");
        assert_eq!(spec["includedNamespaces"], json!(["openalex", "rook-ceph"]));
        assert_eq!(labels[SCHEDULE_LABEL], "daily-openalex");
        let f = ScheduleFacts::of(&s);
        assert_eq!(f.cron.as_deref(), Some("0 2 * * *"));
        assert_eq!(f.ttl, Some(Duration::from_secs(168 * 3600)));
        assert_eq!(f.snapshot_volumes, Some(true));
        assert!(!f.paused);
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("168h0m0s"),
            Some(Duration::from_secs(168 * 3600))
        );
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("168"), None);
        assert_eq!(parse_go_duration("7d"), None);
    }
}
