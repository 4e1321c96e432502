//! Command line (clap derive). Parsing only; `main.rs` wires commands to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    tags::TagExpr,
    target::{TargetKind, TimingProfile},
};

#[derive(Debug, Parser)]
#[command(
    name = "stormdrill",
    version,
    about = "Chaos and disaster-recovery test harness"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run features against a target and judge go/no-go.
    ///
    /// Exit codes: 0 go, 1 no-go, 2 the harness could not run, 3 aborted.
    Run(RunArgs),
    /// The embedded digital twin.
    Twin {
        #[command(subcommand)]
        command: TwinCommand,
    },
    /// List every step definition with an example.
    Steps,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Feature files or folders [default: features/]
    pub features: Vec<PathBuf>,
    /// Where the API calls go.
    #[arg(long, value_enum, default_value_t = TargetKind::Twin)]
    pub target: TargetKind,
    /// Kubeconfig for --target cluster [default: $KUBECONFIG or ~/.kube/config]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --target cluster [default: current context]
    #[arg(long)]
    pub context: Option<String>,
    /// Select scenarios by feature and scenario tags, e.g. "@phase1 and not @slow".
    #[arg(long)]
    pub tags: Option<TagExpr>,
    /// Folder for run reports; each run writes <report-dir>/<run-id>/.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
    /// Acceptance profile (YAML) with named thresholds.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Seed for every random choice [default: random, recorded in summary.json]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run id, the report folder's name [default: UTC time + 4 hex digits]
    #[arg(long)]
    pub run_id: Option<String>,
    /// The twin's timing profile (--target twin only).
    #[arg(long, value_enum, default_value_t = TimingProfile::Fast)]
    pub timing: TimingProfile,
}

impl Default for RunArgs {
    // Mirrors the clap defaults, for library callers such as tests.
    fn default() -> Self {
        RunArgs {
            features: Vec::new(),
            target: TargetKind::Twin,
            kubeconfig: None,
            context: None,
            tags: None,
            report_dir: PathBuf::from("reports"),
            profile: None,
            seed: None,
            run_id: None,
            timing: TimingProfile::Fast,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Start the twin, write its kubeconfig and serve until Ctrl-C or SIGTERM.
    Serve(TwinServeArgs),
}

#[derive(Clone, Debug, Args)]
pub struct TwinServeArgs {
    /// Where to write the kubeconfig (mode 0600: it holds the token).
    #[arg(long)]
    pub kubeconfig_out: PathBuf,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed for every random choice the twin makes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Delays of the simulated cluster.
    #[arg(long, value_enum, default_value_t = TimingProfile::Fast)]
    pub timing: TimingProfile,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_defaults_and_options() {
        let cli = Cli::try_parse_from(["stormdrill", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.features.is_empty());
        assert_eq!(args.target, TargetKind::Twin);
        assert_eq!(args.report_dir, PathBuf::from("reports"));

        let cli = Cli::try_parse_from([
            "stormdrill",
            "run",
            "a.feature",
            "b",
            "--target",
            "cluster",
            "--context",
            "prod",
            "--tags",
            "@phase1 and not @slow",
            "--seed",
            "42",
            "--run-id",
            "r1",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(
            args.features,
            [PathBuf::from("a.feature"), PathBuf::from("b")]
        );
        assert_eq!(args.target, TargetKind::Cluster);
        assert_eq!(args.tags.unwrap().to_string(), "(@phase1 and not @slow)");
        assert_eq!(args.seed, Some(42));
    }

    #[test]
    fn bad_tags_are_a_usage_error() {
        let e = Cli::try_parse_from(["stormdrill", "run", "--tags", "@a and"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn twin_serve_and_steps() {
        let cli = Cli::try_parse_from([
            "stormdrill",
            "twin",
            "serve",
            "--kubeconfig-out",
            "k.yaml",
            "--port",
            "6443",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Twin {
                command: TwinCommand::Serve(TwinServeArgs { port: 6443, .. })
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["stormdrill", "steps"])
                .unwrap()
                .command,
            Command::Steps
        ));
    }
}
