//! stormdrill-twin: an embedded digital twin of a Kubernetes cluster.
//!
//! The twin serves a subset of the Kubernetes API over HTTPS on 127.0.0.1 with its
//! own CA and a bearer token, so kube-rs and unmodified kubectl talk to it exactly
//! as they talk to a real cluster.

pub mod resources;

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the twin's certificates: {0}")]
    Tls(String),
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
    /// How many watch events are retained; older resourceVersions get 410 Gone.
    pub history: usize,
}

impl Default for TwinOptions {
    fn default() -> Self {
        TwinOptions {
            port: 0,
            seed: 0,
            token: None,
            history: 10_000,
        }
    }
}

/// A running twin. Dropping it without [`Twin::shutdown`] also stops the server.
pub struct Twin {
    addr: SocketAddr,
    ca_pem: String,
    token: String,
}

impl Twin {
    pub async fn start(_opts: TwinOptions) -> Result<Twin, TwinError> {
        Err(TwinError::Tls("not built yet".into()))
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    pub fn token(&self) -> &str {
        &self.token
    }
    /// A kubeconfig (YAML) with cluster, user and context all named `stormdrill-twin`.
    pub fn kubeconfig_yaml(&self) -> String {
        String::new()
    }
    pub async fn shutdown(self) {}
}
