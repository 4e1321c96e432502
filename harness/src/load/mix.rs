//! The request mix: weighted (method, path template) entries, `{id}` in a path drawn
//! from an id list; built in for the OpenAlex API or read from YAML:
//!
//! ```yaml
//! ids: [W2741809807, W2100837269]     # default ids for `{id}`
//! requests:
//!   - {method: GET, path: "/works/{id}", weight: 70}
//!   - {method: GET, path: "/authors/{id}", weight: 20, ids: [A5023888391]}
//!   - {path: "/works?search=ceph", weight: 10}   # method defaults to GET
//! ```

use std::path::{Path, PathBuf};

use http::Method;
use rand::Rng;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("cannot read request mix {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid request mix {path}:{line}:{column}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("invalid request mix {path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixFile {
    #[serde(default)]
    ids: Vec<String>,
    requests: Vec<EntryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default = "one")]
    weight: u32,
    ids: Option<Vec<String>>,
}

fn get() -> String {
    "GET".to_owned()
}

fn one() -> u32 {
    1
}

/// One kind of request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixEntry {
    pub method: Method,
    /// Path and query, with `{id}` placeholders.
    pub path: String,
    pub weight: u32,
    pub ids: Vec<String>,
}

/// A validated mix, ready to draw requests from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<MixEntry>,
    /// Cumulative weights, for a draw by binary search.
    cumulative: Vec<u64>,
}

/// A drawn request: method and path-and-query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawn<'a> {
    pub method: &'a Method,
    pub path: String,
}

