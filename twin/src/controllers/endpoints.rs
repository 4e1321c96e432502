//! Service endpoints, following three upstream kube-controller-manager controllers:
//!
//! - The endpoints controller: every Service with a selector gets an Endpoints
//!   object of the same name. Pods matching the selector with a `status.podIP`
//!   (terminating pods left out, and finished pods of restartPolicy Never/OnFailure)
//!   are `addresses` when Ready (or when the Service has
//!   `publishNotReadyAddresses`), else `notReadyAddresses`; each address has the
//!   pod's IP, nodeName, targetRef (and hostname for a pod whose `subdomain` is the
//!   Service). Ports are the Service's, with `targetPort` resolved per pod (a number,
//!   or the container port of that name and protocol; a pod without it is left out
//!   of that port), grouped into subsets by identical port sets (upstream's
//!   RepackSubsets). Headless Services without ports list addresses without ports.
//!   The object carries the label `endpointslice.kubernetes.io/skip-mirror: "true"`
//!   (and `service.kubernetes.io/headless` for headless Services) as upstream, and
//!   is deleted with its Service.
//! - The endpointslice controller: for the same Services, EndpointSlices
//!   `<service>-<random suffix>` (generateName), one per distinct port set, owned by
//!   the Service, labelled `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//!   addressType IPv4, endpoints with conditions ready/serving/terminating (slices
//!   keep terminating pods, with `ready: false`), nodeName, zone (node label
//!   `topology.kubernetes.io/zone`), targetRef; a Service without endpoints gets one
//!   empty placeholder slice.
//! - The endpointslice mirroring controller: Endpoints written by a user for a
//!   Service without selector are mirrored into slices managed by
//!   `endpointslicemirroring-controller.k8s.io`, owned by the Endpoints.
//!
//! Not modelled: the 100-endpoints-per-slice split (the twin's clusters are small),
//! dual-stack (only IPv4 `podIP`), `last-change-trigger-time` annotations.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::ctx::{obj, Ctx};
use crate::selector::LabelSelector;

const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
const MIRROR_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
const HEADLESS: &str = "service.kubernetes.io/headless";

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(
        ctx,
        &[
            ("", "services"),
            ("", "pods"),
            ("", "endpoints"),
            ("discovery.k8s.io", "endpointslices"),
        ],
        stop,
        reconcile,
    )
    .await
}

/// The Service's selector, when it has a non-empty one.
fn selector(svc: &Value) -> Option<LabelSelector> {
    let sel = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())?;
    LabelSelector::from_label_selector_json(&json!({ "matchLabels": sel })).ok()
}

fn is_headless(svc: &Value) -> bool {
    obj::str_at(svc, "/spec/clusterIP") == Some("None")
}

/// Upstream's ShouldPodBeInEndpoints.
fn should_be_in_endpoints(pod: &Value, include_terminating: bool) -> bool {
    if obj::str_at(pod, "/status/podIP").is_none_or(str::is_empty) {
        return false;
    }
    if !include_terminating && obj::is_terminating(pod) {
        return false;
    }
    let phase = obj::str_at(pod, "/status/phase").unwrap_or("");
    match obj::str_at(pod, "/spec/restartPolicy").unwrap_or("Always") {
        "Never" => phase != "Failed" && phase != "Succeeded",
        "OnFailure" => phase != "Succeeded",
        _ => true,
    }
}

/// Upstream's FindPort: a numeric targetPort as is, a named one from the pod's
/// container ports (same protocol).
fn find_port(pod: &Value, svc_port: &Value) -> Option<i64> {
    let target = svc_port.get("targetPort").unwrap_or(&svc_port["port"]);
    if let Some(n) = target.as_i64() {
        return Some(n);
    }
    let name = target.as_str()?;
    let proto = svc_port["protocol"].as_str().unwrap_or("TCP");
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)?
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == name && p["protocol"].as_str().unwrap_or("TCP") == proto)
        .and_then(|p| p["containerPort"].as_i64())
}

/// The ports a pod serves for the Service (EndpointPort shape, sorted).
fn pod_ports(pod: &Value, svc: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = find_port(pod, p)?;
            let mut ep = json!({
                "name": p["name"].as_str().unwrap_or(""),
                "port": port,
                "protocol": p["protocol"].as_str().unwrap_or("TCP"),
            });
            if let Some(a) = p.get("appProtocol") {
                ep["appProtocol"] = a.clone();
            }
            Some(ep)
        })
        .collect();
    out.sort_by_key(|p| {
        (
            p["name"].as_str().unwrap_or("").to_string(),
            p["port"].as_i64(),
        )
    });
    out
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": obj::namespace(pod), "name": obj::name(pod), "uid": obj::uid(pod)})
}

