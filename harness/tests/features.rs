//! Every feature under `../features` against the twin on the real control plane (real
//! etcd, kube-apiserver, controller manager and scheduler; the twin's nodes, operators
//! and data plane as their clients), through the library as `stormdrill run
//! --control-plane real` does it; exits non-zero unless the verdict is go. The same
//! features on the embedded control plane run in `tests/rbac.rs`, with the harness's
//! least-privilege role: one run of the suite per control plane, not two.
//! Without the control plane's binaries (scripts/k8s-setup.sh) it is skipped, except
//! under CI, where it fails. (`harness = false`: cucumber prints its own report.)

use std::{path::PathBuf, process::ExitCode};

use stormdrill::{
    cli::RunArgs,
    diag,
    target::{ControlPlaneMode, TargetKind},
    verdict::Verdict,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Behave like a libtest binary towards cargo: `--list` lists nothing to filter, and a
    // name filter that cannot match "features" skips the suite.
    if args.iter().any(|a| a == "--list") {
        println!("features: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "features".contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }

    if stormdrill_twin::controlplane::real::binaries_for_test().is_none() {
        return ExitCode::SUCCESS;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = RunArgs {
        control_plane: ControlPlaneMode::Real,
        features: vec![manifest.join("../features")],
        stack: manifest.join("../fixtures/stack"),
        target: TargetKind::Twin,
        report_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("features-reports"),
        profile: Some(manifest.join("../fixtures/acceptance/twin.yaml")),
        seed: Some(1),
        ..RunArgs::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(stormdrill::run(run)) {
        Ok(outcome) => {
            for line in outcome.closing_lines() {
                println!("{line}");
            }
            if outcome.verdict == Verdict::Go {
                ExitCode::SUCCESS
            } else {
                eprintln!("features: verdict {}, expected go", outcome.verdict);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("features: harness could not run: {}", diag::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
