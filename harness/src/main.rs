//! `stormdrill` binary: parse the command line, init tracing, call the library and map
//! the result to the exit code (0 go, 1 no-go, 2 could not run, 3 aborted).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use stormdrill::{
    cli::{Cli, Command, TwinCommand, TwinServeArgs},
    diag, signal, steps, target,
    verdict::Verdict,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Run(args) => match stormdrill::run(args).await {
            Ok(outcome) => {
                for line in outcome.closing_lines() {
                    println!("{line}");
                }
                exit_code(outcome.verdict)
            }
            Err(e) => {
                // One line: CI logs and people both read the first line only.
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
        Command::Steps => {
            print!("{}", steps::describe_catalog());
            ExitCode::SUCCESS
        }
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
    let twin = target::serve_twin(args.port, args.seed, args.timing, &args.kubeconfig_out)
        .await
        .context("twin serve")?;
    println!(
        "twin serving at {}; kubeconfig written to {} (Ctrl-C to stop)",
        twin.url(),
        twin.kubeconfig_path().display()
    );
    signal::shutdown_signal().await;
    twin.stop().await;
    Ok(())
}

fn init_tracing() {
    // stderr, so stdout stays cucumber's and the report line's. kube's client logs
    // every failed request at ERROR; we report those errors ourselves, once.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,kube_client::client::builder=off")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
