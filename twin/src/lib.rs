//! stormdrill-twin: an embedded digital twin of a Kubernetes cluster.
//!
//! The twin serves a subset of the Kubernetes API over HTTPS on 127.0.0.1 with its
//! own CA and a bearer token, so kube-rs and unmodified kubectl talk to it exactly
//! as they talk to a real cluster.

pub mod admission;
pub mod api;
pub mod client;
pub mod controllers;
pub mod controlplane;
pub mod ctx;
pub mod dataplane;
pub mod defects;
pub mod discovery;
pub mod error;
pub mod eviction;
pub mod exec;
pub mod forward;
pub mod kubelet_api;
pub mod operators;
pub mod patch;
pub mod procs;
pub mod protobuf;
pub mod provider;
pub mod proxy;
pub mod rbac;
pub mod resources;
pub mod reviews;
pub mod selector;
pub mod server;
pub mod sim;
pub mod simfs;
pub mod simnet;
pub mod stack;
pub mod store;
pub mod timing;
pub mod tls;
pub mod truth;
pub mod upstream;
pub mod validate;
pub mod voldata;
pub mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::Api;

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the twin's certificates")]
    Tls(#[from] tls::TlsError),
    #[error("cannot start the API data plane")]
    DataPlane(#[source] dataplane::DataPlaneError),
    #[error("cannot start the threads serving the data plane and the network")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Defect(#[from] defects::DefectError),
    #[error("cannot start the real Ceph cluster (--ceph real)")]
    Ceph(#[source] stack::ceph::real::RealCephError),
    #[error("cannot start the real PostgreSQL (--postgres real)")]
    Postgres(#[source] procs::ProcError),
    #[error("cannot start the real control plane (--control-plane real)")]
    ControlPlane(#[source] controlplane::real::RealControlPlaneError),
    #[error("the real control plane refused the twin's world: {0}")]
    Mirror(#[source] error::ApiError),
    #[error("the twin's bootstrap object {what} was rejected")]
    Bootstrap {
        what: String,
        #[source]
        source: error::ApiError,
    },
}

/// How to start a twin.
#[derive(Clone, Debug)]
pub struct TwinOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Seed for every random choice the twin makes.
    pub seed: u64,
    /// Bearer token; a random one when None.
    pub token: Option<String>,
    /// How many changes are retained for watches; older resourceVersions get 410.
    pub history: usize,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Delays of the simulated cluster (`fast` or `realistic`).
    pub timing: timing::Timing,
    /// Named misconfigurations to run with (`defects::catalog`); unknown names are refused.
    pub defects: Vec<String>,
    /// Tokens besides the admin's, authorized by RBAC (`rbac`), like kube-apiserver's
    /// `--token-auth-file`.
    pub users: Vec<rbac::StaticToken>,
    /// The Ceph behind the Rook operator: the simulated model or a real local cluster.
    pub ceph: stack::ceph::backend::CephBackendKind,
    /// Where the real cluster's scratch folder goes [default: the system's temp dir].
    pub ceph_scratch: Option<std::path::PathBuf>,
    /// The embedded API server and controllers, or a real control plane.
    pub control_plane: controlplane::ControlPlaneKind,
    /// What runs behind `postgres` images: the simulated engine, or the real server
    /// as a local process ([`procs`]).
    pub postgres: stack::postgres::PostgresBackend,
}

impl Default for TwinOptions {
    fn default() -> Self {
        TwinOptions {
            port: 0,
            seed: 0,
            token: None,
            history: 10_000,
            bookmark_interval: Duration::from_secs(5),
            timing: timing::Timing::fast(),
            defects: Vec::new(),
            users: Vec::new(),
            ceph: stack::ceph::backend::CephBackendKind::Simulated,
            ceph_scratch: None,
            control_plane: controlplane::ControlPlaneKind::Embedded,
            postgres: stack::postgres::PostgresBackend::Simulated,
        }
    }
}

/// A running twin. Dropping it stops the server.
pub struct Twin {
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    api: Arc<Api>,
    ctx: crate::ctx::Ctx,
    api_addr: SocketAddr,
    audit: Arc<rbac::Audit>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    /// The real control plane the world joined (`--control-plane real`).
    real: Option<Arc<controlplane::real::RealControlPlane>>,
}

/// Workers of the world's runtime on a real control plane: its controllers make
/// blocking calls, so a few can wait on the apiserver while the others run.
const WORLD_THREADS: usize = 6;
const BOOTSTRAP: &str = include_str!("../assets/bootstrap.yaml");

impl Twin {
    pub async fn start(opts: TwinOptions) -> Result<Twin, TwinError> {
        let defect_set = Arc::new(defects::Defects::new(&opts.defects)?);
        let tls = tls::TwinTls::generate()?;
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .map_err(|source| TwinError::Bind {
                port: opts.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| TwinError::Bind {
            port: opts.port,
            source,
        })?;
        let token = opts.token.clone().unwrap_or_else(|| {
            let mut rng = rand::rng();
            (0..32)
                .map(|_| {
                    let n: u8 = rand::Rng::random_range(&mut rng, 0..36);
                    if n < 10 {
                        (b'0' + n) as char
                    } else {
                        (b'a' + n - 10) as char
                    }
                })
                .collect()
        });
        // Missing packages fail the start before anything runs.
        let mut programs: Vec<Arc<dyn procs::Program>> = Vec::new();
        if opts.postgres == stack::postgres::PostgresBackend::Real {
            programs.push(Arc::new(
                procs::postgres::Postgres::installed().map_err(TwinError::Postgres)?,
            ));
        }
        let api = Api::new(opts.seed, opts.history, opts.bookmark_interval);
        let embedded = opts.control_plane.embedded();
        // The real control plane starts first: unbuilt binaries fail the start at once.
        let real = if embedded {
            None
        } else {
            let o = controlplane::real::RealControlPlaneOptions {
                bin_dir: None,
                scratch_parent: None,
                timing: opts.timing.clone(),
                admin_token: token.clone(),
                users: opts.users.clone(),
            };
            let started =
                tokio::task::spawn_blocking(move || controlplane::real::RealControlPlane::start(o))
                    .await
                    .unwrap_or(Err(controlplane::real::RealControlPlaneError::Gone));
            Some(Arc::new(started.map_err(TwinError::ControlPlane)?))
        };
        let (stop, stopped) = watch::channel(false);
        let truth = Arc::new(truth::Truth::default());
        let client = match &real {
            None => client::Client::new(api.clone()),
            Some(cp) => {
                let remote = Arc::new(client::remote::Remote::with_truth(
                    cp.url(),
                    cp.ca_pem(),
                    &token,
                    api.clone(),
                    Some(truth.clone()),
                ));
                let c = client::Client::remote(remote.clone(), api.clone());
                bootstrap_real(&c).await?;
                let r = remote.clone();
                let st = stopped.clone();
                tokio::task::spawn_blocking(move || r.start_reflectors(st))
                    .await
                    .unwrap_or_else(|_| {
                        Err(error::ApiError::new(
                            503,
                            "ServiceUnavailable",
                            "mirror start",
                        ))
                    })
                    .map_err(TwinError::Mirror)?;
                c
            }
        };
        // On a real control plane, `bootstrap_real` created these through the API.
        let bootstrap = if embedded { BOOTSTRAP } else { "" };
        for doc in serde_yaml::Deserializer::from_str(bootstrap).filter(|_| embedded) {
            let obj: serde_json::Value =
                serde::Deserialize::deserialize(doc).map_err(|e| TwinError::Bootstrap {
                    what: "bootstrap.yaml".into(),
                    source: error::ApiError::bad_request(e.to_string()),
                })?;
            let what = format!(
                "{}/{}",
                obj["kind"].as_str().unwrap_or(""),
                obj["metadata"]["name"].as_str().unwrap_or("")
            );
            api.install(obj)
                .map_err(|source| TwinError::Bootstrap { what, source })?;
        }
        let ceph_model = Arc::new(std::sync::Mutex::new(None));
        // Real Ceph starts first: missing packages fail the start before anything runs.
        let ceph_backend: Arc<dyn stack::ceph::backend::CephBackend> = match opts.ceph {
            stack::ceph::backend::CephBackendKind::Simulated => {
                Arc::new(stack::ceph::backend::SimulatedCeph::new(
                    ceph_model.clone(),
                    opts.seed,
                    stack::ceph::CephParams::by_name(opts.timing.name)
                        .unwrap_or_else(stack::ceph::CephParams::fast),
                ))
            }
            stack::ceph::backend::CephBackendKind::Real => {
                let o = stack::ceph::real::RealCephOptions {
                    scratch_parent: opts.ceph_scratch.clone(),
                };
                // Blocks until the monitor answers (seconds): off the async workers.
                let started =
                    tokio::task::spawn_blocking(move || stack::ceph::real::RealCeph::start(o))
                        .await
                        .unwrap_or(Err(stack::ceph::real::RealCephError::Gone));
                Arc::new(started.map_err(TwinError::Ceph)?)
            }
        };
        let crashes = Arc::new(crate::ctx::Crashes::default());
        let sim = Arc::new(sim::Sim::default());
        let procs = Arc::new(
            procs::Runtime::new(
                programs,
                opts.ceph_scratch.as_deref(),
                crashes.clone(),
                Arc::downgrade(&sim),
            )
            .map_err(TwinError::Postgres)?,
        );
        let ctx = crate::ctx::Ctx {
            client,
            control_plane: opts.control_plane,
            timing: opts.timing.clone(),
            truth,
            // Distinct from the API's stream so object names do not shift timing.
            rng: Arc::new(std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(
                opts.seed ^ 0x5eed_c0de,
            ))),
            power: Arc::new(crate::ctx::Power::default()),
            crashes,
            sim,
            procs,
            started: std::time::Instant::now(),
            provisioners: Arc::new(crate::ctx::provisioners::Provisioners::default()),
            voldata: Arc::new(voldata::VolumeData::default()),
            ceph: ceph_model,
            ceph_backend,
            seed: opts.seed,
            names: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
            defects: defect_set,
        };
        admission::install(&api, &ctx);
        defects::install(&api, &ctx);
        let assets = if embedded { operators::ASSETS } else { "" };
        for doc in serde_yaml::Deserializer::from_str(assets).filter(|_| embedded) {
            let obj: serde_json::Value =
                serde::Deserialize::deserialize(doc).map_err(|e| TwinError::Bootstrap {
                    what: "operators.yaml".into(),
                    source: error::ApiError::bad_request(e.to_string()),
                })?;
            let what = format!(
                "operators.yaml {}",
                obj["metadata"]["name"].as_str().unwrap_or("")
            );
            api.install(obj)
                .map_err(|source| TwinError::Bootstrap { what, source })?;
        }
        let local_crds: &[serde_json::Value] = if embedded {
            upstream::crds().map_err(|(what, e)| TwinError::Bootstrap {
                what,
                source: error::ApiError::bad_request(e),
            })?
        } else {
            &[]
        };
        for crd in local_crds {
            let what = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
            api.install(crd.clone())
                .map_err(|source| TwinError::Bootstrap { what, source })?;
        }
        let audit = Arc::new(rbac::Audit::default());
        let server = Arc::new(server::Server {
            api: api.clone(),
            token: token.clone(),
            address: addr.to_string(),
            ctx: ctx.clone(),
            users: opts.users.clone(),
            audit: audit.clone(),
            real_api: real.as_ref().map(|r| r.url().to_string()),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let mut stopped = stopped;
        // On a real control plane every call of the simulated world is a blocking HTTPS
        // round trip, so the world runs on threads of its own: on the caller's runtime
        // (the harness's, in `stormdrill run`) a burst of writes after a node lost power
        // held its workers for ~10 s, stalling the load generator (lag p99 4.7 s) and the
        // kubelets' heartbeats until the real node lifecycle controller marked live nodes
        // NotReady. Embedded, the world's calls never leave the process.
        let world = match &real {
            Some(_) => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORLD_THREADS)
                    .thread_name("twin-world")
                    .enable_all()
                    .build()
                    .map_err(TwinError::Runtime)?,
            ),
            None => None,
        };
        let mut controllers = {
            let _on_world = world.as_ref().map(|w| w.enter());
            // The simulated world runs against any control plane; the embedded
            // controllers only when the twin is the control plane.
            let mut tasks = crate::world::spawn_all(ctx.clone(), stopped.clone());
            tasks.extend(controllers::spawn_all(ctx.clone(), stopped.clone()));
            tasks
        };
        // What others call into — the data plane the harness measures, and on a real
        // control plane the kubelet API, the cluster network and the webhooks — runs
        // on threads of its own. The world's controllers make blocking calls to a real
        // apiserver from the main runtime's workers: an apiserver waiting on a webhook
        // served by those workers waited out the webhook's timeout on every write
        // (measured: 3 s each, a 5-minute stack apply), and requests to the data plane
        // waited for a free worker (p99 600 ms where 50 ms is normal).
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("twin-io")
            .enable_all()
            .build()
            .map_err(TwinError::Runtime)?;
        if let Some(cp) = &real {
            controllers.extend(start_network(&ctx, cp, &tls, io.handle(), stopped.clone()).await?);
        }
        {
            let _on_world = world.as_ref().map(|w| w.enter());
            controllers.extend(operators::spawn_all(ctx.clone(), stopped.clone()));
            stack::postgres::install(&ctx);
            stack::harbor::install(&ctx);
            controllers.extend(stack::observability::start(&ctx, stopped.clone()));
            controllers.push(tokio::spawn(defects::run(ctx.clone(), stopped.clone())));
            if opts.postgres == stack::postgres::PostgresBackend::Simulated {
                controllers.push(tokio::spawn(stack::postgres::run(
                    ctx.clone(),
                    stopped.clone(),
                )));
            }
        }
        if let Some(world) = world {
            let mut world_stop = stopped.clone();
            controllers.push(tokio::spawn(async move {
                let _ = world_stop.wait_for(|s| *s).await;
                world.shutdown_background();
            }));
        }
        let api_addr = io
            .spawn(dataplane::start(
                ctx.clone(),
                dataplane::LatencyModel::default(),
                opts.seed,
                stopped.clone(),
            ))
            .await
            .map_err(|e| TwinError::Runtime(std::io::Error::other(e)))?
            .map_err(TwinError::DataPlane)?;
        // The runtime lives until the twin stops.
        let mut io_stop = stopped.clone();
        controllers.push(tokio::spawn(async move {
            let _ = io_stop.wait_for(|s| *s).await;
            io.shutdown_background();
        }));
        let task = tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = stopped.changed() => return,
                };
                let Ok((stream, _)) = conn else { continue };
                // As Go's net package (so kube-apiserver) does: without it, a watch event
                // written right after another waits for the client's delayed ACK (Nagle).
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let server = server.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| server.clone().handle(req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        settle(&ctx).await;
        Ok(Twin {
            addr,
            ca_pem: tls.ca_pem,
            token,
            api,
            ctx,
            api_addr,
            audit,
            stop,
            task: Some(task),
            controllers,
            real,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Kubernetes API: the embedded server, or the real kube-apiserver.
    pub fn url(&self) -> String {
        match &self.real {
            Some(cp) => cp.url().to_string(),
            None => format!("https://{}", self.addr),
        }
    }

    /// The CA of [`Twin::url`]'s serving certificate.
    pub fn ca_pem(&self) -> &str {
        match &self.real {
            Some(cp) => cp.ca_pem(),
            None => &self.ca_pem,
        }
    }

    /// The twin's own server: the provider endpoint (`/twin/v1/...`: node power,
    /// ground truth), and the Kubernetes API too unless a real control plane runs.
    pub fn provider_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig for [`Twin::provider_url`] (the same token).
    pub fn provider_kubeconfig_yaml(&self) -> String {
        kubeconfig(&self.provider_url(), &self.ca_pem, &self.token)
    }

    /// The real control plane, when the twin runs on one.
    pub fn real_control_plane(&self) -> Option<&Arc<controlplane::real::RealControlPlane>> {
        self.real.as_ref()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The twin's API, for in-process controllers and tests.
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// Where the API data plane (Envoy in front of the fastapi pods) listens; clients
    /// find it through the envoy Service's load balancer status, as on a cluster.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The simulated cluster: power, crashes, ground truth, containers.
    pub fn ctx(&self) -> &crate::ctx::Ctx {
        &self.ctx
    }

    /// (group, resource, verb, namespaced) of every resource request clients made.
    pub fn audit(&self) -> Vec<(String, String, String, bool)> {
        self.audit.seen()
    }

    /// [`Twin::kubeconfig_yaml`] for another token (one of `TwinOptions::users`).
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        self.kubeconfig_yaml().replace(
            &format!("token: {}", self.token),
            &format!("token: {token}"),
        )
    }

    /// A kubeconfig (YAML) with cluster, user and context all named `stormdrill-twin`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig(&self.url(), self.ca_pem(), &self.token)
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // Real Ceph daemons are stopped by PID here (blocking: a few hundred ms).
        let backend = self.ctx.ceph_backend.clone();
        let _ = tokio::task::spawn_blocking(move || backend.shutdown()).await;
        // The pods' real processes, by PID (blocking: until they are reaped).
        let procs = self.ctx.procs.clone();
        let _ = tokio::task::spawn_blocking(move || procs.shutdown()).await;
        if let Some(cp) = self.real.clone() {
            let _ = tokio::task::spawn_blocking(move || cp.shutdown()).await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for c in self.controllers.drain(..) {
            let _ = c.await;
        }
    }
}

/// Waits (bounded) until the bare cluster is up — kube-system pods and the stack
/// operators' Deployments Ready — as `kind create cluster` returns a usable cluster.
async fn settle(ctx: &crate::ctx::Ctx) {
    let bound = ctx.timing.container_start.1
        + ctx.timing.readiness.1
        + ctx.timing.node_boot
        + Duration::from_secs(10);
    let deadline = std::time::Instant::now() + bound;
    loop {
        let pods = ctx.client.list("", "pods", Some("kube-system"), None);
        let pods_ready = !pods.is_empty() && pods.iter().all(crate::ctx::obj::is_pod_ready);
        let deployments = ctx.client.list("apps", "deployments", None, None);
        let deployments_ready = deployments.iter().all(|d| {
            let want = d
                .pointer("/spec/replicas")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(1);
            d.pointer("/status/availableReplicas")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0)
                >= want
        });
        if (pods_ready && deployments_ready) || std::time::Instant::now() >= deadline {
            if std::time::Instant::now() >= deadline {
                tracing::warn!("the twin's bare cluster was not fully Ready after {bound:?}");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Handlers registered on `ctx.sim` hold `Ctx` clones, so the backend is never
        // dropped by reference counting: stop its processes here (no-op when done).
        self.ctx.ceph_backend.shutdown();
        self.ctx.procs.shutdown();
        if let Some(cp) = &self.real {
            cp.shutdown();
        }
    }
}

/// A kubeconfig (YAML) with cluster, user and context all named `stormdrill-twin`.
fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: stormdrill-twin\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: stormdrill-twin\n  user:\n    token: {token}\ncontexts:\n- name: stormdrill-twin\n  context:\n    cluster: stormdrill-twin\n    user: stormdrill-twin\n    namespace: default\ncurrent-context: stormdrill-twin\npreferences: {{}}\n"
    )
}

/// The cluster network the real kube-apiserver dials into through its egress proxy:
/// the simulated kubelets' API (one loopback listener for every node) and the pods'
/// ports.
async fn start_network(
    ctx: &crate::ctx::Ctx,
    cp: &controlplane::real::RealControlPlane,
    tls: &tls::TwinTls,
    rt: &tokio::runtime::Handle,
    stopped: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, TwinError> {
    use controlplane::real::{egress, network};
    let scratch = |source| {
        TwinError::ControlPlane(controlplane::real::RealControlPlaneError::Scratch {
            path: cp.egress_socket().to_path_buf(),
            source,
        })
    };
    let kubelet_listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(scratch)?;
    let kubelet_api = kubelet_listener.local_addr().map_err(scratch)?;
    let webhook_listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(scratch)?;
    let webhook_addr = webhook_listener.local_addr().map_err(scratch)?;
    for l in [&kubelet_listener, &webhook_listener] {
        l.set_nonblocking(true).map_err(scratch)?;
    }
    // The apiserver speaks HTTP/1.1 to kubelets (upgrades for exec and port-forward).
    let mut config = (*tls.server_config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let tasks = {
        let _in_network = rt.enter();
        let kubelet = Arc::new(network::TwinKubelet { ctx: ctx.clone() });
        let router = Arc::new(network::TwinNetwork {
            ctx: ctx.clone(),
            kubelet_api,
        });
        vec![
            tokio::spawn(kubelet_api::serve(
                TcpListener::from_std(kubelet_listener).map_err(scratch)?,
                config.clone(),
                kubelet,
                stopped.clone(),
            )),
            tokio::spawn(admission::serve_webhook(
                ctx.clone(),
                TcpListener::from_std(webhook_listener).map_err(scratch)?,
                config,
                stopped.clone(),
            )),
            egress::serve(cp.egress_socket().to_path_buf(), router, stopped.clone())
                .map_err(scratch)?,
        ]
    };
    // Gatekeeper's webhook, and the defects' rewrites, join the real admission chain.
    let base = format!("https://{webhook_addr}");
    let mut webhooks = vec![admission::webhook_configuration(&base, &tls.ca_pem)];
    if !ctx.defects.is_empty() {
        webhooks.push(admission::defects_webhook_configuration(&base, &tls.ca_pem));
    }
    let webhooks = webhooks
        .into_iter()
        .map(|w| ("the twin's webhooks".to_string(), w))
        .collect();
    create_all(&ctx.client, webhooks).await?;
    Ok(tasks)
}

/// Creates the bare cluster's objects on a real API server through the world's
/// client: the nodes, kube-system's CoreDNS and kube-proxy, the operators'
/// Deployments and the upstream CRDs. What the real control plane makes itself
/// (the default namespaces, the `kubernetes` Service) already exists; the embedded
/// control plane's static pods are left out (the real one runs as processes).
async fn bootstrap_real(client: &client::Client) -> Result<(), TwinError> {
    let mut docs: Vec<(String, serde_json::Value)> = Vec::new();
    for (file, text) in [
        ("bootstrap.yaml", BOOTSTRAP),
        ("operators.yaml", operators::ASSETS),
    ] {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let obj: serde_json::Value =
                serde::Deserialize::deserialize(doc).map_err(|e| TwinError::Bootstrap {
                    what: file.into(),
                    source: error::ApiError::bad_request(e.to_string()),
                })?;
            let static_pod = obj["kind"] == "Pod"
                && obj.pointer("/metadata/labels/tier")
                    == Some(&serde_json::json!("control-plane"));
            if !static_pod {
                let mut obj = obj;
                if obj["kind"] == "Node" {
                    // Where the apiserver finds the node's kubelet API (through egress).
                    obj["status"]["daemonEndpoints"] = serde_json::json!({
                        "kubeletEndpoint": {"Port": controlplane::real::network::KUBELET_PORT}
                    });
                }
                docs.push((file.to_string(), obj));
            }
        }
    }
    let crds = upstream::crds().map_err(|(what, e)| TwinError::Bootstrap {
        what,
        source: error::ApiError::bad_request(e),
    })?;
    // Namespaces and CRDs first, as `kubectl apply` orders them.
    let rank = |o: &serde_json::Value| match o["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    };
    let mut all: Vec<(String, serde_json::Value)> = crds
        .iter()
        .map(|c| ("upstream CRDs".to_string(), c.clone()))
        .chain(docs)
        .collect();
    all.sort_by_key(|(_, o)| rank(o));
    create_all(client, all).await
}

/// Creates `(source file, object)`s in order through the world's client (off the
/// async workers: its calls to a real apiserver block); one that exists is kept.
async fn create_all(
    client: &client::Client,
    objects: Vec<(String, serde_json::Value)>,
) -> Result<(), TwinError> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || {
        for (file, obj) in objects {
            let what = format!(
                "{file} {}/{}",
                obj["kind"].as_str().unwrap_or(""),
                obj["metadata"]["name"].as_str().unwrap_or("")
            );
            match client.create(obj) {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(source) => return Err(TwinError::Bootstrap { what, source }),
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|_| {
        Err(TwinError::Bootstrap {
            what: "bootstrap".into(),
            source: error::ApiError::new(500, "InternalError", "bootstrap task died"),
        })
    })
}
