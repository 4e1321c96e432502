//! A claim's round trip on a StorageClass: create a PVC, watch it bind, delete it
//! and watch its volume go. The claim is deleted whatever happens (also when the
//! step is dropped mid-way), so a probe never leaves storage behind.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{
        Event, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
        VolumeResourceRequirements,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams},
    runtime::wait::{await_condition, conditions},
    Client, ResourceExt,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "creating the probe claim on storage class {class:?} in namespace {namespace:?} failed"
    )]
    Create {
        class: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// What happened to the probe claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimRoundTrip {
    pub claim: String,
    /// Time from create to Bound; None when it did not bind in time.
    pub bound_after: Option<Duration>,
    /// The claim's phase when it did not bind, and the newest event about it
    /// (`ProvisioningFailed: ...`).
    pub pending_why: Option<String>,
    /// Time from delete until the claim and its volume were gone; None when they
    /// were not gone in time.
    pub cleaned_after: Option<Duration>,
    /// What was left (e.g. `PersistentVolume pvc-1 Released (reclaim policy Retain)`),
    /// deleted by the harness itself.
    pub leftover: Option<String>,
}

const LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "stormdrill");

/// Deletes the claim when dropped before [`ClaimGuard::disarm`]: a cancelled step
/// must not leave its claim behind.
struct ClaimGuard {
    api: Api<PersistentVolumeClaim>,
    name: Option<String>,
}

impl ClaimGuard {
    fn disarm(&mut self) {
        self.name = None;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let api = self.api.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                });
            }
        }
    }
}

fn probe_claim(class: &str, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            generate_name: Some(format!("stormdrill-probe-{class}-")),
            labels: Some(BTreeMap::from([(LABEL.0.into(), LABEL.1.into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The newest event about the claim, `Reason: message`.
async fn newest_event(client: &Client, namespace: &str, claim: &str) -> Option<String> {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={claim}")))
        .await
        .ok()?;
    let e = events
        .items
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(claim))
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        })?;
    Some(format!(
        "{}: {}",
        e.reason.as_deref().unwrap_or("Event"),
        e.message.as_deref().unwrap_or("").trim()
    ))
}

/// Creates a `size` claim on `class` in `namespace`, waits up to `bind` for Bound,
/// deletes it and waits up to `cleanup` for the claim and its volume to be gone.
pub async fn claim_round_trip(
    client: &Client,
    namespace: &str,
    class: &str,
    size: &str,
    bind: Duration,
    cleanup: Duration,
) -> Result<ClaimRoundTrip, StorageError> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let created = pvcs
        .create(&PostParams::default(), &probe_claim(class, size))
        .await
        .map_err(|source| StorageError::Create {
            class: class.into(),
            namespace: namespace.into(),
            source,
        })?;
    let name = created.name_any();
    let mut guard = ClaimGuard {
        api: pvcs.clone(),
        name: Some(name.clone()),
    };
    let mut out = ClaimRoundTrip {
        claim: format!("{namespace}/{name}"),
        ..ClaimRoundTrip::default()
    };
    let bound = |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|c| c.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Bound")
    };
    let volume = match tokio::time::timeout(bind, await_condition(pvcs.clone(), &name, bound)).await
    {
        Ok(Ok(Some(c))) => {
            out.bound_after = Some(started.elapsed());
            c.spec.and_then(|s| s.volume_name)
        }
        _ => {
            let phase = pvcs
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status.and_then(|s| s.phase))
                .unwrap_or_else(|| "Pending".into());
            let event = newest_event(client, namespace, &name).await;
            out.pending_why = Some(match event {
                Some(e) => format!("{phase}; {e}"),
                None => phase,
            });
            None
        }
    };

    // Cleanup: the claim, then its volume (reclaim policy Delete removes it).
    let deleted_at = Instant::now();
    let _ = pvcs.delete(&name, &DeleteParams::default()).await;
    guard.disarm();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let gone = async {
        let _ = await_condition(pvcs.clone(), &name, conditions::is_deleted("")).await;
        if let Some(v) = &volume {
            let _ =
                await_condition(pvs.clone(), v, |o: Option<&PersistentVolume>| o.is_none()).await;
        }
    };
    if tokio::time::timeout(cleanup, gone).await.is_ok() {
        out.cleaned_after = Some(deleted_at.elapsed());
    } else if let Some(v) = &volume {
        // Left behind: say what, and remove the object so probes do not pile up.
        if let Ok(Some(pv)) = pvs.get_opt(v).await {
            let phase = pv
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            let policy = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.clone())
                .unwrap_or_default();
            out.leftover = Some(format!(
                "PersistentVolume {v} {phase} (reclaim policy {policy})"
            ));
            let _ = pvs.delete(v, &DeleteParams::default()).await;
        }
    } else {
        out.leftover = Some(format!("PersistentVolumeClaim {namespace}/{name}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_claim_asks_for_class_and_size() {
        let c = probe_claim("ceph-hdd", "1Gi");
        let spec = c.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("ceph-hdd"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("1Gi".into())
        );
        assert_eq!(
            c.metadata.generate_name.as_deref(),
            Some("stormdrill-probe-ceph-hdd-")
        );
    }
}
