//! The `stormdrill` binary as CI uses it: exit codes, the one-line error, report files.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures").join(name)
}

fn stormdrill(args: &[&str], extra: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .current_dir(manifest())
        .args(args)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("stormdrill runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `run` with a fresh report dir and a fixed run id; returns (output, run folder).
fn run(features: &Path, args: &[&str], reports: &Path) -> (Output, PathBuf) {
    let out = stormdrill(
        &[&["run", "--run-id", "t", "--seed", "3"], args].concat(),
        &[features, Path::new("--report-dir"), reports],
    );
    (out, reports.join("t"))
}

fn summary(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

#[test]
fn failing_feature_is_no_go_with_a_junit_failure() {
    let reports = tempfile::tempdir().unwrap();
    let (out, dir) = run(&fixture("failing"), &[], reports.path());
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    assert!(dir.join("cucumber.json").is_file());
    let s = summary(&dir);
    assert_eq!(s["verdict"], "no-go");
    assert_eq!(s["scenarios"][0]["status"], "failed");
    assert_eq!(
        s["scenarios"][0]["feature"],
        "tests/fixtures/failing/failing.feature"
    );
    assert!(s["scenarios"][0]["measurements"]["api_latency_ms"].is_number());
    let message = s["scenarios"][0]["message"].as_str().unwrap();
    assert!(message.contains("stormdrill-does-not-exist"), "{message}");
    assert!(
        stdout.contains("verdict: no-go") && stdout.contains("report: "),
        "{stdout}"
    );
}

#[test]
fn unknown_step_is_found_before_running_and_names_the_closest_known_step() {
    let reports = tempfile::tempdir().unwrap();
    let (out, dir) = run(&fixture("unknown-step"), &[], reports.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown.feature:5: unknown step `Then every nodes are Ready`; closest known step: `Then every node is Ready`"),
        "{stderr}"
    );
    // Found by the pre-flight: no target, no report.
    assert!(!dir.exists());
}

#[test]
fn unparsable_feature_is_an_error() {
    let reports = tempfile::tempdir().unwrap();
    let (out, dir) = run(&fixture("unparsable"), &[], reports.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broken.feature:5: not valid Gherkin"),
        "{stderr}"
    );
    assert!(!dir.exists());
}

#[test]
fn tags_select_scenarios() {
    let reports = tempfile::tempdir().unwrap();
    let features = manifest().join("../features");
    let (out, dir) = run(
        &features,
        &["--tags", "@smoke and not @smoke"],
        reports.path(),
    );
    // Nothing selected is not a pass.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(summary(&dir)["scenarios"].as_array().unwrap().len(), 0);
}

#[test]
fn unreachable_cluster_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: t}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
",
    )
    .unwrap();
    let out = stormdrill(
        &["run", "--target", "cluster", "--kubeconfig"],
        &[
            &kubeconfig,
            // A cluster has no default profile; the features' limits need one.
            Path::new("--profile"),
            &manifest().join("../fixtures/acceptance/production.yaml"),
            &manifest().join("../features"),
            Path::new("--report-dir"),
            dir.path(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cluster https://127.0.0.1:1 is unreachable: "),
        "{stderr}"
    );
}

#[test]
fn missing_feature_path_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-features");
    let out = stormdrill(&["run"], &[&missing, Path::new("--report-dir"), dir.path()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Bad input leaves no report folder behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn cluster_options_on_the_twin_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let features = manifest().join("../features");
    let out = stormdrill(
        &["run", "--context", "prod", "--report-dir"],
        &[dir.path(), &features],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--target cluster"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_tag_expression_exits_2() {
    let out = stormdrill(&["run", "--tags", "@a and"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn steps_lists_every_step_with_an_example() {
    let out = stormdrill(&["steps"], &[]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for example in [
        "e.g. Given the cluster is reachable",
        "e.g. Then every node is Ready",
        "e.g. Then the service \"kube-dns\" exists in namespace \"kube-system\"",
    ] {
        assert!(stdout.contains(example), "{stdout}");
    }
}
