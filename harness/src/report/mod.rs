//! A run's folder `<report-dir>/<run-id>/`: summary.json (our contract) beside the
//! JUnit and Cucumber JSON files that cucumber's own writers produce.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::verdict::{Criterion, ScenarioStatus, Verdict};

pub mod html;
pub mod junit;
pub mod markdown;
pub mod prom;

pub const SCHEMA: &str = "stormdrill.summary/v1";
pub const SUMMARY_FILE: &str = "summary.json";
pub const JUNIT_FILE: &str = "junit.xml";
pub const CUCUMBER_JSON_FILE: &str = "cucumber.json";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid run id `{0}`: use letters, digits, `-`, `_` and `.` only")]
    InvalidRunId(String),
    #[error("cannot create report folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialise the summary")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a stormdrill summary")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// summary.json. The fields below are the contract; add fields, never rename.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub run_id: String,
    pub target: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub verdict: Verdict,
    /// Why the verdict is not go, one line each.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Seed of every random choice, to replay the run.
    pub seed: u64,
    /// Set when the harness could not run (verdict error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The acceptance profile's name, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The harness that ran, e.g. `stormdrill 0.1.0 (3fa2c1d)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    pub scenarios: Vec<ScenarioRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRecord {
    /// Path of the feature file, relative (e.g. `features/cluster.feature`).
    pub feature: String,
    /// Line of the scenario in the feature file.
    pub line: usize,
    pub name: String,
    /// Feature, rule and scenario tags, with their `@`.
    pub tags: Vec<String>,
    pub status: ScenarioStatus,
    pub measurements: BTreeMap<String, f64>,
    pub criteria: Vec<Criterion>,
    /// The failing step's message, or the unknown step with the closest known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The scenario's load timeline in the run folder (`timeline-2.csv`), if it ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<String>,
    /// Its health timeline (`health-2.csv`), beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// `<report-dir>/<run-id>/` and the files in it.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Validates the run id (it becomes a folder name) without touching the disk.
    pub fn new(report_dir: &Path, run_id: &str) -> Result<Self, ReportError> {
        let ok = !run_id.is_empty()
            && run_id != "."
            && run_id != ".."
            && run_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(ReportError::InvalidRunId(run_id.to_owned()));
        }
        Ok(RunDir {
            path: report_dir.join(run_id),
        })
    }

    /// A recorded run's folder, as it is on disk (to render its reports again).
    pub fn existing(path: &Path) -> RunDir {
        RunDir {
            path: path.to_owned(),
        }
    }

    /// Reads the folder's summary.json back.
    pub fn read_summary(&self) -> Result<Summary, ReportError> {
        let path = self.summary();
        let text = fs::read_to_string(&path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse { path, source })
    }

    pub fn create(&self) -> Result<(), ReportError> {
        fs::create_dir_all(&self.path).map_err(|source| ReportError::CreateDir {
            path: self.path.clone(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn summary(&self) -> PathBuf {
        self.path.join(SUMMARY_FILE)
    }

    pub fn junit(&self) -> PathBuf {
        self.path.join(JUNIT_FILE)
    }

    pub fn cucumber_json(&self) -> PathBuf {
        self.path.join(CUCUMBER_JSON_FILE)
    }

    /// Writes summary.json through a temporary file, so readers never see half a file.
    pub fn write_summary(&self, summary: &Summary) -> Result<PathBuf, ReportError> {
        let final_path = self.summary();
        let tmp = self.path.join(".summary.json.tmp");
        let mut text = serde_json::to_string_pretty(summary).map_err(ReportError::Serialize)?;
        text.push('\n');
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &final_path))
            .map_err(|source| ReportError::Write {
                path: final_path.clone(),
                source,
            })?;
        Ok(final_path)
    }

    /// The closing terminal line, e.g.
    /// `report: reports/<id>/report.html (summary.md, summary.json, junit.xml,
    /// cucumber.json) verdict: go`; the page first, as the one to open.
    pub fn terminal_line(&self, verdict: Verdict) -> String {
        format!(
            "report: {}/{} ({}, {SUMMARY_FILE}, {JUNIT_FILE}, {CUCUMBER_JSON_FILE}) verdict: {verdict}",
            self.path.display(),
            html::HTML_FILE,
            markdown::MARKDOWN_FILE,
        )
    }
}

/// The git revision the harness was built from (build.rs), or `unknown`.
pub const GIT_REVISION: &str = env!("STORMDRILL_GIT_REV");

/// `stormdrill 0.1.0 (3fa2c1d)`, for reports.
pub fn harness_description() -> String {
    format!("stormdrill {} ({GIT_REVISION})", env!("CARGO_PKG_VERSION"))
}

/// A profile's name: its `profile:` key, else its file's stem.
pub fn profile_name(p: &crate::config::Profile) -> String {
    p.values
        .get("profile")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| p.path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Default run id: UTC time plus 4 hex digits, e.g. `20261125T232800Z-3fa2`, so ids
/// sort by time and two runs in the same second do not collide.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Comparison;

    #[test]
    fn run_id_shape() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T23:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = new_run_id(now);
        assert!(id.starts_with("20261125T232800Z-"), "{id}");
        assert_eq!(id.len(), "20261125T232800Z-".len() + 4);
        assert!(RunDir::new(Path::new("reports"), &id).is_ok());
    }

    #[test]
    fn run_ids_that_escape_the_report_dir_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(RunDir::new(Path::new("reports"), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn summary_contract() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path(), "r1").unwrap();
        run.create().unwrap();
        let t = Utc::now();
        let summary = Summary {
            schema: SCHEMA.into(),
            run_id: "r1".into(),
            target: "twin".into(),
            started: t,
            finished: t,
            verdict: Verdict::NoGo,
            reasons: vec![],
            seed: 7,
            error: None,
            profile: None,
            harness: None,
            scenarios: vec![ScenarioRecord {
                feature: "features/x.feature".into(),
                line: 3,
                name: "n".into(),
                tags: vec!["@smoke".into()],
                status: ScenarioStatus::Passed,
                measurements: [("api_latency_ms".to_owned(), 1.5)].into(),
                criteria: vec![Criterion::new("c", 1.0, Comparison::AtMost, 2.0, "s")],
                message: None,
                timeline: None,
                health: None,
            }],
        };
        let path = run.write_summary(&summary).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(v["schema"], "stormdrill.summary/v1");
        assert_eq!(v["verdict"], "no-go");
        assert_eq!(v["target"], "twin");
        assert!(DateTime::parse_from_rfc3339(v["started"].as_str().unwrap()).is_ok());
        let s = &v["scenarios"][0];
        assert_eq!(s["feature"], "features/x.feature");
        assert_eq!(s["status"], "passed");
        assert_eq!(s["tags"][0], "@smoke");
        assert_eq!(s["measurements"]["api_latency_ms"], 1.5);
        let c = &s["criteria"][0];
        for key in [
            "name",
            "figure",
            "threshold",
            "unit",
            "comparison",
            "pass",
            "gating",
        ] {
            assert!(c.get(key).is_some(), "criterion lacks {key}");
        }
        assert!(s.get("message").is_none());
    }

    #[test]
    fn terminal_line_names_files_and_verdict() {
        let run = RunDir::new(Path::new("reports"), "abc").unwrap();
        assert_eq!(
            run.terminal_line(Verdict::Go),
            "report: reports/abc/report.html (summary.md, summary.json, junit.xml, \
             cucumber.json) verdict: go"
        );
    }
}
