//! HTTP to a cluster Service through the API server's service proxy
//! (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`), as DESIGN §2 reaches
//! Prometheus, Loki, Grafana, Thanos and Harbor: the same road on every target.

use std::{fmt, time::Duration};

use kube::{client::Body, Client};
use serde_json::Value;

/// One proxied request's bound.
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unexpected body an error quotes.
const EXCERPT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("GET {url} failed")]
    Send {
        url: String,
        #[source]
        source: kube::Error,
    },
    #[error("GET {url} did not answer within {}s", PROXY_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("GET {url} answered {status}: {excerpt}")]
    Status {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("GET {url} did not answer JSON: {excerpt}")]
    Json {
        url: String,
        excerpt: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ProxyError {
    /// The HTTP status the service (or the proxy) answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A Service port: `monitoring/prometheus-k8s:9090`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

impl ServiceRef {
    pub fn new(namespace: &str, name: &str, port: u16) -> Self {
        ServiceRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        }
    }

    /// The proxy URL of `path` (with its query string), relative to the API server.
    pub fn proxy_url(&self, path: &str) -> String {
        format!(
            "/api/v1/namespaces/{}/services/{}:{}/proxy{}",
            self.namespace,
            self.name,
            self.port,
            if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            }
        )
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` with the values encoded.
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

pub(crate) fn excerpt(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > EXCERPT {
        one_line.chars().take(EXCERPT).collect::<String>() + "…"
    } else {
        one_line
    }
}

/// GET through the service proxy: (status, body), whatever the status.
pub async fn get_raw(
    client: &Client,
    svc: &ServiceRef,
    path: &str,
) -> Result<(u16, String), ProxyError> {
    let url = svc.proxy_url(path);
    let req = http::Request::get(&url)
        .body(Body::from(Vec::new()))
        .expect("a GET with a valid path");
    let attempt = async {
        let res = client.send(req).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect_bytes().await?;
        Ok::<_, kube::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(PROXY_TIMEOUT, attempt).await {
        Err(_) => Err(ProxyError::Timeout { url }),
        Ok(Err(source)) => Err(ProxyError::Send { url, source }),
        Ok(Ok(r)) => Ok(r),
    }
}

/// GET expecting 2xx; the body as text.
pub async fn get_text(client: &Client, svc: &ServiceRef, path: &str) -> Result<String, ProxyError> {
    let (status, body) = get_raw(client, svc, path).await?;
    if !(200..300).contains(&status) {
        return Err(ProxyError::Status {
            url: svc.proxy_url(path),
            status,
            excerpt: excerpt(&body),
        });
    }
    Ok(body)
}

/// GET expecting 2xx and JSON.
pub async fn get_json(client: &Client, svc: &ServiceRef, path: &str) -> Result<Value, ProxyError> {
    let body = get_text(client, svc, path).await?;
    serde_json::from_str(&body).map_err(|source| ProxyError::Json {
        url: svc.proxy_url(path),
        excerpt: excerpt(&body),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_and_queries() {
        let s = ServiceRef::new("monitoring", "loki", 3100);
        assert_eq!(s.to_string(), "monitoring/loki:3100");
        let path = with_query(
            "/loki/api/v1/query_range",
            &[("query", "{namespace=\"openalex\"}"), ("limit", "10")],
        );
        assert_eq!(
            s.proxy_url(&path),
            "/api/v1/namespaces/monitoring/services/loki:3100/proxy/loki/api/v1/query_range?\
             query=%7Bnamespace%3D%22openalex%22%7D&limit=10"
        );
        assert_eq!(excerpt("a\n  b"), "a b");
    }
}
