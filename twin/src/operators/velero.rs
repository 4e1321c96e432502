//! Velero, simulated after Velero 1.13+'s controllers:
//! - BackupStorageLocation: `Available` while the object store its `s3Url` points at
//!   (a Service, e.g. Rook's RGW) has a Ready endpoint, else `Unavailable` with a
//!   message; validated periodically (`lastValidationTime`).
//! - Backup: New -> InProgress -> Completed (or FailedValidation when the location
//!   is unavailable, Failed when the store goes away mid-backup). A backup really
//!   copies the included namespaces' objects (as Velero's item collector does:
//!   everything but pods/ReplicaSets a controller owns, events, endpoints, leases)
//!   and, file-system-backup style, the contents of every bound volume, into the
//!   twin's object store. startTimestamp, completionTimestamp, expiration (= start +
//!   ttl), progress {totalItems, itemsBackedUp}, errors, warnings.
//! - Restore: InProgress -> Completed from a Completed backup (FailedValidation
//!   otherwise): namespaces first, then objects in Velero's priority order; objects
//!   that exist are skipped with a warning (existingResourcePolicy none); an object
//!   the API refuses to create is an error, logged by the velero pod, and the restore
//!   ends PartiallyFailed (`status.errors`), as Velero does; PVCs are
//!   recreated unbound, dynamically provisioned, and their data written back once
//!   bound (the restore-wait init container of FSB restores).
//! - Schedule: `Enabled`; a new schedule backs up at once unless `skipImmediately`
//!   (Velero 1.13), then on its cron (5 fields, UTC); backups are named
//!   `<schedule>-<yyyyMMddHHmmss>` and labelled `velero.io/schedule-name`.
//!
//! Not modelled: volume snapshots through a CSI driver (snapshotVolumes is honoured
//! as a file-system copy), hooks, resource filters beyond namespaces, TTL garbage
//! collection of expired backups.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::{operator_running, set_status};
use crate::ctx::{obj, reconcile_loop, Ctx};

const GROUP: &str = "velero.io";

/// What a backup holds in the object store.
#[derive(Clone, Debug, Default)]
pub struct StoredBackup {
    /// (group, plural, object) in collection order.
    pub items: Vec<(String, String, Value)>,
    /// PVC namespace/name -> files of its volume.
    pub volumes: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// The backup bucket. It lives outside the cluster's objects, as the RGW data does.
#[derive(Default)]
pub struct ObjectStore {
    backups: Mutex<HashMap<String, StoredBackup>>,
}

impl ObjectStore {
    pub fn get(&self, name: &str) -> Option<StoredBackup> {
        self.backups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
    fn put(&self, name: &str, b: StoredBackup) {
        self.backups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), b);
    }
}

#[derive(Default)]
struct State {
    /// Backups/restores in progress: name -> when the work is due to finish.
    due: HashMap<String, Instant>,
    /// Restores waiting for PVCs to bind before writing their data.
    pending_volumes: HashMap<String, Vec<PendingVolume>>,
}

/// (namespace, PVC name, the volume's files) to write back once the claim binds.
type PendingVolume = (String, String, BTreeMap<String, Vec<u8>>);

pub async fn run(ctx: Ctx, store: Arc<ObjectStore>, stop: watch::Receiver<bool>) {
    let mut st = State::default();
    reconcile_loop(
        ctx,
        &[
            (GROUP, "backups"),
            (GROUP, "restores"),
            (GROUP, "schedules"),
            (GROUP, "backupstoragelocations"),
            ("apps", "deployments"),
            ("", "persistentvolumeclaims"),
            ("", "endpoints"),
        ],
        stop,
        move |ctx| {
            if !operator_running(ctx, "velero", "velero") {
                return;
            }
            locations(ctx);
            schedules(ctx);
            backups(ctx, &store, &mut st);
            restores(ctx, &store, &mut st);
        },
    )
    .await
}

fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Service behind an s3Url like `http://rook-ceph-rgw-rgw.rook-ceph.svc:80`.
fn store_service(url: &str) -> Option<(String, String)> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    let svc = parts.next()?.to_string();
    let ns = parts.next()?.to_string();
    Some((ns, svc))
}

fn store_available(ctx: &Ctx, bsl: &Value) -> Result<(), String> {
    let url = bsl
        .pointer("/spec/config/s3Url")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bucket = bsl
        .pointer("/spec/objectStorage/bucket")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some((ns, svc)) = store_service(url) else {
        return Err(format!(
            "BackupStorageLocation \"{}\" is unavailable: invalid s3Url {url:?}",
            obj::name(bsl)
        ));
    };
    let ready = ctx
        .client
        .get("", "endpoints", Some(&ns), &svc)
        .and_then(|e| e.pointer("/subsets").and_then(Value::as_array).cloned())
        .is_some_and(|subs| {
            subs.iter()
                .any(|s| s["addresses"].as_array().is_some_and(|a| !a.is_empty()))
        });
    if ready {
        Ok(())
    } else {
        Err(format!(
            "BackupStorageLocation \"{}\" is unavailable: rpc error: code = Unknown desc = RequestError: send request failed\ncaused by: Get \"{url}/{bucket}?delimiter=%2F&list-type=2&prefix=backups%2F\": dial tcp: lookup {svc}.{ns}.svc: no such host",
            obj::name(bsl)
        ))
    }
}

fn locations(ctx: &Ctx) {
    for bsl in ctx.client.list(GROUP, "backupstoragelocations", None, None) {
        let status = match store_available(ctx, &bsl) {
            Ok(()) => json!({"phase": "Available", "message": null}),
            Err(msg) => json!({"phase": "Unavailable", "message": msg}),
        };
        let changed = bsl.pointer("/status/phase") != status.get("phase");
        let mut status = status;
        // Velero validates every validationFrequency; record it when the phase changes.
        if changed || bsl.pointer("/status/lastValidationTime").is_none() {
            status["lastValidationTime"] = json!(now_ts());
        }
        set_status(ctx, GROUP, "backupstoragelocations", &bsl, status);
    }
}

fn location(ctx: &Ctx, ns: &str, name: &str) -> Option<Value> {
    if name.is_empty() {
        return ctx
            .client
            .list(GROUP, "backupstoragelocations", Some(ns), None)
            .into_iter()
            .find(|b| b.pointer("/spec/default") == Some(&Value::Bool(true)));
    }
    ctx.client
        .get(GROUP, "backupstoragelocations", Some(ns), name)
}

/// Next time a 5-field cron expression (minute hour day-of-month month day-of-week,
/// `*`, numbers, lists, ranges and `*/n`) fires after `after`.
pub fn cron_next(
    expr: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{Datelike, Timelike};
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return None;
    }
    let parse = |f: &str, lo: u32, hi: u32| -> Option<Vec<u32>> {
        let mut out = Vec::new();
        for part in f.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, s.parse::<u32>().ok()?),
                None => (part, 1),
            };
            let (a, b) = if range == "*" {
                (lo, hi)
            } else if let Some((a, b)) = range.split_once('-') {
                (a.parse().ok()?, b.parse().ok()?)
            } else {
                let v = range.parse().ok()?;
                (v, v)
            };
            out.extend((a..=b).step_by(step.max(1) as usize));
        }
        Some(out)
    };
    let (mins, hours, doms, months, dows) = (
        parse(fields[0], 0, 59)?,
        parse(fields[1], 0, 23)?,
        parse(fields[2], 1, 31)?,
        parse(fields[3], 1, 12)?,
        parse(fields[4], 0, 6)?,
    );
    let mut t = after.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
    for _ in 0..(366 * 24 * 60) {
        if months.contains(&t.month())
            && doms.contains(&t.day())
            && dows.contains(&t.weekday().num_days_from_sunday())
            && hours.contains(&t.hour())
            && mins.contains(&t.minute())
        {
            return Some(t);
        }
        t += chrono::Duration::minutes(1);
    }
    None
}

