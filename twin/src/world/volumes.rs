//! Persistent volumes, following upstream's PV controller (kube-controller-manager's
//! `persistentvolume-binder`) together with the CSI external-provisioner sidecars:
//!
//! - A Pending PVC binds to a PV already reserved for it (`claimRef`, or its own
//!   `spec.volumeName`), else to the smallest Available PV of its class that has
//!   the capacity and access modes it asks for (static binding).
//! - Otherwise, when its StorageClass exists, the class's provisioner creates a PV
//!   `pvc-<claim uid>` (capacity = the request, the claim's access modes and volume
//!   mode, the class's reclaim policy (default Delete) and mount options, `csi` with
//!   driver = provisioner, claimRef) and both turn Bound, `timing.provision` after
//!   the claim became provisionable. With `volumeBindingMode: WaitForFirstConsumer`
//!   that is when a pod using the claim is scheduled (annotation
//!   `volume.kubernetes.io/selected-node`, as the scheduler sets it).
//! - Whether the backend can serve the claim is asked of the [`ProvisionBackend`]
//!   registered for the provisioner in [`Provisioners`] (`ctx.provisioners`); a provisioner without one
//!   is a generic CSI driver that always succeeds. A refusal keeps the claim Pending
//!   with a `ProvisioningFailed` Warning event (message as the external-provisioner
//!   writes it) and is retried with a capped back-off.
//! - Events as upstream: `ExternalProvisioning`, `WaitForFirstConsumer`,
//!   `Provisioning`, `ProvisioningSucceeded`, `ProvisioningFailed`, `ClaimLost`.
//! - A PV whose claim is gone turns Released; with reclaim policy Delete the
//!   provisioner deletes it `timing.provision` later (Retain and Recycle: it stays).
//! - A Bound claim whose PV disappeared turns Lost.
//! - Claims without `storageClassName` get the default StorageClass when one exists
//!   (at create by the DefaultStorageClass admission plugin in `admission.rs`; here
//!   for claims created before the default existed: upstream's retroactive default
//!   StorageClass assignment).
//!
//! Not modelled: the `kubernetes.io/pvc-protection` / `pv-protection` finalizers
//! (a claim in use is deleted at once), volume expansion, topology (`nodeAffinity`).
//!
//! Part of the simulated world (it plays the storage's CSI drivers): it runs against
//! any API server, the embedded one or a real control plane.
//!
//! [`ProvisionBackend`]: crate::ctx::provisioners::ProvisionBackend
//! [`Provisioners`]: crate::ctx::provisioners::Provisioners

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::now_rfc3339;
use crate::ctx::obj;
use crate::ctx::{reconcile_loop, Ctx};

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    let mut state = State::default();
    reconcile_loop(
        ctx,
        &[
            ("", "persistentvolumeclaims"),
            ("", "persistentvolumes"),
            ("storage.k8s.io", "storageclasses"),
            ("", "pods"),
        ],
        stop,
        move |ctx| state.reconcile(ctx),
    )
    .await
}

/// A claim being provisioned.
struct Attempt {
    next: Instant,
    failures: u32,
}

#[derive(Default)]
struct State {
    /// claim uid -> provisioning progress
    provisioning: HashMap<String, Attempt>,
    /// Released PV (reclaim Delete) -> when it was released.
    released: HashMap<String, Instant>,
}

/// Parses a Kubernetes quantity into a number (bytes for storage).
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

fn request(pvc: &Value) -> Option<&Value> {
    pvc.pointer("/spec/resources/requests/storage")
}

