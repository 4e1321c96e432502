//! The API over HTTPS as a client sees it, at the endpoint of [`super::api::discover`]
//! (or `--api-url`): the TLS handshake and the certificate's names, single requests,
//! and bounded bursts from one address against the rate limit.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    pki_types::{pem::PemObject as _, CertificateDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, SignatureScheme,
};

use crate::{
    diag,
    load::{
        client::{self as load_client, ClientOptions, HttpClient},
        ApiEndpoint, LoadError,
    },
};

/// One request's bound, and the handshake's.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest burst a step may ask for: bursts stay bounded whatever a feature says.
pub const MAX_BURST: usize = 1000;
/// Requests of a burst in flight at once.
const BURST_CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum HttpProbeError {
    #[error("the API URL {0} has no host")]
    NoHost(String),
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid CA bundle: {0}")]
    Ca(String),
    #[error("cannot build the TLS client")]
    Tls(#[source] rustls::Error),
    #[error(transparent)]
    Client(#[from] LoadError),
    #[error("a burst of {0} requests is more than the {MAX_BURST} a step may send")]
    BurstTooLarge(usize),
    #[error("the TLS probe task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// Where and how to reach the API: host name (SNI and Host), address, port, CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
    pub https: bool,
    pub ca_pem: Option<Vec<u8>>,
}

impl Target {
    /// From an endpoint: its pinned address, else the host resolved by the system.
    pub async fn from_endpoint(ep: &ApiEndpoint) -> Result<Target, HttpProbeError> {
        let host = ep
            .url
            .host()
            .ok_or_else(|| HttpProbeError::NoHost(ep.url.to_string()))?
            .to_owned();
        let https = ep.url.scheme_str() != Some("http");
        let port = ep.url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = match &ep.resolve {
            Some((h, ip)) if h.eq_ignore_ascii_case(&host) => *ip,
            _ => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|source| HttpProbeError::Resolve {
                    host: host.clone(),
                    source,
                })?
                .next()
                .map(|a| a.ip())
                .ok_or_else(|| HttpProbeError::Resolve {
                    host: host.clone(),
                    source: std::io::Error::other("no address"),
                })?,
        };
        let ca_pem = match (&ep.ca_pem, &ep.ca) {
            (Some(pem), _) => Some(pem.clone()),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .map_err(|e| HttpProbeError::Ca(format!("{}: {e}", path.display())))?,
            ),
            (None, None) => None,
        };
        Ok(Target {
            host,
            addr,
            port,
            https,
            ca_pem,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}:{}{}",
            if self.https { "https" } else { "http" },
            self.host,
            self.port,
            path
        )
    }

    fn client(&self) -> Result<HttpClient, HttpProbeError> {
        Ok(load_client::build(
            &ClientOptions {
                ca_pem: self.ca_pem.clone(),
                source_addr: None,
                connect_timeout: Some(REQUEST_TIMEOUT),
                resolve: Some((self.host.clone(), self.addr)),
            },
            self.https,
        )?)
    }
}

/// What a TLS handshake with the API showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Whether the handshake completed with a certificate chain the CA vouches for.
    pub completed: bool,
    /// Why it did not complete.
    pub error: Option<String>,
    /// Whether the certificate is valid for the host name (None: no certificate seen).
    pub name_matches: Option<bool>,
    /// The names the certificate presents, when they do not match.
    pub presented: Vec<String>,
    pub protocol: Option<String>,
}

/// Trusts what the CA vouches for but records a name mismatch instead of failing,
/// so a certificate for the wrong host is reported as such, apart from the chain.
#[derive(Debug)]
struct NameRecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    mismatch: Mutex<Option<Vec<String>>>,
}

impl ServerCertVerifier for NameRecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
                *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
                Ok(ServerCertVerified::assertion())
            }
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                presented,
                ..
            })) => {
                let names = presented.iter().map(|n| presented_name(n)).collect();
                *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(names);
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A name as rustls presents it (`DnsName("a.example")`, `IpAddress(..)`) as people
/// write it (`a.example`).
fn presented_name(n: &str) -> String {
    n.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .map_or_else(|| n.to_owned(), str::to_owned)
}

fn roots(ca_pem: Option<&[u8]>) -> Result<rustls::RootCertStore, HttpProbeError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| HttpProbeError::Ca(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| HttpProbeError::Ca(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(HttpProbeError::Ca("no certificate in it".into()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(roots)
}

/// A TLS handshake with `target` (SNI = its host), verifying the chain against its
/// CA (else the system's roots) and, separately, the name.
pub async fn tls_handshake(target: &Target) -> Result<Handshake, HttpProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(target.ca_pem.as_deref())?),
        provider.clone(),
    )
    .build()
    .map_err(|e| HttpProbeError::Ca(e.to_string()))?;
    let verifier = Arc::new(NameRecordingVerifier {
        inner,
        mismatch: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HttpProbeError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| HttpProbeError::NoHost(target.host.clone()))?;
    let addr = SocketAddr::new(target.addr, target.port);
    // rustls is synchronous; a blocking socket with timeouts keeps this simple.
    let result = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let mut sock = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        sock.set_read_timeout(Some(REQUEST_TIMEOUT)).ok();
        sock.set_write_timeout(Some(REQUEST_TIMEOUT)).ok();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
        }
        let protocol = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        // Say goodbye politely; the server's answer does not matter.
        conn.send_close_notify();
        let _ = conn.complete_io(&mut sock);
        let _ = sock.flush();
        let _ = sock.read(&mut [0u8; 1]);
        Ok(protocol)
    })
    .await
    .map_err(HttpProbeError::Join)?;
    let mismatch = verifier
        .mismatch
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(match result {
        Ok(protocol) => Handshake {
            completed: true,
            error: None,
            name_matches: Some(mismatch.is_none()),
            presented: mismatch.unwrap_or_default(),
            protocol: Some(protocol),
        },
        Err(error) => Handshake {
            completed: false,
            error: Some(error),
            name_matches: mismatch.as_ref().map(|_| false),
            presented: mismatch.unwrap_or_default(),
            protocol: None,
        },
    })
}

