//! The platform's controllers as their objects report them: `Ready` conditions
//! (cert-manager, Flux), Velero's BackupStorageLocation phase, PVCs on Rook
//! StorageClasses, Gatekeeper's admission answer to a server-side dry run, and a
//! dry-run eviction (what a drain would be told about a pod).

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::{
    api::{Api, DeleteParams, DynamicObject, EvictParams, ListParams, ObjectMeta, PostParams},
    Client,
};
use serde_json::Value;

use super::k8s::{ProbeError, Resolved};

/// Provisioners of Rook's StorageClasses (ceph-csi RBD and CephFS, and the
/// pre-CSI flex driver).
const ROOK_PROVISIONER_SUFFIXES: &[&str] = &[".rbd.csi.ceph.com", ".cephfs.csi.ceph.com"];
const ROOK_FLEX_PROVISIONER: &str = "ceph.rook.io/block";

/// Every object of a resolved kind (in `namespace`, or all), as JSON.
pub async fn list(
    client: &Client,
    kind: &Resolved,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ProbeError> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.resource),
        None => Api::all_with(client.clone(), &kind.resource),
    };
    let items = api
        .list(&ListParams::default())
        .await
        .map_err(|source| ProbeError::Api {
            what: format!("listing {}", kind.resource.plural),
            source,
        })?
        .items;
    Ok(items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

pub fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether an object's `Ready` condition is True; else why not (`Ready=False,
/// DependencyNotReady: ...`, or `no Ready condition`).
pub fn ready(o: &Value) -> Result<(), String> {
    let cond = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let Some(c) = cond else {
        return Err("no Ready condition".into());
    };
    if c["status"] == "True" {
        return Ok(());
    }
    let status = c["status"].as_str().unwrap_or("Unknown");
    let reason = c["reason"].as_str().unwrap_or("");
    let message = c["message"].as_str().unwrap_or("");
    let mut why = format!("Ready={status}");
    if !reason.is_empty() {
        why.push_str(&format!(", {reason}"));
    }
    if !message.is_empty() {
        why.push_str(&format!(": {message}"));
    }
    Err(why)
}

/// Flux Kustomizations: Ready ones and suspended ones, with the culprits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FluxState {
    pub total: usize,
    pub ready: usize,
    pub not_ready: Vec<(String, String)>,
    pub suspended: Vec<String>,
}

pub fn flux_state(kustomizations: &[Value]) -> FluxState {
    let mut s = FluxState::default();
    for k in kustomizations {
        s.total += 1;
        let n = name(k).to_owned();
        match ready(k) {
            Ok(()) => s.ready += 1,
            Err(why) => s.not_ready.push((n.clone(), why)),
        }
        // A suspended Kustomization keeps its last Ready condition while Git moves on.
        if k.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
            s.suspended.push(n);
        }
    }
    s
}

/// A BackupStorageLocation's `status.phase` (`Available`, `Unavailable`), and Velero's
/// message when it has one.
pub fn bsl_phase(o: &Value) -> (Option<&str>, Option<&str>) {
    (
        o.pointer("/status/phase").and_then(Value::as_str),
        o.pointer("/status/message").and_then(Value::as_str),
    )
}

fn is_rook_provisioner(p: &str) -> bool {
    p == ROOK_FLEX_PROVISIONER || ROOK_PROVISIONER_SUFFIXES.iter().any(|s| p.ends_with(s))
}

/// PVCs that are Bound on a Rook StorageClass, and the others with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimsState {
    pub total: usize,
    pub on_rook: usize,
    pub others: Vec<(String, String)>,
}

pub fn claims_on_rook(pvcs: &[Value], classes: &[Value]) -> ClaimsState {
    let mut s = ClaimsState::default();
    for pvc in pvcs {
        s.total += 1;
        let n = name(pvc).to_owned();
        let phase = pvc
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        let class = pvc
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let provisioner = classes
            .iter()
            .find(|c| name(c) == class)
            .and_then(|c| c["provisioner"].as_str());
        let why = match (phase, provisioner) {
            (p, _) if p != "Bound" => format!("{p} on class {class:?}"),
            (_, None) => format!("Bound on class {class:?}, which does not exist"),
            (_, Some(p)) if !is_rook_provisioner(p) => {
                format!("Bound on class {class:?} of provisioner {p}, not Rook")
            }
            _ => {
                s.on_rook += 1;
                continue;
            }
        };
        s.others.push((n, why));
    }
    s
}

