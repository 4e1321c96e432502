//! Deploying the documented stack on any target: `fixtures/stack/*.yaml` applied in
//! name order with server-side apply (idempotent), then each component's readiness
//! awaited with its own deadline. The same path serves the twin, kind and a real
//! cluster: only the operators acting on the objects differ.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;
use serde_json::Value;

pub mod kustomize;
pub mod ready;

pub const FIELD_MANAGER: &str = "stormdrill";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not valid YAML", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        #[source]
        source: Box<serde_yaml::Error>,
    },
    #[error("{}: document {index} has no apiVersion/kind/metadata.name: every object needs all three", path.display())]
    Incomplete { path: PathBuf, index: usize },
    #[error("no manifests (*.yaml) in {}", .0.display())]
    Empty(PathBuf),
    #[error("{}: {kind} {name}: the API server serves no {api_version} {kind} (is its operator/CRD installed?) after waiting {waited:?}", path.display())]
    UnknownKind {
        path: PathBuf,
        api_version: String,
        kind: String,
        name: String,
        waited: Duration,
    },
    #[error(transparent)]
    Kustomize(#[from] kustomize::KustomizeError),
    #[error("{}: {kind} {name} is missing and this identity may not create it (forbidden): deploy the stack with an account that may, or grant the harness's role (fixtures/rbac/stormdrill.yaml)", path.display())]
    Forbidden {
        path: PathBuf,
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("API discovery failed")]
    Discovery(#[source] Box<kube::Error>),
    #[error("{}: applying {kind} {name} failed", path.display())]
    Apply {
        path: PathBuf,
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// One object of a manifest file, with where it came from.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    pub index: usize,
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {}/{}", self.kind(), ns, self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
}

/// Reads every `*.yaml` of `dir` in name order, one [`Manifest`] per document; a
/// folder with a `kustomization.yaml` is built from it instead ([`kustomize`]).
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, StackError> {
    if dir.join(kustomize::FILE).is_file() {
        let out = kustomize::build(dir)?;
        if out.is_empty() {
            return Err(StackError::Empty(dir.to_owned()));
        }
        return Ok(out);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| StackError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| StackError::Read {
            path: path.clone(),
            source,
        })?;
        out.extend(parse(&path, &text)?);
    }
    if out.is_empty() {
        return Err(StackError::Empty(dir.to_owned()));
    }
    Ok(out)
}

/// Parses a multi-document YAML file; empty documents are skipped.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Manifest>, StackError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|source| StackError::Yaml {
                path: path.to_owned(),
                line: source.location().map(|l| l.line()).unwrap_or(0),
                source: Box::new(source),
            })?;
        if value.is_null() {
            continue;
        }
        let m = Manifest {
            path: path.to_owned(),
            index,
            object: value,
        };
        if m.api_version().is_empty() || m.kind().is_empty() || m.name().is_empty() {
            return Err(StackError::Incomplete {
                path: path.to_owned(),
                index,
            });
        }
        out.push(m);
    }
    Ok(out)
}

fn gvk_of(m: &Manifest) -> GroupVersionKind {
    let (group, version) = match m.api_version().rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", m.api_version()),
    };
    GroupVersionKind::gvk(group, version, m.kind())
}

/// What applying a set of manifests did.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub applied: Vec<String>,
    /// Objects this identity may not apply but found deployed (a read-only role on a
    /// cluster whose stack someone else deploys): checked as they are.
    pub forbidden_present: Vec<String>,
    pub elapsed: Duration,
}

/// How [`apply_with`] applies.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions {
    /// How long a kind the API server does not serve yet is waited for.
    pub kind_wait: Duration,
    /// `dryRun=All`: the API server validates and admits, nothing is stored.
    pub dry_run: bool,
}

/// Applies every manifest in order with server-side apply. A kind the API server does
/// not serve yet (a CRD an operator is about to register, e.g. Gatekeeper's constraint
/// kinds) is waited for up to `kind_wait`, rediscovering meanwhile.
pub async fn apply(
    client: &Client,
    manifests: &[Manifest],
    kind_wait: Duration,
    progress: impl FnMut(&Manifest),
) -> Result<ApplyReport, StackError> {
    let options = ApplyOptions {
        kind_wait,
        dry_run: false,
    };
    apply_with(client, manifests, options, progress).await
}

