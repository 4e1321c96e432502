//! The simulated kubelets, one per node, following the kubelet's pod lifecycle and
//! status manager: a pod bound to a node goes Pending (ContainerCreating) ->
//! Running -> Ready after delays from the timing profile; readiness may depend on
//! other pods (annotation `twin.stormdrill.io/ready-requires: "<ns>/<selector>"`,
//! several separated by `;`, modelling a readiness probe that checks a backend);
//! a crashed container (provider endpoint) restarts after a back-off with
//! `restartCount` + 1; pods of Jobs (restartPolicy Never/OnFailure) complete;
//! a Terminating pod is removed once its containers stopped (min of the grace
//! period and the profile's stop time). A node that is powered off has no kubelet:
//! its pods' status freezes and Terminating pods stay; when it boots again the
//! kubelet restarts their containers (restartCount + 1), as after a reboot.
//! Containers whose image is in the process runtime's table ([`crate::procs`]) run
//! as real local processes that follow this lifecycle; their pods are Ready only
//! once the program answers, and go only once the process has exited.
//! Not modelled: probes' own periods, image pulls by size, init containers'
//! separate lifecycle (they count as part of container start).
//!
//! Part of the simulated world: it runs against any API server, the embedded one or
//! a real control plane. Whether a node's kubelet runs at all is
//! [`Ctx::kubelet_running`] (power and boot time), which operators ask too.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::now_rfc3339;
use crate::ctx::obj;
use crate::ctx::{reconcile_loop, Ctx};
use crate::selector::LabelSelector;
use crate::timing::Timing;

pub const READY_REQUIRES: &str = "twin.stormdrill.io/ready-requires";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Pulling images, creating the sandbox and containers.
    Creating,
    /// Containers started; readiness not yet passed.
    Starting,
    /// Containers running; Ready follows the dependencies.
    Running,
    /// A container died; it restarts after the back-off.
    BackOff,
    /// Completed (Job pods).
    Done,
}

struct PodSim {
    stage: Stage,
    due: Instant,
    stopping_due: Option<Instant>,
}

#[derive(Default)]
struct Kubelet {
    pods: HashMap<String, PodSim>,
    /// Nodes whose kubelet ran at the last pass (to notice a reboot).
    up: HashSet<String>,
    next_ip: HashMap<String, u32>,
}

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    let mut k = Kubelet::default();
    reconcile_loop(ctx, &[("", "pods"), ("", "nodes")], stop, move |ctx| {
        k.reconcile(ctx);
        // Containers of images in the process runtime's table run for real.
        ctx.procs.reconcile(ctx);
    })
    .await
}

