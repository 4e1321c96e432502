//! Harbor through the service proxy: for each image a namespace runs, its artifact
//! and Trivy scan overview (`/api/v2.0/projects/P/repositories/R/artifacts/REF
//! ?with_scan_overview=true`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::{api::ListParams, Api, Client};
use serde_json::Value;

use super::svc::{self, ProxyError, ServiceRef};

pub fn harbor() -> ServiceRef {
    ServiceRef::new("harbor", "harbor", 80)
}

#[derive(Debug, thiserror::Error)]
pub enum HarborError {
    #[error("listing pods in namespace {namespace:?} failed")]
    List {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("cannot read the image reference {0:?}")]
    Image(String),
}

/// An image reference as Harbor files it: `registry.local/openalex/fastapi:1.0.0`
/// is project `openalex`, repository `fastapi`, reference `1.0.0`; Docker Hub's
/// `postgres:16.4` is `library/postgres` (Harbor's proxy cache naming).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub project: String,
    pub repository: String,
    /// Tag or digest; `latest` when the image names neither.
    pub reference: String,
}

impl ImageRef {
    pub fn parse(image: &str) -> Option<ImageRef> {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (image, None),
        };
        let mut segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let last = segs.pop()?;
        let (name, tag) = match last.rsplit_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (last, None),
        };
        segs.push(name);
        let host_like = |s: &str| s.contains('.') || s.contains(':') || s == "localhost";
        if segs.len() > 1 && host_like(segs[0]) {
            segs.remove(0);
        }
        let (project, repository) = match segs.as_slice() {
            [one] => ("library".to_owned(), (*one).to_owned()),
            [p, rest @ ..] => ((*p).to_owned(), rest.join("/")),
            [] => return None,
        };
        Some(ImageRef {
            project,
            repository,
            reference: digest.or(tag).unwrap_or("latest").to_owned(),
        })
    }

    /// The artifact's API path; repository names are URL-encoded twice, as Harbor
    /// requires for names with `/`.
    pub fn artifact_path(&self) -> String {
        format!(
            "/api/v2.0/projects/{}/repositories/{}/artifacts/{}?with_scan_overview=true",
            svc::encode(&self.project),
            svc::encode(&svc::encode(&self.repository)),
            svc::encode(&self.reference)
        )
    }
}

/// What Harbor knows of one image's scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A completed vulnerability report, with its overall severity.
    Done { severity: String },
    /// The artifact exists without a completed report (never scanned, running, failed).
    Missing { why: String },
    /// Harbor has no such artifact.
    NotInRegistry,
}

/// The scan state of an artifact (`scan_overview` keyed by report MIME type).
pub fn scan_of(artifact: &Value) -> Scan {
    let reports: Vec<&Value> = artifact["scan_overview"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(mime, _)| mime.contains("vulnerability.report"))
        .map(|(_, r)| r)
        .collect();
    if reports.is_empty() {
        return Scan::Missing {
            why: "no scan report".into(),
        };
    }
    for r in &reports {
        if r["scan_status"] == "Success" && r["complete_percent"].as_u64().is_none_or(|p| p == 100)
        {
            return Scan::Done {
                severity: r["severity"].as_str().unwrap_or("Unknown").to_owned(),
            };
        }
    }
    Scan::Missing {
        why: format!(
            "scan {}",
            reports[0]["scan_status"]
                .as_str()
                .unwrap_or("status unknown")
        ),
    }
}

/// Every image (containers and init containers) the pods of `namespace` run, sorted.
pub fn images_of(pods: &[Pod]) -> Vec<String> {
    let mut set = BTreeSet::new();
    for p in pods {
        let Some(spec) = &p.spec else { continue };
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            if let Some(i) = &c.image {
                set.insert(i.clone());
            }
        }
    }
    set.into_iter().collect()
}

/// (image, scan) for every image the namespace runs.
pub async fn namespace_scans(
    client: &Client,
    harbor: &ServiceRef,
    namespace: &str,
) -> Result<Vec<(String, Scan)>, HarborError> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| HarborError::List {
            namespace: namespace.to_owned(),
            source,
        })?;
    let mut out = Vec::new();
    for image in images_of(&pods.items) {
        let r = ImageRef::parse(&image).ok_or_else(|| HarborError::Image(image.clone()))?;
        let scan = match svc::get_json(client, harbor, &r.artifact_path()).await {
            Ok(a) => scan_of(&a),
            Err(e) if e.status() == Some(404) => Scan::NotInRegistry,
            Err(e) => return Err(e.into()),
        };
        out.push((image, scan));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let r = ImageRef::parse("registry.local/openalex/fastapi:1.0.0").unwrap();
        assert_eq!(
            (
                r.project.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("openalex", "fastapi", "1.0.0")
        );
        let r = ImageRef::parse("postgres:16.4").unwrap();
        assert_eq!(
            (r.project.as_str(), r.repository.as_str()),
            ("library", "postgres")
        );
        let r = ImageRef::parse("quay.io/prometheuscommunity/postgres-exporter:v0.15.0").unwrap();
        assert_eq!(r.project, "prometheuscommunity");
        let r = ImageRef::parse("localhost:5000/team/a/b@sha256:abc").unwrap();
        assert_eq!(
            (
                r.project.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("team", "a/b", "sha256:abc")
        );
        assert_eq!(
            r.artifact_path(),
            "/api/v2.0/projects/team/repositories/a%252Fb/artifacts/sha256%3Aabc?with_scan_overview=true"
        );
        assert_eq!(ImageRef::parse("nginx").unwrap().reference, "latest");
        assert!(ImageRef::parse("a//b").is_none());
    }

    #[test]
    fn scan_overviews() {
        let done: Value = serde_json::from_str(
            r#"{"scan_overview": {"application/vnd.security.vulnerability.report; version=1.1":
                {"complete_percent": 100, "scan_status": "Success", "severity": "Medium"}}}"#,
        )
        .unwrap();
        assert_eq!(
            scan_of(&done),
            Scan::Done {
                severity: "Medium".into()
            }
        );
        assert_eq!(
            scan_of(&serde_json::json!({"digest": "sha256:1"})),
            Scan::Missing {
                why: "no scan report".into()
            }
        );
        let running: Value = serde_json::from_str(
            r#"{"scan_overview": {"application/vnd.security.vulnerability.report; version=1.1":
                {"complete_percent": 40, "scan_status": "Running"}}}"#,
        )
        .unwrap();
        assert_eq!(
            scan_of(&running),
            Scan::Missing {
                why: "scan Running".into()
            }
        );
    }

    #[test]
    fn images_of_pods() {
        let pods: Vec<Pod> = serde_yaml::from_str(
            "- spec: {containers: [{name: a, image: 'x:1'}, {name: b, image: 'y:2'}], initContainers: [{name: i, image: 'x:1'}]}\n\
             - spec: {containers: [{name: a, image: 'z:3'}]}\n",
        )
        .unwrap();
        assert_eq!(images_of(&pods), ["x:1", "y:2", "z:3"]);
    }
}
