//! The resource registry: which kinds the twin serves, and how (scope, verbs,
//! subresources, short names). Built-in kinds come from a fixed table; CRDs are
//! added when their CustomResourceDefinition is created.

/// How the scale subresource maps onto an object (built-in workloads, or a CRD's
/// `subresources.scale`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleInfo {
    /// JSON pointer-ish dotted path, e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, "" for the core group.
    pub group: String,
    /// Storage version: objects are stored (and served) with this version.
    pub version: String,
    /// Every served version (CRDs may serve several; no conversion, as with
    /// the CRD conversion strategy `None`).
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub status_subresource: bool,
    pub scale: Option<ScaleInfo>,
    /// True for kinds compiled into the twin (validated against k8s-openapi types).
    pub builtin: bool,
}

/// Built-in resources whose kube-apiserver strategy sets `metadata.generation` (1 on
/// create, +1 when the spec changes): the `Generation = 1` in each one's
/// `PrepareForCreate` under `pkg/registry/**/strategy.go` of k8s.io/kubernetes v1.37.2.
/// The others (ConfigMaps, Secrets, Namespaces, Services, ...) have none.
const GENERATION_TRACKED: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "podtemplates"),
    ("", "replicationcontrollers"),
    ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apps", "daemonsets"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("batch", "cronjobs"),
    ("batch", "jobs"),
    ("discovery.k8s.io", "endpointslices"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    ),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "networkpolicies"),
    ("policy", "poddisruptionbudgets"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "devicetaintrules"),
    ("resource.k8s.io", "resourceslices"),
    ("scheduling.k8s.io", "priorityclasses"),
];

/// Built-in resources whose kube-apiserver store answers a DELETE that removes the
/// object at once with the object (`ReturnDeletedObject: true` in
/// `pkg/registry/**/storage/storage.go`, v1.37.2); every other one answers a
/// `Success` Status naming it.
const RETURNS_DELETED_OBJECT: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("", "pods"),
    ("", "podtemplates"),
    ("", "resourcequotas"),
    ("", "serviceaccounts"),
    ("", "services"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "resourceclaims"),
    ("resource.k8s.io", "resourceclaimtemplates"),
    ("resource.k8s.io", "resourcepoolstatusrequests"),
    ("resource.k8s.io", "resourceslices"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
];

impl ResourceInfo {
    /// Whether a DELETE that removes an object at once answers the object (else a
    /// `Success` Status), per [`RETURNS_DELETED_OBJECT`]; custom resources answer a Status.
    pub fn returns_deleted_object(&self) -> bool {
        self.builtin && self.listed_in(RETURNS_DELETED_OBJECT)
    }

    /// Whether objects of this resource carry `metadata.generation`: every custom
    /// resource does, built-in ones per [`GENERATION_TRACKED`].
    pub fn tracks_generation(&self) -> bool {
        !self.builtin || self.listed_in(GENERATION_TRACKED)
    }

    /// Whether this resource's (group, plural) is in `table`.
    fn listed_in(&self, table: &[(&str, &str)]) -> bool {
        table
            .iter()
            .any(|(g, p)| *g == self.group && *p == self.plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

use serde_json::{json, Map, Value};
use std::cmp::Ordering;

/// The verbs upstream discovery lists for an ordinary built-in resource (sorted, as
/// the kube-apiserver lists them).
const VERBS_ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces do not support `deletecollection`.
const VERBS_NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// The verbs the apiextensions-apiserver lists for every custom resource, in its order.
pub const CRD_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: &'static [&'static str],
    status: bool,
    scale: bool,
}

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
) -> Builtin {
    Builtin {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories,
        verbs: VERBS_ALL,
        status,
        scale,
    }
}

/// The review kinds (`kubectl auth can-i`, `auth whoami`) are created, never stored.
const VERBS_CREATE: &[&str] = &["create"];
const ALL: &[&str] = &["all"];
const API_EXT: &[&str] = &["api-extensions"];
const NONE: &[&str] = &[];

