//! `stormdrill up --target kind` and `stormdrill down`: a kind cluster with the
//! documented stack, from nothing or from a half-finished earlier `up` (every step
//! converges), and its removal with the devices it created.
//!
//! The external commands come from [`plan`] as data and go through a [`Runner`]; the
//! stack goes through [`stack::apply_with`] and [`stack::ready::wait_ready`], the same
//! code as every other target. Per cluster, a state folder (`--state-dir`, default
//! `~/.cache/stormdrill/kind/<name>/`) holds the rendered kind config, the kubeconfig,
//! the OSD files (one folder per worker) and `stack/`: a kustomization over
//! fixtures/kind/stack with what depends on this cluster (its OSD devices, the Git
//! source, the API image), which `stormdrill run --target kind` applies too.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    api::{Api, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};
use serde_json::{json, Value};

use crate::{
    stack::{self, kustomize, ready::NotReady, Manifest, StackError},
    target::kind::{
        self,
        plan::{self, PlanError, UpConfig, Worker},
        runner::Runner,
        KindError,
    },
};

/// The reference API's image when `--api-image` is not given (built from fixtures/api).
pub const API_IMAGE: &str = "stormdrill/openalex-api:0.1.0";
/// Where `up`, `down` and kind runs keep per-cluster state, when set.
pub const STATE_ENV: &str = "STORMDRILL_KIND_STATE_DIR";
/// The image name the stack's API Deployment uses, which the overlay replaces.
pub const STACK_API_IMAGE: &str = "registry.local/openalex/fastapi";

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Kind(#[from] KindError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kubeconfig kind printed for cluster {name} is not usable")]
    Kubeconfig {
        name: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot reach the kind cluster {name}")]
    Client {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("`kind` printed no loop device for {file} in {node}: {stdout:?}")]
    Device {
        node: String,
        file: String,
        stdout: String,
    },
    #[error("--registry-mirror: {0}")]
    Mirror(String),
    #[error("Velero's S3 credentials: {0}")]
    S3(String),
    #[error("an external command's task failed: {0}")]
    Join(String),
}

/// What `up` is asked to do.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: String,
    /// fixtures/kind: cluster.yaml, up.yaml, values/, stack/.
    pub kind_dir: PathBuf,
    /// fixtures/ (the API image's build context).
    pub fixtures: PathBuf,
    /// Where per-cluster state lives (`<state_dir>/<name>/`).
    pub state_dir: PathBuf,
    /// The API's image; None: build the reference API and load it into the nodes.
    pub api_image: Option<String>,
    /// Flux's Git source (GitRepository flux-system); None: none is created.
    pub gitops_url: Option<String>,
    pub gitops_branch: String,
    /// Size of each OSD file.
    pub osd_size_gb: u64,
    /// A Docker Hub mirror the nodes pull through (`--registry-mirror`); None: Docker
    /// Hub directly, under its anonymous pull limit.
    pub registry_mirror: Option<String>,
    /// Caps every readiness deadline (tests); None: up.yaml's deadlines.
    pub max_wait: Option<Duration>,
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    pub created: bool,
    pub kubeconfig: PathBuf,
    pub stack: PathBuf,
    pub not_ready: Vec<NotReady>,
}

/// `$STORMDRILL_KIND_STATE_DIR`, else `$XDG_CACHE_HOME/stormdrill/kind`, else
/// `~/.cache/stormdrill/kind`, else a temp folder.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_ENV) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("stormdrill").join("kind")
}

/// The stack a kind run applies: `up`'s generated overlay when there is one, else
/// fixtures/kind/stack; an explicit `--stack` (not the default) wins.
pub fn stack_for_run(name: Option<&str>, given: &Path, state_dir: &Path) -> PathBuf {
    if given != Path::new("fixtures/stack") {
        return given.to_owned();
    }
    let generated = state_dir
        .join(name.unwrap_or(kind::DEFAULT_NAME))
        .join("stack");
    if generated.join(kustomize::FILE).is_file() {
        generated
    } else {
        PathBuf::from("fixtures/kind/stack")
    }
}

fn write(path: &Path, text: &str) -> Result<(), UpError> {
    let io = |source| UpError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io)
}