fn hostname(pod: &Value, svc: &Value) -> Option<String> {
    let h = obj::str_at(pod, "/spec/hostname").filter(|h| !h.is_empty())?;
    (obj::str_at(pod, "/spec/subdomain") == Some(obj::name(svc))
        && obj::namespace(pod) == obj::namespace(svc))
    .then(|| h.to_string())
}

fn ip(pod: &Value) -> &str {
    obj::str_at(pod, "/status/podIP").unwrap_or("")
}

fn sort_key(v: &Value) -> (String, String) {
    let a = v
        .get("ip")
        .or_else(|| v.pointer("/addresses/0"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let n = v
        .pointer("/targetRef/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    (a.to_string(), n.to_string())
}

/// A subset being built: (ports, ready addresses, not-ready addresses).
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

/// The Endpoints subsets for a Service and its selected pods.
fn subsets(svc: &Value, pods: &[&Value]) -> Vec<Value> {
    let publish = svc.pointer("/spec/publishNotReadyAddresses") == Some(&Value::Bool(true));
    let has_ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    // port set (as JSON) -> (ports, ready, not ready)
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let ports = pod_ports(pod, svc);
        if ports.is_empty() && (has_ports || !is_headless(svc)) {
            continue;
        }
        let mut addr = json!({"ip": ip(pod), "targetRef": target_ref(pod)});
        if let Some(n) = obj::str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty()) {
            addr["nodeName"] = json!(n);
        }
        if let Some(h) = hostname(pod, svc) {
            addr["hostname"] = json!(h);
        }
        let g = groups
            .entry(Value::Array(ports.clone()).to_string())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || obj::is_pod_ready(pod) {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by_key(sort_key);
            not_ready.sort_by_key(sort_key);
            let mut s = json!({});
            if !ready.is_empty() {
                s["addresses"] = Value::Array(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = Value::Array(not_ready);
            }
            if !ports.is_empty() {
                s["ports"] = Value::Array(ports);
            }
            s
        })
        .collect()
}

/// Desired slices (port set key -> (ports, endpoints)) for a Service with selector.
fn slice_groups(
    svc: &Value,
    pods: &[&Value],
    zones: &HashMap<String, String>,
) -> BTreeMap<String, (Vec<Value>, Vec<Value>)> {
    let publish = svc.pointer("/spec/publishNotReadyAddresses") == Some(&Value::Bool(true));
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = pod_ports(pod, svc);
        let serving = obj::is_pod_ready(pod);
        let terminating = obj::is_terminating(pod);
        let ready = publish || (serving && !terminating);
        let mut ep = json!({
            "addresses": [ip(pod)],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "targetRef": target_ref(pod),
        });
        if let Some(n) = obj::str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty()) {
            ep["nodeName"] = json!(n);
            if let Some(z) = zones.get(n) {
                ep["zone"] = json!(z);
            }
        }
        if let Some(h) = hostname(pod, svc) {
            ep["hostname"] = json!(h);
        }
        groups
            .entry(Value::Array(ports.clone()).to_string())
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    if groups.is_empty() {
        groups.insert("[]".into(), (Vec::new(), Vec::new())); // the placeholder slice
    }
    for g in groups.values_mut() {
        g.1.sort_by_key(sort_key);
    }
    groups
}

fn labels(o: &Value) -> Map<String, Value> {
    o.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Makes the slices managed by `managed_by` for one service match `desired`:
/// slices are matched by port set, updated in place, created or deleted.
#[allow(clippy::too_many_arguments)]
fn sync_slices(
    ctx: &Ctx,
    ns: &str,
    service: &str,
    existing: &[&Value],
    managed_by: &str,
    owner: &Value,
    mut slice_labels: Map<String, Value>,
    desired: BTreeMap<String, (Vec<Value>, Vec<Value>)>,
) {
    let c = &ctx.client;
    slice_labels.insert(SERVICE_NAME.into(), json!(service));
    slice_labels.insert(MANAGED_BY.into(), json!(managed_by));
    let mut unused: Vec<&Value> = existing.to_vec();
    for (_, (ports, endpoints)) in desired {
        let ports = Value::Array(ports);
        let endpoints = Value::Array(endpoints);
        let pos = unused
            .iter()
            .position(|s| s.get("ports").cloned().unwrap_or(json!([])) == ports);
        match pos {
            Some(i) => {
                let s = unused.remove(i);
                let current = s.get("endpoints").cloned().unwrap_or(json!([]));
                let same_labels = slice_labels
                    .iter()
                    .all(|(k, v)| labels(s).get(k) == Some(v));
                if current != endpoints || !same_labels {
                    let _ = c.patch(
                        "discovery.k8s.io",
                        "endpointslices",
                        Some(ns),
                        obj::name(s),
                        json!({"metadata": {"labels": slice_labels}, "endpoints": endpoints}),
                    );
                }
            }
            None => {
                let mut slice = json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": format!("{service}-"), "namespace": ns,
                        "labels": slice_labels, "ownerReferences": [owner],
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                });
                if ports.as_array().is_some_and(|p| !p.is_empty()) {
                    slice["ports"] = ports;
                }
                if let Err(e) = c.create(slice) {
                    tracing::warn!("cannot create an EndpointSlice for {ns}/{service}: {e}");
                }
            }
        }
    }
    for s in unused {
        let _ = c.delete(
            "discovery.k8s.io",
            "endpointslices",
            Some(ns),
            obj::name(s),
            None,
        );
    }
}

