//! Where the API answers, found the way a client outside the cluster finds it: the
//! HTTPProxy's fqdn and TLS secret, and the load balancer address of Contour's Envoy
//! Service. Works on any target (the twin publishes its data plane there too).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use crate::load::ApiEndpoint;

#[derive(Debug, thiserror::Error)]
pub enum ApiDiscoveryError {
    #[error("listing HTTPProxies failed")]
    Proxies(#[source] kube::Error),
    #[error("reading Service projectcontour/envoy failed")]
    Envoy(#[source] kube::Error),
    #[error("the API URL {0} is not valid")]
    Url(String),
}

/// The first HTTPProxy with a virtual host, reached through Envoy's load balancer.
/// None when there is no HTTPProxy or no load balancer address yet.
pub async fn discover(client: &Client) -> Result<Option<ApiEndpoint>, ApiDiscoveryError> {
    discover_with(client, lb_address).await
}

/// [`discover`], with Envoy's address read from its Service by `address` (a kind
/// cluster publishes a NodePort through a host port mapping instead of a load balancer).
pub async fn discover_with(
    client: &Client,
    address: impl Fn(&Value) -> Option<(IpAddr, u16)>,
) -> Result<Option<ApiEndpoint>, ApiDiscoveryError> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("projectcontour.io", "v1", "HTTPProxy"),
        "httpproxies",
    );
    let proxies: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = match proxies.list(&ListParams::default()).await {
        Ok(l) => l,
        // No Contour CRD: no API endpoint on this cluster.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(ApiDiscoveryError::Proxies(e)),
    };
    let Some(proxy) = list
        .items
        .iter()
        .find(|p| p.data.pointer("/spec/virtualhost/fqdn").is_some())
    else {
        return Ok(None);
    };
    let fqdn = proxy
        .data
        .pointer("/spec/virtualhost/fqdn")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let envoy: Api<Service> = Api::namespaced(client.clone(), "projectcontour");
    let Some(svc) = envoy
        .get_opt("envoy")
        .await
        .map_err(ApiDiscoveryError::Envoy)?
    else {
        return Ok(None);
    };
    let Some((ip, port)) = address(&serde_json::to_value(&svc).unwrap_or(Value::Null)) else {
        return Ok(None);
    };
    let tls_secret = proxy
        .data
        .pointer("/spec/virtualhost/tls/secretName")
        .and_then(Value::as_str);
    let scheme = if tls_secret.is_some() {
        "https"
    } else {
        "http"
    };
    let mut ca_pem = None;
    if let (Some(name), Some(ns)) = (tls_secret, proxy.metadata.namespace.as_deref()) {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        // cert-manager stores the issuing CA in ca.crt for CA and self-signed issuers;
        // with a public ACME issuer it is absent and the system roots apply.
        if let Ok(Some(s)) = secrets.get_opt(name).await {
            ca_pem = s.data.and_then(|d| d.get("ca.crt").map(|b| b.0.clone()));
        }
    }
    let url = format!("{scheme}://{fqdn}:{port}");
    Ok(Some(ApiEndpoint {
        url: url
            .parse()
            .map_err(|_| ApiDiscoveryError::Url(url.clone()))?,
        ca_pem,
        resolve: Some((fqdn, ip)),
        ..Default::default()
    }))
}

/// The load balancer's address and port from a Service (`ports` in the ingress
/// status when the provider reports one, else the Service's first port).
pub fn lb_address(svc: &Value) -> Option<(IpAddr, u16)> {
    let ingress = svc.pointer("/status/loadBalancer/ingress/0")?;
    let ip: IpAddr = ingress.get("ip")?.as_str()?.parse().ok()?;
    let port = ingress
        .pointer("/ports/0/port")
        .or_else(|| svc.pointer("/spec/ports/0/port"))
        .and_then(Value::as_u64)?;
    Some((ip, port as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_address_with_and_without_status_ports() {
        let twin: Value = serde_yaml::from_str("spec: {ports: [{port: 443}]}\nstatus: {loadBalancer: {ingress: [{ip: 127.0.0.1, ports: [{port: 40009, protocol: TCP}]}]}}").unwrap();
        assert_eq!(
            lb_address(&twin),
            Some(("127.0.0.1".parse().unwrap(), 40009))
        );
        let cloud: Value = serde_yaml::from_str(
            "spec: {ports: [{port: 443}]}\nstatus: {loadBalancer: {ingress: [{ip: 10.0.0.7}]}}",
        )
        .unwrap();
        assert_eq!(lb_address(&cloud), Some(("10.0.0.7".parse().unwrap(), 443)));
        let pending: Value =
            serde_yaml::from_str("spec: {ports: [{port: 443}]}\nstatus: {loadBalancer: {}}")
                .unwrap();
        assert_eq!(lb_address(&pending), None);
    }
}