/// A sparse file of `size` bytes (created or grown; an existing bigger one is kept,
/// its OSD's data with it).
fn sparse_file(path: &Path, size: u64) -> Result<(), UpError> {
    let io = |source| UpError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    if f.metadata().map_err(io)?.len() < size {
        f.set_len(size).map_err(io)?;
    }
    Ok(())
}

/// Runs one plan command on a blocking thread, telling `say` first.
async fn step(
    runner: &Arc<dyn Runner>,
    cmd: plan::Cmd,
    say: &(dyn Fn(&str) + Sync),
) -> Result<kind::runner::Output, UpError> {
    say(&format!("{}: {}", cmd.what, cmd.display()));
    let r = runner.clone();
    tokio::task::spawn_blocking(move || kind::run_ok(r.as_ref(), &cmd))
        .await
        .map_err(|e| UpError::Join(e.to_string()))?
        .map_err(UpError::from)
}

/// `to` relative to the folder `from`, both absolute and canonical (`../../x/y`):
/// kustomize refuses an absolute resource ("new root cannot be absolute").
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The generated overlay for this cluster: fixtures/kind/stack plus its OSD devices,
/// the Git source and the API image. Written as a kustomization (`kubectl kustomize`
/// shows it; fixtures/kind/stack is named relative to it, as kustomize requires) and
/// returned built.
fn write_cluster_overlay(
    opts: &UpOptions,
    dir: &Path,
    devices: &[(Worker, Vec<String>)],
    image: &str,
) -> Result<Vec<Manifest>, UpError> {
    let canonical = |p: &Path| {
        std::fs::canonicalize(p).map_err(|source| UpError::Write {
            path: p.to_owned(),
            source,
        })
    };
    let base = canonical(&opts.kind_dir.join("stack"))?;
    std::fs::create_dir_all(dir).map_err(|source| UpError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let base = relative_path(&canonical(dir)?, &base);
    let mut resources = vec![json!(base.display().to_string())];
    if let Some(url) = &opts.gitops_url {
        let repo = plan::git_repository(url, &opts.gitops_branch);
        write(&dir.join("gitrepository.yaml"), &to_yaml(&repo))?;
        resources.push(json!("gitrepository.yaml"));
    }
    write(
        &dir.join("ceph-nodes.yaml"),
        &to_yaml(&plan::ceph_nodes_patch(devices)),
    )?;
    // After the base overlay, the API's image already carries the reference image's name.
    let reference = API_IMAGE.split(':').next().unwrap_or(API_IMAGE);
    let image = kustomize::Image::parse(image);
    let mut entry = json!({"name": reference, "newName": image.name});
    match (&image.digest, &image.tag) {
        (Some(d), _) => entry["digest"] = json!(d),
        (None, Some(t)) => entry["newTag"] = json!(t),
        (None, None) => {}
    }
    let k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
        "patches": [{"path": "ceph-nodes.yaml"}],
        "images": [entry],
    });
    let header = "# Generated by `stormdrill up --target kind` for this cluster: fixtures/kind/stack,\n# this cluster's OSD devices, its Git source and its API image. Rewritten by each `up`.\n";
    write(
        &dir.join(kustomize::FILE),
        &format!("{header}{}", to_yaml(&k)),
    )?;
    Ok(stack::load_dir(dir)?)
}

fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

