//! The part of kustomize the stack's overlays use, so `stormdrill up` applies an overlay
//! through the same code as a plain folder (and without a kustomize binary):
//!
//! - `resources`: manifest files and folders holding a `kustomization.yaml`, in order;
//! - `patches`: by `path` (one or more documents) or inline `patch`, each naming its
//!   object by apiVersion, kind, name and namespace; `$patch: delete` removes the object;
//!   otherwise a strategic merge: maps merge, `null` deletes a key, lists of built-in
//!   kinds merge by their Kubernetes merge key (containers and env by `name`, ports by
//!   `containerPort`, ...), other lists are replaced (kustomize's rule for custom
//!   resources, whose schemas it does not know);
//! - `images`: `name` with `newName`, `newTag` and/or `digest`.
//!
//! Anything else (patch `target` selectors, generators, name prefixes, components) is
//! refused with the file and key named: a silently ignored key would deploy something
//! other than what `kubectl kustomize` shows. A test compares the overlays' output with
//! `kubectl kustomize`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{parse, Manifest, StackError};

pub const FILE: &str = "kustomization.yaml";

/// Keys of a Kustomization this reader understands.
const KNOWN: &[&str] = &["apiVersion", "kind", "resources", "patches", "images"];

/// Why a kustomization could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    #[error("{}: `{key}` is not supported by stormdrill's kustomize reader (it reads resources, patches by path or inline, images); render the overlay with `kubectl kustomize` to see what it means", path.display())]
    Unsupported { path: PathBuf, key: String },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("{}: the patch for {object} matches no object of the kustomization", path.display())]
    NoMatch { path: PathBuf, object: String },
    #[error("{}: resource {} is a folder without {FILE}", path.display(), resource.display())]
    NotAKustomization { path: PathBuf, resource: PathBuf },
    #[error("{}: resource {} lies outside the kustomization's folder and is not a folder with its own {FILE} (kustomize refuses it too)", path.display(), resource.display())]
    OutsideRoot { path: PathBuf, resource: PathBuf },
}

/// Builds the kustomization in `dir` into manifests, in resource order.
pub fn build(dir: &Path) -> Result<Vec<Manifest>, StackError> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| StackError::Read {
        path: path.clone(),
        source,
    })?;
    let k: Value = serde_yaml::from_str(&text).map_err(|source| StackError::Yaml {
        path: path.clone(),
        line: source.location().map(|l| l.line()).unwrap_or(0),
        source: Box::new(source),
    })?;
    let invalid = |what: String| {
        StackError::Kustomize(KustomizeError::Invalid {
            path: path.clone(),
            what,
        })
    };
    let Some(map) = k.as_object() else {
        return Err(invalid("not a mapping".into()));
    };
    if let Some(key) = map.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(StackError::Kustomize(KustomizeError::Unsupported {
            path,
            key: key.clone(),
        }));
    }
    let mut out = Vec::new();
    for r in list(map, "resources") {
        let Some(r) = r.as_str() else {
            return Err(invalid("resources must be paths".into()));
        };
        let target = dir.join(r);
        if target.is_dir() {
            if !target.join(FILE).is_file() {
                return Err(StackError::Kustomize(KustomizeError::NotAKustomization {
                    path,
                    resource: target,
                }));
            }
            out.extend(build(&target)?);
        } else {
            if Path::new(r)
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(StackError::Kustomize(KustomizeError::OutsideRoot {
                    path,
                    resource: target,
                }));
            }
            let text = std::fs::read_to_string(&target).map_err(|source| StackError::Read {
                path: target.clone(),
                source,
            })?;
            out.extend(parse(&target, &text)?);
        }
    }
    for p in list(map, "patches") {
        let Some(entry) = p.as_object() else {
            return Err(invalid(
                "each patch is a mapping with `path` or `patch`".into(),
            ));
        };
        if let Some(key) = entry.keys().find(|k| *k != "path" && *k != "patch") {
            return Err(StackError::Kustomize(KustomizeError::Unsupported {
                path,
                key: format!("patches[].{key}"),
            }));
        }
        let (source, text) = match (entry.get("path"), entry.get("patch")) {
            (Some(Value::String(file)), None) => {
                let source = dir.join(file);
                let text = std::fs::read_to_string(&source).map_err(|e| StackError::Read {
                    path: source.clone(),
                    source: e,
                })?;
                (source, text)
            }
            (None, Some(Value::String(inline))) => (path.clone(), inline.clone()),
            _ => {
                return Err(invalid(
                    "each patch needs exactly one of `path` or `patch`".into(),
                ))
            }
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let patch: Value =
                serde::Deserialize::deserialize(doc).map_err(|e| StackError::Yaml {
                    path: source.clone(),
                    line: e.location().map(|l| l.line()).unwrap_or(0),
                    source: Box::new(e),
                })?;
            if patch.is_null() {
                continue;
            }
            apply_patch(&mut out, &patch).map_err(|object| {
                StackError::Kustomize(KustomizeError::NoMatch {
                    path: source.clone(),
                    object,
                })
            })?;
        }
    }
    for image in list(map, "images") {
        let name = image["name"].as_str().unwrap_or("");
        if name.is_empty() {
            return Err(invalid("each image needs a `name`".into()));
        }
        let new = Image {
            name: image["newName"].as_str().map(str::to_owned),
            tag: image["newTag"].as_str().map(str::to_owned),
            digest: image["digest"].as_str().map(str::to_owned),
        };
        for m in &mut out {
            set_image(&mut m.object, name, &new);
        }
    }
    Ok(out)
}

