//! Harbor's core API (`goharbor/harbor-core`, `:8080`, behind Service `harbor:80`),
//! simulated for the registry that holds the images the `openalex` namespace runs,
//! each scanned by Trivy.
//!
//! **Contents**: every image of the `openalex` namespace's pods and pod templates
//! (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs; containers and init
//! containers), read when asked. An image `registry.local/openalex/fastapi:1.0.0` is
//! project `openalex`, repository `openalex/fastapi`, tag `1.0.0`: the project is
//! the first path segment after the registry host (Docker Hub's `postgres:16.4` is
//! `library/postgres`, as Harbor's proxy cache names it). One artifact per tag (or
//! per digest for `image@sha256:...`), with a digest fixed by the image reference,
//! and a completed Trivy scan (`scan_overview` in Harbor's shape, mime type
//! `application/vnd.security.vulnerability.report; version=1.1`, scanner Trivy v0.56.1)
//! whose vulnerability counts are fixed by the image (never Critical). Project
//! `library` (id 1) always exists, as in Harbor; projects are public with
//! `auto_scan` on. Under the `unscanned-image` defect the `openalex` project has
//! `auto_scan` off and its artifacts (the fastapi image) have no `scan_overview`.
//!
//! **Endpoints** (under `/api/v2.0`): `/ping`, `/health`, `/systeminfo`, `/projects`
//! (`name`, `q=name=~x`/`name=x`, `page`, `page_size`), `/projects/{name|id}`,
//! `/repositories` and `/projects/{p}/repositories` (`q`, paging),
//! `/projects/{p}/repositories/{r}`, `/projects/{p}/repositories/{r}/artifacts`
//! (`with_scan_overview`, `with_tag`, `q=tags=x`/`digest=x`, paging),
//! `/projects/{p}/repositories/{r}/artifacts/{tag|digest}` and its `/tags`.
//! Repository names in paths may be URL-encoded twice (`a%252Fb`), as Harbor's
//! clients send them. Lists carry `X-Total-Count` and `Link` headers; page sizes
//! default to 10 and are capped at 100. Errors: `{"errors": [{"code": "NOT_FOUND",
//! "message": ...}]}`. No authentication (projects are public); vulnerability
//! details (`additions/vulnerabilities`) are not modelled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::sim::{HttpRequest, HttpResponse, Sim};

pub const HARBOR_CORE_IMAGE: &str = "goharbor/harbor-core";
pub const PORT: u16 = 8080;
/// The namespace whose images the registry holds.
pub const SOURCE_NAMESPACE: &str = "openalex";
pub const SCAN_MIME: &str = "application/vnd.security.vulnerability.report; version=1.1";

/// An image reference as Harbor files it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef {
    pub registry: String,
    pub project: String,
    /// Repository within the project (may contain `/`).
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// `project/repo`, Harbor's repository name.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.project, self.repo)
    }
}

/// Parses `[registry/]path[:tag][@digest]`.
pub fn parse_image(image: &str) -> Option<ImageRef> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let mut segs: Vec<&str> = rest.split('/').collect();
    let last = segs.pop()?;
    let (name, tag) = match last.split_once(':') {
        Some((n, t)) => (n, Some(t.to_string())),
        None => (last, None),
    };
    segs.push(name);
    let has_registry = segs.len() > 1
        && (segs[0].contains('.') || segs[0].contains(':') || segs[0] == "localhost");
    let registry = if has_registry {
        segs.remove(0).to_string()
    } else {
        "docker.io".to_string()
    };
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (project, repo) = if segs.len() == 1 {
        ("library".to_string(), segs[0].to_string())
    } else {
        (segs[0].to_string(), segs[1..].join("/"))
    };
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".into())
    } else {
        tag
    };
    Some(ImageRef {
        registry,
        project,
        repo,
        tag,
        digest,
    })
}

