//! Acceptance profile (`--profile F`): named thresholds, so one feature serves the twin,
//! kind and production with different figures. Steps look keys up; this module only
//! loads and validates the file, with file:line errors.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read profile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid profile {path}:{line}:{column}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("invalid profile {path}: the top level must be a mapping of keys to values")]
    NotAMapping { path: PathBuf },
}

/// A loaded acceptance profile.
#[derive(Clone, Debug)]
pub struct Profile {
    pub path: PathBuf,
    pub values: serde_yaml::Mapping,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                source,
            }
        })?;
        match value {
            serde_yaml::Value::Mapping(values) => Ok(Profile {
                path: path.to_owned(),
                values,
            }),
            _ => Err(ConfigError::NotAMapping {
                path: path.to_owned(),
            }),
        }
    }

    /// A numeric value at a dotted key such as `api.p99_ms`.
    pub fn number(&self, key: &str) -> Option<f64> {
        let mut parts = key.split('.');
        let mut cur = self.values.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_mapping()?.get(p)?;
        }
        threshold::as_number(cur)
    }
}

pub mod threshold;
pub use threshold::{Threshold, ThresholdError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_numbers() {
        let p = Profile::parse(Path::new("p.yaml"), "api:\n  p99_ms: 500\nrto_s: 1.5\n").unwrap();
        assert_eq!(p.number("api.p99_ms"), Some(500.0));
        assert_eq!(p.number("rto_s"), Some(1.5));
        assert_eq!(p.number("api.missing"), None);
    }

    #[test]
    fn errors_carry_file_and_line() {
        let e = Profile::parse(Path::new("p.yaml"), "a: 1\nb: [\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("invalid profile p.yaml:"), "{msg}");
        assert!(matches!(e, ConfigError::Parse { line, .. } if line >= 2));
        assert!(matches!(
            Profile::parse(Path::new("p.yaml"), "- 1\n"),
            Err(ConfigError::NotAMapping { .. })
        ));
    }
}