/// Brings the kind cluster `opts.name` up with the stack; converges when it exists.
/// The caller has checked the tools ([`kind::check_tools`]).
pub async fn up(
    opts: &UpOptions,
    runner: Arc<dyn Runner>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<UpReport, UpError> {
    let started = Instant::now();
    let up_config = UpConfig::load(&opts.kind_dir.join("up.yaml"))?;
    if let Some(m) = &opts.registry_mirror {
        plan::check_mirror(m).map_err(UpError::Mirror)?;
    }
    let cluster_dir = opts.state_dir.join(&opts.name);
    let (mut config, workers) = plan::render_cluster(
        &opts.kind_dir.join("cluster.yaml"),
        &opts.name,
        &opts.state_dir,
    )?;
    if opts.registry_mirror.is_some() {
        plan::use_registry_hosts(&mut config);
    }
    let rendered = cluster_dir.join("cluster.yaml");
    write(&rendered, &to_yaml(&config))?;

    step(&runner, plan::docker_info(), say).await?;
    let listed = step(&runner, plan::get_clusters(), say).await?;
    let exists = plan::cluster_listed(&listed.stdout, &opts.name);
    // The OSD files first: kind mounts their folders when it creates the nodes.
    for w in &workers {
        for (file, _) in plan::OSD_DEVICES {
            sparse_file(&w.host_dir.join(file), opts.osd_size_gb << 30)?;
        }
    }
    if exists {
        say(&format!("kind cluster {} exists: converging", opts.name));
    } else {
        step(&runner, plan::create_cluster(&opts.name, &rendered), say).await?;
    }
    let kubeconfig_yaml = step(&runner, plan::get_kubeconfig(&opts.name), say)
        .await?
        .stdout;
    let kubeconfig = cluster_dir.join("kubeconfig");
    write(&kubeconfig, &kubeconfig_yaml)?;
    // Before any chart pulls. On a cluster created without the mirror, containerd was
    // not told to read these files (kind writes its config at creation): no effect.
    if let Some(mirror) = &opts.registry_mirror {
        let nodes = std::iter::once(plan::control_plane(&opts.name))
            .chain(workers.iter().map(|w| w.node.clone()));
        for node in nodes {
            step(&runner, plan::docker_hub_mirror(&node, mirror), say).await?;
        }
    }

    let mut devices = Vec::new();
    for w in &workers {
        let mut devs = Vec::new();
        for (file, _) in plan::OSD_DEVICES {
            let out = step(&runner, plan::attach_device(w, file), say).await?;
            let dev = plan::parse_device(&out.stdout).ok_or_else(|| UpError::Device {
                node: w.node.clone(),
                file: file.to_owned(),
                stdout: out.stdout.clone(),
            })?;
            devs.push(dev);
        }
        say(&format!(
            "{} ({}): OSD devices {}",
            w.node,
            w.label,
            devs.join(", ")
        ));
        devices.push((w.clone(), devs));
    }

    let image = match &opts.api_image {
        Some(image) => image.clone(),
        None => {
            step(
                &runner,
                plan::build_api_image(API_IMAGE, &opts.fixtures),
                say,
            )
            .await?;
            step(&runner, plan::load_image(&opts.name, API_IMAGE), say).await?;
            API_IMAGE.to_owned()
        }
    };
    for chart in &up_config.charts {
        step(
            &runner,
            plan::helm_install(chart, &opts.kind_dir, &kubeconfig),
            say,
        )
        .await?;
    }

    let client = client(&opts.name, &kubeconfig_yaml).await?;
    let stack_dir = cluster_dir.join("stack");
    let manifests = write_cluster_overlay(opts, &stack_dir, &devices, &image)?;
    say(&format!(
        "applying the stack ({} objects, {})",
        manifests.len(),
        stack_dir.display()
    ));
    let applied = stack::apply_with(
        &client,
        &manifests,
        stack::ApplyOptions {
            kind_wait: cap(opts, Duration::from_secs(300)),
            dry_run: false,
        },
        |_| {},
    )
    .await?;
    say(&format!(
        "applied {} objects in {:.0?}; waiting for each part of the stack",
        applied.applied.len(),
        applied.elapsed
    ));
    let velero_deadline = cap(opts, up_config.deadline("20-velero.yaml"));
    let (s3, not_ready) = tokio::join!(
        copy_s3_credentials(&client, velero_deadline),
        wait_components(&client, &manifests, &up_config, opts, say)
    );
    match s3 {
        Ok(()) => say("velero: S3 credentials copied from the Rook bucket claim"),
        // Not fatal: the wait lists Velero's objects as not ready, with the reason here.
        Err(e) => say(&format!("velero: {}", crate::diag::one_line(&e))),
    }
    let not_ready = not_ready?;
    say(&format!("up took {:.0?}", started.elapsed()));
    Ok(UpReport {
        created: !exists,
        kubeconfig,
        stack: stack_dir,
        not_ready,
    })
}

fn cap(opts: &UpOptions, d: Duration) -> Duration {
    opts.max_wait.map_or(d, |m| d.min(m))
}

async fn client(name: &str, yaml: &str) -> Result<Client, UpError> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|source| UpError::Kubeconfig {
        name: name.to_owned(),
        source,
    })?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| UpError::Kubeconfig {
            name: name.to_owned(),
            source,
        })?;
    // Every wait here has its own deadline (see target::client_from_config).
    config.default_retry = false;
    Client::try_from(config).map_err(|source| UpError::Client {
        name: name.to_owned(),
        source,
    })
}