fn schedules(ctx: &Ctx) {
    for s in ctx.client.list(GROUP, "schedules", None, None) {
        let ns = obj::namespace(&s).to_string();
        let expr = s
            .pointer("/spec/schedule")
            .and_then(Value::as_str)
            .unwrap_or("");
        let now = chrono::Utc::now();
        let Some(_) = cron_next(expr, now) else {
            set_status(
                ctx,
                GROUP,
                "schedules",
                &s,
                json!({"phase": "FailedValidation", "validationErrors": [format!("invalid schedule: {expr}")]}),
            );
            continue;
        };
        if s.pointer("/spec/paused") == Some(&Value::Bool(true)) {
            continue;
        }
        // A backup is only worth starting once its location is usable; the first
        // one of a new schedule waits for that rather than failing validation.
        let loc_name = s
            .pointer("/spec/template/storageLocation")
            .and_then(Value::as_str)
            .unwrap_or("");
        if location(ctx, &ns, loc_name)
            .and_then(|l| {
                l.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .as_deref()
            != Some("Available")
        {
            continue;
        }
        let last = s
            .pointer("/status/lastBackup")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let due = match last {
            None => s.pointer("/spec/skipImmediately") != Some(&Value::Bool(true)),
            Some(l) => cron_next(expr, l).is_some_and(|n| n <= now),
        };
        let mut status = json!({"phase": "Enabled"});
        if due {
            let name = format!("{}-{}", obj::name(&s), now.format("%Y%m%d%H%M%S"));
            let mut spec = s.pointer("/spec/template").cloned().unwrap_or(json!({}));
            if spec.get("storageLocation").is_none() {
                spec["storageLocation"] = json!("default");
            }
            let created = ctx.client.create(json!({
                "apiVersion": "velero.io/v1", "kind": "Backup",
                "metadata": {"name": name, "namespace": ns, "labels": {"velero.io/schedule-name": obj::name(&s), "velero.io/storage-location": spec["storageLocation"]}},
                "spec": spec,
            }));
            if created.is_ok() {
                status["lastBackup"] =
                    json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
        }
        set_status(ctx, GROUP, "schedules", &s, status);
    }
}

/// Resources Velero restores first (its default priorities), then everything else.
const PRIORITY: &[&str] = &[
    "namespaces",
    "storageclasses",
    "persistentvolumes",
    "persistentvolumeclaims",
    "secrets",
    "configmaps",
    "serviceaccounts",
    "limitranges",
    "pods",
    "replicasets",
];

fn collect(ctx: &Ctx, namespaces: &[String]) -> StoredBackup {
    let mut b = StoredBackup::default();
    let reg = ctx.client.api.registry();
    let skip = [
        "events",
        "endpoints",
        "endpointslices",
        "leases",
        "controllerrevisions",
    ];
    for ns in namespaces {
        if let Some(n) = ctx.client.get("", "namespaces", None, ns) {
            b.items
                .push((String::new(), "namespaces".into(), clean(&n)));
        }
        for info in reg
            .all()
            .filter(|i| i.namespaced && !skip.contains(&i.plural.as_str()))
        {
            if info.group == GROUP {
                continue;
            }
            for o in ctx.client.list(&info.group, &info.plural, Some(ns), None) {
                // Controllers recreate what they own; Velero's restore does the same.
                if obj::controller_of(&o).is_some()
                    && matches!(info.plural.as_str(), "pods" | "replicasets" | "jobs")
                {
                    continue;
                }
                if info.plural == "persistentvolumeclaims" {
                    if let Some(pv) = o.pointer("/spec/volumeName").and_then(Value::as_str) {
                        b.volumes
                            .insert(format!("{ns}/{}", obj::name(&o)), ctx.voldata.snapshot(pv));
                    }
                }
                b.items
                    .push((info.group.clone(), info.plural.clone(), clean(&o)));
            }
        }
    }
    b.items.sort_by_key(|(_, plural, _)| {
        PRIORITY
            .iter()
            .position(|p| p == plural)
            .unwrap_or(PRIORITY.len())
    });
    b
}

/// Strips what the API server assigns, as Velero's restore item action does.
fn clean(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "ownerReferences",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "finalizers",
        ] {
            m.remove(k);
        }
    }
    if let Some(m) = c.as_object_mut() {
        m.remove("status");
    }
    if c["kind"] == "PersistentVolumeClaim" {
        if let Some(spec) = c["spec"].as_object_mut() {
            spec.remove("volumeName");
        }
        if let Some(a) = c["metadata"]["annotations"].as_object_mut() {
            a.retain(|k, _| {
                !k.starts_with("pv.kubernetes.io/") && !k.starts_with("volume.kubernetes.io/")
            });
        }
    }
    // Velero's ServiceAction (pkg/restore/actions/service_action.go) clears an assigned
    // cluster IP but keeps "None": a headless Service is restored headless.
    if c["kind"] == "Service" && c["spec"]["clusterIP"] != "None" {
        if let Some(spec) = c["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    c
}

fn backups(ctx: &Ctx, store: &ObjectStore, st: &mut State) {
    for b in ctx.client.list(GROUP, "backups", None, None) {
        let key = format!("backup/{}/{}", obj::namespace(&b), obj::name(&b));
        let phase = b
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = obj::namespace(&b).to_string();
        let loc_name = b
            .pointer("/spec/storageLocation")
            .and_then(Value::as_str)
            .unwrap_or("");
        match phase.as_str() {
            "" | "New" => {
                let Some(loc) = location(ctx, &ns, loc_name) else {
                    set_status(
                        ctx,
                        GROUP,
                        "backups",
                        &b,
                        json!({"phase": "FailedValidation", "validationErrors": [format!("an existing backup storage location was not specified at backup creation time and the default {loc_name:?} was not found")]}),
                    );
                    continue;
                };
                if loc.pointer("/status/phase").and_then(Value::as_str) != Some("Available") {
                    set_status(
                        ctx,
                        GROUP,
                        "backups",
                        &b,
                        json!({"phase": "FailedValidation", "validationErrors": [format!("backup can't be created because BackupStorageLocation {} is in Unavailable status.", obj::name(&loc))]}),
                    );
                    continue;
                }
                let namespaces: Vec<String> = b
                    .pointer("/spec/includedNamespaces")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let collected = collect(ctx, &namespaces);
                let total = collected.items.len();
                let work = ctx.timing.backup_base + ctx.timing.backup_per_item * total as u32;
                st.due.insert(key.clone(), Instant::now() + work);
                store.put(&format!("{ns}/{}", obj::name(&b)), collected);
                let ttl = b
                    .pointer("/spec/ttl")
                    .and_then(Value::as_str)
                    .and_then(parse_go_duration)
                    .unwrap_or(Duration::from_secs(30 * 24 * 3600));
                let start = chrono::Utc::now();
                set_status(
                    ctx,
                    GROUP,
                    "backups",
                    &b,
                    json!({
                        "phase": "InProgress", "version": 1, "formatVersion": "1.1.0",
                        "startTimestamp": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "expiration": (start + chrono::Duration::from_std(ttl).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "progress": {"totalItems": total, "itemsBackedUp": 0},
                    }),
                );
            }
            "InProgress" => {
                let due = *st.due.entry(key.clone()).or_insert_with(Instant::now);
                let total = b
                    .pointer("/status/progress/totalItems")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let loc_ok =
                    location(ctx, &ns, loc_name).is_some_and(|l| store_available(ctx, &l).is_ok());
                if !loc_ok {
                    set_status(
                        ctx,
                        GROUP,
                        "backups",
                        &b,
                        json!({"phase": "Failed", "failureReason": "error uploading backup: the object store is unavailable", "completionTimestamp": now_ts(), "errors": 1}),
                    );
                    st.due.remove(&key);
                } else if Instant::now() >= due {
                    set_status(
                        ctx,
                        GROUP,
                        "backups",
                        &b,
                        json!({"phase": "Completed", "completionTimestamp": now_ts(), "progress": {"totalItems": total, "itemsBackedUp": total}, "errors": 0, "warnings": 0}),
                    );
                    st.due.remove(&key);
                    ctx.truth.record("velero", &key, "Completed");
                }
            }
            _ => {}
        }
    }
}

/// A line in the velero pod's log (container `velero`), as the server logs errors.
fn log(ctx: &Ctx, line: &str) {
    let pods = ctx.client.list("", "pods", Some("velero"), None);
    if let Some(p) = pods
        .iter()
        .find(|p| p.pointer("/metadata/labels/deploy").and_then(Value::as_str) == Some("velero"))
    {
        ctx.sim.log(
            "velero",
            obj::name(p),
            "velero",
            &format!("time=\"{}\" {line}", now_ts()),
        );
    }
}

/// Go durations as Velero writes ttl: `168h0m0s`, `720h`, `30m`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            "ms"
        } else {
            match c {
                'h' => "h",
                'm' => "m",
                's' => "s",
                _ => return None,
            }
        };
        let v: f64 = num.parse().ok()?;
        num.clear();
        any = true;
        total += v * match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            _ => 0.001,
        };
    }
    (any && num.is_empty()).then(|| Duration::from_secs_f64(total))
}

