//! Whether the API serves correct data: HTTPS to the address the load balancer
//! Service publishes (`status.loadBalancer.ingress[0]` ip and port), with the API's
//! host as TLS server name and Host header, trusting the CA in the API's TLS Secret
//! (`ca.crt`; without one, the system's roots, as for a public ACME certificate).
//! A work the sample holds must come back with its id.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HttpClient},
    rt::TokioExecutor,
};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::{api::Api, Client};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, ServerName};

use super::scenario::ApiSpec;

#[derive(Debug, thiserror::Error)]
pub enum ApiCheckError {
    #[error("reading {what} failed")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("Service {0} publishes no load balancer address (status.loadBalancer.ingress[0] ip and port)")]
    NoAddress(String),
    #[error("the CA in Secret {secret} is not a PEM certificate: {reason}")]
    BadCa { secret: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// Where the API answers, and how to trust it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiTarget {
    pub addr: SocketAddr,
    pub host: String,
    /// PEM; None: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// The load balancer's address from the Service's status.
pub async fn address(client: &Client, spec: &ApiSpec) -> Result<SocketAddr, ApiCheckError> {
    let what = format!("Service {}/{}", spec.service_namespace, spec.service);
    let svc = Api::<Service>::namespaced(client.clone(), &spec.service_namespace)
        .get(&spec.service)
        .await
        .map_err(|source| ApiCheckError::Kube {
            what: what.clone(),
            source,
        })?;
    let addr = (|| {
        let ing = svc.status?.load_balancer?.ingress?.into_iter().next()?;
        let port = ing
            .ports
            .and_then(|p| p.first().map(|p| p.port))
            .or_else(|| Some(svc.spec?.ports?.first()?.port))?;
        Some(SocketAddr::new(
            ing.ip?.parse().ok()?,
            u16::try_from(port).ok()?,
        ))
    })();
    addr.ok_or(ApiCheckError::NoAddress(what))
}

/// `ca.crt` of the API's TLS Secret, if it has one.
pub async fn ca(client: &Client, spec: &ApiSpec) -> Result<Option<Vec<u8>>, ApiCheckError> {
    let what = format!("Secret {}/{}", spec.ca_secret_namespace, spec.ca_secret);
    let secret = Api::<Secret>::namespaced(client.clone(), &spec.ca_secret_namespace)
        .get_opt(&spec.ca_secret)
        .await
        .map_err(|source| ApiCheckError::Kube { what, source })?;
    Ok(secret
        .and_then(|s| s.data)
        .and_then(|d| d.get("ca.crt").map(|b| b.0.clone()))
        .filter(|b| !b.is_empty()))
}

pub async fn discover(client: &Client, spec: &ApiSpec) -> Result<ApiTarget, ApiCheckError> {
    Ok(ApiTarget {
        addr: address(client, spec).await?,
        host: spec.host.clone(),
        ca_pem: ca(client, spec).await?,
    })
}

/// An HTTPS client bound to one target.
pub struct ApiProbe {
    target: ApiTarget,
    http: HttpClient<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProbe")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What one request got.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Status(u16, Bytes),
    Failed(String),
}

impl ApiProbe {
    pub fn new(target: ApiTarget, timeout: Duration) -> Result<ApiProbe, ApiCheckError> {
        let mut roots = rustls::RootCertStore::empty();
        match &target.ca_pem {
            Some(pem) => {
                let secret = "the API's TLS Secret".to_owned();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| ApiCheckError::BadCa {
                        secret: secret.clone(),
                        reason: e.to_string(),
                    })?;
                    roots.add(cert).map_err(|e| ApiCheckError::BadCa {
                        secret: secret.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| ApiCheckError::ServerName(target.host.clone()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(name))
            .enable_http1()
            .wrap_connector(http);
        Ok(ApiProbe {
            target,
            // No pooled connection survives a restore: each check connects afresh.
            http: HttpClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https),
            timeout,
        })
    }

    pub fn target(&self) -> &ApiTarget {
        &self.target
    }

    /// GET `path`, the whole body, within the timeout.
    pub async fn get(&self, path: &str) -> Answer {
        let uri = format!("https://{}{path}", self.target.addr);
        let req = match http::Request::get(&uri)
            .header(http::header::HOST, &self.target.host)
            .body(Empty::new())
        {
            Ok(r) => r,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let attempt = async {
            let resp = self.http.request(req).await.map_err(|e| error_chain(&e))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| error_chain(&e))?
                .to_bytes();
            Ok::<_, String>(Answer::Status(status, body))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => Answer::Failed(e),
            Err(_) => Answer::Failed(format!("no answer within {}s", self.timeout.as_secs_f64())),
        }
    }

    /// Whether `/works/<work>` comes back correct; the reason when not.
    pub async fn check_work(&self, work: &str) -> Result<(), String> {
        judge_work(&self.get(&format!("/works/{work}")).await, work)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::diag::one_line(e)
}

/// A 200 whose JSON `id` is the work (`https://openalex.org/W...` or bare).
pub fn judge_work(answer: &Answer, work: &str) -> Result<(), String> {
    match answer {
        Answer::Failed(e) => Err(e.clone()),
        Answer::Status(200, body) => {
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|_| "200 with a body that is not JSON".to_owned())?;
            let id = v["id"].as_str().unwrap_or("");
            if id.rsplit('/').next() == Some(work) {
                Ok(())
            } else {
                Err(format!("200 but the id is {id:?}, not {work}"))
            }
        }
        Answer::Status(code, body) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            Err(format!("HTTP {code}: {}", text.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_is_correct_with_its_id() {
        let ok = Answer::Status(
            200,
            Bytes::from(r#"{"id": "https://openalex.org/W2741809807"}"#),
        );
        assert_eq!(judge_work(&ok, "W2741809807"), Ok(()));
        let other = Answer::Status(200, Bytes::from(r#"{"id": "https://openalex.org/W1"}"#));
        assert!(judge_work(&other, "W2741809807")
            .unwrap_err()
            .contains("not W2741809807"));
        let down = Answer::Status(503, Bytes::from("no healthy upstream"));
        assert_eq!(
            judge_work(&down, "W2741809807"),
            Err("HTTP 503: no healthy upstream".into())
        );
        let gone = Answer::Failed("connection refused".into());
        assert_eq!(judge_work(&gone, "W1"), Err("connection refused".into()));
    }
}