fn list<'a>(map: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    map.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// How a patch names its object: `Kind namespace/name`.
fn describe(v: &Value) -> String {
    let kind = v["kind"].as_str().unwrap_or("?");
    let name = v["metadata"]["name"].as_str().unwrap_or("?");
    match v["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Applies one strategic-merge patch (or `$patch: delete`) to the object it names.
/// Err: the object it names, when none matches.
pub fn apply_patch(manifests: &mut Vec<Manifest>, patch: &Value) -> Result<(), String> {
    let same = |m: &Manifest| {
        group(m.api_version()) == group(patch["apiVersion"].as_str().unwrap_or(""))
            && m.kind() == patch["kind"].as_str().unwrap_or("")
            && m.name() == patch["metadata"]["name"].as_str().unwrap_or("")
            && m.namespace() == patch["metadata"]["namespace"].as_str()
    };
    let Some(i) = manifests.iter().position(same) else {
        return Err(describe(patch));
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        manifests.remove(i);
        return Ok(());
    }
    let builtin = is_builtin(manifests[i].api_version());
    let mut body = patch.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    merge(&mut manifests[i].object, &body, builtin, "");
    Ok(())
}

/// API groups whose schemas kustomize knows (strategic merge keys apply).
fn is_builtin(api_version: &str) -> bool {
    let g = group(api_version);
    g.is_empty()
        || [
            "apps",
            "batch",
            "policy",
            "networking.k8s.io",
            "rbac.authorization.k8s.io",
            "storage.k8s.io",
            "autoscaling",
        ]
        .contains(&g)
}

/// The Kubernetes merge key of a list field, by its name (the ones pod specs use).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" => Some("containerPort"),
        "tolerations" => Some("key"),
        _ => None,
    }
}

fn merge(target: &mut Value, patch: &Value, builtin: bool, field: &str) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    merge(existing, v, builtin, k);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if builtin && merge_key(field).is_some() => {
            let key = merge_key(field).unwrap_or("name");
            // A Service's ports merge by `port`, a container's by `containerPort`.
            let key = if key == "containerPort" && p.iter().all(|e| e.get(key).is_none()) {
                "port"
            } else {
                key
            };
            // Strategic merge puts the patch's new elements first, in patch order.
            let mut added = Vec::new();
            for pe in p {
                match t
                    .iter_mut()
                    .find(|te| te.get(key).is_some() && te.get(key) == pe.get(key))
                {
                    Some(te) => merge(te, pe, builtin, ""),
                    None => added.push(pe.clone()),
                }
            }
            t.splice(0..0, added);
        }
        (t, p) => *t = p.clone(),
    }
}

/// A kustomize `images` entry's replacement parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub name: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Image {
    /// `registry/repo:tag` or `registry/repo@sha256:...` as one override.
    pub fn parse(reference: &str) -> Image {
        if let Some((name, digest)) = reference.split_once('@') {
            return Image {
                name: Some(name.to_owned()),
                digest: Some(digest.to_owned()),
                ..Image::default()
            };
        }
        let (name, tag) = split_tag(reference);
        Image {
            name: Some(name.to_owned()),
            tag: tag.map(str::to_owned),
            ..Image::default()
        }
    }
}