/// What admission said to a dry-run create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Refused with 403 (a policy webhook), with the API server's message.
    Denied(String),
    /// Refused for another reason (invalid object, missing namespace, ...).
    Refused {
        code: u16,
        message: String,
    },
}

pub fn admission_of(result: Result<(), kube::Error>) -> Result<Admission, kube::Error> {
    match result {
        Ok(()) => Ok(Admission::Admitted),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Admission::Denied(s.message)),
        Err(kube::Error::Api(s)) => Ok(Admission::Refused {
            code: s.code,
            message: s.message,
        }),
        Err(e) => Err(e),
    }
}

/// A server-side dry run (`dryRun=All`) of a one-container Pod with `image`: the
/// admission chain (Gatekeeper's webhook included) judges it; nothing is created.
pub async fn dry_run_pod(
    client: &Client,
    namespace: &str,
    image: &str,
) -> Result<Admission, ProbeError> {
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some("stormdrill-policy-probe-".into()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "probe".into(),
                image: Some(image.to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(crate::stack::FIELD_MANAGER.into()),
    };
    let r = Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&pp, &pod)
        .await
        .map(drop);
    admission_of(r).map_err(|source| ProbeError::Api {
        what: format!("dry-run create of a pod with image {image:?} in {namespace:?}"),
        source,
    })
}

/// What the eviction subresource answers for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eviction {
    Allowed,
    /// 429 with a `DisruptionBudget` cause: a PodDisruptionBudget holds the pod.
    Blocked(String),
    /// Refused for another reason (no such pod, more than one budget, ...).
    Refused {
        code: u16,
        message: String,
    },
}

pub fn eviction_of(result: Result<(), kube::Error>) -> Result<Eviction, kube::Error> {
    match result {
        Ok(()) => Ok(Eviction::Allowed),
        // Upstream answers 429 both for a budget with no disruption left and for a
        // budget whose status lags (`Cannot evict pod ... disruption budget`).
        Err(kube::Error::Api(s)) if s.code == 429 && s.message.contains("disruption budget") => {
            Ok(Eviction::Blocked(s.message))
        }
        Err(kube::Error::Api(s)) => Ok(Eviction::Refused {
            code: s.code,
            message: s.message,
        }),
        Err(e) => Err(e),
    }
}