/// The built-in kinds, as a Kubernetes 1.37 kube-apiserver serves them (every one of
/// them is served only as v1 here).
const BUILTINS: &[Builtin] = &[
    // core/v1
    Builtin {
        verbs: VERBS_NO_DELETECOLLECTION,
        ..b(
            "",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
            NONE,
            true,
            false,
        )
    },
    b(
        "",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        NONE,
        true,
        false,
    ),
    b("", "pods", "pod", "Pod", true, &["po"], ALL, true, false),
    b(
        "",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        ALL,
        true,
        false,
    ),
    b(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        NONE,
        false,
        false,
    ),
    b(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        NONE,
        false,
        false,
    ),
    b(
        "", "secrets", "secret", "Secret", true, NONE, NONE, false, false,
    ),
    b(
        "",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        false,
        false,
    ),
    b(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        NONE,
        false,
        false,
    ),
    b(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE,
        true,
        false,
    ),
    b(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        NONE,
        true,
        false,
    ),
    b(
        "",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        &["limits"],
        NONE,
        false,
        false,
    ),
    b(
        "",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        NONE,
        true,
        false,
    ),
    // apps/v1
    b(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        true,
        true,
    ),
    b(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        true,
        true,
    ),
    b(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        true,
        true,
    ),
    b(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        true,
        false,
    ),
    b(
        "apps",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    // batch/v1
    b("batch", "jobs", "job", "Job", true, NONE, ALL, true, false),
    b(
        "batch",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        ALL,
        true,
        false,
    ),
    // policy/v1
    b(
        "policy",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        NONE,
        true,
        false,
    ),
    // storage.k8s.io/v1
    b(
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        NONE,
        false,
        false,
    ),
    // networking.k8s.io/v1
    b(
        "networking.k8s.io",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        NONE,
        false,
        false,
    ),
    b(
        "networking.k8s.io",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        &["ing"],
        NONE,
        true,
        false,
    ),
    b(
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    // apiextensions.k8s.io/v1
    b(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        API_EXT,
        true,
        false,
    ),
    // rbac.authorization.k8s.io/v1
    b(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        NONE,
        NONE,
        false,
        false,
    ),
    // coordination.k8s.io/v1
    b(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    // discovery.k8s.io/v1
    b(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        NONE,
        NONE,
        false,
        false,
    ),
    // events.k8s.io/v1
    b(
        "events.k8s.io",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        false,
        false,
    ),
    // authentication.k8s.io/v1 and authorization.k8s.io/v1: reviews (reviews.rs)
    Builtin {
        verbs: VERBS_CREATE,
        ..b(
            "authentication.k8s.io",
            "selfsubjectreviews",
            "selfsubjectreview",
            "SelfSubjectReview",
            false,
            NONE,
            NONE,
            false,
            false,
        )
    },
    Builtin {
        verbs: VERBS_CREATE,
        ..b(
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
            "LocalSubjectAccessReview",
            true,
            NONE,
            NONE,
            false,
            false,
        )
    },
    Builtin {
        verbs: VERBS_CREATE,
        ..b(
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            "SelfSubjectAccessReview",
            false,
            NONE,
            NONE,
            false,
            false,
        )
    },
    Builtin {
        verbs: VERBS_CREATE,
        ..b(
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            "SelfSubjectRulesReview",
            false,
            NONE,
            NONE,
            false,
            false,
        )
    },
    Builtin {
        verbs: VERBS_CREATE,
        ..b(
            "authorization.k8s.io",
            "subjectaccessreviews",
            "subjectaccessreview",
            "SubjectAccessReview",
            false,
            NONE,
            NONE,
            false,
            false,
        )
    },
    // admissionregistration.k8s.io/v1
    b(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        false,
        NONE,
        API_EXT,
        false,
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        false,
        NONE,
        API_EXT,
        false,
        false,
    ),
    // scheduling.k8s.io/v1
    b(
        "scheduling.k8s.io",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        &["pc"],
        NONE,
        false,
        false,
    ),
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The scale subresource of the built-in workloads (Deployment, ReplicaSet,
/// StatefulSet). Upstream derives `Scale.status.selector` from `.spec.selector`, a
/// `metav1.LabelSelector` object (not a string as with CRDs), formatted with
/// [`format_label_selector`]; [`ScaleInfo::selector_string`] handles both.
pub fn builtin_scale() -> ScaleInfo {
    ScaleInfo {
        spec_replicas_path: ".spec.replicas".into(),
        status_replicas_path: ".status.replicas".into(),
        label_selector_path: Some(".spec.selector".into()),
    }
}

/// The built-in kinds with the metadata a Kubernetes 1.37 API server publishes.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    BUILTINS
        .iter()
        .map(|b| ResourceInfo {
            group: b.group.into(),
            version: b.version.into(),
            versions: vec![b.version.into()],
            plural: b.plural.into(),
            singular: b.singular.into(),
            kind: b.kind.into(),
            list_kind: format!("{}List", b.kind),
            namespaced: b.namespaced,
            short_names: strings(b.short_names),
            categories: strings(b.categories),
            verbs: strings(b.verbs),
            status_subresource: b.status,
            scale: b.scale.then(builtin_scale),
            builtin: true,
        })
        .collect()
}

impl ResourceInfo {
    /// `Kind.group` (`Pod` for the core group), as used in Status messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `plural.group` (`pods` for the core group), as used in NotFound messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The `apiVersion` string of `version` in this resource's group.
    pub fn group_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The `autoscaling/v1` Scale of `obj`, when this resource has a scale subresource.
    pub fn scale_of(&self, obj: &Value) -> Option<Value> {
        let scale = self.scale.as_ref()?;
        let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let mut m = Map::new();
        for key in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = meta.get(key) {
                m.insert(key.into(), v.clone());
            }
        }
        let spec_replicas = value_at_path(obj, &scale.spec_replicas_path)
            .and_then(Value::as_i64)
            .unwrap_or(if self.builtin { 1 } else { 0 });
        let status_replicas = value_at_path(obj, &scale.status_replicas_path)
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let mut status = json!({ "replicas": status_replicas });
        if let Some(sel) = scale.selector_string(obj) {
            status["selector"] = Value::String(sel);
        }
        Some(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": Value::Object(m),
            "spec": { "replicas": spec_replicas },
            "status": status,
        }))
    }
}

impl ScaleInfo {
    /// The label selector of `obj` as a string (`Scale.status.selector`): the value at
    /// `label_selector_path` when it is a string (CRDs), or the formatted
    /// `metav1.LabelSelector` when it is an object (built-in workloads).
    pub fn selector_string(&self, obj: &Value) -> Option<String> {
        let path = self.label_selector_path.as_deref()?;
        match value_at_path(obj, path)? {
            Value::String(s) => Some(s.clone()),
            v @ Value::Object(_) => Some(format_label_selector(v)),
            _ => None,
        }
    }
}

/// The value at a dotted path such as `.spec.replicas` (leading dot optional).
pub fn value_at_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Formats a `metav1.LabelSelector` as upstream `LabelSelectorAsSelector(..).String()`:
/// requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub fn format_label_selector(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            reqs.push((
                k.clone(),
                format!("{}={}", k, v.as_str().unwrap_or_default()),
            ));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let mut values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            values.sort_unstable();
            values.dedup();
            let s = match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            };
            reqs.push((key.to_string(), s));
        }
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(",")
}

