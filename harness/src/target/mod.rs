//! Targets: which kubeconfig the harness uses. Everything after this module talks to a
//! `kube::Client` only, so the twin exercises the same code as a real cluster; this is
//! the only module that knows the twin exists.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use kube::{
    config::{KubeConfigOptions, Kubeconfig, KubeconfigError},
    Client, Config,
};
use stormdrill_twin::{Twin, TwinError, TwinOptions};

pub mod kind;
pub mod power;

/// How long the reachability check waits for `/version`.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// The twin's timing profile (`--timing`): delays of its simulated cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TimingProfile {
    /// Delays of seconds or less: tests and demos.
    #[default]
    Fast,
    /// Kubernetes' defaults: 40 s node grace, 300 s toleration, real-ish pod starts.
    Realistic,
}

impl TimingProfile {
    fn timing(self) -> stormdrill_twin::timing::Timing {
        match self {
            TimingProfile::Fast => stormdrill_twin::timing::Timing::fast(),
            TimingProfile::Realistic => stormdrill_twin::timing::Timing::realistic(),
        }
    }
}

/// Which Ceph the twin runs behind its Rook operator (`--ceph`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CephMode {
    /// The twin's Ceph model: no system packages, seeded, timing profiles.
    #[default]
    Simulated,
    /// A real local Ceph cluster (Debian packages; `scripts/ceph-setup.sh`), bootstrapped
    /// at start in a scratch folder on 127.0.0.1 and stopped with the twin.
    Real,
}

impl CephMode {
    fn kind(self) -> stormdrill_twin::stack::ceph::backend::CephBackendKind {
        use stormdrill_twin::stack::ceph::backend::CephBackendKind;
        match self {
            CephMode::Simulated => CephBackendKind::Simulated,
            CephMode::Real => CephBackendKind::Real,
        }
    }
}

/// What the twin runs behind `postgres` images (`--postgres`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PostgresMode {
    /// The twin's own SQL engine and psql: no system packages.
    #[default]
    Simulated,
    /// Debian's PostgreSQL server as a local process behind `postgresql-0` (initdb on
    /// the PV's directory, the real psql through exec; `scripts/setup.sh` installs it).
    Real,
}

impl PostgresMode {
    fn backend(self) -> stormdrill_twin::stack::postgres::PostgresBackend {
        use stormdrill_twin::stack::postgres::PostgresBackend;
        match self {
            PostgresMode::Simulated => PostgresBackend::Simulated,
            PostgresMode::Real => PostgresBackend::Real,
        }
    }
}

/// The twin's backends: which parts run the real software (`--ceph`, `--postgres`,
/// `--control-plane`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TwinBackends {
    pub ceph: CephMode,
    pub postgres: PostgresMode,
    pub control_plane: ControlPlaneMode,
}

/// The twin's control plane (`--control-plane`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlPlaneMode {
    /// The twin's own API server and controllers (no system packages).
    #[default]
    Embedded,
    /// Real etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built by
    /// scripts/k8s-setup.sh) as processes on 127.0.0.1; the twin's nodes, kubelets and
    /// operators join them as clients.
    Real,
}

impl ControlPlaneMode {
    /// The flag's value, for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlPlaneMode::Embedded => "embedded",
            ControlPlaneMode::Real => "real",
        }
    }

    fn kind(self) -> stormdrill_twin::controlplane::ControlPlaneKind {
        use stormdrill_twin::controlplane::ControlPlaneKind;
        match self {
            ControlPlaneMode::Embedded => ControlPlaneKind::Embedded,
            ControlPlaneMode::Real => ControlPlaneKind::Real,
        }
    }
}

/// Which kind of target `--target` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// The embedded digital twin, started in-process on 127.0.0.1.
    #[default]
    Twin,
    /// A cluster from `--kubeconfig`, `$KUBECONFIG` or ~/.kube/config.
    Cluster,
    /// A local kind cluster (`--name`, default `stormdrill`): kubeconfig from `kind get
    /// kubeconfig`, node power by `docker stop/start`.
    Kind,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Twin => "twin",
            TargetKind::Cluster => "cluster",
            TargetKind::Kind => "kind",
        }
    }
}

