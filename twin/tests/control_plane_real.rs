//! `--control-plane real`: real etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler (built by scripts/k8s-setup.sh) with the twin's simulated nodes
//! joined to them as clients. Everything is driven through the real API server:
//! kube-rs, unmodified kubectl (the one built beside the control plane) and the
//! twin's provider endpoint for node power.
//!
//! One test runs the steps in sequence on one control plane (its start costs seconds).
//! Without the binaries it says SKIPPED, except under CI (`CI=true`) or with
//! `STORMDRILL_REQUIRE_K8S=1`, where it fails: CI must not pass it silently.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::{json, Value};
use stormdrill_twin::controlplane::real::binaries_for_test;
use stormdrill_twin::controlplane::ControlPlaneKind;
use stormdrill_twin::{Twin, TwinOptions};

#[path = "../../harness/tests/common/streams.rs"]
mod streams;

fn binaries() -> Option<PathBuf> {
    binaries_for_test()
}

async fn client_from(yaml: &str) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(yaml).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

/// Polls `f` every 100 ms until it returns Some, or panics after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_ready(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

async fn ready_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items.into_iter().filter(ready).collect())
        .unwrap_or_default()
}

/// Runs the real kubectl; returns (exit ok, stdout + stderr).
fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(bin.join("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("kubectl ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn power(provider: &Client, node: &str, on: bool) {
    let body = json!({"state": if on { "on" } else { "off" }});
    let req = http::Request::post(format!("/twin/v1/nodes/{node}/power"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    provider
        .request_text(req)
        .await
        .expect("the provider endpoint powers the node");
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: cp-test}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.27"}
"#;

/// A pod whose image serves HTTP in the twin: Grafana's `/api/health` on 3000.
const GRAFANA: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: graf, namespace: cp-test, labels: {app: graf}}
spec:
  containers:
  - name: grafana
    image: grafana/grafana:11.2.0
    ports: [{containerPort: 3000}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_control_plane_with_simulated_nodes() {
    let Some(bin) = binaries() else { return };
    let t0 = Instant::now();
    let twin = Twin::start(TwinOptions {
        control_plane: ControlPlaneKind::Real,
        seed: 3,
        ..TwinOptions::default()
    })
    .await
    .expect("the twin starts on the real control plane");
    let started = t0.elapsed();
    let cp = twin
        .real_control_plane()
        .expect("a real control plane")
        .clone();
    println!(
        "control plane + bare cluster ready in {started:.1?}; processes: {:?}",
        cp.processes()
    );
    let client = client_from(&twin.kubeconfig_yaml()).await;
    let provider = client_from(&twin.provider_kubeconfig_yaml()).await;
    let dir = std::env::temp_dir().join(format!("stormdrill-cp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, twin.kubeconfig_yaml()).expect("kubeconfig written");

    // The real server answers, with the pinned release's version.
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(
        version.git_version,
        stormdrill_twin::controlplane::real::K8S_VERSION
    );
    // The twin's own address no longer serves a (mirrored) Kubernetes API.
    let err = provider
        .apiserver_version()
        .await
        .expect_err("provider only");
    assert!(err.to_string().contains("real kube-apiserver"), "{err}");

    // 1. The bare cluster settled: every node Ready with a fresh Lease, kube-system Ready.
    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = until("4 Ready nodes", Duration::from_secs(30), || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let ready: Vec<String> = list
            .items
            .iter()
            .filter(|n| node_ready(n).as_deref() == Some("True"))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        (ready.len() == 4).then_some(ready)
    })
    .await;
    assert!(names.contains(&"dirqual2".to_string()), "{names:?}");
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    until(
        "CoreDNS and kube-proxy Ready",
        Duration::from_secs(60),
        || async {
            let dns = ready_pods(&system, "k8s-app=kube-dns").await.len();
            let proxy = ready_pods(&system, "k8s-app=kube-proxy").await.len();
            (dns >= 1 && proxy >= 3).then_some(())
        },
    )
    .await;

    // The control plane's memory once settled (VmRSS of each process).
    let rss: Vec<String> = cp
        .processes()
        .iter()
        .map(|p| {
            let kb = std::fs::read_to_string(format!("/proc/{}/status", p.pid))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
                .unwrap_or_else(|| "?".into());
            format!("{} {kb}", p.name)
        })
        .collect();
    println!("memory once settled: {}", rss.join(", "));

    // 2. A Deployment of 3 becomes Ready (real controllers + scheduler, simulated
    //    kubelets) and survives a pod kill.
    let (ok, out) = kubectl(&bin, &kubeconfig, &["create", "namespace", "cp-test"], None);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&bin, &kubeconfig, &["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(ok, "kubectl apply: {out}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "cp-test");
    let t = Instant::now();
    let first = until("3 Ready web pods", Duration::from_secs(60), || async {
        let r = ready_pods(&pods, "app=web").await;
        (r.len() == 3).then_some(r)
    })
    .await;
    println!("deployment of 3 Ready in {:.1?}", t.elapsed());
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=30s",
        ],
        None,
    );
    assert!(ok, "rollout status: {out}");
    let victim = first[0].metadata.name.clone().expect("name");
    pods.delete(&victim, &DeleteParams::default())
        .await
        .expect("pod deleted");
    let t = Instant::now();
    until(
        "the killed pod replaced",
        Duration::from_secs(60),
        || async {
            let r = ready_pods(&pods, "app=web").await;
            let gone = pods.get_opt(&victim).await.ok()?.is_none();
            (r.len() == 3
                && gone
                && r.iter()
                    .all(|p| p.metadata.name.as_deref() != Some(&victim)))
            .then_some(())
        },
    )
    .await;
    println!("killed pod replaced and gone in {:.1?}", t.elapsed());

    // 3. Unmodified kubectl: server-side apply, patch, scale, create, auth can-i.
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &["apply", "--server-side", "-f", "-"],
        Some(DEPLOYMENT),
    );
    assert!(ok, "server-side apply: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
        ],
        None,
    );
    assert!(ok, "patch: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &["-n", "cp-test", "scale", "deployment/web", "--replicas=4"],
        None,
    );
    assert!(ok, "scale: {out}");
    until("4 Ready web pods", Duration::from_secs(60), || async {
        (ready_pods(&pods, "app=web").await.len() == 4).then_some(())
    })
    .await;
    // A new image rolls out, `rollout undo` brings the previous one back (the real
    // Deployment controller's revision history), and `wait` sees it Available.
    let image_of = |out: &str| out.trim().trim_matches('\'').to_string();
    let ns_args = |rest: &[&'static str]| -> Vec<&'static str> {
        let mut a = vec!["-n", "cp-test"];
        a.extend_from_slice(rest);
        a
    };
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &ns_args(&["set", "image", "deployment/web", "web=nginx:1.28"]),
        None,
    );
    assert!(ok, "set image: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &ns_args(&["rollout", "status", "deployment/web", "--timeout=60s"]),
        None,
    );
    assert!(ok, "rollout status after set image: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &ns_args(&["rollout", "undo", "deployment/web"]),
        None,
    );
    assert!(ok && out.contains("rolled back"), "rollout undo: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &ns_args(&["rollout", "status", "deployment/web", "--timeout=60s"]),
        None,
    );
    assert!(ok, "rollout status after undo: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &ns_args(&[
            "get",
            "deployment/web",
            "-o",
            "jsonpath='{.spec.template.spec.containers[0].image}'",
        ]),
        None,
    );
    assert!(ok, "get image: {out}");
    assert_eq!(image_of(&out), "nginx:1.27", "undo restores the image");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &ns_args(&[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=60s",
        ]),
        None,
    );
    assert!(ok && out.contains("condition met"), "wait: {out}");
    for args in [
        &[
            "-n",
            "cp-test",
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=k=v",
        ][..],
        &[
            "-n",
            "cp-test",
            "create",
            "configmap",
            "c1",
            "--from-literal=k=v",
        ][..],
        &[
            "-n",
            "cp-test",
            "create",
            "deployment",
            "d1",
            "--image=nginx:1.27",
        ][..],
    ] {
        let (ok, out) = kubectl(&bin, &kubeconfig, args, None);
        assert!(ok, "kubectl {args:?}: {out}");
    }
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &["auth", "can-i", "delete", "pods", "-n", "cp-test"],
        None,
    );
    assert!(ok && out.trim() == "yes", "auth can-i: {out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "delete",
            "pods",
            "-n",
            "cp-test",
            "--as",
            "system:serviceaccount:cp-test:default",
        ],
        None,
    );
    assert!(
        !ok && out.trim() == "no",
        "a service account must not delete pods: {out}"
    );

    // exec and logs go apiserver -> egress proxy -> the simulated kubelet's API (SPDY).
    let web = ready_pods(&pods, "app=web").await[0]
        .metadata
        .name
        .clone()
        .expect("name");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "exec",
            &web,
            "--",
            "sh",
            "-c",
            "echo hello from $HOSTNAME; exit 3",
        ],
        None,
    );
    assert!(
        !ok && out.contains("hello from") && out.contains("exit code 3"),
        "exec: {out}"
    );
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &["-n", "cp-test", "exec", "-i", &web, "--", "cat"],
        Some("through stdin\n"),
    );
    assert!(ok && out.contains("through stdin"), "exec -i: {out}");
    let (ok, out) = kubectl(&bin, &kubeconfig, &["-n", "cp-test", "logs", &web], None);
    assert!(ok, "logs: {out}");

    // port-forward: kubectl's WebSocket to the apiserver, which tunnels it as SPDY
    // through the egress proxy to the simulated kubelet's port-forward; cp: exec of
    // tar, stdin half-closed at its end, over the same path.
    let (ok, out) = kubectl(&bin, &kubeconfig, &["apply", "-f", "-"], Some(GRAFANA));
    assert!(ok, "{out}");
    until("the grafana pod Ready", Duration::from_secs(60), || async {
        (!ready_pods(&pods, "app=graf").await.is_empty()).then_some(())
    })
    .await;
    let kubectl_bin = bin.join("kubectl");
    let target = ["-n", "cp-test", "pod/graf"];
    let t = Instant::now();
    let f = streams::Forward::start(&kubectl_bin, &kubeconfig, &target, 3000, &[]);
    let answer = streams::http_get(f.port, "/api/health");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"version\":\"11.2.0\""),
        "port-forward: {answer}\n{}",
        f.stderr()
    );
    drop(f);
    println!(
        "port-forward through the real apiserver answered in {:.1?}",
        t.elapsed()
    );
    streams::forward_to_closed_port(&kubectl_bin, &kubeconfig, &target, 3999);

    let t = Instant::now();
    let note = dir.join("note.txt");
    std::fs::write(&note, "through the real apiserver\n").expect("note");
    let blob = streams::binary(100 * 1024);
    let blob_path = dir.join("blob.bin");
    std::fs::write(&blob_path, &blob).expect("blob");
    for (local, remote) in [(&note, "graf:/tmp/note.txt"), (&blob_path, "graf:/tmp/")] {
        let local = local.to_str().expect("utf-8 path");
        let (ok, out) = kubectl(
            &bin,
            &kubeconfig,
            &["-n", "cp-test", "cp", local, remote],
            None,
        );
        assert!(ok, "cp {local} {remote}: {out}");
    }
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "exec",
            "graf",
            "--",
            "cat",
            "/tmp/note.txt",
        ],
        None,
    );
    assert!(ok && out == "through the real apiserver\n", "cat: {out}");
    let back = dir.join("back.bin");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "cp",
            "graf:/tmp/blob.bin",
            back.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(ok, "cp out: {out}");
    assert!(
        std::fs::read(&back).expect("copied out") == blob,
        "the 100 KiB binary file came back different"
    );
    println!(
        "kubectl cp in and out through the real apiserver in {:.1?}",
        t.elapsed()
    );

    // 4. A PodDisruptionBudget blocks kubectl drain; with room, the drain succeeds.
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "create",
            "poddisruptionbudget",
            "web",
            "--selector=app=web",
            "--min-available=4",
        ],
        None,
    );
    assert!(ok, "create pdb: {out}");
    let on_node = ready_pods(&pods, "app=web").await[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("bound");
    // The disruption controller must have seen the pods before it allows anything.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "drain",
            &on_node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=5s",
            "--pod-selector=app=web",
        ],
        None,
    );
    assert!(!ok, "the drain must be blocked by the PDB: {out}");
    assert!(out.contains("disruption budget"), "{out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "-n",
            "cp-test",
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":1}}"#,
        ],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "drain",
            &on_node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
            "--pod-selector=app=web",
        ],
        None,
    );
    assert!(ok, "the drain succeeds once the PDB allows it: {out}");
    let (ok, out) = kubectl(&bin, &kubeconfig, &["uncordon", &on_node], None);
    assert!(ok, "{out}");

    // 5. A powered-off node: the REAL node-lifecycle controller marks it Unknown, taints
    //    it unreachable and evicts its pods after their toleration; it comes back.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "cp-test");
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scaled back");
    let target = until("a web pod on a worker", Duration::from_secs(60), || async {
        let r = ready_pods(&pods, "app=web").await;
        if r.len() != 3 {
            return None;
        }
        r.iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .find(|n| n.starts_with("dirqual"))
    })
    .await;
    let t = Instant::now();
    power(&provider, &target, false).await;
    until(
        "the node NotReady (Unknown)",
        Duration::from_secs(30),
        || async {
            let n = nodes.get(&target).await.ok()?;
            (node_ready(&n).as_deref() == Some("Unknown")).then_some(())
        },
    )
    .await;
    let not_ready = t.elapsed();
    // The twin's ground truth has the real controller's NotReady (bench part (c)).
    let req = http::Request::get("/twin/v1/events?since=0")
        .body(Vec::new())
        .expect("request");
    let events: Value = serde_json::from_str(
        &provider
            .request_text(req)
            .await
            .expect("the provider serves the ground truth"),
    )
    .expect("events are JSON");
    assert!(
        events.as_array().is_some_and(|es| es.iter().any(|e| {
            e["kind"] == "node" && e["object"] == target.as_str() && e["state"] == "NotReady"
        })),
        "no NotReady of {target} in the ground truth: {events}"
    );
    let taints: Vec<Value> = until(
        "the unreachable taints",
        Duration::from_secs(30),
        || async {
            let n = nodes.get(&target).await.ok()?;
            let taints = n.spec?.taints?;
            let keys: Vec<Value> = taints
                .iter()
                .map(|t| json!({"key": t.key, "effect": t.effect}))
                .collect();
            keys.contains(&json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}))
                .then_some(keys)
        },
    )
    .await;
    assert!(
        taints.contains(&json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"})),
        "{taints:?}"
    );
    until(
        "the node's pods evicted and replaced elsewhere",
        Duration::from_secs(60),
        || async {
            let all = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let evicted = all.items.iter().any(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(target.as_str())
                    && p.metadata.deletion_timestamp.is_some()
            });
            let elsewhere = all
                .items
                .iter()
                .filter(|p| ready(p))
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(target.as_str())
                })
                .count();
            (evicted && elsewhere == 3).then_some(())
        },
    )
    .await;
    let evicted = t.elapsed();
    power(&provider, &target, true).await;
    until(
        "the node Ready again, untainted",
        Duration::from_secs(60),
        || async {
            let n = nodes.get(&target).await.ok()?;
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/unreachable"));
            (node_ready(&n).as_deref() == Some("True") && !tainted).then_some(())
        },
    )
    .await;
    println!(
        "power-off of {target}: NotReady after {not_ready:.1?}, pods evicted and replaced after {evicted:.1?}, back after {:.1?}",
        t.elapsed()
    );

    // 6. Deleting the namespace cascades through the real namespace controller and
    //    garbage collector; the simulated kubelets confirm their pods' termination.
    //    Unmodified kubectl asks for it, as a user would.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let t = Instant::now();
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &["delete", "namespace", "cp-test", "--wait=false"],
        None,
    );
    assert!(
        ok && out.contains("deleted"),
        "kubectl delete namespace: {out}"
    );
    until("the namespace gone", Duration::from_secs(90), || async {
        namespaces
            .get_opt("cp-test")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    println!("namespace deletion cascaded in {:.1?}", t.elapsed());

    // Nothing died on the way.
    assert!(
        cp.died().is_empty(),
        "control plane components died: {:?}",
        cp.died()
    );
    twin.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Stopped by PID: none of the processes survives the twin.
    for p in cp.processes() {
        let alive = Path::new(&format!("/proc/{}", p.pid)).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(
            !alive,
            "{} (pid {}) still runs after shutdown",
            p.name, p.pid
        );
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every manifest of fixtures/stack and of the kind overlay passes the real API
/// server's validation (server-side dry run, with the upstream CRDs' OpenAPI and CEL
/// rules), and fixtures/rbac/stormdrill.yaml's roles mean under the real RBAC
/// authorizer what the harness needs them to mean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_manifests_and_rbac_on_the_real_api_server() {
    let Some(bin) = binaries() else { return };
    let twin = Twin::start(TwinOptions {
        control_plane: ControlPlaneKind::Real,
        seed: 4,
        ..TwinOptions::default()
    })
    .await
    .expect("the twin starts on the real control plane");
    let client = client_from(&twin.kubeconfig_yaml()).await;
    let dir = std::env::temp_dir().join(format!("stormdrill-cp-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, twin.kubeconfig_yaml()).expect("kubeconfig written");

    // The stack's namespaces and Gatekeeper's template for real (a dry-run object
    // needs its namespace; the twin's Gatekeeper serves the template's constraint kind).
    let stack = repo().join("fixtures/stack");
    for f in ["00-namespaces.yaml", "80-policy-template.yaml"] {
        let (ok, out) = kubectl(
            &bin,
            &kubeconfig,
            &["apply", "-f", &stack.join(f).display().to_string()],
            None,
        );
        assert!(ok, "{f}: {out}");
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&stack)
        .expect("fixtures/stack")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("manifest");
        let docs = text.matches("\nkind:").count() + usize::from(text.starts_with("kind:"));
        // The CRD may need a moment to be served after its creation.
        let mut last = String::new();
        let ok = (0..20).any(|_| {
            let (ok, out) = kubectl(
                &bin,
                &kubeconfig,
                &[
                    "apply",
                    "--dry-run=server",
                    "--server-side",
                    "--field-manager=stormdrill",
                    "-f",
                    &f.display().to_string(),
                ],
                None,
            );
            last = out;
            if !ok {
                std::thread::sleep(Duration::from_millis(250));
            }
            ok
        });
        assert!(
            ok,
            "{} refused by the real API server:\n{last}",
            f.display()
        );
        checked += docs;
    }
    println!("fixtures/stack: {checked} objects accepted by a server-side dry run");

    // The kind overlay, rendered by real kustomize. Kinds whose CRD the repository
    // does not carry (Contour's ExtensionService, Rook's ObjectBucketClaim) are named.
    let (ok, rendered) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "kustomize",
            &repo().join("fixtures/kind/stack").display().to_string(),
        ],
        None,
    );
    assert!(ok, "kubectl kustomize fixtures/kind/stack: {rendered}");
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let served: std::collections::HashSet<(String, String)> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(ar, _)| (ar.api_version.clone(), ar.kind.clone()))
        .collect();
    let mut skipped = Vec::new();
    let mut kept = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("rendered yaml");
        let (Some(api_version), Some(kind)) = (v["apiVersion"].as_str(), v["kind"].as_str()) else {
            continue;
        };
        if served.contains(&(api_version.to_string(), kind.to_string())) {
            kept.push(v);
        } else {
            skipped.push(format!(
                "{kind}/{}",
                v["metadata"]["name"].as_str().unwrap_or("")
            ));
        }
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": kept});
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "apply",
            "--dry-run=server",
            "--server-side",
            "--field-manager=stormdrill",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    );
    assert!(
        ok,
        "the kind overlay refused by the real API server:\n{out}"
    );
    println!(
        "fixtures/kind/stack: {} objects accepted; not checked (no upstream CRD here): {skipped:?}",
        kept.len()
    );

    // RBAC: every rule of the harness's roles is granted by the real authorizer to
    // the ServiceAccounts bound to them, and what the read-only role must not do is refused.
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "apply",
            "-f",
            &repo()
                .join("fixtures/rbac/stormdrill.yaml")
                .display()
                .to_string(),
        ],
        None,
    );
    assert!(ok, "rbac manifests: {out}");
    let rbac_text =
        std::fs::read_to_string(repo().join("fixtures/rbac/stormdrill.yaml")).expect("rbac");
    let mut granted = 0;
    for doc in serde_yaml::Deserializer::from_str(&rbac_text) {
        let role: Value = serde::Deserialize::deserialize(doc).expect("rbac yaml");
        let (kind, name) = (
            role["kind"].as_str().unwrap_or(""),
            role["metadata"]["name"].as_str().unwrap_or(""),
        );
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let ns = role["metadata"]["namespace"].as_str();
        let sa = if name.starts_with("stormdrill-readonly") {
            "stormdrill-readonly"
        } else {
            "stormdrill"
        };
        for rule in role["rules"].as_array().into_iter().flatten() {
            for group in rule["apiGroups"].as_array().into_iter().flatten() {
                for res in rule["resources"].as_array().into_iter().flatten() {
                    for verb in rule["verbs"].as_array().into_iter().flatten() {
                        let (res, verb) = (res.as_str().unwrap_or(""), verb.as_str().unwrap_or(""));
                        let (resource, sub) = res.split_once('/').unwrap_or((res, ""));
                        let allowed = access(
                            &client,
                            sa,
                            group.as_str().unwrap_or(""),
                            resource,
                            sub,
                            verb,
                            ns.or(Some("openalex")),
                        )
                        .await;
                        assert!(allowed, "{kind}/{name}: {sa} is refused {verb} {res} in group {group} by the real authorizer");
                        granted += 1;
                    }
                }
            }
        }
    }
    for (group, resource, sub, verb, ns) in [
        ("", "pods", "", "delete", "openalex"),
        ("apps", "deployments", "scale", "patch", "openalex"),
        ("", "namespaces", "", "delete", "openalex"),
        ("policy", "poddisruptionbudgets", "", "delete", "openalex"),
        ("", "pods", "exec", "create", "openalex"),
    ] {
        assert!(
            !access(
                &client,
                "stormdrill-readonly",
                group,
                resource,
                sub,
                verb,
                Some(ns)
            )
            .await,
            "the read-only role may {verb} {resource}/{sub}"
        );
    }
    assert!(
        !access(
            &client,
            "stormdrill",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "create",
            None
        )
        .await,
        "the harness's role may create ClusterRoles (privilege escalation)"
    );
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "delete",
            "pods",
            "-n",
            "openalex",
            "--as",
            "system:serviceaccount:stormdrill:stormdrill-readonly",
        ],
        None,
    );
    assert!(
        !ok && out.trim() == "no",
        "kubectl auth can-i as the read-only account: {out}"
    );
    println!("rbac: {granted} rule grants confirmed by the real authorizer, 6 refusals confirmed");

    // Gatekeeper's webhook, served by the twin, in the real admission chain: the
    // stack's constraint refuses an untagged image and admits a tagged one.
    let (ok, out) = kubectl(
        &bin,
        &kubeconfig,
        &[
            "apply",
            "-f",
            &stack
                .join("81-policy-constraint.yaml")
                .display()
                .to_string(),
        ],
        None,
    );
    assert!(ok, "81-policy-constraint.yaml: {out}");
    let run = |name: &str, image: &str| {
        kubectl(
            &bin,
            &kubeconfig,
            &["run", name, "-n", "openalex", &format!("--image={image}")],
            None,
        )
    };
    // The twin's mirror sees the new constraint a moment after the apiserver stores it.
    let denied = until(
        "the untagged image refused",
        Duration::from_secs(10),
        || {
            let (ok, out) = run("untagged", "nginx");
            if ok {
                let delete = [
                    "delete",
                    "pod",
                    "untagged",
                    "-n",
                    "openalex",
                    "--wait=false",
                ];
                let _ = kubectl(&bin, &kubeconfig, &delete, None);
            }
            std::future::ready((!ok).then_some(out))
        },
    )
    .await;
    assert!(
        denied.contains("admission webhook \"validation.gatekeeper.sh\" denied the request: [images-must-have-explicit-tag] container <untagged> didn't specify an image tag <nginx>"),
        "the real apiserver's refusal: {denied}"
    );
    let (ok, out) = run("tagged", "nginx:1.27");
    assert!(ok, "a tagged image is admitted: {out}");
    println!("gatekeeper: {}", denied.trim());
    twin.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SubjectAccessReview for a ServiceAccount of namespace `stormdrill`.
async fn access(
    client: &Client,
    sa: &str,
    group: &str,
    resource: &str,
    sub: &str,
    verb: &str,
    ns: Option<&str>,
) -> bool {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": format!("system:serviceaccount:stormdrill:{sa}"),
            "groups": ["system:serviceaccounts", "system:serviceaccounts:stormdrill", "system:authenticated"],
            "resourceAttributes": {"group": group, "resource": resource, "subresource": sub, "verb": verb, "namespace": ns.unwrap_or("")},
        },
    }))
    .expect("review");
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let out = api
        .create(&kube::api::PostParams::default(), &review)
        .await
        .expect("subject access review");
    out.status.is_some_and(|s| s.allowed)
}