fn access_modes(o: &Value) -> Vec<&str> {
    o.pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn volume_mode(o: &Value) -> &str {
    obj::str_at(o, "/spec/volumeMode").unwrap_or("Filesystem")
}

fn class_of(o: &Value) -> &str {
    obj::str_at(o, "/spec/storageClassName").unwrap_or("")
}

fn phase(o: &Value) -> &str {
    obj::str_at(o, "/status/phase").unwrap_or("")
}

fn claim_ref(pvc: &Value) -> Value {
    json!({
        "kind": "PersistentVolumeClaim", "apiVersion": "v1",
        "namespace": obj::namespace(pvc), "name": obj::name(pvc), "uid": obj::uid(pvc),
        "resourceVersion": pvc.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
    })
}

/// Whether a PV's claimRef names this claim (a pre-bound ref may lack the uid).
fn reserved_for(pv: &Value, pvc: &Value) -> bool {
    let Some(r) = pv.pointer("/spec/claimRef").filter(|r| r.is_object()) else {
        return false;
    };
    r["namespace"] == obj::namespace(pvc)
        && r["name"] == obj::name(pvc)
        && r["uid"]
            .as_str()
            .is_none_or(|u| u.is_empty() || u == obj::uid(pvc))
}

/// Records a core/v1 Event on `involved`, aggregated as upstream's recorder does:
/// the same (object, type, reason, message) bumps `count`. With `once`, an existing
/// event is left alone.
pub fn record_event(
    ctx: &Ctx,
    involved: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
    once: bool,
) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (obj::uid(involved), type_, reason, message).hash(&mut h);
    let ns = match obj::namespace(involved) {
        "" => "default",
        ns => ns,
    };
    let name = format!("{}.{:016x}", obj::name(involved), h.finish());
    let now = now_rfc3339();
    if let Some(ev) = ctx.client.get("", "events", Some(ns), &name) {
        if !once {
            let count = ev["count"].as_i64().unwrap_or(1) + 1;
            let _ = ctx.client.patch(
                "",
                "events",
                Some(ns),
                &name,
                json!({"count": count, "lastTimestamp": now}),
            );
        }
        return;
    }
    let kind = involved["kind"].as_str().unwrap_or("");
    let api_version = involved["apiVersion"].as_str().unwrap_or("v1");
    let _ = ctx.client.create(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "kind": kind, "apiVersion": api_version, "namespace": obj::namespace(involved),
            "name": obj::name(involved), "uid": obj::uid(involved),
            "resourceVersion": involved.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
        },
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "reportingComponent": component, "reportingInstance": "",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }));
}

const PV_CONTROLLER: &str = "persistentvolume-controller";

