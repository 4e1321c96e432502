//! `stormdrill` binary: parse the command line, init tracing, call the library and map
//! the result to the exit code (0 go, 1 no-go, 2 could not run, 3 aborted).

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser as _;
use stormdrill::{
    cli::{BenchArgs, Cli, Command, LogFormat, TwinCommand, TwinServeArgs},
    diag, load, progress, signal, steps, target,
    verdict::Verdict,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Run(a) => progress::init_output(a.log_format, a.quiet),
        Command::Gameday(a) => progress::init_output(a.log_format, false),
        _ => progress::init_output(LogFormat::Text, false),
    };
    match cli.command {
        Command::Run(args) => match stormdrill::run(args).await {
            Ok(outcome) => {
                for line in outcome.closing_lines() {
                    println!("{line}");
                }
                exit_code(outcome.verdict)
            }
            Err(stormdrill::RunError::Preflight(e)) => {
                eprintln!("error: {}", preflight_text(&e));
                ExitCode::from(2)
            }
            Err(e) => {
                // One line: CI logs and people both read the first line only.
                eprintln!("error: {}", diag::one_line(&e));
                ExitCode::from(2)
            }
        },
        Command::Gameday(args) => match stormdrill::gameday::run(args).await {
            Ok(outcome) => {
                for line in outcome.closing_lines() {
                    println!("{line}");
                }
                exit_code(outcome.verdict)
            }
            Err(e) => {
                eprintln!("error: {}", diag::one_line(&e));
                ExitCode::from(2)
            }
        },
        Command::Twin {
            command: TwinCommand::Serve(args),
        } => match serve_twin(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", diag::one_line(e.as_ref()));
                ExitCode::from(2)
            }
        },
        Command::Twin {
            command: TwinCommand::Defects,
        } => {
            for (name, what) in target::twin_defects() {
                println!("{name:<24} {what}");
            }
            ExitCode::SUCCESS
        }
        Command::Check(args) => match stormdrill::preflight::check_command(&args) {
            Ok(checked) => {
                println!("{}", checked.summary_line());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", preflight_text(&e));
                ExitCode::from(2)
            }
        },
        Command::Steps => {
            print!("{}", steps::describe_catalog());
            ExitCode::SUCCESS
        }
        Command::Recover(args) => match stormdrill::fault::recover::run(&args).await {
            Ok(recovered) => {
                for line in recovered.lines() {
                    println!("{line}");
                }
                ExitCode::from(if recovered.all_reverted() { 0 } else { 1 })
            }
            Err(e) => {
                eprintln!("error: {}", diag::one_line(&e));
                ExitCode::from(2)
            }
        },
        Command::Up(args) => match up(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {}", diag::one_line(e.as_ref()));
                ExitCode::from(2)
            }
        },
        Command::Down(args) => match stormdrill::up::down_command(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", diag::one_line(&e));
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => match bench(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", diag::one_line(e.as_ref()));
                ExitCode::from(2)
            }
        },
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let opts = load::bench::BenchOptions::from_args(&args);
    // The bench pins its own threads; keep it off the runtime's workers.
    let report = tokio::task::spawn_blocking(move || load::bench::run(&opts))
        .await
        .context("bench")??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", load::bench::render(&report));
    }
    Ok(())
}

/// The pre-flight's problems one a line (the first line is the first problem);
/// other errors on one line.
fn preflight_text(e: &stormdrill::preflight::PreflightError) -> String {
    match e {
        stormdrill::preflight::PreflightError::Problems(_) => e.to_string(),
        other => diag::one_line(other),
    }
}

fn exit_code(verdict: Verdict) -> ExitCode {
    ExitCode::from(match verdict {
        Verdict::Go => 0,
        Verdict::NoGo => 1,
        Verdict::Error => 2,
        Verdict::Aborted => 3,
    })
}

async fn serve_twin(args: TwinServeArgs) -> anyhow::Result<()> {
    let twin = target::serve_twin_with(
        args.port,
        args.seed,
        args.timing,
        &args.defects,
        target::TwinBackends {
            ceph: args.ceph,
            postgres: args.postgres,
            control_plane: args.control_plane,
        },
        &args.kubeconfig_out,
    )
    .await
    .context("twin serve")?;
    if args.with_stack {
        let client = twin.client().await.context("twin serve")?;
        let report =
            stormdrill::stack::deploy(&client, &args.stack, Duration::from_secs(120), |line| {
                eprintln!("stack: {line}")
            })
            .await
            .context("deploying the stack")?;
        println!(
            "stack deployed: {} objects applied in {:.1?}, ready {:.1?} later",
            report.applied, report.apply_time, report.ready_time
        );
        for nr in &report.not_ready {
            println!("  not ready: {}: {}", nr.object, nr.reason);
        }
    }
    println!(
        "twin serving at {}; kubeconfig written to {} (Ctrl-C to stop)",
        twin.url(),
        twin.kubeconfig_path().display()
    );
    signal::shutdown_signal().await;
    twin.stop().await;
    Ok(())
}

async fn up(args: stormdrill::cli::UpArgs) -> anyhow::Result<bool> {
    match args.target {
        target::TargetKind::Kind => return Ok(stormdrill::up::up_command(&args).await?),
        target::TargetKind::Twin => anyhow::bail!(
            "`up --target twin`: the twin lives as long as its process; use `stormdrill twin serve --with-stack`"
        ),
        target::TargetKind::Cluster => {}
    }
    let spec = target::TargetSpec {
        kind: target::TargetKind::Cluster,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        ..Default::default()
    };
    let connected = target::connect(&spec).await?;
    println!(
        "deploying {} on {}",
        args.stack.display(),
        connected.server()
    );
    let report = stormdrill::stack::deploy(
        connected.client(),
        &args.stack,
        Duration::from_secs(args.timeout),
        |line| eprintln!("stack: {line}"),
    )
    .await
    .context("stormdrill up")?;
    println!(
        "{} objects applied in {:.1?}; readiness waited {:.1?}",
        report.applied, report.apply_time, report.ready_time
    );
    for nr in &report.not_ready {
        println!("  not ready: {}: {}", nr.object, nr.reason);
    }
    Ok(report.not_ready.is_empty())
}
