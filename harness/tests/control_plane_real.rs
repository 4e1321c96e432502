//! The harness on the real control plane (`--control-plane real`): a run whose verdict
//! is not go keeps etcd's, kube-apiserver's, the controller manager's and the
//! scheduler's logs in its report folder; a go run does not. Needs the binaries
//! `scripts/k8s-setup.sh` builds: skipped without them, except under CI
//! (`CI=true`) or `STORMDRILL_REQUIRE_K8S=1`, where their absence fails.

mod common;

use std::path::PathBuf;

use stormdrill::cli::RunArgs;
use stormdrill::target::{ControlPlaneMode, TargetKind};
use stormdrill::verdict::Verdict;
use stormdrill::CONTROL_PLANE_LOGS;

fn built() -> bool {
    stormdrill_twin::controlplane::real::binaries_for_test().is_some()
}

/// A feature of two scenarios, one of which fails on the real API server's answer (the
/// other judges a criterion: a run that judged none is not go).
const FEATURE: &str = r#"Feature: a run that fails on the real control plane
  Scenario: the core namespaces exist
    Given the cluster is reachable
    Then the namespace "kube-system" exists
    And every node is Ready

  Scenario: a namespace nobody created
    Given the cluster is reachable
    Then the namespace "stormdrill-never-created" exists
"#;

#[test]
fn a_failed_run_keeps_the_control_planes_logs() {
    if !built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let feature = dir.path().join("fails.feature");
    std::fs::write(&feature, FEATURE).unwrap();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args = RunArgs {
        features: vec![feature.clone()],
        stack: manifest.join("../fixtures/stack"),
        target: TargetKind::Twin,
        control_plane: ControlPlaneMode::Real,
        report_dir: dir.path().join("reports"),
        seed: Some(1),
        quiet: true,
        ..RunArgs::default()
    };
    let outcome = common::run_harness(args.clone());
    assert_ne!(outcome.verdict, Verdict::Go, "{:?}", outcome.summary);
    let logs = outcome.run_dir.path().join(CONTROL_PLANE_LOGS);
    for component in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let log = logs.join(format!("{component}.log"));
        let text = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("{} is kept: {e}", log.display()));
        assert!(!text.is_empty(), "{} is empty", log.display());
    }
    assert!(
        outcome
            .summary
            .reasons
            .iter()
            .any(|r| r.contains(CONTROL_PLANE_LOGS)),
        "the summary says where the logs are: {:?}",
        outcome.summary.reasons
    );

    // The same run without the failing scenario is go, and keeps no logs.
    let passing = FEATURE
        .split("\n  Scenario: a namespace nobody created")
        .next()
        .unwrap();
    std::fs::write(&feature, passing).unwrap();
    let outcome = common::run_harness(args);
    assert_eq!(outcome.verdict, Verdict::Go, "{:?}", outcome.summary);
    assert!(!outcome.run_dir.path().join(CONTROL_PLANE_LOGS).exists());
}