/// Everything needed to reach a target.
#[derive(Clone, Debug, Default)]
pub struct TargetSpec {
    pub kind: TargetKind,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub seed: u64,
    pub timing: TimingProfile,
    /// The twin's defects (`--defect`); twin only.
    pub defects: Vec<String>,
    /// The kind cluster's name (`--name`); kind only.
    pub name: Option<String>,
    /// The twin's Ceph (`--ceph`); twin only.
    pub ceph: CephMode,
    /// The twin's control plane (`--control-plane`); twin only.
    pub control_plane: ControlPlaneMode,
    /// The twin's PostgreSQL (`--postgres`); twin only.
    pub postgres: PostgresMode,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("--kubeconfig and --context apply to --target cluster only")]
    OptionsNeedCluster,
    #[error("--defect applies to --target twin only")]
    DefectsNeedTwin,
    #[error("--ceph real applies to --target twin only (other targets run their own Ceph)")]
    CephNeedsTwin,
    #[error(
        "--postgres real applies to --target twin only (other targets run their own PostgreSQL)"
    )]
    PostgresNeedsTwin,
    #[error(
        "--control-plane real applies to --target twin only (other targets are real clusters)"
    )]
    ControlPlaneNeedsTwin,
    #[error(
        "--name applies to --target kind only (--kubeconfig and --context to --target cluster)"
    )]
    NameNeedsKind,
    #[error("kind cluster {name}")]
    Kind {
        name: String,
        #[source]
        source: kind::KindError,
    },
    #[error("cannot start the twin")]
    TwinStart(#[source] TwinError),
    #[error("cannot load kubeconfig {}", path.as_deref().map_or_else(|| "($KUBECONFIG or ~/.kube/config)".to_owned(), |p| p.display().to_string()))]
    Kubeconfig {
        path: Option<PathBuf>,
        #[source]
        source: KubeconfigError,
    },
    #[error("cannot build a Kubernetes client for {server}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("cluster {server} is unreachable")]
    Unreachable {
        server: String,
        #[source]
        source: ReachError,
    },
    #[error("cannot write kubeconfig {path}")]
    WriteKubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why the reachability check failed.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("no answer to /version within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error(transparent)]
    Api(kube::Error),
}

/// A target in use; keeps the twin alive while the run needs it.
pub enum Target {
    // Boxed: the twin handle is large and Cluster is empty.
    Twin(Box<Twin>),
    Cluster,
    /// A kind cluster and its control plane's published ports (container -> host).
    Kind {
        name: String,
        ports: std::collections::HashMap<u16, std::net::SocketAddr>,
    },
}

/// A reachable target and a client for it.
pub struct Connected {
    target: Target,
    client: Client,
    /// The twin's own server (provider endpoint), when it is not the API server.
    provider: Option<Client>,
    server: String,
    version: String,
}

impl Connected {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The API server URL, for messages and reports.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The API server's git version (e.g. `v1.34.1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn kind(&self) -> TargetKind {
        match self.target {
            Target::Twin(_) => TargetKind::Twin,
            Target::Cluster => TargetKind::Cluster,
            Target::Kind { .. } => TargetKind::Kind,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Where the API answers when the target knows better than the cluster's load
    /// balancer status: kind publishes Envoy through a host port mapping. None:
    /// discover it from the cluster (or no stack yet).
    pub async fn api_endpoint(&self) -> Option<crate::load::ApiEndpoint> {
        match &self.target {
            Target::Kind { ports, .. } => kind::api_endpoint(&self.client, ports).await,
            _ => None,
        }
    }

    /// How this target powers nodes off and on: the twin's provider endpoint, or the
    /// cluster's commands from its target config.
    pub fn node_power(&self, config: &power::TargetConfig) -> std::sync::Arc<dyn power::NodePower> {
        match self.target {
            Target::Twin(_) => std::sync::Arc::new(power::TwinPower::new(
                self.provider.clone().unwrap_or_else(|| self.client.clone()),
            )),
            Target::Cluster => config.cluster_power(),
            // kind's nodes are containers named like the nodes; a target config's
            // commands still win (e.g. a remote Docker host).
            Target::Kind { .. } => match &config.power {
                Some(_) => config.cluster_power(),
                None => {
                    std::sync::Arc::new(power::CommandPower::new(power::PowerCommands::docker()))
                }
            },
        }
    }

    /// Copies the logs of the processes the harness started for this target (the real
    /// control plane's etcd, kube-apiserver, controller manager and scheduler) into
    /// `dest`, before [`Connected::close`] removes them. Returns the files copied; none
    /// for targets whose processes the harness does not own.
    pub fn keep_logs(&self, dest: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
        match &self.target {
            Target::Twin(twin) => match twin.real_control_plane() {
                Some(cp) => cp.copy_logs(dest),
                None => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }

    /// Releases the target (stops an embedded twin).
    pub async fn close(self) {
        if let Target::Twin(twin) = self.target {
            twin.shutdown().await;
        }
    }
}

impl TargetSpec {
    /// Checks the options fit the kind, before anything is started.
    pub fn validate(&self) -> Result<(), TargetError> {
        if self.kind == TargetKind::Twin && (self.kubeconfig.is_some() || self.context.is_some()) {
            return Err(TargetError::OptionsNeedCluster);
        }
        if self.kind != TargetKind::Twin && !self.defects.is_empty() {
            return Err(TargetError::DefectsNeedTwin);
        }
        if self.ceph == CephMode::Real && self.kind != TargetKind::Twin {
            return Err(TargetError::CephNeedsTwin);
        }
        if self.postgres == PostgresMode::Real && self.kind != TargetKind::Twin {
            return Err(TargetError::PostgresNeedsTwin);
        }
        if self.control_plane == ControlPlaneMode::Real && self.kind != TargetKind::Twin {
            return Err(TargetError::ControlPlaneNeedsTwin);
        }
        if self.name.is_some() && self.kind != TargetKind::Kind {
            return Err(TargetError::NameNeedsKind);
        }
        if self.kind == TargetKind::Kind && (self.kubeconfig.is_some() || self.context.is_some()) {
            return Err(TargetError::OptionsNeedCluster);
        }
        Ok(())
    }
}

/// Resolves the target to a client and checks that its API server answers.
pub async fn connect(spec: &TargetSpec) -> Result<Connected, TargetError> {
    spec.validate()?;
    match spec.kind {
        TargetKind::Twin => {
            let backends = TwinBackends {
                ceph: spec.ceph,
                postgres: spec.postgres,
                control_plane: spec.control_plane,
            };
            let twin = start_twin(0, spec.seed, spec.timing, &spec.defects, backends).await?;
            let provider = match twin.real_control_plane() {
                Some(_) => provider_client_for_twin(&twin).await.ok(),
                None => None,
            };
            match client_for_twin(&twin).await {
                Ok((client, server)) => match check_reachable(&client, &server).await {
                    Ok(version) => Ok(Connected {
                        target: Target::Twin(Box::new(twin)),
                        client,
                        provider,
                        server,
                        version,
                    }),
                    Err(e) => {
                        twin.shutdown().await;
                        Err(e)
                    }
                },
                Err(e) => {
                    twin.shutdown().await;
                    Err(e)
                }
            }
        }
        TargetKind::Cluster => {
            let options = KubeConfigOptions {
                context: spec.context.clone(),
                ..KubeConfigOptions::default()
            };
            let config = match &spec.kubeconfig {
                Some(path) => {
                    let kubeconfig =
                        Kubeconfig::read_from(path).map_err(|source| TargetError::Kubeconfig {
                            path: Some(path.clone()),
                            source,
                        })?;
                    Config::from_custom_kubeconfig(kubeconfig, &options).await
                }
                None => Config::from_kubeconfig(&options).await,
            }
            .map_err(|source| TargetError::Kubeconfig {
                path: spec.kubeconfig.clone(),
                source,
            })?;
            let (client, server) = client_from_config(config)?;
            let version = check_reachable(&client, &server).await?;
            Ok(Connected {
                target: Target::Cluster,
                client,
                provider: None,
                server,
                version,
            })
        }
        TargetKind::Kind => {
            let name = spec
                .name
                .as_deref()
                .unwrap_or(kind::DEFAULT_NAME)
                .to_owned();
            let (yaml, ports) = kind_lookup(&name).await?;
            let kubeconfig = Kubeconfig::from_yaml(&yaml)
                .map_err(|source| TargetError::Kubeconfig { path: None, source })?;
            let options = KubeConfigOptions {
                context: Some(format!("kind-{name}")),
                ..KubeConfigOptions::default()
            };
            let config = Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| TargetError::Kubeconfig { path: None, source })?;
            let (client, server) = client_from_config(config)?;
            let version = check_reachable(&client, &server).await?;
            Ok(Connected {
                target: Target::Kind { name, ports },
                client,
                provider: None,
                server,
                version,
            })
        }
    }
}

/// The kind cluster's kubeconfig and published ports, from `kind` and `docker`
/// (blocking commands, off the runtime's workers).
async fn kind_lookup(
    name: &str,
) -> Result<(String, std::collections::HashMap<u16, std::net::SocketAddr>), TargetError> {
    let owned = name.to_owned();
    let looked_up = tokio::task::spawn_blocking(move || {
        let runner = kind::runner::ProcessRunner::default();
        kind::check_tools(&runner, &kind::TARGET_TOOLS, "--target kind")?;
        let yaml = kind::kubeconfig(&runner, &owned)?;
        // No published ports only means no API URL; the run can still use the API server.
        let ports = kind::host_ports(&runner, &owned).unwrap_or_default();
        Ok::<_, kind::KindError>((yaml, ports))
    })
    .await;
    let kind_error = |source| TargetError::Kind {
        name: name.to_owned(),
        source,
    };
    match looked_up {
        Ok(r) => r.map_err(kind_error),
        Err(join) => Err(kind_error(kind::KindError::Run {
            what: "looking up the kind cluster".to_owned(),
            source: kind::runner::RunError::Spawn {
                command: "kind get kubeconfig".to_owned(),
                source: std::io::Error::other(join.to_string()),
            },
        })),
    }
}

/// `/version` within [`REACH_TIMEOUT`]; returns the server's git version.
pub async fn check_reachable(client: &Client, server: &str) -> Result<String, TargetError> {
    let unreachable = |source| TargetError::Unreachable {
        server: server.to_owned(),
        source,
    };
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(unreachable(ReachError::Api(e))),
        Err(_) => Err(unreachable(ReachError::Timeout(REACH_TIMEOUT))),
    }
}

async fn start_twin(
    port: u16,
    seed: u64,
    timing: TimingProfile,
    defects: &[String],
    backends: TwinBackends,
) -> Result<Twin, TargetError> {
    Twin::start(TwinOptions {
        port,
        seed,
        timing: timing.timing(),
        defects: defects.to_vec(),
        ceph: backends.ceph.kind(),
        control_plane: backends.control_plane.kind(),
        postgres: backends.postgres.backend(),
        ..TwinOptions::default()
    })
    .await
    .map_err(TargetError::TwinStart)
}

/// The twin is reached through its kubeconfig, exactly like a cluster.
async fn client_for_twin(twin: &Twin) -> Result<(Client, String), TargetError> {
    let kubeconfig = Kubeconfig::from_yaml(&twin.kubeconfig_yaml())
        .map_err(|source| TargetError::Kubeconfig { path: None, source })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| TargetError::Kubeconfig { path: None, source })?;
    client_from_config(config)
}

/// The twin's own server (node power, ground truth) when a real API server serves
/// the Kubernetes API.
async fn provider_client_for_twin(twin: &Twin) -> Result<Client, TargetError> {
    let kubeconfig = Kubeconfig::from_yaml(&twin.provider_kubeconfig_yaml())
        .map_err(|source| TargetError::Kubeconfig { path: None, source })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| TargetError::Kubeconfig { path: None, source })?;
    client_from_config(config).map(|(c, _)| c)
}

