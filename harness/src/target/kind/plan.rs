//! The commands `stormdrill up --target kind` and `stormdrill down` run, as data: each
//! an argv list with what it is for and how long it may take. Pure functions of the
//! configuration (and of what earlier commands printed), so tests check the argument
//! lists without Docker, kind or Helm.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{json, Value};

/// One command of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    /// What it does, for progress lines and errors.
    pub what: String,
    pub timeout: Duration,
}

impl Cmd {
    pub fn new<I, S>(what: &str, argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            what: what.to_owned(),
            timeout: Duration::from_secs(120),
        }
    }

    fn within(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// The command line, shell-quoted where needed, for messages.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Under which folder the OSD files live inside a worker: each worker mounts its own
/// folder at `OSD_MOUNT/<cluster>/<label>` (see [`Worker::osd_dir`]).
pub const OSD_MOUNT: &str = "/var/lib/stormdrill/osd";
/// The two OSDs of each worker: file name and Ceph device class.
pub const OSD_DEVICES: [(&str, &str); 2] = [("osd-nvme.img", "nvme"), ("osd-hdd.img", "hdd")];
/// The label naming the production node a worker stands for.
pub const NODE_LABEL: &str = "stormdrill.io/node";

/// One kind worker: its container (= node) name, the production node it stands for,
/// the host folder holding its OSD files and where the worker sees that folder.
///
/// Each worker (of each cluster) sees its files under its own path: loop devices are
/// the host kernel's, and the kernel records a device's backing file by the path the
/// attaching node saw. With one path for every worker, `losetup -j` in one worker
/// would list the devices another worker attached, and the worker would adopt them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub node: String,
    pub label: String,
    pub host_dir: PathBuf,
    /// The extraMount's containerPath: `OSD_MOUNT/<cluster>/<label>`.
    pub osd_dir: String,
}

