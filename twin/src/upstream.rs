//! The upstream CRDs the twin starts with, as the operators of the documented stack
//! install them (byte-for-byte copies under fixtures/upstream/crds/, see SOURCES.md).

pub const CRDS: &[(&str, &str)] = &[
    ("fixtures/upstream/crds/cert-manager/cert-manager.io_certificates.yaml", include_str!("../../fixtures/upstream/crds/cert-manager/cert-manager.io_certificates.yaml")),
    ("fixtures/upstream/crds/cert-manager/cert-manager.io_clusterissuers.yaml", include_str!("../../fixtures/upstream/crds/cert-manager/cert-manager.io_clusterissuers.yaml")),
    ("fixtures/upstream/crds/contour/httpproxies.projectcontour.io.yaml", include_str!("../../fixtures/upstream/crds/contour/httpproxies.projectcontour.io.yaml")),
    ("fixtures/upstream/crds/flux/kustomize.toolkit.fluxcd.io_kustomizations.yaml", include_str!("../../fixtures/upstream/crds/flux/kustomize.toolkit.fluxcd.io_kustomizations.yaml")),
    ("fixtures/upstream/crds/gatekeeper/constrainttemplate-customresourcedefinition.yaml", include_str!("../../fixtures/upstream/crds/gatekeeper/constrainttemplate-customresourcedefinition.yaml")),
    ("fixtures/upstream/crds/prometheus-operator/monitoring.coreos.com_prometheuses.yaml", include_str!("../../fixtures/upstream/crds/prometheus-operator/monitoring.coreos.com_prometheuses.yaml")),
    ("fixtures/upstream/crds/prometheus-operator/monitoring.coreos.com_servicemonitors.yaml", include_str!("../../fixtures/upstream/crds/prometheus-operator/monitoring.coreos.com_servicemonitors.yaml")),
    ("fixtures/upstream/crds/rook/cephblockpools.ceph.rook.io.yaml", include_str!("../../fixtures/upstream/crds/rook/cephblockpools.ceph.rook.io.yaml")),
    ("fixtures/upstream/crds/rook/cephclusters.ceph.rook.io.yaml", include_str!("../../fixtures/upstream/crds/rook/cephclusters.ceph.rook.io.yaml")),
    ("fixtures/upstream/crds/rook/cephobjectstores.ceph.rook.io.yaml", include_str!("../../fixtures/upstream/crds/rook/cephobjectstores.ceph.rook.io.yaml")),
    ("fixtures/upstream/crds/velero/velero.io_backups.yaml", include_str!("../../fixtures/upstream/crds/velero/velero.io_backups.yaml")),
    ("fixtures/upstream/crds/velero/velero.io_backupstoragelocations.yaml", include_str!("../../fixtures/upstream/crds/velero/velero.io_backupstoragelocations.yaml")),
    ("fixtures/upstream/crds/velero/velero.io_podvolumebackups.yaml", include_str!("../../fixtures/upstream/crds/velero/velero.io_podvolumebackups.yaml")),
    ("fixtures/upstream/crds/velero/velero.io_podvolumerestores.yaml", include_str!("../../fixtures/upstream/crds/velero/velero.io_podvolumerestores.yaml")),
    ("fixtures/upstream/crds/velero/velero.io_restores.yaml", include_str!("../../fixtures/upstream/crds/velero/velero.io_restores.yaml")),
    ("fixtures/upstream/crds/velero/velero.io_schedules.yaml", include_str!("../../fixtures/upstream/crds/velero/velero.io_schedules.yaml")),
];

/// The CRD objects of [`CRDS`], parsed once per process (the Rook CRDs alone are
/// 300 kB of YAML; tests start many twins).
pub fn crds() -> Result<&'static [serde_json::Value], (String, String)> {
    static PARSED: std::sync::OnceLock<Result<Vec<serde_json::Value>, (String, String)>> =
        std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            let mut out = Vec::new();
            for (file, text) in CRDS {
                for doc in serde_yaml::Deserializer::from_str(text) {
                    let v: serde_json::Value = serde::Deserialize::deserialize(doc)
                        .map_err(|e| (file.to_string(), e.to_string()))?;
                    if v["kind"] == "CustomResourceDefinition" {
                        out.push(v);
                    }
                }
            }
            Ok(out)
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}