fn client_from_config(mut config: Config) -> Result<(Client, String), TargetError> {
    // kube retries 429/503/504 up to 15 times with back-off (minutes): a drill must
    // see a PDB's 429 or a 503 at once, and every wait in the harness has its own deadline.
    config.default_retry = false;
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    let client = Client::try_from(config).map_err(|source| TargetError::Client {
        server: server.clone(),
        source,
    })?;
    Ok((client, server))
}

/// The twin's defects (`--defect NAME`): name and what it breaks.
pub fn twin_defects() -> &'static [(&'static str, &'static str)] {
    stormdrill_twin::defects::catalog()
}

/// A twin served for other tools (`stormdrill twin serve`), e.g. kubectl.
pub struct ServedTwin {
    twin: Twin,
    kubeconfig: PathBuf,
}

impl ServedTwin {
    pub fn url(&self) -> String {
        self.twin.url()
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub async fn stop(self) {
        self.twin.shutdown().await;
    }

    /// A client for the served twin, through its kubeconfig like any other.
    pub async fn client(&self) -> Result<Client, TargetError> {
        client_for_twin(&self.twin).await.map(|(c, _)| c)
    }

    /// A client for the twin's own endpoints (node power, `/twin/v1/events`): the API
    /// server's client on the embedded control plane, the twin's server on a real one.
    pub async fn provider_client(&self) -> Result<Client, TargetError> {
        match self.twin.real_control_plane() {
            Some(_) => provider_client_for_twin(&self.twin).await,
            None => self.client().await,
        }
    }
}

/// Starts a twin and writes its kubeconfig to `kubeconfig_out` (mode 0600: it holds a token).
pub async fn serve_twin(
    port: u16,
    seed: u64,
    timing: TimingProfile,
    defects: &[String],
    kubeconfig_out: &Path,
) -> Result<ServedTwin, TargetError> {
    serve_twin_with(
        port,
        seed,
        timing,
        defects,
        TwinBackends::default(),
        kubeconfig_out,
    )
    .await
}

/// [`serve_twin`] with the backends chosen (`twin serve --ceph --postgres
/// --control-plane`).
pub async fn serve_twin_with(
    port: u16,
    seed: u64,
    timing: TimingProfile,
    defects: &[String],
    backends: TwinBackends,
    kubeconfig_out: &Path,
) -> Result<ServedTwin, TargetError> {
    let twin = start_twin(port, seed, timing, defects, backends).await?;
    if let Err(source) = write_private(kubeconfig_out, &twin.kubeconfig_yaml()) {
        twin.shutdown().await;
        return Err(TargetError::WriteKubeconfig {
            path: kubeconfig_out.to_owned(),
            source,
        });
    }
    Ok(ServedTwin {
        twin,
        kubeconfig: kubeconfig_out.to_owned(),
    })
}

/// Written under a temporary name and renamed, so a reader polling for the file never
/// sees half a kubeconfig.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&tmp)?.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_control_plane_is_for_the_twin_only() {
        let spec = TargetSpec {
            kind: TargetKind::Cluster,
            control_plane: ControlPlaneMode::Real,
            ..TargetSpec::default()
        };
        let e = spec
            .validate()
            .expect_err("a cluster has its own control plane");
        assert!(e
            .to_string()
            .contains("--control-plane real applies to --target twin only"));
    }

    #[test]
    fn real_ceph_is_for_the_twin_only() {
        let twin = TargetSpec {
            ceph: CephMode::Real,
            ..TargetSpec::default()
        };
        assert!(twin.validate().is_ok());
        let cluster = TargetSpec {
            kind: TargetKind::Cluster,
            ceph: CephMode::Real,
            ..TargetSpec::default()
        };
        assert!(matches!(
            cluster.validate(),
            Err(TargetError::CephNeedsTwin)
        ));
    }

    #[test]
    fn real_postgres_is_for_the_twin_only() {
        let twin = TargetSpec {
            postgres: PostgresMode::Real,
            ..TargetSpec::default()
        };
        assert!(twin.validate().is_ok());
        for kind in [TargetKind::Cluster, TargetKind::Kind] {
            let other = TargetSpec {
                kind,
                postgres: PostgresMode::Real,
                ..TargetSpec::default()
            };
            let e = other
                .validate()
                .expect_err("only the twin runs our PostgreSQL");
            assert!(matches!(e, TargetError::PostgresNeedsTwin));
            assert!(e
                .to_string()
                .contains("--postgres real applies to --target twin only"));
        }
    }

    #[tokio::test]
    async fn twin_refuses_cluster_options() {
        let spec = TargetSpec {
            kind: TargetKind::Twin,
            context: Some("x".into()),
            ..TargetSpec::default()
        };
        assert!(matches!(
            connect(&spec).await,
            Err(TargetError::OptionsNeedCluster)
        ));
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, unreachable_kubeconfig()).unwrap();
        let spec = TargetSpec {
            kind: TargetKind::Cluster,
            kubeconfig: Some(path),
            ..TargetSpec::default()
        };
        match connect(&spec).await {
            Err(TargetError::Unreachable { server, .. }) => {
                assert_eq!(server, "https://127.0.0.1:1")
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("port 1 answered"),
        }
    }

    fn unreachable_kubeconfig() -> &'static str {
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: t
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"
    }
}
