//! Named thresholds of an acceptance profile. A threshold is a number, or a mapping
//! `{value: N, why: "..."}` carrying its one-line justification; features name it by
//! its dotted key (`storage.claim_bind_s`). A threshold a step asks for and the
//! profile lacks is an error naming the key and the file: a silent default would let
//! a typo pass a gate.

use std::path::{Path, PathBuf};

use super::Profile;
use crate::target::TargetKind;

/// The profile `--target twin` uses when `--profile` is not given (relative to the
/// working directory; ignored when absent).
pub const TWIN_DEFAULT: &str = "fixtures/acceptance/twin.yaml";
/// The kind target's default profile (relative to the working directory).
pub const KIND_DEFAULT: &str = "fixtures/acceptance/kind.yaml";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error(
        "threshold `{key}` is not in the acceptance profile {}: add it (a number, or \
         {{value: N, why: \"...\"}})",
        path.display()
    )]
    Missing { key: String, path: PathBuf },
    #[error(
        "threshold `{key}` in the acceptance profile {} is not a number",
        path.display()
    )]
    NotANumber { key: String, path: PathBuf },
    #[error(
        "threshold `{key}` needs an acceptance profile: pass --profile \
         (fixtures/acceptance/{{twin,kind,production}}.yaml)"
    )]
    NoProfile { key: String },
}

/// A threshold as a step uses it: the value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub value: f64,
    pub key: String,
    pub why: Option<String>,
}

/// A number, or the `value` of a `{value, why}` mapping.
pub fn as_number(v: &serde_yaml::Value) -> Option<f64> {
    match v {
        serde_yaml::Value::Mapping(m) => m.get("value").and_then(serde_yaml::Value::as_f64),
        other => other.as_f64(),
    }
}

