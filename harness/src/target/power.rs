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
    #[error(
        "power command in {config} uses ${{{var}}}, which is not set in the environment: \
         export {var} before running stormdrill"
    )]
    UnsetVariable { config: String, var: String },
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
/// name, which is also in `$STORMDRILL_NODE`. Secrets come from the environment as
/// `${VAR}`: the template is recorded as written (journal, plans, errors) and the
/// shell expands it only when the command runs, so the value is never in the run's
/// folder nor in the process's arguments.
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

    /// The command for `node`, unexpanded: `${VAR}` stays as written.
    pub fn command(&self, node: &str, on: bool) -> String {
        let template = if on { &self.on } else { &self.off };
        template.replace("{node}", node)
    }

    /// The `${VAR}` names both templates use, in order, without repeats.
    pub fn variables(&self) -> Vec<&str> {
        let mut names = env_refs(&self.off);
        for v in env_refs(&self.on) {
            if !names.contains(&v) {
                names.push(v);
            }
        }
        names
    }
}

/// The names of `${NAME}` references in `text` (NAME: letters, digits, `_`, not
/// starting with a digit); other `$` forms are left to the shell.
pub fn env_refs(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid && !names.contains(&name) {
            names.push(name);
        }
        rest = &rest[end + 1..];
    }
    names
}

/// `text` with the value of each of `vars` replaced by `${VAR}`: a command's stderr
/// may echo a password it was given.
pub fn redact(text: &str, vars: &[&str]) -> String {
    let mut out = text.to_owned();
    for var in vars {
        if let Some(value) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            out = out.replace(&value, &format!("${{{var}}}"));
        }
    }
    out
}

pub struct CommandPower {
    commands: PowerCommands,
    /// Where the commands come from, for errors: the target config's path.
    origin: String,
}

impl CommandPower {
    pub fn new(commands: PowerCommands) -> Self {
        Self::from_config(commands, "the target config")
    }

    pub fn from_config(commands: PowerCommands, origin: impl Into<String>) -> Self {
        CommandPower {
            commands,
            origin: origin.into(),
        }
    }

    /// Every `${VAR}` the commands use is set: checked before a fault is planned, so a
    /// missing secret stops the run before the node is off with no way back on.
    fn check_variables(&self) -> Result<(), PowerError> {
        match self
            .commands
            .variables()
            .into_iter()
            .find(|v| std::env::var_os(v).is_none())
        {
            Some(var) => Err(PowerError::UnsetVariable {
                config: self.origin.clone(),
                var: var.to_owned(),
            }),
            None => Ok(()),
        }
    }

    async fn run(&self, node: &str, on: bool) -> Result<(), PowerError> {
        check_node_name(node)?;
        self.check_variables()?;
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
            stderr: redact(
                String::from_utf8_lossy(&out.stderr).trim(),
                &self.commands.variables(),
            ),
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

    fn check(&self) -> Result<(), PowerError> {
        self.check_variables()
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
    /// The file it was read from, named in errors about it.
    #[serde(skip)]
    pub path: Option<PathBuf>,
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
        let mut config: TargetConfig = serde_yaml::from_str(text).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            TargetConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                source,
            }
        })?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// The provider of a cluster target: its commands, else [`NoPower`].
    pub fn cluster_power(&self) -> Arc<dyn NodePower> {
        match &self.power {
            Some(c) => Arc::new(match &self.path {
                Some(p) => CommandPower::from_config(c.clone(), p.display().to_string()),
                None => CommandPower::new(c.clone()),
            }),
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
            TargetConfig {
                path: Some("t.yaml".into()),
                ..TargetConfig::default()
            }
        );
    }

    #[test]
    fn variables_are_found_and_their_values_redacted() {
        assert_eq!(
            env_refs("ipmi -P ${IPMI_PASS} -U ${USER_1} ${IPMI_PASS} ${1X} $HOME ${bad-name} ${"),
            ["IPMI_PASS", "USER_1"]
        );
        let var = "STORMDRILL_TEST_REDACT_SECRET";
        std::env::set_var(var, "hunter2");
        assert_eq!(
            redact("login failed for hunter2", &[var]),
            format!("login failed for ${{{var}}}")
        );
        assert_eq!(redact("nothing here", &[var]), "nothing here");
    }

    #[tokio::test]
    async fn an_unset_variable_is_named_with_its_config_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let text = format!(
            "power:\n  off: 'touch {} ${{STORMDRILL_TEST_UNSET_VAR}}'\n  on: 'true'\n",
            ran.display()
        );
        let config = TargetConfig::parse(Path::new("cluster.yaml"), &text).unwrap();
        let power = config.cluster_power();
        let e = power.check().unwrap_err();
        assert_eq!(
            e.to_string(),
            "power command in cluster.yaml uses ${STORMDRILL_TEST_UNSET_VAR}, which is not set \
             in the environment: export STORMDRILL_TEST_UNSET_VAR before running stormdrill"
        );
        assert!(power.set_power("n1", false).await.is_err());
        assert!(!ran.exists(), "the command ran without its variable");
    }

    #[tokio::test]
    async fn variables_expand_only_in_the_running_command() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let var = "STORMDRILL_TEST_POWER_SECRET";
        std::env::set_var(var, "s3cr3t");
        let power = CommandPower::new(PowerCommands {
            off: format!("echo \"${{{var}}}\" > {}", log.display()),
            on: format!("echo \"bad password ${{{var}}}\" >&2; exit 1"),
            timeout_s: Some(5),
        });
        power.set_power("n1", false).await.unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "s3cr3t\n");
        assert!(power.describe().contains(&format!("${{{var}}}")));
        assert!(!power.describe().contains("s3cr3t"));
        let e = power.set_power("n1", true).await.unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains(&format!("bad password ${{{var}}}")), "{e}");
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