impl State {
    fn reconcile(&mut self, ctx: &Ctx) {
        let c = &ctx.client;
        let classes = c.list("storage.k8s.io", "storageclasses", None, None);
        let pvcs = c.list("", "persistentvolumeclaims", None, None);
        let pvs = c.list("", "persistentvolumes", None, None);
        let mut pods: Option<Vec<Value>> = None;
        let now = Instant::now();
        let provision = ctx.timing.provision;

        // Forget claims that are gone.
        let uids: HashSet<&str> = pvcs.iter().map(obj::uid).collect();
        self.provisioning.retain(|u, _| uids.contains(u.as_str()));

        self.reclaim(ctx, &pvcs, &pvs, now);

        let mut taken: HashSet<String> = HashSet::new();
        for pvc in &pvcs {
            if obj::is_terminating(pvc) {
                continue;
            }
            let (ns, name) = (obj::namespace(pvc), obj::name(pvc));
            let volume = obj::str_at(pvc, "/spec/volumeName").unwrap_or("");
            if phase(pvc) == "Bound" {
                if !volume.is_empty() && !pvs.iter().any(|pv| obj::name(pv) == volume) {
                    let _ = c.patch_status(
                        "",
                        "persistentvolumeclaims",
                        Some(ns),
                        name,
                        json!({"phase": "Lost"}),
                    );
                    record_event(
                        ctx,
                        pvc,
                        "Warning",
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                        PV_CONTROLLER,
                        true,
                    );
                }
                continue;
            }
            if phase(pvc) == "Lost" {
                continue;
            }
            // A PV reserved for this claim (pre-bound, or provisioned for it).
            if let Some(pv) = pvs.iter().find(|pv| {
                !obj::is_terminating(pv)
                    && (reserved_for(pv, pvc)
                        || (!volume.is_empty()
                            && obj::name(pv) == volume
                            && pv.pointer("/spec/claimRef").is_none_or(Value::is_null)))
            }) {
                self.bind(ctx, pvc, pv);
                taken.insert(obj::name(pv).to_string());
                continue;
            }
            if !volume.is_empty() {
                continue; // waits for the named PV
            }
            if pvc
                .pointer("/spec/storageClassName")
                .is_none_or(Value::is_null)
            {
                if let Some(default) = crate::admission::default_class(classes.iter()) {
                    let _ = c.patch(
                        "",
                        "persistentvolumeclaims",
                        Some(ns),
                        name,
                        json!({"spec": {"storageClassName": default}}),
                    );
                    continue;
                }
            }
            let class_name = class_of(pvc);
            let class = classes.iter().find(|k| obj::name(k) == class_name);
            let wffc = class.is_some_and(|k| k["volumeBindingMode"] == "WaitForFirstConsumer");
            let consumer_node = if wffc {
                let pods = pods.get_or_insert_with(|| c.list("", "pods", None, None));
                pods.iter()
                    .filter(|p| obj::namespace(p) == ns && !obj::is_terminating(p))
                    .filter(|p| {
                        p.pointer("/spec/volumes")
                            .and_then(Value::as_array)
                            .is_some_and(|vs| {
                                vs.iter().any(|v| {
                                    v.pointer("/persistentVolumeClaim/claimName")
                                        .and_then(Value::as_str)
                                        == Some(name)
                                })
                            })
                    })
                    .find_map(|p| obj::str_at(p, "/spec/nodeName").filter(|n| !n.is_empty()))
                    .map(String::from)
            } else {
                None
            };
            if wffc && consumer_node.is_none() {
                record_event(
                    ctx,
                    pvc,
                    "Normal",
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                    PV_CONTROLLER,
                    true,
                );
                continue;
            }
            // Static binding: the smallest fitting Available PV of the class.
            let want = request(pvc)
                .and_then(Value::as_str)
                .and_then(quantity)
                .unwrap_or(0.0);
            let modes = access_modes(pvc);
            let fit = pvs
                .iter()
                .filter(|pv| {
                    !obj::is_terminating(pv)
                        && !taken.contains(obj::name(pv))
                        && phase(pv) == "Available"
                        && pv.pointer("/spec/claimRef").is_none_or(Value::is_null)
                        && class_of(pv) == class_name
                        && volume_mode(pv) == volume_mode(pvc)
                        && modes.iter().all(|m| access_modes(pv).contains(m))
                })
                .filter_map(|pv| {
                    let cap = pv
                        .pointer("/spec/capacity/storage")
                        .and_then(Value::as_str)
                        .and_then(quantity)?;
                    (cap >= want).then_some((cap, pv))
                })
                .min_by(|a, b| {
                    a.0.total_cmp(&b.0)
                        .then_with(|| obj::name(a.1).cmp(obj::name(b.1)))
                });
            if let Some((_, pv)) = fit {
                taken.insert(obj::name(pv).to_string());
                self.bind(ctx, pvc, pv);
                continue;
            }
            if class_name.is_empty() {
                record_event(
                    ctx,
                    pvc,
                    "Normal",
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                    PV_CONTROLLER,
                    true,
                );
                continue;
            }
            let Some(class) = class else {
                record_event(
                    ctx,
                    pvc,
                    "Warning",
                    "ProvisioningFailed",
                    &format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                    PV_CONTROLLER,
                    true,
                );
                continue;
            };
            let provisioner = class["provisioner"].as_str().unwrap_or("");
            self.annotate(ctx, pvc, provisioner, consumer_node.as_deref());
            let msg = format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
            record_event(
                ctx,
                pvc,
                "Normal",
                "ExternalProvisioning",
                &msg,
                PV_CONTROLLER,
                true,
            );
            let attempt = self
                .provisioning
                .entry(obj::uid(pvc).to_string())
                .or_insert(Attempt {
                    next: now + provision,
                    failures: 0,
                });
            if now < attempt.next {
                continue;
            }
            let component = format!("{provisioner}_twin-provisioner");
            record_event(
                ctx,
                pvc,
                "Normal",
                "Provisioning",
                &format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
                &component,
                false,
            );
            match ctx.provisioners.can_provision(provisioner, class, pvc) {
                Err(why) => {
                    attempt.failures += 1;
                    // Exponential back-off from `provision`, capped at 10x.
                    let factor = 2u32.saturating_pow(attempt.failures.min(8)).min(10);
                    attempt.next = now + provision.max(Duration::from_millis(10)) * factor;
                    record_event(
                        ctx,
                        pvc,
                        "Warning",
                        "ProvisioningFailed",
                        &format!(
                            "failed to provision volume with StorageClass \"{class_name}\": {why}"
                        ),
                        &component,
                        false,
                    );
                }
                Ok(()) => {
                    if let Some(pv) = self.provision(ctx, class, pvc) {
                        self.provisioning.remove(obj::uid(pvc));
                        record_event(
                            ctx,
                            pvc,
                            "Normal",
                            "ProvisioningSucceeded",
                            &format!("Successfully provisioned volume {}", obj::name(&pv)),
                            &component,
                            true,
                        );
                        self.bind(ctx, pvc, &pv);
                    }
                }
            }
        }
    }