/// `host:5000/repo:tag` -> (`host:5000/repo`, Some(`tag`)): a colon after the last
/// slash is the tag's.
fn split_tag(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

/// Replaces the images named `name` in every container list of `object`.
pub fn set_image(object: &mut Value, name: &str, new: &Image) {
    match object {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "containers" | "initContainers") {
                    for c in v.as_array_mut().into_iter().flatten() {
                        let Some(image) = c.get("image").and_then(Value::as_str) else {
                            continue;
                        };
                        let (base, tag) = split_tag(image);
                        if base != name {
                            continue;
                        }
                        let base = new.name.as_deref().unwrap_or(base);
                        let replaced = match (&new.digest, &new.tag, tag) {
                            (Some(d), _, _) => format!("{base}@{d}"),
                            (None, Some(t), _) => format!("{base}:{t}"),
                            (None, None, Some(t)) => format!("{base}:{t}"),
                            (None, None, None) => base.to_owned(),
                        };
                        c["image"] = Value::String(replaced);
                    }
                } else {
                    set_image(v, name, new);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| set_image(v, name, new)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml: &str) -> Manifest {
        parse(Path::new("t.yaml"), yaml).unwrap().remove(0)
    }

    #[test]
    fn builtin_lists_merge_by_key_and_custom_lists_are_replaced() {
        let mut ms = vec![
            m("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: n}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: a, image: x:1, env: [{name: A, value: '1'}]}\n"),
            m("apiVersion: ceph.rook.io/v1\nkind: CephCluster\nmetadata: {name: c, namespace: n}\nspec: {storage: {nodes: [{name: a}, {name: b}]}, mon: {count: 3}}\n"),
        ];
        let p: Value = serde_yaml::from_str("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: n}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: a, env: [{name: B, value: '2'}]}\n").unwrap();
        apply_patch(&mut ms, &p).unwrap();
        let c = &ms[0].object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "x:1");
        assert_eq!(c["env"].as_array().unwrap().len(), 2);
        let p: Value = serde_yaml::from_str("apiVersion: ceph.rook.io/v1\nkind: CephCluster\nmetadata: {name: c, namespace: n}\nspec: {storage: {nodes: [{name: z}]}, mon: null}\n").unwrap();
        apply_patch(&mut ms, &p).unwrap();
        assert_eq!(
            ms[1].object["spec"]["storage"]["nodes"],
            serde_json::json!([{"name": "z"}])
        );
        assert!(ms[1].object["spec"].get("mon").is_none());
        let p: Value = serde_yaml::from_str("$patch: delete\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: n}\n").unwrap();
        apply_patch(&mut ms, &p).unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(apply_patch(&mut ms, &p).unwrap_err(), "Deployment n/d");
    }

    #[test]
    fn images_are_replaced_by_name() {
        let mut o: Value = serde_yaml::from_str("spec: {template: {spec: {containers: [{name: a, image: 'registry.local/x/api:1.0.0'}, {name: b, image: 'other:2'}]}}}").unwrap();
        set_image(
            &mut o,
            "registry.local/x/api",
            &Image::parse("localhost:5000/api:0.1"),
        );
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][0]["image"],
            "localhost:5000/api:0.1"
        );
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][1]["image"],
            "other:2"
        );
        assert_eq!(split_tag("host:5000/repo"), ("host:5000/repo", None));
        let only_tag = Image {
            tag: Some("9".into()),
            ..Image::default()
        };
        set_image(&mut o, "localhost:5000/api", &only_tag);
        assert_eq!(
            o["spec"]["template"]["spec"]["containers"][0]["image"],
            "localhost:5000/api:9"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "resources: []\nnamePrefix: x-\n").unwrap();
        let e = build(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("`namePrefix` is not supported"),
            "{e}"
        );
        std::fs::write(
            dir.path().join(FILE),
            "resources: []\npatches: [{path: p.yaml, target: {kind: X}}]\n",
        )
        .unwrap();
        let e = build(dir.path()).unwrap_err();
        assert!(e.to_string().contains("patches[].target"), "{e}");
    }
}
