//! The Job controller, following kube-controller-manager's `job.Controller.syncJob`
//! for NonIndexed Jobs:
//!
//! - pods: `<job>-<5 random chars>` from the template, with the labels the API
//!   server adds to a Job's template (`batch.kubernetes.io/controller-uid`,
//!   `batch.kubernetes.io/job-name`, `controller-uid`, `job-name`) and the
//!   `batch.kubernetes.io/job-tracking` finalizer; without `spec.selector` the
//!   selector is the controller-uid label (what the API server generates).
//! - counting as upstream's finalizer-based tracking: a finished pod's UID is first
//!   recorded in `status.uncountedTerminatedPods`, its finalizer removed, then it is
//!   moved into `succeeded`/`failed`; a pod being deleted before it succeeded counts
//!   as failed. Finalizers of pods whose Job is gone are removed.
//! - `manageJob`: keeps `min(parallelism, completions - succeeded)` pods active
//!   (`parallelism` while no pod succeeded when `completions` is unset), deleting
//!   surplus pods (not-ready first), creating missing ones after the failure
//!   back-off (`timing.restart_backoff` doubling per failure since the last success,
//!   capped at 6 minutes; upstream's base is 10 s, the realistic profile's value).
//! - failure: `failed > backoffLimit`, or for `restartPolicy: OnFailure` the
//!   container restarts of running pods reaching `backoffLimit` (reason
//!   BackoffLimitExceeded), or `activeDeadlineSeconds` elapsed since `startTime`
//!   (DeadlineExceeded): active pods are deleted and conditions FailureTarget and
//!   Failed set.
//! - success: `succeeded >= completions` (or any success with no completions) and
//!   no pod active: SuccessCriteriaMet, then Complete (with `completionTime`) once
//!   no pod is terminating.
//! - `suspend` deletes active pods and sets Suspended (JobSuspended), resuming sets
//!   it False (JobResumed) and restarts `startTime`; `ttlSecondsAfterFinished`
//!   deletes the finished Job (foreground, as the TTL-after-finished controller).
//! - status: `active`, `ready`, `terminating`, `succeeded`, `failed`, `startTime`,
//!   `completionTime`, `uncountedTerminatedPods`, conditions.
//!
//! Simplified: no Indexed completion mode, no `podFailurePolicy`, no
//! `successPolicy`, no `backoffLimitPerIndex`, no `managedBy`; Failed is set at the
//! same time as FailureTarget (upstream waits for terminating pods); no Events.

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::workloads::{self as w, int_at, omit0};
use crate::api::{DeleteOptions, Propagation};
use crate::ctx::obj;
use crate::ctx::Ctx;
use crate::selector::LabelSelector;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(360);

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    // Whether the last pass saw a Job or a tracked pod: without either, the pods
    // need no look.
    let mut busy = true;
    crate::ctx::reconcile_loop(ctx, &[("batch", "jobs"), ("", "pods")], stop, move |ctx| {
        busy = reconcile(ctx, busy)
    })
    .await
}

fn reconcile(ctx: &Ctx, busy: bool) -> bool {
    let jobs = ctx.client.list("batch", "jobs", None, None);
    if jobs.is_empty() && !busy {
        return false;
    }
    let pods = ctx.client.list("", "pods", None, None);
    let tracked = pods.iter().any(has_finalizer);
    // Pods whose Job is gone keep no tracking finalizer.
    let live: std::collections::HashSet<&str> = jobs.iter().map(obj::uid).collect();
    for p in &pods {
        if has_finalizer(p)
            && !obj::controller_of(p).is_some_and(|(k, _, u)| k == "Job" && live.contains(u))
        {
            remove_finalizer(ctx, p);
        }
    }
    if jobs.is_empty() {
        return tracked;
    }
    let pods = w::by_namespace(pods);
    let empty = Vec::new();
    for job in &jobs {
        sync(ctx, job, pods.get(obj::namespace(job)).unwrap_or(&empty));
    }
    true
}

