//! Node power: the one thing a fault needs that the Kubernetes API cannot do.
//!
//! Each target supplies its provider: the twin its provider endpoint (reached with the
//! same kube `Client`, so the same token and CA), kind `docker stop/start` of the node
//! container, a cluster the command templates of its target config (IPMI, a cloud
//! CLI). A cluster without them gets [`NoPower`], whose every call fails saying what
//! to configure.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt as _};
use kube::Client;
use serde::Deserialize;

/// Default bound of one power command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(
        "no power provider configured for --target cluster: set `power.off` and `power.on` \
         command templates (with {{node}}) in the target config and pass it with \
         --target-config FILE"
    )]
    NotConfigured,
    #[error("{0:?} is not a valid node name (lower-case letters, digits, '-' and '.')")]
    BadNodeName(String),
    #[error("the twin's provider endpoint did not power node {node} {state}")]
    Twin {
        node: String,
        state: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("node {node} does not exist")]
    NoSuchNode { node: String },
    #[error("power command `{command}` for node {node} could not start")]
    Spawn {
        node: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("power command `{command}` for node {node} failed ({status}): {stderr}")]
    Command {
        node: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("power command `{command}` for node {node} did not finish within {}s", .waited.as_secs())]
    Timeout {
        node: String,
        command: String,
        waited: Duration,
    },
}

/// Turns nodes off and on. Both directions are idempotent: powering off a node that
/// is off succeeds.
pub trait NodePower: Send + Sync {
    fn set_power<'a>(&'a self, node: &'a str, on: bool) -> BoxFuture<'a, Result<(), PowerError>>;
    /// How this provider acts, for plans: e.g. `the twin's provider endpoint`.
    fn describe(&self) -> String;
    /// Whether it can act at all, checked before a power fault is planned.
    fn check(&self) -> Result<(), PowerError> {
        Ok(())
    }
}

fn state(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Node names end up in URLs and command lines: only DNS subdomain characters pass.
pub fn check_node_name(node: &str) -> Result<(), PowerError> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !node.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(PowerError::BadNodeName(node.to_owned()))
    }
}

/// The twin's `POST /twin/v1/nodes/NAME/power`, through the kube client.
pub struct TwinPower {
    client: Client,
}

impl TwinPower {
    pub fn new(client: Client) -> Self {
        TwinPower { client }
    }
}

impl NodePower for TwinPower {
    fn set_power<'a>(&'a self, node: &'a str, on: bool) -> BoxFuture<'a, Result<(), PowerError>> {
        async move {
            check_node_name(node)?;
            let body = serde_json::json!({ "state": state(on) }).to_string();
            let req = http::Request::post(format!("/twin/v1/nodes/{node}/power"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.into_bytes())
                .expect("a static request is valid");
            match self.client.request_text(req).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Err(PowerError::NoSuchNode {
                    node: node.to_owned(),
                }),
                Err(source) => Err(PowerError::Twin {
                    node: node.to_owned(),
                    state: state(on),
                    source,
                }),
            }
        }
        .boxed()
    }

    fn describe(&self) -> String {
        "the twin's provider endpoint".to_owned()
    }
}

/// A target without a power provider.
pub struct NoPower;

impl NodePower for NoPower {
    fn set_power<'a>(&'a self, _: &'a str, _: bool) -> BoxFuture<'a, Result<(), PowerError>> {
        async { Err(PowerError::NotConfigured) }.boxed()
    }

    fn describe(&self) -> String {
        "no power provider".to_owned()
    }

    fn check(&self) -> Result<(), PowerError> {
        Err(PowerError::NotConfigured)
    }
}

/// Command templates run with `sh -c`; `{node}` is replaced by the (validated) node
/// name, which is also in `$STORMDRILL_NODE`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerCommands {
    pub off: String,
    pub on: String,
    /// Seconds one command may take [default: 60].
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

impl PowerCommands {
    /// kind's nodes are containers.
    pub fn docker() -> Self {
        PowerCommands {
            off: "docker stop {node}".to_owned(),
            on: "docker start {node}".to_owned(),
            timeout_s: None,
        }
    }

    pub fn command(&self, node: &str, on: bool) -> String {
        let template = if on { &self.on } else { &self.off };
        template.replace("{node}", node)
    }
}