/// Waits for each part of the stack (its source file) under its own deadline, all at
/// once, telling `say` as each part gets ready.
async fn wait_components(
    client: &Client,
    manifests: &[Manifest],
    config: &UpConfig,
    opts: &UpOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Vec<NotReady>, UpError> {
    let mut parts: Vec<(String, Vec<Manifest>)> = Vec::new();
    for m in manifests {
        let file = m
            .path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        match parts.iter_mut().find(|(f, _)| *f == file) {
            Some((_, ms)) => ms.push(m.clone()),
            None => parts.push((file, vec![m.clone()])),
        }
    }
    let started = Instant::now();
    let waits = parts.iter().map(|(file, ms)| async move {
        let deadline = cap(opts, config.deadline(file));
        let r = stack::ready::wait_ready(client, ms, deadline).await;
        match &r {
            Ok(nr) if nr.is_empty() => say(&format!(
                "ready: {file} ({} objects) after {:.0?}",
                ms.len(),
                started.elapsed()
            )),
            Ok(nr) => say(&format!(
                "not ready at its {}s deadline: {file}: {}",
                deadline.as_secs(),
                nr.iter()
                    .map(|n| format!("{} ({})", n.object, n.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(_) => {}
        }
        r
    });
    let mut not_ready = Vec::new();
    for r in futures::future::join_all(waits).await {
        not_ready.extend(r?);
    }
    Ok(not_ready)
}

/// Rewrites the Rook bucket claim's keys (Secret velero/velero) as the credentials
/// file Velero's AWS plugin reads (Secret velero/velero-s3, key `cloud`).
async fn copy_s3_credentials(client: &Client, within: Duration) -> Result<(), UpError> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "velero");
    let started = Instant::now();
    let source = loop {
        match secrets.get_opt("velero").await {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() < within => {
                tokio::time::sleep(Duration::from_secs(5)).await
            }
            Ok(None) => {
                return Err(UpError::S3(format!(
                    "Rook did not answer the bucket claim velero/velero within {}s (is the object store rgw Ready?)",
                    within.as_secs()
                )))
            }
            Err(e) => return Err(UpError::S3(format!("reading Secret velero/velero: {e}"))),
        }
    };
    let key = |k: &str| {
        source
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| UpError::S3(format!("Secret velero/velero has no {k}")))
    };
    let cloud = format!(
        "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
        key("AWS_ACCESS_KEY_ID")?,
        key("AWS_SECRET_ACCESS_KEY")?
    );
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "velero-s3", "namespace": "velero"},
        "stringData": {"cloud": cloud},
    });
    secrets
        .patch(
            "velero-s3",
            &PatchParams::apply(stack::FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|e| UpError::S3(format!("writing Secret velero/velero-s3: {e}")))?;
    Ok(())
}

