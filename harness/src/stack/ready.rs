//! What "ready" means for each kind of the stack, as its operator reports it, and
//! waiting for it with watches (kube-runtime `await_condition`), each object under
//! the caller's deadline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::Client;
use serde_json::Value;

use super::{Manifest, StackError};

/// Why an object is not ready yet, or None when it is.
pub fn not_ready_reason(kind: &str, obj: &Value) -> Option<String> {
    let int = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let condition = |t: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or("").to_owned(),
                    c["message"].as_str().unwrap_or("").to_owned(),
                )
            })
    };
    let want_condition = |t: &str| match condition(t) {
        Some((st, _)) if st == "True" => None,
        Some((st, msg)) => Some(format!(
            "condition {t} is {st}{}",
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        )),
        None => Some(format!("no {t} condition yet")),
    };
    match kind {
        "Deployment" => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let (avail, updated) = (
                int("/status/availableReplicas"),
                int("/status/updatedReplicas"),
            );
            if int("/status/observedGeneration") < int("/metadata/generation") {
                Some("the controller has not observed the latest generation".into())
            } else if avail < want || updated < want {
                Some(format!(
                    "{avail}/{want} replicas available, {updated} updated"
                ))
            } else {
                None
            }
        }
        "StatefulSet" | "ReplicaSet" => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = int("/status/readyReplicas");
            (ready < want).then(|| format!("{ready}/{want} replicas ready"))
        }
        "DaemonSet" => {
            let (desired, ready) = (
                int("/status/desiredNumberScheduled"),
                int("/status/numberReady"),
            );
            (desired == 0 || ready < desired).then(|| format!("{ready}/{desired} pods ready"))
        }
        // Rook's status.phase stays Ready even when Ceph is not healthy: health is the signal.
        "CephCluster" => match s("/status/ceph/health") {
            "HEALTH_OK" => None,
            "" => Some("no Ceph health reported yet".into()),
            h => Some(format!("Ceph reports {h}")),
        },
        "CephBlockPool" | "CephObjectStore" => match s("/status/phase") {
            "Ready" | "Connected" => None,
            "" => Some("no phase yet".into()),
            p => Some(format!("phase {p}")),
        },
        "BackupStorageLocation" => match s("/status/phase") {
            "Available" => None,
            "" => Some("no phase yet".into()),
            p => Some(format!("phase {p}")),
        },
        "PersistentVolumeClaim" => {
            (s("/status/phase") != "Bound").then(|| format!("phase {}", s("/status/phase")))
        }
        "Certificate" | "ClusterIssuer" | "Issuer" | "Kustomization" => want_condition("Ready"),
        "Prometheus" => want_condition("Available"),
        "ConstraintTemplate" => (obj.pointer("/status/created") != Some(&Value::Bool(true)))
            .then(|| "constraint CRD not created yet".into()),
        "HTTPProxy" => match s("/status/currentStatus") {
            "valid" => None,
            "" => Some("no status from Contour yet".into()),
            st => Some(format!("status {st}: {}", s("/status/description"))),
        },
        _ => None,
    }
}

/// Kinds whose readiness is worth waiting for (others are ready once applied).
pub fn has_readiness(kind: &str) -> bool {
    not_ready_reason(kind, &Value::Null).is_some()
}

/// One object that did not become ready in time.
#[derive(Clone, Debug, PartialEq)]
pub struct NotReady {
    pub object: String,
    pub reason: String,
}

/// Waits until every manifest's object is ready, or the deadline passes. Returns the
/// objects still not ready, with the last reason seen (empty: all ready).
pub async fn wait_ready(
    client: &Client,
    manifests: &[Manifest],
    deadline: Duration,
) -> Result<Vec<NotReady>, StackError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| StackError::Discovery(Box::new(e)))?;
    let started = Instant::now();
    let mut waits = Vec::new();
    for m in manifests.iter().filter(|m| has_readiness(m.kind())) {
        let (group, version) = m
            .api_version()
            .rsplit_once('/')
            .unwrap_or(("", m.api_version()));
        let Some((ar, caps)) =
            discovery.resolve_gvk(&GroupVersionKind::gvk(group, version, m.kind()))
        else {
            continue;
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                Api::namespaced_with(client.clone(), m.namespace().unwrap_or("default"), &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let kind = m.kind().to_owned();
        let name = m.name().to_owned();
        let what = m.describe();
        let last = Arc::new(Mutex::new(String::from("not seen yet")));
        let seen = last.clone();
        let cond = move |o: Option<&DynamicObject>| -> bool {
            let Some(o) = o else { return false };
            let v = serde_json::to_value(o).unwrap_or(Value::Null);
            match not_ready_reason(&kind, &v) {
                None => true,
                Some(r) => {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = r;
                    false
                }
            }
        };
        let remaining = deadline.saturating_sub(started.elapsed());
        waits.push(async move {
            let res = tokio::time::timeout(
                remaining,
                kube::runtime::wait::await_condition(api, &name, cond),
            )
            .await;
            match res {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(NotReady {
                    object: what,
                    reason: format!("watch failed: {e}"),
                }),
                Err(_) => Some(NotReady {
                    object: what,
                    reason: last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                }),
            }
        });
    }
    Ok(futures::future::join_all(waits)
        .await
        .into_iter()
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn readiness_per_kind() {
        let d = y("metadata: {generation: 2}\nspec: {replicas: 3}\nstatus: {observedGeneration: 2, availableReplicas: 2, updatedReplicas: 3}");
        assert_eq!(
            not_ready_reason("Deployment", &d).unwrap(),
            "2/3 replicas available, 3 updated"
        );
        let d = y("metadata: {generation: 2}\nspec: {replicas: 3}\nstatus: {observedGeneration: 2, availableReplicas: 3, updatedReplicas: 3}");
        assert_eq!(not_ready_reason("Deployment", &d), None);
        let stale = y("metadata: {generation: 3}\nspec: {replicas: 1}\nstatus: {observedGeneration: 2, availableReplicas: 1, updatedReplicas: 1}");
        assert!(not_ready_reason("Deployment", &stale).is_some());
        // Rook reports phase Ready while Ceph is degraded: health decides.
        let c = y("status: {phase: Ready, ceph: {health: HEALTH_WARN}}");
        assert_eq!(
            not_ready_reason("CephCluster", &c).unwrap(),
            "Ceph reports HEALTH_WARN"
        );
        let cert = y("status: {conditions: [{type: Ready, status: 'False', message: 'Issuing certificate'}]}");
        assert_eq!(
            not_ready_reason("Certificate", &cert).unwrap(),
            "condition Ready is False: Issuing certificate"
        );
        assert_eq!(
            not_ready_reason("BackupStorageLocation", &y("status: {phase: Available}")),
            None
        );
        assert_eq!(not_ready_reason("ConfigMap", &y("data: {}")), None);
        assert!(has_readiness("StatefulSet") && !has_readiness("Service"));
    }
}