/// Orders API versions the way Kubernetes does (`version.CompareKubeAwareVersionStrings`):
/// GA before beta before alpha, higher numbers first, then non-Kubernetes-looking
/// versions alphabetically. Use with `sort_by`.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (rank, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n)
        } else {
            return None;
        };
        if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some((rank, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ra, ma, na)), Some((rb, mb, nb))) => ra.cmp(&rb).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The CustomResourceDefinition is malformed (422 Invalid upstream).
    #[error("invalid CustomResourceDefinition: {0}")]
    InvalidCrd(String),
    /// The names collide with a built-in resource or another kind of the group.
    #[error("{0}")]
    Conflict(String),
}

/// The resources the twin serves: built-in kinds plus registered CRDs.
#[derive(Clone, Debug)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// A registry with the built-in kinds.
    pub fn new() -> Registry {
        Registry {
            resources: builtin_resources(),
        }
    }

    /// The resource `plural` of `group` when it serves `version`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.serves(version))
    }

    /// The resource `plural` of `group`, whatever versions it serves.
    pub fn find(&self, group: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }

    /// The resource for an object's `apiVersion` and `kind` (the version must be served).
    pub fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind && r.serves(version))
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.iter()
    }

    /// Registers (or re-registers) the custom resource an apiextensions.k8s.io/v1
    /// CustomResourceDefinition defines. The storage version's `subresources` decide
    /// `status_subresource` and `scale`.
    pub fn add_crd(&mut self, crd: &Value) -> Result<ResourceInfo, RegistryError> {
        validate_crd(crd).map_err(RegistryError::InvalidCrd)?;
        let spec = &crd["spec"];
        let group = str_at(spec, "group").to_string();
        let names = &spec["names"];
        let kind = str_at(names, "kind").to_string();
        let plural = str_at(names, "plural").to_string();
        let singular = match str_at(names, "singular") {
            "" => kind.to_lowercase(),
            s => s.to_string(),
        };
        let list_kind = match str_at(names, "listKind") {
            "" => format!("{kind}List"),
            s => s.to_string(),
        };
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        let storage = versions
            .iter()
            .find(|v| v["storage"].as_bool() == Some(true))
            .cloned()
            .unwrap_or(Value::Null);
        let mut served: Vec<String> = versions
            .iter()
            .filter(|v| v["served"].as_bool() == Some(true))
            .map(|v| str_at(v, "name").to_string())
            .collect();
        served.sort_by(|a, b| compare_versions(a, b));
        let sub = &storage["subresources"];
        let scale = sub
            .get("scale")
            .filter(|s| s.is_object())
            .map(|s| ScaleInfo {
                spec_replicas_path: str_at(s, "specReplicasPath").to_string(),
                status_replicas_path: str_at(s, "statusReplicasPath").to_string(),
                label_selector_path: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            });
        let info = ResourceInfo {
            group: group.clone(),
            version: str_at(&storage, "name").to_string(),
            versions: served,
            plural: plural.clone(),
            singular,
            kind: kind.clone(),
            list_kind,
            namespaced: str_at(spec, "scope") == "Namespaced",
            short_names: string_list(&names["shortNames"]),
            categories: string_list(&names["categories"]),
            verbs: strings(CRD_VERBS),
            status_subresource: sub.get("status").is_some_and(|s| !s.is_null()),
            scale,
            builtin: false,
        };
        for r in &self.resources {
            if r.group != group {
                continue;
            }
            if r.plural == plural && r.builtin {
                return Err(RegistryError::Conflict(format!(
                    "{plural}.{group} is a built-in resource"
                )));
            }
            if r.plural != plural && r.kind == kind {
                return Err(RegistryError::Conflict(format!(
                    "kind {kind} is already in use by {}.{group}",
                    r.plural
                )));
            }
        }
        match self
            .resources
            .iter_mut()
            .find(|r| r.group == group && r.plural == plural)
        {
            Some(existing) => *existing = info.clone(),
            None => self.resources.push(info.clone()),
        }
        Ok(info)
    }

    /// Unregisters a custom resource (built-in resources stay).
    pub fn remove_crd(&mut self, group: &str, plural: &str) {
        self.resources
            .retain(|r| r.builtin || !(r.group == group && r.plural == plural));
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `status.acceptedNames` of a CRD (names with `singular` and `listKind` defaulted).
pub fn crd_accepted_names(crd: &Value) -> Value {
    let names = &crd["spec"]["names"];
    let kind = str_at(names, "kind");
    let mut out = Map::new();
    out.insert("plural".into(), json!(str_at(names, "plural")));
    let singular = match str_at(names, "singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    out.insert("singular".into(), json!(singular));
    let short = string_list(&names["shortNames"]);
    if !short.is_empty() {
        out.insert("shortNames".into(), json!(short));
    }
    out.insert("kind".into(), json!(kind));
    let list_kind = match str_at(names, "listKind") {
        "" => format!("{kind}List"),
        s => s.to_string(),
    };
    out.insert("listKind".into(), json!(list_kind));
    let cats = string_list(&names["categories"]);
    if !cats.is_empty() {
        out.insert("categories".into(), json!(cats));
    }
    Value::Object(out)
}

/// The `status` an API server gives an accepted CRD: NamesAccepted and Established
/// conditions (with `now` as lastTransitionTime, kept from the existing status when
/// already True), `acceptedNames`, and `storedVersions` (the existing ones plus the
/// current storage version).
pub fn crd_status(crd: &Value, now: &str) -> Value {
    let old = &crd["status"];
    let old_time = |ty: &str| -> Option<Value> {
        old["conditions"].as_array()?.iter().find_map(|c| {
            (c["type"] == ty && c["status"] == "True").then(|| c["lastTransitionTime"].clone())
        })
    };
    let t_names = old_time("NamesAccepted").unwrap_or_else(|| json!(now));
    let t_est = old_time("Established").unwrap_or_else(|| json!(now));
    let mut stored = string_list(&old["storedVersions"]);
    if let Some(v) = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["storage"].as_bool() == Some(true)))
        .and_then(|v| v["name"].as_str())
    {
        if !stored.iter().any(|s| s == v) {
            stored.push(v.to_string());
        }
    }
    json!({
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": t_names,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": t_est,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            }
        ],
        "acceptedNames": crd_accepted_names(crd),
        "storedVersions": stored,
    })
}