fn stable_hash(parts: &[&str]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A sha256-shaped digest fixed by the reference.
fn digest_of(r: &ImageRef) -> String {
    if let Some(d) = &r.digest {
        return d.clone();
    }
    let key = format!(
        "{}/{}:{}",
        r.registry,
        r.full_name(),
        r.tag.as_deref().unwrap_or("")
    );
    let hex: String = (0..4)
        .map(|i| format!("{:016x}", stable_hash(&[&key, &i.to_string()])))
        .collect();
    format!("sha256:{hex}")
}

/// The images the source namespace runs.
pub fn images(ctx: &Ctx) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |spec: Option<&Value>| {
        for k in ["initContainers", "containers"] {
            for c in spec.and_then(|s| s[k].as_array()).into_iter().flatten() {
                if let Some(i) = c["image"].as_str().filter(|i| !i.is_empty()) {
                    out.insert(i.to_string());
                }
            }
        }
    };
    for p in ctx.client.list("", "pods", Some(SOURCE_NAMESPACE), None) {
        add(p.get("spec"));
    }
    for (group, plural) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
    ] {
        for w in ctx.client.list(group, plural, Some(SOURCE_NAMESPACE), None) {
            add(w.pointer("/spec/template/spec"));
        }
    }
    out
}

struct Artifact {
    id: u64,
    digest: String,
    tags: Vec<String>,
}

struct Repository {
    id: u64,
    project_id: u64,
    name: String,
    artifacts: Vec<Artifact>,
}

struct Project {
    id: u64,
    name: String,
    auto_scan: bool,
}

struct Registry {
    projects: Vec<Project>,
    repos: Vec<Repository>,
    /// When the twin's registry "was set up": times derive from it.
    epoch: DateTime<Utc>,
}