impl Worker {
    /// The OSD folder of worker `label` of cluster `cluster`, inside the node.
    pub fn osd_dir_for(cluster: &str, label: &str) -> String {
        format!("{OSD_MOUNT}/{cluster}/{label}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not valid YAML", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|source| PlanError::Yaml {
        path: path.to_owned(),
        line: source.location().map_or(0, |l| l.line()),
        source,
    })
}

/// `fixtures/kind/cluster.yaml` rendered for cluster `name`: its name set, and each
/// worker's OSD mount (the extraMount whose containerPath is under [`OSD_MOUNT`])
/// pointed at `devices_dir/<name>/<label>` on the host and at
/// `OSD_MOUNT/<name>/<label>` in the node. Returns the config and the workers in
/// kind's naming order (`N-worker`, `N-worker2`, ...).
pub fn render_cluster(
    config_path: &Path,
    name: &str,
    devices_dir: &Path,
) -> Result<(Value, Vec<Worker>), PlanError> {
    let mut config: Value = read_yaml(config_path)?;
    let invalid = |what: String| PlanError::Invalid {
        path: config_path.to_owned(),
        what,
    };
    if config["kind"] != "Cluster" || config["apiVersion"] != "kind.x-k8s.io/v1alpha4" {
        return Err(invalid(
            "not a kind cluster config (kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4)".into(),
        ));
    }
    config["name"] = json!(name);
    let mut workers = Vec::new();
    let nodes = config["nodes"]
        .as_array_mut()
        .ok_or_else(|| invalid("no `nodes` list".into()))?;
    for node in nodes.iter_mut().filter(|n| n["role"] == "worker") {
        let label = node["labels"][NODE_LABEL]
            .as_str()
            .ok_or_else(|| invalid(format!("a worker has no `{NODE_LABEL}` label")))?
            .to_owned();
        let host_dir = devices_dir.join(name).join(&label);
        let osd_dir = Worker::osd_dir_for(name, &label);
        let mount = node["extraMounts"]
            .as_array_mut()
            .and_then(|ms| {
                ms.iter_mut().find(|m| {
                    m["containerPath"]
                        .as_str()
                        .is_some_and(|p| p == OSD_MOUNT || p.starts_with(&format!("{OSD_MOUNT}/")))
                })
            })
            .ok_or_else(|| {
                invalid(format!(
                    "worker {label} has no extraMount with a containerPath under {OSD_MOUNT}"
                ))
            })?;
        mount["hostPath"] = json!(host_dir.display().to_string());
        mount["containerPath"] = json!(osd_dir);
        // kind names workers N-worker, N-worker2, N-worker3 in config order.
        let node = match workers.len() {
            0 => format!("{name}-worker"),
            i => format!("{name}-worker{}", i + 1),
        };
        workers.push(Worker {
            node,
            label,
            host_dir,
            osd_dir,
        });
    }
    if workers.is_empty() {
        return Err(invalid("no worker nodes".into()));
    }
    Ok((config, workers))
}

/// The control plane's container name.
pub fn control_plane(name: &str) -> String {
    format!("{name}-control-plane")
}

pub fn get_clusters() -> Cmd {
    Cmd::new("list kind clusters", ["kind", "get", "clusters"])
}

/// Whether `kind get clusters` listed `name`.
pub fn cluster_listed(stdout: &str, name: &str) -> bool {
    stdout.lines().any(|l| l.trim() == name)
}

pub fn docker_info() -> Cmd {
    Cmd::new(
        "check that the Docker engine answers",
        ["docker", "info", "--format", "{{.ServerVersion}}"],
    )
    .within(Duration::from_secs(30))
}

pub fn create_cluster(name: &str, rendered_config: &Path) -> Cmd {
    Cmd::new(
        "create the kind cluster",
        [
            "kind",
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            &rendered_config.display().to_string(),
            "--wait",
            "300s",
        ],
    )
    .within(Duration::from_secs(900))
}

pub fn get_kubeconfig(name: &str) -> Cmd {
    Cmd::new(
        "read the cluster's kubeconfig",
        ["kind", "get", "kubeconfig", "--name", name],
    )
}

/// `docker port` of the control plane: where its published ports are on the host.
pub fn control_plane_ports(name: &str) -> Cmd {
    Cmd::new(
        "read the control plane's published ports",
        ["docker", "port", &control_plane(name)],
    )
    .within(Duration::from_secs(30))
}

/// Attaches `file` (in the worker's own OSD folder) to a loop device inside the worker
/// and prints the device; reuses the loop device already backed by this very file
/// (same path and same inode: `losetup -j` matches by path only), so `up` converges.
/// The device node is created in the node's /dev when the kernel made it after the
/// node started (a privileged container only gets the devices present at its start).
pub fn attach_device(worker: &Worker, file: &str) -> Cmd {
    let script = format!(
        r#"set -eu
f={dir}/{file}
ino=$(stat -c %i "$f")
dev=""
for d in $(losetup -j "$f" | cut -d: -f1); do
  if [ "$(losetup -n -O BACK-INO "$d" | tr -d ' ')" = "$ino" ]; then dev=$d; break; fi
done
if [ -z "$dev" ]; then
  dev=$(losetup -f)
  [ -b "$dev" ] || mknod "$dev" b 7 "${{dev#/dev/loop}}"
  losetup "$dev" "$f"
fi
echo "$dev""#,
        dir = worker.osd_dir
    );
    Cmd::new(
        &format!("attach {file} to a loop device in {}", worker.node),
        ["docker", "exec", &worker.node, "sh", "-c", &script],
    )
    .within(Duration::from_secs(60))
}

/// Detaches the loop devices backed by the worker's own OSD files (before the node
/// goes); another worker's devices, backed by files at other paths, are left alone.
pub fn detach_devices(worker: &Worker) -> Cmd {
    let files: Vec<String> = OSD_DEVICES
        .iter()
        .map(|(f, _)| format!("{}/{f}", worker.osd_dir))
        .collect();
    let script = format!(
        "for f in {}; do losetup -j \"$f\" | cut -d: -f1 | while read -r d; do losetup -d \"$d\"; done; done",
        files.join(" ")
    );
    Cmd::new(
        &format!("detach the OSD loop devices of {}", worker.node),
        ["docker", "exec", &worker.node, "sh", "-c", &script],
    )
    .within(Duration::from_secs(60))
}

pub fn delete_cluster(name: &str) -> Cmd {
    Cmd::new(
        "delete the kind cluster",
        ["kind", "delete", "cluster", "--name", name],
    )
    .within(Duration::from_secs(300))
}

/// The reference API's image, built from fixtures/ (its Dockerfile reads
/// fixtures/sample/ too). Without provenance and SBOM attestations: BuildKit adds them
/// by default, which makes the image an index that `kind load docker-image` cannot
/// import when Docker uses the containerd image store (`ctr: content digest ...: not
/// found`). Needs BuildKit (`docker build` is buildx since Docker 23).
pub fn build_api_image(image: &str, fixtures: &Path) -> Cmd {
    Cmd::new(
        "build the reference API image (fixtures/api)",
        [
            "docker",
            "build",
            "--provenance=false",
            "--sbom=false",
            "--tag",
            image,
            "--file",
            &fixtures.join("api/Dockerfile").display().to_string(),
            &fixtures.display().to_string(),
        ],
    )
    .within(Duration::from_secs(900))
}

pub fn load_image(name: &str, image: &str) -> Cmd {
    Cmd::new(
        "load the API image into the kind nodes",
        ["kind", "load", "docker-image", image, "--name", name],
    )
    .within(Duration::from_secs(600))
}

/// Where containerd 1.7 (kind's nodes) reads one `hosts.toml` per registry, at each
/// pull, once its `config_path` names the folder.
pub const REGISTRY_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// Turns on containerd's per-registry host files in the rendered kind config (a
/// `containerdConfigPatches` entry, which kind applies when it creates the nodes), so
/// that [`docker_hub_mirror`] can send Docker Hub pulls to a mirror.
pub fn use_registry_hosts(config: &mut Value) {
    let patch = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{REGISTRY_HOSTS_DIR}\"\n"
    );
    match config["containerdConfigPatches"].as_array_mut() {
        Some(patches) => patches.push(json!(patch)),
        None => config["containerdConfigPatches"] = json!([patch]),
    }
}

