//! Every feature under `../features` against an embedded twin, through the library as
//! `stormdrill run` does it; exits non-zero unless the verdict is go.
//! (`harness = false`: cucumber prints its own report.)

use std::{path::PathBuf, process::ExitCode};

use stormdrill::{cli::RunArgs, diag, target::TargetKind, verdict::Verdict};

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

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = RunArgs {
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