fn owner_ref(kind: &str, o: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "name": obj::name(o), "uid": obj::uid(o),
           "controller": true, "blockOwnerDeletion": true})
}

fn reconcile(ctx: &Ctx) {
    let c = &ctx.client;
    let services = c.list("", "services", None, None);
    let pods = c.list("", "pods", None, None);
    let endpoints = c.list("", "endpoints", None, None);
    let slices = c.list("discovery.k8s.io", "endpointslices", None, None);
    let zones: HashMap<String, String> = c
        .list("", "nodes", None, None)
        .iter()
        .filter_map(|n| {
            let z = n
                .pointer("/metadata/labels/topology.kubernetes.io~1zone")?
                .as_str()?;
            Some((obj::name(n).to_string(), z.to_string()))
        })
        .collect();
    let svc_key = |o: &Value| (obj::namespace(o).to_string(), obj::name(o).to_string());
    let by_name: HashMap<(String, String), &Value> =
        services.iter().map(|s| (svc_key(s), s)).collect();
    let managed_slices = |ns: &str, svc: &str, by: &str| -> Vec<&Value> {
        slices
            .iter()
            .filter(|s| {
                obj::namespace(s) == ns
                    && labels(s).get(SERVICE_NAME).and_then(Value::as_str) == Some(svc)
                    && labels(s).get(MANAGED_BY).and_then(Value::as_str) == Some(by)
            })
            .collect()
    };

    for svc in &services {
        if obj::is_terminating(svc) {
            continue;
        }
        let (ns, name) = (obj::namespace(svc), obj::name(svc));
        let Some(sel) = selector(svc) else {
            continue;
        };
        let selected: Vec<&Value> = pods
            .iter()
            .filter(|p| obj::namespace(p) == ns && sel.matches_object(p))
            .collect();

        // Endpoints.
        let mut ep_labels = labels(svc);
        ep_labels.insert(SKIP_MIRROR.into(), json!("true"));
        if is_headless(svc) {
            ep_labels.insert(HEADLESS.into(), json!(""));
        } else {
            ep_labels.remove(HEADLESS);
        }
        let want = subsets(svc, &selected);
        match endpoints
            .iter()
            .find(|e| obj::namespace(e) == ns && obj::name(e) == name)
        {
            Some(cur) => {
                let have = cur.get("subsets").cloned().unwrap_or(json!([]));
                if have != json!(want) || labels(cur) != ep_labels {
                    let subsets = if want.is_empty() {
                        Value::Null
                    } else {
                        json!(want)
                    };
                    // A merge patch keeps labels absent from the patch: set all of them.
                    let mut patch_labels: Map<String, Value> = labels(cur)
                        .keys()
                        .map(|k| (k.clone(), Value::Null))
                        .collect();
                    patch_labels.extend(ep_labels.clone());
                    let _ = c.patch(
                        "",
                        "endpoints",
                        Some(ns),
                        name,
                        json!({"metadata": {"labels": patch_labels}, "subsets": subsets}),
                    );
                }
            }
            None => {
                let mut e = json!({
                    "apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": ep_labels},
                });
                if !want.is_empty() {
                    e["subsets"] = json!(want);
                }
                let _ = c.create(e);
            }
        }

        // EndpointSlices.
        let mut slice_labels = labels(svc);
        if is_headless(svc) {
            slice_labels.insert(HEADLESS.into(), json!(""));
        }
        sync_slices(
            ctx,
            ns,
            name,
            &managed_slices(ns, name, SLICE_CONTROLLER),
            SLICE_CONTROLLER,
            &owner_ref("Service", svc),
            slice_labels,
            slice_groups(svc, &selected, &zones),
        );
    }

    // Endpoints this controller made whose Service is gone (or lost its selector).
    for e in &endpoints {
        if labels(e).get(SKIP_MIRROR).and_then(Value::as_str) != Some("true") {
            continue;
        }
        if !by_name.contains_key(&svc_key(e)) {
            let _ = c.delete("", "endpoints", Some(obj::namespace(e)), obj::name(e), None);
        }
    }

    // Slices of Services without selector: the slice controller's go; user
    // Endpoints are mirrored.
    for svc in services.iter().filter(|s| selector(s).is_none()) {
        let (ns, name) = (obj::namespace(svc), obj::name(svc));
        for s in managed_slices(ns, name, SLICE_CONTROLLER) {
            let _ = c.delete(
                "discovery.k8s.io",
                "endpointslices",
                Some(ns),
                obj::name(s),
                None,
            );
        }
        let Some(ep) = endpoints.iter().find(|e| {
            obj::namespace(e) == ns
                && obj::name(e) == name
                && labels(e).get(SKIP_MIRROR).and_then(Value::as_str) != Some("true")
                && e.pointer("/metadata/annotations/control-plane.alpha.kubernetes.io~1leader")
                    .is_none()
        }) else {
            continue;
        };
        let mut desired: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
        for subset in ep["subsets"].as_array().into_iter().flatten() {
            let mut ports: Vec<Value> = subset["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    json!({"name": p["name"].as_str().unwrap_or(""), "port": p["port"],
                           "protocol": p["protocol"].as_str().unwrap_or("TCP")})
                })
                .collect();
            ports.sort_by_key(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["port"].as_i64(),
                )
            });
            let g = desired
                .entry(Value::Array(ports.clone()).to_string())
                .or_insert_with(|| (ports, Vec::new()));
            for (field, ready) in [("addresses", true), ("notReadyAddresses", false)] {
                for a in subset[field].as_array().into_iter().flatten() {
                    let Some(ip) = a["ip"].as_str().filter(|i| !i.contains(':')) else {
                        continue;
                    };
                    let mut e = json!({"addresses": [ip], "conditions": {"ready": ready}});
                    for k in ["hostname", "nodeName", "targetRef"] {
                        if let Some(v) = a.get(k) {
                            e[k] = v.clone();
                        }
                    }
                    g.1.push(e);
                }
            }
        }
        for g in desired.values_mut() {
            g.1.sort_by_key(sort_key);
        }
        let mut mirror_labels = labels(ep);
        mirror_labels.remove(SKIP_MIRROR);
        sync_slices(
            ctx,
            ns,
            name,
            &managed_slices(ns, name, MIRROR_CONTROLLER),
            MIRROR_CONTROLLER,
            &owner_ref("Endpoints", ep),
            mirror_labels,
            desired,
        );
    }
    // Mirrored slices whose Service now has a selector or is gone.
    for s in &slices {
        if labels(s).get(MANAGED_BY).and_then(Value::as_str) != Some(MIRROR_CONTROLLER) {
            continue;
        }
        let svc = labels(s)
            .get(SERVICE_NAME)
            .and_then(Value::as_str)
            .map(|n| (obj::namespace(s).to_string(), n.to_string()));
        let keep = svc
            .and_then(|k| by_name.get(&k).copied())
            .is_some_and(|svc| selector(svc).is_none());
        if !keep {
            let _ = c.delete(
                "discovery.k8s.io",
                "endpointslices",
                Some(obj::namespace(s)),
                obj::name(s),
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, ports: Value) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]},
            "status": {"podIP": ip, "phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        })
    }

    #[test]
    fn subsets_resolve_named_ports_and_split_readiness() {
        let svc = json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
        });
        let a = pod(
            "a",
            "10.0.0.2",
            true,
            json!([{"name": "http", "containerPort": 8080}]),
        );
        let b = pod(
            "b",
            "10.0.0.1",
            false,
            json!([{"name": "http", "containerPort": 8080}]),
        );
        let c = pod(
            "c",
            "10.0.0.3",
            true,
            json!([{"name": "metrics", "containerPort": 9090}]),
        );
        let mut d = pod(
            "d",
            "10.0.0.4",
            true,
            json!([{"name": "http", "containerPort": 8080}]),
        );
        d["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let got = subsets(&svc, &[&a, &b, &c, &d]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["addresses"][0]["ip"], "10.0.0.2");
        assert_eq!(got[0]["addresses"][0]["targetRef"]["name"], "a");
        assert_eq!(got[0]["addresses"].as_array().unwrap().len(), 1);
        assert_eq!(got[0]["notReadyAddresses"][0]["ip"], "10.0.0.1");
        assert_eq!(
            got[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        let slices = slice_groups(&svc, &[&a, &b, &c, &d], &HashMap::new());
        // Pod c serves none of the ports: a slice of its own without ports.
        assert_eq!(slices.len(), 2);
        assert_eq!(slices["[]"].1[0]["targetRef"]["name"], "c");
        let terminating = slices
            .values()
            .flat_map(|g| &g.1)
            .find(|e| e["targetRef"]["name"] == "d")
            .unwrap();
        assert_eq!(
            terminating["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
    }
}