/// One field error: (field path, Status cause reason, message as upstream's ErrorBody).
pub(crate) type FieldError = (String, &'static str, String);

/// The field errors of a CustomResourceDefinition (the checks of [`validate_crd`]).
pub(crate) fn crd_field_errors(crd: &Value) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = Vec::new();
    let spec = &crd["spec"];
    let group = str_at(spec, "group");
    let names = &spec["names"];
    let plural = str_at(names, "plural");
    let kind = str_at(names, "kind");
    if group.is_empty() {
        errs.push(("spec.group".into(), REQUIRED, "Required value".into()));
    } else if !is_dns1123_subdomain(group) {
        errs.push((
            "spec.group".into(),
            INVALID,
            format!("Invalid value: {group:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    } else if !group.contains('.') {
        errs.push((
            "spec.group".into(),
            INVALID,
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        errs.push((
            "spec.names.plural".into(),
            REQUIRED,
            "Required value".into(),
        ));
    } else if !is_dns1123_label(plural) {
        errs.push((
            "spec.names.plural".into(),
            INVALID,
            format!("Invalid value: {plural:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
        ));
    }
    let singular = str_at(names, "singular");
    if !singular.is_empty() && !is_dns1123_label(singular) {
        errs.push((
            "spec.names.singular".into(),
            INVALID,
            format!("Invalid value: {singular:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
        ));
    }
    if kind.is_empty() {
        errs.push(("spec.names.kind".into(), REQUIRED, "Required value".into()));
    }
    for (i, s) in string_list(&names["shortNames"]).iter().enumerate() {
        if !is_dns1123_label(s) {
            errs.push((
                format!("spec.names.shortNames[{i}]"),
                INVALID,
                format!("Invalid value: {s:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
            ));
        }
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push((
            "metadata.name".into(),
            INVALID,
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match str_at(spec, "scope") {
        "Namespaced" | "Cluster" => {}
        "" => errs.push(("spec.scope".into(), REQUIRED, "Required value".into())),
        s => errs.push((
            "spec.scope".into(),
            NOT_SUPPORTED,
            format!("Unsupported value: {s:?}: supported values: \"Cluster\", \"Namespaced\""),
        )),
    }
    match spec["versions"].as_array() {
        None => errs.push(("spec.versions".into(), REQUIRED, "Required value".into())),
        Some(vs) if vs.is_empty() => {
            errs.push(("spec.versions".into(), REQUIRED, "Required value".into()))
        }
        Some(vs) => {
            let mut seen: Vec<&str> = Vec::new();
            for (i, v) in vs.iter().enumerate() {
                let vn = str_at(v, "name");
                if vn.is_empty() {
                    errs.push((
                        format!("spec.versions[{i}].name"),
                        REQUIRED,
                        "Required value".into(),
                    ));
                } else if !is_dns1035_label(vn) {
                    errs.push((
                        format!("spec.versions[{i}].name"),
                        INVALID,
                        format!("Invalid value: {vn:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"),
                    ));
                } else if seen.contains(&vn) {
                    errs.push((
                        format!("spec.versions[{i}].name"),
                        DUPLICATE,
                        format!("Duplicate value: {vn:?}"),
                    ));
                }
                seen.push(vn);
            }
            let storage = vs
                .iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .count();
            if storage != 1 {
                errs.push((
                    "spec.versions".into(),
                    INVALID,
                    format!(
                        "Invalid value: {:?}: must have exactly one version marked as storage version",
                        seen.join(",")
                    ),
                ));
            }
        }
    }
    errs
}

pub(crate) const REQUIRED: &str = "FieldValueRequired";
pub(crate) const INVALID: &str = "FieldValueInvalid";
pub(crate) const NOT_SUPPORTED: &str = "FieldValueNotSupported";
pub(crate) const DUPLICATE: &str = "FieldValueDuplicate";

/// Checks a CustomResourceDefinition the way the apiextensions-apiserver does for the
/// parts the twin relies on: `metadata.name == <plural>.<group>`, exactly one storage
/// version, a valid scope, and the names present. Returns the field errors joined.
pub fn validate_crd(crd: &Value) -> Result<(), String> {
    let errs = crd_field_errors(crd);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs
            .iter()
            .map(|(f, _, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join(", "))
    }
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|p| {
            let b = p.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// RFC 1035 label (Service names, CRD version names): `[a-z]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Kubernetes' `storageVersionHash`: base64 of the first 8 bytes of
/// sha256("<group>/<version>/<kind>").
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    let digest = sha256(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// Plain SHA-256 (FIPS 180-4), enough for storage version hashes.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in chunk.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Deserialize;
    use std::path::{Path, PathBuf};

    const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/upstream/crds");

    fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("fixture folder") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }

    /// Every CustomResourceDefinition document in the fixture folder.
    pub(crate) fn fixture_crds() -> Vec<(PathBuf, Value)> {
        let mut files = Vec::new();
        yaml_files(Path::new(CRD_DIR), &mut files);
        files.sort();
        let mut crds = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v =
                    Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if v["kind"] == "CustomResourceDefinition" {
                    crds.push((path.clone(), v));
                }
            }
        }
        crds
    }

    #[test]
    fn builtins_are_complete_and_unique() {
        let reg = Registry::new();
        assert_eq!(reg.all().count(), 41);
        let ssar = reg
            .get("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
            .unwrap();
        assert_eq!(ssar.verbs, ["create"]);
        assert!(!ssar.namespaced && !ssar.has_verb("get"));
        let mut seen = std::collections::HashSet::new();
        for r in reg.all() {
            assert!(
                seen.insert((r.group.clone(), r.plural.clone())),
                "{}",
                r.plural
            );
            assert!(r.builtin);
            assert_eq!(r.versions, vec![r.version.clone()]);
            assert_eq!(r.list_kind, format!("{}List", r.kind));
        }
        let pods = reg.get("", "v1", "pods").unwrap();
        assert_eq!(pods.short_names, ["po"]);
        assert_eq!(pods.categories, ["all"]);
        assert!(pods.namespaced && pods.status_subresource && pods.scale.is_none());
        assert_eq!(pods.verbs, VERBS_ALL);
        assert!(reg.get("", "v2", "pods").is_none());
        let ns = reg.get("", "v1", "namespaces").unwrap();
        assert!(!ns.namespaced && !ns.has_verb("deletecollection"));
        let deploy = reg.by_kind("apps", "Deployment").unwrap();
        assert_eq!(deploy.scale, Some(builtin_scale()));
        assert_eq!(deploy.api_version(), "apps/v1");
        assert!(reg.by_kind("apps", "DaemonSet").unwrap().scale.is_none());
        let crd = reg
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        assert_eq!(crd.short_names, ["crd", "crds"]);
        assert!(!crd.namespaced);
        assert_eq!(
            reg.by_api_version_kind("events.k8s.io/v1", "Event")
                .unwrap()
                .group,
            "events.k8s.io"
        );
        assert_eq!(reg.by_api_version_kind("v1", "Event").unwrap().group, "");
    }

    #[test]
    fn every_fixture_crd_registers() {
        let crds = fixture_crds();
        assert_eq!(crds.len(), 17, "CRD documents found");
        let mut reg = Registry::new();
        for (path, crd) in &crds {
            validate_crd(crd).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let info = reg
                .add_crd(crd)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!info.builtin);
            assert!(info.serves(&info.version) || !info.versions.is_empty());
            let accepted = crd_accepted_names(crd);
            assert_eq!(accepted["plural"], info.plural.as_str());
            assert_eq!(accepted["listKind"], info.list_kind.as_str());
        }

        let ceph = reg.get("ceph.rook.io", "v1", "cephclusters").unwrap();
        assert!(ceph.namespaced && ceph.status_subresource);
        assert_eq!(ceph.kind, "CephCluster");
        assert_eq!(ceph.short_names, ["ceph"]);

        let backups = reg.get("velero.io", "v1", "backups").unwrap();
        assert_eq!(backups.kind, "Backup");
        assert!(backups.namespaced);

        let proxy = reg.get("projectcontour.io", "v1", "httpproxies").unwrap();
        assert_eq!(proxy.kind, "HTTPProxy");
        assert_eq!(proxy.short_names, ["proxy", "proxies"]);
        assert!(proxy.status_subresource);

        let cert = reg.get("cert-manager.io", "v1", "certificates").unwrap();
        assert_eq!(cert.short_names, ["cert", "certs"]);
        assert_eq!(cert.categories, ["cert-manager"]);
        assert!(cert.status_subresource && cert.namespaced);
        let issuers = reg.get("cert-manager.io", "v1", "clusterissuers").unwrap();
        assert!(!issuers.namespaced);

        let ks = reg
            .find("kustomize.toolkit.fluxcd.io", "kustomizations")
            .unwrap();
        assert_eq!(ks.version, "v1");
        assert_eq!(ks.versions, ["v1"]);
        assert_eq!(ks.categories, ["all", "fluxcd", "fluxcd-appliers"]);
        assert_eq!(ks.short_names, ["ks"]);

        let ct = reg
            .get("templates.gatekeeper.sh", "v1", "constrainttemplates")
            .unwrap();
        assert!(!ct.namespaced);
        assert_eq!(ct.kind, "ConstraintTemplate");
        assert_eq!(ct.versions, ["v1", "v1beta1", "v1alpha1"]);
        let providers = reg.find("externaldata.gatekeeper.sh", "providers").unwrap();
        assert_eq!(providers.version, "v1beta1");

        let prom = reg
            .get("monitoring.coreos.com", "v1", "prometheuses")
            .unwrap();
        let scale = prom.scale.as_ref().expect("prometheus scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.shards");
        assert_eq!(scale.status_replicas_path, ".status.shards");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        assert!(reg
            .get("monitoring.coreos.com", "v1", "servicemonitors")
            .is_some());

        // Re-adding replaces; removing removes.
        let n = reg.all().count();
        let (_, first) = &crds[0];
        reg.add_crd(first).unwrap();
        assert_eq!(reg.all().count(), n);
        reg.remove_crd("ceph.rook.io", "cephclusters");
        assert!(reg.find("ceph.rook.io", "cephclusters").is_none());
        reg.remove_crd("", "pods");
        assert!(reg.find("", "pods").is_some());
    }

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {
                        "status": {},
                        "scale": {"specReplicasPath": ".spec.replicas",
                                  "statusReplicasPath": ".status.replicas",
                                  "labelSelectorPath": ".status.selector"}}},
                    {"name": "v2alpha1", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn crd_defaults_and_versions() {
        let mut reg = Registry::new();
        let info = reg.add_crd(&widget_crd()).unwrap();
        assert_eq!(info.singular, "widget");
        assert_eq!(info.list_kind, "WidgetList");
        assert_eq!(info.version, "v1");
        assert_eq!(info.versions, ["v1", "v1beta1"]);
        assert!(info.status_subresource);
        assert_eq!(info.verbs, CRD_VERBS);
        assert!(reg.get("example.com", "v1beta1", "widgets").is_some());
        assert!(reg.get("example.com", "v2alpha1", "widgets").is_none());
        let accepted = crd_accepted_names(&widget_crd());
        assert_eq!(
            accepted,
            json!({"plural": "widgets", "singular": "widget", "shortNames": ["wd"],
                   "kind": "Widget", "listKind": "WidgetList"})
        );
        let status = crd_status(&widget_crd(), "2026-01-01T00:00:00Z");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["conditions"][1]["type"], "Established");

        let obj = json!({"metadata": {"name": "w"}, "spec": {"replicas": 3},
                         "status": {"replicas": 2, "selector": "app=w"}});
        let scale = info.scale_of(&obj).unwrap();
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=w"}));
    }

    #[test]
    fn crd_validation_errors() {
        let mut bad = widget_crd();
        bad["metadata"]["name"] = json!("widgets.other.com");
        assert!(validate_crd(&bad).unwrap_err().contains("metadata.name"));
        let mut bad = widget_crd();
        bad["spec"]["versions"][0]["storage"] = json!(true);
        assert!(validate_crd(&bad).unwrap_err().contains("exactly one"));
        let mut bad = widget_crd();
        bad["spec"]["scope"] = json!("Global");
        assert!(validate_crd(&bad).unwrap_err().contains("spec.scope"));
        let mut bad = widget_crd();
        bad["spec"]["names"].as_object_mut().unwrap().remove("kind");
        assert!(validate_crd(&bad).unwrap_err().contains("spec.names.kind"));
        let mut reg = Registry::new();
        assert!(matches!(
            reg.add_crd(&bad),
            Err(RegistryError::InvalidCrd(_))
        ));
        // A second plural with the same kind in the group is a conflict.
        reg.add_crd(&widget_crd()).unwrap();
        let mut dup = widget_crd();
        dup["metadata"]["name"] = json!("gadgets.example.com");
        dup["spec"]["names"]["plural"] = json!("gadgets");
        assert!(matches!(reg.add_crd(&dup), Err(RegistryError::Conflict(_))));
    }

    #[test]
    fn builtin_scale_selector_and_helpers() {
        let reg = Registry::new();
        let deploy = reg.by_kind("apps", "Deployment").unwrap();
        let obj = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {
                "matchLabels": {"tier": "fe", "app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                     {"key": "canary", "operator": "DoesNotExist"}]}},
            "status": {"replicas": 1}
        });
        let scale = deploy.scale_of(&obj).unwrap();
        assert_eq!(
            scale["status"]["selector"],
            "app=web,!canary,env in (dev,prod),tier=fe"
        );
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["metadata"]["namespace"], "default");

        let mut vs = vec![
            "v1alpha1",
            "v2",
            "foo",
            "v1beta2",
            "v1",
            "v1beta1",
            "v11alpha2",
        ];
        vs.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            vs,
            [
                "v2",
                "v1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "foo"
            ]
        );

        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("A.b"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1035_label("1abc"));
    }

    #[test]
    fn storage_version_hashes_match_upstream() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(storage_version_hash("", "v1", "Pod"), "xPOwRZ+Yhw8=");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
