//! The kind target: a local cluster of Docker containers (`kind`). Its kubeconfig
//! comes from `kind get kubeconfig`, its nodes are powered off and on with
//! `docker stop/start` of their containers, and its API is Envoy's NodePort published
//! on the host by the control plane's port mapping (fixtures/kind/cluster.yaml).
//! `stormdrill up --target kind` creates it ([`crate::up`]).

use std::{collections::HashMap, net::SocketAddr};

use kube::Client;
use serde_json::Value;

pub mod plan;
pub mod runner;

use plan::Cmd;
use runner::{Output, RunError, Runner};

use crate::load::ApiEndpoint;

/// The cluster name when `--name` is not given.
pub const DEFAULT_NAME: &str = "stormdrill";

/// What `stormdrill up --target kind` needs on PATH.
pub const UP_TOOLS: [&str; 4] = ["kind", "kubectl", "helm", "docker"];
/// What `stormdrill down` and the kind target need.
pub const TARGET_TOOLS: [&str; 2] = ["kind", "docker"];

#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error(
        "{} not found on PATH: {what} needs {}. Install: kind https://kind.sigs.k8s.io/docs/user/quick-start/#installation, \
         kubectl https://kubernetes.io/docs/tasks/tools/, helm https://helm.sh/docs/intro/install/, \
         docker https://docs.docker.com/engine/install/ (see fixtures/kind/README.md)",
        .missing.join(", "),
        .needed.join(", ")
    )]
    MissingTools {
        missing: Vec<&'static str>,
        needed: Vec<&'static str>,
        what: &'static str,
    },
    #[error("{} failed ({}): {}", .cmd.display(), .output.code.map_or("killed".to_owned(), |c| format!("exit {c}")), last_lines(&.output.stderr, &.output.stdout))]
    Failed { cmd: Box<Cmd>, output: Output },
    #[error("{what}")]
    Run {
        what: String,
        #[source]
        source: RunError,
    },
    #[error("there is no kind cluster {name:?} (`kind get clusters` does not list it): create it with `stormdrill up --target kind --name {name}`")]
    NoCluster { name: String },
    #[error("`{}` printed {stdout:?}, not {expected}", .cmd.display())]
    Unexpected {
        cmd: Box<Cmd>,
        stdout: String,
        expected: &'static str,
    },
}

/// The end of a failed command's output: what people need to see first.
fn last_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.trim().lines().collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    if tail.is_empty() {
        "no output".to_owned()
    } else {
        tail.join(" | ")
    }
}

/// The tools of `needed` missing from `runner`'s PATH; an error naming them all.
pub fn check_tools(
    runner: &runner::ProcessRunner,
    needed: &[&'static str],
    what: &'static str,
) -> Result<(), KindError> {
    let missing: Vec<&'static str> = needed
        .iter()
        .copied()
        .filter(|t| runner.which(t).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KindError::MissingTools {
            missing,
            needed: needed.to_vec(),
            what,
        })
    }
}

/// Runs `cmd`; a non-zero exit is an error carrying its output.
pub fn run_ok(runner: &dyn Runner, cmd: &Cmd) -> Result<Output, KindError> {
    let output = runner.run(cmd).map_err(|source| KindError::Run {
        what: format!("{}: `{}`", cmd.what, cmd.display()),
        source,
    })?;
    if output.success {
        Ok(output)
    } else {
        Err(KindError::Failed {
            cmd: Box::new(cmd.clone()),
            output,
        })
    }
}

/// Whether kind lists a cluster called `name`.
pub fn cluster_exists(runner: &dyn Runner, name: &str) -> Result<bool, KindError> {
    let out = run_ok(runner, &plan::get_clusters())?;
    Ok(plan::cluster_listed(&out.stdout, name))
}

/// The cluster's kubeconfig (YAML), as `kind get kubeconfig --name N` prints it.
pub fn kubeconfig(runner: &dyn Runner, name: &str) -> Result<String, KindError> {
    if !cluster_exists(runner, name)? {
        return Err(KindError::NoCluster {
            name: name.to_owned(),
        });
    }
    let cmd = plan::get_kubeconfig(name);
    let out = run_ok(runner, &cmd)?;
    if !out.stdout.contains("clusters:") {
        return Err(KindError::Unexpected {
            cmd: Box::new(cmd),
            stdout: out.stdout,
            expected: "a kubeconfig",
        });
    }
    Ok(out.stdout)
}