impl Profile {
    fn lookup(&self, key: &str) -> Option<&serde_yaml::Value> {
        let mut parts = key.split('.');
        let mut cur = self.values.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_mapping()?.get(p)?;
        }
        Some(cur)
    }

    /// The threshold at a dotted key; missing or not a number is an error naming
    /// the key and this profile's file.
    pub fn threshold(&self, key: &str) -> Result<Threshold, ThresholdError> {
        let v = self.lookup(key).ok_or_else(|| ThresholdError::Missing {
            key: key.to_owned(),
            path: self.path.clone(),
        })?;
        let value = as_number(v).ok_or_else(|| ThresholdError::NotANumber {
            key: key.to_owned(),
            path: self.path.clone(),
        })?;
        let why = v
            .as_mapping()
            .and_then(|m| m.get("why"))
            .and_then(serde_yaml::Value::as_str)
            .map(str::to_owned);
        Ok(Threshold {
            value,
            key: key.to_owned(),
            why,
        })
    }

    /// Every threshold of the profile: (dotted key, value, justification).
    pub fn thresholds(&self) -> Vec<(String, f64, Option<String>)> {
        fn walk(
            prefix: &str,
            m: &serde_yaml::Mapping,
            out: &mut Vec<(String, f64, Option<String>)>,
        ) {
            for (k, v) in m {
                let Some(k) = k.as_str() else { continue };
                let key = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    serde_yaml::Value::Mapping(inner) if inner.contains_key("value") => {
                        if let Some(n) = as_number(v) {
                            let why = inner
                                .get("why")
                                .and_then(serde_yaml::Value::as_str)
                                .map(str::to_owned);
                            out.push((key, n, why));
                        }
                    }
                    serde_yaml::Value::Mapping(inner) => walk(&key, inner, out),
                    other => {
                        if let Some(n) = other.as_f64() {
                            out.push((key, n, None));
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.values, &mut out);
        out
    }
}

/// The threshold at `key` of an optional profile.
pub fn required(profile: Option<&Profile>, key: &str) -> Result<Threshold, ThresholdError> {
    profile
        .ok_or_else(|| ThresholdError::NoProfile {
            key: key.to_owned(),
        })?
        .threshold(key)
}

/// The profile a run uses: `--profile`, else for the twin [`TWIN_DEFAULT`] and for kind
/// [`KIND_DEFAULT`] when it exists (relative to `cwd`), else none.
pub fn profile_path(explicit: Option<&Path>, target: TargetKind, cwd: &Path) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    let default = match target {
        TargetKind::Twin => TWIN_DEFAULT,
        TargetKind::Kind => KIND_DEFAULT,
        TargetKind::Cluster => return None,
    };
    cwd.join(default).is_file().then(|| PathBuf::from(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> Profile {
        Profile::parse(Path::new("p.yaml"), text).unwrap()
    }

    #[test]
    fn plain_numbers_and_justified_values() {
        let p =
            profile("storage:\n  claim_bind_s: {value: 60, why: \"ours\"}\n  other: 3\nname: x\n");
        let t = p.threshold("storage.claim_bind_s").unwrap();
        assert_eq!((t.value, t.why.as_deref()), (60.0, Some("ours")));
        assert_eq!(p.threshold("storage.other").unwrap().value, 3.0);
        // Callers of `number` see both shapes alike.
        assert_eq!(p.number("storage.claim_bind_s"), Some(60.0));
        assert_eq!(
            p.thresholds(),
            vec![
                (
                    "storage.claim_bind_s".to_owned(),
                    60.0,
                    Some("ours".to_owned())
                ),
                ("storage.other".to_owned(), 3.0, None)
            ]
        );
    }

    #[test]
    fn missing_or_wrong_thresholds_name_key_and_file() {
        let p = profile("storage:\n  claim_bind_s: soon\n");
        assert_eq!(
            p.threshold("storage.nope").unwrap_err().to_string(),
            "threshold `storage.nope` is not in the acceptance profile p.yaml: add it (a \
             number, or {value: N, why: \"...\"})"
        );
        assert!(matches!(
            p.threshold("storage.claim_bind_s"),
            Err(ThresholdError::NotANumber { .. })
        ));
        assert!(matches!(
            required(None, "x"),
            Err(ThresholdError::NoProfile { .. })
        ));
    }

    #[test]
    fn shipped_profiles_justify_every_threshold_and_agree_on_keys() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/acceptance");
        let mut keys = None;
        for name in ["twin.yaml", "kind.yaml", "production.yaml"] {
            let p = Profile::load(&dir.join(name)).unwrap();
            let ts = p.thresholds();
            assert!(ts.len() > 20, "{name}");
            for (key, _, why) in &ts {
                let why = why
                    .as_deref()
                    .unwrap_or_else(|| panic!("{name}: {key} has no why"));
                let source = why.split([':', ' ']).next().unwrap_or("");
                assert!(
                    ["seed", "k8s", "ceph", "velero", "envoy", "twin", "ours"].contains(&source),
                    "{name}: {key}: why must start with its source: {why}"
                );
                assert!(!why.contains('\n'), "{name}: {key}: one line");
            }
            let these: Vec<String> = ts.into_iter().map(|t| t.0).collect();
            match &keys {
                None => keys = Some(these),
                Some(k) => assert_eq!(k, &these, "{name} has other keys than twin.yaml"),
            }
        }
    }

    #[test]
    fn twin_defaults_to_its_profile_when_present() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(profile_path(None, TargetKind::Twin, dir.path()), None);
        std::fs::create_dir_all(dir.path().join("fixtures/acceptance")).unwrap();
        std::fs::write(dir.path().join(TWIN_DEFAULT), "a: 1\n").unwrap();
        assert_eq!(
            profile_path(None, TargetKind::Twin, dir.path()),
            Some(PathBuf::from(TWIN_DEFAULT))
        );
        assert_eq!(profile_path(None, TargetKind::Cluster, dir.path()), None);
        assert_eq!(
            profile_path(Some(Path::new("k.yaml")), TargetKind::Twin, dir.path()),
            Some(PathBuf::from("k.yaml"))
        );
    }
}
