//! Command line (clap derive). Parsing only; `main.rs` wires commands to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    tags::TagExpr,
    target::{CephMode, ControlPlaneMode, PostgresMode, TargetKind, TimingProfile},
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
// Parsed once per process: the size of `run`'s arguments costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run features against a target and judge go/no-go.
    ///
    /// Exit codes: 0 go, 1 no-go, 2 the harness could not run, 3 aborted.
    Run(RunArgs),
    /// Check features without running them: every feature parses, every scenario has
    /// steps, every step is known, every `the profile's KEY` is in the acceptance
    /// profile, every game-day scenario file a step names loads. `run` does this first.
    ///
    /// Exit codes: 0 no problems, 2 problems (each with file:line) or bad arguments.
    Check(CheckArgs),
    /// The embedded digital twin.
    Twin {
        #[command(subcommand)]
        command: TwinCommand,
    },
    /// List every step definition with an example.
    Steps,
    /// Revert the faults a killed run left behind (from its journal), idempotently.
    ///
    /// Exit codes: 0 nothing left to revert, 1 a revert failed, 2 could not run.
    Recover(RecoverArgs),
    /// Measure the load generator on this machine (against a local nginx and wrk when
    /// installed; only 127.0.0.1 is ever sent to).
    Bench(BenchArgs),
    /// Deploy the documented stack (fixtures/stack) on a cluster and wait until it is ready.
    ///
    /// `--target kind` first creates (or converges) a local kind cluster with its OSD
    /// devices and the operators (Helm). For the twin, use `stormdrill twin serve
    /// --with-stack` (the twin lives as long as its process). Exit codes: 0 ready, 1
    /// deployed but not all ready, 2 could not run.
    Up(UpArgs),
    /// Delete a kind cluster made by `stormdrill up --target kind`, with its OSD devices.
    Down(DownArgs),
    /// Run a scenario file (scenarios/NAME.yaml) as a game day, for people: the plan
    /// first, a confirmation before each destructive step (or --yes), the live view,
    /// Ctrl-C reverts everything, and reports/<run>/timeline.md for the post-mortem.
    ///
    /// Exit codes: 0 all criteria passed, 1 a criterion or step failed, 2 could not
    /// run, 3 aborted (faults reverted).
    Gameday(GamedayArgs),
}

/// `stormdrill check`.
#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// Feature files or folders [default: features/]
    pub features: Vec<PathBuf>,
    /// The target whose default acceptance profile applies when --profile is not given.
    #[arg(long, value_enum, default_value_t = TargetKind::Twin)]
    pub target: TargetKind,
    /// Acceptance profile (YAML) the `the profile's KEY` limits are looked up in
    /// [default for --target twin: fixtures/acceptance/twin.yaml, kind: kind.yaml]
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// As `run --tags`: profile keys and scenario files are checked for the selected
    /// scenarios only (every step of every feature must still be known).
    #[arg(long)]
    pub tags: Option<TagExpr>,
}

/// `stormdrill gameday`.
#[derive(Clone, Debug, Args)]
pub struct GamedayArgs {
    /// A scenario name (scenarios/NAME.yaml, e.g. pod-kill) or a YAML file.
    pub scenario: String,
    /// Do not ask before destructive steps.
    #[arg(long, short)]
    pub yes: bool,
    /// Where the faults go.
    #[arg(long, value_enum, default_value_t = TargetKind::Twin)]
    pub target: TargetKind,
    /// Kubeconfig for --target cluster [default: $KUBECONFIG or ~/.kube/config]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --target cluster [default: current context]
    #[arg(long)]
    pub context: Option<String>,
    /// Folder for run reports; the game day writes <report-dir>/<run-id>/.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
    /// Acceptance profile (YAML) [default for --target twin: fixtures/acceptance/twin.yaml]
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
    /// The stack's manifests, deployed on the twin first.
    #[arg(long, default_value = "fixtures/stack")]
    pub stack: PathBuf,
    /// Allow destructive faults on --target cluster (the cluster must also opt in).
    #[arg(long)]
    pub allow_destructive: bool,
    /// Target config (YAML): node power commands for --target cluster.
    #[arg(long)]
    pub target_config: Option<PathBuf>,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Debug, Args)]