/// [`apply`] with options. An object this identity may not patch (403) but that
/// exists is left as it is and listed in [`ApplyReport::forbidden_present`]; one that
/// does not exist is an error naming it.
pub async fn apply_with(
    client: &Client,
    manifests: &[Manifest],
    options: ApplyOptions,
    mut progress: impl FnMut(&Manifest),
) -> Result<ApplyReport, StackError> {
    let started = Instant::now();
    let mut discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| StackError::Discovery(Box::new(e)))?;
    let mut report = ApplyReport::default();
    for m in manifests {
        let gvk = gvk_of(m);
        let (ar, caps) = resolve(client, &mut discovery, &gvk, m, options.kind_wait).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                Api::namespaced_with(client.clone(), m.namespace().unwrap_or("default"), &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        pp.dry_run = options.dry_run;
        match api.patch(m.name(), &pp, &Patch::Apply(&m.object)).await {
            Ok(_) => report.applied.push(m.describe()),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let source = Box::new(kube::Error::Api(s));
                match api.get_opt(m.name()).await {
                    Ok(Some(_)) => report.forbidden_present.push(m.describe()),
                    _ => {
                        return Err(StackError::Forbidden {
                            path: m.path.clone(),
                            kind: m.kind().to_owned(),
                            name: m.name().to_owned(),
                            source,
                        })
                    }
                }
            }
            Err(source) => {
                return Err(StackError::Apply {
                    path: m.path.clone(),
                    kind: m.kind().to_owned(),
                    name: m.name().to_owned(),
                    source: Box::new(source),
                })
            }
        }
        progress(m);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn resolve(
    client: &Client,
    discovery: &mut Discovery,
    gvk: &GroupVersionKind,
    m: &Manifest,
    wait: Duration,
) -> Result<(ApiResource, ApiCapabilities), StackError> {
    let started = Instant::now();
    loop {
        if let Some(found) = discovery.resolve_gvk(gvk) {
            return Ok(found);
        }
        if started.elapsed() >= wait {
            return Err(StackError::UnknownKind {
                path: m.path.clone(),
                api_version: m.api_version().to_owned(),
                kind: m.kind().to_owned(),
                name: m.name().to_owned(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        *discovery = Discovery::new(client.clone())
            .run()
            .await
            .map_err(|e| StackError::Discovery(Box::new(e)))?;
    }
}

/// What deploying the stack did and how long each part took.
#[derive(Clone, Debug, Default)]
pub struct DeployReport {
    pub applied: usize,
    pub apply_time: Duration,
    pub ready_time: Duration,
    pub not_ready: Vec<ready::NotReady>,
}

/// Applies `dir`'s manifests in order and waits for every component's readiness, all
/// within `deadline`. Objects still not ready at the deadline are listed, not an error:
/// the caller decides (a feature fails; `up` reports).
pub async fn deploy(
    client: &Client,
    dir: &Path,
    deadline: Duration,
    mut progress: impl FnMut(&str),
) -> Result<DeployReport, StackError> {
    let manifests = load_dir(dir)?;
    let started = Instant::now();
    let applied = apply(client, &manifests, deadline, |m| {
        progress(&format!("applied {}", m.describe()))
    })
    .await?;
    progress(&format!(
        "applied {} objects in {:.1?}; waiting for readiness",
        applied.applied.len(),
        applied.elapsed
    ));
    let waited = Instant::now();
    let not_ready = ready::wait_ready(
        client,
        &manifests,
        deadline.saturating_sub(started.elapsed()),
    )
    .await?;
    Ok(DeployReport {
        applied: applied.applied.len(),
        apply_time: applied.elapsed,
        ready_time: waited.elapsed(),
        not_ready,
    })
}

/// [`deploy`], shared by scenarios running at once: a caller that waited while another
/// deployed the same folder takes that deployment's report (when it succeeded) instead
/// of applying the stack again. Concurrent scenarios would otherwise apply every
/// object N times over and wait N times as long.
pub async fn deploy_shared(
    client: &Client,
    dir: &Path,
    deadline: Duration,
    progress: impl FnMut(&str),
) -> Result<DeployReport, StackError> {
    single_flight(dir, None, deploy(client, dir, deadline, progress)).await
}

/// Like [`deploy_shared`], but once the workloads are ready (within `deadline`) waits
/// at most `settle` for the rest (health and conditions reported by operators): for
/// checks that judge the stack's health themselves, a component that never gets
/// healthy must not hold every scenario for the whole deployment deadline.
///
/// `run` names the run (its report folder): the stack is applied once per run, and
/// later callers of the same run only wait for readiness as above (None: every
/// caller applies).
pub async fn apply_shared(
    client: &Client,
    dir: &Path,
    run: Option<&Path>,
    deadline: Duration,
    settle: Duration,
    mut progress: impl FnMut(&str),
) -> Result<DeployReport, StackError> {
    static APPLIED: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let key = run.map(|r| (r.to_owned(), dir.to_owned()));
    let applied_before = key.as_ref().is_some_and(|k| {
        APPLIED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(k)
    });
    let work = async {
        let manifests = load_dir(dir)?;
        let applied = if applied_before {
            ApplyReport::default()
        } else {
            let r = apply(client, &manifests, deadline, |m| {
                progress(&format!("applied {}", m.describe()))
            })
            .await?;
            if let Some(k) = &key {
                let mut done = APPLIED.lock().unwrap_or_else(|e| e.into_inner());
                // Runs are few per process; keep the last ones only.
                if done.len() >= 16 {
                    done.remove(0);
                }
                done.push(k.clone());
            }
            r
        };
        let waited = Instant::now();
        let (workloads, rest): (Vec<Manifest>, Vec<Manifest>) =
            manifests.into_iter().partition(|m| {
                matches!(
                    m.kind(),
                    "Deployment"
                        | "StatefulSet"
                        | "DaemonSet"
                        | "ReplicaSet"
                        | "PersistentVolumeClaim"
                )
            });
        let mut not_ready =
            ready::wait_ready(client, &workloads, deadline.saturating_sub(applied.elapsed)).await?;
        not_ready.extend(ready::wait_ready(client, &rest, settle).await?);
        Ok(DeployReport {
            applied: applied.applied.len(),
            apply_time: applied.elapsed,
            ready_time: waited.elapsed(),
            not_ready,
        })
    };
    single_flight(dir, Some(settle), work).await
}

/// Runs `deploy` unless a deployment of the same folder (and settle bound) finished
/// while this caller waited its turn; then returns that one's report.
async fn single_flight(
    dir: &Path,
    settle: Option<Duration>,
    deploy: impl std::future::Future<Output = Result<DeployReport, StackError>>,
) -> Result<DeployReport, StackError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    type Last = Option<(u64, PathBuf, Option<Duration>, DeployReport)>;
    static DONE: AtomicU64 = AtomicU64::new(0);
    static LAST: tokio::sync::Mutex<Last> = tokio::sync::Mutex::const_new(None);
    let seen = DONE.load(Ordering::SeqCst);
    let mut last = LAST.lock().await;
    if let Some((generation, d, s, report)) = last.as_ref() {
        // Only a deployment that finished after this caller asked counts.
        if *generation > seen && d == dir && *s == settle {
            return Ok(report.clone());
        }
    }
    let result = deploy.await;
    let generation = DONE.fetch_add(1, Ordering::SeqCst) + 1;
    *last = result
        .as_ref()
        .ok()
        .map(|r| (generation, dir.to_owned(), settle, r.clone()));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_files_and_names_bad_ones() {
        let ok = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: a}\n";
        let ms = parse(Path::new("x.yaml"), ok).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].describe(), "ConfigMap a/b");
        let err = parse(Path::new("bad.yaml"), "apiVersion: v1\nkind: [\n").unwrap_err();
        assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
        let err = parse(Path::new("c.yaml"), "kind: Pod\nmetadata: {name: p}\n").unwrap_err();
        assert!(err.to_string().contains("c.yaml: document 0"), "{err}");
    }

    #[test]
    fn the_shipped_stack_parses_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stack");
        let ms = load_dir(&dir).unwrap();
        assert_eq!(ms[0].kind(), "Namespace");
        let pos = |kind: &str| ms.iter().position(|m| m.kind() == kind).unwrap();
        assert!(pos("CephCluster") < pos("StatefulSet"));
        assert!(pos("ConstraintTemplate") < pos("K8sDisallowedTags"));
        assert!(ms
            .iter()
            .any(|m| m.kind() == "Deployment" && m.name() == "fastapi"));
    }
}
