//! Kubernetes probes: API latency, node and pod readiness, object lookup by kind name.
//!
//! The judging parts (readiness, kind resolution) are pure functions over API objects,
//! so they are unit-tested against inline YAML; the async parts only fetch.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    api::{Api, DynamicObject, ListParams},
    discovery::{ApiCapabilities, ApiResource, Discovery, Scope},
    Client, ResourceExt,
};

use crate::similar;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{what} failed")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("API discovery failed")]
    Discovery(#[source] kube::Error),
    #[error(transparent)]
    Kind(#[from] KindError),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ProbeError {
    let what = what.into();
    move |source| ProbeError::Api { what, source }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindError {
    #[error("unknown kind `{word}`: {}", describe_close(close, *known))]
    Unknown {
        word: String,
        close: Vec<String>,
        known: usize,
    },
    #[error("{kind} is namespaced: name the namespace (`... exists in namespace \"NAME\"`)")]
    NeedsNamespace { kind: String },
    #[error("{kind} is cluster-scoped: drop the namespace (`the {word} \"NAME\" exists`)")]
    ClusterScoped { kind: String, word: String },
}

fn describe_close(close: &[String], known: usize) -> String {
    if close.is_empty() {
        format!("no close names among the {known} kinds the API server serves")
    } else {
        format!("close names: {}", close.join(", "))
    }
}

/// Time of one `/version` round trip.
pub async fn api_latency(client: &Client) -> Result<Duration, ProbeError> {
    let start = Instant::now();
    client
        .apiserver_version()
        .await
        .map_err(api_error("GET /version"))?;
    Ok(start.elapsed())
}

pub async fn list_nodes(client: &Client) -> Result<Vec<Node>, ProbeError> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing nodes"))?
        .items)
}

pub async fn list_pods(client: &Client, namespace: &str) -> Result<Vec<Pod>, ProbeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!(
            "listing pods in namespace {namespace:?}"
        )))?
        .items)
}

/// Readiness of a set of objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Objects that should be Ready.
    pub total: usize,
    pub ready: usize,
    pub not_ready: Vec<NotReady>,
    /// Objects left out on purpose (completed pods), reported for transparency.
    pub ignored: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub name: String,
    pub why: String,
}

impl Readiness {
    pub fn all_ready(&self) -> bool {
        self.total > 0 && self.ready == self.total
    }

    /// `dirqual2 (KubeletNotReady), web-0 (Pending: ImagePullBackOff), and 3 more`.
    pub fn list_not_ready(&self, limit: usize) -> String {
        let mut parts: Vec<String> = self
            .not_ready
            .iter()
            .take(limit)
            .map(|n| format!("{} ({})", n.name, n.why))
            .collect();
        if self.not_ready.len() > limit {
            parts.push(format!("and {} more", self.not_ready.len() - limit));
        }
        parts.join(", ")
    }
}

/// A node is Ready when its `Ready` condition is `True`.
pub fn node_readiness(nodes: &[Node]) -> Readiness {
    let mut r = Readiness::default();
    for node in nodes {
        r.total += 1;
        let cond = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        match cond {
            Some(c) if c.status == "True" => r.ready += 1,
            Some(c) => r.not_ready.push(NotReady {
                name: node.name_any(),
                why: condition_why(&c.status, c.reason.as_deref(), c.message.as_deref()),
            }),
            None => r.not_ready.push(NotReady {
                name: node.name_any(),
                why: "no Ready condition".into(),
            }),
        }
    }
    r
}

/// A pod is Ready when its `Ready` condition is `True`. Succeeded pods (finished jobs)
/// are left out: they are done, not broken, and real kube-system namespaces have them.
pub fn pod_readiness(pods: &[Pod]) -> Readiness {
    let mut r = Readiness::default();
    for pod in pods {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        if phase == "Succeeded" {
            r.ignored += 1;
            continue;
        }
        r.total += 1;
        let cond = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        if cond.is_some_and(|c| c.status == "True") {
            r.ready += 1;
            continue;
        }
        // The container's waiting reason (CrashLoopBackOff, ...) says more than the
        // pod condition's generic ContainersNotReady.
        let waiting: Vec<String> = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|cs| {
                let reason = cs.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
                Some(format!("{}: {reason}", cs.name))
            })
            .collect();
        let why = if !waiting.is_empty() {
            format!("{phase}; {}", waiting.join(", "))
        } else if let Some(c) = cond {
            format!(
                "{phase}; {}",
                condition_why(&c.status, c.reason.as_deref(), c.message.as_deref())
            )
        } else {
            phase.to_owned()
        };
        r.not_ready.push(NotReady {
            name: pod.name_any(),
            why,
        });
    }
    r
}