fn restores(ctx: &Ctx, store: &ObjectStore, st: &mut State) {
    for r in ctx.client.list(GROUP, "restores", None, None) {
        let key = format!("restore/{}/{}", obj::namespace(&r), obj::name(&r));
        let phase = r
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = obj::namespace(&r).to_string();
        match phase.as_str() {
            "" | "New" => {
                let backup_name = r
                    .pointer("/spec/backupName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let backup = ctx.client.get(GROUP, "backups", Some(&ns), &backup_name);
                let completed = backup.as_ref().is_some_and(|b| {
                    b.pointer("/status/phase").and_then(Value::as_str) == Some("Completed")
                });
                let stored = store.get(&format!("{ns}/{backup_name}"));
                let (Some(stored), true) = (stored, completed) else {
                    set_status(
                        ctx,
                        GROUP,
                        "restores",
                        &r,
                        json!({"phase": "FailedValidation", "validationErrors": [format!("backup {backup_name:?} is not Completed or was not found")]}),
                    );
                    continue;
                };
                let start = now_ts();
                let mut restored = 0;
                let mut warnings: Vec<String> = Vec::new();
                let mut errors = 0;
                for (group, plural, item) in &stored.items {
                    let mut item = item.clone();
                    if let Some(ann) = item["metadata"].as_object_mut() {
                        ann.entry("labels").or_insert(json!({}));
                    }
                    item["metadata"]["labels"]["velero.io/restore-name"] = json!(obj::name(&r));
                    item["metadata"]["labels"]["velero.io/backup-name"] = json!(backup_name);
                    let ins = item
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(String::from);
                    if ctx
                        .client
                        .get(group, plural, ins.as_deref(), obj::name(&item))
                        .is_some()
                    {
                        warnings.push(format!(
                            "could not restore, {} {:?} already exists.",
                            item["kind"].as_str().unwrap_or(""),
                            obj::name(&item)
                        ));
                        continue;
                    }
                    match ctx.client.create(item.clone()) {
                        Ok(_) => restored += 1,
                        Err(e) => {
                            errors += 1;
                            let what = format!(
                                "{plural}/{}{}",
                                ins.map(|n| format!("{n}/")).unwrap_or_default(),
                                obj::name(&item)
                            );
                            log(ctx, &format!("level=error msg=\"error restoring {what}: {}\" logSource=\"pkg/restore/restore.go:1567\" restore={ns}/{}", e.message.replace('"', "'"), obj::name(&r)));
                        }
                    }
                }
                let volumes: Vec<PendingVolume> = stored
                    .volumes
                    .into_iter()
                    .filter_map(|(k, files)| {
                        k.split_once('/')
                            .map(|(a, b)| (a.to_string(), b.to_string(), files))
                    })
                    .collect();
                st.pending_volumes.insert(key.clone(), volumes);
                st.due
                    .insert(key.clone(), Instant::now() + ctx.timing.backup_base);
                set_status(
                    ctx,
                    GROUP,
                    "restores",
                    &r,
                    json!({
                        "phase": "InProgress", "startTimestamp": start,
                        "progress": {"totalItems": stored.items.len(), "itemsRestored": restored},
                        "warnings": warnings.len(), "errors": errors,
                    }),
                );
            }
            "InProgress" => {
                // Write each volume's data once its claim is bound (restore-wait).
                let pending = st.pending_volumes.entry(key.clone()).or_default();
                pending.retain(|(pns, pvc, files)| {
                    let pv = ctx
                        .client
                        .get("", "persistentvolumeclaims", Some(pns), pvc)
                        .and_then(|c| {
                            (c.pointer("/status/phase").and_then(Value::as_str) == Some("Bound"))
                                .then(|| {
                                    c.pointer("/spec/volumeName")
                                        .and_then(Value::as_str)
                                        .map(String::from)
                                })
                                .flatten()
                        });
                    match pv {
                        Some(pv) => {
                            ctx.voldata.restore(&pv, files.clone());
                            false
                        }
                        None => true,
                    }
                });
                let due = st.due.get(&key).copied().unwrap_or_else(Instant::now);
                if pending.is_empty() && Instant::now() >= due {
                    st.pending_volumes.remove(&key);
                    st.due.remove(&key);
                    let total = r
                        .pointer("/status/progress/totalItems")
                        .cloned()
                        .unwrap_or(json!(0));
                    let done = r
                        .pointer("/status/progress/itemsRestored")
                        .cloned()
                        .unwrap_or(json!(0));
                    let errors = r
                        .pointer("/status/errors")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let phase = if errors > 0 {
                        "PartiallyFailed"
                    } else {
                        "Completed"
                    };
                    set_status(
                        ctx,
                        GROUP,
                        "restores",
                        &r,
                        json!({"phase": phase, "completionTimestamp": now_ts(), "progress": {"totalItems": total, "itemsRestored": done}, "errors": errors}),
                    );
                    ctx.truth.record("velero", &key, phase);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cron_and_durations() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 10, 0)
            .unwrap();
        assert_eq!(
            cron_next("0 2 * * *", t).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap()
        );
        assert_eq!(
            cron_next("*/15 * * * *", t).unwrap(),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 23, 15, 0)
                .unwrap()
        );
        assert!(cron_next("bad", t).is_none());
        assert_eq!(
            parse_go_duration("168h0m0s"),
            Some(Duration::from_secs(168 * 3600))
        );
        assert_eq!(parse_go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1x"), None);
        assert_eq!(
            store_service("http://rook-ceph-rgw-rgw.rook-ceph.svc:80"),
            Some(("rook-ceph".into(), "rook-ceph-rgw-rgw".into()))
        );
    }

    #[test]
    fn a_restored_service_gets_a_new_cluster_ip_unless_headless() {
        let svc = |ip: &str| {
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "s", "namespace": "n", "uid": "u"},
                   "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 80}]}})
        };
        let assigned = clean(&svc("10.96.0.7"));
        assert!(assigned["spec"].get("clusterIP").is_none());
        assert!(assigned["spec"].get("clusterIPs").is_none());
        let headless = clean(&svc("None"));
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    }
}