pub struct UpArgs {
    /// `cluster`: deploy on the cluster of --kubeconfig/--context; `kind`: create or
    /// converge a local kind cluster first.
    #[arg(long, value_enum, default_value_t = TargetKind::Cluster)]
    pub target: TargetKind,
    /// The kind cluster's name (--target kind).
    #[arg(long, default_value = "stormdrill")]
    pub name: String,
    /// The kind files: cluster.yaml, up.yaml (pinned charts, deadlines), values/, stack/.
    #[arg(long, default_value = "fixtures/kind")]
    pub kind_dir: PathBuf,
    /// Where kind clusters' state lives (OSD files, kubeconfig, generated stack)
    /// [default: ~/.cache/stormdrill/kind]
    #[arg(long, env = "STORMDRILL_KIND_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The API Deployment's image (--target kind) [default: build fixtures/api and load it]
    #[arg(long)]
    pub api_image: Option<String>,
    /// Git repository Flux reconciles fixtures/kind/gitops/ from (--target kind).
    #[arg(long, env = "STORMDRILL_GITOPS_URL")]
    pub gitops_url: Option<String>,
    /// Branch of --gitops-url.
    #[arg(long, default_value = "main", env = "STORMDRILL_GITOPS_BRANCH")]
    pub gitops_branch: String,
    /// Size of each OSD file in GiB (two per worker; sparse).
    #[arg(long, default_value_t = 10)]
    pub osd_size_gb: u64,
    /// A Docker Hub mirror the kind nodes pull through, Docker Hub itself when it
    /// lacks an image (--target kind; set when the cluster is created), e.g.
    /// https://mirror.gcr.io or your registry's pull-through cache.
    #[arg(long, env = "STORMDRILL_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,
    /// Kubeconfig [default: $KUBECONFIG or ~/.kube/config]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: current context]
    #[arg(long)]
    pub context: Option<String>,
    /// The stack's manifests, applied in file-name order.
    #[arg(long, default_value = "fixtures/stack")]
    pub stack: PathBuf,
    /// Deadline for the whole deployment, in seconds (--target cluster; kind uses the
    /// per-part deadlines of up.yaml).
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

/// `stormdrill down`: the kind cluster of `up --target kind`.
#[derive(Clone, Debug, Args)]
pub struct DownArgs {
    /// The kind cluster's name.
    #[arg(long, default_value = "stormdrill")]
    pub name: String,
    #[arg(long, default_value = "fixtures/kind")]
    pub kind_dir: PathBuf,
    /// [default: ~/.cache/stormdrill/kind]
    #[arg(long, env = "STORMDRILL_KIND_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
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
    /// Acceptance profile (YAML) with named thresholds [default for --target twin:
    /// fixtures/acceptance/twin.yaml when it exists]
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
    /// The twin's Ceph: its model, or a real local cluster (--target twin only; real
    /// needs the packages of scripts/ceph-setup.sh).
    #[arg(long, value_enum, default_value_t = CephMode::Simulated)]
    pub ceph: CephMode,
    /// The twin's PostgreSQL: its own SQL engine, or the installed server as a process
    /// behind postgresql-0 (--target twin only; real needs scripts/setup.sh).
    #[arg(long, value_enum, default_value_t = PostgresMode::Simulated)]
    pub postgres: PostgresMode,
    /// The twin's control plane: its own, or real kube-apiserver, etcd, controller
    /// manager and scheduler (--target twin only; real needs scripts/k8s-setup.sh).
    #[arg(long, value_enum, default_value_t = ControlPlaneMode::Embedded)]
    pub control_plane: ControlPlaneMode,
    /// Base URL of the API under test, for load steps (e.g. https://api.example:8443).
    #[arg(long)]
    pub api_url: Option<http::Uri>,
    /// PEM CA bundle to trust for --api-url [default: the system's roots]
    #[arg(long)]
    pub api_ca: Option<PathBuf>,
    /// Local address to send load from (e.g. 127.0.0.2), as one client would.
    #[arg(long)]
    pub api_source_addr: Option<std::net::IpAddr>,
    /// Resolve each fault's targets and print the plan (objects, revert) without
    /// changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow destructive faults on --target cluster (the cluster must also opt in with
    /// ConfigMap kube-system/stormdrill-allow).
    #[arg(long)]
    pub allow_destructive: bool,
    /// Target config (YAML): node power commands for --target cluster.
    #[arg(long)]
    pub target_config: Option<PathBuf>,
    /// The stack's manifests, for "Given the documented stack is deployed".
    #[arg(long, default_value = "fixtures/stack")]
    pub stack: PathBuf,
    /// Run the twin with this misconfiguration, to see the checks fail (repeatable;
    /// --target twin only; `stormdrill twin defects` lists them).
    #[arg(long = "defect", value_name = "NAME")]
    pub defects: Vec<String>,
    /// The kind cluster's name (--target kind) [default: stormdrill]
    #[arg(long)]
    pub name: Option<String>,
    /// Print only the closing summary and errors: no step output, no progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Log lines (and progress lines when not in a terminal) as text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Push the run's measurements (metrics.prom) to this Prometheus Pushgateway,
    /// e.g. http://127.0.0.1:9091 (job `stormdrill`).
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<http::Uri>,
}

/// How log lines are written (stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
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
            ceph: CephMode::Simulated,
            postgres: PostgresMode::Simulated,
            control_plane: ControlPlaneMode::Embedded,
            api_url: None,
            api_ca: None,
            api_source_addr: None,
            dry_run: false,
            allow_destructive: false,
            target_config: None,
            stack: PathBuf::from("fixtures/stack"),
            defects: Vec::new(),
            name: None,
            quiet: false,
            log_format: LogFormat::Text,
            pushgateway: None,
        }
    }
}

