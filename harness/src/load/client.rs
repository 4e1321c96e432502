//! The HTTP client of the load generator: hyper with a keep-alive pool, HTTPS through
//! rustls (ring) trusting a given CA (else the system's roots), optionally bound to a
//! source address.

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use rustls::pki_types::{pem::PemObject as _, CertificateDer};

use super::LoadError;
use crate::measure::window::Class;

pub type Connector = HttpsConnector<HttpConnector<PinnedResolver>>;
pub type HttpClient = Client<Connector, Empty<Bytes>>;

/// DNS as `curl --resolve`: one host name pinned to an address (the cluster's load
/// balancer for the API's fqdn), everything else through getaddrinfo. The TLS server
/// name and Host header stay the fqdn, as for a real client.
#[derive(Clone)]
pub struct PinnedResolver {
    pin: Option<(String, IpAddr)>,
    gai: hyper_util::client::legacy::connect::dns::GaiResolver,
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for PinnedResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.gai.poll_ready(cx)
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        if let Some((host, ip)) = &self.pin {
            if name.as_str().eq_ignore_ascii_case(host) {
                let addr = std::net::SocketAddr::new(*ip, 0);
                return Box::pin(async move { Ok(vec![addr].into_iter()) });
            }
        }
        let fut = self.gai.call(name);
        Box::pin(async move { Ok(fut.await?.collect::<Vec<_>>().into_iter()) })
    }
}

/// How the client connects.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// PEM bundle of the CA(s) to trust for HTTPS; None: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Local address to send from (e.g. 127.0.0.2), so the server sees one client.
    pub source_addr: Option<IpAddr>,
    pub connect_timeout: Option<Duration>,
    /// Resolve this host name to this address (`--resolve`).
    pub resolve: Option<(String, IpAddr)>,
}

/// `https`: whether the target needs TLS (the system's roots are only loaded then:
/// parsing them costs tens of milliseconds of CPU).
pub fn build(opts: &ClientOptions, https: bool) -> Result<HttpClient, LoadError> {
    Ok(pooled(connector(opts, https)?))
}

/// The keep-alive pool over `connector`.
pub fn pooled(connector: Connector) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

/// The TCP (+ TLS) connector of [`build`], for connections of one's own.
pub fn connector(opts: &ClientOptions, https: bool) -> Result<Connector, LoadError> {
    if let Some(addr) = opts.source_addr {
        // Fail now, clearly, rather than with a connection error per request.
        std::net::TcpListener::bind((addr, 0))
            .map_err(|source| LoadError::SourceAddr { addr, source })?;
    }
    let mut roots = rustls::RootCertStore::empty();
    match &opts.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| LoadError::CaPem(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| LoadError::CaPem(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(LoadError::CaPem("no certificate in it".into()));
            }
        }
        None if https => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        None => {}
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(LoadError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let mut http = HttpConnector::new_with_resolver(PinnedResolver {
        pin: opts.resolve.clone(),
        gai: hyper_util::client::legacy::connect::dns::GaiResolver::new(),
    });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_local_address(opts.source_addr);
    http.set_connect_timeout(opts.connect_timeout);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Sends `req` and reads the whole body (so the connection goes back to the pool),
/// within `timeout`.
pub async fn exchange(
    client: &HttpClient,
    req: http::Request<Empty<Bytes>>,
    timeout: Duration,
) -> Class {
    let attempt = async {
        let resp = client.request(req).await.map_err(drop)?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(drop)?;
        }
        Ok::<u16, ()>(status)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Class::Timeout,
        Ok(Ok(status)) => Class::from_status(status),
        Ok(Err(())) => Class::Connect,
    }
}

/// One keep-alive connection used by one closed-loop worker alone, as wrk's are: no
/// pool to check out from (a lock and bookkeeping per request). Requests go in origin
/// form with their Host header, as the pool's client writes them. Reconnects on the
/// next request after an error or a timeout (the connection's state is unknown then).
///
/// The connection's I/O runs in a task of its own, as in the pool: driving it from the
/// worker's task instead measured slower (`stormdrill bench`, 1.6x wrk's CPU per
/// request against 1.5x).
pub struct Dedicated {
    connector: Connector,
    /// `scheme://authority` to connect to.
    base: http::Uri,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
}

impl Dedicated {
    pub fn new(connector: Connector, base: http::Uri) -> Self {
        Dedicated {
            connector,
            base,
            sender: None,
        }
    }

    async fn connect(
        &mut self,
    ) -> Result<&mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, ()> {
        use tower_service::Service as _;
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return self.sender.as_mut().ok_or(());
        }
        std::future::poll_fn(|cx| self.connector.poll_ready(cx))
            .await
            .map_err(drop)?;
        let io = self.connector.call(self.base.clone()).await.map_err(drop)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(drop)?;
        // Ends when the sender is dropped and the connection is idle, or the server
        // closes it.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(self.sender.insert(sender))
    }

    /// As [`exchange`], on this connection; `req` is in origin form with a Host header.
    pub async fn exchange(&mut self, req: http::Request<Empty<Bytes>>, timeout: Duration) -> Class {
        let attempt = async {
            let sender = self.connect().await?;
            sender.ready().await.map_err(drop)?;
            let resp = sender.send_request(req).await.map_err(drop)?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(drop)?;
            }
            Ok::<u16, ()>(status)
        };
        let class = match tokio::time::timeout(timeout, attempt).await {
            Err(_) => Class::Timeout,
            Ok(Ok(status)) => Class::from_status(status),
            Ok(Err(())) => Class::Connect,
        };
        if matches!(class, Class::Timeout | Class::Connect) {
            self.sender = None;
        }
        class
    }
}