/// What `down` is asked to do.
#[derive(Clone, Debug)]
pub struct DownOptions {
    pub name: String,
    pub kind_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// Deletes the kind cluster (after detaching its OSD loop devices, which would
/// otherwise outlive the node containers) and the cluster's state folder. Returns what
/// it removed, for the user.
pub async fn down(
    opts: &DownOptions,
    runner: Arc<dyn Runner>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Vec<String>, UpError> {
    let mut removed = Vec::new();
    let listed = step(&runner, plan::get_clusters(), say).await?;
    let cluster_dir = opts.state_dir.join(&opts.name);
    if plan::cluster_listed(&listed.stdout, &opts.name) {
        let (_, workers) = plan::render_cluster(
            &opts.kind_dir.join("cluster.yaml"),
            &opts.name,
            &opts.state_dir,
        )?;
        for w in &workers {
            // A stopped node cannot detach: its devices go with the node's kernel
            // references, and kind's delete still succeeds. Say so, and go on.
            if let Err(e) = step(&runner, plan::detach_devices(w), say).await {
                say(&format!(
                    "could not detach {}'s devices: {}",
                    w.node,
                    crate::diag::one_line(&e)
                ));
            }
        }
        step(&runner, plan::delete_cluster(&opts.name), say).await?;
        removed.push(format!("kind cluster {}", opts.name));
    } else {
        say(&format!("no kind cluster {}", opts.name));
    }
    if cluster_dir.exists() {
        std::fs::remove_dir_all(&cluster_dir).map_err(|source| UpError::Write {
            path: cluster_dir.clone(),
            source,
        })?;
        removed.push(format!(
            "{} (OSD files, kubeconfig, generated stack)",
            cluster_dir.display()
        ));
    }
    Ok(removed)
}

/// `stormdrill up --target kind`: checks the tools, runs [`up`] with progress on
/// stderr, prints what to run next. Ok(false): up, but not every part is ready.
pub async fn up_command(args: &crate::cli::UpArgs) -> Result<bool, UpError> {
    let runner = kind::runner::ProcessRunner::default();
    kind::check_tools(&runner, &kind::UP_TOOLS, "`stormdrill up --target kind`")?;
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let opts = UpOptions {
        name: args.name.clone(),
        fixtures: args
            .kind_dir
            .parent()
            .map_or_else(|| PathBuf::from("fixtures"), Path::to_owned),
        kind_dir: args.kind_dir.clone(),
        state_dir,
        api_image: args.api_image.clone(),
        gitops_url: args.gitops_url.clone(),
        gitops_branch: args.gitops_branch.clone(),
        osd_size_gb: args.osd_size_gb,
        registry_mirror: args.registry_mirror.clone(),
        max_wait: None,
    };
    if opts.gitops_url.is_none() {
        eprintln!(
            "up: no --gitops-url (or $STORMDRILL_GITOPS_URL): Flux gets no Git source, so its \
             Kustomizations stay not Ready (phase 5's GitOps check fails on this cluster)"
        );
    }
    let say = |line: &str| eprintln!("up: {line}");
    let report = up(&opts, Arc::new(runner), &say).await?;
    let name = &opts.name;
    let named = if name == kind::DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {name}")
    };
    println!(
        "kind cluster {name} {}; kubeconfig {} (context kind-{name})",
        if report.created {
            "created"
        } else {
            "converged"
        },
        report.kubeconfig.display()
    );
    for nr in &report.not_ready {
        println!("  not ready: {}: {}", nr.object, nr.reason);
    }
    println!("next:");
    println!("  stormdrill run features/ --target kind{named} --tags @nightly");
    println!("  kubectl --context kind-{name} get pods -A");
    println!("  stormdrill down{named}");
    Ok(report.not_ready.is_empty())
}

/// `stormdrill down`.
pub async fn down_command(args: &crate::cli::DownArgs) -> Result<(), UpError> {
    let runner = kind::runner::ProcessRunner::default();
    kind::check_tools(&runner, &kind::TARGET_TOOLS, "`stormdrill down`")?;
    let opts = DownOptions {
        name: args.name.clone(),
        kind_dir: args.kind_dir.clone(),
        state_dir: args.state_dir.clone().unwrap_or_else(default_state_dir),
    };
    let say = |line: &str| eprintln!("down: {line}");
    let removed = down(&opts, Arc::new(runner), &say).await?;
    if removed.is_empty() {
        println!("nothing to remove for kind cluster {}", opts.name);
    }
    for r in removed {
        println!("removed {r}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_bases_are_relative() {
        assert_eq!(
            relative_path(
                Path::new("/home/u/.cache/sd/t/stack"),
                Path::new("/work/main/fixtures/kind/stack")
            ),
            PathBuf::from("../../../../../../work/main/fixtures/kind/stack")
        );
        assert_eq!(
            relative_path(Path::new("/a/b"), Path::new("/a/c/d")),
            PathBuf::from("../c/d")
        );
        assert_eq!(
            relative_path(Path::new("/a"), Path::new("/a")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn sparse_files_grow_but_never_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/osd.img");
        sparse_file(&p, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        sparse_file(&p, 1 << 10).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_kind_run_applies_the_generated_overlay_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let default = Path::new("fixtures/stack");
        assert_eq!(
            stack_for_run(None, default, dir.path()),
            PathBuf::from("fixtures/kind/stack")
        );
        let generated = dir.path().join("stormdrill/stack");
        std::fs::create_dir_all(&generated).unwrap();
        std::fs::write(generated.join(kustomize::FILE), "resources: []\n").unwrap();
        assert_eq!(stack_for_run(None, default, dir.path()), generated);
        assert_eq!(
            stack_for_run(None, Path::new("my/stack"), dir.path()),
            PathBuf::from("my/stack")
        );
    }
}