fn request(target: &Target, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(target.url(path))
        .header(http::header::HOST, target.host.as_str())
        .body(Empty::new())
        .expect("a GET with a valid URL")
}

/// One GET: its status, or why there is none, and its latency.
pub async fn get(
    target: &Target,
    path: &str,
) -> Result<(Result<u16, String>, Duration), HttpProbeError> {
    let client = target.client()?;
    let started = Instant::now();
    let status = exchange_status(&client, request(target, path)).await;
    Ok((status, started.elapsed()))
}

/// The status of one exchange (body read to the end, so the connection is reused),
/// else why no response came (connection, TLS, or nothing within [`REQUEST_TIMEOUT`]).
async fn exchange_status(
    client: &HttpClient,
    req: http::Request<Empty<Bytes>>,
) -> Result<u16, String> {
    let attempt = async {
        let resp = client.request(req).await.map_err(|e| diag::one_line(&e))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| diag::one_line(&e))?;
        }
        Ok(status)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))
}

/// The outcome of a burst.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Burst {
    pub sent: usize,
    pub rate_limited: usize,
    pub ok: usize,
    /// Other statuses and failures.
    pub other: usize,
    /// The first other outcome, for messages.
    pub first_other: Option<String>,
    pub elapsed: Duration,
    /// Whether every request went within one wall-clock second.
    pub one_window: bool,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sends `n` GETs of `path` from one address as fast as possible over warmed-up
/// connections, starting just after a wall-clock second begins: rate limiters such as Envoy's ratelimit
/// service count per second of wall-clock time, so a burst that straddled two
/// seconds would be split between two windows and could hide the limit.
pub async fn burst(target: &Target, path: &str, n: usize) -> Result<Burst, HttpProbeError> {
    if n > MAX_BURST {
        return Err(HttpProbeError::BurstTooLarge(n));
    }
    let client = target.client()?;
    // Open the connections first (their TLS handshakes would otherwise stretch the
    // burst past its second); these requests fall in an earlier window.
    let warm = n.min(BURST_CONCURRENCY);
    futures::stream::iter(0..warm)
        .map(|_| exchange_status(&client, request(target, path)))
        .buffer_unordered(BURST_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let to_next_second =
        Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()));
    tokio::time::sleep(to_next_second + Duration::from_millis(5)).await;
    let window = unix_secs(SystemTime::now());
    let started = Instant::now();
    let statuses: Vec<Result<u16, String>> = futures::stream::iter(0..n)
        .map(|_| exchange_status(&client, request(target, path)))
        .buffer_unordered(BURST_CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let one_window = unix_secs(SystemTime::now()) == window;
    // The burst spent its second's allowance for this address: wait that second out,
    // so the requests that follow (the next step, the next scenario) are not refused
    // because of it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    tokio::time::sleep(
        Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()))
            + Duration::from_millis(5),
    )
    .await;
    let mut b = Burst {
        sent: n,
        elapsed,
        one_window,
        ..Burst::default()
    };
    for s in statuses {
        match s {
            Ok(429) => b.rate_limited += 1,
            Ok(code) if (200..400).contains(&code) => b.ok += 1,
            other => {
                b.other += 1;
                if b.first_other.is_none() {
                    b.first_other = Some(match other {
                        Ok(code) => format!("HTTP {code}"),
                        Err(why) => why,
                    });
                }
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_from_endpoints() {
        let ep = ApiEndpoint {
            url: "https://api.example.org:8443".parse().unwrap(),
            ca_pem: Some(b"pem".to_vec()),
            resolve: Some(("api.example.org".into(), "127.0.0.1".parse().unwrap())),
            ..ApiEndpoint::default()
        };
        let t = Target::from_endpoint(&ep).await.unwrap();
        assert_eq!(
            (t.host.as_str(), t.addr.to_string(), t.port, t.https),
            ("api.example.org", "127.0.0.1".to_owned(), 8443, true)
        );
        assert_eq!(t.url("/health"), "https://api.example.org:8443/health");
        let plain = ApiEndpoint {
            url: "http://127.0.0.1".parse().unwrap(),
            ..ApiEndpoint::default()
        };
        let t = Target::from_endpoint(&plain).await.unwrap();
        assert_eq!((t.port, t.https), (80, false));
    }

    #[test]
    fn presented_names_read_as_written() {
        assert_eq!(presented_name("DnsName(\"api.example\")"), "api.example");
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), "IpAddress(10.0.0.1)");
    }

    #[test]
    fn bad_ca_bundles_are_refused() {
        assert!(matches!(
            roots(Some(b"nothing")),
            Err(HttpProbeError::Ca(_))
        ));
    }
}