/// A server-side dry-run eviction of `namespace/pod` (`dryRun=All`): the API server
/// applies the pod's PodDisruptionBudgets as a drain would meet them; nothing is
/// evicted and no budget is spent.
pub async fn dry_run_eviction(
    client: &Client,
    namespace: &str,
    pod: &str,
) -> Result<Eviction, ProbeError> {
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        }),
        post_options: PostParams {
            dry_run: true,
            field_manager: Some(crate::stack::FIELD_MANAGER.into()),
        },
    };
    let r = Api::<Pod>::namespaced(client.clone(), namespace)
        .evict(pod, &params)
        .await
        .map(drop);
    eviction_of(r).map_err(|source| ProbeError::Api {
        what: format!("dry-run eviction of pod {namespace}/{pod}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Vec<Value> {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn ready_conditions() {
        let v = yaml(
            r#"
- status: {conditions: [{type: Ready, status: "True"}]}
- status: {conditions: [{type: Ready, status: "False", reason: DependencyNotReady, message: "dependency 'flux-system/apps-secrets' not found"}]}
- status: {}
"#,
        );
        assert_eq!(ready(&v[0]), Ok(()));
        assert_eq!(
            ready(&v[1]).unwrap_err(),
            "Ready=False, DependencyNotReady: dependency 'flux-system/apps-secrets' not found"
        );
        assert_eq!(ready(&v[2]).unwrap_err(), "no Ready condition");
    }

    #[test]
    fn flux_ready_and_suspended() {
        let ks = yaml(
            r#"
- metadata: {name: infrastructure}
  spec: {suspend: true}
  status: {conditions: [{type: Ready, status: "True"}]}
- metadata: {name: apps}
  spec: {}
  status: {conditions: [{type: Ready, status: "False", reason: DependencyNotReady}]}
"#,
        );
        let s = flux_state(&ks);
        assert_eq!((s.total, s.ready), (2, 1));
        assert_eq!(s.suspended, ["infrastructure"]);
        assert_eq!(s.not_ready[0].0, "apps");
    }

    #[test]
    fn claims_must_be_bound_on_rook() {
        let classes = yaml(
            r#"
- {metadata: {name: ceph-nvme}, provisioner: rook-ceph.rbd.csi.ceph.com}
- {metadata: {name: standard}, provisioner: rancher.io/local-path}
"#,
        );
        let pvcs = yaml(
            r#"
- {metadata: {name: data-postgresql-0}, spec: {storageClassName: ceph-nvme}, status: {phase: Bound}}
- {metadata: {name: data-neo4j-0}, spec: {storageClassName: standard}, status: {phase: Bound}}
- {metadata: {name: data-redis-0}, spec: {storageClassName: ceph-nvme}, status: {phase: Pending}}
- {metadata: {name: x}, spec: {storageClassName: gone}, status: {phase: Bound}}
"#,
        );
        let s = claims_on_rook(&pvcs, &classes);
        assert_eq!((s.total, s.on_rook), (4, 1));
        assert_eq!(
            s.others,
            [
                (
                    "data-neo4j-0".to_owned(),
                    "Bound on class \"standard\" of provisioner rancher.io/local-path, not Rook"
                        .to_owned()
                ),
                (
                    "data-redis-0".to_owned(),
                    "Pending on class \"ceph-nvme\"".to_owned()
                ),
                (
                    "x".to_owned(),
                    "Bound on class \"gone\", which does not exist".to_owned()
                ),
            ]
        );
        assert!(is_rook_provisioner("openshift-storage.cephfs.csi.ceph.com"));
    }

    #[test]
    fn admission_answers() {
        let denied = kube::Error::Api(Box::new(
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": 403, "reason": "Forbidden",
                "message": "admission webhook \"validation.gatekeeper.sh\" denied the request"
            }))
            .unwrap(),
        ));
        assert!(
            matches!(admission_of(Err(denied)), Ok(Admission::Denied(m)) if m.contains("gatekeeper"))
        );
        let invalid = kube::Error::Api(Box::new(
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": 404, "reason": "NotFound", "message": "namespaces \"x\" not found"
            }))
            .unwrap(),
        ));
        assert!(matches!(
            admission_of(Err(invalid)),
            Ok(Admission::Refused { code: 404, .. })
        ));
        assert_eq!(admission_of(Ok(())).unwrap(), Admission::Admitted);
        let api = |code: u16, message: &str| {
            kube::Error::Api(Box::new(
                serde_json::from_value(serde_json::json!({
                    "status": "Failure", "code": code, "reason": "x", "message": message
                }))
                .unwrap(),
            ))
        };
        assert!(matches!(
            eviction_of(Err(api(
                429,
                "Cannot evict pod as it would violate the pod's disruption budget."
            ))),
            Ok(Eviction::Blocked(_))
        ));
        // A 429 from API priority and fairness is not a budget's answer.
        assert!(matches!(
            eviction_of(Err(api(429, "Too many requests, please try again later."))),
            Ok(Eviction::Refused { code: 429, .. })
        ));
        assert_eq!(eviction_of(Ok(())).unwrap(), Eviction::Allowed);
        let v =
            yaml("- status: {phase: Unavailable, message: 'BackupStorageLocation is unavailable'}");
        assert_eq!(
            bsl_phase(&v[0]),
            (
                Some("Unavailable"),
                Some("BackupStorageLocation is unavailable")
            )
        );
    }
}