impl Mix {
    /// Checks every entry: a positive total weight, paths starting with `/`, an id list
    /// wherever a path has `{id}`.
    pub fn new(entries: Vec<MixEntry>) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("no requests".into());
        }
        let mut cumulative = Vec::with_capacity(entries.len());
        let mut total = 0u64;
        for (i, e) in entries.iter().enumerate() {
            let n = i + 1;
            if !e.path.starts_with('/') {
                return Err(format!("request {n}: path {:?} must start with /", e.path));
            }
            if e.path.contains("{id}") && e.ids.is_empty() {
                return Err(format!(
                    "request {n}: path {:?} has {{id}} but no ids are given",
                    e.path
                ));
            }
            if e.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("request {n}: path {:?} has whitespace", e.path));
            }
            total += u64::from(e.weight);
            cumulative.push(total);
        }
        if total == 0 {
            return Err("every weight is 0".into());
        }
        Ok(Mix {
            entries,
            cumulative,
        })
    }

    /// One `GET` of a fixed path (tests, benches).
    pub fn single(path: &str) -> Result<Self, String> {
        Mix::new(vec![MixEntry {
            method: Method::GET,
            path: path.to_owned(),
            weight: 1,
            ids: Vec::new(),
        }])
    }

    /// Reads of the OpenAlex API: single works and authors by id, a filtered list and a
    /// search. The ids are real OpenAlex ids; the twin's data plane serves any.
    pub fn builtin() -> Self {
        // Ids drawn from the sample data the stack's database is loaded with, so every
        // request names a record that exists (a 404 would count as an error).
        let ids = |text: &str| -> Vec<String> {
            serde_json::from_str::<Vec<serde_json::Value>>(text)
                .unwrap_or_default()
                .iter()
                .filter_map(|o| o["id"].as_str())
                .map(|id| id.rsplit('/').next().unwrap_or(id).to_owned())
                .collect()
        };
        let works = ids(include_str!("../../../fixtures/sample/works.json"));
        let authors = ids(include_str!("../../../fixtures/sample/authors.json"));
        let entry = |path: &str, weight: u32, ids: &[String]| MixEntry {
            method: Method::GET,
            path: path.to_owned(),
            weight,
            ids: ids.to_vec(),
        };
        Mix::new(vec![
            entry("/works/{id}", 60, &works),
            entry("/authors/{id}", 20, &authors),
            entry("/works?per_page=25", 10, &[]),
            entry("/health", 10, &[]),
        ])
        .expect("the built-in mix is valid")
    }

    pub fn load(path: &Path) -> Result<Self, MixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MixError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, MixError> {
        let file: MixFile = serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            MixError::Parse {
                path: path.to_owned(),
                line,
                column,
                source,
            }
        })?;
        let invalid = |why: String| MixError::Invalid {
            path: path.to_owned(),
            why,
        };
        let mut entries = Vec::new();
        for (i, e) in file.requests.into_iter().enumerate() {
            let method = Method::from_bytes(e.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid(format!("request {}: bad method {:?}", i + 1, e.method)))?;
            entries.push(MixEntry {
                method,
                path: e.path,
                weight: e.weight,
                ids: e.ids.unwrap_or_else(|| file.ids.clone()),
            });
        }
        Mix::new(entries).map_err(invalid)
    }

    pub fn entries(&self) -> &[MixEntry] {
        &self.entries
    }

    /// Draws a request, weighted, with its `{id}`s drawn from the entry's ids.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Drawn<'_> {
        let total = *self.cumulative.last().expect("a mix is never empty");
        let x = rng.random_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        let e = &self.entries[i];
        let path = if e.ids.is_empty() || !e.path.contains("{id}") {
            e.path.clone()
        } else {
            let mut out = String::with_capacity(e.path.len() + 16);
            let mut rest = e.path.as_str();
            while let Some(at) = rest.find("{id}") {
                out.push_str(&rest[..at]);
                out.push_str(&e.ids[rng.random_range(0..e.ids.len())]);
                rest = &rest[at + 4..];
            }
            out.push_str(rest);
            out
        };
        Drawn {
            method: &e.method,
            path,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::{rngs::StdRng, SeedableRng as _};

    use super::*;

    #[test]
    fn yaml_mixes_parse_with_defaults() {
        let mix = Mix::parse(
            Path::new("m.yaml"),
            "ids: [a, b]\nrequests:\n  - {path: \"/w/{id}\", weight: 3}\n  - {method: post, path: /x, ids: [c]}\n",
        )
        .unwrap();
        let e = mix.entries();
        assert_eq!(e[0].method, Method::GET);
        assert_eq!(e[0].ids, ["a", "b"]);
        assert_eq!((e[1].method.as_str(), e[1].weight), ("POST", 1));
        assert_eq!(e[1].ids, ["c"]);
    }

    #[test]
    fn bad_mixes_are_explained() {
        let p = Path::new("m.yaml");
        let err = |t: &str| Mix::parse(p, t).unwrap_err().to_string();
        assert_eq!(
            err("requests:\n  - {path: \"/w/{id}\"}\n"),
            "invalid request mix m.yaml: request 1: path \"/w/{id}\" has {id} but no ids are given"
        );
        assert_eq!(
            err("requests:\n  - {path: w}\n"),
            "invalid request mix m.yaml: request 1: path \"w\" must start with /"
        );
        assert_eq!(
            err("requests:\n  - {path: /w, weight: 0}\n"),
            "invalid request mix m.yaml: every weight is 0"
        );
        assert_eq!(
            err("requests: []\n"),
            "invalid request mix m.yaml: no requests"
        );
        assert!(err("requests:\n  - {path: /w, wieght: 1}\n")
            .starts_with("invalid request mix m.yaml:2:"));
    }

    #[test]
    fn draws_follow_weights_and_fill_ids() {
        let mix = Mix::builtin();
        let mut rng = StdRng::seed_from_u64(7);
        let mut by_prefix: HashMap<&str, u32> = HashMap::new();
        for _ in 0..10_000 {
            let d = mix.draw(&mut rng);
            assert!(!d.path.contains('{'), "{}", d.path);
            let k = if d.path.starts_with("/works/W") {
                "work"
            } else if d.path.starts_with("/authors/A") {
                "author"
            } else {
                "list"
            };
            *by_prefix.entry(k).or_default() += 1;
        }
        let share = |k| f64::from(by_prefix[k]) / 10_000.0;
        assert!((share("work") - 0.6).abs() < 0.03);
        assert!((share("author") - 0.2).abs() < 0.03);
        assert!((share("list") - 0.2).abs() < 0.03);
        // Seeded: the same sequence every time.
        let a: Vec<String> = (0..5)
            .map(|_| mix.draw(&mut StdRng::seed_from_u64(1)).path)
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
    }
}