/// `stormdrill recover`: replay the reverts a killed run left in its journal.
#[derive(Clone, Debug, Args)]
pub struct RecoverArgs {
    /// The journal (reports/<run>/journal.jsonl) or its run folder.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub journal: Option<PathBuf>,
    /// The most recently written journal under --report-dir.
    #[arg(long)]
    pub latest: bool,
    /// Where --latest looks for run folders.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
    /// Kubeconfig of the cluster the run injected faults into [default: $KUBECONFIG or
    /// ~/.kube/config]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: current context]
    #[arg(long)]
    pub context: Option<String>,
    /// Target config (YAML) with the node power commands, to power nodes back on.
    #[arg(long)]
    pub target_config: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds of each maximum-throughput run (stormdrill and wrk).
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Connections of the maximum-throughput runs.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Open-loop target rates, req/s.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000, 10000])]
    pub rates: Vec<u32>,
    /// Seconds of each open-loop rate run.
    #[arg(long, default_value_t = 3)]
    pub rate_duration: u64,
    /// (c) detection lag: events of each kind (a p99 needs at least 50).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub lag_events: u64,
    /// (c) the Ceph observer's poll interval, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub ceph_interval_ms: u64,
    /// (c) on which control planes: `embedded`, `real` (built by scripts/k8s-setup.sh;
    /// without the stack: a Deployment of 3 and the nodes, no Ceph), or both
    /// (`embedded,real`), one after the other.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ControlPlaneMode::Embedded])]
    pub control_plane: Vec<ControlPlaneMode>,
    /// Skip (c), the detection lag on a twin (a few minutes).
    #[arg(long)]
    pub skip_lag: bool,
    /// Skip (d), the feature suite on a twin (about 25 s in a release build).
    #[arg(long)]
    pub skip_suite: bool,
    /// (e) seconds of the long run at 1,000 req/s.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub memory_duration: u64,
    /// Skip (e), the long run.
    #[arg(long)]
    pub skip_memory: bool,
    /// (d) the features to run.
    #[arg(long, default_value = "features")]
    pub features: PathBuf,
    /// (c) and (d) the stack's manifests.
    #[arg(long, default_value = "fixtures/stack")]
    pub stack: PathBuf,
    /// (d) where the suite's run report goes.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Start the twin, write its kubeconfig and serve until Ctrl-C or SIGTERM.
    Serve(TwinServeArgs),
    /// List the twin's defects (named misconfigurations for --defect).
    Defects,
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
    /// The Ceph behind the Rook operator: the model, or a real local cluster (needs the
    /// packages of scripts/ceph-setup.sh; stopped with the twin).
    #[arg(long, value_enum, default_value_t = CephMode::Simulated)]
    pub ceph: CephMode,
    /// What runs behind the postgres images: the twin's SQL engine, or the installed
    /// PostgreSQL server as a local process (needs scripts/setup.sh; stopped with the twin).
    #[arg(long, value_enum, default_value_t = PostgresMode::Simulated)]
    pub postgres: PostgresMode,
    /// The Kubernetes control plane: the twin's own, or real kube-apiserver, etcd,
    /// controller manager and scheduler (built by scripts/k8s-setup.sh; stopped with
    /// the twin). The kubeconfig then names the real kube-apiserver.
    #[arg(long, value_enum, default_value_t = ControlPlaneMode::Embedded)]
    pub control_plane: ControlPlaneMode,
    /// Deploy the documented stack (the manifests of --stack) before serving.
    #[arg(long)]
    pub with_stack: bool,
    /// The stack's manifests.
    #[arg(long, default_value = "fixtures/stack")]
    pub stack: PathBuf,
    /// Run with this misconfiguration (repeatable; `stormdrill twin defects` lists them).
    #[arg(long = "defect", value_name = "NAME")]
    pub defects: Vec<String>,
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
        let cli =
            Cli::try_parse_from(["stormdrill", "bench", "--json", "--rates", "100,200"]).unwrap();
        let Command::Bench(b) = cli.command else {
            panic!("not bench")
        };
        assert!(b.json);
        assert_eq!((b.rates, b.duration), (vec![100, 200], 5));
        assert!(matches!(
            Cli::try_parse_from(["stormdrill", "steps"])
                .unwrap()
                .command,
            Command::Steps
        ));
    }

    fn run_with(extra: &[&str]) -> RunArgs {
        let argv = ["stormdrill", "run"].iter().chain(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(r) => r,
            _ => panic!("not run"),
        }
    }

    fn serve_with(extra: &[&str]) -> TwinServeArgs {
        let argv = ["stormdrill", "twin", "serve", "--kubeconfig-out", "k"]
            .iter()
            .chain(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Twin {
                command: TwinCommand::Serve(a),
            } => a,
            _ => panic!("not twin serve"),
        }
    }

    #[test]
    fn backend_options() {
        let r = run_with(&[]);
        assert_eq!(
            (r.ceph, r.postgres, r.control_plane),
            (
                CephMode::Simulated,
                PostgresMode::Simulated,
                ControlPlaneMode::Embedded
            )
        );
        assert_eq!(run_with(&["--ceph", "real"]).ceph, CephMode::Real);
        assert_eq!(serve_with(&["--ceph", "real"]).ceph, CephMode::Real);
        assert_eq!(
            run_with(&["--postgres", "real"]).postgres,
            PostgresMode::Real
        );
        assert_eq!(
            serve_with(&["--postgres", "real"]).postgres,
            PostgresMode::Real
        );
        assert_eq!(serve_with(&[]).postgres, PostgresMode::Simulated);
        assert_eq!(
            run_with(&["--control-plane", "real"]).control_plane,
            ControlPlaneMode::Real
        );
        for bad in [
            ["--ceph", "imaginary"],
            ["--postgres", "mysql"],
            ["--control-plane", "kwok"],
        ] {
            let argv = ["stormdrill", "run"].into_iter().chain(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
