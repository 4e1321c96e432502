//! What `stormdrill run` prints for CI and for people: `--quiet` leaves only the
//! closing lines; without a terminal (or with `CI=true`) waits are plain log lines,
//! and `--log-format json` makes them JSON objects with their figures as fields.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(feature: &str, args: &[&str], reports: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .current_dir(manifest())
        .args(["run", "--run-id", "o", "--seed", "3", "--stack"])
        .arg(manifest().join("../fixtures/stack"))
        .arg("--report-dir")
        .arg(reports)
        .args(args)
        .arg(manifest().join("tests/fixtures").join(feature))
        .env_remove("RUST_LOG")
        .env("CI", "true")
        .output()
        .expect("stormdrill runs")
}

#[test]
fn quiet_prints_only_the_closing_lines() {
    let reports = tempfile::tempdir().unwrap();
    let out = run("failing", &["--quiet"], reports.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains("Feature:") && !stdout.contains("target: twin"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("report: ") && last.ends_with("verdict: no-go"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed criteria") || stdout.contains("scenario failed"),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn waits_are_json_progress_lines_in_ci() {
    let reports = tempfile::tempdir().unwrap();
    let out = run("output", &["--log-format", "json"], reports.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .filter(|e: &serde_json::Value| e["target"] == "stormdrill::progress")
        .collect();
    let what = |ev: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["fields"]["event"] == ev)
            .map(|e| e["fields"]["what"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let starts = what("start");
    assert!(
        starts.iter().any(|w| w.starts_with("the stack")),
        "{starts:?}"
    );
    assert!(
        starts.contains(&"Deployment openalex/fastapi to have 3 Ready replicas".to_owned()),
        "{starts:?}"
    );
    assert_eq!(starts.len(), what("end").len(), "every wait ends");
    let ready = events
        .iter()
        .find(|e| {
            e["fields"]["event"] == "end"
                && e["fields"]["what"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("Deployment"))
        })
        .unwrap();
    assert_eq!(ready["fields"]["outcome"], "reached");
    assert!(events[0]["fields"]["deadline_s"].as_f64().is_some());
}
