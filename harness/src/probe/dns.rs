//! Cluster DNS as a workload sees it: `nslookup NAME` (else `getent hosts NAME`, for
//! images without nslookup) run by pod exec in a Ready pod of a namespace, so the
//! answer comes through the pod's resolv.conf and CoreDNS, as the application's own.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{api::ListParams, Api, Client, ResourceExt};

use super::exec::{self, ExecError, ExecOutput, NOT_FOUND};

/// One lookup's bound: resolvers retry for a few seconds when no server answers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many pods are tried when images lack both tools.
const MAX_PODS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum DnsProbeError {
    #[error("listing pods in namespace {namespace:?} failed")]
    List {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("no Running and Ready pod in namespace {0:?} to resolve from")]
    NoPod(String),
    #[error("none of the pods {pods} has nslookup or getent to resolve with")]
    NoTool { pods: String },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// The outcome of one lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// `namespace/pod` it ran in.
    pub pod: String,
    /// `nslookup` or `getent hosts`.
    pub tool: &'static str,
    pub addresses: Vec<String>,
    /// The tool's own words when nothing resolved (NXDOMAIN, timeout), one line.
    pub failure: Option<String>,
}

/// Addresses in `nslookup` output (busybox and bind-utils), those after the `Name:`
/// line: the ones before it are the server's.
pub fn parse_nslookup(out: &str) -> Vec<String> {
    let mut seen_name = false;
    let mut addrs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if line.starts_with("Name:") {
            seen_name = true;
            continue;
        }
        if !seen_name || !line.starts_with("Address") {
            continue;
        }
        // `Address: 10.0.0.1`, `Address 1: 10.0.0.1 name` (old busybox).
        if let Some((_, rest)) = line.split_once(':') {
            if let Some(a) = rest.split_whitespace().next() {
                if a.parse::<std::net::IpAddr>().is_ok() && !addrs.iter().any(|x| x == a) {
                    addrs.push(a.to_owned());
                }
            }
        }
    }
    addrs
}

/// Addresses in `getent hosts` output (`10.0.0.1   name`).
pub fn parse_getent(out: &str) -> Vec<String> {
    let mut addrs: Vec<String> = Vec::new();
    for a in out.lines().filter_map(|l| l.split_whitespace().next()) {
        if a.parse::<std::net::IpAddr>().is_ok() && !addrs.iter().any(|x| x == a) {
            addrs.push(a.to_owned());
        }
    }
    addrs
}

/// The line that says why a lookup failed (`** server can't find x: NXDOMAIN`,
/// `;; connection timed out; no servers could be reached`).
fn failure_line(o: &ExecOutput) -> String {
    o.stdout
        .lines()
        .chain(o.stderr.lines())
        .map(str::trim)
        .find(|l| {
            l.contains("can't find")
                || l.contains("timed out")
                || l.contains("NXDOMAIN")
                || l.contains("SERVFAIL")
                || l.contains("no servers")
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("exit code {} and no address", o.exit_code))
}

/// Reads a tool's output into addresses.
type Parser = fn(&str) -> Vec<String>;

fn tool_missing(o: &ExecOutput) -> bool {
    o.exit_code == NOT_FOUND || o.exit_code == 126 || o.stderr.contains("executable file not found")
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Resolves `name` from a Ready pod of `namespace`.
pub async fn lookup(client: &Client, namespace: &str, name: &str) -> Result<Lookup, DnsProbeError> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| DnsProbeError::List {
            namespace: namespace.to_owned(),
            source,
        })?;
    let mut candidates: Vec<&Pod> = pods.items.iter().filter(|p| ready(p)).collect();
    candidates.sort_by_key(|p| p.name_any());
    if candidates.is_empty() {
        return Err(DnsProbeError::NoPod(namespace.to_owned()));
    }
    let mut tried = Vec::new();
    for pod in candidates.into_iter().take(MAX_PODS) {
        let pod_name = pod.name_any();
        let at = format!("{namespace}/{pod_name}");
        let tools: [(&'static str, Vec<&str>, Parser); 2] = [
            ("nslookup", vec!["nslookup", name], parse_nslookup),
            ("getent hosts", vec!["getent", "hosts", name], parse_getent),
        ];
        for (tool, argv, parse) in tools {
            let out = exec::run(client, namespace, &pod_name, None, &argv, LOOKUP_TIMEOUT).await?;
            if tool_missing(&out) {
                continue;
            }
            let addresses = if out.exit_code == 0 {
                parse(&out.stdout)
            } else {
                Vec::new()
            };
            let failure = addresses.is_empty().then(|| failure_line(&out));
            return Ok(Lookup {
                pod: at,
                tool,
                addresses,
                failure,
            });
        }
        tried.push(at);
    }
    Err(DnsProbeError::NoTool {
        pods: tried.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nslookup_answers_after_the_server_lines() {
        let busybox = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\tfastapi.openalex.svc.cluster.local\nAddress: 10.96.0.17\n\n";
        assert_eq!(parse_nslookup(busybox), ["10.96.0.17"]);
        let bind = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\nName:\tes.openalex.svc.cluster.local\nAddress: 10.244.1.5\nName:\tes.openalex.svc.cluster.local\nAddress: 10.244.2.7\n";
        assert_eq!(parse_nslookup(bind), ["10.244.1.5", "10.244.2.7"]);
        let old = "Server:    10.96.0.10\nAddress 1: 10.96.0.10 kube-dns.kube-system.svc.cluster.local\n\nName:      x\nAddress 1: 10.96.0.17 x.svc.cluster.local\n";
        assert_eq!(parse_nslookup(old), ["10.96.0.17"]);
        let nx = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n** server can't find nope.svc.cluster.local: NXDOMAIN\n";
        assert!(parse_nslookup(nx).is_empty());
        let o = ExecOutput {
            stdout: nx.into(),
            stderr: String::new(),
            exit_code: 1,
        };
        assert_eq!(
            failure_line(&o),
            "** server can't find nope.svc.cluster.local: NXDOMAIN"
        );
    }

    #[test]
    fn getent_and_missing_tools() {
        assert_eq!(
            parse_getent("10.96.0.17      fastapi.openalex.svc.cluster.local\n"),
            ["10.96.0.17"]
        );
        let missing = ExecOutput {
            stdout: String::new(),
            stderr: "sh: nslookup: not found\n".into(),
            exit_code: 127,
        };
        assert!(tool_missing(&missing));
    }
}