fn has_finalizer(p: &Value) -> bool {
    p.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn remove_finalizer(ctx: &Ctx, p: &Value) -> bool {
    let rest: Vec<Value> = p
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter(|x| *x != TRACKING_FINALIZER)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let rest = if rest.is_empty() {
        Value::Null
    } else {
        Value::Array(rest)
    };
    match ctx.client.patch(
        "",
        "pods",
        Some(obj::namespace(p)),
        obj::name(p),
        json!({"metadata": {"finalizers": rest}}),
    ) {
        Ok(_) => true,
        Err(e) => e.code == 404,
    }
}

/// The selector the API server would have generated when none was given.
pub fn effective_selector(job: &Value) -> LabelSelector {
    match job.pointer("/spec/selector").filter(|s| !s.is_null()) {
        Some(_) => w::selector_of(job),
        None => LabelSelector::from_label_selector_json(
            &json!({"matchLabels": {"batch.kubernetes.io/controller-uid": obj::uid(job)}}),
        )
        .unwrap_or_else(|_| LabelSelector::nothing()),
    }
}

/// `isPodFailed` (with the default pod replacement policy): Failed, or deleted
/// before it succeeded.
pub fn is_pod_failed(p: &Value) -> bool {
    w::phase(p) == "Failed" || (obj::is_terminating(p) && w::phase(p) != "Succeeded")
}

fn cond_true(job: &Value, kind: &str) -> bool {
    obj::condition(job, kind) == Some("True")
}

fn job_condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now,
    })
}

/// Adds or updates a condition, keeping lastTransitionTime when the status stays.
fn set_condition(conds: &mut Vec<Value>, cond: Value) {
    match conds.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(c) => {
            if c["status"] == cond["status"] && c["reason"] == cond["reason"] {
                return;
            }
            let keep = c["status"] == cond["status"];
            let ltt = c["lastTransitionTime"].clone();
            *c = cond;
            if keep {
                c["lastTransitionTime"] = ltt;
            }
        }
        None => conds.push(cond),
    }
}

fn finish_time(p: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let from_containers = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .filter_map(|c| c.pointer("/state/terminated/finishedAt")?.as_str())
                .filter_map(w::parse_time)
                .max()
        });
    from_containers.or_else(|| {
        obj::str_at(p, "/metadata/deletionTimestamp")
            .or_else(|| obj::str_at(p, "/metadata/creationTimestamp"))
            .and_then(w::parse_time)
    })
}