fn registry(ctx: &Ctx) -> Registry {
    let refs: BTreeSet<ImageRef> = images(ctx).iter().filter_map(|i| parse_image(i)).collect();
    let mut names: BTreeSet<String> = refs.iter().map(|r| r.project.clone()).collect();
    names.remove("library");
    let unscanned = ctx.defects.has("unscanned-image");
    let mut projects = vec![Project {
        id: 1,
        name: "library".into(),
        auto_scan: true,
    }];
    for (i, n) in names.into_iter().enumerate() {
        projects.push(Project {
            id: i as u64 + 2,
            auto_scan: !(unscanned && n == SOURCE_NAMESPACE),
            name: n,
        });
    }
    let mut by_repo: BTreeMap<String, Vec<ImageRef>> = BTreeMap::new();
    for r in refs {
        by_repo.entry(r.full_name()).or_default().push(r);
    }
    let mut repos = Vec::new();
    let mut artifact_id = 0;
    for (i, (name, rs)) in by_repo.into_iter().enumerate() {
        let project_id = projects
            .iter()
            .find(|p| Some(p.name.as_str()) == rs.first().map(|r| r.project.as_str()))
            .map(|p| p.id)
            .unwrap_or(1);
        let mut arts: BTreeMap<String, Artifact> = BTreeMap::new();
        for r in rs {
            let digest = digest_of(&r);
            let a = arts.entry(digest.clone()).or_insert_with(|| Artifact {
                id: 0,
                digest,
                tags: Vec::new(),
            });
            if let Some(t) = &r.tag {
                if !a.tags.contains(t) {
                    a.tags.push(t.clone());
                }
            }
        }
        let artifacts = arts
            .into_values()
            .map(|mut a| {
                artifact_id += 1;
                a.id = artifact_id;
                a
            })
            .collect();
        repos.push(Repository {
            id: i as u64 + 1,
            project_id,
            name,
            artifacts,
        });
    }
    let wall = Utc::now() - Duration::from_std(ctx.started.elapsed()).unwrap_or_default();
    Registry {
        projects,
        repos,
        epoch: wall - Duration::days(90),
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn not_found(msg: impl Into<String>) -> HttpResponse {
    HttpResponse::json(
        404,
        &json!({"errors": [{"code": "NOT_FOUND", "message": msg.into()}]}),
    )
}

fn bad_request(msg: impl Into<String>) -> HttpResponse {
    HttpResponse::json(
        400,
        &json!({"errors": [{"code": "BAD_REQUEST", "message": msg.into()}]}),
    )
}

fn params(req: &HttpRequest) -> Vec<(String, String)> {
    req.path
        .split_once('?')
        .map(|(_, q)| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn param<'a>(ps: &'a [(String, String)], k: &str) -> Option<&'a str> {
    ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn truthy(ps: &[(String, String)], k: &str, default: bool) -> bool {
    param(ps, k).map(|v| v == "true").unwrap_or(default)
}

/// A page of `items` with Harbor's headers.
fn page(path: &str, ps: &[(String, String)], items: Vec<Value>) -> HttpResponse {
    let page = param(ps, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let size = param(ps, "page_size")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let total = items.len();
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    let mut r = HttpResponse::json(200, &Value::Array(body));
    r.headers.push(("x-total-count".into(), total.to_string()));
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!(
            "<{path}?page={}&page_size={size}>; rel=\"prev\"",
            page - 1
        ));
    }
    if page * size < total {
        links.push(format!(
            "<{path}?page={}&page_size={size}>; rel=\"next\"",
            page + 1
        ));
    }
    if !links.is_empty() {
        r.headers.push(("link".into(), links.join(" , ")));
    }
    r
}

/// Harbor's `q` query: `key=value` (exact) or `key=~value` (fuzzy), comma separated.
fn q_matches(ps: &[(String, String)], field: &dyn Fn(&str) -> Vec<String>) -> bool {
    let Some(q) = param(ps, "q") else { return true };
    q.split(',').filter(|c| !c.is_empty()).all(|cond| {
        if let Some((k, v)) = cond.split_once("=~") {
            field(k).iter().any(|x| x.contains(v))
        } else if let Some((k, v)) = cond.split_once('=') {
            field(k).iter().any(|x| x == v)
        } else {
            true
        }
    })
}

impl Registry {
    fn project(&self, key: &str) -> Option<&Project> {
        self.projects
            .iter()
            .find(|p| p.name == key || p.id.to_string() == key)
    }

    fn project_json(&self, p: &Project) -> Value {
        let created = ts(self.epoch + Duration::hours(p.id as i64));
        json!({
            "project_id": p.id, "owner_id": 1, "owner_name": "admin", "name": p.name, "creation_time": created, "update_time": created,
            "deleted": false, "togglable": true, "current_user_role_id": 0, "current_user_role_ids": null,
            "repo_count": self.repos.iter().filter(|r| r.project_id == p.id).count(),
            "metadata": {"public": "true", "auto_scan": p.auto_scan.to_string(), "prevent_vul": "false", "severity": "low", "reuse_sys_cve_allowlist": "true"},
            "cve_allowlist": {"id": 0, "project_id": p.id, "items": [], "creation_time": "0001-01-01T00:00:00.000Z", "update_time": "0001-01-01T00:00:00.000Z"},
        })
    }

    fn pushed(&self, a: &Artifact) -> DateTime<Utc> {
        self.epoch
            + Duration::days(60)
            + Duration::minutes((stable_hash(&[&a.digest, "push"]) % (20 * 24 * 60)) as i64)
    }

    fn repo_json(&self, r: &Repository) -> Value {
        let created = r
            .artifacts
            .iter()
            .map(|a| self.pushed(a))
            .min()
            .unwrap_or(self.epoch);
        let updated = r
            .artifacts
            .iter()
            .map(|a| self.pushed(a))
            .max()
            .unwrap_or(self.epoch);
        json!({
            "id": r.id, "project_id": r.project_id, "name": r.name, "description": "", "artifact_count": r.artifacts.len(),
            "pull_count": 3 + stable_hash(&[&r.name, "pulls"]) % 200, "creation_time": ts(created), "update_time": ts(updated),
        })
    }

    fn scan_overview(&self, a: &Artifact) -> Value {
        let h = stable_hash(&[&a.digest, "trivy"]);
        let high = u64::from(h.is_multiple_of(4));
        let medium = 1 + (h >> 8) % 5;
        let low = 2 + (h >> 16) % 10;
        let unknown = (h >> 24) % 2;
        let total = high + medium + low + unknown;
        let fixable = high + medium / 2 + low / 3;
        let severity = if high > 0 { "High" } else { "Medium" };
        let start = self.pushed(a) + Duration::seconds(20);
        let duration = 8 + (h >> 32) % 30;
        let report_id = {
            let x = format!(
                "{:016x}{:016x}",
                stable_hash(&[&a.digest, "report"]),
                stable_hash(&[&a.digest, "report2"])
            );
            format!(
                "{}-{}-4{}-a{}-{}",
                &x[0..8],
                &x[8..12],
                &x[13..16],
                &x[17..20],
                &x[20..32]
            )
        };
        json!({SCAN_MIME: {
            "report_id": report_id, "scan_status": "Success", "severity": severity, "duration": duration,
            "summary": {"total": total, "fixable": fixable, "summary": {"Critical": 0, "High": high, "Medium": medium, "Low": low, "Unknown": unknown}},
            "start_time": ts(start), "end_time": ts(start + Duration::seconds(duration as i64)),
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.56.1"},
            "complete_percent": 100,
        }})
    }

    fn artifact_json(
        &self,
        p: &Project,
        r: &Repository,
        a: &Artifact,
        ps: &[(String, String)],
    ) -> Value {
        let pushed = self.pushed(a);
        let pulled = pushed + Duration::hours(1);
        let repo_in_path = r
            .name
            .strip_prefix(&format!("{}/", p.name))
            .unwrap_or(&r.name)
            .replace('/', "%252F");
        let base = format!(
            "/api/v2.0/projects/{}/repositories/{repo_in_path}/artifacts/{}",
            p.name, a.digest
        );
        let size = 20_000_000 + stable_hash(&[&a.digest, "size"]) % 400_000_000;
        let mut v = json!({
            "id": a.id, "type": "IMAGE", "media_type": "application/vnd.docker.container.image.v1+json",
            "manifest_media_type": "application/vnd.docker.distribution.manifest.v2+json",
            "project_id": p.id, "repository_id": r.id, "repository_name": r.name, "digest": a.digest, "size": size,
            "icon": "sha256:0048162a053eef4d4ce3fe7518615bef084403614f8bca43b40ae2e762e11e06",
            "push_time": ts(pushed), "pull_time": ts(pulled),
            "extra_attrs": {"architecture": "amd64", "os": "linux", "author": "", "created": ts(pushed - Duration::hours(2)), "config": {}},
            "annotations": null, "references": null, "labels": null,
            "addition_links": {
                "build_history": {"absolute": false, "href": format!("{base}/additions/build_history")},
                "vulnerabilities": {"absolute": false, "href": format!("{base}/additions/vulnerabilities")},
            },
        });
        if truthy(ps, "with_tag", true) {
            v["tags"] = Value::Array(
                a.tags
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"id": a.id * 10 + i as u64, "repository_id": r.id, "artifact_id": a.id, "name": t, "push_time": ts(pushed), "pull_time": ts(pulled), "immutable": false}))
                    .collect(),
            );
        }
        if truthy(ps, "with_scan_overview", false) && p.auto_scan {
            v["scan_overview"] = self.scan_overview(a);
        }
        v
    }

    /// The repository `project`/`repo` (repo as it appears in the path).
    fn repository(
        &self,
        project: &str,
        repo: &str,
    ) -> Result<(&Project, &Repository), HttpResponse> {
        let p = self
            .project(project)
            .ok_or_else(|| not_found(format!("project {project} not found")))?;
        let full = format!("{}/{repo}", p.name);
        let r = self
            .repos
            .iter()
            .find(|r| r.name == full)
            .ok_or_else(|| not_found(format!("repository {full} not found")))?;
        Ok((p, r))
    }
}