/// A registry mirror URL as `--registry-mirror` takes it: http(s), a host, no
/// characters that would break the TOML string it is written into.
pub fn check_mirror(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("registry mirror {url:?}: not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("registry mirror {url:?}: no host"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\".contains(c))
    {
        return Err(format!("registry mirror {url:?}: has spaces or quotes"));
    }
    Ok(())
}

/// Docker Hub pulls of `node` go to `mirror` first and to Docker Hub itself when the
/// mirror fails (containerd's hosts.toml: hosts in order, then `server`). Every node
/// pulls for itself, anonymously: a DaemonSet's image is pulled once per node, and
/// Docker Hub limits anonymous pulls per address.
pub fn docker_hub_mirror(node: &str, mirror: &str) -> Cmd {
    let dir = format!("{REGISTRY_HOSTS_DIR}/docker.io");
    let hosts = format!(
        "server = \"https://registry-1.docker.io\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    Cmd::new(
        &format!("send {node}'s Docker Hub pulls to the mirror"),
        [
            "docker",
            "exec",
            node,
            "sh",
            "-c",
            &format!("mkdir -p {dir} && printf '%s' \"$1\" > {dir}/hosts.toml"),
            "sh",
            &hosts,
        ],
    )
    .within(Duration::from_secs(30))
}

/// `fixtures/kind/up.yaml`: the charts and the stack's deadlines.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpConfig {
    pub charts: Vec<Chart>,
    /// Readiness deadline (seconds) per stack file name; `overlay` for the overlay's own.
    pub deadlines: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Chart {
    pub release: String,
    /// A chart name in `repo`, or an `oci://` reference.
    pub chart: String,
    #[serde(default)]
    pub repo: Option<String>,
    pub version: String,
    pub namespace: String,
    /// Relative to the folder of up.yaml.
    pub values: PathBuf,
    /// `helm --wait` bound in seconds; 0: no wait.
    pub wait_s: u64,
}

impl UpConfig {
    pub fn load(path: &Path) -> Result<UpConfig, PlanError> {
        let config: UpConfig = read_yaml(path)?;
        for c in &config.charts {
            let pinned = !c.version.is_empty() && !c.version.contains(['*', '^', '~', 'x']);
            if !pinned {
                return Err(PlanError::Invalid {
                    path: path.to_owned(),
                    what: format!(
                        "chart {} needs a pinned version, not {:?}",
                        c.release, c.version
                    ),
                });
            }
            if c.repo.is_none() != c.chart.starts_with("oci://") {
                return Err(PlanError::Invalid {
                    path: path.to_owned(),
                    what: format!(
                        "chart {}: give `repo` for a repository chart, none for an oci:// one",
                        c.release
                    ),
                });
            }
        }
        Ok(config)
    }

    /// The deadline of a stack file (by name), else of the overlay's objects.
    pub fn deadline(&self, file: &str) -> Duration {
        let secs = self
            .deadlines
            .get(file)
            .or_else(|| self.deadlines.get("overlay"))
            .copied()
            .unwrap_or(900);
        Duration::from_secs(secs)
    }
}

/// `helm upgrade --install` of one chart into the cluster of `kubeconfig`.
pub fn helm_install(chart: &Chart, kind_dir: &Path, kubeconfig: &Path) -> Cmd {
    let mut argv: Vec<String> = ["helm", "upgrade", "--install", &chart.release, &chart.chart]
        .map(String::from)
        .into();
    if let Some(repo) = &chart.repo {
        argv.extend(["--repo".into(), repo.clone()]);
    }
    argv.extend(
        [
            "--version",
            &chart.version,
            "--namespace",
            &chart.namespace,
            "--create-namespace",
            "--values",
            &kind_dir.join(&chart.values).display().to_string(),
            "--kubeconfig",
            &kubeconfig.display().to_string(),
        ]
        .map(String::from),
    );
    let mut timeout = Duration::from_secs(300);
    if chart.wait_s > 0 {
        argv.extend([
            "--wait".into(),
            "--timeout".into(),
            format!("{}s", chart.wait_s),
        ]);
        // Helm's own bound plus time to pull the chart.
        timeout = Duration::from_secs(chart.wait_s + 120);
    }
    Cmd {
        argv,
        what: format!("install {} {} (Helm)", chart.release, chart.version),
        timeout,
    }
}

/// The CephCluster patch naming each worker's OSD devices: `devices[worker]` are the
/// loop devices in [`OSD_DEVICES`] order.
pub fn ceph_nodes_patch(devices: &[(Worker, Vec<String>)]) -> Value {
    let nodes: Vec<Value> = devices
        .iter()
        .map(|(w, devs)| {
            let devices: Vec<Value> = devs
                .iter()
                .zip(OSD_DEVICES)
                .map(|(dev, (_, class))| {
                    json!({"name": dev.trim_start_matches("/dev/"), "config": {"deviceClass": class}})
                })
                .collect();
            json!({"name": w.node, "devices": devices})
        })
        .collect();
    json!({
        "apiVersion": "ceph.rook.io/v1",
        "kind": "CephCluster",
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
        "spec": {"storage": {"nodes": nodes}}
    })
}

/// Flux's source on kind: the repository holding fixtures/kind/gitops/.
pub fn git_repository(url: &str, branch: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {"interval": "10m", "url": url, "ref": {"branch": branch}}
    })
}