fn condition_why(status: &str, reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => format!("Ready={status}, {r}: {m}"),
        (Some(r), _) => format!("Ready={status}, {r}"),
        (None, Some(m)) if !m.is_empty() => format!("Ready={status}: {m}"),
        _ => format!("Ready={status}"),
    }
}

/// What discovery found: every served resource with its capabilities.
pub type Resources = Vec<(ApiResource, ApiCapabilities)>;

/// A kind resolved through discovery.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub resource: ApiResource,
    pub caps: ApiCapabilities,
}

impl Resolved {
    pub fn namespaced(&self) -> bool {
        self.caps.scope == Scope::Namespaced
    }

    /// `apps/v1 Deployment`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.resource.api_version, self.resource.kind)
    }

    /// Checks the step named a namespace exactly when the kind has one.
    pub fn require_scope(&self, word: &str, namespaced: bool) -> Result<(), KindError> {
        match (self.namespaced(), namespaced) {
            (true, false) => Err(KindError::NeedsNamespace {
                kind: self.resource.kind.clone(),
            }),
            (false, true) => Err(KindError::ClusterScoped {
                kind: self.resource.kind.clone(),
                word: word.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// Resolves a kind as people write it: case-insensitive, singular or plural
/// (`deployment`, `Deployments`), optionally with its group like kubectl
/// (`deployment.apps`). Several groups serving the same name: the core group wins,
/// then built-in groups, so `event` is the core Event.
pub fn resolve_kind(
    word: &str,
    resources: &[(ApiResource, ApiCapabilities)],
) -> Result<Resolved, KindError> {
    let lower = word.to_lowercase();
    let (name, group) = match lower.split_once('.') {
        Some((n, g)) => (n, Some(g)),
        None => (lower.as_str(), None),
    };
    let names = |ar: &ApiResource| [ar.kind.to_lowercase(), ar.plural.to_lowercase()];
    let best = resources
        .iter()
        .filter(|(ar, _)| group.is_none_or(|g| ar.group == g))
        .filter(|(ar, _)| names(ar).iter().any(|n| n == name))
        .min_by_key(|(ar, _)| (group_rank(&ar.group), ar.group.clone()));
    if let Some((resource, caps)) = best {
        return Ok(Resolved {
            resource: resource.clone(),
            caps: caps.clone(),
        });
    }

    let mut candidates: Vec<String> = resources.iter().flat_map(|(ar, _)| names(ar)).collect();
    candidates.sort();
    candidates.dedup();
    let close = similar::closest(name, candidates.iter().map(String::as_str), 6)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut kinds: Vec<&str> = resources.iter().map(|(ar, _)| ar.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    Err(KindError::Unknown {
        word: word.to_owned(),
        close,
        known: kinds.len(),
    })
}

fn group_rank(group: &str) -> u8 {
    if group.is_empty() {
        0
    } else if !group.contains('.') {
        1
    } else if group.ends_with(".k8s.io") {
        2
    } else {
        3
    }
}

/// Discovery, cached for the run: every step resolving a kind would otherwise cost
/// one request per API group. A miss refreshes once, for CRDs created mid-run.
#[derive(Default)]
pub struct ApiCatalog {
    cache: tokio::sync::Mutex<Option<Arc<Resources>>>,
}

impl std::fmt::Debug for ApiCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCatalog").finish_non_exhaustive()
    }
}

impl ApiCatalog {
    pub async fn resolve(&self, client: &Client, word: &str) -> Result<Resolved, ProbeError> {
        // Held across discovery so concurrent scenarios discover once.
        let mut cache = self.cache.lock().await;
        let cached = cache.clone();
        if let Some(resources) = cached {
            if let Ok(r) = resolve_kind(word, &resources) {
                return Ok(r);
            }
        }
        let resources = Arc::new(discover(client).await?);
        *cache = Some(resources.clone());
        Ok(resolve_kind(word, &resources)?)
    }
}

async fn discover(client: &Client) -> Result<Resources, ProbeError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(ProbeError::Discovery)?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .collect())
}

/// The named object, or None when the API server says 404.
pub async fn get_object(
    client: &Client,
    kind: &Resolved,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<DynamicObject>, ProbeError> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.resource),
        None => Api::all_with(client.clone(), &kind.resource),
    };
    api.get_opt(name).await.map_err(api_error(format!(
        "getting {} {name:?}",
        kind.resource.kind
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(yaml: &str) -> Vec<Node> {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn pods(yaml: &str) -> Vec<Pod> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn nodes_ready_and_not() {
        let r = node_readiness(&nodes(
            r#"
- metadata: {name: a}
  status:
    conditions:
    - {type: MemoryPressure, status: "False"}
    - {type: Ready, status: "True"}
- metadata: {name: b}
  status:
    conditions:
    - {type: Ready, status: "False", reason: KubeletNotReady, message: "PLEG is not healthy"}
- metadata: {name: c}
  status:
    conditions:
    - {type: Ready, status: Unknown, reason: NodeStatusUnknown}
- metadata: {name: d}
"#,
        ));
        assert_eq!((r.total, r.ready), (4, 1));
        assert!(!r.all_ready());
        assert_eq!(
            r.list_not_ready(2),
            "b (Ready=False, KubeletNotReady: PLEG is not healthy), \
             c (Ready=Unknown, NodeStatusUnknown), and 1 more"
        );
    }

    #[test]
    fn no_nodes_is_not_all_ready() {
        let r = node_readiness(&[]);
        assert!(!r.all_ready());
    }

    #[test]
    fn pods_skip_succeeded_and_explain_waiting_containers() {
        let r = pod_readiness(&pods(
            r#"
- metadata: {name: coredns-1}
  status:
    phase: Running
    conditions: [{type: Ready, status: "True"}]
- metadata: {name: job-x}
  status:
    phase: Succeeded
    conditions: [{type: Ready, status: "False", reason: PodCompleted}]
- metadata: {name: web-0}
  status:
    phase: Running
    conditions: [{type: Ready, status: "False", reason: ContainersNotReady}]
    containerStatuses:
    - name: web
      image: nginx
      imageID: ""
      ready: false
      restartCount: 4
      state: {waiting: {reason: CrashLoopBackOff}}
- metadata: {name: pending-0}
  status:
    phase: Pending
"#,
        ));
        assert_eq!((r.total, r.ready, r.ignored), (3, 1, 1));
        assert_eq!(
            r.list_not_ready(5),
            "web-0 (Running; web: CrashLoopBackOff), pending-0 (Pending)"
        );
    }

    fn res(group: &str, kind: &str, plural: &str, scope: Scope) -> (ApiResource, ApiCapabilities) {
        let version = "v1";
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        (
            ApiResource {
                group: group.into(),
                version: version.into(),
                api_version,
                kind: kind.into(),
                plural: plural.into(),
            },
            ApiCapabilities {
                scope,
                subresources: vec![],
                operations: vec![],
            },
        )
    }

    fn catalog() -> Vec<(ApiResource, ApiCapabilities)> {
        vec![
            res("events.k8s.io", "Event", "events", Scope::Namespaced),
            res("", "Event", "events", Scope::Namespaced),
            res("apps", "Deployment", "deployments", Scope::Namespaced),
            res("", "Service", "services", Scope::Namespaced),
            res("", "ConfigMap", "configmaps", Scope::Namespaced),
            res("", "Namespace", "namespaces", Scope::Cluster),
            res(
                "ceph.rook.io",
                "CephCluster",
                "cephclusters",
                Scope::Namespaced,
            ),
        ]
    }

    #[test]
    fn kinds_resolve_case_insensitively_singular_or_plural() {
        let c = catalog();
        for word in [
            "deployment",
            "Deployment",
            "deployments",
            "DEPLOYMENTS",
            "deployment.apps",
        ] {
            let r = resolve_kind(word, &c).unwrap();
            assert_eq!(r.describe(), "apps/v1 Deployment", "{word}");
        }
        assert_eq!(
            resolve_kind("configmap", &c).unwrap().resource.kind,
            "ConfigMap"
        );
        assert_eq!(
            resolve_kind("cephcluster", &c).unwrap().resource.group,
            "ceph.rook.io"
        );
        assert!(!resolve_kind("namespace", &c).unwrap().namespaced());
    }

    #[test]
    fn core_group_wins_and_group_suffix_selects() {
        let c = catalog();
        assert_eq!(resolve_kind("event", &c).unwrap().describe(), "v1 Event");
        assert_eq!(
            resolve_kind("events.events.k8s.io", &c).unwrap().describe(),
            "events.k8s.io/v1 Event"
        );
    }

    #[test]
    fn unknown_kinds_list_close_names() {
        let e = resolve_kind("deploymnt", &catalog()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown kind `deploymnt`: close names: deployment, deployments"
        );
        let e = resolve_kind("xyzzy", &catalog()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown kind `xyzzy`: no close names among the 6 kinds the API server serves"
        );
    }

    #[test]
    fn scope_mismatch_is_explained() {
        let c = catalog();
        let ns = resolve_kind("namespace", &c).unwrap();
        assert!(ns.require_scope("namespace", false).is_ok());
        assert!(matches!(
            ns.require_scope("namespace", true),
            Err(KindError::ClusterScoped { .. })
        ));
        let dep = resolve_kind("deployment", &c).unwrap();
        assert!(matches!(
            dep.require_scope("deployment", false),
            Err(KindError::NeedsNamespace { .. })
        ));
    }
}