pub struct CommandPower {
    commands: PowerCommands,
}

impl CommandPower {
    pub fn new(commands: PowerCommands) -> Self {
        CommandPower { commands }
    }

    async fn run(&self, node: &str, on: bool) -> Result<(), PowerError> {
        check_node_name(node)?;
        let command = self.commands.command(node, on);
        let waited = self
            .commands
            .timeout_s
            .map_or(COMMAND_TIMEOUT, Duration::from_secs);
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("STORMDRILL_NODE", node)
            .env("STORMDRILL_POWER", state(on))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| PowerError::Spawn {
                node: node.to_owned(),
                command: command.clone(),
                source,
            })?;
        let out = match tokio::time::timeout(waited, child.wait_with_output()).await {
            Ok(r) => r.map_err(|source| PowerError::Spawn {
                node: node.to_owned(),
                command: command.clone(),
                source,
            })?,
            Err(_) => {
                return Err(PowerError::Timeout {
                    node: node.to_owned(),
                    command,
                    waited,
                })
            }
        };
        if out.status.success() {
            return Ok(());
        }
        Err(PowerError::Command {
            node: node.to_owned(),
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl NodePower for CommandPower {
    fn set_power<'a>(&'a self, node: &'a str, on: bool) -> BoxFuture<'a, Result<(), PowerError>> {
        self.run(node, on).boxed()
    }

    fn describe(&self) -> String {
        format!(
            "the commands `{}` / `{}`",
            self.commands.off, self.commands.on
        )
    }
}

/// `--target-config FILE`: what a cluster target supplies besides its kubeconfig.
///
/// ```yaml
/// power:
///   off: "ipmitool -I lanplus -H {node}-bmc -U admin -E chassis power off"
///   on:  "ipmitool -I lanplus -H {node}-bmc -U admin -E chassis power on"
///   timeout_s: 120
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default)]
    pub power: Option<PowerCommands>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetConfigError {
    #[error("cannot read target config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid target config {path}:{line}:{column}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_yaml::Error,
    },
}

impl TargetConfig {
    pub fn load(path: &Path) -> Result<Self, TargetConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| TargetConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, TargetConfigError> {
        serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            TargetConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                source,
            }
        })
    }

    /// The provider of a cluster target: its commands, else [`NoPower`].
    pub fn cluster_power(&self) -> Arc<dyn NodePower> {
        match &self.power {
            Some(c) => Arc::new(CommandPower::new(c.clone())),
            None => Arc::new(NoPower),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        assert!(check_node_name("dirqual1").is_ok());
        assert!(check_node_name("ip-10-0-0-1.eu-west-1.compute.internal").is_ok());
        for bad in ["", "a b", "a;rm -rf /", "$(x)", "-x", "A"] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let c = TargetConfig::parse(
            Path::new("t.yaml"),
            "power:\n  off: ipmi {node} off\n  on: ipmi {node} on\n",
        )
        .unwrap();
        let p = c.power.unwrap();
        assert_eq!(p.command("n1", false), "ipmi n1 off");
        assert_eq!(p.command("n1", true), "ipmi n1 on");
        let e = TargetConfig::parse(Path::new("t.yaml"), "powr: {}\n").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid target config t.yaml:1:"),
            "{e}"
        );
        assert_eq!(
            TargetConfig::parse(Path::new("t.yaml"), "{}\n").unwrap(),
            TargetConfig::default()
        );
    }

    #[tokio::test]
    async fn no_provider_says_how_to_configure_one() {
        assert!(NoPower.check().is_err());
        let e = NoPower.set_power("n1", false).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no power provider configured for --target cluster: set `power.off`"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn commands_run_with_the_node_and_report_failures() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let power = CommandPower::new(PowerCommands {
            off: format!("echo off {{node}} $STORMDRILL_POWER >> {}", log.display()),
            on: "echo no BMC >&2; exit 3".to_owned(),
            timeout_s: Some(5),
        });
        power.set_power("dirqual2", false).await.unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "off dirqual2 off\n");
        let e = power.set_power("dirqual2", true).await.unwrap_err();
        assert!(e.to_string().contains("no BMC"), "{e}");
        assert!(matches!(
            power.set_power("x;y", false).await,
            Err(PowerError::BadNodeName(_))
        ));
    }
}