fn container_names(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["image"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn restart_counts(pod: &Value) -> HashMap<String, i64> {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["restartCount"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// containerStatuses for every container in one state.
fn statuses(
    pod: &Value,
    state: Value,
    ready: bool,
    started: bool,
    restart_bump: i64,
    last: Option<Value>,
) -> Value {
    let counts = restart_counts(pod);
    Value::Array(
        container_names(pod)
            .into_iter()
            .map(|(name, image)| {
                let mut s = json!({
                    "name": name,
                    "image": image,
                    "imageID": format!("{image}@sha256:0"),
                    "containerID": format!("containerd://{}", name),
                    "ready": ready,
                    "started": started,
                    "restartCount": counts.get(&name).copied().unwrap_or(0) + restart_bump,
                    "state": state,
                });
                // The previous termination stays visible until the next one, as upstream.
                let previous = pod
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["name"] == name.as_str()))
                    .and_then(|c| c.get("lastState").cloned());
                if let Some(l) = last.clone().or(previous) {
                    s["lastState"] = l;
                }
                s
            })
            .collect(),
    )
}

fn conditions(pod: &Value, ready: bool, reason: Option<&str>, now: &str) -> Value {
    let mut conds = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let status = if ready { "True" } else { "False" };
    let reason = reason.unwrap_or(if ready { "" } else { "ContainersNotReady" });
    obj::set_condition(&mut conds, "PodScheduled", "True", "", "", now);
    obj::set_condition(&mut conds, "Initialized", "True", "", "", now);
    obj::set_condition(&mut conds, "ContainersReady", status, reason, "", now);
    obj::set_condition(&mut conds, "Ready", status, reason, "", now);
    Value::Array(conds)
}

/// Whether every readiness dependency of the pod has a Ready pod.
fn dependencies_ready(ctx: &Ctx, pod: &Value) -> bool {
    let Some(spec) = obj::str_at(
        pod,
        &format!(
            "/metadata/annotations/{}",
            READY_REQUIRES.replace('/', "~1")
        ),
    ) else {
        return true;
    };
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|dep| {
            let (ns, sel) = dep.split_once('/').unwrap_or((obj::namespace(pod), dep));
            let Ok(sel) = LabelSelector::parse(sel) else {
                return false;
            };
            ctx.client
                .list("", "pods", Some(ns), Some(&sel))
                .iter()
                .any(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
        })
}

impl Kubelet {
    fn ip_for(&mut self, node: &Value) -> String {
        let cidr = obj::str_at(node, "/spec/podCIDR").unwrap_or("10.244.0.0/24");
        let base: Vec<&str> = cidr
            .split('/')
            .next()
            .unwrap_or("10.244.0.0")
            .split('.')
            .collect();
        let n = self.next_ip.entry(obj::name(node).to_string()).or_insert(1);
        *n = if *n >= 254 { 2 } else { *n + 1 };
        format!(
            "{}.{}.{}.{}",
            base.first().unwrap_or(&"10"),
            base.get(1).unwrap_or(&"244"),
            base.get(2).unwrap_or(&"0"),
            n
        )
    }

    fn set_status(ctx: &Ctx, pod: &Value, status: Value) {
        let _ = ctx.client.patch_status(
            "",
            "pods",
            Some(obj::namespace(pod)),
            obj::name(pod),
            status,
        );
    }

    fn log_all(ctx: &Ctx, pod: &Value, line: &str) {
        for (c, _) in container_names(pod) {
            ctx.sim.log(obj::namespace(pod), obj::name(pod), &c, line);
        }
    }

    fn reconcile(&mut self, ctx: &Ctx) {
        let now = Instant::now();
        let ts = now_rfc3339();
        let t: &Timing = &ctx.timing;
        let nodes: HashMap<String, Value> = ctx
            .client
            .list("", "nodes", None, None)
            .into_iter()
            .map(|n| (obj::name(&n).to_string(), n))
            .collect();
        let running: HashSet<String> = nodes
            .keys()
            .filter(|n| ctx.kubelet_running(n))
            .cloned()
            .collect();
        let rebooted: HashSet<String> = running.difference(&self.up).cloned().collect();
        let first_pass = self.up.is_empty() && self.pods.is_empty();
        self.up = running.clone();
        let crashed: HashSet<(String, String)> = ctx.crashes.take().into_iter().collect();

        let pods = ctx.client.list("", "pods", None, None);
        let live: HashSet<String> = pods.iter().map(|p| obj::uid(p).to_string()).collect();
        self.pods.retain(|uid, _| live.contains(uid));
        // Pods gone however they went (also force-deleted): their files too.
        ctx.sim.files.retain_pods(&live);

        for pod in &pods {
            let Some(node_name) = obj::str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty())
            else {
                continue;
            };
            if !running.contains(node_name) {
                continue;
            }
            let uid = obj::uid(pod).to_string();
            let key = format!("{}/{}", obj::namespace(pod), obj::name(pod));

            if obj::is_terminating(pod) {
                let grace = pod
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
                    .max(0) as u64;
                let stop_in = t.termination.min(Duration::from_secs(grace));
                let sim = self.pods.entry(uid.clone()).or_insert(PodSim {
                    stage: Stage::Running,
                    due: now,
                    stopping_due: None,
                });
                let due = *sim.stopping_due.get_or_insert(now + stop_in);
                // As the kubelet: the pod goes once its containers' processes have.
                if now >= due && !ctx.procs.alive(&uid) {
                    if obj::is_pod_ready(pod) {
                        ctx.truth.record("pod", &key, "NotReady");
                    }
                    Self::log_all(ctx, pod, "Stopping container");
                    if ctx
                        .client
                        .delete(
                            "",
                            "pods",
                            Some(obj::namespace(pod)),
                            obj::name(pod),
                            Some(0),
                        )
                        .is_ok()
                    {
                        ctx.truth.record("pod", &key, "Deleted");
                        ctx.sim.forget_pod(obj::namespace(pod), obj::name(pod));
                    }
                    self.pods.remove(&uid);
                }
                continue;
            }

            let phase = obj::str_at(pod, "/status/phase")
                .unwrap_or("Pending")
                .to_string();
            let job_like = obj::str_at(pod, "/spec/restartPolicy").is_some_and(|r| r != "Always");

            // A crash or a reboot restarts the containers.
            let crash =
                crashed.contains(&(obj::namespace(pod).to_string(), obj::name(pod).to_string()));
            let reboot = rebooted.contains(node_name) && !first_pass && phase == "Running";
            if (crash || reboot) && phase == "Running" {
                let last = json!({"terminated": {"exitCode": 137, "reason": if crash { "Error" } else { "Unknown" }, "finishedAt": ts}});
                let waiting = json!({"waiting": {"reason": if crash { "CrashLoopBackOff" } else { "ContainerCreating" }}});
                if obj::is_pod_ready(pod) {
                    ctx.truth.record("pod", &key, "NotReady");
                }
                Self::set_status(
                    ctx,
                    pod,
                    json!({
                        "conditions": conditions(pod, false, None, &ts),
                        "containerStatuses": statuses(pod, waiting, false, false, 1, Some(last)),
                    }),
                );
                Self::log_all(
                    ctx,
                    pod,
                    if crash {
                        "container killed (exit code 137)"
                    } else {
                        "node rebooted; restarting container"
                    },
                );
                // The log so far becomes `--previous`, as the kubelet keeps it.
                for (c, _) in container_names(pod) {
                    ctx.sim
                        .restart_container(obj::namespace(pod), obj::name(pod), &c);
                }
                let backoff = if crash {
                    t.restart_backoff
                } else {
                    Duration::ZERO
                };
                self.pods.insert(
                    uid,
                    PodSim {
                        stage: Stage::BackOff,
                        due: now + backoff,
                        stopping_due: None,
                    },
                );
                continue;
            }

            let sim = match self.pods.get_mut(&uid) {
                Some(s) => s,
                None => {
                    let stage = match phase.as_str() {
                        "Running" => Stage::Running,
                        "Succeeded" | "Failed" => Stage::Done,
                        _ => Stage::Creating,
                    };
                    let mut due = now;
                    if stage == Stage::Creating {
                        due = now + ctx.jitter(t.container_start, &format!("{key}/create"));
                        let ip = match obj::str_at(pod, "/status/podIP") {
                            Some(ip) => ip.to_string(),
                            None => nodes
                                .get(node_name)
                                .map(|n| self.ip_for(n))
                                .unwrap_or_default(),
                        };
                        let host_ip = nodes
                            .get(node_name)
                            .and_then(|n| {
                                n.pointer("/status/addresses")?
                                    .as_array()?
                                    .iter()
                                    .find(|a| a["type"] == "InternalIP")?
                                    .get("address")
                                    .cloned()
                            })
                            .unwrap_or(json!(""));
                        Self::set_status(
                            ctx,
                            pod,
                            json!({
                                "phase": "Pending",
                                "hostIP": host_ip,
                                "hostIPs": [{"ip": host_ip}],
                                "podIP": ip,
                                "podIPs": [{"ip": ip}],
                                "startTime": ts,
                                "conditions": conditions(pod, false, None, &ts),
                                "containerStatuses": statuses(pod, json!({"waiting": {"reason": "ContainerCreating"}}), false, false, 0, None),
                            }),
                        );
                    }
                    self.pods.insert(
                        uid.clone(),
                        PodSim {
                            stage,
                            due,
                            stopping_due: None,
                        },
                    );
                    self.pods.get_mut(&uid).expect("just inserted")
                }
            };
            if now < sim.due {
                continue;
            }
            match sim.stage {
                Stage::Creating | Stage::BackOff => {
                    Self::set_status(
                        ctx,
                        pod,
                        json!({
                            "phase": "Running",
                            "conditions": conditions(pod, false, None, &ts),
                            "containerStatuses": statuses(pod, json!({"running": {"startedAt": ts}}), false, true, 0, None),
                        }),
                    );
                    Self::log_all(ctx, pod, "Started container");
                    sim.stage = Stage::Starting;
                    sim.due = now
                        + ctx.jitter(
                            t.readiness,
                            &format!("{key}/ready/{}", restart_counts(pod).values().sum::<i64>()),
                        );
                }
                Stage::Starting if job_like => {
                    Self::set_status(
                        ctx,
                        pod,
                        json!({
                            "phase": "Succeeded",
                            "conditions": conditions(pod, false, Some("PodCompleted"), &ts),
                            "containerStatuses": statuses(pod, json!({"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": ts}}), false, false, 0, None),
                        }),
                    );
                    Self::log_all(ctx, pod, "Completed");
                    ctx.truth.record("pod", &key, "Succeeded");
                    sim.stage = Stage::Done;
                }
                Stage::Starting | Stage::Running => {
                    // A real process is Ready once its program's probe passes.
                    let want = dependencies_ready(ctx, pod) && ctx.procs.ready(pod) != Some(false);
                    let is = obj::is_pod_ready(pod);
                    if want != is {
                        Self::set_status(
                            ctx,
                            pod,
                            json!({
                                "conditions": conditions(pod, want, None, &ts),
                                "containerStatuses": statuses(pod, json!({"running": {"startedAt": ts}}), want, true, 0, None),
                            }),
                        );
                        ctx.truth
                            .record("pod", &key, if want { "Ready" } else { "NotReady" });
                    }
                    if want {
                        sim.stage = Stage::Running;
                    }
                }
                Stage::Done => {}
            }
        }
    }
}