/// A path segment decoded, twice when it was encoded twice (`a%252Fb` -> `a/b`).
fn decode(seg: &str) -> String {
    let once = percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .to_string();
    if once.contains('%') {
        percent_encoding::percent_decode_str(&once)
            .decode_utf8_lossy()
            .to_string()
    } else {
        once
    }
}

fn handle(ctx: &Ctx, req: &HttpRequest) -> HttpResponse {
    let path = req.path.split('?').next().unwrap_or("/");
    let ps = params(req);
    let Some(rest) = path.strip_prefix("/api/v2.0") else {
        return HttpResponse::text(404, "404 page not found\n");
    };
    if req.method != "GET" && req.method != "HEAD" {
        return HttpResponse::json(
            405,
            &json!({"errors": [{"code": "METHOD_NOT_ALLOWED", "message": "the stormdrill twin's Harbor is read-only"}]}),
        );
    }
    let segs: Vec<String> = rest
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["ping"] => HttpResponse::text(200, "Pong"),
        ["health"] => {
            let components: Vec<Value> = [
                "core",
                "database",
                "jobservice",
                "portal",
                "redis",
                "registry",
                "registryctl",
                "trivy",
            ]
            .iter()
            .map(|c| json!({"name": c, "status": "healthy"}))
            .collect();
            HttpResponse::json(200, &json!({"status": "healthy", "components": components}))
        }
        ["systeminfo"] => {
            let version = ctx
                .client
                .get("", "pods", Some(&req.namespace), &req.pod)
                .and_then(|p| {
                    p.pointer("/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .and_then(|i| i.rsplit(':').next().map(String::from))
                .unwrap_or_default();
            HttpResponse::json(
                200,
                &json!({"harbor_version": format!("{version}-f3b4a4c8"), "auth_mode": "db_auth", "self_registration": false, "primary_auth_mode": false, "banner_message": "", "with_notary": false}),
            )
        }
        _ => {
            let reg = registry(ctx);
            route(&reg, path, &segs, &ps)
        }
    }
}

fn route(reg: &Registry, path: &str, segs: &[&str], ps: &[(String, String)]) -> HttpResponse {
    match segs {
        ["projects"] => {
            let name = param(ps, "name");
            let items = reg
                .projects
                .iter()
                .filter(|p| name.is_none_or(|n| p.name == n))
                .filter(|p| {
                    q_matches(ps, &|k| {
                        if k == "name" {
                            vec![p.name.clone()]
                        } else {
                            Vec::new()
                        }
                    })
                })
                .map(|p| reg.project_json(p))
                .collect();
            page(path, ps, items)
        }
        ["projects", p] => match reg.project(p) {
            Some(p) => HttpResponse::json(200, &reg.project_json(p)),
            None => not_found(format!("project {p} not found")),
        },
        ["repositories"] => {
            let items = reg
                .repos
                .iter()
                .filter(|r| {
                    q_matches(ps, &|k| {
                        if k == "name" {
                            vec![r.name.clone()]
                        } else {
                            Vec::new()
                        }
                    })
                })
                .map(|r| reg.repo_json(r))
                .collect();
            page(path, ps, items)
        }
        ["projects", p, "repositories"] => match reg.project(p) {
            Some(p) => {
                let items = reg
                    .repos
                    .iter()
                    .filter(|r| r.project_id == p.id)
                    .filter(|r| {
                        q_matches(ps, &|k| {
                            if k == "name" {
                                vec![r.name.clone()]
                            } else {
                                Vec::new()
                            }
                        })
                    })
                    .map(|r| reg.repo_json(r))
                    .collect();
                page(path, ps, items)
            }
            None => not_found(format!("project {p} not found")),
        },
        ["projects", p, "repositories", rest @ ..] => repository_route(reg, path, p, rest, ps),
        _ => not_found(format!("{path} not found")),
    }
}

/// `/projects/{p}/repositories/...`: the repository name may itself contain `/`
/// when the client did not encode it; the segments up to `artifacts` are its name.
fn repository_route(
    reg: &Registry,
    path: &str,
    project: &str,
    rest: &[&str],
    ps: &[(String, String)],
) -> HttpResponse {
    let split = rest
        .iter()
        .position(|s| *s == "artifacts")
        .unwrap_or(rest.len());
    let repo = rest[..split].join("/");
    if repo.is_empty() {
        return bad_request("repository name is required");
    }
    let (p, r) = match reg.repository(project, &repo) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let find = |reference: &str| {
        r.artifacts
            .iter()
            .find(|a| a.digest == reference || a.tags.iter().any(|t| t == reference))
    };
    match &rest[split..] {
        [] => HttpResponse::json(200, &reg.repo_json(r)),
        ["artifacts"] => {
            let items = r
                .artifacts
                .iter()
                .filter(|a| {
                    q_matches(ps, &|k| match k {
                        "tags" => a.tags.clone(),
                        "digest" => vec![a.digest.clone()],
                        _ => Vec::new(),
                    })
                })
                .map(|a| reg.artifact_json(p, r, a, ps))
                .collect();
            page(path, ps, items)
        }
        ["artifacts", reference] => match find(reference) {
            Some(a) => HttpResponse::json(200, &reg.artifact_json(p, r, a, ps)),
            None => not_found(format!("artifact {}@{reference} not found", r.name)),
        },
        ["artifacts", reference, "tags"] => match find(reference) {
            Some(a) => {
                let v = reg.artifact_json(p, r, a, &[("with_tag".into(), "true".into())]);
                page(path, ps, v["tags"].as_array().cloned().unwrap_or_default())
            }
            None => not_found(format!("artifact {}@{reference} not found", r.name)),
        },
        _ => not_found(format!(
            "{path} not found (not modelled by the stormdrill twin)"
        )),
    }
}

/// Registers Harbor core's API.
pub fn install(ctx: &Ctx) {
    let sim: Weak<Sim> = Arc::downgrade(&ctx.sim);
    let base = Ctx {
        sim: Arc::new(Sim::default()),
        ..ctx.clone()
    };
    ctx.sim
        .register_http(HARBOR_CORE_IMAGE, PORT, move |req| match sim.upgrade() {
            Some(sim) => handle(
                &Ctx {
                    sim,
                    ..base.clone()
                },
                req,
            ),
            None => HttpResponse::text(503, "the twin is stopping"),
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let r = parse_image("registry.local/openalex/fastapi:1.0.0").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.project.as_str(),
                r.repo.as_str(),
                r.tag.as_deref()
            ),
            ("registry.local", "openalex", "fastapi", Some("1.0.0"))
        );
        let r = parse_image("postgres:16.4").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.full_name().as_str()),
            ("docker.io", "library/postgres")
        );
        let r = parse_image("quay.io/prometheuscommunity/postgres-exporter:v0.15.0").unwrap();
        assert_eq!(r.full_name(), "prometheuscommunity/postgres-exporter");
        let r = parse_image("registry:5000/a/b/c@sha256:abc").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.project.as_str(),
                r.repo.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            ("registry:5000", "a", "b/c", None, Some("sha256:abc"))
        );
        assert_eq!(parse_image("redis").unwrap().tag.as_deref(), Some("latest"));
        assert_eq!(decode("a%252Fb"), "a/b");
        let d = digest_of(&parse_image("x/y:1").unwrap());
        assert_eq!(d.len(), 7 + 64);
        assert_eq!(d, digest_of(&parse_image("x/y:1").unwrap()));
    }
}