    /// The provisioner annotations the PV controller and the scheduler put on a claim.
    fn annotate(&self, ctx: &Ctx, pvc: &Value, provisioner: &str, node: Option<&str>) {
        let ann = pvc
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(json!({}));
        let mut want = json!({
            "volume.kubernetes.io/storage-provisioner": provisioner,
            "volume.beta.kubernetes.io/storage-provisioner": provisioner,
        });
        if let Some(n) = node {
            want["volume.kubernetes.io/selected-node"] = json!(n);
        }
        let missing = want
            .as_object()
            .is_some_and(|w| w.iter().any(|(k, v)| ann.get(k) != Some(v)));
        if missing {
            let _ = ctx.client.patch(
                "",
                "persistentvolumeclaims",
                Some(obj::namespace(pvc)),
                obj::name(pvc),
                json!({"metadata": {"annotations": want}}),
            );
        }
    }

    /// Creates the PV for a claim (the external-provisioner's CreateVolume).
    fn provision(&self, ctx: &Ctx, class: &Value, pvc: &Value) -> Option<Value> {
        let provisioner = class["provisioner"].as_str().unwrap_or("");
        let name = format!("pvc-{}", obj::uid(pvc));
        let mut attributes = serde_json::Map::new();
        if let Some(params) = class["parameters"].as_object() {
            for (k, v) in params {
                if !k.starts_with("csi.storage.k8s.io/") {
                    attributes.insert(k.clone(), v.clone());
                }
            }
        }
        attributes.insert(
            "storage.kubernetes.io/csiProvisionerIdentity".into(),
            json!(format!("1700000000000-8081-{provisioner}")),
        );
        let mut csi =
            json!({"driver": provisioner, "volumeHandle": name, "volumeAttributes": attributes});
        if let Some(fs) = class.pointer("/parameters/csi.storage.k8s.io~1fstype") {
            csi["fsType"] = fs.clone();
        }
        let mut pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": provisioner, "volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""}},
            "spec": {
                "capacity": {"storage": request(pvc).cloned().unwrap_or(json!("0"))},
                "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
                "storageClassName": obj::name(class),
                "volumeMode": volume_mode(pvc),
                "claimRef": claim_ref(pvc),
                "csi": csi,
            },
            "status": {"phase": "Bound"},
        });
        if let Some(opts) = class.get("mountOptions").filter(|o| o.is_array()) {
            pv["spec"]["mountOptions"] = opts.clone();
        }
        match ctx.client.create(pv) {
            Ok(pv) => Some(pv),
            Err(e) if e.code == 409 => ctx.client.get("", "persistentvolumes", None, &name),
            Err(e) => {
                tracing::warn!("cannot create PV {name}: {e}");
                None
            }
        }
    }

    /// Binds claim and volume both ways, as the PV controller does.
    fn bind(&self, ctx: &Ctx, pvc: &Value, pv: &Value) {
        let c = &ctx.client;
        let pv_name = obj::name(pv);
        if !reserved_for(pv, pvc)
            || pv
                .pointer("/spec/claimRef/uid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            let mut patch = json!({"spec": {"claimRef": claim_ref(pvc)}});
            if pv.pointer("/spec/claimRef").is_none_or(Value::is_null) {
                patch["metadata"] =
                    json!({"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}});
            }
            if c.patch("", "persistentvolumes", None, pv_name, patch)
                .is_err()
            {
                return;
            }
        }
        if phase(pv) != "Bound" {
            let _ = c.patch_status(
                "",
                "persistentvolumes",
                None,
                pv_name,
                json!({"phase": "Bound"}),
            );
        }
        let (ns, name) = (obj::namespace(pvc), obj::name(pvc));
        let mut ann = json!({"pv.kubernetes.io/bind-completed": "yes"});
        if obj::str_at(pvc, "/spec/volumeName").is_none_or(str::is_empty) {
            ann["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        }
        let patched = c.patch(
            "",
            "persistentvolumeclaims",
            Some(ns),
            name,
            json!({"metadata": {"annotations": ann}, "spec": {"volumeName": pv_name}}),
        );
        if patched.is_ok() {
            let _ = c.patch_status(
                "",
                "persistentvolumeclaims",
                Some(ns),
                name,
                json!({
                    "phase": "Bound",
                    "accessModes": pv.pointer("/spec/accessModes").cloned().unwrap_or(json!([])),
                    "capacity": pv.pointer("/spec/capacity").cloned().unwrap_or(json!({})),
                }),
            );
        }
    }

    /// PVs whose claim is gone: Released, then deleted under reclaim policy Delete.
    fn reclaim(&mut self, ctx: &Ctx, pvcs: &[Value], pvs: &[Value], now: Instant) {
        let c = &ctx.client;
        let names: HashSet<&str> = pvs.iter().map(obj::name).collect();
        self.released.retain(|n, _| names.contains(n.as_str()));
        for pv in pvs {
            if obj::is_terminating(pv) {
                continue;
            }
            let Some(r) = pv.pointer("/spec/claimRef").filter(|r| r.is_object()) else {
                continue;
            };
            let uid = r["uid"].as_str().unwrap_or("");
            if uid.is_empty() {
                continue; // pre-bound, waiting for its claim
            }
            let claim_alive = pvcs.iter().any(|p| {
                obj::uid(p) == uid && obj::namespace(p) == r["namespace"].as_str().unwrap_or("")
            });
            if claim_alive {
                continue;
            }
            let name = obj::name(pv);
            if phase(pv) != "Released" && phase(pv) != "Failed" {
                let _ = c.patch_status(
                    "",
                    "persistentvolumes",
                    None,
                    name,
                    json!({"phase": "Released"}),
                );
            }
            if pv
                .pointer("/spec/persistentVolumeReclaimPolicy")
                .and_then(Value::as_str)
                == Some("Delete")
            {
                let since = *self.released.entry(name.to_string()).or_insert(now);
                if now.duration_since(since) >= ctx.timing.provision {
                    let _ = c.delete("", "persistentvolumes", None, name, None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(quantity("500M"), Some(5e8));
        assert_eq!(quantity("1.5Ki"), Some(1536.0));
        assert_eq!(quantity("100"), Some(100.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("x"), None);
    }
}
