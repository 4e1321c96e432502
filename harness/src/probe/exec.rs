//! A command run in a pod's container (pod exec over WebSocket), bounded in time,
//! with its stdout, stderr and exit code.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{Api, AttachParams},
    Client,
};
use tokio::io::AsyncReadExt as _;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec of `{command}` in pod {pod} failed")]
    Exec {
        command: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("`{command}` in pod {pod} did not finish within {}s", timeout.as_secs())]
    Timeout {
        command: String,
        pod: String,
        timeout: Duration,
    },
}

/// What a command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Exit code 127: the shell found no such command (the image lacks the tool).
pub const NOT_FOUND: i32 = 127;

/// The container kubectl execs into when none is named: the one the
/// `kubectl.kubernetes.io/default-container` annotation names, else the first.
pub fn default_container(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .filter(|n| spec.containers.iter().any(|c| &c.name == *n));
    annotated
        .cloned()
        .or_else(|| spec.containers.first().map(|c| c.name.clone()))
}

/// Runs `argv` in `namespace/pod` (kubectl's default container unless `container`).
pub async fn run(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: &[&str],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let command = argv.join(" ");
    let pod_name = format!("{namespace}/{pod}");
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let attempt = async {
        let mut ap = AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(true);
        // The API server refuses to guess among several containers; choose as
        // kubectl does.
        let default;
        let container = match container {
            Some(c) => Some(c),
            None => {
                default = api.get(pod).await.ok().and_then(|p| default_container(&p));
                default.as_deref()
            }
        };
        if let Some(c) = container {
            ap = ap.container(c);
        }
        let mut p = api
            .exec(pod, argv.to_vec(), &ap)
            .await
            .map_err(|source| ExecError::Exec {
                command: command.clone(),
                pod: pod_name.clone(),
                source,
            })?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut so, mut se) = (p.stdout(), p.stderr());
        let status = p.take_status();
        let read_out = async {
            if let Some(r) = so.as_mut() {
                let _ = r.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(r) = se.as_mut() {
                let _ = r.read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = p.join().await;
        Ok(ExecOutput {
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            exit_code: status.as_ref().map_or(0, exit_code),
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ExecError::Timeout {
            command: command.clone(),
            pod: pod_name.clone(),
            timeout,
        })?
}

/// The exit code of an exec's final Status: 0 on Success, the `ExitCode` cause
/// otherwise (1 when the server gave none).
pub fn exit_code(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> i32 {
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_status() {
        let ok: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status =
            serde_json::from_str(r#"{"status": "Success"}"#).unwrap();
        assert_eq!(exit_code(&ok), 0);
        let failed = serde_json::from_str(
            r#"{"status": "Failure", "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "127"}]}}"#,
        )
        .unwrap();
        assert_eq!(exit_code(&failed), 127);
        let bare = serde_json::from_str(r#"{"status": "Failure"}"#).unwrap();
        assert_eq!(exit_code(&bare), 1);
    }
}
