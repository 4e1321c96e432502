//! HTTP load: an open-loop generator at a constant arrival rate (latency from the
//! intended send time) and a closed-loop one for maximum throughput, a weighted request
//! mix, and `stormdrill bench`. Windows, phases and the timeline are in
//! [`crate::measure`].

pub mod bench;
pub mod bench_lag;
pub mod bench_memory;
pub mod bench_suite;
pub mod client;
pub mod generator;
pub mod mix;

use std::{io, net::IpAddr};

pub use generator::{LoadConfig, LoadReport, LoadRun, Mode};
pub use mix::{Mix, MixError};

use crate::measure::timeline::TimelineError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {0}")]
    Invalid(String),
    #[error("invalid CA bundle: {0}")]
    CaPem(String),
    #[error("TLS setup failed")]
    Tls(#[source] rustls::Error),
    #[error("source address {addr} cannot be used: is it an address of this machine?")]
    SourceAddr {
        addr: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error(transparent)]
    Mix(#[from] MixError),
    #[error("a load task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// Where the API under test answers; part of the run context. Set by `--api-url`,
/// else discovered from the cluster (HTTPProxy, Envoy's load balancer, the TLS
/// secret's CA: `probe::api::discover`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiEndpoint {
    pub url: http::Uri,
    /// PEM bundle of the CA to trust for HTTPS; None: the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// The CA as PEM, when it came from the cluster rather than a file.
    pub ca_pem: Option<Vec<u8>>,
    /// Local address to send from (e.g. 127.0.0.2).
    pub source_addr: Option<IpAddr>,
    /// The URL's host resolves to this address (the load balancer), as `--resolve`.
    pub resolve: Option<(String, IpAddr)>,
}
