//! `psql` in the database pod, through pod exec, as an operator would run it:
//! `psql -U USER -d DB -tA -v ON_ERROR_STOP=1 -c SQL` (rows only, unaligned, `|`
//! between columns), bounded by a timeout.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{Api, AttachParams},
    Client,
};
use tokio::io::AsyncReadExt as _;

#[derive(Debug, thiserror::Error)]
pub enum PsqlError {
    #[error("exec into pod {namespace}/{pod} failed")]
    Exec {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("psql in {namespace}/{pod} failed: {message}")]
    Failed {
        namespace: String,
        pod: String,
        message: String,
    },
    #[error("psql in {namespace}/{pod} did not answer within {}s", .timeout.as_secs_f64())]
    Timeout {
        namespace: String,
        pod: String,
        timeout: Duration,
    },
}

/// Where and as whom `psql` runs.
#[derive(Clone)]
pub struct Psql {
    pub client: Client,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub user: String,
    pub database: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Psql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "psql -U {} -d {} in {}/{} ({})",
            self.user, self.database, self.namespace, self.pod, self.container
        )
    }
}

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Rows of `-tA` output: lines split at `|`.
pub fn rows(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').collect())
        .collect()
}

impl Psql {
    /// Runs `sql` (one `-c`: one transaction); stdout on success. A non-zero exit or
    /// an `ERROR:` on stderr is a failure carrying psql's own message.
    pub async fn run(&self, sql: &str) -> Result<String, PsqlError> {
        match tokio::time::timeout(self.timeout, self.run_unbounded(sql)).await {
            Ok(r) => r,
            Err(_) => Err(PsqlError::Timeout {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn run_unbounded(&self, sql: &str) -> Result<String, PsqlError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let ap = AttachParams::default()
            .container(self.container.clone())
            .stdout(true)
            .stderr(true);
        let command = [
            "psql",
            "-U",
            &self.user,
            "-d",
            &self.database,
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ];
        let mut p = pods
            .exec(&self.pod, command, &ap)
            .await
            .map_err(|source| PsqlError::Exec {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                source,
            })?;
        let status = p.take_status();
        let mut stdout = p.stdout();
        let mut stderr = p.stderr();
        // Both at once: the exec streams have small buffers.
        let read_out = async {
            let mut s = String::new();
            if let Some(r) = stdout.as_mut() {
                let _ = r.read_to_string(&mut s).await;
            }
            s
        };
        let read_err = async {
            let mut s = String::new();
            if let Some(r) = stderr.as_mut() {
                let _ = r.read_to_string(&mut s).await;
            }
            s
        };
        let status = async {
            match status {
                Some(s) => s.await,
                None => None,
            }
        };
        let (out, err, status) = tokio::join!(read_out, read_err, status);
        let _ = p.join().await;
        let failed_status = status
            .as_ref()
            .filter(|s| s.status.as_deref() == Some("Failure"))
            .map(|s| s.message.clone().unwrap_or_default());
        if failed_status.is_some() || err.contains("ERROR:") || err.contains("FATAL:") {
            let message = if err.trim().is_empty() {
                failed_status.unwrap_or_default()
            } else {
                err.split_whitespace().collect::<Vec<_>>().join(" ")
            };
            return Err(PsqlError::Failed {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                message,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_rows() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(
            rows("1|1732576200.5\n2|1732576201\n\n"),
            [vec!["1", "1732576200.5"], vec!["2", "1732576201"]]
        );
        assert!(rows("").is_empty());
    }
}