/// The control plane's published ports: container port -> host address.
pub fn host_ports(runner: &dyn Runner, name: &str) -> Result<HashMap<u16, SocketAddr>, KindError> {
    let out = run_ok(runner, &plan::control_plane_ports(name))?;
    Ok(plan::parse_ports(&out.stdout).into_iter().collect())
}

/// Envoy's host address on kind: the `https` NodePort of Service projectcontour/envoy,
/// mapped to the host by the control plane's port mapping.
pub fn envoy_host_address(svc: &Value, ports: &HashMap<u16, SocketAddr>) -> Option<SocketAddr> {
    let node_port = svc
        .pointer("/spec/ports")?
        .as_array()?
        .iter()
        .find(|p| p["name"] == "https" || p["port"] == 443)?
        .get("nodePort")?
        .as_u64()?;
    ports.get(&u16::try_from(node_port).ok()?).copied()
}

/// Where the API answers on a kind cluster, found as [`crate::probe::api::discover`]
/// finds it elsewhere, with Envoy's address from the port mapping instead of a load
/// balancer. None until the stack (HTTPProxy, Envoy) is there.
pub async fn api_endpoint(
    client: &Client,
    ports: &HashMap<u16, SocketAddr>,
) -> Option<ApiEndpoint> {
    let address = |svc: &Value| envoy_host_address(svc, ports).map(|a| (a.ip(), a.port()));
    match crate::probe::api::discover_with(client, address).await {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::debug!(error = %crate::diag::one_line(&e), "no API endpoint on kind yet");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_named_with_how_to_install() {
        let empty = runner::ProcessRunner {
            path: Some(std::ffi::OsString::new()),
        };
        let e = check_tools(&empty, &UP_TOOLS, "`stormdrill up --target kind`").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("kind, kubectl, helm, docker not found on PATH: `stormdrill up --target kind` needs"),
            "{msg}"
        );
        assert!(msg.contains("https://helm.sh/docs/intro/install/"), "{msg}");
        // A PATH with only some of them names only the missing ones.
        let dir = tempfile::tempdir().unwrap();
        for tool in ["kind", "docker"] {
            let p = dir.path().join(tool);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let some = runner::ProcessRunner {
            path: Some(dir.path().as_os_str().to_owned()),
        };
        let e = check_tools(&some, &UP_TOOLS, "up").unwrap_err();
        assert!(
            e.to_string().starts_with("kubectl, helm not found on PATH"),
            "{e}"
        );
        assert!(check_tools(&some, &TARGET_TOOLS, "down").is_ok());
    }

    #[test]
    fn envoy_is_found_through_the_port_mapping() {
        let svc: Value = serde_yaml::from_str(
            "spec: {type: NodePort, ports: [{name: http, port: 80, nodePort: 30080}, {name: https, port: 443, nodePort: 30443}]}",
        )
        .unwrap();
        let ports: HashMap<u16, SocketAddr> =
            plan::parse_ports("30443/tcp -> 127.0.0.1:8443\n30080/tcp -> 127.0.0.1:8080\n")
                .into_iter()
                .collect();
        assert_eq!(
            envoy_host_address(&svc, &ports),
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(envoy_host_address(&svc, &HashMap::new()), None);
    }

    #[test]
    fn kubeconfig_of_a_missing_cluster_says_how_to_create_it() {
        let r = runner::Recorder::default().answer("kind get clusters", "other\n", true);
        let e = kubeconfig(&r, "stormdrill").unwrap_err();
        assert!(
            e.to_string()
                .contains("stormdrill up --target kind --name stormdrill"),
            "{e}"
        );
        let r = runner::Recorder::default()
            .answer("kind get clusters", "stormdrill\n", true)
            .answer(
                "kind get kubeconfig",
                "apiVersion: v1\nclusters: []\n",
                true,
            );
        assert!(kubeconfig(&r, "stormdrill").is_ok());
        assert_eq!(
            r.lines(),
            ["kind get clusters", "kind get kubeconfig --name stormdrill"]
        );
    }
}