/// How long to wait before creating pods again after failures (`getBackoffRemainingTime`).
pub fn backoff_remaining(
    pods: &[Value],
    base: std::time::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> std::time::Duration {
    let last_success = pods
        .iter()
        .filter(|p| w::phase(p) == "Succeeded")
        .filter_map(finish_time)
        .max();
    let failures: Vec<chrono::DateTime<chrono::Utc>> = pods
        .iter()
        .filter(|p| w::phase(p) == "Failed")
        .filter_map(finish_time)
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(last) = failures.iter().max() else {
        return std::time::Duration::ZERO;
    };
    let n = failures.len().min(16) as u32;
    let backoff = base.saturating_mul(1 << (n - 1)).min(MAX_BACKOFF);
    let until = *last + chrono::Duration::from_std(backoff).unwrap_or_default();
    (until - now).to_std().unwrap_or_default()
}

fn restarts_of_running(pods: &[Value]) -> i64 {
    pods.iter()
        .filter(|p| matches!(w::phase(p), "Running" | "Pending"))
        .map(|p| {
            ["initContainerStatuses", "containerStatuses"]
                .iter()
                .flat_map(|k| {
                    p.pointer(&format!("/status/{k}"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum::<i64>()
        })
        .sum()
}

fn sync(ctx: &Ctx, job: &Value, ns_pods: &[Value]) {
    let selector = effective_selector(job);
    let pods = w::claim(ctx, "", "pods", job, "batch/v1", "Job", &selector, ns_pods);
    let now = w::now();
    let now_str = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let finished = cond_true(job, "Complete") || cond_true(job, "Failed");
    let ns = obj::namespace(job);

    // Finalizer-based tracking of finished pods.
    let status = job.get("status").cloned().unwrap_or(json!({}));
    let strings = |ptr: &str| -> Vec<String> {
        status
            .pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut unc_s = strings("/uncountedTerminatedPods/succeeded");
    let mut unc_f = strings("/uncountedTerminatedPods/failed");
    let (before_s, before_f) = (unc_s.len(), unc_f.len());
    let mut to_release = Vec::new();
    for p in pods.iter().filter(|p| has_finalizer(p)) {
        let uid = obj::uid(p).to_string();
        let terminal = matches!(w::phase(p), "Succeeded" | "Failed");
        if w::phase(p) == "Succeeded" {
            if !unc_s.contains(&uid) && !unc_f.contains(&uid) {
                unc_s.push(uid);
            }
            to_release.push(p);
        } else if is_pod_failed(p) || (finished && !terminal) {
            if !unc_s.contains(&uid) && !unc_f.contains(&uid) {
                unc_f.push(uid);
            }
            to_release.push(p);
        }
    }
    let mut cur_unc = job
        .pointer("/status/uncountedTerminatedPods")
        .cloned()
        .unwrap_or(Value::Null);
    if unc_s.len() != before_s || unc_f.len() != before_f {
        cur_unc = json!({"succeeded": unc_s, "failed": unc_f});
        let _ = ctx.client.patch_status(
            "batch",
            "jobs",
            Some(ns),
            obj::name(job),
            json!({"uncountedTerminatedPods": {"succeeded": unc_s, "failed": unc_f}}),
        );
    }
    let released: Vec<String> = to_release
        .iter()
        .filter(|p| remove_finalizer(ctx, p))
        .map(|p| obj::uid(p).to_string())
        .collect();
    let still_tracked = |uid: &String| {
        pods.iter()
            .any(|p| obj::uid(p) == uid && has_finalizer(p) && !released.contains(uid))
    };
    let mut succeeded = int_at(job, "/status/succeeded", 0);
    let mut failed = int_at(job, "/status/failed", 0);
    unc_s.retain(|u| {
        let keep = still_tracked(u);
        if !keep {
            succeeded += 1;
        }
        keep
    });
    unc_f.retain(|u| {
        let keep = still_tracked(u);
        if !keep {
            failed += 1;
        }
        keep
    });
    let all_succeeded = succeeded + unc_s.len() as i64;
    let all_failed = failed + unc_f.len() as i64;

    let mut conds: Vec<Value> = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut start_time = obj::str_at(job, "/status/startTime").map(String::from);
    let mut completion_time = obj::str_at(job, "/status/completionTime").map(String::from);
    let mut active_pods: Vec<Value> = pods
        .iter()
        .filter(|p| w::is_pod_active(p))
        .cloned()
        .collect();

    if !finished && !obj::is_terminating(job) {
        let suspended = job.pointer("/spec/suspend") == Some(&Value::Bool(true));
        if suspended {
            if !cond_true(job, "Suspended") {
                set_condition(
                    &mut conds,
                    job_condition(
                        "Suspended",
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        &now_str,
                    ),
                );
            }
        } else if cond_true(job, "Suspended") {
            set_condition(
                &mut conds,
                job_condition("Suspended", "False", "JobResumed", "Job resumed", &now_str),
            );
            start_time = Some(now_str.clone());
        }
        if start_time.is_none() && !suspended {
            start_time = Some(now_str.clone());
        }
        let backoff_limit = int_at(job, "/spec/backoffLimit", 6);
        let on_failure = obj::str_at(job, "/spec/template/spec/restartPolicy") == Some("OnFailure");
        let restarts = restarts_of_running(&active_pods);
        let past_on_failure = on_failure
            && if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            };
        let deadline_passed = job
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
            .zip(start_time.as_deref().and_then(w::parse_time))
            .is_some_and(|(ads, st)| !suspended && st + chrono::Duration::seconds(ads) <= now);
        let failure = if all_failed > backoff_limit || past_on_failure {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline_passed {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            for p in &active_pods {
                let _ = ctx.client.delete("", "pods", Some(ns), obj::name(p), None);
            }
            active_pods.clear();
            set_condition(
                &mut conds,
                job_condition("FailureTarget", "True", reason, message, &now_str),
            );
            set_condition(
                &mut conds,
                job_condition("Failed", "True", reason, message, &now_str),
            );
        } else {
            manage(
                ctx,
                job,
                &pods,
                &mut active_pods,
                suspended,
                all_succeeded,
                now,
            );
            let completions = job.pointer("/spec/completions").and_then(Value::as_i64);
            let criteria_met = match completions {
                None => all_succeeded > 0 && active_pods.is_empty(),
                Some(c) => all_succeeded >= c && active_pods.is_empty(),
            };
            if criteria_met && !suspended {
                let terminating = pods
                    .iter()
                    .any(|p| obj::is_terminating(p) && has_finalizer(p));
                let msg = "Reached expected number of succeeded pods";
                set_condition(
                    &mut conds,
                    job_condition(
                        "SuccessCriteriaMet",
                        "True",
                        "CompletionsReached",
                        msg,
                        &now_str,
                    ),
                );
                if !terminating && unc_s.is_empty() && unc_f.is_empty() {
                    set_condition(
                        &mut conds,
                        job_condition("Complete", "True", "CompletionsReached", msg, &now_str),
                    );
                    completion_time = Some(now_str.clone());
                }
            }
        }
    }

    if finished {
        ttl_after_finished(ctx, job, now);
    }

    let ready = active_pods.iter().filter(|p| obj::is_pod_ready(p)).count() as i64;
    let terminating = pods
        .iter()
        .filter(|p| obj::is_terminating(p) && !matches!(w::phase(p), "Succeeded" | "Failed"))
        .count();
    let mut st = Map::new();
    st.insert("active".into(), omit0(active_pods.len() as i64));
    st.insert("ready".into(), json!(ready));
    st.insert("terminating".into(), json!(terminating));
    st.insert("succeeded".into(), omit0(succeeded));
    st.insert("failed".into(), omit0(failed));
    let mut unc = Map::new();
    if !unc_s.is_empty() {
        unc.insert("succeeded".into(), json!(unc_s));
    }
    if !unc_f.is_empty() {
        unc.insert("failed".into(), json!(unc_f));
    }
    // Merge-patching `{}` would keep the old lists: replace them explicitly.
    for k in ["succeeded", "failed"] {
        if cur_unc.get(k).is_some() && !unc.contains_key(k) {
            unc.insert(k.into(), Value::Null);
        }
    }
    let unc_value = Value::Object(unc);
    let unc_target: Value = {
        let mut m = unc_value.clone();
        if let Some(o) = m.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        m
    };
    if cur_unc != unc_target {
        let _ = ctx.client.patch_status(
            "batch",
            "jobs",
            Some(ns),
            obj::name(job),
            json!({ "uncountedTerminatedPods": unc_value }),
        );
    }
    st.insert(
        "startTime".into(),
        start_time.map(Value::String).unwrap_or(Value::Null),
    );
    st.insert(
        "completionTime".into(),
        completion_time.map(Value::String).unwrap_or(Value::Null),
    );
    st.insert(
        "conditions".into(),
        if conds.is_empty() {
            Value::Null
        } else {
            Value::Array(conds)
        },
    );
    w::update_status(ctx, "batch", "jobs", job, st);
}

/// `manageJob`: creates or deletes pods towards the wanted number of active pods.
fn manage(
    ctx: &Ctx,
    job: &Value,
    pods: &[Value],
    active: &mut Vec<Value>,
    suspended: bool,
    succeeded: i64,
    now: chrono::DateTime<chrono::Utc>,
) {
    let ns = obj::namespace(job);
    let parallelism = int_at(job, "/spec/parallelism", 1).max(0);
    let want = if suspended {
        0
    } else {
        match job.pointer("/spec/completions").and_then(Value::as_i64) {
            None if succeeded > 0 => active.len() as i64,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        }
    };
    let n = active.len() as i64;
    if n > want {
        let mut victims = active.clone();
        w::sort_for_deletion(&mut victims, active);
        for p in victims.iter().take((n - want) as usize) {
            let name = obj::name(p);
            if ctx.client.delete("", "pods", Some(ns), name, None).is_ok() {
                active.retain(|a| obj::name(a) != name);
            }
        }
        return;
    }
    if n == want
        || backoff_remaining(pods, ctx.timing.restart_backoff, now) > std::time::Duration::ZERO
    {
        return;
    }
    let name = obj::name(job);
    let uid = obj::uid(job);
    let mut template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    if job.pointer("/spec/manualSelector") != Some(&Value::Bool(true)) {
        let labels = &mut template["metadata"]["labels"];
        labels["batch.kubernetes.io/controller-uid"] = json!(uid);
        labels["batch.kubernetes.io/job-name"] = json!(name);
        labels["controller-uid"] = json!(uid);
        labels["job-name"] = json!(name);
    }
    let mut fins: Vec<Value> = template["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    fins.push(json!(TRACKING_FINALIZER));
    template["metadata"]["finalizers"] = Value::Array(fins);
    let prefix = format!("{name}-");
    let owner = w::controller_ref(job, "batch/v1", "Job");
    for _ in 0..(want - n) {
        let pod = w::pod_from_template(&template, ns, "", Some(&prefix), owner.clone());
        match w::create_generated_pod(ctx, pod, &prefix) {
            Some(p) => active.push(p),
            None => break,
        }
    }
}

/// The TTL-after-finished controller: deletes a finished Job once its TTL passed.
fn ttl_after_finished(ctx: &Ctx, job: &Value, now: chrono::DateTime<chrono::Utc>) {
    let Some(ttl) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_i64)
    else {
        return;
    };
    if obj::is_terminating(job) {
        return;
    }
    let finished_at = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .filter(|c| {
                    (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                })
                .filter_map(|c| c["lastTransitionTime"].as_str().and_then(w::parse_time))
                .max()
        });
    if finished_at.is_some_and(|t| t + chrono::Duration::seconds(ttl) <= now) {
        if let Ok(info) = ctx.client.info("batch", "jobs") {
            let opts = DeleteOptions {
                propagation: Some(Propagation::Foreground),
                ..Default::default()
            };
            let _ = ctx
                .client
                .api
                .delete(&info, Some(obj::namespace(job)), obj::name(job), &opts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_pods_count_as_failed_unless_they_succeeded() {
        let running = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        let done = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Succeeded"}});
        let failed = json!({"metadata": {}, "status": {"phase": "Failed"}});
        assert!(is_pod_failed(&running));
        assert!(!is_pod_failed(&done));
        assert!(is_pod_failed(&failed));
    }

    #[test]
    fn the_generated_selector_is_the_controller_uid() {
        let job = json!({"metadata": {"uid": "abc"}, "spec": {}});
        let sel = effective_selector(&job);
        assert!(sel.matches_object(
            &json!({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "abc"}}})
        ));
        assert!(!sel.matches_object(&json!({"metadata": {"labels": {"job-name": "x"}}})));
    }

    #[test]
    fn failures_back_off_exponentially_until_a_success() {
        let base = std::time::Duration::from_secs(10);
        let now = w::parse_time("2024-01-01T00:01:00Z").unwrap();
        let f = |t: &str| json!({"status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"finishedAt": t}}}]}});
        let s = |t: &str| json!({"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"finishedAt": t}}}]}});
        assert_eq!(backoff_remaining(&[], base, now), std::time::Duration::ZERO);
        // One failure 5 s ago: 10 s back-off, 5 s left.
        let one = [f("2024-01-01T00:00:55Z")];
        assert_eq!(
            backoff_remaining(&one, base, now),
            std::time::Duration::from_secs(5)
        );
        // Two failures: 20 s from the last.
        let two = [f("2024-01-01T00:00:30Z"), f("2024-01-01T00:00:50Z")];
        assert_eq!(
            backoff_remaining(&two, base, now),
            std::time::Duration::from_secs(10)
        );
        // A later success resets the count.
        let reset = [
            f("2024-01-01T00:00:30Z"),
            s("2024-01-01T00:00:40Z"),
            f("2024-01-01T00:00:50Z"),
        ];
        assert_eq!(
            backoff_remaining(&reset, base, now),
            std::time::Duration::ZERO
        );
    }
}