/// A loop device path as `attach_device` prints it.
pub fn parse_device(stdout: &str) -> Option<String> {
    let dev = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    (dev.starts_with("/dev/loop") && dev["/dev/loop".len()..].chars().all(|c| c.is_ascii_digit()))
        .then(|| dev.to_owned())
}

/// `docker port` output (`30443/tcp -> 127.0.0.1:8443`) as (container port, host address).
pub fn parse_ports(stdout: &str) -> Vec<(u16, std::net::SocketAddr)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (inner, host) = l.split_once("->")?;
            let port = inner.trim().split('/').next()?.parse().ok()?;
            let host = host.trim().parse().ok()?;
            Some((port, host))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }

    #[test]
    fn the_cluster_config_renders_per_cluster() {
        let (config, workers) = render_cluster(
            &fixtures().join("kind/cluster.yaml"),
            "drill",
            Path::new("/var/cache/sd"),
        )
        .unwrap();
        assert_eq!(config["name"], "drill");
        let names: Vec<_> = workers
            .iter()
            .map(|w| (w.node.as_str(), w.label.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("drill-worker", "dirqual1"),
                ("drill-worker2", "dirqual2"),
                ("drill-worker3", "dirqual3")
            ]
        );
        assert_eq!(
            config["nodes"][2]["extraMounts"][0]["hostPath"],
            "/var/cache/sd/drill/dirqual2"
        );
        // Each worker sees its files under its own path (per cluster, per worker).
        assert_eq!(
            config["nodes"][2]["extraMounts"][0]["containerPath"],
            "/var/lib/stormdrill/osd/drill/dirqual2"
        );
        let dirs: std::collections::BTreeSet<_> = workers.iter().map(|w| &w.osd_dir).collect();
        assert_eq!(dirs.len(), 3);
        assert_eq!(config["nodes"][0]["role"], "control-plane");
        // kind picks the host ports (no fixed 8443/8080 to clash with).
        for m in config["nodes"][0]["extraPortMappings"].as_array().unwrap() {
            assert!(m.get("hostPort").is_none(), "{m}");
        }
    }

    #[test]
    fn helm_commands_pin_versions_and_wait_when_asked() {
        let kind_dir = fixtures().join("kind");
        let up = UpConfig::load(&kind_dir.join("up.yaml")).unwrap();
        let rook = &up.charts[0];
        let cmd = helm_install(rook, Path::new("/k"), Path::new("/s/kubeconfig"));
        assert_eq!(
            cmd.argv,
            [
                "helm",
                "upgrade",
                "--install",
                "rook-ceph",
                "rook-ceph",
                "--repo",
                "https://charts.rook.io/release",
                "--version",
                "v1.15.5",
                "--namespace",
                "rook-ceph",
                "--create-namespace",
                "--values",
                "/k/values/rook-ceph.yaml",
                "--kubeconfig",
                "/s/kubeconfig",
                "--wait",
                "--timeout",
                "600s"
            ]
        );
        let contour = up.charts.iter().find(|c| c.release == "contour").unwrap();
        let cmd = helm_install(contour, Path::new("/k"), Path::new("/s/kc"));
        assert!(!cmd.argv.contains(&"--repo".to_owned()));
        assert_eq!(
            cmd.argv[4],
            "oci://registry-1.docker.io/bitnamicharts/contour"
        );
        let velero = up.charts.iter().find(|c| c.release == "velero").unwrap();
        assert!(!helm_install(velero, Path::new("/k"), Path::new("/kc"))
            .argv
            .contains(&"--wait".to_owned()));
        // Every values file exists.
        for c in &up.charts {
            assert!(kind_dir.join(&c.values).is_file(), "{}", c.values.display());
        }
        assert_eq!(up.deadline("10-rook-ceph.yaml"), Duration::from_secs(1200));
        assert_eq!(up.deadline("kind-ca.yaml"), Duration::from_secs(1200));
    }

    #[test]
    fn unpinned_charts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("up.yaml");
        std::fs::write(&p, "charts: [{release: a, chart: a, repo: r, version: '1.x', namespace: n, values: v.yaml, wait_s: 0}]\ndeadlines: {}\n").unwrap();
        assert!(UpConfig::load(&p)
            .unwrap_err()
            .to_string()
            .contains("pinned version"));
    }

    #[test]
    fn device_and_port_outputs_parse() {
        assert_eq!(parse_device("/dev/loop7\n").as_deref(), Some("/dev/loop7"));
        assert_eq!(parse_device("losetup: error\n"), None);
        assert_eq!(
            parse_ports("30443/tcp -> 127.0.0.1:8443\n6443/tcp -> 127.0.0.1:40123\n"),
            [
                (30443, "127.0.0.1:8443".parse().unwrap()),
                (6443, "127.0.0.1:40123".parse().unwrap())
            ]
        );
        let w = Worker {
            node: "n-worker".into(),
            label: "dirqual1".into(),
            host_dir: "/d".into(),
            osd_dir: Worker::osd_dir_for("n", "dirqual1"),
        };
        let p = ceph_nodes_patch(&[(w, vec!["/dev/loop3".into(), "/dev/loop4".into()])]);
        assert_eq!(
            p["spec"]["storage"]["nodes"][0],
            json!({"name": "n-worker", "devices": [
                {"name": "loop3", "config": {"deviceClass": "nvme"}},
                {"name": "loop4", "config": {"deviceClass": "hdd"}}]})
        );
    }

    #[test]
    fn docker_hub_mirror_writes_containerds_hosts_file() {
        assert!(check_mirror("https://mirror.gcr.io").is_ok());
        assert!(check_mirror("http://registry.local:5000/v2").is_ok());
        for bad in [
            "mirror.gcr.io",
            "https://",
            "https:///x",
            "https://a\"b",
            "https://a b",
        ] {
            assert!(check_mirror(bad).is_err(), "{bad}");
        }
        let mut config = json!({"kind": "Cluster"});
        use_registry_hosts(&mut config);
        assert_eq!(
            config["containerdConfigPatches"],
            json!(["[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"])
        );
        // The script, run by a real sh into a scratch folder instead of the node's /etc.
        let c = docker_hub_mirror("n-worker", "https://mirror.gcr.io");
        assert_eq!(c.argv[..5], ["docker", "exec", "n-worker", "sh", "-c"]);
        let dir = tempfile::tempdir().unwrap();
        let script = c.argv[5].replace(REGISTRY_HOSTS_DIR, &dir.path().display().to_string());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .args(&c.argv[6..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("docker.io/hosts.toml")).unwrap(),
            "server = \"https://registry-1.docker.io\"\n\n[host.\"https://mirror.gcr.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
    }

    #[test]
    fn commands_quote_for_display() {
        let w = Worker {
            node: "n-worker".into(),
            label: "dirqual1".into(),
            host_dir: "/d".into(),
            osd_dir: Worker::osd_dir_for("n", "dirqual1"),
        };
        let c = attach_device(&w, "osd-nvme.img");
        assert_eq!(&c.argv[..5], ["docker", "exec", "n-worker", "sh", "-c"]);
        assert!(c.argv[5].contains("f=/var/lib/stormdrill/osd/n/dirqual1/osd-nvme.img"));
        // A device listed for the path is adopted only when it is backed by this inode.
        assert!(c.argv[5].contains(r#"losetup -n -O BACK-INO "$d""#));
        assert!(c.argv[5].contains(r#"ino=$(stat -c %i "$f")"#));
        assert!(c
            .display()
            .starts_with("docker exec n-worker sh -c 'set -eu"));
        let d = detach_devices(&w);
        assert!(d.argv[5].starts_with("for f in /var/lib/stormdrill/osd/n/dirqual1/osd-nvme.img /var/lib/stormdrill/osd/n/dirqual1/osd-hdd.img;"));
        assert_eq!(
            build_api_image("i:1", Path::new("/f")).argv,
            [
                "docker",
                "build",
                "--provenance=false",
                "--sbom=false",
                "--tag",
                "i:1",
                "--file",
                "/f/api/Dockerfile",
                "/f"
            ]
        );
        assert_eq!(
            create_cluster("x", Path::new("/d/x/cluster.yaml")).argv,
            [
                "kind",
                "create",
                "cluster",
                "--name",
                "x",
                "--config",
                "/d/x/cluster.yaml",
                "--wait",
                "300s"
            ]
        );
    }
}
