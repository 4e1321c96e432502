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

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}
